//! The signal socket's wire format: the fixed-size frames the gateway and the
//! producer exchange over a Unix domain socket (`{dir}/{channel}.sock`) to ask for,
//! and confirm, one write into a request slot.
//!
//! Pure encoding and decoding: no I/O, no PyO3, no unsafe. Every decoder checks the
//! length, magic, version, enumerations, reserved fields and message bounds before it
//! returns anything, and never panics, whatever the bytes.
//!
//! ```text
//! request, 32 bytes, little-endian
//!   0   magic       [u8; 4]  b"SBRQ"
//!   4   version     u16      1
//!   6   op          u16      1 = write users
//!   8   slot        u32      request slot to write
//!   12  timeout_ms  u32      the sender's remaining budget; 0 = no deadline
//!   16  request_id  u64      the id the slot must carry
//!   24  count       u64      how many users to write
//!
//! response, 52 bytes + message, little-endian
//!   0   magic       [u8; 4]  b"SBRS"
//!   4   status      u16      0 ok, 1 bad request, 2 too large, 3 busy, 4 timed out, 5 internal
//!   6   reserved    u16      0
//!   8   epoch       u64      creation epoch of the channel file written
//!   16  slot        u32      slot written (echoes the request)
//!   20  reserved    u32      0
//!   24  request_id  u64      echoes the request (0 if the request was never read)
//!   32  sequence    u64      the slot's sequence after the write (0 unless ok)
//!   40  length      u64      payload length in bytes (0 unless ok)
//!   48  message_len u32      at most 4096
//!   52  message     [u8; message_len]  UTF-8: why it failed (may be empty when ok)
//! ```
//!
//! One connection carries any number of request/response pairs, one at a time. A
//! receiver that cannot decode a frame answers (if it can) and closes the connection:
//! after a bad frame the byte stream can no longer be trusted to be in step.

use std::fmt;

pub const REQUEST_MAGIC: [u8; 4] = *b"SBRQ";
pub const RESPONSE_MAGIC: [u8; 4] = *b"SBRS";
pub const PROTOCOL_VERSION: u16 = 1;
pub const REQUEST_LEN: usize = 32;
pub const RESPONSE_HEAD_LEN: usize = 52;
/// Longest message a response may carry, in bytes.
pub const MAX_MESSAGE_LEN: usize = 4096;

/// What a request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// Write the first `count` users as JSON into `slot` for `request_id`.
    WriteUsers,
}

impl Op {
    #[must_use]
    pub fn to_u16(self) -> u16 {
        match self {
            Op::WriteUsers => 1,
        }
    }

    #[must_use]
    pub fn from_u16(value: u16) -> Option<Self> {
        match value {
            1 => Some(Op::WriteUsers),
            _ => None,
        }
    }
}

/// How a request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    /// Written and published; `sequence` and `length` describe the slot.
    Ok,
    /// The request itself is wrong (a bad slot, request id or count).
    BadRequest,
    /// The payload does not fit the slot; nothing was published.
    TooLarge,
    /// The slot is being written by someone else, or the producer has no room.
    Busy,
    /// The request's budget ran out before the write started; nothing was written.
    TimedOut,
    /// Anything else went wrong in the producer.
    Internal,
}

impl Status {
    #[must_use]
    pub fn to_u16(self) -> u16 {
        match self {
            Status::Ok => 0,
            Status::BadRequest => 1,
            Status::TooLarge => 2,
            Status::Busy => 3,
            Status::TimedOut => 4,
            Status::Internal => 5,
        }
    }

    #[must_use]
    pub fn from_u16(value: u16) -> Option<Self> {
        match value {
            0 => Some(Status::Ok),
            1 => Some(Status::BadRequest),
            2 => Some(Status::TooLarge),
            3 => Some(Status::Busy),
            4 => Some(Status::TimedOut),
            5 => Some(Status::Internal),
            _ => None,
        }
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
        }
    }
}

/// Why a frame was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// The frame is not exactly as long as its kind requires.
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
            FrameError::UnsupportedVersion { found } => {
                write!(f, "request frame has protocol version {found}; this build speaks version {PROTOCOL_VERSION}")
            }
            FrameError::UnknownOp { found } => write!(f, "request frame has unknown op {found}"),
            FrameError::UnknownStatus { found } => write!(f, "response frame has unknown status {found}"),
            FrameError::ReservedNotZero { field } => {
                write!(f, "response frame field {field} is reserved and must be 0")
            }
            FrameError::MessageTooLong { len } => {
                write!(f, "response message of {len} bytes exceeds the limit of {MAX_MESSAGE_LEN}")
            }
            FrameError::MessageNotUtf8 => write!(f, "response message is not UTF-8"),
        }
    }
}

impl std::error::Error for FrameError {}

/// A request frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request {
    pub op: Op,
    pub slot: u32,
    /// The sender's remaining budget in milliseconds; 0 means no deadline.
    pub timeout_ms: u32,
    pub request_id: u64,
    pub count: u64,
}

impl Request {
    #[must_use]
    pub fn encode(&self) -> [u8; REQUEST_LEN] {
        let mut out = [0u8; REQUEST_LEN];
        out[0..4].copy_from_slice(&REQUEST_MAGIC);
        out[4..6].copy_from_slice(&PROTOCOL_VERSION.to_le_bytes());
        out[6..8].copy_from_slice(&self.op.to_u16().to_le_bytes());
        out[8..12].copy_from_slice(&self.slot.to_le_bytes());
        out[12..16].copy_from_slice(&self.timeout_ms.to_le_bytes());
        out[16..24].copy_from_slice(&self.request_id.to_le_bytes());
        out[24..32].copy_from_slice(&self.count.to_le_bytes());
        out
    }

    /// Decodes exactly one request frame.
    ///
    /// # Errors
    /// Wrong length, magic, version or op.
    pub fn decode(bytes: &[u8]) -> Result<Self, FrameError> {
        let frame = Fields::exact(bytes, REQUEST_LEN, "request")?;
        if frame.bytes4(0) != REQUEST_MAGIC {
            return Err(FrameError::BadMagic { frame: "request", found: frame.bytes4(0) });
        }
        let version = frame.u16(4);
        if version != PROTOCOL_VERSION {
            return Err(FrameError::UnsupportedVersion { found: version });
        }
        let op_raw = frame.u16(6);
        let op = Op::from_u16(op_raw).ok_or(FrameError::UnknownOp { found: op_raw })?;
        Ok(Self { op, slot: frame.u32(8), timeout_ms: frame.u32(12), request_id: frame.u64(16), count: frame.u64(24) })
    }
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
    /// Wrong length, magic or status, a reserved field not 0, or a message too long.
    pub fn decode(bytes: &[u8]) -> Result<Self, FrameError> {
        let frame = Fields::exact(bytes, RESPONSE_HEAD_LEN, "response")?;
        if frame.bytes4(0) != RESPONSE_MAGIC {
            return Err(FrameError::BadMagic { frame: "response", found: frame.bytes4(0) });
        }
        let status_raw = frame.u16(4);
        let status = Status::from_u16(status_raw).ok_or(FrameError::UnknownStatus { found: status_raw })?;
        if frame.u16(6) != 0 {
            return Err(FrameError::ReservedNotZero { field: "reserved (offset 6)" });
        }
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
    /// At most [`MAX_MESSAGE_LEN`] bytes go on the wire (cut at a character boundary).
    pub message: String,
}

impl Response {
    /// An error response to `request` (or to an unread request: `None`).
    #[must_use]
    pub fn error(status: Status, epoch: u64, request: Option<&Request>, message: &str) -> Self {
        Self {
            status,
            epoch,
            slot: request.map_or(0, |r| r.slot),
            request_id: request.map_or(0, |r| r.request_id),
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
        out.extend_from_slice(&0u16.to_le_bytes());
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

    fn request() -> Request {
        Request { op: Op::WriteUsers, slot: 7, timeout_ms: 9_999, request_id: (1 << 62) + 5, count: 100_000 }
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

    #[test]
    fn request_layout_is_the_documented_one() {
        let bytes = request().encode();
        assert_eq!(&bytes[0..4], b"SBRQ");
        assert_eq!(u16::from_le_bytes([bytes[4], bytes[5]]), 1);
        assert_eq!(u16::from_le_bytes([bytes[6], bytes[7]]), 1);
        assert_eq!(u32::from_le_bytes(bytes[8..12].try_into().unwrap()), 7);
        assert_eq!(u32::from_le_bytes(bytes[12..16].try_into().unwrap()), 9_999);
        assert_eq!(u64::from_le_bytes(bytes[16..24].try_into().unwrap()), (1 << 62) + 5);
        assert_eq!(u64::from_le_bytes(bytes[24..32].try_into().unwrap()), 100_000);
        assert_eq!(Request::decode(&bytes), Ok(request()));
    }

    #[test]
    fn response_layout_is_the_documented_one() {
        let bytes = response("hé").encode();
        assert_eq!(bytes.len(), RESPONSE_HEAD_LEN + 3);
        assert_eq!(&bytes[0..4], b"SBRS");
        assert_eq!(u64::from_le_bytes(bytes[8..16].try_into().unwrap()), 1_700_000_000_123_456_789);
        assert_eq!(u32::from_le_bytes(bytes[16..20].try_into().unwrap()), 7);
        assert_eq!(u64::from_le_bytes(bytes[24..32].try_into().unwrap()), 42);
        assert_eq!(u64::from_le_bytes(bytes[32..40].try_into().unwrap()), 18);
        assert_eq!(u64::from_le_bytes(bytes[40..48].try_into().unwrap()), 31_000_000);
        assert_eq!(u32::from_le_bytes(bytes[48..52].try_into().unwrap()), 3);
        assert_eq!(&bytes[52..], "hé".as_bytes());
        assert_eq!(Response::decode(&bytes), Ok(response("hé")));
    }

    #[test]
    fn every_status_round_trips() {
        for code in 0..=5 {
            let status = Status::from_u16(code).unwrap();
            assert_eq!(status.to_u16(), code);
            let frame = Response { status, ..response("why") };
            assert_eq!(Response::decode(&frame.encode()), Ok(frame));
        }
        assert_eq!(Status::from_u16(6), None);
    }

    #[test]
    fn error_responses_echo_the_request() {
        let r = Response::error(Status::TooLarge, 3, Some(&request()), "too big");
        assert_eq!((r.slot, r.request_id, r.sequence, r.length), (7, (1 << 62) + 5, 0, 0));
        let unread = Response::error(Status::Busy, 3, None, "no room");
        assert_eq!((unread.slot, unread.request_id), (0, 0));
    }

    #[test]
    fn long_messages_are_cut_at_a_character_boundary() {
        let long = "é".repeat(MAX_MESSAGE_LEN); // 2 bytes each
        let frame = response(&long).encode();
        assert_eq!(frame.len(), RESPONSE_HEAD_LEN + MAX_MESSAGE_LEN);
        let back = Response::decode(&frame).unwrap();
        assert_eq!(back.message.chars().count(), MAX_MESSAGE_LEN / 2);
        let odd = format!("a{long}");
        assert_eq!(truncate_message(&odd).len(), MAX_MESSAGE_LEN - 1);
        assert_eq!(truncate_message("short"), "short");
    }

    #[test]
    fn malformed_requests_are_refused() {
        let good = request().encode();
        assert!(matches!(Request::decode(&good[..31]), Err(FrameError::Length { expected: 32, actual: 31, .. })));
        let mut long = good.to_vec();
        long.push(0);
        assert!(matches!(Request::decode(&long), Err(FrameError::Length { actual: 33, .. })));
        assert!(matches!(Request::decode(&[]), Err(FrameError::Length { actual: 0, .. })));
        let mut bad = good;
        bad[0] = b'X';
        assert!(matches!(Request::decode(&bad), Err(FrameError::BadMagic { frame: "request", .. })));
        let mut bad = good;
        bad[0..4].copy_from_slice(b"SBRS");
        assert!(matches!(Request::decode(&bad), Err(FrameError::BadMagic { .. })));
        let mut bad = good;
        bad[4] = 2;
        assert_eq!(Request::decode(&bad), Err(FrameError::UnsupportedVersion { found: 2 }));
        for op in [0u16, 2, u16::MAX] {
            let mut bad = good;
            bad[6..8].copy_from_slice(&op.to_le_bytes());
            assert_eq!(Request::decode(&bad), Err(FrameError::UnknownOp { found: op }));
        }
    }

    #[test]
    fn malformed_responses_are_refused() {
        let good = response("m").encode();
        assert!(matches!(Response::decode(&good[..51]), Err(FrameError::Length { expected: 52, actual: 51, .. })));
        assert!(matches!(ResponseHead::decode(&good), Err(FrameError::Length { actual: 53, .. })));
        // Message shorter or longer than announced.
        assert!(matches!(Response::decode(&good[..52]), Err(FrameError::Length { expected: 1, actual: 0, .. })));
        let mut long = good.clone();
        long.push(b'x');
        assert!(matches!(Response::decode(&long), Err(FrameError::Length { expected: 1, actual: 2, .. })));
        let mut bad = good.clone();
        bad[1] = b'X';
        assert!(matches!(Response::decode(&bad), Err(FrameError::BadMagic { frame: "response", .. })));
        let mut bad = good.clone();
        bad[4..6].copy_from_slice(&6u16.to_le_bytes());
        assert_eq!(Response::decode(&bad), Err(FrameError::UnknownStatus { found: 6 }));
        let mut bad = good.clone();
        bad[7] = 1;
        assert!(matches!(Response::decode(&bad), Err(FrameError::ReservedNotZero { .. })));
        let mut bad = good.clone();
        bad[23] = 1;
        assert!(matches!(Response::decode(&bad), Err(FrameError::ReservedNotZero { .. })));
        let mut bad = good.clone();
        bad[48..52].copy_from_slice(&(MAX_MESSAGE_LEN as u32 + 1).to_le_bytes());
        assert_eq!(Response::decode(&bad), Err(FrameError::MessageTooLong { len: MAX_MESSAGE_LEN as u64 + 1 }));
        let mut bad = good.clone();
        bad[48..52].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(ResponseHead::decode(&bad[..52]), Err(FrameError::MessageTooLong { .. })));
        let mut bad = good;
        bad[52] = 0xff;
        assert_eq!(Response::decode(&bad), Err(FrameError::MessageNotUtf8));
    }

    #[test]
    fn errors_read_as_sentences() {
        let text = Request::decode(&[0; 3]).unwrap_err().to_string();
        assert_eq!(text, "request frame is 3 bytes, expected 32");
        let text = FrameError::MessageTooLong { len: 5000 }.to_string();
        assert!(text.contains("5000") && text.contains("4096"), "{text}");
    }

    proptest! {
        #[test]
        fn requests_round_trip(slot: u32, timeout_ms: u32, request_id: u64, count: u64) {
            let r = Request { op: Op::WriteUsers, slot, timeout_ms, request_id, count };
            prop_assert_eq!(Request::decode(&r.encode()), Ok(r));
        }

        #[test]
        fn responses_round_trip(code in 0u16..=5, epoch: u64, slot: u32, request_id: u64, sequence: u64,
                                length: u64, message in ".{0,300}") {
            let r = Response { status: Status::from_u16(code).unwrap(), epoch, slot, request_id, sequence, length, message };
            prop_assert_eq!(Response::decode(&r.encode()), Ok(r));
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = Request::decode(&bytes);
            let _ = Response::decode(&bytes);
            if let Some(head) = bytes.get(..RESPONSE_HEAD_LEN) {
                if let Ok(head) = ResponseHead::decode(head) {
                    let _ = head.message(&bytes[RESPONSE_HEAD_LEN..]);
                }
            }
        }

        #[test]
        fn single_byte_corruption_is_caught_or_harmless(index in 0usize..REQUEST_LEN, value: u8) {
            let mut bytes = request().encode();
            bytes[index] = value;
            // Either refused, or a request whose header fields are still exactly right.
            if let Ok(decoded) = Request::decode(&bytes) {
                prop_assert_eq!(&bytes[0..8], &request().encode()[0..8]);
                prop_assert_eq!(decoded.op, Op::WriteUsers);
            }
        }
    }
}
