//! The channel file as users meet it: create, write, read, errors, life cycle,
//! and what a reader does with a file that was corrupted or truncated.

use std::fs::{self, OpenOptions};
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::path::Path;

use shmbridge::layout::{self, Encoding};
use shmbridge::writer::STREAMING_FROM;
use shmbridge::{ChannelConfig, ChannelReader, ChannelWriter, OpenError, ReadError, SlotWriter, WriteError};

fn config(slots: u32, capacity: u64) -> ChannelConfig {
    ChannelConfig { slot_count: slots, snapshot_slots: 2, slot_capacity: capacity }
}

fn private_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o700)).unwrap();
    dir
}

fn patch(path: &Path, offset: u64, bytes: &[u8]) {
    OpenOptions::new().write(true).open(path).unwrap().write_all_at(bytes, offset).unwrap();
}

#[test]
fn a_written_slot_reads_back_with_its_metadata() {
    let dir = private_dir();
    let writer = ChannelWriter::create(dir.path(), "users", config(4, 8192)).unwrap();
    let receipt = writer.write_bytes(1, 42, Encoding::Json, b"[1,2,3]").unwrap();
    assert_eq!((receipt.slot, receipt.request_id, receipt.length, receipt.sequence), (1, 42, 7, 2));

    let reader = ChannelReader::open(writer.path()).unwrap();
    assert_eq!(reader.epoch(), writer.epoch());
    let mut out = Vec::new();
    let meta = reader.read_slot(1, Some(42), &mut out).unwrap();
    assert_eq!(out, b"[1,2,3]");
    assert_eq!((meta.encoding, meta.sequence, meta.checksum), (Encoding::Json, 2, receipt.checksum));
    assert!(reader.producer_alive());
    assert!(reader.is_current());
}

#[test]
fn reads_name_the_slot_and_the_request() {
    let dir = private_dir();
    let writer = ChannelWriter::create(dir.path(), "users", config(4, 8192)).unwrap();
    writer.write_bytes(0, 7, Encoding::Raw, b"x").unwrap();
    let reader = ChannelReader::open(writer.path()).unwrap();
    let mut out = Vec::new();
    assert_eq!(reader.read_slot(0, Some(8), &mut out), Err(ReadError::WrongRequest { slot: 0, expected: 8, found: 7 }));
    assert_eq!(reader.read_slot(2, None, &mut out), Err(ReadError::Empty { slot: 2 }));
    assert_eq!(reader.read_slot(6, None, &mut out), Err(ReadError::NoSuchSlot { slot: 6, slot_count: 6 }));
    assert_eq!(writer.write_bytes(4, 1, Encoding::Raw, b"x"), Err(WriteError::NoSuchSlot { slot: 4, slot_count: 4 }));
    assert_eq!(writer.write_bytes(0, 0, Encoding::Raw, b"x"), Err(WriteError::ZeroRequestId));
}

#[test]
fn an_oversized_payload_is_refused_naming_size_limit_and_setting_and_nothing_changes() {
    let dir = private_dir();
    let writer = ChannelWriter::create(dir.path(), "users", config(2, 4096)).unwrap();
    writer.write_bytes(0, 1, Encoding::Raw, b"before").unwrap();
    let err = writer.write_bytes(0, 2, Encoding::Raw, &[0u8; 5000]).unwrap_err();
    let message = err.to_string();
    for needle in ["5000", "4096", "nothing was published"] {
        assert!(message.contains(needle), "{message:?} lacks {needle}");
    }
    // The library speaks of itself: the settings that size a slot are its users' own.
    assert!(!message.contains("--slot-capacity") && !message.contains("SHMBRIDGE"), "{message:?}");
    let reader = ChannelReader::open(writer.path()).unwrap();
    let mut out = Vec::new();
    reader.read_slot(0, Some(1), &mut out).unwrap();
    assert_eq!(out, b"before");
}

#[test]
fn an_abandoned_write_publishes_nothing() {
    let dir = private_dir();
    let writer = ChannelWriter::create(dir.path(), "users", config(2, 4096)).unwrap();
    writer.write_bytes(0, 1, Encoding::Raw, b"old").unwrap();
    {
        let mut open = SlotWriter::begin(&writer, 0, 2, Encoding::Raw).unwrap();
        open.write_all(b"half").unwrap();
        assert_eq!(SlotWriter::begin(&writer, 0, 3, Encoding::Raw).unwrap_err(), WriteError::SlotBusy { slot: 0 });
    }
    let reader = ChannelReader::open(writer.path()).unwrap();
    let mut out = Vec::new();
    assert_eq!(reader.read_slot(0, Some(2), &mut out), Err(ReadError::Empty { slot: 0 }));
    writer.write_bytes(0, 4, Encoding::Raw, b"new").unwrap();
    assert_eq!(reader.read_slot(0, Some(4), &mut out).unwrap().sequence, 6);
}

#[test]
fn payloads_past_the_streaming_offset_read_back_whole() {
    let dir = private_dir();
    let len = STREAMING_FROM as usize * 2 + 12_345;
    let writer = ChannelWriter::create(dir.path(), "users", config(2, len as u64 + 4096)).unwrap();
    let data: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
    let reader = ChannelReader::open(writer.path()).unwrap();
    let mut out = Vec::new();

    let receipt = writer.write_bytes(0, 1, Encoding::Raw, &data).unwrap();
    assert_eq!(reader.read_slot(0, Some(1), &mut out).unwrap().checksum, receipt.checksum);
    assert!(out == data, "one write_bytes call");

    // Uneven pieces whose boundaries fall on both sides of the streaming offset.
    let mut open = SlotWriter::begin(&writer, 1, 2, Encoding::Raw).unwrap();
    for piece in data.chunks(STREAMING_FROM as usize - 7) {
        open.write_all(piece).unwrap();
    }
    open.commit().unwrap();
    reader.read_slot(1, Some(2), &mut out).unwrap();
    assert!(out == data, "many write_all calls");
}

/// The file format names xxh3-64 (seed 0) for both checksums; other readers of the
/// file compute it with their own xxh3. Checked against an independent implementation,
/// at lengths around xxh3's short/long boundaries, the copy pieces and the streaming offset.
#[test]
fn checksums_are_the_standard_xxh3_64_of_the_bytes() {
    let dir = private_dir();
    let longest = STREAMING_FROM as usize + 70_000;
    let writer = ChannelWriter::create(dir.path(), "users", config(1, longest as u64)).unwrap();
    let data: Vec<u8> = (0..longest).map(|i| (i * 131 % 253) as u8).collect();
    let piece = shmbridge::segment::COPY_CHUNK;
    for len in [0, 1, 16, 17, 128, 129, 240, 241, 1024, 1025, piece - 1, piece, 3 * piece + 5, longest] {
        let mut open = SlotWriter::begin(&writer, 0, len as u64 + 1, Encoding::Raw).unwrap();
        for part in data[..len].chunks(1000) {
            open.write_all(part).unwrap();
        }
        let receipt = open.commit().unwrap();
        assert_eq!(receipt.checksum, xxhash_rust::xxh3::xxh3_64(&data[..len]), "payload of {len} bytes");
    }
    let file = fs::read(writer.path()).unwrap();
    let stored = u64::from_le_bytes(file[layout::OFF_HEADER_CHECKSUM..][..8].try_into().unwrap());
    assert_eq!(stored, xxhash_rust::xxh3::xxh3_64(&file[..layout::HEADER_FIELDS_LEN]), "header");
}

#[test]
fn snapshots_follow_the_newest_publish_around_the_ring() {
    let dir = private_dir();
    let writer = ChannelWriter::create(dir.path(), "users", config(1, 4096)).unwrap();
    let reader = ChannelReader::open(writer.path()).unwrap();
    let mut out = Vec::new();
    assert_eq!(reader.read_snapshot(&mut out), Err(ReadError::NoSnapshot));
    for generation in 1..=5u64 {
        let body = format!("[{generation}]");
        writer.publish_bytes(Encoding::Json, body.as_bytes()).unwrap();
        let snapshot = reader.read_snapshot(&mut out).unwrap();
        assert_eq!((snapshot.generation, out.as_slice()), (generation, body.as_bytes()));
        assert_eq!(reader.snapshot_generation(), Some(generation));
    }
}

#[test]
fn the_file_is_private_allocated_and_removed_on_close() {
    let dir = private_dir();
    let writer = ChannelWriter::create(dir.path(), "users", config(3, 4096)).unwrap();
    let path = writer.path().to_owned();
    let meta = fs::metadata(&path).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert_eq!(meta.len(), writer.geometry().file_size);
    drop(writer);
    assert!(!path.exists());
    assert!(matches!(ChannelReader::open(&path), Err(OpenError::Missing { .. })));
}

#[test]
fn a_live_channel_is_not_taken_over_and_a_stale_one_is_replaced() {
    let dir = private_dir();
    let first = ChannelWriter::create(dir.path(), "users", config(2, 4096)).unwrap();
    let err = ChannelWriter::create(dir.path(), "users", config(2, 4096)).unwrap_err();
    assert!(err.to_string().contains("in use"), "{err}");

    // A crashed producer leaves its file behind with the lock released.
    let path = first.path().to_owned();
    let saved = dir.path().join("saved");
    fs::hard_link(&path, &saved).unwrap();
    let old_epoch = first.epoch();
    drop(first);
    fs::rename(&saved, &path).unwrap();
    let stale = ChannelReader::open(&path).unwrap();
    assert!(!stale.producer_alive());

    let second = ChannelWriter::create(dir.path(), "users", config(2, 4096)).unwrap();
    assert_ne!(second.epoch(), old_epoch);
    assert!(!stale.is_current(), "the replaced file is a new inode");
    assert_eq!(ChannelReader::open(&path).unwrap().epoch(), second.epoch());
}

#[test]
fn symlinks_and_unsafe_directories_are_refused() {
    let dir = private_dir();
    let target = dir.path().join("elsewhere");
    fs::write(&target, b"").unwrap();
    std::os::unix::fs::symlink(&target, dir.path().join("users.shm")).unwrap();
    let err = ChannelWriter::create(dir.path(), "users", config(1, 4096)).unwrap_err();
    assert!(err.to_string().contains("symbolic link"), "{err}");
    assert!(matches!(ChannelReader::open(&dir.path().join("users.shm")), Err(OpenError::Symlink { .. })));

    let shared = dir.path().join("tmp");
    fs::create_dir(&shared).unwrap();
    fs::set_permissions(&shared, fs::Permissions::from_mode(0o1777)).unwrap();
    let err = ChannelWriter::create(&shared, "users", config(1, 4096)).unwrap_err();
    assert!(err.to_string().contains("world-writable"), "{err}");

    let err = ChannelWriter::create(dir.path(), "../escape", config(1, 4096)).unwrap_err();
    assert!(err.to_string().contains("invalid channel name"), "{err}");
}

#[test]
fn a_reader_refuses_bad_magic_version_header_and_truncation() {
    let dir = private_dir();
    let writer = ChannelWriter::create(dir.path(), "users", config(2, 4096)).unwrap();
    let path = writer.path().to_owned();
    let original = fs::read(&path).unwrap();
    let restore = || fs::write(&path, &original).unwrap();

    patch(&path, 0, b"NOTMAGIC");
    assert!(matches!(ChannelReader::open(&path), Err(OpenError::BadMagic { .. })));
    restore();
    patch(&path, layout::OFF_VERSION as u64, &9u32.to_le_bytes());
    assert!(matches!(ChannelReader::open(&path), Err(OpenError::UnsupportedVersion { found: 9, .. })));
    restore();
    patch(&path, layout::OFF_SLOT_COUNT as u64, &999u32.to_le_bytes());
    assert!(matches!(ChannelReader::open(&path), Err(OpenError::CorruptHeader { .. })));
    restore();

    let reader = ChannelReader::open(&path).unwrap();
    OpenOptions::new().write(true).open(&path).unwrap().set_len(5000).unwrap();
    assert!(matches!(ChannelReader::open(&path), Err(OpenError::Truncated { actual: 5000, .. })));
    let mut out = Vec::new();
    assert!(matches!(reader.read_slot(0, None, &mut out), Err(ReadError::Truncated { actual: 5000, .. })));
    OpenOptions::new().write(true).open(&path).unwrap().set_len(100).unwrap();
    assert!(matches!(ChannelReader::open(&path), Err(OpenError::TooSmall { size: 100, .. })));
}

#[test]
fn a_header_overwritten_after_open_is_refused_until_restored() {
    let dir = private_dir();
    let writer = ChannelWriter::create(dir.path(), "users", config(2, 4096)).unwrap();
    writer.write_bytes(0, 5, Encoding::Json, b"[]").unwrap();
    writer.publish_bytes(Encoding::Json, b"[]").unwrap();
    let path = writer.path().to_owned();
    let reader = ChannelReader::open(&path).unwrap();
    let mut out = Vec::new();
    reader.read_slot(0, Some(5), &mut out).unwrap();
    let original = fs::read(&path).unwrap();
    // Flip the checksum's last byte: a fixed value would be a no-op 1 time in 256.
    let flipped_checksum_byte = [original[layout::OFF_HEADER_CHECKSUM + 7] ^ 0xFF];
    for (offset, bytes) in [
        (0, &b"NOTMAGIC"[..]),
        (layout::OFF_VERSION, &2u32.to_le_bytes()[..]),
        (layout::OFF_SLOT_CAPACITY, &(1u64 << 20).to_le_bytes()[..]),
        (layout::OFF_EPOCH, &1u64.to_le_bytes()[..]),
        (layout::OFF_HEADER_CHECKSUM + 7, &flipped_checksum_byte[..]),
    ] {
        patch(&path, offset as u64, bytes);
        assert_eq!(reader.read_slot(0, Some(5), &mut out), Err(ReadError::HeaderChanged), "offset {offset}");
        assert_eq!(reader.read_snapshot(&mut out).unwrap_err(), ReadError::HeaderChanged, "offset {offset}");
        patch(&path, offset as u64, &original[offset..offset + bytes.len()]);
        reader.read_slot(0, Some(5), &mut out).unwrap();
    }
    // Bytes after the checked fields (the rest of the header page) are not part of it.
    patch(&path, layout::HEADER_READ_LEN as u64, &[0xFF; 8]);
    reader.read_slot(0, Some(5), &mut out).unwrap();
}

#[test]
fn corrupted_slot_metadata_and_payload_are_detected() {
    let dir = private_dir();
    let writer = ChannelWriter::create(dir.path(), "users", config(2, 4096)).unwrap();
    writer.write_bytes(0, 5, Encoding::Json, b"{\"a\":1}").unwrap();
    let path = writer.path().to_owned();
    let reader = ChannelReader::open(&path).unwrap();
    let geometry = *reader.geometry();
    let slot_header = geometry.slot_header_offset(0);
    let mut out = Vec::new();

    patch(&path, geometry.payload_offset_of(0), b"X");
    assert!(matches!(reader.read_slot(0, Some(5), &mut out), Err(ReadError::Checksum { slot: 0, .. })));
    patch(&path, slot_header + layout::SLOT_OFF_LENGTH, &u64::MAX.to_le_bytes());
    assert!(matches!(reader.read_slot(0, Some(5), &mut out), Err(ReadError::CorruptSlot { slot: 0, .. })));
    patch(&path, slot_header + layout::SLOT_OFF_LENGTH, &7u64.to_le_bytes());
    patch(&path, slot_header + layout::SLOT_OFF_ENCODING, &77u32.to_le_bytes());
    assert!(matches!(reader.read_slot(0, Some(5), &mut out), Err(ReadError::CorruptSlot { .. })));
    patch(&path, slot_header + layout::SLOT_OFF_SEQUENCE, &3u64.to_le_bytes());
    assert!(matches!(reader.read_slot(0, Some(5), &mut out), Err(ReadError::Contended { slot: 0, .. })));
    patch(&path, layout::OFF_SNAPSHOT_POINTER, &layout::pack_snapshot_pointer(1, 9).to_le_bytes());
    assert!(matches!(reader.read_snapshot(&mut out), Err(ReadError::CorruptSnapshotPointer { .. })));
}

#[test]
fn a_slot_stuck_mid_write_is_reported_after_the_retry_budget() {
    // What a writer killed between its odd and even stores leaves: an odd sequence forever.
    let dir = private_dir();
    let writer = ChannelWriter::create(dir.path(), "users", config(2, 4096)).unwrap();
    writer.write_bytes(0, 5, Encoding::Json, b"[1]").unwrap();
    let path = writer.path().to_owned();
    let reader = ChannelReader::open(&path).unwrap();
    patch(&path, reader.geometry().slot_header_offset(0) + layout::SLOT_OFF_SEQUENCE, &3u64.to_le_bytes());
    let mut out = Vec::new();
    let started = std::time::Instant::now();
    let err = reader.read_slot(0, Some(5), &mut out).unwrap_err();
    let took = started.elapsed();
    let ReadError::Contended { slot: 0, attempts } = err else { panic!("expected contention, got {err}") };
    // The read gives up only once the budget is spent, never sooner; how much later
    // depends on the scheduler, so it is printed, not asserted.
    assert!(took >= shmbridge::READ_RETRY_BUDGET, "gave up after {took:?}");
    println!("stuck slot: contended after {took:?} and {attempts} attempts");
    assert!(err.to_string().contains("kept changing"), "{err}");
}
