//! When to poll for a signal-socket message instead of sleeping on it.
//!
//! Polling (a non-blocking read in a loop, for a bounded time) keeps the CPU awake,
//! which on a virtual machine saves the tens of microseconds of waking an idle one.
//! It pays only when the message comes within the budget; a poll that runs out is
//! CPU taken from other work. [`WaitPredictor`] predicts the next wait from the last
//! one, measured whether or not it was polled for: poll only when the last wait fit
//! the budget. Short exchanges (a few users, one client) keep polling; long ones (a
//! large payload, many clients sharing the producer) do not poll at all. Shared by
//! the gateway, waiting for an answer, and the producer, waiting for the next request;
//! both poll with [`poll_recv`].

use std::io;
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rustix::io::Errno;
use rustix::net::RecvFlags;

/// Longest polling budget either service accepts, in microseconds (the gateway's and
/// `serve_uds`'s `spin_us`): a poll is worth it only for short waits.
pub const MAX_SPIN_US: u64 = 1000;

/// What [`poll_recv`] does with the bytes it finds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecvMode {
    /// Takes them off the socket.
    Consume,
    /// Leaves them there for the next read.
    Peek,
}

/// Polls `socket` with non-blocking receives into `buf` for up to `budget`, while
/// `keep_polling()` holds, yielding the CPU between turns (a thread waiting for this
/// CPU runs at once, and an idle CPU stays awake).
///
/// Returns the bytes received (0: end of stream), or `None` when nothing came within
/// the budget, `keep_polling()` turned false, or the budget is zero. The receives go
/// straight to the socket, past any readiness cache of an async runtime.
///
/// # Errors
/// The receive failed (other than "nothing yet" or an interruption).
pub fn poll_recv(
    socket: impl AsFd,
    buf: &mut [u8],
    mode: RecvMode,
    budget: Duration,
    mut keep_polling: impl FnMut() -> bool,
) -> io::Result<Option<usize>> {
    if budget.is_zero() {
        return Ok(None);
    }
    let flags = match mode {
        RecvMode::Consume => RecvFlags::DONTWAIT,
        RecvMode::Peek => RecvFlags::DONTWAIT | RecvFlags::PEEK,
    };
    let deadline = Instant::now() + budget;
    loop {
        match rustix::net::recv(&socket, &mut *buf, flags) {
            Ok((read, _)) => return Ok(Some(read)),
            Err(Errno::AGAIN | Errno::INTR) => {}
            Err(errno) => return Err(errno.into()),
        }
        if !keep_polling() || Instant::now() >= deadline {
            return Ok(None);
        }
        std::thread::yield_now();
    }
}

/// The latest wait; a relaxed atomic, as races only blur a heuristic.
#[derive(Debug, Default)]
pub struct WaitPredictor {
    last_wait_ns: AtomicU64,
}

impl WaitPredictor {
    /// A predictor whose first guess is "short": the first wait is polled for.
    #[must_use]
    pub const fn new() -> Self {
        Self { last_wait_ns: AtomicU64::new(0) }
    }

    /// Whether the next wait is likely to end within `budget`.
    #[must_use]
    pub fn fits(&self, budget: Duration) -> bool {
        !budget.is_zero() && u128::from(self.last_wait_ns.load(Ordering::Relaxed)) < budget.as_nanos()
    }

    /// How long the wait just ended took.
    pub fn record(&self, wait: Duration) {
        let nanos = u64::try_from(wait.as_nanos()).unwrap_or(u64::MAX);
        self.last_wait_ns.store(nanos, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BUDGET: Duration = Duration::from_micros(100);

    #[test]
    fn polls_first_then_follows_the_last_wait() {
        let predictor = WaitPredictor::new();
        assert!(predictor.fits(BUDGET));
        predictor.record(Duration::from_micros(300));
        assert!(!predictor.fits(BUDGET));
        predictor.record(Duration::from_micros(40));
        assert!(predictor.fits(BUDGET));
        predictor.record(BUDGET);
        assert!(!predictor.fits(BUDGET), "a wait as long as the budget would have run out");
    }

    #[test]
    fn a_zero_budget_never_polls() {
        assert!(!WaitPredictor::new().fits(Duration::ZERO));
    }

    #[test]
    fn poll_recv_peeks_consumes_and_gives_up() {
        use std::io::Write as _;
        let (mut a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        let mut buf = [0u8; 4];
        let long = Duration::from_secs(5);
        assert_eq!(poll_recv(&b, &mut buf, RecvMode::Consume, Duration::ZERO, || true).unwrap(), None);
        assert_eq!(poll_recv(&b, &mut buf, RecvMode::Consume, Duration::from_millis(1), || true).unwrap(), None);
        assert_eq!(poll_recv(&b, &mut buf, RecvMode::Consume, long, || false).unwrap(), None, "told to stop");
        a.write_all(b"abcdef").unwrap();
        assert_eq!(poll_recv(&b, &mut buf, RecvMode::Peek, long, || true).unwrap(), Some(4));
        assert_eq!(poll_recv(&b, &mut buf, RecvMode::Consume, long, || true).unwrap(), Some(4));
        assert_eq!(&buf, b"abcd", "the peek left the bytes in place");
        assert_eq!(poll_recv(&b, &mut buf, RecvMode::Consume, long, || true).unwrap(), Some(2));
        drop(a);
        assert_eq!(poll_recv(&b, &mut buf, RecvMode::Peek, long, || true).unwrap(), Some(0), "end of stream");
    }

    #[test]
    fn huge_waits_saturate() {
        let predictor = WaitPredictor::new();
        predictor.record(Duration::MAX);
        assert!(!predictor.fits(Duration::from_secs(1)));
    }
}
