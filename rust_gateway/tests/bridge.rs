//! `GET /api/bridge/{handler}` against a producer written in Rust
//! (`shmbridge::client::rust_producer`): a real channel file and a real signal socket.

mod common;

use std::path::Path;

use axum::http::StatusCode;
use common::{closed_port_url, get, router, settings};
use shmbridge::client::rust_producer::{Outcome, RustProducer};
use shmbridge::wire::Status;
use shmbridge::ChannelConfig;

fn producer(dir: &Path) -> RustProducer {
    let config = ChannelConfig { slot_count: 4, snapshot_slots: 0, slot_capacity: 1 << 16 };
    RustProducer::start(dir, "users", config, |call, _writer| {
        let params: Vec<String> = call.params.iter().map(|(k, v)| format!("{k}={v}")).collect();
        match call.name.as_str() {
            "echo" => Outcome::json(serde_json::to_vec(&params).unwrap()),
            "nested" => Outcome::json(r#"{"a":[1,{"b":"Zoë"}],"c":2.5}"#),
            "bytes" => Outcome::raw(vec![1u8, 2, 3], ""),
            "seq" => {
                let n: u32 = call.param("n").and_then(|n| n.parse().ok()).unwrap_or(0);
                Outcome::raw((0..n).flat_map(u32::to_le_bytes).collect::<Vec<u8>>(), "")
            }
            "f64" => Outcome::raw(1.5f64.to_le_bytes().to_vec(), "application/x-f64le"),
            "broken" => Outcome::json("[1,"),
            "value" => Outcome::refuse(Status::BadRequest, "ValueError: limit must be a number"),
            "raises" => Outcome::refuse(Status::HandlerError, "ZeroDivisionError: division by zero"),
            "lookup" => Outcome::not_found("KeyError: 'x'"),
            other => Outcome::not_found(format!("no handler {other:?}; known: bytes, echo, nested")),
        }
    })
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_go_out_as_written_with_their_content_type() {
    let dir = tempfile::tempdir().unwrap();
    let _producer = producer(dir.path());
    let app = router(settings(&closed_port_url(), dir.path(), &[]));

    let answer = get(&app, "/api/bridge/echo?limit=10&name=Zo%C3%AB&flag").await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.content_type.as_deref(), Some("application/json"));
    assert_eq!(answer.json(), serde_json::json!(["limit=10", "name=Zoë", "flag="]));

    let answer = get(&app, "/api/bridge/nested").await;
    assert_eq!(&answer.body[..], r#"{"a":[1,{"b":"Zoë"}],"c":2.5}"#.as_bytes(), "not re-encoded");

    let answer = get(&app, "/api/bridge/bytes").await;
    assert_eq!((answer.status, answer.content_type.as_deref()), (StatusCode::OK, Some("application/octet-stream")));
    assert_eq!(&answer.body[..], &[1, 2, 3]);

    let answer = get(&app, "/api/bridge/f64").await;
    assert_eq!(answer.content_type.as_deref(), Some("application/x-f64le"));
    assert_eq!(&answer.body[..], &1.5f64.to_le_bytes());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handler_refusals_are_json_errors() {
    let dir = tempfile::tempdir().unwrap();
    let _producer = producer(dir.path());
    let app = router(settings(&closed_port_url(), dir.path(), &[]));

    let detail = get(&app, "/api/bridge/nope").await.assert_error(StatusCode::NOT_FOUND, "not_found");
    assert!(detail.contains("known: bytes, echo, nested"), "{detail}");
    get(&app, "/api/bridge/lookup").await.assert_error(StatusCode::NOT_FOUND, "not_found");
    let detail = get(&app, "/api/bridge/raises").await.assert_error(StatusCode::BAD_GATEWAY, "producer_error");
    assert!(detail.contains("ZeroDivisionError: division by zero"), "{detail}");
    let detail = get(&app, "/api/bridge/value").await.assert_error(StatusCode::BAD_REQUEST, "bad_request");
    assert!(detail.contains("ValueError"), "{detail}");
    let detail = get(&app, "/api/bridge/broken").await.assert_error(StatusCode::BAD_GATEWAY, "invalid_payload");
    assert!(detail.contains("not valid JSON"), "{detail}");
    // The slots all came back: every refusal was an answer.
    for _ in 0..4 {
        assert_eq!(get(&app, "/api/bridge/bytes").await.status, StatusCode::OK);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_names_and_parameters_are_refused_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    // No producer at all: a refusal that reached for it would be a 502, not a 400.
    let app = router(settings(&closed_port_url(), dir.path(), &[]));
    let many: String = (0..65).map(|i| format!("k{i}=v&")).collect();
    let long = "a".repeat(65);
    let big = format!("k={}", "v".repeat(9000));
    for uri in [
        format!("/api/bridge/{long}"),
        "/api/bridge/..".to_owned(),
        "/api/bridge/..%2F..%2Fetc".to_owned(),
        "/api/bridge/Echo".to_owned(),
        "/api/bridge/%00".to_owned(),
        "/api/bridge/echo?a=%00".to_owned(),
        "/api/bridge/echo?a=1&a=2".to_owned(),
        "/api/bridge/echo?=1".to_owned(),
        format!("/api/bridge/echo?{many}"),
        format!("/api/bridge/echo?{big}"),
        "/api/bridge/echo?a=%ff".to_owned(),
    ] {
        let answer = get(&app, &uri).await;
        answer.assert_error(StatusCode::BAD_REQUEST, "invalid_query");
    }
    // A valid call with nothing listening fails on the channel, after the checks.
    get(&app, "/api/bridge/echo?a=1").await.assert_error(StatusCode::BAD_GATEWAY, "channel_error");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_concurrent_mixed_calls_get_their_own_replies() {
    let dir = tempfile::tempdir().unwrap();
    let _producer = producer(dir.path());
    let app = router(settings(&closed_port_url(), dir.path(), &[]));
    let calls = (0..100u32).map(|i| {
        let app = app.clone();
        tokio::spawn(async move {
            if i % 2 == 0 {
                let n = (i * 97) % 4000;
                let answer = get(&app, &format!("/api/bridge/seq?n={n}")).await;
                let expected: Vec<u8> = (0..n).flat_map(u32::to_le_bytes).collect();
                (answer.status == StatusCode::OK && answer.body[..] == expected[..], i)
            } else {
                let answer = get(&app, &format!("/api/bridge/echo?i={i}")).await;
                (answer.status == StatusCode::OK && answer.json() == serde_json::json!([format!("i={i}")]), i)
            }
        })
    });
    let mut mismatches = Vec::new();
    for call in calls {
        let (ok, i) = call.await.unwrap();
        if !ok {
            mismatches.push(i);
        }
    }
    assert_eq!(mismatches, Vec::<u32>::new());
}
