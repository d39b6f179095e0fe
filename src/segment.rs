//! The one place that touches shared memory: a mapping of the channel file and
//! bounds-checked accessors over raw pointers. Every other module is safe code.
//!
//! Rules kept here:
//! - No `&[u8]` or `&mut [u8]` is ever formed over bytes another process may
//!   write. Payload bytes are copied out with volatile reads; words that are
//!   shared across processes (sequence numbers, lengths, the snapshot pointer)
//!   are accessed only as atomics.
//! - Every accessor checks offset, length and alignment against the mapping and
//!   returns `None` rather than touching memory outside it.
//! - The only module with atomics on shared memory, so the memory-ordering
//!   argument (see `writer.rs` and `reader.rs`, marked `SYNC POINT`) sits on
//!   top of these few primitives.

use std::fs::File;
use std::io;
use std::sync::atomic::{AtomicU32, AtomicU64};

use memmap2::{MmapOptions, MmapRaw};

/// A mapping of a channel file, read-only for readers, read-write for the producer.
#[derive(Debug)]
pub struct Segment {
    map: MmapRaw,
    len: u64,
    writable: bool,
}

impl Segment {
    /// Maps the first `len` bytes of `file` for reading and writing (the producer).
    ///
    /// # Errors
    /// The mmap system call failed, or `len` does not fit the address space.
    pub fn map_read_write(file: &File, len: u64) -> io::Result<Self> {
        let map = MmapOptions::new().len(to_usize(len)?).map_raw(file)?;
        Ok(Self { map, len, writable: true })
    }

    /// Maps the first `len` bytes of `file` read-only (readers). The caller has
    /// checked that the file is at least `len` bytes long.
    ///
    /// # Errors
    /// The mmap system call failed, or `len` does not fit the address space.
    pub fn map_read_only(file: &File, len: u64) -> io::Result<Self> {
        let map = MmapOptions::new().len(to_usize(len)?).map_raw_read_only(file)?;
        Ok(Self { map, len, writable: false })
    }

    #[must_use]
    pub fn len(&self) -> u64 {
        self.len
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Start address of `[offset, offset + size)` if it lies inside the mapping and
    /// `offset` is a multiple of `align`.
    fn range(&self, offset: u64, size: u64, align: u64) -> Option<*mut u8> {
        let end = offset.checked_add(size)?;
        if end > self.len || !offset.is_multiple_of(align) {
            return None;
        }
        let offset = usize::try_from(offset).ok()?;
        // `wrapping_add` keeps this safe code; the range check above keeps it in bounds.
        Some(self.map.as_mut_ptr().wrapping_add(offset))
    }

    /// The 8-byte word at `offset` as an atomic.
    #[must_use]
    pub fn atomic_u64(&self, offset: u64) -> Option<&AtomicU64> {
        let ptr = self.range(offset, 8, 8)?;
        // SAFETY: `ptr` is 8-aligned and its 8 bytes lie inside the mapping, which
        // lives as long as `self` (the returned reference borrows `self`). AtomicU64
        // has interior mutability, so other processes storing to this word do not
        // violate the reference's guarantees; all accesses to shared words are
        // atomic on both sides. Loads from a read-only mapping are allowed for
        // lock-free atomics of at most pointer size, which u64 is on the 64-bit
        // targets this crate supports.
        Some(unsafe { AtomicU64::from_ptr(ptr.cast::<u64>()) })
    }

    /// The 4-byte word at `offset` as an atomic.
    #[must_use]
    pub fn atomic_u32(&self, offset: u64) -> Option<&AtomicU32> {
        let ptr = self.range(offset, 4, 4)?;
        // SAFETY: as in `atomic_u64`: aligned, in bounds, lives as long as `self`.
        Some(unsafe { AtomicU32::from_ptr(ptr.cast::<u32>()) })
    }

    /// Copies `len` shared bytes at `offset` into `dst` (replacing its contents)
    /// with volatile reads, so the compiler neither elides nor duplicates them.
    /// The copy may be torn if a writer is active: the caller validates it under
    /// the seqlock before trusting it.
    #[must_use]
    pub fn copy_out(&self, offset: u64, len: u64, dst: &mut Vec<u8>) -> Option<()> {
        self.copy_out_visiting(offset, len, dst, |_| {})
    }

    /// [`copy_out`](Self::copy_out) in pieces of [`COPY_CHUNK`] bytes, handing each
    /// piece of the private copy to `visit` right after copying it, while it is still
    /// in cache (the reader hashes it there instead of reading the whole copy again).
    #[must_use]
    pub fn copy_out_visiting(
        &self,
        offset: u64,
        len: u64,
        dst: &mut Vec<u8>,
        mut visit: impl FnMut(&[u8]),
    ) -> Option<()> {
        let src = self.range(offset, len, 1)?.cast_const();
        let len = usize::try_from(len).ok()?;
        dst.clear();
        dst.reserve(len);
        let mut done = 0;
        while done < len {
            let piece = COPY_CHUNK.min(len - done);
            // SAFETY: `src + done .. + piece` lies inside `src..src+len`, which `range`
            // checked is inside the mapping; `dst` has capacity for `len` bytes (reserved
            // above) in private memory that cannot overlap the mapping, so its bytes
            // `done..done + piece` are writable. `volatile_copy` reads the source only
            // through volatile loads. Afterwards the first `done + piece` bytes of `dst`
            // are initialised, so `set_len` is sound.
            unsafe {
                volatile_copy(src.add(done), dst.as_mut_ptr().add(done), piece);
                dst.set_len(done + piece);
            }
            visit(&dst[done..]);
            done += piece;
        }
        Some(())
    }

    /// Copies private bytes into the mapping at `offset` (the producer only).
    /// Readers may be reading these bytes concurrently; they detect it with the
    /// seqlock and discard their copy.
    #[must_use]
    pub fn copy_in(&self, offset: u64, src: &[u8]) -> Option<()> {
        let dst = self.writable_ptr(offset, src.len() as u64)?;
        // SAFETY: `dst..dst+src.len()` is inside a writable mapping (checked
        // above); `src` is private memory, so the ranges cannot overlap. No Rust
        // reference covers the destination; other processes only read it, with
        // volatile loads validated by the seqlock.
        unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), dst, src.len()) };
        Some(())
    }

    /// [`copy_in`](Self::copy_in) with non-temporal stores where the target has them
    /// (x86-64: SSE2, part of its baseline), ending with a store fence.
    ///
    /// For payload bytes past a core's L2 cache: plain stores first read every
    /// destination line into the cache, a second pass over memory that the reader
    /// cannot profit from (the payload no longer fits); streaming stores skip it.
    /// The fence orders these weakly ordered stores before the caller's later
    /// stores, so the seqlock's Release store of the sequence still publishes them.
    #[must_use]
    pub fn copy_in_streaming(&self, offset: u64, src: &[u8]) -> Option<()> {
        let dst = self.writable_ptr(offset, src.len() as u64)?;
        // SAFETY: as in `copy_in`: the destination range is inside a writable mapping
        // and cannot overlap the private `src`.
        unsafe { streaming_copy(src.as_ptr(), dst, src.len()) };
        Some(())
    }

    /// xxh3-64 of `len` bytes at `offset` of a writable mapping: the producer
    /// checksumming what it just wrote (for example through a Python memoryview).
    #[must_use]
    pub fn checksum_own_bytes(&self, offset: u64, len: u64) -> Option<u64> {
        if !self.writable {
            return None;
        }
        let ptr = self.range(offset, len, 1)?;
        let len = usize::try_from(len).ok()?;
        // SAFETY: the range is inside the mapping. Only the producer writes a
        // slot's payload, and the caller holds that slot's in-process write guard,
        // so nothing writes these bytes while the shared slice exists (other
        // processes map the file read-only or are readers by contract). The slice
        // does not outlive this call.
        let bytes = unsafe { std::slice::from_raw_parts(ptr.cast_const(), len) };
        Some(twox_hash::XxHash3_64::oneshot(bytes))
    }

    /// Raw pointer to `len` writable bytes at `offset`: the copies in above, and a slot
    /// handed to Python's buffer protocol. Using it is the caller's `unsafe` responsibility.
    #[must_use]
    pub fn writable_ptr(&self, offset: u64, len: u64) -> Option<*mut u8> {
        if !self.writable {
            return None;
        }
        self.range(offset, len, 1)
    }
}

/// Piece size of [`Segment::copy_out_visiting`]: small enough to stay in a core's
/// L2 cache between the copy and the visit, large enough to make the calls rare.
pub const COPY_CHUNK: usize = 64 * 1024;

/// Copies `len` bytes from shared memory with volatile loads: 32 bytes at a time
/// where the CPU has AVX2 (checked at run time; the build targets baseline x86-64),
/// else eight bytes at a time where the source is aligned.
///
/// # Safety
/// `src..src+len` must be valid for reads and `dst..dst+len` valid for writes,
/// and the two ranges must not overlap.
unsafe fn volatile_copy(src: *const u8, dst: *mut u8, len: usize) {
    let mut done = 0;
    #[cfg(target_arch = "x86_64")]
    if len >= 256 && std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the caller's contract; AVX2 is present (checked just above).
        done = unsafe { volatile_copy_avx2(src, dst, len) };
    }
    // SAFETY: `done <= len`, so the rest lies inside both of the caller's ranges.
    unsafe { volatile_copy_words(src.add(done), dst.add(done), len - done) };
}

/// Copies a prefix of `len` bytes with aligned 32-byte volatile loads and returns
/// its length; the rest (under 128 bytes) is left to the caller.
///
/// # Safety
/// As for [`volatile_copy`], and the CPU must support AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn volatile_copy_avx2(src: *const u8, dst: *mut u8, len: usize) -> usize {
    use std::arch::x86_64::{__m256i, _mm256_storeu_si256};
    // The head up to the first 32-byte aligned source address, word by word.
    let head = src.align_offset(32).min(len);
    // SAFETY: `head <= len`, so the head lies inside both ranges.
    unsafe { volatile_copy_words(src, dst, head) };
    let mut done = head;
    while done + 128 <= len {
        // SAFETY: `done + 128 <= len` keeps the four loads and stores in range;
        // `src + done` is 32-byte aligned (`head` aligned it, and `done - head` is a
        // multiple of 128), as a volatile read of `__m256i` requires; the stores are
        // unaligned ones into private memory.
        unsafe {
            let s = src.add(done).cast::<__m256i>();
            let d = dst.add(done).cast::<__m256i>();
            let (a, b, c, e) =
                (s.read_volatile(), s.add(1).read_volatile(), s.add(2).read_volatile(), s.add(3).read_volatile());
            _mm256_storeu_si256(d, a);
            _mm256_storeu_si256(d.add(1), b);
            _mm256_storeu_si256(d.add(2), c);
            _mm256_storeu_si256(d.add(3), e);
        }
        done += 128;
    }
    done
}

/// [`volatile_copy`] without AVX2.
///
/// # Safety
/// As for [`volatile_copy`].
unsafe fn volatile_copy_words(src: *const u8, dst: *mut u8, len: usize) {
    let mut done = 0;
    if (src as usize).is_multiple_of(8) {
        while done + 32 <= len {
            // SAFETY: `done + 32 <= len`, so these four aligned words are inside
            // the source range and the 32 destination bytes inside `dst`.
            unsafe {
                let s = src.add(done).cast::<u64>();
                let d = dst.add(done).cast::<u64>();
                let a = s.read_volatile();
                let b = s.add(1).read_volatile();
                let c = s.add(2).read_volatile();
                let e = s.add(3).read_volatile();
                d.write_unaligned(a);
                d.add(1).write_unaligned(b);
                d.add(2).write_unaligned(c);
                d.add(3).write_unaligned(e);
            }
            done += 32;
        }
        while done + 8 <= len {
            // SAFETY: `done + 8 <= len`; the source word is aligned because `src` is.
            unsafe {
                let word = src.add(done).cast::<u64>().read_volatile();
                dst.add(done).cast::<u64>().write_unaligned(word);
            }
            done += 8;
        }
    }
    while done < len {
        // SAFETY: `done < len` keeps both byte accesses in range.
        unsafe { dst.add(done).write(src.add(done).read_volatile()) };
        done += 1;
    }
}

/// Copies `len` bytes with 16-byte non-temporal stores, then fences them.
///
/// # Safety
/// `src..src+len` must be valid for reads and `dst..dst+len` valid for writes,
/// and the two ranges must not overlap.
#[cfg(target_arch = "x86_64")]
unsafe fn streaming_copy(src: *const u8, dst: *mut u8, len: usize) {
    use std::arch::x86_64::{__m128i, _mm_loadu_si128, _mm_sfence, _mm_stream_si128};
    // Plain copy up to the first 16-byte aligned destination address.
    let head = dst.align_offset(16).min(len);
    let body_end = head + (len - head) / 64 * 64;
    // SAFETY: `head <= len`, so both ranges are inside the caller's.
    unsafe { std::ptr::copy_nonoverlapping(src, dst, head) };
    let mut done = head;
    while done < body_end {
        // SAFETY: `done + 64 <= body_end <= len` keeps the four 16-byte loads and
        // stores in range; `dst + done` is 16-byte aligned (`head` aligned it and
        // `done - head` is a multiple of 64), as `_mm_stream_si128` requires; the
        // loads are unaligned ones. SSE2 is part of the x86-64 baseline.
        unsafe {
            let s = src.add(done).cast::<__m128i>();
            let d = dst.add(done).cast::<__m128i>();
            let (a, b, c, e) =
                (_mm_loadu_si128(s), _mm_loadu_si128(s.add(1)), _mm_loadu_si128(s.add(2)), _mm_loadu_si128(s.add(3)));
            _mm_stream_si128(d, a);
            _mm_stream_si128(d.add(1), b);
            _mm_stream_si128(d.add(2), c);
            _mm_stream_si128(d.add(3), e);
        }
        done += 64;
    }
    // SAFETY: `done <= len`; the tail is inside both ranges. `_mm_sfence` has no
    // preconditions: it orders the streaming stores above before later stores.
    unsafe {
        std::ptr::copy_nonoverlapping(src.add(done), dst.add(done), len - done);
        _mm_sfence();
    }
}

/// Targets without streaming stores copy normally.
///
/// # Safety
/// As for the x86-64 version.
#[cfg(not(target_arch = "x86_64"))]
unsafe fn streaming_copy(src: *const u8, dst: *mut u8, len: usize) {
    // SAFETY: the caller's contract.
    unsafe { std::ptr::copy_nonoverlapping(src, dst, len) };
}

fn to_usize(len: u64) -> io::Result<usize> {
    usize::try_from(len)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "mapping larger than the address space"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::sync::atomic::Ordering;

    fn file_with(bytes: &[u8]) -> (tempfile::NamedTempFile, Segment, Segment) {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(bytes).unwrap();
        let rw = Segment::map_read_write(f.as_file(), bytes.len() as u64).unwrap();
        let ro = Segment::map_read_only(f.as_file(), bytes.len() as u64).unwrap();
        (f, rw, ro)
    }

    #[test]
    fn accessors_refuse_out_of_bounds_and_misaligned() {
        let (_f, rw, ro) = file_with(&[0u8; 64]);
        assert!(ro.atomic_u64(56).is_some());
        assert!(ro.atomic_u64(60).is_none());
        assert!(ro.atomic_u64(4).is_none());
        assert!(ro.atomic_u64(u64::MAX - 3).is_none());
        let mut buf = Vec::new();
        assert!(ro.copy_out(60, 5, &mut buf).is_none());
        assert!(ro.copy_out(u64::MAX, 2, &mut buf).is_none());
        assert!(rw.copy_in(62, &[1, 2, 3]).is_none());
        assert!(ro.copy_in(0, &[1]).is_none(), "a read-only mapping is never written");
        assert!(ro.writable_ptr(0, 1).is_none());
    }

    #[test]
    fn writes_are_visible_to_the_read_only_mapping() {
        let (_f, rw, ro) = file_with(&[0u8; 4096]);
        let data: Vec<u8> = (0..1000u32).map(|i| (i % 251) as u8).collect();
        for start in [0u64, 3, 8, 1001] {
            rw.copy_in(start, &data).unwrap();
            let mut out = Vec::new();
            ro.copy_out(start, data.len() as u64, &mut out).unwrap();
            assert_eq!(out, data);
        }
        rw.atomic_u64(8).unwrap().store(77, Ordering::Release);
        assert_eq!(ro.atomic_u64(8).unwrap().load(Ordering::Acquire), 77);
        // The overlapping writes above left bytes 0..10 as something other than
        // `data[..10]`: checksum what is actually there.
        let mut first = Vec::new();
        ro.copy_out(0, 10, &mut first).unwrap();
        assert_eq!(rw.checksum_own_bytes(0, 10), Some(twox_hash::XxHash3_64::oneshot(&first)));
    }

    #[test]
    fn streaming_copies_land_whole_at_any_alignment_and_length() {
        let (_f, rw, ro) = file_with(&[0u8; 8192]);
        let data: Vec<u8> = (0..3000u32).map(|i| (i % 253) as u8).collect();
        for (start, len) in [(0u64, 3000usize), (1, 2999), (15, 64), (17, 63), (4000, 1), (4096, 0), (5000, 129)] {
            rw.copy_in_streaming(start, &data[..len]).unwrap();
            let mut out = Vec::new();
            ro.copy_out(start, len as u64, &mut out).unwrap();
            assert_eq!(out, &data[..len], "start {start}, length {len}");
        }
        assert!(rw.copy_in_streaming(8000, &data[..200]).is_none(), "past the end");
        assert!(ro.copy_in_streaming(0, &data[..1]).is_none(), "a read-only mapping is never written");
    }

    #[test]
    fn the_copy_for_cpus_without_avx2_lands_whole_too() {
        // `copy_out` takes the AVX2 path from 256 bytes on where the CPU has it, so on
        // such a CPU only this test runs the word-by-word copy over long ranges.
        let src: Vec<u8> = (0..4096u32).map(|i| (i * 13 % 251) as u8).collect();
        for start in [0usize, 1, 8, 13] {
            for len in [0usize, 7, 8, 33, 300, 4000] {
                let mut dst = vec![0u8; len];
                // SAFETY: `start + len <= 4096` keeps the source range inside `src`,
                // `dst` holds `len` bytes, and the two vectors cannot overlap.
                unsafe { volatile_copy_words(src.as_ptr().add(start), dst.as_mut_ptr(), len) };
                assert!(dst == src[start..start + len], "start {start}, length {len}");
            }
        }
    }

    #[test]
    fn volatile_copies_out_land_whole_at_any_alignment_and_length() {
        let data: Vec<u8> = (0..8192u32).map(|i| (i * 7 % 251) as u8).collect();
        let (_f, _rw, ro) = file_with(&data);
        // Around the wide path's threshold (256), its 32-byte alignment and its 128-byte steps.
        for start in [0u64, 1, 7, 8, 31, 32, 33, 100] {
            for len in [0usize, 1, 255, 256, 257, 287, 288, 300, 415, 1000, 4096] {
                let mut out = Vec::new();
                ro.copy_out(start, len as u64, &mut out).unwrap();
                assert!(out == data[start as usize..][..len], "start {start}, length {len}");
            }
        }
    }
}
