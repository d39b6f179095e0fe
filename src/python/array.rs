//! numpy arrays and scalars read through numpy's array interface
//! (`__array_struct__`: a capsule holding a `PyArrayInterface`), which numpy has
//! kept unchanged since its first release. Nothing here links numpy or needs its
//! headers: the struct is declared below, and only the C API's capsule calls are
//! used, so this works in the stable-ABI build too.
//!
//! The element memory is never a Rust reference: it may be a memory map another
//! process writes, so each element is copied out with a raw (unaligned) read.

use std::marker::PhantomData;

use pyo3::ffi;
use pyo3::intern;
use pyo3::prelude::*;

/// numpy's `PyArrayInterface` (`numpy/ndarraytypes.h`).
#[repr(C)]
struct ArrayInterface {
    /// Always 2: a check that this is the struct.
    two: std::os::raw::c_int,
    nd: std::os::raw::c_int,
    typekind: std::os::raw::c_char,
    itemsize: std::os::raw::c_int,
    flags: std::os::raw::c_int,
    shape: *const ffi::Py_intptr_t,
    strides: *const ffi::Py_intptr_t,
    data: *const std::ffi::c_void,
    _descr: *mut ffi::PyObject,
}

/// `NPY_ARRAY_NOTSWAPPED`: the elements are in this machine's byte order.
const NOT_SWAPPED: std::os::raw::c_int = 0x0200;
/// Dimensions beyond this are refused (numpy's own limit is 64).
const MAX_DIMS: usize = 64;

/// An array's (or a numpy scalar's) elements, as its `__array_struct__` describes
/// them. Holds the capsule, and with it the array, alive.
pub struct ArrayView<'py> {
    _capsule: Bound<'py, PyAny>,
    /// `b'b'` bool, `b'i'` signed int, `b'u'` unsigned int, `b'f'` float, `b'M'`
    /// datetime64, and others that the caller refuses.
    pub kind: u8,
    pub itemsize: usize,
    /// In this machine's byte order.
    pub native: bool,
    pub shape: Vec<usize>,
    strides: Vec<isize>,
    data: *const u8,
}

/// Element types read from an array: plain numbers, for which every bit pattern
/// is a valid value (sealed: only the types below).
pub trait Element: Copy + sealed::Sealed {}

mod sealed {
    pub trait Sealed {}
}

macro_rules! elements {
    ($($t:ty),*) => { $(impl sealed::Sealed for $t {} impl Element for $t {})* };
}
elements!(u8, u16, u32, u64, i8, i16, i32, i64, f32, f64);

impl<'py> ArrayView<'py> {
    /// The view of `obj` through its `__array_struct__`.
    ///
    /// # Errors
    /// `obj` has none, or it is not a `PyArrayInterface` numpy would make.
    pub fn new(obj: &Bound<'py, PyAny>) -> PyResult<Self> {
        let capsule = obj.getattr(intern!(obj.py(), "__array_struct__"))?;
        let invalid = || pyo3::exceptions::PyValueError::new_err("__array_struct__ is not a numpy array interface");
        // SAFETY: the GIL is held; PyCapsule_CheckExact only reads the type.
        if unsafe { ffi::PyCapsule_CheckExact(capsule.as_ptr()) } == 0 {
            return Err(invalid());
        }
        // SAFETY: a capsule (checked above); numpy makes its capsule without a
        // name, so NULL is the name to ask for (a mismatch sets an error and
        // returns NULL, handled below).
        let pointer = unsafe { ffi::PyCapsule_GetPointer(capsule.as_ptr(), std::ptr::null()) };
        if pointer.is_null() {
            return Err(PyErr::take(obj.py()).unwrap_or_else(invalid));
        }
        // SAFETY: numpy's `__array_struct__` capsule points to a PyArrayInterface
        // that lives as long as the capsule, which `ArrayView` holds; the `two`
        // field confirms the struct before any other field is trusted.
        let iface = unsafe { &*pointer.cast::<ArrayInterface>() };
        let nd = usize::try_from(iface.nd).map_err(|_| invalid())?;
        let itemsize = usize::try_from(iface.itemsize).map_err(|_| invalid())?;
        if iface.two != 2 || nd > MAX_DIMS || (nd > 0 && (iface.shape.is_null() || iface.strides.is_null())) {
            return Err(invalid());
        }
        let (shape, strides) = if nd == 0 {
            (Vec::new(), Vec::new())
        } else {
            // SAFETY: `shape` and `strides` are non-null arrays of `nd` entries
            // (the array interface's contract), alive with the capsule; copied out.
            unsafe {
                (
                    std::slice::from_raw_parts(iface.shape, nd).to_vec(),
                    std::slice::from_raw_parts(iface.strides, nd).to_vec(),
                )
            }
        };
        let shape = shape.into_iter().map(|n| usize::try_from(n).map_err(|_| invalid())).collect::<PyResult<_>>()?;
        Ok(Self {
            kind: iface.typekind as u8,
            itemsize,
            native: iface.flags & NOT_SWAPPED != 0,
            shape,
            strides,
            data: iface.data.cast(),
            _capsule: capsule,
        })
    }

    /// The elements along the last dimension at the index `outer` of the other
    /// dimensions (all of them for a 1-d array, the one element of a 0-d array),
    /// read as `T`; `None` if `T` is not the element's size or `outer` is out of
    /// the shape.
    pub fn line<T: Element>(&self, outer: &[usize]) -> Option<Line<'_, T>> {
        if std::mem::size_of::<T>() != self.itemsize || self.data.is_null() {
            return None;
        }
        let (last, stride) = match (self.shape.last(), self.strides.last()) {
            (Some(&n), Some(&s)) if outer.len() + 1 == self.shape.len() => (n, s),
            (None, None) if outer.is_empty() => (1, 0),
            _ => return None,
        };
        let mut offset = 0isize;
        for ((&i, &n), &s) in outer.iter().zip(&self.shape).zip(&self.strides) {
            if i >= n {
                return None;
            }
            offset = offset.checked_add(isize::try_from(i).ok()?.checked_mul(s)?)?;
        }
        if last == 0 {
            return Some(Line { ptr: self.data, stride, left: 0, _array: PhantomData });
        }
        // The last element's offset must be computable too (it lies inside the array).
        isize::try_from(last - 1).ok()?.checked_mul(stride)?.checked_add(offset)?;
        Some(Line {
            // SAFETY: within the array's memory: each index is inside the shape,
            // and numpy guarantees that `data + sum(index * stride)` is an element
            // for every such index (the computation did not overflow, above).
            ptr: unsafe { self.data.offset(offset) },
            stride,
            left: last,
            _array: PhantomData,
        })
    }
}

/// The elements of one line of an array (see [`ArrayView::line`]).
pub struct Line<'a, T> {
    ptr: *const u8,
    stride: isize,
    left: usize,
    _array: PhantomData<&'a [T]>,
}

impl<T: Element> Line<'_, T> {
    /// The first `n` elements (at most as many as are left) as a line of their
    /// own, this line going on after them: a batch walked with one count.
    #[inline(always)]
    pub fn split_front(&mut self, n: usize) -> Self {
        let n = n.min(self.left);
        let front = Line { ptr: self.ptr, stride: self.stride, left: n, _array: PhantomData };
        self.left -= n;
        // `wrapping_offset`: past the last element the pointer is never read
        // (`left` is 0 then), so it may point anywhere.
        self.ptr = self.ptr.wrapping_offset(self.stride.wrapping_mul(n as isize));
        front
    }

    /// The next `N` elements, if there are that many left (else none is taken).
    #[inline(always)]
    pub fn next_array<const N: usize>(&mut self) -> Option<[T; N]> {
        if self.left < N {
            return None;
        }
        self.left -= N;
        if self.stride == std::mem::size_of::<T>() as isize {
            // Contiguous elements: one read of all `N`.
            // SAFETY: as below, for `N` consecutive elements of `size_of::<T>()`
            // bytes each (the stride), all within the line.
            let values = unsafe { self.ptr.cast::<[T; N]>().read_unaligned() };
            self.ptr = self.ptr.wrapping_add(N * std::mem::size_of::<T>());
            return Some(values);
        }
        Some(std::array::from_fn(|_| {
            // SAFETY: as in `next`: `ptr` is one of the line's elements, as `left`
            // was at least `N` before these `N` reads.
            let value = unsafe { self.ptr.cast::<T>().read_unaligned() };
            self.ptr = self.ptr.wrapping_offset(self.stride);
            value
        }))
    }
}

impl<T: Element> Iterator for Line<'_, T> {
    type Item = T;

    #[inline(always)]
    fn next(&mut self) -> Option<T> {
        if self.left == 0 {
            return None;
        }
        // SAFETY: `ptr` is one of the line's elements while `left > 0`
        // (`ArrayView::line` checked the first and the last, and each step moves
        // by the stride), `size_of::<T>()` bytes long, alive while the view holds
        // the array. Read unaligned and by value, never as a reference (another
        // process may write a memory-mapped array); any bit pattern is a valid
        // `T` (`Element`).
        let value = unsafe { self.ptr.cast::<T>().read_unaligned() };
        self.left -= 1;
        // Past the last element the pointer is never read (see `split_front`).
        self.ptr = self.ptr.wrapping_offset(self.stride);
        Some(value)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

impl<T: Element> ExactSizeIterator for Line<'_, T> {}

/// Where a numpy scalar type keeps its value: right after the object header, as
/// numpy's scalar objects do (`PyObject_HEAD` then `obval`, in
/// `numpy/arrayscalars.h`), which lets the value be read without a call. Made
/// only for a type whose instances are large enough (`__basicsize__`); the caller
/// confirms the layout on an instance (see `json/numpy.rs`) before relying on it.
pub struct ScalarLayout {
    ty: Py<pyo3::types::PyType>,
    /// The value's offset and size in bytes.
    offset: usize,
    size: usize,
}

impl ScalarLayout {
    /// The layout of `ty`'s instances holding a value of `size` bytes; `None` if
    /// they are too small for it.
    pub fn new(ty: &Bound<'_, pyo3::types::PyType>, size: usize) -> Option<Self> {
        // The header, then the value at its alignment (numpy's values are 1 to 8
        // bytes, aligned to their size).
        let offset = std::mem::size_of::<ffi::PyObject>().next_multiple_of(size.max(1));
        let basicsize = ty.getattr(intern!(ty.py(), "__basicsize__")).ok()?.extract::<usize>().ok()?;
        (basicsize >= offset + size).then(|| Self { ty: ty.clone().unbind(), offset, size })
    }

    /// The value of `obj` as `T`; `None` unless `obj`'s type is exactly this
    /// layout's type and `T` is the value's size.
    #[inline(always)]
    pub fn read<T: Element>(&self, obj: Borrowed<'_, '_, PyAny>) -> Option<T> {
        if obj.get_type_ptr().cast::<ffi::PyObject>() != self.ty.as_ptr() || std::mem::size_of::<T>() != self.size {
            return None;
        }
        // SAFETY: `obj` is an instance of exactly `self.ty`, whose instances are
        // at least `offset + size` bytes (`__basicsize__`, checked in `new`;
        // numpy's scalar types have no variable part), and `T` is `size` bytes
        // of plain data, for which any bit pattern is valid (`Element`). Read by
        // value, unaligned; `obj` is alive for the borrow.
        Some(unsafe { obj.as_ptr().cast::<u8>().add(self.offset).cast::<T>().read_unaligned() })
    }
}
