//! Helpers for the integration tests: a local server on free ports with a fast
//! simulated PBX, an HTTP client that speaks the API, and the recorded ARI traces.

pub mod api;
pub mod aws;
pub mod bridge;
pub mod pg;
pub mod recording;
pub mod traces;

use std::net::SocketAddr;
use std::time::Duration;

use local::{LocalSettings, Running};
use shared::bridge::runner::EventSourceTiming;
use shared::config::{Config, Vars};
use shared::secret::Secret;

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

pub async fn start_local(options: Options) -> Running {
    let mut vars = vec![
        ("SECRET_KEY", SECRET_KEY),
        ("BCRYPT_COST", "4"),
        ("DIAL_ENDPOINT", "Local/{number}@test-pstn"),
        ("ALLOWED_CONTEXTS", "outbound-ivr,reminders"),
        (
            "METRICS_ENABLED",
            if options.metrics { "true" } else { "false" },
        ),
    ];
    vars.extend(options.extra_env.iter().copied());
    if let Some(url) = &options.database_url {
        vars.push(("DATABASE_URL", url));
    }
    let config = Config::load(&Vars(&vars)).expect("test configuration loads");
    let settings = LocalSettings {
        config,
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        admin_username: ADMIN.0.into(),
        admin_password: Secret::new(ADMIN.1),
        simulate_pbx: Some(options.time_scale),
        bridge: options.bridge,
        bridge_timing: fast_timing(),
    };
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
        flush_deadline: Duration::from_secs(5),
        store_retry: shared::bridge::queue::Retry {
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

/// An `AppState` over `store` and `pbx` with a fixed signing key, for tests that drive
/// the router directly.
pub fn app_state(
    store: std::sync::Arc<dyn shared::store::Store>,
    pbx: std::sync::Arc<dyn shared::pbx::Pbx>,
    metrics: std::sync::Arc<shared::metrics::Metrics>,
) -> shared::api::AppState {
    use shared::service::{CallService, LoginService};
    shared::api::AppState {
        calls: CallService::new(
            store.clone(),
            pbx,
            shared::domain::CallPolicy::default(),
            metrics.clone(),
        ),
        login: LoginService::new(
            store,
            shared::auth::Hasher::new(4),
            tokens(),
            metrics.clone(),
        ),
        metrics,
        metrics_enabled: true,
        bridge: None,
    }
}

/// Tokens signed with [`SECRET_KEY`].
pub fn tokens() -> shared::auth::Tokens {
    let key = std::sync::Arc::new(shared::secrets::Fixed(Secret::new(SECRET_KEY)));
    let settings = shared::auth::TokenSettings {
        issuer: None,
        audience: None,
        ttl_seconds: 600,
    };
    shared::auth::Tokens::new(settings, key)
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
