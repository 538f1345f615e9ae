//! The whole product in one process: the API on every route, the in-process store (or
//! PostgreSQL, built with `--features postgres` and given `DATABASE_URL`), the ARI event
//! bridge as a task, and a demo user. The local server binary adds the simulated PBX in
//! front of this when `ARI_HTTP_URL` is unset.

use std::net::SocketAddr;
use std::sync::Arc;

use dialer_bridge::EventSourceTiming;
use dialer_core::domain::{CallPolicy, ThrottlePolicy, User};
use dialer_core::health::BridgeHealth;
use dialer_core::metrics::Metrics;
use dialer_core::secrets::Secret;
use dialer_core::store::{Store, StoreError, UserStore};
use dialer_http::Routes;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::serve::Limits;
use crate::settings::{
    AuthSettings, ConfigError, Env, MetricsSettings, PbxSettings, StoreDefault, StoreSettings,
    bcrypt_cost, call_policy, parse, text,
};
use crate::{ApiParts, BootError, Platform};

/// Everything the local server reads from the environment.
#[derive(Clone, Debug)]
pub struct LocalSettings {
    pub store: StoreSettings,
    pub auth: AuthSettings,
    pub pbx: PbxSettings,
    pub policy: CallPolicy,
    pub bcrypt_cost: u32,
    pub throttle: ThrottlePolicy,
    pub metrics: MetricsSettings,
    /// `HOST` and `PORT` (default 127.0.0.1:8000).
    pub listen: SocketAddr,
    pub admin_username: String,
    pub admin_password: Secret,
    /// `WEBHOOK_SECRET`: what the demo user's webhook events are signed with; a random
    /// one per run when unset.
    pub webhook_secret: Secret,
    pub webhooks: crate::settings::WebhookSettings,
    /// `None`: use the ARI in `pbx` (a real Asterisk, `ARI_HTTP_URL` given). `Some`:
    /// the binary starts a simulated PBX with this time scale (`PBX_SIM_TIME_SCALE`)
    /// and points `pbx` at it.
    pub simulate_pbx: Option<f64>,
    /// Start the event bridge (tests turn it off to see a call refused without one).
    pub bridge: bool,
    pub bridge_timing: EventSourceTiming,
    /// `HTTP_HEADER_TIMEOUT_MS`, `HTTP_BODY_TIMEOUT_MS`, `HTTP_MAX_CONNECTIONS`,
    /// `SHUTDOWN_DRAIN_MS`.
    pub http_limits: Limits,
    /// `MAX_CALLS_PER_SECOND`, `MAX_CONCURRENT_CALLS`.
    pub limits: dialer_core::domain::TrunkLimits,
    /// `DEFAULT_MAX_QUEUED_CALLS`, `MAX_QUEUED_CALLS`.
    pub queue: dialer_core::domain::pacing::QueueLimits,
    /// `ACCESS_LOG`: one log line per request answered (off by default).
    pub access_log: bool,
    /// `DISPATCH_POLL_MS`.
    pub dispatch: dialer_core::service::DispatchTiming,
    /// Run the dispatcher (tests turn it off to see calls wait queued).
    pub dispatcher: bool,
}

impl LocalSettings {
    /// The shared variables plus `PORT`, `HOST`, `ADMIN_USERNAME`, `ADMIN_PASSWORD` and
    /// `PBX_SIM_TIME_SCALE`. Calls stay in process unless `DATABASE_URL` is set.
    pub fn from_env(env: &dyn Env) -> Result<Self, ConfigError> {
        // Tokens need a key; a local session makes one up rather than refuse to start.
        let session_key = Secret::new(format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        ));
        let auth = AuthSettings::from_env(env, Some(session_key))?;
        if matches!(auth.key, crate::settings::SecretSetting::SecretId { .. }) {
            return Err(ConfigError {
                var: "SECRET_KEY_SECRET_ID",
                problem: "the local server takes SECRET_KEY only".into(),
            });
        }
        let simulate_pbx = match env.get("ARI_HTTP_URL") {
            Some(_) => None,
            None => Some(parse(
                env,
                "PBX_SIM_TIME_SCALE",
                1.0,
                "a number, e.g. 0.1 for ten times faster",
            )?),
        };
        let port: u16 = parse(env, "PORT", 8000, crate::settings::PORT_RULE)?;
        let host: std::net::IpAddr = parse(
            env,
            "HOST",
            std::net::Ipv4Addr::LOCALHOST.into(),
            "an IP address, e.g. 127.0.0.1 or 0.0.0.0",
        )?;
        Ok(Self {
            store: StoreSettings::from_env(env, StoreDefault::Memory)?,
            auth,
            pbx: PbxSettings::from_env(env)?,
            policy: call_policy(env)?,
            bcrypt_cost: bcrypt_cost(env)?,
            throttle: crate::settings::throttle_policy(env)?,
            metrics: MetricsSettings::from_env(env)?,
            listen: SocketAddr::new(host, port),
            admin_username: text(env, "ADMIN_USERNAME", "admin"),
            admin_password: admin_password(env)?,
            webhook_secret: Secret::new(
                env.get("WEBHOOK_SECRET")
                    .unwrap_or_else(dialer_core::domain::user::new_webhook_secret),
            ),
            webhooks: crate::settings::WebhookSettings::from_env(env)?,
            simulate_pbx,
            bridge: true,
            bridge_timing: EventSourceTiming {
                unconfirmed_grace: crate::settings::unconfirmed_grace(env)?,
                ..EventSourceTiming::default()
            },
            http_limits: http_limits(env)?,
            limits: crate::settings::trunk_limits(env)?,
            queue: crate::settings::queue_limits(env)?,
            access_log: crate::settings::flag(env, "ACCESS_LOG", false)?,
            dispatch: crate::settings::dispatch_timing(env)?,
            dispatcher: true,
        })
    }
}

/// A running local process. Dropping it does not stop it; call [`LocalProcess::stop`].
pub struct LocalProcess {
    pub api_addr: SocketAddr,
    pub store: Arc<dyn Store>,
    pub health: Arc<BridgeHealth>,
    pub metrics: Arc<Metrics>,
    stop_api: watch::Sender<bool>,
    api: JoinHandle<()>,
    stop_bridge: watch::Sender<bool>,
    bridge: Option<JoinHandle<()>>,
    outbox: JoinHandle<()>,
    dispatcher: Option<JoinHandle<()>>,
}

impl LocalProcess {
    pub fn api_url(&self) -> String {
        format!("http://{}", self.api_addr)
    }

    /// Drains the API (see [`crate::serve`]: the listener closes, `/health` answers 503,
    /// open connections may still deliver a request for `SHUTDOWN_DRAIN_MS` and every
    /// request is answered), then stops the bridge, which flushes its write queue (the
    /// calls those requests placed included), and returns.
    pub async fn stop(self) {
        let _ = self.stop_api.send(true);
        let _ = self.api.await;
        let _ = self.stop_bridge.send(true);
        if let Some(dispatcher) = self.dispatcher {
            let _ = dispatcher.await;
        }
        if let Some(bridge) = self.bridge {
            let _ = bridge.await;
        }
        let _ = self.outbox.await;
    }
}

/// Binds the API's address first: a port already taken stops the start before anything
/// runs, with a message naming the address.
pub async fn start(settings: LocalSettings) -> Result<LocalProcess, BootError> {
    let listener = bind(settings.listen).await?;
    let api_addr = listener.local_addr()?;
    let platform = Platform::default();
    let store = crate::open_store(&settings.store, &platform).await?;
    let hasher = crate::password_hasher(settings.bcrypt_cost);
    seed_admin(
        &*store,
        hasher.clone(),
        &settings.admin_username,
        &settings.admin_password,
        &settings.webhook_secret,
    )
    .await?;
    let metrics = Arc::new(Metrics::new());
    let ari = crate::ari_client(&settings.pbx, &platform)?;
    let pacer = dialer_core::service::Pacer::new(store.clone(), settings.limits)
        .with_queue_limits(settings.queue);
    let mut source = crate::event_source(
        store.clone(),
        ari.clone(),
        metrics.clone(),
        settings.bridge_timing.clone(),
    );
    source.events = source.events.with_pacer(pacer.clone());
    let health = source.health.clone();
    let (stop_bridge, bridge_stopped) = watch::channel(false);
    let deliverer = crate::deliverer(store.clone(), &settings.webhooks, metrics.clone())?;
    let outbox = tokio::spawn(deliverer.drain(
        dialer_core::service::deliver::DrainTiming::default(),
        bridge_stopped.clone(),
    ));
    let dispatcher = settings.dispatcher.then(|| {
        let dispatcher = crate::dispatcher(
            store.clone(),
            Arc::new(ari.clone()),
            pacer.clone(),
            health.clone(),
            settings.dispatch.clone(),
            metrics.clone(),
        );
        let mut stopped = bridge_stopped.clone();
        tokio::spawn(dispatcher.run(async move {
            let _ = stopped.wait_for(|s| *s).await;
        }))
    });
    let bridge = settings
        .bridge
        .then(|| tokio::spawn(source.run(bridge_stopped)));
    let parts = ApiParts {
        store: store.clone(),
        tokens: crate::tokens(&settings.auth, &platform)?,
        metrics: metrics.clone(),
        metrics_enabled: settings.metrics.enabled,
        bridge: Some(health.clone()),
        user_cache: settings.auth.user_cache,
        guard: crate::callback_guard(&settings.webhooks),
        pacer,
    };
    let app = parts.router(
        &Routes::ALL,
        hasher,
        settings.throttle,
        Arc::new(dialer_core::pbx::FollowedByLocalBridge::new(
            ari,
            health.clone(),
        )),
        settings.policy.clone(),
    );
    let app = if settings.access_log {
        app.layer(axum::middleware::from_fn(
            crate::serve::access_log::access_log,
        ))
    } else {
        app
    };
    let (stop_api, mut api_stopped) = watch::channel(false);
    let limits = settings.http_limits;
    let api = tokio::spawn(async move {
        let stopped = async move {
            let _ = api_stopped.wait_for(|s| *s).await;
        };
        if let Err(e) = crate::serve::serve_with(listener, app, limits, stopped).await {
            tracing::error!(error = %e, "API server failed");
        }
    });
    tracing::info!(
        api = %format!("http://{api_addr}"),
        ari = %settings.pbx.ari.url,
        bridge = settings.bridge,
        "local server started"
    );
    Ok(LocalProcess {
        api_addr,
        store,
        health,
        metrics,
        stop_api,
        api,
        stop_bridge,
        bridge,
        outbox,
        dispatcher,
    })
}

/// The API's listener, or why not, naming the address and what to change.
async fn bind(addr: SocketAddr) -> Result<tokio::net::TcpListener, BootError> {
    tokio::net::TcpListener::bind(addr).await.map_err(|source| {
        let kind = source.kind();
        BootError::Io(std::io::Error::new(kind, ListenError { addr, source }))
    })
}

/// The listen address could not be bound.
#[derive(Debug)]
struct ListenError {
    addr: SocketAddr,
    source: std::io::Error,
}

impl std::fmt::Display for ListenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let addr = self.addr;
        match self.source.kind() {
            std::io::ErrorKind::AddrInUse => {
                write!(f, "{addr} is in use; set PORT to another port")
            }
            std::io::ErrorKind::AddrNotAvailable => write!(
                f,
                "{addr} is not an address of this machine; set HOST to one that is (e.g. 127.0.0.1)"
            ),
            std::io::ErrorKind::PermissionDenied => write!(
                f,
                "not allowed to listen on {addr}; set PORT to one above 1023"
            ),
            _ => write!(
                f,
                "cannot listen on {addr} ({}); set HOST and PORT to another address",
                self.source
            ),
        }
    }
}

impl std::error::Error for ListenError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

fn http_limits(env: &dyn Env) -> Result<Limits, ConfigError> {
    let defaults = Limits::default();
    let millis = |var, default: std::time::Duration| -> Result<std::time::Duration, ConfigError> {
        let ms: u64 = parse(
            env,
            var,
            u64::try_from(default.as_millis()).unwrap_or(u64::MAX),
            "a whole number of milliseconds",
        )?;
        if ms == 0 {
            return Err(ConfigError {
                var,
                problem: "must be more than 0".into(),
            });
        }
        Ok(std::time::Duration::from_millis(ms))
    };
    Ok(Limits {
        header_read: millis("HTTP_HEADER_TIMEOUT_MS", defaults.header_read)?,
        body_read: millis("HTTP_BODY_TIMEOUT_MS", defaults.body_read)?,
        max_connections: parse(
            env,
            "HTTP_MAX_CONNECTIONS",
            defaults.max_connections,
            "a whole number of connections",
        )?,
        drain: crate::settings::shutdown_drain(env)?,
    })
}

async fn seed_admin(
    users: &dyn UserStore,
    hasher: Arc<dyn dialer_core::auth::PasswordHasher>,
    username: &str,
    password: &Secret,
    webhook_secret: &Secret,
) -> Result<(), BootError> {
    let password = password.expose().to_owned();
    let password_hash = tokio::task::spawn_blocking(move || hasher.hash(&password))
        .await
        .map_err(|e| BootError::Seed(e.to_string()))?
        .map_err(|e| BootError::Seed(e.to_string()))?;
    let mut user = User::new(username, password_hash);
    user.webhook_secret = Some(webhook_secret.expose().to_owned());
    // On a kept store (PostgreSQL) the demo user is there from the last run: the
    // password given now wins, as a reset would, ending the tokens of the last run.
    match users.insert_user(&user).await {
        Ok(()) => Ok(()),
        Err(StoreError::Conflict) => {
            let seed = |e: StoreError| BootError::Seed(e.to_string());
            let previous = users.get_user(username).await.map_err(seed)?;
            if let Some(previous) = &previous {
                user.webhook_url.clone_from(&previous.webhook_url);
            }
            user.token_version = previous.map_or(0, |p| p.token_version.saturating_add(1));
            users.update_user(&user).await.map_err(seed).map(|_| ())
        }
        Err(e) => Err(BootError::Seed(e.to_string())),
    }
}

/// `ADMIN_PASSWORD` (default `admin123`), held to the rule every password is.
fn admin_password(env: &dyn Env) -> Result<Secret, ConfigError> {
    let raw = text(env, "ADMIN_PASSWORD", "admin123");
    dialer_core::domain::Password::parse(&raw).map_err(|e| ConfigError {
        var: "ADMIN_PASSWORD",
        problem: e.message,
    })?;
    Ok(Secret::new(raw))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::Vars;

    #[test]
    fn an_admin_password_bcrypt_would_truncate_or_too_short_stops_the_start() {
        let long = "x".repeat(73);
        for bad in [long.as_str(), "short"] {
            let env = [("ADMIN_PASSWORD", bad)];
            let err = LocalSettings::from_env(&Vars(&env)).expect_err("refused");
            assert_eq!(err.var, "ADMIN_PASSWORD");
        }
        assert!(
            LocalSettings::from_env(&Vars(&[])).is_ok(),
            "the default passes"
        );
    }

    #[test]
    fn shutdown_drain_ms_sets_the_drain_and_a_value_out_of_range_stops_the_start() {
        let unset = LocalSettings::from_env(&Vars(&[])).expect("defaults");
        assert_eq!(unset.http_limits.drain, Limits::default().drain);
        let given =
            LocalSettings::from_env(&Vars(&[("SHUTDOWN_DRAIN_MS", "2500")])).expect("in range");
        assert_eq!(
            given.http_limits.drain,
            std::time::Duration::from_millis(2500)
        );
        for bad in ["10001", "-1", "soon"] {
            let env = [("SHUTDOWN_DRAIN_MS", bad)];
            let err = LocalSettings::from_env(&Vars(&env)).expect_err("refused");
            assert_eq!(err.var, "SHUTDOWN_DRAIN_MS", "{bad}");
        }
    }

    #[test]
    fn a_port_or_host_that_cannot_be_read_stops_the_start_saying_what_it_takes() {
        for (var, bad, rule) in [
            ("PORT", "abc", "a port number from 0 to 65535"),
            ("PORT", "70000", "a port number from 0 to 65535"),
            ("HOST", "localhost:80", "an IP address"),
        ] {
            let env = [(var, bad)];
            let err = LocalSettings::from_env(&Vars(&env)).expect_err(bad);
            assert_eq!(err.var, var);
            let text = err.to_string();
            assert!(text.contains(rule) && text.contains(bad), "{text}");
        }
    }

    #[test]
    fn the_queue_is_bounded_unless_the_operator_sets_other_bounds() {
        let unset = LocalSettings::from_env(&Vars(&[])).expect("defaults");
        assert_eq!(
            unset.queue,
            dialer_core::domain::pacing::QueueLimits::DEFAULT
        );
        let set = LocalSettings::from_env(&Vars(&[("MAX_QUEUED_CALLS", "7")])).expect("valid");
        assert_eq!(set.queue.total, Some(7));
    }
}
