//! `cargo bench -p local --bench load`: request rates of the real `local` binary, each
//! beside a ceiling measured in the same run on the same machine, wrk style (8 kept-alive
//! connections, each sending its next request as soon as the last is answered).
//!
//! - originate: the PBX's own `POST /ari/channels`, then the API's
//!   `POST /api/v2/interaction/{number}` through the real binary against that same PBX.
//!   The numbers (`+1555002…`, busy in the simulator) end at once, so no channel piles up.
//! - status: the API's `GET /api/v2/status/{id}`, then a bare axum handler (one route, no
//!   middleware) answering a fixed JSON document of the same bytes.
//! - the server's idle RSS.
//!
//! Each party runs in its own process, as the real ones do: the simulated PBX and the
//! bare handler are this bench binary started again in another role. `ARI_HTTP_URL`
//! (`http://` only), `ARI_USERNAME`, `ARI_PASSWORD` and `DIAL_ENDPOINT` point both
//! originate runs at another PBX instead, and `ASTERISK_PID` names its process for the
//! CPU figures: `eval "$(./scripts/asterisk start)"` sets all five for a real Asterisk.
//! Each run prints the CPU time the server, the load generator and the PBX spent per
//! request, and the next run waits until the PBX holds no channel. `LOAD_SECONDS` (default 5) is the length of
//! each run, `LOAD_CONNECTIONS` (default 8) the connection count, `LOCAL_BIN` another
//! build of the server, `LOAD_ONLY=originate|status` one half.

#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use base64::Engine;
use futures_util::StreamExt;
use http_body_util::{BodyExt, Full};
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use support::Server;

/// The Stasis app the raw originates go to; a listener of this bench drains its events,
/// so that the PBX does the same work per call in both runs.
const RAW_APP: &str = "load-bench";
const ROLE: &str = "LOAD_BENCH_ROLE";

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    match std::env::var(ROLE).as_deref() {
        Ok("pbx") => runtime.block_on(serve_pbx()),
        Ok("bare") => runtime.block_on(serve_bare()),
        _ => runtime.block_on(run()),
    }
}

async fn run() {
    let seconds: f64 = env_or("LOAD_SECONDS", 5.0);
    let connections: usize = env_or("LOAD_CONNECTIONS", 8);
    let only = std::env::var("LOAD_ONLY").ok();
    let run_for = Duration::from_secs_f64(seconds);
    let binary =
        std::env::var("LOCAL_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_local").to_owned());

    // The PBX: the one given (its process id in ASTERISK_PID, as `scripts/asterisk start`
    // exports it, for its CPU time), or a simulated one in its own process.
    let (_pbx_process, ari_url, pbx_pid) = match std::env::var("ARI_HTTP_URL") {
        Ok(url) => {
            let pid = std::env::var("ASTERISK_PID")
                .ok()
                .and_then(|p| p.parse().ok());
            (None, url.trim_end_matches('/').to_owned(), pid)
        }
        Err(_) => {
            let (child, url) = spawn_role("pbx", &[]);
            let pid = child.id();
            (Some(child), url, Some(pid))
        }
    };
    let ari_user = std::env::var("ARI_USERNAME").unwrap_or_else(|_| "asterisk".into());
    let ari_password = std::env::var("ARI_PASSWORD").unwrap_or_else(|_| "asterisk".into());
    let endpoint =
        std::env::var("DIAL_ENDPOINT").unwrap_or_else(|_| "Local/{number}@test-pstn".into());
    let server = Server::start(
        &binary,
        &[
            ("ARI_HTTP_URL", ari_url.as_str()),
            ("ARI_USERNAME", ari_user.as_str()),
            ("ARI_PASSWORD", ari_password.as_str()),
            ("DIAL_ENDPOINT", endpoint.as_str()),
        ],
        Stdio::null(),
    )
    .await;
    let http = reqwest::Client::new();
    let token = server.token(&http).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle_rss = rss_kib(server.child.id());
    let api = Target::parse(&server.base_url);
    let bearer = format!("Bearer {token}");
    let mut parties = vec![
        ("server", server.child.id()),
        ("load generator", std::process::id()),
    ];
    parties.extend(pbx_pid.map(|pid| ("PBX", pid)));
    let cpu = Cpu { parties };

    println!(
        "load: {connections} connections, {seconds} s per run, PBX at {ari_url}, server {binary}"
    );
    println!("server idle RSS {:.1} MiB (goal <= 10 MiB)", mib(idle_rss));

    if only.as_deref() != Some("status") {
        let ari = Target::parse(&ari_url);
        let _drain = drain_events(&ari, &ari_user, &ari_password).await;
        let basic = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{ari_user}:{ari_password}"))
        );
        let ari_path = format!("{}/ari/channels", ari.path);
        let raw_endpoint = endpoint.clone();
        let before = cpu.read();
        let raw = load(&ari, connections, run_for, move |n| {
            let body = serde_json::json!({
                "endpoint": raw_endpoint.replace("{number}", &number(n)),
                "app": RAW_APP,
                "appArgs": "ivr",
                "channelId": format!("load-bench-{}-{n}", std::process::id()),
                "timeout": 30,
            });
            post(&ari_path, &basic, Some(body.to_string()))
        })
        .await;
        raw.print("PBX alone: POST /ari/channels");
        cpu.print_since(&before, raw.sent);
        settle(&ari_url, &ari_user, &ari_password).await;

        let api_path = api.path.clone();
        let bearer = bearer.clone();
        let before = cpu.read();
        let originate = load(&api, connections, run_for, move |n| {
            post(
                &format!("{api_path}/api/v2/interaction/{}", number(n)),
                &bearer,
                Some("{}".into()),
            )
        })
        .await;
        originate.print("API: POST /api/v2/interaction/{number}");
        cpu.print_since(&before, originate.sent);
        settle(&ari_url, &ari_user, &ari_password).await;
        println!(
            "originate ratio: {:.2}x the PBX's own rate (goal >= 0.8x)",
            originate.rate() / raw.rate()
        );
    }

    if only.as_deref() != Some("originate") {
        let (call_id, document) = one_ended_call(&http, &server.base_url, &token).await;
        let api_path = format!("{}/api/v2/status/{call_id}", api.path);
        let bearer = bearer.clone();
        let before = cpu.read();
        let status = load(&api, connections, run_for, move |_| {
            get(&api_path, Some(&bearer))
        })
        .await;
        status.print("API: GET /api/v2/status/{id}");
        cpu.print_since(&before, status.sent);

        let (_bare_process, bare_url) = spawn_role("bare", &[("LOAD_BENCH_BODY", &document)]);
        let bare = Target::parse(&bare_url);
        let bare_path = format!("/api/v2/status/{call_id}");
        let handler = load(&bare, connections, run_for, move |_| get(&bare_path, None)).await;
        handler.print(&format!(
            "bare axum handler: a fixed {} byte JSON document",
            document.len()
        ));
        println!(
            "status ratio: {:.2}x the bare handler (goal >= 0.6x)",
            status.rate() / handler.rate()
        );
    }
    println!(
        "server RSS after the runs {:.1} MiB",
        mib(rss_kib(server.child.id()))
    );
}

/// One run's answers.
struct Figures {
    elapsed: Duration,
    /// Requests sent, warm-up included: what the CPU time of a whole run is divided by.
    sent: u64,
    /// Microseconds per request, sorted.
    latencies: Vec<u64>,
    statuses: BTreeMap<u16, u64>,
    errors: u64,
}

impl Figures {
    fn rate(&self) -> f64 {
        self.latencies.len() as f64 / self.elapsed.as_secs_f64()
    }

    fn percentile(&self, p: f64) -> f64 {
        if self.latencies.is_empty() {
            return 0.0;
        }
        let i = ((self.latencies.len() - 1) as f64 * p).round() as usize;
        self.latencies[i] as f64 / 1000.0
    }

    fn print(&self, what: &str) {
        println!("{what}");
        println!(
            "  Latency   p50 {:.2} ms   p99 {:.2} ms   max {:.2} ms",
            self.percentile(0.5),
            self.percentile(0.99),
            self.percentile(1.0)
        );
        println!(
            "  {} requests in {:.2} s, answers {:?}, transport errors {}",
            self.latencies.len(),
            self.elapsed.as_secs_f64(),
            self.statuses,
            self.errors
        );
        println!("  Requests/sec: {:.0}", self.rate());
    }
}

/// A host to connect to and the path its URL holds before the routes.
struct Target {
    addr: SocketAddr,
    authority: String,
    path: String,
}

impl Target {
    fn parse(url: &str) -> Target {
        let rest = url
            .strip_prefix("http://")
            .expect("an http:// URL (the load generator speaks plain HTTP/1.1)");
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
            None => (rest, ""),
        };
        let with_port = if authority.contains(':') {
            authority.to_owned()
        } else {
            format!("{authority}:80")
        };
        let addr = with_port
            .to_socket_addrs()
            .expect("a resolvable host")
            .next()
            .expect("an address");
        Target {
            addr,
            authority: authority.to_owned(),
            path: path.to_owned(),
        }
    }
}

type Body = Full<Bytes>;

fn post(path: &str, authorization: &str, body: Option<String>) -> Request<Body> {
    Request::builder()
        .method(Method::POST)
        .uri(path)
        .header(AUTHORIZATION, authorization)
        .header(CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body.unwrap_or_default())))
        .expect("request")
}

fn get(path: &str, authorization: Option<&str>) -> Request<Body> {
    let mut request = Request::builder().method(Method::GET).uri(path);
    if let Some(authorization) = authorization {
        request = request.header(AUTHORIZATION, authorization);
    }
    request.body(Full::new(Bytes::new())).expect("request")
}

/// What each party's CPU time was, per request of a run (from `/proc/PID/stat`): where
/// an originate's time goes when the PBX, the server and the load share the cores.
struct Cpu {
    parties: Vec<(&'static str, u32)>,
}

impl Cpu {
    fn read(&self) -> Vec<(f64, f64)> {
        self.parties
            .iter()
            .map(|(_, pid)| cpu_seconds(*pid))
            .collect()
    }

    fn print_since(&self, before: &[(f64, f64)], requests: u64) {
        let now = self.read();
        let per = |seconds: f64| seconds * 1e6 / requests.max(1) as f64;
        let per_request: Vec<String> = self
            .parties
            .iter()
            .zip(now.iter().zip(before))
            .map(|((name, _), ((user, system), (user0, system0)))| {
                let (user, system) = (per(user - user0), per(system - system0));
                format!(
                    "{name} {:.0} us ({user:.0} user, {system:.0} system)",
                    user + system
                )
            })
            .collect();
        println!("  CPU per request: {}", per_request.join(", "));
    }
}

/// User and system time of `pid` so far, in seconds (0 when it cannot be read).
fn cpu_seconds(pid: u32) -> (f64, f64) {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return (0.0, 0.0);
    };
    // Fields after the command name (which may hold spaces); utime and stime are the
    // 14th and 15th, in clock ticks of 1/100 s on Linux.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) / 100.0, ticks(12) / 100.0)
}

/// Waits until the PBX holds no channel (at most 30 s): the next run must not pay for
/// the last one's hang-ups.
async fn settle(ari_url: &str, user: &str, password: &str) {
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let channels: Option<Value> = match http
            .get(format!("{ari_url}/ari/channels"))
            .basic_auth(user, Some(password))
            .send()
            .await
        {
            Ok(response) => response.json().await.ok(),
            Err(_) => None,
        };
        if channels
            .as_ref()
            .and_then(Value::as_array)
            .is_some_and(Vec::is_empty)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
}

/// The callee of request `n`: busy at once in the simulator, a new number each time.
fn number(n: u64) -> String {
    format!("+1555002{:04}", n % 10_000)
}

/// `connections` kept-alive connections, each sending requests back to back for a warm-up
/// of a fifth of `run_for` (not counted) and then `run_for`.
async fn load<F>(target: &Target, connections: usize, run_for: Duration, make: F) -> Figures
where
    F: Fn(u64) -> Request<Body> + Send + Sync + 'static,
{
    let make = Arc::new(make);
    let counter = Arc::new(AtomicU64::new(0));
    let warm_until = Instant::now() + run_for / 5;
    let until = warm_until + run_for;
    let tasks: Vec<_> = (0..connections)
        .map(|_| {
            let (make, counter) = (Arc::clone(&make), Arc::clone(&counter));
            let (addr, authority) = (target.addr, target.authority.clone());
            tokio::spawn(async move {
                let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
                stream.set_nodelay(true).expect("nodelay");
                let (mut sender, connection) =
                    hyper::client::conn::http1::handshake(TokioIo::new(stream))
                        .await
                        .expect("handshake");
                tokio::spawn(connection);
                let mut latencies = Vec::new();
                let mut statuses: BTreeMap<u16, u64> = BTreeMap::new();
                let mut errors = 0;
                loop {
                    let started = Instant::now();
                    if started >= until {
                        break;
                    }
                    let mut request = make(counter.fetch_add(1, Ordering::Relaxed));
                    request
                        .headers_mut()
                        .insert(HOST, authority.parse().expect("a Host header from the URL"));
                    if sender.ready().await.is_err() {
                        errors += 1;
                        break;
                    }
                    let answer = match sender.send_request(request).await {
                        Ok(answer) => answer,
                        Err(_) => {
                            errors += 1;
                            break;
                        }
                    };
                    let status = answer.status().as_u16();
                    if answer.into_body().collect().await.is_err() {
                        errors += 1;
                        break;
                    }
                    if started >= warm_until {
                        latencies.push(started.elapsed().as_micros() as u64);
                        *statuses.entry(status).or_default() += 1;
                    }
                }
                (latencies, statuses, errors)
            })
        })
        .collect();
    let mut figures = Figures {
        elapsed: run_for,
        sent: 0,
        latencies: Vec::new(),
        statuses: BTreeMap::new(),
        errors: 0,
    };
    for task in tasks {
        let (latencies, statuses, errors) = task.await.expect("connection task");
        figures.latencies.extend(latencies);
        for (status, n) in statuses {
            *figures.statuses.entry(status).or_default() += n;
        }
        figures.errors += errors;
    }
    figures.latencies.sort_unstable();
    figures.sent = counter.load(Ordering::Relaxed);
    figures
}

/// A listener of [`RAW_APP`] that reads and drops every event, for as long as it lives.
async fn drain_events(ari: &Target, user: &str, password: &str) -> tokio::task::JoinHandle<()> {
    let url = format!(
        "ws://{}{}/ari/events?app={RAW_APP}&api_key={user}:{password}",
        ari.authority, ari.path
    );
    // Read as the bridge reads its socket, so that draining costs what it would there.
    let config = dialer_ari::socket::event_socket_config();
    let (mut socket, _) = tokio_tungstenite::connect_async_with_config(url, Some(config), true)
        .await
        .expect("the PBX's event WebSocket");
    tokio::spawn(async move { while let Some(Ok(_)) = socket.next().await {} })
}

/// A call of the demo user, placed and followed to its end: its id and status document.
async fn one_ended_call(http: &reqwest::Client, base: &str, token: &str) -> (String, String) {
    let placed: Value = http
        .post(format!("{base}/api/v2/interaction/{}", number(0)))
        .bearer_auth(token)
        .send()
        .await
        .expect("originate")
        .json()
        .await
        .expect("originate JSON");
    let call_id = placed["call_id"].as_str().expect("call_id").to_owned();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let document = http
            .get(format!("{base}/api/v2/status/{call_id}"))
            .bearer_auth(token)
            .send()
            .await
            .expect("status")
            .text()
            .await
            .expect("status body");
        let parsed: Value = serde_json::from_str(&document).expect("status JSON");
        if parsed["is_completed"] == true {
            return (call_id, document);
        }
        assert!(Instant::now() < deadline, "the call never ended");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// This binary again in another role; the child prints its base URL on its first line
/// and exits when its standard input closes (when this process ends, however it ends).
fn spawn_role(role: &str, vars: &[(&str, &str)]) -> (Child, String) {
    let mut child = Command::new(std::env::current_exe().expect("this binary"))
        .env(ROLE, role)
        .envs(vars.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the bench binary in another role");
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("the role's URL");
    (child, line.trim().to_owned())
}

/// Prints `url` for the parent, then waits until the parent's end closes standard input.
async fn announce_and_wait(url: String) {
    println!("{url}");
    std::io::stdout().flush().expect("stdout");
    tokio::task::spawn_blocking(|| {
        let mut sink = String::new();
        while std::io::stdin().read_line(&mut sink).is_ok_and(|n| n > 0) {}
    })
    .await
    .expect("stdin watcher");
}

/// The simulated PBX, as `local` would start it, at `PBX_SIM_TIME_SCALE` (default 0.01:
/// a busy callee ends at once).
async fn serve_pbx() {
    let sim = pbx_sim::start(pbx_sim::SimConfig {
        time_scale: env_or("PBX_SIM_TIME_SCALE", 0.01),
        ..pbx_sim::SimConfig::default()
    })
    .await
    .expect("the simulated PBX starts");
    announce_and_wait(sim.base_url()).await;
    sim.shutdown().await;
}

/// One route, no middleware: the framework's own cost of answering a status document.
async fn serve_bare() {
    let document = Bytes::from(std::env::var("LOAD_BENCH_BODY").expect("LOAD_BENCH_BODY"));
    let app = axum::Router::new().route(
        "/api/v2/status/{id}",
        axum::routing::get(move || {
            let document = document.clone();
            async move { ([(CONTENT_TYPE, "application/json")], document) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("address"));
    tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
    announce_and_wait(url).await;
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kib| kib.parse().ok())
        })
        .unwrap_or(0)
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}
