//! The async client a Rust service uses to call the producer's handlers and read their
//! replies out of the channel (the `client` feature; it needs a tokio runtime).
//!
//! One call:
//! 1. open the channel file (lazily; reopened when the producer restarted, see
//!    [`channel`]);
//! 2. take a free request slot from the pool ([`slots`]; [`ClientError::NoFreeSlot`]
//!    after [`ClientConfig::slot_wait`]);
//! 3. make a fresh request id ([`request_id`]);
//! 4. ask the producer over its signal socket to run the handler into that slot
//!    ([`connection`], [`wire`](crate::wire) version 2, under
//!    [`ClientConfig::call_timeout`]);
//! 5. reopen the channel if the producer answered from a file with another epoch;
//! 6. copy the slot out under its seqlock, checking the request id and checksum;
//! 7. give the slot back, after a quarantine if the producer may still write into it.
//!
//! [`Client::call`] does all of it. A service that wants to do some steps itself (its
//! own signal, its own buffers, its own threads for large copies) uses
//! [`Client::begin`], [`Client::signal`] and [`Client::read_into`].
//!
//! ```
//! use shmbridge::client::rust_producer::{Outcome, RustProducer};
//! use shmbridge::client::{Client, ClientConfig, ClientError};
//! use shmbridge::{ChannelConfig, Encoding};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! // A producer: here a small one in Rust; usually a Python script with a `Bridge`.
//! let channel = ChannelConfig { slot_count: 4, snapshot_slots: 2, slot_capacity: 1 << 16 };
//! let producer = RustProducer::start(dir.path(), "orders", channel, |call, _writer| {
//!     match call.name.as_str() {
//!         "recent" => {
//!             let limit = call.param("limit").unwrap_or("10");
//!             Outcome::json(format!(r#"{{"limit":{limit}}}"#))
//!         }
//!         other => Outcome::not_found(format!("no handler {other:?}; known: recent")),
//!     }
//! })?;
//! producer.publish(Encoding::Json, br#"[1,2,3]"#)?;
//!
//! let client = Client::new(ClientConfig::new(dir.path(), "orders"))?;
//! let reply = client.call("recent", &[("limit", "10")]).await?;
//! assert_eq!(reply.content_type, "application/json");
//! assert_eq!(&reply.body[..], br#"{"limit":10}"#);
//!
//! let snapshot = client.snapshot().await?.expect("published above");
//! assert_eq!(&snapshot.body[..], b"[1,2,3]");
//!
//! match client.call("missing", &[] as &[(&str, &str)]).await {
//!     Err(ClientError::NotFound { message }) => assert!(message.contains("known: recent")),
//!     other => panic!("{other:?}"),
//! }
//! // Refused before anything is sent: the name is not a handler name.
//! let invalid = client.call("../etc/passwd", &[("a", "b")]).await;
//! assert!(matches!(invalid, Err(ClientError::InvalidCall(_))));
//! # Ok(())
//! # }
//! ```

pub mod channel;
pub mod config;
pub mod connection;
pub mod error;
pub mod reply;
pub mod request_id;
pub mod rust_producer;
pub mod slots;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use self::channel::{ChannelManager, OpenChannel};
use self::connection::SignalPool;
use self::request_id::RequestIds;
use self::slots::SlotLease;
use crate::{ChannelReader, ReadError, SlotMeta};

pub use self::config::ClientConfig;
pub use self::connection::{SignalFailure, Written};
pub use self::error::ClientError;
pub use self::reply::{content_type, Reply, SnapshotReply};

/// Replies larger than this are copied out of the slot on tokio's blocking pool, off
/// the async workers.
pub const BLOCKING_COPY_THRESHOLD: u64 = 1024 * 1024;

/// A client of one producer's channel: cheap to clone (one `Arc`), shared by every
/// task of a service.
#[derive(Debug, Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: ClientConfig,
    channel: ChannelManager,
    ids: RequestIds,
    signal: SignalPool,
}

/// Gauges of a client's state, read when asked (for metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ClientStats {
    /// Slots this client hands out (0 before the channel was first opened).
    pub slots: usize,
    /// Slots leased or in quarantine.
    pub slots_in_use: usize,
    /// Calls waiting for a free slot.
    pub slot_waiters: usize,
    /// Signal answers read while polling ([`ClientConfig::spin`]), so far.
    pub answers_spinning: u64,
    /// Signal answers waited for on the runtime, so far.
    pub answers_parked: u64,
    /// Signal connections idle for reuse.
    pub idle_connections: usize,
}

/// One call in progress: its channel, its leased slot and its request id. Dropping it
/// gives the slot back (after a quarantine while one is armed).
#[derive(Debug)]
pub struct Call {
    channel: Arc<OpenChannel>,
    lease: SlotLease,
    request_id: u64,
    quarantine: Duration,
}

impl Call {
    /// The request slot leased for this call.
    #[must_use]
    pub fn slot(&self) -> u32 {
        self.lease.slot()
    }

    /// The request id the slot must carry.
    #[must_use]
    pub fn request_id(&self) -> u64 {
        self.request_id
    }

    /// The epoch of the channel file the call was made on.
    #[must_use]
    pub fn epoch(&self) -> u64 {
        self.channel.reader.epoch()
    }

    /// From now until [`release_now_on_drop`](Self::release_now_on_drop), dropping the
    /// call keeps its slot in quarantine: the producer may still write into it. Arm it
    /// before a request is sent by a signal of one's own.
    pub fn quarantine_on_drop(&mut self) {
        self.lease.quarantine_on_drop(self.quarantine, &self.channel.reader);
    }

    /// The producer is known not to write into the slot any more.
    pub fn release_now_on_drop(&mut self) {
        self.lease.release_now_on_drop();
    }
}

impl Client {
    /// A client for `config`'s channel. Opens nothing yet: the channel file is opened
    /// by the first call, so the producer may start later.
    ///
    /// # Errors
    /// [`ClientError::InvalidConfig`].
    pub fn new(config: ClientConfig) -> Result<Self, ClientError> {
        config.check()?;
        let channel = ChannelManager::new(config.channel_path());
        let signal = SignalPool::new(config.socket_path(), config.spin, config.max_idle_connections);
        Ok(Self { inner: Arc::new(Inner { config, channel, ids: RequestIds::new(), signal }) })
    }

    /// The configuration the client was made with.
    #[must_use]
    pub fn config(&self) -> &ClientConfig {
        &self.inner.config
    }

    /// Calls handler `name` with `params` and returns its reply.
    ///
    /// # Errors
    /// Any [`ClientError`]; [`ClientError::InvalidCall`] before anything is sent.
    pub async fn call<K: AsRef<str>, V: AsRef<str>>(
        &self,
        name: &str,
        params: &[(K, V)],
    ) -> Result<Reply, ClientError> {
        crate::wire::check_name(name.as_bytes())?;
        crate::wire::check_params(params)?;
        let mut call = self.begin().await?;
        let written = self.signal(&mut call, name, params).await?;
        let read = |client: &Client, call: Call, written: &Written| {
            let mut body = Vec::new();
            let meta = client.read_into(call, written, &mut body)?;
            check_announced(&meta, written)?;
            Ok::<_, ClientError>(Reply {
                encoding: meta.encoding,
                content_type: content_type(&written.content_type, meta.encoding),
                body: Bytes::from(body),
            })
        };
        if written.length > BLOCKING_COPY_THRESHOLD {
            let client = self.clone();
            tokio::task::spawn_blocking(move || read(&client, call, &written))
                .await
                .map_err(|e| ClientError::Internal(format!("slot read task failed: {e}")))?
        } else {
            read(self, call, &written)
        }
    }

    /// Steps 1 to 3 of a call: the open channel, a free slot, a request id.
    ///
    /// # Errors
    /// The channel cannot be opened ([`ClientError::Open`],
    /// [`ClientError::ProducerGone`], [`ClientError::TooFewSlots`]), or
    /// [`ClientError::NoFreeSlot`].
    pub async fn begin(&self) -> Result<Call, ClientError> {
        let channel = self.inner.channel.get()?;
        let lease = channel.slots.acquire(self.inner.config.slot_wait).await?;
        let request_id = self.inner.ids.next_id();
        Ok(Call { channel, lease, request_id, quarantine: self.inner.config.quarantine_delay() })
    }

    /// Step 4: asks the producer over the signal socket to run handler `name` with
    /// `params` into `call`'s slot. The slot is in quarantine from the send until the
    /// producer answers (so also if this future is dropped).
    ///
    /// # Errors
    /// [`ClientError::InvalidCall`], [`ClientError::Timeout`],
    /// [`ClientError::ProducerUnavailable`], [`ClientError::BadAnswer`], or the error
    /// of the producer's refusal.
    pub async fn signal<K: AsRef<str>, V: AsRef<str>>(
        &self,
        call: &mut Call,
        name: &str,
        params: &[(K, V)],
    ) -> Result<Written, ClientError> {
        call.quarantine_on_drop();
        let answer =
            self.inner.signal.call(self.inner.config.call_timeout, name, params, call.slot(), call.request_id).await;
        match answer {
            Ok(written) => {
                call.release_now_on_drop();
                Ok(written)
            }
            Err(failure) => {
                if !failure.may_still_write {
                    call.release_now_on_drop();
                }
                Err(failure.error)
            }
        }
    }

    /// Steps 5 to 7: copies `call`'s slot, which the producer said it wrote
    /// (`written`), into `out` and gives the slot back. Blocking: a copy of up to the
    /// slot capacity (run it on a blocking thread for large replies).
    ///
    /// The caller checks what it needs of the returned metadata (its length against
    /// `written.length`: [`check_announced`]; its encoding).
    ///
    /// # Errors
    /// [`ClientError::EpochMismatch`], [`ClientError::Corrupt`] (the slot failed its
    /// checks), [`ClientError::Read`] (the file cannot be read; it is reopened on the
    /// next call).
    pub fn read_into(&self, call: Call, written: &Written, out: &mut Vec<u8>) -> Result<SlotMeta, ClientError> {
        let channel = self.inner.channel.for_epoch(&call.channel, written.epoch)?;
        let (slot, request_id) = (call.slot(), call.request_id);
        out.clear();
        let meta = channel.reader.read_slot(slot, Some(request_id), out);
        // The copy is private now: the slot can serve another call.
        drop(call);
        meta.map_err(|e| {
            if matches!(
                e,
                ReadError::Truncated { .. } | ReadError::HeaderChanged | ReadError::Io(_) | ReadError::NoSuchSlot { .. }
            ) {
                self.inner.channel.forget(&channel);
            }
            tracing::warn!(slot, request_id, epoch = written.epoch, source = %written.source, error = %e, "slot read failed");
            ClientError::from_read(e)
        })
    }

    /// The newest snapshot the producer published, copied out; `None` if it published
    /// none yet.
    ///
    /// # Errors
    /// The channel cannot be opened, or the snapshot failed its checks.
    pub async fn snapshot(&self) -> Result<Option<SnapshotReply>, ClientError> {
        let reader = self.live_reader()?;
        let read = move || {
            let mut body = Vec::new();
            match reader.read_snapshot(&mut body) {
                Ok(snapshot) => Ok(Some(SnapshotReply {
                    epoch: reader.epoch(),
                    generation: snapshot.generation,
                    encoding: snapshot.meta.encoding,
                    write_time_ns: snapshot.meta.write_time_ns,
                    body: Bytes::from(body),
                })),
                Err(ReadError::NoSnapshot) => Ok(None),
                Err(other) => Err(ClientError::from_read(other)),
            }
        };
        tokio::task::spawn_blocking(read)
            .await
            .map_err(|e| ClientError::Internal(format!("snapshot read task failed: {e}")))?
    }

    /// The open channel's reader (opened or reopened as needed), for a service that
    /// reads the snapshot its own way.
    ///
    /// # Errors
    /// The channel cannot be opened.
    pub fn reader(&self) -> Result<Arc<ChannelReader>, ClientError> {
        Ok(Arc::clone(&self.inner.channel.get()?.reader))
    }

    /// The open channel's reader if its producer is still running: a snapshot left by a
    /// producer that died is not to be served. The channel is reopened on the next use.
    ///
    /// # Errors
    /// The channel cannot be opened, or [`ClientError::ProducerGone`].
    pub fn live_reader(&self) -> Result<Arc<ChannelReader>, ClientError> {
        let channel = self.inner.channel.get()?;
        if !channel.reader.producer_alive() {
            self.inner.channel.forget(&channel);
            return Err(ClientError::ProducerGone { path: channel.reader.path().to_owned() });
        }
        Ok(Arc::clone(&channel.reader))
    }

    /// Readiness: opens the channel (if needed) and returns its epoch.
    ///
    /// # Errors
    /// The channel cannot be opened, or its producer is gone.
    pub fn ready(&self) -> Result<u64, ClientError> {
        Ok(self.inner.channel.get()?.reader.epoch())
    }

    /// The channel file's path.
    #[must_use]
    pub fn channel_path(&self) -> &Path {
        self.inner.channel.path()
    }

    /// The signal socket's path.
    #[must_use]
    pub fn socket_path(&self) -> &Path {
        self.inner.signal.path()
    }

    /// The client's gauges, read now.
    #[must_use]
    pub fn stats(&self) -> ClientStats {
        let (answers_spinning, answers_parked) = self.inner.signal.answer_waits();
        let mut stats = ClientStats {
            answers_spinning,
            answers_parked,
            idle_connections: self.inner.signal.idle(),
            ..ClientStats::default()
        };
        if let Some(pool) = self.inner.channel.pool() {
            stats.slots = pool.size();
            stats.slots_in_use = pool.in_use();
            stats.slot_waiters = pool.waiters();
        }
        stats
    }
}

/// Checks that a slot holds as many bytes as the producer announced.
///
/// # Errors
/// [`ClientError::LengthMismatch`].
pub fn check_announced(meta: &SlotMeta, written: &Written) -> Result<(), ClientError> {
    if meta.length != written.length {
        return Err(ClientError::LengthMismatch { slot: meta.slot, announced: written.length, found: meta.length });
    }
    Ok(())
}
