//! The shared-memory path's signal step: asking the producer to write `count` users
//! into the call's slot, and learning where it wrote them. Everything else on that path
//! (slot pool, quarantine, epoch, slot read) is `shmbridge::client`'s, the same for
//! both signals; validation is `routes::users_shm`'s.
//!
//! - `http`: `GET /api/write-to-shm` through the pooled keep-alive client ([`producer`]).
//! - `uds`: a call of the producer's handler `users` with the parameter `count` over the
//!   Unix socket `<shm-dir>/<channel>.sock` (`shmbridge::wire` version 2), through the
//!   client's pooled connections.
//!
//! Failures keep the HTTP signal's meaning: the producer could not be reached or the
//! connection broke → 502 `producer_unavailable`; the whole exchange took longer than
//! `--producer-timeout-ms` → 504 naming it; a payload over the slot capacity → 507; any
//! other refusal → 502 `producer_error`. The slot is in quarantine while a late write
//! may still land in it.

use std::os::unix::fs::FileTypeExt as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use shmbridge::client::connection::SignalPool;
use shmbridge::client::{Call, SignalFailure, Written};

use crate::error::AppError;
use crate::producer;
use crate::settings::{Settings, SignalMode};
use crate::state::AppState;

/// The producer's handler that writes the demo's users.
pub const USERS_HANDLER: &str = "users";
/// Its parameter: how many users (absent: the producer's default, 100).
pub const COUNT_PARAM: &str = "count";
/// Idle connections the handoff bench's pool keeps.
const MAX_IDLE: usize = 64;

/// The signal one request uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Http,
    Uds,
}

impl Signal {
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Signal::Http => "http",
            Signal::Uds => "uds",
        }
    }

    /// The signal for `mode`: `auto` is `uds` while `socket` exists as a socket.
    #[must_use]
    pub fn choose(mode: SignalMode, socket: &Path) -> Self {
        match mode {
            SignalMode::Http => Signal::Http,
            SignalMode::Uds => Signal::Uds,
            SignalMode::Auto if is_socket(socket) => Signal::Uds,
            SignalMode::Auto => Signal::Http,
        }
    }
}

fn is_socket(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|meta| meta.file_type().is_socket())
}

/// Asks the producer, over `signal`, to write the first `count` users into `call`'s
/// slot. The slot is in quarantine from the send until the producer answers, and stays
/// there if a late write may still land in it.
///
/// # Errors
/// The [`AppError`] of the failure.
pub async fn request_write(state: &AppState, call: &mut Call, signal: Signal, count: u32) -> Result<Written, AppError> {
    match signal {
        Signal::Http => {
            call.quarantine_on_drop();
            let answered =
                producer::write_to_shm(&state.producer, &state.settings, count, call.slot(), call.request_id()).await;
            match answered {
                Ok(answer) => {
                    call.release_now_on_drop();
                    Ok(Written {
                        epoch: answer.epoch,
                        slot: answer.slot,
                        request_id: answer.request_id,
                        sequence: answer.sequence,
                        length: answer.length,
                        content_type: String::new(),
                        source: answer.path,
                    })
                }
                Err(failure) => {
                    if !failure.may_still_write {
                        call.release_now_on_drop();
                    }
                    Err(failure.error.into())
                }
            }
        }
        Signal::Uds => {
            let params = [(COUNT_PARAM, count.to_string())];
            state.client.signal(call, USERS_HANDLER, &params).await.map_err(AppError::from)
        }
    }
}

/// The users call over the signal socket with the gateway's settings, on a pool of its
/// own and no slot pool (the handoff bench's client, which leases nothing).
#[derive(Debug)]
pub struct UdsPool {
    pool: SignalPool,
}

impl UdsPool {
    /// A pool for the socket at `path` polling up to `spin` for a lone answer.
    #[must_use]
    pub fn new(path: PathBuf, spin: Duration) -> Self {
        Self { pool: SignalPool::new(path, spin, MAX_IDLE) }
    }

    /// Answers read while spinning and answers waited for on the reactor, so far.
    #[must_use]
    pub fn answer_waits(&self) -> (u64, u64) {
        self.pool.answer_waits()
    }

    /// Asks for `count` users in `slot` for `request_id`, under `--producer-timeout-ms`.
    ///
    /// # Errors
    /// A [`SignalFailure`].
    pub async fn write_users(
        &self,
        settings: &Settings,
        count: u32,
        slot: u32,
        request_id: u64,
    ) -> Result<Written, SignalFailure> {
        let params = [(COUNT_PARAM, count.to_string())];
        self.pool.call(settings.producer_timeout(), USERS_HANDLER, &params, slot, request_id).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_follows_the_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.sock");
        assert_eq!(Signal::choose(SignalMode::Auto, &path), Signal::Http);
        std::fs::write(&path, b"not a socket").unwrap();
        assert_eq!(Signal::choose(SignalMode::Auto, &path), Signal::Http);
        std::fs::remove_file(&path).unwrap();
        let _listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        assert_eq!(Signal::choose(SignalMode::Auto, &path), Signal::Uds);
        assert_eq!(Signal::choose(SignalMode::Http, &path), Signal::Http);
        assert_eq!(Signal::choose(SignalMode::Uds, dir.path()), Signal::Uds);
    }
}
