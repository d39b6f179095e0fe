//! Reused buffers for slot copies.
//!
//! A fresh `Vec` for every copy out of the channel costs more than the copy: the
//! allocator hands out new pages, and the kernel faults each one in and zeroes it
//! (70 pages at 1,000 users, 7,000 at 100,000). A copy into a buffer that served an
//! earlier request writes into pages that are already mapped. The buffer goes back to
//! the pool when the response body that holds it is dropped, after it was sent.

use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;

/// Buffers kept for reuse, within a byte budget.
#[derive(Debug)]
pub struct BufferPool {
    free: Mutex<Free>,
    /// Most capacity, in bytes, the pool keeps while nothing uses it.
    budget: usize,
}

/// The idle buffers and their total capacity, kept together under one lock.
#[derive(Debug, Default)]
struct Free {
    buffers: Vec<Vec<u8>>,
    bytes: usize,
}

/// At most this much idle capacity is kept: enough for four 29 MB bodies (100,000 users)
/// or hundreds of small ones. Larger buffers are simply freed.
pub const DEFAULT_BUDGET: usize = 128 << 20;

impl Default for BufferPool {
    fn default() -> Self {
        Self::with_budget(DEFAULT_BUDGET)
    }
}

impl BufferPool {
    #[must_use]
    pub fn with_budget(budget: usize) -> Self {
        Self { free: Mutex::new(Free::default()), budget }
    }

    /// An empty buffer, with the capacity of one used before when there is one.
    #[must_use]
    pub fn take(&self) -> Vec<u8> {
        let mut free = self.free.lock().unwrap_or_else(PoisonError::into_inner);
        let buf = free.buffers.pop().unwrap_or_default();
        free.bytes -= buf.capacity();
        buf
    }

    /// Keeps `buf` for a later [`take`](Self::take), unless that would exceed the budget.
    pub fn give(&self, mut buf: Vec<u8>) {
        buf.clear();
        let mut free = self.free.lock().unwrap_or_else(PoisonError::into_inner);
        if buf.capacity() > 0 && free.bytes + buf.capacity() <= self.budget {
            free.bytes += buf.capacity();
            free.buffers.push(buf);
        }
    }

    /// Idle capacity kept, in bytes.
    #[must_use]
    pub fn idle_bytes(&self) -> usize {
        self.free.lock().unwrap_or_else(PoisonError::into_inner).bytes
    }

    /// `buf` as a response body; the buffer returns to the pool when the body is dropped.
    #[must_use]
    pub fn into_bytes(self: &Arc<Self>, buf: Vec<u8>) -> Bytes {
        Bytes::from_owner(Pooled { buf, pool: Arc::clone(self) })
    }
}

/// A buffer on loan to a response body.
struct Pooled {
    buf: Vec<u8>,
    pool: Arc<BufferPool>,
}

impl AsRef<[u8]> for Pooled {
    fn as_ref(&self) -> &[u8] {
        &self.buf
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        self.pool.give(std::mem::take(&mut self.buf));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dropped_body_returns_its_buffer_for_the_next_copy() {
        let pool = Arc::new(BufferPool::with_budget(1 << 20));
        let mut buf = pool.take();
        buf.extend_from_slice(&[7; 5000]);
        let capacity = buf.capacity();
        let body = pool.into_bytes(buf);
        let slice = body.slice(10..20); // a clone of the body keeps the buffer on loan
        drop(body);
        assert_eq!(pool.idle_bytes(), 0);
        assert_eq!(&slice[..], &[7; 10]);
        drop(slice);
        assert_eq!(pool.idle_bytes(), capacity);
        let again = pool.take();
        assert!(again.is_empty());
        assert_eq!(again.capacity(), capacity);
    }

    #[test]
    fn buffers_beyond_the_budget_are_freed() {
        let pool = BufferPool::with_budget(10_000);
        pool.give(Vec::with_capacity(6000));
        pool.give(Vec::with_capacity(6000));
        assert_eq!(pool.idle_bytes(), 6000);
        pool.give(Vec::new());
        assert_eq!(pool.idle_bytes(), 6000);
    }
}
