//! Handoff microbench: how long one request for a payload takes from the Rust side,
//! through the Python producer's native signal listener, back to a private copy.
//!
//! One handoff, timed on the Rust side:
//! 1. send a call frame (wire version 2: handler `users`, parameter `count`, as the
//!    gateway's users path) over the Unix socket (the gateway's `UdsPool`, or a
//!    blocking `std` socket with the core's frame codec, `shmbridge::wire`);
//! 2. the producer's Rust listener thread takes the GIL and calls the Python handler,
//!    which writes a cached bytes object into the slot (`Channel.write_bytes`);
//! 3. the response frame comes back;
//! 4. `ChannelReader::read_slot` copies the slot out into a reused private `Vec`, checking
//!    the request id and the checksum under the seqlock.
//!
//! The epoch, slot and length of each answer are checked and every copy is compared with
//! the expected bytes, outside the timed part. Slot 0 is used every time, as the gateway's
//! LIFO slot pool does at concurrency 1. Clients and sizes are interleaved in blocks.
//!
//! Starts `scripts/handoff_producer.py` itself (`--python`, `--script`); the producer's
//! channel lives in a temp directory under /dev/shm.
//!
//! ```text
//! cargo run --release -p shmbridge_tools --example handoff -- --json-out results/tmp/handoff.json
//! ```

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::os::unix::net::UnixStream as StdUnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Arc;
use std::time::Instant;

use clap::Parser;
use rust_gateway::signal::UdsPool;
use rust_gateway::Settings;
use shmbridge::wire::{Request, ResponseHead, Status, RESPONSE_HEAD_LEN};
use shmbridge::ChannelReader;

/// The slot every handoff uses.
const SLOT: u32 = 0;
/// Must match `CHUNK` in scripts/handoff_producer.py.
const CHUNK: &[u8] = br#"{"id":1,"first_name":"Ada","email":"ada@example.com","age":36},"#;

#[derive(Parser, Debug)]
#[command(about = "Handoff microbench: Rust asks, Python writes a slot, Rust copies it out")]
struct Args {
    /// Timed handoffs per client and size (after the warm-up).
    #[arg(long, default_value_t = 50_000)]
    iterations: usize,
    /// Untimed handoffs per client and size before the first block.
    #[arg(long, default_value_t = 2_000)]
    warmup: usize,
    /// Blocks the iterations are split into; clients and sizes alternate between blocks.
    #[arg(long, default_value_t = 10)]
    blocks: usize,
    /// Payload sizes in bytes.
    #[arg(long, value_delimiter = ',', default_value = "250000,2")]
    sizes: Vec<usize>,
    /// Clients: `gateway` (rust_gateway's UdsPool on a tokio runtime, as in the gateway)
    /// and `blocking` (a std socket and the core's frame codec, no async runtime).
    #[arg(long, value_delimiter = ',', default_value = "gateway,blocking")]
    clients: Vec<String>,
    /// Python interpreter that can import shmbridge.
    #[arg(long, default_value = ".venv/bin/python")]
    python: PathBuf,
    /// The producer side.
    #[arg(long, default_value = "scripts/handoff_producer.py")]
    script: PathBuf,
    /// Write the results as JSON here.
    #[arg(long)]
    json_out: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Client {
    Gateway,
    Blocking,
}

impl Client {
    fn parse(name: &str) -> Result<Self, String> {
        match name {
            "gateway" => Ok(Client::Gateway),
            "blocking" => Ok(Client::Blocking),
            other => Err(format!("unknown client {other:?} (gateway, blocking)")),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Client::Gateway => "gateway UdsPool, tokio",
            Client::Blocking => "std socket, blocking",
        }
    }

    fn key(self) -> &'static str {
        match self {
            Client::Gateway => "gateway",
            Client::Blocking => "blocking",
        }
    }
}

/// The producer process; closing its stdin ends it.
struct Producer {
    child: Child,
    stdin: Option<ChildStdin>,
    channel: PathBuf,
    socket: PathBuf,
}

impl Producer {
    fn start(python: &Path, script: &Path, sizes: &[usize]) -> Self {
        let sizes = sizes.iter().map(ToString::to_string).collect::<Vec<_>>().join(",");
        let mut child = Command::new(python)
            .arg(script)
            .args(["--sizes", &sizes])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {} {}: {e}", python.display(), script.display()));
        let stdout = child.stdout.take().expect("the producer's stdout is piped");
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).expect("reading the producer's ready line");
        let ready: serde_json::Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("the producer's ready line is not JSON ({e}): {line:?}"));
        let path = |key: &str| {
            PathBuf::from(ready[key].as_str().unwrap_or_else(|| panic!("the ready line has no {key:?}: {line:?}")))
        };
        let (channel, socket) = (path("channel"), path("socket"));
        let stdin = child.stdin.take();
        Self { child, stdin, channel, socket }
    }
}

impl Drop for Producer {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.wait();
    }
}

/// What a handoff must bring back.
struct Expected {
    epoch: u64,
    payload: Vec<u8>,
}

fn filler(size: usize) -> Vec<u8> {
    CHUNK.iter().copied().cycle().take(size).collect()
}

/// Checks an answer and the private copy (outside the timed part).
fn check(expected: &Expected, epoch: u64, slot: u32, length: u64, out: &[u8]) {
    assert_eq!(epoch, expected.epoch, "answer for another channel file");
    assert_eq!(slot, SLOT, "answer for another slot");
    assert_eq!(length, expected.payload.len() as u64, "answer with another length");
    assert!(out == expected.payload.as_slice(), "the copy differs from the payload written");
}

/// One blocking handoff over a std socket; returns (epoch, slot, length) of the answer.
fn blocking_request(stream: &mut StdUnixStream, size: usize, request_id: u64) -> (u64, u32, u64) {
    // The same call as the gateway's users path: handler `users`, parameter `count`.
    let request = Request {
        slot: SLOT,
        timeout_ms: 10_000,
        request_id,
        name: "users".to_owned(),
        params: vec![("count".to_owned(), size.to_string())],
    };
    let frame = request.encode().expect("a valid call");
    stream.write_all(&frame).expect("sending the request frame");
    let mut head = [0u8; RESPONSE_HEAD_LEN];
    stream.read_exact(&mut head).expect("reading the response frame");
    let head = ResponseHead::decode(&head).expect("a valid response frame");
    let mut message = vec![0u8; head.message_len];
    stream.read_exact(&mut message).expect("reading the response message");
    assert!(
        head.status == Status::Ok && head.request_id == request_id,
        "the producer refused request {request_id}: {:?} {}",
        head.status,
        String::from_utf8_lossy(&message)
    );
    (head.epoch, head.slot, head.length)
}

struct Bench {
    reader: Arc<ChannelReader>,
    settings: Arc<Settings>,
    pool: Arc<UdsPool>,
    blocking: StdUnixStream,
    next_request_id: u64,
}

impl Bench {
    /// `n` handoffs of the expected size with `client`; their durations in nanoseconds.
    fn run(
        &mut self,
        runtime: &tokio::runtime::Runtime,
        client: Client,
        expected: &Arc<Expected>,
        n: usize,
    ) -> Samples {
        let first_id = self.next_request_id + 1;
        self.next_request_id += n as u64;
        match client {
            Client::Blocking => {
                let size = expected.payload.len();
                let mut out = Vec::with_capacity(size);
                let mut samples = Samples::with_capacity(n);
                for request_id in first_id..first_id + n as u64 {
                    let start = Instant::now();
                    let (epoch, slot, length) = blocking_request(&mut self.blocking, size, request_id);
                    let answered = Instant::now();
                    self.reader.read_slot(SLOT, Some(request_id), &mut out).expect("reading the slot");
                    samples.push(start, answered);
                    check(expected, epoch, slot, length, &out);
                }
                samples
            }
            Client::Gateway => {
                let (reader, pool, settings, expected) =
                    (self.reader.clone(), self.pool.clone(), self.settings.clone(), expected.clone());
                // Like a gateway handler: the loop runs as a task on a runtime worker.
                let task = runtime.spawn(async move {
                    let size = expected.payload.len();
                    let count = u32::try_from(size).expect("payload sizes fit the frame's count");
                    let mut out = Vec::with_capacity(size);
                    let mut samples = Samples::with_capacity(n);
                    for request_id in first_id..first_id + n as u64 {
                        let start = Instant::now();
                        let written = pool
                            .write_users(&settings, count, SLOT, request_id)
                            .await
                            .unwrap_or_else(|failure| panic!("request {request_id} failed: {:?}", failure.error));
                        let answered = Instant::now();
                        reader.read_slot(SLOT, Some(request_id), &mut out).expect("reading the slot");
                        samples.push(start, answered);
                        check(&expected, written.epoch, written.slot, written.length, &out);
                    }
                    samples
                });
                runtime.block_on(task).expect("the gateway client's task")
            }
        }
    }
}

/// Durations in nanoseconds: whole handoffs, and their last step (the slot read).
#[derive(Default)]
struct Samples {
    total: Vec<u64>,
    read: Vec<u64>,
}

impl Samples {
    fn with_capacity(n: usize) -> Self {
        Self { total: Vec::with_capacity(n), read: Vec::with_capacity(n) }
    }

    /// One handoff that started at `start` and had its answer at `answered`: ends now.
    fn push(&mut self, start: Instant, answered: Instant) {
        let end = Instant::now();
        self.total.push(nanos(end - start));
        self.read.push(nanos(end - answered));
    }
}

fn nanos(duration: std::time::Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

fn sorted(samples: &[u64]) -> Vec<u64> {
    let mut copy = samples.to_vec();
    copy.sort_unstable();
    copy
}

/// The value at quantile `q` of sorted `samples` (nearest rank).
fn quantile(sorted: &[u64], q: f64) -> u64 {
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn us(ns: u64) -> f64 {
    ns as f64 / 1_000.0
}

fn main() {
    let args = Args::parse();
    let clients: Vec<Client> =
        args.clients.iter().map(|name| Client::parse(name).unwrap_or_else(|e| panic!("{e}"))).collect();
    assert!(args.blocks > 0 && args.iterations >= args.blocks, "--iterations must be at least --blocks");
    let producer = Producer::start(&args.python, &args.script, &args.sizes);
    let reader = ChannelReader::open(&producer.channel).expect("opening the producer's channel file");
    let expected: Vec<Arc<Expected>> =
        args.sizes.iter().map(|&size| Arc::new(Expected { epoch: reader.epoch(), payload: filler(size) })).collect();
    let settings = Settings::try_parse_from(["handoff"]).expect("the gateway's default settings");
    let workers = std::thread::available_parallelism().map_or(2, usize::from);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let blocking = StdUnixStream::connect(&producer.socket).expect("connecting to the producer's socket");
    let pool = UdsPool::new(producer.socket.clone(), settings.signal_spin());
    let mut bench = Bench {
        reader: Arc::new(reader),
        settings: Arc::new(settings),
        pool: Arc::new(pool),
        blocking,
        next_request_id: 0,
    };

    for &client in &clients {
        for exp in &expected {
            bench.run(&runtime, client, exp, args.warmup);
        }
    }
    let per_block = args.iterations / args.blocks;
    let cells: Vec<(Client, usize)> = clients.iter().flat_map(|&c| (0..expected.len()).map(move |e| (c, e))).collect();
    let mut samples: Vec<Samples> = (0..cells.len()).map(|_| Samples::with_capacity(args.iterations)).collect();
    let mut block_p50s: Vec<Vec<u64>> = vec![Vec::new(); cells.len()];
    for block in 0..args.blocks {
        // Rotate the order each block so no cell always runs first.
        for k in 0..cells.len() {
            let index = (block + k) % cells.len();
            let (client, e) = cells[index];
            let block_samples = bench.run(&runtime, client, &expected[e], per_block);
            block_p50s[index].push(quantile(&sorted(&block_samples.total), 0.5));
            samples[index].total.extend_from_slice(&block_samples.total);
            samples[index].read.extend_from_slice(&block_samples.read);
        }
    }
    drop(producer);

    println!(
        "handoff: {} timed iterations per row in {} blocks after {} warm-up; {} cores",
        per_block * args.blocks,
        args.blocks,
        args.warmup,
        workers
    );
    println!(
        "{:<24} {:>7} {:>8} {:>8} {:>8} {:>8} {:>17} {:>10}",
        "client", "bytes", "p50 µs", "p90 µs", "p99 µs", "max µs", "block p50 min-max", "read p50"
    );
    let mut rows = Vec::new();
    for (index, &(client, e)) in cells.iter().enumerate() {
        let total = sorted(&samples[index].total);
        let read = sorted(&samples[index].read);
        let blocks = &block_p50s[index];
        let (bmin, bmax) = (blocks.iter().copied().min().unwrap_or(0), blocks.iter().copied().max().unwrap_or(0));
        let size = expected[e].payload.len();
        let (p50, p90, p99, max) =
            (quantile(&total, 0.5), quantile(&total, 0.9), quantile(&total, 0.99), quantile(&total, 1.0));
        let (read_p50, read_p99) = (quantile(&read, 0.5), quantile(&read, 0.99));
        println!(
            "{:<24} {:>7} {:>8.1} {:>8.1} {:>8.1} {:>8.1} {:>8.1}-{:<8.1} {:>10.1}",
            client.name(),
            size,
            us(p50),
            us(p90),
            us(p99),
            us(max),
            us(bmin),
            us(bmax),
            us(read_p50)
        );
        rows.push(serde_json::json!({
            "client": client.key(),
            "client_name": client.name(),
            "payload_bytes": size,
            "iterations": total.len(),
            "p50_us": us(p50),
            "p90_us": us(p90),
            "p99_us": us(p99),
            "max_us": us(max),
            "block_p50_min_us": us(bmin),
            "block_p50_max_us": us(bmax),
            "read_p50_us": us(read_p50),
            "read_p99_us": us(read_p99),
        }));
    }
    if let Some(path) = &args.json_out {
        let doc = serde_json::json!({
            "iterations": per_block * args.blocks,
            "warmup": args.warmup,
            "blocks": args.blocks,
            "cores": workers,
            "rows": rows,
        });
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("creating the JSON output's directory");
        }
        let text = serde_json::to_string_pretty(&doc).expect("results serialize");
        std::fs::write(path, text + "\n").unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    }
}
