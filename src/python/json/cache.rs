//! Caches of escaped str text, found by the address of the str object.

use pyo3::prelude::*;
use pyo3::types::PyString;

use super::escape::{escape_into, ESCAPE_ROOM};
use super::out::Scratch;

pub(super) const CACHE_SLOTS: usize = 256;
/// Bytes of a cache entry: `,"key":` (or `"value"`) must fit, plus the slack of a fixed-size copy.
pub(super) const CACHED_TEXT: usize = 48;
/// Longest entry text (comma included); the copy takes `CACHED_COPY` bytes whatever the length
/// (`CACHED_COPY + 1 <= CACHED_TEXT`, since the copy may start at byte 1).
pub(super) const CACHED_COPY: usize = 40;
/// Strs inserted into each cache per call, at most (it keeps a reference to each).
pub(super) const CACHE_INSERTS: usize = 512;

/// One cached str: its address and its text escaped (`,"key":` or `"value"`), ready to copy.
#[derive(Clone, Copy)]
#[repr(align(64))]
pub(super) struct CachedText {
    pub(super) address: usize,
    pub(super) len: usize,
    pub(super) text: [u8; CACHED_TEXT],
}

impl CachedText {
    pub(super) const EMPTY: Self = Self { address: 0, len: 0, text: [0; CACHED_TEXT] };
}

/// The slots of a [`TextCache`], kept across calls.
pub(super) type CacheSlots = Box<[CachedText; CACHE_SLOTS]>;

/// Strings already escaped, found by the address of their `str` object and
/// copied whole: dict keys as `,"key":` (rows of one shape share their key
/// objects), and short values that recur as the same object (`"value"`, such as
/// names drawn from a small set).
///
/// Sound because the cache holds a strong reference to every str it describes:
/// while it lives, no other object can take that address, and `str` is immutable.
pub(super) struct TextCache<'s> {
    /// Two-way by object address (a home slot and its pair); address 0: empty.
    pub(super) slots: &'s mut [CachedText; CACHE_SLOTS],
    /// The strs cached this call (empty between calls; kept for its capacity).
    pub(super) owners: &'s mut Vec<Py<PyString>>,
}

impl<'s> TextCache<'s> {
    pub(super) fn new(slots: &'s mut CacheSlots, owners: &'s mut Vec<Py<PyString>>) -> Self {
        Self { slots, owners }
    }

    /// Empties the slots this call filled and drops its references (the GIL is
    /// held: the serializer's caller holds it), for reuse.
    #[inline]
    pub(super) fn clear(&mut self) {
        if self.owners.is_empty() {
            // Nothing cached this call (a small value): nothing to clear.
            return;
        }
        self.clear_slots();
    }

    #[inline(never)]
    fn clear_slots(&mut self) {
        for key in self.owners.iter() {
            let address = key.as_ptr() as usize;
            let home = Self::home(address);
            for slot in [home, home ^ 1] {
                if self.slots[slot].address == address {
                    self.slots[slot].address = 0;
                }
            }
        }
        self.owners.clear();
    }

    /// Home slot of an address (Fibonacci hashing: object addresses are aligned
    /// and often a power of two apart, so their low bits alone collide). The
    /// multiplier is 2**64 / golden ratio divided by 16: for 16-byte aligned
    /// addresses (CPython's allocations) that is, within a rounding of the
    /// constant, Fibonacci hashing of the address in 16-byte units, without a
    /// shift. Fibonacci hashing spreads consecutive integers best: objects laid
    /// out in a row (3.12's and 3.13's statically allocated one-character strs,
    /// 48 bytes apart) land far apart, where the full multiplier on the raw
    /// address put some of them a slot apart ("a" and "d"), sharing a pair.
    #[inline(always)]
    pub(super) fn home(address: usize) -> usize {
        ((address as u64).wrapping_mul(0x09E3_779B_97F4_A7C1) >> 56) as usize
    }

    /// The entry for `address`: in its home slot, or else in the home's pair
    /// (`home ^ 1`), so that two strings colliding both stay cached.
    #[inline(always)]
    pub(super) fn get(&self, address: usize) -> Option<&CachedText> {
        let home = Self::home(address);
        let entry = &self.slots[home];
        if entry.address == address {
            return Some(entry);
        }
        let pair = &self.slots[home ^ 1];
        (pair.address == address).then_some(pair)
    }

    /// Caches `open`, `utf8` escaped, `close` for `s` if it fits and a slot is free.
    #[cold]
    pub(super) fn insert(&mut self, s: Borrowed<'_, '_, PyString>, utf8: &[u8], open: &[u8], close: &[u8]) {
        if utf8.len() > CACHED_COPY || self.owners.len() >= CACHE_INSERTS {
            return;
        }
        let address = s.as_ptr() as usize;
        // First come, first kept: a str whose two slots are taken is simply not
        // cached (no thrashing).
        let home = Self::home(address);
        let Some(slot) = [home, home ^ 1].into_iter().find(|&slot| self.slots[slot].address == 0) else {
            return;
        };
        // The open quote (or comma and quote), then the escaped text.
        let mut escaped = Scratch::<[_; 2 + 6 * CACHED_COPY + ESCAPE_ROOM]>::new();
        escaped.out()[..open.len()].put(open);
        let end = escape_into(escaped.out(), open.len(), utf8);
        let len = end + close.len();
        if len > CACHED_COPY {
            return;
        }
        escaped.out()[end..len].put(close);
        let mut text = [0u8; CACHED_TEXT];
        text[..len].copy_from_slice(escaped.bytes(0..len));
        self.slots[slot] = CachedText { address, len, text };
        self.owners.push(s.to_owned().unbind());
    }
}

/// Addresses of str values seen once this call, by home slot and its pair (as
/// in [`TextCache`]): a value seen a second time is worth caching. Only a hint
/// (no reference is held, an address is never followed): a stale or reused
/// address at worst caches a str once more.
pub(super) struct SeenOnce<'s> {
    pub(super) addresses: &'s mut [usize; CACHE_SLOTS],
    /// Added to each address: a new one per call, so that what an earlier call
    /// saw does not count (the caches start empty each call).
    pub(super) salt: usize,
}

impl SeenOnce<'_> {
    /// Records `address`; true if it was already there (seen before).
    ///
    /// Two ways, so that two strs whose addresses share a pair of slots, seen in
    /// turn (two keys of every row), do not keep pushing each other out and so
    /// never count as seen: which pairs of keys collide depends on where the
    /// allocator put them, and with one way a run of the same data could cost
    /// a sixth more than another.
    #[inline(always)]
    pub(super) fn again(&mut self, address: usize) -> bool {
        // The pair of the home slot: its even slot holds the newest address, the
        // odd one the address that one displaced (whichever of the two is home).
        let newer = TextCache::home(address) & !1;
        let salted = address.wrapping_add(self.salt);
        if self.addresses[newer] == salted || self.addresses[newer | 1] == salted {
            return true;
        }
        self.addresses[newer | 1] = self.addresses[newer];
        self.addresses[newer] = salted;
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_addresses_of_one_home_pair_seen_in_turn_both_count_as_seen_again() {
        let mut addresses = [0usize; CACHE_SLOTS];
        let mut seen = SeenOnce { addresses: &mut addresses, salt: 7 };
        // Two addresses whose homes fall in one pair of slots.
        let first = 0x7f00_0000_1000usize;
        let second = (1..10_000)
            .map(|i| first + 16 * i)
            .find(|&a| TextCache::home(a) >> 1 == TextCache::home(first) >> 1)
            .expect("some address shares the pair");
        assert!(!seen.again(first));
        assert!(!seen.again(second));
        assert!(seen.again(first));
        assert!(seen.again(second));
    }

    #[test]
    fn objects_laid_out_in_a_row_spread_over_the_pairs() {
        // 3.13's one-character strs: 48 bytes apart. For a few base addresses,
        // no pair of slots takes three of 26 such objects (26 letters).
        for base in [0x7f12_3456_7798usize, 0x7ff4_0613_c798, 0x5555_5555_0000, 0x7f00_0000_1008] {
            let mut per_pair = [0u8; CACHE_SLOTS / 2];
            for i in 0..26 {
                per_pair[TextCache::home(base + 48 * i) >> 1] += 1;
            }
            assert!(per_pair.iter().all(|&n| n <= 2), "base {base:#x}");
        }
    }
}
