//! The `count` query parameter, parsed by hand from the raw query string so that
//! both endpoints refuse exactly the same inputs with the same sentences.
//!
//! Rules: at most one `count`, no other parameter, a plain decimal integer (no sign,
//! no spaces) from 0 to the `--max-count` limit. Keys and values are percent-decoded.
//! No `count` at all means [`DEFAULT_COUNT`] users, as the original service served
//! (its curl lines and load test ask without one).

use std::fmt::Write as _;

use crate::settings::MAX_COUNT_SETTING;

/// Why a query string was refused; `Display` is the sentence sent to the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    #[error("the query parameter 'count' was given {times} times; give it once")]
    Repeated { times: usize },
    #[error("unknown query parameter{} {names}: only 'count' is accepted", if *.count == 1 { "" } else { "s" })]
    Unknown { names: String, count: usize },
    #[error("the query parameter 'count' is empty: it must be an integer from 0 to {max}")]
    Empty { max: u32 },
    #[error("the query parameter 'count' must be an integer from 0 to {max} without a sign, got '{raw}'")]
    Signed { raw: String, max: u32 },
    #[error("the query parameter 'count' must be an integer from 0 to {max}, got '{raw}'")]
    NotANumber { raw: String, max: u32 },
    #[error("the query parameter 'count' is {raw}, more than the limit of {max} (set by {MAX_COUNT_SETTING})")]
    TooLarge { raw: String, max: u32 },
    #[error("the query string is not valid percent-encoded UTF-8")]
    BadEncoding,
    /// More users than the producer's newest snapshot holds (the snapshot path only).
    #[error("the query parameter 'count' is {count}, more than the limit of {users} (the users in the producer's newest snapshot)")]
    OverSnapshot { count: u32, users: usize },
}

/// Longest piece of client input quoted back in an error sentence.
const QUOTE_LIMIT: usize = 40;

/// Users served when the query names no `count` (fewer if `--max-count` is lower).
pub const DEFAULT_COUNT: u32 = 100;

/// The `count` of a raw query string (`None`: the URL had no `?`), or
/// [`DEFAULT_COUNT`] (at most `max`) when it names none.
///
/// # Errors
/// A [`QueryError`] naming the problem and the limit.
pub fn parse_count(raw_query: Option<&str>, max: u32) -> Result<u32, QueryError> {
    Ok(given_count(raw_query, max)?.unwrap_or(DEFAULT_COUNT.min(max)))
}

/// The `count` the query names, if it names one.
///
/// # Errors
/// A [`QueryError`] naming the problem and the limit.
pub fn given_count(raw_query: Option<&str>, max: u32) -> Result<Option<u32>, QueryError> {
    let mut counts: Vec<String> = Vec::with_capacity(1);
    let mut unknown: Vec<String> = Vec::new();
    for pair in raw_query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let key = percent_decode(key)?;
        if key == "count" {
            counts.push(percent_decode(value)?);
        } else if !unknown.contains(&key) {
            unknown.push(key);
        }
    }
    if !unknown.is_empty() {
        let mut names = String::new();
        for (i, name) in unknown.iter().enumerate() {
            let sep = if i == 0 { "" } else { ", " };
            let _ = write!(names, "{sep}'{}'", quote(name));
        }
        return Err(QueryError::Unknown { names, count: unknown.len() });
    }
    match counts.as_slice() {
        [] => Ok(None),
        [value] => parse_value(value, max).map(Some),
        more => Err(QueryError::Repeated { times: more.len() }),
    }
}

fn parse_value(value: &str, max: u32) -> Result<u32, QueryError> {
    if value.is_empty() {
        return Err(QueryError::Empty { max });
    }
    if value.starts_with(['+', '-']) {
        return Err(QueryError::Signed { raw: quote(value), max });
    }
    if !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(QueryError::NotANumber { raw: quote(value), max });
    }
    // All digits: the only way to fail now is being too large (even for u64).
    match value.parse::<u64>() {
        Ok(n) if n <= u64::from(max) => u32::try_from(n).map_err(|_| QueryError::TooLarge { raw: quote(value), max }),
        _ => Err(QueryError::TooLarge { raw: quote(value), max }),
    }
}

/// Shortens client input quoted in a message to [`QUOTE_LIMIT`] characters.
fn quote(raw: &str) -> String {
    match raw.char_indices().nth(QUOTE_LIMIT) {
        Some((cut, _)) => format!("{}...", &raw[..cut]),
        None => raw.to_owned(),
    }
}

/// Decodes `%XX` escapes. `+` is kept as it is (a sign, which `count` refuses).
/// Every `key=value` pair of a raw query string, percent-decoded, in order (a bare
/// `key` has an empty value). `GET /api/bridge/{handler}` passes them on as the
/// handler's parameters, to be checked by the wire's rules.
///
/// # Errors
/// [`QueryError::BadEncoding`] if a key or value is not percent-encoded UTF-8.
pub fn query_pairs(raw_query: Option<&str>) -> Result<Vec<(String, String)>, QueryError> {
    raw_query
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            Ok((percent_decode(key)?, percent_decode(value)?))
        })
        .collect()
}

fn percent_decode(raw: &str) -> Result<String, QueryError> {
    if !raw.contains('%') {
        return Ok(raw.to_owned());
    }
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3).ok_or(QueryError::BadEncoding)?;
            let hex = std::str::from_utf8(hex).map_err(|_| QueryError::BadEncoding)?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| QueryError::BadEncoding)?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| QueryError::BadEncoding)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_are_decoded_in_order() {
        let pairs = query_pairs(Some("limit=10&name=Zo%C3%AB&flag&&x=%00")).unwrap();
        let expected = [("limit", "10"), ("name", "Zoë"), ("flag", ""), ("x", "\0")];
        assert_eq!(pairs, expected.map(|(k, v)| (k.to_owned(), v.to_owned())));
        assert_eq!(query_pairs(None).unwrap(), []);
        assert_eq!(query_pairs(Some("a=%ff")).unwrap_err(), QueryError::BadEncoding);
    }

    const MAX: u32 = 100_000;

    fn count(q: &str) -> Result<u32, QueryError> {
        parse_count(Some(q), MAX)
    }

    #[test]
    fn accepts_plain_counts() {
        assert_eq!(count("count=0"), Ok(0));
        assert_eq!(count("count=2"), Ok(2));
        assert_eq!(count("count=100000"), Ok(100_000));
        assert_eq!(count("count=007"), Ok(7));
        assert_eq!(count("&count=5&"), Ok(5));
        assert_eq!(count("co%75nt=%31%30"), Ok(10));
    }

    #[test]
    fn no_count_is_the_default_and_two_are_refused() {
        assert_eq!(parse_count(None, MAX), Ok(DEFAULT_COUNT));
        assert_eq!(count(""), Ok(DEFAULT_COUNT));
        assert_eq!(count("&&"), Ok(DEFAULT_COUNT));
        assert_eq!(parse_count(None, 7), Ok(7), "never over --max-count");
        assert_eq!(given_count(None, MAX), Ok(None));
        assert_eq!(given_count(Some("count=0"), MAX), Ok(Some(0)));
        assert_eq!(count("count=1&count=1"), Err(QueryError::Repeated { times: 2 }));
        assert!(count("foo=1").is_err(), "another parameter is still refused");
    }

    #[test]
    fn refuses_unknown_parameters_naming_them() {
        let err = count("count=1&foo=2&bar&foo=3").unwrap_err();
        assert_eq!(err, QueryError::Unknown { names: "'foo', 'bar'".into(), count: 2 });
        assert_eq!(err.to_string(), "unknown query parameters 'foo', 'bar': only 'count' is accepted");
        assert!(count("Count=1").unwrap_err().to_string().contains("parameter 'Count'"));
    }

    #[test]
    fn refuses_bad_values_naming_the_problem_and_limit() {
        assert_eq!(count("count="), Err(QueryError::Empty { max: MAX }));
        assert_eq!(count("count"), Err(QueryError::Empty { max: MAX }));
        assert!(matches!(count("count=-1"), Err(QueryError::Signed { .. })));
        assert!(matches!(count("count=+1"), Err(QueryError::Signed { .. })));
        assert!(matches!(count("count=%2B1"), Err(QueryError::Signed { .. })));
        assert!(matches!(count("count=abc"), Err(QueryError::NotANumber { .. })));
        assert!(matches!(count("count=1.5"), Err(QueryError::NotANumber { .. })));
        assert!(matches!(count("count=%201"), Err(QueryError::NotANumber { .. })));
        assert!(matches!(count("count=0x10"), Err(QueryError::NotANumber { .. })));
        let too_large = count("count=100001").unwrap_err().to_string();
        assert!(too_large.contains("100000") && too_large.contains("--max-count"), "{too_large}");
        assert!(matches!(count("count=99999999999999999999999"), Err(QueryError::TooLarge { .. })));
        assert!(count("count=abc").unwrap_err().to_string().contains("from 0 to 100000"));
    }

    #[test]
    fn refuses_broken_encoding() {
        assert_eq!(count("count=%zz"), Err(QueryError::BadEncoding));
        assert_eq!(count("count=%4"), Err(QueryError::BadEncoding));
        assert_eq!(count("count=%ff"), Err(QueryError::BadEncoding));
    }

    #[test]
    fn quotes_are_shortened() {
        let long = "x".repeat(100);
        let msg = count(&format!("count={long}")).unwrap_err().to_string();
        assert!(msg.contains(&format!("'{}...'", "x".repeat(40))), "{msg}");
    }
}
