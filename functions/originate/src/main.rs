//! The originate function: POST /api/v2/interaction/{number}, POST /api/v2/calls and DELETE /api/v2/calls/{call_id}.
//! Adapters are built once per container; the routes are the shared ones.

use shared::api::Routes;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    shared::lambda::run("originate", &[Routes::Originate]).await
}
