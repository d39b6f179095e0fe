//! The snapshot path's cache: the newest snapshot the producer published (all its users
//! as one compact JSON array), copied out of the channel, checked and indexed once per
//! publish, then served by slicing with no call to the producer.
//!
//! - Each request reads the snapshot pointer's generation (one atomic load); only when
//!   it moved (or the channel file was replaced: another epoch) is the snapshot copied
//!   again, under the core's seqlock (`ChannelReader::read_snapshot`), by one request at
//!   a time while the others wait for its result.
//! - Indexing parses the array with `serde_json` into borrowed `RawValue` elements,
//!   records where each element ends, and checks the array is compact (no whitespace:
//!   element `i + 1` starts one byte, the comma, after element `i` ends). In `full`
//!   validation every element is also parsed as a typed user with id `i + 1`, as
//!   `validate.rs` does for the other paths.
//! - The body for `count` users is then `[` + elements `0..count` + `]`: the whole
//!   buffer up to the end of element `count - 1`, and a closing bracket. That is the
//!   producer's own serialization of its first `count` users, byte for byte.
//! - A producer that could not publish its users publishes a small raw marker
//!   `{"error", "detail"}` instead; it is answered as an error, so the snapshot it
//!   should have replaced is never served.

use std::sync::{Arc, PoisonError, RwLock};

use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;
use shmbridge::{ChannelReader, Encoding, ReadError};

use crate::settings::Validation;
use crate::validate::{check_user, PayloadError};

/// Why no snapshot can be served. The gateway's answer to each is decided in one
/// place, `error.rs`.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// The producer has published none in this channel file.
    #[error("the producer has published no snapshot yet")]
    NoSnapshot,
    /// The channel could not be read, or the snapshot's slot failed its checks.
    #[error(transparent)]
    Read(ReadError),
    /// The newest snapshot slot holds no payload.
    #[error("snapshot {generation} is empty")]
    Empty { generation: u64 },
    /// The producer published a failure marker: its snapshot was too large for a slot.
    #[error("{detail}")]
    TooLarge { detail: String },
    /// The producer published another failure marker (`error` is its kind).
    #[error("the producer's newest snapshot is unusable ({error}): {detail}")]
    Failed { error: String, detail: String },
    /// Raw bytes that are not a failure marker.
    #[error("the newest snapshot holds raw bytes, not a JSON array of users")]
    RawBytes,
    /// The snapshot is not a compact array of users.
    #[error(transparent)]
    Payload(#[from] PayloadError),
    /// The blocking task that copies and indexes it failed.
    #[error("snapshot read task failed: {0}")]
    Task(#[source] tokio::task::JoinError),
}

impl From<ReadError> for SnapshotError {
    fn from(e: ReadError) -> Self {
        match e {
            ReadError::NoSnapshot => Self::NoSnapshot,
            other => Self::Read(other),
        }
    }
}

/// A snapshot copied out of the channel, checked, and indexed by user.
#[derive(Debug)]
pub struct IndexedSnapshot {
    /// Creation epoch of the channel file it came from.
    pub epoch: u64,
    /// Its publish generation in that file.
    pub generation: u64,
    /// When the producer wrote it, in ns since the Unix epoch (0: unknown).
    pub write_time_ns: u64,
    body: Bytes,
    /// `ends[i]`: offset just past user `i`'s JSON text in `body`.
    ends: Vec<usize>,
}

/// The bytes of a snapshot body for some count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SnapshotBody {
    /// The whole body, as is.
    Whole(Bytes),
    /// `[` and the first users with their commas: a `]` must follow.
    Open(Bytes),
}

impl IndexedSnapshot {
    /// Checks and indexes `body` (see the module documentation).
    ///
    /// # Errors
    /// [`PayloadError::Malformed`] for anything but a compact JSON array; in `full`
    /// mode also a user that is not one, or has the wrong id.
    pub fn index(epoch: u64, generation: u64, body: Bytes, validation: Validation) -> Result<Self, PayloadError> {
        let text: &[u8] = &body;
        let elements: Vec<&RawValue> =
            serde_json::from_slice(text).map_err(|e| PayloadError::Malformed(format!("snapshot: {e}")))?;
        let not_compact = |what: &str| {
            PayloadError::Malformed(format!(
                "the snapshot is not compact JSON ({what}), so its users cannot be served as the producer's own bytes"
            ))
        };
        if text.first() != Some(&b'[') || text.last() != Some(&b']') {
            return Err(not_compact("space around the array"));
        }
        let base = text.as_ptr().addr();
        let mut ends = Vec::with_capacity(elements.len());
        let mut expected_start = 1;
        for (index, element) in elements.iter().enumerate() {
            let raw = element.get();
            let start = raw.as_ptr().addr().wrapping_sub(base);
            if start != expected_start || start + raw.len() > text.len() {
                return Err(not_compact(&format!("space before user number {}", index + 1)));
            }
            if validation == Validation::Full {
                check_user(raw, index + 1)?;
            }
            let end = start + raw.len();
            ends.push(end);
            expected_start = end + 1; // past the comma
        }
        if ends.last().map_or(1, |end| *end) + 1 != text.len() {
            return Err(not_compact("space before the closing bracket"));
        }
        Ok(Self { epoch, generation, write_time_ns: 0, body, ends })
    }

    /// Users in the snapshot.
    #[must_use]
    pub fn users(&self) -> usize {
        self.ends.len()
    }

    /// The body for the first `count` users; `None` if the snapshot has fewer.
    #[must_use]
    pub fn body(&self, count: usize) -> Option<SnapshotBody> {
        if count == self.users() {
            return Some(SnapshotBody::Whole(self.body.clone()));
        }
        match count {
            0 => Some(SnapshotBody::Whole(Bytes::from_static(b"[]"))),
            _ => self.ends.get(count - 1).map(|end| SnapshotBody::Open(self.body.slice(..*end))),
        }
    }
}

/// The newest indexed snapshot, refreshed when the producer publishes another.
#[derive(Debug, Default)]
pub struct SnapshotCache {
    // A std lock held only to clone or replace an `Arc`, never across `.await`.
    current: RwLock<Option<Arc<IndexedSnapshot>>>,
    /// One refresh at a time; requests arriving meanwhile wait for its result.
    refresh: tokio::sync::Mutex<()>,
}

impl SnapshotCache {
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// The snapshot served last, without looking at the channel (for `/metrics`).
    #[must_use]
    pub fn current(&self) -> Option<Arc<IndexedSnapshot>> {
        self.current.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// The newest snapshot of `reader`'s channel, copied and indexed if the cached one
    /// is older. The second value says whether this call refreshed it.
    ///
    /// # Errors
    /// No snapshot yet, a failure marker, a slot that failed its checks, or a payload
    /// that failed validation.
    pub async fn get(
        &self,
        reader: &Arc<ChannelReader>,
        validation: Validation,
    ) -> Result<(Arc<IndexedSnapshot>, bool), SnapshotError> {
        if let Some(hit) = self.fresh(reader)? {
            return Ok((hit, false));
        }
        let _one_at_a_time = self.refresh.lock().await;
        if let Some(hit) = self.fresh(reader)? {
            return Ok((hit, false));
        }
        let owned = Arc::clone(reader);
        let indexed =
            tokio::task::spawn_blocking(move || load(&owned, validation)).await.map_err(SnapshotError::Task)??;
        let indexed = Arc::new(indexed);
        tracing::info!(
            epoch = indexed.epoch,
            generation = indexed.generation,
            users = indexed.users(),
            bytes = indexed.body.len(),
            "snapshot indexed"
        );
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Some(Arc::clone(&indexed));
        Ok((indexed, true))
    }

    /// The cached snapshot if it is still the newest of `reader`'s channel.
    fn fresh(&self, reader: &ChannelReader) -> Result<Option<Arc<IndexedSnapshot>>, SnapshotError> {
        let generation = reader.snapshot_generation().ok_or(SnapshotError::NoSnapshot)?;
        let epoch = reader.epoch();
        let cached = self.current.read().unwrap_or_else(PoisonError::into_inner).clone();
        // A refresh may have read a publish newer than the pointer seen here: still fresh.
        Ok(cached.filter(|c| c.epoch == epoch && c.generation >= generation))
    }
}

/// Copies the newest snapshot out of the channel and indexes it (blocking: up to tens
/// of megabytes are copied and parsed).
fn load(reader: &ChannelReader, validation: Validation) -> Result<IndexedSnapshot, SnapshotError> {
    let mut buf = Vec::new();
    let snapshot = reader.read_snapshot(&mut buf).map_err(|e| {
        if !matches!(e, ReadError::NoSnapshot) {
            tracing::warn!(error = %e, "snapshot read failed");
        }
        SnapshotError::from(e)
    })?;
    match snapshot.meta.encoding {
        Encoding::Json => {}
        Encoding::Raw => return Err(marker_error(&buf)),
        Encoding::None => return Err(SnapshotError::Empty { generation: snapshot.generation }),
    }
    let mut indexed = IndexedSnapshot::index(reader.epoch(), snapshot.generation, Bytes::from(buf), validation)?;
    indexed.write_time_ns = snapshot.meta.write_time_ns;
    Ok(indexed)
}

/// The error a failure marker stands for.
fn marker_error(marker: &[u8]) -> SnapshotError {
    #[derive(Deserialize)]
    struct Marker {
        error: String,
        detail: String,
    }
    match serde_json::from_slice::<Marker>(marker) {
        // The marker's kind is the producer's error code, a contract like the gateway's.
        Ok(m) if m.error == "payload_too_large" => SnapshotError::TooLarge { detail: m.detail },
        Ok(m) => SnapshotError::Failed { error: m.error, detail: m.detail },
        Err(_) => SnapshotError::RawBytes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shmbridge::{ChannelConfig, ChannelWriter};

    fn user(id: usize) -> String {
        format!(
            r#"{{"id":{id},"first_name":"Zoë","last_name":"O'Brien","email":"z{id}@example.com","age":30,"address":"1 Via Roma","phone":"+1-555","company":"Acme","job_title":"SRE","bio":"Likes \"chess\", [brackets] and {{braces}}."}}"#
        )
    }

    fn array(count: usize) -> String {
        format!("[{}]", (1..=count).map(user).collect::<Vec<_>>().join(","))
    }

    fn index(text: &str, validation: Validation) -> Result<IndexedSnapshot, PayloadError> {
        IndexedSnapshot::index(1, 1, Bytes::from(text.to_owned()), validation)
    }

    fn body_text(body: SnapshotBody) -> String {
        match body {
            SnapshotBody::Whole(b) => String::from_utf8(b.to_vec()).unwrap(),
            SnapshotBody::Open(b) => format!("{}]", String::from_utf8(b.to_vec()).unwrap()),
        }
    }

    #[test]
    fn every_prefix_is_the_array_of_the_first_users() {
        let snapshot = index(&array(5), Validation::Full).unwrap();
        assert_eq!(snapshot.users(), 5);
        for count in 0..=5 {
            assert_eq!(body_text(snapshot.body(count).unwrap()), array(count), "count {count}");
        }
        assert!(matches!(snapshot.body(5), Some(SnapshotBody::Whole(_))));
        assert_eq!(snapshot.body(6), None);
        let empty = index("[]", Validation::Full).unwrap();
        assert_eq!(empty.users(), 0);
        assert_eq!(body_text(empty.body(0).unwrap()), "[]");
        assert_eq!(empty.body(1), None);
    }

    #[test]
    fn only_compact_arrays_are_indexed() {
        for spaced in [" []", "[] ", "[ ]", &format!("[{}, {}]", user(1), user(2)), &format!("[ {}]", user(1))] {
            let err = index(spaced, Validation::None).unwrap_err();
            assert!(err.to_string().contains("compact"), "{spaced}: {err}");
        }
        for bad in ["", "{}", "[1,]", &array(2)[1..]] {
            assert!(matches!(index(bad, Validation::None), Err(PayloadError::Malformed(_))), "{bad}");
        }
    }

    #[test]
    fn full_validation_checks_every_user_once() {
        let wrong_id = format!("[{},{}]", user(1), user(3));
        assert_eq!(
            index(&wrong_id, Validation::Full).unwrap_err(),
            PayloadError::WrongId { position: 2, expected: 2, found: 3 }
        );
        assert_eq!(index(&wrong_id, Validation::None).unwrap().users(), 2);
        let not_a_user = format!("[{},{{\"id\":2}}]", user(1));
        let err = index(&not_a_user, Validation::Full).unwrap_err().to_string();
        assert!(err.contains("user number 2") && err.contains("missing field"), "{err}");
    }

    #[tokio::test]
    async fn the_cache_follows_the_generation_and_the_markers() {
        let dir = tempfile::tempdir().unwrap();
        let config = ChannelConfig { slot_count: 2, snapshot_slots: 2, slot_capacity: 1 << 16 };
        let writer = ChannelWriter::create(dir.path(), "users", config).unwrap();
        let reader = Arc::new(ChannelReader::open(writer.path()).unwrap());
        let cache = SnapshotCache::new();
        let err = cache.get(&reader, Validation::Full).await.unwrap_err();
        assert!(matches!(err, SnapshotError::NoSnapshot), "{err}");

        writer.publish_bytes(Encoding::Json, array(3).as_bytes()).unwrap();
        let (first, refreshed) = cache.get(&reader, Validation::Full).await.unwrap();
        assert!(refreshed && first.users() == 3);
        let (again, refreshed) = cache.get(&reader, Validation::Full).await.unwrap();
        assert!(!refreshed && Arc::ptr_eq(&first, &again));

        writer.publish_bytes(Encoding::Json, array(4).as_bytes()).unwrap();
        let (second, refreshed) = cache.get(&reader, Validation::Full).await.unwrap();
        assert!(refreshed && second.users() == 4 && second.generation == first.generation + 1);

        let marker = br#"{"error":"payload_too_large","detail":"5000 users do not fit"}"#;
        writer.publish_bytes(Encoding::Raw, marker).unwrap();
        let err = cache.get(&reader, Validation::Full).await.unwrap_err();
        assert!(matches!(&err, SnapshotError::TooLarge { detail } if detail == "5000 users do not fit"), "{err}");
        writer.publish_bytes(Encoding::Raw, br#"{"error":"snapshot_failed","detail":"why"}"#).unwrap();
        let err = cache.get(&reader, Validation::Full).await.unwrap_err();
        assert!(
            matches!(&err, SnapshotError::Failed { error, detail } if error == "snapshot_failed" && detail == "why"),
            "{err}"
        );
        writer.publish_bytes(Encoding::Json, b"[1,2]").unwrap();
        let err = cache.get(&reader, Validation::Full).await.unwrap_err();
        assert!(matches!(err, SnapshotError::Payload(PayloadError::Malformed(_))), "{err}");
    }
}
