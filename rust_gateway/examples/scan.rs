//! The gateway's two JSON checks on the same bodies, timed in one process:
//! `check_users` (the users scanner, schema-aware: `/api/users-via-*`) and `check_json`
//! (the schema-free mode: `/api/bridge/{handler}`, `/api/profiles-via-api`).
//!
//! ```text
//! cargo run --release -p rust_gateway --example scan -- BODY.json [COUNT] [ROUNDS]
//! ```
//! BODY is a file holding a producer's answer (`GET /api/users?count=N`, or profiles);
//! COUNT (the users it holds) enables the users check, which needs it. Each round times
//! both checks once, interleaved, so that they share the machine's noise; the report is
//! the median, minimum and maximum per check, in ms and MB/s.

use std::time::Instant;

use rust_gateway::validate::{check_json, check_users};

fn main() -> Result<(), String> {
    let mut args = std::env::args().skip(1);
    let path = args.next().ok_or("usage: scan BODY.json [COUNT] [ROUNDS]")?;
    let count: Option<u32> = args.next().map(|c| c.parse().map_err(|e| format!("COUNT: {e}"))).transpose()?;
    let rounds: usize = args.next().map_or(Ok(21), |r| r.parse().map_err(|e| format!("ROUNDS: {e}")))?;
    let body = std::fs::read(&path).map_err(|e| format!("{path}: {e}"))?;
    check_json(&body).map_err(|e| e.to_string())?;
    if let Some(count) = count {
        check_users(&body, count).map_err(|e| e.to_string())?;
    }

    let mut json = Vec::with_capacity(rounds);
    let mut users = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let started = Instant::now();
        let verdict = check_json(std::hint::black_box(&body));
        json.push(started.elapsed().as_secs_f64());
        assert!(verdict.is_ok());
        if let Some(count) = count {
            let started = Instant::now();
            let verdict = check_users(std::hint::black_box(&body), count);
            users.push(started.elapsed().as_secs_f64());
            assert!(verdict.is_ok());
        }
    }
    println!("{path}: {} bytes, {rounds} rounds", body.len());
    report("check_json", &mut json, body.len());
    if count.is_some() {
        report("check_users", &mut users, body.len());
        println!("check_json / check_users (medians): {:.3}", median(&json) / median(&users));
    }
    Ok(())
}

fn median(times: &[f64]) -> f64 {
    let mut sorted = times.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[sorted.len() / 2]
}

fn report(name: &str, times: &mut [f64], bytes: usize) {
    times.sort_by(f64::total_cmp);
    let (min, med, max) = (times[0], times[times.len() / 2], times[times.len() - 1]);
    let mbs = bytes as f64 / med / 1e6;
    println!("{name:12} median {:8.3} ms  (min {:.3}, max {:.3})  {mbs:7.0} MB/s", med * 1e3, min * 1e3, max * 1e3);
}
