//! Logging setup shared by every binary: `RUST_LOG` filters (`info`, `warn`,
//! `dialer_bridge=debug,info`: levels per target, no span or field filters, so that no
//! regular-expression engine is linked into the Lambdas), `LOG_FORMAT=json` for
//! machine-read logs (CloudWatch), human text otherwise.

use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

pub fn init() {
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|raw| raw.parse::<Targets>().ok())
        .unwrap_or_else(|| Targets::new().with_default(LevelFilter::INFO));
    let json = std::env::var("LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    let registry = tracing_subscriber::registry().with(filter);
    // A second init (tests start several servers in one process) is not an error.
    let _ = if json {
        registry
            .with(tracing_subscriber::fmt::layer().json().with_target(false))
            .try_init()
    } else {
        registry
            .with(tracing_subscriber::fmt::layer().with_target(false))
            .try_init()
    };
}
