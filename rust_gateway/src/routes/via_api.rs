//! The REST paths: a dataset fetched from the producer over its HTTP API, checked, and
//! served as it came.
//!
//! - `GET /api/users-via-api?count=N`: the producer's `GET /api/users`, checked by the
//!   users scanner (ids, order and count).
//! - `GET /api/profiles-via-api?count=N`: the producer's `GET /api/profiles` (the second
//!   dataset: nested objects, lists and floats), checked to be one valid JSON value. The
//!   producer serves at most 5,000 profiles: a larger count within `--max-count` is its
//!   400, answered here as a 502 `producer_error` quoting it, as for any producer refusal.
//!
//! Both have the same query rules, errors and default count.

use std::time::Instant;

use axum::extract::{RawQuery, State};
use axum::response::Response;
use bytes::Bytes;

use super::{elapsed_us, finish, Timings};
use crate::error::AppError;
use crate::query::parse_count;
use crate::state::AppState;
use crate::{producer, validate};

pub const USERS_PATH: &str = "/api/users-via-api";
pub const PROFILES_PATH: &str = "/api/profiles-via-api";

/// Which of the producer's datasets a REST path serves.
#[derive(Debug, Clone, Copy)]
enum Dataset {
    Users,
    Profiles,
}

pub async fn users_via_api(State(state): State<AppState>, RawQuery(query): RawQuery) -> Response {
    serve_route(Dataset::Users, &state, query.as_deref()).await
}

pub async fn profiles_via_api(State(state): State<AppState>, RawQuery(query): RawQuery) -> Response {
    serve_route(Dataset::Profiles, &state, query.as_deref()).await
}

async fn serve_route(dataset: Dataset, state: &AppState, query: Option<&str>) -> Response {
    let started = Instant::now();
    let mut timings = Timings::default();
    let result = serve(dataset, state, query, &mut timings).await;
    let path = match dataset {
        Dataset::Users => USERS_PATH,
        Dataset::Profiles => PROFILES_PATH,
    };
    finish(path, started, &timings, result)
}

async fn serve(dataset: Dataset, state: &AppState, query: Option<&str>, t: &mut Timings) -> Result<Bytes, AppError> {
    let settings = &state.settings;
    let count = parse_count(query, settings.max_count)?;
    t.count = Some(count);
    let request_id = state.request_ids.next_id();
    t.set_request_id(request_id);

    let fetch = Instant::now();
    let body = match dataset {
        Dataset::Users => producer::get_users(&state.producer, settings, count, request_id).await?,
        Dataset::Profiles => producer::get_profiles(&state.producer, settings, count, request_id).await?,
    };
    t.read_us = elapsed_us(fetch);

    let check = Instant::now();
    match dataset {
        Dataset::Users => validate::validate(settings.validation, &body, count).await?,
        Dataset::Profiles => validate::validate_json(settings.validation, &body).await?,
    }
    t.validate_us = elapsed_us(check);
    Ok(body)
}
