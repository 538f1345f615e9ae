//! A small client for the dialer's HTTP API.

use std::time::Duration;

use reqwest::{Client, Response, StatusCode};
use serde_json::{Value, json};

pub struct Api {
    pub base: String,
    pub http: Client,
}

impl Api {
    pub fn new(base: String) -> Self {
        Self {
            base,
            http: Client::new(),
        }
    }

    pub async fn token_response(&self, username: &str, password: &str) -> Response {
        self.http
            .post(format!("{}/api/v2/token", self.base))
            .form(&[("username", username), ("password", password)])
            .send()
            .await
            .expect("token request")
    }

    pub async fn token(&self, username: &str, password: &str) -> String {
        let response = self.token_response(username, password).await;
        assert_eq!(response.status(), StatusCode::OK);
        let body: Value = response.json().await.expect("token JSON");
        body["access_token"]
            .as_str()
            .expect("access_token")
            .to_owned()
    }

    /// `POST /api/v2/interaction/{number}` with a JSON body.
    pub async fn interaction(&self, token: &str, number: &str, body: Value) -> Response {
        self.http
            .post(format!("{}/api/v2/interaction/{number}", self.base))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .expect("interaction request")
    }

    pub async fn create_call(&self, token: &str, body: Value) -> Response {
        self.http
            .post(format!("{}/api/v2/calls", self.base))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .expect("create request")
    }

    pub async fn get(&self, token: &str, path: &str) -> Response {
        self.http
            .get(format!("{}{path}", self.base))
            .bearer_auth(token)
            .send()
            .await
            .expect("GET request")
    }

    pub async fn delete(&self, token: &str, path: &str) -> Response {
        self.http
            .delete(format!("{}{path}", self.base))
            .bearer_auth(token)
            .send()
            .await
            .expect("DELETE request")
    }

    /// Originates and returns the call id; panics unless the API accepted the call.
    pub async fn call(&self, token: &str, number: &str, body: Value) -> String {
        let response = self.interaction(token, number, body).await;
        let status = response.status();
        let body: Value = response.json().await.expect("originate JSON");
        assert_eq!(status, StatusCode::OK, "originate answered {body}");
        body["call_id"].as_str().expect("call_id").to_owned()
    }

    /// Originates and follows the call to its end: (call id, final status document).
    pub async fn call_to_end(&self, token: &str, number: &str, body: Value) -> (String, Value) {
        let id = self.call(token, number, body).await;
        let (doc, _) = self.until_final(token, &id, Duration::from_secs(20)).await;
        (id, doc)
    }

    pub async fn status(&self, token: &str, call_id: &str) -> Value {
        let response = self.get(token, &format!("/api/v2/status/{call_id}")).await;
        assert_eq!(response.status(), StatusCode::OK);
        response.json().await.expect("status JSON")
    }

    /// Polls the status until the call is completed (final) or `limit` passes.
    /// Returns the final document and every status seen on the way, in order.
    pub async fn until_final(
        &self,
        token: &str,
        call_id: &str,
        limit: Duration,
    ) -> (Value, Vec<String>) {
        let deadline = tokio::time::Instant::now() + limit;
        let mut seen: Vec<String> = Vec::new();
        loop {
            let doc = self.status(token, call_id).await;
            let status = doc["status"].as_str().unwrap_or_default().to_owned();
            if seen.last() != Some(&status) {
                seen.push(status);
            }
            if doc["is_completed"] == json!(true) {
                return (doc, seen);
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "call {call_id} not final: {doc}"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// The whole seconds of an answer's `Retry-After` (panics when there is none).
pub fn retry_after(response: &Response) -> u64 {
    response
        .headers()
        .get("retry-after")
        .expect("Retry-After")
        .to_str()
        .expect("text")
        .parse()
        .expect("seconds")
}
