//! `shmbridge_load`: a closed-loop HTTP load generator for the gateway that checks
//! every response body byte for byte.
//!
//! `--concurrency` workers each send one request at a time over a pooled keep-alive
//! client until `--requests` have been sent or `--duration-secs` have passed (the first
//! bound reached wins). Request `i` goes to path `i % paths` with a count drawn from a
//! generator seeded by `(--seed, i)`, so a run is reproducible whatever the scheduling.
//!
//! Every response is one of:
//! - **ok**: 200 and the body is exactly the expected body for its count;
//! - **mismatch**: 200 with any other body (a fast wrong answer: the worst outcome);
//! - **error**: another status, counted by status and, when the body has the project's
//!   `{"error", "detail"}` shape, by kind (`503 no_free_slot`); otherwise non-JSON;
//! - **transport error**: no HTTP answer (connect, timeout, broken body).
//!
//! The expected body for count N is `[` + the first N lines of `--users-file` joined
//! by `,` + `]` (`python -m py_producer.dump_users` writes that file). The lines are
//! joined once at start; a body is compared against a prefix of that buffer, so no
//! expected body is ever built or cached.
//!
//! For any other dataset, `--expected-url URL` takes the expected body for count N
//! from one `GET URL?count=N` at start (a reference endpoint, such as the producer's
//! own REST endpoint), for each count of a `--counts` list.
//!
//! Exit status: 0, or 1 if any mismatch was seen (warm-up included), 2 on a usage or
//! setup error.

#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use serde_json::{json, Value};

/// Mismatch descriptions kept per path, for diagnosis.
const MISMATCH_EXAMPLES: usize = 5;
/// Transport error messages kept per path.
const TRANSPORT_EXAMPLES: usize = 3;

#[derive(Debug, Parser)]
#[command(
    name = "shmbridge_load",
    about = "Closed-loop HTTP load against the shmbridge gateway; checks every body byte for byte"
)]
#[command(group(clap::ArgGroup::new("bound").required(true).multiple(true).args(["requests", "duration_secs"])))]
#[command(group(clap::ArgGroup::new("expected").required(true).args(["users_file", "expected_url"])))]
struct Args {
    /// Gateway base URL, e.g. http://127.0.0.1:8080.
    #[arg(long)]
    url: String,
    /// Endpoints to load, comma-separated: `api`, `shm`, or any NAME for
    /// /api/users-via-NAME, or a path starting with '/'. Requests alternate between them.
    #[arg(long, value_delimiter = ',', default_value = "api,shm")]
    paths: Vec<String>,
    /// Counts to ask for: a list `2,100,1000` (drawn uniformly) or a range `A-B`
    /// (drawn log-uniformly, so small counts are common and 0 comes up when A is 0).
    #[arg(long, default_value = "0-10000", value_parser = CountSpec::parse)]
    counts: CountSpec,
    /// Seed of the count generator.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Requests in flight at any time (one per worker).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    concurrency: u64,
    /// Stop after this many requests (not counting warm-up).
    #[arg(long)]
    requests: Option<u64>,
    /// Stop after this many seconds (not counting warm-up).
    #[arg(long)]
    duration_secs: Option<f64>,
    /// Send requests for this long first; their results are reported apart.
    #[arg(long, default_value_t = 0.0)]
    warmup_secs: f64,
    /// One compact JSON user per line, ids 1..max in order.
    #[arg(long)]
    users_file: Option<PathBuf>,
    /// Instead of `--users-file`: the expected body for count N is the body of
    /// `GET URL?count=N`, fetched once at start (needs a `--counts` list).
    #[arg(long)]
    expected_url: Option<String>,
    /// Also write the report as JSON here.
    #[arg(long)]
    json_out: Option<PathBuf>,
    /// Print a progress line to stderr every second.
    #[arg(long)]
    progress: bool,
    /// Time allowed for one request, in seconds.
    #[arg(long, default_value_t = 120.0)]
    timeout_secs: f64,
}

/// The counts a run asks for.
#[derive(Debug, Clone)]
enum CountSpec {
    List(Vec<u32>),
    Range(u32, u32),
}

impl CountSpec {
    fn parse(raw: &str) -> Result<Self, String> {
        let number = |s: &str| s.trim().parse::<u32>().map_err(|_| format!("'{s}' is not a count (0..=4294967295)"));
        if let Some((lo, hi)) = raw.split_once('-') {
            let (lo, hi) = (number(lo)?, number(hi)?);
            if lo > hi {
                return Err(format!("range {lo}-{hi} is empty"));
            }
            return Ok(Self::Range(lo, hi));
        }
        let list = raw.split(',').map(number).collect::<Result<Vec<_>, _>>()?;
        if list.is_empty() {
            return Err("no counts given".into());
        }
        Ok(Self::List(list))
    }

    fn max(&self) -> u32 {
        match self {
            Self::List(list) => list.iter().copied().max().unwrap_or(0),
            Self::Range(_, hi) => *hi,
        }
    }

    /// The count of request `index`: a pure function of (seed, index).
    fn draw(&self, seed: u64, index: u64) -> u32 {
        let random = splitmix64(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ splitmix64(index));
        // 53 random bits as a float in [0, 1).
        let unit = (random >> 11) as f64 / (1u64 << 53) as f64;
        match self {
            Self::List(list) => list[(unit * list.len() as f64) as usize % list.len()],
            Self::Range(lo, hi) => {
                // Log-uniform over [lo + 1, hi + 2), shifted back by one: every count in
                // lo..=hi can come up, and the small ones (0 included) often.
                let (a, b) = ((f64::from(*lo) + 1.0).ln(), (f64::from(*hi) + 2.0).ln());
                let value = (a + unit * (b - a)).exp() - 1.0;
                (value.floor() as u32).clamp(*lo, *hi)
            }
        }
    }
}

impl std::fmt::Display for CountSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::List(list) => {
                let text: Vec<String> = list.iter().map(u32::to_string).collect();
                f.write_str(&text.join(","))
            }
            Self::Range(lo, hi) => write!(f, "{lo}-{hi}"),
        }
    }
}

fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The expected body of each count.
#[derive(Debug)]
enum Expected {
    Users(UsersFile),
    /// Whole bodies, by count, from a reference endpoint.
    Fetched(BTreeMap<u32, Vec<u8>>),
}

impl Expected {
    /// The expected body's length for `count`, if it is known.
    fn len(&self, count: u32) -> Option<usize> {
        match self {
            Self::Users(file) => file.len(count),
            Self::Fetched(bodies) => bodies.get(&count).map(Vec::len),
        }
    }

    #[cfg(test)]
    fn matches(&self, count: u32, body: &[u8]) -> bool {
        let mut check = BodyCheck::new(self, count, false);
        check.feed(body);
        check.finish().is_ok()
    }

    /// Whether `chunk`, found at offset `at` of a body, equals the expected body there.
    fn matches_at(&self, count: u32, at: usize, chunk: &[u8]) -> bool {
        match self {
            Self::Users(file) => file.matches_at(count, at, chunk),
            Self::Fetched(bodies) => {
                bodies.get(&count).and_then(|b| b.get(at..at.checked_add(chunk.len())?)) == Some(chunk)
            }
        }
    }

    /// The first `len` bytes of the expected body for `count` (at most all of it).
    fn prefix(&self, count: u32, len: usize) -> Vec<u8> {
        match self {
            Self::Users(file) => file.prefix(count, len),
            Self::Fetched(bodies) => bodies.get(&count).map(|b| b[..len.min(b.len())].to_vec()).unwrap_or_default(),
        }
    }

    /// Where and how `body` differs from the expected body, for the report.
    fn describe_mismatch(&self, count: u32, body: &[u8]) -> String {
        let Some(len) = self.len(count) else {
            return format!("count {count} has no expected body");
        };
        let expected = self.prefix(count, len);
        let first_diff = (0..body.len().max(expected.len())).find(|&i| body.get(i) != expected.get(i)).unwrap_or(0);
        let from = first_diff.saturating_sub(20);
        let to = (first_diff + 60).min(body.len());
        format!(
            "count {count}: got {} bytes, expected {len}; first difference at byte {first_diff}: {:?}",
            body.len(),
            String::from_utf8_lossy(body.get(from..to).unwrap_or_default())
        )
    }

    /// One `GET url?count=N` per count of `counts`; each must answer 2xx.
    async fn fetch(client: &reqwest::Client, url: &str, counts: &CountSpec) -> Result<Self, String> {
        let CountSpec::List(list) = counts else {
            return Err("--expected-url needs a --counts list, not a range".into());
        };
        let mut bodies = BTreeMap::new();
        for &count in list {
            let target = format!("{url}?count={count}");
            let response =
                client.get(&target).send().await.map_err(|e| format!("cannot fetch {target}: {}", error_chain(&e)))?;
            let status = response.status();
            let body = response.bytes().await.map_err(|e| format!("cannot read {target}: {}", error_chain(&e)))?;
            if !status.is_success() {
                return Err(format!("{target} answered {status}: {}", String::from_utf8_lossy(&body)));
            }
            bodies.insert(count, body.to_vec());
        }
        Ok(Self::Fetched(bodies))
    }
}

/// The users file, joined once: the expected body for count N is
/// `[` + `joined[..ends[N]]` + `]`.
#[derive(Debug)]
struct UsersFile {
    joined: Vec<u8>,
    ends: Vec<usize>,
}

impl UsersFile {
    fn load(path: &PathBuf) -> Result<Self, String> {
        let text = std::fs::read(path).map_err(|e| format!("cannot read --users-file {}: {e}", path.display()))?;
        let mut joined = Vec::with_capacity(text.len());
        let mut ends = vec![0];
        for (number, line) in text.split(|&b| b == b'\n').enumerate() {
            if line.is_empty() {
                continue; // the final newline
            }
            if !line.starts_with(b"{") || !line.ends_with(b"}") {
                return Err(format!("{} line {} is not a compact JSON object", path.display(), number + 1));
            }
            if !joined.is_empty() {
                joined.push(b',');
            }
            joined.extend_from_slice(line);
            ends.push(joined.len());
        }
        Ok(Self { joined, ends })
    }

    fn users(&self) -> usize {
        self.ends.len() - 1
    }

    /// The expected body's length for `count`, if the file holds that many users.
    fn len(&self, count: u32) -> Option<usize> {
        self.ends.get(count as usize).map(|end| end + 2)
    }

    /// Whether `chunk`, found at offset `at` of a body, equals the expected body there.
    fn matches_at(&self, count: u32, at: usize, chunk: &[u8]) -> bool {
        let Some(&end) = self.ends.get(count as usize) else { return false };
        if at + chunk.len() > end + 2 {
            return false;
        }
        let mut i = 0;
        while i < chunk.len() {
            let offset = at + i;
            if offset == 0 || offset == end + 1 {
                if chunk[i] != if offset == 0 { b'[' } else { b']' } {
                    return false;
                }
                i += 1;
            } else {
                let n = (chunk.len() - i).min(end + 1 - offset);
                if chunk[i..i + n] != self.joined[offset - 1..offset - 1 + n] {
                    return false;
                }
                i += n;
            }
        }
        true
    }

    /// The first `len` bytes of the expected body for `count` (at most all of it).
    fn prefix(&self, count: u32, len: usize) -> Vec<u8> {
        let Some(&end) = self.ends.get(count as usize) else { return Vec::new() };
        let mut out = Vec::with_capacity(len);
        if len > 0 {
            out.push(b'[');
        }
        out.extend_from_slice(&self.joined[..len.saturating_sub(1).min(end)]);
        if len > end + 1 {
            out.push(b']');
        }
        out
    }
}

/// A body checked chunk by chunk as it arrives: a matching body is never collected or
/// copied (at 100,000 users that copy and its fresh pages cost the client more than
/// the kernel's own copy), and bytes are kept only once they differ, for the report.
struct BodyCheck<'a> {
    expected: &'a Expected,
    count: u32,
    /// Bytes seen so far that match the expected body.
    matched: usize,
    /// The body so far, once it is not (or cannot be) the expected one.
    kept: Option<Vec<u8>>,
}

impl<'a> BodyCheck<'a> {
    /// `keep_all`: collect every byte (an error answer, classified by its body).
    fn new(expected: &'a Expected, count: u32, keep_all: bool) -> Self {
        Self { expected, count, matched: 0, kept: keep_all.then(Vec::new) }
    }

    fn feed(&mut self, chunk: &[u8]) {
        match &mut self.kept {
            Some(kept) => kept.extend_from_slice(chunk),
            None if self.expected.matches_at(self.count, self.matched, chunk) => self.matched += chunk.len(),
            None => {
                let mut kept = self.expected.prefix(self.count, self.matched);
                kept.extend_from_slice(chunk);
                self.kept = Some(kept);
            }
        }
    }

    /// `Ok` if the body was exactly the expected one, else the whole body.
    fn finish(self) -> Result<(), Vec<u8>> {
        match self.kept {
            None if self.expected.len(self.count) == Some(self.matched) => Ok(()),
            None => Err(self.expected.prefix(self.count, self.matched)),
            Some(kept) => Err(kept),
        }
    }
}

/// What happened to the requests of one path.
#[derive(Debug, Default)]
struct PathStats {
    requests: u64,
    ok: u64,
    mismatches: u64,
    errors_by_status: BTreeMap<u16, u64>,
    /// `"<status> <error kind>"` for error bodies of the `{"error", "detail"}` shape.
    error_kinds: BTreeMap<String, u64>,
    non_json_errors: u64,
    transport_errors: BTreeMap<&'static str, u64>,
    /// Latency of ok responses, in microseconds.
    latencies_us: Vec<u64>,
    mismatch_examples: Vec<String>,
    transport_examples: Vec<String>,
}

impl PathStats {
    fn merge(&mut self, other: Self) {
        self.requests += other.requests;
        self.ok += other.ok;
        self.mismatches += other.mismatches;
        for (k, v) in other.errors_by_status {
            *self.errors_by_status.entry(k).or_default() += v;
        }
        for (k, v) in other.error_kinds {
            *self.error_kinds.entry(k).or_default() += v;
        }
        self.non_json_errors += other.non_json_errors;
        for (k, v) in other.transport_errors {
            *self.transport_errors.entry(k).or_default() += v;
        }
        self.latencies_us.extend(other.latencies_us);
        for example in other.mismatch_examples {
            if self.mismatch_examples.len() < MISMATCH_EXAMPLES {
                self.mismatch_examples.push(example);
            }
        }
        for example in other.transport_examples {
            if self.transport_examples.len() < TRANSPORT_EXAMPLES {
                self.transport_examples.push(example);
            }
        }
    }

    fn errors(&self) -> u64 {
        self.errors_by_status.values().sum()
    }

    fn transport(&self) -> u64 {
        self.transport_errors.values().sum()
    }
}

/// Totals for the progress line, shared by all workers.
#[derive(Debug, Default)]
struct Live {
    done: AtomicU64,
    ok: AtomicU64,
    mismatches: AtomicU64,
    failed: AtomicU64,
}

/// One endpoint: the name it was given and the URL it goes to.
#[derive(Debug, Clone)]
struct Target {
    name: String,
    url: String,
}

fn endpoint_path(name: &str) -> String {
    if name.starts_with('/') {
        name.to_owned()
    } else {
        format!("/api/users-via-{name}")
    }
}

/// Where the run stops: the first bound reached.
#[derive(Debug, Clone, Copy)]
struct Bounds {
    requests: Option<u64>,
    until: Option<Instant>,
}

#[derive(Debug)]
struct Run {
    client: reqwest::Client,
    targets: Vec<Target>,
    counts: CountSpec,
    expected: Expected,
}

impl Run {
    /// Sends request `index` of the stream `seed` and classifies its answer into `stats`.
    async fn one(&self, seed: u64, index: u64, stats: &mut [PathStats], live: &Live) {
        let which = (index % self.targets.len() as u64) as usize;
        let count = self.counts.draw(seed, index);
        let url = format!("{}?count={count}", self.targets[which].url);
        let s = &mut stats[which];
        s.requests += 1;
        let started = Instant::now();
        let answer = match self.client.get(&url).send().await {
            Ok(mut response) => {
                let status = response.status().as_u16();
                let mut check = BodyCheck::new(&self.expected, count, status != 200);
                loop {
                    match response.chunk().await {
                        Ok(Some(chunk)) => check.feed(&chunk),
                        Ok(None) => break Ok((status, check.finish())),
                        Err(e) => break Err(e),
                    }
                }
            }
            Err(e) => Err(e),
        };
        let elapsed_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        live.done.fetch_add(1, Ordering::Relaxed);
        match answer {
            Ok((200, Ok(()))) => {
                s.ok += 1;
                s.latencies_us.push(elapsed_us);
                live.ok.fetch_add(1, Ordering::Relaxed);
            }
            Ok((200, Err(body))) => {
                s.mismatches += 1;
                live.mismatches.fetch_add(1, Ordering::Relaxed);
                if s.mismatch_examples.len() < MISMATCH_EXAMPLES {
                    s.mismatch_examples.push(self.expected.describe_mismatch(count, &body));
                }
            }
            Ok((status, body)) => {
                let body = body.err().unwrap_or_default();
                live.failed.fetch_add(1, Ordering::Relaxed);
                *s.errors_by_status.entry(status).or_default() += 1;
                match error_kind(&body) {
                    Some(kind) => *s.error_kinds.entry(format!("{status} {kind}")).or_default() += 1,
                    None => s.non_json_errors += 1,
                }
            }
            Err(e) => {
                live.failed.fetch_add(1, Ordering::Relaxed);
                *s.transport_errors.entry(transport_kind(&e)).or_default() += 1;
                if s.transport_examples.len() < TRANSPORT_EXAMPLES {
                    s.transport_examples.push(format!("count {count}: {}", error_chain(&e)));
                }
            }
        }
    }

    /// Runs `concurrency` workers until `bounds`; returns per-path stats and the wall time.
    async fn phase(
        self: &Arc<Self>,
        seed: u64,
        concurrency: u64,
        bounds: Bounds,
        live: &Arc<Live>,
    ) -> (Vec<PathStats>, f64) {
        let next = Arc::new(AtomicU64::new(0));
        let started = Instant::now();
        let mut workers = Vec::new();
        for _ in 0..concurrency {
            let (run, next, live) = (Arc::clone(self), Arc::clone(&next), Arc::clone(live));
            workers.push(tokio::spawn(async move {
                let mut stats: Vec<PathStats> = run.targets.iter().map(|_| PathStats::default()).collect();
                loop {
                    if bounds.until.is_some_and(|t| Instant::now() >= t) {
                        break;
                    }
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    if bounds.requests.is_some_and(|n| index >= n) {
                        break;
                    }
                    run.one(seed, index, &mut stats, &live).await;
                }
                stats
            }));
        }
        let mut total: Vec<PathStats> = self.targets.iter().map(|_| PathStats::default()).collect();
        for worker in workers {
            match worker.await {
                Ok(stats) => total.iter_mut().zip(stats).for_each(|(t, s)| t.merge(s)),
                Err(e) => eprintln!("shmbridge_load: a worker failed: {e}"),
            }
        }
        (total, started.elapsed().as_secs_f64())
    }
}

/// The `error` field of a `{"error": str, "detail": str}` body.
fn error_kind(body: &[u8]) -> Option<String> {
    let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(body) else { return None };
    match (map.len(), map.get("error"), map.get("detail")) {
        (2, Some(Value::String(kind)), Some(Value::String(_))) => Some(kind.clone()),
        _ => None,
    }
}

fn transport_kind(e: &reqwest::Error) -> &'static str {
    if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connect"
    } else if e.is_body() || e.is_decode() {
        "body"
    } else if e.is_request() {
        "request"
    } else {
        "other"
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn report_path(target: &Target, s: &mut PathStats, secs: f64) -> Value {
    s.latencies_us.sort_unstable();
    let lat = &s.latencies_us;
    json!({
        "path": endpoint_path(&target.name),
        "requests": s.requests,
        "ok": s.ok,
        "mismatches": s.mismatches,
        "errors": s.errors(),
        "errors_by_status": s.errors_by_status.iter().map(|(k, v)| (k.to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
        "error_kinds": s.error_kinds,
        "non_json_errors": s.non_json_errors,
        "transport_errors": s.transport(),
        "transport_errors_by_kind": s.transport_errors,
        "requests_per_sec": if secs > 0.0 { s.requests as f64 / secs } else { 0.0 },
        "latency_us": {
            "of": "ok responses",
            "p50": percentile(lat, 50.0),
            "p90": percentile(lat, 90.0),
            "p99": percentile(lat, 99.0),
            "max": lat.last().copied().unwrap_or(0),
        },
        "mismatch_examples": s.mismatch_examples,
        "transport_examples": s.transport_examples,
    })
}

fn report(targets: &[Target], mut stats: Vec<PathStats>, secs: f64) -> Value {
    let mut paths = serde_json::Map::new();
    for (target, s) in targets.iter().zip(stats.iter_mut()) {
        paths.insert(target.name.clone(), report_path(target, s, secs));
    }
    let sum = |f: fn(&PathStats) -> u64| stats.iter().map(f).sum::<u64>();
    json!({
        "elapsed_secs": secs,
        "requests": sum(|s| s.requests),
        "ok": sum(|s| s.ok),
        "mismatches": sum(|s| s.mismatches),
        "errors": sum(PathStats::errors),
        "non_json_errors": sum(|s| s.non_json_errors),
        "transport_errors": sum(PathStats::transport),
        "paths": paths,
    })
}

fn print_table(label: &str, report: &Value) {
    let n = |v: &Value| v.as_u64().unwrap_or(0);
    println!(
        "{label}: {} requests in {:.2} s: ok {}, mismatches {}, errors {} (non-JSON {}), transport errors {}",
        n(&report["requests"]),
        report["elapsed_secs"].as_f64().unwrap_or(0.0),
        n(&report["ok"]),
        n(&report["mismatches"]),
        n(&report["errors"]),
        n(&report["non_json_errors"]),
        n(&report["transport_errors"])
    );
    let Some(paths) = report["paths"].as_object() else { return };
    println!(
        "  {:<28} {:>8} {:>8} {:>6} {:>7} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "path", "requests", "ok", "mism", "errors", "req/s", "p50 µs", "p90 µs", "p99 µs", "max µs"
    );
    for p in paths.values() {
        let lat = &p["latency_us"];
        println!(
            "  {:<28} {:>8} {:>8} {:>6} {:>7} {:>9.1} {:>9} {:>9} {:>9} {:>9}",
            p["path"].as_str().unwrap_or("?"),
            n(&p["requests"]),
            n(&p["ok"]),
            n(&p["mismatches"]),
            n(&p["errors"]) + n(&p["transport_errors"]),
            p["requests_per_sec"].as_f64().unwrap_or(0.0),
            n(&lat["p50"]),
            n(&lat["p90"]),
            n(&lat["p99"]),
            n(&lat["max"])
        );
        for (key, label) in [
            ("error_kinds", "errors"),
            ("transport_errors_by_kind", "transport"),
            ("mismatch_examples", "MISMATCH"),
            ("transport_examples", "transport example"),
        ] {
            match &p[key] {
                Value::Object(map) if !map.is_empty() => println!("    {label}: {}", p[key]),
                Value::Array(items) => items.iter().for_each(|item| println!("    {label}: {item}")),
                _ => {}
            }
        }
    }
}

fn progress_task(live: Arc<Live>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let started = Instant::now();
        let mut last = 0;
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.tick().await;
        loop {
            tick.tick().await;
            let done = live.done.load(Ordering::Relaxed);
            eprintln!(
                "[{:>5.1} s] done {done} ok {} mismatches {} failed {} ({} req/s)",
                started.elapsed().as_secs_f64(),
                live.ok.load(Ordering::Relaxed),
                live.mismatches.load(Ordering::Relaxed),
                live.failed.load(Ordering::Relaxed),
                done - last
            );
            last = done;
        }
    })
}

fn secs(value: f64, flag: &str) -> Result<Duration, String> {
    Duration::try_from_secs_f64(value).map_err(|_| format!("{flag} must be a number of seconds >= 0, got {value}"))
}

async fn run(args: Args) -> Result<bool, String> {
    if args.paths.iter().any(|p| p.trim().is_empty()) || args.paths.is_empty() {
        return Err("--paths must name at least one endpoint, with no empty names".into());
    }
    let base = args.url.trim_end_matches('/');
    let targets: Vec<Target> = args
        .paths
        .iter()
        .map(|name| Target { name: name.clone(), url: format!("{base}{}", endpoint_path(name)) })
        .collect();
    let client = reqwest::Client::builder()
        .timeout(secs(args.timeout_secs, "--timeout-secs")?)
        .pool_max_idle_per_host(usize::try_from(args.concurrency).unwrap_or(usize::MAX))
        .tcp_nodelay(true)
        .http1_only()
        .no_proxy()
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
    let expected = match (&args.users_file, &args.expected_url) {
        (Some(path), _) => {
            let file = UsersFile::load(path)?;
            if file.len(args.counts.max()).is_none() {
                return Err(format!(
                    "--users-file {} holds {} users, but --counts goes up to {}",
                    path.display(),
                    file.users(),
                    args.counts.max()
                ));
            }
            Expected::Users(file)
        }
        (None, Some(url)) => Expected::fetch(&client, url, &args.counts).await?,
        (None, None) => return Err("give --users-file or --expected-url".into()),
    };
    let duration = args.duration_secs.map(|d| secs(d, "--duration-secs")).transpose()?;
    let warmup = secs(args.warmup_secs, "--warmup-secs")?;
    let run = Arc::new(Run { client, targets, counts: args.counts.clone(), expected });

    let live = Arc::new(Live::default());
    let progress = args.progress.then(|| progress_task(Arc::clone(&live)));
    let warm = if warmup.is_zero() {
        None
    } else {
        let bounds = Bounds { requests: None, until: Some(Instant::now() + warmup) };
        // Warm-up draws its counts from another stream, so the measured run is the same
        // with or without it.
        Some(run.phase(args.seed ^ 0x5741_524D, args.concurrency, bounds, &live).await)
    };
    let bounds = Bounds { requests: args.requests, until: duration.map(|d| Instant::now() + d) };
    let (stats, elapsed) = run.phase(args.seed, args.concurrency, bounds, &live).await;
    if let Some(task) = progress {
        task.abort();
    }

    let mut out = report(&run.targets, stats, elapsed);
    let mut mismatches = out["mismatches"].as_u64().unwrap_or(0);
    out["config"] = json!({
        "url": args.url,
        "paths": args.paths,
        "counts": args.counts.to_string(),
        "seed": args.seed,
        "concurrency": args.concurrency,
        "requests": args.requests,
        "duration_secs": args.duration_secs,
        "warmup_secs": args.warmup_secs,
    });
    print_table("run", &out);
    if let Some((warm_stats, warm_secs)) = warm {
        let warm_report = report(&run.targets, warm_stats, warm_secs);
        mismatches += warm_report["mismatches"].as_u64().unwrap_or(0);
        print_table("warm-up", &warm_report);
        out["warmup"] = warm_report;
    }
    out["total_mismatches"] = json!(mismatches);
    if let Some(path) = &args.json_out {
        let text = serde_json::to_vec_pretty(&out).map_err(|e| format!("cannot encode the report: {e}"))?;
        std::fs::write(path, text).map_err(|e| format!("cannot write --json-out {}: {e}", path.display()))?;
    }
    if mismatches > 0 {
        println!("FAIL: {mismatches} response(s) were 200 with a wrong body");
    }
    Ok(mismatches == 0)
}

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("shmbridge_load: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(run(args)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(message) => {
            eprintln!("shmbridge_load: {message}");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expected(users: &[&str]) -> Expected {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users.jsonl");
        std::fs::write(&path, users.iter().map(|u| format!("{u}\n")).collect::<String>()).unwrap();
        Expected::Users(UsersFile::load(&path).unwrap())
    }

    #[test]
    fn expected_bodies_are_prefixes_of_the_joined_lines() {
        let e = expected(&[r#"{"id":1}"#, r#"{"id":2}"#, r#"{"id":3}"#]);
        let Expected::Users(file) = &e else { unreachable!() };
        assert_eq!(file.users(), 3);
        assert!(e.matches(0, b"[]"));
        assert!(e.matches(2, br#"[{"id":1},{"id":2}]"#));
        assert!(!e.matches(2, br#"[{"id":1},{"id":3}]"#));
        assert!(!e.matches(2, br#"[{"id":1}]"#));
        assert!(!e.matches(1, br#"[{"id":1}] "#));
        assert!(!e.matches(4, b"[]"), "a count beyond the file never matches");
        assert!(e.describe_mismatch(2, br#"[{"id":1},{"id":3}]"#).contains("byte 16"));
        assert_eq!(e.len(3), Some(br#"[{"id":1},{"id":2},{"id":3}]"#.len()));
    }

    #[test]
    fn bodies_are_checked_whatever_their_chunks() {
        let e = expected(&[r#"{"id":1}"#, r#"{"id":2}"#, r#"{"id":3}"#]);
        let good = br#"[{"id":1},{"id":2},{"id":3}]"#;
        let bad = br#"[{"id":1},{"id":2},{"id":4}]"#;
        for cut in 0..=good.len() {
            for cut2 in cut..=good.len() {
                let feed = |body: &[u8]| {
                    let mut check = BodyCheck::new(&e, 3, false);
                    for piece in [&body[..cut], &body[cut..cut2], &body[cut2..]] {
                        check.feed(piece);
                    }
                    check.finish()
                };
                assert_eq!(feed(good), Ok(()));
                assert_eq!(feed(bad), Err(bad.to_vec()), "the kept body is the body, cuts {cut} {cut2}");
                assert_eq!(feed(&good[..cut2]), if cut2 == good.len() { Ok(()) } else { Err(good[..cut2].to_vec()) });
            }
        }
        let mut longer = BodyCheck::new(&e, 2, false);
        longer.feed(br#"[{"id":1},{"id":2}]"#);
        longer.feed(b" ");
        assert_eq!(longer.finish(), Err(br#"[{"id":1},{"id":2}] "#.to_vec()));
        let mut error = BodyCheck::new(&e, 2, true);
        error.feed(br#"{"error":"x","#);
        error.feed(br#""detail":"y"}"#);
        assert_eq!(error.finish(), Err(br#"{"error":"x","detail":"y"}"#.to_vec()));
    }

    #[test]
    fn fetched_bodies_are_compared_whole() {
        let e = Expected::Fetched(BTreeMap::from([(2, br#"[{"a":[1.5]},{}]"#.to_vec()), (0, b"[]".to_vec())]));
        assert!(e.matches(2, br#"[{"a":[1.5]},{}]"#));
        assert!(e.matches(0, b"[]"));
        assert!(!e.matches(2, br#"[{"a":[1.5]}]"#));
        assert!(!e.matches(2, br#"[{"a":[1.5]},{}] "#));
        assert!(!e.matches(1, b"[]"), "a count never fetched never matches");
        let mut pieces = BodyCheck::new(&e, 2, false);
        for piece in [&br#"[{"a""#[..], br#":[1.5]}"#, br#",{}]"#] {
            pieces.feed(piece);
        }
        assert_eq!(pieces.finish(), Ok(()));
        assert!(e.describe_mismatch(2, br#"[{"a":[2.5]},{}]"#).contains("byte 7"));
        assert!(e.describe_mismatch(1, b"[]").contains("no expected body"));
    }

    #[test]
    fn count_specs_parse_and_draw_within_bounds() {
        let range = CountSpec::parse("0-10000").unwrap();
        let draws: Vec<u32> = (0..20_000).map(|i| range.draw(1, i)).collect();
        assert!(draws.iter().all(|&c| c <= 10_000));
        assert!(draws.contains(&0), "count 0 comes up");
        assert!(draws.iter().any(|&c| c > 5000), "large counts come up");
        let small = draws.iter().filter(|&&c| c < 100).count();
        assert!(small > draws.len() / 3, "log-uniform: about half the draws are below 100 ({small})");
        assert_eq!(range.draw(7, 42), range.draw(7, 42), "reproducible");
        let list = CountSpec::parse("2,100,1000").unwrap();
        assert!((0..100).all(|i| [2, 100, 1000].contains(&list.draw(3, i))));
        assert!(matches!(CountSpec::parse("5"), Ok(CountSpec::List(v)) if v == [5]));
        assert!(CountSpec::parse("9-3").is_err());
        assert!(CountSpec::parse("x").is_err());
        assert!(CountSpec::parse("1,,2").is_err());
    }

    #[test]
    fn error_bodies_are_classified() {
        assert_eq!(error_kind(br#"{"error":"no_free_slot","detail":"x"}"#).as_deref(), Some("no_free_slot"));
        assert_eq!(error_kind(br#"{"error":"x"}"#), None);
        assert_eq!(error_kind(br#"{"error":"x","detail":"y","z":1}"#), None);
        assert_eq!(error_kind(b"Internal Server Error"), None);
    }

    #[test]
    fn percentiles_use_nearest_rank() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 50.0), 50);
        assert_eq!(percentile(&v, 99.0), 99);
        assert_eq!(percentile(&v, 100.0), 100);
        assert_eq!(percentile(&[], 50.0), 0);
        assert_eq!(endpoint_path("shm"), "/api/users-via-shm");
        assert_eq!(endpoint_path("/healthz"), "/healthz");
    }
}
