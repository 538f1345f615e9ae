//! `/docs`: the API reference with a console to try each route, served whole by the
//! server itself: nothing is fetched from anywhere else, and its policy says so.

use base64::Engine;
use integration::{Options, Session, session};
use reqwest::StatusCode;
use serde_json::Value;
use sha2::Digest;

/// The text between the first `open` and the `close` after it.
fn between<'a>(page: &'a str, open: &str, close: &str) -> &'a str {
    let start = page.find(open).unwrap_or_else(|| panic!("no {open}")) + open.len();
    let end = page[start..]
        .find(close)
        .unwrap_or_else(|| panic!("no {close}"))
        + start;
    &page[start..end]
}

fn sha256(text: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(text))
}

#[tokio::test]
async fn the_docs_page_and_its_console_come_from_the_server_alone() {
    let Session { server, api, .. } = session(Options::default()).await;
    let response = api
        .http
        .get(format!("{}/docs", api.base))
        .send()
        .await
        .expect("docs");
    assert_eq!(response.status(), StatusCode::OK);
    let headers = response.headers().clone();
    assert_eq!(headers["content-type"], "text/html; charset=utf-8");
    let policy = headers["content-security-policy"]
        .to_str()
        .expect("ASCII")
        .to_owned();
    let page = response.text().await.expect("page");

    // No outside URL at all, and nothing loaded by reference: the style and the script
    // are in the page.
    for outside in [
        "http:", "https:", "src=", "@import", "url(", "<link", "//cdn",
    ] {
        assert!(!page.contains(outside), "the page holds {outside:?}");
    }
    assert_eq!(page.matches("<script").count(), 1, "one script, inline");
    let script = between(&page, "<script>", "</script>");
    let style = between(&page, "<style>", "</style>");

    // The browser runs them only if the policy names their hashes, and lets the page
    // ask nothing of any other origin.
    let directives: Vec<&str> = policy.split(';').map(str::trim).collect();
    for directive in [
        "default-src 'none'".to_owned(),
        format!("script-src 'sha256-{}'", sha256(script)),
        format!("style-src 'sha256-{}'", sha256(style)),
        "connect-src 'self'".to_owned(),
        "frame-ancestors 'none'".to_owned(),
    ] {
        assert!(
            directives.contains(&directive.as_str()),
            "{directive} in {policy}"
        );
    }

    // The console: a token from the Authorize box, and a form per route that sends it.
    for part in [
        "id=\"login\"",
        "id=\"token\"",
        "\"Try it\"",
        "\"Send\"",
        "/api/v2/token",
        "Authorization",
        "fetch(url, init)",
    ] {
        assert!(page.contains(part), "the page has {part:?}");
    }

    // What the console reads: the document, from this server, with the bearer scheme.
    let doc: Value = api
        .http
        .get(format!("{}/openapi.json", api.base))
        .send()
        .await
        .expect("document")
        .json()
        .await
        .expect("JSON");
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    server.stop().await;
}
