//! A direct JSON serializer over Python's own types, writing into a slot.
//!
//! Output is byte-identical to `orjson.dumps(obj)` for the values both accept
//! (compact separators, UTF-8 left as is, the same escapes and float text, NaN
//! and infinities as `null`, dates and times in RFC 3339, UUIDs, dataclasses and
//! enums as orjson writes them). Beyond orjson it writes ints past 64 bits (as
//! `json.dumps` does), and subclasses of float, datetime and UUID and str
//! subclass keys as their base. Like orjson it refuses dict keys that are not
//! str. One [`Options`] (the `default=` hook) serves `dumps`, `write_json` and
//! `publish`.
//!
//! Values go through a 64 KiB staging buffer that is flushed into the slot with
//! [`Sink::write_chunk`] (for a slot: `SlotWriter::write_all`, which checksums the
//! stream and refuses to pass the capacity). For `dumps` a short output is copied
//! into a `bytes` at the end; a longer one goes on in the `bytes` object itself,
//! grown as needed (see `staging`). The hot path creates no Python objects:
//! - dicts and lists are walked with borrowed references (see [`borrowed`]),
//!   which is sound because no Python code runs while the fast paths do: the
//!   serializer holds the GIL throughout and pauses the cyclic GC (the only way
//!   an allocation could run a finalizer) for the duration. Where Python code
//!   may run (the `default=` hook, an enum's value, a dataclass's attributes,
//!   see `types.rs`), each container being walked is held by a strong reference
//!   taken on entry, so are the key and value at hand, and the walk reads the
//!   container again afterwards;
//! - str keys and short str values seen twice are found by address in small
//!   caches and copied whole from their third sighting on.

use std::cell::RefCell;
use std::ops::Deref;

mod cache;
mod datetime;
mod error;
mod escape;
#[cfg(not(Py_LIMITED_API))]
mod float_rows;
mod float_run;
mod number;
mod numpy;
mod out;
mod staging;
mod types;
mod walk;

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyString};

use super::borrowed;
use crate::error::WriteError;
use crate::writer::{ChannelWriter, SlotWriter};

use cache::{CacheSlots, CachedText, SeenOnce, TextCache, CACHE_SLOTS};
pub use error::{describe, ErrorKind, SerializeError};
use staging::Staging;
use walk::{Serializer, Types};

/// Containers nested deeper than this are refused (this also stops cycles).
/// orjson's limit too, so both accept exactly the same values.
pub const MAX_DEPTH: u32 = 254;
/// Bytes staged before a flush into the slot.
pub const STAGING_CAPACITY: usize = 64 * 1024;
/// A staging buffer grown past this for a whole output (`Sink::WHOLE`, in the
/// stable-ABI build, which has no `bytes` object to grow: see `staging`) is
/// shrunk back after a call that used less than a quarter of it: outputs of
/// one size in a row reuse it (growing it anew each call costs more than the
/// serializing), and one large output does not keep it large for long.
const KEPT_CAPACITY: usize = 4 * 1024 * 1024;

/// Where serialized chunks go.
pub trait Sink {
    /// Whether the staging buffer grows to hold the whole output, handed over
    /// at the end (one chunk, or the `bytes` object it grew into), instead of
    /// being flushed each time it fills.
    const WHOLE: bool = false;

    /// Appends `bytes` to the output.
    ///
    /// # Errors
    /// The output is full ([`WriteError::TooLarge`]) or closed.
    fn write_chunk(&mut self, bytes: &[u8]) -> Result<(), WriteError>;

    /// Takes the whole output as a `bytes` object already made (see
    /// [`staging`]): a sink with `WHOLE` is given either this or one chunk.
    ///
    /// # Errors
    /// As for [`Sink::write_chunk`].
    fn write_bytes(&mut self, bytes: Bound<'_, PyBytes>) -> Result<(), WriteError> {
        self.write_chunk(bytes.as_bytes())
    }
}

impl<W: Deref<Target = ChannelWriter>> Sink for SlotWriter<W> {
    fn write_chunk(&mut self, bytes: &[u8]) -> Result<(), WriteError> {
        self.write_all(bytes)
    }
}

/// The output of `dumps`: the `bytes` object the text was written into, or one
/// made from the whole text at once.
pub struct BytesOut<'py> {
    py: Python<'py>,
    bytes: Option<Bound<'py, PyBytes>>,
}

impl<'py> BytesOut<'py> {
    pub fn new(py: Python<'py>) -> Self {
        Self { py, bytes: None }
    }

    /// The text written, as `bytes`.
    pub fn into_bytes(self) -> Bound<'py, PyBytes> {
        self.bytes.unwrap_or_else(|| PyBytes::new(self.py, b""))
    }
}

impl Sink for BytesOut<'_> {
    const WHOLE: bool = true;

    fn write_chunk(&mut self, bytes: &[u8]) -> Result<(), WriteError> {
        self.bytes = Some(PyBytes::new(self.py, bytes));
        Ok(())
    }

    fn write_bytes(&mut self, bytes: Bound<'_, PyBytes>) -> Result<(), WriteError> {
        self.bytes = Some(bytes.unbind().into_bound(self.py));
        Ok(())
    }
}

/// What `dumps`, `write_json` and `publish` take besides the value: one set of
/// options, read the same way by all three (see [`Options::new`]).
#[derive(Default)]
pub struct Options<'py> {
    /// Called with each value that has no JSON form of its own; what it returns
    /// is written instead.
    pub default: Option<Bound<'py, PyAny>>,
}

impl<'py> Options<'py> {
    /// The options from the Python arguments (`default=None` is no hook).
    ///
    /// # Errors
    /// `default` is neither None nor callable.
    pub fn new(default: Option<Bound<'py, PyAny>>) -> PyResult<Self> {
        let default = default.filter(|d| !d.is_none());
        if let Some(d) = &default {
            if !d.is_callable() {
                return Err(pyo3::exceptions::PyTypeError::new_err(format!(
                    "default must be callable or None, not {}",
                    d.get_type().name().map_or_else(|_| "?".to_owned(), |n| n.to_string())
                )));
            }
        }
        Ok(Self { default })
    }
}

/// Buffers reused across calls: the staging buffer and the caches' slots.
struct Scratch {
    buf: Vec<u8>,
    /// The staging buffer's hint (see [`staging::Staging::grow`]).
    whole_hint: usize,
    keys: CacheSlots,
    values: CacheSlots,
    key_owners: Vec<Py<PyString>>,
    value_owners: Vec<Py<PyString>>,
    seen: Box<[usize; CACHE_SLOTS]>,
    seen_keys: Box<[usize; CACHE_SLOTS]>,
    /// Counts calls: the salt of the `SeenOnce` tables.
    calls: usize,
    /// The serializer's `known_class`, between calls.
    known_class: Option<types::ClassStamp>,
}

thread_local! {
    /// One scratch per thread, borrowed in place while in use (so a nested call,
    /// from a `default=` hook, simply allocates its own).
    static SCRATCH: RefCell<Option<Scratch>> = const { RefCell::new(None) };
}

/// Serializes `obj` as JSON into `sink`.
///
/// # Errors
/// A value without a JSON form (with its path), or the sink refusing a chunk.
/// Part of the output may have reached the sink; the caller abandons it.
#[inline]
pub fn serialize<'py, S: Sink>(
    obj: &Bound<'py, PyAny>,
    options: &Options<'py>,
    sink: &mut S,
) -> Result<(), SerializeError> {
    SCRATCH.with(|cell| match cell.try_borrow_mut() {
        Ok(mut scratch) => serialize_with(obj, options, sink, scratch.get_or_insert_with(Scratch::new)),
        Err(_) => serialize_with(obj, options, sink, &mut Scratch::new()),
    })
}

impl Scratch {
    fn new() -> Self {
        Self {
            buf: vec![0; STAGING_CAPACITY],
            whole_hint: 0,
            keys: Box::new([CachedText::EMPTY; CACHE_SLOTS]),
            values: Box::new([CachedText::EMPTY; CACHE_SLOTS]),
            key_owners: Vec::with_capacity(64),
            value_owners: Vec::with_capacity(64),
            seen: Box::new([0; CACHE_SLOTS]),
            seen_keys: Box::new([0; CACHE_SLOTS]),
            calls: 0,
            known_class: None,
        }
    }
}

/// [`serialize`] with the thread's scratch buffers, used in place.
fn serialize_with<'py, S: Sink>(
    obj: &Bound<'py, PyAny>,
    options: &Options<'py>,
    sink: &mut S,
    scratch: &mut Scratch,
) -> Result<(), SerializeError> {
    let py = obj.py();
    scratch.calls = scratch.calls.wrapping_add(1);
    let salt = scratch.calls;
    // Before the pause: the first call checks the layouts (see `Layouts::get`).
    let layouts = borrowed::Layouts::get(py);
    let gc = borrowed::GcPause::new(py);
    let mut ser = Serializer {
        py,
        buf: Staging::new(std::mem::take(&mut scratch.buf), scratch.whole_hint),
        pos: 0,
        sink,
        types: Types::new(py),
        layouts,
        keys: TextCache::new(&mut scratch.keys, &mut scratch.key_owners),
        values: TextCache::new(&mut scratch.values, &mut scratch.value_owners),
        seen: SeenOnce { addresses: &mut scratch.seen, salt },
        seen_keys: SeenOnce { addresses: &mut scratch.seen_keys, salt },
        default: options.default.clone(),
        default_depth: 0,
        dataclass: None,
        known_class: scratch.known_class,
        epoch: 0,
        value_credit: walk::VALUE_CREDIT,
        _gc: &gc,
    };
    let result = ser.value(obj.as_borrowed(), 0);
    let used = ser.pos;
    scratch.known_class = ser.known_class;
    let result = result.and_then(|()| ser.flush());
    ser.keys.clear();
    ser.values.clear();
    let (mut buf, whole_hint) = ser.buf.into_parts();
    scratch.whole_hint = whole_hint;
    if buf.len() > KEPT_CAPACITY && used < buf.len() / 4 {
        buf.truncate(STAGING_CAPACITY);
        buf.shrink_to_fit();
    }
    scratch.buf = buf;
    drop(gc);
    result
}
