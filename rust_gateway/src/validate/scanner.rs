//! A single-pass checker for the users payload: the JSON grammar and the `User` schema
//! at once, with no tree, no allocation (but for a key written with escapes) and no
//! per-field dispatch through serde.
//!
//! It gives the verdicts `serde_json::from_str::<Vec<User>>` gives, which the tests
//! check side by side on random and mutated payloads (`tests` below), with one
//! deliberate difference: serde's derive also accepts a user written as an array of
//! its ten values in field order; this checker wants an object, as the producer
//! writes it. The rules it follows, as serde_json applies them here:
//! - the ten known fields are required, once each; unknown fields may hold any JSON
//!   value (checked for grammar, with no depth limit, as serde_json's `IgnoredAny`);
//! - `id` and `age` are plain non-negative integers (no sign, fraction, exponent or
//!   leading zero) that fit in u64 and u32;
//! - strings hold no raw control character and only valid escapes; in keys and in the
//!   known string fields a `\u` escape must not be a lone surrogate (serde_json checks
//!   that for strings it decodes, not for strings it skips);
//! - the body is valid UTF-8. A byte of 0x80 or more is never a JSON token, so only
//!   strings can hold one, and each multi-byte character is checked where a string
//!   holds it: no separate pass over the body.
//!
//! Strings are scanned eight bytes at a time for the bytes that end the fast path (a
//! quote, a backslash, a control character, a non-ASCII byte); everything else is
//! skipped. Keys are first compared with the one the producer writes next, quotes and
//! colon included (`"first_name":`), so a payload in the producer's own field order
//! costs one comparison per key; any other key takes the general path.
//!
//! [`scan_json`] is the same machinery without the schema: exactly one JSON value
//! (RFC 8259) and nothing after it but whitespace, with the verdicts of
//! `serde_json::from_str::<IgnoredAny>` on the body read as UTF-8 (its tests compare
//! the two on generated and hostile bodies). As there, a `\u` escape may be a lone
//! surrogate (the grammar allows any four hex digits) and nesting has no depth limit;
//! containers are tracked on a heap stack of one byte per level, never by recursion.

use std::fmt;

/// Why a body is not a JSON array of users, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanError {
    pub what: String,
    /// Byte offset in the body where the scan stopped.
    pub at: usize,
}

impl fmt::Display for ScanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at byte {}", self.what, self.at)
    }
}

impl std::error::Error for ScanError {}

/// The fields of a user, in the order serde's derive reports a missing one.
const FIELDS: [&str; 10] =
    ["id", "first_name", "last_name", "email", "age", "address", "phone", "company", "job_title", "bio"];
/// Each field's key as the producer writes it, quotes and colon included.
const KEYS: [&[u8]; 10] = [
    b"\"id\":",
    b"\"first_name\":",
    b"\"last_name\":",
    b"\"email\":",
    b"\"age\":",
    b"\"address\":",
    b"\"phone\":",
    b"\"company\":",
    b"\"job_title\":",
    b"\"bio\":",
];
/// [`KEYS`] as 16-byte little-endian words, and masks of their lengths, for matching a
/// key with one compare instead of a `memcmp` call (a tenth of the gateway's time).
const KEY_WORDS: [(u128, u128); 10] = key_words();

const fn key_words() -> [(u128, u128); 10] {
    let mut out = [(0, 0); 10];
    let mut i = 0;
    while i < KEYS.len() {
        let key = KEYS[i];
        assert!(key.len() < 16, "a key and its colon fit one word");
        let mut word = 0u128;
        let mut j = 0;
        while j < key.len() {
            word |= (key[j] as u128) << (8 * j);
            j += 1;
        }
        out[i] = (word, (1u128 << (8 * key.len())) - 1);
        i += 1;
    }
    out
}

/// Whether `rest` starts with the expected key of field `index` (quotes and colon).
#[inline]
fn starts_with_key(rest: &[u8], index: usize) -> bool {
    match (rest.first_chunk::<16>(), KEY_WORDS.get(index)) {
        (Some(chunk), Some(&(word, mask))) => u128::from_le_bytes(*chunk) & mask == word,
        (None, Some(_)) => KEYS.get(index).is_some_and(|key| rest.starts_with(key)),
        (_, None) => false,
    }
}

const ID: usize = 0;
const AGE: usize = 4;
const ALL_FIELDS: u16 = (1 << FIELDS.len()) - 1;

/// Scans `body` as a JSON array of users, calling `on_user(id, end)` for each user in
/// order, with the offset just past its closing brace. Returns how many users it saw.
///
/// # Errors
/// The first place where `body` stops being a JSON array of users.
pub fn scan_users(body: &[u8], mut on_user: impl FnMut(u64, usize)) -> Result<usize, ScanError> {
    let mut s = Scanner { b: body, pos: 0 };
    s.ws();
    s.expect(b'[', "expected `[` (a JSON array)")?;
    s.ws();
    let mut users = 0;
    if s.peek() == Some(b']') {
        s.pos += 1;
    } else {
        loop {
            let id = s.user(users + 1)?;
            users += 1;
            on_user(id, s.pos);
            if s.closes(b']', "expected `,` or `]` after a user")? {
                break;
            }
        }
    }
    s.ws();
    if s.pos != body.len() {
        return Err(s.error("trailing characters"));
    }
    Ok(users)
}

/// Scans `text` as one user (surrounding whitespace allowed) and returns its id.
///
/// # Errors
/// The first place where `text` stops being one user.
pub fn scan_user(text: &[u8]) -> Result<u64, ScanError> {
    let mut s = Scanner { b: text, pos: 0 };
    s.ws();
    let id = s.user(1)?;
    s.ws();
    if s.pos != text.len() {
        return Err(s.error("trailing characters"));
    }
    Ok(id)
}

/// Scans `body` as exactly one JSON value of any shape, surrounded by nothing but
/// whitespace.
///
/// # Errors
/// The first place where `body` stops being one JSON value.
pub fn scan_json(body: &[u8]) -> Result<(), ScanError> {
    let mut s = Scanner { b: body, pos: 0 };
    s.skip_value()?;
    s.ws();
    if s.pos != body.len() {
        return Err(s.error("trailing characters"));
    }
    Ok(())
}

/// The eight-byte lanes of `w` that hold a quote, a backslash, a byte below 0x20 or a
/// byte of 0x80 or more: the lowest flagged lane is exact (higher ones may be borrow
/// artefacts, never read).
#[inline]
fn special_lanes(w: u64) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let quote = w ^ (ONES * u64::from(b'"'));
    let backslash = w ^ (ONES * u64::from(b'\\'));
    let zero_quote = quote.wrapping_sub(ONES) & !quote;
    let zero_backslash = backslash.wrapping_sub(ONES) & !backslash;
    let control = w.wrapping_sub(ONES * 0x20) & !w;
    (zero_quote | zero_backslash | control | w) & HIGH
}

/// How strictly a string's `\u` escapes are checked.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Surrogates {
    /// Decoded strings (keys, known fields): surrogates must pair up.
    Paired,
    /// Skipped strings: any four hex digits.
    Any,
}

/// One remembered key: its bytes (quotes and colon included) as a little-endian word,
/// the mask of its length, and that length (0: nothing remembered).
#[derive(Clone, Copy, Default)]
struct MemoKey {
    word: u128,
    mask: u128,
    len: usize,
}

/// The keys of the last object seen at each of the first few depths, by member number
/// (keys of at most 12 bytes): objects of one shape, as in an array of records, then
/// pass each key with one compare instead of a string scan.
#[derive(Default)]
struct KeyMemo {
    slots: Vec<MemoKey>,
}

impl KeyMemo {
    const DEPTHS: usize = 16;
    const MEMBERS: usize = 32;

    /// The slot index of member `member` of an object at `depth` (1: the outermost), if
    /// kept. The table grows to the slots used, so a small body pays for a small one
    /// (the whole table is tens of KB, a large allocation for a two-record reply).
    #[inline]
    fn index(&mut self, depth: usize, member: usize) -> Option<usize> {
        if depth == 0 || depth > Self::DEPTHS || member >= Self::MEMBERS {
            return None;
        }
        let index = (depth - 1) * Self::MEMBERS + member;
        if index >= self.slots.len() {
            self.grow(index);
        }
        Some(index)
    }

    #[cold]
    #[inline(never)]
    fn grow(&mut self, index: usize) {
        self.slots.resize(index + 1, MemoKey::default());
    }
}

/// An open container of [`Scanner::skip_value`]: its closing byte, and the number of
/// the member being read (objects only).
#[derive(Clone, Copy)]
struct Open {
    close: u8,
    member: usize,
}

struct Scanner<'a> {
    b: &'a [u8],
    pos: usize,
}

impl Scanner<'_> {
    fn error(&self, what: impl Into<String>) -> ScanError {
        ScanError { what: what.into(), at: self.pos }
    }

    #[inline]
    fn peek(&self) -> Option<u8> {
        self.b.get(self.pos).copied()
    }

    #[inline]
    fn ws(&mut self) {
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.peek() {
            self.pos += 1;
        }
    }

    #[inline]
    fn expect(&mut self, byte: u8, what: &str) -> Result<(), ScanError> {
        if self.peek() == Some(byte) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.error(what))
        }
    }

    /// After an element: `true` if `close` ends its container, `false` if a comma says
    /// another element follows (whitespace after either is skipped).
    fn closes(&mut self, close: u8, what: &str) -> Result<bool, ScanError> {
        self.ws();
        match self.peek() {
            Some(b',') => {
                self.pos += 1;
                self.ws();
                Ok(false)
            }
            Some(b) if b == close => {
                self.pos += 1;
                Ok(true)
            }
            _ => Err(self.error(what)),
        }
    }

    /// One user object; `position` (1-based) only names it in errors.
    fn user(&mut self, position: usize) -> Result<u64, ScanError> {
        let in_user = |e: ScanError| ScanError { what: format!("user number {position}: {}", e.what), at: e.at };
        self.expect(b'{', "expected `{` (a user object)").map_err(in_user)?;
        let mut seen: u16 = 0;
        let mut id = 0;
        self.ws();
        if self.peek() == Some(b'}') {
            self.pos += 1;
        } else {
            let mut fields = 0;
            loop {
                let rest = self.b.get(self.pos..).unwrap_or_default();
                let field = if starts_with_key(rest, fields) {
                    self.pos += KEYS[fields].len();
                    Some(fields)
                } else {
                    let field = self.key().map_err(in_user)?;
                    self.ws();
                    self.expect(b':', "expected `:` after a key").map_err(in_user)?;
                    field
                };
                fields += 1;
                self.ws();
                match field {
                    Some(index) => {
                        if seen & (1 << index) != 0 {
                            return Err(in_user(self.error(format!("duplicate field `{}`", FIELDS[index]))));
                        }
                        seen |= 1 << index;
                        match index {
                            ID => id = self.unsigned(u64::MAX, "id").map_err(in_user)?,
                            AGE => {
                                self.unsigned(u64::from(u32::MAX), "age").map_err(in_user)?;
                            }
                            _ => {
                                if self.peek() != Some(b'"') {
                                    let what = format!("field `{}` must be a string", FIELDS[index]);
                                    return Err(in_user(self.error(what)));
                                }
                                self.pos += 1;
                                self.string(Surrogates::Paired, None).map_err(in_user)?;
                            }
                        }
                    }
                    None => self.skip_value().map_err(in_user)?,
                }
                if self.closes(b'}', "expected `,` or `}` after a field").map_err(in_user)? {
                    break;
                }
            }
        }
        if seen != ALL_FIELDS {
            let missing = (0..FIELDS.len()).find(|i| seen & (1 << i) == 0).unwrap_or(0);
            return Err(in_user(self.error(format!("missing field `{}`", FIELDS[missing]))));
        }
        Ok(id)
    }

    /// A key: the index of the known field it names, if any.
    fn key(&mut self) -> Result<Option<usize>, ScanError> {
        if self.peek() != Some(b'"') {
            return Err(self.error("expected a key (a string)"));
        }
        self.pos += 1;
        let start = self.pos;
        let mut decoded = Vec::new();
        let escaped = self.string(Surrogates::Paired, Some(&mut decoded))?;
        let name = if escaped { &decoded[..] } else { &self.b[start..self.pos - 1] };
        Ok(FIELDS.iter().position(|f| f.as_bytes() == name))
    }

    /// A string whose opening quote is consumed; leaves `pos` past the closing one.
    /// Returns whether it held escapes; with `decoded`, then also writes its value there.
    fn string(&mut self, surrogates: Surrogates, mut decoded: Option<&mut Vec<u8>>) -> Result<bool, ScanError> {
        let mut run_start = self.pos;
        let mut escaped = false;
        loop {
            while let Some(chunk) = self.b.get(self.pos..).and_then(<[u8]>::first_chunk::<8>) {
                let lanes = special_lanes(u64::from_le_bytes(*chunk));
                if lanes != 0 {
                    self.pos += (lanes.trailing_zeros() / 8) as usize;
                    break;
                }
                self.pos += 8;
            }
            match self.peek() {
                Some(b'"') => {
                    // Without escapes the caller reads the raw bytes: nothing to copy.
                    if let Some(out) = decoded.as_deref_mut().filter(|_| escaped) {
                        out.extend_from_slice(&self.b[run_start..self.pos]);
                    }
                    self.pos += 1;
                    return Ok(escaped);
                }
                Some(b'\\') => {
                    if let Some(out) = decoded.as_deref_mut() {
                        out.extend_from_slice(&self.b[run_start..self.pos]);
                    }
                    self.pos += 1;
                    self.escape(surrogates, decoded.as_deref_mut())?;
                    escaped = true;
                    run_start = self.pos;
                }
                Some(0..=0x1f) => return Err(self.error("control character (\\u0000-\\u001F) found in a string")),
                Some(0x80..) => self.utf8_char()?,
                Some(_) => self.pos += 1,
                None => return Err(self.error("EOF while parsing a string")),
            }
        }
    }

    /// An escape whose backslash is consumed.
    fn escape(&mut self, surrogates: Surrogates, decoded: Option<&mut Vec<u8>>) -> Result<(), ScanError> {
        let simple = match self.peek() {
            Some(b'"') => b'"',
            Some(b'\\') => b'\\',
            Some(b'/') => b'/',
            Some(b'b') => 0x08,
            Some(b'f') => 0x0c,
            Some(b'n') => b'\n',
            Some(b'r') => b'\r',
            Some(b't') => b'\t',
            Some(b'u') => {
                self.pos += 1;
                let unit = self.hex4()?;
                let code = if surrogates == Surrogates::Any {
                    // Skipped strings are never decoded, so any unit will do.
                    0xFFFD
                } else if (0xDC00..=0xDFFF).contains(&unit) {
                    return Err(self.error("lone trailing surrogate in a \\u escape"));
                } else if (0xD800..=0xDBFF).contains(&unit) {
                    if self.b.get(self.pos..self.pos + 2) != Some(b"\\u") {
                        return Err(self.error("unexpected end of a surrogate pair"));
                    }
                    self.pos += 2;
                    let low = self.hex4()?;
                    if !(0xDC00..=0xDFFF).contains(&low) {
                        return Err(self.error("lone leading surrogate in a \\u escape"));
                    }
                    0x1_0000 + ((unit - 0xD800) << 10) + (low - 0xDC00)
                } else {
                    unit
                };
                if let Some(out) = decoded {
                    let c = char::from_u32(code).unwrap_or(char::REPLACEMENT_CHARACTER);
                    out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
                }
                return Ok(());
            }
            _ => return Err(self.error("invalid escape")),
        };
        self.pos += 1;
        if let Some(out) = decoded {
            out.push(simple);
        }
        Ok(())
    }

    /// One multi-byte UTF-8 character starting at `pos` (its lead byte is 0x80 or more):
    /// the ranges of RFC 3629, so no overlong form, surrogate or code point past U+10FFFF.
    fn utf8_char(&mut self) -> Result<(), ScanError> {
        let at = |i: usize| self.b.get(self.pos + i).copied().unwrap_or(0);
        let tail = |i: usize| (0x80..=0xBF).contains(&at(i));
        let len = match (at(0), at(1)) {
            (0xC2..=0xDF, 0x80..=0xBF) => 2,
            (0xE0, 0xA0..=0xBF) | (0xE1..=0xEC | 0xEE..=0xEF, 0x80..=0xBF) | (0xED, 0x80..=0x9F) if tail(2) => 3,
            (0xF0, 0x90..=0xBF) | (0xF1..=0xF3, 0x80..=0xBF) | (0xF4, 0x80..=0x8F) if tail(2) && tail(3) => 4,
            _ => return Err(self.error("invalid UTF-8")),
        };
        self.pos += len;
        Ok(())
    }

    fn hex4(&mut self) -> Result<u32, ScanError> {
        let mut unit = 0;
        for _ in 0..4 {
            let digit = self.peek().and_then(|b| char::from(b).to_digit(16));
            match digit {
                Some(d) => unit = unit * 16 + d,
                None => return Err(self.error("invalid \\u escape (four hex digits expected)")),
            }
            self.pos += 1;
        }
        Ok(unit)
    }

    /// A plain non-negative integer up to `max`.
    fn unsigned(&mut self, max: u64, field: &str) -> Result<u64, ScanError> {
        let start = self.pos;
        let mut value: u64 = 0;
        while let Some(d @ b'0'..=b'9') = self.peek() {
            if self.pos > start && value == 0 {
                return Err(self.error("invalid number (leading zero)"));
            }
            value = value
                .checked_mul(10)
                .and_then(|v| v.checked_add(u64::from(d - b'0')))
                .filter(|v| *v <= max)
                .ok_or_else(|| self.error(format!("field `{field}` is out of range")))?;
            self.pos += 1;
        }
        if self.pos == start || matches!(self.peek(), Some(b'.' | b'e' | b'E')) {
            return Err(self.error(format!("field `{field}` must be a non-negative integer")));
        }
        Ok(value)
    }

    /// Any JSON value, checked for grammar only. Iterative, so deep nesting costs a
    /// stack entry per level, not a call frame.
    fn skip_value(&mut self) -> Result<(), ScanError> {
        let mut open: Vec<Open> = Vec::new();
        let mut memo = KeyMemo::default();
        loop {
            // A value (or the end of an empty container).
            self.ws();
            match self.peek() {
                Some(b'{') => {
                    self.pos += 1;
                    self.ws();
                    if self.peek() == Some(b'}') {
                        self.pos += 1;
                    } else {
                        open.push(Open { close: b'}', member: 0 });
                        let slot = memo.index(open.len(), 0);
                        self.member_key(&mut memo, slot)?;
                        continue;
                    }
                }
                Some(b'[') => {
                    self.pos += 1;
                    self.ws();
                    if self.peek() == Some(b']') {
                        self.pos += 1;
                    } else {
                        open.push(Open { close: b']', member: 0 });
                        continue;
                    }
                }
                Some(b'"') => {
                    self.pos += 1;
                    self.string(Surrogates::Any, None)?;
                }
                Some(b'-' | b'0'..=b'9') => self.number()?,
                Some(b't') => self.literal(b"true")?,
                Some(b'f') => self.literal(b"false")?,
                Some(b'n') => self.literal(b"null")?,
                Some(_) => return Err(self.error("expected a value")),
                None => return Err(self.error("EOF while parsing a value")),
            }
            // After a value: close containers, or move to the next element.
            loop {
                let depth = open.len();
                let Some(top) = open.last_mut() else { return Ok(()) };
                self.ws();
                match self.peek() {
                    Some(b',') => {
                        self.pos += 1;
                        if top.close == b'}' {
                            top.member += 1;
                            let slot = memo.index(depth, top.member);
                            self.ws();
                            self.member_key(&mut memo, slot)?;
                        }
                        break;
                    }
                    Some(b) if b == top.close => {
                        self.pos += 1;
                        open.pop();
                    }
                    _ => return Err(self.error("expected `,` or the end of a container")),
                }
            }
        }
    }

    /// `"key":` inside a skipped object. With a `slot` of the `memo` (this member's place
    /// in the previous object at this depth), a key written as that one was is passed
    /// with one compare; a key checked in full is remembered there for the next object.
    #[inline]
    fn member_key(&mut self, memo: &mut KeyMemo, slot: Option<usize>) -> Result<(), ScanError> {
        let chunk = self.b.get(self.pos..).and_then(<[u8]>::first_chunk::<16>).map(|c| u128::from_le_bytes(*c));
        let known = slot.and_then(|i| memo.slots.get_mut(i));
        if let (Some(chunk), Some(key)) = (chunk, known.as_deref()) {
            // The same bytes as a key already checked (the quotes and the colon
            // included, and a string cannot hold an unescaped quote): the same verdict.
            if key.len != 0 && chunk & key.mask == key.word {
                self.pos += key.len;
                return Ok(());
            }
        }
        self.new_key(chunk, known)
    }

    /// [`Self::member_key`] for a key unlike the remembered one: checked in full, and
    /// remembered in `slot` when it fits a word.
    #[inline(never)]
    fn new_key(&mut self, chunk: Option<u128>, slot: Option<&mut MemoKey>) -> Result<(), ScanError> {
        if self.peek() != Some(b'"') {
            return Err(self.error("expected a key (a string)"));
        }
        let start = self.pos;
        self.pos += 1;
        self.string(Surrogates::Any, None)?;
        if self.peek() == Some(b':') {
            self.pos += 1;
            let len = self.pos - start;
            if let (Some(chunk), Some(slot)) = (chunk, slot) {
                if len < 16 {
                    let mask = (1u128 << (8 * len)) - 1;
                    *slot = MemoKey { word: chunk & mask, mask, len };
                }
            }
            return Ok(());
        }
        self.ws();
        self.expect(b':', "expected `:` after a key")
    }

    fn literal(&mut self, word: &[u8]) -> Result<(), ScanError> {
        if self.b.get(self.pos..self.pos + word.len()) == Some(word) {
            self.pos += word.len();
            Ok(())
        } else {
            Err(self.error("expected a value"))
        }
    }

    /// `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`
    fn number(&mut self) -> Result<(), ScanError> {
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        match self.peek() {
            Some(b'0') => {
                self.pos += 1;
                if matches!(self.peek(), Some(b'0'..=b'9')) {
                    return Err(self.error("invalid number (leading zero)"));
                }
            }
            Some(b'1'..=b'9') => self.digits(),
            _ => return Err(self.error("invalid number")),
        }
        if self.peek() == Some(b'.') {
            self.pos += 1;
            if !matches!(self.peek(), Some(b'0'..=b'9')) {
                return Err(self.error("invalid number (a digit must follow `.`)"));
            }
            self.digits();
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.pos += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.pos += 1;
            }
            if !matches!(self.peek(), Some(b'0'..=b'9')) {
                return Err(self.error("invalid number (a digit must follow the exponent)"));
            }
            self.digits();
        }
        Ok(())
    }

    fn digits(&mut self) {
        while let Some(b'0'..=b'9') = self.peek() {
            self.pos += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::scan_json;

    /// What serde_json says of `body` as one JSON value of any shape, read as text.
    fn serde_accepts(body: &[u8]) -> bool {
        std::str::from_utf8(body).is_ok_and(|text| serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok())
    }

    #[track_caller]
    fn same_verdict(body: &[u8]) {
        let ours = scan_json(body);
        assert_eq!(ours.is_ok(), serde_accepts(body), "scanner {ours:?} on {:?}", String::from_utf8_lossy(body));
    }

    use super::super::test_rng::Rng;

    const STRING_PIECES: [&str; 18] = [
        "a",
        "Zoë",
        "Königstraße",
        "\\\"",
        "\\\\",
        "\\/",
        "\\b\\f\\n\\r\\t",
        "\\u00e9",
        "\\ud83d\\ude00",
        "\\ud800",
        "\\uDC00x",
        "😀",
        " ",
        "long text that runs past a few eight-byte lanes",
        "\u{7f}",
        "日本",
        "\u{10ffff}",
        "\u{fffd}",
    ];
    const NUMBERS: [&str; 14] = [
        "0",
        "-0",
        "1",
        "-12",
        "0.5",
        "-0.0e0",
        "1E+2",
        "1e-7",
        "3.25E10",
        "12345678901234567890123456789",
        "1e999999",
        "-1.5e-999999",
        "9007199254740993",
        "0e00",
    ];
    const SPACES: [&str; 6] = ["", "", " ", "\n", "\r\n\t", "  "];

    fn string(rng: &mut Rng, out: &mut String) {
        out.push('"');
        for _ in 0..rng.below(4) {
            out.push_str(rng.piece(&STRING_PIECES));
        }
        out.push('"');
    }

    /// A random JSON value, with random whitespace between its tokens.
    fn value(rng: &mut Rng, depth: usize, out: &mut String) {
        let kind = if depth == 0 { rng.below(4) } else { rng.below(6) };
        match kind {
            0 => string(rng, out),
            1 => out.push_str(rng.piece(&NUMBERS)),
            2 => out.push_str(rng.piece(&["true", "false", "null"])),
            3 => out.push_str(rng.piece(&["[]", "{}", "[ ]", "{\n}"])),
            4 => {
                out.push('[');
                for i in 0..1 + rng.below(4) {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(rng.piece(&SPACES));
                    value(rng, depth - 1, out);
                    out.push_str(rng.piece(&SPACES));
                }
                out.push(']');
            }
            _ => {
                out.push('{');
                for i in 0..1 + rng.below(4) {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(rng.piece(&SPACES));
                    string(rng, out);
                    out.push_str(rng.piece(&SPACES));
                    out.push(':');
                    out.push_str(rng.piece(&SPACES));
                    value(rng, depth - 1, out);
                    out.push_str(rng.piece(&SPACES));
                }
                out.push('}');
            }
        }
    }

    fn document(rng: &mut Rng) -> Vec<u8> {
        let mut out = String::from(rng.piece(&SPACES));
        let depth = rng.below(5);
        value(rng, depth, &mut out);
        out.push_str(rng.piece(&SPACES));
        out.into_bytes()
    }

    #[test]
    fn accepts_generated_documents_as_serde_does() {
        let mut rng = Rng(0x0DD_BA11_5EED_0003);
        for _ in 0..5000 {
            let body = document(&mut rng);
            assert!(scan_json(&body).is_ok(), "{}", String::from_utf8_lossy(&body));
            same_verdict(&body);
        }
    }

    #[test]
    fn agrees_with_serde_on_mutated_documents() {
        // Structural bytes, escape letters, digits, whitespace and non-whitespace
        // controls, a lone continuation byte, the lead bytes of bad and good sequences.
        const BYTES: &[u8] =
            b"\"\\{}[],:01-+.eEu/D8 \n\t\r\x0b\x0c\x00\x01antrlsfx\x7f\x80\xbf\xc0\xc3\xa9\xed\xa0\xf4\x90\xf5\xff";
        let mut rng = Rng(0xBAD_5EED_0000_0004);
        let mut accepted = 0;
        for _ in 0..60_000 {
            let mut body = document(&mut rng);
            for _ in 0..1 + rng.below(3) {
                let at = rng.below(body.len() + 1);
                match rng.below(4) {
                    0 if at < body.len() => body[at] = *rng.pick(BYTES),
                    1 => body.insert(at, *rng.pick(BYTES)),
                    2 if at < body.len() => {
                        body.remove(at);
                    }
                    _ => {
                        let end = (at + rng.below(12)).min(body.len());
                        let copy = body[at..end].to_vec();
                        let to = rng.below(body.len() + 1);
                        body.splice(to..to, copy);
                    }
                }
            }
            same_verdict(&body);
            accepted += usize::from(scan_json(&body).is_ok());
        }
        // Both verdicts are well represented, or the comparison proves little.
        assert!((5_000..55_000).contains(&accepted), "{accepted} of 60000 mutated documents accepted");
    }

    #[test]
    fn agrees_with_serde_on_hostile_documents() {
        let cases: &[&[u8]] = &[
            // Nothing, or not one value.
            b"",
            b" ",
            b"\n\t\r ",
            b"\x0b1",
            b"\x0c1",
            b"\xef\xbb\xbf1",
            b"1 2",
            b"{} x",
            b"[]]",
            b"[] []",
            b"\"a\"\x00",
            b"null\x00",
            b"nullx",
            b"1,",
            b"1 ,",
            // Literals.
            b"true",
            b"tru",
            b"nul",
            b"True",
            b"NaN",
            b"Infinity",
            b"-Infinity",
            b"undefined",
            // Numbers.
            b"-",
            b"-0",
            b"-01",
            b"01",
            b"00",
            b"0.",
            b"1.",
            b".5",
            b"+1",
            b"1e",
            b"1e+",
            b"1E-5",
            b"1e5.5",
            b"1.5e",
            b"0x10",
            b"1_000",
            b"1e999999",
            b"-0.0000000000000000000000001e-400",
            b"123456789012345678901234567890123456789",
            b"[1.0,-0,0e0,0E+0]",
            b"[-]",
            b"[1.e1]",
            b"[01]",
            // Strings and escapes.
            br#""\x""#,
            br#""\'""#,
            br#""\u12""#,
            br#""\u12G4""#,
            br#""\uZZZZ""#,
            br#""\U0041""#,
            br#""\u0041""#,
            br#""\ud800""#,
            br#""\udc00""#,
            br#""\ud800\ud800""#,
            br#""\udbff\udfff""#,
            br#"{"\ud800":1}"#,
            br#""\"#,
            br#""\""#,
            b"\"a",
            b"'a'",
            b"\"\t\"",
            b"\"\x1f\"",
            b"\"\x7f\"",
            // UTF-8, in a string and outside one.
            b"\"\xff\"",
            b"\"\xc3\"",
            b"\"\xc3\xa9\"",
            b"\"\xc0\x80\"",
            b"\"\xc1\xbf\"",
            b"\"\xe0\x80\xaf\"",
            b"\"\xed\xa0\x80\"",
            b"\"\xed\x9f\xbf\"",
            b"\"\xef\xbf\xbf\"",
            b"\"\xf0\x8f\xbf\xbf\"",
            b"\"\xf4\x8f\xbf\xbf\"",
            b"\"\xf4\x90\x80\x80\"",
            b"\"\xf5\x80\x80\x80\"",
            b"\"\xe6\x97\xa5\xe6\x9c\"",
            b"\xc3\xa9",
            b"[1]\xff",
            // Containers.
            b"[",
            b"]",
            b"[,]",
            b"[,1]",
            b"[1,]",
            b"[1 2]",
            b"[1,,2]",
            b"{",
            b"{\"a\"}",
            b"{\"a\":}",
            b"{\"a\":1,}",
            b"{\"a\" 1}",
            b"{\"a\":1 \"b\":2}",
            b"{1:2}",
            b"{a:1}",
            b"{\"a\":1,\"a\":2}",
            b"{\"a\":[}]}",
            b"[{]}",
            b"[[[]]",
            b"[[]]]",
        ];
        for case in cases {
            same_verdict(case);
        }
    }

    #[test]
    fn deep_nesting_needs_no_recursion() {
        // Far deeper than a test thread's stack would allow a recursive descent.
        const DEPTH: usize = 1_000_000;
        let arrays = [vec![b'['; DEPTH], vec![b']'; DEPTH]].concat();
        assert!(scan_json(&arrays).is_ok());
        same_verdict(&arrays);
        same_verdict(&arrays[..arrays.len() - 1]);
        same_verdict(&[&arrays[..], b"]"].concat());
        let objects = [b"{\"k\":".repeat(DEPTH), b"0".to_vec(), vec![b'}'; DEPTH]].concat();
        assert!(scan_json(&objects).is_ok());
        same_verdict(&objects);
        let mixed = [b"[{\"k\":".repeat(DEPTH / 2), b"[]".to_vec(), b"}]".repeat(DEPTH / 2)].concat();
        same_verdict(&mixed);
        let crossed = [b"[{\"k\":".repeat(8), b"[]".to_vec(), b"]}".repeat(8)].concat();
        same_verdict(&crossed);
    }
}
