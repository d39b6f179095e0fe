//! The text of dates, times and UUIDs, as orjson writes them (RFC 3339 for the
//! first, the canonical 8-4-4-4-12 lowercase hex for the second). Pure byte
//! formatting: reading the Python objects' fields is the walk's job.

use super::number::DIGIT_PAIRS;

/// Text of at most 40 bytes, built on the stack (the longest here is a datetime
/// with microseconds and an offset: 32 bytes).
pub(super) struct ShortText {
    bytes: [u8; 40],
    len: usize,
}

impl ShortText {
    pub(super) fn new() -> Self {
        Self { bytes: [0; 40], len: 0 }
    }

    pub(super) fn push(&mut self, b: u8) {
        if self.len < self.bytes.len() {
            self.bytes[self.len] = b;
            self.len += 1;
        }
    }

    /// Appends `value` as exactly `width` decimal digits (the low ones; `width`
    /// is 2, 4 or 6), two at a time.
    fn digits(&mut self, value: u32, width: u32) {
        let mut divisor = match width {
            6 => 10_000,
            4 => 100,
            _ => 1,
        };
        while divisor > 0 {
            let pair = (value / divisor % 100) as usize * 2;
            self.push(DIGIT_PAIRS[pair]);
            self.push(DIGIT_PAIRS[pair + 1]);
            divisor /= 100;
        }
    }

    pub(super) fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

/// `YYYY-MM-DD`.
pub(super) fn date(out: &mut ShortText, year: u32, month: u32, day: u32) {
    out.digits(year, 4);
    out.push(b'-');
    out.digits(month, 2);
    out.push(b'-');
    out.digits(day, 2);
}

/// `HH:MM:SS`, then `.ffffff` when the microseconds are not zero.
pub(super) fn time(out: &mut ShortText, hour: u32, minute: u32, second: u32, microsecond: u32) {
    out.digits(hour, 2);
    out.push(b':');
    out.digits(minute, 2);
    out.push(b':');
    out.digits(second, 2);
    if microsecond != 0 {
        out.push(b'.');
        out.digits(microsecond, 6);
    }
}

/// A UTC offset given as a `timedelta`'s `days` and `seconds` (a negative offset
/// is `days == -1` and `seconds` counted up from there), written `+HH:MM`.
///
/// orjson's rules, followed to the byte: the sign is the offset's (so a few
/// seconds west of UTC is `-00:00`), the hours are whole, and the seconds left
/// over are rounded to the nearest minute, half up, without carrying into the
/// hours (86,398 seconds is `+23:60`). Microseconds are ignored.
pub(super) fn offset(out: &mut ShortText, days: i32, seconds: i32) {
    let (sign, magnitude) = if days < 0 { (b'-', 86_400 - i64::from(seconds)) } else { (b'+', i64::from(seconds)) };
    let magnitude = u32::try_from(magnitude.clamp(0, 86_399)).unwrap_or(0);
    out.push(sign);
    out.digits(magnitude / 3600, 2);
    out.push(b':');
    out.digits((magnitude % 3600 + 30) / 60, 2);
}

/// The canonical text of a UUID given as its 128-bit value:
/// `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`, lowercase.
pub(super) fn uuid(out: &mut ShortText, value: u128) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for nibble in 0..32u32 {
        if matches!(nibble, 8 | 12 | 16 | 20) {
            out.push(b'-');
        }
        let shift = 124 - 4 * nibble;
        out.push(HEX[((value >> shift) & 0xf) as usize]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(write: impl FnOnce(&mut ShortText)) -> String {
        let mut out = ShortText::new();
        write(&mut out);
        String::from_utf8(out.as_bytes().to_vec()).unwrap()
    }

    #[test]
    fn dates_and_times_are_zero_padded() {
        assert_eq!(text(|o| date(o, 5, 1, 2)), "0005-01-02");
        assert_eq!(text(|o| date(o, 9999, 12, 31)), "9999-12-31");
        assert_eq!(text(|o| time(o, 1, 2, 3, 0)), "01:02:03");
        assert_eq!(text(|o| time(o, 23, 59, 59, 40)), "23:59:59.000040");
        assert_eq!(text(|o| time(o, 0, 0, 0, 999_999)), "00:00:00.999999");
    }

    #[test]
    fn offsets_round_like_orjson() {
        // (days, seconds) of the timedelta, and orjson's text.
        let cases = [
            ((0, 0), "+00:00"),
            ((0, 3725), "+01:02"),
            ((-1, 86_400 - 3725), "-01:02"),
            ((-1, 86_400 - 5), "-00:00"),
            ((0, 29), "+00:00"),
            ((0, 30), "+00:01"),
            ((-1, 86_400 - 30), "-00:01"),
            ((0, 150), "+00:03"),
            ((0, 86_398), "+23:60"),
            ((-1, 86_400 - 19_800), "-05:30"),
        ];
        for ((days, seconds), expected) in cases {
            assert_eq!(text(|o| offset(o, days, seconds)), expected, "{days} {seconds}");
        }
    }

    #[test]
    fn uuids_are_grouped_lowercase_hex() {
        assert_eq!(text(|o| uuid(o, 12345)), "00000000-0000-0000-0000-000000003039");
        assert_eq!(text(|o| uuid(o, u128::MAX)), "ffffffff-ffff-ffff-ffff-ffffffffffff");
        assert_eq!(
            text(|o| uuid(o, 0x1234_5678_9abc_def0_0fed_cba9_8765_4321)),
            "12345678-9abc-def0-0fed-cba987654321"
        );
    }
}
