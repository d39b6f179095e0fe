//! A writer rewrites one slot as fast as it can while a reader reads it: no read
//! may ever return a mix of two writes. Once across threads, once across processes.
//! Each run is bounded by a read count and a wall-clock cap, whichever comes first.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use shmbridge::layout::Encoding;
use shmbridge::{ChannelConfig, ChannelReader, ChannelWriter, ReadError};

const CAPACITY: u64 = 4096;
const READS: u64 = 200_000;
const WALL_CAP: Duration = Duration::from_secs(4);

/// Payload of write `generation`: its generation, then a length and a fill byte
/// that both derive from it, so any mix of two writes is visible.
fn payload(generation: u64) -> Vec<u8> {
    let len = 8 + (generation.wrapping_mul(7919) % (CAPACITY - 8)) as usize;
    let mut bytes = vec![(generation % 251) as u8; len];
    bytes[..8].copy_from_slice(&generation.to_le_bytes());
    bytes
}

fn check(bytes: &[u8], request_id: u64) -> Result<u64, String> {
    let head: [u8; 8] = bytes.get(..8).and_then(|b| b.try_into().ok()).ok_or("short payload")?;
    let generation = u64::from_le_bytes(head);
    if generation != request_id {
        return Err(format!("payload of write {generation} under request id {request_id}"));
    }
    if bytes != payload(generation).as_slice() {
        return Err(format!("payload of write {generation} is mixed with another write"));
    }
    Ok(generation)
}

/// Sets the stop flag when dropped, so a failing reader (a panic) still stops the
/// writer thread and the test fails instead of hanging in `thread::scope`.
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

fn write_until(writer: &ChannelWriter, stop: &AtomicBool) -> u64 {
    let mut generation = 0;
    while !stop.load(Ordering::Relaxed) {
        generation += 1;
        writer.write_bytes(0, generation, Encoding::Raw, &payload(generation)).unwrap();
        // A pause of varying length between writes, so that reads start at every
        // phase of a write instead of the reader starving behind back-to-back writes.
        for _ in 0..generation.wrapping_mul(2_654_435_761) % 4096 {
            std::hint::spin_loop();
        }
    }
    generation
}

/// Reads until READS or WALL_CAP; returns (good reads, distinct generations seen).
fn read_and_check(reader: &ChannelReader) -> (u64, u64) {
    let started = Instant::now();
    let mut out = Vec::new();
    let (mut good, mut distinct, mut last) = (0, 0, 0);
    for _ in 0..READS {
        if started.elapsed() > WALL_CAP {
            break;
        }
        match reader.read_slot(0, None, &mut out) {
            Ok(meta) => {
                let generation = check(&out, meta.request_id).unwrap_or_else(|e| panic!("torn read: {e}"));
                good += 1;
                if generation != last {
                    distinct += 1;
                    last = generation;
                }
            }
            Err(ReadError::Empty { .. } | ReadError::Contended { .. }) => {}
            Err(other) => panic!("read failed: {other}"),
        }
    }
    (good, distinct)
}

fn private_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o700)).unwrap();
    dir
}

fn channel(dir: &Path) -> ChannelWriter {
    ChannelWriter::create(dir, "race", ChannelConfig { slot_count: 1, snapshot_slots: 0, slot_capacity: CAPACITY })
        .unwrap()
}

#[test]
fn no_torn_reads_across_threads() {
    let dir = private_dir();
    let writer = channel(dir.path());
    let reader = ChannelReader::open(writer.path()).unwrap();
    let stop = AtomicBool::new(false);
    let (writes, (good, distinct)) = std::thread::scope(|scope| {
        let writes = scope.spawn(|| write_until(&writer, &stop));
        let result = {
            let _stop = StopOnDrop(&stop);
            read_and_check(&reader)
        };
        (writes.join().unwrap(), result)
    });
    eprintln!("threads: {writes} writes, {good} checked reads, {distinct} distinct writes seen");
    assert!(good > 0 && distinct > 1, "the reader must have raced the writer");
}

#[test]
fn no_torn_reads_across_processes() {
    let dir = private_dir();
    let writer = channel(dir.path());
    let stop = AtomicBool::new(false);
    let child = std::thread::scope(|scope| {
        let writes = scope.spawn(|| write_until(&writer, &stop));
        let output = {
            let _stop = StopOnDrop(&stop);
            Command::new(std::env::current_exe().unwrap())
                .args(["--ignored", "--exact", "reader_process", "--nocapture", "--test-threads=1"])
                .env("SHMBRIDGE_RACE_CHANNEL", writer.path())
                .output()
                .unwrap()
        };
        writes.join().unwrap();
        output
    });
    let stderr = String::from_utf8_lossy(&child.stderr);
    assert!(child.status.success(), "reader process failed: {stderr}");
    assert!(stderr.contains("reader process ok"), "the reader process did not run: {stderr}");
}

/// The reader half of `no_torn_reads_across_processes`, run in a child process.
#[test]
#[ignore = "run by no_torn_reads_across_processes in a child process"]
fn reader_process() {
    let path = std::env::var_os("SHMBRIDGE_RACE_CHANNEL").expect("started by no_torn_reads_across_processes");
    let reader = ChannelReader::open(Path::new(&path)).unwrap();
    let (good, distinct) = read_and_check(&reader);
    assert!(good > 0 && distinct > 1, "the reader must have raced the writer ({good} reads, {distinct} writes)");
    eprintln!("reader process ok: {good} checked reads, {distinct} distinct writes seen");
}
