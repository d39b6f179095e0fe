//! Long runs of the reader's fuzz harness (`fuzz/harness.rs`) on a stable toolchain:
//!
//! ```text
//! cargo run --release --example fuzz_reader -- --execs 10000000 [--seed N]
//! cargo run --release --example fuzz_reader -- --write-corpus fuzz/corpus/read_channel
//! ```
//!
//! Mutates the seed corpus (bit flips, interesting values in the header and the slot
//! table, cuts, growth, splices) and runs every input through the reader, stopping at
//! the first finding (a panic, with the input saved to `fuzz-finding.bin`).

#[path = "../fuzz/harness.rs"]
mod harness;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

fn usage() -> ExitCode {
    eprintln!("usage: fuzz_reader [--execs N] [--seed N] [--corpus DIR] | --write-corpus DIR");
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let mut execs: u64 = 1_000_000;
    let mut seed: u64 = 1;
    let mut corpus = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/read_channel");
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let Some(value) = args.next() else { return usage() };
        match flag.as_str() {
            "--execs" => match value.parse() {
                Ok(n) => execs = n,
                Err(_) => return usage(),
            },
            "--seed" => match value.parse() {
                Ok(n) => seed = n,
                Err(_) => return usage(),
            },
            "--corpus" => corpus = PathBuf::from(value),
            "--write-corpus" => {
                let dir = PathBuf::from(value);
                for (name, input) in harness::seed_inputs() {
                    let path = dir.join(format!("seed-{name}"));
                    if let Err(e) = std::fs::write(&path, input) {
                        eprintln!("fuzz_reader: cannot write {}: {e}", path.display());
                        return ExitCode::FAILURE;
                    }
                    println!("wrote {}", path.display());
                }
                return ExitCode::SUCCESS;
            }
            _ => return usage(),
        }
    }

    let seeds = harness::committed_corpus(&corpus);
    println!("fuzz_reader: {} seed inputs from {}, {execs} executions, seed {seed}", seeds.len(), corpus.display());
    let work = harness::Workspace::new();
    let mut mutator = harness::Mutator::new(seeds, seed);
    let started = Instant::now();
    let (mut opened, mut reads_ok, mut snapshots_ok) = (0u64, 0u64, 0u64);
    let finding = PathBuf::from("fuzz-finding.bin");
    for done in 0..execs {
        let input = mutator.next_input();
        if done % 100_000 == 0 && done > 0 {
            let rate = done as f64 / started.elapsed().as_secs_f64();
            eprintln!("  {done} executions, {rate:.0}/s, {opened} opened, {reads_ok} slot reads ok");
        }
        let result = std::panic::catch_unwind(|| harness::check(&work, &input));
        match result {
            Ok(outcome) => {
                opened += u64::from(outcome.opened);
                reads_ok += u64::from(outcome.slots_read_ok);
                snapshots_ok += u64::from(outcome.snapshot_ok);
            }
            Err(_) => {
                let _ = std::fs::write(&finding, &input);
                eprintln!("fuzz_reader: FINDING after {done} executions; input saved to {}", finding.display());
                return ExitCode::FAILURE;
            }
        }
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "fuzz_reader: {execs} executions in {secs:.1} s ({:.0}/s): no finding; {opened} files opened, \
         {reads_ok} slot reads and {snapshots_ok} snapshot reads passed their checks",
        execs as f64 / secs
    );
    ExitCode::SUCCESS
}
