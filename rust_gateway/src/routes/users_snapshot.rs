//! `GET /api/users-via-snapshot?count=N`: the first N users of the producer's newest
//! published snapshot, with no call to the producer.
//!
//! 1. parse `count` (the same rules and limit as the other paths);
//! 2. get the open channel (reopened when the file was replaced, as the shm path does);
//! 3. check that its producer is alive (it holds the file's lock): a snapshot left by a
//!    producer that died is never served, the answer is 502 `channel_error`;
//! 4. take the cached, checked and indexed snapshot, refreshed only when the producer
//!    published another since ([`crate::snapshot`]);
//! 5. N over the snapshot's users: 400 naming that limit; else serve the first N users
//!    (the snapshot's own bytes up to user N, and a closing bracket: no copy).
//!
//! `GET /api/users-via-memory?count=N` is the benchmark's baseline for this path: the
//! same bytes, served by the same code, from the snapshot the gateway already holds in
//! memory, with steps 2 to 4 left out (it looks at the channel only to load a first
//! snapshot). Whatever the snapshot path costs on top of it is the price of staying
//! current with the producer.

use std::time::Instant;

use axum::extract::{RawQuery, State};
use axum::response::Response;
use bytes::Bytes;
use shmbridge::client::ClientError;

use super::{elapsed_us, finish, Payload, Timings};
use crate::error::AppError;
use crate::query::{given_count, QueryError, DEFAULT_COUNT};
use crate::snapshot::{IndexedSnapshot, SnapshotBody};
use crate::state::AppState;

pub const PATH: &str = "/api/users-via-snapshot";
/// The baseline: the cached snapshot, with no look at the channel once one is cached.
pub const PATH_MEMORY: &str = "/api/users-via-memory";

pub async fn users_via_snapshot(State(state): State<AppState>, RawQuery(query): RawQuery) -> Response {
    let started = Instant::now();
    let mut timings = Timings { signal: Some("snapshot"), ..Timings::default() };
    let result = serve(&state, query.as_deref(), &mut timings).await;
    finish(PATH, started, &timings, result)
}

async fn serve(state: &AppState, query: Option<&str>, t: &mut Timings) -> Result<Payload, AppError> {
    let settings = &state.settings;
    let count = given_count(query, settings.max_count)?;
    t.count = count;

    let read = Instant::now();
    let reader = state.client.live_reader().map_err(|e| match e {
        ClientError::ProducerGone { path } => AppError::Channel(format!(
            "the producer of {} is no longer running, so its last snapshot is not served (is the producer running?)",
            path.display()
        )),
        other => AppError::from(other),
    })?;
    let (snapshot, refreshed) = state.snapshots.get(&reader, settings.validation).await?;
    let elapsed = elapsed_us(read);
    // A refresh copies, parses and (in full mode) validates the whole snapshot.
    if refreshed {
        t.validate_us = elapsed;
    } else {
        t.read_us = elapsed;
    }
    first_users(&snapshot, count)
}

/// `/api/users-via-memory`.
pub async fn users_via_memory(State(state): State<AppState>, RawQuery(query): RawQuery) -> Response {
    let started = Instant::now();
    let mut timings = Timings { signal: Some("memory"), ..Timings::default() };
    let result = serve_from_memory(&state, query.as_deref(), &mut timings).await;
    finish(PATH_MEMORY, started, &timings, result)
}

async fn serve_from_memory(state: &AppState, query: Option<&str>, t: &mut Timings) -> Result<Payload, AppError> {
    let count = given_count(query, state.settings.max_count)?;
    t.count = count;
    let snapshot = match state.snapshots.current() {
        Some(snapshot) => snapshot,
        None => {
            let reader = state.client.reader()?;
            state.snapshots.get(&reader, state.settings.validation).await?.0
        }
    };
    first_users(&snapshot, count)
}

/// The first `count` users of `snapshot`, as its own bytes (no `count`: the first
/// [`DEFAULT_COUNT`], or all of them if it holds fewer).
fn first_users(snapshot: &IndexedSnapshot, count: Option<u32>) -> Result<Payload, AppError> {
    let users = snapshot.users();
    let count = count.unwrap_or_else(|| DEFAULT_COUNT.min(u32::try_from(users).unwrap_or(u32::MAX)));
    match usize::try_from(count).ok().and_then(|n| snapshot.body(n)) {
        Some(SnapshotBody::Whole(body)) => Ok(body.into()),
        Some(SnapshotBody::Open(head)) => Ok(Payload::new(head, Bytes::from_static(b"]"))),
        None => Err(QueryError::OverSnapshot { count, users }.into()),
    }
}
