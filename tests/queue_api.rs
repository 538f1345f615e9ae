//! The queue over HTTP, on the local server as `main` starts it (settings from
//! variables): queued calls in the status document, 429 past `max_queued_calls`,
//! canceling a queued call, calling windows, retries as the client and its webhook see
//! them, and bad input.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use integration::receiver::Receiver;
use integration::{ADMIN, Options, Session, session};
use reqwest::StatusCode;
use serde_json::{Value, json};

const LIMIT: Duration = Duration::from_secs(30);
const BUSY: &str = "+15550020001";
/// Rings until its ring timeout: a call that holds its line.
const RINGS: &str = "+15550030001";

fn time(doc: &Value, field: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(doc[field].as_str().expect(field))
        .expect("RFC 3339")
        .with_timezone(&Utc)
}

async fn queued_calls_wait_their_turn_and_a_full_queue_answers_429(database_url: Option<String>) {
    let Session { server, api, token } = session(Options {
        extra_env: vec![("MAX_CONCURRENT_CALLS", "1")],
        database_url,
        ..Options::default()
    })
    .await;
    let mut admin = server
        .store
        .get_user(ADMIN.0)
        .await
        .expect("read")
        .expect("admin");
    admin.limits.max_queued_calls = Some(2);
    assert!(server.store.update_user(&admin).await.expect("update"));
    // 100 simulated seconds of ringing: 2 s here, long enough to look at the queue.
    let ringing = json!({ "timeout": 100000 });
    // The first takes the only line; two wait; the fourth finds the queue full.
    let first = api.interaction(&token, RINGS, ringing.clone()).await;
    assert_eq!(first.status(), StatusCode::OK);
    let first: Value = first.json().await.expect("json");
    assert_ne!(first["status"], "queued", "{first}");
    let mut queued = Vec::new();
    for n in 0..2 {
        let response = api
            .http
            .post(format!("{}/api/v2/interaction/{RINGS}", api.base))
            .bearer_auth(&token)
            .header("Idempotency-Key", format!("queued-{n}"))
            .json(&ringing)
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), StatusCode::OK);
        let body: Value = response.json().await.expect("json");
        assert_eq!(body["status"], "queued", "{body}");
        queued.push(body["call_id"].as_str().expect("id").to_owned());
    }
    let full = api.interaction(&token, RINGS, ringing.clone()).await;
    assert_eq!(full.status(), StatusCode::TOO_MANY_REQUESTS);
    // A repeat of an accepted request is answered with its call, full queue or not.
    let repeat = api
        .http
        .post(format!("{}/api/v2/interaction/{RINGS}", api.base))
        .bearer_auth(&token)
        .header("Idempotency-Key", "queued-1")
        .json(&ringing)
        .send()
        .await
        .expect("request");
    assert_eq!(repeat.status(), StatusCode::OK);
    let repeat: Value = repeat.json().await.expect("json");
    assert_eq!(
        repeat["call_id"].as_str(),
        Some(queued[1].as_str()),
        "{repeat}"
    );
    let retry_after = integration::api::retry_after(&full);
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    let body: Value = full.json().await.expect("JSON error body");
    assert!(body["detail"].as_str().expect("detail").contains("queued"));
    // The status document of a queued call.
    let doc = api.status(&token, &queued[1]).await;
    assert_eq!(doc["status"], "queued");
    assert_eq!(doc["is_active"], true);
    assert_eq!(doc["attempt_number"], 1);
    assert_eq!(doc["attempts"].as_array().map(Vec::len), Some(1), "{doc}");
    assert_eq!(doc["attempts"][0]["status"], "queued");
    assert!(doc["dialed_at"].is_null());
    // Canceling a queued call ends it at once, never dialed, and frees its place.
    let canceled = api
        .delete(&token, &format!("/api/v2/calls/{}", queued[1]))
        .await;
    assert_eq!(canceled.status(), StatusCode::ACCEPTED);
    let canceled: Value = canceled.json().await.expect("json");
    assert_eq!(canceled["status"], "canceled", "{canceled}");
    assert!(canceled["dialed_at"].is_null());
    let again = api.interaction(&token, RINGS, ringing.clone()).await;
    assert_eq!(
        again.status(),
        StatusCode::OK,
        "the canceled call left the queue"
    );
    let again: Value = again.json().await.expect("json");
    // Every call still open ends no_answer in turn, one at a time.
    for id in [
        first["call_id"].as_str().expect("id"),
        queued[0].as_str(),
        again["call_id"].as_str().expect("id"),
    ] {
        let (doc, _) = api.until_final(&token, id, LIMIT).await;
        assert_eq!(doc["status"], "no_answer", "{doc}");
    }
    let dialed = server.pbx.as_ref().expect("sim").originates();
    assert_eq!(dialed.len(), 3, "the canceled call was never dialed");
    assert!(
        !dialed.iter().any(|(id, _)| *id == queued[1]),
        "the canceled call was dialed"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_calls_wait_their_turn_and_a_full_queue_answers_429_in_process() {
    queued_calls_wait_their_turn_and_a_full_queue_answers_429(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_calls_wait_their_turn_and_a_full_queue_answers_429_on_postgres() {
    let schema = integration::pg::fresh_schema().await;
    queued_calls_wait_their_turn_and_a_full_queue_answers_429(Some(schema.url.clone())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_outside_its_window_waits_for_the_window_to_open() {
    let Session { server, api, token } = session(Options::default()).await;
    // A one-minute window that opened an hour ago in UTC: closed now, open tomorrow.
    let now = Utc::now();
    let start = now - chrono::Duration::hours(1);
    let end = start + chrono::Duration::minutes(1);
    let window = json!({
        "start": start.format("%H:%M").to_string(),
        "end": end.format("%H:%M").to_string(),
        "time_zone": "UTC",
    });
    let response = api
        .interaction(&token, BUSY, json!({ "window": window }))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["status"], "queued", "{body}");
    let doc = api
        .status(&token, body["call_id"].as_str().expect("id"))
        .await;
    let due = time(&doc, "queued_until");
    assert!(
        due > now + chrono::Duration::hours(22) && due <= now + chrono::Duration::hours(24),
        "{doc}"
    );
    assert_eq!(doc["window"], window);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        server.pbx.as_ref().expect("sim").originates().is_empty(),
        "dialed outside its window"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_call_shows_every_attempt_to_the_client_and_its_webhook() {
    let Session { server, api, token } = session(Options {
        extra_env: vec![
            ("WEBHOOK_ALLOW_PRIVATE", "true"),
            ("WEBHOOK_ALLOW_INSECURE", "true"),
        ],
        ..Options::default()
    })
    .await;
    let receiver = Receiver::start(&[]).await;
    let response = api
        .interaction(
            &token,
            BUSY,
            json!({
                "status_callback": receiver.url,
                "retry": { "max_attempts": 2, "on": ["busy"], "delay_ms": 1000 },
            }),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.expect("json");
    let id = body["call_id"].as_str().expect("id").to_owned();
    let (doc, _) = api.until_final(&token, &id, LIMIT).await;
    assert_eq!(doc["status"], "busy");
    assert_eq!(doc["attempt_number"], 2);
    let attempts = doc["attempts"].as_array().expect("attempts");
    assert_eq!(attempts.len(), 2, "{doc}");
    for (n, attempt) in attempts.iter().enumerate() {
        assert_eq!(attempt["attempt_number"], n + 1);
        assert_eq!(attempt["status"], "busy");
        assert!(attempt["dialed_at"].is_string() && attempt["ended_at"].is_string());
    }
    assert_eq!(doc["retry"]["max_attempts"], 2);
    // The webhook: the first attempt's end, the wait in the queue, the second attempt.
    let deadline = Instant::now() + LIMIT;
    let seen = loop {
        let events: Vec<(u64, String)> = receiver
            .received()
            .iter()
            .map(|r| r.json())
            .filter(|e| e["call_id"] == id.as_str() && e["type"] == "status")
            .map(|e| {
                (
                    e["attempt_number"].as_u64().unwrap_or(0),
                    e["status"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect();
        if events.last().is_some_and(|(n, s)| *n == 2 && s == "busy") || Instant::now() > deadline {
            break events;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let mut unique = seen.clone();
    unique.dedup();
    // `dialing` is written by whoever placed the attempt, on the PBX's answer to the
    // originate. The callee is busy at once, so the bridge may have written the end
    // first (a loaded CI run saw it), and a status never goes back: an attempt's
    // `dialing` may be missing, but where it is reported it follows its `pending`.
    for (i, (n, status)) in unique.iter().enumerate() {
        if status == "dialing" {
            assert_eq!(unique[i - 1], (*n, "pending".to_owned()), "{unique:?}");
        }
    }
    let reported: Vec<(u64, String)> = unique.into_iter().filter(|(_, s)| s != "dialing").collect();
    let expected: Vec<(u64, String)> = [
        (1, "pending"),
        (1, "busy"),
        (2, "queued"),
        (2, "pending"),
        (2, "busy"),
    ]
    .iter()
    .map(|(n, s)| (*n, (*s).to_owned()))
    .collect();
    assert_eq!(reported, expected, "{seen:?}");
    server.stop().await;
}

#[tokio::test]
async fn bad_queue_fields_get_422_naming_the_field() {
    let Session { server, api, token } = session(Options::default()).await;
    let far = (Utc::now() + chrono::Duration::days(31)).to_rfc3339();
    let cases = [
        (
            json!({ "retry": { "max_attempts": 9 } }),
            "retry.max_attempts",
        ),
        (
            json!({ "retry": { "max_attempts": 2, "on": ["completed"] } }),
            "retry.on",
        ),
        (
            json!({ "retry": { "max_attempts": 2, "delay_ms": 10 } }),
            "retry.delay_ms",
        ),
        (json!({ "send_at": far }), "send_at"),
        (json!({ "send_at": "next tuesday" }), "send_at"),
        (
            json!({ "window": { "start": "09:00", "end": "25:00", "time_zone": "UTC" } }),
            "window.end",
        ),
        (
            json!({ "window": { "start": "09:00", "end": "17:00", "time_zone": "Mars/Base" } }),
            "window.time_zone",
        ),
    ];
    for (body, field) in cases {
        let response = api.interaction(&token, BUSY, body.clone()).await;
        assert_eq!(
            response.status(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body}"
        );
        let error: Value = response.json().await.expect("JSON error");
        assert_eq!(error["field"], field, "{body}: {error}");
    }
    // Unknown members of the nested objects are refused as well, as JSON.
    let response = api
        .interaction(
            &token,
            BUSY,
            json!({ "retry": { "max_attempts": 2, "tries": 3 } }),
        )
        .await;
    assert!(response.status().is_client_error());
    let _: Value = response.json().await.expect("JSON error");
    assert!(
        server.pbx.as_ref().expect("sim").originates().is_empty(),
        "nothing was dialed"
    );
    server.stop().await;
}
