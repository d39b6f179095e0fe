//! The client against a real channel file and a real signal socket served by a
//! producer written in Rust (`shmbridge::client::rust_producer`: another producer
//! implementation speaking wire version 2, not a mock of the transport).

use std::os::unix::fs::FileExt as _;
use std::path::Path;
use std::time::{Duration, Instant};

use shmbridge::client::rust_producer::{Outcome, RustProducer};
use shmbridge::client::{Client, ClientConfig, ClientError};
use shmbridge::wire::Status;
use shmbridge::{ChannelConfig, Encoding, ReadError};

const CHANNEL: &str = "things";
/// Three request slots: a pool of two (the last one is the producer's).
const GEOMETRY: ChannelConfig = ChannelConfig { slot_count: 3, snapshot_slots: 2, slot_capacity: 4096 };

fn client(dir: &Path) -> Client {
    let config = ClientConfig::new(dir, CHANNEL)
        .call_timeout(Duration::from_secs(2))
        .slot_wait(Duration::from_millis(50))
        .quarantine(Duration::from_secs(600));
    Client::new(config).unwrap()
}

/// A producer whose handlers cover every outcome.
fn producer(dir: &Path) -> RustProducer {
    RustProducer::start(dir, CHANNEL, GEOMETRY, |call, writer| match call.name.as_str() {
        "json" => Outcome::json(format!(r#"{{"n":{}}}"#, call.param("n").unwrap_or("0"))),
        "raw" => Outcome::raw(vec![7u8; 100], ""),
        "typed" => Outcome::raw(b"a,b\n1,2\n".to_vec(), "text/csv"),
        "big" => Outcome::raw(vec![0u8; 8192], ""),
        "status" => {
            let code = call.param("code").and_then(|c| c.parse().ok()).and_then(Status::from_u16);
            Outcome::refuse(code.unwrap_or(Status::Internal), "why")
        }
        "hangup" => Outcome::Hangup,
        "corrupt" => {
            let receipt = writer.write_bytes(call.slot, call.request_id, Encoding::Raw, b"precious").unwrap();
            // A byte of the payload changes after the checksum was taken.
            let file = std::fs::OpenOptions::new().write(true).open(writer.path()).unwrap();
            file.write_at(b"P", writer.geometry().payload_offset_of(call.slot)).unwrap();
            Outcome::Written { receipt, content_type: String::new() }
        }
        "short" => {
            let mut receipt = writer.write_bytes(call.slot, call.request_id, Encoding::Raw, b"12345").unwrap();
            receipt.length += 1;
            Outcome::Written { receipt, content_type: String::new() }
        }
        "slow" => {
            let ms = call.param("ms").and_then(|m| m.parse().ok()).unwrap_or(0);
            std::thread::sleep(Duration::from_millis(ms));
            Outcome::json("[]")
        }
        other => Outcome::not_found(format!("no handler {other:?}; known: json, raw")),
    })
    .unwrap()
}

const NO_PARAMS: &[(&str, &str)] = &[];

/// Polls `condition` until it holds, for at most 10 s.
async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !condition() {
        assert!(Instant::now() < deadline, "{what} did not happen within 10 s");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_round_trip_carries_json_raw_and_content_types() {
    let dir = tempfile::tempdir().unwrap();
    let _producer = producer(dir.path());
    let client = client(dir.path());

    let reply = client.call("json", &[("n", "42")]).await.unwrap();
    assert_eq!((reply.encoding, reply.content_type.as_str()), (Encoding::Json, "application/json"));
    assert_eq!(&reply.body[..], br#"{"n":42}"#);
    assert!(reply.is_json());

    let reply = client.call("raw", NO_PARAMS).await.unwrap();
    assert_eq!((reply.encoding, reply.content_type.as_str()), (Encoding::Raw, "application/octet-stream"));
    assert_eq!(&reply.body[..], &[7u8; 100]);

    let reply = client.call("typed", NO_PARAMS).await.unwrap();
    assert_eq!(reply.content_type, "text/csv");

    // Many calls, concurrently, over two slots: every reply is its own.
    let calls = (0..50).map(|n| {
        let client = client.clone();
        tokio::spawn(async move { (n, client.call("json", &[("n", n.to_string())]).await.unwrap()) })
    });
    for call in calls {
        let (n, reply) = call.await.unwrap();
        assert_eq!(reply.body, format!(r#"{{"n":{n}}}"#).into_bytes());
    }
    let stats = client.stats();
    assert_eq!((stats.slots, stats.slots_in_use), (2, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_status_maps_to_its_error_and_frees_the_slot() {
    let dir = tempfile::tempdir().unwrap();
    let _producer = producer(dir.path());
    let client = client(dir.path());
    for status in [Status::BadRequest, Status::Busy, Status::Internal, Status::NotFound, Status::HandlerError] {
        let code = status.to_u16().to_string();
        let error = client.call("status", &[("code", code.as_str())]).await.unwrap_err();
        assert_eq!(error.wire_status(), Some(status), "{error}");
        assert!(error.to_string().contains("why"), "{error}");
    }
    let error = client.call("status", &[("code", "4")]).await.unwrap_err();
    assert!(matches!(error, ClientError::Timeout { timeout_ms: 2000 }), "{error}");
    // A reply over the slot capacity: the producer's writer refuses it.
    let error = client.call("big", NO_PARAMS).await.unwrap_err();
    assert!(matches!(error, ClientError::TooLarge { .. }), "{error}");
    let error = client.call("missing", NO_PARAMS).await.unwrap_err();
    assert!(matches!(&error, ClientError::NotFound { message } if message.contains("known: json, raw")), "{error}");
    // Every refusal was an answer: no slot is in quarantine.
    assert_eq!(client.stats().slots_in_use, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_names_and_params_are_refused_before_anything_is_sent() {
    let dir = tempfile::tempdir().unwrap();
    // No producer and no channel: an error other than InvalidCall would mean it tried.
    let client = client(dir.path());
    let long = "a".repeat(65);
    let many: Vec<(String, String)> = (0..65).map(|i| (format!("k{i}"), String::new())).collect();
    let big = vec![("k".to_owned(), "v".repeat(9000))];
    for name in [long.as_str(), "..", "../x", "", "A", "a/b", "a\0"] {
        let error = client.call(name, NO_PARAMS).await.unwrap_err();
        assert!(matches!(error, ClientError::InvalidCall(_)), "{name:?}: {error}");
    }
    for params in [many, big, vec![("a".into(), "\0".into())], vec![("".into(), "v".into())]] {
        let error = client.call("ok", &params).await.unwrap_err();
        assert!(matches!(error, ClientError::InvalidCall(_)), "{error}");
    }
    let error = client.call("ok", &[("a", "1"), ("a", "2")]).await.unwrap_err();
    assert!(matches!(error, ClientError::InvalidCall(_)), "{error}");
    assert!(matches!(client.call("ok", NO_PARAMS).await.unwrap_err(), ClientError::Open(_)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_producer_dying_mid_call_is_unavailable_and_its_slot_waits_for_a_new_epoch() {
    let dir = tempfile::tempdir().unwrap();
    let first = producer(dir.path());
    let client = client(dir.path());
    let epoch = client.ready().unwrap();

    let error = client.call("hangup", NO_PARAMS).await.unwrap_err();
    assert!(matches!(error, ClientError::ProducerUnavailable { .. }), "{error}");
    assert_eq!(client.stats().slots_in_use, 1, "the slot is in quarantine: a late write may land");
    // The other slot still serves.
    client.call("raw", NO_PARAMS).await.unwrap();
    assert_eq!(client.stats().slots_in_use, 1);

    // The producer stops cleanly (its file goes): the quarantine holds until a newer file.
    drop(first);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(client.stats().slots_in_use, 1, "no newer channel file yet");
    let error = client.call("raw", NO_PARAMS).await.unwrap_err();
    assert!(matches!(error, ClientError::Open(_)), "{error}");

    let _second = producer(dir.path());
    let reply = client.call("json", &[("n", "1")]).await.unwrap();
    assert_eq!(&reply.body[..], br#"{"n":1}"#);
    assert_ne!(client.ready().unwrap(), epoch);
    eventually("the quarantine's end", || client.stats().slots_in_use == 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_producer_ends_the_quarantine_and_its_snapshot_is_not_served() {
    let dir = tempfile::tempdir().unwrap();
    let first = producer(dir.path());
    first.publish(Encoding::Json, b"[1]").unwrap();
    let client = client(dir.path());
    assert_eq!(&client.snapshot().await.unwrap().unwrap().body[..], b"[1]");
    client.call("hangup", NO_PARAMS).await.unwrap_err();
    assert_eq!(client.stats().slots_in_use, 1);
    // SIGKILL leaves the file on disk with its lock free: nobody can write late.
    first.kill();
    eventually("the quarantine's end", || client.stats().slots_in_use == 0).await;
    let error = client.snapshot().await.unwrap_err();
    assert!(matches!(error, ClientError::ProducerGone { .. }), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_slot_or_a_wrong_length_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let _producer = producer(dir.path());
    let client = client(dir.path());
    let error = client.call("corrupt", NO_PARAMS).await.unwrap_err();
    assert!(matches!(error, ClientError::Corrupt(ReadError::Checksum { .. })), "{error}");
    let error = client.call("short", NO_PARAMS).await.unwrap_err();
    assert!(matches!(error, ClientError::LengthMismatch { announced: 6, found: 5, .. }), "{error}");
    assert_eq!(client.stats().slots_in_use, 0, "the copy was made: the slots are back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deadlines_bound_the_call_and_the_slot_wait() {
    let dir = tempfile::tempdir().unwrap();
    let _producer = producer(dir.path());
    let config = ClientConfig::new(dir.path(), CHANNEL)
        .call_timeout(Duration::from_millis(100))
        .slot_wait(Duration::from_millis(50))
        .quarantine(Duration::from_millis(300));
    let client = Client::new(config).unwrap();

    let started = Instant::now();
    let error = client.call("slow", &[("ms", "400")]).await.unwrap_err();
    assert!(matches!(error, ClientError::Timeout { timeout_ms: 100 }), "{error}");
    assert!(started.elapsed() < Duration::from_millis(350), "took {:?}", started.elapsed());
    assert_eq!(client.stats().slots_in_use, 1, "the producer may still write: quarantine");
    // The quarantine ends at its delay while the producer lives.
    eventually("the quarantine's end", || client.stats().slots_in_use == 0).await;

    // Both slots held by slow calls: a third waits 50 ms for a slot, then gives up.
    let slow = |client: &Client| {
        let client = client.clone();
        tokio::spawn(async move { client.call("slow", &[("ms", "80")]).await })
    };
    let a = slow(&client);
    let b = slow(&client);
    eventually("two calls in flight", || client.stats().slots_in_use == 2).await;
    let error = client.call("json", NO_PARAMS).await.unwrap_err();
    assert!(matches!(error, ClientError::NoFreeSlot { waited_ms: 50, slots: 2 }), "{error}");
    a.await.unwrap().unwrap();
    b.await.unwrap().unwrap();
    client.call("json", NO_PARAMS).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_snapshot_is_the_newest_published() {
    let dir = tempfile::tempdir().unwrap();
    let producer = producer(dir.path());
    let client = client(dir.path());
    assert_eq!(client.snapshot().await.unwrap(), None);
    producer.publish(Encoding::Json, b"[1]").unwrap();
    producer.publish(Encoding::Raw, b"two").unwrap();
    let snapshot = client.snapshot().await.unwrap().unwrap();
    assert_eq!((snapshot.generation, snapshot.encoding, &snapshot.body[..]), (2, Encoding::Raw, &b"two"[..]));
    assert_eq!(snapshot.epoch, client.ready().unwrap());
}
