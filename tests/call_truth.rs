//! The truth about a call when the PBX is slow: an originate that gets no answer in time
//! is *unconfirmed*, never failed; the bridge settles it from the channel's own events or
//! from the PBX; a channel nobody wants any more is hung up at once; a recorded cancel is
//! honoured whatever the PBX was doing when it was asked; media the PBX cannot play is
//! noted on the call.

use std::time::Duration;

use integration::{Options, Session, session};
use reqwest::StatusCode;
use serde_json::{Value, json};

const LIMIT: Duration = Duration::from_secs(20);

/// A local server whose ARI client gives up after 100 ms.
async fn impatient() -> Session {
    session(Options {
        extra_env: vec![("ARI_TIMEOUT_MS", "100")],
        ..Options::default()
    })
    .await
}

async fn wait_for(api: &integration::api::Api, token: &str, id: &str, status: &str) {
    let deadline = tokio::time::Instant::now() + LIMIT;
    while api.status(token, id).await["status"] != status {
        assert!(tokio::time::Instant::now() < deadline, "never {status}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn an_originate_the_pbx_holds_past_the_timeout_is_unconfirmed_and_then_followed() {
    let Session { server, api, token } = impatient().await;
    let sim = server.pbx.as_ref().expect("simulated");
    sim.hold_requests(Duration::from_millis(400));
    let send = || {
        api.http
            .post(format!("{}/api/v2/interaction/+15550010001", api.base))
            .bearer_auth(&token)
            .header("Idempotency-Key", "slow-pbx-1")
            .json(&json!({}))
            .send()
    };
    let first = send().await.expect("first");
    assert_eq!(first.status(), StatusCode::ACCEPTED, "not a bare 503");
    let first: Value = first.json().await.expect("json");
    assert_eq!(first["originate_confirmed"], false, "{first}");
    assert_eq!(first["status"], "dialing", "{first}");
    let id = first["call_id"].as_str().expect("call_id").to_owned();
    // A client retry with the same key is the same call, not a second dial.
    let again: Value = send().await.expect("retry").json().await.expect("json");
    assert_eq!(again["call_id"], first["call_id"]);
    sim.hold_requests(Duration::ZERO);
    let (doc, seen) = api.until_final(&token, &id, LIMIT).await;
    assert_eq!(doc["status"], "completed", "{doc}");
    assert!(seen.contains(&"answered".to_owned()), "{seen:?}");
    assert!(doc["originate_unconfirmed_at"].is_string(), "{doc}");
    assert_eq!(sim.originate_count(), 1, "dialed once");
    server.stop().await;
}

#[tokio::test]
async fn an_unconfirmed_originate_with_no_channel_fails_and_its_late_channel_is_hung_up() {
    let Session { server, api, token } = impatient().await;
    let sim = server.pbx.as_ref().expect("simulated");
    // Longer than the bridge's grace period (1 s in tests): the PBX is asked, has no
    // such channel, and the call is settled before the PBX places it after all.
    sim.hold_requests(Duration::from_millis(2500));
    let response = api.interaction(&token, "+15550080001", json!({})).await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let id = response.json::<Value>().await.expect("json")["call_id"]
        .as_str()
        .expect("call_id")
        .to_owned();
    sim.hold_requests(Duration::ZERO);
    let (doc, _) = api.until_final(&token, &id, LIMIT).await;
    assert_eq!(doc["status"], "failed", "{doc}");
    assert_eq!(doc["failure_reason"], "originate_unconfirmed", "{doc}");
    // The held originate goes through now: a callee that would stay up for a minute.
    let deadline = tokio::time::Instant::now() + LIMIT;
    while sim.originate_count() == 0 {
        assert!(tokio::time::Instant::now() < deadline, "never placed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    while sim.live_channels() > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "a channel of a finished call was left up"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let after = api.status(&token, &id).await;
    assert_eq!(
        after["status"], "failed",
        "a final status never moves: {after}"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_cancel_of_an_unconfirmed_call_is_honoured_when_its_channel_appears() {
    let Session { server, api, token } = impatient().await;
    let sim = server.pbx.as_ref().expect("simulated");
    sim.hold_requests(Duration::from_millis(400));
    let response = api.interaction(&token, "+15550030001", json!({})).await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let id = response.json::<Value>().await.expect("json")["call_id"]
        .as_str()
        .expect("call_id")
        .to_owned();
    let canceled = api.delete(&token, &format!("/api/v2/calls/{id}")).await;
    assert_eq!(canceled.status(), StatusCode::ACCEPTED);
    let canceled: Value = canceled.json().await.expect("json");
    assert!(canceled["cancel_requested_at"].is_string(), "{canceled}");
    sim.hold_requests(Duration::ZERO);
    let (doc, seen) = api.until_final(&token, &id, LIMIT).await;
    assert_eq!(doc["status"], "canceled", "{doc}");
    assert!(!seen.contains(&"answered".to_owned()), "{seen:?}");
    server.stop().await;
}

#[tokio::test]
async fn a_cancel_during_a_pbx_outage_answers_what_will_happen() {
    let Session { server, api, token } = impatient().await;
    let sim = server.pbx.as_ref().expect("simulated");
    let id = api.call(&token, "+15550030002", json!({})).await;
    wait_for(&api, &token, &id, "ringing").await;
    sim.hold_requests(Duration::from_millis(500));
    let response = api.delete(&token, &format!("/api/v2/calls/{id}")).await;
    assert_eq!(
        response.status(),
        StatusCode::ACCEPTED,
        "the cancel is recorded and will be honoured"
    );
    let body: Value = response.json().await.expect("json");
    assert!(body["cancel_requested_at"].is_string(), "{body}");
    sim.hold_requests(Duration::ZERO);
    let (doc, _) = api.until_final(&token, &id, LIMIT).await;
    assert_eq!(doc["status"], "canceled", "{doc}");
    server.stop().await;
}

#[tokio::test]
async fn a_cancel_answers_the_status_the_call_ends_in() {
    let Session { server, api, token } = session(Options::default()).await;
    let id = api.call(&token, "+15550030003", json!({})).await;
    wait_for(&api, &token, &id, "ringing").await;
    let response = api.delete(&token, &format!("/api/v2/calls/{id}")).await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["status"], "canceled", "{body}");
    server.stop().await;
}

#[tokio::test]
async fn media_the_pbx_cannot_play_is_noted_and_the_call_still_completes() {
    let Session { server, api, token } = session(Options::default()).await;
    let body = json!({
        "mode": "playback",
        "media": ["sound:hello-world", "sound:missing-prompt", "sound:goodbye"],
    });
    let (_, doc) = api.call_to_end(&token, "+15550010003", body).await;
    assert_eq!(doc["status"], "completed", "{doc}");
    assert_eq!(
        doc["media_failed"],
        json!(["sound:missing-prompt"]),
        "{doc}"
    );
    server.stop().await;
}
