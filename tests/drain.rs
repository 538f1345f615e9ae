//! Stopping a server under load, as an operator restarting it (or ECS replacing a task)
//! would: SIGTERM to the real binaries. A request a client has sent is answered, on a
//! kept-alive connection idle at the moment the stop began too; a client connecting
//! after that is refused before it sends anything; `/health` says the process is
//! draining; the process exits 0. And the local server's start-up: a taken port stops it
//! before anything runs, with a message naming the address.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use integration::binaries::{Process, workspace_binary};
use integration::{ADMIN, pg};
use pbx_sim::SimConfig;
use reqwest::{Client, StatusCode, header};
use serde_json::{Value, json};
use sqlx::Connection;
use uuid::Uuid;

/// How long a stopping binary may take to exit: far more than it needs, and what ECS
/// allows a task.
const EXIT_LIMIT: Duration = Duration::from_secs(30);

/// Bursts, each a stop of the local server while these many kept-alive connections
/// originate calls back to back, then a start on the same port and database.
const BURSTS: usize = 20;
const CONNECTIONS: usize = 40;

/// Every connection may deliver its next request for this long after the stop began:
/// far longer than the clients here take to send it, so the check below is about the
/// server, not the scheduler. Clients that are done close their connections, so the
/// server does not wait this long for them.
const DRAIN_MS: &str = "10000";

/// What became of one request, as its client can tell.
#[derive(Debug)]
enum Outcome {
    /// Answered 200: this call was placed.
    Placed(Uuid),
    /// Answered, but not 200.
    Answered(StatusCode, String),
    /// The connection was refused: nothing was sent.
    Refused,
    /// Sent (or maybe sent) and never answered: the client cannot know whether the call
    /// was placed.
    Unanswered(String),
}

#[tokio::test]
async fn a_stop_under_load_leaves_no_request_sent_on_a_kept_alive_connection_unanswered_postgres() {
    let schema = pg::fresh_schema().await;
    let mut server = Process::start(&[
        ("DATABASE_URL", schema.url.as_str()),
        ("SHUTDOWN_DRAIN_MS", DRAIN_MS),
        ("RUST_LOG", "warn"),
    ])
    .await;
    let mut placed: Vec<Uuid> = Vec::new();
    let (mut refused, mut unanswered, mut other) = (0, Vec::new(), Vec::new());
    for burst in 0..BURSTS {
        if burst > 0 {
            server.restart().await;
        }
        let outcomes = burst_then_stop(&server).await;
        for outcome in outcomes {
            match outcome {
                Outcome::Placed(id) => placed.push(id),
                Outcome::Refused => refused += 1,
                Outcome::Unanswered(e) => unanswered.push(format!("burst {burst}: {e}")),
                Outcome::Answered(status, body) => {
                    other.push(format!("burst {burst}: {status} {body}"));
                }
            }
        }
        let status = server.exited(EXIT_LIMIT).await;
        assert!(
            status.success(),
            "burst {burst}: the local server exited with {status}\n{}",
            server.log_tail()
        );
    }
    assert!(
        unanswered.is_empty(),
        "{} requests sent and never answered (placed {}, refused {refused}):\n{}",
        unanswered.len(),
        placed.len(),
        unanswered.join("\n")
    );
    assert!(
        other.is_empty(),
        "originates refused:\n{}",
        other.join("\n")
    );
    assert!(
        refused >= BURSTS * CONNECTIONS,
        "every client ends on a refused connection: {refused}"
    );
    let mut db = sqlx::PgConnection::connect(&schema.url)
        .await
        .expect("PostgreSQL");
    let stored: HashSet<Uuid> = sqlx::query_scalar("SELECT call_id FROM calls")
        .fetch_all(&mut db)
        .await
        .expect("calls listed")
        .into_iter()
        .collect();
    let answered: HashSet<Uuid> = placed.iter().copied().collect();
    assert_eq!(answered.len(), placed.len(), "every call id once");
    let lost: Vec<_> = answered.difference(&stored).collect();
    assert!(lost.is_empty(), "answered but not stored: {lost:?}");
    let unasked: Vec<_> = stored.difference(&answered).collect();
    assert!(
        unasked.is_empty(),
        "stored, but no client was told (a refused request left them): {unasked:?}"
    );
}

/// Opens `CONNECTIONS` kept-alive connections that each place a call, lets each
/// originate calls back to back, stops the server once they are well under way, and
/// returns what became of every request once every client has met a refusal.
async fn burst_then_stop(server: &Process) -> Vec<Outcome> {
    let token = token(&server.base_url).await;
    let url = format!("{}/api/v2/interaction/+15550030001", server.base_url);
    let answered = Arc::new(AtomicUsize::new(0));
    // `CONNECTIONS` connections opened at once and kept alive by a first request (a
    // cheap one: the burst is what matters). One client, whose pool holds them all:
    // every request of the burst rides one of them while it stays open.
    let client = Client::builder()
        .pool_max_idle_per_host(CONNECTIONS)
        .timeout(Duration::from_secs(60))
        .build()
        .expect("client");
    let health = format!("{}/health", server.base_url);
    let opened: Vec<_> = (0..CONNECTIONS)
        .map(|_| {
            let (client, health) = (client.clone(), health.clone());
            tokio::spawn(async move {
                let response = client.get(&health).send().await.expect("health");
                assert_eq!(response.status(), StatusCode::OK, "before the stop");
                let _ = response.bytes().await;
            })
        })
        .collect();
    for opening in opened {
        opening.await.expect("connection opened");
    }
    let tasks: Vec<_> = (0..CONNECTIONS)
        .map(|_| {
            let (client, url, token) = (client.clone(), url.clone(), token.clone());
            let answered = answered.clone();
            tokio::spawn(async move {
                let mut outcomes = Vec::new();
                // Until refused (or worse); the bound only keeps a broken stop from
                // running the test forever.
                for _ in 0..10_000 {
                    let outcome = originate(&client, &url, &token).await;
                    let placed = matches!(outcome, Outcome::Placed(_));
                    outcomes.push(outcome);
                    if !placed {
                        break;
                    }
                    answered.fetch_add(1, Ordering::Relaxed);
                }
                outcomes
            })
        })
        .collect();
    // Once the burst is well under way: half as many calls placed as connections.
    let deadline = Instant::now() + Duration::from_secs(60);
    while answered.load(Ordering::Relaxed) < CONNECTIONS / 2 {
        assert!(Instant::now() < deadline, "the burst never got going");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    server.terminate();
    let mut outcomes = Vec::new();
    for task in tasks {
        outcomes.extend(task.await.expect("client task"));
    }
    // Its connections close with it.
    drop(client);
    outcomes
}

/// A client that holds one connection and reuses it while the server keeps it open.
fn one_connection() -> Client {
    Client::builder()
        .pool_max_idle_per_host(1)
        .timeout(Duration::from_secs(60))
        .build()
        .expect("client")
}

async fn originate(client: &Client, url: &str, token: &str) -> Outcome {
    let sent = client.post(url).bearer_auth(token).json(&json!({})).send();
    let response = match sent.await {
        Ok(response) => response,
        Err(e) if e.is_connect() => return Outcome::Refused,
        Err(e) => return Outcome::Unanswered(format!("{e:?}")),
    };
    let status = response.status();
    let body = match response.text().await {
        Ok(body) => body,
        Err(e) => return Outcome::Unanswered(format!("body: {e:?}")),
    };
    let id = serde_json::from_str::<Value>(&body)
        .ok()
        .and_then(|v| v["call_id"].as_str().and_then(|id| id.parse().ok()));
    match (status, id) {
        (StatusCode::OK, Some(id)) => Outcome::Placed(id),
        _ => Outcome::Answered(status, body),
    }
}

async fn token(base_url: &str) -> String {
    integration::api::Api::new(base_url.to_owned())
        .token(ADMIN.0, ADMIN.1)
        .await
}

/// Asks `/health` on `client`'s kept-alive connection until it says the process
/// drains; that answer.
async fn health_until_draining(client: &Client, url: &str) -> reqwest::Response {
    let deadline = Instant::now() + EXIT_LIMIT;
    loop {
        let response = client
            .get(url)
            .send()
            .await
            .expect("/health answered on the connection kept alive");
        if response.status() == StatusCode::SERVICE_UNAVAILABLE {
            return response;
        }
        assert_eq!(response.status(), StatusCode::OK, "/health before the stop");
        assert!(Instant::now() < deadline, "/health never said draining");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The answer that says draining closes its connection, and the next request is
/// refused: the listener closed when the drain began.
async fn assert_draining_answer(client: &Client, url: &str, response: reqwest::Response) {
    assert_eq!(
        response
            .headers()
            .get(header::CONNECTION)
            .and_then(|v| v.to_str().ok()),
        Some("close"),
        "answered during the drain: the connection closes"
    );
    let body: Value = response.json().await.expect("health JSON");
    assert_eq!(body["status"], "draining", "{body}");
    let next = client.get(url).send().await.expect_err("listener closed");
    assert!(next.is_connect(), "refused before sending: {next:?}");
}

#[tokio::test]
async fn the_local_servers_health_answers_503_draining_once_it_begins_to_stop() {
    let mut server = Process::start(&[("SHUTDOWN_DRAIN_MS", DRAIN_MS)]).await;
    let url = format!("{}/health", server.base_url);
    let client = one_connection();
    let before = client.get(&url).send().await.expect("health");
    assert_eq!(before.status(), StatusCode::OK);
    let body: Value = before.json().await.expect("health JSON");
    assert_eq!(body["status"], "ok");
    server.terminate();
    let response = health_until_draining(&client, &url).await;
    assert_draining_answer(&client, &url, response).await;
    let status = server.exited(EXIT_LIMIT).await;
    assert!(status.success(), "exit {status}\n{}", server.log_tail());
}

#[tokio::test]
async fn the_bridges_health_port_answers_503_draining_once_it_begins_to_stop() {
    let sim = pbx_sim::start(SimConfig::default()).await.expect("sim");
    let ari_url = sim.base_url();
    let mut bridge = Process::bridge(&[
        ("DISABLE_DB", "true"),
        ("ARI_HTTP_URL", ari_url.as_str()),
        ("AWS_REGION", "us-east-1"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
        ("SHUTDOWN_DRAIN_MS", DRAIN_MS),
    ])
    .await;
    let url = format!("{}/health", bridge.base_url);
    let client = one_connection();
    let before = client.get(&url).send().await.expect("health");
    assert_eq!(before.status(), StatusCode::OK);
    let _ = before.bytes().await;
    bridge.terminate();
    let response = health_until_draining(&client, &url).await;
    assert_draining_answer(&client, &url, response).await;
    let status = bridge.exited(EXIT_LIMIT).await;
    assert!(status.success(), "exit {status}\n{}", bridge.log_tail());
    sim.shutdown().await;
}

#[tokio::test]
async fn a_kept_alive_connection_that_delivers_nothing_during_the_drain_is_closed_and_the_process_exits_0()
 {
    // A drain shorter than the wait below: the idle connection held open by this test
    // must not keep the process from stopping.
    let mut server = Process::start(&[("SHUTDOWN_DRAIN_MS", "200")]).await;
    let client = one_connection();
    let url = format!("{}/health", server.base_url);
    let ok = client.get(&url).send().await.expect("health");
    assert_eq!(ok.status(), StatusCode::OK);
    let _ = ok.bytes().await;
    server.terminate();
    let status = server.exited(EXIT_LIMIT).await;
    assert!(status.success(), "exit {status}\n{}", server.log_tail());
    drop(client);
}

#[tokio::test]
async fn a_taken_port_stops_the_local_server_before_anything_starts_with_a_message_naming_it() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
    let addr = taken.local_addr().expect("its address");
    // Stands in for Asterisk: a bridge started before the port was found taken would
    // connect to it.
    let ari = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
    let ari_url = format!("http://{}", ari.local_addr().expect("its address"));
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(workspace_binary("local"))
            .env_clear()
            .envs([
                ("PATH", std::env::var("PATH").unwrap_or_default().as_str()),
                ("HOST", "127.0.0.1"),
                ("PORT", addr.port().to_string().as_str()),
                ("ARI_HTTP_URL", ari_url.as_str()),
                ("BCRYPT_COST", "4"),
                ("NO_COLOR", "1"),
            ])
            .output()
            .expect("the local binary runs")
    })
    .await
    .expect("waited");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(!output.status.success(), "exit {}: {said}", output.status);
    assert!(
        said.contains(&format!("{addr} is in use; set PORT to another port")),
        "the message names the address and what to do: {said}"
    );
    ari.set_nonblocking(true).expect("non-blocking");
    assert!(
        ari.accept()
            .is_err_and(|e| e.kind() == std::io::ErrorKind::WouldBlock),
        "nothing connected to the PBX: the bridge never started"
    );
    drop(taken);
}
