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
        if rule.field == "mode" {
            // A closed set: listed, each value one the rule's pattern takes.
            let pattern = regex_lite::Regex::new(rule.pattern.expect("a pattern")).expect("regex");
            let values = field["enum"].as_array().expect("an enum");
            let names: Vec<&str> = values.iter().filter_map(Value::as_str).collect();
            assert_eq!(names, ["ivr", "playback"]);
            assert!(names.iter().all(|n| pattern.is_match(n)));
            assert!(values.contains(&Value::Null), "null leaves the default");
            continue;
        }
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

/// A JSON Schema check of the keywords the OpenAPI document uses for request bodies,
/// as JSON Schema 2020-12 defines them. A keyword it does not know fails the test, so
/// a rule added to the document cannot pass here unchecked.
mod schema {
    use serde_json::{Map, Value};

    /// Annotations: they say things, they do not constrain.
    const ANNOTATIONS: [&str; 5] = ["description", "example", "examples", "title", "default"];

    pub struct Document<'a>(pub &'a Value);

    impl Document<'_> {
        pub fn accepts(&self, schema: &Value, value: &Value) -> bool {
            let Some(schema) = schema.as_object() else {
                return schema
                    .as_bool()
                    .unwrap_or_else(|| panic!("schema {schema}"));
            };
            schema
                .iter()
                .all(|(keyword, rule)| self.holds(schema, keyword, rule, value))
        }

        fn holds(
            &self,
            schema: &Map<String, Value>,
            keyword: &str,
            rule: &Value,
            value: &Value,
        ) -> bool {
            let number = |v: &Value| v.as_f64();
            match keyword {
                k if ANNOTATIONS.contains(&k) => true,
                "$ref" => {
                    let name = rule
                        .as_str()
                        .and_then(|r| r.strip_prefix("#/components/schemas/"));
                    let target = &self.0["components"]["schemas"][name.expect("a local $ref")];
                    assert!(!target.is_null(), "{rule}");
                    self.accepts(target, value)
                }
                "type" => {
                    let kinds: Vec<&str> = match rule {
                        Value::String(kind) => vec![kind.as_str()],
                        Value::Array(kinds) => kinds.iter().filter_map(Value::as_str).collect(),
                        _ => panic!("type {rule}"),
                    };
                    kinds.iter().any(|kind| match *kind {
                        "string" => value.is_string(),
                        "integer" => value.as_f64().is_some_and(|n| n.fract() == 0.0),
                        "number" => value.is_number(),
                        "boolean" => value.is_boolean(),
                        "array" => value.is_array(),
                        "object" => value.is_object(),
                        "null" => value.is_null(),
                        other => panic!("type {other}"),
                    })
                }
                "format" => match (rule.as_str(), value.as_str()) {
                    (Some("int32" | "int64"), _) | (_, None) => true,
                    (Some("date-time"), Some(text)) => is_date_time(text),
                    (other, _) => panic!("format {other:?}"),
                },
                "enum" => rule.as_array().expect("enum").contains(value),
                "const" => rule == value,
                "pattern" => value.as_str().is_none_or(|text| {
                    regex_lite::Regex::new(rule.as_str().expect("pattern"))
                        .expect("a pattern regex-lite reads")
                        .is_match(text)
                }),
                "minLength" | "maxLength" => value.as_str().is_none_or(|text| {
                    let (len, limit) =
                        (text.chars().count() as u64, rule.as_u64().expect("length"));
                    if keyword == "minLength" {
                        len >= limit
                    } else {
                        len <= limit
                    }
                }),
                "minimum" => number(value).is_none_or(|n| n >= number(rule).expect("minimum")),
                "maximum" => number(value).is_none_or(|n| n <= number(rule).expect("maximum")),
                "minItems" | "maxItems" => value.as_array().is_none_or(|items| {
                    let (len, limit) = (items.len() as u64, rule.as_u64().expect("count"));
                    if keyword == "minItems" {
                        len >= limit
                    } else {
                        len <= limit
                    }
                }),
                "items" => value
                    .as_array()
                    .is_none_or(|items| items.iter().all(|item| self.accepts(rule, item))),
                "maxProperties" => value
                    .as_object()
                    .is_none_or(|o| o.len() as u64 <= rule.as_u64().expect("count")),
                "properties" => value.as_object().is_none_or(|o| {
                    o.iter()
                        .all(|(name, v)| rule.get(name).is_none_or(|s| self.accepts(s, v)))
                }),
                "additionalProperties" => value.as_object().is_none_or(|o| {
                    let declared = schema.get("properties");
                    o.iter()
                        .filter(|(name, _)| declared.is_none_or(|d| d.get(name.as_str()).is_none()))
                        .all(|(_, v)| self.accepts(rule, v))
                }),
                "propertyNames" => value.as_object().is_none_or(|o| {
                    o.keys()
                        .all(|name| self.accepts(rule, &Value::from(name.as_str())))
                }),
                "required" => value.as_object().is_none_or(|o| {
                    rule.as_array()
                        .expect("required")
                        .iter()
                        .all(|name| o.contains_key(name.as_str().expect("a name")))
                }),
                "oneOf" => {
                    rule.as_array()
                        .expect("oneOf")
                        .iter()
                        .filter(|s| self.accepts(s, value))
                        .count()
                        == 1
                }
                "anyOf" => rule
                    .as_array()
                    .expect("anyOf")
                    .iter()
                    .any(|s| self.accepts(s, value)),
                "if" => {
                    let then = schema.get("then").unwrap_or(&Value::Bool(true));
                    let otherwise = schema.get("else").unwrap_or(&Value::Bool(true));
                    self.accepts(
                        if self.accepts(rule, value) {
                            then
                        } else {
                            otherwise
                        },
                        value,
                    )
                }
                "then" | "else" => true,
                other => panic!("a keyword this check does not know: {other}"),
            }
        }
    }

    /// RFC 3339 `date-time`, as JSON Schema's format names it.
    fn is_date_time(text: &str) -> bool {
        chrono::DateTime::parse_from_rfc3339(text).is_ok()
    }
}

/// A request body, what the document says of it and what the server does with it.
struct Case {
    about: &'static str,
    body: Value,
    /// Whether the server takes it (the document is held to the same answer, save for
    /// the cases in `documented_only`).
    accepted: bool,
}

fn case(about: &'static str, accepted: bool, options: Value) -> Case {
    let mut body = json!({ "phone_number": NUMBER });
    for (name, value) in options.as_object().expect("an object") {
        body[name] = value.clone();
    }
    Case {
        about,
        body,
        accepted,
    }
}

/// A time `days` from now, as a client writes `send_at`.
fn days_ahead(days: i64) -> String {
    (chrono::Utc::now() + chrono::Duration::days(days)).to_rfc3339()
}

fn call_body_cases() -> Vec<Case> {
    let window = json!({ "start": "09:00", "end": "20:00", "time_zone": "America/New_York" });
    vec![
        case("just a number", true, json!({})),
        case(
            "every option set",
            true,
            json!({
                "context": "reminders", "extension": "s", "priority": 2, "timeout": 20000,
                "caller_id": "MyCompany <+15550000000>", "variables": { "CUSTOMER_ID": "A-42" },
                "mode": "ivr", "gather_dtmf": true, "max_duration": 60000,
                "status_callback": "https://93.184.215.14/hooks/dialer",
                "status_callback_events": ["dtmf"],
                "retry": { "max_attempts": 3, "on": ["busy", "no_answer"], "delay_ms": 1000 },
                "send_at": days_ahead(1), "window": window,
            }),
        ),
        case(
            "every option null",
            true,
            json!({
                "context": null, "extension": null, "priority": null, "timeout": null,
                "caller_id": null, "variables": null, "mode": null, "media": null,
                "gather_dtmf": null, "max_duration": null, "status_callback": null,
                "status_callback_events": null, "retry": null, "send_at": null, "window": null,
            }),
        ),
        case(
            "playback with media",
            true,
            json!({ "mode": "playback", "media": ["sound:hello-world", "digits:42"] }),
        ),
        case(
            "a window across midnight in a linked zone",
            true,
            json!({
                "window": { "start": "22:00", "end": "06:30", "time_zone": "US/Pacific" },
            }),
        ),
        case(
            "retry with max_attempts only",
            true,
            json!({ "retry": { "max_attempts": 1 } }),
        ),
        case(
            "a send_at already past",
            true,
            json!({ "send_at": "2020-01-01T00:00:00+02:00" }),
        ),
        case("an unknown mode", false, json!({ "mode": "conference" })),
        case(
            "playback without media",
            false,
            json!({ "mode": "playback" }),
        ),
        case(
            "playback with no media item",
            false,
            json!({ "mode": "playback", "media": [] }),
        ),
        case(
            "retry without max_attempts",
            false,
            json!({ "retry": { "on": ["busy"] } }),
        ),
        case(
            "retry max_attempts null",
            false,
            json!({ "retry": { "max_attempts": null } }),
        ),
        case(
            "retry six attempts",
            false,
            json!({ "retry": { "max_attempts": 6 } }),
        ),
        case(
            "retry on nothing",
            false,
            json!({ "retry": { "max_attempts": 2, "on": [] } }),
        ),
        case(
            "retry on completed",
            false,
            json!({ "retry": { "max_attempts": 2, "on": ["completed"] } }),
        ),
        case(
            "retry delay under a second",
            false,
            json!({ "retry": { "max_attempts": 2, "delay_ms": 999 } }),
        ),
        case(
            "window at 24:00",
            false,
            json!({
                "window": { "start": "24:00", "end": "06:00", "time_zone": "UTC" },
            }),
        ),
        case(
            "window at 9:00",
            false,
            json!({
                "window": { "start": "9:00", "end": "17:00", "time_zone": "UTC" },
            }),
        ),
        case(
            "window without a zone",
            false,
            json!({ "window": { "start": "09:00", "end": "17:00" } }),
        ),
        case(
            "window in an unknown zone",
            false,
            json!({
                "window": { "start": "09:00", "end": "17:00", "time_zone": "Mars/Olympus_Mons" },
            }),
        ),
        case(
            "window zone in the wrong case",
            false,
            json!({
                "window": { "start": "09:00", "end": "17:00", "time_zone": "america/new_york" },
            }),
        ),
        case(
            "send_at not a time",
            false,
            json!({ "send_at": "tomorrow at nine" }),
        ),
        case(
            "send_at without an offset",
            false,
            json!({ "send_at": "2026-12-01T09:30:00" }),
        ),
        case(
            "status_callback over ftp",
            false,
            json!({ "status_callback": "ftp://93.184.215.14/x" }),
        ),
        case(
            "status_callback not a URL",
            false,
            json!({ "status_callback": "hooks.example.com" }),
        ),
        case(
            "status_callback over plain http",
            false,
            json!({ "status_callback": "http://93.184.215.14/x" }),
        ),
        case(
            "status_callback with a user",
            false,
            json!({ "status_callback": "https://me:pw@93.184.215.14/x" }),
        ),
        case(
            "status_callback with a fragment",
            false,
            json!({ "status_callback": "https://93.184.215.14/x#y" }),
        ),
        case(
            "status_callback too long",
            false,
            json!({
                "status_callback": format!("https://93.184.215.14/{}", "a".repeat(2048)),
            }),
        ),
        case(
            "an unknown event",
            false,
            json!({
                "status_callback": "https://93.184.215.14/x", "status_callback_events": ["ringing", "hangup"],
            }),
        ),
        case(
            "no events",
            false,
            json!({
                "status_callback": "https://93.184.215.14/x", "status_callback_events": [],
            }),
        ),
        case(
            "33 variables",
            false,
            json!({
                "variables": (0..33).map(|i| (format!("V{i}"), Value::from("x"))).collect::<serde_json::Map<_, _>>(),
            }),
        ),
        case("priority 1000", false, json!({ "priority": 1000 })),
        case("timeout as text", false, json!({ "timeout": "30000" })),
        case(
            "gather_dtmf as text",
            false,
            json!({ "gather_dtmf": "yes" }),
        ),
        case("an unknown field", false, json!({ "contxt": "reminders" })),
        case(
            "an unknown retry field",
            false,
            json!({ "retry": { "max_attempts": 2, "tries": 1 } }),
        ),
    ]
}

/// Rules the document states in words only: they hang on the deployment's settings,
/// the user's record or the clock. The document takes these bodies, the server does
/// not, and the description (by JSON pointer) says why.
fn documented_only() -> Vec<(Case, &'static str, &'static str)> {
    vec![
        (
            case(
                "a context off the allowlist",
                false,
                json!({ "context": "sales" }),
            ),
            "/components/schemas/CallBody/properties/context/description",
            "allowlist",
        ),
        (
            case(
                "send_at 40 days ahead",
                false,
                json!({ "send_at": days_ahead(40) }),
            ),
            "/components/schemas/CallBody/properties/send_at/description",
            "at most 30 days after",
        ),
        (
            case(
                "events without a callback, for a user with no default",
                false,
                json!({ "status_callback_events": ["answered"] }),
            ),
            "/components/schemas/CallBody/properties/status_callback_events/description",
            "the user's default",
        ),
        (
            case(
                "a window that closes as it opens",
                false,
                json!({ "window": { "start": "09:00", "end": "09:00", "time_zone": "UTC" } }),
            ),
            "/components/schemas/WindowBody/properties/end/description",
            "not the same as `start`",
        ),
        (
            case(
                "a callback host that does not resolve",
                false,
                json!({ "status_callback": "https://no-such-host.invalid/x" }),
            ),
            "/components/schemas/CallBody/properties/status_callback/description",
            "must resolve",
        ),
    ]
}

async fn server_accepts(session: &Session, body: &Value, about: &str) -> bool {
    let response = session.api.create_call(&session.token, body.clone()).await;
    let status = response.status();
    let answer: Value = response
        .json()
        .await
        .unwrap_or_else(|_| panic!("{about}: JSON"));
    match status {
        StatusCode::CREATED => true,
        StatusCode::UNPROCESSABLE_ENTITY => {
            assert!(
                answer["field"].as_str().is_some_and(|f| !f.is_empty()),
                "{about}: {answer}"
            );
            false
        }
        other => panic!("{about}: {other} {answer}"),
    }
}

#[tokio::test]
async fn the_document_and_the_server_take_and_refuse_the_same_call_bodies() {
    let doc: Value = serde_json::from_str(dialer_http::openapi::document()).expect("JSON");
    let document = schema::Document(&doc);
    let call_body = json!({ "$ref": "#/components/schemas/CallBody" });
    let call_options = json!({ "$ref": "#/components/schemas/CallOptions" });
    let session = session(Options::default()).await;
    for Case {
        about,
        body,
        accepted,
    } in call_body_cases()
    {
        assert_eq!(
            document.accepts(&call_body, &body),
            accepted,
            "the document, {about}: {body}"
        );
        let mut options = body.clone();
        options
            .as_object_mut()
            .expect("object")
            .remove("phone_number");
        assert_eq!(
            document.accepts(&call_options, &options),
            accepted,
            "CallOptions, {about}"
        );
        assert_eq!(
            server_accepts(&session, &body, about).await,
            accepted,
            "the server, {about}: {body}"
        );
    }
    for (Case { about, body, .. }, pointer, said) in documented_only() {
        assert!(
            document.accepts(&call_body, &body),
            "the document, {about}: {body}"
        );
        assert!(
            !server_accepts(&session, &body, about).await,
            "the server, {about}"
        );
        let description = doc
            .pointer(pointer)
            .and_then(Value::as_str)
            .unwrap_or_default();
        assert!(
            description.contains(said),
            "{pointer} says {said:?}: {description}"
        );
    }
    session.server.stop().await;
}

#[test]
fn the_document_names_every_phone_number_refused_by_the_rule() {
    // The route body's number and the path's follow the same pattern.
    let doc: Value = serde_json::from_str(dialer_http::openapi::document()).expect("JSON");
    let document = schema::Document(&doc);
    let number = &doc["components"]["schemas"]["CallBody"]["properties"]["phone_number"];
    for bad in rules::PHONE_NUMBER.refused {
        assert!(!document.accepts(number, &Value::from(*bad)), "{bad:?}");
    }
    assert!(document.accepts(number, &Value::from(rules::PHONE_NUMBER.example)));
}
