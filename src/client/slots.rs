//! The pool of request slots a client hands out, and their quarantine.
//!
//! Request slots `0..request_slots-1` are the client's; the last request slot is
//! reserved by the producer for calls by hand. The pool outlives the channel readers:
//! it is rebuilt only when a reopened channel has a different number of request slots
//! ([`ChannelManager`](super::channel::ChannelManager)).
//!
//! A slot whose call failed while the producer may still act on it is kept in
//! quarantine, for at most the configured delay (twice the call timeout by default),
//! but only while the producer that could write late still can
//! ([`SlotLease::quarantine_on_drop`]):
//! - a channel file created after the quarantine began is in use: a late write from
//!   any producer that could have received the request lands in an older file, never
//!   in the one now read (a producer creates its file before it listens for requests);
//! - or the file the request used is still the one on disk and its lock is free: its
//!   producer is gone, and no other producer has started since.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::{watch, Semaphore};

use super::error::ClientError;
use crate::ChannelReader;

/// The slots a client may ask the producer to write: a free list guarded by a
/// semaphore whose permits count the free slots.
#[derive(Debug)]
pub struct SlotPool {
    request_slots: u32,
    size: usize,
    permits: Semaphore,
    /// Requests waiting in [`acquire`](Self::acquire) right now (for `/metrics`).
    waiters: AtomicUsize,
    // Last in, first out: the most recently used slot is the warmest in the page cache.
    free: Mutex<Vec<u32>>,
    /// The newest channel epoch opened with this pool: quarantines that began before
    /// it end ([`SlotLease::quarantine_on_drop`]).
    newest_epoch: watch::Sender<u64>,
}

impl SlotPool {
    /// A pool of slots `0..request_slots-1` (the last request slot is the producer's).
    ///
    /// # Errors
    /// [`ClientError::TooFewSlots`] if the channel has fewer than two request slots.
    pub fn new(request_slots: u32) -> Result<Self, ClientError> {
        if request_slots < 2 {
            return Err(ClientError::TooFewSlots { request_slots });
        }
        let free: Vec<u32> = (0..request_slots - 1).rev().collect();
        let size = free.len();
        Ok(Self {
            request_slots,
            size,
            permits: Semaphore::new(size),
            waiters: AtomicUsize::new(0),
            free: Mutex::new(free),
            newest_epoch: watch::Sender::new(0),
        })
    }

    /// A channel file with creation epoch `epoch` was opened for this pool.
    pub fn opened_epoch(&self, epoch: u64) {
        self.newest_epoch.send_if_modified(|newest| {
            let newer = epoch > *newest;
            if newer {
                *newest = epoch;
            }
            newer
        });
    }

    /// Request slots of the channel this pool was sized for.
    #[must_use]
    pub fn request_slots(&self) -> u32 {
        self.request_slots
    }

    /// Slots this pool hands out.
    #[must_use]
    pub fn size(&self) -> usize {
        self.size
    }

    /// Slots free right now (neither leased nor in quarantine).
    #[must_use]
    pub fn available(&self) -> usize {
        self.permits.available_permits()
    }

    /// Slots leased or in quarantine.
    #[must_use]
    pub fn in_use(&self) -> usize {
        self.size.saturating_sub(self.available())
    }

    /// Calls waiting for a free slot right now.
    #[must_use]
    pub fn waiters(&self) -> usize {
        self.waiters.load(Ordering::Relaxed)
    }

    /// Takes a free slot, waiting at most `wait` for one.
    ///
    /// # Errors
    /// [`ClientError::NoFreeSlot`] after `wait`.
    pub async fn acquire(self: &Arc<Self>, wait: Duration) -> Result<SlotLease, ClientError> {
        let no_slot = || ClientError::NoFreeSlot { waited_ms: millis(wait), slots: self.size };
        // Counted as a waiter only when no slot is free (a gauge: the race is harmless).
        let _waiting = (self.permits.available_permits() == 0).then(|| Waiter::enter(&self.waiters));
        // `timeout` polls the semaphore before looking at the clock, so a wait of 0
        // still takes a slot that is free.
        let permit = match tokio::time::timeout(wait, self.permits.acquire()).await {
            Ok(Ok(permit)) => permit,
            Ok(Err(_closed)) => return Err(ClientError::Internal("the slot pool was closed".into())),
            Err(_elapsed) => return Err(no_slot()),
        };
        // The permit now stands for the slot popped below; the lease gives both back.
        permit.forget();
        let slot = self.free.lock().unwrap_or_else(PoisonError::into_inner).pop();
        match slot {
            Some(slot) => Ok(SlotLease { pool: Arc::clone(self), slot, quarantine: None }),
            None => {
                self.permits.add_permits(1);
                Err(ClientError::Internal("the slot pool lost count of its free slots".into()))
            }
        }
    }

    fn put_back(&self, slot: u32) {
        self.free.lock().unwrap_or_else(PoisonError::into_inner).push(slot);
        self.permits.add_permits(1);
    }
}

/// One request counted in [`SlotPool::waiters`] until dropped (also when cancelled).
struct Waiter<'a>(&'a AtomicUsize);

impl<'a> Waiter<'a> {
    fn enter(count: &'a AtomicUsize) -> Self {
        count.fetch_add(1, Ordering::Relaxed);
        Self(count)
    }
}

impl Drop for Waiter<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One slot taken from a [`SlotPool`]. Dropping the lease gives the slot back, at once
/// or, while quarantine is armed, once the producer can no longer write into it: the
/// producer may still write into a slot whose call timed out or was abandoned (a
/// client that went away cancels the request at any `.await`).
#[derive(Debug)]
pub struct SlotLease {
    pool: Arc<SlotPool>,
    slot: u32,
    quarantine: Option<Quarantine>,
}

/// What a quarantine waits for: the delay, or the end of the producer that could write.
#[derive(Debug)]
struct Quarantine {
    delay: Duration,
    /// The channel the request was made on (its file and lock).
    reader: Arc<ChannelReader>,
}

/// How often a quarantined slot checks whether its producer is gone. Each check is a
/// `stat` and a moment's shared lock; a starting producer retries a lock it finds taken
/// for ~100 ms (`shmbridge::ChannelWriter::create`), far longer than a check holds it.
const PRODUCER_CHECK_INTERVAL: Duration = Duration::from_millis(50);

/// Why a quarantine ended, for the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum QuarantineEnd {
    Delay,
    NewerChannel,
    ProducerGone,
}

impl QuarantineEnd {
    fn name(self) -> &'static str {
        match self {
            QuarantineEnd::Delay => "delay over",
            QuarantineEnd::NewerChannel => "a newer channel file is in use",
            QuarantineEnd::ProducerGone => "the producer that could write is gone",
        }
    }
}

impl SlotLease {
    /// The slot leased.
    #[must_use]
    pub fn slot(&self) -> u32 {
        self.slot
    }

    /// From now until [`release_now_on_drop`](Self::release_now_on_drop), dropping the
    /// lease keeps the slot out of the pool for at most `delay`: it returns sooner once
    /// the producer of `reader`'s channel, the one the request was sent to, can no longer write
    /// (see the module's documentation).
    pub fn quarantine_on_drop(&mut self, delay: Duration, reader: &Arc<ChannelReader>) {
        self.quarantine = Some(Quarantine { delay, reader: Arc::clone(reader) });
    }

    /// The producer is known not to write into the slot any more.
    pub fn release_now_on_drop(&mut self) {
        self.quarantine = None;
    }
}

impl Drop for SlotLease {
    fn drop(&mut self) {
        let slot = self.slot;
        match (self.quarantine.take(), tokio::runtime::Handle::try_current()) {
            (Some(quarantine), Ok(runtime)) => {
                tracing::warn!(
                    slot,
                    delay_ms = millis(quarantine.delay),
                    "slot quarantined: a late write may still land in it"
                );
                // Taken now, after every send of the request: a file created later was
                // never asked for this write.
                let began = unix_nanos(SystemTime::now());
                let pool = Arc::clone(&self.pool);
                runtime.spawn(async move {
                    let end = wait_out(&pool, &quarantine, began).await;
                    pool.put_back(slot);
                    tracing::info!(slot, reason = end.name(), "slot back from quarantine");
                });
            }
            // No runtime (shutting down): nothing will use the pool again anyway.
            _ => self.pool.put_back(slot),
        }
    }
}

/// Waits until the quarantine that began at `began` (ns since the Unix epoch) may end.
async fn wait_out(pool: &SlotPool, quarantine: &Quarantine, began: u64) -> QuarantineEnd {
    let mut epochs = pool.newest_epoch.subscribe();
    let delay = tokio::time::sleep(quarantine.delay);
    tokio::pin!(delay);
    let mut check = tokio::time::interval(PRODUCER_CHECK_INTERVAL);
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = &mut delay => return QuarantineEnd::Delay,
            // The sender lives in `pool`, which outlives this wait: no error to expect.
            Ok(_) = epochs.wait_for(|&newest| newest > began) => return QuarantineEnd::NewerChannel,
            _ = check.tick() => {
                let reader = &quarantine.reader;
                // Current and unlocked: its producer died and none has started since.
                if reader.is_current() && !reader.producer_alive() {
                    return QuarantineEnd::ProducerGone;
                }
            }
        }
    }
}

fn unix_nanos(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

pub(crate) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
