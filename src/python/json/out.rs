//! The type the walk writes its text into, and the view that copies bytes into it.

use std::mem::MaybeUninit;

/// What the walk writes its text into: bytes that may be uninitialized (a
/// `bytes` object's fresh memory). The JSON writers only ever store
/// initialized bytes into it (`MaybeUninit::new`, or copies of byte slices
/// through [`as_out`]; none of them stores `MaybeUninit::uninit()`), so a
/// buffer that was initialized stays so. The types do not enforce that: the
/// two reads that rely on it, [`Scratch::bytes`] and the staging buffer's
/// `chunk`, are `unsafe` and name it as their contract.
pub(super) type Out = [MaybeUninit<u8>];

/// `bytes` seen as [`Out`], to be copied into the output.
#[inline(always)]
pub(super) fn as_out(bytes: &[u8]) -> &Out {
    // SAFETY: `MaybeUninit<u8>` has the layout of `u8`, and an initialized
    // `u8` is a valid one; the view is shared, so nothing is written through it.
    unsafe { &*(std::ptr::from_ref(bytes) as *const Out) }
}

/// A scratch buffer made zeroed and written as [`Out`], whose written bytes
/// can be read back.
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

impl<B: AsRef<Out> + AsMut<Out>> Scratch<B> {
    pub(super) fn out(&mut self) -> &mut Out {
        self.0.as_mut()
    }

    /// Its bytes `range`.
    ///
    /// # Safety
    /// Nothing written into it through [`Scratch::out`] was uninitialized
    /// (true of every JSON writer: see [`Out`]).
    ///
    /// # Panics
    /// If `range` is not inside it.
    pub(super) unsafe fn bytes(&self, range: std::ops::Range<usize>) -> &[u8] {
        let part = &self.0.as_ref()[range];
        // SAFETY: made zeroed, and by the contract only initialized bytes were
        // written since; `MaybeUninit<u8>` has the layout of `u8`.
        unsafe { &*(std::ptr::from_ref(part) as *const [u8]) }
    }
}
