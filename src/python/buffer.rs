//! The buffer protocol, both ways: the only `unsafe` code of the bindings.
//!
//! - [`contiguous_bytes`] reads any C-contiguous buffer a caller passes in
//!   (bytes, bytearray, memoryview, numpy arrays...).
//! - [`fill_writable_view`] hands Python a writable view over a reserved slot.

use std::ffi::c_int;

use pyo3::buffer::PyUntypedBuffer;
use pyo3::exceptions::PyBufferError;
use pyo3::ffi;
use pyo3::prelude::*;

/// The bytes of a buffer export, as one slice.
///
/// # Errors
/// `BufferError` if the buffer is not C-contiguous (a strided view: copy it
/// with `bytes(view)` or `numpy.ascontiguousarray` first).
pub fn contiguous_bytes(buffer: &PyUntypedBuffer) -> PyResult<&[u8]> {
    if !buffer.is_c_contiguous() {
        return Err(PyBufferError::new_err(
            "the buffer is not C-contiguous; pass bytes(view) or a contiguous copy instead",
        ));
    }
    let len = buffer.len_bytes();
    if len == 0 {
        return Ok(&[]);
    }
    // SAFETY: `buffer` holds a successful `PyObject_GetBuffer` export, which the
    // buffer protocol guarantees keeps `buf..buf+len` valid and unresized until
    // it is released (when `buffer` drops, after the returned slice's lifetime).
    // The export is C-contiguous (checked above), so those `len_bytes()` bytes are
    // exactly its contents, and `len > 0` means `buf` is non-null. Any byte value is
    // a valid `u8`. The exporter could still change the bytes from another thread;
    // callers therefore release the GIL only for immutable `bytes` exporters, so no
    // Python code can write them while the slice is in use.
    Ok(unsafe { std::slice::from_raw_parts(buffer.buf_ptr().cast::<u8>().cast_const(), len) })
}

/// Fills `view` with a writable, one-dimensional, unsigned-byte view of
/// `len` bytes at `ptr`, owned by `owner` (which the view keeps alive).
///
/// # Safety
/// `view` must be the pointer CPython passed to `bf_getbuffer`. `ptr..ptr+len`
/// must stay valid and writable, and be written by nobody else, for as long as
/// `owner` has this export outstanding (until its `__releasebuffer__` runs).
pub unsafe fn fill_writable_view(
    view: *mut ffi::Py_buffer,
    flags: c_int,
    owner: &Bound<'_, PyAny>,
    ptr: *mut u8,
    len: usize,
) -> PyResult<()> {
    let len = ffi::Py_ssize_t::try_from(len).map_err(|_| PyBufferError::new_err("view too large"))?;
    // SAFETY: `view` comes from CPython (caller's contract). PyBuffer_FillInfo
    // stores a new reference to `owner` in `view->obj`, so the owner (and through
    // it the channel mapping) outlives the export; `ptr..ptr+len` is valid and
    // exclusively ours for that long (caller's contract). It sets `format` to a
    // static "B", `shape`/`strides` to fields inside `*view` and fails only for a
    // NULL `view` (raising BufferError), since we export a writable buffer.
    let status = unsafe { ffi::PyBuffer_FillInfo(view, owner.as_ptr(), ptr.cast(), len, 0, flags) };
    if status == -1 {
        return Err(PyErr::take(owner.py()).unwrap_or_else(|| PyBufferError::new_err("PyBuffer_FillInfo failed")));
    }
    Ok(())
}
