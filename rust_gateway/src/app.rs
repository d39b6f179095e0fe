//! The router: every endpoint, the fallbacks, and the layers around them.

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tower_http::trace::TraceLayer;

use crate::error::AppError;
use crate::routes::{self, health, users_api, users_shm};
use crate::state::AppState;

/// The gateway's router, ready to serve (tests drive it with `oneshot`).
pub fn app(state: AppState) -> Router {
    Router::new()
        .route(users_api::PATH, get(users_api::users_via_api))
        .route(users_shm::PATH, get(users_shm::users_via_shm))
        .route("/healthz", get(health::healthz))
        .fallback(routes::not_found)
        .method_not_allowed_fallback(routes::method_not_allowed)
        .layer(middleware::from_fn_with_state(state.clone(), request_deadline))
        .layer(TraceLayer::new_for_http().make_span_with(request_span).on_failure(()))
        .with_state(state)
}

/// A span per request, named by the matched route rather than the raw URI.
fn request_span(request: &Request) -> tracing::Span {
    let route = request.extensions().get::<MatchedPath>().map_or("-", MatchedPath::as_str);
    tracing::info_span!("request", method = %request.method(), route)
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
