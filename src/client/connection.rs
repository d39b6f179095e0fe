//! The signal socket's client: persistent connections to `{dir}/{channel}.sock`, each
//! carrying one [`wire`](crate::wire) version 2 request/response pair at a time, under
//! a deadline for the whole exchange (connecting included).
//!
//! Failures: the socket could not be reached or the connection broke →
//! [`ClientError::ProducerUnavailable`]; no answer within the deadline →
//! [`ClientError::Timeout`]; the producer's refusals → the variant of their wire
//! status. [`SignalFailure::may_still_write`] tells the caller whether to quarantine
//! the slot (a late write may still land in it).

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::UnixStream;

use super::error::ClientError;
use super::slots::millis;
use crate::poll::{self, RecvMode, WaitPredictor};
use crate::wire::{FrameError, Request, Response, ResponseHead, Status, RESPONSE_HEAD_LEN};

/// What the producer says it wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    /// Creation epoch of the channel file written.
    pub epoch: u64,
    /// The slot written.
    pub slot: u32,
    /// The request id the slot carries.
    pub request_id: u64,
    /// The slot's sequence after the write.
    pub sequence: u64,
    /// Payload length in bytes.
    pub length: u64,
    /// The reply's content type as the handler set it (empty: none given).
    pub content_type: String,
    /// Where the answer came from, for logs (the socket, or another signal's source).
    pub source: String,
}

/// A failed exchange, and whether the producer may still be writing the slot.
#[derive(Debug)]
pub struct SignalFailure {
    /// What failed.
    pub error: ClientError,
    /// True unless the producer is known not to act on the request: it answered, or
    /// nothing reached it. A slot whose call failed this way goes to quarantine.
    pub may_still_write: bool,
}

/// Persistent connections to the producer's signal socket: take one (or connect),
/// exchange one frame pair, give it back. A connection that failed is dropped.
#[derive(Debug)]
pub struct SignalPool {
    path: PathBuf,
    // A std lock held for a push or a pop, never across `.await`.
    idle: Mutex<Vec<UnixStream>>,
    max_idle: usize,
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

impl SignalPool {
    /// A pool for the socket at `path`, keeping at most `max_idle` idle connections; a
    /// lone exchange polls for its answer for up to `spin` before it waits on the
    /// reactor (`Duration::ZERO`: never).
    #[must_use]
    pub fn new(path: PathBuf, spin: Duration, max_idle: usize) -> Self {
        Self {
            path,
            idle: Mutex::new(Vec::new()),
            max_idle,
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

    /// The socket's path.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Connections waiting for reuse.
    #[must_use]
    pub fn idle(&self) -> usize {
        self.idle.lock().unwrap_or_else(PoisonError::into_inner).len()
    }

    /// Asks the producer to run handler `name` with `params` into `slot` for
    /// `request_id`, under `timeout` as a whole (connecting included). The frame
    /// carries that budget so the producer skips a write it could only start after
    /// this side gave up.
    ///
    /// # Errors
    /// A [`SignalFailure`]: what failed, and whether a late write is possible.
    pub async fn call<K: AsRef<str>, V: AsRef<str>>(
        &self,
        timeout: Duration,
        name: &str,
        params: &[(K, V)],
        slot: u32,
        request_id: u64,
    ) -> Result<Written, SignalFailure> {
        let timeout_ms = millis(timeout);
        let request = Request {
            slot,
            timeout_ms: u32::try_from(timeout_ms).unwrap_or(u32::MAX),
            request_id,
            name: name.to_owned(),
            params: params.iter().map(|(k, v)| (k.as_ref().to_owned(), v.as_ref().to_owned())).collect(),
        };
        let frame = request
            .encode()
            .map_err(|why| SignalFailure { error: ClientError::InvalidCall(why), may_still_write: false })?;
        match tokio::time::timeout(timeout, self.exchange(&frame)).await {
            Err(_elapsed) => Err(SignalFailure { error: ClientError::Timeout { timeout_ms }, may_still_write: true }),
            Ok(Err(failure)) => Err(failure),
            Ok(Ok(response)) => self.check(response, slot, request_id, timeout_ms),
        }
    }

    async fn exchange(&self, frame: &[u8]) -> Result<Response, SignalFailure> {
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
        let mut stream = connect(&self.path).await.map_err(|e| SignalFailure {
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

    fn trip_failure(&self, error: TripError) -> SignalFailure {
        match error {
            TripError::NoAnswer { sent, error } => {
                tracing::warn!(socket = %self.path.display(), error = %error, "signal connection failed");
                SignalFailure { error: self.unavailable(&error), may_still_write: sent }
            }
            // The producer answers after its write: a cut answer means no write is pending.
            TripError::Broken(error) => {
                tracing::warn!(socket = %self.path.display(), error = %error, "signal answer cut off");
                SignalFailure { error: self.unavailable(&error), may_still_write: false }
            }
            TripError::BadFrame(error) => {
                SignalFailure { error: ClientError::BadAnswer { detail: error.to_string() }, may_still_write: true }
            }
        }
    }

    fn unavailable(&self, error: &io::Error) -> ClientError {
        ClientError::ProducerUnavailable { socket: self.path.clone(), reason: error.to_string() }
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
        if idle.len() < self.max_idle {
            idle.push(stream);
        }
    }

    /// Writes one request frame and reads one response frame.
    async fn round_trip(&self, stream: &mut UnixStream, frame: &[u8], spin: Duration) -> Result<Response, TripError> {
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
    fn check(&self, response: Response, slot: u32, request_id: u64, timeout_ms: u64) -> Result<Written, SignalFailure> {
        // An answer to a request never read (the producer refused the connection) has id 0.
        let echoed = response.request_id == request_id || (response.status != Status::Ok && response.request_id == 0);
        if !echoed || (response.status == Status::Ok && response.slot != slot) {
            return Err(SignalFailure {
                error: ClientError::BadAnswer {
                    detail: format!(
                        "it answered for slot {} and request {}, but slot {slot} for request {request_id} was asked for",
                        response.slot, response.request_id
                    ),
                },
                // It wrote somewhere we did not ask for: keep our slot out of use for a while.
                may_still_write: true,
            });
        }
        if response.status == Status::Ok {
            return Ok(Written {
                epoch: response.epoch,
                slot: response.slot,
                request_id: response.request_id,
                sequence: response.sequence,
                length: response.length,
                content_type: response.message,
                source: format!("unix:{}", self.path.display()),
            });
        }
        let message = if response.message.is_empty() { response.status.name().to_owned() } else { response.message };
        tracing::warn!(status = response.status.name(), detail = %message, "the producer refused a signal request");
        let error = match response.status {
            Status::BadRequest => ClientError::BadRequest { message },
            Status::TooLarge => ClientError::TooLarge { message },
            Status::Busy => ClientError::ProducerBusy { message },
            Status::TimedOut => ClientError::Timeout { timeout_ms },
            Status::NotFound => ClientError::NotFound { message },
            Status::HandlerError => ClientError::HandlerError { message },
            Status::Internal | Status::Ok => ClientError::ProducerInternal { message },
        };
        // The producer answers only once it will not touch the slot again.
        Err(SignalFailure { error, may_still_write: false })
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
/// load (`in_flight` above one, checked on every turn) nothing spins and the CPU goes
/// to other requests, nor does a request whose previous answer took longer than the
/// budget (`answer_wait`: large payloads never spin). tokio copes with the readiness
/// the direct reads leave stale (its next read would block, which clears it).
fn spin_for_answer(
    stream: &UnixStream,
    head: &mut [u8],
    spin: Duration,
    in_flight: &AtomicUsize,
) -> io::Result<Option<usize>> {
    // Another request started: the CPU is wanted elsewhere.
    poll::poll_recv(stream, head, RecvMode::Consume, spin, || in_flight.load(Ordering::Relaxed) <= 1)
}

/// Connects to the socket at `path`, waiting while its accept queue is full: there a
/// non-blocking connect fails at once with `EAGAIN`, which means a busy producer, not
/// a missing one. The caller's deadline bounds the wait.
async fn connect(path: &Path) -> io::Result<UnixStream> {
    const FIRST_PAUSE: Duration = Duration::from_micros(200);
    const LONGEST_PAUSE: Duration = Duration::from_millis(20);
    let mut pause = FIRST_PAUSE;
    loop {
        match UnixStream::connect(path).await {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(LONGEST_PAUSE);
            }
            done => return done,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{RequestHead, REQUEST_HEAD_LEN};
    use tokio::net::UnixListener;

    const TIMEOUT: Duration = Duration::from_millis(1000);

    /// A producer answering each request with `answer(request)`; `None` closes.
    /// One connection at a time, inside the task: aborting it closes them all.
    async fn fake_producer<F>(path: &Path, answer: F) -> tokio::task::JoinHandle<()>
    where
        F: Fn(&Request) -> Option<Vec<u8>> + Send + 'static,
    {
        serve(UnixListener::bind(path).unwrap(), answer)
    }

    /// [`fake_producer`] on a listener already bound.
    fn serve<F>(listener: UnixListener, answer: F) -> tokio::task::JoinHandle<()>
    where
        F: Fn(&Request) -> Option<Vec<u8>> + Send + 'static,
    {
        tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else { return };
                let mut head = [0u8; REQUEST_HEAD_LEN];
                while stream.read_exact(&mut head).await.is_ok() {
                    let head = RequestHead::decode(&head).unwrap();
                    let mut body = vec![0u8; head.body_len()];
                    stream.read_exact(&mut body).await.unwrap();
                    let request = head.finish(&body).unwrap();
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
            message: request.name.clone(),
        }
        .encode()
    }

    fn param(request: &Request) -> u16 {
        request.params.first().and_then(|(_, v)| v.parse().ok()).unwrap_or(0)
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
            let pool = SignalPool::new(path.clone(), spin, 8);
            for id in 1..=3 {
                let written = pool.call(Duration::from_millis(1234), "users", &[("count", "5")], 1, id).await.unwrap();
                assert_eq!((written.epoch, written.slot, written.request_id, written.sequence), (9, 1, id, 2));
                assert_eq!(written.length, 1234, "the budget is sent in the frame");
                assert_eq!(written.content_type, "users", "the name is sent in the frame");
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
        let pool = SignalPool::new(path, LONG_SPIN, 8);
        let _other = InFlight::enter(&pool.in_flight);
        pool.call(TIMEOUT, "users", &[("count", "1")], 0, 1).await.unwrap();
        assert_eq!(pool.answer_waits(), (0, 1), "another exchange was in flight");
        server.abort();
    }

    #[tokio::test]
    async fn refusals_map_to_their_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.sock");
        let server = fake_producer(&path, |r| {
            let status = Status::from_u16(param(r)).unwrap();
            let head = RequestHead::decode(&r.encode().unwrap()[..REQUEST_HEAD_LEN]).unwrap();
            Some(Response::error(status, 9, Some(&head), "why").encode())
        })
        .await;
        let pool = SignalPool::new(path, Duration::ZERO, 8);
        for code in 1..=7u16 {
            let failure = pool.call(TIMEOUT, "x", &[("status", code.to_string())], 0, 7).await.unwrap_err();
            let status = Status::from_u16(code).unwrap();
            match status {
                Status::TimedOut => assert!(matches!(failure.error, ClientError::Timeout { timeout_ms: 1000 })),
                _ => assert_eq!(failure.error.wire_status(), Some(status), "{}", failure.error),
            }
            if status != Status::TimedOut {
                assert!(failure.error.to_string().contains("why"), "{}", failure.error);
            }
            assert!(!failure.may_still_write);
        }
        server.abort();
    }

    #[tokio::test]
    async fn a_missing_socket_is_unavailable_and_a_silent_one_times_out() {
        let dir = tempfile::tempdir().unwrap();
        let pool = SignalPool::new(dir.path().join("none.sock"), Duration::ZERO, 8);
        let failure = pool.call(TIMEOUT, "users", &[("count", "2")], 0, 1).await.unwrap_err();
        assert!(matches!(failure.error, ClientError::ProducerUnavailable { .. }), "{}", failure.error);
        assert!(!failure.may_still_write);

        let path = dir.path().join("slow.sock");
        let _listener = UnixListener::bind(&path).unwrap(); // accepts (backlog), never answers
        let pool = SignalPool::new(path, Duration::ZERO, 8);
        let failure = pool.call(Duration::from_millis(50), "users", &[("count", "2")], 0, 1).await.unwrap_err();
        assert!(matches!(failure.error, ClientError::Timeout { timeout_ms: 50 }), "{}", failure.error);
        assert!(failure.error.to_string().contains("50 ms"));
        assert!(failure.may_still_write);
    }

    #[tokio::test]
    async fn a_full_accept_queue_is_waited_out_until_the_deadline() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("busy.sock");
        // Backlog 0: the kernel queues one connection and refuses the next at once.
        let (listener, _) = crate::fsutil::bind_private_socket(&path, 0).unwrap();
        let queued = std::os::unix::net::UnixStream::connect(&path).unwrap();
        let refused = UnixStream::connect(&path).await.unwrap_err();
        assert_eq!(refused.kind(), io::ErrorKind::WouldBlock, "{refused}");

        let pool = SignalPool::new(path, Duration::ZERO, 8);
        let failure = pool.call(Duration::from_millis(50), "users", &[("count", "2")], 0, 1).await.unwrap_err();
        assert!(matches!(failure.error, ClientError::Timeout { timeout_ms: 50 }), "{}", failure.error);

        // The producer accepts again: a waiting call gets through.
        let call = tokio::spawn(async move { pool.call(TIMEOUT, "users", &[("count", "2")], 0, 2).await });
        drop(queued);
        listener.set_nonblocking(true).unwrap();
        let server = serve(UnixListener::from_std(listener).unwrap(), |r| Some(ok(r)));
        let written = call.await.unwrap().unwrap();
        assert_eq!(written.request_id, 2);
        server.abort();
    }

    #[tokio::test]
    async fn an_invalid_call_sends_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let pool = SignalPool::new(dir.path().join("none.sock"), Duration::ZERO, 8);
        let failure = pool.call(TIMEOUT, "../etc", &[("a", "b")], 0, 1).await.unwrap_err();
        assert!(matches!(failure.error, ClientError::InvalidCall(_)), "{}", failure.error);
        assert!(!failure.may_still_write);
    }

    #[tokio::test]
    async fn wrong_answers_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.sock");
        let server = fake_producer(&path, |r| match param(r) {
            0 => Some(Response { request_id: r.request_id + 1, ..Response::decode(&ok(r)).unwrap() }.encode()),
            1 => Some(Response { slot: r.slot + 1, ..Response::decode(&ok(r)).unwrap() }.encode()),
            2 => Some(b"garbage that is long enough to fill a response head, and more".to_vec()),
            _ => None,
        })
        .await;
        let pool = SignalPool::new(path, Duration::ZERO, 8);
        for case in 0..=2 {
            let failure = pool.call(TIMEOUT, "x", &[("case", case.to_string())], 0, 5).await.unwrap_err();
            assert!(matches!(failure.error, ClientError::BadAnswer { .. }), "case {case}: {}", failure.error);
            assert!(failure.may_still_write);
        }
        let failure = pool.call(TIMEOUT, "x", &[("case", "3")], 0, 5).await.unwrap_err();
        assert!(matches!(failure.error, ClientError::ProducerUnavailable { .. }), "{}", failure.error);
        server.abort();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_connection_closed_while_idle_is_replaced() {
        for spin in [Duration::ZERO, LONG_SPIN] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("c.sock");
            let server = fake_producer(&path, |r| Some(ok(r))).await;
            let pool = SignalPool::new(path.clone(), spin, 8);
            pool.call(TIMEOUT, "users", &[("count", "1")], 0, 1).await.unwrap();
            // The producer restarts: every old connection is closed.
            server.abort();
            let _ = server.await;
            std::fs::remove_file(&path).unwrap();
            let server = fake_producer(&path, |r| Some(ok(r))).await;
            tokio::time::sleep(Duration::from_millis(20)).await;
            let written = pool.call(TIMEOUT, "users", &[("count", "1")], 0, 2).await.unwrap();
            assert_eq!(written.request_id, 2, "spin {spin:?}");
            server.abort();
        }
    }
}
