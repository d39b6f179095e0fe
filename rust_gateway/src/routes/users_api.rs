//! `GET /api/users-via-api?count=N`: the users fetched from the producer over REST.

use std::time::Instant;

use axum::extract::{RawQuery, State};
use axum::response::Response;
use bytes::Bytes;

use super::{elapsed_us, finish, Timings};
use crate::error::AppError;
use crate::query::parse_count;
use crate::state::AppState;
use crate::{producer, validate};

pub const PATH: &str = "/api/users-via-api";

pub async fn users_via_api(State(state): State<AppState>, RawQuery(query): RawQuery) -> Response {
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
    let body = producer::get_users(&state.producer, settings, count, request_id).await?;
    t.read_us = elapsed_us(fetch);

    let check = Instant::now();
    validate::validate(settings.validation, &body, count).await?;
    t.validate_us = elapsed_us(check);
    Ok(body)
}
