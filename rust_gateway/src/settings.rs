//! The gateway's settings: each one a command-line flag and an environment variable.
//!
//! A flag wins over its variable, which wins over the default shown by `--help`.
//! A bad value stops the gateway at start with a message naming the flag.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};

/// How much the gateway checks a payload before serving it (both paths alike).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Validation {
    /// Parse every user and check the count and the ids 1..=count.
    Full,
    /// Serve the bytes as they came (isolates the transport in benchmarks).
    None,
}

/// How a shared-memory request asks the producer for its write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SignalMode {
    /// `GET /api/write-to-shm` over the pooled HTTP client.
    Http,
    /// A 32-byte frame over a pooled Unix socket `<shm-dir>/<channel>.sock`.
    Uds,
    /// `uds` while the socket exists, else `http` (checked per request).
    Auto,
}

/// Format of the log lines written to stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Parser)]
#[command(
    name = "rust_gateway",
    version,
    about = "shmbridge gateway: serves the producer's users over REST (/api/users-via-api) \
             and through a shared-memory channel (/api/users-via-shm, /api/users-via-snapshot)"
)]
pub struct Settings {
    /// Address to listen on.
    #[arg(long, env = "SHMBRIDGE_GATEWAY_HOST", default_value = "127.0.0.1", value_parser = non_empty)]
    pub host: String,

    /// TCP port to listen on (0 picks a free one; the real port is printed).
    #[arg(long, env = "SHMBRIDGE_GATEWAY_PORT", default_value_t = 8080)]
    pub port: u16,

    /// Base URL of the producer (plain http).
    #[arg(long, env = "SHMBRIDGE_PRODUCER_URL", default_value = "http://127.0.0.1:5000", value_parser = producer_url)]
    pub producer_url: String,

    /// Directory holding the channel file.
    #[arg(long, env = "SHMBRIDGE_SHM_DIR", default_value = "shared_memory_dir", value_name = "DIR")]
    pub shm_dir: PathBuf,

    /// Channel name: the file read is `<shm-dir>/<channel>.shm`.
    #[arg(long, env = "SHMBRIDGE_CHANNEL", default_value = "users", value_parser = channel_name)]
    pub channel: String,

    /// Time allowed for each call to the producer, in milliseconds (beyond it: 504).
    #[arg(long, env = "SHMBRIDGE_PRODUCER_TIMEOUT_MS", default_value_t = 10_000, value_name = "MS",
          value_parser = clap::value_parser!(u64).range(1..=3_600_000))]
    pub producer_timeout_ms: u64,

    /// Time a shared-memory request may wait for a free slot, in milliseconds (beyond it: 503).
    #[arg(long, env = "SHMBRIDGE_SLOT_WAIT_TIMEOUT_MS", default_value_t = 5_000, value_name = "MS",
          value_parser = clap::value_parser!(u64).range(0..=3_600_000))]
    pub slot_wait_timeout_ms: u64,

    /// Largest answer, in bytes, taken from the producer over HTTP (the REST path's
    /// payload); a larger one is refused (507) before it is all read. The default is the
    /// producer's default slot capacity, the limit the shared-memory paths have.
    #[arg(long, env = "SHMBRIDGE_MAX_PAYLOAD_BYTES", default_value_t = 32 << 20, value_name = "BYTES",
          value_parser = clap::value_parser!(u64).range(1024..))]
    pub max_payload_bytes: u64,

    /// Largest `count` a client may ask for.
    #[arg(long, env = "SHMBRIDGE_MAX_COUNT", default_value_t = 100_000, value_name = "N")]
    pub max_count: u32,

    /// Payload validation on every path: `full` parses every user, `none` skips it.
    #[arg(long, env = "SHMBRIDGE_VALIDATION", value_enum, default_value_t = Validation::Full)]
    pub validation: Validation,

    /// How /api/users-via-shm asks the producer for a write: `auto` uses the Unix
    /// socket `<shm-dir>/<channel>.sock` when it exists, else HTTP.
    #[arg(long, env = "SHMBRIDGE_SIGNAL", value_enum, default_value_t = SignalMode::Auto)]
    pub signal: SignalMode,

    /// How long a lone shared-memory request polls the signal socket for the producer's
    /// answer before it sleeps, in microseconds (0: never poll). Saves waking an idle CPU,
    /// which is slow on virtual machines; only when no other signal is in flight and the
    /// last answer came within this time.
    #[arg(long, env = "SHMBRIDGE_SIGNAL_SPIN_US", default_value_t = 250, value_name = "US",
          value_parser = clap::value_parser!(u64).range(0..=shmbridge::poll::MAX_SPIN_US))]
    pub signal_spin_us: u64,

    /// Log line format (logs go to stderr).
    #[arg(long, env = "SHMBRIDGE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Log filter, e.g. `info` or `rust_gateway=debug,info` (RUST_LOG, when set, wins).
    #[arg(long, env = "SHMBRIDGE_LOG_LEVEL", default_value = "info", value_parser = log_filter, value_name = "FILTER")]
    pub log_level: String,
}

/// Setting names as a user types them, for error messages.
pub const PRODUCER_TIMEOUT_SETTING: &str = "--producer-timeout-ms / SHMBRIDGE_PRODUCER_TIMEOUT_MS";
pub const SLOT_WAIT_SETTING: &str = "--slot-wait-timeout-ms / SHMBRIDGE_SLOT_WAIT_TIMEOUT_MS";
pub const MAX_COUNT_SETTING: &str = "--max-count / SHMBRIDGE_MAX_COUNT";
pub const MAX_PAYLOAD_SETTING: &str = "--max-payload-bytes / SHMBRIDGE_MAX_PAYLOAD_BYTES";
/// The producer's setting that publishes snapshots (named in the gateway's hints).
pub const PRODUCER_SNAPSHOT_SETTING: &str = "--snapshot / SHMBRIDGE_SNAPSHOT=1";

/// Extra time a request may take beyond its slot wait and producer call before the
/// gateway gives up on it (reading and validating 30 MB takes well under a second).
const REQUEST_MARGIN: Duration = Duration::from_secs(30);

impl Settings {
    #[must_use]
    pub fn producer_timeout(&self) -> Duration {
        Duration::from_millis(self.producer_timeout_ms)
    }

    #[must_use]
    pub fn signal_spin(&self) -> Duration {
        Duration::from_micros(self.signal_spin_us)
    }

    #[must_use]
    pub fn slot_wait_timeout(&self) -> Duration {
        Duration::from_millis(self.slot_wait_timeout_ms)
    }

    /// How long a slot whose producer call timed out stays out of the pool: a late
    /// write may still land in it.
    #[must_use]
    pub fn quarantine(&self) -> Duration {
        self.producer_timeout() * 2
    }

    /// Backstop for one whole request, so no request (and no shutdown) hangs.
    #[must_use]
    pub fn request_deadline(&self) -> Duration {
        self.slot_wait_timeout() + self.producer_timeout() + REQUEST_MARGIN
    }

    /// `<shm-dir>/<channel>.shm`.
    #[must_use]
    pub fn channel_path(&self) -> PathBuf {
        self.shm_dir.join(shmbridge::channel_file_name(&self.channel))
    }

    /// `<shm-dir>/<channel>.sock`: the producer's signal socket.
    #[must_use]
    pub fn socket_path(&self) -> PathBuf {
        self.shm_dir.join(shmbridge::socket_file_name(&self.channel))
    }
}

fn non_empty(raw: &str) -> Result<String, String> {
    if raw.trim().is_empty() {
        return Err("must not be empty".into());
    }
    Ok(raw.to_owned())
}

/// An `http://host[:port][/base]` URL, stored without a trailing slash.
fn producer_url(raw: &str) -> Result<String, String> {
    let url = reqwest::Url::parse(raw).map_err(|e| format!("not a URL ({e})"))?;
    if url.scheme() != "http" {
        return Err(format!("must be a plain http:// URL, got scheme '{}'", url.scheme()));
    }
    if url.host_str().is_none() {
        return Err("has no host".into());
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err("must not carry a query or a fragment".into());
    }
    Ok(url.as_str().trim_end_matches('/').to_owned())
}

fn channel_name(raw: &str) -> Result<String, String> {
    if shmbridge::fsutil::is_valid_channel_name(raw) {
        Ok(raw.to_owned())
    } else {
        Err("must be 1-64 characters from A-Z a-z 0-9 _ -".into())
    }
}

/// An `EnvFilter` directive string. The producer's level names `warning` and `critical`
/// (the variable is shared with it) become `warn` and `error`.
fn log_filter(raw: &str) -> Result<String, String> {
    let filter = match raw.trim().to_ascii_lowercase().as_str() {
        "warning" => "warn".to_owned(),
        "critical" => "error".to_owned(),
        _ => raw.to_owned(),
    };
    tracing_subscriber::EnvFilter::try_new(&filter).map_err(|e| format!("not a log filter ({e})"))?;
    Ok(filter)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Settings, clap::Error> {
        Settings::try_parse_from(std::iter::once("rust_gateway").chain(args.iter().copied()))
    }

    /// The defaults `--help` shows (read from clap, so the environment cannot change them).
    #[test]
    fn defaults_are_the_documented_ones() {
        use clap::CommandFactory;
        let command = Settings::command();
        let default = |id: &str| {
            let arg = command.get_arguments().find(|a| a.get_id() == id).unwrap();
            arg.get_default_values().iter().map(|v| v.to_string_lossy().into_owned()).collect::<Vec<_>>().join(",")
        };
        assert_eq!(default("host"), "127.0.0.1");
        assert_eq!(default("port"), "8080");
        assert_eq!(default("producer_url"), "http://127.0.0.1:5000");
        assert_eq!(default("shm_dir"), "shared_memory_dir");
        assert_eq!(default("channel"), "users");
        assert_eq!(default("producer_timeout_ms"), "10000");
        assert_eq!(default("slot_wait_timeout_ms"), "5000");
        assert_eq!(default("max_count"), "100000");
        assert_eq!(default("max_payload_bytes"), "33554432");
        assert_eq!(default("validation"), "full");
        assert_eq!(default("signal"), "auto");
        assert_eq!(default("log_format"), "text");
        assert_eq!(default("log_level"), "info");
    }

    #[test]
    fn derived_durations_and_path() {
        let s = parse(&["--shm-dir", "/tmp/x", "--channel", "c", "--producer-timeout-ms", "1500"]).unwrap();
        assert_eq!(s.channel_path(), PathBuf::from("/tmp/x/c.shm"));
        assert_eq!(s.socket_path(), PathBuf::from("/tmp/x/c.sock"));
        assert_eq!(s.quarantine(), Duration::from_millis(3000));
    }

    #[test]
    fn bad_values_name_the_setting() {
        for (args, flag) in [
            (&["--port", "70000"][..], "--port"),
            (&["--producer-url", "https://x"], "--producer-url"),
            (&["--producer-url", "nope"], "--producer-url"),
            (&["--channel", "../etc"], "--channel"),
            (&["--producer-timeout-ms", "0"], "--producer-timeout-ms"),
            (&["--max-count=-1"], "--max-count"),
            (&["--validation", "some"], "--validation"),
            (&["--signal", "pigeon"], "--signal"),
            (&["--log-level", "info,,=x=y"], "--log-level"),
        ] {
            let err = parse(args).unwrap_err().to_string();
            assert!(err.contains(flag), "{args:?}: {err}");
        }
    }

    #[test]
    fn the_producers_level_names_are_understood() {
        assert_eq!(parse(&["--log-level", "WARNING"]).unwrap().log_level, "warn");
        assert_eq!(parse(&["--log-level", "critical"]).unwrap().log_level, "error");
        assert_eq!(parse(&["--log-level", "rust_gateway=debug,info"]).unwrap().log_level, "rust_gateway=debug,info");
    }

    #[test]
    fn producer_url_loses_its_trailing_slash() {
        let s = parse(&["--producer-url", "http://127.0.0.1:1/"]).unwrap();
        assert_eq!(s.producer_url, "http://127.0.0.1:1");
    }
}
