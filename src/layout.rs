//! The channel file's layout: pure constants and arithmetic, no I/O, no unsafe.
//!
//! ```text
//! offset 0                 header page (4096 bytes)
//!   0   magic            [u8; 8]  b"SHMBRDG\0"
//!   8   layout_version   u32
//!   12  header_size      u32      4096
//!   16  slot_header_size u32      64
//!   20  slot_count       u32      request slots + snapshot ring
//!   24  snapshot_slots   u32      the last `snapshot_slots` slots form the snapshot ring
//!   28  reserved         u32      0
//!   32  slot_capacity    u64      bytes per payload, a multiple of 4096
//!   40  payload_offset   u64      where slot 0's payload starts
//!   48  file_size        u64
//!   56  epoch            u64      unique per file creation (ns since the Unix epoch)
//!   64  header_checksum  u64      xxh3-64 of bytes 0..64
//!   128 snapshot_pointer u64      atomic: (generation << 16) | ring index; 0 = none
//! offset 4096              slot table: slot_count x 64-byte slot headers
//!   0   sequence         u64      seqlock: odd while a write is in progress
//!   8   length           u64
//!   16  checksum         u64      xxh3-64 of the payload
//!   24  encoding         u32      0 none, 1 json, 2 raw bytes
//!   28  reserved         u32
//!   32  request_id       u64
//!   40  write_time_ns    u64      ns since the Unix epoch
//! payload_offset           slot payloads, each `slot_capacity` bytes, page-aligned
//! ```
//! All integers are little-endian. Every field a reader uses is validated by
//! [`decode_header`] before any offset derived from it is touched.

use twox_hash::XxHash3_64;

pub const MAGIC: [u8; 8] = *b"SHMBRDG\0";
pub const LAYOUT_VERSION: u32 = 1;
pub const PAGE_SIZE: u64 = 4096;
pub const HEADER_SIZE: u64 = PAGE_SIZE;
pub const SLOT_HEADER_SIZE: u64 = 64;
/// The immutable header fields covered by the header checksum.
pub const HEADER_FIELDS_LEN: usize = 64;
/// Bytes of the header a reader copies and decodes (fields plus checksum).
pub const HEADER_READ_LEN: usize = 72;

pub const OFF_MAGIC: usize = 0;
pub const OFF_VERSION: usize = 8;
pub const OFF_HEADER_SIZE: usize = 12;
pub const OFF_SLOT_HEADER_SIZE: usize = 16;
pub const OFF_SLOT_COUNT: usize = 20;
pub const OFF_SNAPSHOT_SLOTS: usize = 24;
pub const OFF_SLOT_CAPACITY: usize = 32;
pub const OFF_PAYLOAD_OFFSET: usize = 40;
pub const OFF_FILE_SIZE: usize = 48;
pub const OFF_EPOCH: usize = 56;
pub const OFF_HEADER_CHECKSUM: usize = 64;
pub const OFF_SNAPSHOT_POINTER: u64 = 128;

pub const SLOT_OFF_SEQUENCE: u64 = 0;
pub const SLOT_OFF_LENGTH: u64 = 8;
pub const SLOT_OFF_CHECKSUM: u64 = 16;
pub const SLOT_OFF_ENCODING: u64 = 24;
pub const SLOT_OFF_REQUEST_ID: u64 = 32;
pub const SLOT_OFF_WRITE_TIME: u64 = 40;

pub const MAX_SLOT_COUNT: u32 = 4096;
pub const MAX_SLOT_CAPACITY: u64 = 1 << 30;
pub const MAX_FILE_SIZE: u64 = 64 << 30;
/// The snapshot pointer keeps the ring index in its low 16 bits.
pub const MAX_SNAPSHOT_SLOTS: u32 = 256;

pub const DEFAULT_SLOT_COUNT: u32 = 16;
pub const DEFAULT_SNAPSHOT_SLOTS: u32 = 4;
pub const DEFAULT_SLOT_CAPACITY: u64 = 32 << 20;

/// How a slot's payload is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// Abandoned or never written: holds nothing.
    None,
    Json,
    Raw,
}

impl Encoding {
    #[must_use]
    pub fn to_u32(self) -> u32 {
        match self {
            Encoding::None => 0,
            Encoding::Json => 1,
            Encoding::Raw => 2,
        }
    }

    #[must_use]
    pub fn from_u32(value: u32) -> Option<Self> {
        match value {
            0 => Some(Encoding::None),
            1 => Some(Encoding::Json),
            2 => Some(Encoding::Raw),
            _ => None,
        }
    }

    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Encoding::None => "none",
            Encoding::Json => "json",
            Encoding::Raw => "raw",
        }
    }
}

/// Where everything lives in a channel file of a given shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    /// All slots: request slots first, then the snapshot ring.
    pub slot_count: u32,
    pub snapshot_slots: u32,
    pub slot_capacity: u64,
    pub payload_offset: u64,
    pub file_size: u64,
}

const fn round_up_to_page(value: u64) -> u64 {
    value.div_ceil(PAGE_SIZE) * PAGE_SIZE
}

impl Geometry {
    /// Computes the layout for `request_slots` request slots, a ring of `snapshot_slots`
    /// and payloads of at least `slot_capacity` bytes (rounded up to whole pages).
    ///
    /// # Errors
    /// A message naming the value that is out of range and its limit.
    pub fn new(request_slots: u32, snapshot_slots: u32, slot_capacity: u64) -> Result<Self, String> {
        if request_slots == 0 {
            return Err("slot count must be at least 1".into());
        }
        if snapshot_slots > MAX_SNAPSHOT_SLOTS {
            return Err(format!("snapshot ring of {snapshot_slots} slots exceeds the limit of {MAX_SNAPSHOT_SLOTS}"));
        }
        let slot_count = request_slots
            .checked_add(snapshot_slots)
            .filter(|n| *n <= MAX_SLOT_COUNT)
            .ok_or_else(|| format!("{request_slots} request slots + {snapshot_slots} snapshot slots exceed the limit of {MAX_SLOT_COUNT}"))?;
        if slot_capacity == 0 || slot_capacity > MAX_SLOT_CAPACITY {
            return Err(format!("slot capacity {slot_capacity} must be between 1 and {MAX_SLOT_CAPACITY} bytes"));
        }
        Self::from_parts(slot_count, snapshot_slots, round_up_to_page(slot_capacity))
    }

    fn from_parts(slot_count: u32, snapshot_slots: u32, slot_capacity: u64) -> Result<Self, String> {
        let table = round_up_to_page(u64::from(slot_count) * SLOT_HEADER_SIZE);
        let payload_offset = HEADER_SIZE + table;
        let file_size = u64::from(slot_count)
            .checked_mul(slot_capacity)
            .and_then(|p| p.checked_add(payload_offset))
            .filter(|s| *s <= MAX_FILE_SIZE)
            .ok_or_else(|| {
                format!(
                    "{slot_count} slots of {slot_capacity} bytes exceed the file size limit of {MAX_FILE_SIZE} bytes"
                )
            })?;
        Ok(Self { slot_count, snapshot_slots, slot_capacity, payload_offset, file_size })
    }

    /// Number of slots a request may use (the ring excluded).
    #[must_use]
    pub fn request_slots(&self) -> u32 {
        self.slot_count - self.snapshot_slots
    }

    /// Offset of slot `slot`'s 64-byte header. The caller has checked `slot < slot_count`.
    #[must_use]
    pub fn slot_header_offset(&self, slot: u32) -> u64 {
        HEADER_SIZE + u64::from(slot) * SLOT_HEADER_SIZE
    }

    /// Offset of slot `slot`'s payload. The caller has checked `slot < slot_count`.
    #[must_use]
    pub fn payload_offset_of(&self, slot: u32) -> u64 {
        self.payload_offset + u64::from(slot) * self.slot_capacity
    }

    /// The header bytes (fields and checksum) a writer stores at offset 0.
    #[must_use]
    pub fn encode_header(&self, epoch: u64) -> [u8; HEADER_READ_LEN] {
        let mut out = [0u8; HEADER_READ_LEN];
        out[OFF_MAGIC..OFF_MAGIC + 8].copy_from_slice(&MAGIC);
        put_u32(&mut out, OFF_VERSION, LAYOUT_VERSION);
        put_u32(&mut out, OFF_HEADER_SIZE, HEADER_SIZE as u32);
        put_u32(&mut out, OFF_SLOT_HEADER_SIZE, SLOT_HEADER_SIZE as u32);
        put_u32(&mut out, OFF_SLOT_COUNT, self.slot_count);
        put_u32(&mut out, OFF_SNAPSHOT_SLOTS, self.snapshot_slots);
        put_u64(&mut out, OFF_SLOT_CAPACITY, self.slot_capacity);
        put_u64(&mut out, OFF_PAYLOAD_OFFSET, self.payload_offset);
        put_u64(&mut out, OFF_FILE_SIZE, self.file_size);
        put_u64(&mut out, OFF_EPOCH, epoch);
        let checksum = XxHash3_64::oneshot(&out[..HEADER_FIELDS_LEN]);
        put_u64(&mut out, OFF_HEADER_CHECKSUM, checksum);
        out
    }
}

/// What is wrong with a header, before a path is attached to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderProblem {
    BadMagic,
    UnsupportedVersion(u32),
    Corrupt(String),
}

/// A validated header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub geometry: Geometry,
    pub epoch: u64,
}

/// Decodes and validates a private copy of the header bytes. Never panics.
///
/// # Errors
/// What is wrong, checked in the order magic, version, checksum, then every field.
pub fn decode_header(bytes: &[u8; HEADER_READ_LEN]) -> Result<Header, HeaderProblem> {
    if bytes[OFF_MAGIC..OFF_MAGIC + 8] != MAGIC {
        return Err(HeaderProblem::BadMagic);
    }
    let version = get_u32(bytes, OFF_VERSION);
    if version != LAYOUT_VERSION {
        return Err(HeaderProblem::UnsupportedVersion(version));
    }
    let stored = get_u64(bytes, OFF_HEADER_CHECKSUM);
    let computed = XxHash3_64::oneshot(&bytes[..HEADER_FIELDS_LEN]);
    if stored != computed {
        return Err(HeaderProblem::Corrupt(format!(
            "header checksum {stored:#018x} does not match its fields ({computed:#018x})"
        )));
    }
    let corrupt = |what: String| Err(HeaderProblem::Corrupt(what));
    let header_size = get_u32(bytes, OFF_HEADER_SIZE);
    if u64::from(header_size) != HEADER_SIZE {
        return corrupt(format!("header size {header_size}, expected {HEADER_SIZE}"));
    }
    let slot_header_size = get_u32(bytes, OFF_SLOT_HEADER_SIZE);
    if u64::from(slot_header_size) != SLOT_HEADER_SIZE {
        return corrupt(format!("slot header size {slot_header_size}, expected {SLOT_HEADER_SIZE}"));
    }
    let slot_count = get_u32(bytes, OFF_SLOT_COUNT);
    let snapshot_slots = get_u32(bytes, OFF_SNAPSHOT_SLOTS);
    let slot_capacity = get_u64(bytes, OFF_SLOT_CAPACITY);
    if slot_count == 0 || slot_count > MAX_SLOT_COUNT {
        return corrupt(format!("slot count {slot_count} outside 1..={MAX_SLOT_COUNT}"));
    }
    if snapshot_slots >= slot_count || snapshot_slots > MAX_SNAPSHOT_SLOTS {
        return corrupt(format!("snapshot ring of {snapshot_slots} slots does not fit {slot_count} slots"));
    }
    if slot_capacity == 0 || slot_capacity > MAX_SLOT_CAPACITY || !slot_capacity.is_multiple_of(PAGE_SIZE) {
        return corrupt(format!(
            "slot capacity {slot_capacity} is not a whole number of pages up to {MAX_SLOT_CAPACITY}"
        ));
    }
    let geometry = Geometry::from_parts(slot_count, snapshot_slots, slot_capacity).map_err(HeaderProblem::Corrupt)?;
    let payload_offset = get_u64(bytes, OFF_PAYLOAD_OFFSET);
    if payload_offset != geometry.payload_offset {
        return corrupt(format!("payload offset {payload_offset}, expected {}", geometry.payload_offset));
    }
    let file_size = get_u64(bytes, OFF_FILE_SIZE);
    if file_size != geometry.file_size {
        return corrupt(format!("file size field {file_size}, expected {}", geometry.file_size));
    }
    Ok(Header { geometry, epoch: get_u64(bytes, OFF_EPOCH) })
}

/// Packs the snapshot pointer: publish generation (48 bits) and ring index (16 bits).
#[must_use]
pub fn pack_snapshot_pointer(generation: u64, ring_index: u32) -> u64 {
    (generation << 16) | u64::from(ring_index & 0xffff)
}

/// Unpacks a snapshot pointer into (generation, ring index); `None` if nothing is published.
#[must_use]
pub fn unpack_snapshot_pointer(word: u64) -> Option<(u64, u32)> {
    let generation = word >> 16;
    (generation != 0).then_some((generation, (word & 0xffff) as u32))
}

fn put_u32(buf: &mut [u8], at: usize, value: u32) {
    buf[at..at + 4].copy_from_slice(&value.to_le_bytes());
}

fn put_u64(buf: &mut [u8], at: usize, value: u64) {
    buf[at..at + 8].copy_from_slice(&value.to_le_bytes());
}

fn get_u32(buf: &[u8; HEADER_READ_LEN], at: usize) -> u32 {
    let mut word = [0u8; 4];
    word.copy_from_slice(&buf[at..at + 4]);
    u32::from_le_bytes(word)
}

fn get_u64(buf: &[u8; HEADER_READ_LEN], at: usize) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&buf[at..at + 8]);
    u64::from_le_bytes(word)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn geometry_is_page_aligned_and_rounds_capacity_up() {
        let g = Geometry::new(16, 4, 5000).unwrap();
        assert_eq!(g.slot_count, 20);
        assert_eq!(g.slot_capacity, 8192);
        assert_eq!(g.payload_offset % PAGE_SIZE, 0);
        assert_eq!(g.payload_offset_of(19) + g.slot_capacity, g.file_size);
        assert_eq!(g.request_slots(), 16);
    }

    #[test]
    fn geometry_refuses_out_of_range_values_with_the_limit() {
        assert!(Geometry::new(0, 0, 4096).unwrap_err().contains("at least 1"));
        assert!(Geometry::new(4096, 1, 4096).unwrap_err().contains("4096"));
        assert!(Geometry::new(1, 0, MAX_SLOT_CAPACITY + 1).unwrap_err().contains("between 1 and"));
        assert!(Geometry::new(4000, 0, MAX_SLOT_CAPACITY).unwrap_err().contains("file size limit"));
    }

    #[test]
    fn header_round_trips() {
        let g = Geometry::new(3, 2, 4096).unwrap();
        let bytes = g.encode_header(42);
        assert_eq!(decode_header(&bytes), Ok(Header { geometry: g, epoch: 42 }));
    }

    #[test]
    fn header_problems_are_named_in_order() {
        let good = Geometry::new(3, 2, 4096).unwrap().encode_header(7);
        let mut bad = good;
        bad[0] = b'X';
        assert_eq!(decode_header(&bad), Err(HeaderProblem::BadMagic));
        let mut bad = good;
        bad[OFF_VERSION] = 9;
        assert_eq!(decode_header(&bad), Err(HeaderProblem::UnsupportedVersion(9)));
        let mut bad = good;
        bad[OFF_SLOT_COUNT] ^= 1;
        assert!(matches!(decode_header(&bad), Err(HeaderProblem::Corrupt(m)) if m.contains("checksum")));
    }

    #[test]
    fn fields_are_validated_even_with_a_matching_checksum() {
        let mut bytes = Geometry::new(3, 2, 4096).unwrap().encode_header(7);
        put_u64(&mut bytes, OFF_FILE_SIZE, 1);
        let checksum = XxHash3_64::oneshot(&bytes[..HEADER_FIELDS_LEN]);
        put_u64(&mut bytes, OFF_HEADER_CHECKSUM, checksum);
        assert!(matches!(decode_header(&bytes), Err(HeaderProblem::Corrupt(m)) if m.contains("file size")));
    }

    #[test]
    fn snapshot_pointer_packs_and_unpacks() {
        assert_eq!(unpack_snapshot_pointer(0), None);
        assert_eq!(unpack_snapshot_pointer(pack_snapshot_pointer(5, 3)), Some((5, 3)));
    }

    #[test]
    fn encodings_round_trip() {
        for e in [Encoding::None, Encoding::Json, Encoding::Raw] {
            assert_eq!(Encoding::from_u32(e.to_u32()), Some(e));
        }
        assert_eq!(Encoding::from_u32(3), None);
    }
}
