//! The signal socket's wire format, version 2: the frames a reader and the producer
//! exchange over a Unix domain socket (`{dir}/{channel}.sock`) to call one of the
//! producer's handlers into a request slot, and to confirm the write.
//!
//! Pure encoding and decoding: no I/O, no PyO3, no unsafe. Every decoder checks the
//! length, magic, version, enumerations, reserved fields, the handler name and the
//! parameters before it returns anything, and never panics, whatever the bytes.
//!
//! ```text
//! request: a 32-byte head, then the name and the parameters; little-endian
//!   0   magic        [u8; 4]  b"SBRQ"
//!   4   version      u16      2
//!   6   op           u16      1 = call a handler
//!   8   slot         u32      request slot to write
//!   12  timeout_ms   u32      the sender's remaining budget; 0 = no deadline
//!   16  request_id   u64      the id the slot must carry
//!   24  name_len     u16      1..=64
//!   26  param_count  u16      0..=64
//!   28  params_len   u32      bytes of the parameter block, at most 8192
//!   32  name         [u8; name_len]    [a-z0-9_.-], starting with [a-z0-9]
//!   ..  parameters   [u8; params_len]  param_count times:
//!                      key_len u16, value_len u16, key, value
//!                    UTF-8 without NUL; keys non-empty and distinct
//!
//! response: a 52-byte head, then the message; little-endian
//!   0   magic       [u8; 4]  b"SBRS"
//!   4   status      u16      0 ok, 1 bad request, 2 too large, 3 busy, 4 timed out,
//!                            5 internal, 6 not found, 7 handler error
//!   6   version     u16      2
//!   8   epoch       u64      creation epoch of the channel file written
//!   16  slot        u32      slot written (echoes the request)
//!   20  reserved    u32      0
//!   24  request_id  u64      echoes the request (0 if the request was never read)
//!   32  sequence    u64      the slot's sequence after the write (0 unless ok)
//!   40  length      u64      payload length in bytes (0 unless ok)
//!   48  message_len u32      at most 4096
//!   52  message     [u8; message_len]  UTF-8: the reply's content type when ok
//!                                      (may be empty), else why it failed
//! ```
//!
//! Version 1 had a fixed 32-byte request whose only op wrote the demo's users; its
//! response carried 0 where version 2 carries its version. Each side therefore refuses
//! the other's frames by their version field, with a message naming both versions.
//!
//! One connection carries any number of request/response pairs, one at a time. A
//! receiver that cannot decode a frame answers (if it can) and closes the connection:
//! after a bad frame the byte stream can no longer be trusted to be in step.

use std::fmt;

pub const REQUEST_MAGIC: [u8; 4] = *b"SBRQ";
pub const RESPONSE_MAGIC: [u8; 4] = *b"SBRS";
pub const PROTOCOL_VERSION: u16 = 2;
pub const REQUEST_HEAD_LEN: usize = 32;
pub const RESPONSE_HEAD_LEN: usize = 52;
/// Longest message a response may carry, in bytes.
pub const MAX_MESSAGE_LEN: usize = 4096;
/// Longest handler name, in bytes.
pub const MAX_NAME_LEN: usize = 64;
/// Largest parameter block (pair headers included), in bytes.
pub const MAX_PARAMS_LEN: usize = 8192;
/// Most parameter pairs a request may carry.
pub const MAX_PARAMS: usize = 64;
/// Longest request frame: head, name and parameters.
pub const MAX_REQUEST_LEN: usize = REQUEST_HEAD_LEN + MAX_NAME_LEN + MAX_PARAMS_LEN;

const OP_CALL: u16 = 1;
const PAIR_HEAD_LEN: usize = 4;

/// How a request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    /// Written and published; `sequence` and `length` describe the slot.
    Ok,
    /// The request itself is wrong (a bad slot, request id or parameter), or the
    /// handler refused its parameters.
    BadRequest,
    /// The payload does not fit the slot; nothing was published.
    TooLarge,
    /// The slot is being written by someone else, or the producer has no room.
    Busy,
    /// The request's budget ran out; nothing was published.
    TimedOut,
    /// The producer itself failed (not the handler).
    Internal,
    /// No handler has that name, or the handler found nothing for its parameters.
    NotFound,
    /// The handler raised; the message names the exception's type and text.
    HandlerError,
}

impl Status {
    const ALL: [Status; 8] = [
        Status::Ok,
        Status::BadRequest,
        Status::TooLarge,
        Status::Busy,
        Status::TimedOut,
        Status::Internal,
        Status::NotFound,
        Status::HandlerError,
    ];

    #[must_use]
    pub fn to_u16(self) -> u16 {
        match self {
            Status::Ok => 0,
            Status::BadRequest => 1,
            Status::TooLarge => 2,
            Status::Busy => 3,
            Status::TimedOut => 4,
            Status::Internal => 5,
            Status::NotFound => 6,
            Status::HandlerError => 7,
        }
    }

    #[must_use]
    pub fn from_u16(value: u16) -> Option<Self> {
        Self::ALL.get(usize::from(value)).copied()
    }

    /// A short name for logs and messages.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::BadRequest => "bad request",
            Status::TooLarge => "too large",
            Status::Busy => "busy",
            Status::TimedOut => "timed out",
            Status::Internal => "internal error",
            Status::NotFound => "not found",
            Status::HandlerError => "handler error",
        }
    }
}

/// Why a handler name or a parameter list cannot be sent. The gateway answers these
/// with 400 before anything is written; a producer refuses a frame that carries one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InvalidCall {
    NameEmpty,
    NameTooLong {
        len: usize,
    },
    /// The byte at `at` is outside `[a-z0-9_.-]`, or the name starts with `.`, `_` or `-`.
    NameCharacter {
        at: usize,
    },
    TooManyParams {
        count: usize,
    },
    ParamsTooLong {
        len: usize,
    },
    KeyEmpty {
        index: usize,
    },
    /// A key or value is longer than a pair header can say (65,535 bytes).
    ParamTooLong {
        index: usize,
    },
    NotUtf8 {
        index: usize,
    },
    Nul {
        index: usize,
    },
    DuplicateKey {
        key: String,
    },
}

impl fmt::Display for InvalidCall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InvalidCall::NameEmpty => write!(f, "handler name is empty"),
            InvalidCall::NameTooLong { len } => {
                write!(f, "handler name is {len} bytes; at most {MAX_NAME_LEN} are allowed")
            }
            InvalidCall::NameCharacter { at } => write!(
                f,
                "handler name has a character outside [a-z0-9_.-] (or a leading '.', '_' or '-') at byte {at}"
            ),
            InvalidCall::TooManyParams { count } => {
                write!(f, "{count} parameters; at most {MAX_PARAMS} are allowed")
            }
            InvalidCall::ParamsTooLong { len } => {
                write!(f, "parameters take {len} bytes; at most {MAX_PARAMS_LEN} are allowed")
            }
            InvalidCall::KeyEmpty { index } => write!(f, "parameter {index} has an empty name"),
            InvalidCall::ParamTooLong { index } => write!(f, "parameter {index} is too long"),
            InvalidCall::NotUtf8 { index } => write!(f, "parameter {index} is not UTF-8"),
            InvalidCall::Nul { index } => write!(f, "parameter {index} contains a NUL byte"),
            InvalidCall::DuplicateKey { key } => write!(f, "parameter {key:?} is given twice"),
        }
    }
}

impl std::error::Error for InvalidCall {}

/// Why a frame was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// The frame (or a part of it) is not exactly as long as it must be.
    Length {
        frame: &'static str,
        expected: usize,
        actual: usize,
    },
    BadMagic {
        frame: &'static str,
        found: [u8; 4],
    },
    UnsupportedVersion {
        frame: &'static str,
        found: u16,
    },
    UnknownOp {
        found: u16,
    },
    UnknownStatus {
        found: u16,
    },
    ReservedNotZero {
        field: &'static str,
    },
    MessageTooLong {
        len: u64,
    },
    MessageNotUtf8,
    /// The name or parameters inside a request frame are not allowed.
    Call(InvalidCall),
    /// The parameter block does not hold exactly the pairs its head announced.
    ParamsMalformed,
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::Length { frame, expected, actual } => {
                write!(f, "{frame} frame is {actual} bytes, expected {expected}")
            }
            FrameError::BadMagic { frame, found } => {
                write!(f, "{frame} frame has bad magic {:?}", String::from_utf8_lossy(found))
            }
            FrameError::UnsupportedVersion { frame, found } => write!(
                f,
                "{frame} frame has protocol version {found}; this side speaks version {PROTOCOL_VERSION} \
                 (update the gateway and the producer together)"
            ),
            FrameError::UnknownOp { found } => write!(f, "request frame has unknown op {found}"),
            FrameError::UnknownStatus { found } => write!(f, "response frame has unknown status {found}"),
            FrameError::ReservedNotZero { field } => {
                write!(f, "response frame field {field} is reserved and must be 0")
            }
            FrameError::MessageTooLong { len } => {
                write!(f, "response message of {len} bytes exceeds the limit of {MAX_MESSAGE_LEN}")
            }
            FrameError::MessageNotUtf8 => write!(f, "response message is not UTF-8"),
            FrameError::Call(why) => write!(f, "request frame: {why}"),
            FrameError::ParamsMalformed => {
                write!(f, "request frame's parameter block does not match its announced pairs")
            }
        }
    }
}

impl std::error::Error for FrameError {}

impl From<InvalidCall> for FrameError {
    fn from(why: InvalidCall) -> Self {
        FrameError::Call(why)
    }
}

/// Checks a handler name: 1 to [`MAX_NAME_LEN`] bytes of `[a-z0-9_.-]`, starting with
/// `[a-z0-9]` (so no `..`, no hidden names, nothing a path could be made of).
///
/// # Errors
/// Which rule the name breaks.
pub fn check_name(name: &[u8]) -> Result<&str, InvalidCall> {
    if name.is_empty() {
        return Err(InvalidCall::NameEmpty);
    }
    if name.len() > MAX_NAME_LEN {
        return Err(InvalidCall::NameTooLong { len: name.len() });
    }
    let leading = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let allowed = |b: u8| leading(b) || matches!(b, b'_' | b'.' | b'-');
    if !leading(name[0]) {
        return Err(InvalidCall::NameCharacter { at: 0 });
    }
    if let Some(at) = name.iter().position(|&b| !allowed(b)) {
        return Err(InvalidCall::NameCharacter { at });
    }
    // All ASCII: checked above.
    std::str::from_utf8(name).map_err(|_| InvalidCall::NameCharacter { at: 0 })
}

/// Checks a parameter list and returns the size of its encoded block.
///
/// # Errors
/// Too many pairs, too many bytes, an empty or repeated key, a NUL byte.
pub fn check_params<K: AsRef<str>, V: AsRef<str>>(params: &[(K, V)]) -> Result<usize, InvalidCall> {
    if params.len() > MAX_PARAMS {
        return Err(InvalidCall::TooManyParams { count: params.len() });
    }
    let mut len = 0usize;
    for (index, (key, value)) in params.iter().enumerate() {
        let (key, value) = (key.as_ref(), value.as_ref());
        if key.is_empty() {
            return Err(InvalidCall::KeyEmpty { index });
        }
        if u16::try_from(key.len()).is_err() || u16::try_from(value.len()).is_err() {
            return Err(InvalidCall::ParamTooLong { index });
        }
        if key.contains('\0') || value.contains('\0') {
            return Err(InvalidCall::Nul { index });
        }
        if params[..index].iter().any(|(k, _)| k.as_ref() == key) {
            return Err(InvalidCall::DuplicateKey { key: key.to_owned() });
        }
        len = len.saturating_add(PAIR_HEAD_LEN + key.len() + value.len());
    }
    if len > MAX_PARAMS_LEN {
        return Err(InvalidCall::ParamsTooLong { len });
    }
    Ok(len)
}

/// A request: call handler `name` with `params` into `slot`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub slot: u32,
    /// The sender's remaining budget in milliseconds; 0 means no deadline.
    pub timeout_ms: u32,
    pub request_id: u64,
    pub name: String,
    pub params: Vec<(String, String)>,
}

impl Request {
    /// The frame's bytes.
    ///
    /// # Errors
    /// The name or the parameters break a rule of [`check_name`] or [`check_params`].
    pub fn encode(&self) -> Result<Vec<u8>, InvalidCall> {
        check_name(self.name.as_bytes())?;
        let params_len = check_params(&self.params)?;
        let mut out = Vec::with_capacity(REQUEST_HEAD_LEN + self.name.len() + params_len);
        out.extend_from_slice(&REQUEST_MAGIC);
        out.extend_from_slice(&PROTOCOL_VERSION.to_le_bytes());
        out.extend_from_slice(&OP_CALL.to_le_bytes());
        out.extend_from_slice(&self.slot.to_le_bytes());
        out.extend_from_slice(&self.timeout_ms.to_le_bytes());
        out.extend_from_slice(&self.request_id.to_le_bytes());
        // Bounded by the checks above: name <= 64 bytes, <= 64 pairs, block <= 8192.
        out.extend_from_slice(&(self.name.len() as u16).to_le_bytes());
        out.extend_from_slice(&(self.params.len() as u16).to_le_bytes());
        out.extend_from_slice(&(params_len as u32).to_le_bytes());
        out.extend_from_slice(self.name.as_bytes());
        for (key, value) in &self.params {
            out.extend_from_slice(&(key.len() as u16).to_le_bytes());
            out.extend_from_slice(&(value.len() as u16).to_le_bytes());
            out.extend_from_slice(key.as_bytes());
            out.extend_from_slice(value.as_bytes());
        }
        Ok(out)
    }

    /// Decodes exactly one whole request frame.
    ///
    /// # Errors
    /// Anything [`RequestHead::decode`] or [`RequestHead::finish`] refuses.
    pub fn decode(bytes: &[u8]) -> Result<Self, FrameError> {
        let head_bytes = bytes.get(..REQUEST_HEAD_LEN).ok_or(FrameError::Length {
            frame: "request",
            expected: REQUEST_HEAD_LEN,
            actual: bytes.len(),
        })?;
        RequestHead::decode(head_bytes)?.finish(&bytes[REQUEST_HEAD_LEN..])
    }
}

/// A request frame's fixed part: says how many bytes of name and parameters follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestHead {
    pub slot: u32,
    pub timeout_ms: u32,
    pub request_id: u64,
    name_len: usize,
    param_count: usize,
    params_len: usize,
}

impl RequestHead {
    /// Decodes the first [`REQUEST_HEAD_LEN`] bytes of a request.
    ///
    /// # Errors
    /// Wrong length, magic, version or op; a name, pair count or block out of bounds.
    pub fn decode(bytes: &[u8]) -> Result<Self, FrameError> {
        let frame = Fields::exact(bytes, REQUEST_HEAD_LEN, "request")?;
        if frame.bytes4(0) != REQUEST_MAGIC {
            return Err(FrameError::BadMagic { frame: "request", found: frame.bytes4(0) });
        }
        let version = frame.u16(4);
        if version != PROTOCOL_VERSION {
            return Err(FrameError::UnsupportedVersion { frame: "request", found: version });
        }
        let op = frame.u16(6);
        if op != OP_CALL {
            return Err(FrameError::UnknownOp { found: op });
        }
        let name_len = usize::from(frame.u16(24));
        if name_len == 0 {
            return Err(InvalidCall::NameEmpty.into());
        }
        if name_len > MAX_NAME_LEN {
            return Err(InvalidCall::NameTooLong { len: name_len }.into());
        }
        let param_count = usize::from(frame.u16(26));
        if param_count > MAX_PARAMS {
            return Err(InvalidCall::TooManyParams { count: param_count }.into());
        }
        let params_len = usize::try_from(frame.u32(28)).unwrap_or(usize::MAX);
        if params_len > MAX_PARAMS_LEN {
            return Err(InvalidCall::ParamsTooLong { len: params_len }.into());
        }
        Ok(Self {
            slot: frame.u32(8),
            timeout_ms: frame.u32(12),
            request_id: frame.u64(16),
            name_len,
            param_count,
            params_len,
        })
    }

    /// Bytes of name and parameters that follow the head (at most
    /// [`MAX_REQUEST_LEN`] - [`REQUEST_HEAD_LEN`]).
    #[must_use]
    pub fn body_len(&self) -> usize {
        self.name_len + self.params_len
    }

    /// Decodes the name and parameters that followed this head.
    ///
    /// # Errors
    /// `body` is not [`Self::body_len`] long; the name or a parameter breaks a rule;
    /// the block does not hold exactly the announced pairs.
    pub fn finish(&self, body: &[u8]) -> Result<Request, FrameError> {
        if body.len() != self.body_len() {
            return Err(FrameError::Length { frame: "request body", expected: self.body_len(), actual: body.len() });
        }
        let (name, mut block) = body.split_at(self.name_len);
        let name = check_name(name)?.to_owned();
        let mut params = Vec::with_capacity(self.param_count);
        for index in 0..self.param_count {
            let (key, value, rest) = split_pair(block).ok_or(FrameError::ParamsMalformed)?;
            let key = std::str::from_utf8(key).map_err(|_| InvalidCall::NotUtf8 { index })?;
            let value = std::str::from_utf8(value).map_err(|_| InvalidCall::NotUtf8 { index })?;
            params.push((key.to_owned(), value.to_owned()));
            block = rest;
        }
        if !block.is_empty() {
            return Err(FrameError::ParamsMalformed);
        }
        check_params(&params)?;
        Ok(Request { slot: self.slot, timeout_ms: self.timeout_ms, request_id: self.request_id, name, params })
    }
}

/// One pair off the front of a parameter block: (key, value, the rest).
fn split_pair(block: &[u8]) -> Option<(&[u8], &[u8], &[u8])> {
    let key_len = usize::from(u16::from_le_bytes([*block.first()?, *block.get(1)?]));
    let value_len = usize::from(u16::from_le_bytes([*block.get(2)?, *block.get(3)?]));
    let rest = block.get(PAIR_HEAD_LEN..)?;
    let key = rest.get(..key_len)?;
    let value = rest.get(key_len..key_len + value_len)?;
    Some((key, value, &rest[key_len + value_len..]))
}

/// A response frame's fixed part; the message follows it on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponseHead {
    pub status: Status,
    pub epoch: u64,
    pub slot: u32,
    pub request_id: u64,
    pub sequence: u64,
    pub length: u64,
    /// Bytes of message that follow (checked to be at most [`MAX_MESSAGE_LEN`]).
    pub message_len: usize,
}

impl ResponseHead {
    /// Decodes the first [`RESPONSE_HEAD_LEN`] bytes of a response.
    ///
    /// # Errors
    /// Wrong length, magic, version or status, a reserved field not 0, or a message
    /// too long.
    pub fn decode(bytes: &[u8]) -> Result<Self, FrameError> {
        let frame = Fields::exact(bytes, RESPONSE_HEAD_LEN, "response")?;
        if frame.bytes4(0) != RESPONSE_MAGIC {
            return Err(FrameError::BadMagic { frame: "response", found: frame.bytes4(0) });
        }
        let version = frame.u16(6);
        if version != PROTOCOL_VERSION {
            return Err(FrameError::UnsupportedVersion { frame: "response", found: version });
        }
        let status_raw = frame.u16(4);
        let status = Status::from_u16(status_raw).ok_or(FrameError::UnknownStatus { found: status_raw })?;
        if frame.u32(20) != 0 {
            return Err(FrameError::ReservedNotZero { field: "reserved (offset 20)" });
        }
        let message_len = frame.u32(48);
        let message_len = usize::try_from(message_len)
            .ok()
            .filter(|len| *len <= MAX_MESSAGE_LEN)
            .ok_or(FrameError::MessageTooLong { len: u64::from(message_len) })?;
        Ok(Self {
            status,
            epoch: frame.u64(8),
            slot: frame.u32(16),
            request_id: frame.u64(24),
            sequence: frame.u64(32),
            length: frame.u64(40),
            message_len,
        })
    }

    /// Decodes the message that followed this head.
    ///
    /// # Errors
    /// `bytes` is not `message_len` long, or not UTF-8.
    pub fn message(&self, bytes: &[u8]) -> Result<String, FrameError> {
        if bytes.len() != self.message_len {
            return Err(FrameError::Length {
                frame: "response message",
                expected: self.message_len,
                actual: bytes.len(),
            });
        }
        std::str::from_utf8(bytes).map(str::to_owned).map_err(|_| FrameError::MessageNotUtf8)
    }
}

/// A whole response frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: Status,
    pub epoch: u64,
    pub slot: u32,
    pub request_id: u64,
    pub sequence: u64,
    pub length: u64,
    /// When ok, the reply's content type (empty: the slot's encoding decides); else
    /// why it failed. At most [`MAX_MESSAGE_LEN`] bytes go on the wire (cut at a
    /// character boundary).
    pub message: String,
}

impl Response {
    /// An error response to the request in `head` (or to an unread request: `None`).
    #[must_use]
    pub fn error(status: Status, epoch: u64, head: Option<&RequestHead>, message: &str) -> Self {
        Self {
            status,
            epoch,
            slot: head.map_or(0, |h| h.slot),
            request_id: head.map_or(0, |h| h.request_id),
            sequence: 0,
            length: 0,
            message: truncate_message(message).to_owned(),
        }
    }

    /// The frame's bytes: head then message (truncated to [`MAX_MESSAGE_LEN`]).
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        let message = truncate_message(&self.message).as_bytes();
        let mut out = Vec::with_capacity(RESPONSE_HEAD_LEN + message.len());
        out.extend_from_slice(&RESPONSE_MAGIC);
        out.extend_from_slice(&self.status.to_u16().to_le_bytes());
        out.extend_from_slice(&PROTOCOL_VERSION.to_le_bytes());
        out.extend_from_slice(&self.epoch.to_le_bytes());
        out.extend_from_slice(&self.slot.to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(&self.request_id.to_le_bytes());
        out.extend_from_slice(&self.sequence.to_le_bytes());
        out.extend_from_slice(&self.length.to_le_bytes());
        // At most MAX_MESSAGE_LEN (4096): fits a u32.
        out.extend_from_slice(&(message.len() as u32).to_le_bytes());
        out.extend_from_slice(message);
        out
    }

    /// Decodes exactly one whole response frame (head and message).
    ///
    /// # Errors
    /// Anything [`ResponseHead::decode`] or [`ResponseHead::message`] refuses.
    pub fn decode(bytes: &[u8]) -> Result<Self, FrameError> {
        let head_bytes = bytes.get(..RESPONSE_HEAD_LEN).ok_or(FrameError::Length {
            frame: "response",
            expected: RESPONSE_HEAD_LEN,
            actual: bytes.len(),
        })?;
        let head = ResponseHead::decode(head_bytes)?;
        let message = head.message(&bytes[RESPONSE_HEAD_LEN..])?;
        Ok(Self::from_head(&head, message))
    }

    #[must_use]
    pub fn from_head(head: &ResponseHead, message: String) -> Self {
        Self {
            status: head.status,
            epoch: head.epoch,
            slot: head.slot,
            request_id: head.request_id,
            sequence: head.sequence,
            length: head.length,
            message,
        }
    }
}

/// `message` cut to at most [`MAX_MESSAGE_LEN`] bytes, at a character boundary.
#[must_use]
pub fn truncate_message(message: &str) -> &str {
    if message.len() <= MAX_MESSAGE_LEN {
        return message;
    }
    let mut cut = MAX_MESSAGE_LEN;
    while !message.is_char_boundary(cut) {
        cut -= 1;
    }
    &message[..cut]
}

/// A frame whose length has been checked: the accessors below cannot go out of bounds.
struct Fields<'a>(&'a [u8]);

impl<'a> Fields<'a> {
    fn exact(bytes: &'a [u8], expected: usize, frame: &'static str) -> Result<Self, FrameError> {
        if bytes.len() == expected {
            Ok(Self(bytes))
        } else {
            Err(FrameError::Length { frame, expected, actual: bytes.len() })
        }
    }

    fn array<const N: usize>(&self, at: usize) -> [u8; N] {
        let mut out = [0u8; N];
        if let Some(src) = self.0.get(at..at + N) {
            out.copy_from_slice(src);
        }
        out
    }

    fn bytes4(&self, at: usize) -> [u8; 4] {
        self.array::<4>(at)
    }

    fn u16(&self, at: usize) -> u16 {
        u16::from_le_bytes(self.array::<2>(at))
    }

    fn u32(&self, at: usize) -> u32 {
        u32::from_le_bytes(self.array::<4>(at))
    }

    fn u64(&self, at: usize) -> u64 {
        u64::from_le_bytes(self.array::<8>(at))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    fn request() -> Request {
        Request {
            slot: 7,
            timeout_ms: 9_999,
            request_id: (1 << 62) + 5,
            name: "recent".to_owned(),
            params: pairs(&[("limit", "10"), ("city", "Zürich")]),
        }
    }

    fn response(message: &str) -> Response {
        Response {
            status: Status::Ok,
            epoch: 1_700_000_000_123_456_789,
            slot: 7,
            request_id: 42,
            sequence: 18,
            length: 31_000_000,
            message: message.to_owned(),
        }
    }

    fn u16_at(bytes: &[u8], at: usize) -> u16 {
        u16::from_le_bytes([bytes[at], bytes[at + 1]])
    }

    fn u32_at(bytes: &[u8], at: usize) -> u32 {
        u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap())
    }

    fn u64_at(bytes: &[u8], at: usize) -> u64 {
        u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap())
    }

    #[test]
    fn request_layout_is_the_documented_one() {
        let bytes = request().encode().unwrap();
        assert_eq!(&bytes[0..4], b"SBRQ");
        assert_eq!(u16_at(&bytes, 4), 2);
        assert_eq!(u16_at(&bytes, 6), 1);
        assert_eq!(u32_at(&bytes, 8), 7);
        assert_eq!(u32_at(&bytes, 12), 9_999);
        assert_eq!(u64_at(&bytes, 16), (1 << 62) + 5);
        assert_eq!(u16_at(&bytes, 24), 6);
        assert_eq!(u16_at(&bytes, 26), 2);
        let block = 4 + 5 + 2 + 4 + 4 + "Zürich".len();
        assert_eq!(u32_at(&bytes, 28) as usize, block);
        assert_eq!(&bytes[32..38], b"recent");
        assert_eq!(u16_at(&bytes, 38), 5);
        assert_eq!(u16_at(&bytes, 40), 2);
        assert_eq!(&bytes[42..49], b"limit10");
        assert_eq!(bytes.len(), REQUEST_HEAD_LEN + 6 + block);
        assert_eq!(Request::decode(&bytes), Ok(request()));
        let head = RequestHead::decode(&bytes[..REQUEST_HEAD_LEN]).unwrap();
        assert_eq!(head.body_len(), 6 + block);
    }

    #[test]
    fn response_layout_is_the_documented_one() {
        let bytes = response("hé").encode();
        assert_eq!(bytes.len(), RESPONSE_HEAD_LEN + 3);
        assert_eq!(&bytes[0..4], b"SBRS");
        assert_eq!(u16_at(&bytes, 4), 0);
        assert_eq!(u16_at(&bytes, 6), 2);
        assert_eq!(u64_at(&bytes, 8), 1_700_000_000_123_456_789);
        assert_eq!(u32_at(&bytes, 16), 7);
        assert_eq!(u64_at(&bytes, 24), 42);
        assert_eq!(u64_at(&bytes, 32), 18);
        assert_eq!(u64_at(&bytes, 40), 31_000_000);
        assert_eq!(u32_at(&bytes, 48), 3);
        assert_eq!(&bytes[52..], "hé".as_bytes());
        assert_eq!(Response::decode(&bytes), Ok(response("hé")));
    }

    #[test]
    fn every_status_round_trips() {
        for code in 0..=7 {
            let status = Status::from_u16(code).unwrap();
            assert_eq!(status.to_u16(), code);
            let frame = Response { status, ..response("why") };
            assert_eq!(Response::decode(&frame.encode()), Ok(frame));
        }
        assert_eq!(Status::from_u16(8), None);
    }

    #[test]
    fn names_are_checked() {
        for good in ["a", "users", "orders.recent", "v2_prices-eu", "0", &"x".repeat(64)] {
            assert_eq!(check_name(good.as_bytes()), Ok(good), "{good}");
        }
        assert_eq!(check_name(b""), Err(InvalidCall::NameEmpty));
        assert_eq!(check_name("x".repeat(65).as_bytes()), Err(InvalidCall::NameTooLong { len: 65 }));
        for (bad, at) in [
            ("..", 0),
            (".hidden", 0),
            ("-x", 0),
            ("_x", 0),
            ("a/b", 1),
            ("../etc/passwd", 0),
            ("Users", 0),
            ("a b", 1),
            ("a\0", 1),
            ("é", 0),
        ] {
            assert_eq!(check_name(bad.as_bytes()), Err(InvalidCall::NameCharacter { at }), "{bad:?}");
        }
        assert_eq!(check_name(&[b'a', 0xff]), Err(InvalidCall::NameCharacter { at: 1 }));
    }

    #[test]
    fn params_are_checked() {
        assert_eq!(check_params::<&str, &str>(&[]), Ok(0));
        assert_eq!(check_params(&[("k", "")]), Ok(5));
        assert_eq!(check_params(&[("", "v")]), Err(InvalidCall::KeyEmpty { index: 0 }));
        assert_eq!(check_params(&[("a", "1"), ("k", "v\0")]), Err(InvalidCall::Nul { index: 1 }));
        assert_eq!(check_params(&[("k\0", "v")]), Err(InvalidCall::Nul { index: 0 }));
        assert_eq!(
            check_params(&[("a", "1"), ("b", "2"), ("a", "3")]),
            Err(InvalidCall::DuplicateKey { key: "a".to_owned() })
        );
        let many: Vec<(String, String)> = (0..=MAX_PARAMS).map(|i| (format!("k{i}"), String::new())).collect();
        assert_eq!(check_params(&many), Err(InvalidCall::TooManyParams { count: MAX_PARAMS + 1 }));
        assert!(check_params(&many[..MAX_PARAMS]).is_ok());
        let big = "v".repeat(MAX_PARAMS_LEN - 5);
        assert_eq!(check_params(&[("k", big.as_str())]), Ok(MAX_PARAMS_LEN));
        let bigger = format!("{big}v");
        assert_eq!(
            check_params(&[("k", bigger.as_str())]),
            Err(InvalidCall::ParamsTooLong { len: MAX_PARAMS_LEN + 1 })
        );
        let huge = "v".repeat(70_000);
        assert_eq!(check_params(&[("k", huge.as_str())]), Err(InvalidCall::ParamTooLong { index: 0 }));
    }

    #[test]
    fn a_request_that_breaks_a_rule_is_not_encoded() {
        let bad_name = Request { name: "../x".to_owned(), ..request() };
        assert_eq!(bad_name.encode(), Err(InvalidCall::NameCharacter { at: 0 }));
        let bad_param = Request { params: pairs(&[("a", "x\0")]), ..request() };
        assert_eq!(bad_param.encode(), Err(InvalidCall::Nul { index: 0 }));
    }

    #[test]
    fn version_one_frames_are_refused_by_their_version() {
        // A version-1 request: same magic, version 1, op 1 (write users), count at 24.
        let mut v1 = [0u8; 32];
        v1[0..4].copy_from_slice(b"SBRQ");
        v1[4..6].copy_from_slice(&1u16.to_le_bytes());
        v1[6..8].copy_from_slice(&1u16.to_le_bytes());
        v1[24..32].copy_from_slice(&100u64.to_le_bytes());
        let err = RequestHead::decode(&v1).unwrap_err();
        assert_eq!(err, FrameError::UnsupportedVersion { frame: "request", found: 1 });
        let text = err.to_string();
        assert!(text.contains("version 1") && text.contains("version 2"), "{text}");
        // A version-1 response carries 0 where version 2 carries its version.
        let mut v1_response = response("").encode();
        v1_response[6..8].copy_from_slice(&0u16.to_le_bytes());
        assert_eq!(Response::decode(&v1_response), Err(FrameError::UnsupportedVersion { frame: "response", found: 0 }));
    }

    #[test]
    fn malformed_requests_are_refused() {
        let good = request().encode().unwrap();
        let head = |bytes: &[u8]| RequestHead::decode(&bytes[..REQUEST_HEAD_LEN]);
        assert!(matches!(Request::decode(&good[..31]), Err(FrameError::Length { expected: 32, actual: 31, .. })));
        assert!(matches!(Request::decode(&[]), Err(FrameError::Length { actual: 0, .. })));
        assert!(matches!(
            Request::decode(&good[..good.len() - 1]),
            Err(FrameError::Length { frame: "request body", .. })
        ));
        let mut long = good.clone();
        long.push(0);
        assert!(matches!(Request::decode(&long), Err(FrameError::Length { frame: "request body", .. })));
        let mut bad = good.clone();
        bad[0] = b'X';
        assert!(matches!(head(&bad), Err(FrameError::BadMagic { frame: "request", .. })));
        for op in [0u16, 2, u16::MAX] {
            let mut bad = good.clone();
            bad[6..8].copy_from_slice(&op.to_le_bytes());
            assert_eq!(head(&bad), Err(FrameError::UnknownOp { found: op }));
        }
        let mut bad = good.clone();
        bad[24..26].copy_from_slice(&0u16.to_le_bytes());
        assert_eq!(head(&bad), Err(FrameError::Call(InvalidCall::NameEmpty)));
        let mut bad = good.clone();
        bad[24..26].copy_from_slice(&65u16.to_le_bytes());
        assert_eq!(head(&bad), Err(FrameError::Call(InvalidCall::NameTooLong { len: 65 })));
        let mut bad = good.clone();
        bad[26..28].copy_from_slice(&65u16.to_le_bytes());
        assert_eq!(head(&bad), Err(FrameError::Call(InvalidCall::TooManyParams { count: 65 })));
        let mut bad = good.clone();
        bad[28..32].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(head(&bad), Err(FrameError::Call(InvalidCall::ParamsTooLong { .. }))));
        // One pair fewer announced than the block holds, and one more.
        let mut bad = good.clone();
        bad[26..28].copy_from_slice(&1u16.to_le_bytes());
        assert_eq!(Request::decode(&bad), Err(FrameError::ParamsMalformed));
        let mut bad = good.clone();
        bad[26..28].copy_from_slice(&3u16.to_le_bytes());
        assert_eq!(Request::decode(&bad), Err(FrameError::ParamsMalformed));
        // A name byte outside the alphabet, a key that is not UTF-8, a NUL in a value.
        let mut bad = good.clone();
        bad[33] = b'/';
        assert_eq!(Request::decode(&bad), Err(FrameError::Call(InvalidCall::NameCharacter { at: 1 })));
        let mut bad = good.clone();
        bad[42] = 0xff;
        assert_eq!(Request::decode(&bad), Err(FrameError::Call(InvalidCall::NotUtf8 { index: 0 })));
        let mut bad = good;
        bad[47] = 0;
        assert_eq!(Request::decode(&bad), Err(FrameError::Call(InvalidCall::Nul { index: 0 })));
    }

    #[test]
    fn malformed_responses_are_refused() {
        let good = response("m").encode();
        assert!(matches!(Response::decode(&good[..51]), Err(FrameError::Length { expected: 52, actual: 51, .. })));
        assert!(matches!(ResponseHead::decode(&good), Err(FrameError::Length { actual: 53, .. })));
        assert!(matches!(Response::decode(&good[..52]), Err(FrameError::Length { expected: 1, actual: 0, .. })));
        let mut bad = good.clone();
        bad[1] = b'X';
        assert!(matches!(Response::decode(&bad), Err(FrameError::BadMagic { frame: "response", .. })));
        let mut bad = good.clone();
        bad[4..6].copy_from_slice(&8u16.to_le_bytes());
        assert_eq!(Response::decode(&bad), Err(FrameError::UnknownStatus { found: 8 }));
        let mut bad = good.clone();
        bad[23] = 1;
        assert!(matches!(Response::decode(&bad), Err(FrameError::ReservedNotZero { .. })));
        let mut bad = good.clone();
        bad[48..52].copy_from_slice(&(MAX_MESSAGE_LEN as u32 + 1).to_le_bytes());
        assert_eq!(Response::decode(&bad), Err(FrameError::MessageTooLong { len: MAX_MESSAGE_LEN as u64 + 1 }));
        let mut bad = good;
        bad[52] = 0xff;
        assert_eq!(Response::decode(&bad), Err(FrameError::MessageNotUtf8));
    }

    #[test]
    fn long_messages_are_cut_at_a_character_boundary() {
        let long = "é".repeat(MAX_MESSAGE_LEN); // 2 bytes each
        let frame = response(&long).encode();
        assert_eq!(frame.len(), RESPONSE_HEAD_LEN + MAX_MESSAGE_LEN);
        let odd = format!("a{long}");
        assert_eq!(truncate_message(&odd).len(), MAX_MESSAGE_LEN - 1);
    }

    fn param_strategy() -> impl Strategy<Value = Vec<(String, String)>> {
        proptest::collection::btree_map("[^\0]{1,12}", "[^\0]{0,40}", 0..8).prop_map(|m| m.into_iter().collect())
    }

    proptest! {
        #[test]
        fn requests_round_trip(slot: u32, timeout_ms: u32, request_id: u64,
                               name in "[a-z0-9][a-z0-9_.-]{0,63}", params in param_strategy()) {
            let r = Request { slot, timeout_ms, request_id, name, params };
            prop_assert_eq!(Request::decode(&r.encode().unwrap()), Ok(r));
        }

        #[test]
        fn responses_round_trip(code in 0u16..=7, epoch: u64, slot: u32, request_id: u64, sequence: u64,
                                length: u64, message in ".{0,300}") {
            let r = Response { status: Status::from_u16(code).unwrap(), epoch, slot, request_id, sequence, length, message };
            prop_assert_eq!(Response::decode(&r.encode()), Ok(r));
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = Request::decode(&bytes);
            let _ = Response::decode(&bytes);
        }

        #[test]
        fn a_corrupted_request_is_refused_or_still_well_formed(index in 0usize..64, value: u8) {
            let mut bytes = request().encode().unwrap();
            let index = index % bytes.len();
            bytes[index] = value;
            if let Ok(decoded) = Request::decode(&bytes) {
                prop_assert!(check_name(decoded.name.as_bytes()).is_ok());
                prop_assert!(check_params(&decoded.params).is_ok());
                prop_assert_eq!(decoded.encode().unwrap(), bytes);
            }
        }
    }
}
