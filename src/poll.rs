//! When to poll for a signal-socket message instead of sleeping on it.
//!
//! Polling (a non-blocking read in a loop, for a bounded time) keeps the CPU awake,
//! which on a virtual machine saves the tens of microseconds of waking an idle one.
//! It pays only when the message comes within the budget; a poll that runs out is
//! CPU taken from other work. [`PollGate`] backs off after each poll that ran out:
//! it then skips 1, 2, 4, ... up to [`MAX_SKIP`] chances to poll, and a poll that
//! succeeds resets it. Short exchanges (a few users, one client) keep polling;
//! long ones (a large payload, a busy machine) soon stop. Shared by the gateway,
//! waiting for an answer, and the producer, waiting for the next request.

use std::sync::atomic::{AtomicU32, Ordering};

/// Most chances to poll skipped after a run of polls that ran out.
pub const MAX_SKIP: u32 = 64;

/// Back-off state; relaxed atomics, as races only blur a heuristic.
#[derive(Debug, Default)]
pub struct PollGate {
    /// Chances still to skip.
    skip: AtomicU32,
    /// Chances skipped after the latest poll that ran out (0 after a success).
    penalty: AtomicU32,
}

impl PollGate {
    #[must_use]
    pub const fn new() -> Self {
        Self { skip: AtomicU32::new(0), penalty: AtomicU32::new(0) }
    }

    /// Whether to poll this time (consumes a skip when not).
    pub fn should_poll(&self) -> bool {
        self.skip.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1)).is_err()
    }

    /// How the poll ended: `true` if the message came while polling.
    pub fn record(&self, caught: bool) {
        if caught {
            self.penalty.store(0, Ordering::Relaxed);
            self.skip.store(0, Ordering::Relaxed);
        } else {
            let penalty = (self.penalty.load(Ordering::Relaxed) * 2).clamp(1, MAX_SKIP);
            self.penalty.store(penalty, Ordering::Relaxed);
            self.skip.store(penalty, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn polls_in(gate: &PollGate, chances: u32) -> u32 {
        (0..chances).map(|_| u32::from(gate.should_poll())).sum()
    }

    #[test]
    fn polls_every_time_while_polls_succeed() {
        let gate = PollGate::new();
        for _ in 0..100 {
            assert!(gate.should_poll());
            gate.record(true);
        }
    }

    #[test]
    fn backs_off_exponentially_after_misses_up_to_the_cap() {
        let gate = PollGate::new();
        let mut skipped = Vec::new();
        for _ in 0..9 {
            let mut skips = 0;
            while !gate.should_poll() {
                skips += 1;
            }
            skipped.push(skips);
            gate.record(false);
        }
        assert_eq!(skipped, [0, 1, 2, 4, 8, 16, 32, 64, 64]);
    }

    #[test]
    fn one_success_resets_the_back_off() {
        let gate = PollGate::new();
        for _ in 0..10 {
            gate.record(false);
        }
        assert_eq!(polls_in(&gate, MAX_SKIP), 0);
        assert!(gate.should_poll());
        gate.record(true);
        assert_eq!(polls_in(&gate, 10), 10);
    }
}
