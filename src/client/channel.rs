//! Epochs and restarts: the open [`ChannelReader`] and the pool of slots that goes
//! with it.
//!
//! The reader is opened lazily on the first call and reopened when the file on disk is
//! no longer the one mapped (the producer restarted) or when the producer answers with
//! a different epoch. The slot pool ([`SlotPool`]) is sized from the channel's
//! geometry and outlives the readers: it is rebuilt only when a reopened channel has a
//! different number of request slots. Opening a newer file ends the quarantines that
//! began before it ([`SlotPool::opened_epoch`]).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use super::error::ClientError;
use super::slots::SlotPool;
use crate::ChannelReader;

/// A mapped channel file and the slot pool that goes with its geometry.
#[derive(Debug)]
pub struct OpenChannel {
    /// The mapped file.
    pub reader: Arc<ChannelReader>,
    /// The pool of its request slots.
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
    /// A manager of the channel file at `path`; nothing is opened yet.
    #[must_use]
    pub fn new(path: PathBuf) -> Self {
        Self { path, cached: RwLock::new(None), pool: Mutex::new(None) }
    }

    /// The channel file's path.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The slot pool of the last channel opened, if any (for metrics).
    #[must_use]
    pub fn pool(&self) -> Option<Arc<SlotPool>> {
        self.pool.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// The open channel, opened or reopened as needed.
    ///
    /// # Errors
    /// [`ClientError::Open`] if the file is missing, corrupt or truncated;
    /// [`ClientError::ProducerGone`] if no producer holds it.
    pub fn get(&self) -> Result<Arc<OpenChannel>, ClientError> {
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
    /// What [`get`](Self::get) returns, or [`ClientError::EpochMismatch`] if the file
    /// still has another epoch (the producer and this client do not share a directory
    /// and channel name).
    pub fn for_epoch(&self, seen: &Arc<OpenChannel>, epoch: u64) -> Result<Arc<OpenChannel>, ClientError> {
        if seen.reader.epoch() == epoch {
            return Ok(Arc::clone(seen));
        }
        let mut cached = self.cached.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(channel) = cached.as_ref().filter(|c| c.reader.epoch() == epoch) {
            return Ok(Arc::clone(channel));
        }
        let channel = self.open_into(&mut cached)?;
        if channel.reader.epoch() != epoch {
            return Err(ClientError::EpochMismatch {
                path: self.path.clone(),
                expected: epoch,
                found: channel.reader.epoch(),
            });
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
    fn open_into(&self, cached: &mut Option<Arc<OpenChannel>>) -> Result<Arc<OpenChannel>, ClientError> {
        *cached = None;
        let reader = ChannelReader::open(&self.path)?;
        if !reader.producer_alive() {
            return Err(ClientError::ProducerGone { path: self.path.clone() });
        }
        let request_slots = reader.geometry().request_slots();
        let mut pool = self.pool.lock().unwrap_or_else(PoisonError::into_inner);
        let slots = match pool.as_ref() {
            Some(old) if old.request_slots() == request_slots => Arc::clone(old),
            _ => {
                let fresh = Arc::new(SlotPool::new(request_slots)?);
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

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
        assert!(matches!(err, ClientError::NoFreeSlot { waited_ms: 1, slots: 3 }), "{err}");
        drop(b);
        let again = pool.acquire(Duration::ZERO).await.unwrap();
        assert_eq!(again.slot(), got[1]);
        drop((a, c, again));
        assert_eq!(pool.available(), 3);
    }

    #[test]
    fn pool_needs_two_request_slots() {
        assert!(SlotPool::new(1).unwrap_err().to_string().contains("at least 2"));
        assert!(SlotPool::new(0).is_err());
    }

    /// A live producer's channel (3 slots: a pool of 2) and a manager that opened it.
    fn live_channel(dir: &Path) -> (crate::ChannelWriter, ChannelManager, Arc<OpenChannel>) {
        let config = crate::ChannelConfig { slot_count: 3, snapshot_slots: 0, slot_capacity: 4096 };
        let writer = crate::ChannelWriter::create(dir, "users", config).unwrap();
        let manager = ChannelManager::new(writer.path().to_owned());
        let channel = manager.get().unwrap();
        (writer, manager, channel)
    }

    /// A slot of `channel` dropped in quarantine for `delay`.
    async fn quarantine_one(channel: &OpenChannel, delay: Duration) -> u32 {
        let mut lease = channel.slots.acquire(Duration::ZERO).await.unwrap();
        lease.quarantine_on_drop(delay, &channel.reader);
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
        lease.quarantine_on_drop(Duration::from_secs(20), &channel.reader);
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
        let config = crate::ChannelConfig { slot_count: 3, snapshot_slots: 0, slot_capacity: 4096 };
        let _writer = crate::ChannelWriter::create(dir.path(), "users", config).unwrap();
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
        assert!(matches!(err, ClientError::Open(_)), "{err}");
        assert!(err.to_string().contains("does not exist"), "{err}");
        std::fs::write(dir.path().join("users.shm"), vec![0xA5u8; 8192]).unwrap();
        let err = manager.get().unwrap_err();
        assert!(err.to_string().contains("bad magic"), "{err}");
    }

    #[tokio::test]
    async fn the_pool_and_its_quarantined_slots_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let config = crate::ChannelConfig { slot_count: 3, snapshot_slots: 0, slot_capacity: 4096 };
        let writer = crate::ChannelWriter::create(dir.path(), "users", config).unwrap();
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
        let config = crate::ChannelConfig { slot_count: 3, snapshot_slots: 0, slot_capacity: 4096 };
        let writer = crate::ChannelWriter::create(dir.path(), "users", config).unwrap();
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
        assert!(matches!(err, ClientError::ProducerGone { .. }), "{err}");
        assert!(err.to_string().contains("no longer running"), "{err}");
    }
}
