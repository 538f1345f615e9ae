//! The written input rules hold end to end: what they refuse gets a 422 naming the
//! field and never reaches the PBX, what they allow still places the call, and the
//! OpenAPI document and the README say what the rules say.

use dialer_core::domain::validation::{FieldRule, rules};
use integration::{Options, Session, session};
use reqwest::StatusCode;
use serde_json::{Value, json};

const NUMBER: &str = "+15550010001";

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

/// A call body that carries `raw` where the rule applies (numbers as JSON numbers).
fn body_with(rule: &FieldRule, raw: &str) -> Value {
    match (rule.field, rule.part) {
        ("variables", Some("names")) => json!({ "variables": { raw: "v" } }),
        ("variables", _) => json!({ "variables": { "X": raw } }),
        ("media", _) => json!({ "mode": "playback", "media": [raw] }),
        (field, _) if rule.pattern.is_none() => {
            json!({ field: raw.parse::<i64>().expect("a numeric rule's example is a number") })
        }
        (field, _) => json!({ field: raw }),
    }
}

async fn assert_refused(response: reqwest::Response, field: &str, case: &str) {
    let status = response.status();
    let body: Value = response
        .json()
        .await
        .unwrap_or_else(|_| panic!("{case}: JSON body"));
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{case}: {body}");
    assert_eq!(body["field"], field, "{case}: {body}");
    assert!(
        body["detail"]
            .as_str()
            .is_some_and(|d| d.starts_with(&format!("{field}: "))),
        "{case}: {body}"
    );
}

/// Sends `raw` as the rule's field: a number both in the body and in the path, any
/// other field with a valid number.
async fn send_refused(session: &Session, rule: &FieldRule, raw: &str) {
    let Session { api, token, .. } = session;
    let case = format!("{} {raw:?}", rule.label());
    if rule.field == "phone_number" {
        let url = format!("{}/api/v2/interaction/{}", api.base, path_segment(raw));
        let response = api
            .http
            .post(url)
            .bearer_auth(token)
            .json(&json!({}))
            .send()
            .await
            .expect("request");
        assert_refused(response, rule.field, &format!("{case} in the path")).await;
        let response = api.create_call(token, body_with(rule, raw)).await;
        assert_refused(response, rule.field, &case).await;
    } else {
        let response = api.interaction(token, NUMBER, body_with(rule, raw)).await;
        assert_refused(response, rule.field, &case).await;
    }
}

fn originates(session: &Session) -> usize {
    session
        .server
        .pbx
        .as_ref()
        .expect("simulated PBX")
        .originate_count()
}

#[tokio::test]
async fn each_value_the_issue_lists_gets_a_422_naming_its_field_and_never_reaches_the_pbx() {
    let session = session(Options::default()).await;
    let cases: [(&FieldRule, &str); 11] = [
        (&rules::PHONE_NUMBER, "+00015550010001"),
        (&rules::CALLER_ID, "ＭｙＣｏｍｐａｎｙ"),
        (&rules::CALLER_ID, "Shop ٣"),
        (&rules::VARIABLE_VALUES, "${SHELL(id)}"),
        (&rules::VARIABLE_VALUES, "$[1+1]"),
        (&rules::VARIABLE_VALUES, "a,b)"),
        (&rules::VARIABLE_VALUES, "a\u{2028}b"),
        (&rules::VARIABLE_VALUES, "a\u{202e}b"),
        (&rules::MEDIA, "sound:.hidden"),
        (&rules::MEDIA, "sound:a/"),
        (&rules::MEDIA, "sound:a/./b"),
    ];
    for (rule, raw) in cases {
        send_refused(&session, rule, raw).await;
    }
    assert_eq!(originates(&session), 0);
    session.server.stop().await;
}

#[tokio::test]
async fn every_value_a_written_rule_shows_as_refused_gets_a_422_naming_its_field() {
    let session = session(Options::default()).await;
    for rule in rules::ALL {
        for raw in rule.refused {
            send_refused(&session, rule, raw).await;
        }
    }
    assert_eq!(originates(&session), 0);
    session.server.stop().await;
}

#[tokio::test]
async fn values_that_follow_the_rules_still_place_the_call_as_sent() {
    let Session { server, api, token } = session(Options::default()).await;
    let body = json!({
        "context": "reminders",
        "extension": "reminder_1",
        "priority": 2,
        "timeout": 20000,
        "caller_id": "Dr. O'Neil-Smith <+15550000000>",
        "variables": {
            "CUSTOMER_ID": "A-42/7 order#9",
            "APPOINTMENT": "2024-01-02 10:30",
            "EMAIL": "jane.doe@example.com",
        },
        "max_duration": 60000,
    });
    let response = api.interaction(&token, NUMBER, body).await;
    assert_eq!(response.status(), StatusCode::OK);
    let answer: Value = response.json().await.expect("json");
    let doc = api
        .status(&token, answer["call_id"].as_str().expect("id"))
        .await;
    assert_eq!(doc["caller_id"], "Dr. O'Neil-Smith <+15550000000>");
    assert_eq!(doc["extension"], "reminder_1");
    let response = api
        .create_call(
            &token,
            json!({
                "phone_number": "+15550020001",
                "mode": "playback",
                "media": ["sound:custom/greeting.v2", "digits:123"],
            }),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(server.pbx.as_ref().expect("sim").originate_count(), 2);
    server.stop().await;
}

#[test]
fn the_openapi_document_states_each_rule_as_written() {
    let doc: Value =
        serde_json::from_str(dialer_http::openapi::document()).expect("the document is JSON");
    let fields = &doc["components"]["schemas"]["CallBody"]["properties"];
    for rule in rules::ALL {
        let field = &fields[rule.field];
        let description = field["description"].as_str().unwrap_or_default();
        assert!(
            description.contains(rule.rule),
            "{}: {description}",
            rule.label()
        );
        let pattern = match rule.part {
            Some("names") => &field["propertyNames"]["pattern"],
            Some("values") => &field["additionalProperties"]["pattern"],
            _ if rule.field == "media" => &field["items"]["pattern"],
            _ => &field["pattern"],
        };
        assert_eq!(pattern.as_str(), rule.pattern, "{}", rule.label());
    }
}

/// A value as the README shows it: in quotes with Rust's escapes when it has anything
/// a reader could not see or tell apart.
fn shown(raw: &str) -> String {
    let plain = !raw.is_empty()
        && !raw.starts_with(' ')
        && !raw.ends_with(' ')
        && raw
            .chars()
            .all(|c| "\"'\\".contains(c) || c.escape_debug().eq([c]));
    let text = if plain {
        raw.to_owned()
    } else {
        format!("{raw:?}")
    };
    if text.contains('`') {
        format!("`` {text} ``")
    } else {
        format!("`{text}`")
    }
}

fn rules_table() -> String {
    let cell = |text: &str| text.replace('|', "\\|");
    let mut table = String::from("| field | rule | refused, for example |\n| --- | --- | --- |\n");
    for rule in rules::ALL {
        let label = match rule.part {
            Some(part) => format!("`{}` ({part})", rule.field),
            None => format!("`{}`", rule.field),
        };
        let refused: Vec<String> = rule.refused.iter().map(|r| shown(r)).collect();
        table.push_str(&format!(
            "| {label} | {} | {} |\n",
            cell(rule.rule),
            cell(&refused.join(", "))
        ));
    }
    table
}

#[test]
fn the_readme_rules_table_is_the_written_rules() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let table = rules_table();
    let readme = std::fs::read_to_string(format!("{root}/README.md")).expect("README.md");
    assert!(
        readme.contains(&table),
        "README.md must hold the rules table as validation::rules writes it:\n\n{table}"
    );
}
