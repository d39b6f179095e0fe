//! A producer written in Rust for the gateway's tests: a real HTTP server on a free
//! loopback port with the producer's two endpoints, writing through the real
//! `shmbridge::ChannelWriter` into a real channel file. Its behaviour can be switched
//! to misbehave (slow, wrong request id, error statuses, short payloads).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use shmbridge::{ChannelConfig, ChannelWriter, Encoding, WriteError};
use tokio::sync::{mpsc, Semaphore};

/// What the fake producer does on its next requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Behaviour {
    Normal,
    /// Writes the slot under another request id than the one asked for (far from it, so
    /// no later request of the gateway has it).
    WrongRequestId,
    /// Answers 200 without writing anything.
    AnswerWithoutWriting,
    /// Sends (and writes) one user fewer than asked for.
    ShortPayload,
    /// Answers this status and `{"error", "detail"}` body.
    Status(u16, String),
    /// Waits for [`FakeProducer::release`] before writing and answering.
    Hold,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Arrived { slot: u32, request_id: u64 },
    Written { slot: u32, request_id: u64 },
}

pub struct FakeProducer {
    pub url: String,
    pub dir: PathBuf,
    inner: Arc<Inner>,
    events: tokio::sync::Mutex<mpsc::UnboundedReceiver<Event>>,
}

struct Inner {
    writer: Mutex<Option<Arc<ChannelWriter>>>,
    behaviour: Mutex<Behaviour>,
    gate: Semaphore,
    events: mpsc::UnboundedSender<Event>,
}

/// `count` deterministic users as compact JSON, with every field the gateway checks.
pub fn users_json(count: u32) -> Vec<u8> {
    let mut out = String::from("[");
    for id in 1..=count {
        if id > 1 {
            out.push(',');
        }
        out.push_str(&format!(
            r#"{{"id":{id},"first_name":"Zoë","last_name":"O'Brien","email":"user{id}@example.com","age":{},"address":"{id} Rue Cler, Paris","phone":"+33-1-{id:06}","company":"Acme Søndergaard","job_title":"Engineer","bio":"Writes \"tests\" and ships them; user number {id} of a deterministic list."}}"#,
            18 + id % 60
        ));
    }
    out.push(']');
    out.into_bytes()
}

pub fn config(request_slots: u32) -> ChannelConfig {
    ChannelConfig { slot_count: request_slots, snapshot_slots: 0, slot_capacity: 1 << 20 }
}

impl FakeProducer {
    /// Starts the fake on a free port, with a channel of `request_slots` in `dir`.
    pub async fn start(dir: &Path, request_slots: u32) -> Self {
        let writer = ChannelWriter::create(dir, "users", config(request_slots)).unwrap();
        let (tx, rx) = mpsc::unbounded_channel();
        let inner = Arc::new(Inner {
            writer: Mutex::new(Some(Arc::new(writer))),
            behaviour: Mutex::new(Behaviour::Normal),
            gate: Semaphore::new(0),
            events: tx,
        });
        let app = Router::new()
            .route("/api/users", get(users))
            .route("/api/write-to-shm", get(write_to_shm))
            .route("/healthz", get(|| async { r#"{"status":"ok"}"# }))
            .with_state(Arc::clone(&inner));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { url, dir: dir.to_owned(), inner, events: tokio::sync::Mutex::new(rx) }
    }

    pub fn set(&self, behaviour: Behaviour) {
        *self.inner.behaviour.lock().unwrap() = behaviour;
    }

    /// Lets one held request go on.
    pub fn release(&self) {
        self.inner.gate.add_permits(1);
    }

    pub async fn next_event(&self) -> Event {
        self.events.lock().await.recv().await.unwrap()
    }

    pub fn epoch(&self) -> u64 {
        self.inner.writer.lock().unwrap().as_ref().unwrap().epoch()
    }

    /// A producer restart: the old file goes, a new one (new epoch) takes its place.
    pub fn restart(&self, request_slots: u32) {
        let mut slot = self.inner.writer.lock().unwrap();
        drop(slot.take());
        *slot = Some(Arc::new(ChannelWriter::create(&self.dir, "users", config(request_slots)).unwrap()));
    }

    /// The producer stops: its channel file is removed.
    pub fn stop_channel(&self) {
        drop(self.inner.writer.lock().unwrap().take());
    }
}

fn param(query: Option<&str>, name: &str) -> Option<u64> {
    query?.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        (key == name).then(|| value.parse().ok()).flatten()
    })
}

fn error(status: u16, kind: &str, detail: &str) -> Response {
    let body = serde_json::json!({"error": kind, "detail": detail}).to_string();
    (StatusCode::from_u16(status).unwrap(), [("content-type", "application/json")], body).into_response()
}

async fn users(State(inner): State<Arc<Inner>>, RawQuery(query): RawQuery) -> Response {
    let count = param(query.as_deref(), "count").unwrap() as u32;
    let behaviour = inner.behaviour.lock().unwrap().clone();
    match behaviour {
        Behaviour::Status(status, detail) => error(status, "fake", &detail),
        Behaviour::ShortPayload => users_json(count.saturating_sub(1)).into_response(),
        _ => ([("content-type", "application/json")], users_json(count)).into_response(),
    }
}

/// Runs in its own task: like a real producer, it finishes a write even when the
/// gateway gave up on the call and closed the connection (a late write).
async fn write_to_shm(State(inner): State<Arc<Inner>>, RawQuery(query): RawQuery) -> Response {
    match tokio::spawn(write_to_shm_task(inner, query)).await {
        Ok(response) => response,
        Err(e) => error(500, "fake_panicked", &e.to_string()),
    }
}

async fn write_to_shm_task(inner: Arc<Inner>, query: Option<String>) -> Response {
    let query = query.as_deref();
    let (Some(count), Some(slot), Some(request_id)) =
        (param(query, "count"), param(query, "slot"), param(query, "request_id"))
    else {
        return error(400, "invalid_parameter", "count, slot and request_id are required");
    };
    let (count, slot) = (count as u32, slot as u32);
    let _ = inner.events.send(Event::Arrived { slot, request_id });
    let behaviour = inner.behaviour.lock().unwrap().clone();
    if behaviour == Behaviour::Hold {
        inner.gate.acquire().await.unwrap().forget();
    }
    let (data, written_id) = match behaviour {
        Behaviour::Status(status, detail) => return error(status, "fake", &detail),
        Behaviour::WrongRequestId => (users_json(count), request_id + 1_000_000),
        Behaviour::ShortPayload => (users_json(count.saturating_sub(1)), request_id),
        _ => (users_json(count), request_id),
    };
    let Some(writer) = inner.writer.lock().unwrap().clone() else {
        return error(503, "shm_unavailable", "no channel");
    };
    let receipt = if behaviour == Behaviour::AnswerWithoutWriting {
        None
    } else {
        match writer.write_bytes(slot, written_id, Encoding::Json, &data) {
            Ok(receipt) => Some(receipt),
            Err(e @ WriteError::TooLarge { .. }) => return error(507, "payload_too_large", &e.to_string()),
            Err(e) => return error(500, "shm_error", &e.to_string()),
        }
    };
    let _ = inner.events.send(Event::Written { slot, request_id });
    let body = serde_json::json!({
        "path": writer.path().display().to_string(),
        "epoch": writer.epoch(),
        "slot": slot,
        "request_id": request_id,
        "sequence": receipt.map_or(0, |r| r.sequence),
        "length": data.len(),
        "encoding": "json",
    });
    ([("content-type", "application/json")], body.to_string()).into_response()
}
