//! JSON string escapes: a str's UTF-8 bytes written with the escapes orjson
//! writes (`\"`, `\\`, the short forms of `\b \t \n \f \r`, `\u00XX` for the
//! other control bytes), with word- and chunk-wide checks for the clean case.

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
    use std::arch::x86_64::{
        _mm_cmpeq_epi8, _mm_min_epu8, _mm_movemask_epi8, _mm_or_si128, _mm_set1_epi8, _mm_set_epi64x,
    };
    // SAFETY: the build enables SSE2 (the cfg above), so these intrinsics are
    // available; they touch registers only.
    let mask = unsafe {
        // The same bit patterns, as the intrinsic takes them.
        let v = _mm_set_epi64x(hi.cast_signed(), lo.cast_signed());
        let control = _mm_cmpeq_epi8(_mm_min_epu8(v, _mm_set1_epi8(0x1f)), v);
        let quote = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'"' as i8));
        let backslash = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'\\' as i8));
        _mm_movemask_epi8(_mm_or_si128(control, _mm_or_si128(quote, backslash)))
    };
    mask.unsigned_abs()
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
    use std::arch::x86_64::{
        __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_min_epu8, _mm_movemask_epi8, _mm_or_si128, _mm_set1_epi8,
    };
    // SAFETY: the build enables SSE2 (the cfg above; it is part of every x86-64),
    // so these intrinsics are available. The load reads exactly the 16 bytes of
    // `chunk` (an unaligned load: `loadu`); the rest touch registers only.
    let mask = unsafe {
        let v = _mm_loadu_si128(chunk.as_ptr().cast::<__m128i>());
        // Unsigned `b < 0x20` is `min(b, 0x1f) == b`.
        let control = _mm_cmpeq_epi8(_mm_min_epu8(v, _mm_set1_epi8(0x1f)), v);
        let quote = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'"' as i8));
        let backslash = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'\\' as i8));
        _mm_movemask_epi8(_mm_or_si128(control, _mm_or_si128(quote, backslash)))
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
    };
    // SAFETY: the build enables SSE2 (the cfg above), so these intrinsics are
    // available; the loads read exactly the 16 bytes of `a` and of `b`.
    let mask = unsafe {
        let (va, vb) = (_mm_loadu_si128(a.as_ptr().cast::<__m128i>()), _mm_loadu_si128(b.as_ptr().cast::<__m128i>()));
        let low = _mm_min_epu8(va, vb);
        let control = _mm_cmpeq_epi8(_mm_min_epu8(low, _mm_set1_epi8(0x1f)), low);
        let (quote, backslash) = (_mm_set1_epi8(b'"' as i8), _mm_set1_epi8(b'\\' as i8));
        let quotes = _mm_or_si128(_mm_cmpeq_epi8(va, quote), _mm_cmpeq_epi8(vb, quote));
        let backslashes = _mm_or_si128(_mm_cmpeq_epi8(va, backslash), _mm_cmpeq_epi8(vb, backslash));
        _mm_movemask_epi8(_mm_or_si128(control, _mm_or_si128(quotes, backslashes)))
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
pub(super) fn escape_into(buf: &mut [u8], pos: usize, src: &[u8]) -> usize {
    if src.len() > CLEAN_MAX {
        return escape_long(buf, pos, src);
    }
    copy_clean(buf, pos, src).unwrap_or_else(|| escape_bytes(buf, pos, src))
}

/// Longest text [`copy_clean`] takes.
pub(super) const CLEAN_MAX: usize = 2 * CHUNK;

/// Copies `src` (at most `CLEAN_MAX` bytes) to `buf` at `pos` if no byte of it
/// needs an escape, and returns the new position; `None` (and scratch written)
/// otherwise. Writes at most `max(src.len(), 8)` bytes.
#[inline(always)]
pub(super) fn copy_clean(buf: &mut [u8], pos: usize, src: &[u8]) -> Option<usize> {
    let len = src.len();
    if len < 8 {
        // Writing all eight bytes is fine: the room past the string is scratch.
        let word = short_word(src);
        if !word_needs_escape(word) {
            buf[pos..pos + 8].copy_from_slice(&word.to_le_bytes());
            return Some(pos + len);
        }
    } else if len <= 16 {
        let first = load_word(src);
        let last = load_word(&src[len - 8..]);
        if word_escape_mask(first) | word_escape_mask(last) == 0 {
            buf[pos..pos + 8].copy_from_slice(&first.to_le_bytes());
            buf[pos + len - 8..pos + len].copy_from_slice(&last.to_le_bytes());
            return Some(pos + len);
        }
    } else if len <= CLEAN_MAX {
        let first = load_chunk(src);
        let last = load_chunk(&src[len - CHUNK..]);
        if !chunks_need_escape(&first, &last) {
            buf[pos..pos + CHUNK].copy_from_slice(&first);
            buf[pos + len - CHUNK..pos + len].copy_from_slice(&last);
            return Some(pos + len);
        }
    }
    None
}

/// Room [`quote_clean`] needs from its position: the quotes and `CLEAN_MAX` bytes.
pub(super) const QUOTED_ROOM: usize = CLEAN_MAX + 2;
/// Room [`key_clean`] needs from its position: `,"`, `CLEAN_MAX` bytes and `":`.
pub(super) const KEY_ROOM: usize = CLEAN_MAX + 4;

/// Writes `"src"` at `pos` if `src` is at most `CLEAN_MAX` bytes and none of
/// them needs an escape, and returns the new position; `None` (and scratch
/// written) otherwise, or if `buf` has less than `QUOTED_ROOM` bytes from `pos`.
#[inline(always)]
pub(super) fn quote_clean(buf: &mut [u8], pos: usize, src: &[u8]) -> Option<usize> {
    let len = src.len();
    if len > CLEAN_MAX {
        return None;
    }
    // One bounds check for the window; the stores into it need none.
    let dst = buf.get_mut(pos..)?.first_chunk_mut::<QUOTED_ROOM>()?;
    if !put_clean(dst, 1, src) {
        return None;
    }
    dst[0] = b'"';
    dst[len + 1] = b'"';
    Some(pos + len + 2)
}

/// Writes `,"src":` (`"src":` without `separator`) at `pos` if `src` is at most
/// `CLEAN_MAX` bytes and none of them needs an escape, and returns the new
/// position; `None` (and scratch written) otherwise, or if `buf` has less than
/// `KEY_ROOM` bytes from `pos`.
#[inline(always)]
pub(super) fn key_clean(buf: &mut [u8], pos: usize, separator: bool, src: &[u8]) -> Option<usize> {
    let len = src.len();
    if len > CLEAN_MAX {
        return None;
    }
    let dst = buf.get_mut(pos..)?.first_chunk_mut::<KEY_ROOM>()?;
    let open = usize::from(separator);
    if !put_clean(dst, open + 1, src) {
        return None;
    }
    // The comma is written either way; without one, the quote goes over it.
    dst[0] = b',';
    dst[open] = b'"';
    dst[open + 1 + len..open + 3 + len].copy_from_slice(b"\":");
    Some(pos + open + len + 3)
}

/// Copies `src` (at most `CLEAN_MAX` bytes) into `dst` at `at` if no byte of it
/// needs an escape: fixed-size pieces with no loop, two overlapping loads of the
/// first and last 8 (or 16) bytes, each written at its place (the overlap is
/// written twice with the same bytes). False (and scratch written) otherwise.
/// Writes at most `max(src.len(), 8)` bytes.
#[inline(always)]
fn put_clean<const N: usize>(dst: &mut [u8; N], at: usize, src: &[u8]) -> bool {
    let len = src.len();
    if len < 8 {
        // Writing all eight bytes is fine: the room past the string is scratch.
        let word = short_word(src);
        if word_needs_escape(word) {
            return false;
        }
        dst[at..at + 8].copy_from_slice(&word.to_le_bytes());
    } else if len <= 16 {
        let (first, last) = (load_word(src), load_word(&src[len - 8..]));
        if words_need_escape(first, last) {
            return false;
        }
        dst[at..at + 8].copy_from_slice(&first.to_le_bytes());
        dst[at + len - 8..at + len].copy_from_slice(&last.to_le_bytes());
    } else {
        let (first, last) = (load_chunk(src), load_chunk(&src[len - CHUNK..]));
        if chunks_need_escape(&first, &last) {
            return false;
        }
        dst[at..at + CHUNK].copy_from_slice(&first);
        dst[at + len - CHUNK..at + len].copy_from_slice(&last);
    }
    true
}

/// Copies `src` (more than `CHUNK` bytes) to `buf` at `pos` if no byte of it
/// needs an escape, and returns the new position; `None` (and scratch written)
/// otherwise. The chunks are copied as they are checked, the last one
/// overlapping the one before: one pass, no branch per chunk. `buf` has room for
/// `src.len()` bytes from `pos`.
#[inline(always)]
pub(super) fn copy_clean_long(buf: &mut [u8], pos: usize, src: &[u8]) -> Option<usize> {
    let len = src.len();
    let dst = &mut buf[pos..pos + len];
    let mut dirty = false;
    let mut i = 0;
    while i + CHUNK < len {
        let chunk = load_chunk(&src[i..]);
        dst[i..i + CHUNK].copy_from_slice(&chunk);
        dirty |= chunk_needs_escape(&chunk);
        i += CHUNK;
    }
    let last = load_chunk(&src[len - CHUNK..]);
    dst[len - CHUNK..].copy_from_slice(&last);
    dirty |= chunk_needs_escape(&last);
    (!dirty).then_some(pos + len)
}

/// [`escape_into`] for more than 32 bytes: 16-byte chunks, then the last 16
/// bytes (overlapping the previous chunk) if that chunk was clean.
#[inline]
pub(super) fn escape_long(buf: &mut [u8], mut pos: usize, src: &[u8]) -> usize {
    let len = src.len();
    let mut i = 0;
    let mut last_chunk_clean = false;
    while i + CHUNK <= len {
        let chunk = load_chunk(&src[i..]);
        if chunk_needs_escape(&chunk) {
            pos = escape_bytes(buf, pos, &chunk);
            last_chunk_clean = false;
        } else {
            buf[pos..pos + CHUNK].copy_from_slice(&chunk);
            pos += CHUNK;
            last_chunk_clean = true;
        }
        i += CHUNK;
    }
    let rest = len - i;
    if rest == 0 {
        return pos;
    }
    if last_chunk_clean {
        let chunk = load_chunk(&src[len - CHUNK..]);
        if !chunk_needs_escape(&chunk) {
            let at = pos - (CHUNK - rest);
            buf[at..at + CHUNK].copy_from_slice(&chunk);
            return pos + rest;
        }
    }
    escape_bytes(buf, pos, &src[i..])
}

/// Bytes of room past `6 * src.len()` that [`escape_bytes`] and [`escape_into`]
/// need from their start position (their fixed-size stores run past the text).
pub(super) const ESCAPE_ROOM: usize = 16;

/// Escapes `src` 16 bytes at a time while 16 are left: a clean piece is copied
/// whole; in a piece with a byte to escape, the clean bytes before it are kept
/// (the whole piece was copied), that byte is escaped, and the scan goes on right
/// after it. The last bytes go a word at a time ([`escape_words`]). `buf` has
/// room for `6 * src.len() + ESCAPE_ROOM` bytes from `pos`.
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
#[inline]
pub(super) fn escape_bytes(buf: &mut [u8], mut pos: usize, src: &[u8]) -> usize {
    let len = src.len();
    let mut i = 0;
    while len - i >= CHUNK {
        // Each piece is loaded from `src` (not from a copy just written, which
        // the CPU could not hand to a load that spans it).
        let chunk = load_chunk(&src[i..]);
        // At most `6 * i + 16 <= 6 * src.len()` bytes from the start: in room.
        buf[pos..pos + CHUNK].copy_from_slice(&chunk);
        let marks = chunk_escape_bits(&chunk);
        if marks == 0 {
            pos += CHUNK;
            i += CHUNK;
            continue;
        }
        let clean = marks.trailing_zeros() as usize;
        pos += clean;
        i += clean;
        pos = escape_byte(buf, pos, src[i]);
        i += 1;
    }
    if i == len {
        return pos;
    }
    if i == 0 {
        return escape_words(buf, pos, src);
    }
    // Fewer than 16 bytes left, all within the last 16 of `src`.
    escape_tail(buf, pos, &load_chunk(&src[len - CHUNK..]), len - i)
}

/// Escapes the last `rest` bytes (1 to 15) of `window`, the last 16 bytes of the
/// text, as [`escape_bytes`] does a piece: the bytes are moved down to the
/// start of a register (no byte loop, no load of bytes just stored) and
/// written whole, and after an escape what is left is moved down and written
/// again. `buf` has room for `6 * rest + ESCAPE_ROOM` bytes from `pos`.
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
#[inline(always)]
fn escape_tail(buf: &mut [u8], mut pos: usize, window: &[u8; CHUNK], mut rest: usize) -> usize {
    let text = u128::from_le_bytes(*window);
    let marks = chunk_escape_bits(window);
    loop {
        // 1 to 15: the bytes of `window` already written.
        let skip = CHUNK - rest;
        buf[pos..pos + CHUNK].copy_from_slice(&(text >> (8 * skip)).to_le_bytes());
        let left = marks >> skip;
        if left == 0 {
            return pos + rest;
        }
        let clean = left.trailing_zeros() as usize;
        pos = escape_byte(buf, pos + clean, window[skip + clean]);
        rest -= clean + 1;
        if rest == 0 {
            return pos;
        }
    }
}

/// Escapes `src` a word at a time, as [`escape_bytes`] does 16 bytes at a time.
/// `buf` has room for `6 * src.len() + ESCAPE_ROOM` bytes from `pos`.
#[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
#[inline]
pub(super) fn escape_bytes(buf: &mut [u8], pos: usize, src: &[u8]) -> usize {
    escape_words(buf, pos, src)
}

/// [`escape_bytes`] a word at a time (see there).
#[inline(always)]
fn escape_words(buf: &mut [u8], mut pos: usize, src: &[u8]) -> usize {
    let len = src.len();
    let mut i = 0;
    while i < len {
        let rest = len - i;
        // A short tail is padded with spaces, which need no escape: taken from
        // the last word of `src` if it has one, else assembled.
        let word = if rest >= 8 {
            load_word(&src[i..])
        } else if len >= 8 {
            (load_word(&src[len - 8..]) >> (8 * (8 - rest))) | (SPACES << (8 * rest))
        } else {
            short_word(&src[i..])
        };
        // At most `6 * i + 8 <= 6 * src.len() + 8` bytes from the start: in room.
        buf[pos..pos + 8].copy_from_slice(&word.to_le_bytes());
        let mask = word_escape_mask(word);
        if mask == 0 {
            let step = rest.min(8);
            pos += step;
            i += step;
            continue;
        }
        // The lowest mark is a real one (false marks sit above a real one only),
        // and it is inside `src`, since padding is never marked.
        let clean = (mask.trailing_zeros() / 8) as usize;
        pos += clean;
        i += clean;
        pos = escape_byte(buf, pos, src[i]);
        i += 1;
    }
    pos
}

/// Writes the escape of `b`, a byte that needs one.
#[inline(always)]
fn escape_byte(buf: &mut [u8], pos: usize, b: u8) -> usize {
    let escape = ESCAPE[b as usize];
    if escape == b'u' {
        buf[pos..pos + 6].copy_from_slice(&unicode_escape(b));
        pos + 6
    } else {
        buf[pos] = b'\\';
        buf[pos + 1] = escape;
        pos + 2
    }
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
    use super::*;

    fn escape(src: &[u8]) -> Vec<u8> {
        let mut buf = vec![0; 6 * src.len() + ESCAPE_ROOM];
        let end = escape_into(&mut buf, 0, src);
        buf.truncate(end);
        buf
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
        for len in 0..40 {
            for step in 1..6 {
                let bytes: Vec<u8> =
                    (0..len).map(|i| if i % step == 0 { [b'"', b'\n', 0x01, b'\\'][i % 4] } else { b'x' }).collect();
                let mut buf = vec![0; 6 * len + ESCAPE_ROOM];
                let end = escape_bytes(&mut buf, 0, &bytes);
                assert_eq!(&buf[..end], &escape_reference(&bytes)[..], "{len} {step}");
            }
        }
    }

    #[test]
    fn copy_clean_long_copies_clean_text_and_refuses_any_special_byte() {
        for len in CHUNK + 1..=140 {
            let clean: Vec<u8> = (0..len).map(|i| b'#' + (i * 7 % 50) as u8).collect();
            let mut buf = vec![0; len + 3];
            assert_eq!(copy_clean_long(&mut buf, 3, &clean), Some(len + 3), "length {len}");
            assert_eq!(&buf[3..], &clean[..], "length {len}");
            for special in [b'"', b'\\', b'\n', 0x00, 0x1f] {
                for at in 0..len {
                    let mut bytes = clean.clone();
                    bytes[at] = special;
                    assert_eq!(copy_clean_long(&mut buf, 3, &bytes), None, "byte {special:#x} at {at} of {len}");
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
            let mut buf = vec![0; 3 + KEY_ROOM];
            let end = quote_clean(&mut buf, 3, &clean);
            let key = |buf: &mut Vec<u8>, separator| key_clean(buf, 3, separator, &clean);
            if len > CLEAN_MAX {
                assert_eq!(end, None, "length {len}");
                assert_eq!(key(&mut buf, true), None, "length {len}");
                continue;
            }
            assert_eq!(end, Some(3 + len + 2), "length {len}");
            assert_eq!(&buf[3..5 + len], &[&b"\""[..], &clean, b"\""].concat()[..], "length {len}");
            assert_eq!(key(&mut buf, true), Some(3 + len + 4), "length {len}");
            assert_eq!(&buf[3..7 + len], &[&b",\""[..], &clean, b"\":"].concat()[..], "length {len}");
            assert_eq!(key(&mut buf, false), Some(3 + len + 3), "length {len}");
            assert_eq!(&buf[3..6 + len], &[&b"\""[..], &clean, b"\":"].concat()[..], "length {len}");
            // Too little room: refused, nothing written out of bounds.
            assert_eq!(quote_clean(&mut buf[..3 + QUOTED_ROOM - 1], 3, &clean), None, "length {len}");
            assert_eq!(key_clean(&mut buf[..3 + KEY_ROOM - 1], 3, true, &clean), None, "length {len}");
            for special in [b'"', b'\\', b'\n', 0x00, 0x1f] {
                for at in 0..len {
                    let mut bytes = clean.clone();
                    bytes[at] = special;
                    assert_eq!(quote_clean(&mut buf, 3, &bytes), None, "byte {special:#x} at {at} of {len}");
                    assert_eq!(key_clean(&mut buf, 3, true, &bytes), None, "byte {special:#x} at {at} of {len}");
                }
            }
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
