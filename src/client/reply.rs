//! What a call and a snapshot read return.

use bytes::Bytes;

use crate::Encoding;

/// A handler's reply, copied out of its slot and checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// How the producer wrote it: [`Encoding::Json`] for objects the serializer wrote,
    /// [`Encoding::Raw`] for bytes.
    pub encoding: Encoding,
    /// The handler's content type if it set one; else `application/json` for JSON and
    /// `application/octet-stream` for raw bytes ([`content_type`]).
    pub content_type: String,
    /// The payload: this client's private copy.
    pub body: Bytes,
}

impl Reply {
    /// The reply is JSON text written by the producer's serializer.
    #[must_use]
    pub fn is_json(&self) -> bool {
        self.encoding == Encoding::Json
    }
}

/// The newest snapshot the producer published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotReply {
    /// Creation epoch of the channel file it came from.
    pub epoch: u64,
    /// Its publish generation in that file (1 for the first publish).
    pub generation: u64,
    /// How the producer wrote it.
    pub encoding: Encoding,
    /// When the producer wrote it, in ns since the Unix epoch (0: unknown).
    pub write_time_ns: u64,
    /// The payload: this client's private copy.
    pub body: Bytes,
}

/// The content type of a reply: the handler's own (`given`, when not empty), else
/// `application/json` for JSON and `application/octet-stream` for anything else.
///
/// ```
/// use shmbridge::client::content_type;
/// use shmbridge::Encoding;
///
/// assert_eq!(content_type("", Encoding::Json), "application/json");
/// assert_eq!(content_type("", Encoding::Raw), "application/octet-stream");
/// assert_eq!(content_type("application/x-f64le", Encoding::Raw), "application/x-f64le");
/// ```
#[must_use]
pub fn content_type(given: &str, encoding: Encoding) -> String {
    match (given, encoding) {
        ("", Encoding::Json) => "application/json".to_owned(),
        ("", _) => "application/octet-stream".to_owned(),
        (given, _) => given.to_owned(),
    }
}
