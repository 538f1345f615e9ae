//! The status function: GET /api/v2/status/{call_id}, GET /api/v2/calls/{call_id},
//! GET /api/v2/calls, and /health, /docs, /openapi.json.
//! Settings are read and adapters built once per container by the composition root.

use dialer_boot::settings::StatusFunction;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    dialer_boot::lambda::run(
        "status",
        StatusFunction::from_env,
        |settings, platform| async move { dialer_boot::status_api(&settings, &platform).await },
    )
    .await
}
