//! `rust_gateway`: parse settings, start logging, listen, serve until Ctrl-C or SIGTERM.

#![forbid(unsafe_code)]

use std::io::{IsTerminal as _, Write as _};
use std::process::ExitCode;
use std::time::Duration;

use axum::serve::ListenerExt as _;
use clap::Parser;
use rust_gateway::settings::LogFormat;
use rust_gateway::{app, AppState, Settings};
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::sync::watch;
use tracing_subscriber::EnvFilter;

/// Extra time, beyond one request's deadline, that shutdown waits for in-flight requests.
const SHUTDOWN_MARGIN: Duration = Duration::from_secs(5);

#[tokio::main]
async fn main() -> ExitCode {
    let settings = Settings::parse(); // a bad value exits 2, naming the flag
    init_tracing(&settings);
    match run(settings).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            // Plain stderr, whatever the log filter: a failed start must always be seen.
            eprintln!("rust_gateway: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn run(settings: Settings) -> Result<(), String> {
    let (host, port) = (settings.host.clone(), settings.port);
    let grace = settings.request_deadline() + SHUTDOWN_MARGIN;
    tracing::info!(
        producer_url = %settings.producer_url,
        channel = %settings.channel_path().display(),
        validation = ?settings.validation,
        producer_timeout_ms = settings.producer_timeout_ms,
        slot_wait_timeout_ms = settings.slot_wait_timeout_ms,
        max_count = settings.max_count,
        "starting"
    );
    let state = AppState::new(settings)?;
    if let Some(metrics) = rust_gateway::metrics::handle() {
        // Folds histogram samples in even when nobody scrapes /metrics.
        tokio::spawn(async move {
            let mut every = tokio::time::interval(rust_gateway::metrics::UPKEEP_INTERVAL);
            loop {
                every.tick().await;
                metrics.run_upkeep();
            }
        });
    }
    // Before the "listening" line: once a client can see it, SIGTERM is already handled.
    let signals = StopSignals::install()?;
    let listener = TcpListener::bind((host.as_str(), port))
        .await
        .map_err(|e| format!("cannot listen on {host}:{port} (--host / --port): {e}"))?;
    let addr = listener.local_addr().map_err(|e| format!("cannot read the listening address: {e}"))?;
    // One line on stdout with the real port (tests start the gateway on port 0).
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "rust_gateway listening on http://{addr}");
    let _ = stdout.flush();
    drop(stdout);
    tracing::info!(%addr, "listening");

    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        signals.recv().await;
        tracing::info!("shutting down: finishing in-flight requests");
        let _ = stop_tx.send(true);
    });
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        // An error means the sender is gone, which only happens after it sent `true`.
        let _ = rx.wait_for(|stop| *stop).await;
    };
    // TCP_NODELAY: a body sent in two pieces (the snapshot's users, then its closing
    // bracket) must not wait for the client's delayed ACK (40 ms) before the second.
    let listener = listener.tap_io(|stream| {
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY on a client connection");
        }
    });
    let server = axum::serve(listener, app(state)).with_graceful_shutdown(stopped(stop_rx.clone()));
    tokio::select! {
        result = server => result.map_err(|e| format!("server error: {e}"))?,
        () = async { stopped(stop_rx).await; tokio::time::sleep(grace).await } => {
            tracing::warn!(grace_ms = grace.as_millis() as u64, "in-flight requests outlived the shutdown grace; stopping");
        }
    }
    tracing::info!("stopped");
    Ok(())
}

/// SIGINT (Ctrl-C) and SIGTERM, watched from the moment they are installed.
struct StopSignals {
    interrupt: Signal,
    terminate: Signal,
}

impl StopSignals {
    fn install() -> Result<Self, String> {
        let watch = |kind: SignalKind, name: &str| {
            signal(kind).map_err(|e| format!("cannot watch {name} for a graceful shutdown: {e}"))
        };
        Ok(Self {
            interrupt: watch(SignalKind::interrupt(), "SIGINT")?,
            terminate: watch(SignalKind::terminate(), "SIGTERM")?,
        })
    }

    /// Resolves on the first SIGINT or SIGTERM.
    async fn recv(mut self) {
        tokio::select! {
            _ = self.interrupt.recv() => {},
            _ = self.terminate.recv() => {},
        }
    }
}

/// Logs go to stderr (stdout carries only the "listening" line). RUST_LOG, when set,
/// wins over `--log-level`.
fn init_tracing(settings: &Settings) {
    let filter = match std::env::var("RUST_LOG") {
        Ok(value) if !value.trim().is_empty() => EnvFilter::try_new(&value).unwrap_or_else(|e| {
            eprintln!("rust_gateway: ignoring RUST_LOG={value:?} ({e}); using --log-level");
            EnvFilter::new(&settings.log_level)
        }),
        _ => EnvFilter::new(&settings.log_level),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match settings.log_format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
