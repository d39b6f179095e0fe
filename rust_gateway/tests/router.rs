//! The router without a producer: query refusals, /healthz, 404/405, and the errors a
//! missing producer or a broken channel file gives on every path. Never a panic.

mod common;

use axum::http::{Method, StatusCode};
use common::{closed_port_url, get, request, router, settings};

const ENDPOINTS: [&str; 3] = ["/api/users-via-api", "/api/users-via-shm", "/api/profiles-via-api"];

#[tokio::test]
async fn healthz_answers_ok() {
    let dir = tempfile::tempdir().unwrap();
    let app = router(settings(&closed_port_url(), dir.path(), &[]));
    let answer = get(&app, "/healthz").await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.content_type.as_deref(), Some("application/json"));
    assert_eq!(answer.json(), serde_json::json!({"status": "ok"}));
}

#[tokio::test]
async fn unknown_paths_and_methods_are_json_errors() {
    let dir = tempfile::tempdir().unwrap();
    let app = router(settings(&closed_port_url(), dir.path(), &[]));
    let detail = get(&app, "/api/nope?count=1").await.assert_error(StatusCode::NOT_FOUND, "not_found");
    assert!(detail.contains("/api/nope"), "{detail}");
    for path in ENDPOINTS {
        let answer = request(&app, Method::POST, &format!("{path}?count=1")).await;
        answer.assert_error(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
    }
}

/// Every refused query, with a piece of the sentence that must explain it.
const BAD_QUERIES: &[(&str, &str)] = &[
    ("?count=", "is empty"),
    ("?count", "is empty"),
    ("?count=-1", "without a sign"),
    ("?count=+1", "without a sign"),
    ("?count=%2B1", "without a sign"),
    ("?count=abc", "got 'abc'"),
    ("?count=1.0", "got '1.0'"),
    ("?count=%201", "got ' 1'"),
    ("?count=100001", "limit of 100000"),
    ("?count=100001", "--max-count"),
    ("?count=99999999999999999999999999", "limit of 100000"),
    ("?count=1&count=2", "given 2 times"),
    ("?count=1&count=1", "given 2 times"),
    ("?count=1&foo=2", "unknown query parameter 'foo'"),
    ("?count=1&foo=2&bar=3", "'foo', 'bar'"),
    ("?foo=2", "unknown query parameter 'foo'"),
    ("?count=%zz", "percent-encoded"),
];

#[tokio::test]
async fn bad_queries_are_refused_identically_on_both_paths() {
    let dir = tempfile::tempdir().unwrap();
    let app = router(settings(&closed_port_url(), dir.path(), &[]));
    for (query, needle) in BAD_QUERIES {
        let mut bodies = Vec::new();
        for path in ENDPOINTS {
            let answer = get(&app, &format!("{path}{query}")).await;
            let detail = answer.assert_error(StatusCode::BAD_REQUEST, "invalid_query");
            assert!(detail.contains(needle), "{path}{query}: {detail}");
            bodies.push(answer.body);
        }
        assert!(bodies.iter().all(|b| *b == bodies[0]), "{query}: every path refuses with the same body");
    }
}

#[tokio::test]
async fn the_limit_follows_max_count() {
    let dir = tempfile::tempdir().unwrap();
    let app = router(settings(&closed_port_url(), dir.path(), &["--max-count", "5"]));
    let detail = get(&app, "/api/users-via-api?count=6").await.assert_error(StatusCode::BAD_REQUEST, "invalid_query");
    assert!(detail.contains("limit of 5"), "{detail}");
    // count=5 passes the query check and reaches the (absent) producer.
    get(&app, "/api/users-via-api?count=5").await.assert_error(StatusCode::BAD_GATEWAY, "producer_unavailable");
}

#[tokio::test]
async fn a_closed_producer_port_is_502_on_both_paths() {
    let dir = tempfile::tempdir().unwrap();
    // A live channel (its writer holds the lock), so the shm path gets as far as the signal.
    let config = shmbridge::ChannelConfig { slot_count: 3, snapshot_slots: 0, slot_capacity: 4096 };
    let _writer = shmbridge::ChannelWriter::create(dir.path(), "users", config).unwrap();
    let app = router(settings(&closed_port_url(), dir.path(), &["--slot-wait-timeout-ms", "0"]));
    for path in ENDPOINTS {
        // More requests than slots: a refused connection gives the slot back at once.
        for count in [0, 2, 2, 2] {
            let answer = get(&app, &format!("{path}?count={count}")).await;
            let detail = answer.assert_error(StatusCode::BAD_GATEWAY, "producer_unavailable");
            assert!(detail.contains("unavailable"), "{detail}");
        }
    }
}

#[tokio::test]
async fn a_missing_channel_file_is_a_channel_error() {
    let dir = tempfile::tempdir().unwrap();
    let app = router(settings(&closed_port_url(), dir.path(), &[]));
    let detail = get(&app, "/api/users-via-shm?count=2").await.assert_error(StatusCode::BAD_GATEWAY, "channel_error");
    assert!(detail.contains("does not exist"), "{detail}");
}

#[tokio::test]
async fn a_corrupt_channel_file_is_a_channel_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let app = router(settings(&closed_port_url(), dir.path(), &[]));
    let file = dir.path().join("users.shm");
    for (garbage, needle) in [
        (vec![0x5Au8; 100], "too small"),
        (vec![0x5Au8; 64 * 1024], "bad magic"),
        (b"SHMBRDG\0".iter().copied().chain(std::iter::repeat_n(0xFF, 8192)).collect(), "version"),
    ] {
        std::fs::write(&file, &garbage).unwrap();
        let answer = get(&app, "/api/users-via-shm?count=2").await;
        let detail = answer.assert_error(StatusCode::BAD_GATEWAY, "channel_error");
        assert!(detail.contains(needle), "{detail}");
    }
}
