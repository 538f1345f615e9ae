//! The queue's bounds and the idempotency key's guard, over HTTP on the local server as
//! `main` starts it (settings from variables): every user has a default queue limit,
//! all users together a ceiling, both answered 429 with `Retry-After` and a `code`; a
//! key reused for another request is refused, never answered with the first call.

use chrono::Utc;
use integration::api::retry_after;
use integration::{Options, Session, session};
use reqwest::StatusCode;
use serde_json::{Value, json};

const BUSY: &str = "+15550020001";

/// A call that waits in the queue for an hour: scheduled, so no limit is involved.
fn later() -> Value {
    json!({ "send_at": (Utc::now() + chrono::Duration::hours(1)).to_rfc3339() })
}

async fn queue_a_call(api: &integration::api::Api, token: &str) -> reqwest::Response {
    api.interaction(token, BUSY, later()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_with_no_queue_limit_of_their_own_gets_429_at_the_default_limit() {
    let Session { server, api, token } = session(Options {
        extra_env: vec![("DEFAULT_MAX_QUEUED_CALLS", "2")],
        ..Options::default()
    })
    .await;
    for _ in 0..2 {
        let accepted = queue_a_call(&api, &token).await;
        assert_eq!(accepted.status(), StatusCode::OK);
        let body: Value = accepted.json().await.expect("json");
        assert_eq!(body["status"], "queued", "{body}");
        assert_eq!(
            body["originate_confirmed"], false,
            "nothing was originated yet: {body}"
        );
    }
    let full = queue_a_call(&api, &token).await;
    assert_eq!(full.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!((1..=60).contains(&retry_after(&full)));
    let body: Value = full.json().await.expect("JSON error body");
    assert_eq!(body["code"], "queue_full", "{body}");
    let listed = api.get(&token, "/api/v2/calls?limit=100").await;
    let listed: Value = listed.json().await.expect("json");
    assert_eq!(
        listed["calls"].as_array().map(Vec::len),
        Some(2),
        "the refused call left nothing behind: {listed}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whole_services_queue_ceiling_refuses_a_user_under_their_own_limit() {
    let Session { server, api, token } = session(Options {
        extra_env: vec![
            ("DEFAULT_MAX_QUEUED_CALLS", "100"),
            ("MAX_QUEUED_CALLS", "2"),
        ],
        ..Options::default()
    })
    .await;
    let mut queued = Vec::new();
    for _ in 0..2 {
        let accepted = queue_a_call(&api, &token).await;
        assert_eq!(accepted.status(), StatusCode::OK);
        let body: Value = accepted.json().await.expect("json");
        queued.push(body["call_id"].as_str().expect("id").to_owned());
    }
    let full = queue_a_call(&api, &token).await;
    assert_eq!(full.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!((1..=60).contains(&retry_after(&full)));
    let body: Value = full.json().await.expect("JSON error body");
    assert_eq!(body["code"], "service_queue_full", "{body}");
    // A call leaving the queue frees its place for anyone.
    let canceled = api
        .delete(&token, &format!("/api/v2/calls/{}", queued[0]))
        .await;
    assert_eq!(canceled.status(), StatusCode::ACCEPTED);
    assert_eq!(queue_a_call(&api, &token).await.status(), StatusCode::OK);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotency_key_reused_for_another_request_is_refused_and_a_repeat_gets_its_call() {
    let Session { server, api, token } = session(Options::default()).await;
    let post = |number: &'static str, body: Value| {
        let api = &api;
        let token = &token;
        async move {
            api.http
                .post(format!("{}/api/v2/interaction/{number}", api.base))
                .bearer_auth(token)
                .header("Idempotency-Key", "order-77")
                .json(&body)
                .send()
                .await
                .expect("request")
        }
    };
    let first_body = later();
    let first = post(BUSY, first_body.clone()).await;
    assert_eq!(first.status(), StatusCode::OK);
    let first: Value = first.json().await.expect("json");
    let repeat = post(BUSY, first_body.clone()).await;
    assert_eq!(repeat.status(), StatusCode::OK);
    let repeat: Value = repeat.json().await.expect("json");
    assert_eq!(
        repeat["call_id"], first["call_id"],
        "the same request repeated"
    );
    for (number, body) in [
        ("+15550020002", first_body.clone()),
        (BUSY, later()),
        (BUSY, json!({ "variables": { "order": "78" } })),
    ] {
        let reused = post(number, body.clone()).await;
        assert_eq!(
            reused.status(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "{number} {body}"
        );
        let error: Value = reused.json().await.expect("JSON error body");
        assert_eq!(error["code"], "idempotency_key_reused", "{error}");
        assert_eq!(error["field"], "Idempotency-Key", "{error}");
    }
    let listed = api.get(&token, "/api/v2/calls?limit=100").await;
    let listed: Value = listed.json().await.expect("json");
    assert_eq!(
        listed["calls"].as_array().map(Vec::len),
        Some(1),
        "no second call was placed: {listed}"
    );
    server.stop().await;
}
