//! Number text: ints in decimal and floats as orjson writes them.

use pyo3::prelude::*;
use pyo3::types::PyInt;

use super::borrowed;
use super::error::SerializeError;
use super::out::{Out, Scratch};

pub(super) const DIGIT_PAIRS: &[u8; 200] = b"0001020304050607080910111213141516171819\
2021222324252627282930313233343536373839\
4041424344454647484950515253545556575859\
6061626364656667686970717273747576777879\
8081828384858687888990919293949596979899";

/// Powers of ten, for counting digits.
const POWERS_OF_10: [u64; 20] = {
    let mut table = [1u64; 20];
    let mut i = 1;
    while i < 20 {
        table[i] = table[i - 1] * 10;
        i += 1;
    }
    table
};

/// Decimal digits in `n` (0 for 0), from its bit length: `bits * 1233 >> 12`
/// is `floor(log10(2^bits))`, one short of the digits or exact, which one
/// compare with a power of ten settles.
#[inline(always)]
fn decimal_digits(n: u64) -> usize {
    let bits = 64 - (n | 1).leading_zeros();
    let guess = ((bits * 1233) >> 12) as usize;
    guess + usize::from(n >= POWERS_OF_10[guess.min(19)])
}

/// Writes `-` if `negative`, then `magnitude` in decimal, at `pos` (24 bytes of
/// room) and returns the new position.
#[inline(always)]
pub(super) fn write_int(buf: &mut Out, pos: usize, negative: bool, magnitude: u64) -> usize {
    // The sign byte is written either way; only a negative int keeps it.
    buf.set(pos, b'-');
    let pos = pos + usize::from(negative);
    // Up to 9 digits in groups of three, each from a table: short chains of
    // work, so one int's digits overlap with the next one's.
    if magnitude < 1000 {
        return put_group(buf, pos, SMALL_INTS[magnitude as usize]);
    }
    if magnitude < 1_000_000 {
        let n = magnitude as u32;
        let pos = put_group(buf, pos, SMALL_INTS[(n / 1000) as usize]);
        return put_group(buf, pos, PADDED_INTS[(n % 1000) as usize]);
    }
    if magnitude < 1_000_000_000 {
        let n = magnitude as u32;
        let pos = put_group(buf, pos, SMALL_INTS[(n / 1_000_000) as usize]);
        let pos = put_group(buf, pos, PADDED_INTS[(n / 1000 % 1000) as usize]);
        return put_group(buf, pos, PADDED_INTS[(n % 1000) as usize]);
    }
    if magnitude < 10_000_000_000_000_000 {
        // 9 to 16 digits: the high part, then eight more.
        let (high, low) = (magnitude / 100_000_000, magnitude % 100_000_000);
        let end = write_short(buf, pos, high as u32);
        buf[end..end + 8].put(&(eight_digits(low as u32) + ASCII_ZEROS).to_le_bytes());
        return end + 8;
    }
    write_long(buf, pos, magnitude)
}

/// `n` (below 10^8) in decimal at `pos`, with one 8-byte store (8 bytes of
/// room); returns the new position.
#[inline(always)]
fn write_short(buf: &mut Out, pos: usize, n: u32) -> usize {
    // All eight digits at once, then the leading zeros shifted out (one digit stays for 0).
    let digits = eight_digits(n);
    let zeros = ((digits.trailing_zeros() / 8) as usize).min(7);
    let text = (digits >> (8 * zeros)) + ASCII_ZEROS;
    buf[pos..pos + 8].put(&text.to_le_bytes());
    pos + 8 - zeros
}

/// Writes a group from [`SMALL_INTS`] or [`PADDED_INTS`] (4 bytes of room);
/// returns the new position.
#[inline(always)]
fn put_group(buf: &mut Out, pos: usize, entry: u32) -> usize {
    buf[pos..pos + 4].put(&entry.to_le_bytes());
    pos + (entry >> 24) as usize
}

/// For each int below 1000: its digits in the low bytes (in text order) and
/// their count in the high byte, written with one 4-byte store.
static SMALL_INTS: [u32; 1000] = group_table(false);
/// The same with three digits each (leading zeros): the groups after the first.
static PADDED_INTS: [u32; 1000] = group_table(true);

const fn group_table(padded: bool) -> [u32; 1000] {
    let mut table = [0u32; 1000];
    let mut n = 0;
    while n < 1000 {
        // The digits as text, hundreds first.
        let (d0, d1, d2) = (0x30 + (n / 100) as u32, 0x30 + (n / 10 % 10) as u32, 0x30 + (n % 10) as u32);
        table[n] = if n >= 100 || padded {
            (3 << 24) | (d2 << 16) | (d1 << 8) | d0
        } else if n >= 10 {
            (2 << 24) | (d2 << 8) | d1
        } else {
            (1 << 24) | d2
        };
        n += 1;
    }
    table
}

/// `'0'` in each byte.
const ASCII_ZEROS: u64 = 0x3030_3030_3030_3030;

/// The eight decimal digits of `n` (below 10^8) as the bytes of a little-endian
/// word, the most significant in the lowest byte (so in text order), each 0 to 9.
///
/// Splits in lanes, all at once: into two 4-digit halves (32-bit lanes), each
/// half into two 2-digit quarters (16-bit lanes), each quarter into two digits
/// (bytes). A division by 100 is `* 10486 >> 20` (exact below 10^4) and one by
/// 10 is `* 103 >> 10` (exact below 179); no lane's product spills into the
/// next one's bits that the mask keeps.
#[inline(always)]
fn eight_digits(n: u32) -> u64 {
    let halves = u64::from(n / 10_000) | (u64::from(n % 10_000) << 32);
    let hundreds = ((halves * 10_486) >> 20) & 0x0000_007f_0000_007f;
    let quarters = ((halves - 100 * hundreds) << 16) | hundreds;
    let tens = ((quarters * 103) >> 10) & 0x000f_000f_000f_000f;
    ((quarters - 10 * tens) << 8) | tens
}

/// `magnitude` (17 to 20 digits) in decimal at `pos`; returns the new position.
#[cold]
fn write_long(buf: &mut Out, pos: usize, magnitude: u64) -> usize {
    let mut n = magnitude;
    let end = pos + decimal_digits(n).max(1);
    let mut at = end;
    while n >= 100 {
        let pair = (n % 100) as usize * 2;
        n /= 100;
        at -= 2;
        buf[at..at + 2].put(&DIGIT_PAIRS[pair..pair + 2]);
    }
    if n >= 10 {
        let pair = n as usize * 2;
        at -= 2;
        buf[at..at + 2].put(&DIGIT_PAIRS[pair..pair + 2]);
    } else {
        at -= 1;
        buf.set(at, b'0' + n as u8);
    }
    end
}

/// [`write_int`] for an `i64`.
#[cfg(test)]
fn write_i64(buf: &mut Out, pos: usize, v: i64) -> usize {
    write_int(buf, pos, v < 0, v.unsigned_abs())
}

/// Decimal text of any Python int, as `int.__repr__` gives it (so an `IntEnum`
/// writes its value, as `json.dumps` does).
pub(super) fn int_text(obj: &Bound<'_, PyAny>, subclass: bool) -> Result<String, SerializeError> {
    if let Some((negative, magnitude)) = borrowed::int_parts(obj.as_borrowed(), borrowed::Layouts::NONE) {
        let mut buf = Scratch::<[_; 32]>::new();
        let end = write_int(buf.out(), 0, negative, magnitude);
        return Ok(String::from_utf8_lossy(buf.bytes(0..end)).into_owned());
    }
    if let Ok(v) = obj.extract::<u64>() {
        return Ok(itoa::Buffer::new().format(v).to_owned());
    }
    let py = obj.py();
    let text = if subclass {
        py.get_type::<PyInt>().call_method1("__repr__", (obj,)).and_then(|r| r.str())
    } else {
        obj.repr()
    };
    text.map(|t| t.to_string_lossy().into_owned())
        .map_err(|err| SerializeError::value(format!("int cannot be converted to text ({})", err.value(py))))
}

/// A float's JSON text, built on the stack.
pub(super) struct FloatText {
    bytes: [u8; 32],
    len: usize,
}

impl FloatText {
    pub(super) fn new() -> Self {
        Self { bytes: [0; 32], len: 0 }
    }

    pub(super) fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

/// Writes a finite `value` the way orjson does: the shortest digits that
/// round-trip, in plain notation when the decimal exponent is in -5..=15
/// (`0.00001`, `1000000000000000.0`), else in scientific notation with a signed
/// exponent (`1e-6`, `1.5e+16`). That is zmij's own format, so its text is
/// taken as is. NaN and infinities are the caller's (they are written `null`).
///
/// # Errors
/// `value` is NaN or infinite.
#[inline]
pub(super) fn float_text(value: f64, out: &mut FloatText) -> Result<(), SerializeError> {
    if !value.is_finite() {
        return Err(SerializeError::value(format!("float {value} has no JSON number form")));
    }
    let mut buffer = zmij::Buffer::new();
    let text = buffer.format_finite(value).as_bytes();
    // At most 24 bytes (`-2.2250738585072014e-308`).
    let len = text.len().min(out.bytes.len());
    out.bytes[..len].copy_from_slice(&text[..len]);
    out.len = len;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn float(v: f64) -> String {
        let mut t = FloatText::new();
        float_text(v, &mut t).unwrap();
        String::from_utf8(t.as_bytes().to_vec()).unwrap()
    }

    #[test]
    fn floats_are_written_like_orjson() {
        let cases = [
            (0.1, "0.1"),
            (1.0, "1.0"),
            (1e16, "1e+16"),
            (1e300, "1e+300"),
            (-0.0, "-0.0"),
            (0.0, "0.0"),
            (5e-324, "5e-324"),
            (1.5e-7, "1.5e-7"),
            (1e-5, "0.00001"),
            (1.234e-5, "0.00001234"),
            (1e-6, "1e-6"),
            (1e15, "1000000000000000.0"),
            (9999000000000000.0, "9999000000000000.0"),
            (1.5e16, "1.5e+16"),
            (123456789012345.6, "123456789012345.6"),
            (1.2345678901234568e17, "1.2345678901234568e+17"),
            (1.7976931348623157e308, "1.7976931348623157e+308"),
            (12345.678, "12345.678"),
            (-2.5, "-2.5"),
            (100.0, "100.0"),
        ];
        for (value, expected) in cases {
            assert_eq!(float(value), expected, "{value:e}");
        }
    }

    #[test]
    fn integers_are_written_in_decimal() {
        let mut cases = vec![0, 1, 9, 10, 99, 100, 12345, -1, -10, i64::MAX, i64::MIN];
        for power in 0..19 {
            let p = 10i64.pow(power);
            cases.extend([p - 1, p, p + 1, -p]);
        }
        for v in cases {
            let mut buf = Scratch::<[_; 32]>::new();
            let end = write_i64(buf.out(), 0, v);
            assert_eq!(std::str::from_utf8(buf.bytes(0..end)).unwrap(), v.to_string());
        }
        // Every length, each digit at each place, and ints around the 8- and 16-digit splits.
        let mut cases: Vec<i64> = Vec::new();
        let mut rng = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..200_000 {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let v = i64::try_from(rng >> (rng % 63 + 1)).unwrap();
            cases.push(v);
            cases.push(-v);
        }
        cases.extend((0..100_000).chain(99_990_000..100_010_000));
        cases.extend((990_000..1_010_000).chain(999_990_000..1_000_010_000));
        cases.extend((0..1000).map(|i| 9_999_999_999_999_500 + i));
        for v in cases {
            let mut buf = Scratch::<[_; 32]>::new();
            let end = write_i64(buf.out(), 0, v);
            assert_eq!(std::str::from_utf8(buf.bytes(0..end)).unwrap(), v.to_string());
        }
        for v in [u64::MAX, u64::MAX - 1, 1 << 63, 10_000_000_000_000_000_000] {
            let mut buf = Scratch::<[_; 32]>::new();
            let end = write_int(buf.out(), 0, true, v);
            assert_eq!(std::str::from_utf8(buf.bytes(0..end)).unwrap(), format!("-{v}"));
        }
    }
}
