//! The real `local` binary, started the way a user starts it: from environment
//! variables alone. Built with `--features postgres` and given `DATABASE_URL`, it keeps
//! its calls in PostgreSQL: a call placed through it is read back from the database.
#![cfg(feature = "postgres")]

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use sqlx::{Connection, Row};

#[tokio::test]
async fn the_local_binary_honours_database_url_and_keeps_calls_in_postgres() {
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

/// `DATABASE_URL`; without one the test fails, never passes unrun (`./scripts/test`
/// leaves tests named `postgres` out when it is not set).
fn database_url() -> String {
    match std::env::var("DATABASE_URL") {
        Ok(url) if !url.is_empty() => url,
        _ => panic!("this test needs PostgreSQL: set DATABASE_URL"),
    }
}

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
