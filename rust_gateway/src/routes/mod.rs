//! The HTTP endpoints, and what both users endpoints share: one success response
//! shape and one log event per request.

pub mod health;
pub mod users_api;
pub mod users_shm;

use std::time::Instant;

use axum::http::{header, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;

use crate::error::AppError;

/// Phase timings of one request, in microseconds (0: the phase did not happen).
#[derive(Debug, Default, Clone, Copy)]
pub struct Timings {
    pub count: Option<u32>,
    /// Waiting for a free slot (shared-memory path).
    pub slot_wait_us: u64,
    /// The producer call that asks for a write (shared-memory path).
    pub signal_us: u64,
    /// Getting the payload: the slot copy (shared memory) or the whole producer call (REST).
    pub read_us: u64,
    pub validate_us: u64,
}

/// Microseconds since `since`.
#[must_use]
pub fn elapsed_us(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_micros()).unwrap_or(u64::MAX)
}

/// Turns a handler's result into the response and logs the request once.
pub fn finish(path: &'static str, started: Instant, t: &Timings, result: Result<Bytes, AppError>) -> Response {
    let total_us = elapsed_us(started);
    match result {
        Ok(body) => {
            tracing::info!(
                path,
                count = t.count,
                status = 200,
                bytes = body.len(),
                slot_wait_us = t.slot_wait_us,
                signal_us = t.signal_us,
                read_us = t.read_us,
                validate_us = t.validate_us,
                total_us,
                "served"
            );
            json_response(body)
        }
        Err(error) => {
            let status = error.status().as_u16();
            if error.status().is_server_error() {
                tracing::warn!(path, count = t.count, status, kind = error.kind(), error = %error, total_us, "failed");
            } else {
                tracing::info!(path, count = t.count, status, kind = error.kind(), error = %error, total_us, "refused");
            }
            error.into_response()
        }
    }
}

/// 200 with a JSON body, the same headers on both paths.
#[must_use]
pub fn json_response(body: Bytes) -> Response {
    let mut response = (StatusCode::OK, body).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
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
