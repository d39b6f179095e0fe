//! The reader's side: open a channel file read-only, validate it, and copy a
//! slot out under its seqlock.
//!
//! Seqlock protocol (the writer's half is in `writer.rs`):
//! - R1: `s1 = seq.load(Acquire)`; odd means a write is in progress: retry.
//!   Partner W3: seeing an even value published by a writer means seeing that
//!   writer's payload and metadata.
//! - copy metadata (relaxed atomics) and payload (volatile) into private memory.
//! - R2: `fence(Acquire)` then `s2 = seq.load(Relaxed)`. Partner W1: if the copy
//!   read anything a later writer stored, that writer's odd sequence is visible
//!   here, so `s1 != s2` and the copy is discarded.
//! - only then validate the private copy: length bounds, checksum, request id.
//!
//! Nothing read from the file is trusted: every length and index is checked
//! against the validated geometry, and the file's size and header are re-checked
//! before each read, so a truncated file is an error rather than SIGBUS and a file
//! whose header was overwritten after it was opened is refused, not read.

use std::fs::File;
use std::hash::Hasher as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{fence, Ordering};
use std::time::{Duration, Instant};

use twox_hash::XxHash3_64;

use crate::error::{OpenError, ReadError};
use crate::fsutil;
use crate::layout::{self, Encoding, Geometry, HeaderProblem};
use crate::segment::Segment;

/// The header's fields and checksum as 8-byte words, as they were when the file was opened.
const HEADER_WORDS: usize = layout::HEADER_READ_LEN / 8;

/// How long one read retries a slot that is being written (odd sequence) or changes
/// under the copy, before it reports the slot as contended. A write that a reader can
/// meet is short (the gateway reads a slot after its producer said the write is done;
/// a snapshot ring slot is rewritten only after the ring wraps), so a slot still busy
/// after this is stuck (a writer died mid-write) or hammered by a foreign writer.
pub const READ_RETRY_BUDGET: Duration = Duration::from_millis(10);
/// Attempts always made, whatever the clock says: one copy of a large payload alone
/// can take milliseconds.
const MIN_ATTEMPTS: u32 = 3;
/// Attempts spent spinning before yielding the CPU between retries.
const SPIN_ATTEMPTS: u32 = 64;

/// The retries of one read, bounded by [`READ_RETRY_BUDGET`].
struct Retries {
    started: Instant,
    attempts: u32,
}

impl Retries {
    fn new() -> Self {
        Self { started: Instant::now(), attempts: 1 }
    }

    /// Waits a moment before the next attempt; false once the budget is spent.
    fn again(&mut self) -> bool {
        if self.attempts >= MIN_ATTEMPTS && self.started.elapsed() >= READ_RETRY_BUDGET {
            return false;
        }
        if self.attempts < SPIN_ATTEMPTS {
            std::hint::spin_loop();
        } else {
            std::thread::yield_now();
        }
        self.attempts = self.attempts.saturating_add(1);
        true
    }
}

/// Metadata of a slot, from the same consistent read as its payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotMeta {
    pub slot: u32,
    pub sequence: u64,
    pub length: u64,
    pub checksum: u64,
    pub encoding: Encoding,
    pub request_id: u64,
    pub write_time_ns: u64,
}

/// A snapshot read: its publish generation and the slot it came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Snapshot {
    pub generation: u64,
    pub meta: SlotMeta,
}

/// A read-only view of a channel file.
#[derive(Debug)]
pub struct ChannelReader {
    path: PathBuf,
    file: File,
    segment: Segment,
    geometry: Geometry,
    epoch: u64,
    /// The validated header bytes (native-endian words): each read checks they are unchanged.
    header_words: [u64; HEADER_WORDS],
}

impl ChannelReader {
    /// Opens and validates the channel file at `path`.
    ///
    /// # Errors
    /// Missing file, symlink, not a regular file, too small or truncated, bad
    /// magic, unsupported version or a corrupt header.
    pub fn open(path: &Path) -> Result<Self, OpenError> {
        let file = fsutil::open_no_follow(path, false).map_err(|source| {
            if source.kind() == std::io::ErrorKind::NotFound {
                OpenError::Missing { path: path.to_owned() }
            } else if fsutil::is_symlink_refusal(&source) {
                OpenError::Symlink { path: path.to_owned() }
            } else {
                OpenError::Io { action: "opening", path: path.to_owned(), source }
            }
        })?;
        let meta =
            file.metadata().map_err(|source| OpenError::Io { action: "inspecting", path: path.to_owned(), source })?;
        if !meta.is_file() {
            return Err(OpenError::NotAFile { path: path.to_owned() });
        }
        let size = meta.len();
        if size < layout::HEADER_SIZE {
            return Err(OpenError::TooSmall { path: path.to_owned(), size });
        }
        let header_map = Segment::map_read_only(&file, layout::HEADER_SIZE).map_err(|source| OpenError::Io {
            action: "mapping",
            path: path.to_owned(),
            source,
        })?;
        let mut copy = Vec::with_capacity(layout::HEADER_READ_LEN);
        let mut header_bytes = [0u8; layout::HEADER_READ_LEN];
        header_map
            .copy_out(0, layout::HEADER_READ_LEN as u64, &mut copy)
            .ok_or_else(|| OpenError::TooSmall { path: path.to_owned(), size })?;
        header_bytes.copy_from_slice(&copy);
        let header = layout::decode_header(&header_bytes).map_err(|problem| match problem {
            HeaderProblem::BadMagic => OpenError::BadMagic { path: path.to_owned() },
            HeaderProblem::UnsupportedVersion(found) => {
                OpenError::UnsupportedVersion { path: path.to_owned(), found, expected: layout::LAYOUT_VERSION }
            }
            HeaderProblem::Corrupt(reason) => OpenError::CorruptHeader { path: path.to_owned(), reason },
        })?;
        let geometry = header.geometry;
        if size < geometry.file_size {
            return Err(OpenError::Truncated { path: path.to_owned(), actual: size, expected: geometry.file_size });
        }
        let segment = Segment::map_read_only(&file, geometry.file_size).map_err(|source| OpenError::Io {
            action: "mapping",
            path: path.to_owned(),
            source,
        })?;
        let mut header_words = [0u64; HEADER_WORDS];
        for (word, bytes) in header_words.iter_mut().zip(header_bytes.chunks_exact(8)) {
            let mut raw = [0u8; 8];
            raw.copy_from_slice(bytes);
            *word = u64::from_ne_bytes(raw);
        }
        Ok(Self { path: path.to_owned(), file, segment, geometry, epoch: header.epoch, header_words })
    }

    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The creation epoch of the file this reader mapped.
    #[must_use]
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    #[must_use]
    pub fn geometry(&self) -> &Geometry {
        &self.geometry
    }

    /// Whether a producer still holds the file's lock. A free lock means the
    /// producer is gone and the file is stale.
    #[must_use]
    pub fn producer_alive(&self) -> bool {
        match self.file.try_lock_shared() {
            Ok(()) => {
                let _ = self.file.unlock();
                false
            }
            Err(_) => true,
        }
    }

    /// Whether the path still names the file this reader mapped (a restarted
    /// producer creates a new file; this reader then needs reopening).
    #[must_use]
    pub fn is_current(&self) -> bool {
        use std::os::unix::fs::MetadataExt;
        let (Ok(on_disk), Ok(mine)) = (std::fs::symlink_metadata(&self.path), self.file.metadata()) else {
            return false;
        };
        on_disk.ino() == mine.ino() && on_disk.dev() == mine.dev()
    }

    /// Copies request slot `slot` into `out` and returns its metadata, after
    /// checking that it holds `expected_request_id` (when given), that its length
    /// is in bounds, and that its checksum matches.
    ///
    /// # Errors
    /// A [`ReadError`] naming the slot and what failed. `out` then holds nothing useful.
    pub fn read_slot(
        &self,
        slot: u32,
        expected_request_id: Option<u64>,
        out: &mut Vec<u8>,
    ) -> Result<SlotMeta, ReadError> {
        if slot >= self.geometry.slot_count {
            return Err(ReadError::NoSuchSlot { slot, slot_count: self.geometry.slot_count });
        }
        self.check_file()?;
        self.read_retrying(slot, expected_request_id, out, &mut Retries::new())
    }

    /// [`read_slot`](Self::read_slot) after its checks, retrying within `retries`.
    fn read_retrying(
        &self,
        slot: u32,
        expected_request_id: Option<u64>,
        out: &mut Vec<u8>,
        retries: &mut Retries,
    ) -> Result<SlotMeta, ReadError> {
        loop {
            match self.try_read_once(slot, expected_request_id, out) {
                Attempt::Done(result) => return result,
                Attempt::Retry if !retries.again() => {
                    return Err(ReadError::Contended { slot, attempts: retries.attempts })
                }
                Attempt::Retry => {}
            }
        }
    }

    /// Copies the newest snapshot into `out`. A snapshot overwritten while being
    /// read (the ring wrapped) is retried from the pointer, within the same
    /// [`READ_RETRY_BUDGET`].
    ///
    /// # Errors
    /// No snapshot yet, a corrupt pointer, or a slot that failed its checks.
    pub fn read_snapshot(&self, out: &mut Vec<u8>) -> Result<Snapshot, ReadError> {
        self.check_file()?;
        let mut retries = Retries::new();
        loop {
            let Some((generation, ring_index)) = self.snapshot_pointer() else {
                return Err(ReadError::NoSnapshot);
            };
            if ring_index >= self.geometry.snapshot_slots {
                return Err(ReadError::CorruptSnapshotPointer {
                    reason: format!("ring index {ring_index} outside a ring of {}", self.geometry.snapshot_slots),
                });
            }
            let slot = self.geometry.request_slots() + ring_index;
            match self.read_retrying(slot, Some(generation), out, &mut retries) {
                Ok(meta) => return Ok(Snapshot { generation, meta }),
                // Overwritten by a newer publish while we looked: follow the pointer again.
                Err(ReadError::WrongRequest { found, .. }) if found > generation => {
                    if !retries.again() {
                        return Err(ReadError::Contended { slot, attempts: retries.attempts });
                    }
                }
                Err(other) => return Err(other),
            }
        }
    }

    /// The current snapshot generation without reading the payload, so a caller
    /// can keep a parsed snapshot until it moves. `None`: nothing published.
    #[must_use]
    pub fn snapshot_generation(&self) -> Option<u64> {
        self.snapshot_pointer().map(|(generation, _)| generation)
    }

    fn snapshot_pointer(&self) -> Option<(u64, u32)> {
        let word = self.segment.atomic_u64(layout::OFF_SNAPSHOT_POINTER)?;
        // SYNC POINT S2 (partner: the writer's Release update of the pointer, S1).
        layout::unpack_snapshot_pointer(word.load(Ordering::Acquire))
    }

    /// The file is still as long as its header says, and its header is still the one
    /// validated at open (magic, version, geometry, epoch and checksum): a file
    /// overwritten or corrupted since is not read.
    fn check_file(&self) -> Result<(), ReadError> {
        let actual = self.file.metadata().map_err(|e| ReadError::Io(e.to_string()))?.len();
        if actual < self.geometry.file_size {
            return Err(ReadError::Truncated { actual, expected: self.geometry.file_size });
        }
        for (index, expected) in (0u64..).zip(self.header_words) {
            // Relaxed: the header is written once, before any reader can validate it;
            // this only notices later damage.
            let word = self.segment.atomic_u64(index * 8).ok_or(ReadError::HeaderChanged)?;
            if word.load(Ordering::Relaxed) != expected {
                return Err(ReadError::HeaderChanged);
            }
        }
        Ok(())
    }

    fn try_read_once(&self, slot: u32, expected_request_id: Option<u64>, out: &mut Vec<u8>) -> Attempt {
        let base = self.geometry.slot_header_offset(slot);
        let corrupt = |reason: &str| Attempt::Done(Err(ReadError::CorruptSlot { slot, reason: reason.to_owned() }));
        let word = |field: u64| self.segment.atomic_u64(base + field);
        let (Some(seq), Some(len), Some(sum), Some(req), Some(time), Some(enc)) = (
            word(layout::SLOT_OFF_SEQUENCE),
            word(layout::SLOT_OFF_LENGTH),
            word(layout::SLOT_OFF_CHECKSUM),
            word(layout::SLOT_OFF_REQUEST_ID),
            word(layout::SLOT_OFF_WRITE_TIME),
            self.segment.atomic_u32(base + layout::SLOT_OFF_ENCODING),
        ) else {
            return corrupt("slot header outside the mapping");
        };
        // SYNC POINT R1 (partner: W3, the writer's Release store of the even sequence).
        let s1 = seq.load(Ordering::Acquire);
        if s1 & 1 == 1 {
            return Attempt::Retry;
        }
        let length = len.load(Ordering::Relaxed);
        let checksum = sum.load(Ordering::Relaxed);
        let request_id = req.load(Ordering::Relaxed);
        let write_time_ns = time.load(Ordering::Relaxed);
        let encoding_raw = enc.load(Ordering::Relaxed);
        let length_ok = length <= self.geometry.slot_capacity;
        let wanted = expected_request_id.is_none_or(|id| id == request_id);
        let mut hasher = XxHash3_64::new();
        if length_ok && wanted && s1 != 0 {
            // Hashed piece by piece as it is copied, while each piece is in cache; the
            // hash is trusted only if the seqlock check below passes.
            let offset = self.geometry.payload_offset_of(slot);
            let copied = self.segment.copy_out_visiting(offset, length, out, |piece| hasher.write(piece));
            if copied.is_none() {
                return corrupt("payload outside the mapping");
            }
        }
        // SYNC POINT R2 (partner: W1, the writer's fence(Release) after the odd store).
        fence(Ordering::Acquire);
        if seq.load(Ordering::Relaxed) != s1 {
            return Attempt::Retry;
        }
        // The private copy and the metadata are one consistent write: validate them.
        let Some(encoding) = Encoding::from_u32(encoding_raw) else {
            return corrupt(&format!("unknown encoding {encoding_raw}"));
        };
        // Never written, or its last write was abandoned.
        if s1 == 0 || encoding == Encoding::None {
            return Attempt::Done(Err(ReadError::Empty { slot }));
        }
        if let Some(expected) = expected_request_id.filter(|_| !wanted) {
            return Attempt::Done(Err(ReadError::WrongRequest { slot, expected, found: request_id }));
        }
        if !length_ok {
            return corrupt(&format!("length {length} exceeds the slot capacity {}", self.geometry.slot_capacity));
        }
        let computed = hasher.finish();
        if computed != checksum {
            return Attempt::Done(Err(ReadError::Checksum { slot, stored: checksum, computed }));
        }
        Attempt::Done(Ok(SlotMeta { slot, sequence: s1, length, checksum, encoding, request_id, write_time_ns }))
    }
}

enum Attempt {
    Done(Result<SlotMeta, ReadError>),
    Retry,
}
