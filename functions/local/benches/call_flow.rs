//! `cargo bench -p local --bench call_flow`: the whole call flow under load. Starts the
//! real `local` binary (release build, simulated PBX at time scale 0.1), sends 1,000
//! originates at once spread over the simulator's number ranges, follows every call to
//! its end, and prints what a demanding operator checks: records created, duplicates,
//! calls left non-final, wrong outcomes, 5xx answers, and the server's RSS before and
//! after. `CALLS=N` changes the count; `LOCAL_BIN=path` runs another build of the
//! server (to compare two versions on one machine).

#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::HashMap;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::Server;

/// Number range, and the status and failure reason its callee ends in.
const RANGES: [(&str, &str, Option<&str>); 8] = [
    ("+1555001", "completed", None),
    ("+1555002", "busy", None),
    ("+1555003", "no_answer", None),
    ("+1555004", "failed", Some("congestion")),
    ("+1555005", "failed", Some("invalid_number")),
    ("+1555006", "failed", Some("rejected")),
    ("+1555007", "completed", None),
    ("+1555008", "completed", None),
];

#[tokio::main]
async fn main() {
    let calls: usize = std::env::var("CALLS")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(1000);
    let binary =
        std::env::var("LOCAL_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_local").to_owned());
    let server = Server::start(
        &binary,
        &[("PBX_SIM_TIME_SCALE", "0.1"), ("RUST_LOG", "warn")],
        Stdio::null(),
    )
    .await;
    let base = server.base_url.clone();
    let http = reqwest::Client::new();
    let token = server.token(&http).await;
    let rss_before = rss_kib(server.child.id());

    // One connection per originate, closed after its answer, as 1,000 separate client
    // systems would.
    let burst = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .expect("client");
    let started = Instant::now();
    let requests: Vec<_> = (0..calls)
        .map(|i| {
            let (http, base, token) = (burst.clone(), base.clone(), token.clone());
            let (prefix, _, _) = RANGES[i % RANGES.len()];
            let number = format!("{prefix}{i:04}");
            tokio::spawn(async move {
                let answer = http
                    .post(format!("{base}/api/v2/interaction/{number}"))
                    .bearer_auth(&token)
                    .json(&json!({}))
                    .send()
                    .await;
                (number, answer.map(|r| r.status().as_u16()))
            })
        })
        .collect();
    let mut statuses: HashMap<u16, usize> = HashMap::new();
    let mut transport_errors = 0;
    for request in requests {
        match request.await.expect("task") {
            (_, Ok(status)) => *statuses.entry(status).or_default() += 1,
            (_, Err(_)) => transport_errors += 1,
        }
    }
    let accepted_in = started.elapsed();

    // Follow every call to its end.
    let deadline = Instant::now() + Duration::from_secs(120);
    let records = loop {
        let records = all_calls(&http, &base, &token).await;
        let active = records.iter().filter(|c| c["is_completed"] != true).count();
        if active == 0 || Instant::now() > deadline {
            break records;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let ended_in = started.elapsed();
    let rss_ended = rss_kib(server.child.id());
    // Once the server's idle keep-alive connections (the poller's) have timed out.
    drop(http);
    tokio::time::sleep(Duration::from_secs(11)).await;
    let rss_after = rss_kib(server.child.id());

    let mut per_number: HashMap<&str, usize> = HashMap::new();
    for call in &records {
        *per_number
            .entry(call["phone_number"].as_str().unwrap_or_default())
            .or_default() += 1;
    }
    let duplicates: usize = per_number.values().map(|n| n.saturating_sub(1)).sum();
    let non_final = records.iter().filter(|c| c["is_completed"] != true).count();
    let wrong = records
        .iter()
        .filter(|call| {
            let number = call["phone_number"].as_str().unwrap_or_default();
            let Some((_, status, reason)) = RANGES.iter().find(|(p, _, _)| number.starts_with(p))
            else {
                return true;
            };
            call["status"] != *status || call["failure_reason"].as_str() != *reason
        })
        .count();
    let server_errors: usize = statuses
        .iter()
        .filter(|(code, _)| **code >= 500)
        .map(|(_, n)| n)
        .sum();

    println!("call flow under load: {calls} originates at once, simulated PBX at time scale 0.1");
    println!("  answers            {statuses:?}, transport errors {transport_errors}");
    println!("  all answered in    {:.2} s", accepted_in.as_secs_f64());
    println!("  all ended in       {:.2} s", ended_in.as_secs_f64());
    println!("  records created    {}", records.len());
    println!("  duplicates         {duplicates}");
    println!("  left non-final     {non_final}");
    println!("  wrong outcomes     {wrong}");
    println!("  5xx answers        {server_errors}");
    println!(
        "  server RSS         {:.1} MiB before, {:.1} MiB when the last call ended, {:.1} MiB 11 s later",
        rss_before as f64 / 1024.0,
        rss_ended as f64 / 1024.0,
        rss_after as f64 / 1024.0
    );
}

/// Every call of the demo user, through the API's own paging.
async fn all_calls(http: &reqwest::Client, base: &str, token: &str) -> Vec<Value> {
    let mut calls = Vec::new();
    let mut before: Option<String> = None;
    loop {
        let mut request = http
            .get(format!("{base}/api/v2/calls"))
            .bearer_auth(token)
            .query(&[("limit", "100")]);
        if let Some(before) = &before {
            request = request.query(&[("before", before)]);
        }
        let page: Value = request
            .send()
            .await
            .expect("list")
            .json()
            .await
            .expect("list JSON");
        calls.extend(page["calls"].as_array().cloned().unwrap_or_default());
        match page["next_before"].as_str() {
            Some(next) => before = Some(next.to_owned()),
            None => return calls,
        }
    }
}

/// Resident memory of a process, from /proc (Linux).
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}
