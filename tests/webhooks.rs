//! Status webhooks end to end: the local server delivers each call's events to real
//! receivers on loopback, signed, in order, with no gaps, retried, and never to an
//! address a webhook may not reach.

use std::time::{Duration, Instant};

use integration::receiver::{Receiver, signature_verifies};
use integration::{Options, Session, session};
use reqwest::StatusCode;
use serde_json::{Value, json};

const SECRET: &str = "whsec_integration-test-secret";
const LIMIT: Duration = Duration::from_secs(20);

/// Receivers listen on loopback over plain HTTP: both are lifted for these tests.
fn local_receivers() -> Options {
    Options {
        extra_env: vec![
            ("WEBHOOK_ALLOW_PRIVATE", "true"),
            ("WEBHOOK_ALLOW_INSECURE", "true"),
            ("WEBHOOK_SECRET", SECRET),
        ],
        ..Options::default()
    }
}

/// The events of one call as the receiver got them, first delivery of each.
fn first_deliveries(received: &[integration::receiver::Received], call_id: &str) -> Vec<Value> {
    let mut seen = std::collections::BTreeSet::new();
    received
        .iter()
        .map(|r| r.json())
        .filter(|e| e["call_id"] == call_id)
        .filter(|e| seen.insert(e["sequence"].as_u64()))
        .collect()
}

async fn events_until_final(receiver: &Receiver, call_id: &str) -> Vec<Value> {
    let deadline = Instant::now() + LIMIT;
    loop {
        let events = first_deliveries(&receiver.received(), call_id);
        if events
            .last()
            .is_some_and(|e| e["call"]["is_completed"] == true)
        {
            return events;
        }
        assert!(
            Instant::now() < deadline,
            "no final event for {call_id}: {events:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn every_status_of_each_number_range_arrives_in_order_signed_and_as_the_final_document() {
    let Session { server, api, token } = session(local_receivers()).await;
    let receiver = Receiver::start(&[]).await;
    let cases: &[(&str, Value)] = &[
        ("+15550010001", json!({})),
        ("+15550020001", json!({})),
        ("+15550030001", json!({ "timeout": 2000 })),
        ("+15550040001", json!({})),
        ("+15550050001", json!({})),
        (
            "+15550070001",
            json!({ "mode": "playback", "media": ["sound:hello-world"] }),
        ),
    ];
    for (number, options) in cases {
        let mut body = options.clone();
        body["status_callback"] = json!(receiver.url);
        let (id, document) = api.call_to_end(&token, number, body).await;
        let events = events_until_final(&receiver, &id).await;
        // Every status the final document shows the call went through, in order.
        let mut expected = vec!["pending"];
        for (stamp, status) in [
            ("dialed_at", "dialing"),
            ("ringing_at", "ringing"),
            ("answered_at", "answered"),
        ] {
            if document[stamp].is_string() {
                expected.push(status);
            }
        }
        expected.push(document["status"].as_str().unwrap_or_default());
        let seen: Vec<&str> = events
            .iter()
            .filter(|e| e["type"] == "status")
            .filter_map(|e| e["status"].as_str())
            .collect();
        assert_eq!(seen, expected, "{number}");
        let mut previous = Value::Null;
        for (n, event) in events.iter().enumerate() {
            assert_eq!(event["sequence"], n + 1, "{number}: no gaps");
            assert_eq!(event["attempt_number"], 1);
            assert_eq!(event["call"]["status"], event["status"]);
            if event["type"] == "status" {
                assert_eq!(event["previous_status"], previous, "{number}");
                previous = event["status"].clone();
            }
        }
        assert_eq!(
            events.last().map(|e| &e["call"]),
            Some(&document),
            "{number}: the final event carries the final document"
        );
    }
    for request in receiver.received() {
        assert_eq!(request.header("content-type"), "application/json");
        let event = request.json();
        assert_eq!(
            request.header("dialer-event-id"),
            event["event_id"].as_str().unwrap_or_default()
        );
        assert!(
            signature_verifies(&request.header("dialer-signature"), &request.body, SECRET),
            "signature of {event}"
        );
        assert!(!signature_verifies(
            &request.header("dialer-signature"),
            &request.body,
            "another secret"
        ));
    }
    server.stop().await;
}

#[tokio::test]
async fn a_receiver_that_fails_three_times_still_gets_every_event_in_order() {
    let Session { server, api, token } = session(local_receivers()).await;
    let receiver = Receiver::start(&[500, 503, 500]).await;
    let body = json!({ "status_callback": receiver.url });
    let (id, _) = api.call_to_end(&token, "+15550020001", body).await;
    let events = events_until_final(&receiver, &id).await;
    let sequences: Vec<u64> = events
        .iter()
        .filter_map(|e| e["sequence"].as_u64())
        .collect();
    // busy: pending, dialing, busy.
    assert_eq!(sequences, [1, 2, 3]);
    // In order on the wire too: nothing after event 1 before event 1 got its 200.
    let wire: Vec<u64> = receiver
        .received()
        .iter()
        .filter_map(|r| r.json()["sequence"].as_u64())
        .collect();
    assert_eq!(
        wire,
        [1, 1, 1, 1, 2, 3],
        "each event waits for the one before"
    );
    let timeline: Value = api
        .get(&token, &format!("/api/v2/calls/{id}/events"))
        .await
        .json()
        .await
        .expect("JSON");
    let first = &timeline["events"][0]["delivery"];
    assert_eq!(first["state"], "delivered", "{timeline}");
    assert_eq!(first["attempts"], 4);
    assert_eq!(first["last_response_code"], 200);
    assert!(first["delivered_at"].is_string());
    assert_eq!(timeline["events"].as_array().map(Vec::len), Some(3));
    server.stop().await;
}

#[tokio::test]
async fn a_receiver_that_hangs_does_not_delay_another_calls_events() {
    let Session { server, api, token } = session(local_receivers()).await;
    let stuck = Receiver::hanging().await;
    let prompt = Receiver::start(&[]).await;
    api.call(
        &token,
        "+15550010001",
        json!({ "status_callback": stuck.url }),
    )
    .await;
    stuck.wait_for(1, LIMIT).await;
    let started = Instant::now();
    let (id, _) = api
        .call_to_end(
            &token,
            "+15550020001",
            json!({ "status_callback": prompt.url }),
        )
        .await;
    events_until_final(&prompt, &id).await;
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "the other call's events waited {:?} behind a hanging receiver",
        started.elapsed()
    );
    assert_eq!(
        stuck.received().len(),
        1,
        "the stuck call's next event waits for the first"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_4xx_is_recorded_and_not_retried_and_does_not_hold_back_later_events() {
    let Session { server, api, token } = session(local_receivers()).await;
    let receiver = Receiver::start(&[410]).await;
    let (id, _) = api
        .call_to_end(
            &token,
            "+15550020001",
            json!({ "status_callback": receiver.url }),
        )
        .await;
    events_until_final(&receiver, &id).await;
    let timeline: Value = api
        .get(&token, &format!("/api/v2/calls/{id}/events"))
        .await
        .json()
        .await
        .expect("JSON");
    let first = &timeline["events"][0]["delivery"];
    assert_eq!(first["state"], "dead", "{timeline}");
    assert_eq!(first["attempts"], 1);
    assert_eq!(first["last_response_code"], 410);
    assert_eq!(timeline["events"][1]["delivery"]["state"], "delivered");
    server.stop().await;
}

#[tokio::test]
async fn only_the_events_asked_for_are_sent_numbered_without_gaps() {
    let Session { server, api, token } = session(local_receivers()).await;
    let receiver = Receiver::start(&[]).await;
    let body = json!({
        "status_callback": receiver.url,
        "status_callback_events": ["answered", "completed", "dtmf"],
        "mode": "playback",
        "media": ["sound:hello-world", "sound:hello-world", "sound:hello-world"],
        "gather_dtmf": true,
    });
    let (id, _) = api.call_to_end(&token, "+15550070001", body).await;
    let events = events_until_final(&receiver, &id).await;
    let kinds: Vec<(String, String)> = events
        .iter()
        .map(|e| {
            (
                e["type"].as_str().unwrap_or_default().to_owned(),
                e["status"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    assert_eq!(kinds[0], ("status".into(), "answered".into()), "{events:?}");
    assert!(
        kinds.contains(&("dtmf".into(), "answered".into())),
        "{events:?}"
    );
    assert_eq!(kinds.last(), Some(&("status".into(), "completed".into())));
    let sequences: Vec<u64> = events
        .iter()
        .filter_map(|e| e["sequence"].as_u64())
        .collect();
    assert_eq!(sequences, (1..=events.len() as u64).collect::<Vec<_>>());
    let digit = events
        .iter()
        .find(|e| e["type"] == "dtmf")
        .map(|e| e["digit"].clone());
    assert_eq!(digit, Some(json!("1")));
    server.stop().await;
}

#[tokio::test]
async fn callbacks_to_private_loopback_or_metadata_addresses_are_refused_with_422() {
    let Session { server, api, token } = session(Options {
        extra_env: vec![("WEBHOOK_ALLOW_INSECURE", "true")],
        ..Options::default()
    })
    .await;
    for url in [
        "http://127.0.0.1:9/hook",
        "http://10.0.0.1/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]/hook",
        "http://[::ffff:127.0.0.1]/hook",
        "http://[fd00:ec2::254]/hook",
        "http://2130706433/hook",
        "http://0177.0.0.1/hook",
        "http://localhost:9/hook",
        "ftp://example.com/hook",
        "not a url",
    ] {
        let response = api
            .interaction(&token, "+15550010001", json!({ "status_callback": url }))
            .await;
        assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY, "{url}");
        let body: Value = response.json().await.expect("JSON");
        assert_eq!(body["field"], "status_callback", "{url}: {body}");
    }
    let list: Value = api
        .get(&token, "/api/v2/calls")
        .await
        .json()
        .await
        .expect("JSON");
    assert_eq!(list["calls"], json!([]), "no call was placed");
    server.stop().await;

    let Session { server, api, token } = session(Options::default()).await;
    let plain = api
        .interaction(
            &token,
            "+15550010001",
            json!({ "status_callback": "http://93.184.216.34/hook" }),
        )
        .await;
    assert_eq!(
        plain.status(),
        StatusCode::UNPROCESSABLE_ENTITY,
        "https is required"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_users_default_webhook_is_used_when_a_request_names_none() {
    let Session { server, api, token } = session(local_receivers()).await;
    let receiver = Receiver::start(&[]).await;
    let hasher = dialer_boot::password_hasher(4);
    let mut out = Vec::new();
    users::run(
        &[
            "set-webhook".into(),
            integration::ADMIN.0.into(),
            receiver.url.clone(),
        ],
        &*server.store,
        &*hasher,
        &mut std::io::Cursor::new(Vec::new()),
        &mut out,
    )
    .await
    .expect("set-webhook");
    let (id, _) = api.call_to_end(&token, "+15550020001", json!({})).await;
    events_until_final(&receiver, &id).await;
    server.stop().await;
}

#[tokio::test]
async fn a_deliverer_stopped_mid_stream_resumes_after_a_restart_with_nothing_lost_on_postgres() {
    let schema = integration::pg::fresh_schema().await;
    let on_postgres = || {
        let mut options = local_receivers();
        options.database_url = Some(schema.url.clone());
        options
    };
    // The receiver is down for the first attempts: events pile up in the outbox.
    let receiver = Receiver::start(&[503, 503]).await;
    let Session { server, api, token } = session(on_postgres()).await;
    let (id, document) = api
        .call_to_end(
            &token,
            "+15550020001",
            json!({ "status_callback": receiver.url }),
        )
        .await;
    receiver.wait_for(1, LIMIT).await;
    server.stop().await;
    let before_restart = receiver.received().len();

    let Session { server, .. } = session(on_postgres()).await;
    let events = events_until_final(&receiver, &id).await;
    let sequences: Vec<u64> = events
        .iter()
        .filter_map(|e| e["sequence"].as_u64())
        .collect();
    assert_eq!(sequences, [1, 2, 3], "all of them, in order");
    assert_eq!(events.last().map(|e| &e["call"]), Some(&document));
    assert!(
        receiver.received().len() > before_restart,
        "the new process delivered"
    );
    server.stop().await;
}
