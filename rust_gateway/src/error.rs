//! Every failure a client can meet, as one enum. Each variant has a status and an
//! error kind; the response body is `{"error": "<kind>", "detail": "<sentence>"}`.
//! Internal details (sources, paths, producer bodies) are logged, and only a sentence
//! a user can act on is sent.
//!
//! This module is at the bottom of the gateway: it knows the typed errors of the
//! modules below it ([`QueryError`], [`PayloadError`], [`ProducerError`],
//! [`SnapshotError`], the shared-memory client's [`ClientError`]) and converts each in
//! one place here, adding the gateway's own hints (its flags and variables, and the
//! producer's) to their messages.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use shmbridge::client::ClientError;
use shmbridge::wire::InvalidCall;

use crate::producer::{ProducerError, WRITE_ENDPOINT};
use crate::query::QueryError;
use crate::settings::{MAX_PAYLOAD_SETTING, PRODUCER_SNAPSHOT_SETTING, PRODUCER_TIMEOUT_SETTING, SLOT_WAIT_SETTING};
use crate::snapshot::SnapshotError;
use crate::validate::PayloadError;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The client's query string was refused (400).
    #[error(transparent)]
    BadQuery(#[from] QueryError),
    /// A bridge call's handler name or parameters break the wire's rules (400): refused
    /// before anything is written.
    #[error("{0}")]
    InvalidCall(InvalidCall),
    /// The producer's handler refused its parameters (400, `GET /api/bridge/{handler}`).
    #[error("the handler refused the call: {0}")]
    HandlerBadRequest(String),
    /// The producer has no such handler, or the handler found nothing (404).
    #[error("{0}")]
    HandlerNotFound(String),
    /// The producer's handler raised (502): its exception's type and message.
    #[error("the producer's handler failed: {0}")]
    HandlerFailed(String),
    /// No route matches the path (404).
    #[error("no such endpoint: {method} {path}")]
    NotFound { method: String, path: String },
    /// The route exists but not for this method (405).
    #[error("method {method} is not allowed on {path}")]
    MethodNotAllowed { method: String, path: String },
    /// The producer could not be reached, or its connection broke (502).
    #[error("the producer at {url} is unavailable: {reason}")]
    ProducerUnavailable { url: String, reason: String },
    /// A producer call took longer than `--producer-timeout-ms` (504).
    #[error("the producer did not answer within {timeout_ms} ms (raise it with {PRODUCER_TIMEOUT_SETTING})")]
    ProducerTimeout { timeout_ms: u64 },
    /// The producer refused a payload over its slot capacity (507).
    #[error("{0}")]
    PayloadTooLarge(String),
    /// The producer answered an error status (502).
    #[error("the producer answered {status} to {endpoint}: {detail}")]
    ProducerError { status: u16, endpoint: &'static str, detail: String },
    /// The producer answered 200 with something the gateway cannot use (502).
    #[error("the producer's answer to {endpoint} was not understood: {detail}")]
    BadProducerAnswer { endpoint: &'static str, detail: String },
    /// The channel file is missing, stale, corrupt or truncated (502).
    #[error("{0}")]
    Channel(String),
    /// The payload failed validation or its slot's checks; it was not served (502).
    #[error("{0}")]
    InvalidPayload(String),
    /// Every slot stayed in use for `--slot-wait-timeout-ms` (503).
    #[error("no free shared-memory slot within {waited_ms} ms: all {slots} slots are busy (raise {SLOT_WAIT_SETTING}, or the producer's --slot-count)")]
    NoFreeSlot { waited_ms: u64, slots: usize },
    /// The whole request took longer than its backstop deadline (504).
    #[error("the request did not finish within {deadline_ms} ms")]
    RequestTimeout { deadline_ms: u64 },
    /// `/readyz`: the producer or the channel is not usable yet (503).
    #[error("not ready: {0}")]
    NotReady(String),
    /// A bug or a failed internal task (500).
    #[error("internal error: {0}")]
    Internal(String),
}

impl AppError {
    #[must_use]
    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadQuery(_) | Self::InvalidCall(_) | Self::HandlerBadRequest(_) => StatusCode::BAD_REQUEST,
            Self::NotFound { .. } | Self::HandlerNotFound(_) => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            Self::ProducerUnavailable { .. }
            | Self::ProducerError { .. }
            | Self::BadProducerAnswer { .. }
            | Self::HandlerFailed(_)
            | Self::Channel(_)
            | Self::InvalidPayload(_) => StatusCode::BAD_GATEWAY,
            Self::ProducerTimeout { .. } | Self::RequestTimeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            Self::PayloadTooLarge(_) => StatusCode::INSUFFICIENT_STORAGE,
            Self::NoFreeSlot { .. } | Self::NotReady(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The `error` field: a stable, machine-readable kind.
    #[must_use]
    pub fn kind(&self) -> &'static str {
        match self {
            Self::BadQuery(_) | Self::InvalidCall(_) => "invalid_query",
            Self::HandlerBadRequest(_) => "bad_request",
            Self::NotFound { .. } | Self::HandlerNotFound(_) => "not_found",
            Self::MethodNotAllowed { .. } => "method_not_allowed",
            Self::ProducerUnavailable { .. } => "producer_unavailable",
            Self::ProducerTimeout { .. } => "producer_timeout",
            Self::PayloadTooLarge(_) => "payload_too_large",
            Self::ProducerError { .. } | Self::BadProducerAnswer { .. } | Self::HandlerFailed(_) => "producer_error",
            Self::Channel(_) => "channel_error",
            Self::InvalidPayload(_) => "invalid_payload",
            Self::NoFreeSlot { .. } => "no_free_slot",
            Self::RequestTimeout { .. } => "request_timeout",
            Self::NotReady(_) => "not_ready",
            Self::Internal(_) => "internal_error",
        }
    }
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
    detail: &'a str,
}

/// The one place an error becomes a response.
impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        crate::metrics::record_error(self.kind());
        let detail = self.to_string();
        let body = serde_json::to_vec(&ErrorBody { error: self.kind(), detail: &detail })
            .unwrap_or_else(|_| br#"{"error":"internal_error","detail":"the error could not be encoded"}"#.to_vec());
        let mut response = (self.status(), body).into_response();
        response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        response
    }
}

impl From<PayloadError> for AppError {
    fn from(e: PayloadError) -> Self {
        match e {
            PayloadError::Unchecked(why) => Self::Internal(why),
            other => Self::InvalidPayload(other.to_string()),
        }
    }
}

impl From<ProducerError> for AppError {
    fn from(e: ProducerError) -> Self {
        match e {
            ProducerError::Unavailable { url, source } => {
                Self::ProducerUnavailable { url, reason: ProducerError::transport_reason(&source) }
            }
            ProducerError::Timeout { timeout_ms } => Self::ProducerTimeout { timeout_ms },
            ProducerError::AnswerTooLarge { .. } => {
                Self::PayloadTooLarge(format!("{e} (raise it with {MAX_PAYLOAD_SETTING})"))
            }
            ProducerError::PayloadTooLarge { detail } => Self::PayloadTooLarge(detail),
            ProducerError::Refused { status, endpoint, detail } => Self::ProducerError { status, endpoint, detail },
            ProducerError::Undecodable { endpoint, source } => {
                Self::BadProducerAnswer { endpoint, detail: source.to_string() }
            }
            ProducerError::WrongSlot { .. } | ProducerError::WrongEncoding { .. } => {
                Self::BadProducerAnswer { endpoint: WRITE_ENDPOINT, detail: e.to_string() }
            }
        }
    }
}

impl From<SnapshotError> for AppError {
    fn from(e: SnapshotError) -> Self {
        match e {
            SnapshotError::NoSnapshot => {
                Self::Channel(format!("{e} (is it running with {PRODUCER_SNAPSHOT_SETTING}?)"))
            }
            SnapshotError::Read(read) => Self::from(read),
            SnapshotError::Payload(payload) => Self::from(payload),
            SnapshotError::TooLarge { detail } => Self::PayloadTooLarge(detail),
            SnapshotError::Failed { .. } => Self::Channel(e.to_string()),
            SnapshotError::Empty { .. } | SnapshotError::RawBytes => Self::InvalidPayload(e.to_string()),
            SnapshotError::Task(_) => Self::Internal(e.to_string()),
        }
    }
}

/// How the users call over the signal socket is named in errors
/// ([`AppError::ProducerError`]'s endpoint).
pub const UDS_ENDPOINT: &str = "the signal socket's write-users request";
/// How a bridge call over the signal socket is named in errors.
pub const BRIDGE_ENDPOINT: &str = "the signal socket's handler call";

impl From<ClientError> for AppError {
    /// The users paths' meaning of each client error (a producer's refusal is a 502
    /// naming its status, as over the HTTP signal).
    fn from(e: ClientError) -> Self {
        Self::from_client(e, UDS_ENDPOINT)
    }
}

impl AppError {
    /// The error a shared-memory client's failure stands for, on a call to `endpoint`.
    #[must_use]
    pub fn from_client(e: ClientError, endpoint: &'static str) -> Self {
        let refused = |status: u16, detail: String| Self::ProducerError { status, endpoint, detail };
        match e {
            ClientError::InvalidCall(why) => Self::InvalidCall(why),
            ClientError::Open(_) | ClientError::Read(_) => Self::Channel(e.to_string()),
            ClientError::ProducerGone { .. } => Self::Channel(format!("{e} (is the producer running?)")),
            ClientError::EpochMismatch { .. } => {
                Self::Channel(format!("{e}: do the producer and the gateway use the same --shm-dir and --channel?"))
            }
            ClientError::TooFewSlots { request_slots } => Self::Channel(format!(
                "the channel has {request_slots} request slot(s); the gateway needs at least 2 \
                 (the last one is reserved for hand calls): raise the producer's --slot-count"
            )),
            ClientError::NoFreeSlot { waited_ms, slots } => Self::NoFreeSlot { waited_ms, slots },
            ClientError::Timeout { timeout_ms } => Self::ProducerTimeout { timeout_ms },
            ClientError::ProducerUnavailable { socket, reason } => {
                Self::ProducerUnavailable { url: format!("unix:{}", socket.display()), reason }
            }
            ClientError::BadRequest { message } => refused(400, message),
            ClientError::ProducerBusy { message } => refused(409, message),
            ClientError::ProducerInternal { message } => refused(500, message),
            ClientError::NotFound { message } => Self::HandlerNotFound(message),
            ClientError::HandlerError { message } => Self::HandlerFailed(message),
            ClientError::TooLarge { message } => Self::PayloadTooLarge(message),
            ClientError::BadAnswer { detail } => Self::BadProducerAnswer { endpoint, detail },
            ClientError::Corrupt(_) | ClientError::LengthMismatch { .. } => Self::InvalidPayload(e.to_string()),
            ClientError::Internal(why) => Self::Internal(why),
            other => Self::Internal(other.to_string()),
        }
    }
}

impl From<shmbridge::OpenError> for AppError {
    fn from(e: shmbridge::OpenError) -> Self {
        Self::Channel(e.to_string())
    }
}

impl From<shmbridge::ReadError> for AppError {
    /// Data that failed its slot checks is an invalid payload; a channel that cannot be
    /// read at all is a channel error.
    fn from(e: shmbridge::ReadError) -> Self {
        use shmbridge::ReadError as R;
        match e {
            R::WrongRequest { .. } | R::Checksum { .. } | R::CorruptSlot { .. } | R::Empty { .. } => {
                Self::InvalidPayload(e.to_string())
            }
            R::NoSuchSlot { .. }
            | R::Contended { .. }
            | R::Truncated { .. }
            | R::HeaderChanged
            | R::NoSnapshot
            | R::CorruptSnapshotPointer { .. }
            | R::Io(_) => Self::Channel(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn errors_are_json_with_kind_and_detail() {
        let response = AppError::ProducerTimeout { timeout_ms: 1234 }.into_response();
        assert_eq!(response.status(), StatusCode::GATEWAY_TIMEOUT);
        assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
        let body = axum::body::to_bytes(response.into_body(), 1 << 16).await.unwrap();
        let value: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(value["error"], "producer_timeout");
        let detail = value["detail"].as_str().unwrap();
        assert!(detail.contains("1234 ms") && detail.contains("--producer-timeout-ms"), "{detail}");
    }

    #[test]
    fn producer_and_snapshot_errors_keep_their_answers() {
        use crate::producer::AnswerSize;
        let cases = [
            (
                AppError::from(ProducerError::AnswerTooLarge {
                    endpoint: "/api/users",
                    size: AnswerSize::Announced(9),
                    limit: 8,
                }),
                "payload_too_large",
                "the producer's answer from /api/users is 9 bytes, more than the limit of 8 bytes \
                 (raise it with --max-payload-bytes / SHMBRIDGE_MAX_PAYLOAD_BYTES)",
            ),
            (
                AppError::from(ProducerError::WrongSlot { slot: 1, request_id: 2, wrote_slot: 3, wrote_request: 4 }),
                "producer_error",
                "the producer's answer to /api/write-to-shm was not understood: \
                 it wrote slot 3 for request 4, but slot 1 for request 2 was asked for",
            ),
            (
                AppError::from(ProducerError::Refused { status: 409, endpoint: "/api/users", detail: "busy".into() }),
                "producer_error",
                "the producer answered 409 to /api/users: busy",
            ),
            (
                AppError::from(SnapshotError::NoSnapshot),
                "channel_error",
                "the producer has published no snapshot yet (is it running with --snapshot / SHMBRIDGE_SNAPSHOT=1?)",
            ),
            (
                AppError::from(SnapshotError::Failed { error: "snapshot_failed".into(), detail: "why".into() }),
                "channel_error",
                "the producer's newest snapshot is unusable (snapshot_failed): why",
            ),
            (AppError::from(SnapshotError::TooLarge { detail: "too big".into() }), "payload_too_large", "too big"),
            (AppError::from(SnapshotError::Empty { generation: 7 }), "invalid_payload", "snapshot 7 is empty"),
        ];
        for (error, kind, detail) in cases {
            assert_eq!((error.kind(), error.to_string().as_str()), (kind, detail));
        }
    }

    #[test]
    fn read_errors_split_into_payload_and_channel_errors() {
        let wrong = shmbridge::ReadError::WrongRequest { slot: 1, expected: 2, found: 3 };
        assert_eq!(AppError::from(wrong).kind(), "invalid_payload");
        let truncated = shmbridge::ReadError::Truncated { actual: 1, expected: 2 };
        assert_eq!(AppError::from(truncated).kind(), "channel_error");
    }
}
