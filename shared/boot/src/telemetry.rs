//! Logging setup shared by every binary: `RUST_LOG` filters, `LOG_FORMAT=json` for
//! machine-read logs (CloudWatch), human text otherwise.

use tracing_subscriber::EnvFilter;

pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false);
    let json = std::env::var("LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    // A second init (tests start several servers in one process) is not an error.
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}
