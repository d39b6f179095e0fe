//! Request ids: unique per client, never 0, at most 2^63-1 (the range the
//! channel accepts). The id a slot holds proves which request its payload answers,
//! so a late write for an abandoned request is detected and never served.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

const COUNTER_BITS: u32 = 40;
const PREFIX_BITS: u32 = 23;
const COUNTER_MASK: u64 = (1 << COUNTER_BITS) - 1;
const PREFIX_MASK: u64 = (1 << PREFIX_BITS) - 1;

/// `prefix << 40 | counter`: a nonzero 23-bit prefix drawn from the start time and the
/// process id, so two clients (or two runs) rarely share ids, and a 40-bit counter.
#[derive(Debug)]
pub struct RequestIds {
    prefix: u64,
    counter: AtomicU64,
}

impl RequestIds {
    /// Ids with a prefix drawn from the time and the process id.
    #[must_use]
    pub fn new() -> Self {
        // The low 64 bits of the nanoseconds are the varying ones: the cut is wanted.
        #[allow(clippy::cast_possible_truncation)]
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
        let seed = nanos ^ (u64::from(std::process::id()) << 32);
        Self::with_prefix(splitmix64(seed))
    }

    /// Ids with the given prefix (its low 23 bits; 0 becomes 1).
    #[must_use]
    pub fn with_prefix(prefix: u64) -> Self {
        Self { prefix: (prefix & PREFIX_MASK).max(1), counter: AtomicU64::new(1) }
    }

    /// The next id.
    pub fn next_id(&self) -> u64 {
        let n = self.counter.fetch_add(1, Ordering::Relaxed) & COUNTER_MASK;
        (self.prefix << COUNTER_BITS) | n
    }
}

impl Default for RequestIds {
    fn default() -> Self {
        Self::new()
    }
}

/// A 64-bit mixer (splitmix64's finalizer), to spread a weak seed over all bits.
fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_nonzero_increasing_and_in_range() {
        for prefix in [0, 1, PREFIX_MASK, u64::MAX] {
            let ids = RequestIds::with_prefix(prefix);
            let a = ids.next_id();
            let b = ids.next_id();
            assert!(a != 0 && b == a + 1);
            assert!(b < (1 << 63));
        }
        let fresh = RequestIds::new();
        assert_ne!(fresh.next_id(), 0);
    }
}
