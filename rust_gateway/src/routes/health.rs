//! Liveness: the gateway process answers. (Readiness, which checks the producer and
//! the channel, will be `/readyz`.)

use axum::response::Response;
use bytes::Bytes;

use super::json_response;

/// `GET /healthz` → `{"status":"ok"}`.
pub async fn healthz() -> Response {
    json_response(Bytes::from_static(br#"{"status":"ok"}"#))
}
