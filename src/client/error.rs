//! [`ClientError`]: every way a call, a snapshot read or opening the channel fails.
//!
//! The messages speak of the channel, the producer and the call; they name no setting
//! of any application (an application adds its own hints when it reports them).

use std::path::PathBuf;

use crate::wire::{InvalidCall, Status};
use crate::{OpenError, ReadError};

/// Why a [`Client`](super::Client) call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The [`ClientConfig`](super::ClientConfig) cannot work (an empty channel name, a
    /// zero timeout). Nothing was opened.
    #[error("invalid client configuration: {0}")]
    InvalidConfig(String),
    /// The handler name or the parameters break a rule of the wire
    /// ([`check_name`](crate::wire::check_name), [`check_params`](crate::wire::check_params)).
    /// Nothing was sent. An HTTP service answers this as the client's mistake (400).
    #[error("invalid call: {0}")]
    InvalidCall(#[from] InvalidCall),
    /// The channel file is missing, or not a valid channel file.
    #[error(transparent)]
    Open(#[from] OpenError),
    /// The channel file on disk was left by a producer that is no longer running.
    #[error("channel file {} was left by a producer that is no longer running", path.display())]
    ProducerGone {
        /// The channel file.
        path: PathBuf,
    },
    /// The producer wrote into a channel file of another epoch than the one on disk: the
    /// producer and this client do not share a directory and channel name.
    #[error("the producer wrote into a channel with epoch {expected}, but {} has epoch {found}", path.display())]
    EpochMismatch {
        /// The channel file opened.
        path: PathBuf,
        /// The epoch the producer answered with.
        expected: u64,
        /// The epoch of the file on disk.
        found: u64,
    },
    /// The channel has fewer than two request slots (the last one is the producer's
    /// own, for calls by hand), so a client has none to use.
    #[error("the channel has {request_slots} request slot(s); a client needs at least 2 (the last one is reserved for hand calls)")]
    TooFewSlots {
        /// Request slots of the channel.
        request_slots: u32,
    },
    /// Every request slot stayed in use for the whole slot wait.
    #[error("no free shared-memory slot within {waited_ms} ms: all {slots} slots are busy")]
    NoFreeSlot {
        /// The wait, in milliseconds.
        waited_ms: u64,
        /// Slots this client hands out.
        slots: usize,
    },
    /// The producer did not answer within the call timeout, or answered that the
    /// call's budget ran out before it could write (wire status `TimedOut`).
    #[error("the producer did not answer within {timeout_ms} ms")]
    Timeout {
        /// The call timeout, in milliseconds.
        timeout_ms: u64,
    },
    /// The signal socket could not be reached, or the connection broke (the producer
    /// is not running, restarted, or died during the call).
    #[error("the producer at unix:{} is unavailable: {reason}", socket.display())]
    ProducerUnavailable {
        /// The signal socket.
        socket: PathBuf,
        /// What the connection said.
        reason: String,
    },
    /// Wire status `BadRequest`: the producer refused the request, or the handler
    /// refused its parameters (a Python `ValueError`).
    #[error("the producer refused the call: {message}")]
    BadRequest {
        /// The producer's message.
        message: String,
    },
    /// Wire status `NotFound`: no handler has that name (the message lists the known
    /// ones), or the handler found nothing for its parameters (a `LookupError`).
    #[error("not found: {message}")]
    NotFound {
        /// The producer's message.
        message: String,
    },
    /// Wire status `HandlerError`: the handler raised; the message is the exception's
    /// type and text, never a traceback.
    #[error("the handler failed: {message}")]
    HandlerError {
        /// `TypeName: text`.
        message: String,
    },
    /// Wire status `TooLarge`: the reply does not fit a slot; nothing was written.
    #[error("{message}")]
    TooLarge {
        /// The producer's message.
        message: String,
    },
    /// Wire status `Busy`: the slot was being written by someone else, or the producer
    /// had no room for the call.
    #[error("the producer is busy: {message}")]
    ProducerBusy {
        /// The producer's message.
        message: String,
    },
    /// Wire status `Internal`: the producer's machinery failed (not the handler), e.g.
    /// the handler returned something that cannot be written.
    #[error("the producer failed: {message}")]
    ProducerInternal {
        /// The producer's message.
        message: String,
    },
    /// The producer's answer is not a valid response frame (another wire version, say),
    /// or answers another slot or request than the one asked for.
    #[error("the producer's answer was not understood: {detail}")]
    BadAnswer {
        /// What was wrong with it.
        detail: String,
    },
    /// The slot failed its checks: its checksum, its request id, its bounds, or the
    /// length the producer announced. Nothing of it is returned.
    #[error("{0}")]
    Corrupt(ReadError),
    /// The slot holds another number of bytes than the producer announced.
    #[error("slot {slot} holds {found} bytes, but the producer announced {announced}")]
    LengthMismatch {
        /// The slot read.
        slot: u32,
        /// The length in the producer's answer.
        announced: u64,
        /// The length in the slot.
        found: u64,
    },
    /// The channel file could not be read (truncated, replaced, contended).
    #[error("{0}")]
    Read(ReadError),
    /// A bug of the client, or a task that failed.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ClientError {
    /// The wire status the producer answered, for the errors that carry one.
    #[must_use]
    pub fn wire_status(&self) -> Option<Status> {
        match self {
            Self::BadRequest { .. } => Some(Status::BadRequest),
            Self::NotFound { .. } => Some(Status::NotFound),
            Self::HandlerError { .. } => Some(Status::HandlerError),
            Self::TooLarge { .. } => Some(Status::TooLarge),
            Self::ProducerBusy { .. } => Some(Status::Busy),
            Self::ProducerInternal { .. } => Some(Status::Internal),
            _ => None,
        }
    }

    /// The error for a [`ReadError`]: a slot that failed its own checks is
    /// [`Corrupt`](Self::Corrupt); a channel that cannot be read is [`Read`](Self::Read).
    #[must_use]
    pub fn from_read(error: ReadError) -> Self {
        if is_slot_check(&error) {
            Self::Corrupt(error)
        } else {
            Self::Read(error)
        }
    }
}

/// The read errors that describe the slot's content rather than the file.
pub(crate) fn is_slot_check(error: &ReadError) -> bool {
    matches!(
        error,
        ReadError::WrongRequest { .. }
            | ReadError::Checksum { .. }
            | ReadError::CorruptSlot { .. }
            | ReadError::Empty { .. }
    )
}
