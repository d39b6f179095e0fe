//! The reader's fuzz harness (`fuzz/harness.rs`) in `cargo test`: the committed seed
//! corpus and freshly written seeds must read back, then a bounded number of their
//! mutations must neither panic nor return a payload that fails its own checks.
//! The long runs are `cargo +nightly fuzz run read_channel` (libFuzzer) and
//! `cargo run --release --example fuzz_reader -- --execs 10000000`.

#[path = "../fuzz/harness.rs"]
mod harness;

use std::path::PathBuf;

/// Mutations per `cargo test` run (a debug build does a few thousand a second).
const EXECS: u64 = 20_000;

fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/read_channel")
}

fn seeds() -> Vec<Vec<u8>> {
    let committed = harness::committed_corpus(&corpus_dir());
    assert!(committed.len() >= 4, "the seed corpus is in {}", corpus_dir().display());
    committed.into_iter().chain(harness::seed_inputs().into_iter().map(|(_, input)| input)).collect()
}

#[test]
fn the_seed_corpus_reads_back() {
    let work = harness::Workspace::new();
    let mut read_ok = 0;
    for input in seeds() {
        let outcome = harness::check(&work, &input);
        assert!(outcome.opened, "a seed must open: {outcome:?}");
        read_ok += outcome.slots_read_ok;
    }
    assert!(read_ok > 0, "the seeds hold written slots");
}

#[test]
fn mutations_of_the_seed_corpus_never_panic_or_lie() {
    let work = harness::Workspace::new();
    let mut mutator = harness::Mutator::new(seeds(), 1);
    let mut opened = 0;
    for _ in 0..EXECS {
        opened += u64::from(harness::check(&work, &mutator.next_input()).opened);
    }
    // Most mutations break the header; enough must get past it to test the slots.
    assert!(opened > EXECS / 20, "only {opened} of {EXECS} mutated files opened");
}
