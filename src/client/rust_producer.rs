//! A small producer written in Rust: a channel file made with the core
//! [`ChannelWriter`] and a signal socket served by plain threads, speaking
//! [`wire`](crate::wire) version 2. It is another implementation of the producer's
//! side, for tests, doc examples and services that want to try the [`Client`](super::Client)
//! without Python: one thread accepts, one thread serves each connection, and a handler
//! closure answers every call.
//!
//! ```
//! use shmbridge::client::rust_producer::{Outcome, RustProducer};
//! use shmbridge::{ChannelConfig, Encoding};
//! use shmbridge::wire::Status;
//!
//! # fn main() -> std::io::Result<()> {
//! let dir = tempfile::tempdir()?;
//! let config = ChannelConfig { slot_count: 3, snapshot_slots: 0, slot_capacity: 4096 };
//! let producer = RustProducer::start(dir.path(), "numbers", config, |call, _writer| match call.name.as_str() {
//!     "zeros" => Outcome::raw(vec![0u8; 16], "application/x-zeros"),
//!     "fail" => Outcome::refuse(Status::HandlerError, "ValueError: no"),
//!     _ => Outcome::not_found("no such handler"),
//! })?;
//! assert!(dir.path().join("numbers.sock").exists());
//! assert!(producer.writer().path().ends_with("numbers.shm"));
//! # Ok(())
//! # }
//! ```

use std::io::{self, Read as _, Write as _};
use std::net::Shutdown;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;

use crate::wire::{RequestHead, Response, Status, REQUEST_HEAD_LEN};
use crate::{ChannelConfig, ChannelWriter, Encoding, Receipt, WriteError};

/// One call as the handler sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandlerCall {
    /// The handler name asked for (checked by the wire's rules).
    pub name: String,
    /// The parameters, in the order sent.
    pub params: Vec<(String, String)>,
    /// The request slot to write.
    pub slot: u32,
    /// The request id the slot must carry.
    pub request_id: u64,
    /// The caller's budget in milliseconds (0: none).
    pub timeout_ms: u32,
}

impl HandlerCall {
    /// The value of parameter `key`, if given.
    #[must_use]
    pub fn param(&self, key: &str) -> Option<&str> {
        self.params.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
}

/// What a handler answers.
#[derive(Debug)]
pub enum Outcome {
    /// Write `body` into the call's slot and answer ok with `content_type` (empty: the
    /// reader decides from the encoding).
    Reply {
        /// How the body is encoded.
        encoding: Encoding,
        /// The payload.
        body: Vec<u8>,
        /// The content type, or empty.
        content_type: String,
    },
    /// The handler wrote the slot itself through the writer it was given (with
    /// [`ChannelWriter::write_bytes`] or a [`SlotWriter`](crate::SlotWriter)): answer ok.
    Written {
        /// The write's receipt.
        receipt: Receipt,
        /// The content type, or empty.
        content_type: String,
    },
    /// Answer this status and message; nothing is written.
    Refuse {
        /// Any status but `Ok`.
        status: Status,
        /// Why.
        message: String,
    },
    /// Close the connection without answering, as a producer that dies mid-call does.
    Hangup,
}

impl Outcome {
    /// JSON text, written with [`Encoding::Json`].
    #[must_use]
    pub fn json(text: impl Into<Vec<u8>>) -> Self {
        Self::Reply { encoding: Encoding::Json, body: text.into(), content_type: String::new() }
    }

    /// Raw bytes with a content type (empty: `application/octet-stream`).
    #[must_use]
    pub fn raw(body: impl Into<Vec<u8>>, content_type: impl Into<String>) -> Self {
        Self::Reply { encoding: Encoding::Raw, body: body.into(), content_type: content_type.into() }
    }

    /// A refusal with `status`.
    #[must_use]
    pub fn refuse(status: Status, message: impl Into<String>) -> Self {
        Self::Refuse { status, message: message.into() }
    }

    /// [`Status::NotFound`].
    #[must_use]
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::refuse(Status::NotFound, message)
    }
}

type Handler = dyn Fn(&HandlerCall, &ChannelWriter) -> Outcome + Send + Sync;

/// A running producer; dropping it stops it, closes every connection and removes its
/// socket and channel file (a clean close).
pub struct RustProducer {
    writer: Option<Arc<ChannelWriter>>,
    socket: PathBuf,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
    connections: Arc<Mutex<Connections>>,
}

/// Open connections (clones, to shut them down) with their threads; those whose
/// thread finished are dropped as new ones come.
#[derive(Default)]
struct Connections {
    open: Vec<(UnixStream, JoinHandle<()>)>,
}

impl std::fmt::Debug for RustProducer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RustProducer").field("socket", &self.socket).finish_non_exhaustive()
    }
}

impl RustProducer {
    /// Creates channel `name` in `dir` with `config`, listens on `{dir}/{name}.sock` and
    /// serves every call with `handler`.
    ///
    /// # Errors
    /// The channel file cannot be created (another producer holds it, say), or the
    /// socket cannot be bound.
    pub fn start<F>(dir: &Path, name: &str, config: ChannelConfig, handler: F) -> io::Result<Self>
    where
        F: Fn(&HandlerCall, &ChannelWriter) -> Outcome + Send + Sync + 'static,
    {
        let writer = Arc::new(ChannelWriter::create(dir, name, config).map_err(io::Error::other)?);
        let socket = dir.join(crate::socket_file_name(name));
        match std::fs::remove_file(&socket) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        let listener = UnixListener::bind(&socket)?;
        let stop = Arc::new(AtomicBool::new(false));
        let connections = Arc::new(Mutex::new(Connections::default()));
        let handler: Arc<Handler> = Arc::new(handler);
        let accept = {
            let (writer, stop, connections) = (Arc::clone(&writer), Arc::clone(&stop), Arc::clone(&connections));
            std::thread::Builder::new()
                .name(format!("{name}-accept"))
                .spawn(move || accept_loop(&listener, &writer, &handler, &stop, &connections))?
        };
        Ok(Self { writer: Some(writer), socket, stop, accept: Some(accept), connections })
    }

    /// The channel's writer (to publish snapshots, say).
    ///
    /// # Panics
    /// Never: the writer is there until the producer is dropped.
    #[must_use]
    pub fn writer(&self) -> &ChannelWriter {
        self.writer.as_deref().expect("the writer lives as long as the producer")
    }

    /// Publishes `data` as the newest snapshot.
    ///
    /// # Errors
    /// No snapshot ring, or a payload over the slot capacity.
    pub fn publish(&self, encoding: Encoding, data: &[u8]) -> Result<Receipt, WriteError> {
        self.writer().publish_bytes(encoding, data)
    }

    /// Stops as a killed producer does: every connection and the socket close, and the
    /// channel file stays on disk with its lock free.
    pub fn kill(mut self) {
        self.stop_serving();
        if let Some(writer) = self.writer.take() {
            let path = writer.path().to_owned();
            let aside = path.with_extension("killed");
            // A clean close removes the file: it is moved away for the close and back.
            let moved = std::fs::rename(&path, &aside).is_ok();
            drop(writer);
            if moved {
                let _ = std::fs::rename(&aside, &path);
            }
        }
    }

    fn stop_serving(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop, which then sees the flag.
        let _ = UnixStream::connect(&self.socket);
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
        let open = std::mem::take(&mut self.connections.lock().unwrap_or_else(PoisonError::into_inner).open);
        for (stream, _) in &open {
            let _ = stream.shutdown(Shutdown::Both);
        }
        // Each thread ends once its connection is shut (or its handler returns).
        for (_, thread) in open {
            let _ = thread.join();
        }
        let _ = std::fs::remove_file(&self.socket);
    }
}

impl Drop for RustProducer {
    fn drop(&mut self) {
        self.stop_serving();
    }
}

fn accept_loop(
    listener: &UnixListener,
    writer: &Arc<ChannelWriter>,
    handler: &Arc<Handler>,
    stop: &AtomicBool,
    connections: &Mutex<Connections>,
) {
    for stream in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok(stream) = stream else { continue };
        let Ok(clone) = stream.try_clone() else { continue };
        let (writer, handler) = (Arc::clone(writer), Arc::clone(handler));
        let spawned =
            std::thread::Builder::new().name("producer-conn".into()).spawn(move || serve(stream, &writer, &*handler));
        if let Ok(thread) = spawned {
            let mut connections = connections.lock().unwrap_or_else(PoisonError::into_inner);
            connections.open.retain(|(_, thread)| !thread.is_finished());
            connections.open.push((clone, thread));
        }
    }
}

/// Serves one connection until it closes, a frame is bad, or the handler hangs up;
/// then closes it (for good: the producer keeps a clone of each connection to shut it
/// down when it stops).
fn serve(mut stream: UnixStream, writer: &ChannelWriter, handler: &Handler) {
    serve_frames(&mut stream, writer, handler);
    let _ = stream.shutdown(Shutdown::Both);
}

fn serve_frames(stream: &mut UnixStream, writer: &ChannelWriter, handler: &Handler) {
    let epoch = writer.epoch();
    loop {
        let mut head = [0u8; REQUEST_HEAD_LEN];
        if stream.read_exact(&mut head).is_err() {
            return;
        }
        let head = match RequestHead::decode(&head) {
            Ok(head) => head,
            Err(e) => {
                let _ = stream.write_all(&Response::error(Status::BadRequest, epoch, None, &e.to_string()).encode());
                return;
            }
        };
        let mut body = vec![0u8; head.body_len()];
        if stream.read_exact(&mut body).is_err() {
            return;
        }
        let request = match head.finish(&body) {
            Ok(request) => request,
            Err(e) => {
                let refusal = Response::error(Status::BadRequest, epoch, Some(&head), &e.to_string());
                let _ = stream.write_all(&refusal.encode());
                return;
            }
        };
        let call = HandlerCall {
            name: request.name,
            params: request.params,
            slot: request.slot,
            request_id: request.request_id,
            timeout_ms: request.timeout_ms,
        };
        let written = match handler(&call, writer) {
            Outcome::Reply { encoding, body, content_type } => {
                writer.write_bytes(call.slot, call.request_id, encoding, &body).map(|r| (r, content_type))
            }
            Outcome::Written { receipt, content_type } => Ok((receipt, content_type)),
            Outcome::Refuse { status, message } => {
                if stream.write_all(&Response::error(status, epoch, Some(&head), &message).encode()).is_err() {
                    return;
                }
                continue;
            }
            Outcome::Hangup => return,
        };
        let response = match written {
            Ok((receipt, content_type)) => Response {
                status: Status::Ok,
                epoch,
                slot: receipt.slot,
                request_id: receipt.request_id,
                sequence: receipt.sequence,
                length: receipt.length,
                message: content_type,
            },
            Err(e) => Response::error(write_status(&e), epoch, Some(&head), &e.to_string()),
        };
        if stream.write_all(&response.encode()).is_err() {
            return;
        }
    }
}

/// The wire status of a failed write.
fn write_status(error: &WriteError) -> Status {
    match error {
        WriteError::TooLarge { .. } => Status::TooLarge,
        WriteError::SlotBusy { .. } => Status::Busy,
        WriteError::NoSuchSlot { .. } | WriteError::ZeroRequestId => Status::BadRequest,
        _ => Status::Internal,
    }
}
