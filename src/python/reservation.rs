//! `Reservation`: a slot written in place through a Python memoryview.
//!
//! Life of a reservation:
//! - `Channel.reserve` opens the slot's write (its sequence goes odd; the slot
//!   is busy for other writers) after checking the size against the capacity.
//! - `__enter__` exports the slot's first `size` bytes (the buffer protocol) and
//!   returns the memoryview it made. Every export is counted, here and in the
//!   channel's count (which `Channel.close` checks).
//! - `__exit__` (or `commit`) first releases that memoryview, so any later use
//!   of it raises ValueError in Python itself. If other exports are still alive
//!   (`memoryview(view)`, a slice, numpy), publishing is refused with BufferError
//!   and the reservation is abandoned; the slot stays held (busy) until the last
//!   export is gone, so no live view ever covers memory another write is using.
//! - Abandoning (an exception in the block, or dropping an unfinished
//!   reservation) leaves the slot empty, never half-published.

use std::ffi::c_int;
use std::sync::{Arc, Mutex, MutexGuard};

use pyo3::exceptions::{PyBufferError, PyValueError};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyMemoryView, PyType};

use super::buffer::fill_writable_view;
use super::errors::{ChannelClosed, ShmError};
use super::receipt::Receipt;
use super::sync::{lock, ExportCount};
use crate::error::WriteError;
use crate::writer::{ChannelWriter, SlotWriter};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Open,
    Published,
    Abandoned,
}

struct State {
    /// The open write. Kept after an abandon while exports are alive, so the slot
    /// stays ours (busy) until no view covers it; dropping it abandons the slot.
    /// Boxed: its checksum state is 64-byte aligned, more than Python's allocator
    /// guarantees for the object this lives in.
    writer: Option<Box<SlotWriter<Arc<ChannelWriter>>>>,
    outcome: Outcome,
    /// Buffer exports of this reservation that are still alive.
    exports: usize,
    /// The memoryview `__enter__` handed out, released on exit.
    view: Option<Py<PyMemoryView>>,
    receipt: Option<Receipt>,
}

/// A request slot reserved for `size` bytes written in place. Use it as a
/// context manager: ``with ch.reserve(slot, rid, n) as view:`` gives a writable
/// memoryview of exactly `n` bytes over the slot itself; a normal exit publishes
/// (encoding "raw"), an exception abandons. The view is released at exit:
/// using it afterwards raises ValueError.
#[pyclass(frozen, module = "shmbridge._native")]
pub struct Reservation {
    channel: Arc<ChannelWriter>,
    channel_exports: ExportCount,
    slot: u32,
    request_id: u64,
    size: usize,
    state: Mutex<State>,
}

impl Reservation {
    pub fn new(
        channel: Arc<ChannelWriter>,
        writer: SlotWriter<Arc<ChannelWriter>>,
        channel_exports: ExportCount,
        request_id: u64,
        size: usize,
    ) -> Self {
        Self {
            channel,
            channel_exports,
            slot: writer.slot(),
            request_id,
            size,
            state: Mutex::new(State {
                writer: Some(Box::new(writer)),
                outcome: Outcome::Open,
                exports: 0,
                view: None,
                receipt: None,
            }),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// Releases the memoryview `__enter__` made. Never under the state lock:
    /// releasing it calls `__releasebuffer__`, which takes that lock.
    fn release_own_view(&self, py: Python<'_>) {
        let view = self.state().view.take();
        if let Some(view) = view {
            // Fails with BufferError only if something still holds a buffer from
            // the memoryview itself (e.g. numpy.frombuffer(view)); that export keeps
            // our count up, which `finish` turns into BufferError.
            let _ = view.bind(py).call_method0("release");
        }
    }

    /// Publishes `length` bytes (default: all `size`), or explains why not.
    fn finish(&self, py: Python<'_>, length: Option<usize>) -> PyResult<Receipt> {
        let length = length.unwrap_or(self.size);
        if length > self.size {
            return Err(PyValueError::new_err(format!(
                "commit length {length} exceeds the reserved size of {} bytes",
                self.size
            )));
        }
        let (writer, abandoned) = {
            let mut state = self.state();
            match state.outcome {
                Outcome::Published => {
                    return state.receipt.clone().ok_or_else(|| ShmError::new_err("reservation is being published"));
                }
                Outcome::Abandoned => {
                    return Err(ShmError::new_err(format!(
                        "the reservation of slot {} was abandoned; nothing was published",
                        self.slot
                    )));
                }
                Outcome::Open => {}
            }
            if state.exports > 0 {
                // Refuse, and keep the writer until the last export is released.
                state.outcome = Outcome::Abandoned;
                return Err(PyBufferError::new_err(format!(
                    "cannot publish slot {}: {} memoryview(s) exported from the reservation are still alive \
                     (release them before the block ends); the slot was abandoned, nothing was published",
                    self.slot, state.exports
                )));
            }
            if self.channel.is_closed() {
                state.outcome = Outcome::Abandoned;
                (None, state.writer.take())
            } else {
                state.outcome = Outcome::Published;
                (state.writer.take(), None)
            }
        };
        if abandoned.is_some() {
            drop(abandoned);
            return Err(ChannelClosed::new_err(WriteError::Closed.to_string()));
        }
        let Some(writer) = writer else {
            return Err(ShmError::new_err("reservation has no open write"));
        };
        // No export is alive and none can be made (outcome is Published), so the
        // checksum over the slot can run without the GIL.
        let receipt: Receipt = py.detach(|| (*writer).commit_in_place(length as u64))?.into();
        self.state().receipt = Some(receipt.clone());
        Ok(receipt)
    }

    fn abandon(&self) {
        let dropped = {
            let mut state = self.state();
            if state.outcome != Outcome::Open {
                return;
            }
            state.outcome = Outcome::Abandoned;
            if state.exports == 0 {
                state.writer.take()
            } else {
                None
            }
        };
        drop(dropped);
    }
}

#[pymethods]
impl Reservation {
    /// The reserved request slot.
    #[getter]
    fn slot(&self) -> u32 {
        self.slot
    }

    /// The request id the slot will carry.
    #[getter]
    fn request_id(&self) -> u64 {
        self.request_id
    }

    /// Size of the writable view in bytes.
    #[getter]
    fn size(&self) -> usize {
        self.size
    }

    /// The receipt once published, else None.
    #[getter]
    fn receipt(&self) -> Option<Receipt> {
        self.state().receipt.clone()
    }

    /// Whether the reservation is still open (neither published nor abandoned).
    #[getter]
    fn open(&self) -> bool {
        self.state().outcome == Outcome::Open
    }

    /// Publishes the first `length` bytes (default: all of them) now. Releases
    /// the memoryview from ``__enter__``; raises BufferError (and abandons) if
    /// other exports are still alive. Calling it again returns the same receipt.
    #[pyo3(signature = (length = None))]
    fn commit(&self, py: Python<'_>, length: Option<usize>) -> PyResult<Receipt> {
        self.release_own_view(py);
        self.finish(py, length)
    }

    /// Abandons the write: the slot is left empty and nothing is published.
    #[pyo3(name = "abandon")]
    fn py_abandon(&self, py: Python<'_>) {
        self.release_own_view(py);
        self.abandon();
    }

    /// Exports the reserved bytes and returns the writable memoryview over them.
    fn __enter__<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyMemoryView>> {
        {
            let state = slf.get().state();
            if state.view.is_some() {
                return Err(PyBufferError::new_err("this reservation is already entered"));
            }
        }
        let view = PyMemoryView::from(slf.as_any())?;
        slf.get().state().view = Some(view.clone().unbind());
        Ok(view)
    }

    /// Releases the view, then publishes (normal exit) or abandons (exception).
    #[pyo3(signature = (exc_type = None, exc_value = None, traceback = None))]
    fn __exit__(
        &self,
        py: Python<'_>,
        exc_type: Option<&Bound<'_, PyType>>,
        exc_value: Option<&Bound<'_, PyAny>>,
        traceback: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<bool> {
        let _ = (exc_value, traceback);
        self.release_own_view(py);
        if exc_type.is_some() {
            self.abandon();
        } else {
            self.finish(py, None)?;
        }
        Ok(false)
    }

    /// Exports the slot's first `size` bytes, writable.
    ///
    /// # Safety
    /// Called by CPython through `bf_getbuffer` with a valid `view`.
    unsafe fn __getbuffer__(slf: Bound<'_, Self>, view: *mut ffi::Py_buffer, flags: c_int) -> PyResult<()> {
        let this = slf.get();
        let mut state = this.state();
        let ptr = match (&state.writer, state.outcome) {
            (Some(writer), Outcome::Open) => writer.payload_ptr(),
            _ => {
                return Err(PyBufferError::new_err(format!(
                    "the reservation of slot {} is finished; its memory can no longer be exported",
                    this.slot
                )))
            }
        };
        {
            let mut live = lock(&this.channel_exports);
            if this.channel.is_closed() {
                return Err(ChannelClosed::new_err(WriteError::Closed.to_string()));
            }
            *live += 1;
        }
        state.exports += 1;
        drop(state);
        // SAFETY: `view` is CPython's (this is bf_getbuffer). `ptr` is the start of
        // this reservation's slot payload, `capacity >= size` bytes inside the
        // channel's writable mapping. The mapping lives as long as the
        // `Arc<ChannelWriter>` this reservation holds, and the view keeps the
        // reservation alive (`view->obj`). Nobody else writes those bytes while the
        // export is counted: our open `SlotWriter` holds the slot's busy flag, and it
        // is neither committed nor dropped while `exports > 0` (see `finish`,
        // `abandon` and `__releasebuffer__`).
        let filled = unsafe { fill_writable_view(view, flags, slf.as_any(), ptr, this.size) };
        if filled.is_err() {
            let mut state = this.state();
            state.exports -= 1;
            *lock(&this.channel_exports) -= 1;
        }
        filled
    }

    /// Forgets one export; drops a write abandoned while views were alive once the
    /// last one goes. Never raises.
    ///
    /// # Safety
    /// Called by CPython through `bf_releasebuffer`.
    unsafe fn __releasebuffer__(&self, _view: *mut ffi::Py_buffer) {
        let dropped = {
            let mut state = self.state();
            state.exports = state.exports.saturating_sub(1);
            {
                let mut live = lock(&self.channel_exports);
                *live = live.saturating_sub(1);
            }
            if state.exports == 0 && state.outcome == Outcome::Abandoned {
                state.writer.take()
            } else {
                None
            }
        };
        drop(dropped);
    }

    fn __repr__(&self) -> String {
        let outcome = match self.state().outcome {
            Outcome::Open => "open",
            Outcome::Published => "published",
            Outcome::Abandoned => "abandoned",
        };
        format!("Reservation(slot={}, request_id={}, size={}, {outcome})", self.slot, self.request_id, self.size)
    }
}
