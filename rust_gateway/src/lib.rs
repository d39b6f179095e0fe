//! rust_gateway: an axum HTTP gateway serving the producer's users over REST
//! (`/api/users-via-api`) and through the shmbridge shared-memory channel: a write per
//! request (`/api/users-via-shm`, signalled over HTTP or a Unix socket) or the newest
//! published snapshot (`/api/users-via-snapshot`), with identical bodies, validation
//! and errors.
//!
//! `GET /api/bridge/{handler}` serves any handler of the producer the same way, and
//! `GET /api/profiles-via-api` the producer's second dataset (profiles) over REST.
//!
//! The shared-memory client itself (the channel reader, the slot pool and its
//! quarantine, request ids, the signal socket's connections) is
//! `shmbridge::client`; the gateway keeps HTTP: routes, errors, metrics and settings.
//!
//! Where things are: [`settings`] (flags and env), [`app`] (the router), [`routes`]
//! (the handlers), [`state`] (what handlers share), [`producer`] (HTTP calls to the
//! producer), [`signal`] (asking for a write: HTTP or the Unix socket), [`snapshot`]
//! (the indexed snapshot), [`query`] (the `count` parameter), [`validate`] (the
//! payload check), [`error`] (every error response), [`metrics`] (`GET /metrics`).
//!
//! Modules depend downwards only: [`error`] at the bottom (it knows the typed errors
//! of [`query`], [`validate`] and the client, and the setting names), [`metrics`]
//! renders a [`metrics::Gauges`] snapshot and knows no state.

#![forbid(unsafe_code)]

pub mod app;
pub mod buffers;
pub mod error;
pub mod metrics;
pub mod producer;
pub mod query;
pub mod routes;
pub mod settings;
pub mod signal;
pub mod snapshot;
pub mod state;
pub mod validate;

pub use app::app;
pub use error::AppError;
pub use settings::Settings;
pub use state::AppState;
