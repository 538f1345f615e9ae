//! A body is read only as what it is declared to be: JSON routes take
//! `application/json` (or `application/*+json`), the token route a form. Anything else
//! is 415 before the PBX hears of it; an empty originate body needs no content type.

use integration::{ADMIN, Options, Session, session};
use reqwest::StatusCode;
use serde_json::Value;

use crate::json_errors::Raw;

const NUMBER: &str = "+15550030001";

async fn assert_415(response: reqwest::Response, case: &str) {
    assert_eq!(
        response.status(),
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "{case}"
    );
    assert_eq!(
        response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("application/json"),
        "{case}"
    );
    let body: Value = response.json().await.expect("JSON body");
    assert!(body["detail"].is_string(), "{case}: {body}");
}

/// POSTs `body` to both JSON routes with `content_type` (none if `None`).
async fn post_both(
    session: &Session,
    content_type: Option<&str>,
    body: &str,
) -> Vec<(String, reqwest::Response)> {
    let Session { api, token, .. } = session;
    let mut answers = Vec::new();
    for (path, body) in [
        (format!("/api/v2/interaction/{NUMBER}"), body.to_owned()),
        (
            "/api/v2/calls".to_owned(),
            body.replacen('{', &format!("{{\"phone_number\": \"{NUMBER}\", "), 1),
        ),
    ] {
        let mut request = api
            .http
            .post(format!("{}{path}", api.base))
            .bearer_auth(token)
            .body(body);
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        answers.push((path, request.send().await.expect("request")));
    }
    answers
}

#[tokio::test]
async fn json_routes_refuse_a_body_not_declared_json_with_415_and_place_no_call() {
    let session = session(Options::default()).await;
    let json = r#"{"context": "outbound-ivr"}"#;
    for content_type in [
        Some("text/plain"),
        Some("text/plain; charset=utf-8"),
        Some("application/x-www-form-urlencoded"),
        Some("application/json; charset=iso-8859-1"),
        Some("application/jsonp"),
        None,
    ] {
        for (path, response) in post_both(&session, content_type, json).await {
            assert_415(response, &format!("{path} as {content_type:?}")).await;
        }
    }
    for (path, response) in post_both(&session, None, "   ").await {
        assert_415(response, &format!("{path}: whitespace, undeclared")).await;
    }
    assert_eq!(
        session.server.pbx.as_ref().expect("sim").originate_count(),
        0
    );
    session.server.stop().await;
}

#[tokio::test]
async fn json_routes_take_json_in_any_case_with_utf8_and_as_a_suffix_type() {
    let session = session(Options::default()).await;
    for content_type in [
        "application/json",
        "Application/JSON",
        "application/json; charset=utf-8",
        "application/json;charset=\"UTF-8\"",
        "application/vnd.dialer+json",
    ] {
        let json = r#"{"context": "outbound-ivr"}"#;
        for (path, response) in post_both(&session, Some(content_type), json).await {
            let placed = if path.starts_with("/api/v2/interaction") {
                StatusCode::OK
            } else {
                StatusCode::CREATED
            };
            assert_eq!(response.status(), placed, "{path} as {content_type}");
        }
    }
    session.server.stop().await;
}

#[tokio::test]
async fn an_empty_interaction_body_needs_no_content_type() {
    let session = session(Options::default()).await;
    let path = format!("/api/v2/interaction/{NUMBER}");
    for (case, framing) in [
        ("Content-Length: 0", "Content-Length: 0\r\n"),
        ("no length at all", ""),
        ("an empty chunked body", "Transfer-Encoding: chunked\r\n"),
        (
            "empty, declared text/plain",
            "Content-Length: 0\r\nContent-Type: text/plain\r\n",
        ),
    ] {
        let mut raw = Raw::connect(session.server.api_addr).await;
        let chunks = if framing.contains("chunked") {
            "0\r\n\r\n"
        } else {
            ""
        };
        raw.send(
            format!(
                "POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n{framing}\r\n{chunks}",
                session.token
            )
            .as_bytes(),
        )
        .await;
        let answer = raw.answer().await;
        assert_eq!(answer.status, 200, "{case}: {}", answer.head);
        let body: Value = serde_json::from_slice(&answer.body).expect("JSON");
        assert!(body["call_id"].is_string(), "{case}: {body}");
    }
    session.server.stop().await;
}

#[tokio::test]
async fn the_token_route_refuses_a_body_not_declared_a_form_with_415() {
    let Session { server, api, .. } = session(Options::default()).await;
    let form = format!("username={}&password={}", ADMIN.0, ADMIN.1);
    let json = format!(
        r#"{{"username": "{}", "password": "{}"}}"#,
        ADMIN.0, ADMIN.1
    );
    for (case, content_type, body) in [
        ("JSON", Some("application/json"), json.as_str()),
        (
            "a form declared text/plain",
            Some("text/plain"),
            form.as_str(),
        ),
        ("a form without a content type", None, form.as_str()),
    ] {
        let mut request = api
            .http
            .post(format!("{}/api/v2/token", api.base))
            .body(body.to_owned());
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        assert_415(request.send().await.expect("request"), case).await;
    }
    let response = api
        .http
        .post(format!("{}/api/v2/token", api.base))
        .header(
            "content-type",
            "application/x-www-form-urlencoded; charset=utf-8",
        )
        .body(form)
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::OK);
    server.stop().await;
}

#[test]
fn the_openapi_document_lists_415_for_every_route_that_reads_a_body() {
    let document: Value = serde_json::from_str(dialer_http::openapi::document()).expect("JSON");
    for path in [
        "/api/v2/token",
        "/api/v2/interaction/{number}",
        "/api/v2/calls",
    ] {
        let responses = &document["paths"][path]["post"]["responses"];
        for status in ["400", "413", "415", "422"] {
            assert!(
                responses[status]["content"]["application/json"].is_object(),
                "{path} {status}: {responses}"
            );
        }
    }
}
