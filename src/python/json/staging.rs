//! The staging buffer the walk writes into: the thread's reused 64 KiB `Vec`,
//! or, once the output of `dumps` outgrows it, the `bytes` object being made
//! (CPython's `PyBytesWriter`), so that a large text is written once instead of
//! being copied into a new `bytes` at the end. The stable-ABI build has no
//! `PyBytesWriter` and grows the `Vec` instead.

use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;

use pyo3::prelude::*;
use pyo3::types::PyBytes;

use super::error::SerializeError;

pub(super) struct Staging {
    /// What is written to: `len` bytes at `ptr`, the `Vec`'s or the writer's.
    ptr: NonNull<u8>,
    len: usize,
    /// Owns the bytes at `ptr` while `writer` is `None`; kept for the next call
    /// either way.
    vec: Vec<u8>,
    /// The size a first `bytes` object is made with, at the least.
    hint: usize,
    #[cfg(not(Py_LIMITED_API))]
    writer: Option<Writer>,
}

impl Staging {
    /// `vec` to write to, until it is outgrown by more than `hint` bytes (see
    /// [`Staging::grow`]).
    pub(super) fn new(vec: Vec<u8>, hint: usize) -> Self {
        let mut staging = Self {
            ptr: NonNull::dangling(),
            len: 0,
            vec,
            hint,
            #[cfg(not(Py_LIMITED_API))]
            writer: None,
        };
        let (data, len) = (staging.vec.as_mut_ptr(), staging.vec.len());
        staging.point_at(data, len);
        staging
    }

    /// Grows the buffer to at least `at_least` bytes (and at least twice what
    /// it was), keeping its first `used` bytes. A first growth past the `Vec`
    /// makes a `bytes` object of `hint` bytes if that is more (a little more than
    /// the last such output of this thread: a run of similar calls grows once each).
    ///
    /// # Errors
    /// No memory for the `bytes` object.
    #[cold]
    pub(super) fn grow(&mut self, py: Python<'_>, used: usize, at_least: usize) -> Result<(), SerializeError> {
        let len = (2 * self.len).max(at_least);
        #[cfg(not(Py_LIMITED_API))]
        {
            if let Some(writer) = self.writer.as_mut() {
                writer.resize(py, len)?;
                let data = writer.data();
                self.point_at(data, len);
                return Ok(());
            }
            let len = len.max(self.hint);
            let writer = Writer::new(py, len)?;
            let data = writer.data();
            // SAFETY: the writer's `len` bytes and the `Vec`'s first `used`
            // (`used <= self.len < len`) are both live and apart (one CPython's,
            // the other ours).
            unsafe { std::ptr::copy_nonoverlapping(self.ptr.as_ptr(), data, used.min(self.len)) };
            self.writer = Some(writer);
            self.point_at(data, len);
            Ok(())
        }
        #[cfg(Py_LIMITED_API)]
        {
            let _ = (py, used);
            self.vec.resize(len, 0);
            let (data, len) = (self.vec.as_mut_ptr(), self.vec.len());
            self.point_at(data, len);
            Ok(())
        }
    }

    /// The first `used` bytes as the `bytes` object, if the buffer is one
    /// (the buffer is the `Vec` again after this); `None` if it is the `Vec`.
    ///
    /// # Errors
    /// CPython could not shrink the object (no memory).
    pub(super) fn take_bytes<'py>(
        &mut self,
        py: Python<'py>,
        used: usize,
    ) -> Result<Option<Bound<'py, PyBytes>>, SerializeError> {
        #[cfg(not(Py_LIMITED_API))]
        if let Some(writer) = self.writer.take() {
            self.reset();
            // With room to spare: the walk makes room for a few hundred bytes
            // past its position, and a growth at the end would copy it all.
            self.hint = used + used / 8 + 4096;
            return writer.finish(py, used).map(Some);
        }
        let _ = (py, used);
        Ok(None)
    }

    /// The `Vec` and the hint for the next call (a `bytes` object not taken
    /// is dropped).
    pub(super) fn into_parts(mut self) -> (Vec<u8>, usize) {
        (std::mem::take(&mut self.vec), self.hint)
    }

    /// Writes to the `Vec` again.
    #[cfg(not(Py_LIMITED_API))]
    fn reset(&mut self) {
        let (data, len) = (self.vec.as_mut_ptr(), self.vec.len());
        self.point_at(data, len);
    }

    fn point_at(&mut self, data: *mut u8, len: usize) {
        (self.ptr, self.len) = match NonNull::new(data) {
            Some(ptr) => (ptr, len),
            None => (NonNull::dangling(), 0),
        };
    }
}

impl Deref for Staging {
    type Target = [u8];

    #[inline(always)]
    fn deref(&self) -> &[u8] {
        // SAFETY: `ptr` is `len` initialized bytes owned by `self` (the `Vec`'s,
        // or the writer's, which `grow` made and `take_bytes` gives up only
        // after pointing `ptr` back at the `Vec`), borrowed here with `self`.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl DerefMut for Staging {
    #[inline(always)]
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `deref`, and borrowed mutably with `self`.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

/// A `bytes` object being written (CPython's `PyBytesWriter`; pyo3 provides
/// it on versions before 3.15). Only the serializer, under the GIL, holds it.
#[cfg(not(Py_LIMITED_API))]
struct Writer(NonNull<pyo3::ffi::compat::PyBytesWriter>);

#[cfg(not(Py_LIMITED_API))]
impl Writer {
    fn new(py: Python<'_>, len: usize) -> Result<Self, SerializeError> {
        let size = isize::try_from(len).map_err(|_| too_large(py))?;
        // SAFETY: the GIL is held (`py`).
        let writer = unsafe { pyo3::ffi::compat::PyBytesWriter_Create(size) };
        NonNull::new(writer).map(Self).ok_or_else(|| no_memory(py))
    }

    /// Where its bytes start (they move when it grows).
    fn data(&self) -> *mut u8 {
        // SAFETY: a live writer (made by `new`, not yet finished); the GIL is held
        // by whoever holds the serializer.
        unsafe { pyo3::ffi::compat::PyBytesWriter_GetData(self.0.as_ptr()).cast() }
    }

    /// Grows it to `len` bytes, keeping what is written.
    fn resize(&mut self, py: Python<'_>, len: usize) -> Result<(), SerializeError> {
        let size = isize::try_from(len).map_err(|_| too_large(py))?;
        // SAFETY: a live writer; the GIL is held (`py`).
        if unsafe { pyo3::ffi::compat::PyBytesWriter_Resize(self.0.as_ptr(), size) } < 0 {
            return Err(no_memory(py));
        }
        Ok(())
    }

    /// Its first `used` bytes (at most its size) as the `bytes` object.
    fn finish(self, py: Python<'_>, used: usize) -> Result<Bound<'_, PyBytes>, SerializeError> {
        let writer = std::mem::ManuallyDrop::new(self);
        let size = isize::try_from(used).map_err(|_| too_large(py))?;
        // SAFETY: a live writer, given up here (not dropped: `ManuallyDrop`);
        // the GIL is held (`py`). The call returns a new reference to a bytes
        // object, or null with an exception set, and frees the writer either way.
        let bytes = unsafe { pyo3::ffi::compat::PyBytesWriter_FinishWithSize(writer.0.as_ptr(), size) };
        // SAFETY: as just said, a new reference or null.
        let bytes = unsafe { Bound::from_owned_ptr_or_err(py, bytes) }.map_err(no_memory_from)?;
        // SAFETY: `PyBytesWriter_FinishWithSize` returns a bytes object.
        Ok(unsafe { bytes.cast_into_unchecked() })
    }
}

#[cfg(not(Py_LIMITED_API))]
impl Drop for Writer {
    fn drop(&mut self) {
        // SAFETY: a live writer, dropped by the serializer that made it, under
        // the GIL it holds throughout (an error left it unfinished).
        unsafe { pyo3::ffi::compat::PyBytesWriter_Discard(self.0.as_ptr()) };
    }
}

#[cold]
#[cfg(not(Py_LIMITED_API))]
fn no_memory(py: Python<'_>) -> SerializeError {
    let err = PyErr::take(py).unwrap_or_else(|| pyo3::exceptions::PyMemoryError::new_err(()));
    no_memory_from(err)
}

#[cold]
#[cfg(not(Py_LIMITED_API))]
fn no_memory_from(err: PyErr) -> SerializeError {
    SerializeError::caused("no memory for the output".to_owned(), err)
}

#[cold]
#[cfg(not(Py_LIMITED_API))]
fn too_large(py: Python<'_>) -> SerializeError {
    let _ = py;
    SerializeError::value("the output is too large".to_owned())
}
