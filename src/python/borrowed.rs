//! The JSON serializer's fast paths through the C API: a pause of the cyclic GC,
//! dict items as borrowed references, and ints read without raising.
//!
//! Under the stable ABI every reference-count change is a function call into
//! libpython; walking a dict through pyo3's safe iterator costs six calls per
//! item on top of `PyDict_Next`, about a third of the serializer's time. These
//! helpers avoid them. They are sound only while no Python code runs, which
//! [`GcPause`] and the serializer's rules guarantee (see `json.rs`).

use std::marker::PhantomData;

use pyo3::ffi;
use pyo3::prelude::*;
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

impl Drop for GcPause {
    fn drop(&mut self) {
        if self.was_enabled {
            // SAFETY: `GcPause` is !Send and created under the GIL, which this
            // thread still holds (the serializer never releases it while paused).
            unsafe { ffi::PyGC_Enable() };
        }
    }
}

/// A dict's items as borrowed references (no reference counting).
pub struct DictItems<'a, 'py> {
    dict: Borrowed<'a, 'py, PyDict>,
    position: ffi::Py_ssize_t,
}

impl<'a, 'py> DictItems<'a, 'py> {
    /// # Safety
    /// While the iterator or any item it returned is in use, no Python code may
    /// run (nothing may modify `dict` or free its keys and values): the caller
    /// holds the GIL without releasing it, runs no Python code, and keeps a
    /// [`GcPause`] alive.
    pub unsafe fn new(dict: Borrowed<'a, 'py, PyDict>) -> Self {
        Self { dict, position: 0 }
    }
}

impl<'a, 'py> Iterator for DictItems<'a, 'py> {
    type Item = (Borrowed<'a, 'py, PyAny>, Borrowed<'a, 'py, PyAny>);

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        let mut key: *mut ffi::PyObject = std::ptr::null_mut();
        let mut value: *mut ffi::PyObject = std::ptr::null_mut();
        // SAFETY: `self.dict` is a live dict (borrowed for 'a) and the GIL is held
        // ('py). PyDict_Next reads the dict's entry table at `position`, bounds-
        // checked by CPython, and never fails or raises.
        let found = unsafe { ffi::PyDict_Next(self.dict.as_ptr(), &mut self.position, &mut key, &mut value) };
        if found == 0 {
            return None;
        }
        let py = self.dict.py();
        // SAFETY: PyDict_Next returned non-null borrowed references owned by the
        // dict. They stay valid for 'a because the dict lives that long and, by
        // the contract of `new`, is not modified meanwhile.
        Some(unsafe { (Borrowed::from_ptr(py, key), Borrowed::from_ptr(py, value)) })
    }
}

/// The value of a Python int (or int subclass) that fits an `i64`, read without
/// raising (and so without allocating an exception object); `None` otherwise.
#[inline]
pub fn small_int(obj: Borrowed<'_, '_, PyAny>) -> Option<i64> {
    let mut overflow: std::ffi::c_int = 0;
    // SAFETY: `obj` is a live object and the GIL is held (`Borrowed` proves both).
    // For an int, PyLong_AsLongAndOverflow reports overflow through `overflow`
    // instead of raising; for anything else it may raise, which is cleared below.
    let value = unsafe { ffi::PyLong_AsLongAndOverflow(obj.as_ptr(), &mut overflow) };
    if overflow != 0 {
        return None;
    }
    if value == -1 {
        if let Some(err) = PyErr::take(obj.py()) {
            drop(err);
            return None;
        }
    }
    #[allow(clippy::useless_conversion, reason = "c_long is narrower than i64 on some targets")]
    Some(i64::from(value))
}

/// The UTF-8 text of a str as CPython keeps it in the object (for an ASCII str,
/// its own data; otherwise encoded once and cached), with one call and no copy.
///
/// # Errors
/// The str cannot be encoded (a lone surrogate): the `UnicodeEncodeError` raised.
#[inline]
pub fn str_utf8<'a>(s: Borrowed<'a, '_, PyString>) -> PyResult<&'a [u8]> {
    let mut size: ffi::Py_ssize_t = 0;
    // SAFETY: `s` is a live str and the GIL is held (`Borrowed` proves both).
    let data = unsafe { ffi::PyUnicode_AsUTF8AndSize(s.as_ptr(), &mut size) };
    if data.is_null() {
        return Err(PyErr::fetch(s.py()));
    }
    // Never negative on success; an empty slice if it ever were.
    let len = usize::try_from(size).unwrap_or(0);
    // SAFETY: on success CPython returns `size` bytes of UTF-8 owned by the str
    // object, valid (and unchanged: str is immutable) while the object lives,
    // which the borrow 'a guarantees.
    Ok(unsafe { std::slice::from_raw_parts(data.cast::<u8>(), len) })
}

/// A list's items as borrowed references (no reference counting).
pub struct ListItems<'a, 'py> {
    list: Borrowed<'a, 'py, PyList>,
    index: ffi::Py_ssize_t,
    len: ffi::Py_ssize_t,
}

impl<'a, 'py> ListItems<'a, 'py> {
    /// # Safety
    /// As for [`DictItems::new`]: no Python code may run while the iterator or
    /// an item it returned is in use (nothing may modify `list`).
    pub unsafe fn new(list: Borrowed<'a, 'py, PyList>) -> Self {
        // SAFETY: `list` is a live list and the GIL is held; PyList_Size cannot fail for a list.
        let len = unsafe { ffi::PyList_Size(list.as_ptr()) };
        Self { list, index: 0, len }
    }
}

impl<'a, 'py> Iterator for ListItems<'a, 'py> {
    type Item = Borrowed<'a, 'py, PyAny>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        if self.index >= self.len {
            return None;
        }
        // SAFETY: `self.list` is a live list and the GIL is held. PyList_GetItem
        // bounds-checks the index against the list's current size and returns a
        // borrowed reference, or NULL (with IndexError set) if out of range.
        let item = unsafe { ffi::PyList_GetItem(self.list.as_ptr(), self.index) };
        self.index += 1;
        if item.is_null() {
            // Unreachable while the list is unchanged; stop cleanly if it was.
            drop(PyErr::take(self.list.py()));
            self.index = self.len;
            return None;
        }
        // SAFETY: a non-null borrowed reference owned by the list, which lives for
        // 'a and, by the contract of `new`, is not modified meanwhile.
        Some(unsafe { Borrowed::from_ptr(self.list.py(), item) })
    }
}
