//! Liveness (`/healthz`: the gateway process answers), readiness (`/readyz`: the
//! producer answers and the channel file opens and validates) and `/metrics`.

use std::time::Duration;

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;

use super::json_response;
use crate::error::AppError;
use crate::state::AppState;

/// Longest wait for the producer's `/healthz` (less if `--producer-timeout-ms` is).
const READY_PRODUCER_TIMEOUT: Duration = Duration::from_secs(1);
/// The Prometheus text exposition format.
const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// `GET /healthz` → `{"status":"ok"}`.
pub async fn healthz() -> Response {
    json_response(Bytes::from_static(br#"{"status":"ok"}"#))
}

/// `GET /readyz` → 200 `{"status":"ready", ...}` when the producer answers its
/// `/healthz` in time and the channel file opens and validates; otherwise 503
/// `not_ready`, naming each part that is not ready.
pub async fn readyz(State(state): State<AppState>) -> Response {
    let producer = producer_ready(&state).await;
    let channel = state.client.ready().map_err(AppError::from);
    match (producer, channel) {
        (Ok(()), Ok(epoch)) => {
            let body = serde_json::json!({
                "status": "ready",
                "producer": state.settings.producer_url,
                "channel": state.client.channel_path().display().to_string(),
                "epoch": epoch,
            });
            json_response(Bytes::from(body.to_string()))
        }
        (producer, channel) => {
            let mut problems = Vec::new();
            if let Err(reason) = producer {
                problems.push(format!("producer: {reason}"));
            }
            if let Err(error) = channel {
                problems.push(format!("channel: {error}"));
            }
            let detail = problems.join("; ");
            tracing::info!(detail = %detail, "not ready");
            AppError::NotReady(detail).into_response()
        }
    }
}

/// The producer's `/healthz` answered 200 within the readiness timeout.
async fn producer_ready(state: &AppState) -> Result<(), String> {
    let url = format!("{}/healthz", state.settings.producer_url);
    let timeout = READY_PRODUCER_TIMEOUT.min(state.settings.producer_timeout());
    match state.producer.get(&url).timeout(timeout).send().await {
        Ok(response) if response.status().is_success() => Ok(()),
        Ok(response) => Err(format!("{url} answered {}", response.status().as_u16())),
        Err(e) if e.is_timeout() => Err(format!("{url} did not answer within {} ms", timeout.as_millis())),
        Err(e) => {
            let mut reason = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(inner) = source {
                reason = inner.to_string();
                source = inner.source();
            }
            Err(format!("{url} is unreachable: {reason}"))
        }
    }
}

/// `GET /metrics`: Prometheus text format ([`crate::metrics`]).
pub async fn metrics(State(state): State<AppState>) -> Response {
    let stats = state.client.stats();
    let gauges = crate::metrics::Gauges {
        // Before the channel was first opened the pool has no size: no gauges yet.
        slots: (stats.slots > 0).then_some((stats.slots, stats.slots_in_use, stats.slot_waiters)),
        answer_waits: (stats.answers_spinning, stats.answers_parked),
        snapshot: state.snapshots.current().map(|s| (s.generation, s.write_time_ns)),
    };
    match crate::metrics::render(&gauges) {
        Some(text) => {
            let mut response = (StatusCode::OK, text).into_response();
            response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(METRICS_CONTENT_TYPE));
            response
        }
        None => AppError::Internal("the metrics recorder is not installed".into()).into_response(),
    }
}
