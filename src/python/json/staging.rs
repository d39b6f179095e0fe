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
//! The object's memory comes from `malloc` uninitialized and is lent out as
//! [`Out`], which Rust allows over uninitialized bytes, so it is never zeroed
//! first (the walk writes every byte before its final position):
//! zeroing it 16 KiB at a time ahead of the walk cost 2-5 % of a call on
//! outputs of 1 to 19 MB (ASCII strs, floats, ints, numpy float64, users).

use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;

use pyo3::prelude::*;
use pyo3::types::PyBytes;

use super::error::SerializeError;
use super::out::Out;

pub(super) struct Staging {
    /// What is written to: `len` bytes at `ptr`, the `Vec`'s (all initialized)
    /// or the writer's (initialized only where the `Vec`'s start was copied
    /// over and where the walk wrote).
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
    /// object doubles it. Either way the buffer is then the whole object.
    ///
    /// # Errors
    /// No memory for the `bytes` object.
    #[cold]
    pub(super) fn grow(&mut self, py: Python<'_>, used: usize, at_least: usize) -> Result<(), SerializeError> {
        #[cfg(not(Py_LIMITED_API))]
        {
            // Called only when the room left is short (the buffer is the whole object).
            debug_assert!(at_least > self.len, "staging: a growth that was not needed");
            let writer = match self.writer.take() {
                Some(writer) => {
                    let size = (2 * writer.size).max(at_least);
                    writer.resize(py, size)
                }
                None => self.first_writer(py, (2 * self.len).max(at_least), used),
            };
            let writer = match writer {
                Ok(writer) => writer,
                Err(err) => {
                    // Nothing points into a freed object.
                    self.reset();
                    return Err(err);
                }
            };
            let (data, len) = (writer.data(), writer.size);
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
        let writer = match Writer::new(py, size.max(self.hint)) {
            Ok(writer) => writer,
            Err(_) if self.hint > size => Writer::new(py, size)?,
            Err(err) => return Err(err),
        };
        let used = used.min(self.len);
        // SAFETY: the writer's bytes (at least `size`) and the `Vec`'s first
        // `used` (`used <= self.len < size`) are both live and apart (one
        // CPython's, the other ours).
        unsafe { std::ptr::copy_nonoverlapping(self.ptr.as_ptr(), writer.data(), used) };
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

    /// The first `end` bytes written, when the buffer is the `Vec` (a sink that
    /// takes the output in chunks never has a `bytes` object).
    ///
    /// # Panics
    /// If the buffer is a `bytes` object, or `end` is past its end.
    pub(super) fn chunk(&self, end: usize) -> &[u8] {
        assert!(!self.in_bytes(), "staging: a chunk of the bytes object");
        // SAFETY: `ptr` is the `Vec`'s `len` bytes, owned by `self` and borrowed
        // with it: a `Vec<u8>`, so initialized, and written since only through
        // `Out`, which stores initialized bytes only.
        let all = unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) };
        &all[..end]
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
    type Target = Out;

    #[inline(always)]
    fn deref(&self) -> &Out {
        // SAFETY: `ptr` is `len` bytes owned by `self` (the `Vec`'s, or the
        // writer's, which `grow` made and `take_bytes` gives up only after
        // pointing `ptr` back at the `Vec`), borrowed here with `self`; as
        // `MaybeUninit`, they need not be initialized.
        Out::new_ref(unsafe { std::slice::from_raw_parts(self.ptr.as_ptr().cast(), self.len) })
    }
}

impl DerefMut for Staging {
    #[inline(always)]
    fn deref_mut(&mut self) -> &mut Out {
        // SAFETY: as in `deref`, and borrowed mutably with `self`. The `Vec`'s
        // bytes stay initialized: lent out only as `Out`, which stores
        // initialized bytes only.
        Out::new(unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr().cast(), self.len) })
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
/// alone under the GIL, never seen by Python code until `finish`. Its `size`
/// bytes are lent out as [`Out`]; the walk has written the first `used` of
/// them by the time `finish` makes it the output.
#[cfg(not(Py_LIMITED_API))]
struct Writer {
    obj: NonNull<pyo3::ffi::PyObject>,
    size: usize,
}

#[cfg(not(Py_LIMITED_API))]
impl Writer {
    fn new(py: Python<'_>, size: usize) -> Result<Self, SerializeError> {
        let len = isize::try_from(size).map_err(|_| too_large())?;
        // SAFETY: the GIL is held (`py`); a null pointer asks for `len` bytes
        // left uninitialized (lent out only as `Out`, written before `finish`).
        let obj = unsafe { pyo3::ffi::PyBytes_FromStringAndSize(std::ptr::null(), len) };
        let obj = NonNull::new(obj).ok_or_else(|| no_memory(py))?;
        Ok(Self { obj, size })
    }

    /// Its bytes (`size` of them, and the NUL after), which move when it grows.
    fn data(&self) -> *mut u8 {
        let obj = self.obj.as_ptr().cast::<pyo3::ffi::PyBytesObject>();
        // SAFETY: a live bytes object (made by `new`, not yet finished); this
        // takes the address of its text without reading it.
        unsafe { std::ptr::addr_of_mut!((*obj).ob_sval).cast() }
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
        Ok(Self { obj, size })
    }

    /// Its first `used` bytes (at most its size), which the walk has written,
    /// as the `bytes` object. It keeps its memory unless more than half of it
    /// is unused (see the module's comment).
    fn finish(self, py: Python<'_>, used: usize) -> Result<Bound<'_, PyBytes>, SerializeError> {
        let used = used.min(self.size);
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
