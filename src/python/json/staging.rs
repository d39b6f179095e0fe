//! The staging buffer the walk writes into: the thread's reused 64 KiB `Vec`,
//! or, once the output of `dumps` outgrows it, the `bytes` object being made,
//! so that a large text is written once instead of being copied into a new
//! `bytes` at the end. The stable-ABI build cannot resize a `bytes` object and
//! grows the `Vec` instead.
//!
//! How large the `bytes` object is made decides whether glibc's malloc serves
//! it from the heap, whose pages are already mapped, or maps fresh pages for it
//! (each faulted in on its first write, more than doubling the cost of a call).
//! glibc maps a request at or above its threshold, and raises the threshold to
//! the size of each mapped block freed. So a run of calls with outputs of one
//! size settles on the heap only if each call's request is no larger than the
//! block an earlier call freed: the object is made a little larger than the
//! thread's last such output, and it is not shrunk at the end unless more than
//! half of it is unused.
//!
//! The object's memory comes from `malloc` uninitialized, and the walk writes
//! through `&mut [u8]`: so only its initialized start is ever lent out. Each
//! growth zeroes the next `ZEROED_STEP` bytes just before the walk writes
//! them, while they are in cache, rather than the whole object at once (which
//! cost about a sixth of a call's time on 1.4 MB of text).

use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;

use pyo3::prelude::*;
use pyo3::types::PyBytes;

use super::error::SerializeError;

/// Bytes of a `bytes` object zeroed at a time (see the module's comment):
/// small enough to stay in a core's L1 cache until the walk writes them.
#[cfg(not(Py_LIMITED_API))]
const ZEROED_STEP: usize = 16 * 1024;

pub(super) struct Staging {
    /// What is written to: `len` bytes at `ptr`, the `Vec`'s or the writer's
    /// zeroed start.
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
    /// `vec` to write to, until it is outgrown; then a `bytes` object of at
    /// least `hint` bytes (see [`Staging::grow`]).
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

    /// Grows the buffer to at least `at_least` bytes, keeping its first `used`
    /// bytes. A first growth past the `Vec` makes a `bytes` object of `hint`
    /// bytes if that is more (so that a run of similar calls makes one object
    /// each and never grows it), else of twice the `Vec`; a growth past the
    /// object doubles it. Either way the buffer then ends where the zeroed start
    /// of the object ends: `ZEROED_STEP` bytes or more past the old end.
    ///
    /// # Errors
    /// No memory for the `bytes` object.
    #[cold]
    pub(super) fn grow(&mut self, py: Python<'_>, used: usize, at_least: usize) -> Result<(), SerializeError> {
        #[cfg(not(Py_LIMITED_API))]
        {
            let writer = match self.writer.take() {
                Some(writer) if writer.size >= at_least => Ok(writer),
                Some(writer) => {
                    let size = (2 * writer.size).max(at_least);
                    writer.resize(py, size)
                }
                None => self.first_writer(py, (2 * self.len).max(at_least), used),
            };
            let mut writer = match writer {
                Ok(writer) => writer,
                Err(err) => {
                    // Nothing points into a freed object.
                    self.reset();
                    return Err(err);
                }
            };
            writer.zero_to(at_least.max(writer.zeroed + ZEROED_STEP));
            let (data, len) = (writer.data(), writer.zeroed);
            self.writer = Some(writer);
            self.point_at(data, len);
            Ok(())
        }
        #[cfg(Py_LIMITED_API)]
        {
            let _ = (py, used);
            let len = (2 * self.len).max(at_least);
            self.vec.resize(len, 0);
            let (data, len) = (self.vec.as_mut_ptr(), self.vec.len());
            self.point_at(data, len);
            Ok(())
        }
    }

    /// The `bytes` object that takes over from the `Vec`: `hint` bytes or
    /// `size` if that is more, starting with the `Vec`'s first `used` bytes.
    #[cfg(not(Py_LIMITED_API))]
    fn first_writer(&self, py: Python<'_>, size: usize, used: usize) -> Result<Writer, SerializeError> {
        // The hint is only a guess from an earlier call: if memory for it is
        // short, the size needed now is enough.
        let mut writer = match Writer::new(py, size.max(self.hint)) {
            Ok(writer) => writer,
            Err(_) if self.hint > size => Writer::new(py, size)?,
            Err(err) => return Err(err),
        };
        let used = used.min(self.len);
        // SAFETY: the writer's bytes (at least `size`) and the `Vec`'s first
        // `used` (`used <= self.len < size`) are both live and apart (one
        // CPython's, the other ours).
        unsafe { std::ptr::copy_nonoverlapping(self.ptr.as_ptr(), writer.data(), used) };
        writer.zeroed = used;
        Ok(writer)
    }

    /// Whether the buffer is a `bytes` object (else the `Vec`).
    #[inline(always)]
    pub(super) fn in_bytes(&self) -> bool {
        #[cfg(not(Py_LIMITED_API))]
        return self.writer.is_some();
        #[cfg(Py_LIMITED_API)]
        false
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

#[cfg(not(Py_LIMITED_API))]
extern "C" {
    /// CPython's own resize of a `bytes` object that only its caller holds: a
    /// `realloc`, then the new size and the trailing NUL set. On failure it
    /// frees the object, sets `*bytes` to null and raises `MemoryError`.
    /// Exported by every CPython this build supports (3.11 to 3.13); pyo3
    /// declares it but keeps it private.
    fn _PyBytes_Resize(bytes: *mut *mut pyo3::ffi::PyObject, size: pyo3::ffi::Py_ssize_t) -> std::os::raw::c_int;
}

/// A `bytes` object being written: one new reference, held by the serializer
/// alone under the GIL, never seen by Python code until `finish`. Its first
/// `zeroed` bytes are initialized (written, or zeroed by `zero_to`); the rest
/// of its `size` are not, and are never lent out as a slice.
#[cfg(not(Py_LIMITED_API))]
struct Writer {
    obj: NonNull<pyo3::ffi::PyObject>,
    size: usize,
    zeroed: usize,
}

#[cfg(not(Py_LIMITED_API))]
impl Writer {
    fn new(py: Python<'_>, size: usize) -> Result<Self, SerializeError> {
        let len = isize::try_from(size).map_err(|_| too_large())?;
        // SAFETY: the GIL is held (`py`); a null pointer asks for `len` bytes
        // left uninitialized (`zero_to` or a copy initializes them before they
        // are lent out).
        let obj = unsafe { pyo3::ffi::PyBytes_FromStringAndSize(std::ptr::null(), len) };
        let obj = NonNull::new(obj).ok_or_else(|| no_memory(py))?;
        Ok(Self { obj, size, zeroed: 0 })
    }

    /// Its bytes (`size` of them, and the NUL after), which move when it grows.
    fn data(&self) -> *mut u8 {
        let obj = self.obj.as_ptr().cast::<pyo3::ffi::PyBytesObject>();
        // SAFETY: a live bytes object (made by `new`, not yet finished); this
        // takes the address of its text without reading it.
        unsafe { std::ptr::addr_of_mut!((*obj).ob_sval).cast() }
    }

    /// Initializes its bytes up to `end` (or its size, if less) with zeros.
    fn zero_to(&mut self, end: usize) {
        let end = end.min(self.size);
        if end > self.zeroed {
            // SAFETY: bytes `zeroed..end` lie inside the object's `size` bytes,
            // which are ours alone; they are written, not read.
            unsafe { self.data().add(self.zeroed).write_bytes(0, end - self.zeroed) };
            self.zeroed = end;
        }
    }

    /// The object resized to `size` bytes, keeping its bytes (up to `size`);
    /// on failure the object is gone (CPython freed it).
    fn resize(self, py: Python<'_>, size: usize) -> Result<Self, SerializeError> {
        let len = isize::try_from(size).map_err(|_| too_large())?;
        // Given up here whatever happens: CPython frees it on failure.
        let this = std::mem::ManuallyDrop::new(self);
        let mut obj = this.obj.as_ptr();
        // SAFETY: the GIL is held (`py`), and the object is a bytes object with
        // one reference, ours: what `_PyBytes_Resize` requires.
        if unsafe { _PyBytes_Resize(&mut obj, len) } < 0 {
            return Err(no_memory(py));
        }
        let obj = NonNull::new(obj).ok_or_else(|| no_memory(py))?;
        Ok(Self { obj, size, zeroed: this.zeroed.min(size) })
    }

    /// Its first `used` bytes (at most those initialized) as the `bytes`
    /// object. It keeps its memory unless more than half of it is unused (see
    /// the module's comment).
    fn finish(self, py: Python<'_>, used: usize) -> Result<Bound<'_, PyBytes>, SerializeError> {
        let used = used.min(self.zeroed);
        let this = if used < self.size / 2 {
            self.resize(py, used)?
        } else {
            let len = isize::try_from(used).map_err(|_| too_large())?;
            let obj = self.obj.as_ptr();
            // SAFETY: the object is a live bytes object of `size` bytes and a
            // NUL, ours alone; `used <= size`, so the NUL written at `used` is
            // inside it, and the smaller size only hides bytes (what
            // `_PyBytes_Resize` does besides the `realloc`).
            unsafe {
                self.data().add(used).write(0);
                (*obj.cast::<pyo3::ffi::PyVarObject>()).ob_size = len;
            }
            self
        };
        let this = std::mem::ManuallyDrop::new(this);
        // SAFETY: a new reference to a bytes object, handed over here (the
        // writer is not dropped: `ManuallyDrop`).
        let bytes = unsafe { Bound::from_owned_ptr(py, this.obj.as_ptr()) };
        // SAFETY: made by `PyBytes_FromStringAndSize`, resized by `_PyBytes_Resize`.
        Ok(unsafe { bytes.cast_into_unchecked() })
    }
}

#[cfg(not(Py_LIMITED_API))]
impl Drop for Writer {
    fn drop(&mut self) {
        // SAFETY: our reference to a live object, dropped by the serializer
        // that made it, under the GIL it holds throughout (an error left it
        // unfinished).
        unsafe { pyo3::ffi::Py_DECREF(self.obj.as_ptr()) };
    }
}

#[cold]
#[cfg(not(Py_LIMITED_API))]
fn no_memory(py: Python<'_>) -> SerializeError {
    let err = PyErr::take(py).unwrap_or_else(|| pyo3::exceptions::PyMemoryError::new_err(()));
    SerializeError::caused("no memory for the output".to_owned(), err)
}

#[cold]
#[cfg(not(Py_LIMITED_API))]
fn too_large() -> SerializeError {
    SerializeError::value("the output is too large".to_owned())
}
