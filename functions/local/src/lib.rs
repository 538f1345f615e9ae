//! The whole product in one process: the API on every route, the in-process store (or
//! PostgreSQL, built with `--features postgres` and given `DATABASE_URL`), the
//! ARI event bridge as a task, and — unless `ARI_HTTP_URL` points at a real Asterisk — a
//! simulated PBX on a free loopback port. Tests start it the same way `main` does.

use std::net::SocketAddr;
use std::sync::Arc;

use pbx_sim::{SimConfig, SimHandle};
use shared::api::{self, AppState, Routes};
use shared::ari::AriClient;
use shared::auth::{Hasher, Tokens};
use shared::bridge::runner::EventSourceTiming;
use shared::bridge::{BridgeHealth, CallEvents, EventSource};
use shared::config::{Config, ConfigError, Env, ProcessEnv, SecretSetting};
use shared::domain::User;
use shared::metrics::Metrics;
use shared::pbx::Pbx;
use shared::secret::Secret;
use shared::secrets::{Fixed, SecretSource};
use shared::service::{CallService, LoginService};
use shared::store::{MemoryStore, Store, UserStore};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::info;

/// Everything the local server needs beyond the shared configuration.
#[derive(Clone, Debug)]
pub struct LocalSettings {
    pub config: Config,
    pub listen: SocketAddr,
    pub admin_username: String,
    pub admin_password: Secret,
    /// `None`: use the ARI in `config` (a real Asterisk). `Some`: start a simulated PBX
    /// with this time scale and point the ARI settings at it.
    pub simulate_pbx: Option<f64>,
    /// Start the event bridge (tests turn it off to see a call refused without one).
    pub bridge: bool,
    pub bridge_timing: EventSourceTiming,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("could not start: {0}")]
    Io(#[from] std::io::Error),
    #[error("could not start: {0}")]
    Other(String),
}

impl LocalSettings {
    /// Reads the environment: the shared variables plus `PORT`, `HOST`,
    /// `ADMIN_USERNAME`, `ADMIN_PASSWORD` and `PBX_SIM_TIME_SCALE`.
    pub fn from_env() -> Result<Self, StartError> {
        let env = ProcessEnv;
        // Tokens need a key; a local session makes one up rather than refuse to start.
        let session_key = Secret::new(format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        ));
        let config = Config::load_with(&env, Some(session_key))?;
        let port: u16 = parse(&env, "PORT", 8000)?;
        let host: std::net::IpAddr = parse(&env, "HOST", std::net::Ipv4Addr::LOCALHOST.into())?;
        let simulate_pbx = match env.get("ARI_HTTP_URL") {
            Some(_) => None,
            None => Some(parse(&env, "PBX_SIM_TIME_SCALE", 1.0)?),
        };
        if config.database_url.is_some() && !config.disable_db {
            return Err(ConfigError {
                var: "DATABASE_URL",
                problem: "this build keeps calls in process only; unset it or set DISABLE_DB=true"
                    .into(),
            }
            .into());
        }
        Ok(Self {
            config,
            listen: SocketAddr::new(host, port),
            admin_username: env.get("ADMIN_USERNAME").unwrap_or_else(|| "admin".into()),
            admin_password: Secret::new(
                env.get("ADMIN_PASSWORD")
                    .unwrap_or_else(|| "admin123".into()),
            ),
            simulate_pbx,
            bridge: true,
            bridge_timing: EventSourceTiming::default(),
        })
    }
}

/// A running local server. Dropping it does not stop it; call [`Running::stop`].
pub struct Running {
    pub api_addr: SocketAddr,
    pub ari_url: String,
    pub pbx: Option<SimHandle>,
    pub store: Arc<dyn Store>,
    pub health: Arc<BridgeHealth>,
    pub metrics: Arc<Metrics>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Running {
    pub fn api_url(&self) -> String {
        format!("http://{}", self.api_addr)
    }

    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
        if let Some(pbx) = self.pbx {
            pbx.shutdown().await;
        }
    }
}

pub async fn start(mut settings: LocalSettings) -> Result<Running, StartError> {
    let pbx_sim = match settings.simulate_pbx {
        Some(time_scale) => {
            let sim = pbx_sim::start(SimConfig {
                bind: SocketAddr::from(([127, 0, 0, 1], 0)),
                username: settings.config.ari.username.clone(),
                password: settings.config.ari.password.expose().to_owned(),
                time_scale,
            })
            .await?;
            settings.config.ari.url = sim.base_url();
            Some(sim)
        }
        None => None,
    };
    let config = settings.config;
    let signing_key: Arc<dyn SecretSource> = match &config.secret_key {
        SecretSetting::Value(key) => Arc::new(Fixed(key.clone())),
        SecretSetting::SecretId(_) => {
            return Err(ConfigError {
                var: "SECRET_KEY_SECRET_ID",
                problem: "the local server takes SECRET_KEY only".into(),
            }
            .into());
        }
    };
    let metrics = Arc::new(Metrics::new());
    let store: Arc<dyn Store> = match (&config.database_url, config.disable_db) {
        (Some(url), false) => shared::store::postgres(url, config.database_pool_size)
            .await
            .map_err(|e| StartError::Other(format!("DATABASE_URL: {e}")))?,
        _ => Arc::new(MemoryStore::new()),
    };
    let hasher = Hasher::new(config.bcrypt_cost);
    seed_admin(
        &*store,
        hasher,
        &settings.admin_username,
        &settings.admin_password,
    )
    .await?;

    let ari = AriClient::new(config.ari.clone()).map_err(|e| StartError::Other(e.to_string()))?;
    let pbx: Arc<dyn Pbx> = Arc::new(ari.clone());
    let health = Arc::new(BridgeHealth::default());
    let (shutdown, shutdown_rx) = watch::channel(false);
    let mut tasks = Vec::new();

    if settings.bridge {
        let source = EventSource {
            ari,
            events: CallEvents::new(store.clone(), pbx.clone(), metrics.clone()),
            health: health.clone(),
            metrics: metrics.clone(),
            timing: settings.bridge_timing,
        };
        tasks.push(tokio::spawn(source.run(shutdown_rx.clone())));
    }

    let state = AppState {
        calls: CallService::new(store.clone(), pbx, config.policy.clone(), metrics.clone()),
        login: LoginService::new(
            store.clone(),
            hasher,
            Tokens::new(config.tokens.clone(), signing_key),
            metrics.clone(),
        ),
        metrics: metrics.clone(),
        metrics_enabled: config.metrics_enabled,
        bridge: Some(health.clone()),
    };
    let listener = tokio::net::TcpListener::bind(settings.listen).await?;
    let api_addr = listener.local_addr()?;
    let app = api::router(state, &Routes::ALL);
    let mut stop = shutdown_rx;
    tasks.push(tokio::spawn(async move {
        let stopped = async move {
            let _ = stop.wait_for(|s| *s).await;
        };
        if let Err(e) = api::serve(listener, app, stopped).await {
            tracing::error!(error = %e, "API server failed");
        }
    }));
    info!(api = %format!("http://{api_addr}"), ari = %config.ari.url, "local server started");
    Ok(Running {
        api_addr,
        ari_url: config.ari.url.clone(),
        pbx: pbx_sim,
        store,
        health,
        metrics,
        shutdown,
        tasks,
    })
}

async fn seed_admin(
    users: &dyn UserStore,
    hasher: Hasher,
    username: &str,
    password: &Secret,
) -> Result<(), StartError> {
    let password = password.expose().to_owned();
    let password_hash = tokio::task::spawn_blocking(move || hasher.hash(&password))
        .await
        .map_err(|e| StartError::Other(e.to_string()))?
        .map_err(|e| StartError::Other(e.to_string()))?;
    users
        .insert_user(&User {
            username: username.to_owned(),
            password_hash,
            disabled: false,
        })
        .await
        .map_err(|e| StartError::Other(e.to_string()))
}

fn parse<T: std::str::FromStr>(
    env: &dyn Env,
    var: &'static str,
    default: T,
) -> Result<T, StartError> {
    match env.get(var) {
        None => Ok(default),
        Some(raw) => raw.trim().parse().map_err(|_| {
            StartError::Config(ConfigError {
                var,
                problem: format!("cannot use {raw:?}"),
            })
        }),
    }
}
