//! The originate function: POST /api/v2/interaction/{number}, POST /api/v2/calls and
//! DELETE /api/v2/calls/{call_id}.
//! Settings are read and adapters built once per container by the composition root.

use dialer_boot::settings::OriginateFunction;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    dialer_boot::lambda::run(
        "originate",
        OriginateFunction::from_env,
        |settings, platform| async move { dialer_boot::originate_api(&settings, &platform).await },
    )
    .await
}
