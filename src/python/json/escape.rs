//! JSON string escapes: a str's UTF-8 bytes written with the escapes orjson
//! writes (`\"`, `\\`, the short forms of `\b \t \n \f \r`, `\u00XX` for the
//! other control bytes), with word- and chunk-wide checks for the clean case.

use crate::python::borrowed::StrText;

use super::out::{Out, OutArray};

pub(super) fn unicode_escape(b: u8) -> [u8; 6] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    [b'\\', b'u', b'0', b'0', HEX[(b >> 4) as usize], HEX[(b & 0xf) as usize]]
}

#[inline(always)]
pub(super) fn load_word(bytes: &[u8]) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&bytes[..8]);
    u64::from_le_bytes(word)
}

#[inline(always)]
pub(super) fn load_chunk(bytes: &[u8]) -> [u8; CHUNK] {
    let mut chunk = [0u8; CHUNK];
    chunk.copy_from_slice(&bytes[..CHUNK]);
    chunk
}

/// Eight spaces: padding that needs no escape.
const SPACES: u64 = 0x2020_2020_2020_2020;

/// The bytes of `src` (shorter than 8) as a little-endian word padded with
/// spaces, built from two possibly overlapping loads rather than a byte loop or
/// a `memcpy` call: overlapping bytes are the same byte at the same place.
#[inline(always)]
pub(super) fn short_word(src: &[u8]) -> u64 {
    let len = src.len() & 7;
    let word = if len >= 4 {
        let lo = u64::from(u32::from_le_bytes([src[0], src[1], src[2], src[3]]));
        let hi = u64::from(u32::from_le_bytes([src[len - 4], src[len - 3], src[len - 2], src[len - 1]]));
        lo | (hi << (8 * (len - 4)))
    } else if len > 0 {
        let middle = len / 2;
        u64::from(src[0]) | (u64::from(src[middle]) << (8 * middle)) | (u64::from(src[len - 1]) << (8 * (len - 1)))
    } else {
        0
    };
    word | (SPACES << (8 * len))
}

/// Text that [`quote_clean`], [`lead_quote_clean`] and [`key_clean`] take: its
/// bytes, and text of fewer than 8 bytes as one word padded with spaces (as
/// [`short_word`] makes it).
pub(super) trait Text<'a>: Copy {
    fn bytes(self) -> &'a [u8];
    fn padded_word(self) -> u64;
}

impl<'a> Text<'a> for &'a [u8] {
    #[inline(always)]
    fn bytes(self) -> &'a [u8] {
        self
    }

    #[inline(always)]
    fn padded_word(self) -> u64 {
        short_word(self)
    }
}

/// A str's text read from the object: the word is one load where the object
/// allows it (a compact ASCII str), which a short text's three loads and their
/// merging in [`short_word`] would otherwise hold up.
impl<'a> Text<'a> for StrText<'a> {
    #[inline(always)]
    fn bytes(self) -> &'a [u8] {
        StrText::bytes(self)
    }

    #[inline(always)]
    fn padded_word(self) -> u64 {
        match self.short_word() {
            Some(word) => word | (SPACES << (8 * (self.bytes().len() & 7))),
            None => short_word(self.bytes()),
        }
    }
}

/// The high bit of each byte of `w` that may need an escape: every control
/// byte, `"` and `\` is marked; borrows may add false marks above a real one
/// only, so the mask is zero exactly when no byte needs an escape.
#[inline(always)]
pub(super) fn word_escape_mask(w: u64) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let quote = w ^ (ONES * u64::from(b'"'));
    let backslash = w ^ (ONES * u64::from(b'\\'));
    // The high bit of a lane is set when that byte is < 0x20 (resp. zero after the xor).
    let control = w.wrapping_sub(ONES * 0x20) & !w;
    let quote = quote.wrapping_sub(ONES) & !quote;
    let backslash = backslash.wrapping_sub(ONES) & !backslash;
    (control | quote | backslash) & HIGHS
}

/// Whether any byte of `w` is a control byte, `"` or `\`.
#[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
#[inline(always)]
pub(super) fn word_needs_escape(w: u64) -> bool {
    word_escape_mask(w) != 0
}

/// Whether any byte of `w` is a control byte, `"` or `\` (SSE2: fewer
/// instructions than the word-wide bit tricks).
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
#[inline(always)]
pub(super) fn word_needs_escape(w: u64) -> bool {
    // The upper half is zero, which would be marked: only the low 8 bits count.
    vector_escape_bits(w, 0) & 0xff != 0
}

/// Whether any byte of two words is a control byte, `"` or `\`.
#[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
#[inline(always)]
pub(super) fn words_need_escape(a: u64, b: u64) -> bool {
    word_escape_mask(a) | word_escape_mask(b) != 0
}

/// Whether any byte of two words is a control byte, `"` or `\` (SSE2: both at once).
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
#[inline(always)]
pub(super) fn words_need_escape(a: u64, b: u64) -> bool {
    vector_escape_bits(a, b) != 0
}

/// Bit `i` set for each byte `i` of `lo` then `hi` (16 bytes, little-endian)
/// that is a control byte, `"` or `\` (SSE2).
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
#[inline(always)]
fn vector_escape_bits(lo: u64, hi: u64) -> u32 {
    use std::arch::x86_64::{_mm_movemask_epi8, _mm_set_epi64x};
    // SAFETY: the build enables SSE2 (the cfg above), so these intrinsics are
    // available; they touch registers only.
    let mask = unsafe {
        // The same bit patterns, as the intrinsic takes them.
        let v = _mm_set_epi64x(hi.cast_signed(), lo.cast_signed());
        _mm_movemask_epi8(vector_marks(v))
    };
    mask.unsigned_abs()
}

/// 0xff in each byte of `v` that is a control byte, `"` or `\\`, 0 elsewhere
/// (SSE2). Flipping bit 1 turns `"` (0x22) into 0x20 and keeps every control
/// byte below 0x20, while no other byte lands at 0x20 or below (0x20 itself
/// becomes 0x22): the controls and the quote are the flipped bytes at most
/// 0x20, which is `min(x, 0x20) == x`.
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
#[inline(always)]
fn vector_marks(v: std::arch::x86_64::__m128i) -> std::arch::x86_64::__m128i {
    use std::arch::x86_64::{_mm_cmpeq_epi8, _mm_min_epu8, _mm_or_si128, _mm_set1_epi8, _mm_xor_si128};
    // SAFETY: the build enables SSE2 (the cfg above), so these intrinsics are
    // available; they touch registers only.
    unsafe {
        let flipped = _mm_xor_si128(v, _mm_set1_epi8(0x02));
        let controls_and_quotes = _mm_cmpeq_epi8(_mm_min_epu8(flipped, _mm_set1_epi8(0x20)), flipped);
        let backslashes = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'\\' as i8));
        _mm_or_si128(controls_and_quotes, backslashes)
    }
}

/// Bytes checked at once by [`chunk_needs_escape`].
pub(super) const CHUNK: usize = 16;

/// Whether any of 16 bytes is a control byte, `"` or `\\` (SSE2).
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
#[inline(always)]
pub(super) fn chunk_needs_escape(chunk: &[u8; CHUNK]) -> bool {
    chunk_escape_bits(chunk) != 0
}

/// Bit `i` set for each byte `i` of `chunk` that is a control byte, `"` or `\\` (SSE2).
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
#[inline(always)]
pub(super) fn chunk_escape_bits(chunk: &[u8; CHUNK]) -> u32 {
    use std::arch::x86_64::{__m128i, _mm_loadu_si128, _mm_movemask_epi8};
    // SAFETY: the build enables SSE2 (the cfg above; it is part of every x86-64),
    // so these intrinsics are available. The load reads exactly the 16 bytes of
    // `chunk` (an unaligned load: `loadu`); the rest touch registers only.
    let mask = unsafe {
        let v = _mm_loadu_si128(chunk.as_ptr().cast::<__m128i>());
        _mm_movemask_epi8(vector_marks(v))
    };
    // 16 bits, one per byte.
    mask.unsigned_abs()
}

/// Whether any of 16 bytes is a control byte, `"` or `\` (two words).
#[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
#[inline(always)]
pub(super) fn chunk_needs_escape(chunk: &[u8; CHUNK]) -> bool {
    word_escape_mask(load_word(&chunk[..8])) | word_escape_mask(load_word(&chunk[8..])) != 0
}

/// Whether any byte of two chunks needs an escape, with one test for both: a
/// control byte in either shows in their bytewise minimum (SSE2).
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
#[inline(always)]
pub(super) fn chunks_need_escape(a: &[u8; CHUNK], b: &[u8; CHUNK]) -> bool {
    use std::arch::x86_64::{
        __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_min_epu8, _mm_movemask_epi8, _mm_or_si128, _mm_set1_epi8,
        _mm_xor_si128,
    };
    // SAFETY: the build enables SSE2 (the cfg above), so these intrinsics are
    // available; the loads read exactly the 16 bytes of `a` and of `b`.
    let mask = unsafe {
        let (va, vb) = (_mm_loadu_si128(a.as_ptr().cast::<__m128i>()), _mm_loadu_si128(b.as_ptr().cast::<__m128i>()));
        // As in `vector_marks`, both at once: the smaller of the two flipped
        // bytes is at most 0x20 when either is.
        let flip = _mm_set1_epi8(0x02);
        let low = _mm_min_epu8(_mm_xor_si128(va, flip), _mm_xor_si128(vb, flip));
        let controls_and_quotes = _mm_cmpeq_epi8(_mm_min_epu8(low, _mm_set1_epi8(0x20)), low);
        let backslash = _mm_set1_epi8(b'\\' as i8);
        let backslashes = _mm_or_si128(_mm_cmpeq_epi8(va, backslash), _mm_cmpeq_epi8(vb, backslash));
        _mm_movemask_epi8(_mm_or_si128(controls_and_quotes, backslashes))
    };
    mask != 0
}

/// Whether any byte of two chunks needs an escape.
#[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
#[inline(always)]
pub(super) fn chunks_need_escape(a: &[u8; CHUNK], b: &[u8; CHUNK]) -> bool {
    chunk_needs_escape(a) || chunk_needs_escape(b)
}

/// Escapes `src` into `buf` at `pos` (which has room for `6 * src.len() +
/// ESCAPE_ROOM` bytes) and returns the new position.
///
/// A string with nothing to escape (the usual case) is checked and copied in
/// fixed-size pieces with no loop up to 32 bytes: two overlapping loads of the
/// first and last 8 (or 16) bytes, each written at its place, so the overlap is
/// written twice with the same bytes. Longer strings go 16 bytes at a time and
/// end with such an overlapping last chunk. Any piece that needs an escape is
/// escaped byte by byte.
#[inline(always)]
pub(super) fn escape_into(buf: &mut Out, pos: usize, src: &[u8]) -> usize {
    if src.len() > CLEAN_MAX {
        return escape_long(buf, pos, src);
    }
    copy_clean(buf, pos, src).unwrap_or_else(|| escape_short(buf, pos, src))
}

/// Longest text [`copy_clean`] takes.
pub(super) const CLEAN_MAX: usize = 2 * CHUNK;

/// Copies `src` (at most `CLEAN_MAX` bytes) to `buf` at `pos` if no byte of it
/// needs an escape, and returns the new position; `None` (and scratch written)
/// otherwise. Writes at most `max(src.len(), 8)` bytes.
#[inline(always)]
pub(super) fn copy_clean(buf: &mut Out, pos: usize, src: &[u8]) -> Option<usize> {
    let len = src.len();
    if len < 8 {
        // Writing all eight bytes is fine: the room past the string is scratch.
        let word = short_word(src);
        if !word_needs_escape(word) {
            buf[pos..pos + 8].put(&word.to_le_bytes());
            return Some(pos + len);
        }
    } else if len <= 16 {
        let first = load_word(src);
        let last = load_word(&src[len - 8..]);
        if word_escape_mask(first) | word_escape_mask(last) == 0 {
            buf[pos..pos + 8].put(&first.to_le_bytes());
            buf[pos + len - 8..pos + len].put(&last.to_le_bytes());
            return Some(pos + len);
        }
    } else if len <= CLEAN_MAX {
        let first = load_chunk(src);
        let last = load_chunk(&src[len - CHUNK..]);
        if !chunks_need_escape(&first, &last) {
            buf[pos..pos + CHUNK].put(&first);
            buf[pos + len - CHUNK..pos + len].put(&last);
            return Some(pos + len);
        }
    }
    None
}

/// Room [`quote_clean`] needs from its position: the quotes and `CLEAN_MAX` bytes.
pub(super) const QUOTED_ROOM: usize = CLEAN_MAX + 2;
/// Room [`lead_quote_clean`] needs from its position: a lead byte, the quotes
/// and `CLEAN_MAX` bytes.
pub(super) const LEAD_QUOTED_ROOM: usize = CLEAN_MAX + 3;
/// Room [`key_clean`] needs from its position: `,"`, `CLEAN_MAX` bytes and `":`.
pub(super) const KEY_ROOM: usize = CLEAN_MAX + 4;

/// Writes `"src"` at `pos` if `src` is at most `CLEAN_MAX` bytes and none of
/// them needs an escape, and returns the new position; `None` (and scratch
/// written) otherwise, or if `buf` has less than `QUOTED_ROOM` bytes from `pos`.
#[inline(always)]
pub(super) fn quote_clean<'a>(buf: &mut Out, pos: usize, src: impl Text<'a>) -> Option<usize> {
    let len = src.bytes().len();
    if len > CLEAN_MAX {
        return None;
    }
    // One bounds check for the window; the stores into it need none.
    let dst = buf.get_mut(pos..)?.first_chunk_mut::<QUOTED_ROOM>()?;
    if !put_clean(dst, 1, src) {
        return None;
    }
    dst.set(0, b'"');
    dst.set(len + 1, b'"');
    Some(pos + len + 2)
}

/// Writes `lead"src"` at `pos` (`lead`: a list's `[`, or a comma) if `src` is
/// at most `CLEAN_MAX` bytes and none of them needs an escape, and returns the
/// new position; `None` (and scratch written) otherwise, or if `buf` has less
/// than `LEAD_QUOTED_ROOM` bytes from `pos`. [`quote_clean`] with the byte
/// before it in the same window: a byte stored apart, before it, could be the
/// buffer's length as far as the compiler knows, which it would then load and
/// test again.
#[inline(always)]
pub(super) fn lead_quote_clean<'a>(buf: &mut Out, pos: usize, lead: u8, src: impl Text<'a>) -> Option<usize> {
    let len = src.bytes().len();
    if len > CLEAN_MAX {
        return None;
    }
    let dst = buf.get_mut(pos..)?.first_chunk_mut::<LEAD_QUOTED_ROOM>()?;
    if !put_clean(dst, 2, src) {
        return None;
    }
    dst.set(0, lead);
    dst.set(1, b'"');
    dst.set(len + 2, b'"');
    Some(pos + len + 3)
}

/// Writes `lead"src":` at `pos` (`lead`: the dict's `{`, or a comma) if `src` is
/// at most `CLEAN_MAX` bytes and none of them needs an escape, and returns the
/// new position; `None` (and scratch written) otherwise, or if `buf` has less
/// than `KEY_ROOM` bytes from `pos`.
#[inline(always)]
pub(super) fn key_clean<'a>(buf: &mut Out, pos: usize, lead: u8, src: impl Text<'a>) -> Option<usize> {
    let len = src.bytes().len();
    if len > CLEAN_MAX {
        return None;
    }
    let dst = buf.get_mut(pos..)?.first_chunk_mut::<KEY_ROOM>()?;
    if !put_clean(dst, 2, src) {
        return None;
    }
    dst.set(0, lead);
    dst.set(1, b'"');
    dst[2 + len..4 + len].put(b"\":");
    Some(pos + len + 4)
}

/// Copies `src` (at most `CLEAN_MAX` bytes) into `dst` at `at` if no byte of it
/// needs an escape: fixed-size pieces with no loop, two overlapping loads of the
/// first and last 8 (or 16) bytes, each written at its place (the overlap is
/// written twice with the same bytes). False (and scratch written) otherwise.
/// Writes at most `max(src.len(), 8)` bytes.
#[inline(always)]
fn put_clean<'a, const N: usize>(dst: &mut OutArray<N>, at: usize, text: impl Text<'a>) -> bool {
    let src = text.bytes();
    let len = src.len();
    if len < 8 {
        // Writing all eight bytes is fine: the room past the string is scratch.
        let word = text.padded_word();
        if word_needs_escape(word) {
            return false;
        }
        dst[at..at + 8].put(&word.to_le_bytes());
    } else if len <= 16 {
        let (first, last) = (load_word(src), load_word(&src[len - 8..]));
        if words_need_escape(first, last) {
            return false;
        }
        dst[at..at + 8].put(&first.to_le_bytes());
        dst[at + len - 8..at + len].put(&last.to_le_bytes());
    } else {
        let (first, last) = (load_chunk(src), load_chunk(&src[len - CHUNK..]));
        if chunks_need_escape(&first, &last) {
            return false;
        }
        dst[at..at + CHUNK].put(&first);
        dst[at + len - CHUNK..at + len].put(&last);
    }
    true
}

/// Copies `src` (more than `CHUNK` bytes) to `buf` at `pos` if no byte of it
/// needs an escape, and returns the new position; `None` (and scratch written)
/// otherwise. The chunks are copied as they are checked, the last one
/// overlapping the one before: one pass, no branch per chunk. `buf` has room for
/// `src.len()` bytes from `pos`.
#[inline(always)]
pub(super) fn copy_clean_long(buf: &mut Out, pos: usize, src: &[u8]) -> Option<usize> {
    let len = src.len();
    let dst = &mut buf[pos..pos + len];
    let mut dirty = false;
    let mut i = 0;
    while i + CHUNK < len {
        let chunk = load_chunk(&src[i..]);
        dst[i..i + CHUNK].put(&chunk);
        dirty |= chunk_needs_escape(&chunk);
        i += CHUNK;
    }
    let last = load_chunk(&src[len - CHUNK..]);
    dst[len - CHUNK..].put(&last);
    dirty |= chunk_needs_escape(&last);
    (!dirty).then_some(pos + len)
}

/// [`escape_into`] for more than `CLEAN_MAX` bytes: 32-byte pieces while 64
/// bytes are left, then 16-byte pieces while more than `CLEAN_MAX` are left,
/// and the rest (17 to `CLEAN_MAX` bytes) copied whole if clean, else by
/// [`escape_window`]. A piece is written whole and checked at once; in a piece
/// with bytes to escape, every marked byte is escaped in turn from the one set
/// of marks, the bytes after each copied a piece at a time straight from `src`
/// (the piece after this one is there, so such a load stays inside it), and
/// the scan goes on with the next piece. `buf` has room for
/// `6 * src.len() + ESCAPE_ROOM` bytes from `pos`.
#[inline]
pub(super) fn escape_long(buf: &mut Out, pos: usize, src: &[u8]) -> usize {
    // The text left, and the room left: `6 * rest.len() + ESCAPE_ROOM` bytes
    // at least, so every window below fits (the `expect`s never fail).
    let (mut rest, mut out) = (src, &mut buf[pos..]);
    let mut written = 0;
    while let Some(text) = rest.first_chunk::<{ 2 * CLEAN_MAX }>() {
        let dst = out.first_chunk_mut::<WINDOW_OUT>().expect("room for a piece");
        let (first, second) = (load_chunk(text), load_chunk(&text[CHUNK..]));
        dst[..CHUNK].put(&first);
        dst[CHUNK..CLEAN_MAX].put(&second);
        let (done, len) = if chunks_need_escape(&first, &second) {
            let marks = chunk_escape_bits(&first) | (chunk_escape_bits(&second) << CHUNK);
            escape_piece::<CLEAN_MAX>(dst, text, marks)
        } else {
            (CLEAN_MAX, CLEAN_MAX)
        };
        rest = &rest[done..];
        out = &mut std::mem::take(&mut out)[len..];
        written += len;
    }
    while rest.len() > CLEAN_MAX {
        // As above, 16 bytes at a time.
        let text = rest.first_chunk::<CLEAN_MAX>().expect("more than 32 bytes left");
        let dst = out.first_chunk_mut::<PIECE_OUT>().expect("room for a piece");
        let chunk = load_chunk(text);
        dst[..CHUNK].put(&chunk);
        let marks = chunk_escape_bits(&chunk);
        let (done, len) = if marks == 0 { (CHUNK, CHUNK) } else { escape_piece::<CHUNK>(dst, text, marks) };
        rest = &rest[done..];
        out = &mut std::mem::take(&mut out)[len..];
        written += len;
    }
    // The last 17 to `CLEAN_MAX` bytes (each loop above stops with more than
    // 16 left): if clean (the usual case), copied straight from `src`, the
    // last 16 overlapping the first 16.
    let dst = out.first_chunk_mut::<WINDOW_OUT>().expect("room for the last bytes");
    let left = rest.len();
    let (first, last) = (load_chunk(rest), load_chunk(&src[src.len() - CHUNK..]));
    if !chunks_need_escape(&first, &last) {
        dst[..CHUNK].put(&first);
        dst[left - CHUNK..left].put(&last);
        return pos + written + left;
    }
    // Else at the end of a window of the last `CLEAN_MAX`.
    let mut text = [b' '; WINDOW];
    let marks = window_of_last(&mut text, src);
    let start = CLEAN_MAX - left;
    pos + written + escape_window(dst, &text, start, CLEAN_MAX, marks & (u32::MAX << start))
}

/// Escapes the marked bytes (`marks`, not 0) of the first `P` bytes of `text`
/// (`P` is 16 or 32; `text` holds `2 * P`) into `dst`, where that piece is
/// already written whole: each escape goes at its place and the bytes after it
/// are copied after it, up to the next mark or the end of the piece. Returns
/// `P` (the bytes of `text` done) and the length written for them.
#[inline(always)]
fn escape_piece<const P: usize>(dst: &mut Out, text: &[u8], mut marks: u32) -> (usize, usize) {
    // A power of two above `6 * P`, to which the output positions are masked
    // (no-ops: `out <= 6 * at` and `at < P`), which shows the compiler that
    // the stores stay inside `dst` (`span + P` bytes) and the loads inside `text`.
    let span = 8 * P;
    let (dst, text) = (&mut dst[..span + P], &text[..2 * P]);
    let (mut done, mut out) = (0, 0);
    loop {
        let at = marks.trailing_zeros() as usize & (P - 1);
        out = put_escape(dst, (out + at - done) & (span - 1), text[at]);
        done = at + 1;
        // The bytes after the escape (clean up to the next mark; what goes past
        // it is written over next, or is past the piece and scratch).
        dst[out & (span - 1)..][..P].put(&text[at + 1..][..P]);
        marks &= marks - 1;
        if marks == 0 {
            return (P, out + P - done);
        }
    }
}

/// Escapes `src` (at most `CLEAN_MAX` bytes, not all clean) at `pos`; returns
/// the new position. `buf` has room for `6 * src.len() + ESCAPE_ROOM` bytes
/// from `pos`.
#[inline]
pub(super) fn escape_short(buf: &mut Out, pos: usize, src: &[u8]) -> usize {
    pos + escape_in(out_window(buf, pos), src)
}

/// Escapes `src` (at most `CLEAN_MAX` bytes) into `dst`, laid in a window of
/// its own first (see [`window_of`]); returns the length written.
#[inline(always)]
fn escape_in(dst: &mut OutArray<WINDOW_OUT>, src: &[u8]) -> usize {
    let mut text = [b' '; WINDOW];
    let marks = window_of(&mut text, src);
    escape_window(dst, &text, 0, src.len(), marks)
}

/// Writes `"src"` with its escapes at `pos` (`src`: at most `CLEAN_MAX` bytes,
/// not all clean) and returns the new position: [`escape_short`] with its quotes
/// in the same window, one bounds check for the three. `buf` has room for
/// `QUOTED_ESCAPE_ROOM` bytes from `pos`.
#[inline(always)]
pub(super) fn quote_escape_short(buf: &mut Out, pos: usize, src: &[u8]) -> usize {
    let dst = out_window::<QUOTED_ESCAPE_ROOM>(buf, pos);
    dst.set(0, b'"');
    let inner = dst[1..].first_chunk_mut::<WINDOW_OUT>().expect("room for the escaped text");
    let len = escape_in(inner, src);
    // `len <= 6 * CLEAN_MAX`: the mask (a no-op) shows the compiler the quote's place is inside.
    dst.set((len + 1) & 255, b'"');
    pos + len + 2
}

/// Room [`quote_escape_short`] needs from its position: the escapes' window and
/// the two quotes.
pub(super) const QUOTED_ESCAPE_ROOM: usize = WINDOW_OUT + 2;

/// Room [`escape_window`] writes in: six bytes a byte at worst (less than
/// 256, a power of two, for `CLEAN_MAX` bytes) and its last fixed-size copy;
/// also what a 32-byte piece of [`escape_long`] takes (see [`escape_piece`]).
const WINDOW_OUT: usize = 8 * CLEAN_MAX + CLEAN_MAX;
/// Room the escapes of one 16-byte piece of [`escape_long`] are written in
/// (see [`escape_piece`]).
const PIECE_OUT: usize = 8 * CHUNK + CHUNK;

/// Bytes of room past `6 * src.len()` that [`escape_into`], [`escape_long`]
/// and [`escape_short`] need from their start position (their fixed-size
/// stores run past the text, and each writes into a window of fixed size).
pub(super) const ESCAPE_ROOM: usize = WINDOW_OUT;

/// The `N` bytes of `buf` from `pos`, which the caller has room for: one
/// bounds check for all the stores into them.
#[inline(always)]
fn out_window<const N: usize>(buf: &mut Out, pos: usize) -> &mut OutArray<N> {
    buf[pos..].first_chunk_mut::<N>().expect("room for the escaped text")
}

/// A text of at most `CLEAN_MAX` bytes laid at the start of `WINDOW` bytes,
/// padded with spaces (which need no escape): `CLEAN_MAX` bytes from any place
/// up to its end can be copied with one fixed-size copy.
const WINDOW: usize = 3 * CLEAN_MAX;

/// Lays `src` (at most `CLEAN_MAX` bytes) at the start of `text` (spaces) and
/// returns bit `i` set for each byte `i` of it that needs an escape: the pieces
/// are loaded as [`copy_clean`] loads them, and the marks taken from those loads.
#[inline(always)]
fn window_of(text: &mut [u8; WINDOW], src: &[u8]) -> u32 {
    let len = src.len();
    if len < 8 {
        let word = short_word(src);
        text[..8].copy_from_slice(&word.to_le_bytes());
        word_marks(word, 0) & 0xff
    } else if len <= 16 {
        let (first, last) = (load_word(src), load_word(&src[len - 8..]));
        text[..8].copy_from_slice(&first.to_le_bytes());
        text[len - 8..len].copy_from_slice(&last.to_le_bytes());
        let marks = word_marks(first, last);
        (marks & 0xff) | ((marks >> 8) << (len - 8))
    } else {
        let (first, last) = (load_chunk(src), load_chunk(&src[len - CHUNK..]));
        text[..CHUNK].copy_from_slice(&first);
        text[len - CHUNK..len].copy_from_slice(&last);
        chunk_escape_bits(&first) | (chunk_escape_bits(&last) << (len - CHUNK))
    }
}

/// Lays the last `CLEAN_MAX` bytes of `src` (more than that) at the start of
/// `text` and returns their marks, as [`window_of`] does.
#[inline(always)]
fn window_of_last(text: &mut [u8; WINDOW], src: &[u8]) -> u32 {
    let len = src.len();
    let (first, last) = (load_chunk(&src[len - CLEAN_MAX..]), load_chunk(&src[len - CHUNK..]));
    text[..CHUNK].copy_from_slice(&first);
    text[CHUNK..CLEAN_MAX].copy_from_slice(&last);
    chunk_escape_bits(&first) | (chunk_escape_bits(&last) << CHUNK)
}

/// Escapes bytes `start..end` of `text` (`end <= CLEAN_MAX`), whose bytes that
/// need an escape are the set bits of `marks`, into `dst`; returns the length
/// written. Each run of clean bytes is one fixed-size copy from the window (what
/// it writes past the run is written over next).
#[inline(always)]
fn escape_window(
    dst: &mut OutArray<WINDOW_OUT>,
    text: &[u8; WINDOW],
    start: usize,
    end: usize,
    mut marks: u32,
) -> usize {
    let (mut done, mut out) = (start, 0);
    while marks != 0 {
        let at = marks.trailing_zeros() as usize;
        // `done <= at < 32` and `out <= 6 * done`: the masks (no-ops) show the
        // compiler that the copy stays inside `dst` and `text`.
        dst[out & 255..][..CLEAN_MAX].put(&text[done & 63..][..CLEAN_MAX]);
        out = put_escape(dst, (out + at - done) & 255, text[at & 31]);
        done = at + 1;
        marks &= marks - 1;
    }
    dst[out & 255..][..CLEAN_MAX].put(&text[done & 63..][..CLEAN_MAX]);
    out + end - done
}

/// Writes the escape of `b`, a byte that needs one, at `at`; returns the
/// position after it.
#[inline(always)]
fn put_escape(dst: &mut Out, at: usize, b: u8) -> usize {
    // A branch (well predicted: most escapes are of one kind) rather than the
    // length read from a table, which would put a load on the chain of
    // positions from one escape to the next.
    let escape = ESCAPE[usize::from(b)];
    if escape == b'u' {
        dst[at..at + 6].put(&unicode_escape(b));
        at + 6
    } else {
        dst.set(at, b'\\');
        dst.set(at + 1, escape);
        at + 2
    }
}

/// Bit `i` set for each byte `i` of `lo` then `hi` (16 bytes, little-endian)
/// that is a control byte, `"` or `\`.
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
#[inline(always)]
fn word_marks(lo: u64, hi: u64) -> u32 {
    vector_escape_bits(lo, hi)
}

/// Bit `i` set for each byte `i` of `lo` then `hi` that needs an escape (a byte
/// at a time: the word-wide mask may mark a byte above a real mark falsely).
#[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
#[inline(always)]
fn word_marks(lo: u64, hi: u64) -> u32 {
    let mut chunk = [0u8; CHUNK];
    chunk[..8].copy_from_slice(&lo.to_le_bytes());
    chunk[8..].copy_from_slice(&hi.to_le_bytes());
    chunk_escape_bits(&chunk)
}

/// Bit `i` set for each byte `i` of `chunk` that needs an escape (a byte at a time).
#[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
#[inline(always)]
pub(super) fn chunk_escape_bits(chunk: &[u8; CHUNK]) -> u32 {
    let mut marks = 0;
    for (i, &b) in chunk.iter().enumerate() {
        marks |= u32::from(ESCAPE[usize::from(b)] != 0) << i;
    }
    marks
}

/// What follows the backslash for each byte that needs an escape (0: none).
pub(super) static ESCAPE: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut i = 0;
    while i < 0x20 {
        table[i] = b'u';
        i += 1;
    }
    table[0x08] = b'b';
    table[0x09] = b't';
    table[0x0a] = b'n';
    table[0x0c] = b'f';
    table[0x0d] = b'r';
    table[b'"' as usize] = b'"';
    table[b'\\' as usize] = b'\\';
    table
};

#[cfg(test)]
mod tests {
    use super::super::out::Scratch;
    use super::*;

    fn escape(src: &[u8]) -> Vec<u8> {
        let mut buf = Scratch::with_len(6 * src.len() + ESCAPE_ROOM);
        let end = escape_into(buf.out(), 0, src);
        buf.bytes(0..end).to_vec()
    }

    /// The plain byte-by-byte escape, to compare the fast paths against.
    fn escape_reference(src: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        for &b in src {
            match ESCAPE[b as usize] {
                0 => out.push(b),
                b'u' => out.extend_from_slice(&unicode_escape(b)),
                short => out.extend_from_slice(&[b'\\', short]),
            }
        }
        out
    }

    #[test]
    fn the_word_scan_escapes_like_the_byte_loop() {
        // Escapes at every offset of a word, several per word, and short tails.
        for len in 0..100 {
            for step in 1..6 {
                let bytes: Vec<u8> =
                    (0..len).map(|i| if i % step == 0 { [b'"', b'\n', 0x01, b'\\'][i % 4] } else { b'x' }).collect();
                let mut buf = Scratch::with_len(6 * len + ESCAPE_ROOM);
                let end = if len > CLEAN_MAX {
                    escape_long(buf.out(), 0, &bytes)
                } else {
                    escape_short(buf.out(), 0, &bytes)
                };
                assert_eq!(buf.bytes(0..end), &escape_reference(&bytes)[..], "{len} {step}");
                if (1..=CLEAN_MAX).contains(&len) {
                    // The same in quotes, at an offset, in a buffer of just the room asked for.
                    let mut buf = Scratch::with_len(3 + QUOTED_ESCAPE_ROOM);
                    let end = quote_escape_short(buf.out(), 3, &bytes);
                    let quoted = [&b"\""[..], &escape_reference(&bytes), b"\""].concat();
                    assert_eq!(buf.bytes(3..end), &quoted[..], "{len} {step}");
                }
            }
        }
    }

    #[test]
    fn copy_clean_long_copies_clean_text_and_refuses_any_special_byte() {
        for len in CHUNK + 1..=140 {
            let clean: Vec<u8> = (0..len).map(|i| b'#' + (i * 7 % 50) as u8).collect();
            let mut buf = Scratch::with_len(len + 3);
            assert_eq!(copy_clean_long(buf.out(), 3, &clean), Some(len + 3), "length {len}");
            assert_eq!(buf.bytes(3..len + 3), &clean[..], "length {len}");
            for special in [b'"', b'\\', b'\n', 0x00, 0x1f] {
                for at in 0..len {
                    let mut bytes = clean.clone();
                    bytes[at] = special;
                    assert_eq!(copy_clean_long(buf.out(), 3, &bytes), None, "byte {special:#x} at {at} of {len}");
                }
            }
        }
    }

    #[test]
    fn every_special_byte_is_escaped_wherever_it_sits() {
        // Every length across the short word, the two-word, the two-chunk and the
        // chunked paths (and their boundaries at 8, 16, 32, 48 and 64 bytes).
        for len in 1..=80 {
            for special in (0u8..0x20).chain([b'"', b'\\']) {
                for at in 0..len {
                    let mut bytes = vec![b'a'; len];
                    bytes[at] = special;
                    let out = escape(&bytes);
                    let expected = match ESCAPE[special as usize] {
                        b'u' => unicode_escape(special).to_vec(),
                        short => vec![b'\\', short],
                    };
                    assert_eq!(&out[at..at + expected.len()], &expected[..], "byte {special:#x} at {at} of {len}");
                    assert_eq!(out.len(), len - 1 + expected.len(), "byte {special:#x} at {at} of {len}");
                    assert_eq!(out, escape_reference(&bytes), "byte {special:#x} at {at} of {len}");
                }
            }
        }
        let plain = "héllo wörld, no escapes here \u{7f}/".as_bytes();
        assert_eq!(escape(plain), plain);
    }

    #[test]
    fn clean_and_non_ascii_strings_are_copied_whole_at_every_length() {
        for len in 0..=80 {
            let clean: Vec<u8> =
                (0..len).map(|i| b'!' + (i * 7 % 90) as u8).filter(|&b| b != b'\\' && b != b'"').collect();
            assert_eq!(escape(&clean), clean, "length {}", clean.len());
            // A multi-byte character (bytes >= 0x80 need no escape) at each position.
            for at in 0..=len {
                let mut text = "x".repeat(len);
                text.insert_str(at, "é€😀");
                assert_eq!(escape(text.as_bytes()), text.as_bytes(), "at {at} of {len}");
                let mut with_quote = text.clone();
                with_quote.insert(at, '"');
                assert_eq!(escape(with_quote.as_bytes()), escape_reference(with_quote.as_bytes()), "at {at} of {len}");
            }
        }
    }

    #[test]
    fn quote_clean_and_key_clean_write_clean_text_and_refuse_the_rest() {
        for len in 0..=CLEAN_MAX + 8 {
            let clean: Vec<u8> = (0..len).map(|i| b'#' + (i * 7 % 50) as u8).collect();
            let mut buf = Scratch::with_len(3 + KEY_ROOM);
            let end = quote_clean(buf.out(), 3, clean.as_slice());
            let key = |buf: &mut Out, lead| key_clean(buf, 3, lead, clean.as_slice());
            let item = |buf: &mut Out, lead| lead_quote_clean(buf, 3, lead, clean.as_slice());
            if len > CLEAN_MAX {
                assert_eq!(end, None, "length {len}");
                assert_eq!(key(buf.out(), b','), None, "length {len}");
                assert_eq!(item(buf.out(), b','), None, "length {len}");
                continue;
            }
            assert_eq!(end, Some(3 + len + 2), "length {len}");
            assert_eq!(buf.bytes(3..5 + len), &[&b"\""[..], &clean, b"\""].concat()[..], "length {len}");
            assert_eq!(key(buf.out(), b','), Some(3 + len + 4), "length {len}");
            assert_eq!(buf.bytes(3..7 + len), &[&b",\""[..], &clean, b"\":"].concat()[..], "length {len}");
            assert_eq!(key(buf.out(), b'{'), Some(3 + len + 4), "length {len}");
            assert_eq!(buf.bytes(3..7 + len), &[&b"{\""[..], &clean, b"\":"].concat()[..], "length {len}");
            assert_eq!(item(buf.out(), b','), Some(3 + len + 3), "length {len}");
            assert_eq!(buf.bytes(3..6 + len), &[&b",\""[..], &clean, b"\""].concat()[..], "length {len}");
            assert_eq!(
                lead_quote_clean(&mut buf.out()[..3 + LEAD_QUOTED_ROOM - 1], 3, b'[', clean.as_slice()),
                None,
                "length {len}"
            );
            // Too little room: refused, nothing written out of bounds.
            assert_eq!(quote_clean(&mut buf.out()[..3 + QUOTED_ROOM - 1], 3, clean.as_slice()), None, "length {len}");
            assert_eq!(key_clean(&mut buf.out()[..3 + KEY_ROOM - 1], 3, b',', clean.as_slice()), None, "length {len}");
            for special in [b'"', b'\\', b'\n', 0x00, 0x1f] {
                for at in 0..len {
                    let mut bytes = clean.clone();
                    bytes[at] = special;
                    assert_eq!(quote_clean(buf.out(), 3, bytes.as_slice()), None, "byte {special:#x} at {at} of {len}");
                    assert_eq!(
                        key_clean(buf.out(), 3, b',', bytes.as_slice()),
                        None,
                        "byte {special:#x} at {at} of {len}"
                    );
                    assert_eq!(
                        lead_quote_clean(buf.out(), 3, b',', bytes.as_slice()),
                        None,
                        "byte {special:#x} at {at} of {len}"
                    );
                }
            }
        }
    }

    #[test]
    fn every_byte_value_is_marked_exactly_when_it_needs_an_escape() {
        for b in 0..=255u8 {
            let special = ESCAPE[usize::from(b)] != 0;
            for at in 0..CHUNK {
                let mut chunk = [b'a'; CHUNK];
                chunk[at] = b;
                assert_eq!(chunk_escape_bits(&chunk), u32::from(special) << at, "byte {b:#x} at {at}");
                assert_eq!(chunk_needs_escape(&chunk), special, "byte {b:#x} at {at}");
                assert_eq!(chunks_need_escape(&chunk, &[b'a'; CHUNK]), special, "byte {b:#x} at {at}");
                assert_eq!(chunks_need_escape(&[b'a'; CHUNK], &chunk), special, "byte {b:#x} at {at}");
                let word = load_word(&chunk[at / 8 * 8..]);
                assert_eq!(word_needs_escape(word), special, "byte {b:#x} at {at}");
                assert_eq!(word_marks(word, word), if special { 0x101 << (at % 8) } else { 0 }, "byte {b:#x}");
            }
        }
    }

    #[test]
    fn random_texts_are_escaped_like_the_byte_loop() {
        // Lengths across every piece size and tail, escapes from none to all,
        // clean, multi-byte and special bytes mixed (a fixed pseudo-random walk).
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let pool: &[u8] = b"abcdefgh \"\\\n\t\x01\x1f\x7f\xc3\xa9/";
        for round in 0..4000 {
            let len = (next() % 300) as usize;
            // One byte in `density` is taken from the whole pool, the rest are 'x'.
            let density = 1 + (round % 64) as u64;
            let bytes: Vec<u8> = (0..len)
                .map(|_| if next() % density == 0 { pool[(next() % pool.len() as u64) as usize] } else { b'x' })
                .collect();
            assert_eq!(escape(&bytes), escape_reference(&bytes), "{bytes:?}");
        }
    }

    #[test]
    fn several_escapes_in_one_string_are_all_written() {
        for len in [7usize, 8, 15, 16, 17, 31, 32, 33, 47, 48, 49, 64, 65, 100] {
            let bytes: Vec<u8> = (0..len)
                .map(|i| {
                    if i % 5 == 0 {
                        b'\n'
                    } else if i % 7 == 0 {
                        b'"'
                    } else {
                        b'z'
                    }
                })
                .collect();
            assert_eq!(escape(&bytes), escape_reference(&bytes), "length {len}");
            let all: Vec<u8> = (0..len).map(|i| (i % 0x20) as u8).collect();
            assert_eq!(escape(&all), escape_reference(&all), "length {len}");
        }
    }
}
