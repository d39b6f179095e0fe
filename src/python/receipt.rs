//! `Receipt`, what a completed write published: returned by the channel's writes and
//! reservations, and what a signal handler answers with.

use pyo3::prelude::*;

use crate::writer;

/// What a completed write published: where, for which request, and its checksum.
#[pyclass(frozen, eq, hash, get_all, skip_from_py_object, module = "shmbridge._native")]
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Receipt {
    /// Slot index (for a snapshot: its slot in the ring, after the request slots).
    pub slot: u32,
    /// Request id written (for a snapshot: its publish generation).
    pub request_id: u64,
    /// The slot's sequence number after the write (always even).
    pub sequence: u64,
    /// Payload length in bytes.
    pub length: u64,
    /// xxh3-64 of the payload.
    pub checksum: u64,
    /// ``"json"`` or ``"raw"``.
    pub encoding: &'static str,
}

impl From<writer::Receipt> for Receipt {
    fn from(r: writer::Receipt) -> Self {
        Self {
            slot: r.slot,
            request_id: r.request_id,
            sequence: r.sequence,
            length: r.length,
            checksum: r.checksum,
            encoding: r.encoding.name(),
        }
    }
}

#[pymethods]
impl Receipt {
    fn __repr__(&self) -> String {
        format!(
            "Receipt(slot={}, request_id={}, sequence={}, length={}, checksum={:#018x}, encoding='{}')",
            self.slot, self.request_id, self.sequence, self.length, self.checksum, self.encoding
        )
    }
}
