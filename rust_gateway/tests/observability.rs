//! Observability through the router: `/metrics` in Prometheus text format, `/readyz`
//! with and without a producer, the `x-request-id` header, and response compression.

mod common;

use std::io::Read as _;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use common::fake_producer::{users_json, FakeProducer};
use common::{closed_port_url, get, router, settings, watchdog};
use tower::ServiceExt as _;

const SHM_HTTP: &str = "/api/users-via-shm-http";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_prometheus_text_with_the_request_metrics() {
    watchdog(async {
        let dir = tempfile::tempdir().unwrap();
        let producer = FakeProducer::start(dir.path(), 4).await;
        let app = router(settings(&producer.url, dir.path(), &[]));
        assert_eq!(get(&app, &format!("{SHM_HTTP}?count=2")).await.status, StatusCode::OK);
        get(&app, "/api/nope").await.assert_error(StatusCode::NOT_FOUND, "not_found");

        let answer = get(&app, "/metrics").await;
        assert_eq!(answer.status, StatusCode::OK);
        assert!(answer.content_type.as_deref().unwrap().starts_with("text/plain; version=0.0.4"));
        let text = String::from_utf8(answer.body.to_vec()).unwrap();
        for needle in [
            "# TYPE gateway_http_requests_total counter",
            r#"gateway_http_requests_total{path="/api/users-via-shm-http",status="200"}"#,
            "# TYPE gateway_http_request_duration_seconds histogram",
            r#"gateway_http_request_duration_seconds_bucket{path="/api/users-via-shm-http",status="200",le="+Inf"}"#,
            r#"gateway_http_response_bytes_total{path="/api/users-via-shm-http"}"#,
            r#"gateway_errors_total{kind="not_found"}"#,
            r#"gateway_signal_duration_seconds_count{signal="http"}"#,
            "gateway_slots 3", // 4 request slots, the last kept for hand calls
            "gateway_slots_in_use 0",
            "gateway_slot_waiters 0",
        ] {
            assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
        }
        // Every line is a comment or `name{labels} value`.
        for line in text.lines().filter(|l| !l.is_empty() && !l.starts_with('#')) {
            let value = line.rsplit(' ').next().unwrap();
            assert!(value.parse::<f64>().is_ok(), "bad sample line {line:?}");
        }
    })
    .await;
}

#[tokio::test]
async fn readyz_is_503_naming_the_producer_and_the_channel_without_a_producer() {
    let dir = tempfile::tempdir().unwrap();
    let app = router(settings(&closed_port_url(), dir.path(), &[]));
    let detail = get(&app, "/readyz").await.assert_error(StatusCode::SERVICE_UNAVAILABLE, "not_ready");
    assert!(detail.contains("producer:") && detail.contains("unreachable"), "{detail}");
    assert!(detail.contains("channel:"), "{detail}");
    // Liveness does not depend on the producer.
    assert_eq!(get(&app, "/healthz").await.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_is_200_with_a_producer_and_its_channel() {
    watchdog(async {
        let dir = tempfile::tempdir().unwrap();
        let producer = FakeProducer::start(dir.path(), 4).await;
        let app = router(settings(&producer.url, dir.path(), &[]));
        let answer = get(&app, "/readyz").await;
        assert_eq!(answer.status, StatusCode::OK, "{}", String::from_utf8_lossy(&answer.body));
        let value = answer.json();
        assert_eq!(value["status"], "ready");
        assert_eq!(value["epoch"], producer.epoch());
        // The channel goes away: not ready any more, and the reason names it.
        producer.stop_channel();
        let detail = get(&app, "/readyz").await.assert_error(StatusCode::SERVICE_UNAVAILABLE, "not_ready");
        assert!(detail.starts_with("not ready: channel:"), "{detail}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_are_gzip_only_when_asked_and_carry_the_request_id() {
    watchdog(async {
        let dir = tempfile::tempdir().unwrap();
        let producer = FakeProducer::start(dir.path(), 4).await;
        let app = router(settings(&producer.url, dir.path(), &[]));
        let expected = users_json(50);
        for path in ["/api/users-via-api", SHM_HTTP] {
            let uri = format!("{path}?count=50");
            let plain = app.clone().oneshot(Request::get(&uri).body(Body::empty()).unwrap()).await.unwrap();
            assert_eq!(plain.status(), StatusCode::OK);
            assert!(plain.headers().get(header::CONTENT_ENCODING).is_none());
            assert_eq!(plain.headers()[header::CONTENT_LENGTH], expected.len().to_string().as_str());
            let id: u64 = plain.headers()["x-request-id"].to_str().unwrap().parse().unwrap();
            assert_ne!(id, 0);
            let body = axum::body::to_bytes(plain.into_body(), usize::MAX).await.unwrap();
            assert_eq!(body, expected);

            let request = Request::get(&uri).header(header::ACCEPT_ENCODING, "gzip").body(Body::empty()).unwrap();
            let gzipped = app.clone().oneshot(request).await.unwrap();
            assert_eq!(gzipped.status(), StatusCode::OK);
            assert_eq!(gzipped.headers()[header::CONTENT_ENCODING], "gzip");
            let body = axum::body::to_bytes(gzipped.into_body(), usize::MAX).await.unwrap();
            assert!(body.len() < expected.len(), "{} compressed bytes for {}", body.len(), expected.len());
            let mut inflated = Vec::new();
            flate2::read::GzDecoder::new(&body[..]).read_to_end(&mut inflated).unwrap();
            assert_eq!(inflated, expected);
        }
    })
    .await;
}
