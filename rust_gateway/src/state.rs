//! What every handler shares: cheap to clone (a few `Arc`s).

use std::sync::Arc;

use crate::buffers::BufferPool;
use crate::channel::ChannelManager;
use crate::producer;
use crate::request_id::RequestIds;
use crate::settings::Settings;
use crate::signal::UdsPool;
use crate::snapshot::SnapshotCache;

#[derive(Debug, Clone)]
pub struct AppState {
    pub settings: Arc<Settings>,
    /// One pooled keep-alive client for every producer call (it is an `Arc` inside).
    pub producer: reqwest::Client,
    /// The channel reader and its slot pool (rebuilt when the channel's geometry changes).
    pub channel: Arc<ChannelManager>,
    pub request_ids: Arc<RequestIds>,
    /// Pooled connections to the producer's signal socket.
    pub uds: Arc<UdsPool>,
    /// The newest snapshot, indexed (the snapshot path).
    pub snapshots: Arc<SnapshotCache>,
    /// Buffers that slot copies reuse (the shared-memory path).
    pub buffers: Arc<BufferPool>,
}

impl AppState {
    /// State for `settings`. Opens nothing yet: the channel is opened on first use.
    ///
    /// # Errors
    /// A sentence if the HTTP client cannot be built.
    pub fn new(settings: Settings) -> Result<Self, String> {
        // Installs the metrics recorder once per process, before the first request.
        crate::metrics::handle();
        let producer = producer::build_client(&settings)?;
        let channel = Arc::new(ChannelManager::new(settings.channel_path()));
        let uds = Arc::new(UdsPool::new(settings.socket_path(), settings.signal_spin()));
        Ok(Self {
            settings: Arc::new(settings),
            producer,
            channel,
            request_ids: Arc::new(RequestIds::new()),
            uds,
            snapshots: Arc::new(SnapshotCache::new()),
            buffers: Arc::new(BufferPool::default()),
        })
    }
}
