//! `Reader`: the consumer's side, for Python consumers and tests.

use std::path::PathBuf;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::reader::ChannelReader;

/// A read-only view of a channel file. Every read copies the slot out under its
/// seqlock and checks its length, request id and checksum before returning.
/// Safe to share between threads.
#[pyclass(frozen, module = "shmbridge._native")]
pub struct Reader {
    inner: ChannelReader,
    path: String,
}

impl Reader {
    fn read(&self, py: Python<'_>, slot: u32, request_id: Option<u64>) -> PyResult<Vec<u8>> {
        let mut out = Vec::new();
        py.detach(|| self.inner.read_slot(slot, request_id, &mut out))?;
        Ok(out)
    }
}

/// Parses JSON text into Python objects (dicts keep the text's key order). Integers
/// beyond 64 bits come back as floats (serde_json's limit).
fn parse_json<'py>(py: Python<'py>, text: &[u8], what: &str) -> PyResult<Bound<'py, PyAny>> {
    let mut deserializer = serde_json::Deserializer::from_slice(text);
    let value = serde_transcode::transcode(&mut deserializer, pythonize::Pythonizer::new(py))
        .map_err(|err| PyValueError::new_err(format!("{what} does not hold valid JSON: {err}")))?;
    deserializer.end().map_err(|err| PyValueError::new_err(format!("{what} does not hold valid JSON: {err}")))?;
    Ok(value)
}

#[pymethods]
impl Reader {
    /// Opens and validates the channel file at `path` (magic, layout version,
    /// header checksum, file size), read-only.
    #[new]
    fn new(py: Python<'_>, path: PathBuf) -> PyResult<Self> {
        let inner = py.detach(|| ChannelReader::open(&path))?;
        Ok(Self { path: path.to_string_lossy().into_owned(), inner })
    }

    /// Path of the channel file.
    #[getter]
    fn path(&self) -> &str {
        &self.path
    }

    /// Creation epoch of the file this reader mapped.
    #[getter]
    fn epoch(&self) -> u64 {
        self.inner.epoch()
    }

    /// Number of request slots (the snapshot ring excluded).
    #[getter]
    fn slot_count(&self) -> u32 {
        self.inner.geometry().request_slots()
    }

    /// Bytes per slot.
    #[getter]
    fn slot_capacity(&self) -> u64 {
        self.inner.geometry().slot_capacity
    }

    /// Whether a producer still holds the file's lock (a free lock: it is gone).
    fn producer_alive(&self) -> bool {
        self.inner.producer_alive()
    }

    /// Whether the path still names the file this reader mapped (False after the
    /// producer restarted: open a new Reader).
    fn is_current(&self) -> bool {
        self.inner.is_current()
    }

    /// The payload of `slot`, checked to hold `request_id` when given.
    #[pyo3(signature = (slot, request_id = None))]
    fn read_bytes<'py>(&self, py: Python<'py>, slot: u32, request_id: Option<u64>) -> PyResult<Bound<'py, PyBytes>> {
        let out = self.read(py, slot, request_id)?;
        Ok(PyBytes::new(py, &out))
    }

    /// The payload of `slot` parsed as JSON.
    #[pyo3(signature = (slot, request_id = None))]
    fn read_json<'py>(&self, py: Python<'py>, slot: u32, request_id: Option<u64>) -> PyResult<Bound<'py, PyAny>> {
        let out = self.read(py, slot, request_id)?;
        parse_json(py, &out, &format!("slot {slot}"))
    }

    /// The newest snapshot: ``(generation, payload)``.
    fn read_snapshot<'py>(&self, py: Python<'py>) -> PyResult<(u64, Bound<'py, PyBytes>)> {
        let mut out = Vec::new();
        let snapshot = py.detach(|| self.inner.read_snapshot(&mut out))?;
        Ok((snapshot.generation, PyBytes::new(py, &out)))
    }

    /// The newest snapshot parsed as JSON: ``(generation, value)``.
    fn read_snapshot_json<'py>(&self, py: Python<'py>) -> PyResult<(u64, Bound<'py, PyAny>)> {
        let mut out = Vec::new();
        let snapshot = py.detach(|| self.inner.read_snapshot(&mut out))?;
        Ok((snapshot.generation, parse_json(py, &out, "the snapshot")?))
    }

    /// The current snapshot generation without reading it (None: nothing published).
    fn snapshot_generation(&self) -> Option<u64> {
        self.inner.snapshot_generation()
    }

    fn __repr__(&self) -> String {
        format!("Reader(path='{}', epoch={})", self.path, self.inner.epoch())
    }
}
