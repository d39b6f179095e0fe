//! The gateway's side of the shared-memory channel: the open [`ChannelReader`] and
//! the pool of slots this gateway hands out.
//!
//! The reader is opened lazily on the first shared-memory request and reopened when
//! the file on disk is no longer the one mapped (the producer restarted) or when the
//! producer answers with a different epoch. The slot pool is sized from the channel's
//! geometry: request slots `0..request_slots-1`, the last request slot being reserved
//! by the producer for hand-made calls. The pool outlives the readers: it is rebuilt
//! only when a reopened channel has a different number of request slots.
//!
//! A slot whose write request failed while the producer may still act on it is kept in
//! quarantine, for at most `--producer-timeout-ms` x 2, but only while the producer
//! that could write late still can ([`SlotLease::quarantine_on_drop`]):
//! - a channel file created after the quarantine began is in use: a late write from
//!   any producer that could have received the request lands in an older file, never
//!   in the one now read (a producer creates its file before it listens for requests);
//! - or the file the request used is still the one on disk and its lock is free: its
//!   producer is gone, and no other producer has started since.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use shmbridge::ChannelReader;
use tokio::sync::{watch, Semaphore};

use crate::error::AppError;

/// A mapped channel file and the slot pool that goes with its geometry.
#[derive(Debug)]
pub struct OpenChannel {
    pub reader: Arc<ChannelReader>,
    pub slots: Arc<SlotPool>,
}

/// Opens the channel file on demand and keeps it open.
#[derive(Debug)]
pub struct ChannelManager {
    path: PathBuf,
    // A std lock: held only for a few syscalls (open, fstat, mmap), never across `.await`.
    cached: RwLock<Option<Arc<OpenChannel>>>,
    /// The pool of the last channel opened, kept when the reader is dropped (only taken
    /// with `cached` write-locked).
    pool: Mutex<Option<Arc<SlotPool>>>,
}

impl ChannelManager {
    #[must_use]
    pub fn new(path: PathBuf) -> Self {
        Self { path, cached: RwLock::new(None), pool: Mutex::new(None) }
    }

    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The slot pool of the last channel opened, if any (for `/metrics`).
    #[must_use]
    pub fn pool(&self) -> Option<Arc<SlotPool>> {
        self.pool.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// The open channel, opened or reopened as needed.
    ///
    /// # Errors
    /// [`AppError::Channel`] if the file is missing, stale, corrupt or truncated.
    pub fn get(&self) -> Result<Arc<OpenChannel>, AppError> {
        let cached = self.cached.read().unwrap_or_else(PoisonError::into_inner).clone();
        if let Some(channel) = cached {
            if channel.reader.is_current() {
                return Ok(channel);
            }
        }
        let mut cached = self.cached.write().unwrap_or_else(PoisonError::into_inner);
        // Another request may have reopened it while this one waited for the lock.
        if let Some(channel) = cached.as_ref().filter(|c| c.reader.is_current()) {
            return Ok(Arc::clone(channel));
        }
        self.open_into(&mut cached)
    }

    /// The channel whose file has creation epoch `epoch` (the one the producer says it
    /// wrote into), reopening if `seen` maps an older file.
    ///
    /// # Errors
    /// [`AppError::Channel`] if the file cannot be opened, or still has another epoch
    /// (the producer and the gateway do not share a directory and channel name).
    pub fn for_epoch(&self, seen: &Arc<OpenChannel>, epoch: u64) -> Result<Arc<OpenChannel>, AppError> {
        if seen.reader.epoch() == epoch {
            return Ok(Arc::clone(seen));
        }
        let mut cached = self.cached.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(channel) = cached.as_ref().filter(|c| c.reader.epoch() == epoch) {
            return Ok(Arc::clone(channel));
        }
        let channel = self.open_into(&mut cached)?;
        if channel.reader.epoch() != epoch {
            return Err(AppError::Channel(format!(
                "the producer wrote into a channel with epoch {epoch}, but {} has epoch {}: \
                 do the producer and the gateway use the same --shm-dir and --channel?",
                self.path.display(),
                channel.reader.epoch()
            )));
        }
        Ok(channel)
    }

    /// Drops the cached channel if it is still `seen`, so the next request reopens it.
    pub fn forget(&self, seen: &Arc<OpenChannel>) {
        let mut cached = self.cached.write().unwrap_or_else(PoisonError::into_inner);
        if cached.as_ref().is_some_and(|c| Arc::ptr_eq(c, seen)) {
            *cached = None;
        }
    }

    /// Opens the file afresh into `cached`; on failure `cached` is emptied.
    fn open_into(&self, cached: &mut Option<Arc<OpenChannel>>) -> Result<Arc<OpenChannel>, AppError> {
        *cached = None;
        let reader = ChannelReader::open(&self.path)?;
        if !reader.producer_alive() {
            return Err(AppError::Channel(format!(
                "channel file {} was left by a producer that is no longer running (is the producer running?)",
                self.path.display()
            )));
        }
        let request_slots = reader.geometry().request_slots();
        let mut pool = self.pool.lock().unwrap_or_else(PoisonError::into_inner);
        let slots = match pool.as_ref() {
            Some(old) if old.request_slots() == request_slots => Arc::clone(old),
            _ => {
                let fresh = Arc::new(SlotPool::new(request_slots).map_err(AppError::Channel)?);
                *pool = Some(Arc::clone(&fresh));
                fresh
            }
        };
        drop(pool);
        slots.opened_epoch(reader.epoch());
        tracing::info!(
            path = %self.path.display(),
            epoch = reader.epoch(),
            request_slots,
            pool = slots.size(),
            slot_capacity = reader.geometry().slot_capacity,
            "channel opened"
        );
        let channel = Arc::new(OpenChannel { reader: Arc::new(reader), slots });
        *cached = Some(Arc::clone(&channel));
        Ok(channel)
    }
}

/// The slots this gateway may ask the producer to write: a free list guarded by a
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
    /// A sentence if the channel has fewer than two request slots.
    pub fn new(request_slots: u32) -> Result<Self, String> {
        if request_slots < 2 {
            return Err(format!(
                "the channel has {request_slots} request slot(s); the gateway needs at least 2 \
                 (the last one is reserved for hand calls): raise the producer's --slot-count"
            ));
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

    /// Requests waiting for a free slot right now.
    #[must_use]
    pub fn waiters(&self) -> usize {
        self.waiters.load(Ordering::Relaxed)
    }

    /// Takes a free slot, waiting at most `wait` for one.
    ///
    /// # Errors
    /// [`AppError::NoFreeSlot`] after `wait`.
    pub async fn acquire(self: &Arc<Self>, wait: Duration) -> Result<SlotLease, AppError> {
        let no_slot = || AppError::NoFreeSlot { waited_ms: millis(wait), slots: self.size };
        // Counted as a waiter only when no slot is free (a gauge: the race is harmless).
        let _waiting = (self.permits.available_permits() == 0).then(|| Waiter::enter(&self.waiters));
        // `timeout` polls the semaphore before looking at the clock, so a wait of 0
        // still takes a slot that is free.
        let permit = match tokio::time::timeout(wait, self.permits.acquire()).await {
            Ok(Ok(permit)) => permit,
            Ok(Err(_closed)) => return Err(AppError::Internal("the slot pool was closed".into())),
            Err(_elapsed) => return Err(no_slot()),
        };
        // The permit now stands for the slot popped below; the lease gives both back.
        permit.forget();
        let slot = self.free.lock().unwrap_or_else(PoisonError::into_inner).pop();
        match slot {
            Some(slot) => Ok(SlotLease { pool: Arc::clone(self), slot, quarantine: None }),
            None => {
                self.permits.add_permits(1);
                Err(AppError::Internal("the slot pool lost count of its free slots".into()))
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
    #[must_use]
    pub fn slot(&self) -> u32 {
        self.slot
    }

    /// From now until [`release_now_on_drop`](Self::release_now_on_drop), dropping the
    /// lease keeps the slot out of the pool for at most `delay`: it returns sooner once
    /// the producer of `channel`, the one the request was sent to, can no longer write
    /// (see the module's documentation).
    pub fn quarantine_on_drop(&mut self, delay: Duration, channel: &OpenChannel) {
        self.quarantine = Some(Quarantine { delay, reader: Arc::clone(&channel.reader) });
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

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn pool_hands_out_all_but_the_reserved_slot() {
        let pool = Arc::new(SlotPool::new(4).unwrap());
        assert_eq!(pool.size(), 3);
        let a = pool.acquire(Duration::ZERO).await.unwrap();
        let b = pool.acquire(Duration::ZERO).await.unwrap();
        let c = pool.acquire(Duration::ZERO).await.unwrap();
        let mut got = [a.slot(), b.slot(), c.slot()];
        got.sort_unstable();
        assert_eq!(got, [0, 1, 2]);
        let err = pool.acquire(Duration::from_millis(1)).await.unwrap_err();
        assert_eq!(err.kind(), "no_free_slot");
        drop(b);
        let again = pool.acquire(Duration::ZERO).await.unwrap();
        assert_eq!(again.slot(), got[1]);
        drop((a, c, again));
        assert_eq!(pool.available(), 3);
    }

    #[test]
    fn pool_needs_two_request_slots() {
        assert!(SlotPool::new(1).unwrap_err().contains("at least 2"));
        assert!(SlotPool::new(0).is_err());
    }

    /// A live producer's channel (3 slots: a pool of 2) and a manager that opened it.
    fn live_channel(dir: &Path) -> (shmbridge::ChannelWriter, ChannelManager, Arc<OpenChannel>) {
        let config = shmbridge::ChannelConfig { slot_count: 3, snapshot_slots: 0, slot_capacity: 4096 };
        let writer = shmbridge::ChannelWriter::create(dir, "users", config).unwrap();
        let manager = ChannelManager::new(writer.path().to_owned());
        let channel = manager.get().unwrap();
        (writer, manager, channel)
    }

    /// A slot of `channel` dropped in quarantine for `delay`.
    async fn quarantine_one(channel: &OpenChannel, delay: Duration) -> u32 {
        let mut lease = channel.slots.acquire(Duration::ZERO).await.unwrap();
        lease.quarantine_on_drop(delay, channel);
        let slot = lease.slot();
        drop(lease);
        assert_eq!(channel.slots.available(), channel.slots.size() - 1);
        slot
    }

    #[tokio::test(start_paused = true)]
    async fn quarantined_slot_comes_back_after_the_delay() {
        let dir = tempfile::tempdir().unwrap();
        let (_writer, _manager, channel) = live_channel(dir.path());
        let slot = quarantine_one(&channel, Duration::from_secs(20)).await;
        let _other = channel.slots.acquire(Duration::ZERO).await.unwrap();
        // The paused clock jumps ahead while this waits; the producer is alive all along.
        let started = tokio::time::Instant::now();
        let back = channel.slots.acquire(Duration::from_secs(60)).await.unwrap();
        assert_eq!(back.slot(), slot);
        assert!(started.elapsed() >= Duration::from_secs(20), "back after {:?}", started.elapsed());
    }

    #[tokio::test]
    async fn disarmed_quarantine_returns_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let (_writer, _manager, channel) = live_channel(dir.path());
        let mut lease = channel.slots.acquire(Duration::ZERO).await.unwrap();
        lease.quarantine_on_drop(Duration::from_secs(20), &channel);
        lease.release_now_on_drop();
        drop(lease);
        assert_eq!(channel.slots.available(), 2);
    }

    /// The slot comes back, on the paused clock, long before a quarantine of `QUARANTINE`.
    async fn assert_back_early(channel: &OpenChannel) {
        let started = tokio::time::Instant::now();
        let mut leases = Vec::new();
        for _ in 0..channel.slots.size() {
            leases.push(channel.slots.acquire(QUARANTINE).await.unwrap());
        }
        assert!(started.elapsed() < QUARANTINE / 2, "back after {:?}", started.elapsed());
    }

    const QUARANTINE: Duration = Duration::from_secs(600);

    #[tokio::test(start_paused = true)]
    async fn a_new_producer_ends_the_old_producers_quarantine() {
        let dir = tempfile::tempdir().unwrap();
        let (writer, manager, old) = live_channel(dir.path());
        quarantine_one(&old, QUARANTINE).await;
        // The producer restarts: a new file, a new epoch, opened by the next request.
        drop(writer);
        let config = shmbridge::ChannelConfig { slot_count: 3, snapshot_slots: 0, slot_capacity: 4096 };
        let _writer = shmbridge::ChannelWriter::create(dir.path(), "users", config).unwrap();
        let new = manager.get().unwrap();
        assert!(Arc::ptr_eq(&old.slots, &new.slots), "the pool was kept");
        assert_back_early(&new).await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_dead_producer_ends_its_quarantine() {
        let dir = tempfile::tempdir().unwrap();
        let (writer, _manager, channel) = live_channel(dir.path());
        quarantine_one(&channel, QUARANTINE).await;
        // What SIGKILL leaves: the same file on disk, its lock free. (A clean close
        // removes the file, so it is moved away for the close and back.)
        let path = writer.path().to_owned();
        let aside = dir.path().join("aside");
        std::fs::rename(&path, &aside).unwrap();
        drop(writer);
        std::fs::rename(&aside, &path).unwrap();
        assert!(channel.reader.is_current() && !channel.reader.producer_alive());
        assert_back_early(&channel).await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_newer_channel_opened_before_the_quarantine_does_not_end_it() {
        let dir = tempfile::tempdir().unwrap();
        let (_writer, _manager, channel) = live_channel(dir.path());
        // A newer file was opened before this request's quarantine began: its producer
        // may have received the request, so the slot waits out the delay.
        channel.slots.opened_epoch(channel.reader.epoch() + 1);
        let slot = quarantine_one(&channel, QUARANTINE).await;
        let _other = channel.slots.acquire(Duration::ZERO).await.unwrap();
        let started = tokio::time::Instant::now();
        let back = channel.slots.acquire(QUARANTINE * 2).await.unwrap();
        assert_eq!(back.slot(), slot);
        assert!(started.elapsed() >= QUARANTINE, "back after {:?}", started.elapsed());
    }

    #[test]
    fn missing_and_corrupt_files_are_channel_errors() {
        let dir = tempfile::tempdir().unwrap();
        let manager = ChannelManager::new(dir.path().join("users.shm"));
        let err = manager.get().unwrap_err();
        assert_eq!(err.kind(), "channel_error");
        assert!(err.to_string().contains("does not exist"), "{err}");
        std::fs::write(dir.path().join("users.shm"), vec![0xA5u8; 8192]).unwrap();
        let err = manager.get().unwrap_err();
        assert!(err.to_string().contains("bad magic"), "{err}");
    }

    #[tokio::test]
    async fn the_pool_and_its_quarantined_slots_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let config = shmbridge::ChannelConfig { slot_count: 3, snapshot_slots: 0, slot_capacity: 4096 };
        let writer = shmbridge::ChannelWriter::create(dir.path(), "users", config).unwrap();
        let manager = ChannelManager::new(writer.path().to_owned());
        let first = manager.get().unwrap();
        quarantine_one(&first, Duration::from_secs(600)).await;
        // A read error drops the reader; a missing file fails the next open.
        manager.forget(&first);
        std::fs::rename(writer.path(), dir.path().join("away")).unwrap();
        assert!(manager.get().is_err());
        std::fs::rename(dir.path().join("away"), writer.path()).unwrap();
        let again = manager.get().unwrap();
        assert!(!Arc::ptr_eq(&first, &again), "the reader was reopened");
        assert!(Arc::ptr_eq(&first.slots, &again.slots), "the pool was kept");
        assert_eq!(again.slots.available(), 1, "the quarantined slot is still out of use");
    }

    #[test]
    fn a_file_without_a_live_producer_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let config = shmbridge::ChannelConfig { slot_count: 3, snapshot_slots: 0, slot_capacity: 4096 };
        let writer = shmbridge::ChannelWriter::create(dir.path(), "users", config).unwrap();
        let manager = ChannelManager::new(writer.path().to_owned());
        let open = manager.get().unwrap();
        assert_eq!(open.slots.size(), 2);
        assert_eq!(open.reader.epoch(), writer.epoch());
        // Same file, still current: the cached channel is reused.
        assert!(Arc::ptr_eq(&open, &manager.get().unwrap()));
        let path = writer.path().to_owned();
        let stale = std::fs::read(&path).unwrap();
        drop(writer); // removes the file and frees the lock
        std::fs::write(&path, stale).unwrap(); // a copy no producer holds
        let err = manager.get().unwrap_err();
        assert!(err.to_string().contains("no longer running"), "{err}");
    }
}
