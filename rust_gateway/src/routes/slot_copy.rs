//! Copying a handler's reply out of its slot and checking the private copy: what the
//! shared-memory routes share, each with a check of its own.
//!
//! A large reply is copied and checked on the blocking pool, in one hop; a small one
//! right here, where the hop would cost more than it spares.

use std::time::Instant;

use shmbridge::client::{Call, Client, ClientError, Written};
use shmbridge::SlotMeta;

use super::elapsed_us;
use crate::error::AppError;
use crate::state::AppState;
use crate::validate::BLOCKING_THRESHOLD;

/// A reply copied out and checked, with its timings.
pub struct CheckedCopy {
    pub body: Vec<u8>,
    pub meta: SlotMeta,
    pub read_us: u64,
    pub validate_us: u64,
}

/// Copies the slot `answer` names out into a reused buffer, gives the slot back, and
/// runs `check` on the copy (with what was read and what the producer announced).
/// `client_error` says what a failed read means on the calling route.
///
/// # Errors
/// The read's error through `client_error`, or `check`'s.
pub async fn copy_and_check<F>(
    state: &AppState,
    call: Call,
    answer: &Written,
    client_error: fn(ClientError) -> AppError,
    check: F,
) -> Result<CheckedCopy, AppError>
where
    F: FnOnce(&SlotMeta, &Written, &[u8]) -> Result<(), AppError> + Send + 'static,
{
    let buf = state.buffers.take();
    if answer.length > BLOCKING_THRESHOLD as u64 {
        let client = state.client.clone();
        let answer = answer.clone();
        tokio::task::spawn_blocking(move || copy_then_check(&client, call, &answer, buf, client_error, check))
            .await
            .map_err(|e| AppError::Internal(format!("slot read task failed: {e}")))?
    } else {
        copy_then_check(&state.client, call, answer, buf, client_error, check)
    }
}

fn copy_then_check<F>(
    client: &Client,
    call: Call,
    answer: &Written,
    mut body: Vec<u8>,
    client_error: fn(ClientError) -> AppError,
    check: F,
) -> Result<CheckedCopy, AppError>
where
    F: FnOnce(&SlotMeta, &Written, &[u8]) -> Result<(), AppError>,
{
    let (slot, request_id) = (call.slot(), call.request_id());
    let read = Instant::now();
    // The client reopens the channel if the answer came from a newer file, and gives
    // the slot back once the copy is private.
    let meta = client.read_into(call, answer, &mut body).map_err(client_error)?;
    let read_us = elapsed_us(read);
    tracing::debug!(slot, request_id, sequence = meta.sequence, length = meta.length, "slot read");
    let checking = Instant::now();
    check(&meta, answer, &body)?;
    Ok(CheckedCopy { body, meta, read_us, validate_us: elapsed_us(checking) })
}
