//! What an operator reads in the logs of the local server as `main` starts it: one line
//! per call outcome, and with `ACCESS_LOG=true` one per request, by route (never a
//! callee's number from the path) and without a secret.

use std::time::{Duration, Instant};

use integration::ADMIN;
use integration::api::Api;
use integration::binaries::Process;
use serde_json::{Value, json};

const BUSY: &str = "+15550020001";

/// The JSON log lines of `server`, once `ready` holds for them (each line is written
/// as it happens; the process may be a moment behind the test).
async fn lines_when(server: &Process, ready: impl Fn(&[Value]) -> bool) -> (String, Vec<Value>) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = std::fs::read_to_string(&server.log).expect("the log");
        let lines: Vec<Value> = text
            .lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect();
        if ready(&lines) {
            return (text, lines);
        }
        assert!(Instant::now() < deadline, "log lines missing:\n{text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn with_message<'a>(lines: &'a [Value], message: &str) -> Vec<&'a Value> {
    lines
        .iter()
        .map(|l| &l["fields"])
        .filter(|f| f["message"] == message)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_calls_outcome_and_every_request_get_one_log_line_each_without_numbers_or_secrets() {
    let server = Process::start(&[("LOG_FORMAT", "json"), ("ACCESS_LOG", "true")]).await;
    let api = Api::new(server.base_url.clone());
    let token = api.token(ADMIN.0, ADMIN.1).await;
    let (id, doc) = api.call_to_end(&token, BUSY, json!({})).await;
    assert_eq!(doc["status"], "busy", "{doc}");
    let unknown = api.get(&token, "/no/such/route").await;
    assert_eq!(unknown.status(), reqwest::StatusCode::NOT_FOUND);

    let (text, lines) = lines_when(&server, |lines| {
        !with_message(lines, "call ended").is_empty()
            && with_message(lines, "request")
                .iter()
                .any(|f| f["route"] == "(no route)")
    })
    .await;
    let ended = with_message(&lines, "call ended");
    assert_eq!(ended.len(), 1, "one line per outcome: {ended:?}");
    assert_eq!(ended[0]["call"], id.as_str());
    assert_eq!(ended[0]["user"], ADMIN.0);
    assert_eq!(ended[0]["status"], "busy");
    assert_eq!(ended[0]["dialstatus"], "BUSY");
    assert_eq!(ended[0]["attempt"], 1);

    let requests = with_message(&lines, "request");
    let originate = requests
        .iter()
        .find(|f| f["route"] == "/api/v2/interaction/{number}")
        .expect("the originate's line");
    assert_eq!(originate["method"], "POST");
    assert_eq!(originate["status"], 200);
    assert_eq!(originate["client"], "127.0.0.1");
    assert!(originate["ms"].as_f64().is_some_and(|ms| ms >= 0.0));
    assert!(
        requests
            .iter()
            .any(|f| f["route"] == "/api/v2/token" && f["status"] == 200),
        "{requests:?}"
    );
    for line in text.lines().filter(|l| l.contains("\"request\"")) {
        assert!(!line.contains(BUSY), "a number in an access line: {line}");
    }
    for secret in [ADMIN.1, token.as_str()] {
        assert!(!text.contains(secret), "the log holds a secret:\n{text}");
    }
}
