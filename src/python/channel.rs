//! `Channel`, the producer's writer.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pyo3::buffer::PyUntypedBuffer;
use pyo3::exceptions::{PyBufferError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyMemoryView, PyType};

use super::buffer::contiguous_bytes;
use super::errors::{self, ChannelClosed, ShmError};
use super::json;
use super::listener::{self, UdsListener};
use super::receipt::Receipt;
use super::reservation::Reservation;
use super::sync::{lock, ExportCount};
use crate::error::WriteError;
use crate::fsutil;
use crate::layout::{Encoding, DEFAULT_SLOT_CAPACITY, DEFAULT_SLOT_COUNT, DEFAULT_SNAPSHOT_SLOTS};
use crate::poll;
use crate::writer::{ChannelConfig, ChannelWriter, SlotWriter};

// The signature of `Channel.__new__` spells the defaults as literals (so that
// `__text_signature__` and the stubs show them); they are the core's defaults.
const _: () = assert!(DEFAULT_SLOT_COUNT == 16 && DEFAULT_SNAPSHOT_SLOTS == 4 && DEFAULT_SLOT_CAPACITY == 33_554_432);

fn parse_encoding(encoding: &str) -> PyResult<Encoding> {
    match encoding {
        "raw" => Ok(Encoding::Raw),
        "json" => Ok(Encoding::Json),
        other => Err(PyValueError::new_err(format!("encoding must be 'raw' or 'json', not {other:?}"))),
    }
}

/// The producer's side of a channel file: creates the file (mode 0600, locked,
/// fully allocated) and writes request slots and snapshots into it.
///
/// A file left by a crashed producer is replaced; a file whose producer is alive
/// raises ChannelInUse. ``close()`` (or leaving a ``with`` block) removes the file.
/// Safe to share between threads; each slot has one writer at a time (SlotBusy).
/// ``serve_uds`` answers the gateway's write requests on a Unix socket.
#[pyclass(frozen, module = "shmbridge._native")]
pub struct Channel {
    /// `None` once closed; writes clone the `Arc` for their duration.
    writer: Mutex<Option<Arc<ChannelWriter>>>,
    exports: ExportCount,
    /// The signal socket's listener while ``serve_uds`` runs.
    listener: Mutex<Option<UdsListener>>,
    name: String,
    path: String,
    epoch: u64,
    slot_count: u32,
    slot_capacity: u64,
    snapshot_slots: u32,
}

impl Channel {
    fn writer(&self) -> PyResult<Arc<ChannelWriter>> {
        lock(&self.writer).clone().ok_or_else(|| ChannelClosed::new_err(WriteError::Closed.to_string()))
    }
}

/// Reads `data`'s buffer and runs `write` over its bytes, without the GIL when
/// the bytes are immutable (a `bytes` object, or a memoryview of one).
fn with_buffer_bytes<T: Send>(
    py: Python<'_>,
    data: &Bound<'_, PyAny>,
    write: impl FnOnce(&[u8]) -> T + Send,
) -> PyResult<T> {
    let buffer = PyUntypedBuffer::get(data)?;
    let bytes = contiguous_bytes(&buffer)?;
    let immutable = data.is_exact_instance_of::<PyBytes>()
        || data
            .cast::<PyMemoryView>()
            .ok()
            .and_then(|view| view.getattr("obj").ok())
            .is_some_and(|obj| obj.is_exact_instance_of::<PyBytes>());
    let result = if immutable { py.detach(|| write(bytes)) } else { write(bytes) };
    drop(buffer);
    Ok(result)
}

#[pymethods]
impl Channel {
    /// Creates channel `name` in `directory` (created 0700 if missing; refused
    /// if world-writable or a symlink) with `slot_count` request slots of
    /// `slot_capacity` bytes (rounded up to whole pages) and a snapshot ring of
    /// `snapshot_slots`.
    #[new]
    #[pyo3(signature = (
        name,
        directory = PathBuf::from("shared_memory_dir"),
        slot_count = 16,
        slot_capacity = 33_554_432,
        snapshot_slots = 4,
    ))]
    fn new(
        py: Python<'_>,
        name: &str,
        directory: PathBuf,
        slot_count: u32,
        slot_capacity: u64,
        snapshot_slots: u32,
    ) -> PyResult<Self> {
        let config = ChannelConfig { slot_count, snapshot_slots, slot_capacity };
        let writer = py.detach(|| ChannelWriter::create(&directory, name, config))?;
        Ok(Self {
            path: writer.path().to_string_lossy().into_owned(),
            epoch: writer.epoch(),
            slot_count: writer.request_slots(),
            slot_capacity: writer.slot_capacity(),
            snapshot_slots: writer.geometry().snapshot_slots,
            writer: Mutex::new(Some(Arc::new(writer))),
            exports: Arc::new(Mutex::new(0)),
            listener: Mutex::new(None),
            name: name.to_owned(),
        })
    }

    /// Path of the channel file.
    #[getter]
    fn path(&self) -> &str {
        &self.path
    }

    /// Creation epoch of the file (ns since the Unix epoch); a restarted producer has a new one.
    #[getter]
    fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Number of request slots (the snapshot ring excluded).
    #[getter]
    fn slot_count(&self) -> u32 {
        self.slot_count
    }

    /// Bytes per slot (the requested capacity rounded up to whole pages).
    #[getter]
    fn slot_capacity(&self) -> u64 {
        self.slot_capacity
    }

    /// Number of slots in the snapshot ring (0: ``publish`` is unavailable).
    #[getter]
    fn snapshot_slots(&self) -> u32 {
        self.snapshot_slots
    }

    /// Whether ``close()`` has run.
    #[getter]
    fn closed(&self) -> bool {
        lock(&self.writer).is_none()
    }

    /// Copies `data` (any C-contiguous buffer) into request slot `slot` for
    /// `request_id` and publishes it. The GIL is released during the copy when
    /// `data` is immutable (``bytes``, or a memoryview of bytes).
    #[pyo3(signature = (slot, request_id, data, *, encoding = "raw"))]
    fn write_bytes(
        &self,
        py: Python<'_>,
        slot: u32,
        request_id: u64,
        data: &Bound<'_, PyAny>,
        encoding: &str,
    ) -> PyResult<Receipt> {
        let encoding = parse_encoding(encoding)?;
        let writer = self.writer()?;
        listener::check_deadline()?;
        let receipt = with_buffer_bytes(py, data, |bytes| writer.write_bytes(slot, request_id, encoding, bytes))??;
        Ok(receipt.into())
    }

    /// Serializes `obj` as compact JSON straight into request slot `slot` and
    /// publishes it: the types and the `default` hook of ``shmbridge.dumps``, and
    /// the bytes ``orjson.dumps(obj)`` gives. On any error nothing is published
    /// and the slot is left empty.
    #[pyo3(signature = (slot, request_id, obj, *, default = None))]
    fn write_json<'py>(
        &self,
        slot: u32,
        request_id: u64,
        obj: &Bound<'py, PyAny>,
        default: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Receipt> {
        let options = json::Options::new(default)?;
        let writer = self.writer()?;
        listener::check_deadline()?;
        let mut slot_writer = SlotWriter::begin(&*writer, slot, request_id, Encoding::Json)?;
        json::serialize(obj, &options, &mut slot_writer).map_err(|err| errors::serialize_error(obj.py(), err))?;
        Ok(slot_writer.commit()?.into())
    }

    /// Reserves request slot `slot` for `request_id` and `size` bytes written in
    /// place: ``with ch.reserve(slot, rid, n) as view: view[:] = ...`` publishes
    /// on a normal exit and abandons the slot on an exception. Raises
    /// PayloadTooLarge before touching the slot if `size` exceeds the capacity.
    fn reserve(&self, slot: u32, request_id: u64, size: usize) -> PyResult<Reservation> {
        let writer = self.writer()?;
        listener::check_deadline()?;
        let capacity = writer.slot_capacity();
        if size as u64 > capacity {
            let slot_count = writer.request_slots();
            return Err(if slot >= slot_count {
                WriteError::NoSuchSlot { slot, slot_count }
            } else {
                WriteError::TooLarge { slot, size: size as u64, capacity }
            }
            .into());
        }
        let slot_writer = SlotWriter::begin(Arc::clone(&writer), slot, request_id, Encoding::Raw)?;
        Ok(Reservation::new(writer, slot_writer, Arc::clone(&self.exports), request_id, size))
    }

    /// Serializes `obj` as JSON (as ``write_json`` does, `default` included) into
    /// the next slot of the snapshot ring and moves the snapshot pointer to it
    /// (readers see it with ``Reader.read_snapshot``); on an error the previous
    /// snapshot stays.
    #[pyo3(signature = (obj, *, default = None))]
    fn publish<'py>(&self, obj: &Bound<'py, PyAny>, default: Option<Bound<'py, PyAny>>) -> PyResult<Receipt> {
        let options = json::Options::new(default)?;
        let writer = self.writer()?;
        let mut slot_writer = SlotWriter::begin_snapshot(&*writer, Encoding::Json)?;
        json::serialize(obj, &options, &mut slot_writer).map_err(|err| errors::serialize_error(obj.py(), err))?;
        Ok(slot_writer.commit()?.into())
    }

    /// Copies `data` (any C-contiguous buffer) into the next snapshot slot and
    /// moves the snapshot pointer to it.
    #[pyo3(signature = (data, *, encoding = "raw"))]
    fn publish_bytes(&self, py: Python<'_>, data: &Bound<'_, PyAny>, encoding: &str) -> PyResult<Receipt> {
        let encoding = parse_encoding(encoding)?;
        let writer = self.writer()?;
        let receipt = with_buffer_bytes(py, data, |bytes| writer.publish_bytes(encoding, bytes))??;
        Ok(receipt.into())
    }

    /// Serves write requests on a Unix socket, from background threads, until
    /// ``stop_uds()`` or ``close()``. Returns the socket's path.
    ///
    /// The socket is `path`, by default ``{directory}/{name}.sock`` next to the
    /// channel file, created with mode 0600 in a private directory. A stale socket
    /// (nobody listening) is replaced; a live one raises ChannelInUse; a symlink or
    /// any other file there raises ShmError (never followed, never removed).
    ///
    /// Each request frame (version 2, see src/wire.rs) calls
    /// ``handler(slot, request_id, name, params)`` with the GIL held, `params` a
    /// ``dict[str, str]``; it must write the slot and return its Receipt, or a
    /// ``(Receipt, content_type)`` pair whose content type (printable ASCII, at most
    /// 255 bytes) the answer carries. Its exceptions become error answers:
    /// PayloadTooLarge → "too large", SlotBusy → "busy", another ShmError →
    /// "internal", ValueError → "bad request", LookupError → "not found",
    /// TimeoutError → "timed out", anything else → "handler error", with the message
    /// ``TypeName: text``; the listener keeps serving. A frame that cannot be decoded
    /// (another version, a bad name or parameters...) is answered "bad request"
    /// without calling the handler, and its connection is closed. A request whose
    /// budget (its frame's ``timeout_ms``) is spent is answered "timed out" without
    /// calling the handler, and inside the handler ``write_json``/``write_bytes``/
    /// ``reserve`` raise TimeoutError once it is spent: a write starts in time or never.
    ///
    /// ``spin_us`` (0 to 1000, default 0): after answering, a connection polls for its
    /// next request for up to this many microseconds before it sleeps, when no other
    /// request is being handled. That saves waking an idle CPU, slow on virtual
    /// machines, at the cost of that CPU time at low load.
    #[pyo3(signature = (handler, path = None, *, spin_us = 0))]
    fn serve_uds(
        &self,
        py: Python<'_>,
        handler: Bound<'_, PyAny>,
        path: Option<PathBuf>,
        spin_us: i64,
    ) -> PyResult<String> {
        if !handler.is_callable() {
            return Err(pyo3::exceptions::PyTypeError::new_err("serve_uds: handler must be callable"));
        }
        let spin = match u64::try_from(spin_us) {
            Ok(micros) if micros <= poll::MAX_SPIN_US => Duration::from_micros(micros),
            _ => {
                return Err(PyValueError::new_err(format!(
                    "serve_uds: spin_us must be 0 to {} microseconds, not {spin_us}",
                    poll::MAX_SPIN_US
                )))
            }
        };
        let writer = self.writer()?;
        let already = |running: &UdsListener| {
            ShmError::new_err(format!(
                "channel {} already serves its signal socket at {}; call stop_uds() first",
                self.path,
                running.path().display()
            ))
        };
        // The lock is never held while the GIL is released (another thread holding the
        // GIL could wait for it): check, start without it, then install.
        if let Some(running) = lock(&self.listener).as_ref() {
            return Err(already(running));
        }
        let directory = writer.path().parent().map_or_else(|| PathBuf::from("."), Path::to_path_buf);
        let path = match path {
            Some(path) => {
                let parent = match path.parent() {
                    Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
                    _ => PathBuf::from("."),
                };
                py.detach(|| fsutil::ensure_private_dir(&parent))?;
                path
            }
            None => directory.join(crate::socket_file_name(&self.name)),
        };
        let handler = handler.unbind();
        let epoch = self.epoch;
        let started = py.detach(|| UdsListener::start(&path, epoch, handler, spin))?;
        let mut listener = lock(&self.listener);
        if let Some(running) = listener.as_ref() {
            let err = already(running);
            drop(listener);
            drop(py.detach(|| started.stop()));
            return Err(err);
        }
        *listener = Some(started);
        drop(listener);
        Ok(path.to_string_lossy().into_owned())
    }

    /// Stops the signal socket's listener: no new connection, open ones are closed,
    /// a request being handled finishes first; the socket file is removed.
    /// Idempotent; ``close()`` does it too.
    fn stop_uds(&self, py: Python<'_>) {
        let running = lock(&self.listener).take();
        if let Some(running) = running {
            let handler = py.detach(|| running.stop());
            drop(handler); // with the GIL held
        }
    }

    /// Path of the signal socket while ``serve_uds`` runs, else None.
    #[getter]
    fn uds_path(&self) -> Option<String> {
        lock(&self.listener).as_ref().map(|l| l.path().to_string_lossy().into_owned())
    }

    /// Stops the signal listener (see ``stop_uds``), removes the channel file and
    /// refuses further writes. Raises BufferError (and stays open) while a
    /// memoryview from ``reserve`` is alive. Idempotent.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        let busy = |live: usize| {
            PyBufferError::new_err(format!(
                "cannot close channel {}: {live} memoryview(s) over its slots are still alive; release them first",
                self.path
            ))
        };
        let live = *lock(&self.exports);
        if live > 0 {
            return Err(busy(live));
        }
        self.stop_uds(py);
        let live = lock(&self.exports);
        if *live > 0 {
            return Err(busy(*live));
        }
        let writer = lock(&self.writer).take();
        if let Some(writer) = writer {
            writer.close();
        }
        drop(live);
        Ok(())
    }

    /// Returns the channel itself.
    fn __enter__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    /// Closes the channel (see ``close``); exceptions propagate.
    #[pyo3(signature = (exc_type = None, exc_value = None, traceback = None))]
    fn __exit__(
        &self,
        py: Python<'_>,
        exc_type: Option<&Bound<'_, PyType>>,
        exc_value: Option<&Bound<'_, PyAny>>,
        traceback: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<bool> {
        let _ = (exc_type, exc_value, traceback);
        self.close(py)?;
        Ok(false)
    }

    fn __repr__(&self) -> String {
        format!(
            "Channel(path='{}', slot_count={}, slot_capacity={}, snapshot_slots={}, closed={})",
            self.path,
            self.slot_count,
            self.slot_capacity,
            self.snapshot_slots,
            self.closed()
        )
    }
}
