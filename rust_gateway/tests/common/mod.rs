//! Helpers shared by the gateway's integration tests.

#![allow(dead_code)] // each test file uses its own subset

pub mod fake_producer;

use std::path::Path;

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use axum::Router;
use bytes::Bytes;
use clap::Parser;
use rust_gateway::{app, AppState, Settings};
use tower::ServiceExt;

/// Settings with every value the tests rely on given as a flag, so no environment
/// variable can change them; `extra` flags replace the base ones.
pub fn settings(producer_url: &str, shm_dir: &Path, extra: &[&str]) -> Settings {
    let shm_dir = shm_dir.to_str().unwrap();
    let base = [
        ("--producer-url", producer_url),
        ("--shm-dir", shm_dir),
        ("--channel", "users"),
        ("--max-count", "100000"),
        ("--validation", "full"),
        ("--producer-timeout-ms", "10000"),
        ("--slot-wait-timeout-ms", "5000"),
    ];
    let mut args = vec!["rust_gateway"];
    for (flag, value) in base {
        if !extra.contains(&flag) {
            args.extend([flag, value]);
        }
    }
    args.extend_from_slice(extra);
    Settings::try_parse_from(args).unwrap()
}

pub fn router(settings: Settings) -> Router {
    app(AppState::new(settings).unwrap())
}

/// A URL on which nothing listens: a port that was bound, then released.
pub fn closed_port_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    format!("http://127.0.0.1:{port}")
}

pub struct Answer {
    pub status: StatusCode,
    pub content_type: Option<String>,
    pub body: Bytes,
}

impl Answer {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }

    /// Asserts the error shape `{"error": kind, "detail": sentence}` and returns the detail.
    pub fn assert_error(&self, status: StatusCode, kind: &str) -> String {
        let value = self.json();
        assert_eq!(self.status, status, "{value}");
        assert_eq!(self.content_type.as_deref(), Some("application/json"));
        assert_eq!(value["error"], kind, "{value}");
        let object = value.as_object().unwrap();
        assert_eq!(object.len(), 2, "only error and detail: {value}");
        let detail = value["detail"].as_str().unwrap().to_owned();
        assert!(!detail.is_empty());
        detail
    }
}

pub async fn request(router: &Router, method: Method, uri: &str) -> Answer {
    let request = Request::builder().method(method).uri(uri).body(Body::empty()).unwrap();
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let content_type = response.headers().get(header::CONTENT_TYPE).map(|v| v.to_str().unwrap().to_owned());
    let body = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
    Answer { status, content_type, body }
}

/// Runs a test body that could deadlock, failing it instead of hanging the suite.
pub async fn watchdog<F: std::future::Future>(body: F) -> F::Output {
    tokio::time::timeout(std::time::Duration::from_secs(120), body).await.expect("the test hung: watchdog fired")
}

pub async fn get(router: &Router, uri: &str) -> Answer {
    request(router, Method::GET, uri).await
}
