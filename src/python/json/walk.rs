//! The type walk: each Python value written as JSON into the staging buffer.

use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};

use super::borrowed;
use super::cache::{SeenOnce, TextCache, CACHED_COPY};
use super::error::{SerializeError, Step};
use super::escape::{
    copy_clean_long, escape_into, escape_long, key_clean, lead_quote_clean, load_word, quote_clean, quote_escape_short,
    short_word, CLEAN_MAX, ESCAPE_ROOM, KEY_ROOM, LEAD_QUOTED_ROOM, QUOTED_ESCAPE_ROOM, QUOTED_ROOM,
};
use super::number::{float_text, int_text, write_int, FloatText};
use super::out::{Out, OutArray};
use super::staging::Staging;
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
            // Borrowed: `py.None()` would take a new reference and drop it, which
            // checks the GIL's state, on every call.
            none: pyo3::types::PyNone::get(py).as_ptr(),
        }
    }
}
/// Room an int needs (`write_int`), and a float (at most 24 bytes, such as
/// `-2.2250738585072014e-308`, written with 8-byte stores).
pub(super) const INT_ROOM: usize = 24;
pub(super) const FLOAT_ROOM: usize = 32;
// A container's item reserves `CACHED_COPY` bytes, which must cover both, and a
// short clean str in quotes (`item_string`).
const _: () = assert!(INT_ROOM <= CACHED_COPY && FLOAT_ROOM <= CACHED_COPY && QUOTED_ROOM <= CACHED_COPY);
const _: () = assert!(LEAD_QUOTED_ROOM <= CACHED_COPY + 1);
// A list's item writes its lead byte (`[` or a comma) and then an int or a float in one window of
// `CACHED_COPY` bytes (`Window`).
const _: () = assert!(INT_ROOM < CACHED_COPY && FLOAT_ROOM < CACHED_COPY);
// A dict's item reserves `2 * CACHED_COPY`: a key written in place (`key`) leaves `CACHED_COPY`.
const _: () = assert!(KEY_ROOM + CACHED_COPY <= 2 * CACHED_COPY);

/// Longest key that `key` escapes in place (longer ones go through `new_key`):
/// its room, six bytes a byte at worst, stays a small part of the staging buffer.
const LONG_KEY_MAX: usize = 128;

/// The misses beyond its hits after which a call stops looking strs up in the
/// value cache (see `Serializer::looks_up`).
pub(super) const VALUE_CREDIT: i64 = 256;

/// Source bytes escaped per step; a step needs at most `6 * STEP + ESCAPE_ROOM` bytes of room.
pub(super) const STEP: usize = 4096;

pub(super) struct Serializer<'s, 'g, 'py, S: Sink> {
    pub(super) py: Python<'py>,
    /// Staging buffer of `STAGING_CAPACITY` bytes (for a `WHOLE` sink, grown
    /// into the `bytes` object made); `buf[..pos]` is pending output.
    pub(super) buf: Staging,
    pub(super) pos: usize,
    pub(super) sink: &'s mut S,
    pub(super) types: Types,
    /// Which object layouts may be read directly.
    pub(super) layouts: borrowed::Layouts,
    pub(super) keys: TextCache<'s>,
    pub(super) values: TextCache<'s>,
    pub(super) seen: SeenOnce<'s>,
    /// The same for keys: a key is cached on its second sighting (one dict
    /// alone is not worth caching).
    pub(super) seen_keys: SeenOnce<'s>,
    /// The `default=` hook, if any.
    pub(super) default: Option<Bound<'py, PyAny>>,
    /// `default=` calls under way, one inside another's result.
    pub(super) default_depth: u32,
    /// The last dataclass type written, and how its instances are read (see
    /// `types.rs`), so that a list of one dataclass looks the class up once.
    pub(super) dataclass: Option<super::types::DataclassKind>,
    /// The last dataclass whose instances' `__dict__` is read directly, from
    /// an earlier call on this thread (kept in the scratch between calls), so
    /// that one dataclass written per call is not looked up each time.
    pub(super) known_class: Option<super::types::ClassStamp>,
    /// Counts the times Python code may have run (see `other`): a container
    /// walk that sees it move reads its container again.
    pub(super) epoch: u64,
    /// The value cache's credit this call: `VALUE_CREDIT` at the start, one
    /// more for each lookup that finds its str, one less for each that does
    /// not; lookups stop when it runs out (see `looks_up`).
    pub(super) value_credit: i64,
    /// Proof that the cyclic GC is paused while borrowed references are in use.
    pub(super) _gc: &'g borrowed::GcPause,
}

impl<'py, S: Sink> Serializer<'_, '_, 'py, S> {
    pub(super) fn flush(&mut self) -> Result<(), SerializeError> {
        if S::WHOLE && self.buf.in_bytes() {
            return self.flush_bytes();
        }
        if self.pos > 0 {
            self.sink.write_chunk(self.buf.chunk(self.pos)).map_err(SerializeError::sink)?;
            self.pos = 0;
        }
        Ok(())
    }

    /// [`Serializer::flush`] of an output written into a `bytes` object: the
    /// object itself goes to the sink.
    #[inline(never)]
    fn flush_bytes(&mut self) -> Result<(), SerializeError> {
        if let Some(bytes) = self.buf.take_bytes(self.py, self.pos)? {
            self.sink.write_bytes(bytes).map_err(SerializeError::sink)?;
            self.pos = 0;
        }
        Ok(())
    }

    /// Makes room for `n` more bytes (`n` at most the staging capacity).
    #[inline(always)]
    pub(super) fn reserve(&mut self, n: usize) -> Result<(), SerializeError> {
        if self.buf.len() - self.pos < n {
            self.make_room(n)?;
        }
        Ok(())
    }

    /// [`Serializer::reserve`] for a caller that keeps the write position in a
    /// local (`pos`) rather than in `self.pos`, so that it can stay in a register
    /// (a byte written to the buffer could be `self.pos` as far as the compiler
    /// knows, which makes it reload the field after every write); returns the
    /// position, which a flush moves back to 0.
    ///
    /// The room is tested in the form a slice's bounds check repeats (the
    /// position within the buffer, then the bytes after it), so that the
    /// compiler drops the checks of the writes that follow, such as a window's
    /// (`Window::at`); a position past the buffer's end is a bug (a panic).
    /// `n` is at most the staging capacity (a few KiB at the most here), so
    /// one flush or one growth always makes the room.
    #[inline(always)]
    pub(super) fn room(&mut self, pos: usize, n: usize) -> Result<usize, SerializeError> {
        let mut pos = pos;
        loop {
            let len = self.buf.len();
            if pos > len {
                room_missing();
            }
            if len - pos >= n {
                return Ok(pos);
            }
            self.pos = pos;
            self.make_room(n)?;
            pos = self.pos;
        }
    }

    /// [`Serializer::reserve`]'s slow path: flushes the staging buffer, or for
    /// a sink that takes the whole output at once, grows it.
    #[cold]
    #[inline(never)]
    fn make_room(&mut self, n: usize) -> Result<(), SerializeError> {
        if S::WHOLE {
            self.buf.grow(self.py, self.pos, self.pos + n)
        } else {
            self.flush()
        }
    }

    #[inline]
    pub(super) fn byte(&mut self, b: u8) -> Result<(), SerializeError> {
        self.reserve(1)?;
        self.buf.set(self.pos, b);
        self.pos += 1;
        Ok(())
    }

    /// Copies `bytes` (short: at most a few dozen).
    #[inline]
    pub(super) fn small(&mut self, bytes: &[u8]) -> Result<(), SerializeError> {
        self.reserve(bytes.len())?;
        for &b in bytes {
            self.buf.set(self.pos, b);
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

    /// A container's item that is not a scalar: an exact list or dict walked
    /// straight away (the usual case), anything else through `value`.
    #[inline(always)]
    fn nested(&mut self, obj: Borrowed<'_, 'py, PyAny>, depth: u32) -> Result<(), SerializeError> {
        let ty = obj.get_type_ptr();
        if ty == self.types.list {
            // SAFETY: the object's type is exactly `list`, so it is a `PyList`.
            return self.list(unsafe { obj.cast_unchecked::<PyList>() }, depth);
        } else if ty == self.types.dict {
            // SAFETY: the object's type is exactly `dict`, so it is a `PyDict`.
            return self.dict(unsafe { obj.cast_unchecked::<PyDict>() }, depth);
        }
        self.value(obj, depth)
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
    #[inline(always)]
    pub(super) fn dict_items<const SKIP_PRIVATE: bool>(
        &mut self,
        dict: Borrowed<'_, 'py, PyDict>,
        depth: u32,
    ) -> Result<(), SerializeError> {
        if depth == 0 {
            self.dict_walk::<SKIP_PRIVATE, true>(dict, depth)
        } else {
            self.dict_walk::<SKIP_PRIVATE, false>(dict, depth)
        }
    }

    /// [`Serializer::dict_items`]; `OUTER`: the dict is the value itself, whose
    /// keys are neither looked up in the key cache (empty when the walk starts
    /// with this dict) nor counted as seen (each comes once in it).
    ///
    /// A dict whose entries can be read directly has its leading scalar items
    /// (all of them, usually) written by a loop of its own, whose state stays in
    /// registers and which needs no reference to the dict (as `scalar_list`);
    /// from its first other item on, `dict_rest` takes over.
    #[cfg(not(Py_LIMITED_API))]
    fn dict_walk<const SKIP_PRIVATE: bool, const OUTER: bool>(
        &mut self,
        dict: Borrowed<'_, 'py, PyDict>,
        depth: u32,
    ) -> Result<(), SerializeError> {
        let depth = Self::enter(depth)?;
        // SAFETY: `self._gc` proves the cyclic GC is paused and the GIL is held.
        // The items are used only while their keys and scalar values are written,
        // which runs no Python code (see `scalar`; `key` and `room` run none
        // either), so the dict is not changed or freed meanwhile: no strong
        // reference to it is needed here (`dict_rest` takes one).
        let Some(mut entries) = (unsafe { borrowed::DictEntries::new(dict, self.layouts) }) else {
            return self.dict_rest::<SKIP_PRIVATE, OUTER>(dict, depth, None, None, b'{');
        };
        // The write position, kept in a local (see `room`) and stored back
        // around anything that writes through `self.pos`.
        let mut pos = self.pos;
        // The byte before a key: the `{` before the first, a comma after.
        let mut lead = b'{';
        while let Some((key, value)) = entries.next() {
            if SKIP_PRIVATE && is_private(key) {
                continue;
            }
            let item = self.dict_item::<OUTER>(key, value, lead, pos);
            lead = b',';
            match item {
                Some(Ok(end)) => pos = end,
                Some(Err(err)) => return Err(err),
                None => {
                    let pending = Some((key, value));
                    return self.dict_rest::<SKIP_PRIVATE, OUTER>(dict, depth, Some(entries.resume()), pending, lead);
                }
            }
        }
        self.pos = self.close_at(pos, lead, b'{', b'}')?;
        Ok(())
    }

    #[cfg(Py_LIMITED_API)]
    fn dict_walk<const SKIP_PRIVATE: bool, const OUTER: bool>(
        &mut self,
        dict: Borrowed<'_, 'py, PyDict>,
        depth: u32,
    ) -> Result<(), SerializeError> {
        let depth = Self::enter(depth)?;
        self.dict_rest::<SKIP_PRIVATE, OUTER>(dict, depth, None, None, b'{')
    }

    /// A dict's items from where `resume` says on (from the first with
    /// `None`) and its `}`, after the items before it, which the caller has
    /// written (`DictEntries`, and no Python code run since), and `pending`: an
    /// item whose key the caller has written and whose value (not a scalar) is
    /// walked first. `lead`: the byte before the next key, `{` if no key has
    /// been written (nor the `{`), else a comma.
    /// `depth` is the dict's own (its caller has counted it: `enter`).
    #[inline(never)]
    fn dict_rest<const SKIP_PRIVATE: bool, const OUTER: bool>(
        &mut self,
        dict: Borrowed<'_, 'py, PyDict>,
        depth: u32,
        resume: Option<borrowed::DictResume>,
        pending: Option<(Borrowed<'_, 'py, PyAny>, Borrowed<'_, 'py, PyAny>)>,
        mut lead: u8,
    ) -> Result<(), SerializeError> {
        // Held for the walk: Python code run further down (a `default=` hook, an
        // enum's value) could drop every other reference to this dict.
        let dict = dict.to_owned();
        let mut epoch = self.epoch;
        // SAFETY: `self._gc` proves the cyclic GC is paused and the GIL is held.
        // An item is used only until Python code next runs: a scalar is written at
        // once (no Python code runs for one), and for any other value this loop
        // takes a strong reference to the key, the value's own walk takes one to
        // the value, and the table is read again (`refresh`) once code has run.
        // `resume` is from the caller's `DictEntries` of this dict, and no Python
        // code has run since (the caller wrote only keys and scalars).
        let mut items = unsafe { borrowed::DictItems::new_at(dict.as_borrowed(), self.layouts, resume) };
        if let Some((key, value)) = pending {
            // The caller's item: no Python code has run since it was read.
            self.dict_nested(key, value, depth, &mut items, &mut epoch)?;
        }
        // The write position, kept in a local (see `room`) and stored back
        // around anything that writes through `self.pos`.
        let mut pos = self.pos;
        while let Some((key, value)) = items.next() {
            if SKIP_PRIVATE && is_private(key) {
                continue;
            }
            let item = self.dict_item::<OUTER>(key, value, lead, pos);
            lead = b',';
            match item {
                Some(Ok(end)) => pos = end,
                Some(Err(err)) => return Err(err),
                None => {
                    self.dict_nested(key, value, depth, &mut items, &mut epoch)?;
                    pos = self.pos;
                }
            }
        }
        self.pos = self.close_at(pos, lead, b'{', b'}')?;
        Ok(())
    }

    /// A dict's item at `pos`, after `lead` (the dict's `{`, or a comma): room
    /// for it, its key (as `key`) and, if its value is a scalar, the value (as
    /// `scalar`), and the new position; `None` for a value that is not a
    /// scalar, with the key written and `self.pos` after it (the value is the
    /// caller's: `dict_nested`). An error of the value names the key. The step
    /// `dict_walk` and `dict_rest` share.
    #[inline(always)]
    fn dict_item<const OUTER: bool>(
        &mut self,
        key: Borrowed<'_, 'py, PyAny>,
        value: Borrowed<'_, 'py, PyAny>,
        lead: u8,
        pos: usize,
    ) -> Option<Result<usize, SerializeError>> {
        // Room for a cached key and a cached value (`key` and `scalar` rely on it).
        let pos = match self.room(pos, 2 * CACHED_COPY) {
            Ok(pos) => pos,
            Err(err) => return Some(Err(err)),
        };
        let pos = match self.key::<OUTER>(key, lead, pos) {
            Ok(pos) => pos,
            Err(err) => return Some(Err(err)),
        };
        match self.scalar(value, pos) {
            Some(Ok(end)) => Some(Ok(end)),
            Some(Err(err)) => Some(Err(at_key(err, key.to_owned()))),
            // `scalar` has set `self.pos`.
            None => None,
        }
    }

    /// A dict's item whose value is not a scalar, its key written (`self.pos`
    /// after it): the value's walk, with a strong reference to the key (Python
    /// code may run in it, see `dict_rest`), and `items` read again if code
    /// ran (`epoch`, the serializer's epoch when they were last read). An
    /// error names the key. `dict_rest`'s step for such a value.
    #[inline(always)]
    fn dict_nested(
        &mut self,
        key: Borrowed<'_, 'py, PyAny>,
        value: Borrowed<'_, 'py, PyAny>,
        depth: u32,
        items: &mut borrowed::DictItems<'_, 'py>,
        epoch: &mut u64,
    ) -> Result<(), SerializeError> {
        let key = key.to_owned();
        let result = self.nested(value, depth);
        if self.epoch != *epoch {
            items.refresh();
            *epoch = self.epoch;
        }
        match result {
            Ok(()) => Ok(()),
            Err(err) => Err(at_key(err, key)),
        }
    }

    /// A list: one whose first item is a list or a dict by `list_rest`, any
    /// other by `scalar_list`.
    #[inline(always)]
    pub(super) fn list(&mut self, list: Borrowed<'_, 'py, PyList>, depth: u32) -> Result<(), SerializeError> {
        self.pos = self.list_at::<false>(list, depth, self.pos)?;
        Ok(())
    }

    /// [`Serializer::list`] at `pos` (kept in a local by the caller, see
    /// `room`); returns the position after the `]`. `INLINE`: a list of
    /// scalars is walked here (`scalar_items`) rather than by a call to
    /// `scalar_list`: for `list_rest`'s items, often short lists, where the
    /// call's cost is a good part of the walk's. In the stable-ABI build, which
    /// reads no item array directly, every list goes to `list_rest`.
    #[inline(always)]
    fn list_at<const INLINE: bool>(
        &mut self,
        list: Borrowed<'_, 'py, PyList>,
        depth: u32,
        pos: usize,
    ) -> Result<usize, SerializeError> {
        #[cfg(not(Py_LIMITED_API))]
        {
            let first = borrowed::first_item_type(list);
            if first != self.types.list && first != self.types.dict {
                return if INLINE { self.scalar_items(list, depth, pos) } else { self.scalar_list(list, depth, pos) };
            }
        }
        let depth = Self::enter(depth)?;
        // A list of short lists of floats (coordinate pairs, say), found by its
        // first item's first item: its rows in one run (see `float_rows`).
        #[cfg(not(Py_LIMITED_API))]
        if borrowed::first_row_item_type(list) == self.types.float {
            if let Some(written) = self.float_rows(list, depth, pos) {
                let (pos, next) = written?;
                return self.list_rest(list, next, depth, b',', pos);
            }
        }
        self.list_rest(list, 0, depth, b'[', pos)
    }

    /// [`Serializer::scalar_items`], called.
    #[cfg(not(Py_LIMITED_API))]
    #[inline(never)]
    fn scalar_list(
        &mut self,
        list: Borrowed<'_, 'py, PyList>,
        depth: u32,
        pos: usize,
    ) -> Result<usize, SerializeError> {
        self.scalar_items(list, depth, pos)
    }

    /// A list's leading scalars (all its items, usually) by a loop of its own,
    /// kept small so that its state stays in registers, and from the first
    /// other item on by `list_rest`; at `pos`, and returns the position after it.
    #[cfg(not(Py_LIMITED_API))]
    #[inline(always)]
    fn scalar_items(
        &mut self,
        list: Borrowed<'_, 'py, PyList>,
        depth: u32,
        pos: usize,
    ) -> Result<usize, SerializeError> {
        let depth = Self::enter(depth)?;
        // SAFETY: the GC is paused (`self._gc`) and the GIL held; the items are
        // used only while scalars are written, which runs no Python code (see
        // `scalar`), so the list is not changed or freed meanwhile either: this
        // loop needs no strong reference to it (`list_rest` takes one).
        let mut items = unsafe { borrowed::ListItems::new_at(list, borrowed::Layouts::NONE, 0) };
        // The write position, kept in a local as in `dict_items`.
        let mut pos = pos;
        // The first item apart: a float there (found by `put_scalar`'s own type
        // tests, none added for other items) makes it a float list.
        let Some(item) = items.next() else {
            return self.close_at(pos, b'[', b'[', b']');
        };
        match self.list_item::<true>(item, pos, b'[') {
            Some(Ok(end)) => pos = end,
            Some(Err(err)) => return Err(err.at(Step::Index(0))),
            None if item.get_type_ptr() == self.types.float => return self.float_list(list, 0, depth, b'[', self.pos),
            None => return self.list_rest(list, 0, depth, b'[', self.pos),
        }
        // The byte before an item: a comma.
        let mut lead = b',';
        while let Some(item) = items.next() {
            match self.list_item::<true>(item, pos, lead) {
                Some(Ok(end)) => pos = end,
                Some(Err(err)) => return Err(err.at(Step::Index(items.taken() - 1))),
                // A float that another follows starts the list's float runs
                // (`float_list`: ints first, then floats, say); a float alone
                // is written here (`put_scalar` without `RUNS`), as a run's
                // set-up would cost more than it saves.
                None if item.get_type_ptr() == self.types.float => {
                    if items.peek_type() == self.types.float {
                        return self.float_list(list, items.taken() - 1, depth, lead, self.pos);
                    }
                    match self.put_scalar::<true, false>(item, self.pos, lead) {
                        Some(Ok(end)) => pos = end,
                        Some(Err(err)) => return Err(err.at(Step::Index(items.taken() - 1))),
                        None => return self.list_rest(list, items.taken() - 1, depth, lead, self.pos),
                    }
                }
                None => {
                    // The rest goes on from this item, and its lead byte.
                    return self.list_rest(list, items.taken() - 1, depth, lead, self.pos);
                }
            }
            lead = b',';
        }
        self.close_at(pos, lead, b'[', b']')
    }

    /// A list's items from `start` on and its `]`, after the items before
    /// `start`, which the caller has written (and their `[`): the first item
    /// here goes after `lead`, `[` if it is the list's first, else a comma.
    /// `depth` is the list's own (its caller has counted it: `enter`). At
    /// `pos`; returns the position after the `]`.
    #[inline(always)]
    pub(super) fn list_rest(
        &mut self,
        list: Borrowed<'_, 'py, PyList>,
        start: usize,
        depth: u32,
        lead: u8,
        pos: usize,
    ) -> Result<usize, SerializeError> {
        self.list_walk::<false>(list, start, depth, lead, pos)
    }

    /// [`Serializer::list_rest`]; `AHEAD`: the items are prefetched. The
    /// walk without finds out whether they should be, and if so hands over
    /// to the walk with, so that neither tests for it at each item.
    #[inline(never)]
    fn list_walk<const AHEAD: bool>(
        &mut self,
        list: Borrowed<'_, 'py, PyList>,
        start: usize,
        depth: u32,
        mut lead: u8,
        pos: usize,
    ) -> Result<usize, SerializeError> {
        let mut epoch = self.epoch;
        // Held for the walk, as in `dict`.
        let list = list.to_owned();
        // SAFETY: as in `dict`: the GC is paused (`self._gc`), the GIL held, an item
        // is used only until Python code next runs, and the item array is read
        // again (`refresh`) once code has run.
        let mut items = unsafe { borrowed::ListItems::new_at(list.as_borrowed(), self.layouts, start) };
        if !AHEAD && items.prefetching() {
            return self.list_walk::<true>(list.as_borrowed(), start, depth, lead, pos);
        }
        // The write position, kept in a local as in `dict_items`.
        let mut pos = pos;
        while let Some(item) = items.next() {
            // A list or a dict (the usual item here: see `list`) is tested for
            // first, without the scalar types' tests.
            let ty = item.get_type_ptr();
            let result = if ty == self.types.list {
                // The lead byte, then the list, both at the local position.
                match self.lead_at(pos, lead) {
                    Ok(at) => {
                        // SAFETY: the object's type is exactly `list`, so it is a `PyList`.
                        self.list_at::<true>(unsafe { item.cast_unchecked::<PyList>() }, depth, at)
                    }
                    Err(err) => Err(err),
                }
            } else {
                if ty == self.types.dict {
                    self.pos = pos;
                } else {
                    // In the stable-ABI build a float is not written here but
                    // starts a run (`float_items`); the other build's lists
                    // that start with floats have theirs (`float_list`).
                    match self.list_item::<{ cfg!(Py_LIMITED_API) }>(item, pos, lead) {
                        Some(Ok(end)) => {
                            pos = end;
                            lead = b',';
                            continue;
                        }
                        Some(Err(err)) => return Err(err.at(Step::Index(items.taken() - 1))),
                        // `list_item` has set `self.pos`.
                        None => {
                            // (By index, not by `&mut items`, which would keep
                            // the walk's state in memory rather than in registers.)
                            #[cfg(Py_LIMITED_API)]
                            if ty == self.types.float {
                                let next;
                                (pos, next) =
                                    self.float_items(list.as_borrowed(), items.taken() - 1, lead, self.pos)?;
                                items.go_on_from(next);
                                lead = b',';
                                continue;
                            }
                        }
                    }
                }
                self.byte(lead).and_then(|()| self.nested(item, depth)).map(|()| self.pos)
            };
            if self.epoch != epoch {
                // Counted before `refresh`, which may shorten the list.
                let index = items.taken() - 1;
                items.refresh();
                epoch = self.epoch;
                pos = result.map_err(|err| err.at(Step::Index(index)))?;
            } else {
                // Counted only on an error (the list has not been read again).
                pos = result.map_err(|err| err.at(Step::Index(items.taken() - 1)))?;
            }
            lead = b',';
        }
        self.close_at(pos, lead, b'[', b']')
    }

    /// The byte `lead` at `pos` (before an item that makes its own room);
    /// returns the position after it. One test, the store's own bounds check,
    /// on the usual path (`room` tests twice).
    #[inline(always)]
    fn lead_at(&mut self, pos: usize, lead: u8) -> Result<usize, SerializeError> {
        if self.buf.try_set(pos, lead) {
            return Ok(pos + 1);
        }
        self.byte_after_flush(pos, lead)
    }

    /// The byte `b` at `pos` with the staging buffer full: the slow path of
    /// [`Serializer::lead_at`] and [`Serializer::close_at`].
    #[cold]
    #[inline(never)]
    fn byte_after_flush(&mut self, pos: usize, b: u8) -> Result<usize, SerializeError> {
        let pos = self.room(pos, 1)?;
        self.buf.set(pos, b);
        Ok(pos + 1)
    }

    /// A container's closing byte `close` at `pos`, after `lead`: a comma
    /// usually, so one byte, stored as in `lead_at`; or `open` (`[` or `{`),
    /// not yet written, for an empty container, which gets both. Returns the
    /// position after it.
    #[inline(always)]
    pub(super) fn close_at(&mut self, pos: usize, lead: u8, open: u8, close: u8) -> Result<usize, SerializeError> {
        if lead != open {
            if self.buf.try_set(pos, close) {
                return Ok(pos + 1);
            }
            return self.byte_after_flush(pos, close);
        }
        let pos = self.room(pos, 2)?;
        self.buf[pos..pos + 2].put(&[open, close]);
        Ok(pos + 2)
    }

    /// A list's item at `pos`, after `lead` (its list's `[`, or a comma): the
    /// lead byte and the item if it is a scalar (as `scalar`), and the new
    /// position; `None` for an item that is not a scalar (a float too, with
    /// `RUNS`), with nothing written and `self.pos` where the caller goes on
    /// (the room made for the item may have flushed the staging buffer). The
    /// step `scalar_items` and `list_rest` share; it makes its own room.
    #[inline(always)]
    pub(super) fn list_item<const RUNS: bool>(
        &mut self,
        item: Borrowed<'_, 'py, PyAny>,
        pos: usize,
        lead: u8,
    ) -> Option<Result<usize, SerializeError>> {
        // Room for the lead byte and a cached value.
        let pos = match self.room(pos, CACHED_COPY + 1) {
            Ok(pos) => pos,
            Err(err) => return Some(Err(err)),
        };
        self.put_scalar::<true, RUNS>(item, pos, lead)
    }

    /// Writes a container's item at `pos` if it is of an exact scalar type (str,
    /// int, float, bool, None), which runs no Python code, and returns the new
    /// position; `None` for anything else, with `self.pos` set to `pos`, where
    /// the caller goes on. The caller has reserved `CACHED_COPY` bytes from
    /// `pos` (which may have flushed the staging buffer, moving its position),
    /// and keeps the position (`self.pos` is not kept up to date otherwise).
    #[inline(always)]
    pub(super) fn scalar(
        &mut self,
        obj: Borrowed<'_, 'py, PyAny>,
        pos: usize,
    ) -> Option<Result<usize, SerializeError>> {
        self.put_scalar::<false, false>(obj, pos, 0)
    }

    /// [`Serializer::scalar`], with `LEAD`: the byte `lead` at `pos` first
    /// (for a scalar; nothing is written for anything else), and the item at
    /// `pos + 1`; `CACHED_COPY + 1` bytes reserved from `pos`.
    ///
    /// The type is settled before anything is written, and the bytes are
    /// written through one window of the staging buffer: a byte stored through
    /// `self.buf` could be any field of `self` as far as the compiler knows, so
    /// it would read the buffer's address and length, and the types, again
    /// after each store.
    #[inline(always)]
    pub(super) fn put_scalar<const LEAD: bool, const RUNS: bool>(
        &mut self,
        obj: Borrowed<'_, 'py, PyAny>,
        pos: usize,
        lead: u8,
    ) -> Option<Result<usize, SerializeError>> {
        let at = usize::from(LEAD);
        let ty = obj.get_type_ptr();
        let t = &self.types;
        if ty == t.str_ {
            // SAFETY: the object's type is exactly `str` (`t.str_` is its type
            // object), so it is a `PyString`. (`cast_exact` would compare the
            // type a second time, and build an error value on its failure path.)
            let s = unsafe { obj.cast_unchecked::<PyString>() };
            return Some(self.item_string::<LEAD>(s, pos, lead));
        }
        if ty == t.int {
            // SAFETY: the object's type is exactly `int` (`t.int` is its type object).
            let parts = unsafe { borrowed::exact_int_parts(obj, self.layouts) };
            let (window, base) = Window::<LEAD>::at(&mut self.buf, pos, lead);
            if let Some((negative, magnitude)) = parts {
                return Some(Ok(base + write_int(window, pos + at - base, negative, magnitude)));
            }
            return Some(self.put_int(obj, pos + at));
        } else if ty == t.float {
            if RUNS {
                // As for any other item that is not written here (below).
                self.pos = pos;
                return None;
            }
            // SAFETY: the object's type is exactly `float`, so it is a `PyFloat`.
            let value = unsafe { obj.cast_unchecked::<PyFloat>() }.value();
            let (window, base) = Window::<LEAD>::at(&mut self.buf, pos, lead);
            return Some(Ok(base + put_float(window, pos + at - base, value)));
        } else if ty == t.bool_ {
            let (word, len) = if obj.as_ptr() == t.true_ { (b"true    ", 4) } else { (b"false   ", 5) };
            let (window, base) = Window::<LEAD>::at(&mut self.buf, pos, lead);
            return Some(Ok(base + put_word(window, pos + at - base, word, len)));
        } else if obj.as_ptr() == t.none {
            let (window, base) = Window::<LEAD>::at(&mut self.buf, pos, lead);
            return Some(Ok(base + put_word(window, pos + at - base, b"null    ", 4)));
        }
        // Stored here, on this path alone: a test of the result after the
        // paths join would cost every item.
        self.pos = pos;
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

    /// `lead` (the dict's `{` before its first key, else a comma), then a dict
    /// key (a str; anything else is refused) and its colon, at `pos`; returns
    /// the new position.
    ///
    /// The caller has reserved `CACHED_COPY` bytes, and as many are left after.
    /// `OUTER`: a key of the outermost dict (see `dict_walk`), taken as held
    /// by that dict alone.
    #[inline(always)]
    pub(super) fn key<const OUTER: bool>(
        &mut self,
        key: Borrowed<'_, 'py, PyAny>,
        lead: u8,
        pos: usize,
    ) -> Result<usize, SerializeError> {
        // Only exact `str` keys are ever cached, so an address match is enough;
        // and the cache holds a reference to each, so a key with one reference
        // (held by this dict alone) is not there: no lookup for it.
        let shared = !OUTER && borrowed::shared(key);
        if shared {
            if let Some(entry) = self.keys.get(key.as_ptr() as usize) {
                // A fixed-size copy of `,"key":`, whose comma `lead` replaces;
                // the staging bytes past the key are scratch.
                let dst = &mut self.buf[pos..pos + CACHED_COPY];
                dst.put(&entry.text[..CACHED_COPY]);
                dst.set(0, lead);
                return Ok(pos + entry.len);
            }
        }
        let mut seen = false;
        if let Ok(s) = key.cast_exact::<PyString>() {
            // Only text read straight from the object is written here: anything
            // else (and any error) is `new_key`'s.
            if let Some(text) = borrowed::str_text_direct(s) {
                let utf8 = text.bytes();
                // A key held by this dict alone (made at run time, such as
                // `f"k{i}"`) cannot come again: never cached (see `item_string`).
                // A shared one is cached on its second sighting this call.
                if shared && self.seen_keys.again(s.as_ptr() as usize) {
                    self.keys.insert(s, utf8, b",\"", b"\":");
                }
                seen = true;
                if utf8.len() <= CLEAN_MAX {
                    // If clean, in the room reserved (`KEY_ROOM` of it, which
                    // leaves `CACHED_COPY`).
                    if let Some(end) = key_clean(&mut self.buf, pos, lead, text) {
                        return Ok(end);
                    }
                } else if utf8.len() <= LONG_KEY_MAX {
                    return self.long_key(utf8, lead, pos);
                }
            }
        }
        self.pos = pos;
        self.byte(lead)?;
        self.new_key(key, seen)?;
        self.reserve(CACHED_COPY)?;
        Ok(self.pos)
    }

    /// A key of `CLEAN_MAX` to `LONG_KEY_MAX` bytes not cached, escaped at
    /// `pos` after `lead` (as in `key`) and followed by its colon; returns
    /// the new position, with `CACHED_COPY` bytes of room left after it (as
    /// `key` promises).
    #[inline(always)]
    fn long_key(&mut self, utf8: &[u8], lead: u8, pos: usize) -> Result<usize, SerializeError> {
        // `,"`, the escaped text and what its stores may run past it, `":`.
        let pos = self.room(pos, 6 * LONG_KEY_MAX + ESCAPE_ROOM + 4 + CACHED_COPY)?;
        self.buf.set(pos, lead);
        self.buf.set(pos + 1, b'"');
        let end = match copy_clean_long(&mut self.buf, pos + 2, utf8) {
            Some(end) => end,
            None => escape_long(&mut self.buf, pos + 2, utf8),
        };
        self.buf.set(end, b'"');
        self.buf.set(end + 1, b':');
        Ok(end + 2)
    }

    /// A key that `key` did not write: one needing escapes, longer than
    /// `LONG_KEY_MAX`, a str subclass, a str whose UTF-8 text must be made, or
    /// not a str (refused). `seen`: `key` has already counted this sighting
    /// towards caching it.
    #[cold]
    pub(super) fn new_key(&mut self, key: Borrowed<'_, 'py, PyAny>, seen: bool) -> Result<(), SerializeError> {
        if let Ok(s) = key.cast_exact::<PyString>() {
            let utf8 = utf8_of(s)?;
            if !seen && borrowed::shared(key) && self.seen_keys.again(s.as_ptr() as usize) {
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
            self.reserve(INT_ROOM)?;
            self.pos = write_int(&mut self.buf, self.pos, negative, magnitude);
            return Ok(());
        }
        self.big_int(&obj.to_owned(), subclass)
    }

    /// An exact int (its type compared with `int`'s by the caller) at `pos`
    /// (`INT_ROOM` bytes reserved); returns the new position.
    #[inline(always)]
    pub(super) fn put_int(&mut self, obj: Borrowed<'_, 'py, PyAny>, pos: usize) -> Result<usize, SerializeError> {
        // The same compare as the caller's (`scalar`), with the same loaded
        // `types.int`: the compiler drops it after inlining, where the compare
        // inside `int_parts` (with `int`'s static type object) stayed.
        let parts = if obj.get_type_ptr() == self.types.int {
            // SAFETY: `obj`'s type is `int` (`types.int` is its type object).
            unsafe { borrowed::exact_int_parts(obj, self.layouts) }
        } else {
            None
        };
        if let Some((negative, magnitude)) = parts {
            return Ok(write_int(&mut self.buf, pos, negative, magnitude));
        }
        self.pos = pos;
        self.big_int(&obj.to_owned(), false)?;
        Ok(self.pos)
    }

    #[cold]
    pub(super) fn big_int(&mut self, obj: &Bound<'py, PyAny>, subclass: bool) -> Result<(), SerializeError> {
        let text = int_text(obj, subclass)?;
        for step in text.as_bytes().chunks(STEP) {
            self.reserve(step.len())?;
            self.buf[self.pos..self.pos + step.len()].put(step);
            self.pos += step.len();
        }
        Ok(())
    }

    #[inline]
    pub(super) fn float(&mut self, value: f64) -> Result<(), SerializeError> {
        self.reserve(FLOAT_ROOM)?;
        self.pos = put_float(&mut self.buf, self.pos, value);
        Ok(())
    }

    /// A str inside a container, at `pos`: from the value cache if this object
    /// was seen before (and cached if seen for the second time), else written.
    /// With `LEAD` (a list's item), `lead` goes first, at `pos`, and the str
    /// after it. The caller has reserved `CACHED_COPY` bytes (one more with
    /// `LEAD`); returns the new position.
    #[inline(always)]
    pub(super) fn item_string<const LEAD: bool>(
        &mut self,
        s: Borrowed<'_, 'py, PyString>,
        pos: usize,
        lead: u8,
    ) -> Result<usize, SerializeError> {
        let at = usize::from(LEAD);
        if self.looks_up(s) {
            if LEAD {
                self.buf.set(pos, lead);
            }
            return self.shared_string(s, pos + at);
        }
        let direct = borrowed::str_text_direct(s);
        if let Some(text) = direct {
            // Short clean text fits the room the caller reserved (`QUOTED_ROOM`
            // of it): no reserve of its own. A lead byte goes in the same
            // window (`lead_quote_clean`).
            let end = if LEAD {
                lead_quote_clean(&mut self.buf, pos, lead, text)
            } else {
                quote_clean(&mut self.buf, pos, text)
            };
            if let Some(end) = end {
                return Ok(end);
            }
        }
        if LEAD {
            self.buf.set(pos, lead);
        }
        match direct {
            Some(text) => self.escaped_at(text.bytes(), pos + at),
            None => self.new_string(s, pos + at),
        }
    }

    /// Whether `item_string` looks `s` up in the value cache: a str with one
    /// reference is held by its container alone and cannot come again in the
    /// value (most strs in real data are made one by one, each seen once); nor
    /// once the lookups of this call have missed more often than they hit, by
    /// `VALUE_CREDIT`: strs held elsewhere too but written once each (the same
    /// strs in two lists) cost more to look up than to write.
    #[inline(always)]
    fn looks_up(&self, s: Borrowed<'_, 'py, PyString>) -> bool {
        borrowed::shared(s) && self.value_credit > 0
    }

    /// [`Serializer::item_string`] for a str looked up in the value cache: its
    /// cached text written at `pos`, or else (`missed_string`) its text.
    #[inline(always)]
    fn shared_string(&mut self, s: Borrowed<'_, 'py, PyString>, pos: usize) -> Result<usize, SerializeError> {
        if let Some(entry) = self.values.get(s.as_ptr() as usize) {
            // A fixed-size copy; the staging bytes past the value are scratch.
            self.buf[pos..pos + CACHED_COPY].put(&entry.text[..CACHED_COPY]);
            self.value_credit += 1;
            return Ok(pos + entry.len);
        }
        self.missed_string(s, pos)
    }

    /// [`Serializer::shared_string`] for a str not in the value cache: its
    /// text (cached if this is its second sighting) written at `pos`. Called,
    /// not inlined: the list loops keep more of their state in registers
    /// without it (nested lists of ints: 11.6M instructions per call with the
    /// whole lookup inlined, 10.6M without).
    #[inline(never)]
    fn missed_string(&mut self, s: Borrowed<'_, 'py, PyString>, pos: usize) -> Result<usize, SerializeError> {
        self.value_credit -= 1;
        let utf8 = utf8_of(s)?;
        // Only a str short enough to be cached is remembered as seen.
        let address = s.as_ptr() as usize;
        if utf8.len() <= CACHED_COPY - 2 && self.seen.again(address) {
            self.values.insert(s, utf8, b"\"", b"\"");
        }
        self.quoted_at(utf8, pos)
    }

    /// [`Serializer::item_string`] for a str whose UTF-8 text is not in the
    /// object yet (or a str that cannot be encoded), and every str in the
    /// stable-ABI build: not cold.
    #[inline(never)]
    fn new_string(&mut self, s: Borrowed<'_, 'py, PyString>, pos: usize) -> Result<usize, SerializeError> {
        // `item_string` has found the text not in the object: no second look.
        let utf8 = borrowed::str_utf8_encoded(s).map_err(|err| not_utf8(s.py(), &err))?;
        self.quoted_at(utf8, pos)
    }

    /// `"utf8"` at `pos`, copied whole if short and clean (`quote_clean`), else
    /// with its escapes (`escaped_at`); returns the new position.
    #[inline(always)]
    fn quoted_at(&mut self, utf8: &[u8], pos: usize) -> Result<usize, SerializeError> {
        if let Some(end) = quote_clean(&mut self.buf, pos, utf8) {
            return Ok(end);
        }
        self.escaped_at(utf8, pos)
    }

    /// `"utf8"` with its escapes at `pos`, for text that [`quote_clean`] did
    /// not take (longer than `CLEAN_MAX`, or with a byte to escape); returns
    /// the new position.
    #[inline(never)]
    fn escaped_at(&mut self, utf8: &[u8], pos: usize) -> Result<usize, SerializeError> {
        if utf8.len() > CLEAN_MAX {
            self.pos = pos;
            self.escaped(utf8)?;
            return Ok(self.pos);
        }
        // The quotes and the escaped text.
        let pos = self.room(pos, QUOTED_ESCAPE_ROOM)?;
        Ok(quote_escape_short(&mut self.buf, pos, utf8))
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
        self.reserve(6 * bytes.len() + ESCAPE_ROOM + 2)?;
        let mut pos = self.pos;
        self.buf.set(pos, b'"');
        pos = escape_into(&mut self.buf, pos + 1, bytes);
        self.buf.set(pos, b'"');
        self.pos = pos + 1;
        Ok(())
    }

    #[cold]
    pub(super) fn long_escaped(&mut self, bytes: &[u8]) -> Result<(), SerializeError> {
        self.byte(b'"')?;
        for step in bytes.chunks(STEP) {
            self.reserve(6 * step.len() + ESCAPE_ROOM)?;
            self.pos = escape_into(&mut self.buf, self.pos, step);
        }
        self.byte(b'"')
    }
}

/// The staging bytes a scalar other than a str is written to: with `LEAD` (a
/// list's item), `CACHED_COPY` from the byte before the item, `lead`, which is
/// written here (the item's own bytes then go at offset 1): the writers'
/// offsets into a slice of known length need no bounds checks.
struct Window<const LEAD: bool>;

impl<const LEAD: bool> Window<LEAD> {
    /// The window for an item at `pos`, and where it starts in `buf`; without
    /// `LEAD` (a dict's value), all of `buf`: a dict's own stores come between
    /// its values', and the window's test would cost more than it saves.
    #[inline(always)]
    fn at(buf: &mut Out, pos: usize, lead: u8) -> (&mut Out, usize) {
        if !LEAD {
            return (buf, 0);
        }
        let window = item_window(buf, pos);
        window.set(0, lead);
        (window, pos)
    }
}

/// The `CACHED_COPY` bytes of `buf` from `pos`, reserved by the caller: a list
/// item's window (see [`Window`]).
#[inline(always)]
pub(super) fn item_window(buf: &mut Out, pos: usize) -> &mut OutArray<CACHED_COPY> {
    match buf.get_mut(pos..).and_then(|b| b.first_chunk_mut()) {
        Some(window) => window,
        None => room_missing(),
    }
}

/// A window asked for past the room reserved: a bug.
#[cold]
#[inline(never)]
fn room_missing() -> ! {
    panic!("staging buffer: room not reserved")
}

/// Writes the first `len` bytes of `word` at `pos` with one fixed-size copy (the
/// bytes past them are scratch; 8 bytes of room); returns the new position.
#[inline(always)]
pub(super) fn put_word(buf: &mut Out, pos: usize, word: &[u8; 8], len: usize) -> usize {
    buf[pos..pos + 8].put(word);
    pos + len
}

/// Writes a float at `pos` (`FLOAT_ROOM` bytes of room); returns the new position.
#[inline(always)]
pub(super) fn put_float(buf: &mut Out, pos: usize, value: f64) -> usize {
    if !value.is_finite() {
        // orjson's choice: JSON has no NaN or Infinity.
        return put_word(buf, pos, b"null    ", 4);
    }
    let mut buffer = zmij::Buffer::new();
    copy_short(buf, pos, buffer.format_finite(value).as_bytes())
}

/// Copies `text` (at most 24 bytes) to `buf` at `pos` with fixed-size stores
/// rather than a `memcpy` call: the first 8 bytes, the last 8 (overlapping)
/// and, past 16, the middle 8; shorter text as one word padded with scratch.
/// Needs 8 bytes of room; returns the new position.
#[inline(always)]
pub(super) fn copy_short(buf: &mut Out, pos: usize, text: &[u8]) -> usize {
    // Longer text would leave bytes 16 to `len - 8` unwritten.
    debug_assert!(text.len() <= 24, "copy_short: text of {} bytes", text.len());
    let len = text.len();
    if len < 8 {
        buf[pos..pos + 8].put(&short_word(text).to_le_bytes());
    } else {
        let (head, tail) = (load_word(text), load_word(&text[len - 8..]));
        buf[pos..pos + 8].put(&head.to_le_bytes());
        if len > 16 {
            buf[pos + 8..pos + 16].put(&load_word(&text[8..]).to_le_bytes());
        }
        buf[pos + len - 8..pos + len].put(&tail.to_le_bytes());
    }
    pos + len
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

/// `err`, from a dict item's value, with the item's `key` in its path. Out of
/// line, and given the key (a strong reference, dropped here): the walks pass
/// it only the key's pointer, which stays in a register, and drop their own
/// reference to it on the success path alone.
#[cold]
#[inline(never)]
fn at_key(err: SerializeError, key: Bound<'_, PyAny>) -> SerializeError {
    err.at(Step::Key(key_text(&key)))
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
