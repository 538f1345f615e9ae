//! Bad input gets a 4xx with a JSON `detail`, and nothing reaches the PBX.

use integration::{Options, Session, session};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// Percent-encodes everything but unreserved characters and `+`, so the number reaches
/// the route as one path segment exactly as written.
fn path_segment(raw: &str) -> String {
    raw.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'+' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

async fn assert_client_error(response: reqwest::Response, case: &str) -> StatusCode {
    let status = response.status();
    assert!(status.is_client_error(), "{case}: answered {status}");
    let body: Value = response
        .json()
        .await
        .unwrap_or_else(|_| panic!("{case}: JSON body"));
    assert!(
        body["detail"].as_str().is_some_and(|d| !d.is_empty()),
        "{case}: {body}"
    );
    status
}

#[tokio::test]
async fn malformed_numbers_are_refused_before_the_pbx() {
    let Session { server, api, token } = session(Options::default()).await;
    let bad_numbers = [
        "+1555abc0001",
        "+123456",
        "+1234567890123456",
        "15550010001",
        "+1555&Local/999@default",
        "+1555001@evil",
        "+1555/0010001",
        "+1555,0010001",
        "+1555 0010001",
        "+１５５５００１０００１",
        "+1555٠٠١٠٠٠١",
        "+15550010001;2",
        "%2B15550010001%00",
    ];
    for number in bad_numbers {
        let url = format!("{}/api/v2/interaction/{}", api.base, path_segment(number));
        let response = api
            .http
            .post(url)
            .bearer_auth(&token)
            .json(&json!({}))
            .send()
            .await
            .expect("request");
        assert_eq!(
            assert_client_error(response, number).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{number}"
        );
        let response = api
            .create_call(&token, json!({ "phone_number": number }))
            .await;
        assert_eq!(
            assert_client_error(response, number).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{number}"
        );
    }
    assert_eq!(server.pbx.as_ref().expect("sim").originate_count(), 0);
    server.stop().await;
}

#[tokio::test]
async fn bad_options_and_bodies_are_refused_before_the_pbx() {
    let Session { server, api, token } = session(Options::default()).await;
    let n = "+15550010001";
    let cases: Vec<(&str, Value, StatusCode)> = vec![
        (
            "context off the allowlist",
            json!({ "context": "default" }),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "context with dialplan syntax",
            json!({ "context": "outbound-ivr,s,1" }),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "extension injection",
            json!({ "extension": "s,1(evil)" }),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "priority zero",
            json!({ "priority": 0 }),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "priority as text",
            json!({ "priority": "one" }),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "timeout too short",
            json!({ "timeout": 5 }),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "caller id injection",
            json!({ "caller_id": "X\" <1>\nChannel: Local/1" }),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "variable function",
            json!({ "variables": { "CALLERID(num)": "1" } }),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "media outside the sound tree",
            json!({ "mode": "playback", "media": ["sound:../../etc/passwd"] }),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "playback without media",
            json!({ "mode": "playback" }),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "unknown mode",
            json!({ "mode": "conference" }),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "unknown field",
            json!({ "contxt": "outbound-ivr" }),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "body not an object",
            json!([1, 2]),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
    ];
    for (case, body, expected) in cases {
        let response = api.interaction(&token, n, body).await;
        assert_eq!(
            assert_client_error(response, case).await,
            expected,
            "{case}"
        );
    }
    let invalid_json = api
        .http
        .post(format!("{}/api/v2/interaction/{n}", api.base))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body("{\"context\": ")
        .send()
        .await
        .expect("request");
    assert_eq!(
        assert_client_error(invalid_json, "invalid JSON").await,
        StatusCode::BAD_REQUEST
    );
    let oversized = api
        .http
        .post(format!("{}/api/v2/calls", api.base))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body(format!(
            "{{\"phone_number\": \"{n}\", \"caller_id\": \"{}\"}}",
            "A".repeat(64 * 1024)
        ))
        .send()
        .await
        .expect("request");
    assert_eq!(
        assert_client_error(oversized, "oversized").await,
        StatusCode::PAYLOAD_TOO_LARGE
    );
    let missing_number = api
        .create_call(&token, json!({ "context": "outbound-ivr" }))
        .await;
    assert_eq!(
        assert_client_error(missing_number, "missing number").await,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    let unknown_route = api.get(&token, "/api/v2/nothing").await;
    assert_eq!(
        assert_client_error(unknown_route, "unknown route").await,
        StatusCode::NOT_FOUND
    );
    let wrong_method = api
        .http
        .put(format!("{}/api/v2/calls", api.base))
        .send()
        .await
        .expect("request");
    assert_eq!(
        assert_client_error(wrong_method, "wrong method").await,
        StatusCode::METHOD_NOT_ALLOWED
    );
    let bad_id = api.get(&token, "/api/v2/status/not-a-uuid").await;
    assert_eq!(
        assert_client_error(bad_id, "malformed call id").await,
        StatusCode::NOT_FOUND
    );
    assert_eq!(server.pbx.as_ref().expect("sim").originate_count(), 0);
    server.stop().await;
}

#[tokio::test]
async fn an_empty_body_uses_the_defaults() {
    let Session { server, api, token } = session(Options::default()).await;
    let response = api
        .http
        .post(format!("{}/api/v2/interaction/+15550020001", api.base))
        .bearer_auth(&token)
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.expect("json");
    let doc = api
        .status(&token, body["call_id"].as_str().expect("id"))
        .await;
    assert_eq!(doc["context"], "outbound-ivr");
    assert_eq!(doc["extension"], "s");
    assert_eq!(doc["timeout"], 30000);
    server.stop().await;
}

#[tokio::test]
async fn a_list_limit_outside_1_to_100_is_refused_naming_it() {
    let Session { server, api, token } = session(Options::default()).await;
    for limit in ["0", "101", "-1", "many"] {
        let response = api
            .get(&token, &format!("/api/v2/calls?limit={limit}"))
            .await;
        assert_eq!(
            response.status(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "{limit}"
        );
        let body: Value = response.json().await.expect("JSON");
        assert!(
            body["detail"].as_str().is_some_and(|d| d.contains("limit")),
            "{body}"
        );
    }
    for limit in ["1", "100"] {
        let response = api
            .get(&token, &format!("/api/v2/calls?limit={limit}"))
            .await;
        assert_eq!(response.status(), StatusCode::OK, "{limit}");
    }
    server.stop().await;
}
