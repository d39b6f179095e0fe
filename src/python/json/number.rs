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

/// Writes `v` in decimal at `pos` (20 bytes of room) and returns the new position.
#[inline]
pub(super) fn write_i64(buf: &mut [u8], mut pos: usize, v: i64) -> usize {
    if v < 0 {
        buf[pos] = b'-';
        pos += 1;
    }
    let mut n = v.unsigned_abs();
    let mut digits = 1;
    let mut probe = n;
    while probe >= 10 {
        probe /= 10;
        digits += 1;
    }
    let end = pos + digits;
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

/// Decimal text of any Python int, as `int.__repr__` gives it (so an `IntEnum`
/// writes its value, as `json.dumps` does).
pub(super) fn int_text(obj: &Bound<'_, PyAny>, subclass: bool) -> Result<String, SerializeError> {
    if let Some(v) = borrowed::small_int(obj.as_borrowed(), borrowed::Layouts::NONE) {
        return Ok(itoa::Buffer::new().format(v).to_owned());
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
    pub(super) bytes: [u8; 40],
    pub(super) len: usize,
}

impl FloatText {
    pub(super) fn new() -> Self {
        Self { bytes: [0; 40], len: 0 }
    }

    pub(super) fn push(&mut self, b: u8) {
        if self.len < self.bytes.len() {
            self.bytes[self.len] = b;
            self.len += 1;
        }
    }

    pub(super) fn extend(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.push(b);
        }
    }

    pub(super) fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

/// Writes `value` the way orjson does: the shortest digits that round-trip (ryu),
/// in plain notation when the decimal exponent is in -5..16 (`0.00001`,
/// `1000000000000000.0`), else in scientific notation (`1e-6`, `1.5e+16`).
/// NaN and infinities have no JSON form and are refused.
pub(super) fn float_text(value: f64, out: &mut FloatText) -> Result<(), SerializeError> {
    if !value.is_finite() {
        return Err(SerializeError::value(format!(
            "float {} is not JSON serializable: JSON has no NaN or Infinity",
            if value.is_nan() {
                "nan"
            } else if value > 0.0 {
                "inf"
            } else {
                "-inf"
            }
        )));
    }
    let mut buffer = ryu::Buffer::new();
    let text = buffer.format_finite(value).as_bytes();
    let (negative, text) = match text.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, text),
    };
    // ryu writes "123.45", "0.00123", "1.5e-7" or "1e16": take its digits and exponent.
    let (mantissa, exponent) = match text.iter().position(|&b| b == b'e') {
        Some(e) => (&text[..e], parse_exponent(&text[e + 1..])),
        None => (text, 0),
    };
    let mut digits = [0u8; 24];
    let mut count = 0usize;
    // Decimal exponent of the first digit written to `digits` (value = 0.d1d2... x 10^point).
    let mut point: i32 = exponent;
    let mut seen_dot = false;
    for &b in mantissa {
        if b == b'.' {
            seen_dot = true;
            continue;
        }
        if !seen_dot {
            point += 1;
        }
        if count == 0 && b == b'0' {
            // A leading zero only moves the decimal point.
            point -= 1;
            continue;
        }
        if count < digits.len() {
            digits[count] = b;
            count += 1;
        }
    }
    while count > 0 && digits[count - 1] == b'0' {
        count -= 1;
    }
    if negative {
        out.push(b'-');
    }
    if count == 0 {
        out.extend(b"0.0");
        return Ok(());
    }
    let digits = &digits[..count];
    let sci_exponent = point - 1;
    if (-5..16).contains(&sci_exponent) {
        if point <= 0 {
            out.extend(b"0.");
            for _ in 0..-point {
                out.push(b'0');
            }
            out.extend(digits);
        } else {
            let point = point as usize;
            if point >= digits.len() {
                out.extend(digits);
                for _ in digits.len()..point {
                    out.push(b'0');
                }
                out.extend(b".0");
            } else {
                out.extend(&digits[..point]);
                out.push(b'.');
                out.extend(&digits[point..]);
            }
        }
    } else {
        out.push(digits[0]);
        if digits.len() > 1 {
            out.push(b'.');
            out.extend(&digits[1..]);
        }
        out.push(b'e');
        if sci_exponent > 0 {
            out.push(b'+');
        }
        out.extend(itoa::Buffer::new().format(sci_exponent).as_bytes());
    }
    Ok(())
}

pub(super) fn parse_exponent(text: &[u8]) -> i32 {
    let (negative, digits) = match text.split_first() {
        Some((b'-', rest)) => (true, rest),
        Some((b'+', rest)) => (false, rest),
        _ => (false, text),
    };
    let magnitude = digits.iter().fold(0i32, |acc, &d| acc * 10 + i32::from(d - b'0'));
    if negative {
        -magnitude
    } else {
        magnitude
    }
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
        for v in [0, 1, 9, 10, 99, 100, 12345, -1, -10, i64::MAX, i64::MIN] {
            let mut buf = [0u8; 24];
            let end = write_i64(&mut buf, 0, v);
            assert_eq!(std::str::from_utf8(&buf[..end]).unwrap(), v.to_string());
        }
    }
}
