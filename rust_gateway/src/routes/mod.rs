//! The HTTP endpoints, and what every users endpoint shares: one success response
//! shape and one log event per request.

pub mod bridge;
pub mod health;
mod slot_copy;
pub mod users_shm;
pub mod users_snapshot;
pub mod via_api;

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::body::Body;
use axum::http::{header, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http_body::{Frame, SizeHint};

use crate::error::AppError;

/// Phase timings of one request, in microseconds (0: the phase did not happen).
#[derive(Debug, Default, Clone, Copy)]
pub struct Timings {
    pub count: Option<u32>,
    /// The id sent to the producer (`X-Request-Id`, or the shared-memory request id).
    pub request_id: Option<u64>,
    /// How the payload was asked for: `http` or `uds` (shared memory), `snapshot`.
    pub signal: Option<&'static str>,
    /// Waiting for a free slot (shared-memory path).
    pub slot_wait_us: u64,
    /// The producer call that asks for a write (shared-memory path).
    pub signal_us: u64,
    /// Getting the payload: the slot copy (shared memory), the whole producer call
    /// (REST), or the snapshot check and, after a publish, its copy and index.
    pub read_us: u64,
    pub validate_us: u64,
}

impl Timings {
    /// Notes the request id sent to the producer: in this request's log line, in its
    /// span (so every event logged while it runs carries it) and in the
    /// `x-request-id` response header.
    pub fn set_request_id(&mut self, request_id: u64) {
        self.request_id = Some(request_id);
        tracing::Span::current().record("request_id", request_id);
    }
}

/// The response header carrying the request id the producer saw.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// Microseconds since `since`.
#[must_use]
pub fn elapsed_us(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_micros()).unwrap_or(u64::MAX)
}

/// A 200 body: one buffer, or one buffer and a short tail sent after it (a snapshot
/// prefix and its closing bracket), so that no payload is copied to be served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payload {
    head: Bytes,
    tail: Bytes,
}

impl Payload {
    #[must_use]
    pub fn new(head: Bytes, tail: Bytes) -> Self {
        Self { head, tail }
    }

    #[must_use]
    pub fn len(&self) -> usize {
        self.head.len() + self.tail.len()
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn into_body(self) -> Body {
        if self.tail.is_empty() {
            Body::from(self.head)
        } else {
            Body::new(Chunks { chunks: [Some(self.head), Some(self.tail)] })
        }
    }
}

impl From<Bytes> for Payload {
    fn from(head: Bytes) -> Self {
        Self { head, tail: Bytes::new() }
    }
}

/// A body of a few buffers sent one after the other, with an exact length (so the
/// response carries `content-length`, as a one-buffer body does).
struct Chunks {
    chunks: [Option<Bytes>; 2],
}

impl http_body::Body for Chunks {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let next = self.chunks.iter_mut().find_map(Option::take);
        Poll::Ready(next.map(|chunk| Ok(Frame::data(chunk))))
    }

    fn is_end_stream(&self) -> bool {
        self.chunks.iter().all(Option::is_none)
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.chunks.iter().flatten().map(|c| c.len() as u64).sum())
    }
}

/// Turns a handler's result into the response and logs the request once.
pub fn finish(
    path: &'static str,
    started: Instant,
    t: &Timings,
    result: Result<impl Into<Payload>, AppError>,
) -> Response {
    finish_typed(path, started, t, result.map(|body| (body.into(), HeaderValue::from_static("application/json"))))
}

/// [`finish`] for a body of the given content type.
pub fn finish_typed(
    path: &'static str,
    started: Instant,
    t: &Timings,
    result: Result<(Payload, HeaderValue), AppError>,
) -> Response {
    let total_us = elapsed_us(started);
    let mut response = match result {
        Ok((body, content_type)) => {
            tracing::info!(
                path,
                count = t.count,
                signal = t.signal,
                status = 200,
                bytes = body.len(),
                slot_wait_us = t.slot_wait_us,
                signal_us = t.signal_us,
                read_us = t.read_us,
                validate_us = t.validate_us,
                total_us,
                request_id = t.request_id,
                "served"
            );
            typed_response(body, content_type)
        }
        Err(error) => {
            let status = error.status().as_u16();
            if error.status().is_server_error() {
                tracing::warn!(path, count = t.count, signal = t.signal, status, kind = error.kind(), error = %error, total_us, request_id = t.request_id, "failed");
            } else {
                tracing::info!(path, count = t.count, signal = t.signal, status, kind = error.kind(), error = %error, total_us, request_id = t.request_id, "refused");
            }
            error.into_response()
        }
    };
    if let Some(id) = t.request_id {
        response.headers_mut().insert(REQUEST_ID_HEADER, HeaderValue::from(id));
    }
    response
}

/// 200 with a JSON body, the same headers on every path.
#[must_use]
pub fn json_response(body: impl Into<Payload>) -> Response {
    typed_response(body.into(), HeaderValue::from_static("application/json"))
}

/// 200 with a body of `content_type`.
fn typed_response(body: Payload, content_type: HeaderValue) -> Response {
    let mut response = (StatusCode::OK, body.into_body()).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, content_type);
    response
}

/// Any path no route matches.
pub async fn not_found(method: Method, uri: Uri) -> AppError {
    AppError::NotFound { method: method.to_string(), path: uri.path().to_owned() }
}

/// A known path with a method it does not serve.
pub async fn method_not_allowed(method: Method, uri: Uri) -> AppError {
    AppError::MethodNotAllowed { method: method.to_string(), path: uri.path().to_owned() }
}
