//! The producer's side: create the channel file, write slots, publish snapshots.
//!
//! Seqlock protocol for one slot (the reader's half is in `reader.rs`):
//! 1. `seq.store(odd, Relaxed)` then `fence(Release)` — SYNC POINT W1, partner R2:
//!    if a reader's copy saw any byte written after this fence, its
//!    `fence(Acquire)` makes the odd sequence visible to its re-load, so the copy
//!    is discarded.
//! 2. payload, then length, checksum, encoding, request id, write time.
//! 3. `seq.store(odd + 1, Release)` — SYNC POINT W3, partner R1: a reader whose
//!    Acquire load sees the new even value also sees every store of step 2.
//!
//! One writer per slot at a time: the file lock excludes other producers, and an
//! in-process busy flag per slot excludes other threads of this one.

use std::fs::File;
use std::hash::Hasher as _;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::sync::atomic::{fence, AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use twox_hash::XxHash3_64;

use crate::error::{CreateError, WriteError};
use crate::fsutil;
use crate::layout::{self, Encoding, Geometry};
use crate::segment::{Segment, COPY_CHUNK};

/// Payload offset from which [`SlotWriter::write_all`] uses streaming stores: one
/// core's L2 cache (2 MiB here). Bytes beyond it cannot stay in cache for the reader,
/// and plain stores would read each destination line first (docs/benchmark.md, "What
/// the profiles say", has the measurements behind the choice).
pub const STREAMING_FROM: u64 = 2 << 20;

/// The shape of a channel to create.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChannelConfig {
    /// Slots a request may be written into.
    pub slot_count: u32,
    /// Size of the snapshot ring (0 disables `publish`).
    pub snapshot_slots: u32,
    /// Bytes per slot payload (rounded up to whole pages).
    pub slot_capacity: u64,
}

impl Default for ChannelConfig {
    fn default() -> Self {
        Self {
            slot_count: layout::DEFAULT_SLOT_COUNT,
            snapshot_slots: layout::DEFAULT_SNAPSHOT_SLOTS,
            slot_capacity: layout::DEFAULT_SLOT_CAPACITY,
        }
    }
}

/// What a completed write published.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Receipt {
    pub slot: u32,
    pub request_id: u64,
    /// The slot's sequence number after the write (even).
    pub sequence: u64,
    pub length: u64,
    pub checksum: u64,
    pub encoding: Encoding,
}

/// The producer's handle on a channel file. Holds the file's exclusive lock for
/// as long as it lives; removes the file on [`close`](Self::close) or drop.
#[derive(Debug)]
pub struct ChannelWriter {
    path: PathBuf,
    // Keeps the flock (and so the producer's liveness) for the writer's lifetime.
    _file: File,
    segment: Segment,
    geometry: Geometry,
    epoch: u64,
    busy: Box<[AtomicBool]>,
    snapshot_state: Mutex<SnapshotState>,
    closed: AtomicBool,
}

#[derive(Debug, Default)]
struct SnapshotState {
    generation: u64,
    next_ring_index: u32,
}

impl ChannelWriter {
    /// Creates channel `name` in `dir` (see DESIGN.md's life cycle). A file left
    /// behind by a crashed producer (its lock free) is removed and replaced.
    ///
    /// # Errors
    /// A [`CreateError`] naming the path and what to change.
    pub fn create(dir: &Path, name: &str, config: ChannelConfig) -> Result<Self, CreateError> {
        if !fsutil::is_valid_channel_name(name) {
            return Err(CreateError::InvalidName { name: name.to_owned() });
        }
        let geometry = Geometry::new(config.slot_count, config.snapshot_slots, config.slot_capacity)
            .map_err(CreateError::InvalidGeometry)?;
        fsutil::ensure_private_dir(dir)?;
        let path = fsutil::channel_path(dir, name);
        let file = create_locked(&path)?;
        if let Err(source) = fsutil::allocate(&file, geometry.file_size) {
            let _ = fsutil::remove_if_present(&path);
            return Err(CreateError::Allocate { path, size: geometry.file_size, source });
        }
        let segment = match Segment::map_read_write(&file, geometry.file_size) {
            Ok(segment) => segment,
            Err(source) => {
                let _ = fsutil::remove_if_present(&path);
                return Err(CreateError::Io { action: "mapping", path, source });
            }
        };
        let epoch = now_ns().max(1);
        let header = geometry.encode_header(epoch);
        // Magic last: a reader racing with start-up sees "bad magic" or a whole header.
        segment
            .copy_in(8, &header[8..])
            .and_then(|()| segment.copy_in(0, &header[..8]))
            .ok_or_else(|| CreateError::InvalidGeometry("header does not fit the mapping".into()))?;
        let busy = (0..geometry.slot_count).map(|_| AtomicBool::new(false)).collect();
        Ok(Self {
            path,
            _file: file,
            segment,
            geometry,
            epoch,
            busy,
            snapshot_state: Mutex::new(SnapshotState::default()),
            closed: AtomicBool::new(false),
        })
    }

    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    #[must_use]
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    #[must_use]
    pub fn geometry(&self) -> &Geometry {
        &self.geometry
    }

    /// Slots a request may use (the snapshot ring excluded).
    #[must_use]
    pub fn request_slots(&self) -> u32 {
        self.geometry.request_slots()
    }

    #[must_use]
    pub fn slot_capacity(&self) -> u64 {
        self.geometry.slot_capacity
    }

    #[must_use]
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Removes the channel file; later writes fail with [`WriteError::Closed`].
    /// The mapping itself lives until the writer is dropped.
    pub fn close(&self) {
        if !self.closed.swap(true, Ordering::AcqRel) {
            let _ = fsutil::remove_if_present(&self.path);
        }
    }

    /// Writes `data` into request slot `slot` for `request_id` and publishes it.
    ///
    /// # Errors
    /// Bad slot or request id, a busy slot, or a payload over the slot capacity
    /// (checked before anything is written).
    pub fn write_bytes(
        &self,
        slot: u32,
        request_id: u64,
        encoding: Encoding,
        data: &[u8],
    ) -> Result<Receipt, WriteError> {
        let size = data.len() as u64;
        if size > self.geometry.slot_capacity {
            self.check_slot(slot)?;
            return Err(WriteError::TooLarge { slot, size, capacity: self.geometry.slot_capacity });
        }
        let mut writer = SlotWriter::begin(self, slot, request_id, encoding)?;
        writer.write_all(data)?;
        writer.commit()
    }

    /// Writes `data` as the newest snapshot and moves the snapshot pointer to it.
    ///
    /// # Errors
    /// No snapshot ring, or a payload over the slot capacity.
    pub fn publish_bytes(&self, encoding: Encoding, data: &[u8]) -> Result<Receipt, WriteError> {
        let mut writer = SlotWriter::begin_snapshot(self, encoding)?;
        writer.write_all(data)?;
        writer.commit()
    }

    fn check_slot(&self, slot: u32) -> Result<(), WriteError> {
        if slot >= self.request_slots() {
            return Err(WriteError::NoSuchSlot { slot, slot_count: self.request_slots() });
        }
        Ok(())
    }

    fn slot_word(&self, slot: u32, field: u64) -> &AtomicU64 {
        self.segment
            .atomic_u64(self.geometry.slot_header_offset(slot) + field)
            .expect("slot table lies inside a mapping sized by the same geometry")
    }

    fn slot_encoding_word(&self, slot: u32) -> &AtomicU32 {
        self.segment
            .atomic_u32(self.geometry.slot_header_offset(slot) + layout::SLOT_OFF_ENCODING)
            .expect("slot table lies inside a mapping sized by the same geometry")
    }

    fn snapshot_pointer(&self) -> &AtomicU64 {
        self.segment.atomic_u64(layout::OFF_SNAPSHOT_POINTER).expect("the header page lies inside every mapping")
    }
}

impl Drop for ChannelWriter {
    fn drop(&mut self) {
        self.close();
    }
}

fn create_locked(path: &Path) -> Result<File, CreateError> {
    // Two rounds: the second follows the removal of a stale file.
    for _ in 0..2 {
        match fsutil::create_exclusive(path) {
            Ok(file) => {
                return match file.try_lock() {
                    Ok(()) => Ok(file),
                    Err(_) => Err(CreateError::InUse { path: path.to_owned() }),
                };
            }
            Err(err) if fsutil::is_symlink_refusal(&err) => return Err(CreateError::Symlink { path: path.to_owned() }),
            Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {
                let old = fsutil::open_no_follow(path, false).map_err(|source| {
                    if fsutil::is_symlink_refusal(&source) {
                        CreateError::Symlink { path: path.to_owned() }
                    } else {
                        CreateError::Io { action: "opening existing", path: path.to_owned(), source }
                    }
                })?;
                if !lock_stale_file(&old) {
                    return Err(CreateError::InUse { path: path.to_owned() });
                }
                // The lock was free: its producer is gone. Replace, never trust, the file.
                fsutil::remove_if_present(path).map_err(|source| CreateError::Io {
                    action: "removing stale",
                    path: path.to_owned(),
                    source,
                })?;
            }
            Err(source) => return Err(CreateError::Io { action: "creating", path: path.to_owned(), source }),
        }
    }
    Err(CreateError::InUse { path: path.to_owned() })
}

/// Takes the exclusive lock of an existing file. Readers probe a file's liveness by
/// taking its shared lock for a moment, so a free lock is tried a few times over
/// ~100 ms before the file is called in use: a live producer holds its lock for good.
fn lock_stale_file(file: &File) -> bool {
    const ATTEMPTS: u32 = 20;
    for attempt in 0..ATTEMPTS {
        if file.try_lock().is_ok() {
            return true;
        }
        if attempt + 1 < ATTEMPTS {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }
    false
}

fn now_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// An open write into one slot. Bytes go straight into the mapping; nothing is
/// visible to readers until [`commit`](Self::commit). Dropped without a commit,
/// the slot is left empty (abandoned), never half-published.
///
/// Generic over how it holds the channel (`&ChannelWriter`, `Arc<ChannelWriter>`)
/// so that bindings can keep a write open across calls.
pub struct SlotWriter<W: Deref<Target = ChannelWriter>> {
    channel: W,
    slot: u32,
    request_id: u64,
    encoding: Encoding,
    odd_sequence: u64,
    written: u64,
    hasher: XxHash3_64,
    /// Set when bytes were written through `payload_ptr`, so the checksum is
    /// computed over the slot at commit instead of from the stream.
    raw_length: Option<u64>,
    snapshot_generation: Option<(u64, u32)>,
    finished: bool,
}

impl<W: Deref<Target = ChannelWriter>> SlotWriter<W> {
    /// Opens request slot `slot` for `request_id`.
    ///
    /// # Errors
    /// Closed channel, no such slot, request id 0, or a slot busy in this process.
    pub fn begin(channel: W, slot: u32, request_id: u64, encoding: Encoding) -> Result<Self, WriteError> {
        channel.check_slot(slot)?;
        if request_id == 0 {
            return Err(WriteError::ZeroRequestId);
        }
        Self::open(channel, slot, request_id, encoding, None)
    }

    /// Opens the next slot of the snapshot ring.
    ///
    /// # Errors
    /// Closed channel, no snapshot ring, or the ring slot still busy.
    pub fn begin_snapshot(channel: W, encoding: Encoding) -> Result<Self, WriteError> {
        let ring = channel.geometry.snapshot_slots;
        if ring == 0 {
            return Err(WriteError::NoSnapshotRing);
        }
        let (generation, ring_index) = {
            let mut state = channel.snapshot_state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            state.generation += 1;
            let index = state.next_ring_index;
            state.next_ring_index = (index + 1) % ring;
            (state.generation, index)
        };
        let slot = channel.request_slots() + ring_index;
        Self::open(channel, slot, generation, encoding, Some((generation, ring_index)))
    }

    fn open(
        channel: W,
        slot: u32,
        request_id: u64,
        encoding: Encoding,
        snapshot: Option<(u64, u32)>,
    ) -> Result<Self, WriteError> {
        if channel.is_closed() {
            return Err(WriteError::Closed);
        }
        let busy = &channel.busy[slot as usize];
        if busy.compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed).is_err() {
            return Err(WriteError::SlotBusy { slot });
        }
        let sequence = channel.slot_word(slot, layout::SLOT_OFF_SEQUENCE);
        // Only this thread writes the slot now (busy flag + file lock): Relaxed suffices.
        let current = sequence.load(Ordering::Relaxed);
        let odd_sequence = (current | 1).wrapping_add(u64::from(current & 1 == 1) * 2);
        sequence.store(odd_sequence, Ordering::Relaxed);
        // SYNC POINT W1 (partner: the reader's fence(Acquire), R2): the odd
        // sequence is ordered before every payload byte written after this fence.
        fence(Ordering::Release);
        Ok(Self {
            channel,
            slot,
            request_id,
            encoding,
            odd_sequence,
            written: 0,
            hasher: XxHash3_64::new(),
            raw_length: None,
            snapshot_generation: snapshot,
            finished: false,
        })
    }

    #[must_use]
    pub fn slot(&self) -> u32 {
        self.slot
    }

    #[must_use]
    pub fn capacity(&self) -> u64 {
        self.channel.geometry.slot_capacity
    }

    #[must_use]
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Appends `bytes` to the payload, in pieces of [`COPY_CHUNK`] bytes: each piece is
    /// hashed and then copied while it is in cache, instead of the hash reading the
    /// whole payload again after the copy (from memory, for large ones). Payload bytes
    /// past [`STREAMING_FROM`] go in with streaming stores.
    ///
    /// # Errors
    /// [`WriteError::TooLarge`] if the payload would pass the slot capacity; the
    /// write must then be dropped (abandoned).
    pub fn write_all(&mut self, bytes: &[u8]) -> Result<(), WriteError> {
        let end = self.written + bytes.len() as u64;
        let (slot, capacity) = (self.slot, self.capacity());
        let too_large = move || WriteError::TooLarge { slot, size: end, capacity };
        if end > capacity {
            return Err(too_large());
        }
        let payload = self.channel.geometry.payload_offset_of(self.slot);
        let mut position = self.written;
        for piece in bytes.chunks(COPY_CHUNK) {
            self.hasher.write(piece);
            let segment = &self.channel.segment;
            let copied = if position >= STREAMING_FROM {
                segment.copy_in_streaming(payload + position, piece)
            } else {
                segment.copy_in(payload + position, piece)
            };
            copied.ok_or_else(too_large)?;
            position += piece.len() as u64;
        }
        self.written = end;
        Ok(())
    }

    /// Raw pointer to the slot's whole payload area (`capacity()` bytes), for
    /// writing in place (Python's buffer protocol). Writing through it is the
    /// caller's unsafe responsibility; call [`commit_in_place`](Self::commit_in_place) after.
    #[must_use]
    pub fn payload_ptr(&self) -> *mut u8 {
        let offset = self.channel.geometry.payload_offset_of(self.slot);
        self.channel
            .segment
            .writable_ptr(offset, self.capacity())
            .expect("a writer's mapping is writable and sized by its geometry")
    }

    /// Publishes `length` bytes written in place through [`payload_ptr`](Self::payload_ptr).
    ///
    /// # Errors
    /// `length` over the capacity (the write is abandoned).
    pub fn commit_in_place(mut self, length: u64) -> Result<Receipt, WriteError> {
        if length > self.capacity() {
            return Err(WriteError::TooLarge { slot: self.slot, size: length, capacity: self.capacity() });
        }
        self.raw_length = Some(length);
        self.commit()
    }

    /// Publishes the payload written so far.
    ///
    /// # Errors
    /// Never in practice; the signature leaves room for a closed channel.
    pub fn commit(mut self) -> Result<Receipt, WriteError> {
        let channel = &*self.channel;
        let (length, checksum) = match self.raw_length {
            Some(length) => {
                let offset = channel.geometry.payload_offset_of(self.slot);
                let checksum = channel.segment.checksum_own_bytes(offset, length).ok_or(WriteError::TooLarge {
                    slot: self.slot,
                    size: length,
                    capacity: self.capacity(),
                })?;
                (length, checksum)
            }
            None => (self.written, self.hasher.finish()),
        };
        self.store_meta(length, checksum, self.encoding, self.request_id);
        let sequence = self.odd_sequence.wrapping_add(1);
        // SYNC POINT W3 (partner: the reader's Acquire load of the sequence, R1):
        // publishes the payload and the metadata stored above.
        channel.slot_word(self.slot, layout::SLOT_OFF_SEQUENCE).store(sequence, Ordering::Release);
        if let Some((generation, ring_index)) = self.snapshot_generation {
            let pointer = channel.snapshot_pointer();
            let new = layout::pack_snapshot_pointer(generation, ring_index);
            // SYNC POINT S1 (partner: the reader's Acquire load of the pointer, S2).
            // Concurrent publishes may finish out of order: never move the pointer back.
            let _ = pointer.fetch_update(Ordering::Release, Ordering::Relaxed, |old| {
                let newer = layout::unpack_snapshot_pointer(old).is_none_or(|(g, _)| g < generation);
                newer.then_some(new)
            });
        }
        self.finished = true;
        channel.busy[self.slot as usize].store(false, Ordering::Release);
        Ok(Receipt {
            slot: self.slot,
            request_id: self.request_id,
            sequence,
            length,
            checksum,
            encoding: self.encoding,
        })
    }

    fn store_meta(&self, length: u64, checksum: u64, encoding: Encoding, request_id: u64) {
        let channel = &*self.channel;
        // Relaxed: these stores are ordered for readers by the Release store of the sequence.
        channel.slot_word(self.slot, layout::SLOT_OFF_LENGTH).store(length, Ordering::Relaxed);
        channel.slot_word(self.slot, layout::SLOT_OFF_CHECKSUM).store(checksum, Ordering::Relaxed);
        channel.slot_encoding_word(self.slot).store(encoding.to_u32(), Ordering::Relaxed);
        channel.slot_word(self.slot, layout::SLOT_OFF_REQUEST_ID).store(request_id, Ordering::Relaxed);
        channel.slot_word(self.slot, layout::SLOT_OFF_WRITE_TIME).store(now_ns(), Ordering::Relaxed);
    }
}

impl<W: Deref<Target = ChannelWriter>> std::fmt::Debug for SlotWriter<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlotWriter")
            .field("slot", &self.slot)
            .field("request_id", &self.request_id)
            .field("written", &self.written)
            .finish_non_exhaustive()
    }
}

impl<W: Deref<Target = ChannelWriter>> Drop for SlotWriter<W> {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        // Abandoned: the slot says "nothing here" rather than keeping half a payload.
        self.store_meta(0, 0, Encoding::None, 0);
        let channel = &*self.channel;
        // SYNC POINT W3 again: readers that see this sequence see the empty metadata.
        channel
            .slot_word(self.slot, layout::SLOT_OFF_SEQUENCE)
            .store(self.odd_sequence.wrapping_add(1), Ordering::Release);
        channel.busy[self.slot as usize].store(false, Ordering::Release);
    }
}
