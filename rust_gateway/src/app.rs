//! The router: every endpoint, the fallbacks, and the layers around them.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use http_body::Body as _;
use tower_http::compression::CompressionLayer;
use tower_http::trace::TraceLayer;

use crate::error::AppError;
use crate::routes::{self, bridge, health, users_shm, users_snapshot, via_api};
use crate::state::AppState;

/// The gateway's router, ready to serve (tests drive it with `oneshot`).
pub fn app(state: AppState) -> Router {
    Router::new()
        .route(via_api::USERS_PATH, get(via_api::users_via_api))
        .route(users_shm::PATH, get(users_shm::users_via_shm))
        .route(users_shm::PATH_HTTP, get(users_shm::users_via_shm_http))
        .route(users_shm::PATH_UDS, get(users_shm::users_via_shm_uds))
        .route(users_snapshot::PATH, get(users_snapshot::users_via_snapshot))
        .route(users_snapshot::PATH_MEMORY, get(users_snapshot::users_via_memory))
        .route(bridge::PATH, get(bridge::bridge))
        .route(via_api::PROFILES_PATH, get(via_api::profiles_via_api))
        .route(HEALTHZ, get(health::healthz))
        .route(READYZ, get(health::readyz))
        .route(METRICS, get(health::metrics))
        .fallback(routes::not_found)
        .method_not_allowed_fallback(routes::method_not_allowed)
        .layer(middleware::from_fn_with_state(state.clone(), request_deadline))
        .layer(middleware::from_fn(record_metrics))
        .layer(TraceLayer::new_for_http().make_span_with(request_span).on_failure(()))
        // Outermost, so metrics count body bytes before compression. Only the client's
        // responses pass here: the shared-memory hop is never compressed.
        .layer(CompressionLayer::new())
        .with_state(state)
}

const HEALTHZ: &str = "/healthz";
const READYZ: &str = "/readyz";
const METRICS: &str = "/metrics";

/// The route as a metric label: one of the known routes, or `other` (a bounded set,
/// whatever paths clients try).
fn route_label(request: &Request) -> &'static str {
    match request.extensions().get::<MatchedPath>().map(MatchedPath::as_str) {
        Some(via_api::USERS_PATH) => via_api::USERS_PATH,
        Some(users_shm::PATH) => users_shm::PATH,
        Some(users_shm::PATH_HTTP) => users_shm::PATH_HTTP,
        Some(users_shm::PATH_UDS) => users_shm::PATH_UDS,
        Some(users_snapshot::PATH) => users_snapshot::PATH,
        Some(users_snapshot::PATH_MEMORY) => users_snapshot::PATH_MEMORY,
        Some(bridge::PATH) => bridge::PATH,
        Some(via_api::PROFILES_PATH) => via_api::PROFILES_PATH,
        Some(HEALTHZ) => HEALTHZ,
        Some(READYZ) => READYZ,
        Some(METRICS) => METRICS,
        _ => "other",
    }
}

/// Request count, latency and body bytes per route and status ([`crate::metrics`]).
async fn record_metrics(request: Request, next: Next) -> Response {
    let route = route_label(&request);
    let started = Instant::now();
    let response = next.run(request).await;
    let bytes = response.body().size_hint().exact();
    crate::metrics::record_request(route, response.status(), started.elapsed(), bytes);
    response
}

/// A span per request, named by the matched route rather than the raw URI.
fn request_span(request: &Request) -> tracing::Span {
    let route = request.extensions().get::<MatchedPath>().map_or("-", MatchedPath::as_str);
    tracing::info_span!("request", method = %request.method(), route, request_id = tracing::field::Empty)
}

/// Backstop: a request that outlives its slot wait, producer call and a margin is
/// answered 504 and dropped, so nothing (not even shutdown) waits on it forever. A
/// dropped shared-memory request quarantines its slot.
async fn request_deadline(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let deadline = state.settings.request_deadline();
    match tokio::time::timeout(deadline, next.run(request)).await {
        Ok(response) => response,
        Err(_elapsed) => {
            let deadline_ms = u64::try_from(deadline.as_millis()).unwrap_or(u64::MAX);
            tracing::warn!(deadline_ms, "request abandoned at its deadline");
            AppError::RequestTimeout { deadline_ms }.into_response()
        }
    }
}
