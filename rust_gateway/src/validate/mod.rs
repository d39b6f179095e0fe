//! Payload validation, shared by every path so that any difference between them
//! is the transport and nothing else.
//!
//! `full` mode checks the whole body in one pass ([`scanner`]): the JSON grammar and
//! the user schema (the ten known fields with their types; extra fields allowed), with
//! exactly `count` users whose ids are 1..=count in order. It gives the verdicts of a
//! typed serde parse into `Vec<User>` (the tests compare the two on random and mutated
//! payloads) at several times its speed, which matters: validation is the gateway's
//! largest cost per byte on every path.
//!
//! Replies of any shape (a handler's on the bridge route, the producer's profiles) are
//! checked as exactly one JSON value ([`check_json`], [`validate_json`]), with
//! serde_json's verdicts.

mod scanner;
#[cfg(test)]
mod test_rng;

use bytes::Bytes;

use crate::settings::Validation;

/// Bodies larger than this are validated on the blocking pool, off the async workers.
/// Smaller ones are validated in place: the hop to the pool (two thread switches) costs
/// more than their validation blocks a worker. How the threshold was measured:
/// docs/benchmark.md, "Where the gateway validates".
pub const BLOCKING_THRESHOLD: usize = 1024 * 1024;

/// What is wrong with a payload; `Display` is the sentence sent to the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    #[error("the payload is not a JSON array of users: {0}")]
    Malformed(String),
    #[error("the payload holds {found} users, not the {expected} asked for")]
    WrongCount { expected: u32, found: usize },
    #[error("user number {position} has id {found}, expected {expected}")]
    WrongId { position: usize, expected: u64, found: u64 },
    /// A JSON reply is not JSON (a handler's on `GET /api/bridge/{handler}`, the
    /// producer's on `GET /api/profiles-via-api`).
    #[error("the reply is not valid JSON: {0}")]
    NotJson(String),
    /// The check itself could not run (its task failed): not the payload's fault.
    #[error("the payload could not be checked: {0}")]
    Unchecked(String),
}

/// Checks that `body` is one JSON value (any shape), without building it.
///
/// # Errors
/// [`PayloadError::NotJson`] saying what is wrong and at which byte offset.
pub fn check_json(body: &[u8]) -> Result<(), PayloadError> {
    scanner::scan_json(body).map_err(|e| PayloadError::NotJson(e.to_string()))
}

/// Checks `body` as the answer to a request for `count` users. Verdicts in order: a
/// malformed body, then a wrong count, then the first wrong id.
///
/// # Errors
/// A [`PayloadError`] saying what failed and where.
pub fn check_users(body: &[u8], count: u32) -> Result<(), PayloadError> {
    let mut position = 0;
    let mut first_wrong_id = None;
    let found = scanner::scan_users(body, |id, _end| {
        position += 1;
        if first_wrong_id.is_none() && id != position {
            first_wrong_id = Some((position as usize, id));
        }
    })
    .map_err(|e| PayloadError::Malformed(e.to_string()))?;
    if found != count as usize {
        return Err(PayloadError::WrongCount { expected: count, found });
    }
    match first_wrong_id {
        Some((position, found)) => Err(PayloadError::WrongId { position, expected: position as u64, found }),
        None => Ok(()),
    }
}

/// Checks one user's JSON text as user number `position` (1-based): the ten known
/// fields with their types, and the id `position`. The snapshot cache checks a whole
/// array this way, element by element, once per snapshot.
///
/// # Errors
/// A [`PayloadError`] naming the position.
pub fn check_user(text: &str, position: usize) -> Result<(), PayloadError> {
    let id = scanner::scan_user(text.as_bytes())
        .map_err(|e| PayloadError::Malformed(format!("user number {position}: {e}")))?;
    let expected = position as u64;
    if id != expected {
        return Err(PayloadError::WrongId { position, expected, found: id });
    }
    Ok(())
}

/// Validates `body` according to `mode`, here and now (the caller picks the thread).
///
/// # Errors
/// A [`PayloadError`] when the check fails.
pub fn check(mode: Validation, body: &[u8], count: u32) -> Result<(), PayloadError> {
    match mode {
        Validation::None => Ok(()),
        Validation::Full => check_users(body, count),
    }
}

/// Validates `body` according to `mode`, on the blocking pool when it is large.
///
/// # Errors
/// A [`PayloadError`] when the check fails ([`PayloadError::Unchecked`] if its task
/// failed).
pub async fn validate(mode: Validation, body: &Bytes, count: u32) -> Result<(), PayloadError> {
    if mode == Validation::None {
        return check(mode, body, count);
    }
    off_the_workers_if_large(body, move |b| check(mode, b, count)).await
}

/// Checks that `body` is one JSON value according to `mode` (`none`: not at all), on
/// the blocking pool when it is large.
///
/// # Errors
/// [`PayloadError::NotJson`] when the check fails ([`PayloadError::Unchecked`] if its
/// task failed).
pub async fn validate_json(mode: Validation, body: &Bytes) -> Result<(), PayloadError> {
    if mode == Validation::None {
        return Ok(());
    }
    off_the_workers_if_large(body, check_json).await
}

/// Runs `check` on `body` in place, or on the blocking pool above [`BLOCKING_THRESHOLD`].
async fn off_the_workers_if_large<F>(body: &Bytes, check: F) -> Result<(), PayloadError>
where
    F: FnOnce(&[u8]) -> Result<(), PayloadError> + Send + 'static,
{
    if body.len() <= BLOCKING_THRESHOLD {
        return check(body);
    }
    let owned = body.clone(); // a reference count, not a copy
    tokio::task::spawn_blocking(move || check(&owned))
        .await
        .map_err(|e| PayloadError::Unchecked(format!("validation task failed: {e}")))?
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use super::*;

    /// One user as the producer sends it: the typed serde parse the scanner must agree with.
    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)] // the fields are checked by deserializing them, not read afterwards
    struct User<'a> {
        id: u64,
        #[serde(borrow)]
        first_name: Cow<'a, str>,
        #[serde(borrow)]
        last_name: Cow<'a, str>,
        #[serde(borrow)]
        email: Cow<'a, str>,
        age: u32,
        #[serde(borrow)]
        address: Cow<'a, str>,
        #[serde(borrow)]
        phone: Cow<'a, str>,
        #[serde(borrow)]
        company: Cow<'a, str>,
        #[serde(borrow)]
        job_title: Cow<'a, str>,
        #[serde(borrow)]
        bio: Cow<'a, str>,
    }

    fn user(id: u64) -> String {
        format!(
            r#"{{"id":{id},"first_name":"Chloé","last_name":"O'Brien","email":"c@example.com","age":41,"address":"1 Rue Cler","phone":"+1 555","company":"Acme","job_title":"Engineer","bio":"Likes \"quotes\"."}}"#
        )
    }

    fn users(ids: &[u64]) -> Vec<u8> {
        format!("[{}]", ids.iter().map(|&i| user(i)).collect::<Vec<_>>().join(",")).into_bytes()
    }

    #[test]
    fn accepts_exact_payloads() {
        assert_eq!(check_users(b"[]", 0), Ok(()));
        assert_eq!(check_users(&users(&[1, 2, 3]), 3), Ok(()));
        assert_eq!(check_users(b" [ ] \n", 0), Ok(()));
    }

    #[test]
    fn allows_extra_fields() {
        let body = user(1).replacen('{', r#"{"extra":[1,2,{"x":null}],"#, 1);
        assert_eq!(check_users(format!("[{body}]").as_bytes(), 1), Ok(()));
    }

    #[test]
    fn refuses_wrong_count_and_ids() {
        assert_eq!(check_users(&users(&[1, 2]), 3), Err(PayloadError::WrongCount { expected: 3, found: 2 }));
        assert_eq!(check_users(&users(&[1, 3]), 2), Err(PayloadError::WrongId { position: 2, expected: 2, found: 3 }));
        assert_eq!(check_users(&users(&[2, 1]), 2), Err(PayloadError::WrongId { position: 1, expected: 1, found: 2 }));
    }

    #[test]
    fn refuses_malformed_payloads_saying_why() {
        for bad in
            [&b""[..], b"{}", b"[1]", b"[] []", br#"[{"id":1}]"#, br#"[{"id":"1","first_name":"a"}]"#, b"[\"\xff\"]"]
        {
            assert!(
                matches!(check_users(bad, 1), Err(PayloadError::Malformed(_))),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let missing = user(1).replace(r#""bio":"Likes \"quotes\".""#, r#""bi":"x""#);
        let Err(PayloadError::Malformed(msg)) = check_users(format!("[{missing}]").as_bytes(), 1) else {
            panic!("a missing field must be refused");
        };
        assert!(msg.contains("missing field `bio`"), "{msg}");
        let truncated = users(&[1, 2]);
        assert!(matches!(check_users(&truncated[..truncated.len() - 1], 2), Err(PayloadError::Malformed(_))));
    }

    #[tokio::test]
    async fn large_bodies_are_validated_off_the_async_workers() {
        let ids: Vec<u64> = (1..=12_000).collect();
        let body = Bytes::from(users(&ids));
        assert!(body.len() > BLOCKING_THRESHOLD);
        validate(Validation::Full, &body, 12_000).await.unwrap();
        assert!(validate(Validation::Full, &body, 11_999).await.is_err());
        validate(Validation::None, &Bytes::from_static(b"nonsense"), 3).await.unwrap();
    }

    /// What the typed serde parse says of `body` as an answer for `count` users.
    fn serde_verdict(body: &[u8], count: u32) -> Result<(), PayloadError> {
        let malformed = |e: &dyn std::fmt::Display| PayloadError::Malformed(e.to_string());
        let text = std::str::from_utf8(body).map_err(|e| malformed(&e))?;
        let users: Vec<User<'_>> = serde_json::from_str(text).map_err(|e| malformed(&e))?;
        if users.len() != count as usize {
            return Err(PayloadError::WrongCount { expected: count, found: users.len() });
        }
        match users.iter().enumerate().find(|(i, u)| u.id != *i as u64 + 1) {
            Some((i, u)) => Err(PayloadError::WrongId { position: i + 1, expected: i as u64 + 1, found: u.id }),
            None => Ok(()),
        }
    }

    fn same_verdict(body: &[u8], count: u32) {
        let ours = check_users(body, count);
        let reference = serde_verdict(body, count);
        let agree = match (&ours, &reference) {
            (Err(PayloadError::Malformed(_)), Err(PayloadError::Malformed(_))) => true,
            // serde's derive also takes a user written as an array of its values; we do not.
            (
                Err(PayloadError::Malformed(why)),
                Ok(()) | Err(PayloadError::WrongCount { .. } | PayloadError::WrongId { .. }),
            ) => why.contains("expected `{`"),
            _ => ours == reference,
        };
        assert!(agree, "scanner {ours:?} vs serde {reference:?} on {:?}", String::from_utf8_lossy(body));
    }

    use super::test_rng::Rng;

    const PIECES: [&str; 16] = [
        "a",
        "Zoë",
        "Königstraße",
        "\\\"",
        "\\\\",
        "\\/",
        "\\n",
        "\\t",
        "\\u00e9",
        "\\ud83d\\ude00",
        "😀",
        " ",
        "0",
        "long text that runs past a few eight-byte lanes",
        "\u{7f}",
        "日本",
    ];
    const EXTRAS: [&str; 8] = [
        "null",
        "true",
        "-0.5e+3",
        "[1,[2,{}],[]]",
        "{\"k\":{\"k\":[\"\\ud800\"]}}",
        "\"x\"",
        "12345678901234567890123",
        "{}",
    ];

    fn random_string(rng: &mut Rng) -> String {
        (0..rng.below(4)).map(|_| *rng.pick(&PIECES)).collect()
    }

    fn random_user(rng: &mut Rng, id: u64) -> String {
        let mut fields: Vec<String> = vec![format!("\"id\":{id}"), format!("\"age\":{}", rng.below(120))];
        for name in ["first_name", "last_name", "email", "address", "phone", "company", "job_title", "bio"] {
            fields.push(format!("\"{name}\":\"{}\"", random_string(rng)));
        }
        for _ in 0..rng.below(3) {
            fields.push(format!("\"{}\":{}", random_string(rng), rng.pick(&EXTRAS)));
        }
        // Any order: JSON objects are unordered, and serde's derive takes fields in any order.
        for i in (1..fields.len()).rev() {
            fields.swap(i, rng.below(i + 1));
        }
        let space = *rng.pick(&["", " ", "\n "]);
        format!("{{{space}{}}}", fields.join(&format!(",{space}")))
    }

    #[test]
    fn agrees_with_serde_on_random_payloads() {
        let mut rng = Rng(0x5EED_1234_ABCD_0001);
        for _ in 0..3000 {
            let n = rng.below(4);
            let users: Vec<String> = (1..=n as u64).map(|id| random_user(&mut rng, id)).collect();
            let body = format!("[{}]", users.join(","));
            assert_eq!(check_users(body.as_bytes(), n as u32), Ok(()), "{body}");
            same_verdict(body.as_bytes(), n as u32);
        }
    }

    #[test]
    fn agrees_with_serde_on_mutated_payloads() {
        const BYTES: &[u8] = b"\"\\{}[],:01-.eEu+D8 \n\x01antrlsfx\xc3\xa9\x80";
        let mut rng = Rng(0xBAD_5EED_0000_0002);
        for _ in 0..40_000 {
            let n = 1 + rng.below(3);
            let users: Vec<String> = (1..=n as u64).map(|id| random_user(&mut rng, id)).collect();
            let mut body = format!("[{}]", users.join(",")).into_bytes();
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
            same_verdict(&body, n as u32);
        }
    }

    #[test]
    fn checks_what_serde_checks_at_the_edges() {
        let base = user(1);
        let cases: Vec<String> = vec![
            base.replace("\"age\":41", "\"age\":4294967295"),
            base.replace("\"age\":41", "\"age\":4294967296"),
            base.replace("\"id\":1", "\"id\":18446744073709551616"),
            base.replace("\"id\":1", "\"id\":01"),
            base.replace("\"id\":1", "\"id\":-0"),
            base.replace("\"id\":1", "\"id\":1.0"),
            base.replace("\"id\":1", "\"id\":1e0"),
            base.replace("\"id\":1", "\"\\u0069d\":1"),
            base.replace("\"bio\":", "\"bio\":\"\\ud800\",\"bi\":"),
            base.replace("\"bio\":", "\"bio\":\"\\udc00\",\"bi\":"),
            base.replace("\"bio\":", "\"x\":\"\\ud800\",\"bio\":"),
            base.replace("\"bio\":", "\"\\ud800\":1,\"bio\":"),
            base.replace("\"bio\":", "\"bio\":\"\\ud83d\\ude00\",\"x\":"),
            base.replace("\"bio\":", "\"id\":1,\"bio\":"),
            base.replace("\"bio\":", "\"x\":1,\"x\":2,\"bio\":"),
            base.replace(
                "\"bio\":",
                "\"x\":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]],\"bio\":",
            ),
            base.replace("\"bio\":", "\"x\":\"\t\",\"bio\":"),
            base.replace("\"bio\":", "\"x\":1.,\"bio\":"),
            base.replace("\"bio\":", "\"x\":-,\"bio\":"),
            base.replace("\"bio\":", "\"x\":tru,\"bio\":"),
        ];
        for case in &cases {
            same_verdict(format!("[{case}]").as_bytes(), 1);
        }
        for body in ["", " ", "[", "]", "[]]", "[,]", "[{}]", "[1]", "{}", "null", "[] x", "\u{feff}[]"] {
            same_verdict(body.as_bytes(), 0);
        }
    }
}
