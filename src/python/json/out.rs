//! The type the walk writes its text into: bytes that may be uninitialized (a
//! `bytes` object's fresh memory), through which only initialized bytes can be
//! stored, so that memory which was initialized stays so and can be read back.

use std::mem::MaybeUninit;
use std::ops::{Deref, DerefMut, Index, IndexMut};
use std::slice::SliceIndex;

/// Output bytes, written and never read: a slice of `MaybeUninit<u8>` (which
/// Rust allows over uninitialized memory) whose only stores are of bytes
/// (`set`, `put`). Its parts, by range or as fixed-size windows, are `Out` too.
#[repr(transparent)]
pub(super) struct Out([MaybeUninit<u8>]);

/// `N` bytes of output: a window of fixed size, whose stores at offsets known to
/// be inside it need no bounds checks. Everything else as [`Out`].
#[repr(transparent)]
pub(super) struct OutArray<const N: usize>([MaybeUninit<u8>; N]);

impl Out {
    /// `bytes` as output.
    #[inline(always)]
    pub(super) fn new(bytes: &mut [MaybeUninit<u8>]) -> &mut Out {
        // SAFETY: `Out` is a transparent wrapper of `[MaybeUninit<u8>]`; the
        // borrow is carried over.
        unsafe { &mut *(std::ptr::from_mut(bytes) as *mut Out) }
    }

    /// `bytes` as output, shared.
    #[inline(always)]
    pub(super) fn new_ref(bytes: &[MaybeUninit<u8>]) -> &Out {
        // SAFETY: as in `Out::new`.
        unsafe { &*(std::ptr::from_ref(bytes) as *const Out) }
    }

    /// Bytes of output.
    #[inline(always)]
    pub(super) fn len(&self) -> usize {
        self.0.len()
    }

    /// Stores `b` at `at`.
    ///
    /// # Panics
    /// If `at` is not inside.
    #[inline(always)]
    pub(super) fn set(&mut self, at: usize, b: u8) {
        self.0[at] = MaybeUninit::new(b);
    }

    /// Stores `b` at `at` if `at` is inside; whether it did.
    #[inline(always)]
    pub(super) fn try_set(&mut self, at: usize, b: u8) -> bool {
        match self.0.get_mut(at) {
            Some(byte) => {
                *byte = MaybeUninit::new(b);
                true
            }
            None => false,
        }
    }

    /// Copies `src` over all of it (as `copy_from_slice`).
    ///
    /// # Panics
    /// If the lengths differ.
    #[inline(always)]
    pub(super) fn put(&mut self, src: &[u8]) {
        // SAFETY: `MaybeUninit<u8>` has the layout of `u8`, and an initialized
        // `u8` is a valid one; the view is shared, so nothing is written through it.
        let src = unsafe { &*(std::ptr::from_ref(src) as *const [MaybeUninit<u8>]) };
        self.0.copy_from_slice(src);
    }

    /// The part `index`, if it is inside.
    #[inline(always)]
    pub(super) fn get_mut<I>(&mut self, index: I) -> Option<&mut Out>
    where
        I: SliceIndex<[MaybeUninit<u8>], Output = [MaybeUninit<u8>]>,
    {
        self.0.get_mut(index).map(Out::new)
    }

    /// The first `N` bytes as a window, if there are as many.
    #[inline(always)]
    pub(super) fn first_chunk_mut<const N: usize>(&mut self) -> Option<&mut OutArray<N>> {
        self.0.first_chunk_mut::<N>().map(OutArray::new)
    }
}

impl<const N: usize> OutArray<N> {
    #[inline(always)]
    fn new(bytes: &mut [MaybeUninit<u8>; N]) -> &mut OutArray<N> {
        // SAFETY: `OutArray<N>` is a transparent wrapper of `[MaybeUninit<u8>; N]`;
        // the borrow is carried over.
        unsafe { &mut *(std::ptr::from_mut(bytes) as *mut OutArray<N>) }
    }
}

impl<I> Index<I> for Out
where
    I: SliceIndex<[MaybeUninit<u8>], Output = [MaybeUninit<u8>]>,
{
    type Output = Out;

    #[inline(always)]
    fn index(&self, index: I) -> &Out {
        Out::new_ref(&self.0[index])
    }
}

impl<I> IndexMut<I> for Out
where
    I: SliceIndex<[MaybeUninit<u8>], Output = [MaybeUninit<u8>]>,
{
    #[inline(always)]
    fn index_mut(&mut self, index: I) -> &mut Out {
        Out::new(&mut self.0[index])
    }
}

impl<const N: usize> Deref for OutArray<N> {
    type Target = Out;

    #[inline(always)]
    fn deref(&self) -> &Out {
        Out::new_ref(&self.0)
    }
}

impl<const N: usize> DerefMut for OutArray<N> {
    #[inline(always)]
    fn deref_mut(&mut self) -> &mut Out {
        Out::new(&mut self.0)
    }
}

impl Default for &mut Out {
    /// No bytes (for `std::mem::take` of a part).
    fn default() -> Self {
        Out::new(&mut [])
    }
}

/// A scratch buffer made zeroed and written as [`Out`], whose bytes can be
/// read back: `Out` stores only initialized bytes.
pub(super) struct Scratch<B>(B);

impl<const N: usize> Scratch<[MaybeUninit<u8>; N]> {
    pub(super) fn new() -> Self {
        Self([MaybeUninit::new(0); N])
    }
}

#[cfg(test)]
impl Scratch<Vec<MaybeUninit<u8>>> {
    pub(super) fn with_len(len: usize) -> Self {
        Self(vec![MaybeUninit::new(0); len])
    }
}

impl<B: AsRef<[MaybeUninit<u8>]> + AsMut<[MaybeUninit<u8>]>> Scratch<B> {
    pub(super) fn out(&mut self) -> &mut Out {
        Out::new(self.0.as_mut())
    }

    /// Its bytes `range`.
    ///
    /// # Panics
    /// If `range` is not inside it.
    pub(super) fn bytes(&self, range: std::ops::Range<usize>) -> &[u8] {
        let part = &self.0.as_ref()[range];
        // SAFETY: made zeroed, and written since only through `Out`, which
        // stores initialized bytes only; `MaybeUninit<u8>` has the layout of `u8`.
        unsafe { &*(std::ptr::from_ref(part) as *const [u8]) }
    }
}
