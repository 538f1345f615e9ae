//! Helpers for the integration tests: a local server on free ports with a fast
//! simulated PBX, an HTTP client that speaks the API, and the recorded ARI traces.

pub mod api;
pub mod ari_proxy;
pub mod asterisk;
pub mod aws;
pub mod binaries;
pub mod bridge;
pub mod pg;
pub mod queue;
pub mod receiver;
pub mod recording;
pub mod traces;

use std::time::Duration;

use dialer_boot::local::LocalSettings;
use dialer_boot::settings::Vars;
use dialer_bridge::EventSourceTiming;
use dialer_core::secrets::Secret;
use local::Running;

/// One simulated second lasts this long in tests.
pub const TIME_SCALE: f64 = 0.02;
pub const ADMIN: (&str, &str) = ("admin", "admin-password");
pub const SECRET_KEY: &str = "integration-test-secret-key-0123456789";

/// Local server options for a test.
pub struct Options {
    pub bridge: bool,
    pub metrics: bool,
    pub time_scale: f64,
    pub extra_env: Vec<(&'static str, &'static str)>,
    /// Run on PostgreSQL (a fresh schema) instead of the in-process store.
    pub database_url: Option<String>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            bridge: true,
            metrics: true,
            time_scale: TIME_SCALE,
            extra_env: Vec::new(),
            database_url: None,
        }
    }
}

/// The local server as `main` starts it: its settings read from environment variables
/// (a list here), then the binary's own `start`.
pub async fn start_local(options: Options) -> Running {
    let scale = options.time_scale.to_string();
    let mut vars = vec![
        ("SECRET_KEY", SECRET_KEY),
        ("BCRYPT_COST", "4"),
        ("DIAL_ENDPOINT", "Local/{number}@test-pstn"),
        ("ALLOWED_CONTEXTS", "outbound-ivr,reminders"),
        ("HOST", "127.0.0.1"),
        ("PORT", "0"),
        ("ADMIN_USERNAME", ADMIN.0),
        ("ADMIN_PASSWORD", ADMIN.1),
        ("PBX_SIM_TIME_SCALE", scale.as_str()),
        // A test's client keeps its connections idle at `stop()`: a short drain ends them
        // soon (tests/drain.rs checks the drain itself, through the binary).
        ("SHUTDOWN_DRAIN_MS", "100"),
        (
            "METRICS_ENABLED",
            if options.metrics { "true" } else { "false" },
        ),
    ];
    vars.extend(options.extra_env.iter().copied());
    if let Some(url) = &options.database_url {
        vars.push(("DATABASE_URL", url));
    }
    let mut settings = LocalSettings::from_env(&Vars(&vars)).expect("test settings load");
    settings.bridge = options.bridge;
    settings.bridge_timing = fast_timing();
    let running = local::start(settings).await.expect("local server starts");
    if options.bridge {
        wait_until(Duration::from_secs(10), || running.health.connected()).await;
    }
    running
}

/// Bridge timing for tests: quick pings and reconnects.
pub fn fast_timing() -> EventSourceTiming {
    EventSourceTiming {
        ping_every: Duration::from_millis(500),
        silence_limit: Duration::from_secs(3),
        backoff_min: Duration::from_millis(20),
        backoff_max: Duration::from_millis(200),
        replaced_wait: Duration::from_millis(500),
        pending_grace: Duration::from_secs(5),
        settle: Duration::from_millis(100),
        sweep_every: Duration::from_millis(200),
        unconfirmed_grace: Duration::from_secs(1),
        flush_deadline: Duration::from_secs(5),
        store_retry: dialer_bridge::queue::Retry {
            first: Duration::from_millis(10),
            max: Duration::from_millis(100),
        },
        ..EventSourceTiming::default()
    }
}

/// Polls `condition` every 10 ms until it holds; panics after `limit`.
pub async fn wait_until(limit: Duration, condition: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + limit;
    while !condition() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition not met within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The API's route sets over `store` and `pbx`, with a fixed signing key and the
/// default call policy, assembled by the composition root: for tests that drive the
/// router directly.
pub fn router(
    store: std::sync::Arc<dyn dialer_core::store::Store>,
    pbx: std::sync::Arc<dyn dialer_core::pbx::Pbx>,
    metrics: std::sync::Arc<dialer_core::metrics::Metrics>,
    sets: &[dialer_http::Routes],
) -> axum::Router {
    let parts = dialer_boot::ApiParts {
        pacer: dialer_core::service::Pacer::new(store.clone(), Default::default()),
        store,
        tokens: std::sync::Arc::new(tokens()),
        metrics,
        metrics_enabled: true,
        bridge: None,
        // Tests read the user on every request: a change shows at once.
        user_cache: Duration::ZERO,
        guard: std::sync::Arc::new(dialer_core::webhooks::AcceptAll),
    };
    parts.router(
        sets,
        dialer_boot::password_hasher(4),
        dialer_core::domain::ThrottlePolicy::default(),
        pbx,
        dialer_core::domain::CallPolicy::default(),
    )
}

/// Tokens signed with [`SECRET_KEY`].
pub fn tokens() -> dialer_core::auth::Tokens {
    let key = std::sync::Arc::new(dialer_core::secrets::Fixed(Secret::new(SECRET_KEY)));
    let settings = dialer_core::auth::TokenSettings {
        issuer: None,
        audience: None,
        ttl_seconds: 600,
    };
    dialer_core::auth::Tokens::new(settings, key)
}

/// A local server, a client for it, and a token of the demo user: how most end-to-end
/// tests begin.
pub struct Session {
    pub server: Running,
    pub api: api::Api,
    pub token: String,
}

pub async fn session(options: Options) -> Session {
    let server = start_local(options).await;
    let api = api::Api::new(server.api_url());
    let token = api.token(ADMIN.0, ADMIN.1).await;
    Session { server, api, token }
}
