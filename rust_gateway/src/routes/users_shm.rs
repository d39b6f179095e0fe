//! `GET /api/users-via-shm?count=N`: the producer writes the users into a slot of the
//! shared-memory channel, and the gateway copies them out. The signal that asks for the
//! write is `--signal` (`auto`: the Unix socket when it exists, else HTTP); two more
//! endpoints fix it per request, for benchmarks: `/api/users-via-shm-http` and
//! `/api/users-via-shm-uds`. Everything but step 4 is the same for both signals.
//!
//! 1. get the open channel (opened lazily, reopened when the file was replaced);
//! 2. take a free slot from the client's pool (503 after `--slot-wait-timeout-ms`);
//! 3. make a fresh request id (steps 1 to 3: `shmbridge::client::Client::begin`);
//! 4. signal: ask the producer to write `count` users into that slot for that id
//!    (over HTTP, or a call of the handler `users` over the Unix socket:
//!    [`crate::signal`]);
//! 5. reopen the channel if the producer answered from a file with another epoch;
//! 6. copy the slot out under its seqlock, checking the request id and checksum;
//! 7. give the slot back (after a quarantine if the producer may still write into it);
//! 8. validate the private copy, then serve it (one copy: mapping → Vec → socket;
//!    the Vec is a reused buffer, back in [`crate::buffers`] once the body is sent).
//!
//! Steps 6 to 8 run on the blocking pool, in one hop, when the body is large
//! ([`super::slot_copy`]).

use std::time::Instant;

use axum::extract::{RawQuery, State};
use axum::response::Response;
use bytes::Bytes;
use shmbridge::Encoding;

use super::slot_copy::copy_and_check;
use super::{elapsed_us, finish, Timings};
use crate::error::AppError;
use crate::query::parse_count;
use crate::signal::{self, Signal};
use crate::state::AppState;
use crate::validate;

pub const PATH: &str = "/api/users-via-shm";
/// The shared-memory path with the HTTP signal, whatever `--signal` says.
pub const PATH_HTTP: &str = "/api/users-via-shm-http";
/// The shared-memory path with the Unix-socket signal, whatever `--signal` says.
pub const PATH_UDS: &str = "/api/users-via-shm-uds";

/// `/api/users-via-shm`: the signal `--signal` picks.
pub async fn users_via_shm(State(state): State<AppState>, RawQuery(query): RawQuery) -> Response {
    let signal = Signal::choose(state.settings.signal, state.client.socket_path());
    run(PATH, &state, query.as_deref(), signal).await
}

/// `/api/users-via-shm-http`.
pub async fn users_via_shm_http(State(state): State<AppState>, RawQuery(query): RawQuery) -> Response {
    run(PATH_HTTP, &state, query.as_deref(), Signal::Http).await
}

/// `/api/users-via-shm-uds`.
pub async fn users_via_shm_uds(State(state): State<AppState>, RawQuery(query): RawQuery) -> Response {
    run(PATH_UDS, &state, query.as_deref(), Signal::Uds).await
}

async fn run(path: &'static str, state: &AppState, query: Option<&str>, signal: Signal) -> Response {
    let started = Instant::now();
    let mut timings = Timings { signal: Some(signal.name()), ..Timings::default() };
    let result = serve(state, query, signal, &mut timings).await;
    finish(path, started, &timings, result)
}

async fn serve(state: &AppState, query: Option<&str>, signal: Signal, t: &mut Timings) -> Result<Bytes, AppError> {
    let settings = &state.settings;
    let count = parse_count(query, settings.max_count)?;
    t.count = Some(count);

    let wait = Instant::now();
    let mut call = state.client.begin().await?;
    t.slot_wait_us = elapsed_us(wait);
    t.set_request_id(call.request_id());

    // From the send until the producer answers, a dropped call (error, timeout, or the
    // client going away) keeps the slot in quarantine: a late write may land in it.
    let asked = Instant::now();
    let answer = signal::request_write(state, &mut call, signal, count).await?;
    t.signal_us = elapsed_us(asked);
    crate::metrics::record_signal(signal.name(), t.signal_us);

    let validation = settings.validation;
    let copy = copy_and_check(state, call, &answer, AppError::from, move |meta, answer, body| {
        if meta.length != answer.length || meta.encoding != Encoding::Json {
            return Err(AppError::InvalidPayload(format!(
                "slot {} holds {} bytes encoded as {}, but the producer announced {} bytes of json",
                meta.slot,
                meta.length,
                meta.encoding.name(),
                answer.length,
            )));
        }
        Ok(validate::check(validation, body, count)?)
    })
    .await?;
    t.read_us = copy.read_us;
    t.validate_us = copy.validate_us;
    Ok(state.buffers.into_bytes(copy.body))
}
