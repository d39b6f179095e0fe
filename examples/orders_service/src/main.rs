//! An HTTP service of one's own on `shmbridge::client`: it serves the handlers of the
//! Python producer `examples/orders_producer.py` (a `shmbridge.Bridge("orders")`).
//!
//! - `GET /orders?limit=N` calls the handler `recent` and relays its JSON as is;
//! - `GET /prices?n=N` calls the handler `prices`, whose reply is `n` little-endian
//!   f64 values, and answers `{"count": n, "sum": ...}`.
//!
//! Errors are `{"error": kind, "detail": sentence}` with the status the
//! [`ClientError`] stands for. The channel directory is `SHMBRIDGE_DIR` (default
//! `shared_memory_dir`), as for the producer.
//!
//! ```text
//! .venv/bin/python examples/orders_producer.py &
//! target/release/orders_service --port 8090 &
//! curl 'http://127.0.0.1:8090/orders?limit=3'
//! curl 'http://127.0.0.1:8090/prices?n=1000'
//! ```

use std::path::PathBuf;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use clap::Parser;
use shmbridge::client::{Client, ClientConfig, ClientError};

/// Serves the `orders` channel's handlers over HTTP.
#[derive(Debug, Parser)]
#[command(name = "orders_service")]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// TCP port to listen on (0 picks a free one; the real port is printed).
    #[arg(long, default_value_t = 8090)]
    port: u16,
    /// Directory of the producer's channel file and socket.
    #[arg(long, env = "SHMBRIDGE_DIR", default_value = "shared_memory_dir")]
    dir: PathBuf,
    /// Channel name.
    #[arg(long, default_value = "orders")]
    channel: String,
    /// Time allowed for one call to the producer, in milliseconds.
    #[arg(long, default_value_t = 5000)]
    timeout_ms: u64,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let config = ClientConfig::new(&args.dir, &args.channel).call_timeout(Duration::from_millis(args.timeout_ms));
    let client = match Client::new(config) {
        Ok(client) => client,
        Err(e) => {
            eprintln!("orders_service: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let listener = match tokio::net::TcpListener::bind((args.host.as_str(), args.port)).await {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("orders_service: cannot listen on {}:{}: {e}", args.host, args.port);
            return std::process::ExitCode::from(1);
        }
    };
    if let Ok(address) = listener.local_addr() {
        println!("orders_service listening on http://{address}");
    }
    let served = axum::serve(listener, app(client)).with_graceful_shutdown(shutdown()).await;
    match served {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("orders_service: {e}");
            std::process::ExitCode::from(1)
        }
    }
}

/// SIGINT or SIGTERM.
async fn shutdown() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
}

/// The service's routes.
fn app(client: Client) -> Router {
    Router::new().route("/orders", get(orders)).route("/prices", get(prices)).with_state(client)
}

/// `GET /orders?limit=N`: the handler `recent`'s JSON, relayed without re-encoding.
async fn orders(State(client): State<Client>, RawQuery(query): RawQuery) -> Response {
    let params = match params(query.as_deref(), &["limit"]) {
        Ok(params) => params,
        Err(error) => return error.into_response(),
    };
    match client.call("recent", &params).await {
        Ok(reply) => {
            let content_type =
                HeaderValue::from_str(&reply.content_type).unwrap_or(HeaderValue::from_static("application/json"));
            (StatusCode::OK, [(header::CONTENT_TYPE, content_type)], reply.body).into_response()
        }
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// `GET /prices?n=N`: the handler `prices`' f64 values, counted and summed.
async fn prices(State(client): State<Client>, RawQuery(query): RawQuery) -> Response {
    let params = match params(query.as_deref(), &["n"]) {
        Ok(params) => params,
        Err(error) => return error.into_response(),
    };
    let reply = match client.call("prices", &params).await {
        Ok(reply) => reply,
        Err(e) => return ApiError::from(e).into_response(),
    };
    match sum_f64le(&reply.body) {
        Some((count, sum)) => json(StatusCode::OK, &serde_json::json!({"count": count, "sum": sum})),
        None => ApiError {
            status: StatusCode::BAD_GATEWAY,
            kind: "producer_error",
            detail: format!("the prices reply is {} bytes, not a whole number of f64 values", reply.body.len()),
        }
        .into_response(),
    }
}

/// How many little-endian f64 values `bytes` holds and their sum; `None` if its
/// length is not a multiple of 8.
fn sum_f64le(bytes: &[u8]) -> Option<(usize, f64)> {
    if !bytes.len().is_multiple_of(8) {
        return None;
    }
    let values = bytes.chunks_exact(8).map(|chunk| {
        let mut eight = [0u8; 8];
        eight.copy_from_slice(chunk);
        f64::from_le_bytes(eight)
    });
    Some((bytes.len() / 8, values.sum()))
}

/// The query's pairs, percent-decoded, if every key is one of `allowed`.
fn params(query: Option<&str>, allowed: &[&str]) -> Result<Vec<(String, String)>, ApiError> {
    let bad = |detail: String| ApiError { status: StatusCode::BAD_REQUEST, kind: "invalid_query", detail };
    let mut pairs = Vec::new();
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let key = percent_decode(key).ok_or_else(|| bad("the query is not percent-encoded UTF-8".into()))?;
        let value = percent_decode(value).ok_or_else(|| bad("the query is not percent-encoded UTF-8".into()))?;
        if !allowed.contains(&key.as_str()) {
            return Err(bad(format!("unknown query parameter {key:?}; accepted: {}", allowed.join(", "))));
        }
        pairs.push((key, value));
    }
    Ok(pairs)
}

fn percent_decode(raw: &str) -> Option<String> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            byte => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// An error answer: `{"error": kind, "detail": sentence}`.
#[derive(Debug)]
struct ApiError {
    status: StatusCode,
    kind: &'static str,
    detail: String,
}

impl From<ClientError> for ApiError {
    fn from(e: ClientError) -> Self {
        let (status, kind) = match &e {
            ClientError::InvalidCall(_) => (StatusCode::BAD_REQUEST, "invalid_query"),
            ClientError::BadRequest { .. } => (StatusCode::BAD_REQUEST, "bad_request"),
            ClientError::NotFound { .. } => (StatusCode::NOT_FOUND, "not_found"),
            ClientError::Timeout { .. } => (StatusCode::GATEWAY_TIMEOUT, "producer_timeout"),
            ClientError::TooLarge { .. } => (StatusCode::INSUFFICIENT_STORAGE, "payload_too_large"),
            ClientError::NoFreeSlot { .. } | ClientError::ProducerBusy { .. } => {
                (StatusCode::SERVICE_UNAVAILABLE, "busy")
            }
            ClientError::ProducerUnavailable { .. } | ClientError::ProducerGone { .. } | ClientError::Open(_) => {
                (StatusCode::BAD_GATEWAY, "producer_unavailable")
            }
            _ => (StatusCode::BAD_GATEWAY, "producer_error"),
        };
        Self { status, kind, detail: e.to_string() }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        json(self.status, &serde_json::json!({"error": self.kind, "detail": self.detail}))
    }
}

fn json(status: StatusCode, value: &serde_json::Value) -> Response {
    let body = Bytes::from(value.to_string());
    (status, [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], body).into_response()
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::Request;
    use shmbridge::client::rust_producer::{Outcome, RustProducer};
    use shmbridge::wire::Status;
    use shmbridge::ChannelConfig;
    use tower::ServiceExt as _;

    use super::*;

    /// The Python producer's two handlers, in Rust.
    fn producer(dir: &std::path::Path) -> RustProducer {
        let config = ChannelConfig { slot_count: 4, snapshot_slots: 0, slot_capacity: 1 << 20 };
        RustProducer::start(dir, "orders", config, |call, _writer| match call.name.as_str() {
            "recent" => match call.param("limit").unwrap_or("10").parse::<usize>() {
                Ok(limit) => Outcome::json(serde_json::to_vec(&vec![serde_json::json!({"id": 1}); limit]).unwrap()),
                Err(e) => Outcome::refuse(Status::BadRequest, format!("ValueError: {e}")),
            },
            "prices" => {
                let n: u32 = call.param("n").unwrap_or("8").parse().unwrap_or(0);
                let bytes: Vec<u8> = (0..n).flat_map(|i| (f64::from(i) * 0.5).to_le_bytes()).collect();
                Outcome::raw(bytes, "application/x-f64le")
            }
            other => Outcome::not_found(format!("no handler {other:?}")),
        })
        .unwrap()
    }

    async fn get(app: &Router, uri: &str) -> (StatusCode, serde_json::Value) {
        let request = Request::builder().uri(uri).body(Body::empty()).unwrap();
        let response = app.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
        (status, serde_json::from_slice(&body).unwrap())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn orders_prices_and_errors() {
        let dir = tempfile::tempdir().unwrap();
        let _producer = producer(dir.path());
        let app = app(Client::new(ClientConfig::new(dir.path(), "orders")).unwrap());
        let (status, orders) = get(&app, "/orders?limit=3").await;
        assert_eq!((status, orders.as_array().map(Vec::len)), (StatusCode::OK, Some(3)));
        let (status, prices) = get(&app, "/prices?n=1000").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(prices, serde_json::json!({"count": 1000, "sum": 0.5 * 999.0 * 1000.0 / 2.0}));
        let (status, error) = get(&app, "/orders?limt=3").await;
        assert_eq!((status, error["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_query")));
        let (status, error) = get(&app, "/orders?limit=x").await;
        assert_eq!((status, error["error"].as_str()), (StatusCode::BAD_REQUEST, Some("bad_request")));
    }

    #[test]
    fn odd_lengths_are_not_f64s() {
        assert_eq!(sum_f64le(&[0; 7]), None);
        assert_eq!(sum_f64le(&[]), Some((0, 0.0)));
    }
}
