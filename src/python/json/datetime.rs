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

    /// Appends `bytes` at once (dropped if they do not fit, as `push` drops a byte).
    fn extend(&mut self, bytes: &[u8]) {
        if let Some(room) = self.bytes.get_mut(self.len..self.len + bytes.len()) {
            room.copy_from_slice(bytes);
            self.len += bytes.len();
        }
    }

    pub(super) fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

/// The two low decimal digits of `value`.
fn pair(value: u32) -> [u8; 2] {
    let at = (value % 100) as usize * 2;
    [DIGIT_PAIRS[at], DIGIT_PAIRS[at + 1]]
}

/// `YYYY-MM-DD` (each field's low digits), in one write.
pub(super) fn date(out: &mut ShortText, year: u32, month: u32, day: u32) {
    let ([y0, y1], [y2, y3]) = (pair(year / 100), pair(year));
    let ([m0, m1], [d0, d1]) = (pair(month), pair(day));
    out.extend(&[y0, y1, y2, y3, b'-', m0, m1, b'-', d0, d1]);
}

/// `HH:MM:SS`, then `.ffffff` when the microseconds are not zero.
pub(super) fn time(out: &mut ShortText, hour: u32, minute: u32, second: u32, microsecond: u32) {
    let ([h0, h1], [m0, m1], [s0, s1]) = (pair(hour), pair(minute), pair(second));
    out.extend(&[h0, h1, b':', m0, m1, b':', s0, s1]);
    if microsecond != 0 {
        let ([a0, a1], [b0, b1], [c0, c1]) = (pair(microsecond / 10_000), pair(microsecond / 100), pair(microsecond));
        out.extend(&[b'.', a0, a1, b0, b1, c0, c1]);
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

/// Each byte's two lowercase hex digits.
const HEX_PAIRS: [[u8; 2]; 256] = {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut pairs = [[0u8; 2]; 256];
    let mut b = 0;
    while b < 256 {
        pairs[b] = [HEX[b >> 4], HEX[b & 0xf]];
        b += 1;
    }
    pairs
};

/// Where each byte of a UUID's value goes in its text (the dashes fall between).
const UUID_BYTE_AT: [usize; 16] = [0, 2, 4, 6, 9, 11, 14, 16, 19, 21, 24, 26, 28, 30, 32, 34];

/// The canonical text of a UUID given as its 128-bit value:
/// `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`, lowercase; a table lookup per byte of the
/// value, into fixed places.
pub(super) fn uuid_text(value: u128) -> [u8; 36] {
    let mut out = [b'-'; 36];
    for (byte, at) in value.to_be_bytes().into_iter().zip(UUID_BYTE_AT) {
        out[at..at + 2].copy_from_slice(&HEX_PAIRS[usize::from(byte)]);
    }
    out
}

/// The units of a numpy `datetime64` that are written (orjson's set).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Unit {
    Years,
    Months,
    Weeks,
    Days,
    Hours,
    Minutes,
    Seconds,
    Millis,
    Micros,
    Nanos,
}

impl Unit {
    /// The unit named in a dtype's text, such as `<M8[ns]`; `None` for the
    /// others (picoseconds and finer, or no unit).
    pub(super) fn from_dtype(dtype: &str) -> Option<Self> {
        let name = dtype.split_once('[')?.1.strip_suffix(']')?;
        Some(match name {
            "Y" => Self::Years,
            "M" => Self::Months,
            "W" => Self::Weeks,
            "D" => Self::Days,
            "h" => Self::Hours,
            "m" => Self::Minutes,
            "s" => Self::Seconds,
            "ms" => Self::Millis,
            "us" => Self::Micros,
            "ns" => Self::Nanos,
            _ => return None,
        })
    }
}

/// A numpy `datetime64` of `value` `unit`s since 1970-01-01 as a naive datetime
/// (`YYYY-MM-DDTHH:MM:SS[.ffffff]`, nanoseconds cut to microseconds), as orjson
/// writes one; `None` for NaT and outside the years 0 to 9999.
pub(super) fn datetime64(out: &mut ShortText, value: i64, unit: Unit) -> Option<()> {
    if value == i64::MIN {
        return None;
    }
    const DAY: i64 = 86_400_000_000;
    // (days since the epoch, microseconds into the day); a product that overflows
    // is far past the year 9999.
    let (days, micros) = match unit {
        Unit::Years => (days_from_civil(value.checked_add(1970)?, 1, 1)?, 0),
        Unit::Months => (days_from_civil(1970 + value.div_euclid(12), value.rem_euclid(12) + 1, 1)?, 0),
        Unit::Weeks => (value.checked_mul(7)?, 0),
        Unit::Days => (value, 0),
        _ => {
            let micros = match unit {
                Unit::Hours => value.checked_mul(3_600_000_000)?,
                Unit::Minutes => value.checked_mul(60_000_000)?,
                Unit::Seconds => value.checked_mul(1_000_000)?,
                Unit::Millis => value.checked_mul(1000)?,
                Unit::Micros => value,
                // Nanoseconds, cut to microseconds (towards the past).
                _ => value.div_euclid(1000),
            };
            (micros.div_euclid(DAY), micros.rem_euclid(DAY))
        }
    };
    let (year, month, day) = civil_from_days(days)?;
    date(out, year, month, day);
    out.push(b'T');
    // 0 to DAY - 1 (`rem_euclid`): fits a u64, and its parts a u32.
    let micros = micros.unsigned_abs();
    let seconds = (micros / 1_000_000) as u32;
    time(out, seconds / 3600, seconds / 60 % 60, seconds % 60, (micros % 1_000_000) as u32);
    Some(())
}

/// Days since 1970-01-01 of a date in the proleptic Gregorian calendar (a
/// cycle of 400 years is 146,097 days, counted from March so that the leap day
/// comes last); `None` far outside the years datetimes have.
fn days_from_civil(year: i64, month: i64, day: i64) -> Option<i64> {
    if !(-1_000_000..=1_000_000).contains(&year) {
        return None;
    }
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_from_march = (month + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    Some(era * 146_097 + day_of_era - 719_468)
}

/// The date `days` after 1970-01-01, if its year is 0 to 9999 (the inverse of
/// `days_from_civil`).
fn civil_from_days(days: i64) -> Option<(u32, u32, u32)> {
    // Outside the years 0 to 9999 by far: refused before any arithmetic.
    if !(-800_000..=3_000_000).contains(&days) {
        return None;
    }
    let days = days + 719_468;
    let era = days.div_euclid(146_097);
    let day_of_era = days - era * 146_097;
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 { month_from_march + 3 } else { month_from_march - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    if !(0..=9999).contains(&year) {
        return None;
    }
    Some((u32::try_from(year).ok()?, u32::try_from(month).ok()?, u32::try_from(day).ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uuid(value: u128) -> String {
        String::from_utf8(uuid_text(value).to_vec()).unwrap()
    }

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
        assert_eq!(uuid(12345), "00000000-0000-0000-0000-000000003039");
        assert_eq!(uuid(u128::MAX), "ffffffff-ffff-ffff-ffff-ffffffffffff");
        assert_eq!(uuid(0x1234_5678_9abc_def0_0fed_cba9_8765_4321), "12345678-9abc-def0-0fed-cba987654321");
    }

    #[test]
    fn datetime64_counts_from_the_epoch() {
        let text64 = |v, unit| {
            let mut out = ShortText::new();
            datetime64(&mut out, v, unit).map(|()| String::from_utf8(out.as_bytes().to_vec()).unwrap())
        };
        assert_eq!(text64(0, Unit::Seconds).as_deref(), Some("1970-01-01T00:00:00"));
        assert_eq!(text64(-1, Unit::Nanos).as_deref(), Some("1969-12-31T23:59:59.999999"));
        assert_eq!(text64(51, Unit::Years).as_deref(), Some("2021-01-01T00:00:00"));
        assert_eq!(text64(-1, Unit::Months).as_deref(), Some("1969-12-01T00:00:00"));
        assert_eq!(text64(11_016, Unit::Days).as_deref(), Some("2000-02-29T00:00:00"));
        assert_eq!(text64(1_609_462_923_123, Unit::Millis).as_deref(), Some("2021-01-01T01:02:03.123000"));
        assert_eq!(text64(2_932_896, Unit::Days).as_deref(), Some("9999-12-31T00:00:00"));
        assert_eq!(text64(2_932_897, Unit::Days), None);
        assert_eq!(text64(i64::MIN, Unit::Seconds), None);
        assert_eq!(text64(-719_528, Unit::Days).as_deref(), Some("0000-01-01T00:00:00"));
        assert_eq!(text64(-719_529, Unit::Days), None);
        assert_eq!(Unit::from_dtype("<M8[us]"), Some(Unit::Micros));
        assert_eq!(Unit::from_dtype("<M8[ps]"), None);
        assert_eq!(Unit::from_dtype("<M8"), None);
    }
}
