//! The type walk: each Python value written as JSON into the staging buffer.

use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};

use super::borrowed;
use super::cache::{SeenOnce, TextCache, CACHED_COPY};
use super::error::{SerializeError, Step};
use super::escape::escape_into;
use super::number::{float_text, int_text, write_int, FloatText};
use super::{Sink, MAX_DEPTH};

/// The exact types, compared by address before any `isinstance` check.
pub(super) struct Types {
    pub(super) str_: *mut pyo3::ffi::PyTypeObject,
    pub(super) int: *mut pyo3::ffi::PyTypeObject,
    pub(super) dict: *mut pyo3::ffi::PyTypeObject,
    pub(super) list: *mut pyo3::ffi::PyTypeObject,
    pub(super) float: *mut pyo3::ffi::PyTypeObject,
    pub(super) bool_: *mut pyo3::ffi::PyTypeObject,
    pub(super) tuple: *mut pyo3::ffi::PyTypeObject,
    /// The objects `True` and `None`.
    pub(super) true_: *mut pyo3::ffi::PyObject,
    pub(super) none: *mut pyo3::ffi::PyObject,
}

impl Types {
    pub(super) fn new(py: Python<'_>) -> Self {
        use pyo3::PyTypeInfo;
        Self {
            str_: PyString::type_object_raw(py),
            int: PyInt::type_object_raw(py),
            dict: PyDict::type_object_raw(py),
            list: PyList::type_object_raw(py),
            float: PyFloat::type_object_raw(py),
            bool_: PyBool::type_object_raw(py),
            tuple: PyTuple::type_object_raw(py),
            true_: PyBool::new(py, true).as_ptr(),
            none: py.None().as_ptr(),
        }
    }
}
/// Source bytes escaped per step; a step needs at most `6 * STEP + 16` bytes of room.
pub(super) const STEP: usize = 4096;

pub(super) struct Serializer<'s, 'g, 'py, S: Sink> {
    /// Staging buffer of `STAGING_CAPACITY` bytes; `buf[..pos]` is pending output.
    pub(super) buf: Vec<u8>,
    pub(super) pos: usize,
    pub(super) sink: &'s mut S,
    pub(super) types: Types,
    /// Which object layouts may be read directly.
    pub(super) layouts: borrowed::Layouts,
    pub(super) keys: TextCache,
    pub(super) values: TextCache,
    pub(super) seen: SeenOnce,
    /// The same for keys: a key is cached on its second sighting (one dict
    /// alone is not worth caching).
    pub(super) seen_keys: SeenOnce,
    /// The `default=` hook, if any.
    pub(super) default: Option<Bound<'py, PyAny>>,
    /// `default=` calls under way, one inside another's result.
    pub(super) default_depth: u32,
    /// The last dataclass type written, and how its instances are read (see
    /// `types.rs`), so that a list of one dataclass looks the class up once.
    pub(super) dataclass: Option<super::types::DataclassKind>,
    /// Counts the times Python code may have run (see `other`): a container
    /// walk that sees it move reads its container again.
    pub(super) epoch: u64,
    /// Proof that the cyclic GC is paused while borrowed references are in use.
    pub(super) _gc: &'g borrowed::GcPause,
}

impl<'py, S: Sink> Serializer<'_, '_, 'py, S> {
    pub(super) fn flush(&mut self) -> Result<(), SerializeError> {
        if self.pos > 0 {
            self.sink.write_chunk(&self.buf[..self.pos]).map_err(SerializeError::sink)?;
            self.pos = 0;
        }
        Ok(())
    }

    /// Makes room for `n` more bytes (`n` at most the staging capacity).
    #[inline]
    pub(super) fn reserve(&mut self, n: usize) -> Result<(), SerializeError> {
        if self.buf.len() - self.pos < n {
            self.flush()?;
        }
        Ok(())
    }

    #[inline]
    pub(super) fn byte(&mut self, b: u8) -> Result<(), SerializeError> {
        self.reserve(1)?;
        self.buf[self.pos] = b;
        self.pos += 1;
        Ok(())
    }

    /// Writes the first `len` bytes of `word` with one fixed-size copy (the bytes
    /// past them are scratch). The caller has reserved 8 bytes.
    #[inline(always)]
    pub(super) fn put_word(&mut self, word: &[u8; 8], len: usize) {
        self.buf[self.pos..self.pos + 8].copy_from_slice(word);
        self.pos += len;
    }

    /// Copies `bytes` (short: at most a few dozen).
    #[inline]
    pub(super) fn small(&mut self, bytes: &[u8]) -> Result<(), SerializeError> {
        self.reserve(bytes.len())?;
        for &b in bytes {
            self.buf[self.pos] = b;
            self.pos += 1;
        }
        Ok(())
    }

    pub(super) fn value(&mut self, obj: Borrowed<'_, 'py, PyAny>, depth: u32) -> Result<(), SerializeError> {
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
            return self.small(if obj.as_ptr() == t.true_ { b"true" } else { b"false" });
        } else if obj.as_ptr() == t.none {
            return self.small(b"null");
        } else if ty == t.tuple {
            if let Ok(tuple) = obj.cast_exact::<PyTuple>() {
                return self.tuple(&tuple.to_owned(), depth);
            }
        }
        self.other(&obj.to_owned(), depth)
    }

    pub(super) fn enter(depth: u32) -> Result<u32, SerializeError> {
        if depth >= MAX_DEPTH {
            return Err(SerializeError::value(format!(
                "nesting deeper than {MAX_DEPTH} levels (a container that contains itself?)"
            )));
        }
        Ok(depth + 1)
    }

    #[inline]
    pub(super) fn dict(&mut self, dict: Borrowed<'_, 'py, PyDict>, depth: u32) -> Result<(), SerializeError> {
        self.dict_items::<false>(dict, depth)
    }

    /// A dict's items; with `SKIP_PRIVATE`, without the str keys that start with
    /// `_` (a dataclass instance's `__dict__`, as orjson writes one).
    pub(super) fn dict_items<const SKIP_PRIVATE: bool>(
        &mut self,
        dict: Borrowed<'_, 'py, PyDict>,
        depth: u32,
    ) -> Result<(), SerializeError> {
        let depth = Self::enter(depth)?;
        // Held for the walk: Python code run further down (a `default=` hook, an
        // enum's value) could drop every other reference to this dict.
        let dict = dict.to_owned();
        self.byte(b'{')?;
        let mut separator = false;
        let mut epoch = self.epoch;
        // SAFETY: `self._gc` proves the cyclic GC is paused and the GIL is held.
        // An item is used only until Python code next runs: a scalar is written at
        // once (no Python code runs for one), and for any other value this loop
        // takes a strong reference to the key, the value's own walk takes one to
        // the value, and the table is read again (`refresh`) once code has run.
        let mut items = unsafe { borrowed::DictItems::new(dict.as_borrowed(), self.layouts) };
        while let Some((key, value)) = items.next() {
            if SKIP_PRIVATE && is_private(key) {
                continue;
            }
            // Room for a cached key and a cached value (`key` and `scalar` rely on it).
            self.reserve(2 * CACHED_COPY)?;
            self.key(key, separator)?;
            separator = true;
            if let Some(result) = self.scalar(value) {
                result.map_err(|err| err.at(Step::Key(key_text(&key))))?;
            } else {
                let key = key.to_owned();
                let result = self.value(value, depth);
                if self.epoch != epoch {
                    items.refresh();
                    epoch = self.epoch;
                }
                result.map_err(|err| err.at(Step::Key(key_text(&key))))?;
            }
        }
        self.byte(b'}')
    }

    pub(super) fn list(&mut self, list: Borrowed<'_, 'py, PyList>, depth: u32) -> Result<(), SerializeError> {
        let depth = Self::enter(depth)?;
        // Held for the walk, as in `dict`.
        let list = list.to_owned();
        self.byte(b'[')?;
        let mut epoch = self.epoch;
        // SAFETY: as in `dict`: the GC is paused (`self._gc`), the GIL held, an item
        // is used only until Python code next runs, and the item array is read
        // again (`refresh`) once code has run.
        let mut items = unsafe { borrowed::ListItems::new(list.as_borrowed(), self.layouts) };
        let mut index = 0;
        while let Some(item) = items.next() {
            // Room for a comma and a cached value (`scalar` relies on it).
            self.reserve(CACHED_COPY + 1)?;
            if index > 0 {
                self.buf[self.pos] = b',';
                self.pos += 1;
            }
            let result = match self.scalar(item) {
                Some(result) => result,
                None => {
                    let result = self.value(item, depth);
                    if self.epoch != epoch {
                        items.refresh();
                        epoch = self.epoch;
                    }
                    result
                }
            };
            result.map_err(|err| err.at(Step::Index(index)))?;
            index += 1;
        }
        self.byte(b']')
    }

    /// A container's item if it is of an exact scalar type (str, int, float,
    /// bool, None), which runs no Python code; `None` for anything else.
    /// The caller has reserved `CACHED_COPY` bytes.
    #[inline(always)]
    pub(super) fn scalar(&mut self, obj: Borrowed<'_, 'py, PyAny>) -> Option<Result<(), SerializeError>> {
        let ty = obj.get_type_ptr();
        let t = &self.types;
        if ty == t.str_ {
            if let Ok(s) = obj.cast_exact::<PyString>() {
                return Some(self.item_string(s));
            }
        } else if ty == t.int {
            return Some(self.int(obj, false));
        } else if ty == t.float {
            if let Ok(f) = obj.cast_exact::<PyFloat>() {
                return Some(self.float(f.value()));
            }
        } else if ty == t.bool_ {
            let (text, len) = if obj.as_ptr() == t.true_ { (b"true    ", 4) } else { (b"false   ", 5) };
            self.put_word(text, len);
            return Some(Ok(()));
        } else if obj.as_ptr() == t.none {
            self.put_word(b"null    ", 4);
            return Some(Ok(()));
        }
        None
    }

    pub(super) fn tuple(&mut self, tuple: &Bound<'py, PyTuple>, depth: u32) -> Result<(), SerializeError> {
        let depth = Self::enter(depth)?;
        self.byte(b'[')?;
        // A tuple cannot change, and `tuple` holds it (and so its items) alive.
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
    pub(super) fn key(&mut self, key: Borrowed<'_, 'py, PyAny>, separator: bool) -> Result<(), SerializeError> {
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
    pub(super) fn new_key(&mut self, key: Borrowed<'_, 'py, PyAny>) -> Result<(), SerializeError> {
        if let Ok(s) = key.cast_exact::<PyString>() {
            let utf8 = utf8_of(s)?;
            if self.seen_keys.again(s.as_ptr() as usize) {
                self.keys.insert(s, utf8, b",\"", b"\":");
            }
            self.escaped(utf8)?;
            return self.byte(b':');
        }
        if let Ok(s) = key.cast::<PyString>() {
            self.escaped(utf8_of(s)?)?;
            return self.byte(b':');
        }
        // orjson's rule: JSON object keys are strings, and nothing else is turned into one.
        Err(SerializeError::value(format!("dict key must be str, not {}: {}", type_name(&key), key_text(&key))))
    }

    #[inline(always)]
    pub(super) fn int(&mut self, obj: Borrowed<'_, 'py, PyAny>, subclass: bool) -> Result<(), SerializeError> {
        if let Some((negative, magnitude)) = borrowed::int_parts(obj, self.layouts) {
            self.reserve(24)?;
            self.pos = write_int(&mut self.buf, self.pos, negative, magnitude);
            return Ok(());
        }
        self.big_int(&obj.to_owned(), subclass)
    }

    #[cold]
    pub(super) fn big_int(&mut self, obj: &Bound<'py, PyAny>, subclass: bool) -> Result<(), SerializeError> {
        let text = int_text(obj, subclass)?;
        for step in text.as_bytes().chunks(STEP) {
            self.reserve(step.len())?;
            self.buf[self.pos..self.pos + step.len()].copy_from_slice(step);
            self.pos += step.len();
        }
        Ok(())
    }

    #[inline]
    pub(super) fn float(&mut self, value: f64) -> Result<(), SerializeError> {
        if !value.is_finite() {
            // orjson's choice: JSON has no NaN or Infinity.
            return self.small(b"null");
        }
        let mut buffer = zmij::Buffer::new();
        let text = buffer.format_finite(value).as_bytes();
        // At most 24 bytes (`-2.2250738585072014e-308`).
        self.reserve(32)?;
        self.buf[self.pos..self.pos + text.len()].copy_from_slice(text);
        self.pos += text.len();
        Ok(())
    }

    /// A str inside a container: from the value cache if this object was seen
    /// before, else written (and cached if seen for the second time).
    /// The caller has reserved `CACHED_COPY` bytes.
    #[inline(always)]
    pub(super) fn item_string(&mut self, s: Borrowed<'_, 'py, PyString>) -> Result<(), SerializeError> {
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
    pub(super) fn string(&mut self, s: Borrowed<'_, 'py, PyString>) -> Result<(), SerializeError> {
        let utf8 = utf8_of(s)?;
        self.escaped(utf8)
    }

    /// Writes `"bytes"` with JSON escapes.
    #[inline(always)]
    pub(super) fn escaped(&mut self, bytes: &[u8]) -> Result<(), SerializeError> {
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
    pub(super) fn long_escaped(&mut self, bytes: &[u8]) -> Result<(), SerializeError> {
        self.byte(b'"')?;
        for step in bytes.chunks(STEP) {
            self.reserve(6 * step.len() + 16)?;
            self.pos = escape_into(&mut self.buf, self.pos, step);
        }
        self.byte(b'"')
    }
}

#[inline(always)]
pub(super) fn utf8_of<'a>(s: Borrowed<'a, '_, PyString>) -> Result<&'a [u8], SerializeError> {
    borrowed::str_utf8(s).map_err(|err| not_utf8(s.py(), &err))
}

#[cold]
pub(super) fn not_utf8(py: Python<'_>, err: &PyErr) -> SerializeError {
    SerializeError::value(format!("str cannot be encoded as UTF-8 ({})", err.value(py)))
}

pub(super) fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type().name().map_or_else(|_| "<unknown type>".to_owned(), |n| n.to_string())
}

/// Whether `key` is a str that starts with `_`.
fn is_private(key: Borrowed<'_, '_, PyAny>) -> bool {
    key.cast::<PyString>().ok().and_then(|s| borrowed::str_utf8(s).ok()).is_some_and(|text| text.first() == Some(&b'_'))
}

/// A dict key as it appears in an error path or message (no user code runs to get it).
pub(super) fn key_text(key: &Bound<'_, PyAny>) -> String {
    if let Ok(s) = key.cast::<PyString>() {
        return s.to_string_lossy().into_owned();
    }
    if let Ok(b) = key.cast::<PyBool>() {
        return if b.is_true() { "True" } else { "False" }.to_owned();
    }
    if key.is_instance_of::<PyInt>() {
        if let Ok(text) = int_text(key, true) {
            return text;
        }
    }
    if let Ok(f) = key.cast::<PyFloat>() {
        let mut text = FloatText::new();
        if float_text(f.value(), &mut text).is_ok() {
            return String::from_utf8_lossy(text.as_bytes()).into_owned();
        }
    }
    if key.is_none() {
        return "None".to_owned();
    }
    format!("<{}>", type_name(key))
}
