//! When to poll for a signal-socket message instead of sleeping on it.
//!
//! Polling (a non-blocking read in a loop, for a bounded time) keeps the CPU awake,
//! which on a virtual machine saves the tens of microseconds of waking an idle one.
//! It pays only when the message comes within the budget; a poll that runs out is
//! CPU taken from other work. [`WaitPredictor`] predicts the next wait from the last
//! one, measured whether or not it was polled for: poll only when the last wait fit
//! the budget. Short exchanges (a few users, one client) keep polling; long ones (a
//! large payload, many clients sharing the producer) do not poll at all. Shared by
//! the gateway, waiting for an answer, and the producer, waiting for the next request.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

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
    fn huge_waits_saturate() {
        let predictor = WaitPredictor::new();
        predictor.record(Duration::MAX);
        assert!(!predictor.fits(Duration::from_secs(1)));
    }
}
