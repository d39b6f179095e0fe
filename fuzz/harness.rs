//! The reader-parsing fuzz harness, shared by three drivers:
//!
//! - `fuzz/fuzz_targets/read_channel.rs`: libFuzzer through `cargo fuzz` (nightly);
//! - `tests/fuzz_reader.rs`: a bounded run of [`Mutator`] over the seed corpus in
//!   `cargo test`;
//! - `examples/fuzz_reader.rs`: the same mutation loop for millions of executions
//!   (`cargo run --release --example fuzz_reader -- --execs 10000000`).
//!
//! One input is a control byte followed by the bytes of a channel file. The control
//! byte says how the file is presented to the reader:
//!
//! - bits 0-1, the file's length: 0 as given; 1 extended (sparse) to the size its
//!   header declares, so slots are reached; 2 cut to half; 3 cut one byte short of the
//!   declared size;
//! - bit 2: recompute the header checksum after the input's bytes, so the fields
//!   behind it (counts, capacity, offsets, sizes) are checked, not just the checksum;
//! - bit 3: recompute every slot's checksum over its declared payload, so reads get
//!   past the checksum with arbitrary lengths and sequences;
//! - bit 4: cut the file to half its length after the reader opened and mapped it,
//!   before reading (a file truncated under a reader must give errors, never SIGBUS).
//!
//! [`check`] opens the file with `ChannelReader::open`, reads every slot (up to a
//! bound) and the snapshot, and asserts that nothing panics and that every read that
//! succeeded returned a payload matching its length and checksum.

#![allow(dead_code)] // each driver uses a different part

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};

use shmbridge::layout::{self, Encoding};
use shmbridge::{ChannelConfig, ChannelReader, ChannelWriter};

/// Slots read per execution: the first ones, the last one and one past the end. (A
/// slot whose sequence stays odd costs thousands of retries, so not every slot is read.)
const FIRST_SLOTS_READ: u32 = 2;
/// Declared sizes up to this are materialised (sparse) by control mode 1.
const MAX_PADDED_SIZE: u64 = 64 << 20;

/// What one execution saw, for statistics.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    pub opened: bool,
    pub slots_read_ok: u32,
    pub slot_errors: u32,
    pub snapshot_ok: bool,
}

/// Where an execution writes its file: one path, rewritten each time.
#[derive(Debug)]
pub struct Workspace {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

impl Workspace {
    /// A private temporary directory, in /dev/shm when there is one (faster).
    ///
    /// # Panics
    /// If no temporary directory can be made.
    #[must_use]
    pub fn new() -> Self {
        let shm = Path::new("/dev/shm");
        let dir = if shm.is_dir() { tempfile::tempdir_in(shm) } else { tempfile::tempdir() }
            .or_else(|_| tempfile::tempdir())
            .expect("a temporary directory");
        let path = dir.path().join("fuzz.shm");
        Self { _dir: dir, path }
    }
}

impl Default for Workspace {
    fn default() -> Self {
        Self::new()
    }
}

fn get_u64(bytes: &[u8], at: usize) -> Option<u64> {
    let raw: [u8; 8] = bytes.get(at..at + 8)?.try_into().ok()?;
    Some(u64::from_le_bytes(raw))
}

fn put_u64(bytes: &mut [u8], at: usize, value: u64) {
    if let Some(dst) = bytes.get_mut(at..at + 8) {
        dst.copy_from_slice(&value.to_le_bytes());
    }
}

fn get_u32(bytes: &[u8], at: usize) -> Option<u32> {
    let raw: [u8; 4] = bytes.get(at..at + 4)?.try_into().ok()?;
    Some(u32::from_le_bytes(raw))
}

/// Recomputes the checksum of every slot whose header and declared payload lie in `file`.
fn fix_slot_checksums(file: &mut [u8]) {
    let (Some(count), Some(capacity), Some(payload_offset)) = (
        get_u32(file, layout::OFF_SLOT_COUNT),
        get_u64(file, layout::OFF_SLOT_CAPACITY),
        get_u64(file, layout::OFF_PAYLOAD_OFFSET),
    ) else {
        return;
    };
    for slot in 0..count.min(layout::MAX_SLOT_COUNT) {
        let header = layout::HEADER_SIZE as usize + slot as usize * layout::SLOT_HEADER_SIZE as usize;
        let Some(length) = get_u64(file, header + layout::SLOT_OFF_LENGTH as usize) else { return };
        let start = u64::from(slot).checked_mul(capacity).and_then(|o| o.checked_add(payload_offset));
        let range = start.and_then(|s| Some(usize::try_from(s).ok()?..usize::try_from(s.checked_add(length)?).ok()?));
        if let Some(payload) = range.and_then(|r| file.get(r)) {
            let sum = xxhash_rust::xxh3::xxh3_64(payload);
            put_u64(file, header + layout::SLOT_OFF_CHECKSUM as usize, sum);
        }
    }
}

/// Runs one input through the reader. Panics (the finding) if a read that succeeded
/// returned bytes that do not match their metadata.
///
/// # Panics
/// On a finding, or if the workspace file cannot be written.
pub fn check(work: &Workspace, input: &[u8]) -> Outcome {
    let Some((&control, file)) = input.split_first() else { return Outcome::default() };
    let mut file = file.to_vec();
    if control & 4 != 0 && file.len() >= layout::HEADER_READ_LEN {
        let sum = xxhash_rust::xxh3::xxh3_64(&file[..layout::HEADER_FIELDS_LEN]);
        put_u64(&mut file, layout::OFF_HEADER_CHECKSUM, sum);
    }
    if control & 8 != 0 {
        fix_slot_checksums(&mut file);
    }
    let declared = get_u64(&file, layout::OFF_FILE_SIZE).unwrap_or(0);
    let length = match control & 3 {
        1 if declared <= MAX_PADDED_SIZE => declared.max(file.len() as u64),
        2 => file.len() as u64 / 2,
        3 if declared > 0 && declared <= MAX_PADDED_SIZE => declared - 1,
        _ => file.len() as u64,
    };
    file.truncate(usize::try_from(length).unwrap_or(usize::MAX));
    std::fs::write(&work.path, &file).expect("writing the fuzz file");
    OpenOptions::new().write(true).open(&work.path).and_then(|f| f.set_len(length)).expect("sizing the fuzz file");

    let mut outcome = Outcome::default();
    let Ok(reader) = ChannelReader::open(&work.path) else { return outcome };
    outcome.opened = true;
    let geometry = *reader.geometry();
    // Whatever open accepted is a consistent geometry inside the file.
    assert!(geometry.slot_count >= 1 && geometry.snapshot_slots < geometry.slot_count);
    assert!(geometry.payload_offset_of(geometry.slot_count - 1) + geometry.slot_capacity <= geometry.file_size);
    assert!(geometry.file_size <= length, "open accepted a file shorter than its header says");
    if control & 16 != 0 {
        OpenOptions::new().write(true).open(&work.path).and_then(|f| f.set_len(length / 2)).expect("cutting");
    }
    let _ = reader.producer_alive();
    let _ = reader.is_current();
    let _ = reader.snapshot_generation();

    let mut out = Vec::new();
    let last = geometry.slot_count - 1;
    let mut slots: Vec<u32> = (0..geometry.slot_count.min(FIRST_SLOTS_READ)).chain([last, last + 1]).collect();
    slots.dedup();
    for slot in slots {
        // Slot 0 is also read as if for request 1, to go through the request-id check.
        let expectations: &[Option<u64>] = if slot == 0 { &[None, Some(1)] } else { &[None] };
        for &expected in expectations {
            match reader.read_slot(slot, expected, &mut out) {
                Ok(meta) => {
                    outcome.slots_read_ok += 1;
                    assert_eq!(meta.slot, slot);
                    assert!(slot < geometry.slot_count);
                    assert_eq!(out.len() as u64, meta.length, "slot {slot}: length");
                    assert!(meta.length <= geometry.slot_capacity, "slot {slot}: over capacity");
                    assert_eq!(xxhash_rust::xxh3::xxh3_64(&out), meta.checksum, "slot {slot}: checksum");
                    assert_ne!(meta.encoding, Encoding::None, "slot {slot}: an empty slot read as data");
                    assert_eq!(meta.sequence % 2, 0, "slot {slot}: odd sequence");
                    if let Some(id) = expected {
                        assert_eq!(meta.request_id, id, "slot {slot}: another request's data");
                    }
                }
                Err(_) => outcome.slot_errors += 1,
            }
        }
    }
    if let Ok(snapshot) = reader.read_snapshot(&mut out) {
        outcome.snapshot_ok = true;
        let meta = snapshot.meta;
        assert!(meta.slot >= geometry.request_slots() && meta.slot < geometry.slot_count);
        assert_eq!(meta.request_id, snapshot.generation);
        assert_eq!(out.len() as u64, meta.length);
        assert_eq!(xxhash_rust::xxh3::xxh3_64(&out), meta.checksum, "snapshot checksum");
    }
    outcome
}

/// Valid small channel files (control byte first), made by the real writer: the seed
/// corpus. Names are stable; contents differ per run only in the epoch and write times.
///
/// # Panics
/// If the writer fails.
#[must_use]
pub fn seed_inputs() -> Vec<(&'static str, Vec<u8>)> {
    let dir = tempfile::tempdir().expect("a temporary directory");
    std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o700)).expect("chmod");
    let make = |name: &'static str, slots: u32, ring: u32, fill: &dyn Fn(&ChannelWriter)| {
        let config = ChannelConfig { slot_count: slots, snapshot_slots: ring, slot_capacity: 4096 };
        let writer = ChannelWriter::create(dir.path(), name, config).expect("a channel");
        fill(&writer);
        let bytes = std::fs::read(writer.path()).expect("reading the channel");
        // Control 1: present the file at its declared size.
        (name, [&[1u8][..], &bytes].concat())
    };
    vec![
        make("empty_one_slot", 1, 0, &|_| {}),
        make("one_slot_json", 1, 0, &|w| {
            w.write_bytes(0, 7, Encoding::Json, br#"[{"id":1,"first_name":"Chlo\u00e9"}]"#).expect("write");
        }),
        make("two_slots_and_snapshot", 2, 1, &|w| {
            w.write_bytes(0, 1, Encoding::Json, b"[]").expect("write");
            w.write_bytes(1, 2, Encoding::Raw, &[0xAB; 100]).expect("write");
            w.publish_bytes(Encoding::Json, br#"[{"id":1}]"#).expect("publish");
        }),
        make("full_slot", 1, 1, &|w| {
            w.write_bytes(0, 9, Encoding::Raw, &[0x5A; 4096]).expect("write");
            w.publish_bytes(Encoding::Raw, b"x").expect("publish");
            w.publish_bytes(Encoding::Raw, b"yz").expect("publish");
        }),
    ]
}

/// A small deterministic generator (xorshift64*), so runs are reproducible by seed.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    #[must_use]
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0..n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

const INTERESTING_U32: [u32; 12] = [0, 1, 2, 3, 255, 256, 4095, 4096, 4097, 0x7FFF_FFFF, 0x8000_0000, u32::MAX];
const INTERESTING_U64: [u64; 12] =
    [0, 1, 3, 4096, 8192, 12288, 1 << 30, (1 << 30) + 1, 64 << 30, 1 << 63, u64::MAX - 4095, u64::MAX];

/// Mutates seed inputs the way a simple fuzzer would: bit flips, interesting values at
/// the header's and slot table's aligned fields, cuts, growth and splices.
#[derive(Debug)]
pub struct Mutator {
    seeds: Vec<Vec<u8>>,
    rng: Rng,
}

impl Mutator {
    /// # Panics
    /// If `seeds` is empty.
    #[must_use]
    pub fn new(seeds: Vec<Vec<u8>>, seed: u64) -> Self {
        assert!(!seeds.is_empty(), "no seed inputs");
        Self { seeds, rng: Rng::new(seed) }
    }

    /// The next input.
    pub fn next_input(&mut self) -> Vec<u8> {
        let mut input = self.seeds[self.rng.below(self.seeds.len())].clone();
        let rounds = 1 + self.rng.below(6);
        for _ in 0..rounds {
            self.mutate(&mut input);
        }
        input
    }

    fn mutate(&mut self, input: &mut Vec<u8>) {
        if input.is_empty() {
            input.push(0);
        }
        // Offsets are file offsets (+1 for the control byte), mostly in the first 8 KiB:
        // the header page and the slot table, where the parsing happens.
        let hot = input.len().min(8193);
        match self.rng.below(9) {
            0 => {
                let at = self.rng.below(hot);
                input[at] ^= 1 << self.rng.below(8);
            }
            1 => {
                let at = self.rng.below(hot);
                input[at] = [0, 1, 0x7F, 0x80, 0xFF][self.rng.below(5)];
            }
            2 => {
                let at = 1 + self.rng.below(hot / 4 + 1) * 4;
                let value = INTERESTING_U32[self.rng.below(INTERESTING_U32.len())];
                if let Some(dst) = input.get_mut(at..at + 4) {
                    dst.copy_from_slice(&value.to_le_bytes());
                }
            }
            3 => {
                let at = 1 + self.rng.below(hot / 8 + 1) * 8;
                let value = INTERESTING_U64[self.rng.below(INTERESTING_U64.len())];
                if let Some(dst) = input.get_mut(at..at + 8) {
                    dst.copy_from_slice(&value.to_le_bytes());
                }
            }
            4 => {
                let at = self.rng.below(input.len());
                input[at] = self.rng.next_u64() as u8;
            }
            5 => input.truncate(self.rng.below(input.len() + 1)),
            6 => {
                let grow = self.rng.below(8192);
                let byte = if self.rng.below(2) == 0 { 0 } else { self.rng.next_u64() as u8 };
                input.resize(input.len() + grow, byte);
            }
            7 => {
                let other = &self.seeds[self.rng.below(self.seeds.len())];
                let from = self.rng.below(other.len());
                let len = self.rng.below(other.len() - from + 1).min(512);
                let at = self.rng.below(input.len());
                let end = (at + len).min(input.len());
                input[at..end].copy_from_slice(&other[from..from + (end - at)]);
            }
            _ => input[0] = self.rng.next_u64() as u8,
        }
    }
}

/// The seed corpus committed in `fuzz/corpus/read_channel/`.
///
/// # Panics
/// If the directory cannot be read.
#[must_use]
pub fn committed_corpus(dir: &Path) -> Vec<Vec<u8>> {
    let mut paths: Vec<PathBuf> =
        std::fs::read_dir(dir).expect("the corpus directory").map(|e| e.expect("an entry").path()).collect();
    paths.sort();
    paths.iter().map(|p| std::fs::read(p).expect("a corpus file")).collect()
}
