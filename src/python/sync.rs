//! What the channel shares with the reservations it hands out: the count of live
//! memoryviews, and a lock that survives a panic elsewhere.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// Live memoryviews over this channel's slots, counted so that `close()` can
/// refuse while one exists. Lock order: a reservation's state, then this.
pub type ExportCount = Arc<Mutex<usize>>;

pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
