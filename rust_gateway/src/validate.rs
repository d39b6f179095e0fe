//! Payload validation, shared by both paths so that any difference between them
//! is the transport and nothing else.
//!
//! `full` mode deserializes the whole body into typed users that borrow their strings
//! from the body (no copy unless a string holds escapes), then checks that there are
//! exactly `count` users with ids 1..=count in order. Extra fields are allowed; the
//! ten known fields are required.

use std::borrow::Cow;

use bytes::Bytes;
use serde::Deserialize;

use crate::error::AppError;
use crate::settings::Validation;

/// Bodies larger than this are validated on the blocking pool, off the async workers.
pub const BLOCKING_THRESHOLD: usize = 256 * 1024;

/// One user as the producer sends it. Fields are read only to check them.
#[derive(Debug, Deserialize)]
#[allow(dead_code)] // the fields are checked by deserializing them, not read afterwards
pub struct User<'a> {
    pub id: u64,
    #[serde(borrow)]
    pub first_name: Cow<'a, str>,
    #[serde(borrow)]
    pub last_name: Cow<'a, str>,
    #[serde(borrow)]
    pub email: Cow<'a, str>,
    pub age: u32,
    #[serde(borrow)]
    pub address: Cow<'a, str>,
    #[serde(borrow)]
    pub phone: Cow<'a, str>,
    #[serde(borrow)]
    pub company: Cow<'a, str>,
    #[serde(borrow)]
    pub job_title: Cow<'a, str>,
    #[serde(borrow)]
    pub bio: Cow<'a, str>,
}

/// What is wrong with a payload; `Display` is the sentence sent to the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    #[error("the payload is not a JSON array of users: {0}")]
    Malformed(String),
    #[error("the payload holds {found} users, not the {expected} asked for")]
    WrongCount { expected: u32, found: usize },
    #[error("user number {position} has id {found}, expected {expected}")]
    WrongId { position: usize, expected: u64, found: u64 },
}

/// Checks `body` as the answer to a request for `count` users.
///
/// One UTF-8 pass over the whole body (a fast loop over ASCII), then a parse of the
/// `&str`, whose string reads skip the per-string UTF-8 check a byte-slice parse makes.
/// The array is walked by a visitor that deserializes each user (borrowed, typed) and
/// checks its id, without collecting them: no `Vec<User>`, nothing allocated per user
/// unless a string holds escapes. Same verdicts as collecting first: a malformed body
/// wins over a wrong count, which wins over the first wrong id.
///
/// # Errors
/// A [`PayloadError`] saying what failed (the serde error for a malformed body).
pub fn check_users(body: &[u8], count: u32) -> Result<(), PayloadError> {
    let malformed = |e: &dyn std::fmt::Display| PayloadError::Malformed(e.to_string());
    let text = std::str::from_utf8(body).map_err(|e| malformed(&e))?;
    let mut de = serde_json::Deserializer::from_str(text);
    let tally = serde::Deserializer::deserialize_seq(&mut de, UsersVisitor).map_err(|e| malformed(&e))?;
    de.end().map_err(|e| malformed(&e))?;
    if tally.found != count as usize {
        return Err(PayloadError::WrongCount { expected: count, found: tally.found });
    }
    match tally.first_wrong_id {
        Some((position, found)) => Err(PayloadError::WrongId { position, expected: position as u64, found }),
        None => Ok(()),
    }
}

/// What [`UsersVisitor`] saw: how many users, and the first one whose id is off.
struct Tally {
    found: usize,
    first_wrong_id: Option<(usize, u64)>,
}

/// Walks a JSON array of users, deserializing and dropping one at a time.
struct UsersVisitor;

impl<'de> serde::de::Visitor<'de> for UsersVisitor {
    type Value = Tally;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a sequence")
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Tally, A::Error> {
        let mut tally = Tally { found: 0, first_wrong_id: None };
        while let Some(user) = seq.next_element::<User<'de>>()? {
            tally.found += 1;
            if tally.first_wrong_id.is_none() && user.id != tally.found as u64 {
                tally.first_wrong_id = Some((tally.found, user.id));
            }
        }
        Ok(tally)
    }
}

/// Checks one user's JSON text as user number `position` (1-based): the ten known
/// fields with their types, and the id `position`. The snapshot cache checks a whole
/// array this way, element by element, once per snapshot.
///
/// # Errors
/// A [`PayloadError`] naming the position.
pub fn check_user(text: &str, position: usize) -> Result<(), PayloadError> {
    let user: User<'_> =
        serde_json::from_str(text).map_err(|e| PayloadError::Malformed(format!("user number {position}: {e}")))?;
    let expected = position as u64;
    if user.id != expected {
        return Err(PayloadError::WrongId { position, expected, found: user.id });
    }
    Ok(())
}

/// Validates `body` according to `mode`, on the blocking pool when it is large.
///
/// # Errors
/// [`AppError::InvalidPayload`] when the check fails.
pub async fn validate(mode: Validation, body: &Bytes, count: u32) -> Result<(), AppError> {
    if mode == Validation::None {
        return Ok(());
    }
    if body.len() <= BLOCKING_THRESHOLD {
        return check_users(body, count).map_err(AppError::from);
    }
    let owned = body.clone(); // a reference count, not a copy
    tokio::task::spawn_blocking(move || check_users(&owned, count))
        .await
        .map_err(|e| AppError::Internal(format!("validation task failed: {e}")))?
        .map_err(AppError::from)
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn refuses_malformed_payloads_with_the_serde_error() {
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
        let ids: Vec<u64> = (1..=2000).collect();
        let body = Bytes::from(users(&ids));
        assert!(body.len() > BLOCKING_THRESHOLD);
        validate(Validation::Full, &body, 2000).await.unwrap();
        assert!(validate(Validation::Full, &body, 1999).await.is_err());
        validate(Validation::None, &Bytes::from_static(b"nonsense"), 3).await.unwrap();
    }
}
