//! libFuzzer over the channel reader's parsing: `ChannelReader::open`, `read_slot` and
//! `read_snapshot` on arbitrary (and arbitrarily cut) files. The input format and the
//! checks are in `../harness.rs`, shared with the bounded run in `cargo test`.
//!
//! ```text
//! cargo +nightly fuzz run read_channel fuzz/corpus/read_channel -- -runs=10000000
//! ```

#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

#[path = "../harness.rs"]
mod harness;

static WORK: OnceLock<harness::Workspace> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let work = WORK.get_or_init(harness::Workspace::new);
    let _ = harness::check(work, data);
});
