//! The JSON serializer's fast paths through the C API: a pause of the cyclic GC,
//! dict and list items as borrowed references, str text and small ints read
//! straight from the objects, and prefetches ahead of a walk through a long list
//! of dicts.
//!
//! Every reference-count change or C-API call per value is time the serializer
//! spends outside its own code; these helpers read CPython's objects directly
//! where the (non-limited) API describes their layout, and where it does not
//! (a dict's entry table, an int's digits) only after [`Layouts::get`] has
//! checked, once per process, that this interpreter is CPython 3.11, 3.12 or
//! 3.13 with the layout they expect; elsewhere they fall back to the C API. They
//! are sound only while no Python code runs, which [`GcPause`] and the
//! serializer's rules guarantee (see `json/mod.rs`): where the serializer runs
//! Python code (a `default=` hook, an enum's value, a dataclass's fields) it
//! holds strong references to what it keeps across that code, and reads the
//! containers it is walking again afterwards (`refresh`).
//!
//! Built for the stable ABI (`Py_LIMITED_API`, the cargo feature "abi3"), the
//! same functions take the C API's path only: no object is read directly. A
//! free-threaded build (`Py_GIL_DISABLED`) also reads no dict or int directly
//! (its object headers and dict keys differ), and 3.14 and later read str
//! objects through the C API (pyo3 no longer describes their layout there).

use std::marker::PhantomData;

use pyo3::ffi;
use pyo3::prelude::*;
#[cfg(not(any(Py_LIMITED_API, Py_GIL_DISABLED)))]
use pyo3::sync::PyOnceLock;
#[cfg(not(any(Py_LIMITED_API, Py_GIL_DISABLED)))]
use pyo3::types::PyDictMethods;
#[cfg(not(Py_LIMITED_API))]
use pyo3::types::PyInt;
use pyo3::types::{PyDict, PyList, PyString};

/// Pauses the cyclic garbage collector while alive (restoring its previous
/// state on drop), so that no allocation can trigger a collection and with it
/// a finalizer (`__del__`, weakref callbacks): arbitrary Python code that could
/// change the objects being serialized.
pub struct GcPause {
    was_enabled: bool,
    /// Holds the GIL's lifetime: the pause is ended by the thread that began it.
    _not_send: PhantomData<*mut ()>,
}

impl GcPause {
    pub fn new(_py: Python<'_>) -> Self {
        // SAFETY: the caller holds the GIL (the `Python` token proves it);
        // PyGC_Disable only flips the collector's flag and returns the old one.
        let was_enabled = unsafe { ffi::PyGC_Disable() } != 0;
        Self { was_enabled, _not_send: PhantomData }
    }
}

impl GcPause {
    /// Pauses the collector again after Python code ran, which may have turned
    /// it back on (`gc.enable()` in a `default=` hook): the walk that follows
    /// relies on the pause. The state restored on drop stays the one found at
    /// the start.
    pub fn renew(&self) {
        // SAFETY: as in `new`: the GIL is held by this thread (`GcPause` is
        // !Send and lives inside the serializer's call, which holds it).
        unsafe { ffi::PyGC_Disable() };
    }
}

impl Drop for GcPause {
    fn drop(&mut self) {
        if self.was_enabled {
            // SAFETY: `GcPause` is !Send and created under the GIL, which this
            // thread still holds (the serializer never releases it while paused).
            unsafe { ffi::PyGC_Enable() };
        }
    }
}

/// Which object layouts outside the C API's description this interpreter has,
/// checked once per process (see [`Layouts::get`]).
#[derive(Clone, Copy, Debug)]
pub struct Layouts {
    /// Dicts: the keys object and entry table of CPython 3.11 to 3.13 (with the
    /// GIL), [`DictKeys311`].
    dict_311: bool,
    /// Ints: which layout of 30-bit digits, if any, is read directly.
    int: IntLayout,
}

/// An int's layout, as read by [`int_parts`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum IntLayout {
    /// Through the C API.
    Api,
    /// CPython 3.11: the signed digit count in `ob_size` ([`Long311`]).
    #[cfg_attr(any(Py_LIMITED_API, Py_GIL_DISABLED), allow(dead_code, reason = "never read directly there"))]
    Size311,
    /// CPython 3.12 and 3.13: sign and digit count in `lv_tag` ([`Long312`]).
    #[cfg_attr(any(Py_LIMITED_API, Py_GIL_DISABLED), allow(dead_code, reason = "never read directly there"))]
    Tag312,
}

#[cfg(not(any(Py_LIMITED_API, Py_GIL_DISABLED)))]
static LAYOUTS: PyOnceLock<Layouts> = PyOnceLock::new();

impl Layouts {
    /// No direct reads: the C API throughout.
    pub const NONE: Self = Self { dict_311: false, int: IntLayout::Api };

    /// The layouts of this interpreter: on CPython 3.11, 3.12 and 3.13, each one
    /// confirmed by reading a few objects made for the purpose and comparing with
    /// the C API; elsewhere, in the stable-ABI build and in a free-threaded one,
    /// none (the C API is used). The first call checks, under the GIL; make it
    /// before borrowing anything that relies on the GIL being held.
    pub fn get(py: Python<'_>) -> Self {
        #[cfg(any(Py_LIMITED_API, Py_GIL_DISABLED))]
        {
            let _ = py;
            Self::NONE
        }
        #[cfg(not(any(Py_LIMITED_API, Py_GIL_DISABLED)))]
        {
            *LAYOUTS.get_or_init(py, || {
                let version = py.version_info();
                let (dict, int) = match (version.major, version.minor) {
                    (3, 11) => (true, IntLayout::Size311),
                    (3, 12 | 13) => (true, IntLayout::Tag312),
                    _ => return Self::NONE,
                };
                // `int_parts` reads the layout of the version built for.
                let int = if cfg!(Py_3_12) == (int == IntLayout::Tag312) { int } else { IntLayout::Api };
                let dict_311 = dict && dict_layout_holds(py).unwrap_or(false);
                let int = if int_layout_holds(py, int).unwrap_or(false) { int } else { IntLayout::Api };
                Self { dict_311, int }
            })
        }
    }

    /// What [`Layouts::get`] found, for tests and diagnostics: `dict` if dicts are
    /// read directly, and `int-3.11` or `int-3.12` if ints are.
    pub fn describe(self) -> Vec<&'static str> {
        let mut direct = Vec::new();
        if self.dict_311 {
            direct.push("dict");
        }
        match self.int {
            IntLayout::Api => {}
            IntLayout::Size311 => direct.push("int-3.11"),
            IntLayout::Tag312 => direct.push("int-3.12"),
        }
        direct
    }
}

/// The header of CPython 3.11's dict keys object (`struct _dictkeysobject` in
/// `Include/internal/pycore_dict.h`); the index table (`1 << dk_log2_index_bytes`
/// bytes) follows it, then `dk_nentries` entries: `(key, value)` pointers for
/// `DICT_KEYS_UNICODE`, `(hash, key, value)` for `DICT_KEYS_GENERAL`. CPython
/// 3.12 and 3.13 keep the same header (3.13 adds a mutex only when free-threaded).
#[cfg(not(Py_LIMITED_API))]
#[repr(C)]
struct DictKeys311 {
    dk_refcnt: ffi::Py_ssize_t,
    dk_log2_size: u8,
    dk_log2_index_bytes: u8,
    dk_kind: u8,
    dk_version: u32,
    dk_usable: ffi::Py_ssize_t,
    dk_nentries: ffi::Py_ssize_t,
}

#[cfg(not(Py_LIMITED_API))]
const DICT_KEYS_GENERAL: u8 = 0;
#[cfg(not(Py_LIMITED_API))]
const DICT_KEYS_UNICODE: u8 = 1;

/// Whether [`DictItems`]' direct walk finds what `PyDict_Next` finds, in a dict
/// of str keys with a deleted entry and in one of mixed keys.
#[cfg(not(any(Py_LIMITED_API, Py_GIL_DISABLED)))]
fn dict_layout_holds(py: Python<'_>) -> PyResult<bool> {
    let unicode = PyDict::new(py);
    for (key, value) in [("a", 1), ("bb", 2), ("c", 3), ("dd", 4)] {
        unicode.set_item(key, value)?;
    }
    unicode.del_item("bb")?;
    let general = PyDict::new(py);
    general.set_item(1, "one")?;
    general.set_item("two", 2)?;
    general.set_item(3, "three")?;
    let layouts = Layouts { dict_311: true, int: IntLayout::Api };
    for dict in [unicode, general] {
        let dict = dict.as_borrowed();
        // SAFETY: only these two private dicts are walked, and nothing runs
        // between the calls that could modify them. The interpreter is CPython
        // 3.11 to 3.13 with the GIL (checked by the caller), whose dict keys have
        // one layout, so the direct walk reads within the entry table.
        let (direct, api) = unsafe { (DictItems::new(dict, layouts), DictItems::new(dict, Layouts::NONE)) };
        let direct: Vec<_> = direct.map(|(k, v)| (k.as_ptr(), v.as_ptr())).collect();
        let api: Vec<_> = api.map(|(k, v)| (k.as_ptr(), v.as_ptr())).collect();
        if direct != api || api.len() != dict.len() {
            return Ok(false);
        }
    }
    Ok(true)
}

/// A dict's items as borrowed references (no reference counting).
pub struct DictItems<'a, 'py> {
    dict: Borrowed<'a, 'py, PyDict>,
    walk: Walk,
}

enum Walk {
    /// The entry table read directly.
    #[cfg(not(Py_LIMITED_API))]
    Entries { table: Table, index: usize },
    /// Through `PyDict_Next`.
    Api { position: ffi::Py_ssize_t },
}

impl<'a, 'py> DictItems<'a, 'py> {
    /// # Safety
    /// The caller holds the GIL without releasing it and keeps a [`GcPause`]
    /// alive. An item returned is valid until Python code next runs (which may
    /// modify `dict` or free its keys and values): the caller either runs none
    /// while it uses the item, or holds its own strong references to what it
    /// keeps across such code. After any Python code has run, the caller calls
    /// [`DictItems::refresh`] before the next `next`.
    #[inline]
    pub unsafe fn new(dict: Borrowed<'a, 'py, PyDict>, layouts: Layouts) -> Self {
        #[cfg_attr(Py_LIMITED_API, allow(unused_mut, reason = "no direct walk there"))]
        let mut walk = Walk::Api { position: 0 };
        #[cfg(Py_LIMITED_API)]
        let _ = layouts;
        #[cfg(not(Py_LIMITED_API))]
        if layouts.dict_311 {
            // SAFETY: `dict` is a live dict (or subclass), the GIL is held, and
            // `layouts.dict_311` says the layout is CPython 3.11's (3.11 to 3.13).
            if let Some(table) = unsafe { entry_table(dict.as_ptr()) } {
                walk = Walk::Entries { table, index: 0 };
            }
        }
        Self { dict, walk }
    }

    /// [`DictItems::new`], going on from where a [`DictEntries`] walk of the
    /// same dict stopped (`resume`), with the table it found; from the first
    /// entry with `None`.
    ///
    /// # Safety
    /// As for [`DictItems::new`]; and `resume` comes from a [`DictEntries`] of
    /// this dict, with no Python code run since it was made.
    #[inline]
    pub unsafe fn new_at(dict: Borrowed<'a, 'py, PyDict>, layouts: Layouts, resume: Option<DictResume>) -> Self {
        match resume {
            #[cfg(not(Py_LIMITED_API))]
            Some(DictResume { table, index }) => Self { dict, walk: Walk::Entries { table, index } },
            #[cfg(Py_LIMITED_API)]
            Some(never) => match never {},
            // SAFETY: the caller's contract is `new`'s.
            None => unsafe { Self::new(dict, layouts) },
        }
    }

    /// Finds the entry table again after Python code may have changed the dict
    /// (resized it, or made its table anew), and goes on from the same position:
    /// what was there before may have moved, but nothing is read out of bounds.
    /// (Inlined, though rare: a call with `&mut self` would keep the walk's
    /// state in memory throughout.)
    #[inline(always)]
    pub fn refresh(&mut self) {
        #[cfg(not(Py_LIMITED_API))]
        if let Walk::Entries { index, .. } = self.walk {
            // SAFETY: `self.dict` is alive for 'a (the borrow this iterator was
            // made from), the GIL is held, and the `Entries` walk exists only
            // when `new` was given CPython 3.11's dict layout.
            self.walk = match unsafe { entry_table(self.dict.as_ptr()) } {
                Some(table) => Walk::Entries { table, index },
                // A position past the end simply ends PyDict_Next's walk.
                None => Walk::Api { position: ffi::Py_ssize_t::try_from(index).unwrap_or(ffi::Py_ssize_t::MAX) },
            };
        }
    }
}

/// Where a combined dict's entries are (CPython 3.11 layout).
#[cfg(not(Py_LIMITED_API))]
#[derive(Clone, Copy)]
struct Table {
    /// The keys object (header, index table, entries), for prefetching.
    start: *const u8,
    /// The key of entry 0; its value is the next pointer.
    entries: *const *mut ffi::PyObject,
    /// Pointers from one entry to the next.
    stride: usize,
    /// Entries in use or deleted (`dk_nentries`).
    count: usize,
}

#[cfg(not(Py_LIMITED_API))]
impl Table {
    /// The end of the entries (one past the last).
    fn end(&self) -> *const u8 {
        self.entries.wrapping_add(self.count * self.stride).cast()
    }
}

/// The entry table of the dict `op`, if it is a combined table (not a split one,
/// whose values live apart: those go through `PyDict_Next`).
///
/// # Safety
/// `op` is a live dict (or dict subclass) object, the GIL is held, and this is
/// CPython 3.11 to 3.13 with that dict layout ([`Layouts`]' `dict_311`).
#[cfg(not(Py_LIMITED_API))]
#[inline(always)]
unsafe fn entry_table(op: *mut ffi::PyObject) -> Option<Table> {
    let op = op.cast::<ffi::PyDictObject>();
    // SAFETY: by the contract, `op` points to a live `PyDictObject` (its public,
    // non-limited layout), and its keys object has CPython 3.11's layout, checked
    // against PyDict_Next: a combined table (`ma_values` NULL) of kind GENERAL or
    // UNICODE holds `dk_nentries` entries after the header and its index table of
    // `1 << dk_log2_index_bytes` bytes.
    unsafe {
        let keys = (*op).ma_keys.cast::<DictKeys311>();
        if !(*op).ma_values.is_null() || keys.is_null() {
            return None;
        }
        let count = usize::try_from((*keys).dk_nentries).unwrap_or(0);
        let table = keys.add(1).cast::<u8>().add(1usize << (*keys).dk_log2_index_bytes);
        let table = table.cast::<*mut ffi::PyObject>();
        let start = keys.cast::<u8>();
        match (*keys).dk_kind {
            DICT_KEYS_UNICODE => Some(Table { start, entries: table, stride: 2, count }),
            // Skip each entry's hash.
            DICT_KEYS_GENERAL => Some(Table { start, entries: table.add(1), stride: 3, count }),
            _ => None,
        }
    }
}

/// The key and value of entry `index` of `table` (NULL for a deleted entry).
///
/// # Safety
/// `table` was found by [`entry_table`] for a dict that is still alive and has
/// not been modified since, and `index < table.count`.
#[cfg(not(Py_LIMITED_API))]
#[inline(always)]
unsafe fn entry(table: &Table, index: usize) -> (*mut ffi::PyObject, *mut ffi::PyObject) {
    // SAFETY: `index < count`, so the entry is inside the table, whose key and
    // value pointers are laid out as `entry_table` found them.
    unsafe {
        let entry = table.entries.add(index * table.stride);
        (*entry, *entry.add(1))
    }
}

impl<'a, 'py> Iterator for DictItems<'a, 'py> {
    type Item = (Borrowed<'a, 'py, PyAny>, Borrowed<'a, 'py, PyAny>);

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        let py = self.dict.py();
        match &mut self.walk {
            #[cfg(not(Py_LIMITED_API))]
            Walk::Entries { table, index } => {
                while *index < table.count {
                    // SAFETY: `index < count`; the table is the dict's, which by the
                    // contract of `new` is alive and unmodified.
                    let (key, value) = unsafe { entry(table, *index) };
                    *index += 1;
                    if !value.is_null() && !key.is_null() {
                        // SAFETY: a used entry's key and value are strong references
                        // owned by the dict, which lives for 'a and, by the contract
                        // of `new`, is not modified meanwhile.
                        return Some(unsafe { (Borrowed::from_ptr(py, key), Borrowed::from_ptr(py, value)) });
                    }
                }
                None
            }
            Walk::Api { position } => {
                let mut key: *mut ffi::PyObject = std::ptr::null_mut();
                let mut value: *mut ffi::PyObject = std::ptr::null_mut();
                // SAFETY: `self.dict` is a live dict (borrowed for 'a) and the GIL is
                // held ('py). PyDict_Next reads the dict's entry table at `position`,
                // bounds-checked by CPython, and never fails or raises.
                let found = unsafe { ffi::PyDict_Next(self.dict.as_ptr(), position, &mut key, &mut value) };
                if found == 0 {
                    return None;
                }
                // SAFETY: PyDict_Next returned non-null borrowed references owned by
                // the dict. They stay valid for 'a because the dict lives that long
                // and, by the contract of `new`, is not modified meanwhile.
                Some(unsafe { (Borrowed::from_ptr(py, key), Borrowed::from_ptr(py, value)) })
            }
        }
    }
}

/// Where a [`DictEntries`] walk stopped, for [`DictItems::new_at`] (none in
/// the stable-ABI build, which has no direct walk).
#[cfg(not(Py_LIMITED_API))]
pub struct DictResume {
    table: Table,
    index: usize,
}

#[cfg(Py_LIMITED_API)]
pub enum DictResume {}

/// A dict's entry table walked directly, for a walk that runs no Python code
/// from its first item to its last use of an item (a dict of scalars): no
/// [`DictItems::refresh`], so its state is a pointer, an end and a stride, kept
/// in registers. Only for a combined table under CPython 3.11's dict layout
/// ([`Layouts`]' `dict_311`); a walk that must run code goes on through
/// [`DictItems::new_at`] from [`DictEntries::resume`].
#[cfg(not(Py_LIMITED_API))]
pub struct DictEntries<'a, 'py> {
    py: Python<'py>,
    /// The key of the next entry; its value is the next pointer.
    next: *const *mut ffi::PyObject,
    /// One past the last entry's key.
    end: *const *mut ffi::PyObject,
    /// Pointers from one entry to the next.
    stride: usize,
    /// The table, for `resume`.
    table: Table,
    _dict: PhantomData<Borrowed<'a, 'py, PyDict>>,
}

#[cfg(not(Py_LIMITED_API))]
impl<'a, 'py> DictEntries<'a, 'py> {
    /// The entries of `dict` if they can be read directly (`layouts.dict_311`
    /// and a combined table), else `None` (walk it with [`DictItems`]).
    ///
    /// # Safety
    /// The caller holds the GIL without releasing it and keeps a [`GcPause`]
    /// alive, and runs no Python code from this call until its last use of an
    /// item (nothing modifies or frees the dict, its keys or values meanwhile).
    #[inline(always)]
    pub unsafe fn new(dict: Borrowed<'a, 'py, PyDict>, layouts: Layouts) -> Option<Self> {
        if !layouts.dict_311 {
            return None;
        }
        // SAFETY: `dict` is a live dict (or subclass), the GIL is held, and
        // `layouts.dict_311` says the layout is CPython 3.11's (3.11 to 3.13).
        let table = unsafe { entry_table(dict.as_ptr()) }?;
        let end = table.entries.wrapping_add(table.count * table.stride);
        Some(Self { py: dict.py(), next: table.entries, end, stride: table.stride, table, _dict: PhantomData })
    }

    /// Where the walk stands: the entry after the last one returned (where
    /// [`DictItems::new_at`] goes on from).
    #[inline(always)]
    pub fn resume(&self) -> DictResume {
        let done = self.next as usize - self.table.entries as usize;
        DictResume { table: self.table, index: done / (self.stride * std::mem::size_of::<*mut ffi::PyObject>()) }
    }
}

#[cfg(not(Py_LIMITED_API))]
impl<'a, 'py> Iterator for DictEntries<'a, 'py> {
    type Item = (Borrowed<'a, 'py, PyAny>, Borrowed<'a, 'py, PyAny>);

    #[inline(always)]
    fn next(&mut self) -> Option<Self::Item> {
        while self.next < self.end {
            // SAFETY: `next` is below `end`, so it is an entry of the table, whose
            // key and value pointers are laid out as `entry_table` found them; the
            // dict is alive and unmodified (the contract of `new`).
            let (key, value) = unsafe { (*self.next, *self.next.add(1)) };
            self.next = self.next.wrapping_add(self.stride);
            if !value.is_null() && !key.is_null() {
                // SAFETY: a used entry's key and value are strong references owned
                // by the dict, which lives for 'a and is not modified meanwhile.
                return Some(unsafe { (Borrowed::from_ptr(self.py, key), Borrowed::from_ptr(self.py, value)) });
            }
        }
        None
    }
}

/// CPython 3.11's int (`struct _longobject` in `Include/cpython/longintrepr.h`):
/// the size, whose sign is the int's and whose magnitude is the number of
/// digits, then the digits, 30 bits each, least significant first.
#[cfg(not(any(Py_LIMITED_API, Py_3_12)))]
#[repr(C)]
struct Long311 {
    ob_base: ffi::PyVarObject,
    ob_digit: [u32; 1],
}

/// CPython 3.12's and 3.13's int (`struct _longobject` and `_PyLongValue` in
/// `Include/cpython/longintrepr.h`): a tag whose bits 3 and up are the number of
/// digits and whose two low bits the sign (0 positive, 1 zero, 2 negative), then
/// the digits as in 3.11.
#[cfg(all(not(Py_LIMITED_API), Py_3_12))]
#[repr(C)]
struct Long312 {
    ob_base: ffi::PyObject,
    lv_tag: usize,
    ob_digit: [u32; 1],
}

/// Whether [`int_parts`]' direct read with `layout` gives what the C API gives,
/// for ints of 0 to 3 digits, up to the 64-bit edges.
#[cfg(not(any(Py_LIMITED_API, Py_GIL_DISABLED)))]
fn int_layout_holds(py: Python<'_>, layout: IntLayout) -> PyResult<bool> {
    let layouts = Layouts { dict_311: false, int: layout };
    let edges = [0i128, 1, -1, 7, -7, 1 << 29, (1 << 30) - 1, 1 << 30, -(1 << 30), (1 << 60) - 1, -(1 << 60) + 1];
    let edges = edges.into_iter().chain([1 << 60, i128::from(i64::MAX), i128::from(i64::MIN), i128::from(u64::MAX)]);
    for v in edges.chain([1 << 63]) {
        let int = v.into_pyobject(py)?;
        let int = int.as_any().as_borrowed();
        #[allow(clippy::cast_possible_truncation, reason = "every edge's magnitude fits a u64")]
        let expected = Some((v < 0, v.unsigned_abs() as u64));
        if int_parts(int, layouts) != expected || int_parts(int, Layouts::NONE) != expected {
            return Ok(false);
        }
    }
    Ok(true)
}

/// The sign (true: negative) and magnitude of a Python int (or int subclass)
/// whose magnitude fits a `u64`, read without raising (and so without
/// allocating an exception object); `None` otherwise.
#[inline(always)]
pub fn int_parts(obj: Borrowed<'_, '_, PyAny>, layouts: Layouts) -> Option<(bool, u64)> {
    // SAFETY: `KNOWN_EXACT` false: the type is checked.
    unsafe { int_parts_of::<false>(obj, layouts) }
}

/// [`int_parts`] for an object the caller has found to be an exact int (its
/// type compared with `int`'s): the compare is not made again.
///
/// # Safety
/// `obj`'s type is exactly `int`.
#[inline(always)]
pub unsafe fn exact_int_parts(obj: Borrowed<'_, '_, PyAny>, layouts: Layouts) -> Option<(bool, u64)> {
    // SAFETY: the caller's contract is `int_parts_of`'s with `KNOWN_EXACT`.
    unsafe { int_parts_of::<true>(obj, layouts) }
}

/// [`int_parts`]; with `KNOWN_EXACT`, without checking that `obj` is an exact int.
///
/// # Safety
/// With `KNOWN_EXACT`, `obj`'s type is exactly `int`.
#[inline(always)]
unsafe fn int_parts_of<const KNOWN_EXACT: bool>(obj: Borrowed<'_, '_, PyAny>, layouts: Layouts) -> Option<(bool, u64)> {
    #[cfg(not(Py_LIMITED_API))]
    if layouts.int != IntLayout::Api
        && (KNOWN_EXACT || obj.get_type_ptr() == <PyInt as pyo3::PyTypeInfo>::type_object_raw(obj.py()))
    {
        // SAFETY: as in `int_digits` (written out here rather than called: the
        // hot path's code stays as it was).
        let (negative, count, digits) = unsafe {
            // An int of one digit (below 2**30), the most frequent by far, first,
            // as two plain comparisons (a combined one compiles to the general path).
            #[cfg(not(Py_3_12))]
            {
                let long = obj.as_ptr().cast::<Long311>();
                let size = (*long).ob_base.ob_size;
                if size == 1 {
                    return Some((false, u64::from((*long).ob_digit[0])));
                }
                if size == -1 {
                    return Some((true, u64::from((*long).ob_digit[0])));
                }
            }
            #[cfg(Py_3_12)]
            {
                let long = obj.as_ptr().cast::<Long312>();
                let tag = (*long).lv_tag;
                // One digit, positive (sign bits 0) or negative (sign bits 2).
                if tag == 1 << 3 {
                    return Some((false, u64::from((*long).ob_digit[0])));
                }
                if tag == (1 << 3) | 2 {
                    return Some((true, u64::from((*long).ob_digit[0])));
                }
            }
            #[cfg(not(Py_3_12))]
            {
                let long = obj.as_ptr().cast::<Long311>();
                let size = (*long).ob_base.ob_size;
                (size < 0, size.unsigned_abs(), std::ptr::addr_of!((*long).ob_digit).cast::<u32>())
            }
            #[cfg(Py_3_12)]
            {
                let long = obj.as_ptr().cast::<Long312>();
                let tag = (*long).lv_tag;
                (tag & 3 == 2, tag >> 3, std::ptr::addr_of!((*long).ob_digit).cast::<u32>())
            }
        };
        // SAFETY: `digits` points to the int's `count` digits (see above).
        return unsafe { digits_magnitude(digits, count) }.map(|magnitude| (negative, magnitude));
    }
    #[cfg(Py_LIMITED_API)]
    let _ = layouts;
    int_parts_api(obj)
}

/// The value of an exact int from 0 to `u128::MAX` read directly (a UUID's
/// `int`), or `None` for any other value, or where ints are not read directly
/// (the caller then asks the C API).
#[inline]
pub fn uint128(obj: Borrowed<'_, '_, PyAny>, layouts: Layouts) -> Option<u128> {
    #[cfg(not(Py_LIMITED_API))]
    if let Some((false, count @ 0..=5, digits)) = int_digits(obj, layouts) {
        let mut value = 0u128;
        for i in (0..count).rev() {
            // SAFETY: `digits` points to the int's `count` digits (`int_digits`),
            // and `i < count`.
            let digit = u128::from(unsafe { *digits.add(i) });
            // 128 bits need the low 8 bits of the fifth digit at most.
            if i == 4 && digit >= 1 << 8 {
                return None;
            }
            value = (value << 30) | digit;
        }
        return Some(value);
    }
    #[cfg(Py_LIMITED_API)]
    let _ = (obj, layouts);
    None
}

/// An exact int's sign, digit count and the address of its 30-bit digits, read
/// directly where `layouts` allows it.
#[cfg(not(Py_LIMITED_API))]
#[inline(always)]
fn int_digits(obj: Borrowed<'_, '_, PyAny>, layouts: Layouts) -> Option<(bool, usize, *const u32)> {
    if layouts.int == IntLayout::Api || obj.get_type_ptr() != <PyInt as pyo3::PyTypeInfo>::type_object_raw(obj.py()) {
        return None;
    }
    // SAFETY: `obj` is a live exact int and the GIL is held (`Borrowed` proves
    // both), and `layouts.int` names the layout of this interpreter's ints
    // (CPython 3.11: `Long311`; 3.12 and 3.13 with the GIL: `Long312`),
    // checked against the C API: the fields read are the digit count, the
    // sign and the address of the digits. Ints are immutable, and the digits
    // live as long as `obj`.
    Some(unsafe {
        // The layout is the one this module was built for (each non-abi3
        // build serves one CPython version), which `Layouts::get` checked.
        #[cfg(not(Py_3_12))]
        {
            let long = obj.as_ptr().cast::<Long311>();
            let size = (*long).ob_base.ob_size;
            (size < 0, size.unsigned_abs(), std::ptr::addr_of!((*long).ob_digit).cast::<u32>())
        }
        #[cfg(Py_3_12)]
        {
            let long = obj.as_ptr().cast::<Long312>();
            let tag = (*long).lv_tag;
            (tag & 3 == 2, tag >> 3, std::ptr::addr_of!((*long).ob_digit).cast::<u32>())
        }
    })
}

/// The magnitude of an int of `count` 30-bit digits at `digits`, if it fits a `u64`.
///
/// # Safety
/// `digits` points to at least `count` digits of a live int; a digit is read
/// only if its index is below `count` (and below 3).
#[cfg(not(Py_LIMITED_API))]
#[inline(always)]
unsafe fn digits_magnitude(digits: *const u32, count: usize) -> Option<u64> {
    // SAFETY: by the contract, each digit read (index < count) is one of the int's.
    unsafe {
        let digit = |i: usize| u64::from(*digits.add(i));
        // One digit (below 2**30) first: by far the most frequent.
        if count == 1 {
            return Some(digit(0));
        }
        match count {
            0 => Some(0),
            2 => Some(digit(0) | (digit(1) << 30)),
            // 64 bits need the low 4 bits of the third digit at most.
            3 if digit(2) < 16 => Some(digit(0) | (digit(1) << 30) | (digit(2) << 60)),
            _ => None,
        }
    }
}

/// [`int_parts`] through the C API.
#[inline(never)]
fn int_parts_api(obj: Borrowed<'_, '_, PyAny>) -> Option<(bool, u64)> {
    let mut overflow: std::ffi::c_int = 0;
    // SAFETY: `obj` is a live object and the GIL is held (`Borrowed` proves both).
    // For an int, PyLong_AsLongLongAndOverflow reports overflow through `overflow`
    // instead of raising; for anything else it may raise, which is cleared below.
    let value = unsafe { ffi::PyLong_AsLongLongAndOverflow(obj.as_ptr(), &mut overflow) };
    if overflow == 0 {
        if value == -1 {
            if let Some(err) = PyErr::take(obj.py()) {
                drop(err);
                return None;
            }
        }
        return Some((value < 0, value.unsigned_abs()));
    }
    if overflow < 0 {
        // Below i64::MIN: past the magnitudes written here.
        return None;
    }
    // SAFETY: as above; PyLong_AsUnsignedLongLong raises OverflowError past
    // u64::MAX, which is cleared.
    let value = unsafe { ffi::PyLong_AsUnsignedLongLong(obj.as_ptr()) };
    if value == u64::MAX {
        if let Some(err) = PyErr::take(obj.py()) {
            drop(err);
            return None;
        }
    }
    Some((false, value))
}

/// The UTF-8 text of a str as CPython keeps it in the object, with no copy:
/// read straight from the object when it is there (an ASCII str's own data, or
/// the UTF-8 cache of a non-ASCII one), else through one call that encodes it
/// once and caches it in the object.
///
/// # Errors
/// The str cannot be encoded (a lone surrogate): the `UnicodeEncodeError` raised.
#[inline(always)]
pub fn str_utf8<'a>(s: Borrowed<'a, '_, PyString>) -> PyResult<&'a [u8]> {
    if let Some(utf8) = str_utf8_direct(s) {
        return Ok(utf8);
    }
    str_utf8_encoded(s)
}

/// [`str_utf8`]'s call alone, for a caller that has found [`str_utf8_direct`]
/// to give `None` (it need not look again): the text encoded (and cached in the
/// object) by CPython, or read from its cache.
///
/// # Errors
/// The str cannot be encoded (a lone surrogate): the `UnicodeEncodeError` raised.
#[inline]
pub fn str_utf8_encoded<'a>(s: Borrowed<'a, '_, PyString>) -> PyResult<&'a [u8]> {
    let mut size: ffi::Py_ssize_t = 0;
    // SAFETY: `s` is a live str and the GIL is held (`Borrowed` proves both).
    let data = unsafe { ffi::PyUnicode_AsUTF8AndSize(s.as_ptr(), &mut size) };
    if data.is_null() {
        return Err(PyErr::fetch(s.py()));
    }
    // Never negative; an empty slice if it ever were.
    let len = usize::try_from(size).unwrap_or(0);
    // SAFETY: on success PyUnicode_AsUTF8AndSize returns the str's cached UTF-8,
    // `len` bytes owned by the object, valid and unchanged (str is immutable)
    // while it lives, which 'a guarantees.
    Ok(unsafe { std::slice::from_raw_parts(data.cast::<u8>(), len) })
}

/// [`str_utf8`]'s direct read alone: the text if the object holds it as UTF-8
/// (a compact ASCII str, or a compact str whose UTF-8 cache is filled), `None`
/// otherwise (and always in the stable-ABI build and on 3.14 and later). Makes
/// no call and so cannot fail: a caller on a hot path takes this, and leaves
/// the rest (and any error) to a slower path through [`str_utf8`].
#[inline(always)]
pub fn str_utf8_direct<'a>(s: Borrowed<'a, '_, PyString>) -> Option<&'a [u8]> {
    str_text_direct(s).map(StrText::bytes)
}

/// A str's UTF-8 text read straight from the object ([`str_text_direct`]).
#[derive(Clone, Copy)]
pub struct StrText<'a> {
    bytes: &'a [u8],
    /// Where the text starts, as a pointer into the object (not derived from
    /// `bytes`, whose reference covers the text alone) when the text follows
    /// the object's header and ends with CPython's NUL (a compact ASCII str):
    /// the 8 bytes that end with that NUL are the object's. Null otherwise.
    #[cfg(not(any(Py_LIMITED_API, Py_3_14)))]
    in_object: *const u8,
}

impl<'a> StrText<'a> {
    /// The text.
    #[inline(always)]
    pub fn bytes(self) -> &'a [u8] {
        self.bytes
    }

    /// For text of fewer than 8 bytes: those bytes as a little-endian word,
    /// zero above them, read with one load when the object lays them out for
    /// it (a compact ASCII str); `None` otherwise (the caller assembles the
    /// word from [`StrText::bytes`]).
    #[inline(always)]
    pub fn short_word(self) -> Option<u64> {
        #[cfg(not(any(Py_LIMITED_API, Py_3_14)))]
        if !self.in_object.is_null() {
            let len = self.bytes.len() & 7;
            // SAFETY: a compact ASCII str holds its header (40 or 48 bytes on
            // 3.11 to 3.13) right before its `len` bytes of text and a NUL right
            // after them (CPython allocates and writes it for every compact str;
            // `PyUnicode_AsUTF8` hands this very buffer out as NUL-terminated).
            // So the 8 bytes that end with the NUL, from `len - 7` (at least 7
            // bytes into the header), lie inside the object, which is immutable
            // while 'a lives; `in_object` points into the object, not through
            // `bytes` (whose reference covers the text alone). An unaligned read
            // of plain bytes.
            let word = unsafe { self.in_object.add(len).sub(7).cast::<u64>().read_unaligned() };
            // The text in the low bytes; the NUL and the bytes shifted in above it are zero.
            return Some(u64::from_le(word) >> (8 * (7 - len)));
        }
        None
    }
}

/// [`str_utf8_direct`], with what [`StrText::short_word`] needs to know of
/// where the text lies.
#[inline(always)]
pub fn str_text_direct<'a>(s: Borrowed<'a, '_, PyString>) -> Option<StrText<'a>> {
    #[cfg(any(Py_LIMITED_API, Py_3_14))]
    {
        let _ = s;
        None
    }
    #[cfg(not(any(Py_LIMITED_API, Py_3_14)))]
    {
        let op = s.as_ptr();
        // SAFETY: `s` is a live str (or str subclass) and the GIL is held
        // (`Borrowed` proves both), so `op` points to at least a
        // `PyASCIIObject`, whose `state` bit field and `length` these reads
        // take, as `PyUnicode_IS_COMPACT` and friends do. A compact ASCII str
        // keeps its `length` bytes of ASCII (valid UTF-8) right after the
        // header; any other compact str is a `PyCompactUnicodeObject`, whose
        // `utf8` (`utf8_length` bytes) is either NULL or its UTF-8 text. The
        // bytes belong to the object, which is immutable and lives for 'a.
        unsafe {
            let ascii = op.cast::<ffi::PyASCIIObject>();
            // Both bits tested at once (the usual case first).
            let (data, size, in_object) = if (*ascii).compact() != 0 && (*ascii).ascii() != 0 {
                let data = ascii.add(1).cast::<u8>().cast_const();
                (data, (*ascii).length, data)
            } else if (*ascii).compact() != 0 {
                let compact = op.cast::<ffi::PyCompactUnicodeObject>();
                let utf8 = (*compact).utf8;
                if utf8.is_null() {
                    return None;
                }
                (utf8.cast::<u8>().cast_const(), (*compact).utf8_length, std::ptr::null())
            } else {
                return None;
            };
            // Never negative; if it ever were, the slower path (`str_utf8`) takes
            // it. (A test the caller's length checks can share, where clamping
            // to zero costs instructions of its own.)
            let len = usize::try_from(size).ok()?;
            Some(StrText { bytes: std::slice::from_raw_parts(data, len), in_object })
        }
    }
}

/// A list's items as borrowed references (no reference counting).
///
/// In a long list of dicts (CPython 3.11 to 3.13 dict layout only), each step
/// also asks the CPU to start loading what the dicts a few items on will need: a
/// list built item by item is far bigger than the caches, and a walk that only
/// loads what it needs now waits on memory at every object. In the stable-ABI
/// build the items come one by one from `PyList_GetItem`.
pub struct ListItems<'a, 'py> {
    list: Borrowed<'a, 'py, PyList>,
    #[cfg(not(Py_LIMITED_API))]
    items: std::slice::Iter<'a, *mut ffi::PyObject>,
    /// Items returned so far (where [`ListItems::refresh`] goes on from).
    #[cfg(Py_LIMITED_API)]
    taken: usize,
    /// The list's length when its items were last read: the items returned so
    /// far are this less the items left (where [`ListItems::refresh`] goes on from).
    #[cfg(not(Py_LIMITED_API))]
    len: usize,
    /// Prefetch ahead (see above).
    #[cfg(not(Py_LIMITED_API))]
    ahead: bool,
    /// The list's length when last read (stable ABI).
    #[cfg(Py_LIMITED_API)]
    len: usize,
}

/// Lists shorter than this are walked without prefetching: their objects usually stay
/// in the caches between calls, where prefetching only adds work; longer ones do not
/// fit, and prefetching pays. docs/benchmark.md ("What the profiles say") has the
/// measurements behind the threshold.
#[cfg(not(Py_LIMITED_API))]
const PREFETCH_MIN_LEN: usize = 32 * 1024;
/// How many items ahead each kind of prefetch runs: the dict objects, their
/// entry tables, and the objects the entries point to. Each stage reads only
/// what the one before it has (probably) brought in.
#[cfg(not(Py_LIMITED_API))]
const AHEAD_OBJECT: usize = 6;
#[cfg(not(Py_LIMITED_API))]
const AHEAD_TABLE: usize = 4;
#[cfg(not(Py_LIMITED_API))]
const AHEAD_VALUES: usize = 2;
/// At most this many cache lines of an entry table, and values, per dict.
#[cfg(not(Py_LIMITED_API))]
const PREFETCH_TABLE_LINES: usize = 8;
#[cfg(not(Py_LIMITED_API))]
const PREFETCH_VALUES: usize = 16;

impl<'a, 'py> ListItems<'a, 'py> {
    /// Takes back the item `next` returned last (if any): the next `next`
    /// returns it again. No Python code may have run since.
    #[cfg(Py_LIMITED_API)]
    #[inline(always)]
    pub fn unread(&mut self) {
        self.taken = self.taken.saturating_sub(1);
    }

    /// Goes on from the item at `index`, as if the items before it had been
    /// taken (stable ABI: `next` checks the index).
    #[cfg(Py_LIMITED_API)]
    #[inline(always)]
    pub fn go_on_from(&mut self, index: usize) {
        self.taken = index;
    }

    /// Takes back the item `next` returned last (if any): the next `next`
    /// returns it again. No Python code may have run since.
    #[cfg(not(Py_LIMITED_API))]
    #[inline(always)]
    pub fn unread(&mut self) {
        self.go_on_from(self.taken().saturating_sub(1));
    }

    /// Goes on from the item at `index` (none if the list is shorter), as if
    /// the items before it had been taken. No Python code may have run since
    /// the items were last read.
    #[cfg(not(Py_LIMITED_API))]
    #[inline(always)]
    pub fn go_on_from(&mut self, index: usize) {
        // SAFETY: as in `refresh` (no code has run since the items were read,
        // so this is the same array, of the same length).
        let items = unsafe { Self::items(self.list) };
        self.items = items.get(index..).unwrap_or(&[]).iter();
    }

    /// The items from the one at `start` on (none if the list is shorter);
    /// [`ListItems::taken`] counts the items before `start` as taken.
    ///
    /// # Safety
    /// As for [`DictItems::new`]: an item is valid until Python code next runs,
    /// and after any Python code has run the caller calls [`ListItems::refresh`]
    /// before the next `next` (the list may have been resized meanwhile).
    #[cfg(Py_LIMITED_API)]
    pub unsafe fn new_at(list: Borrowed<'a, 'py, PyList>, layouts: Layouts, start: usize) -> Self {
        use pyo3::types::PyListMethods;
        let _ = layouts;
        Self { list, taken: start, len: list.len() }
    }

    /// Reads the list's length again after Python code may have changed it, and
    /// goes on from the same index (or ends, if the list is now shorter).
    #[cfg(Py_LIMITED_API)]
    /// (Inlined, though rare: a call with `&mut self` would keep the walk's
    /// state in memory throughout.)
    #[inline(always)]
    pub fn refresh(&mut self) {
        use pyo3::types::PyListMethods;
        self.len = self.list.len();
    }

    /// The items from the one at `start` on (none if the list is shorter);
    /// [`ListItems::taken`] counts the items before `start` as taken.
    ///
    /// # Safety
    /// As for [`DictItems::new`]: an item is valid until Python code next runs,
    /// and after any Python code has run the caller calls [`ListItems::refresh`]
    /// before the next `next` (the list may have been resized meanwhile).
    #[cfg(not(Py_LIMITED_API))]
    pub unsafe fn new_at(list: Borrowed<'a, 'py, PyList>, layouts: Layouts, start: usize) -> Self {
        // SAFETY: the contract of `new_at` is `items`'.
        let items = unsafe { Self::items(list) };
        // Only a list of dicts (judged by its first item) is worth prefetching.
        let ahead = items.len() >= PREFETCH_MIN_LEN
            && layouts.dict_311
            // SAFETY: the first item of a live list is a live object (see `next`).
            && items.first().is_some_and(|&first| unsafe { ffi::Py_TYPE(first) } == std::ptr::addr_of_mut!(ffi::PyDict_Type));
        // At most the length: the slice then needs no test of its own.
        let start = start.min(items.len());
        Self { list, items: items[start..].iter(), len: items.len(), ahead }
    }

    /// The list's item array as it is now.
    ///
    /// # Safety
    /// The slice is used only until Python code next runs (see `new_at`).
    #[cfg(not(Py_LIMITED_API))]
    unsafe fn items(list: Borrowed<'a, 'py, PyList>) -> &'a [*mut ffi::PyObject] {
        let op = list.as_ptr();
        // SAFETY: `list` is a live list (or list subclass) and the GIL is held, so
        // `op` points to a `PyListObject` whose `ob_item` holds `ob_size` item
        // pointers (PyList_GET_SIZE and PyList_GET_ITEM read the same fields).
        // By the contract the list is not modified (not resized, its array not
        // reallocated) while the slice, which borrows it for 'a, is used.
        // A list with items has its array (`ob_item` is null only when
        // `ob_size` is 0), so the size alone is tested.
        unsafe {
            let len = ffi::PyList_GET_SIZE(op);
            if len <= 0 {
                &[]
            } else {
                std::slice::from_raw_parts((*op.cast::<ffi::PyListObject>()).ob_item, len.unsigned_abs())
            }
        }
    }

    /// Whether `next` prefetches (see above).
    #[inline(always)]
    pub fn prefetching(&self) -> bool {
        #[cfg(Py_LIMITED_API)]
        return false;
        #[cfg(not(Py_LIMITED_API))]
        return self.ahead;
    }

    /// The type of the item `next` returns next; null at the end.
    #[cfg(not(Py_LIMITED_API))]
    #[inline(always)]
    pub fn peek_type(&self) -> *mut ffi::PyTypeObject {
        // SAFETY: an item of the list is a live object (see `next`), whose
        // type pointer may be read.
        self.items.as_slice().first().map_or(std::ptr::null_mut(), |&item| unsafe { ffi::Py_TYPE(item) })
    }

    /// How many items `next` has returned.
    #[inline(always)]
    pub fn taken(&self) -> usize {
        #[cfg(Py_LIMITED_API)]
        return self.taken;
        #[cfg(not(Py_LIMITED_API))]
        return self.len - self.items.len();
    }

    /// Reads the item array again after Python code may have changed the list,
    /// and goes on from the same index (or ends, if the list is now shorter).
    #[cfg(not(Py_LIMITED_API))]
    /// (Inlined, though rare: a call with `&mut self` would keep the walk's
    /// state in memory throughout.)
    #[inline(always)]
    pub fn refresh(&mut self) {
        // SAFETY: called, by the contract of `new`, after Python code ran and
        // before the next item is used; the slice lives until code runs again.
        let items = unsafe { Self::items(self.list) };
        let taken = self.len - self.items.len();
        self.items = items.get(taken..).unwrap_or(&[]).iter();
        self.len = items.len();
    }

    /// The prefetches of one step (see the type's docs), given the items not
    /// yet returned; only when `ahead` is set. Not a method: the walk's state
    /// then stays in registers rather than in memory, where a `&self` handed
    /// to a call that is not inlined would put it.
    #[cfg(not(Py_LIMITED_API))]
    #[inline(never)]
    fn prefetch_ahead(rest: &[*mut ffi::PyObject]) {
        if let Some(&obj) = rest.get(AHEAD_OBJECT) {
            prefetch(obj.cast_const().cast());
        }
        if let Some(table) = rest.get(AHEAD_TABLE).and_then(|&obj| Self::dict_table(obj)) {
            let end = table.end();
            let mut line = table.start;
            for _ in 0..PREFETCH_TABLE_LINES {
                if line >= end {
                    break;
                }
                prefetch(line);
                line = line.wrapping_add(64);
            }
        }
        if let Some(table) = rest.get(AHEAD_VALUES).and_then(|&obj| Self::dict_table(obj)) {
            for index in 0..table.count.min(PREFETCH_VALUES) {
                // SAFETY: `index < count`; the dict is an item of the list, alive and,
                // by the contract of `new`, not modified.
                let (_, value) = unsafe { entry(&table, index) };
                // The header and what follows (a str's state and first bytes).
                let value = value.cast_const().cast::<u8>();
                prefetch(value);
                prefetch(value.wrapping_add(64));
            }
        }
    }

    /// The entry table of `obj`, an item of the list, if it is an exact dict.
    #[cfg(not(Py_LIMITED_API))]
    #[inline(always)]
    fn dict_table(obj: *mut ffi::PyObject) -> Option<Table> {
        // SAFETY: `obj` is an item of the list: a live object (see `next`), whose
        // type pointer may be read. If that is exactly `dict`, it is a live dict,
        // the GIL is held, and this runs only from `prefetch_ahead`, only when
        // `ahead` is set, which it is only with CPython 3.11's dict layout
        // (`Layouts`): `entry_table`'s contract.
        unsafe {
            if ffi::Py_TYPE(obj) != std::ptr::addr_of_mut!(ffi::PyDict_Type) {
                return None;
            }
            entry_table(obj)
        }
    }
}

/// Asks the CPU to start loading the cache line at `address` (a hint: it reads
/// nothing the program sees and cannot fault, whatever the address).
#[cfg(not(Py_LIMITED_API))]
#[inline(always)]
fn prefetch(address: *const u8) {
    #[cfg(all(target_arch = "x86_64", target_feature = "sse"))]
    // SAFETY: the build enables SSE (the cfg above; part of every x86-64), so the
    // intrinsic is available; a prefetch has no architectural effect and never
    // faults, so any address is allowed.
    unsafe {
        std::arch::x86_64::_mm_prefetch(address.cast::<i8>(), std::arch::x86_64::_MM_HINT_T0);
    }
    #[cfg(not(all(target_arch = "x86_64", target_feature = "sse")))]
    let _ = address;
}

impl<'a, 'py> Iterator for ListItems<'a, 'py> {
    type Item = Borrowed<'a, 'py, PyAny>;

    #[cfg(Py_LIMITED_API)]
    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        if self.taken >= self.len {
            return None;
        }
        let py = self.list.py();
        let index = ffi::Py_ssize_t::try_from(self.taken).ok()?;
        // SAFETY: `self.list` is a live list (borrowed for 'a) and the GIL is held
        // ('py); PyList_GetItem checks the index, and returns a borrowed reference
        // or NULL with an IndexError set.
        let item = unsafe { ffi::PyList_GetItem(self.list.as_ptr(), index) };
        self.taken += 1;
        if item.is_null() {
            // The list shrank since its length was read: end the walk without
            // leaving the error set.
            drop(PyErr::take(py));
            return None;
        }
        // SAFETY: a list's items are non-null strong references owned by the list,
        // which lives for 'a and, by the contract of `new`, is not modified meanwhile
        // (or its length was read again by `refresh` since it was).
        Some(unsafe { Borrowed::from_ptr(py, item) })
    }

    #[cfg(not(Py_LIMITED_API))]
    #[inline(always)]
    fn next(&mut self) -> Option<Self::Item> {
        if self.ahead {
            Self::prefetch_ahead(self.items.as_slice());
        }
        let &item = self.items.next()?;
        // SAFETY: a list's items are non-null strong references owned by the list,
        // which lives for 'a and, by the contract of `new`, is not modified meanwhile
        // (or the array was read again by `refresh` since it was). Telling the
        // compiler the item is not null spares `from_ptr`'s check of each one.
        Some(unsafe {
            std::hint::assert_unchecked(!item.is_null());
            Borrowed::from_ptr(self.list.py(), item)
        })
    }
}

/// A short list's items, each exactly a `float`: their values in turn (the
/// rows of a list of coordinate pairs, say). Made only after every item's type
/// is checked, so that a row is written whole or not at all.
#[cfg(not(Py_LIMITED_API))]
pub struct FloatRow<'a> {
    items: std::slice::Iter<'a, *mut ffi::PyObject>,
}

#[cfg(not(Py_LIMITED_API))]
impl<'a> FloatRow<'a> {
    /// `list`'s items if it has 1 to `max` of them and each one's type is
    /// `float` (the `float` type object) exactly, not a subclass.
    ///
    /// # Safety
    /// As for [`ListItems::new_at`]: the row is used only until Python code
    /// next runs.
    #[inline(always)]
    pub unsafe fn new(list: Borrowed<'a, '_, PyList>, float: *mut ffi::PyTypeObject, max: usize) -> Option<Self> {
        // SAFETY: the contract of `new` is `items`'.
        let items = unsafe { ListItems::items(list) };
        if items.is_empty() || items.len() > max {
            return None;
        }
        // SAFETY: each item of a live list is a live object, whose type pointer
        // may be read.
        if items.iter().any(|&item| unsafe { ffi::Py_TYPE(item) } != float) {
            return None;
        }
        Some(Self { items: items.iter() })
    }
}

#[cfg(not(Py_LIMITED_API))]
impl Iterator for FloatRow<'_> {
    type Item = f64;

    /// The next item's value.
    #[inline(always)]
    fn next(&mut self) -> Option<f64> {
        let &item = self.items.next()?;
        // SAFETY: the item is a live object (the list holds it and, by the
        // contract of `new`, is not modified) whose type `new` found to be
        // exactly `float`: a `PyFloatObject`, whose value this reads.
        Some(unsafe { ffi::PyFloat_AS_DOUBLE(item) })
    }
}

/// The type of `list`'s first item; null if it is empty.
#[cfg(not(Py_LIMITED_API))]
#[inline(always)]
pub fn first_item_type(list: Borrowed<'_, '_, PyList>) -> *mut ffi::PyTypeObject {
    let op = list.as_ptr();
    // SAFETY: `list` is a live list (or list subclass) and the GIL is held
    // (`Borrowed` proves both): `ob_item` holds `ob_size` live items, and the
    // first one's type pointer may be read when there is one.
    // A list with items has its array (`ob_item` is null only when `ob_size` is 0).
    unsafe {
        if ffi::PyList_GET_SIZE(op) <= 0 {
            return std::ptr::null_mut();
        }
        ffi::Py_TYPE(*(*op.cast::<ffi::PyListObject>()).ob_item)
    }
}

/// The type of the first item of `list`'s first item, if that is exactly a
/// list; else (or if either list is empty) null.
#[cfg(not(Py_LIMITED_API))]
#[inline(always)]
pub fn first_row_item_type(list: Borrowed<'_, '_, PyList>) -> *mut ffi::PyTypeObject {
    if first_item_type(list) != std::ptr::addr_of_mut!(ffi::PyList_Type) {
        return std::ptr::null_mut();
    }
    // SAFETY: as in `first_item_type`: `list` has a first item, a live object
    // the list holds, whose type was just found to be exactly `list`, so it is
    // a live `PyListObject` too, with `ob_size` live items in `ob_item`.
    unsafe {
        let row = *(*list.as_ptr().cast::<ffi::PyListObject>()).ob_item;
        if ffi::PyList_GET_SIZE(row) <= 0 {
            return std::ptr::null_mut();
        }
        ffi::Py_TYPE(*(*row.cast::<ffi::PyListObject>()).ob_item)
    }
}

/// Whether `obj` has more than one reference (an object with one is held by a
/// single container, so it cannot appear twice in a value).
#[inline(always)]
pub fn shared<T>(obj: Borrowed<'_, '_, T>) -> bool {
    // SAFETY: `obj` is a live object and the GIL is held (`Borrowed` proves
    // both); Py_REFCNT only reads its reference count.
    unsafe { ffi::Py_REFCNT(obj.as_ptr()) > 1 }
}

/// Whether `obj`'s type is `ty` or a subclass of it, by the type's MRO alone:
/// unlike `isinstance`, this runs no Python code (no `__instancecheck__`).
pub fn is_subtype(obj: Borrowed<'_, '_, PyAny>, ty: &Bound<'_, pyo3::types::PyType>) -> bool {
    // SAFETY: both are live type objects (`Borrowed` and `Bound` prove it, and
    // the GIL is held); PyType_IsSubtype only reads their MROs.
    unsafe { ffi::PyType_IsSubtype(obj.get_type_ptr(), ty.as_type_ptr()) != 0 }
}
