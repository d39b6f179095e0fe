//! `GET /api/bridge/{handler}?{query}`: any handler of the producer, through the
//! shared-memory channel and the Unix-socket signal (whatever `--signal` says: a
//! handler call needs the socket).
//!
//! 1. the handler name (the path segment, taken as is: names are `[a-z0-9_.-]`) and
//!    the query pairs (percent-decoded) are checked by the wire's rules
//!    (`shmbridge::wire::check_name`, `check_params`): 400 `invalid_query` before
//!    anything is written;
//! 2. the shared-memory client leases a slot and calls the handler with the pairs as
//!    its parameters;
//! 3. the slot is copied out into a reused buffer; a JSON reply is checked to be one
//!    valid JSON value (in `--validation full`), never re-encoded;
//! 4. the reply goes out with the handler's content type, else `application/json` for
//!    JSON and `application/octet-stream` for raw bytes.
//!
//! The handler's refusals: a bad request (Python `ValueError`) is 400 `bad_request`, a
//! lookup failure or an unknown handler 404 `not_found`, a raised exception 502
//! `producer_error` with its type and message; the rest as on `/api/users-via-shm`.

use std::time::Instant;

use axum::extract::{RawQuery, State};
use axum::http::{HeaderValue, Uri};
use axum::response::Response;
use shmbridge::client::{content_type, ClientError};
use shmbridge::wire::{check_name, check_params};
use shmbridge::Encoding;

use super::slot_copy::copy_and_check;
use super::{elapsed_us, finish_typed, Payload, Timings};
use crate::error::{AppError, BRIDGE_ENDPOINT};
use crate::query::query_pairs;
use crate::settings::Validation;
use crate::state::AppState;
use crate::validate::check_json;

pub const PATH: &str = "/api/bridge/{handler}";
const PREFIX: &str = "/api/bridge/";

/// `GET /api/bridge/{handler}`.
pub async fn bridge(State(state): State<AppState>, uri: Uri, RawQuery(query): RawQuery) -> Response {
    let started = Instant::now();
    let mut timings = Timings { signal: Some("uds"), ..Timings::default() };
    let handler = uri.path().strip_prefix(PREFIX).unwrap_or_default();
    let result = serve(&state, handler, query.as_deref(), &mut timings).await;
    finish_typed(PATH, started, &timings, result)
}

/// The error a client failure stands for on this route.
fn bridge_error(e: ClientError) -> AppError {
    match e {
        ClientError::BadRequest { message } => AppError::HandlerBadRequest(message),
        other => AppError::from_client(other, BRIDGE_ENDPOINT),
    }
}

async fn serve(
    state: &AppState,
    handler: &str,
    query: Option<&str>,
    t: &mut Timings,
) -> Result<(Payload, HeaderValue), AppError> {
    let name = check_name(handler.as_bytes()).map_err(AppError::InvalidCall)?;
    let params = query_pairs(query)?;
    check_params(&params).map_err(AppError::InvalidCall)?;

    let wait = Instant::now();
    let mut call = state.client.begin().await.map_err(bridge_error)?;
    t.slot_wait_us = elapsed_us(wait);
    t.set_request_id(call.request_id());

    let asked = Instant::now();
    let answer = state.client.signal(&mut call, name, &params).await.map_err(bridge_error)?;
    t.signal_us = elapsed_us(asked);
    crate::metrics::record_signal("uds", t.signal_us);

    let validation = state.settings.validation;
    let copy = copy_and_check(state, call, &answer, bridge_error, move |meta, answer, body| {
        shmbridge::client::check_announced(meta, answer).map_err(bridge_error)?;
        if meta.encoding == Encoding::Json && validation == Validation::Full {
            check_json(body)?;
        }
        Ok(())
    })
    .await?;
    t.read_us = copy.read_us;
    t.validate_us = copy.validate_us;
    let encoding = copy.meta.encoding;
    let header = if answer.content_type.is_empty() && encoding == Encoding::Json {
        // The common case, without building the header from a string on every request.
        HeaderValue::from_static("application/json")
    } else {
        let content_type = content_type(&answer.content_type, encoding);
        HeaderValue::from_str(&content_type).unwrap_or_else(|_| {
            tracing::warn!(content_type = %content_type, "the handler's content type is not a header value");
            HeaderValue::from_static("application/octet-stream")
        })
    };
    Ok((state.buffers.into_bytes(copy.body).into(), header))
}
