//! Criterion benches of the core's slot write and read, side by side with a plain
//! memcpy of the same bytes into a preallocated buffer (and xxh3 alone, the checksum
//! both sides compute), at the payload sizes of 2 to 100,000 users.
//!
//! - `memcpy`: `copy_from_slice` into a warm private buffer: the floor.
//! - `write`: `ChannelWriter::write_bytes` into a request slot (seqlock, copy into the
//!   mapping, xxh3 of the bytes, metadata, publish).
//! - `read`: `ChannelReader::read_slot` into a reused `Vec` (file and header re-check,
//!   seqlock, volatile copy out, request id and xxh3 check of the private copy).
//! - `xxh3`: the checksum alone over private bytes.
//!
//! The channel file lives in a private temp directory under /dev/shm: tmpfs, so the
//! mapping is memory-backed as in production (the producer's shm directory), and no
//! disk or page-cache writeback is measured. Its pages are touched once by the warm-up.
//!
//! `cargo bench --bench slot` (or `make microbench`); results in target/criterion/.

use std::hint::black_box;
use std::path::Path;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use shmbridge::{ChannelConfig, ChannelReader, ChannelWriter, Encoding};

/// (users, payload bytes): about 290-300 bytes of JSON per user.
const SIZES: [(u32, usize); 5] =
    [(2, 600), (100, 29_000), (1_000, 290_000), (10_000, 2_900_000), (100_000, 29_000_000)];

/// Big enough for the largest payload.
const SLOT_CAPACITY: u64 = 32 << 20;
/// The slot `write` writes, and the slot `read` reads (written once per size).
const WRITE_SLOT: u32 = 0;
const READ_SLOT: u32 = 1;
const READ_REQUEST_ID: u64 = 7;

/// Plain filler bytes that look a bit like JSON.
fn filler(len: usize) -> Vec<u8> {
    const TEXT: &[u8] = br#"{"id":1,"first_name":"Ada","email":"ada@example.com","age":36},"#;
    TEXT.iter().copied().cycle().take(len).collect()
}

fn slot_benches(c: &mut Criterion) {
    // Memory-backed: tmpfs at /dev/shm (see the module comment).
    let root = Path::new("/dev/shm");
    let dir = tempfile::Builder::new()
        .prefix("shmbridge-bench-")
        .tempdir_in(root)
        .expect("a private temp directory under /dev/shm (is /dev/shm mounted and writable?)");
    let config = ChannelConfig { slot_count: 2, snapshot_slots: 0, slot_capacity: SLOT_CAPACITY };
    let writer = ChannelWriter::create(dir.path(), "bench", config).expect("creating the bench channel file");
    let reader = ChannelReader::open(writer.path()).expect("opening the bench channel file for reading");

    for (users, len) in SIZES {
        let data = filler(len);
        let mut group = c.benchmark_group(format!("users_{users}"));
        group.throughput(Throughput::Bytes(len as u64));
        if len >= 2_000_000 {
            // Milliseconds per iteration: fewer samples, still several hundred iterations.
            group.sample_size(20).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(4));
        } else {
            group.sample_size(50).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(2));
        }

        let mut dst = vec![0u8; len];
        group.bench_function("memcpy", |b| {
            b.iter(|| {
                dst.copy_from_slice(black_box(&data));
                black_box(&mut dst);
            });
        });

        let mut request_id = 0u64;
        group.bench_function("write", |b| {
            b.iter(|| {
                request_id += 1;
                writer.write_bytes(WRITE_SLOT, request_id, Encoding::Raw, black_box(&data)).expect("slot write")
            });
        });

        writer.write_bytes(READ_SLOT, READ_REQUEST_ID, Encoding::Raw, &data).expect("writing the slot to read");
        let mut out = Vec::with_capacity(len);
        // Checked once up front, so that a filter that skips `read` does not fail it.
        reader.read_slot(READ_SLOT, Some(READ_REQUEST_ID), &mut out).expect("slot read");
        assert_eq!(out, data, "the slot read back what was written");
        group.bench_function("read", |b| {
            b.iter(|| {
                let meta = reader.read_slot(READ_SLOT, Some(READ_REQUEST_ID), &mut out).expect("slot read");
                black_box(&out);
                meta
            });
        });

        group.bench_function("xxh3", |b| b.iter(|| twox_hash::XxHash3_64::oneshot(black_box(&data))));
        group.finish();
    }
}

criterion_group!(benches, slot_benches);
criterion_main!(benches);
