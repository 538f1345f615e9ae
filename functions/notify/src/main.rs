//! The notify function: the calls table's stream and the webhook retry queue feed it;
//! for each call they name it delivers the events that are due, in order, and queues
//! the call again for when its next attempt is due.
//! Settings are read and adapters built once per container by the composition root.

use dialer_boot::settings::NotifyFunction;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    dialer_boot::notify::run(
        "notify",
        NotifyFunction::from_env,
        |settings, platform| async move { dialer_boot::notify::notifier(&settings, &platform).await },
    )
    .await
}
