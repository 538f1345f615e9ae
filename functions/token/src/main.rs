//! The token function: POST /api/v2/token.
//! Adapters are built once per container; the routes are the shared ones.

use shared::api::Routes;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    shared::lambda::run("token", &[Routes::Token]).await
}
