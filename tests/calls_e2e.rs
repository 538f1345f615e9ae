//! End to end over HTTP: the local server, its bridge and the simulated PBX, one call
//! per number range of the `test-pstn` callee.

use std::time::Duration;

use chrono::DateTime;
use integration::api::Api;
use integration::{ADMIN, Options, Session, session, start_local};
use reqwest::StatusCode;
use serde_json::{Value, json};

const LIMIT: Duration = Duration::from_secs(15);

fn time(doc: &Value, field: &str) -> Option<DateTime<chrono::FixedOffset>> {
    doc[field]
        .as_str()
        .map(|t| DateTime::parse_from_rfc3339(t).expect("RFC 3339"))
}

fn assert_final(doc: &Value, status: &str, reason: Option<&str>) {
    assert_eq!(doc["status"], status, "{doc}");
    assert_eq!(doc["failure_reason"].as_str(), reason, "{doc}");
    assert_eq!(doc["is_active"], false, "{doc}");
    assert_eq!(doc["is_completed"], true, "{doc}");
    assert!(doc["ended_at"].is_string(), "{doc}");
}

fn assert_not_answered(doc: &Value) {
    assert!(doc["answered_at"].is_null(), "{doc}");
    assert!(doc["duration"].is_null(), "{doc}");
}

fn assert_answered_with_duration(doc: &Value) {
    let dialed = time(doc, "dialed_at").expect("dialed_at");
    let answered = time(doc, "answered_at").expect("answered_at");
    let ended = time(doc, "ended_at").expect("ended_at");
    assert!(dialed <= answered && answered <= ended, "{doc}");
    let duration = doc["duration"].as_f64().expect("duration");
    let expected = (ended - answered).num_milliseconds() as f64 / 1000.0;
    assert!((duration - expected).abs() < 0.002, "{doc}");
    assert!(duration > 0.0, "{doc}");
}

async fn each_callee_range_ends_in_its_status(store: Option<String>) {
    let Session { server, api, token } = session(Options {
        database_url: store,
        ..Options::default()
    })
    .await;
    let cases: &[(&str, Value, &str, Option<&str>)] = &[
        ("+15550020001", json!({}), "busy", None),
        (
            "+15550030001",
            json!({ "timeout": 2000 }),
            "no_answer",
            None,
        ),
        ("+15550040001", json!({}), "failed", Some("congestion")),
        ("+15550050001", json!({}), "failed", Some("invalid_number")),
        ("+15550060001", json!({}), "failed", Some("rejected")),
        ("+19990001111", json!({}), "failed", Some("invalid_number")),
    ];
    for (number, body, status, reason) in cases {
        let (_, doc) = api.call_to_end(&token, number, body.clone()).await;
        assert_final(&doc, status, *reason);
        assert_not_answered(&doc);
        assert!(doc["dialed_at"].is_string(), "{number}: {doc}");
        // The PBX's own words are kept: its hang-up cause, or where Asterisk leaves the
        // cause at 0 ("no cause": a busy callee, congestion), none and the Dial status.
        assert_ne!(doc["cause"], 0, "{number}: no cause 0: {doc}");
        assert_ne!(doc["cause_txt"], "Unknown", "{number}: {doc}");
        assert!(
            doc["cause"].is_i64() || doc["dialstatus"].is_string(),
            "{number}: the raw cause or Dial status kept: {doc}"
        );
        if *status == "busy" {
            assert!(doc["cause"].is_null(), "{number}: {doc}");
            assert_eq!(doc["dialstatus"], "BUSY", "{number}: {doc}");
        }
    }
    server.stop().await;
}

async fn answering_callee_goes_through_every_status_to_completed(store: Option<String>) {
    // Slow enough that polling sees each stage: ringing lasts 200 ms here.
    let Session { server, api, token } = session(Options {
        database_url: store,
        time_scale: 0.2,
        ..Options::default()
    })
    .await;
    let response = api
        .interaction(
            &token,
            "+15550010001",
            json!({ "context": "outbound-ivr", "extension": "s", "priority": 1, "timeout": 30000, "caller_id": "MyCompany" }),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let originate: Value = response.json().await.expect("json");
    assert_eq!(originate["success"], true);
    assert_eq!(originate["message"], "Call originated successfully");
    assert_eq!(originate["phone_number"], "+15550010001");
    assert_eq!(originate["channel"], "Local/+15550010001@test-pstn");
    // "dialing", or already "ringing" when the bridge wrote the callee's ringing before
    // the originate wrote "dialing": the answer tells the status as it is.
    assert!(
        ["dialing", "ringing"].contains(&originate["status"].as_str().unwrap_or_default()),
        "{originate}"
    );
    assert!(time(&originate, "created_at").is_some());
    let id = originate["call_id"].as_str().expect("id");

    let (doc, seen) = api.until_final(&token, id, LIMIT).await;
    // Polling sees the stages in order (a loaded machine may poll past the 3 ms of
    // dialing); the timestamps show that every stage happened, in order.
    let order = ["dialing", "ringing", "answered", "completed"];
    let positions: Vec<usize> = seen
        .iter()
        .map(|s| order.iter().position(|o| o == s).expect("a known status"))
        .collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{seen:?}");
    assert!(seen.contains(&"answered".to_owned()), "{seen:?}");
    assert_final(&doc, "completed", None);
    assert_answered_with_duration(&doc);
    let (dialed, ringing, answered) = (
        time(&doc, "dialed_at"),
        time(&doc, "ringing_at"),
        time(&doc, "answered_at"),
    );
    assert!(
        dialed <= ringing && ringing.is_some() && ringing <= answered,
        "{doc}"
    );
    assert_eq!(doc["caller_id"], "MyCompany");
    assert_eq!(doc["context"], "outbound-ivr");
    assert_eq!(doc["attempt_number"], 1);
    assert_eq!(doc["cause"], 16);
    server.stop().await;
}

async fn restful_routes_create_and_read_the_same_call(store: Option<String>) {
    let Session { server, api, token } = session(Options {
        database_url: store,
        ..Options::default()
    })
    .await;
    let response = api
        .create_call(&token, json!({ "phone_number": "+15550080001", "context": "outbound-ivr", "caller_id": "MyCompany" }))
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let location = response.headers()["location"]
        .to_str()
        .expect("ascii")
        .to_owned();
    let created: Value = response.json().await.expect("json");
    let id = created["call_id"].as_str().expect("id");
    assert_eq!(location, format!("/api/v2/calls/{id}"));
    let (doc, _) = api.until_final(&token, id, LIMIT).await;
    // 008 answers at once: answered without ever ringing; the IVR then hangs up.
    assert_final(&doc, "completed", None);
    assert!(doc["ringing_at"].is_null(), "{doc}");
    assert_answered_with_duration(&doc);
    let restful: Value = api
        .get(&token, &format!("/api/v2/calls/{id}"))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(restful, doc);
    let list: Value = api
        .get(&token, "/api/v2/calls?limit=5")
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(list["calls"][0]["call_id"], id);
    server.stop().await;
}

async fn playback_call_plays_its_media_and_records_dtmf(store: Option<String>) {
    let Session { server, api, token } = session(Options {
        database_url: store,
        ..Options::default()
    })
    .await;
    let media: Vec<String> = (0..6).map(|_| "sound:hello-world".to_owned()).collect();
    let (_, doc) = api
        .call_to_end(
            &token,
            "+15550070001",
            json!({ "mode": "playback", "media": media, "gather_dtmf": true }),
        )
        .await;
    assert_final(&doc, "completed", None);
    assert_eq!(doc["dtmf"], "1", "{doc}");
    assert_eq!(doc["mode"], "playback");
    assert_answered_with_duration(&doc);
    server.stop().await;
}

async fn canceling_a_ringing_call_ends_it_canceled(store: Option<String>) {
    let Session { server, api, token } = session(Options {
        database_url: store,
        time_scale: 0.2,
        ..Options::default()
    })
    .await;
    let id = api.call(&token, "+15550030002", json!({})).await;
    let deadline = tokio::time::Instant::now() + LIMIT;
    while api.status(&token, &id).await["status"] != "ringing" {
        assert!(tokio::time::Instant::now() < deadline, "never rang");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let response = api.delete(&token, &format!("/api/v2/calls/{id}")).await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let (doc, _) = api.until_final(&token, &id, LIMIT).await;
    assert_final(&doc, "canceled", None);
    let again = api.delete(&token, &format!("/api/v2/calls/{id}")).await;
    assert_eq!(again.status(), StatusCode::CONFLICT);
    server.stop().await;
}

#[tokio::test]
async fn originate_answers_503_and_places_nothing_when_no_bridge_listens() {
    let Session { server, api, token } = session(Options {
        bridge: false,
        ..Options::default()
    })
    .await;
    let response = api.interaction(&token, "+15550010001", json!({})).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: Value = response.json().await.expect("json");
    assert!(
        body["detail"]
            .as_str()
            .is_some_and(|d| d.contains("bridge")),
        "{body}"
    );
    let pbx = server.pbx.as_ref().expect("simulated");
    assert_eq!(pbx.originate_count(), 0);
    assert_eq!(pbx.live_channels(), 0);
    server.stop().await;
}

#[tokio::test]
async fn health_docs_and_metrics_are_served() {
    let server = start_local(Options::default()).await;
    let api = Api::new(server.api_url());
    let health: Value = api
        .http
        .get(format!("{}/health", api.base))
        .send()
        .await
        .expect("health")
        .json()
        .await
        .expect("json");
    assert_eq!(health["status"], "ok");
    assert_eq!(health["bridge"]["connected"], true);
    let docs = api
        .http
        .get(format!("{}/docs", api.base))
        .send()
        .await
        .expect("docs");
    assert_eq!(docs.status(), StatusCode::OK);
    let page = docs.text().await.expect("docs page");
    // Readable offline: the page loads nothing from outside the server.
    for outside in [
        "src=\"http",
        "href=\"http",
        "src=\"//",
        "href=\"//",
        "@import",
    ] {
        assert!(
            !page.contains(outside),
            "/docs loads an outside asset ({outside})"
        );
    }
    assert!(
        page.contains("/openapi.json"),
        "the page renders the document"
    );
    let spec: Value = api
        .http
        .get(format!("{}/openapi.json", api.base))
        .send()
        .await
        .expect("spec")
        .json()
        .await
        .expect("json");
    for path in [
        "/api/v2/token",
        "/api/v2/interaction/{number}",
        "/api/v2/calls",
        "/api/v2/status/{call_id}",
        "/api/v2/calls/{call_id}",
    ] {
        assert!(spec["paths"][path].is_object(), "{path} documented");
    }
    let token = api.token(ADMIN.0, ADMIN.1).await;
    let id = api.call(&token, "+15550020001", json!({})).await;
    api.until_final(&token, &id, LIMIT).await;
    let metrics = api
        .http
        .get(format!("{}/metrics", api.base))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains(r#"dialer_calls_originated_total{result="accepted"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"dialer_calls_finished_total{status="busy"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"route="/api/v2/status/{call_id}""#),
        "{metrics}"
    );
    assert!(!metrics.contains(&id), "no ids in labels");
    assert!(!metrics.contains("+1555"), "no numbers in labels");
    server.stop().await;

    let quiet = start_local(Options {
        metrics: false,
        ..Options::default()
    })
    .await;
    let response = reqwest::get(format!("{}/metrics", quiet.api_url()))
        .await
        .expect("metrics");
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let body: serde_json::Value = response.json().await.expect("JSON 404");
    assert!(
        body["detail"]
            .as_str()
            .is_some_and(|d| d.contains("METRICS_ENABLED=true")),
        "the 404 says how to turn metrics on: {body}"
    );
    quiet.stop().await;
}

async fn a_repeated_request_with_the_same_idempotency_key_places_one_call(store: Option<String>) {
    let Session { server, api, token } = session(Options {
        database_url: store,
        ..Options::default()
    })
    .await;
    let send = || {
        api.http
            .post(format!("{}/api/v2/calls", api.base))
            .bearer_auth(&token)
            .header("idempotency-key", "reminder-2026-11-24-patient-42")
            .json(&json!({ "phone_number": "+15550020001" }))
            .send()
    };
    let first: Value = send().await.expect("first").json().await.expect("json");
    let second: Value = send().await.expect("second").json().await.expect("json");
    assert_eq!(first["call_id"], second["call_id"]);
    assert_eq!(server.pbx.as_ref().expect("sim").originate_count(), 1);
    let other = api
        .create_call(&token, json!({ "phone_number": "+15550020001" }))
        .await;
    let other: Value = other.json().await.expect("json");
    assert_ne!(other["call_id"], first["call_id"], "no key, new call");
    server.stop().await;
}

/// The foundation's end-to-end calls, on each store the local server can run on.
macro_rules! on_each_store {
    ($($name:ident),* $(,)?) => {
        mod in_process {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(None).await;
                }
            )*
        }
        mod on_postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    let schema = integration::pg::fresh_schema().await;
                    super::$name(Some(schema.url.clone())).await;
                }
            )*
        }
    };
}

on_each_store!(
    each_callee_range_ends_in_its_status,
    answering_callee_goes_through_every_status_to_completed,
    restful_routes_create_and_read_the_same_call,
    playback_call_plays_its_media_and_records_dtmf,
    canceling_a_ringing_call_ends_it_canceled,
    a_repeated_request_with_the_same_idempotency_key_places_one_call,
);
