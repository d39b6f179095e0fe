//! Number text: ints in decimal and floats as orjson writes them.

use pyo3::prelude::*;
use pyo3::types::PyInt;

use super::borrowed;
use super::error::SerializeError;

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

/// Writes `-` if `negative`, then `magnitude` in decimal, at `pos` (21 bytes of
/// room) and returns the new position.
#[inline(always)]
pub(super) fn write_int(buf: &mut [u8], mut pos: usize, negative: bool, magnitude: u64) -> usize {
    if negative {
        buf[pos] = b'-';
        pos += 1;
    }
    let mut n = magnitude;
    let end = pos + decimal_digits(n).max(1);
    let mut at = end;
    while n >= 100 {
        let pair = (n % 100) as usize * 2;
        n /= 100;
        at -= 2;
        buf[at..at + 2].copy_from_slice(&DIGIT_PAIRS[pair..pair + 2]);
    }
    if n >= 10 {
        let pair = n as usize * 2;
        at -= 2;
        buf[at..at + 2].copy_from_slice(&DIGIT_PAIRS[pair..pair + 2]);
    } else {
        at -= 1;
        buf[at] = b'0' + n as u8;
    }
    end
}

/// [`write_int`] for an `i64`.
#[cfg(test)]
fn write_i64(buf: &mut [u8], pos: usize, v: i64) -> usize {
    write_int(buf, pos, v < 0, v.unsigned_abs())
}

/// Decimal text of any Python int, as `int.__repr__` gives it (so an `IntEnum`
/// writes its value, as `json.dumps` does).
pub(super) fn int_text(obj: &Bound<'_, PyAny>, subclass: bool) -> Result<String, SerializeError> {
    if let Some((negative, magnitude)) = borrowed::int_parts(obj.as_borrowed(), borrowed::Layouts::NONE) {
        let mut buf = [0u8; 24];
        let end = write_int(&mut buf, 0, negative, magnitude);
        return Ok(String::from_utf8_lossy(&buf[..end]).into_owned());
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
            let mut buf = [0u8; 24];
            let end = write_i64(&mut buf, 0, v);
            assert_eq!(std::str::from_utf8(&buf[..end]).unwrap(), v.to_string());
        }
        for v in [u64::MAX, u64::MAX - 1, 1 << 63, 10_000_000_000_000_000_000] {
            let mut buf = [0u8; 24];
            let end = write_int(&mut buf, 0, true, v);
            assert_eq!(std::str::from_utf8(&buf[..end]).unwrap(), format!("-{v}"));
        }
    }
}
