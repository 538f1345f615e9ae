//! The real `local` binary, started the way a user starts it: from environment
//! variables alone. Built with `--features postgres` and given `DATABASE_URL`, it keeps
//! its calls in PostgreSQL. On SIGTERM it answers every request in flight before it
//! exits 0.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

#[tokio::test]
async fn sigterm_answers_every_request_in_flight_then_exits_0() {
    let port = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_local"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("PORT", port.to_string())
        .env("ADMIN_PASSWORD", "binary-test-password")
        .env("BCRYPT_COST", "4")
        .env("PBX_SIM_TIME_SCALE", "0.02")
        .env("DIAL_ENDPOINT", "Local/{number}@test-pstn")
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the local binary starts");
    let log = Arc::new(Mutex::new(String::new()));
    let reader = {
        let log = Arc::clone(&log);
        let stdout = child.stdout.take().expect("stdout");
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let mut log = log.lock().expect("log");
                log.push_str(&line);
                log.push('\n');
            }
        })
    };
    let mut server = Server(child);
    let base_url = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    wait_for_bridge(&http, &base_url, &mut server.0).await;
    let token = token(&http, &base_url).await;

    // Fresh connections only: no request rides a keep-alive connection that the
    // shutdown closes between two requests.
    let burst = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .expect("client");
    let done = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let requests: Vec<_> = (0..300)
        .map(|i| {
            let (burst, url, token) = (burst.clone(), base_url.clone(), token.clone());
            let done = Arc::clone(&done);
            tokio::spawn(async move {
                let answer = burst
                    .post(format!("{url}/api/v2/interaction/+1555001{i:04}"))
                    .bearer_auth(token)
                    .json(&serde_json::json!({}))
                    .send()
                    .await
                    .map(|r| r.status().as_u16());
                done.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                answer
            })
        })
        .collect();
    // SIGTERM in the middle of the burst.
    let deadline = Instant::now() + Duration::from_secs(20);
    while done.load(std::sync::atomic::Ordering::Relaxed) < 20 {
        assert!(Instant::now() < deadline, "the burst is not being answered");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let pid = server.0.id().to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(killed.success());
    let mut answered = 0;
    for request in requests {
        match request.await.expect("task") {
            Ok(_) => answered += 1,
            // Not accepted: the listener was closed already. Fine; nothing was placed.
            Err(e) if e.is_connect() => {}
            Err(e) => panic!("a request in flight was dropped: {e}"),
        }
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    let exit = loop {
        if let Some(exit) = server.0.try_wait().expect("wait") {
            break exit;
        }
        assert!(
            Instant::now() < deadline,
            "still running 30 s after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(exit.success(), "exit status {exit}");
    reader.join().expect("log reader");
    let log = log.lock().expect("log").clone();
    assert!(log.contains("SIGTERM"), "{log}");
    assert!(answered >= 20, "only {answered} answers");
}

#[cfg(feature = "postgres")]
#[tokio::test]
async fn the_local_binary_honours_database_url_and_keeps_calls_in_postgres() {
    use sqlx::{Connection, Row};
    let base = database_url();
    let schema = format!("dialer_test_{}_local_binary", chrono_free_now());
    let mut admin = sqlx::PgConnection::connect(&base)
        .await
        .expect("PostgreSQL at DATABASE_URL is reachable");
    // The name is ours (digits and letters): nothing from outside reaches this statement.
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
        .execute(&mut admin)
        .await
        .expect("schema created");
    let separator = if base.contains('?') { '&' } else { '?' };
    let url = format!("{base}{separator}options=-c%20search_path%3D{schema}");

    let port = free_port();
    let mut server = Server(
        Command::new(env!("CARGO_BIN_EXE_local"))
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("DATABASE_URL", &url)
            .env("PORT", port.to_string())
            .env("ADMIN_PASSWORD", "binary-test-password")
            .env("BCRYPT_COST", "4")
            .env("PBX_SIM_TIME_SCALE", "0.02")
            .env("DIAL_ENDPOINT", "Local/{number}@test-pstn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the local binary starts"),
    );
    let base_url = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    wait_for_bridge(&http, &base_url, &mut server.0).await;

    let token: Value = http
        .post(format!("{base_url}/api/v2/token"))
        .form(&[("username", "admin"), ("password", "binary-test-password")])
        .send()
        .await
        .expect("token")
        .json()
        .await
        .expect("token JSON");
    let token = token["access_token"]
        .as_str()
        .expect("access_token")
        .to_owned();
    let placed: Value = http
        .post(format!("{base_url}/api/v2/interaction/+15550010001"))
        .bearer_auth(&token)
        .json(&serde_json::json!({}))
        .send()
        .await
        .expect("originate")
        .json()
        .await
        .expect("originate JSON");
    let call_id = placed["call_id"].as_str().expect("call_id").to_owned();

    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        let doc: Value = http
            .get(format!("{base_url}/api/v2/calls/{call_id}"))
            .bearer_auth(&token)
            .send()
            .await
            .expect("status")
            .json()
            .await
            .expect("status JSON");
        if doc["is_completed"] == true {
            break doc["status"].as_str().unwrap_or_default().to_owned();
        }
        assert!(Instant::now() < deadline, "the call never ended: {doc}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(status, "completed");

    // The record is in the database, not in the process.
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT status, phone_number FROM {schema}.calls WHERE call_id = $1::uuid"
    )))
    .bind(&call_id)
    .fetch_one(&mut admin)
    .await
    .expect("the call is in PostgreSQL");
    assert_eq!(row.get::<String, _>("status"), "completed");
    assert_eq!(row.get::<String, _>("phone_number"), "+15550010001");

    drop(server);
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
        .execute(&mut admin)
        .await
        .expect("schema dropped");
}

/// Kills the server when the test ends, passed or failed.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn token(http: &reqwest::Client, base_url: &str) -> String {
    let token: Value = http
        .post(format!("{base_url}/api/v2/token"))
        .form(&[("username", "admin"), ("password", "binary-test-password")])
        .send()
        .await
        .expect("token")
        .json()
        .await
        .expect("token JSON");
    token["access_token"]
        .as_str()
        .expect("access_token")
        .to_owned()
}

/// `DATABASE_URL`; without one the test fails, never passes unrun (`./scripts/test`
/// leaves tests named `postgres` out when it is not set).
#[cfg(feature = "postgres")]
fn database_url() -> String {
    match std::env::var("DATABASE_URL") {
        Ok(url) if !url.is_empty() => url,
        _ => panic!("this test needs PostgreSQL: set DATABASE_URL"),
    }
}

#[cfg(feature = "postgres")]
fn chrono_free_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

async fn wait_for_bridge(http: &reqwest::Client, base_url: &str, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(Some(exit)) = child.try_wait() {
            panic!("the local binary exited at start: {exit}");
        }
        if let Ok(response) = http.get(format!("{base_url}/health")).send().await
            && let Ok(body) = response.json::<Value>().await
            && body["bridge"]["connected"] == true
        {
            return;
        }
        assert!(Instant::now() < deadline, "the local binary never came up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
