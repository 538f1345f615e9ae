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

/// Words of serde's and axum's that a client should never have to read.
const FRAMEWORK_WORDS: [&str; 9] = [
    "invalid type",
    "expected",
    "Failed to deserialize",
    "invalid form",
    "invalid body",
    "missing field",
    "unknown field",
    "at line",
    "i64",
];

/// Asserts a 422 that names `field` and says `says` of it, in the API's words.
async fn assert_names_field(response: reqwest::Response, field: &str, says: &str, case: &str) {
    let status = response.status();
    let body: Value = response
        .json()
        .await
        .unwrap_or_else(|_| panic!("{case}: JSON"));
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{case}: {body}");
    assert_eq!(body["field"], field, "{case}: {body}");
    let detail = body["detail"].as_str().unwrap_or_default();
    assert_eq!(detail, format!("{field}: {says}"), "{case}");
    for words in FRAMEWORK_WORDS {
        assert!(!detail.contains(words), "{case}: {detail:?} says {words:?}");
    }
}

#[tokio::test]
async fn a_json_body_of_the_wrong_shape_gets_a_422_naming_the_field_on_both_originate_routes() {
    let Session { server, api, token } = session(Options::default()).await;
    let cases: [(&str, Value, &str, &str); 12] = [
        (
            "timeout as text",
            json!({ "timeout": "30000" }),
            "timeout",
            "must be a whole number of milliseconds",
        ),
        (
            "timeout with a fraction",
            json!({ "timeout": 1500.5 }),
            "timeout",
            "must be a whole number of milliseconds",
        ),
        (
            "priority as a list",
            json!({ "priority": [1] }),
            "priority",
            "must be a whole number",
        ),
        (
            "gather_dtmf as text",
            json!({ "gather_dtmf": "yes" }),
            "gather_dtmf",
            "must be true or false",
        ),
        (
            "a variable value as a number",
            json!({ "variables": { "X": 1 } }),
            "variables",
            "must be an object of variable names to string values",
        ),
        (
            "a media item as a number",
            json!({ "mode": "playback", "media": ["sound:a", 7] }),
            "media",
            "must be a list of strings such as \"sound:hello-world\"",
        ),
        (
            "retry as a number",
            json!({ "retry": 3 }),
            "retry",
            "must be an object such as {\"max_attempts\": 3}",
        ),
        (
            "retry attempts as text",
            json!({ "retry": { "max_attempts": "3" } }),
            "retry.max_attempts",
            "must be a whole number",
        ),
        (
            "an outcome as a number",
            json!({ "retry": { "max_attempts": 2, "on": [1] } }),
            "retry.on",
            "must be a list of outcomes (strings): busy, no_answer, failed",
        ),
        (
            "window start as a number",
            json!({ "window": { "start": 9 } }),
            "window.start",
            "must be a string holding a time of day as HH:MM",
        ),
        (
            "an unknown field",
            json!({ "contxt": "reminders" }),
            "contxt",
            "is not a field of a call request; its fields are phone_number, context, extension, priority, timeout, caller_id, variables, mode, media, gather_dtmf, max_duration, status_callback, status_callback_events, retry, send_at, window",
        ),
        (
            "an unknown retry field",
            json!({ "retry": { "max_attempts": 2, "tries": 1 } }),
            "retry.tries",
            "is not a field of retry; its fields are max_attempts, on, delay_ms",
        ),
    ];
    for (case, body, field, says) in cases {
        let response = api.interaction(&token, "+15550010001", body.clone()).await;
        assert_names_field(response, field, says, &format!("interaction, {case}")).await;
        let mut body = body;
        body["phone_number"] = json!("+15550010001");
        let response = api.create_call(&token, body).await;
        assert_names_field(response, field, says, &format!("calls, {case}")).await;
    }
    let response = api
        .create_call(&token, json!({ "phone_number": 15550010001_u64 }))
        .await;
    assert_names_field(
        response,
        "phone_number",
        "must be a string: an E.164 number such as \"+15550010001\"",
        "number as a number",
    )
    .await;
    for not_an_object in [json!([1, 2]), json!("call"), json!(null)] {
        let response = api
            .interaction(&token, "+15550010001", not_an_object.clone())
            .await;
        assert_names_field(
            response,
            "body",
            "must be a JSON object of call options",
            &not_an_object.to_string(),
        )
        .await;
    }
    let response = api
        .create_call(&token, json!({ "context": "reminders" }))
        .await;
    assert_names_field(response, "phone_number", "is required", "no number").await;
    assert_eq!(server.pbx.as_ref().expect("sim").originate_count(), 0);
    server.stop().await;
}

#[tokio::test]
async fn malformed_json_gets_a_plain_400() {
    let Session { server, api, token } = session(Options::default()).await;
    for (body, says) in [
        (
            "{\"context\": ",
            "the body is not valid JSON: it ends before the JSON does (line 1, column 12)",
        ),
        (
            "{\"context\": reminders}",
            "the body is not valid JSON (line 1, column 13)",
        ),
        ("{} {}", "the body is not valid JSON (line 1, column 4)"),
    ] {
        let response = api
            .http
            .post(format!("{}/api/v2/calls", api.base))
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{body}");
        let answer: Value = response.json().await.expect("JSON");
        assert_eq!(answer["detail"], says, "{body}");
    }
    server.stop().await;
}

#[tokio::test]
async fn a_list_query_of_the_wrong_shape_gets_a_422_naming_the_parameter() {
    let Session { server, api, token } = session(Options::default()).await;
    for query in [
        "limit=many",
        "limit=-1",
        "limit=2.5",
        "limit=",
        "limit=99999999999999999999999",
    ] {
        let response = api.get(&token, &format!("/api/v2/calls?{query}")).await;
        assert_names_field(
            response,
            "limit",
            "must be a whole number from 1 to 100",
            query,
        )
        .await;
    }
    let response = api.get(&token, "/api/v2/calls?limit=5&unknown=1").await;
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "unknown parameters are ignored"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_token_form_of_the_wrong_shape_gets_a_422_naming_the_field() {
    let Session { server, api, .. } = session(Options::default()).await;
    for (form, field) in [
        ("username=admin", "password"),
        ("password=x", "username"),
        ("", "username"),
        ("grant_type=password", "username"),
    ] {
        let response = api
            .http
            .post(format!("{}/api/v2/token", api.base))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form)
            .send()
            .await
            .expect("request");
        assert_names_field(response, field, "is required", &format!("form {form:?}")).await;
    }
    server.stop().await;
}
