//! Properties: random payloads round-trip; random corruption of the header,
//! the slot table or the payload is always detected or harmless, never a panic
//! and never different bytes served as good.

use std::fs::{self, OpenOptions};
use std::os::unix::fs::{FileExt, PermissionsExt};

use proptest::prelude::*;
use shmbridge::layout::Encoding;
use shmbridge::{ChannelConfig, ChannelReader, ChannelWriter};

const CAPACITY: u64 = 16 * 1024;

fn writer() -> (tempfile::TempDir, ChannelWriter) {
    let dir = tempfile::tempdir().unwrap();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o700)).unwrap();
    let config = ChannelConfig { slot_count: 2, snapshot_slots: 1, slot_capacity: CAPACITY };
    let writer = ChannelWriter::create(dir.path(), "prop", config).unwrap();
    (dir, writer)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn payloads_round_trip(payload in proptest::collection::vec(any::<u8>(), 0..CAPACITY as usize), slot in 0u32..2, request_id in 1u64..u64::MAX) {
        let (_dir, writer) = writer();
        writer.write_bytes(slot, request_id, Encoding::Raw, &payload).unwrap();
        writer.publish_bytes(Encoding::Json, &payload).unwrap();
        let reader = ChannelReader::open(writer.path()).unwrap();
        let mut out = Vec::new();
        let meta = reader.read_slot(slot, Some(request_id), &mut out).unwrap();
        prop_assert_eq!(&out, &payload);
        prop_assert_eq!(meta.length, payload.len() as u64);
        reader.read_snapshot(&mut out).unwrap();
        prop_assert_eq!(&out, &payload);
    }

    #[test]
    fn corruption_is_detected_or_harmless(
        payload in proptest::collection::vec(any::<u8>(), 1..2048),
        patches in proptest::collection::vec((0u64..4096 + 4096 + 2048, any::<u8>()), 1..8),
    ) {
        let (_dir, writer) = writer();
        writer.write_bytes(0, 9, Encoding::Json, &payload).unwrap();
        writer.publish_bytes(Encoding::Json, &payload).unwrap();
        let file = OpenOptions::new().write(true).open(writer.path()).unwrap();
        // Offsets cover the header page, the slot table and slot 0's payload (from 8192).
        for (offset, byte) in &patches {
            file.write_all_at(&[*byte], *offset).unwrap();
        }
        let Ok(reader) = ChannelReader::open(writer.path()) else { return Ok(()) };
        let mut out = Vec::new();
        if reader.read_slot(0, Some(9), &mut out).is_ok() {
            prop_assert_eq!(&out, &payload, "a read that passed its checks returned other bytes");
        }
        if reader.read_snapshot(&mut out).is_ok() {
            prop_assert_eq!(&out, &payload, "a snapshot that passed its checks returned other bytes");
        }
    }
}
