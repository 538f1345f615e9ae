//! `cargo bench --workspace --bench queued_call_size --profile dev` (after `cargo build
//! --workspace`): what one queued call costs in each store, beside the size of the
//! request that made it. A queue holds its calls until they are dialed; a call that
//! costs many times its request lets a client fill memory or a table with far less than
//! the queue's bound suggests.
//!
//! - in-process store: the process's resident memory per call (as `ps` shows it, what an
//!   operator pays), before and after inserting the calls, with and without a webhook;
//! - DynamoDB: the item's size as DynamoDB counts it (its 400 KB limit and write units);
//! - PostgreSQL (with `DATABASE_URL`): the table's growth per row, indexes and TOAST
//!   included, and the row's own size.
//!
//! - the local server as `main` starts it (debug build, `target/debug/local`; build it
//!   first): its resident memory per call queued over HTTP, and the CPU it spends while
//!   those calls wait (a queue that waits should cost nothing).
//!
//! The request is the largest one the API takes: 32 variables of 64-byte names and
//! 256-byte values, 20 media items of 128-byte paths.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::Utc;
use dialer_core::domain::{Call, CallPolicy, CallRequest};
use dialer_core::store::{CallStore, MemoryStore};
use uuid::Uuid;

const CALLS: usize = 10_000;

#[tokio::main]
async fn main() {
    let (request, body) = largest_request();
    println!("request body: {} bytes (JSON)", body.len());
    println!();
    println!("| store | per queued call | × the request |");
    println!("| --- | --- | --- |");
    for webhook in [false, true] {
        let label = if webhook { ", with a webhook" } else { "" };
        let per_call = in_process(&request, webhook).await;
        row(
            &format!("in-process (resident memory){label}"),
            per_call,
            body.len(),
        );
        let item =
            dialer_store_dynamo::stored_item_size(&queued(&request, webhook)).expect("an item");
        row(&format!("DynamoDB (item size){label}"), item, body.len());
        if std::env::var("DATABASE_URL").is_ok_and(|u| !u.is_empty()) {
            let (table, own) = postgres(&request, webhook).await;
            row(
                &format!("PostgreSQL (table growth, indexes and TOAST){label}"),
                table,
                body.len(),
            );
            row(&format!("PostgreSQL (row){label}"), own, body.len());
        } else {
            println!("| PostgreSQL | not measured: set DATABASE_URL | |");
        }
    }
    through_the_local_server(&body).await;
}

/// `SERVER_CALLS` (default 5,000) calls queued over HTTP: the server's resident memory
/// per call, then its CPU over 10 s of waiting.
async fn through_the_local_server(body: &str) {
    use integration::binaries::Process;
    let calls: usize = std::env::var("SERVER_CALLS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(5_000);
    let server = Process::start(&[
        ("DEFAULT_MAX_QUEUED_CALLS", "100000"),
        ("MAX_QUEUED_CALLS", "100000"),
        ("RUST_LOG", "warn"),
    ])
    .await;
    let api = integration::api::Api::new(server.base_url.clone());
    let token = api.token(integration::ADMIN.0, integration::ADMIN.1).await;
    let before = process_rss(server.pid());
    let body = body.to_owned();
    let mut sent = tokio::task::JoinSet::new();
    let per_task = calls.div_ceil(8);
    for _ in 0..8 {
        let (http, base, token, body) = (
            api.http.clone(),
            api.base.clone(),
            token.clone(),
            body.clone(),
        );
        sent.spawn(async move {
            for _ in 0..per_task {
                let response = http
                    .post(format!("{base}/api/v2/calls"))
                    .bearer_auth(&token)
                    .header("content-type", "application/json")
                    .body(body.clone())
                    .send()
                    .await
                    .expect("request");
                assert!(response.status().is_success(), "{}", response.status());
            }
        });
    }
    while sent.join_next().await.is_some() {}
    let queued = per_task * 8;
    let after = process_rss(server.pid());
    println!(
        "| local server (resident memory, over HTTP, {queued} calls) | {} bytes | {:.2}× |",
        after.saturating_sub(before) / queued,
        after.saturating_sub(before) as f64 / queued as f64 / body.len() as f64
    );
    let cpu = || process_cpu_seconds(server.pid());
    let start = cpu();
    tokio::time::sleep(std::time::Duration::from_secs(10)).await;
    println!();
    println!(
        "CPU of the local server while {queued} calls wait in the queue: {:.3} of a core (over 10 s)",
        (cpu() - start) / 10.0
    );
}

/// A process's resident memory (`VmRSS`), in bytes.
fn process_rss(pid: u32) -> usize {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|kb| {
            kb.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<usize>()
                .ok()
        })
        .map_or(0, |kb| kb * 1024)
}

/// A process's CPU time so far (user and system), in seconds.
fn process_cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // After the command name (which may hold spaces), utime and stime are the 12th and
    // 13th fields, in ticks of 1/100 s.
    let fields: Vec<f64> = stat
        .rsplit_once(')')
        .map(|(_, rest)| {
            rest.split_whitespace()
                .map(|f| f.parse().unwrap_or(0.0))
                .collect()
        })
        .unwrap_or_default();
    (fields.get(11).unwrap_or(&0.0) + fields.get(12).unwrap_or(&0.0)) / 100.0
}

fn row(store: &str, bytes: usize, body: usize) {
    println!(
        "| {store} | {bytes} bytes | {:.2}× |",
        bytes as f64 / body as f64
    );
}

/// The largest request the API takes, and its JSON body.
fn largest_request() -> (CallRequest, String) {
    let variables: BTreeMap<String, String> = (0..32)
        .map(|n| (format!("v{n:0>63}"), "v".repeat(256)))
        .collect();
    let media: Vec<String> = (0..20)
        .map(|n| {
            format!(
                "sound:{}",
                format!("{n}").repeat(128).get(..128).unwrap_or("x")
            )
        })
        .collect();
    let body = serde_json::json!({
        "phone_number": "+15550020001",
        "variables": variables,
        "media": media,
        "mode": "playback",
        "send_at": (Utc::now() + chrono::Duration::days(1)).to_rfc3339(),
    })
    .to_string();
    let request = CallRequest {
        phone_number: "+15550020001".into(),
        variables: Some(variables),
        media: Some(media),
        mode: Some("playback".into()),
        ..CallRequest::default()
    };
    (request, body)
}

/// A new call from `request`, waiting in the queue, as the API stores it.
fn queued(request: &CallRequest, webhook: bool) -> Call {
    let mut request = request.clone();
    if webhook {
        request.status_callback = Some("https://hooks.example.com/dialer/events".into());
        request.status_callback_events = Some(
            ["queued", "dialing", "ringing", "answered", "completed"]
                .map(String::from)
                .to_vec(),
        );
    }
    let now = Utc::now();
    let mut call = request
        .validate(&CallPolicy::default(), "alice", Uuid::new_v4(), now)
        .expect("a valid request");
    call.enqueue(now + chrono::Duration::days(1));
    call.record_created_event();
    call
}

async fn in_process(request: &CallRequest, webhook: bool) -> usize {
    let store = Arc::new(MemoryStore::new());
    let before = process_rss(std::process::id());
    for _ in 0..CALLS {
        let call = queued(request, webhook);
        store.insert_call(&call).await.expect("insert");
    }
    let after = process_rss(std::process::id());
    drop(store);
    (after.saturating_sub(before)) / CALLS
}

async fn postgres(request: &CallRequest, webhook: bool) -> (usize, usize) {
    let (store, schema) = integration::pg::pg_store().await;
    let pool = sqlx::PgPool::connect(&schema.url).await.expect("connects");
    let size = |pool: sqlx::PgPool| async move {
        sqlx::query_scalar::<_, i64>("SELECT pg_total_relation_size('calls')")
            .fetch_one(&pool)
            .await
            .expect("size")
    };
    for _ in 0..50 {
        store
            .insert_call(&queued(request, webhook))
            .await
            .expect("insert");
    }
    let before = size(pool.clone()).await;
    for _ in 0..CALLS {
        store
            .insert_call(&queued(request, webhook))
            .await
            .expect("insert");
    }
    let after = size(pool.clone()).await;
    let own: f64 = sqlx::query_scalar("SELECT avg(pg_column_size(c.*))::float8 FROM calls c")
        .fetch_one(&pool)
        .await
        .expect("row size");
    (
        usize::try_from((after - before) / CALLS as i64).unwrap_or(0),
        own as usize,
    )
}
