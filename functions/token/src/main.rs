//! The token function: POST /api/v2/token.
//! Settings are read and adapters built once per container by the composition root.

use dialer_boot::settings::TokenFunction;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    dialer_boot::lambda::run(
        "token",
        TokenFunction::from_env,
        |settings, platform| async move { dialer_boot::token_api(&settings, &platform).await },
    )
    .await
}
