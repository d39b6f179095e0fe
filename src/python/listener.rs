//! The producer's signal listener: a Unix socket served by Rust threads inside the
//! extension module, taking the GIL only to run the producer's Python handler.
//!
//! - `bind`: [`fsutil::bind_private_socket`] (mode 0600, only a stale socket of ours
//!   is ever replaced, symlinks are refused, never followed).
//! - one acceptor thread: `poll`s the listening socket and a wake-up pipe, so
//!   [`UdsListener::stop`] ends it without depending on the socket path.
//! - one thread per connection (the gateway keeps a few persistent ones): reads
//!   request frames of version 2 ([`crate::wire`]): the 32-byte head, then the
//!   `body_len()` bytes of name and parameters it announces (bounded by the codec, at
//!   most [`MAX_REQUEST_LEN`] in all); calls `handler(slot, request_id, name, params)`
//!   (`params` a `dict[str, str]`) with the GIL, releases it, and answers with a
//!   response frame. The handler returns the `Receipt` of its write, or a
//!   `(Receipt, content_type)` pair: the OK answer's message is the content type
//!   (empty for a bare Receipt). The thread keeps one interpreter thread state for the
//!   connection's life and holds the GIL only while a handler runs: attaching afresh
//!   per request made and freed a thread state each time, with its frame stack (an
//!   mmap, page faults, a munmap and its TLB shootdown), which cost more than a small
//!   handler itself.
//! - at interpreter exit (an `atexit` hook, which runs before finalization) every
//!   listener still running is stopped and its connection threads joined, so no
//!   thread of ours tries to take the GIL of a finalizing interpreter.
//! - a Python exception becomes an error response: `PayloadTooLarge` → too large,
//!   `SlotBusy` → busy, any other `ShmError` (the producer's machinery: a closed
//!   channel, a value with no JSON form...) → internal, `ValueError` → bad request,
//!   `LookupError` (`KeyError`, `IndexError`, an unknown handler) → not found,
//!   `TimeoutError` → timed out, anything else → handler error; the message is
//!   `TypeName: text`, never a traceback. The listener itself never dies of a handler
//!   error.
//! - a frame that cannot be decoded (bad magic, another version such as version 1,
//!   an unknown op, a name or parameters that break the rules of [`crate::wire`], a
//!   frame cut short) gets a bad-request answer before any handler runs, and the
//!   connection is closed (after a bad frame the byte stream cannot be trusted to be
//!   in step); nothing here panics on input.
//! - a request whose budget (`timeout_ms`) ran out before the handler could start
//!   is answered "timed out" without calling the handler; and while the handler runs,
//!   the channel's writes on its thread (`write_json`, `write_bytes`, `reserve`) raise
//!   TimeoutError once the budget is spent ([`check_deadline`]). A write starts before
//!   the gateway gives up or never, so a late write cannot land in a slot the gateway
//!   has handed to another request (its quarantine covers a write that started in time).

use std::cell::Cell;
use std::collections::HashMap;
use std::io::{self, Read};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use pyo3::exceptions::{PyLookupError, PyTimeoutError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString, PyTuple};
use rustix::event::{PollFd, PollFlags};

use super::errors::{PayloadTooLarge, ShmError, SlotBusy};
use super::receipt::Receipt;
use super::sync::lock;
use crate::error::CreateError;
use crate::fsutil::{self, FileIdentity};
use crate::poll::{self, RecvMode, WaitPredictor};
use crate::wire::{Request, RequestHead, Response, Status, MAX_REQUEST_LEN, REQUEST_HEAD_LEN};

/// Pending connections the kernel queues before `accept` (it caps this at
/// `net.core.somaxconn`). Above `MAX_CONNECTIONS`, so clients that all connect at once
/// while the accept thread waits for a core still find room.
const BACKLOG: i32 = 1024;
/// Connections served at once; more are answered "busy" and closed.
pub const MAX_CONNECTIONS: usize = 128;
/// Pause after a failed `accept` (out of file descriptors...), so a persistent
/// failure does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(20);

thread_local! {
    /// The budget of the signal request this thread's handler is serving: when it
    /// runs out, and how long it was.
    static DEADLINE: Cell<Option<(Instant, u32)>> = const { Cell::new(None) };
}

/// Refuses a write that would start after the budget of the signal request being
/// handled on this thread (no-op on any other thread).
///
/// # Errors
/// `TimeoutError` naming the budget.
pub fn check_deadline() -> PyResult<()> {
    match DEADLINE.get() {
        Some((deadline, budget_ms)) if Instant::now() >= deadline => Err(PyTimeoutError::new_err(format!(
            "the signal request's budget of {budget_ms} ms ran out before the write started; nothing was written"
        ))),
        _ => Ok(()),
    }
}

/// What is left of the budget of the signal request being handled on this thread:
/// `None` on any other thread, or for a request without a deadline.
pub fn remaining_budget() -> Option<Duration> {
    DEADLINE.get().map(|(deadline, _)| deadline.saturating_duration_since(Instant::now()))
}

/// Longest content type a handler may give its reply, in bytes.
pub const MAX_CONTENT_TYPE_LEN: usize = 255;

/// Sets this thread's deadline for the life of the guard.
struct DeadlineGuard;

impl DeadlineGuard {
    fn set(deadline: Option<(Instant, u32)>) -> Self {
        DEADLINE.set(deadline);
        Self
    }
}

impl Drop for DeadlineGuard {
    fn drop(&mut self) {
        DEADLINE.set(None);
    }
}

/// A live connection: a clone of its stream (to shut it down) and its thread.
type Connection = (UnixStream, Option<JoinHandle<()>>);

/// What the acceptor and every connection thread share.
struct Shared {
    epoch: u64,
    /// `None` once the listener stops: the handler is dropped with the GIL held.
    handler: Mutex<Option<Py<PyAny>>>,
    stopping: AtomicBool,
    connections: Mutex<HashMap<u64, Connection>>,
    next_connection: AtomicU64,
    /// How long a connection that just answered polls for its next request before it
    /// sleeps, when no other request is being handled (see [`wait_for_next_request`]).
    spin: Duration,
    /// Requests between their frame and their answer, over all connections.
    busy: AtomicUsize,
    /// Whether a connection is polling now: one at a time.
    polling: AtomicBool,
    /// The connection that read the latest request: only it may poll (one client).
    latest_request_on: AtomicU64,
}

impl Shared {
    /// Shuts every connection down (a blocked read returns at once) and waits for its
    /// thread; a handler running now finishes first.
    fn close_connections(&self) {
        let connections = std::mem::take(&mut *lock(&self.connections));
        let me = std::thread::current().id();
        let mut threads = Vec::with_capacity(connections.len());
        for (stream, thread) in connections.into_values() {
            let _ = stream.shutdown(std::net::Shutdown::Both);
            threads.extend(thread);
        }
        for thread in threads {
            // A handler that calls stop_uds() itself must not wait for its own thread.
            if thread.thread().id() != me {
                let _ = thread.join();
            }
        }
    }
}

/// Every listener started and not yet stopped, for [`stop_all_at_exit`].
static RUNNING: Mutex<Vec<std::sync::Weak<Shared>>> = Mutex::new(Vec::new());

/// Stops every running listener's connection threads and waits for them: the
/// `atexit` hook (registered at import), called without the GIL. After it no thread
/// of ours is attached to the interpreter or can try to attach while it finalizes.
pub fn stop_all_at_exit() {
    let running: Vec<Arc<Shared>> = lock(&RUNNING).drain(..).filter_map(|weak| weak.upgrade()).collect();
    for shared in running {
        shared.stopping.store(true, Ordering::Release);
        shared.close_connections();
    }
}

/// A running listener. [`stop`](Self::stop) ends it; dropping it without `stop`
/// asks every thread to end but does not wait.
pub struct UdsListener {
    path: PathBuf,
    identity: FileIdentity,
    shared: Arc<Shared>,
    wake: Option<OwnedFd>,
    acceptor: Option<JoinHandle<()>>,
}

impl UdsListener {
    /// Binds `path` and starts the acceptor thread. Call without the GIL.
    ///
    /// # Errors
    /// The path is taken, unsafe, or the socket or thread cannot be made.
    pub fn start(path: &Path, epoch: u64, handler: Py<PyAny>, spin: Duration) -> Result<Self, CreateError> {
        let (listener, identity) = fsutil::bind_private_socket(path, BACKLOG)?;
        let io =
            |action: &'static str| move |source: io::Error| CreateError::Io { action, path: path.to_owned(), source };
        let cleanup = |err: CreateError| {
            fsutil::remove_socket_if_ours(path, identity);
            err
        };
        listener.set_nonblocking(true).map_err(io("configuring")).map_err(cleanup)?;
        let (wake_read, wake_write) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
            .map_err(|e| cleanup(io("creating the wake-up pipe for")(e.into())))?;
        let shared = Arc::new(Shared {
            epoch,
            handler: Mutex::new(Some(handler)),
            stopping: AtomicBool::new(false),
            connections: Mutex::new(HashMap::new()),
            next_connection: AtomicU64::new(1),
            spin,
            busy: AtomicUsize::new(0),
            polling: AtomicBool::new(false),
            latest_request_on: AtomicU64::new(0),
        });
        let mut running = lock(&RUNNING);
        running.retain(|weak| weak.strong_count() > 0);
        running.push(Arc::downgrade(&shared));
        drop(running);
        let acceptor_shared = Arc::clone(&shared);
        let acceptor = std::thread::Builder::new()
            .name("shmbridge-uds-accept".into())
            .spawn(move || accept_loop(&listener, &wake_read, &acceptor_shared))
            .map_err(|e| cleanup(io("starting the acceptor thread of")(e)))?;
        Ok(Self { path: path.to_owned(), identity, shared, wake: Some(wake_write), acceptor: Some(acceptor) })
    }

    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Signals every thread to end: the acceptor through its pipe, connections by
    /// shutting their sockets down (a blocked read returns at once). Removes the
    /// socket file. Does not wait.
    fn signal_stop(&mut self) {
        if self.shared.stopping.swap(true, Ordering::AcqRel) {
            return;
        }
        // Closing the write end makes the read end readable (EOF) for the acceptor's poll.
        self.wake = None;
        fsutil::remove_socket_if_ours(&self.path, self.identity);
    }

    /// Stops accepting, closes every connection, waits for every thread (a handler
    /// running now finishes first) and removes the socket file. Call without the
    /// GIL: a connection thread may be waiting for it. Returns the handler so the
    /// caller drops it with the GIL held.
    pub fn stop(mut self) -> Option<Py<PyAny>> {
        self.signal_stop();
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
        // The acceptor is gone: no connection is added any more.
        self.shared.close_connections();
        lock(&self.shared.handler).take()
    }
}

impl Drop for UdsListener {
    fn drop(&mut self) {
        self.signal_stop();
        // Connection threads see `stopping` after their current request, and their
        // sockets are shut down so that a blocked read returns.
        for (stream, _) in lock(&self.shared.connections).values() {
            let _ = stream.shutdown(std::net::Shutdown::Both);
        }
        // The handler is released here, attached (`Channel` drops its listener with
        // the GIL held), not by whichever thread lets `shared` go last: pyo3 is built
        // without its reference pool, so a `Py` dropped unattached would leak.
        if let Some(handler) = lock(&self.shared.handler).take() {
            Python::try_attach(|_py| drop(handler));
        }
    }
}

fn accept_loop(listener: &UnixListener, wake: &OwnedFd, shared: &Arc<Shared>) {
    loop {
        let mut fds = [PollFd::new(listener, PollFlags::IN), PollFd::new(wake, PollFlags::IN)];
        match rustix::event::poll(&mut fds, None) {
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => continue,
            Err(_) => std::thread::sleep(ACCEPT_BACKOFF),
        }
        if shared.stopping.load(Ordering::Acquire) || !fds[1].revents().is_empty() {
            return;
        }
        loop {
            match listener.accept() {
                Ok((stream, _)) => admit(stream, shared),
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => break,
                Err(err)
                    if err.kind() == io::ErrorKind::Interrupted || err.kind() == io::ErrorKind::ConnectionAborted => {}
                Err(_) => {
                    std::thread::sleep(ACCEPT_BACKOFF);
                    break;
                }
            }
        }
    }
}

/// Gives an accepted connection its thread, or answers "busy" and closes it.
fn admit(stream: UnixStream, shared: &Arc<Shared>) {
    let refuse = |stream: &UnixStream, why: &str| {
        let _ = send_all(stream, &Response::error(Status::Busy, shared.epoch, None, why).encode());
    };
    if stream.set_nonblocking(false).is_err() {
        return;
    }
    let mut connections = lock(&shared.connections);
    if connections.len() >= MAX_CONNECTIONS {
        drop(connections);
        refuse(&stream, &format!("the producer serves at most {MAX_CONNECTIONS} signal connections at once"));
        return;
    }
    let Ok(clone) = stream.try_clone() else {
        drop(connections);
        refuse(&stream, "the producer could not register the connection");
        return;
    };
    let id = shared.next_connection.fetch_add(1, Ordering::Relaxed);
    let thread_shared = Arc::clone(shared);
    let spawned = std::thread::Builder::new().name("shmbridge-uds-conn".into()).spawn(move || {
        serve_connection(&stream, id, &thread_shared);
        lock(&thread_shared.connections).remove(&id);
    });
    match spawned {
        Ok(thread) => {
            connections.insert(id, (clone, Some(thread)));
        }
        Err(_) => {
            drop(connections);
            refuse(&clone, "the producer could not start a thread for the connection");
        }
    }
}

/// Serves request after request until the peer closes, a frame is bad, or the
/// listener stops; attached to the interpreter throughout, the GIL released but for
/// the handler calls.
fn serve_connection(stream: &UnixStream, id: u64, shared: &Shared) {
    let mut head = [0u8; REQUEST_HEAD_LEN];
    // Name and parameters: at most this many bytes follow a head the codec accepted.
    let mut body = vec![0u8; MAX_REQUEST_LEN - REQUEST_HEAD_LEN];
    // A budget starts when its request is read, before any wait for the GIL: the first
    // request is read before attaching, the others while detached (head and body in
    // one stretch: one release and retake of the GIL per request, not two).
    let mut first = Some((receive(stream, &mut head, &mut body, shared.epoch), Instant::now()));
    if matches!(first, Some((Incoming::Gone, _))) {
        return;
    }
    // The gap between an answer and the next request on this connection.
    let gap = WaitPredictor::new();
    let mut answered = Instant::now();
    let served = Python::try_attach(|py| loop {
        let (incoming, received) = match first.take() {
            Some(read) => read,
            None => py.detach(|| {
                if gap.fits(shared.spin) {
                    wait_for_next_request(stream, id, shared);
                }
                let incoming = receive(stream, &mut head, &mut body, shared.epoch);
                let received = Instant::now();
                gap.record(received - answered);
                (incoming, received)
            }),
        };
        let call = match incoming {
            Incoming::Gone => return,
            _ if shared.stopping.load(Ordering::Acquire) => return,
            Incoming::Call(parsed, request) => Ok((parsed, request)),
            Incoming::Refused(refused) => Err(refused),
        };
        shared.busy.fetch_add(1, Ordering::Relaxed);
        shared.latest_request_on.store(id, Ordering::Relaxed);
        let (response, keep_open) = match call {
            Ok((parsed, request)) => (handle(py, &parsed, &request, received, shared), true),
            Err(refused) => (refused, false),
        };
        let answer = response.encode();
        let sent = py.detach(|| send_all(stream, &answer));
        answered = Instant::now();
        shared.busy.fetch_sub(1, Ordering::Relaxed);
        if sent.is_err() || !keep_open {
            return;
        }
    });
    if served.is_none() {
        // No interpreter to run handlers: say so once, then close.
        let answer = Response::error(Status::Internal, shared.epoch, None, "the Python interpreter is not running");
        let _ = send_all(stream, &answer.encode());
    }
}

/// One request read off a connection.
enum Incoming {
    /// A request to run.
    Call(RequestHead, Request),
    /// A frame refused before any handler runs: send the answer, then close (after a bad
    /// frame the byte stream cannot be trusted to be in step).
    Refused(Response),
    /// The peer closed between frames, or the socket failed: close without an answer.
    Gone,
}

/// Reads the next request: its head, then the name and parameters the head announces
/// (bounded by the codec). Never needs the GIL.
fn receive(stream: &UnixStream, head: &mut [u8; REQUEST_HEAD_LEN], body: &mut [u8], epoch: u64) -> Incoming {
    match read_frame(stream, head) {
        Ok(Frame::Complete) => {}
        Ok(Frame::Closed) | Err(_) => return Incoming::Gone,
        Ok(Frame::Short(got)) => {
            let message = format!("request frame cut short: {got} of {REQUEST_HEAD_LEN} bytes before end of stream");
            return Incoming::Refused(Response::error(Status::BadRequest, epoch, None, &message));
        }
    }
    let parsed = match RequestHead::decode(head) {
        Ok(parsed) => parsed,
        Err(err) => return Incoming::Refused(Response::error(Status::BadRequest, epoch, None, &err.to_string())),
    };
    let body = &mut body[..parsed.body_len()];
    match read_frame(stream, body) {
        Ok(Frame::Complete) => match parsed.finish(body) {
            Ok(request) => Incoming::Call(parsed, request),
            Err(err) => Incoming::Refused(Response::error(Status::BadRequest, epoch, Some(&parsed), &err.to_string())),
        },
        Ok(Frame::Closed) => Incoming::Refused(cut_short(&parsed, 0, epoch)),
        Ok(Frame::Short(got)) => Incoming::Refused(cut_short(&parsed, got, epoch)),
        Err(_) => Incoming::Gone,
    }
}

fn cut_short(head: &RequestHead, got: usize, epoch: u64) -> Response {
    let message = format!(
        "request frame cut short: {got} of the {} bytes of name and parameters its head announced \
         before end of stream",
        head.body_len()
    );
    Response::error(Status::BadRequest, epoch, Some(head), &message)
}

/// Polls `stream` ([`poll::poll_recv`]) for up to `shared.spin`, until it has bytes (or
/// end of stream, or an error) to read. The caller checked the connection's gap.
///
/// A blocked read lets this CPU go idle, and on a virtual machine waking an idle CPU
/// costs tens of microseconds: at low load, more than the round trip itself. Only at
/// low load does a connection poll: when its last gap between an answer and the next
/// request fit the budget (see [`WaitPredictor`]), when it carried the latest request
/// (one client, like the gateway with one request in flight), one connection at a
/// time, and while no request is being handled. A socket shut down by
/// `close_connections` reads as end of stream, which ends the wait at once.
fn wait_for_next_request(stream: &UnixStream, id: u64, shared: &Shared) {
    let idle = || shared.busy.load(Ordering::Relaxed) == 0 && shared.latest_request_on.load(Ordering::Relaxed) == id;
    if !idle() || shared.polling.compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed).is_err() {
        return;
    }
    let mut probe = [0u8; 1];
    // Data, end of stream and an error all end the wait; `read_frame` reports them.
    let _ = poll::poll_recv(stream, &mut probe, RecvMode::Peek, shared.spin, idle);
    shared.polling.store(false, Ordering::Release);
}

enum Frame {
    Complete,
    /// End of stream exactly between frames.
    Closed,
    /// End of stream after this many bytes of a frame.
    Short(usize),
}

/// Fills all of `frame` from the stream.
fn read_frame(mut stream: &UnixStream, frame: &mut [u8]) -> io::Result<Frame> {
    let mut filled = 0;
    while filled < frame.len() {
        match stream.read(&mut frame[filled..]) {
            Ok(0) if filled == 0 => return Ok(Frame::Closed),
            Ok(0) => return Ok(Frame::Short(filled)),
            Ok(n) => filled += n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    }
    Ok(Frame::Complete)
}

/// Writes all of `bytes` with MSG_NOSIGNAL: a peer that went away is an error
/// (EPIPE), never a SIGPIPE.
fn send_all(stream: &UnixStream, mut bytes: &[u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        match rustix::net::send(stream.as_fd(), bytes, rustix::net::SendFlags::NOSIGNAL) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => bytes = &bytes[n..],
            Err(rustix::io::Errno::INTR) => {}
            Err(err) => return Err(err.into()),
        }
    }
    Ok(())
}

fn budget(request: &Request) -> Option<Duration> {
    (request.timeout_ms != 0).then(|| Duration::from_millis(u64::from(request.timeout_ms)))
}

fn timed_out(head: &RequestHead, request: &Request, received: Instant, epoch: u64, when: &str) -> Response {
    let message = format!(
        "the request's budget of {} ms ran out {when} ({} ms after it arrived); nothing was written",
        request.timeout_ms,
        received.elapsed().as_millis()
    );
    Response::error(Status::TimedOut, epoch, Some(head), &message)
}

/// Runs one request through the Python handler (the GIL held).
fn handle(py: Python<'_>, head: &RequestHead, request: &Request, received: Instant, shared: &Shared) -> Response {
    let epoch = shared.epoch;
    // Waiting for the GIL may have used up the budget.
    if budget(request).is_some_and(|b| received.elapsed() >= b) {
        return timed_out(head, request, received, epoch, "before the handler could start");
    }
    let Some(handler) = lock(&shared.handler).as_ref().map(|h| h.clone_ref(py)) else {
        return Response::error(Status::Busy, epoch, Some(head), "the listener is stopping");
    };
    let params = PyDict::new(py);
    for (key, value) in &request.params {
        if let Err(err) = params.set_item(key, value) {
            return error_response(py, &err, head, epoch);
        }
    }
    let _deadline = DeadlineGuard::set(budget(request).map(|b| (received + b, request.timeout_ms)));
    match handler.call1(py, (request.slot, request.request_id, request.name.as_str(), params)) {
        Ok(result) => receipt_response(result.bind(py), head, epoch),
        Err(err) => error_response(py, &err, head, epoch),
    }
}

fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type().name().map_or_else(|_| "?".to_owned(), |n| n.to_string())
}

/// The OK answer for a handler's `Receipt` or `(Receipt, content_type)`.
fn receipt_response(result: &Bound<'_, PyAny>, head: &RequestHead, epoch: u64) -> Response {
    let internal = |message: &str| Response::error(Status::Internal, epoch, Some(head), message);
    let (receipt, content_type) = match result.cast::<PyTuple>() {
        Ok(pair) if pair.len() == 2 => {
            let (Ok(receipt), Ok(content_type)) = (pair.get_item(0), pair.get_item(1)) else {
                return internal("the handler's reply pair could not be read");
            };
            let Ok(content_type) = content_type.cast::<PyString>().map(|s| s.to_string_lossy().into_owned()) else {
                let kind = type_name(&content_type);
                return internal(&format!("the handler's content type is a {kind}, not a str"));
            };
            (receipt, content_type)
        }
        _ => (result.clone(), String::new()),
    };
    if content_type.len() > MAX_CONTENT_TYPE_LEN || !content_type.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return internal(&format!(
            "the handler's content type must be at most {MAX_CONTENT_TYPE_LEN} printable ASCII characters"
        ));
    }
    match receipt.cast::<Receipt>() {
        Ok(receipt) => {
            let receipt = receipt.get();
            Response {
                status: Status::Ok,
                epoch,
                slot: receipt.slot,
                request_id: receipt.request_id,
                sequence: receipt.sequence,
                length: receipt.length,
                message: content_type,
            }
        }
        Err(_) => {
            let kind = type_name(&receipt);
            internal(&format!("the handler returned a {kind}, not a Receipt or a (Receipt, content_type) pair"))
        }
    }
}

/// A handler exception as an error response: its kind picks the status, and the
/// message carries `TypeName: text` (never a traceback).
fn error_response(py: Python<'_>, err: &PyErr, head: &RequestHead, epoch: u64) -> Response {
    let status = if err.is_instance_of::<PayloadTooLarge>(py) {
        Status::TooLarge
    } else if err.is_instance_of::<SlotBusy>(py) {
        Status::Busy
    } else if err.is_instance_of::<ShmError>(py) {
        Status::Internal
    } else if err.is_instance_of::<PyValueError>(py) {
        Status::BadRequest
    } else if err.is_instance_of::<PyLookupError>(py) {
        Status::NotFound
    } else if err.is_instance_of::<PyTimeoutError>(py) {
        Status::TimedOut
    } else {
        Status::HandlerError
    };
    let kind = err.get_type(py).name().map_or_else(|_| "Exception".to_owned(), |n| n.to_string());
    let text = err.value(py).str().map_or_else(|_| String::new(), |s| s.to_string());
    let message = if text.is_empty() { kind } else { format!("{kind}: {text}") };
    Response::error(status, epoch, Some(head), &message)
}
