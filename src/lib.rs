//! shmbridge: hand data from a Python producer to a Rust reader through a
//! memory-mapped channel file.
//!
//! The channel file is a header page, a table of slot headers and page-aligned
//! slot payloads (see [`layout`]). Each slot is guarded by a seqlock so that a
//! reader never returns bytes a writer was changing. The producer owns the file
//! ([`writer::ChannelWriter`]); readers map it read-only ([`reader::ChannelReader`]).
//!
//! All `unsafe` code touching shared memory lives in [`segment`]. The signal socket's
//! frame format (how a reader asks the producer's handler for a write) is in [`wire`].
//!
//! With the `client` feature, [`client`] is the async client a Rust service uses to
//! call the producer's handlers and read their replies (tokio).

#[cfg(feature = "client")]
pub mod client;
pub mod error;
pub mod fsutil;
pub mod layout;
pub mod poll;
pub mod reader;
pub mod segment;
pub mod wire;
pub mod writer;

#[cfg(feature = "python")]
mod python;

pub use error::{CreateError, OpenError, ReadError, WriteError};
pub use layout::{Encoding, Geometry, DEFAULT_SLOT_CAPACITY, DEFAULT_SLOT_COUNT, DEFAULT_SNAPSHOT_SLOTS};
pub use reader::{ChannelReader, SlotMeta, Snapshot, READ_RETRY_BUDGET};
pub use writer::{ChannelConfig, ChannelWriter, Receipt, SlotWriter};

/// File name of the channel `name` inside its directory.
#[must_use]
pub fn channel_file_name(name: &str) -> String {
    format!("{name}.shm")
}

/// File name of the Unix socket that signals the producer of channel `name`.
#[must_use]
pub fn socket_file_name(name: &str) -> String {
    format!("{name}.sock")
}
