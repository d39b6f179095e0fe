//! One error enum per operation. Every message names what went wrong and, where
//! a user can act on it, the value, the limit and the setting that changes it.

use std::path::PathBuf;

/// Creating a channel file (the producer's side).
#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    /// The channel name would not make a safe file name.
    #[error("invalid channel name {name:?}: use 1-64 characters from A-Z a-z 0-9 _ -")]
    InvalidName { name: String },
    /// Slot count, snapshot ring or capacity outside what the layout allows.
    #[error("invalid channel geometry: {0}")]
    InvalidGeometry(String),
    /// The directory is unsafe to hold a channel (world-writable, a symlink, not ours).
    #[error("refusing channel directory {path}: {reason}")]
    UnsafeDirectory { path: PathBuf, reason: String },
    /// The path exists and is a symlink; channel files are never created through one.
    #[error("refusing {path}: it is a symbolic link")]
    Symlink { path: PathBuf },
    /// A live producer holds the channel's lock.
    #[error("channel {path} is in use by a running producer (its lock is held)")]
    InUse { path: PathBuf },
    /// Something other than a socket sits where the signal socket goes.
    #[error("refusing {path}: it exists and is not a Unix socket; remove it or choose another path")]
    NotASocket { path: PathBuf },
    /// The path belongs to another user.
    #[error("refusing {path}: it is owned by uid {uid}, not by this user (uid {me})")]
    NotOwned { path: PathBuf, uid: u32, me: u32 },
    /// A live process listens on the signal socket.
    #[error("socket {path} is in use: a process is listening on it (is another producer running?)")]
    SocketInUse { path: PathBuf },
    /// The file could not be given its full size (a full tmpfs or disk).
    #[error("cannot allocate {size} bytes for {path}: {source} (fewer or smaller slots need less room)")]
    Allocate { path: PathBuf, size: u64, source: std::io::Error },
    /// Any other file-system failure.
    #[error("{action} {path}: {source}")]
    Io { action: &'static str, path: PathBuf, source: std::io::Error },
}

/// Opening an existing channel file (the reader's side).
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("channel file {path} does not exist (is the producer running?)")]
    Missing { path: PathBuf },
    #[error("refusing {path}: it is a symbolic link")]
    Symlink { path: PathBuf },
    #[error("{path} is not a regular file")]
    NotAFile { path: PathBuf },
    #[error("{path} is {size} bytes, too small for a channel header")]
    TooSmall { path: PathBuf, size: u64 },
    #[error("{path} is not a shmbridge channel (bad magic)")]
    BadMagic { path: PathBuf },
    #[error("{path} has layout version {found}; this build reads version {expected}")]
    UnsupportedVersion { path: PathBuf, found: u32, expected: u32 },
    #[error("{path} has a corrupt header: {reason}")]
    CorruptHeader { path: PathBuf, reason: String },
    #[error("{path} is truncated: {actual} bytes, the header says {expected}")]
    Truncated { path: PathBuf, actual: u64, expected: u64 },
    #[error("{action} {path}: {source}")]
    Io { action: &'static str, path: PathBuf, source: std::io::Error },
}

/// Reading one slot or the snapshot.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReadError {
    #[error("slot {slot} does not exist: the channel has {slot_count} slots")]
    NoSuchSlot { slot: u32, slot_count: u32 },
    #[error("slot {slot} has never been written")]
    Empty { slot: u32 },
    #[error("slot {slot} holds request {found}, not the expected request {expected}")]
    WrongRequest { slot: u32, expected: u64, found: u64 },
    #[error("slot {slot} kept changing while it was read ({attempts} attempts)")]
    Contended { slot: u32, attempts: u32 },
    #[error("slot {slot} is corrupt: {reason}")]
    CorruptSlot { slot: u32, reason: String },
    #[error("slot {slot} failed its checksum (stored {stored:#018x}, computed {computed:#018x})")]
    Checksum { slot: u32, stored: u64, computed: u64 },
    #[error("channel file was truncated to {actual} bytes while mapped (expected {expected})")]
    Truncated { actual: u64, expected: u64 },
    #[error("channel file's header changed since it was opened (overwritten or corrupted); it is no longer read")]
    HeaderChanged,
    #[error("no snapshot has been published yet")]
    NoSnapshot,
    #[error("snapshot pointer is corrupt: {reason}")]
    CorruptSnapshotPointer { reason: String },
    #[error("checking the channel file: {0}")]
    Io(String),
}

/// Writing a slot or publishing a snapshot.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WriteError {
    #[error("slot {slot} does not exist: the channel has {slot_count} request slots")]
    NoSuchSlot { slot: u32, slot_count: u32 },
    #[error("payload of {size} bytes does not fit slot {slot}: the slot capacity is {capacity} bytes; nothing was published")]
    TooLarge { slot: u32, size: u64, capacity: u64 },
    #[error("slot {slot} is being written by another writer in this process")]
    SlotBusy { slot: u32 },
    #[error("request id 0 is reserved; use 1..=2^63-1")]
    ZeroRequestId,
    #[error("the channel has no snapshot ring (snapshot_slots = 0)")]
    NoSnapshotRing,
    #[error("the channel is closed")]
    Closed,
}
