//! `dumps`' entry point, written by hand: a `METH_FASTCALL | METH_KEYWORDS`
//! function that reads its usual arguments, `(obj)` and `(obj, default=...)`, in a
//! few compares, where pyo3's generated parser walks its general description of
//! the signature on every call. Any other shape of call (a missing or extra
//! argument, an unknown keyword, a keyword name that is not the interned
//! `"default"`) is handed whole to the `#[pyfunction]` version, whose errors are
//! pyo3's. The call still goes through pyo3's trampoline, which counts the thread
//! as attached for pyo3 (so references dropped during the call are released at
//! once, not deferred), applies pending deferred releases, and turns a panic into
//! an exception.

use std::cell::UnsafeCell;

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyCFunction, PyDict, PyTuple};

use super::json;

/// The docstring, with the signature line CPython reads `__text_signature__`
/// from (the form pyo3 gives a `#[pyfunction]`).
const DOC: &std::ffi::CStr = c"dumps(obj, /, *, default=None)\n--\n\n\
Serializes `obj` to compact JSON bytes with the same serializer as\n\
``Channel.write_json`` (the same bytes as ``orjson.dumps(obj)``).\n\
``default(value)`` is called with each value that has no JSON form; what it\n\
returns is written instead.";

/// A `PyMethodDef` CPython may keep a pointer to for the life of the process.
struct MethodDef(UnsafeCell<ffi::PyMethodDef>);

// SAFETY: the definition is never written after it is built (CPython only reads
// it, under the GIL); the cell only provides the `*mut` the C API asks for.
unsafe impl Sync for MethodDef {}

static DUMPS: MethodDef = MethodDef(UnsafeCell::new(ffi::PyMethodDef {
    ml_name: c"dumps".as_ptr(),
    ml_meth: ffi::PyMethodDefPointer {
        PyCFunctionFastWithKeywords: pyo3::impl_::trampoline::get_trampoline_function!(
            fastcall_cfunction_with_keywords,
            dumps
        ),
    },
    ml_flags: ffi::METH_FASTCALL | ffi::METH_KEYWORDS,
    ml_doc: DOC.as_ptr(),
}));

/// The `#[pyfunction]` form, for every call `dumps` does not read itself.
static CHECKED: PyOnceLock<Py<PyCFunction>> = PyOnceLock::new();

/// The same signature as the hand-written `dumps`, parsed by pyo3.
#[pyfunction]
#[pyo3(name = "dumps", signature = (obj, /, *, default = None))]
fn dumps_checked<'py>(obj: &Bound<'py, PyAny>, default: Option<Bound<'py, PyAny>>) -> PyResult<Bound<'py, PyAny>> {
    let options = json::Options::new(default)?;
    Ok(super::dumps_bytes(obj, &options)?.into_any())
}

/// Adds `dumps` to `module`.
pub fn register(module: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = module.py();
    let checked = wrap_pyfunction!(dumps_checked, module)?;
    // Set once per process: a second import of the module (another interpreter
    // is not supported) keeps the first, identical function.
    let _ = CHECKED.set(py, checked.unbind());
    let name = module.name()?;
    // No `__self__` (None, as for the `#[pyfunction]`s).
    // SAFETY: `DUMPS` is a static that lives for the process, as CPython
    // requires of a definition; the module's name is a live str (the function
    // takes its own reference).
    let function = unsafe { ffi::PyCFunction_NewEx(DUMPS.0.get(), std::ptr::null_mut(), name.as_ptr()) };
    // SAFETY: a new reference, or null with an exception set.
    let function = unsafe { Bound::from_owned_ptr_or_err(py, function)? };
    module.add("dumps", function)
}

/// The `METH_FASTCALL | METH_KEYWORDS` body, run inside pyo3's trampoline.
///
/// # Safety
/// Called by CPython through the trampoline: `args` holds `nargs` positional
/// arguments followed by one value per name in `kwnames` (a tuple of str, or
/// null when there are no keywords).
unsafe fn dumps(
    py: Python<'_>,
    _module: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
) -> PyResult<*mut ffi::PyObject> {
    if nargs == 1 {
        // SAFETY: `nargs` is 1, so `args[0]` is a live, borrowed argument.
        let obj = unsafe { Borrowed::from_ptr(py, *args) };
        if kwnames.is_null() {
            return Ok(super::dumps_bytes(&obj, &json::Options::default())?.into_ptr());
        }
        // SAFETY: a non-null `kwnames` is a tuple of str (CPython's vectorcall
        // protocol).
        let names = unsafe { Borrowed::from_ptr(py, kwnames).cast_unchecked::<PyTuple>() };
        // Pointer equality: a `default=` written in the source is the interned
        // string; any other name, or an equal string that is not the interned
        // one, goes the checked way.
        if names.len() == 1
            && names.get_borrowed_item(0).is_ok_and(|n| n.as_ptr() == pyo3::intern!(py, "default").as_ptr())
        {
            // SAFETY: one keyword, so `args[1]` is its live, borrowed value.
            let default = unsafe { Borrowed::from_ptr(py, *args.add(1)) };
            let options = json::Options::new(Some(default.to_owned()))?;
            return Ok(super::dumps_bytes(&obj, &options)?.into_ptr());
        }
    }
    // SAFETY: as documented above, from CPython's vectorcall protocol.
    unsafe { call_checked(py, args, nargs, kwnames) }
}

/// Calls the `#[pyfunction]` form with the same arguments.
///
/// # Safety
/// As for [`dumps`].
#[cold]
unsafe fn call_checked(
    py: Python<'_>,
    args: *const *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
) -> PyResult<*mut ffi::PyObject> {
    let checked = CHECKED
        .get(py)
        .ok_or_else(|| pyo3::exceptions::PyRuntimeError::new_err("shmbridge._native is not initialised"))?;
    let names = if kwnames.is_null() {
        None
    } else {
        // SAFETY: a non-null `kwnames` is a tuple of str.
        Some(unsafe { Borrowed::from_ptr(py, kwnames).cast_unchecked::<PyTuple>() })
    };
    let positional = usize::try_from(nargs).unwrap_or(0);
    let keywords = names.as_ref().map_or(0, |n| n.len());
    let value = |i: usize| {
        // SAFETY: `args` holds `positional + keywords` live, borrowed arguments
        // and `i` is below that.
        unsafe { Borrowed::from_ptr(py, *args.add(i)) }
    };
    let tuple = PyTuple::new(py, (0..positional).map(value))?;
    let kwargs = match &names {
        Some(names) => {
            let dict = PyDict::new(py);
            for (i, name) in names.iter().enumerate().take(keywords) {
                dict.set_item(name, value(positional + i))?;
            }
            Some(dict)
        }
        None => None,
    };
    Ok(checked.bind(py).call(tuple, kwargs.as_ref())?.into_ptr())
}
