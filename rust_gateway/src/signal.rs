//! The shared-memory path's signal step: asking the producer to write `count` users
//! into a slot for a request id, and learning where it wrote them. Everything else on
//! that path (slot pool, quarantine, epoch, slot read, validation) is the same for both
//! signals, in `routes::users_shm`.
//!
//! - `http`: `GET /api/write-to-shm` through the pooled keep-alive client ([`producer`]).
//! - `uds`: one 32-byte request frame and one response frame (the format is
//!   `shmbridge::signal`) over a Unix socket `<shm-dir>/<channel>.sock`, from a small
//!   pool of persistent connections ([`UdsPool`]).
//!
//! Failures keep the HTTP signal's meaning: the producer could not be reached or the
//! connection broke → 502 `producer_unavailable`; the whole exchange took longer than
//! `--producer-timeout-ms` → 504 naming it; a payload over the slot capacity → 507; any
//! other refusal → 502 `producer_error`. `may_still_write` tells the caller whether to
//! quarantine the slot (a late write may still land in it).

use std::io;
use std::os::unix::fs::FileTypeExt as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use shmbridge::poll::{self, RecvMode, WaitPredictor};
use shmbridge::signal::{FrameError, Op, Request, Response, ResponseHead, Status, REQUEST_LEN, RESPONSE_HEAD_LEN};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::UnixStream;

use crate::error::AppError;
use crate::producer::{self, CallFailure};
use crate::settings::{Settings, SignalMode};
use crate::state::AppState;

/// How the signal socket is named in errors (`AppError::ProducerError`'s endpoint).
pub const UDS_ENDPOINT: &str = "the signal socket's write-users request";
/// Idle connections kept for reuse; more are closed after their request.
const MAX_IDLE: usize = 64;

/// The signal one request uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Http,
    Uds,
}

impl Signal {
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Signal::Http => "http",
            Signal::Uds => "uds",
        }
    }

    /// The signal for `mode`: `auto` is `uds` while `socket` exists as a socket.
    #[must_use]
    pub fn choose(mode: SignalMode, socket: &Path) -> Self {
        match mode {
            SignalMode::Http => Signal::Http,
            SignalMode::Uds => Signal::Uds,
            SignalMode::Auto if is_socket(socket) => Signal::Uds,
            SignalMode::Auto => Signal::Http,
        }
    }
}

fn is_socket(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|meta| meta.file_type().is_socket())
}

/// What the producer says it wrote, whichever signal carried the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    /// Creation epoch of the channel file written.
    pub epoch: u64,
    pub slot: u32,
    pub request_id: u64,
    pub sequence: u64,
    pub length: u64,
    /// Where the answer came from, for logs (the channel path, or the socket).
    pub source: String,
}

/// Asks the producer, over `signal`, to write the first `count` users into `slot` for
/// `request_id`.
///
/// # Errors
/// A [`CallFailure`]: what failed, and whether a late write into the slot is possible.
pub async fn request_write(
    state: &AppState,
    signal: Signal,
    count: u32,
    slot: u32,
    request_id: u64,
) -> Result<Written, CallFailure> {
    match signal {
        Signal::Http => {
            let answer = producer::write_to_shm(&state.producer, &state.settings, count, slot, request_id).await?;
            Ok(Written {
                epoch: answer.epoch,
                slot: answer.slot,
                request_id: answer.request_id,
                sequence: answer.sequence,
                length: answer.length,
                source: answer.path,
            })
        }
        Signal::Uds => state.uds.write_users(&state.settings, count, slot, request_id).await,
    }
}

/// Persistent connections to the producer's signal socket: take one (or connect),
/// exchange one frame pair, give it back. A connection that failed is dropped.
#[derive(Debug)]
pub struct UdsPool {
    path: PathBuf,
    // A std lock held for a push or a pop, never across `.await`.
    idle: Mutex<Vec<UnixStream>>,
    /// How long a lone exchange polls for its answer before it parks (see [`spin_for_answer`]).
    spin: Duration,
    /// Exchanges in progress: only a lone one spins.
    in_flight: AtomicUsize,
    /// The latest wait for an answer: spin only when it fit the budget.
    answer_wait: WaitPredictor,
    /// Answers found while spinning, and answers waited for on the reactor.
    caught_spinning: AtomicU64,
    parked: AtomicU64,
}

/// How one request/response exchange on a connection failed.
enum TripError {
    /// Nothing of an answer arrived: the connection was closed or reset (`sent`: the
    /// request frame had been written). On a reused connection this is usually a
    /// producer that restarted since: one retry on a fresh connection is safe.
    NoAnswer { sent: bool, error: io::Error },
    /// The answer started but was cut off.
    Broken(io::Error),
    /// The answer is not a valid response frame.
    BadFrame(FrameError),
}

impl UdsPool {
    /// A pool for the socket at `path`; a lone exchange polls for its answer for up
    /// to `spin` before it waits on the reactor (`Duration::ZERO`: never).
    #[must_use]
    pub fn new(path: PathBuf, spin: Duration) -> Self {
        Self {
            path,
            idle: Mutex::new(Vec::new()),
            spin,
            in_flight: AtomicUsize::new(0),
            answer_wait: WaitPredictor::new(),
            caught_spinning: AtomicU64::new(0),
            parked: AtomicU64::new(0),
        }
    }

    /// Answers read while spinning and answers waited for on the reactor, so far.
    #[must_use]
    pub fn answer_waits(&self) -> (u64, u64) {
        (self.caught_spinning.load(Ordering::Relaxed), self.parked.load(Ordering::Relaxed))
    }

    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Connections waiting for reuse.
    #[must_use]
    pub fn idle(&self) -> usize {
        self.idle.lock().unwrap_or_else(PoisonError::into_inner).len()
    }

    /// One write request over the socket, under `--producer-timeout-ms` as a whole
    /// (connecting included). The frame carries that budget so the producer skips a
    /// write it could only start after the gateway gave up.
    ///
    /// # Errors
    /// A [`CallFailure`] like the HTTP signal's.
    pub async fn write_users(
        &self,
        settings: &Settings,
        count: u32,
        slot: u32,
        request_id: u64,
    ) -> Result<Written, CallFailure> {
        let request = Request {
            op: Op::WriteUsers,
            slot,
            timeout_ms: u32::try_from(settings.producer_timeout_ms).unwrap_or(u32::MAX),
            request_id,
            count: u64::from(count),
        };
        let frame = request.encode();
        match tokio::time::timeout(settings.producer_timeout(), self.exchange(&frame)).await {
            Err(_elapsed) => Err(CallFailure {
                error: AppError::ProducerTimeout { timeout_ms: settings.producer_timeout_ms },
                may_still_write: true,
            }),
            Ok(Err(failure)) => Err(failure),
            Ok(Ok(response)) => self.check(response, &request, settings),
        }
    }

    async fn exchange(&self, frame: &[u8; REQUEST_LEN]) -> Result<Response, CallFailure> {
        let in_flight = InFlight::enter(&self.in_flight);
        let spin = if in_flight.alone() && self.answer_wait.fits(self.spin) { self.spin } else { Duration::ZERO };
        let mut first_sent = false;
        if let Some(mut stream) = self.take_idle() {
            match self.round_trip(&mut stream, frame, spin).await {
                Ok(response) => {
                    self.put_back(stream);
                    return Ok(response);
                }
                // Closed while idle (a restarted producer): retry once, fresh.
                Err(TripError::NoAnswer { sent, error }) => {
                    tracing::debug!(error = %error, "pooled signal connection was closed; reconnecting");
                    first_sent = sent;
                }
                Err(other) => return Err(self.trip_failure(other)),
            }
        }
        let mut stream = UnixStream::connect(&self.path).await.map_err(|e| CallFailure {
            error: self.unavailable(&e),
            // Nothing reached a producer on this connection; the stale one may have.
            may_still_write: first_sent,
        })?;
        match self.round_trip(&mut stream, frame, spin).await {
            Ok(response) => {
                self.put_back(stream);
                Ok(response)
            }
            Err(other) => Err(self.trip_failure(other)),
        }
    }

    fn trip_failure(&self, error: TripError) -> CallFailure {
        match error {
            TripError::NoAnswer { sent, error } => {
                tracing::warn!(socket = %self.path.display(), error = %error, "signal connection failed");
                CallFailure { error: self.unavailable(&error), may_still_write: sent }
            }
            // The producer answers after its write: a cut answer means no write is pending.
            TripError::Broken(error) => {
                tracing::warn!(socket = %self.path.display(), error = %error, "signal answer cut off");
                CallFailure { error: self.unavailable(&error), may_still_write: false }
            }
            TripError::BadFrame(error) => CallFailure {
                error: AppError::BadProducerAnswer { endpoint: UDS_ENDPOINT, detail: error.to_string() },
                may_still_write: true,
            },
        }
    }

    fn unavailable(&self, error: &io::Error) -> AppError {
        AppError::ProducerUnavailable { url: format!("unix:{}", self.path.display()), reason: error.to_string() }
    }

    /// A pooled connection that still looks open. One that was closed while idle
    /// reads as end-of-stream (or an error) here and is dropped.
    fn take_idle(&self) -> Option<UnixStream> {
        loop {
            let stream = self.idle.lock().unwrap_or_else(PoisonError::into_inner).pop()?;
            let mut probe = [0u8; 1];
            match stream.try_read(&mut probe) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Some(stream),
                _ => {} // closed, reset, or unexpected bytes: out of step, drop it
            }
        }
    }

    fn put_back(&self, stream: UnixStream) {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.len() < MAX_IDLE {
            idle.push(stream);
        }
    }

    /// Writes one request frame and reads one response frame.
    async fn round_trip(
        &self,
        stream: &mut UnixStream,
        frame: &[u8; REQUEST_LEN],
        spin: Duration,
    ) -> Result<Response, TripError> {
        stream.write_all(frame).await.map_err(|error| TripError::NoAnswer { sent: false, error })?;
        let mut head = [0u8; RESPONSE_HEAD_LEN];
        let no_answer = |error| TripError::NoAnswer { sent: true, error };
        let waiting = Instant::now();
        let caught = spin_for_answer(stream, &mut head, spin, &self.in_flight).map_err(no_answer)?;
        let first = if let Some(read) = caught {
            self.caught_spinning.fetch_add(1, Ordering::Relaxed);
            read
        } else {
            self.parked.fetch_add(1, Ordering::Relaxed);
            stream.read(&mut head).await.map_err(no_answer)?
        };
        self.answer_wait.record(waiting.elapsed());
        if first == 0 {
            let error =
                io::Error::new(io::ErrorKind::UnexpectedEof, "the producer closed the connection without answering");
            return Err(TripError::NoAnswer { sent: true, error });
        }
        stream.read_exact(&mut head[first..]).await.map_err(TripError::Broken)?;
        let head = ResponseHead::decode(&head).map_err(TripError::BadFrame)?;
        let mut message = vec![0u8; head.message_len];
        stream.read_exact(&mut message).await.map_err(TripError::Broken)?;
        let message = head.message(&message).map_err(TripError::BadFrame)?;
        Ok(Response::from_head(&head, message))
    }

    /// The producer's answer as a [`Written`], or the error it stands for.
    fn check(&self, response: Response, request: &Request, settings: &Settings) -> Result<Written, CallFailure> {
        let Request { slot, request_id, .. } = *request;
        // An answer to a request never read (the producer refused the connection) has id 0.
        let echoed = response.request_id == request_id || (response.status != Status::Ok && response.request_id == 0);
        if !echoed || (response.status == Status::Ok && response.slot != slot) {
            return Err(CallFailure {
                error: AppError::BadProducerAnswer {
                    endpoint: UDS_ENDPOINT,
                    detail: format!(
                        "it answered for slot {} and request {}, but slot {slot} for request {request_id} was asked for",
                        response.slot, response.request_id
                    ),
                },
                // It wrote somewhere we did not ask for: keep our slot out of use for a while.
                may_still_write: true,
            });
        }
        let detail = if response.message.is_empty() { response.status.name().to_owned() } else { response.message };
        let refused = |status: u16| AppError::ProducerError { status, endpoint: UDS_ENDPOINT, detail: detail.clone() };
        let error = match response.status {
            Status::Ok => {
                return Ok(Written {
                    epoch: response.epoch,
                    slot: response.slot,
                    request_id: response.request_id,
                    sequence: response.sequence,
                    length: response.length,
                    source: format!("unix:{}", self.path.display()),
                })
            }
            // The HTTP signal's statuses for the same refusals, so both read alike.
            Status::BadRequest => refused(400),
            Status::Busy => refused(409),
            Status::Internal => refused(500),
            Status::TooLarge => AppError::PayloadTooLarge(detail.clone()),
            Status::TimedOut => AppError::ProducerTimeout { timeout_ms: settings.producer_timeout_ms },
        };
        tracing::warn!(status = response.status.name(), detail = %detail, "the producer refused a signal request");
        // The producer answers only once it will not touch the slot again.
        Err(CallFailure { error, may_still_write: false })
    }
}

/// Counts an exchange in progress while alive.
struct InFlight<'a> {
    counter: &'a AtomicUsize,
    before: usize,
}

impl<'a> InFlight<'a> {
    fn enter(counter: &'a AtomicUsize) -> Self {
        let before = counter.fetch_add(1, Ordering::Relaxed);
        Self { counter, before }
    }

    fn alone(&self) -> bool {
        self.before == 0
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.counter.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Polls the socket for up to `spin` for the first bytes of the answer
/// ([`poll::poll_recv`]).
///
/// Waiting on the reactor lets this thread's CPU go idle, and on a virtual machine
/// waking an idle CPU costs tens of microseconds, more than a small write takes the
/// producer. A lone request therefore keeps its thread busy for a bounded time. Under
/// load (`UdsPool::in_flight` above one, checked on every turn) nothing spins and the
/// CPU goes to other requests, nor does a request whose previous answer took longer
/// than the budget (`UdsPool::answer_wait`: large payloads never spin). tokio copes
/// with the readiness the direct reads leave stale (its next read would block, which
/// clears it).
fn spin_for_answer(
    stream: &UnixStream,
    head: &mut [u8],
    spin: Duration,
    in_flight: &AtomicUsize,
) -> io::Result<Option<usize>> {
    // Another request started: the CPU is wanted elsewhere.
    poll::poll_recv(stream, head, RecvMode::Consume, spin, || in_flight.load(Ordering::Relaxed) <= 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser as _;
    use tokio::net::UnixListener;

    fn settings(timeout_ms: u64) -> Settings {
        Settings::try_parse_from(["rust_gateway", "--producer-timeout-ms", &timeout_ms.to_string()]).unwrap()
    }

    /// A fake producer answering each request with `answer(request)`; `None` closes.
    /// One connection at a time, inside the task: aborting it closes them all.
    async fn fake_producer<F>(path: &Path, answer: F) -> tokio::task::JoinHandle<()>
    where
        F: Fn(&Request) -> Option<Vec<u8>> + Send + 'static,
    {
        let listener = UnixListener::bind(path).unwrap();
        tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else { return };
                let mut frame = [0u8; REQUEST_LEN];
                while stream.read_exact(&mut frame).await.is_ok() {
                    let request = Request::decode(&frame).unwrap();
                    match answer(&request) {
                        Some(bytes) => {
                            if stream.write_all(&bytes).await.is_err() {
                                break;
                            }
                        }
                        None => break,
                    }
                }
            }
        })
    }

    fn ok(request: &Request) -> Vec<u8> {
        Response {
            status: Status::Ok,
            epoch: 9,
            slot: request.slot,
            request_id: request.request_id,
            sequence: 2,
            length: u64::from(request.timeout_ms),
            message: String::new(),
        }
        .encode()
    }

    /// Long enough that a lone exchange always finds the fake producer's answer while
    /// spinning (it answers in microseconds, from another worker thread).
    const LONG_SPIN: Duration = Duration::from_secs(5);

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_round_trip_reuses_its_connection_with_or_without_spinning() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.sock");
        let server = fake_producer(&path, |r| Some(ok(r))).await;
        for (spin, waits) in [(Duration::ZERO, (0, 3)), (LONG_SPIN, (3, 0))] {
            let pool = UdsPool::new(path.clone(), spin);
            for id in 1..=3 {
                let written = pool.write_users(&settings(1234), 5, 1, id).await.unwrap();
                assert_eq!((written.epoch, written.slot, written.request_id, written.sequence), (9, 1, id, 2));
                assert_eq!(written.length, 1234, "the budget is sent in the frame");
                assert_eq!(pool.idle(), 1);
            }
            assert_eq!(pool.answer_waits(), waits, "spin {spin:?}");
        } // each pool closes its connection, so the one-at-a-time fake takes the next
        server.abort();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn only_a_lone_exchange_spins() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.sock");
        let server = fake_producer(&path, |r| Some(ok(r))).await;
        let pool = UdsPool::new(path, LONG_SPIN);
        let _other = InFlight::enter(&pool.in_flight);
        pool.write_users(&settings(1000), 1, 0, 1).await.unwrap();
        assert_eq!(pool.answer_waits(), (0, 1), "another exchange was in flight");
        server.abort();
    }

    #[tokio::test]
    async fn refusals_map_to_the_http_signal_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.sock");
        let server = fake_producer(&path, |r| {
            let status = Status::from_u16(u16::try_from(r.count).unwrap()).unwrap();
            Some(Response::error(status, 9, Some(r), "why").encode())
        })
        .await;
        let pool = UdsPool::new(path, Duration::ZERO);
        for (code, kind, status) in [
            (1, "producer_error", 502),
            (2, "payload_too_large", 507),
            (3, "producer_error", 502),
            (4, "producer_timeout", 504),
            (5, "producer_error", 502),
        ] {
            let failure = pool.write_users(&settings(1000), code, 0, 7).await.unwrap_err();
            assert_eq!((failure.error.kind(), failure.error.status().as_u16()), (kind, status), "status {code}");
            assert!(!failure.may_still_write);
        }
        server.abort();
    }

    #[tokio::test]
    async fn a_missing_socket_is_unavailable_and_a_silent_one_times_out() {
        let dir = tempfile::tempdir().unwrap();
        let pool = UdsPool::new(dir.path().join("none.sock"), Duration::ZERO);
        let failure = pool.write_users(&settings(1000), 2, 0, 1).await.unwrap_err();
        assert_eq!(failure.error.kind(), "producer_unavailable");
        assert!(!failure.may_still_write);

        let path = dir.path().join("slow.sock");
        let _listener = UnixListener::bind(&path).unwrap(); // accepts (backlog), never answers
        let failure = UdsPool::new(path, Duration::ZERO).write_users(&settings(50), 2, 0, 1).await.unwrap_err();
        assert_eq!(failure.error.kind(), "producer_timeout");
        assert!(failure.error.to_string().contains("50 ms"));
        assert!(failure.may_still_write);
    }

    #[tokio::test]
    async fn wrong_answers_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.sock");
        let server = fake_producer(&path, |r| match r.count {
            0 => Some(Response { request_id: r.request_id + 1, ..Response::decode(&ok(r)).unwrap() }.encode()),
            1 => Some(Response { slot: r.slot + 1, ..Response::decode(&ok(r)).unwrap() }.encode()),
            2 => Some(b"garbage that is long enough to fill a response head, and more".to_vec()),
            _ => None,
        })
        .await;
        let pool = UdsPool::new(path, Duration::ZERO);
        for count in 0..=2 {
            let failure = pool.write_users(&settings(1000), count, 0, 5).await.unwrap_err();
            assert_eq!(failure.error.kind(), "producer_error", "count {count}: {}", failure.error);
            assert!(failure.may_still_write);
        }
        let failure = pool.write_users(&settings(1000), 3, 0, 5).await.unwrap_err();
        assert_eq!(failure.error.kind(), "producer_unavailable");
        server.abort();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_connection_closed_while_idle_is_replaced() {
        for spin in [Duration::ZERO, LONG_SPIN] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("c.sock");
            let server = fake_producer(&path, |r| Some(ok(r))).await;
            let pool = UdsPool::new(path.clone(), spin);
            pool.write_users(&settings(1000), 1, 0, 1).await.unwrap();
            // The producer restarts: every old connection is closed.
            server.abort();
            let _ = server.await;
            std::fs::remove_file(&path).unwrap();
            let server = fake_producer(&path, |r| Some(ok(r))).await;
            tokio::time::sleep(Duration::from_millis(20)).await;
            let written = pool.write_users(&settings(1000), 1, 0, 2).await.unwrap();
            assert_eq!(written.request_id, 2, "spin {spin:?}");
            server.abort();
        }
    }

    #[test]
    fn auto_follows_the_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.sock");
        assert_eq!(Signal::choose(SignalMode::Auto, &path), Signal::Http);
        std::fs::write(&path, b"not a socket").unwrap();
        assert_eq!(Signal::choose(SignalMode::Auto, &path), Signal::Http);
        std::fs::remove_file(&path).unwrap();
        let _listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        assert_eq!(Signal::choose(SignalMode::Auto, &path), Signal::Uds);
        assert_eq!(Signal::choose(SignalMode::Http, &path), Signal::Http);
        assert_eq!(Signal::choose(SignalMode::Uds, dir.path()), Signal::Uds);
    }
}
