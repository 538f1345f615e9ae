//! The one composition root: builds a process's adapters and services from its
//! [`settings`], once. Every binary (the three Lambdas, the bridge, the local server,
//! `dialer-users`) and the test harness start here; nothing else assembles a store, an
//! app's routes or an event source.
//!
//! Each part has its own builder (`token_api`, `originate_api`, `status_api`,
//! `bridge`, `user_admin`), which references only the adapters that part uses, and each
//! adapter sits behind a cargo feature: a binary links only what it runs.

pub mod settings;
pub mod telemetry;

#[cfg(feature = "aws")]
pub mod aws_env;
#[cfg(feature = "lambda")]
pub mod lambda;
#[cfg(feature = "local")]
pub mod local;
#[cfg(feature = "notify")]
pub mod notify;
#[cfg(feature = "serve")]
pub mod serve;

use std::sync::Arc;

use dialer_core::auth::Tokens;
use dialer_core::metrics::{EMF_NAMESPACE, Metrics};
use dialer_core::secrets::{Fixed, SecretSource};
use dialer_core::store::{MemoryStore, Store, StoreError};

use settings::{AuthSettings, ConfigError, MetricsSettings, SecretSetting, StoreSettings};

/// Why a process could not be assembled.
#[derive(Debug, thiserror::Error)]
pub enum BootError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("{var}: {source}")]
    Store {
        var: &'static str,
        #[source]
        source: StoreError,
    },
    #[error("{var}: this build cannot use it ({why})")]
    Unsupported {
        var: &'static str,
        why: &'static str,
    },
    #[cfg(feature = "ari")]
    #[error("ARI client: {0}")]
    Ari(#[source] dialer_core::pbx::PbxError),
    #[error("could not start: {0}")]
    Io(#[from] std::io::Error),
    #[error("could not create the demo user: {0}")]
    Seed(String),
    #[error("webhook sender: {0}")]
    Webhooks(#[source] std::io::Error),
}

/// What the platform gives a process: in AWS builds, the AWS configuration (region,
/// credentials, endpoints) that DynamoDB, Secrets Manager and SQS clients use, or why
/// there is none (a variable a Lambda function cannot do without, named).
#[derive(Clone, Default)]
pub struct Platform {
    #[cfg(feature = "aws")]
    aws: Option<Result<aws_types::SdkConfig, ConfigError>>,
}

impl Platform {
    /// The platform as the environment describes it. With `aws-chain` (the bridge,
    /// `dialer-users`): the AWS SDK's whole default chain (variables, profile files,
    /// SSO, web identity, container and instance roles). Otherwise, in AWS builds, what
    /// a Lambda function is given ([`Platform::from_lambda_env`]).
    pub async fn from_env() -> Self {
        Self {
            #[cfg(feature = "aws-chain")]
            aws: Some(Ok(aws_config::defaults(
                aws_config::BehaviorVersion::latest(),
            )
            .load()
            .await)),
            #[cfg(all(feature = "aws", not(feature = "aws-chain")))]
            aws: Some(aws_env::lambda_config(&settings::ProcessEnv)),
        }
    }

    /// A Lambda function's platform: the region and role keys the Lambda runtime puts in
    /// its environment, read without the SDK's default chain (see [`aws_env`]). A
    /// missing variable stops the function at start only if it builds an AWS client.
    #[cfg(feature = "aws")]
    pub fn from_lambda_env(env: &dyn settings::Env) -> Self {
        Self {
            aws: Some(aws_env::lambda_config(env)),
        }
    }

    /// A platform on a given AWS configuration (tests point it at moto).
    #[cfg(feature = "aws")]
    pub fn with_aws(aws: aws_types::SdkConfig) -> Self {
        Self { aws: Some(Ok(aws)) }
    }

    /// The AWS configuration for the client `var` asks for, or why there is none.
    #[cfg(feature = "aws")]
    pub fn aws(&self, var: &'static str) -> Result<&aws_types::SdkConfig, BootError> {
        match &self.aws {
            Some(Ok(aws)) => Ok(aws),
            Some(Err(error)) => Err(BootError::Config(error.clone())),
            None => Err(BootError::Unsupported {
                var,
                why: "no AWS configuration was loaded",
            }),
        }
    }
}

/// The store the settings select, as every port at once: for the processes that use
/// most of them (originate, the bridge, the local server, `dialer-users`).
pub async fn open_store(
    settings: &StoreSettings,
    platform: &Platform,
) -> Result<Arc<dyn Store>, BootError> {
    with_store(settings, platform, AllPorts).await
}

/// What a process builds from the store the settings select, given it as its own type.
/// A `dyn Store` points at every method of every port, so a binary holding one links
/// all of a store's code; a part that turns the store into only the ports it uses (the
/// status function: [`CallReads`](dialer_core::store::CallReads) and
/// [`UserReads`](dialer_core::store::UserReads)) links only those.
pub trait StoreUse {
    type Output;
    fn build<S: Store + 'static>(self, store: Arc<S>) -> Self::Output;
}

/// Opens the store the settings select and hands it to `part`.
#[cfg_attr(not(feature = "aws"), allow(unused_variables))]
pub async fn with_store<U: StoreUse>(
    settings: &StoreSettings,
    platform: &Platform,
    part: U,
) -> Result<U::Output, BootError> {
    match settings {
        StoreSettings::Memory => Ok(part.build(Arc::new(MemoryStore::new()))),
        #[cfg(feature = "aws")]
        StoreSettings::Dynamo {
            calls_table,
            users_table,
            call_retention_days,
        } => Ok(part.build(Arc::new(dynamo_store(
            platform,
            calls_table,
            users_table,
            *call_retention_days,
        )?))),
        #[cfg(not(feature = "aws"))]
        StoreSettings::Dynamo { .. } => Err(BootError::Unsupported {
            var: "CALLS_TABLE",
            why: "no DynamoDB in this build; set DATABASE_URL or DISABLE_DB=true",
        }),
        #[cfg(feature = "postgres")]
        StoreSettings::Postgres { url, pool_size } => {
            let size = pool_size.unwrap_or_else(dialer_store_postgres::default_pool_size);
            let store = dialer_store_postgres::PgStore::connect(url.expose(), size)
                .await
                .map_err(|source| BootError::Store {
                    var: "DATABASE_URL",
                    source,
                })?;
            Ok(part.build(Arc::new(store)))
        }
        #[cfg(not(feature = "postgres"))]
        StoreSettings::Postgres { .. } => Err(BootError::Unsupported {
            var: "DATABASE_URL",
            why: "built without PostgreSQL support; build with --features postgres",
        }),
    }
}

/// Every port: the store as one `dyn Store`.
struct AllPorts;

impl StoreUse for AllPorts {
    type Output = Arc<dyn Store>;
    fn build<S: Store + 'static>(self, store: Arc<S>) -> Arc<dyn Store> {
        store
    }
}

/// The DynamoDB store on the platform's AWS configuration.
#[cfg(feature = "aws")]
pub fn dynamo_store(
    platform: &Platform,
    calls_table: &str,
    users_table: &str,
    call_retention_days: i64,
) -> Result<dialer_store_dynamo::DynamoStore, BootError> {
    let aws = platform.aws("CALLS_TABLE")?;
    Ok(dialer_store_dynamo::DynamoStore::new(
        dialer_store_dynamo::Client::new(aws),
        calls_table.to_owned(),
        users_table.to_owned(),
        call_retention_days,
    ))
}

/// A secret's source: the value itself, or Secrets Manager by id.
#[cfg_attr(not(feature = "aws"), allow(unused_variables))]
pub fn secret_source(
    setting: &SecretSetting,
    var: &'static str,
    platform: &Platform,
) -> Result<Arc<dyn SecretSource>, BootError> {
    match setting {
        SecretSetting::Value(value) => Ok(Arc::new(Fixed(value.clone()))),
        #[cfg(feature = "aws")]
        SecretSetting::SecretId { id, ttl } => {
            let aws = platform.aws(var)?;
            let client = dialer_secrets_aws::Client::new(aws);
            Ok(Arc::new(dialer_secrets_aws::SecretsManagerSecret::new(
                client,
                id.clone(),
                *ttl,
            )))
        }
        #[cfg(not(feature = "aws"))]
        SecretSetting::SecretId { .. } => Err(BootError::Unsupported {
            var,
            why: "no Secrets Manager in this build; give the value itself",
        }),
    }
}

/// The token signer and checker.
pub fn tokens(auth: &AuthSettings, platform: &Platform) -> Result<Arc<Tokens>, BootError> {
    let key = secret_source(&auth.key, "SECRET_KEY_SECRET_ID", platform)?;
    Ok(Arc::new(Tokens::new(auth.tokens.clone(), key)))
}

/// Metrics: in a Lambda they are also written as CloudWatch EMF lines.
pub fn metrics(settings: &MetricsSettings) -> Arc<Metrics> {
    Arc::new(match &settings.emf_function {
        Some(function) => Metrics::new().with_emf(EMF_NAMESPACE, function.clone()),
        None => Metrics::new(),
    })
}

/// The ARI client, its password read from its setting on every request.
#[cfg(feature = "ari")]
pub fn ari_client(
    settings: &settings::PbxSettings,
    platform: &Platform,
) -> Result<dialer_ari::AriClient, BootError> {
    let password = secret_source(&settings.password, "ARI_PASSWORD_SECRET_ID", platform)?;
    dialer_ari::AriClient::with_password_source(settings.ari.clone(), password)
        .map_err(BootError::Ari)
}

/// The callback guard: resolves a `status_callback`'s host and refuses forbidden
/// addresses (unless `WEBHOOK_ALLOW_PRIVATE`).
#[cfg(feature = "webhooks")]
pub fn callback_guard(
    settings: &settings::WebhookSettings,
) -> Arc<dyn dialer_core::webhooks::CallbackGuard> {
    Arc::new(dialer_webhooks::Guard::new(webhook_adapter_settings(
        settings,
    )))
}

/// The webhook deliverer over `store`, sending through the signed, address-checked
/// sender.
#[cfg(feature = "webhooks")]
pub fn deliverer(
    store: Arc<dyn Store>,
    settings: &settings::WebhookSettings,
    metrics: Arc<Metrics>,
) -> Result<dialer_core::service::Deliverer, BootError> {
    let sender = dialer_webhooks::Sender::new(webhook_adapter_settings(settings))
        .map_err(BootError::Webhooks)?;
    Ok(dialer_core::service::Deliverer::new(
        store.clone(),
        store,
        Arc::new(sender),
        settings.max_age,
        metrics,
    ))
}

#[cfg(feature = "webhooks")]
fn webhook_adapter_settings(settings: &settings::WebhookSettings) -> dialer_webhooks::Settings {
    dialer_webhooks::Settings {
        allow_private: settings.allow_private,
        ..dialer_webhooks::Settings::default()
    }
}

/// bcrypt at the configured cost.
#[cfg(feature = "passwords")]
pub fn password_hasher(cost: u32) -> Arc<dyn dialer_core::auth::PasswordHasher> {
    Arc::new(dialer_passwords::Bcrypt::new(cost))
}

#[cfg(feature = "api")]
pub use api::*;

#[cfg(feature = "api")]
mod api {
    use std::sync::Arc;

    use dialer_core::auth::Tokens;
    use dialer_core::domain::CallPolicy;
    use dialer_core::health::BridgeHealth;
    use dialer_core::metrics::Metrics;
    use dialer_core::service::{Authenticator, CallQueries};
    use std::time::Duration;

    use dialer_core::store::{CallReads, Store, UserReads};
    use dialer_http::{Api, OpsState, StatusState};

    use super::settings::StatusFunction;
    use super::{BootError, Platform, metrics, tokens};

    /// What every route set is built from: one process's store, token signer and
    /// metrics. The local server and the tests add every set; each Lambda only its own.
    #[derive(Clone)]
    pub struct ApiParts {
        pub store: Arc<dyn Store>,
        pub tokens: Arc<Tokens>,
        pub metrics: Arc<Metrics>,
        pub metrics_enabled: bool,
        /// Present where the bridge runs in the same process (the local server).
        pub bridge: Option<Arc<BridgeHealth>>,
        /// How long a token check may trust what it last read about a user.
        pub user_cache: std::time::Duration,
        /// What a `status_callback` must pass before a call with it is accepted.
        pub guard: Arc<dyn dialer_core::webhooks::CallbackGuard>,
        /// The trunk's limits, counted in `store` (shared with the dispatcher where one
        /// runs in the same process).
        pub pacer: dialer_core::service::Pacer,
    }

    impl ApiParts {
        pub fn auth(&self) -> Authenticator {
            Authenticator::new(self.tokens.clone(), self.store.clone(), self.user_cache)
        }

        #[cfg(feature = "passwords")]
        pub fn token_state(
            &self,
            hasher: Arc<dyn dialer_core::auth::PasswordHasher>,
            throttle: dialer_core::domain::ThrottlePolicy,
        ) -> dialer_http::TokenState {
            token_state(
                self.store.clone(),
                self.store.clone(),
                hasher,
                throttle,
                self.tokens.clone(),
                self.metrics.clone(),
            )
        }

        pub fn originate_state(
            &self,
            pbx: Arc<dyn dialer_core::pbx::Pbx>,
            policy: CallPolicy,
        ) -> dialer_http::OriginateState {
            originate_state(
                self.store.clone(),
                self.store.clone(),
                OriginateParts {
                    tokens: self.tokens.clone(),
                    metrics: self.metrics.clone(),
                    user_cache: self.user_cache,
                    guard: self.guard.clone(),
                    pbx,
                    policy,
                },
                self.pacer.clone(),
            )
        }

        pub fn status_state(&self) -> StatusState {
            status_state(
                self.store.clone(),
                self.store.clone(),
                self.tokens.clone(),
                self.user_cache,
            )
        }

        pub fn ops_state(&self) -> OpsState {
            OpsState {
                metrics: self.metrics.clone(),
                metrics_enabled: self.metrics_enabled,
                bridge: self.bridge.clone(),
            }
        }

        pub fn api(&self) -> Api {
            Api::new(self.metrics.clone())
        }

        /// Every set named in `sets` (the local server: all of them). `hasher` and
        /// `throttle` serve the token set, `pbx` and `policy` the originate set.
        #[cfg(feature = "passwords")]
        pub fn router(
            &self,
            sets: &[dialer_http::Routes],
            hasher: Arc<dyn dialer_core::auth::PasswordHasher>,
            throttle: dialer_core::domain::ThrottlePolicy,
            pbx: Arc<dyn dialer_core::pbx::Pbx>,
            policy: CallPolicy,
        ) -> axum::Router {
            use dialer_http::Routes;
            let mut api = self.api();
            for set in sets {
                api = match set {
                    Routes::Token => api.token(self.token_state(hasher.clone(), throttle)),
                    Routes::Originate => {
                        api.originate(self.originate_state(pbx.clone(), policy.clone()))
                    }
                    Routes::Status => api.status(self.status_state()),
                    Routes::Ops => api.ops(self.ops_state()),
                };
            }
            api.build()
        }
    }

    /// The token function's routes. The store goes in as the two ports logging in
    /// reads and writes, not as a whole `dyn Store` (see [`StoreUse`](super::StoreUse)).
    #[cfg(feature = "passwords")]
    pub async fn token_api(
        settings: &super::settings::TokenFunction,
        platform: &Platform,
    ) -> Result<axum::Router, BootError> {
        struct TokenPart {
            tokens: Arc<Tokens>,
            metrics: Arc<Metrics>,
            hasher: Arc<dyn dialer_core::auth::PasswordHasher>,
            throttle: dialer_core::domain::ThrottlePolicy,
        }
        impl super::StoreUse for TokenPart {
            type Output = axum::Router;
            fn build<S: Store + 'static>(self, store: Arc<S>) -> axum::Router {
                let state = token_state(
                    store.clone(),
                    store,
                    self.hasher,
                    self.throttle,
                    self.tokens,
                    self.metrics.clone(),
                );
                Api::new(self.metrics).token(state).build()
            }
        }
        let part = TokenPart {
            tokens: tokens(&settings.auth, platform)?,
            metrics: metrics(&settings.metrics),
            hasher: super::password_hasher(settings.bcrypt_cost),
            throttle: settings.throttle,
        };
        super::with_store(&settings.store, platform, part).await
    }

    /// The originate function's routes. The store goes in as the ports placing and
    /// canceling calls use (see [`StoreUse`](super::StoreUse)).
    #[cfg(feature = "ari")]
    pub async fn originate_api(
        settings: &super::settings::OriginateFunction,
        platform: &Platform,
    ) -> Result<axum::Router, BootError> {
        struct OriginatePart {
            parts: OriginateParts,
            limits: dialer_core::domain::TrunkLimits,
            queue: dialer_core::domain::pacing::QueueLimits,
        }
        impl super::StoreUse for OriginatePart {
            type Output = axum::Router;
            fn build<S: Store + 'static>(self, store: Arc<S>) -> axum::Router {
                let pacer = dialer_core::service::Pacer::new(store.clone(), self.limits)
                    .with_queue_limits(self.queue);
                let metrics = self.parts.metrics.clone();
                let state = originate_state(store.clone(), store, self.parts, pacer);
                Api::new(metrics).originate(state).build()
            }
        }
        let part = OriginatePart {
            parts: OriginateParts {
                tokens: tokens(&settings.auth, platform)?,
                metrics: metrics(&settings.metrics),
                user_cache: settings.auth.user_cache,
                guard: super::callback_guard(&settings.webhooks),
                pbx: Arc::new(super::ari_client(&settings.pbx, platform)?),
                policy: settings.policy.clone(),
            },
            limits: settings.limits,
            queue: settings.queue,
        };
        super::with_store(&settings.store, platform, part).await
    }

    /// The status function's routes, with `/health`, `/docs` and `/openapi.json`. The
    /// store goes in as the two reading ports only, so this binary links none of a
    /// store's writes (see [`StoreUse`](super::StoreUse)).
    pub async fn status_api(
        settings: &StatusFunction,
        platform: &Platform,
    ) -> Result<axum::Router, BootError> {
        struct StatusPart {
            tokens: Arc<Tokens>,
            metrics: Arc<Metrics>,
            metrics_enabled: bool,
            user_cache: Duration,
        }
        impl super::StoreUse for StatusPart {
            type Output = axum::Router;
            fn build<S: Store + 'static>(self, store: Arc<S>) -> axum::Router {
                let state = status_state(store.clone(), store, self.tokens, self.user_cache);
                let ops = OpsState {
                    metrics: self.metrics.clone(),
                    metrics_enabled: self.metrics_enabled,
                    bridge: None,
                };
                Api::new(self.metrics).status(state).ops(ops).build()
            }
        }
        let part = StatusPart {
            tokens: tokens(&settings.auth, platform)?,
            metrics: metrics(&settings.metrics),
            metrics_enabled: settings.metrics.enabled,
            user_cache: settings.auth.user_cache,
        };
        super::with_store(&settings.store, platform, part).await
    }

    /// What the originate routes are built from, beside the store and the pacer.
    struct OriginateParts {
        tokens: Arc<Tokens>,
        metrics: Arc<Metrics>,
        user_cache: Duration,
        guard: Arc<dyn dialer_core::webhooks::CallbackGuard>,
        pbx: Arc<dyn dialer_core::pbx::Pbx>,
        policy: CallPolicy,
    }

    fn originate_state(
        calls: Arc<dyn dialer_core::store::CallStore>,
        users: Arc<dyn dialer_core::store::UserStore>,
        parts: OriginateParts,
        pacer: dialer_core::service::Pacer,
    ) -> dialer_http::OriginateState {
        dialer_http::OriginateState {
            calls: dialer_core::service::CallService::new(
                calls,
                users.clone(),
                parts.guard,
                parts.pbx,
                parts.policy,
                parts.metrics,
                pacer,
            ),
            auth: Authenticator::new(parts.tokens, users, parts.user_cache),
        }
    }

    fn status_state(
        calls: Arc<dyn CallReads>,
        users: Arc<dyn UserReads>,
        tokens: Arc<Tokens>,
        user_cache: Duration,
    ) -> StatusState {
        StatusState {
            calls: CallQueries::new(calls),
            auth: Authenticator::new(tokens, users, user_cache),
        }
    }

    #[cfg(feature = "passwords")]
    fn token_state(
        users: Arc<dyn UserReads>,
        throttle_store: Arc<dyn dialer_core::store::ThrottleStore>,
        hasher: Arc<dyn dialer_core::auth::PasswordHasher>,
        throttle: dialer_core::domain::ThrottlePolicy,
        tokens: Arc<Tokens>,
        metrics: Arc<Metrics>,
    ) -> dialer_http::TokenState {
        dialer_http::TokenState {
            login: dialer_core::service::LoginService::new(
                users,
                throttle_store,
                throttle,
                hasher,
                tokens,
                metrics,
            ),
        }
    }
}

#[cfg(feature = "bridge")]
pub use bridge::*;

#[cfg(feature = "bridge")]
mod bridge {
    use std::sync::Arc;

    use dialer_bridge::{CallEvents, EventSource, EventSourceTiming};
    use dialer_core::health::BridgeHealth;
    use dialer_core::metrics::Metrics;
    use dialer_core::store::CallBacklog;

    use super::BootError;

    /// The event bridge for `store`, on the ARI client `ari`.
    pub fn event_source(
        store: Arc<dyn CallBacklog>,
        ari: dialer_ari::AriClient,
        metrics: Arc<Metrics>,
        timing: EventSourceTiming,
    ) -> EventSource {
        let pbx = Arc::new(ari.clone());
        EventSource {
            ari,
            events: CallEvents::new(store, pbx, metrics.clone()),
            health: Arc::new(BridgeHealth::default()),
            metrics,
            timing,
        }
    }

    /// The dispatcher of queued calls: it dials through `pbx` while the bridge that
    /// `health` reports on is connected (so that no call is placed that no bridge
    /// follows), within the limits `pacer` counts.
    pub fn dispatcher(
        store: Arc<dyn dialer_core::store::Store>,
        pbx: Arc<dyn dialer_core::pbx::Pbx>,
        pacer: dialer_core::service::Pacer,
        health: Arc<BridgeHealth>,
        timing: dialer_core::service::DispatchTiming,
        metrics: Arc<Metrics>,
    ) -> dialer_core::service::Dispatcher {
        let dialer = dialer_core::service::calls::Dialer::new(store.clone(), pbx, pacer);
        dialer_core::service::Dispatcher::new(
            store.clone(),
            store,
            dialer,
            Arc::new(move || health.connected()),
            timing,
            metrics,
        )
    }

    /// The always-on bridge: its event source and its health port's router.
    pub struct BridgeProcess {
        pub source: EventSource,
        pub port: axum::Router,
        pub metrics: Arc<Metrics>,
        /// Drains the webhook outbox (see [`dialer_core::service::Deliverer::drain`]).
        pub deliverer: dialer_core::service::Deliverer,
        /// Dials queued calls (see [`dialer_core::service::Dispatcher::run`]).
        pub dispatcher: dialer_core::service::Dispatcher,
    }

    pub async fn bridge(
        settings: &super::settings::BridgeSettings,
        platform: &super::Platform,
    ) -> Result<BridgeProcess, BootError> {
        let store = super::open_store(&settings.store, platform).await?;
        let ari = super::ari_client(&settings.pbx, platform)?;
        // CloudWatch gets the bridge's state as EMF log lines (the "disconnected" alarm
        // reads them); Prometheus scrapes /metrics where there is one.
        let metrics = super::metrics(&super::settings::MetricsSettings {
            enabled: true,
            emf_function: Some("bridge".into()),
        });
        let timing = EventSourceTiming {
            unconfirmed_grace: settings.unconfirmed_grace,
            ..EventSourceTiming::default()
        };
        let deliverer = super::deliverer(store.clone(), &settings.webhooks, metrics.clone())?;
        let pacer = dialer_core::service::Pacer::new(store.clone(), settings.limits);
        let mut source = event_source(store.clone(), ari.clone(), metrics.clone(), timing);
        source.events = source.events.with_pacer(pacer.clone());
        let port = dialer_bridge::port::router(source.health.clone(), metrics.clone());
        let dispatcher = dispatcher(
            store,
            Arc::new(ari),
            pacer,
            source.health.clone(),
            settings.dispatch.clone(),
            metrics.clone(),
        );
        Ok(BridgeProcess {
            source,
            port,
            metrics,
            deliverer,
            dispatcher,
        })
    }
}

/// `dialer-users`: the user store and the hasher.
#[cfg(feature = "passwords")]
pub async fn user_admin(
    settings: &settings::UsersSettings,
    platform: &Platform,
) -> Result<(Arc<dyn Store>, Arc<dyn dialer_core::auth::PasswordHasher>), BootError> {
    let store = open_store(&settings.store, platform).await?;
    Ok((store, password_hasher(settings.bcrypt_cost)))
}
