//! What every handler shares: cheap to clone (a few `Arc`s).

use std::sync::Arc;

use shmbridge::client::request_id::RequestIds;
use shmbridge::client::{Client, ClientConfig};

use crate::buffers::BufferPool;
use crate::producer;
use crate::settings::Settings;
use crate::snapshot::SnapshotCache;

#[derive(Debug, Clone)]
pub struct AppState {
    pub settings: Arc<Settings>,
    /// One pooled keep-alive client for every producer call (it is an `Arc` inside).
    pub producer: reqwest::Client,
    /// The shared-memory client: the channel, its slot pool, request ids and the
    /// signal socket's pooled connections (cheap to clone).
    pub client: Client,
    /// Ids of the REST path's requests (`X-Request-Id`).
    pub request_ids: Arc<RequestIds>,
    /// The newest snapshot, indexed (the snapshot path).
    pub snapshots: Arc<SnapshotCache>,
    /// Buffers that slot copies reuse (the shared-memory path).
    pub buffers: Arc<BufferPool>,
}

impl AppState {
    /// State for `settings`. Opens nothing yet: the channel is opened on first use.
    ///
    /// # Errors
    /// A sentence if the HTTP client or the shared-memory client cannot be built.
    pub fn new(settings: Settings) -> Result<Self, String> {
        // Installs the metrics recorder once per process, before the first request.
        crate::metrics::handle();
        let producer = producer::build_client(&settings)?;
        let client = Client::new(client_config(&settings)).map_err(|e| e.to_string())?;
        Ok(Self {
            settings: Arc::new(settings),
            producer,
            client,
            request_ids: Arc::new(RequestIds::new()),
            snapshots: Arc::new(SnapshotCache::new()),
            buffers: Arc::new(BufferPool::default()),
        })
    }
}

/// The shared-memory client's configuration from the gateway's settings.
#[must_use]
pub fn client_config(settings: &Settings) -> ClientConfig {
    ClientConfig::new(&settings.shm_dir, &settings.channel)
        .call_timeout(settings.producer_timeout())
        .slot_wait(settings.slot_wait_timeout())
        .quarantine(settings.quarantine())
        .spin(settings.signal_spin())
}
