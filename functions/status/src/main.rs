//! The status function: GET /api/v2/status/{call_id}, GET /api/v2/calls/{call_id}, GET /api/v2/calls, and /health, /docs, /openapi.json.
//! Adapters are built once per container; the routes are the shared ones.

use shared::api::Routes;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    shared::lambda::run("status", &[Routes::Status, Routes::Ops]).await
}
