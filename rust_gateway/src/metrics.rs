//! Prometheus metrics, served by `GET /metrics` (no listener of its own).
//!
//! One global recorder ([`metrics_exporter_prometheus`]) is installed on first use;
//! the hot path only bumps atomics through the `metrics` macros:
//!
//! - [`record_request`], from one middleware: request count, latency histogram and
//!   body bytes per route and status;
//! - `gateway_errors_total{kind}`, where an [`AppError`](crate::AppError) becomes a
//!   response;
//! - [`record_signal`], at the shared-memory path's signal timing point.
//!
//! Gauges that describe state (the slot pool, the snapshot), and the signal's
//! answer-wait counts, are read when `/metrics` is rendered, so they cost nothing
//! per request: the route reads them into a [`Gauges`] and [`render`] sets them (this
//! module knows no gateway state).

use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::http::StatusCode;
use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram, Unit};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

pub const REQUESTS: &str = "gateway_http_requests_total";
pub const REQUEST_DURATION: &str = "gateway_http_request_duration_seconds";
pub const RESPONSE_BYTES: &str = "gateway_http_response_bytes_total";
pub const ERRORS: &str = "gateway_errors_total";
pub const SIGNAL_DURATION: &str = "gateway_signal_duration_seconds";
pub const SIGNAL_ANSWER_WAITS: &str = "gateway_signal_answer_waits_total";
pub const SLOTS: &str = "gateway_slots";
pub const SLOTS_IN_USE: &str = "gateway_slots_in_use";
pub const SLOT_WAITERS: &str = "gateway_slot_waiters";
pub const SNAPSHOT_GENERATION: &str = "gateway_snapshot_generation";
pub const SNAPSHOT_AGE: &str = "gateway_snapshot_age_seconds";

/// Histogram buckets, in seconds: 50 µs to 10 s.
const BUCKETS: &[f64] = &[
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// How often histogram samples are folded in when nobody scrapes.
pub const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// The installed recorder's handle, installing it on first call. `None` if another
/// recorder was installed first (then `/metrics` says so).
pub fn handle() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let installed = PrometheusBuilder::new().set_buckets(BUCKETS).and_then(PrometheusBuilder::install_recorder);
            match installed {
                Ok(handle) => {
                    describe();
                    Some(handle)
                }
                Err(e) => {
                    tracing::warn!(error = %e, "metrics recorder not installed; /metrics will be empty");
                    None
                }
            }
        })
        .as_ref()
}

fn describe() {
    describe_counter!(REQUESTS, "HTTP requests answered, by matched route and status");
    describe_histogram!(REQUEST_DURATION, Unit::Seconds, "Time to answer a request (until its response starts)");
    describe_counter!(RESPONSE_BYTES, Unit::Bytes, "Response body bytes, before any compression");
    describe_counter!(ERRORS, "Error responses, by kind (the `error` field)");
    describe_histogram!(SIGNAL_DURATION, Unit::Seconds, "Round trip of the signal asking the producer for a write");
    describe_counter!(
        SIGNAL_ANSWER_WAITS,
        "Unix-socket signal answers, by how the gateway waited: `spin` (polled, --signal-spin-us) or `park`"
    );
    describe_gauge!(SLOTS, "Shared-memory slots the gateway hands out");
    describe_gauge!(SLOTS_IN_USE, "Slots leased or in quarantine");
    describe_gauge!(SLOT_WAITERS, "Requests waiting for a free slot");
    describe_gauge!(SNAPSHOT_GENERATION, "Generation of the snapshot the gateway serves");
    describe_gauge!(SNAPSHOT_AGE, Unit::Seconds, "Seconds since the served snapshot was written");
}

/// One answered request (`route` is the matched route, or `other`).
pub fn record_request(route: &'static str, status: StatusCode, elapsed: Duration, bytes: Option<u64>) {
    let status = status.as_str().to_owned();
    counter!(REQUESTS, "path" => route, "status" => status.clone()).increment(1);
    histogram!(REQUEST_DURATION, "path" => route, "status" => status).record(elapsed.as_secs_f64());
    if let Some(bytes) = bytes {
        counter!(RESPONSE_BYTES, "path" => route).increment(bytes);
    }
}

/// One error response of `kind`.
pub fn record_error(kind: &'static str) {
    counter!(ERRORS, "kind" => kind).increment(1);
}

/// One signal round trip (`http` or `uds`).
pub fn record_signal(signal: &'static str, elapsed_us: u64) {
    #[allow(clippy::cast_precision_loss)] // microseconds: exact far beyond any round trip
    histogram!(SIGNAL_DURATION, "signal" => signal).record(elapsed_us as f64 / 1e6);
}

/// The state gauges, read by the caller when `/metrics` is asked for.
#[derive(Debug, Clone, Copy, Default)]
pub struct Gauges {
    /// The slot pool: size, in use, waiters (`None` before the channel was opened).
    pub slots: Option<(usize, usize, usize)>,
    /// Signal answers caught spinning, and parked for.
    pub answer_waits: (u64, u64),
    /// The served snapshot's generation and write time (ns since the Unix epoch).
    pub snapshot: Option<(u64, u64)>,
}

/// The Prometheus text page, with `gauges` set.
#[must_use]
pub fn render(gauges: &Gauges) -> Option<String> {
    let handle = handle()?;
    if let Some((size, in_use, waiters)) = gauges.slots {
        gauge!(SLOTS).set(as_f64(size as u64));
        gauge!(SLOTS_IN_USE).set(as_f64(in_use as u64));
        gauge!(SLOT_WAITERS).set(as_f64(waiters as u64));
    }
    let (spin, park) = gauges.answer_waits;
    counter!(SIGNAL_ANSWER_WAITS, "wait" => "spin").absolute(spin);
    counter!(SIGNAL_ANSWER_WAITS, "wait" => "park").absolute(park);
    if let Some((generation, write_time_ns)) = gauges.snapshot {
        gauge!(SNAPSHOT_GENERATION).set(as_f64(generation));
        let now_ns = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let age_ns = now_ns.saturating_sub(u128::from(write_time_ns));
        #[allow(clippy::cast_precision_loss)]
        gauge!(SNAPSHOT_AGE).set(age_ns as f64 / 1e9);
    }
    Some(handle.render())
}

#[allow(clippy::cast_precision_loss)] // gauges of counts far below 2^53
fn as_f64(value: u64) -> f64 {
    value as f64
}
