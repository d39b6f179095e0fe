//! `GET /api/profiles-via-api?count=N`: the profiles (the second dataset: nested
//! objects, lists and floats) fetched from the producer's `GET /api/profiles` over REST,
//! checked to be one valid JSON value (in `--validation full`) and served as they came.
//!
//! The same query rules, errors and default count as `/api/users-via-api`. The
//! producer serves at most 5,000 profiles: a larger count within `--max-count` is its
//! 400, answered here as a 502 `producer_error` quoting it, as for any producer refusal.

use std::time::Instant;

use axum::extract::{RawQuery, State};
use axum::response::Response;
use bytes::Bytes;

use super::{elapsed_us, finish, Timings};
use crate::error::AppError;
use crate::query::parse_count;
use crate::state::AppState;
use crate::{producer, validate};

pub const PATH: &str = "/api/profiles-via-api";

pub async fn profiles_via_api(State(state): State<AppState>, RawQuery(query): RawQuery) -> Response {
    let started = Instant::now();
    let mut timings = Timings::default();
    let result = serve(&state, query.as_deref(), &mut timings).await;
    finish(PATH, started, &timings, result)
}

async fn serve(state: &AppState, query: Option<&str>, t: &mut Timings) -> Result<Bytes, AppError> {
    let settings = &state.settings;
    let count = parse_count(query, settings.max_count)?;
    t.count = Some(count);
    let request_id = state.request_ids.next_id();
    t.set_request_id(request_id);

    let fetch = Instant::now();
    let body = producer::get_profiles(&state.producer, settings, count, request_id).await?;
    t.read_us = elapsed_us(fetch);

    let check = Instant::now();
    validate::validate_json(settings.validation, &body).await?;
    t.validate_us = elapsed_us(check);
    Ok(body)
}
