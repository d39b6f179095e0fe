//! A direct JSON serializer over Python's own types, writing into a slot.
//!
//! Output is byte-identical to `orjson.dumps(obj)` for the types both accept
//! (compact separators, UTF-8 left as is, the same escapes and float text), and
//! parses back to `json.loads(json.dumps(obj))` in general (big ints and non-str
//! dict keys are accepted the way `json.dumps` accepts them; orjson refuses them).
//!
//! Values go through a 64 KiB staging buffer that is flushed into the slot with
//! [`Sink::write_chunk`] (for a slot: `SlotWriter::write_all`, which checksums the
//! stream and refuses to pass the capacity). The hot path creates no Python
//! objects and touches no reference counts:
//! - dicts are walked with borrowed references (see [`borrowed`]), which is sound
//!   because no Python code runs while the serializer does: it holds the GIL
//!   throughout, calls nothing that runs Python code, and pauses the cyclic GC
//!   (the only way an allocation could run a finalizer) for the duration;
//! - keys seen before, and short str values seen twice, are found by address in
//!   small caches and copied whole.

use std::cell::Cell;
use std::ops::Deref;

use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};

use super::borrowed;
use crate::error::WriteError;
use crate::writer::{ChannelWriter, SlotWriter};

/// Containers nested deeper than this are refused (this also stops cycles).
/// orjson's limit too, so both accept exactly the same values.
pub const MAX_DEPTH: u32 = 254;
/// Bytes staged before a flush into the slot.
pub const STAGING_CAPACITY: usize = 64 * 1024;

/// Where serialized chunks go.
pub trait Sink {
    /// Appends `bytes` to the output.
    ///
    /// # Errors
    /// The output is full ([`WriteError::TooLarge`]) or closed.
    fn write_chunk(&mut self, bytes: &[u8]) -> Result<(), WriteError>;
}

impl<W: Deref<Target = ChannelWriter>> Sink for SlotWriter<W> {
    fn write_chunk(&mut self, bytes: &[u8]) -> Result<(), WriteError> {
        self.write_all(bytes)
    }
}

impl Sink for Vec<u8> {
    fn write_chunk(&mut self, bytes: &[u8]) -> Result<(), WriteError> {
        self.extend_from_slice(bytes);
        Ok(())
    }
}

/// One step of the path to a value, recorded only when an error unwinds.
#[derive(Debug)]
pub enum Step {
    Index(usize),
    Key(String),
}

/// Why serialization stopped.
#[derive(Debug)]
pub enum SerializeError {
    /// The sink refused a chunk (the slot is full, or the channel closed).
    Sink(WriteError),
    /// A value has no JSON form. `steps` runs from the value outwards.
    Value { message: String, steps: Vec<Step> },
}

impl SerializeError {
    fn value(message: String) -> Self {
        SerializeError::Value { message, steps: Vec::new() }
    }

    #[cold]
    fn at(mut self, step: Step) -> Self {
        if let SerializeError::Value { steps, .. } = &mut self {
            steps.push(step);
        }
        self
    }
}

/// Formats the location of a failing value as `$[3].tags` (or `$` for the root).
#[must_use]
pub fn format_path(steps: &[Step]) -> String {
    const SHOWN: usize = 12;
    let mut out = String::from("$");
    for (shown, step) in steps.iter().rev().enumerate() {
        if shown == SHOWN && steps.len() > SHOWN + 1 {
            out.push_str(&format!("...({} more levels)", steps.len() - SHOWN));
            break;
        }
        match step {
            Step::Index(i) => out.push_str(&format!("[{i}]")),
            Step::Key(k) if is_identifier(k) => {
                out.push('.');
                out.push_str(k);
            }
            Step::Key(k) => out.push_str(&format!("[{k:?}]")),
        }
    }
    out
}

/// Describes a value error for the user: what, and where.
#[must_use]
pub fn describe(message: &str, steps: &[Step]) -> String {
    format!("{message} (at {})", format_path(steps))
}

fn is_identifier(key: &str) -> bool {
    let mut chars = key.chars();
    chars.next().is_some_and(|c| c.is_alphabetic() || c == '_') && chars.all(|c| c.is_alphanumeric() || c == '_')
}

/// Buffers reused across calls: the staging buffer and the caches' slots.
struct Scratch {
    buf: Vec<u8>,
    keys: CacheSlots,
    values: CacheSlots,
    seen: Box<[usize; CACHE_SLOTS]>,
}

thread_local! {
    /// One scratch per thread, taken while in use (so a nested call, should one
    /// ever happen, simply allocates its own).
    static SCRATCH: Cell<Option<Scratch>> = const { Cell::new(None) };
}

/// Serializes `obj` as JSON into `sink`.
///
/// # Errors
/// A value without a JSON form (with its path), or the sink refusing a chunk.
/// Part of the output may have reached the sink; the caller abandons it.
pub fn serialize<S: Sink>(obj: &Bound<'_, PyAny>, sink: &mut S) -> Result<(), SerializeError> {
    let py = obj.py();
    let scratch = SCRATCH.take().unwrap_or_else(|| Scratch {
        buf: vec![0; STAGING_CAPACITY],
        keys: Box::new([CachedText::EMPTY; CACHE_SLOTS]),
        values: Box::new([CachedText::EMPTY; CACHE_SLOTS]),
        seen: Box::new([0; CACHE_SLOTS]),
    });
    // Before the pause: the first call checks the layouts (see `Layouts::get`).
    let layouts = borrowed::Layouts::get(py);
    let gc = borrowed::GcPause::new(py);
    let mut ser = Serializer {
        buf: scratch.buf,
        pos: 0,
        sink,
        types: Types::new(py),
        layouts,
        keys: TextCache::new(scratch.keys),
        values: TextCache::new(scratch.values),
        seen: SeenOnce { addresses: scratch.seen },
        _gc: &gc,
    };
    let result = ser.value(obj.as_borrowed(), 0).and_then(|()| ser.flush());
    let Serializer { buf, keys, values, seen, .. } = ser;
    SCRATCH.set(Some(Scratch {
        buf,
        keys: keys.into_cleared_slots(),
        values: values.into_cleared_slots(),
        seen: seen.addresses,
    }));
    drop(gc);
    result
}

/// The exact types, compared by address before any `isinstance` check.
struct Types {
    str_: *mut pyo3::ffi::PyTypeObject,
    int: *mut pyo3::ffi::PyTypeObject,
    dict: *mut pyo3::ffi::PyTypeObject,
    list: *mut pyo3::ffi::PyTypeObject,
    float: *mut pyo3::ffi::PyTypeObject,
    bool_: *mut pyo3::ffi::PyTypeObject,
    tuple: *mut pyo3::ffi::PyTypeObject,
}

impl Types {
    fn new(py: Python<'_>) -> Self {
        use pyo3::PyTypeInfo;
        Self {
            str_: PyString::type_object_raw(py),
            int: PyInt::type_object_raw(py),
            dict: PyDict::type_object_raw(py),
            list: PyList::type_object_raw(py),
            float: PyFloat::type_object_raw(py),
            bool_: PyBool::type_object_raw(py),
            tuple: PyTuple::type_object_raw(py),
        }
    }
}

/// Source bytes escaped per step; a step needs at most `6 * STEP + 16` bytes of room.
const STEP: usize = 4096;
const CACHE_SLOTS: usize = 256;
/// Bytes of a cache entry: `,"key":` (or `"value"`) must fit, plus the slack of a fixed-size copy.
const CACHED_TEXT: usize = 48;
/// Longest entry text (comma included); the copy takes `CACHED_COPY` bytes whatever the length
/// (`CACHED_COPY + 1 <= CACHED_TEXT`, since the copy may start at byte 1).
const CACHED_COPY: usize = 40;
/// Strs inserted into each cache per call, at most (it keeps a reference to each).
const CACHE_INSERTS: usize = 512;

/// One cached str: its address and its text escaped (`,"key":` or `"value"`), ready to copy.
#[derive(Clone, Copy)]
#[repr(align(64))]
struct CachedText {
    address: usize,
    len: usize,
    text: [u8; CACHED_TEXT],
}

impl CachedText {
    const EMPTY: Self = Self { address: 0, len: 0, text: [0; CACHED_TEXT] };
}

/// The slots of a [`TextCache`], kept across calls.
type CacheSlots = Box<[CachedText; CACHE_SLOTS]>;

/// Strings already escaped, found by the address of their `str` object and
/// copied whole: dict keys as `,"key":` (rows of one shape share their key
/// objects), and short values that recur as the same object (`"value"`, such as
/// names drawn from a small set).
///
/// Sound because the cache holds a strong reference to every str it describes:
/// while it lives, no other object can take that address, and `str` is immutable.
struct TextCache<'py> {
    /// Two-way by object address (a home slot and its pair); address 0: empty.
    slots: CacheSlots,
    owners: Vec<Bound<'py, PyString>>,
}

impl<'py> TextCache<'py> {
    fn new(slots: CacheSlots) -> Self {
        Self { slots, owners: Vec::new() }
    }

    /// Empties the slots this call filled (and drops its references), for reuse.
    fn into_cleared_slots(self) -> CacheSlots {
        let mut slots = self.slots;
        for key in &self.owners {
            let address = key.as_ptr() as usize;
            let home = Self::home(address);
            for slot in [home, home ^ 1] {
                if slots[slot].address == address {
                    slots[slot].address = 0;
                }
            }
        }
        slots
    }

    /// Home slot of an address (Fibonacci hashing: object addresses are aligned
    /// and often a power of two apart, so their low bits alone collide).
    #[inline(always)]
    fn home(address: usize) -> usize {
        ((address as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 56) as usize
    }

    /// The entry for `address`: in its home slot, or else in the home's pair
    /// (`home ^ 1`), so that two strings colliding both stay cached.
    #[inline(always)]
    fn get(&self, address: usize) -> Option<&CachedText> {
        let home = Self::home(address);
        let entry = &self.slots[home];
        if entry.address == address {
            return Some(entry);
        }
        let pair = &self.slots[home ^ 1];
        (pair.address == address).then_some(pair)
    }

    /// Caches `open`, `utf8` escaped, `close` for `s` if it fits and a slot is free.
    #[cold]
    fn insert(&mut self, s: Borrowed<'_, 'py, PyString>, utf8: &[u8], open: &[u8], close: &[u8]) {
        if utf8.len() > CACHED_COPY || self.owners.len() >= CACHE_INSERTS {
            return;
        }
        let address = s.as_ptr() as usize;
        // First come, first kept: a str whose two slots are taken is simply not
        // cached (no thrashing).
        let home = Self::home(address);
        let Some(slot) = [home, home ^ 1].into_iter().find(|&slot| self.slots[slot].address == 0) else {
            return;
        };
        let mut escaped = [0u8; 6 * CACHED_COPY + 16];
        escaped[..open.len()].copy_from_slice(open);
        let end = escape_into(&mut escaped, open.len(), utf8);
        let len = end + close.len();
        if len > CACHED_COPY {
            return;
        }
        escaped[end..len].copy_from_slice(close);
        let mut text = [0u8; CACHED_TEXT];
        text[..len].copy_from_slice(&escaped[..len]);
        self.slots[slot] = CachedText { address, len, text };
        self.owners.push(s.to_owned());
    }
}

/// Addresses of str values seen once this call, by home slot: a value seen a
/// second time is worth caching. Only a hint (no reference is held, an address
/// is never followed): a stale or reused address at worst caches a str once more.
struct SeenOnce {
    addresses: Box<[usize; CACHE_SLOTS]>,
}

impl SeenOnce {
    /// Records `address`; true if it was already there (seen before).
    #[inline(always)]
    fn again(&mut self, address: usize) -> bool {
        let slot = &mut self.addresses[TextCache::home(address)];
        let again = *slot == address;
        *slot = address;
        again
    }
}

struct Serializer<'s, 'g, 'py, S: Sink> {
    /// Staging buffer of `STAGING_CAPACITY` bytes; `buf[..pos]` is pending output.
    buf: Vec<u8>,
    pos: usize,
    sink: &'s mut S,
    types: Types,
    /// Which object layouts may be read directly.
    layouts: borrowed::Layouts,
    keys: TextCache<'py>,
    values: TextCache<'py>,
    seen: SeenOnce,
    /// Proof that the cyclic GC is paused while borrowed references are in use.
    _gc: &'g borrowed::GcPause,
}

impl<'py, S: Sink> Serializer<'_, '_, 'py, S> {
    fn flush(&mut self) -> Result<(), SerializeError> {
        if self.pos > 0 {
            self.sink.write_chunk(&self.buf[..self.pos]).map_err(SerializeError::Sink)?;
            self.pos = 0;
        }
        Ok(())
    }

    /// Makes room for `n` more bytes (`n` at most the staging capacity).
    #[inline]
    fn reserve(&mut self, n: usize) -> Result<(), SerializeError> {
        if self.buf.len() - self.pos < n {
            self.flush()?;
        }
        Ok(())
    }

    #[inline]
    fn byte(&mut self, b: u8) -> Result<(), SerializeError> {
        self.reserve(1)?;
        self.buf[self.pos] = b;
        self.pos += 1;
        Ok(())
    }

    /// Copies `bytes` (short: at most a few dozen).
    #[inline]
    fn small(&mut self, bytes: &[u8]) -> Result<(), SerializeError> {
        self.reserve(bytes.len())?;
        for &b in bytes {
            self.buf[self.pos] = b;
            self.pos += 1;
        }
        Ok(())
    }

    fn value(&mut self, obj: Borrowed<'_, 'py, PyAny>, depth: u32) -> Result<(), SerializeError> {
        let ty = obj.get_type_ptr();
        let t = &self.types;
        // Exact types first, most frequent first; these casts cannot fail.
        if ty == t.str_ {
            if let Ok(s) = obj.cast_exact::<PyString>() {
                return self.string(s);
            }
        } else if ty == t.int {
            return self.int(obj, false);
        } else if ty == t.dict {
            if let Ok(d) = obj.cast_exact::<PyDict>() {
                return self.dict(d, depth);
            }
        } else if ty == t.list {
            if let Ok(l) = obj.cast_exact::<PyList>() {
                return self.list(l, depth);
            }
        } else if ty == t.float {
            if let Ok(f) = obj.cast_exact::<PyFloat>() {
                return self.float(f.value());
            }
        } else if ty == t.bool_ {
            return self.small(if obj.is_truthy().unwrap_or(false) { b"true" } else { b"false" });
        } else if obj.is_none() {
            return self.small(b"null");
        } else if ty == t.tuple {
            if let Ok(tuple) = obj.cast_exact::<PyTuple>() {
                return self.tuple(&tuple.to_owned(), depth);
            }
        }
        self.subclass_value(&obj.to_owned(), depth)
    }

    /// Subclasses of the supported types (`OrderedDict`, `IntEnum`, `StrEnum`...).
    #[cold]
    fn subclass_value(&mut self, obj: &Bound<'py, PyAny>, depth: u32) -> Result<(), SerializeError> {
        if let Ok(s) = obj.cast::<PyString>() {
            self.string(s.as_borrowed())
        } else if obj.is_instance_of::<PyInt>() {
            self.int(obj.as_borrowed(), true)
        } else if let Ok(f) = obj.cast::<PyFloat>() {
            self.float(f.value())
        } else if let Ok(d) = obj.cast::<PyDict>() {
            self.dict(d.as_borrowed(), depth)
        } else if let Ok(l) = obj.cast::<PyList>() {
            self.list(l.as_borrowed(), depth)
        } else if let Ok(t) = obj.cast::<PyTuple>() {
            self.tuple(t, depth)
        } else {
            Err(SerializeError::value(format!("Type is not JSON serializable: {}", type_name(obj))))
        }
    }

    fn enter(depth: u32) -> Result<u32, SerializeError> {
        if depth >= MAX_DEPTH {
            return Err(SerializeError::value(format!(
                "nesting deeper than {MAX_DEPTH} levels (a container that contains itself?)"
            )));
        }
        Ok(depth + 1)
    }

    fn dict(&mut self, dict: Borrowed<'_, 'py, PyDict>, depth: u32) -> Result<(), SerializeError> {
        let depth = Self::enter(depth)?;
        self.byte(b'{')?;
        let mut separator = false;
        // SAFETY: `self._gc` proves the cyclic GC is paused, the GIL is held and
        // the serializer runs no Python code (see the module docs), so `dict` is
        // not modified and its items stay alive while these references are used.
        let items = unsafe { borrowed::DictItems::new(dict, self.layouts) };
        for (key, value) in items {
            // Room for a cached key and a cached value (`key` and `item` rely on it).
            self.reserve(2 * CACHED_COPY)?;
            self.key(key, separator)?;
            separator = true;
            if let Err(err) = self.item(value, depth) {
                return Err(err.at(Step::Key(key_text(&key))));
            }
        }
        self.byte(b'}')
    }

    fn list(&mut self, list: Borrowed<'_, 'py, PyList>, depth: u32) -> Result<(), SerializeError> {
        let depth = Self::enter(depth)?;
        self.byte(b'[')?;
        // SAFETY: as in `dict`: the GC is paused (`self._gc`), the GIL held, and no
        // Python code runs, so the list is not modified while its items are used.
        let items = unsafe { borrowed::ListItems::new(list, self.layouts) };
        for (index, item) in items.enumerate() {
            // Room for a comma and a cached value (`item` relies on it).
            self.reserve(CACHED_COPY + 1)?;
            if index > 0 {
                self.buf[self.pos] = b',';
                self.pos += 1;
            }
            self.item(item, depth).map_err(|err| err.at(Step::Index(index)))?;
        }
        self.byte(b']')
    }

    /// A container's item: the most frequent types inline, the rest through `value`.
    /// The caller has reserved `CACHED_COPY` bytes.
    #[inline(always)]
    fn item(&mut self, obj: Borrowed<'_, 'py, PyAny>, depth: u32) -> Result<(), SerializeError> {
        let ty = obj.get_type_ptr();
        if ty == self.types.str_ {
            if let Ok(s) = obj.cast_exact::<PyString>() {
                return self.item_string(s);
            }
        } else if ty == self.types.int {
            return self.int(obj, false);
        }
        self.value(obj, depth)
    }

    fn tuple(&mut self, tuple: &Bound<'py, PyTuple>, depth: u32) -> Result<(), SerializeError> {
        let depth = Self::enter(depth)?;
        self.byte(b'[')?;
        for (index, item) in tuple.iter_borrowed().enumerate() {
            if index > 0 {
                self.byte(b',')?;
            }
            self.value(item, depth).map_err(|err| err.at(Step::Index(index)))?;
        }
        self.byte(b']')
    }

    /// A comma if `separator`, then a dict key and its colon: str as is (through
    /// the key cache); int, float, bool and None as their JSON text in quotes,
    /// like `json.dumps`; anything else is refused.
    ///
    /// The caller has reserved `CACHED_COPY` bytes, and as many are left after.
    #[inline(always)]
    fn key(&mut self, key: Borrowed<'_, 'py, PyAny>, separator: bool) -> Result<(), SerializeError> {
        // Only exact `str` keys are ever cached, so an address match is enough.
        if let Some(entry) = self.keys.get(key.as_ptr() as usize) {
            let skip = usize::from(!separator);
            // A fixed-size copy; the staging bytes past the key are scratch.
            self.buf[self.pos..self.pos + CACHED_COPY].copy_from_slice(&entry.text[skip..skip + CACHED_COPY]);
            self.pos += entry.len - skip;
            return Ok(());
        }
        if separator {
            self.byte(b',')?;
        }
        self.new_key(key)?;
        self.reserve(CACHED_COPY)
    }

    #[cold]
    fn new_key(&mut self, key: Borrowed<'_, 'py, PyAny>) -> Result<(), SerializeError> {
        if let Ok(s) = key.cast_exact::<PyString>() {
            let utf8 = utf8_of(s)?;
            self.keys.insert(s, utf8, b",\"", b"\":");
            self.escaped(utf8)?;
            return self.byte(b':');
        }
        if let Ok(s) = key.cast::<PyString>() {
            self.escaped(utf8_of(s)?)?;
            return self.byte(b':');
        }
        let text = if key.is_instance_of::<PyBool>() {
            if key.is_truthy().unwrap_or(false) { "true" } else { "false" }.to_owned()
        } else if key.is_none() {
            "null".to_owned()
        } else if key.is_instance_of::<PyInt>() {
            int_text(&key, true)?
        } else if let Ok(f) = key.cast::<PyFloat>() {
            let mut text = FloatText::new();
            float_text(f.value(), &mut text)?;
            String::from_utf8_lossy(text.as_bytes()).into_owned()
        } else {
            return Err(SerializeError::value(format!(
                "dict key must be str, int, float, bool or None, not {}",
                type_name(&key)
            ))
            .at(Step::Key(format!("<{}>", type_name(&key)))));
        };
        self.byte(b'"')?;
        self.small(text.as_bytes())?;
        self.small(b"\":")
    }

    #[inline(always)]
    fn int(&mut self, obj: Borrowed<'_, 'py, PyAny>, subclass: bool) -> Result<(), SerializeError> {
        if let Some(v) = borrowed::small_int(obj, self.layouts) {
            self.reserve(24)?;
            self.pos = write_i64(&mut self.buf, self.pos, v);
            return Ok(());
        }
        self.big_int(&obj.to_owned(), subclass)
    }

    #[cold]
    fn big_int(&mut self, obj: &Bound<'py, PyAny>, subclass: bool) -> Result<(), SerializeError> {
        let text = int_text(obj, subclass)?;
        for step in text.as_bytes().chunks(STEP) {
            self.reserve(step.len())?;
            self.buf[self.pos..self.pos + step.len()].copy_from_slice(step);
            self.pos += step.len();
        }
        Ok(())
    }

    fn float(&mut self, value: f64) -> Result<(), SerializeError> {
        let mut text = FloatText::new();
        float_text(value, &mut text)?;
        self.small(text.as_bytes())
    }

    /// A str inside a container: from the value cache if this object was seen
    /// before, else written (and cached if seen for the second time).
    /// The caller has reserved `CACHED_COPY` bytes.
    #[inline(always)]
    fn item_string(&mut self, s: Borrowed<'_, 'py, PyString>) -> Result<(), SerializeError> {
        let address = s.as_ptr() as usize;
        if let Some(entry) = self.values.get(address) {
            // A fixed-size copy; the staging bytes past the value are scratch.
            self.buf[self.pos..self.pos + CACHED_COPY].copy_from_slice(&entry.text[..CACHED_COPY]);
            self.pos += entry.len;
            return Ok(());
        }
        let utf8 = utf8_of(s)?;
        // Only a str short enough to be cached is remembered as seen.
        if utf8.len() <= CACHED_COPY - 2 && self.seen.again(address) {
            self.values.insert(s, utf8, b"\"", b"\"");
        }
        self.escaped(utf8)
    }

    #[inline(always)]
    fn string(&mut self, s: Borrowed<'_, 'py, PyString>) -> Result<(), SerializeError> {
        let utf8 = utf8_of(s)?;
        self.escaped(utf8)
    }

    /// Writes `"bytes"` with JSON escapes.
    #[inline(always)]
    fn escaped(&mut self, bytes: &[u8]) -> Result<(), SerializeError> {
        if bytes.len() > STEP {
            return self.long_escaped(bytes);
        }
        self.reserve(6 * bytes.len() + 16)?;
        let mut pos = self.pos;
        self.buf[pos] = b'"';
        pos = escape_into(&mut self.buf, pos + 1, bytes);
        self.buf[pos] = b'"';
        self.pos = pos + 1;
        Ok(())
    }

    #[cold]
    fn long_escaped(&mut self, bytes: &[u8]) -> Result<(), SerializeError> {
        self.byte(b'"')?;
        for step in bytes.chunks(STEP) {
            self.reserve(6 * step.len() + 16)?;
            self.pos = escape_into(&mut self.buf, self.pos, step);
        }
        self.byte(b'"')
    }
}

#[inline(always)]
fn utf8_of<'a>(s: Borrowed<'a, '_, PyString>) -> Result<&'a [u8], SerializeError> {
    borrowed::str_utf8(s).map_err(|err| not_utf8(s.py(), &err))
}

#[cold]
fn not_utf8(py: Python<'_>, err: &PyErr) -> SerializeError {
    SerializeError::value(format!("str cannot be encoded as UTF-8 ({})", err.value(py)))
}

fn unicode_escape(b: u8) -> [u8; 6] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    [b'\\', b'u', b'0', b'0', HEX[(b >> 4) as usize], HEX[(b & 0xf) as usize]]
}

#[inline(always)]
fn load_word(bytes: &[u8]) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&bytes[..8]);
    u64::from_le_bytes(word)
}

#[inline(always)]
fn load_chunk(bytes: &[u8]) -> [u8; CHUNK] {
    let mut chunk = [0u8; CHUNK];
    chunk.copy_from_slice(&bytes[..CHUNK]);
    chunk
}

/// The bytes of `src` (shorter than 8) as a little-endian word padded with
/// spaces, built from two possibly overlapping loads rather than a byte loop or
/// a `memcpy` call: overlapping bytes are the same byte at the same place.
#[inline(always)]
fn short_word(src: &[u8]) -> u64 {
    const SPACES: u64 = 0x2020_2020_2020_2020;
    let len = src.len() & 7;
    let word = if len >= 4 {
        let lo = u64::from(u32::from_le_bytes([src[0], src[1], src[2], src[3]]));
        let hi = u64::from(u32::from_le_bytes([src[len - 4], src[len - 3], src[len - 2], src[len - 1]]));
        lo | (hi << (8 * (len - 4)))
    } else if len > 0 {
        let middle = len / 2;
        u64::from(src[0]) | (u64::from(src[middle]) << (8 * middle)) | (u64::from(src[len - 1]) << (8 * (len - 1)))
    } else {
        0
    };
    word | (SPACES << (8 * len))
}

/// The high bit of each byte of `w` that may need an escape: every control
/// byte, `"` and `\` is marked; borrows may add false marks above a real one
/// only, so the mask is zero exactly when no byte needs an escape.
#[inline(always)]
fn word_escape_mask(w: u64) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let quote = w ^ (ONES * u64::from(b'"'));
    let backslash = w ^ (ONES * u64::from(b'\\'));
    // The high bit of a lane is set when that byte is < 0x20 (resp. zero after the xor).
    let control = w.wrapping_sub(ONES * 0x20) & !w;
    let quote = quote.wrapping_sub(ONES) & !quote;
    let backslash = backslash.wrapping_sub(ONES) & !backslash;
    (control | quote | backslash) & HIGHS
}

/// Whether any byte of `w` is a control byte, `"` or `\`.
#[inline(always)]
fn word_needs_escape(w: u64) -> bool {
    word_escape_mask(w) != 0
}

/// Bytes checked at once by [`chunk_needs_escape`].
const CHUNK: usize = 16;

/// Whether any of 16 bytes is a control byte, `"` or `\` (SSE2).
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
#[inline(always)]
fn chunk_needs_escape(chunk: &[u8; CHUNK]) -> bool {
    use std::arch::x86_64::{
        __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_min_epu8, _mm_movemask_epi8, _mm_or_si128, _mm_set1_epi8,
    };
    // SAFETY: the build enables SSE2 (the cfg above; it is part of every x86-64),
    // so these intrinsics are available. The load reads exactly the 16 bytes of
    // `chunk` (an unaligned load: `loadu`); the rest touch registers only.
    let mask = unsafe {
        let v = _mm_loadu_si128(chunk.as_ptr().cast::<__m128i>());
        // Unsigned `b < 0x20` is `min(b, 0x1f) == b`.
        let control = _mm_cmpeq_epi8(_mm_min_epu8(v, _mm_set1_epi8(0x1f)), v);
        let quote = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'"' as i8));
        let backslash = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'\\' as i8));
        _mm_movemask_epi8(_mm_or_si128(control, _mm_or_si128(quote, backslash)))
    };
    mask != 0
}

/// Whether any of 16 bytes is a control byte, `"` or `\` (two words).
#[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
#[inline(always)]
fn chunk_needs_escape(chunk: &[u8; CHUNK]) -> bool {
    word_escape_mask(load_word(&chunk[..8])) | word_escape_mask(load_word(&chunk[8..])) != 0
}

/// Escapes `src` into `buf` at `pos` (which has room for `6 * src.len() + 8`
/// bytes) and returns the new position.
///
/// A string with nothing to escape (the usual case) is checked and copied in
/// fixed-size pieces with no loop up to 32 bytes: two overlapping loads of the
/// first and last 8 (or 16) bytes, each written at its place, so the overlap is
/// written twice with the same bytes. Longer strings go 16 bytes at a time and
/// end with such an overlapping last chunk. Any piece that needs an escape is
/// escaped byte by byte.
#[inline(always)]
fn escape_into(buf: &mut [u8], pos: usize, src: &[u8]) -> usize {
    let len = src.len();
    if len < 8 {
        // Writing all eight bytes is fine: the room past the string is scratch.
        let word = short_word(src);
        if !word_needs_escape(word) {
            buf[pos..pos + 8].copy_from_slice(&word.to_le_bytes());
            return pos + len;
        }
    } else if len <= 16 {
        let first = load_word(src);
        let last = load_word(&src[len - 8..]);
        if word_escape_mask(first) | word_escape_mask(last) == 0 {
            buf[pos..pos + 8].copy_from_slice(&first.to_le_bytes());
            buf[pos + len - 8..pos + len].copy_from_slice(&last.to_le_bytes());
            return pos + len;
        }
    } else if len <= 2 * CHUNK {
        let first = load_chunk(src);
        let last = load_chunk(&src[len - CHUNK..]);
        if !chunk_needs_escape(&first) && !chunk_needs_escape(&last) {
            buf[pos..pos + CHUNK].copy_from_slice(&first);
            buf[pos + len - CHUNK..pos + len].copy_from_slice(&last);
            return pos + len;
        }
    } else {
        return escape_long(buf, pos, src);
    }
    escape_bytes(buf, pos, src)
}

/// [`escape_into`] for more than 32 bytes: 16-byte chunks, then the last 16
/// bytes (overlapping the previous chunk) if that chunk was clean.
#[inline]
fn escape_long(buf: &mut [u8], mut pos: usize, src: &[u8]) -> usize {
    let len = src.len();
    let mut i = 0;
    let mut last_chunk_clean = false;
    while i + CHUNK <= len {
        let chunk = load_chunk(&src[i..]);
        if chunk_needs_escape(&chunk) {
            pos = escape_bytes(buf, pos, &chunk);
            last_chunk_clean = false;
        } else {
            buf[pos..pos + CHUNK].copy_from_slice(&chunk);
            pos += CHUNK;
            last_chunk_clean = true;
        }
        i += CHUNK;
    }
    let rest = len - i;
    if rest == 0 {
        return pos;
    }
    if last_chunk_clean {
        let chunk = load_chunk(&src[len - CHUNK..]);
        if !chunk_needs_escape(&chunk) {
            let at = pos - (CHUNK - rest);
            buf[at..at + CHUNK].copy_from_slice(&chunk);
            return pos + rest;
        }
    }
    escape_bytes(buf, pos, &src[i..])
}

#[inline]
fn escape_bytes(buf: &mut [u8], mut pos: usize, src: &[u8]) -> usize {
    for &b in src {
        let escape = ESCAPE[b as usize];
        if escape == 0 {
            buf[pos] = b;
            pos += 1;
        } else if escape == b'u' {
            buf[pos..pos + 6].copy_from_slice(&unicode_escape(b));
            pos += 6;
        } else {
            buf[pos] = b'\\';
            buf[pos + 1] = escape;
            pos += 2;
        }
    }
    pos
}

const DIGIT_PAIRS: &[u8; 200] = b"0001020304050607080910111213141516171819\
2021222324252627282930313233343536373839\
4041424344454647484950515253545556575859\
6061626364656667686970717273747576777879\
8081828384858687888990919293949596979899";

/// Writes `v` in decimal at `pos` (20 bytes of room) and returns the new position.
#[inline]
fn write_i64(buf: &mut [u8], mut pos: usize, v: i64) -> usize {
    if v < 0 {
        buf[pos] = b'-';
        pos += 1;
    }
    let mut n = v.unsigned_abs();
    let mut digits = 1;
    let mut probe = n;
    while probe >= 10 {
        probe /= 10;
        digits += 1;
    }
    let end = pos + digits;
    let mut at = end;
    while n >= 100 {
        let pair = (n % 100) as usize * 2;
        n /= 100;
        at -= 2;
        buf[at..at + 2].copy_from_slice(&DIGIT_PAIRS[pair..pair + 2]);
    }
    if n >= 10 {
        let pair = n as usize * 2;
        at -= 2;
        buf[at..at + 2].copy_from_slice(&DIGIT_PAIRS[pair..pair + 2]);
    } else {
        at -= 1;
        buf[at] = b'0' + n as u8;
    }
    end
}

/// What follows the backslash for each byte that needs an escape (0: none).
static ESCAPE: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut i = 0;
    while i < 0x20 {
        table[i] = b'u';
        i += 1;
    }
    table[0x08] = b'b';
    table[0x09] = b't';
    table[0x0a] = b'n';
    table[0x0c] = b'f';
    table[0x0d] = b'r';
    table[b'"' as usize] = b'"';
    table[b'\\' as usize] = b'\\';
    table
};

fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type().name().map_or_else(|_| "<unknown type>".to_owned(), |n| n.to_string())
}

/// A dict key as it appears in an error path (no user code runs to get it).
fn key_text(key: &Bound<'_, PyAny>) -> String {
    if let Ok(s) = key.cast::<PyString>() {
        return s.to_string_lossy().into_owned();
    }
    if key.is_instance_of::<PyBool>() {
        return if key.is_truthy().unwrap_or(false) { "true" } else { "false" }.to_owned();
    }
    if key.is_none() {
        return "null".to_owned();
    }
    if key.is_instance_of::<PyInt>() {
        return int_text(key, true).unwrap_or_else(|_| "<int>".to_owned());
    }
    if let Ok(f) = key.cast::<PyFloat>() {
        let mut text = FloatText::new();
        if float_text(f.value(), &mut text).is_ok() {
            return String::from_utf8_lossy(text.as_bytes()).into_owned();
        }
    }
    format!("<{}>", type_name(key))
}

/// Decimal text of any Python int, as `int.__repr__` gives it (so an `IntEnum`
/// writes its value, as `json.dumps` does).
fn int_text(obj: &Bound<'_, PyAny>, subclass: bool) -> Result<String, SerializeError> {
    if let Some(v) = borrowed::small_int(obj.as_borrowed(), borrowed::Layouts::NONE) {
        return Ok(itoa::Buffer::new().format(v).to_owned());
    }
    if let Ok(v) = obj.extract::<u64>() {
        return Ok(itoa::Buffer::new().format(v).to_owned());
    }
    let py = obj.py();
    let text = if subclass {
        py.get_type::<PyInt>().call_method1("__repr__", (obj,)).and_then(|r| r.str())
    } else {
        obj.repr()
    };
    text.map(|t| t.to_string_lossy().into_owned())
        .map_err(|err| SerializeError::value(format!("int cannot be converted to text ({})", err.value(py))))
}

/// A float's JSON text, built on the stack.
struct FloatText {
    bytes: [u8; 40],
    len: usize,
}

impl FloatText {
    fn new() -> Self {
        Self { bytes: [0; 40], len: 0 }
    }

    fn push(&mut self, b: u8) {
        if self.len < self.bytes.len() {
            self.bytes[self.len] = b;
            self.len += 1;
        }
    }

    fn extend(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.push(b);
        }
    }

    fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

/// Writes `value` the way orjson does: the shortest digits that round-trip (ryu),
/// in plain notation when the decimal exponent is in -5..16 (`0.00001`,
/// `1000000000000000.0`), else in scientific notation (`1e-6`, `1.5e+16`).
/// NaN and infinities have no JSON form and are refused.
fn float_text(value: f64, out: &mut FloatText) -> Result<(), SerializeError> {
    if !value.is_finite() {
        return Err(SerializeError::value(format!(
            "float {} is not JSON serializable: JSON has no NaN or Infinity",
            if value.is_nan() {
                "nan"
            } else if value > 0.0 {
                "inf"
            } else {
                "-inf"
            }
        )));
    }
    let mut buffer = ryu::Buffer::new();
    let text = buffer.format_finite(value).as_bytes();
    let (negative, text) = match text.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, text),
    };
    // ryu writes "123.45", "0.00123", "1.5e-7" or "1e16": take its digits and exponent.
    let (mantissa, exponent) = match text.iter().position(|&b| b == b'e') {
        Some(e) => (&text[..e], parse_exponent(&text[e + 1..])),
        None => (text, 0),
    };
    let mut digits = [0u8; 24];
    let mut count = 0usize;
    // Decimal exponent of the first digit written to `digits` (value = 0.d1d2... x 10^point).
    let mut point: i32 = exponent;
    let mut seen_dot = false;
    for &b in mantissa {
        if b == b'.' {
            seen_dot = true;
            continue;
        }
        if !seen_dot {
            point += 1;
        }
        if count == 0 && b == b'0' {
            // A leading zero only moves the decimal point.
            point -= 1;
            continue;
        }
        if count < digits.len() {
            digits[count] = b;
            count += 1;
        }
    }
    while count > 0 && digits[count - 1] == b'0' {
        count -= 1;
    }
    if negative {
        out.push(b'-');
    }
    if count == 0 {
        out.extend(b"0.0");
        return Ok(());
    }
    let digits = &digits[..count];
    let sci_exponent = point - 1;
    if (-5..16).contains(&sci_exponent) {
        if point <= 0 {
            out.extend(b"0.");
            for _ in 0..-point {
                out.push(b'0');
            }
            out.extend(digits);
        } else {
            let point = point as usize;
            if point >= digits.len() {
                out.extend(digits);
                for _ in digits.len()..point {
                    out.push(b'0');
                }
                out.extend(b".0");
            } else {
                out.extend(&digits[..point]);
                out.push(b'.');
                out.extend(&digits[point..]);
            }
        }
    } else {
        out.push(digits[0]);
        if digits.len() > 1 {
            out.push(b'.');
            out.extend(&digits[1..]);
        }
        out.push(b'e');
        if sci_exponent > 0 {
            out.push(b'+');
        }
        out.extend(itoa::Buffer::new().format(sci_exponent).as_bytes());
    }
    Ok(())
}

fn parse_exponent(text: &[u8]) -> i32 {
    let (negative, digits) = match text.split_first() {
        Some((b'-', rest)) => (true, rest),
        Some((b'+', rest)) => (false, rest),
        _ => (false, text),
    };
    let magnitude = digits.iter().fold(0i32, |acc, &d| acc * 10 + i32::from(d - b'0'));
    if negative {
        -magnitude
    } else {
        magnitude
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn float(v: f64) -> String {
        let mut t = FloatText::new();
        float_text(v, &mut t).unwrap();
        String::from_utf8(t.as_bytes().to_vec()).unwrap()
    }

    #[test]
    fn floats_are_written_like_orjson() {
        let cases = [
            (0.1, "0.1"),
            (1.0, "1.0"),
            (1e16, "1e+16"),
            (1e300, "1e+300"),
            (-0.0, "-0.0"),
            (0.0, "0.0"),
            (5e-324, "5e-324"),
            (1.5e-7, "1.5e-7"),
            (1e-5, "0.00001"),
            (1.234e-5, "0.00001234"),
            (1e-6, "1e-6"),
            (1e15, "1000000000000000.0"),
            (9999000000000000.0, "9999000000000000.0"),
            (1.5e16, "1.5e+16"),
            (123456789012345.6, "123456789012345.6"),
            (1.2345678901234568e17, "1.2345678901234568e+17"),
            (1.7976931348623157e308, "1.7976931348623157e+308"),
            (12345.678, "12345.678"),
            (-2.5, "-2.5"),
            (100.0, "100.0"),
        ];
        for (value, expected) in cases {
            assert_eq!(float(value), expected, "{value:e}");
        }
    }

    fn escape(src: &[u8]) -> Vec<u8> {
        let mut buf = vec![0; 6 * src.len() + 8];
        let end = escape_into(&mut buf, 0, src);
        buf.truncate(end);
        buf
    }

    /// The plain byte-by-byte escape, to compare the fast paths against.
    fn escape_reference(src: &[u8]) -> Vec<u8> {
        let mut buf = vec![0; 6 * src.len() + 8];
        let end = escape_bytes(&mut buf, 0, src);
        buf.truncate(end);
        buf
    }

    #[test]
    fn every_special_byte_is_escaped_wherever_it_sits() {
        // Every length across the short word, the two-word, the two-chunk and the
        // chunked paths (and their boundaries at 8, 16, 32, 48 and 64 bytes).
        for len in 1..=80 {
            for special in (0u8..0x20).chain([b'"', b'\\']) {
                for at in 0..len {
                    let mut bytes = vec![b'a'; len];
                    bytes[at] = special;
                    let out = escape(&bytes);
                    let expected = match ESCAPE[special as usize] {
                        b'u' => unicode_escape(special).to_vec(),
                        short => vec![b'\\', short],
                    };
                    assert_eq!(&out[at..at + expected.len()], &expected[..], "byte {special:#x} at {at} of {len}");
                    assert_eq!(out.len(), len - 1 + expected.len(), "byte {special:#x} at {at} of {len}");
                    assert_eq!(out, escape_reference(&bytes), "byte {special:#x} at {at} of {len}");
                }
            }
        }
        let plain = "héllo wörld, no escapes here \u{7f}/".as_bytes();
        assert_eq!(escape(plain), plain);
    }

    #[test]
    fn clean_and_non_ascii_strings_are_copied_whole_at_every_length() {
        for len in 0..=80 {
            let clean: Vec<u8> =
                (0..len).map(|i| b'!' + (i * 7 % 90) as u8).filter(|&b| b != b'\\' && b != b'"').collect();
            assert_eq!(escape(&clean), clean, "length {}", clean.len());
            // A multi-byte character (bytes >= 0x80 need no escape) at each position.
            for at in 0..=len {
                let mut text = "x".repeat(len);
                text.insert_str(at, "é€😀");
                assert_eq!(escape(text.as_bytes()), text.as_bytes(), "at {at} of {len}");
                let mut with_quote = text.clone();
                with_quote.insert(at, '"');
                assert_eq!(escape(with_quote.as_bytes()), escape_reference(with_quote.as_bytes()), "at {at} of {len}");
            }
        }
    }

    #[test]
    fn several_escapes_in_one_string_are_all_written() {
        for len in [7usize, 8, 15, 16, 17, 31, 32, 33, 47, 48, 49, 64, 65, 100] {
            let bytes: Vec<u8> = (0..len)
                .map(|i| {
                    if i % 5 == 0 {
                        b'\n'
                    } else if i % 7 == 0 {
                        b'"'
                    } else {
                        b'z'
                    }
                })
                .collect();
            assert_eq!(escape(&bytes), escape_reference(&bytes), "length {len}");
            let all: Vec<u8> = (0..len).map(|i| (i % 0x20) as u8).collect();
            assert_eq!(escape(&all), escape_reference(&all), "length {len}");
        }
    }

    #[test]
    fn integers_are_written_in_decimal() {
        for v in [0, 1, 9, 10, 99, 100, 12345, -1, -10, i64::MAX, i64::MIN] {
            let mut buf = [0u8; 24];
            let end = write_i64(&mut buf, 0, v);
            assert_eq!(std::str::from_utf8(&buf[..end]).unwrap(), v.to_string());
        }
    }

    #[test]
    fn paths_read_outside_in() {
        let steps = vec![Step::Key("tags".into()), Step::Index(3)];
        assert_eq!(format_path(&steps), "$[3].tags");
        assert_eq!(format_path(&[Step::Key("a b".into())]), "$[\"a b\"]");
        assert_eq!(format_path(&[]), "$");
    }
}
