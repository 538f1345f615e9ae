//! Settings per part of the product, each read from the environment here and nowhere
//! else, under the original spec's names. A part reads only what it uses (the bridge
//! takes no JWT key, `dialer-users` no ARI). A bad value stops the program at start with
//! a message that names the variable; value ranges are the domain's own rules.

use std::time::Duration;

use dialer_core::auth::TokenSettings;
use dialer_core::domain::pacing::QueueLimits;
use dialer_core::domain::validation::{
    self, CallerId, Extension, RingTimeout, ValidationError, endpoint_template,
};
use dialer_core::domain::{CallPolicy, ThrottlePolicy, TrunkLimits};
use dialer_core::secrets::Secret;
use dialer_core::service::DispatchTiming;

/// Reads variables by name; the process environment in production, a list in tests.
pub trait Env {
    fn get(&self, name: &str) -> Option<String>;
}

/// The process environment; empty values count as unset.
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn get(&self, name: &str) -> Option<String> {
        std::env::var(name).ok().filter(|v| !v.trim().is_empty())
    }
}

/// Variables from a list; for tests and tools that build settings by hand.
pub struct Vars<'a>(pub &'a [(&'a str, &'a str)]);

impl Env for Vars<'_> {
    fn get(&self, name: &str) -> Option<String> {
        self.0
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| (*v).to_owned())
    }
}

#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
#[error("configuration: {var}: {problem}")]
pub struct ConfigError {
    pub var: &'static str,
    pub problem: String,
}

/// Where calls and users live.
#[derive(Clone, Debug)]
pub enum StoreSettings {
    /// In process (`DISABLE_DB=true`, and the local server's default).
    Memory,
    /// DynamoDB tables (`CALLS_TABLE`, `USERS_TABLE`, `CALL_RETENTION_DAYS`).
    Dynamo {
        calls_table: String,
        users_table: String,
        call_retention_days: i64,
    },
    /// PostgreSQL at `DATABASE_URL`, with `DATABASE_POOL_SIZE` connections (default 2 in
    /// a Lambda, 10 elsewhere).
    Postgres { url: Secret, pool_size: Option<u32> },
}

/// The store a part uses when neither `DISABLE_DB` nor `DATABASE_URL` says otherwise.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreDefault {
    Dynamo,
    Memory,
}

/// A secret given by value, or by id in AWS Secrets Manager (read again after `ttl`).
#[derive(Clone, Debug)]
pub enum SecretSetting {
    Value(Secret),
    SecretId { id: String, ttl: Duration },
}

/// Signing and checking access tokens.
#[derive(Clone, Debug)]
pub struct AuthSettings {
    /// `SECRET_KEY` (at least 16 characters) or `SECRET_KEY_SECRET_ID`.
    pub key: SecretSetting,
    pub tokens: TokenSettings,
    /// `AUTH_USER_CACHE_MS`: how long a container may trust what it last read about a
    /// user when checking a token (0 to 60,000 ms, default 1,000). A disabled user or a
    /// revoked token stops working at most this long after the change.
    pub user_cache: Duration,
}

/// Where Asterisk's ARI is, and how to log in.
#[cfg(feature = "ari")]
#[derive(Clone, Debug)]
pub struct PbxSettings {
    pub ari: dialer_ari::AriSettings,
    /// `ARI_PASSWORD_SECRET_ID`: the password from Secrets Manager instead of
    /// `ARI_PASSWORD`.
    pub password: SecretSetting,
}

/// Metrics: Prometheus text on `/metrics` when `METRICS_ENABLED=true`; in a Lambda also
/// CloudWatch EMF lines tagged with the function's name.
#[derive(Clone, Debug, Default)]
pub struct MetricsSettings {
    pub enabled: bool,
    /// `AWS_LAMBDA_FUNCTION_NAME`, set by Lambda itself.
    pub emf_function: Option<String>,
}

/// The token function: the user store, the signing key, bcrypt.
#[derive(Clone, Debug)]
pub struct TokenFunction {
    pub store: StoreSettings,
    pub auth: AuthSettings,
    pub bcrypt_cost: u32,
    pub throttle: ThrottlePolicy,
    pub metrics: MetricsSettings,
}

/// The originate function: the call store, the signing key, ARI and the call policy.
#[cfg(feature = "ari")]
#[derive(Clone, Debug)]
pub struct OriginateFunction {
    pub store: StoreSettings,
    pub auth: AuthSettings,
    pub pbx: PbxSettings,
    pub policy: CallPolicy,
    pub webhooks: WebhookSettings,
    pub metrics: MetricsSettings,
    /// `MAX_CALLS_PER_SECOND`, `MAX_CONCURRENT_CALLS`: a call over them is queued.
    pub limits: TrunkLimits,
    /// `DEFAULT_MAX_QUEUED_CALLS`, `MAX_QUEUED_CALLS`: past them a new call gets 429.
    pub queue: QueueLimits,
}

/// The status function: the call store and the signing key.
#[derive(Clone, Debug)]
pub struct StatusFunction {
    pub store: StoreSettings,
    pub auth: AuthSettings,
    pub metrics: MetricsSettings,
}

/// The always-on bridge: the call store, ARI, and its health port (`BRIDGE_PORT`).
#[cfg(feature = "ari")]
#[derive(Clone, Debug)]
pub struct BridgeSettings {
    pub store: StoreSettings,
    pub pbx: PbxSettings,
    pub port: u16,
    /// `BRIDGE_UNCONFIRMED_GRACE_MS`: how long an unconfirmed originate may show no sign
    /// of its channel before the bridge asks the PBX whether it exists.
    pub unconfirmed_grace: Duration,
    /// The bridge drains the webhook outbox (PostgreSQL, in-process; on DynamoDB the
    /// `notify` function delivers instead).
    pub webhooks: WebhookSettings,
    /// `MAX_CALLS_PER_SECOND`, `MAX_CONCURRENT_CALLS`: what the dispatcher dials to.
    pub limits: TrunkLimits,
    /// `DISPATCH_POLL_MS`: how often the dispatcher reads the queue.
    pub dispatch: DispatchTiming,
}

/// The notify function: the calls and users tables, webhook delivery, and the queue
/// that brings a call back when its next attempt is due.
#[derive(Clone, Debug)]
pub struct NotifyFunction {
    pub store: StoreSettings,
    pub webhooks: WebhookSettings,
    /// `WEBHOOK_RETRY_QUEUE_URL`: the SQS queue of calls to try again. Required: without
    /// it a failed attempt would never be retried.
    pub retry_queue_url: String,
    pub metrics: MetricsSettings,
}

/// `dialer-users`: the user store and bcrypt.
#[derive(Clone, Debug)]
pub struct UsersSettings {
    pub store: StoreSettings,
    pub bcrypt_cost: u32,
}

impl TokenFunction {
    pub fn from_env(env: &dyn Env) -> Result<Self, ConfigError> {
        Ok(Self {
            store: StoreSettings::from_env(env, StoreDefault::Dynamo)?,
            auth: AuthSettings::from_env(env, None)?,
            bcrypt_cost: bcrypt_cost(env)?,
            throttle: throttle_policy(env)?,
            metrics: MetricsSettings::from_env(env)?,
        })
    }
}

#[cfg(feature = "ari")]
impl OriginateFunction {
    pub fn from_env(env: &dyn Env) -> Result<Self, ConfigError> {
        Ok(Self {
            store: StoreSettings::from_env(env, StoreDefault::Dynamo)?,
            auth: AuthSettings::from_env(env, None)?,
            pbx: PbxSettings::from_env(env)?,
            policy: call_policy(env)?,
            webhooks: WebhookSettings::from_env(env)?,
            metrics: MetricsSettings::from_env(env)?,
            limits: trunk_limits(env)?,
            queue: queue_limits(env)?,
        })
    }
}

impl StatusFunction {
    pub fn from_env(env: &dyn Env) -> Result<Self, ConfigError> {
        Ok(Self {
            store: StoreSettings::from_env(env, StoreDefault::Dynamo)?,
            auth: AuthSettings::from_env(env, None)?,
            metrics: MetricsSettings::from_env(env)?,
        })
    }
}

#[cfg(feature = "ari")]
impl BridgeSettings {
    pub fn from_env(env: &dyn Env) -> Result<Self, ConfigError> {
        Ok(Self {
            store: StoreSettings::from_env(env, StoreDefault::Dynamo)?,
            pbx: PbxSettings::from_env(env)?,
            port: parse(env, "BRIDGE_PORT", 8080, PORT_RULE)?,
            unconfirmed_grace: unconfirmed_grace(env)?,
            webhooks: WebhookSettings::from_env(env)?,
            limits: trunk_limits(env)?,
            dispatch: dispatch_timing(env)?,
        })
    }
}

impl NotifyFunction {
    pub fn from_env(env: &dyn Env) -> Result<Self, ConfigError> {
        let retry_queue_url = env.get("WEBHOOK_RETRY_QUEUE_URL").ok_or_else(|| {
            problem(
                "WEBHOOK_RETRY_QUEUE_URL",
                "is required: the queue failed webhook attempts are retried from",
            )
        })?;
        if !(retry_queue_url.starts_with("https://") || retry_queue_url.starts_with("http://")) {
            return Err(problem(
                "WEBHOOK_RETRY_QUEUE_URL",
                "must be the queue's URL (https://sqs.…)",
            ));
        }
        Ok(Self {
            store: StoreSettings::from_env(env, StoreDefault::Dynamo)?,
            webhooks: WebhookSettings::from_env(env)?,
            retry_queue_url,
            metrics: MetricsSettings::from_env(env)?,
        })
    }
}

impl UsersSettings {
    pub fn from_env(env: &dyn Env) -> Result<Self, ConfigError> {
        Ok(Self {
            store: StoreSettings::from_env(env, StoreDefault::Dynamo)?,
            bcrypt_cost: bcrypt_cost(env)?,
        })
    }
}

impl StoreSettings {
    /// `DISABLE_DB=true` keeps everything in process; `DATABASE_URL` selects PostgreSQL;
    /// otherwise the part's default.
    pub fn from_env(env: &dyn Env, default: StoreDefault) -> Result<Self, ConfigError> {
        if flag(env, "DISABLE_DB", false)? {
            return Ok(StoreSettings::Memory);
        }
        if let Some(url) = env.get("DATABASE_URL") {
            if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
                return Err(problem(
                    "DATABASE_URL",
                    "must be a postgres:// or postgresql:// URL",
                ));
            }
            let pool_size = match env.get("DATABASE_POOL_SIZE") {
                Some(_) => {
                    Some(u32::try_from(int(env, "DATABASE_POOL_SIZE", 10, 1, 100)?).unwrap_or(10))
                }
                None => None,
            };
            return Ok(StoreSettings::Postgres {
                url: Secret::new(url),
                pool_size,
            });
        }
        Ok(match default {
            StoreDefault::Memory => StoreSettings::Memory,
            StoreDefault::Dynamo => StoreSettings::Dynamo {
                calls_table: text(env, "CALLS_TABLE", "dialer-calls"),
                users_table: text(env, "USERS_TABLE", "dialer-users"),
                call_retention_days: int(env, "CALL_RETENTION_DAYS", 90, 1, 3650)?,
            },
        })
    }
}

impl AuthSettings {
    /// `SECRET_KEY` may be absent only when `fallback` is given (the local server makes
    /// one up for the session).
    pub fn from_env(env: &dyn Env, fallback: Option<Secret>) -> Result<Self, ConfigError> {
        let key = match (
            env.get("SECRET_KEY"),
            env.get("SECRET_KEY_SECRET_ID"),
            fallback,
        ) {
            (Some(key), _, _) if key.len() >= 16 => SecretSetting::Value(Secret::new(key)),
            (Some(_), _, _) => return Err(problem("SECRET_KEY", "must be at least 16 characters")),
            (None, Some(id), _) => SecretSetting::SecretId {
                id,
                ttl: secrets_ttl(env)?,
            },
            (None, None, Some(fallback)) => SecretSetting::Value(fallback),
            (None, None, None) => {
                return Err(problem(
                    "SECRET_KEY",
                    "is required (or SECRET_KEY_SECRET_ID)",
                ));
            }
        };
        Ok(Self {
            key,
            tokens: TokenSettings {
                issuer: env.get("JWT_ISSUER"),
                audience: env.get("JWT_AUDIENCE"),
                ttl_seconds: int(env, "ACCESS_TOKEN_EXPIRE_MINUTES", 60, 1, 7 * 24 * 60)? * 60,
            },
            user_cache: Duration::from_millis(
                int(env, "AUTH_USER_CACHE_MS", 1_000, 0, 60_000)?.unsigned_abs(),
            ),
        })
    }
}

#[cfg(feature = "ari")]
impl PbxSettings {
    pub fn from_env(env: &dyn Env) -> Result<Self, ConfigError> {
        let url = text(env, "ARI_HTTP_URL", "http://127.0.0.1:8088");
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(problem(
                "ARI_HTTP_URL",
                "must start with http:// or https://",
            ));
        }
        let app = text(env, "ARI_APP", "dialer");
        if app.is_empty()
            || !app
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b))
        {
            return Err(problem("ARI_APP", "must be letters, digits, _ - ."));
        }
        let fixed = Secret::new(env.get("ARI_PASSWORD").unwrap_or_else(|| "asterisk".into()));
        let password = match env.get("ARI_PASSWORD_SECRET_ID") {
            Some(id) => SecretSetting::SecretId {
                id,
                ttl: secrets_ttl(env)?,
            },
            None => SecretSetting::Value(fixed.clone()),
        };
        Ok(Self {
            ari: dialer_ari::AriSettings {
                url,
                username: text(env, "ARI_USERNAME", "asterisk"),
                password: fixed,
                app,
                timeout: Duration::from_millis(
                    int(env, "ARI_TIMEOUT_MS", 10_000, 100, 120_000)?.unsigned_abs(),
                ),
            },
            password,
        })
    }
}

impl MetricsSettings {
    pub fn from_env(env: &dyn Env) -> Result<Self, ConfigError> {
        Ok(Self {
            enabled: flag(env, "METRICS_ENABLED", false)?,
            emf_function: env.get("AWS_LAMBDA_FUNCTION_NAME"),
        })
    }
}

/// The operator's rules and defaults for new calls, each checked by the rule the domain
/// applies to a client's value.
pub fn call_policy(env: &dyn Env) -> Result<CallPolicy, ConfigError> {
    let default_context = text(env, "DEFAULT_CONTEXT", "outbound-ivr");
    let allowed_contexts: Vec<String> = match env.get("ALLOWED_CONTEXTS") {
        Some(list) => list
            .split(',')
            .map(|c| c.trim().to_owned())
            .filter(|c| !c.is_empty())
            .collect(),
        None => vec![default_context.clone()],
    };
    if allowed_contexts.is_empty() {
        return Err(problem("ALLOWED_CONTEXTS", "lists no context"));
    }
    let dial_endpoint = text(env, "DIAL_ENDPOINT", "PJSIP/{number}@trunk");
    endpoint_template(&dial_endpoint).map_err(|e| invalid("DIAL_ENDPOINT", &e))?;
    let default_extension = text(env, "DEFAULT_EXTENSION", "s");
    Extension::parse(&default_extension).map_err(|e| invalid("DEFAULT_EXTENSION", &e))?;
    let default_caller_id = env.get("DEFAULT_CALLER_ID");
    if let Some(caller_id) = &default_caller_id {
        CallerId::parse(caller_id).map_err(|e| invalid("DEFAULT_CALLER_ID", &e))?;
    }
    let default_priority = ruled(env, "DEFAULT_PRIORITY", 1, validation::priority)?;
    let default_timeout_ms = ruled(env, "DEFAULT_TIMEOUT", 30_000, RingTimeout::from_millis)?;
    let max_duration_ms = match env.get("MAX_CALL_DURATION") {
        Some(_) => Some(ruled(
            env,
            "MAX_CALL_DURATION",
            0,
            validation::max_duration,
        )?),
        None => None,
    };
    Ok(CallPolicy {
        default_context,
        default_extension,
        default_priority,
        default_timeout_ms: i64::try_from(default_timeout_ms.millis()).unwrap_or(30_000),
        default_caller_id,
        allowed_contexts,
        dial_endpoint,
        max_duration_ms,
        webhook_allow_insecure: flag(env, "WEBHOOK_ALLOW_INSECURE", false)?,
    })
}

/// What each deployed binary must be given in AWS: the variables whose defaults only
/// suit a laptop (table names, secret ids, where Asterisk is). The binaries refuse to
/// start without them when they run in AWS, and the infrastructure template is checked
/// against this list.
pub const DEPLOYED_ENV: &[(&str, &[&str])] = &[
    ("token", &["SECRET_KEY_SECRET_ID", "USERS_TABLE"]),
    (
        "originate",
        &[
            "SECRET_KEY_SECRET_ID",
            "CALLS_TABLE",
            "ARI_HTTP_URL",
            "ARI_USERNAME",
            "ARI_PASSWORD_SECRET_ID",
            "ARI_APP",
            "DIAL_ENDPOINT",
            "DEFAULT_CONTEXT",
            "ALLOWED_CONTEXTS",
            "USERS_TABLE",
        ],
    ),
    // originate and status check the user of every request: both read the users table.
    (
        "status",
        &["SECRET_KEY_SECRET_ID", "CALLS_TABLE", "USERS_TABLE"],
    ),
    (
        "notify",
        &["CALLS_TABLE", "USERS_TABLE", "WEBHOOK_RETRY_QUEUE_URL"],
    ),
    (
        "bridge",
        &[
            "CALLS_TABLE",
            "ARI_HTTP_URL",
            "ARI_USERNAME",
            "ARI_PASSWORD_SECRET_ID",
            "ARI_APP",
        ],
    ),
];

/// Checks that `binary` was given everything [`DEPLOYED_ENV`] lists for it.
pub fn check_deployed(binary: &str, env: &dyn Env) -> Result<(), ConfigError> {
    let required = DEPLOYED_ENV
        .iter()
        .find(|(name, _)| *name == binary)
        .map_or(&[][..], |(_, vars)| *vars);
    let given = |var: &str| {
        env.get(var).is_some()
            || GIVEN_BY_VALUE
                .iter()
                .any(|(id, value)| *id == var && env.get(value).is_some())
    };
    match required.iter().find(|var| !given(var)) {
        Some(var) => Err(ConfigError {
            var,
            problem: format!("is required when {binary} runs in AWS"),
        }),
        None => Ok(()),
    }
}

/// Whether this process runs in AWS Lambda itself (not in an emulator such as
/// `cargo lambda watch`, where the defaults serve).
pub fn in_aws_lambda(env: &dyn Env) -> bool {
    env.get("AWS_EXECUTION_ENV")
        .is_some_and(|e| e.starts_with("AWS_Lambda"))
}

/// Parses `var` with `FromStr`, or gives `default` when it is unset.
/// What a port variable takes.
pub const PORT_RULE: &str = "a port number from 0 to 65535 (0: any free port)";

/// `var` read as a `T`, `default` when unset; `rule` says what it takes when it cannot be
/// read (e.g. "a port number from 1 to 65535").
pub fn parse<T: std::str::FromStr>(
    env: &dyn Env,
    var: &'static str,
    default: T,
    rule: &str,
) -> Result<T, ConfigError> {
    match env.get(var) {
        None => Ok(default),
        Some(raw) => raw
            .trim()
            .parse()
            .map_err(|_| problem(var, format!("must be {rule}, got {raw:?}"))),
    }
}

pub fn text(env: &dyn Env, name: &str, default: &str) -> String {
    env.get(name).unwrap_or_else(|| default.to_owned())
}

pub fn flag(env: &dyn Env, name: &'static str, default: bool) -> Result<bool, ConfigError> {
    match env.get(name).map(|v| v.trim().to_ascii_lowercase()) {
        None => Ok(default),
        Some(v) if ["true", "1", "yes", "on"].contains(&v.as_str()) => Ok(true),
        Some(v) if ["false", "0", "no", "off"].contains(&v.as_str()) => Ok(false),
        Some(v) => Err(problem(name, format!("must be true or false, got {v:?}"))),
    }
}

/// A secret given by value satisfies the requirement for its secret id.
const GIVEN_BY_VALUE: &[(&str, &str)] = &[
    ("SECRET_KEY_SECRET_ID", "SECRET_KEY"),
    ("ARI_PASSWORD_SECRET_ID", "ARI_PASSWORD"),
];

/// Webhook delivery: `WEBHOOK_ALLOW_PRIVATE` (callbacks may reach loopback and private
/// addresses: local development and tests only) and `WEBHOOK_MAX_AGE_SECONDS` (how
/// long after an event it is retried before it is dead; 60 s to 7 days, default a day).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WebhookSettings {
    pub allow_private: bool,
    pub max_age: chrono::Duration,
}

impl WebhookSettings {
    pub fn from_env(env: &dyn Env) -> Result<Self, ConfigError> {
        Ok(Self {
            allow_private: flag(env, "WEBHOOK_ALLOW_PRIVATE", false)?,
            max_age: chrono::Duration::seconds(int(
                env,
                "WEBHOOK_MAX_AGE_SECONDS",
                86_400,
                60,
                7 * 86_400,
            )?),
        })
    }
}

/// The login throttle's budgets: `LOGIN_MAX_FAILURES_PER_USER` (default 5, for one
/// username from one address) and `LOGIN_MAX_FAILURES_PER_ADDRESS` (default 20)
/// failures are free within `LOGIN_FAILURE_WINDOW_SECONDS` (default 900) of the last
/// one; past them each failure doubles the wait, from 1 s up to
/// `LOGIN_MAX_BACKOFF_SECONDS` (default 900). Past
/// `LOGIN_MAX_FAILURES_PER_USER_ALL_ADDRESSES` (default 100) failures for a username,
/// only addresses without failures for it are checked.
pub fn throttle_policy(env: &dyn Env) -> Result<ThrottlePolicy, ConfigError> {
    let defaults = ThrottlePolicy::default();
    let count = |name, default: u32| -> Result<u32, ConfigError> {
        let value = int(env, name, default.into(), 1, 10_000)?;
        Ok(u32::try_from(value).unwrap_or(default))
    };
    let seconds = |name, default: chrono::Duration| -> Result<chrono::Duration, ConfigError> {
        Ok(chrono::Duration::seconds(int(
            env,
            name,
            default.num_seconds(),
            1,
            86_400,
        )?))
    };
    Ok(ThrottlePolicy {
        user_failures: count("LOGIN_MAX_FAILURES_PER_USER", defaults.user_failures)?,
        address_failures: count("LOGIN_MAX_FAILURES_PER_ADDRESS", defaults.address_failures)?,
        user_ceiling: count(
            "LOGIN_MAX_FAILURES_PER_USER_ALL_ADDRESSES",
            defaults.user_ceiling,
        )?,
        window: seconds("LOGIN_FAILURE_WINDOW_SECONDS", defaults.window)?,
        max_backoff: seconds("LOGIN_MAX_BACKOFF_SECONDS", defaults.max_backoff)?,
    })
}

pub fn bcrypt_cost(env: &dyn Env) -> Result<u32, ConfigError> {
    Ok(u32::try_from(int(env, "BCRYPT_COST", 12, 4, 16)?).unwrap_or(12))
}

/// `MAX_CALLS_PER_SECOND` and `MAX_CONCURRENT_CALLS`, all users together; unset (or
/// empty, as a template leaves an unset parameter) is unlimited.
pub fn trunk_limits(env: &dyn Env) -> Result<TrunkLimits, ConfigError> {
    use dialer_core::domain::pacing::{CALLS_PER_SECOND_RANGE, CONCURRENT_CALLS_RANGE};
    Ok(TrunkLimits {
        calls_per_second: limit(env, "MAX_CALLS_PER_SECOND", CALLS_PER_SECOND_RANGE, None)?,
        concurrent_calls: limit(env, "MAX_CONCURRENT_CALLS", CONCURRENT_CALLS_RANGE, None)?,
    })
}

/// `DEFAULT_MAX_QUEUED_CALLS` (each user without a `max_queued_calls` of their own;
/// default 1,000) and `MAX_QUEUED_CALLS` (all users together; default 50,000), each 1
/// to 100,000. Unset or empty is the default: a queue is never unbounded, since every
/// call waiting in it is held in the store.
pub fn queue_limits(env: &dyn Env) -> Result<QueueLimits, ConfigError> {
    use dialer_core::domain::pacing::QUEUED_CALLS_RANGE;
    let default = QueueLimits::DEFAULT;
    Ok(QueueLimits {
        per_user: limit(
            env,
            "DEFAULT_MAX_QUEUED_CALLS",
            QUEUED_CALLS_RANGE,
            default.per_user,
        )?,
        total: limit(env, "MAX_QUEUED_CALLS", QUEUED_CALLS_RANGE, default.total)?,
    })
}

/// A limit in `range`; unset or empty (as a template leaves an unset parameter) is
/// `unset` (`None`: unlimited).
fn limit(
    env: &dyn Env,
    name: &'static str,
    range: std::ops::RangeInclusive<u32>,
    unset: Option<u32>,
) -> Result<Option<u32>, ConfigError> {
    let Some(raw) = env
        .get(name)
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
    else {
        return Ok(unset);
    };
    raw.parse::<u32>()
        .ok()
        .filter(|v| range.contains(v))
        .map(Some)
        .ok_or_else(|| {
            let when_unset = unset.map_or_else(|| "unlimited".to_owned(), |v| v.to_string());
            problem(
                name,
                format!(
                    "must be an integer from {} to {} (or unset: {when_unset}), got {raw:?}",
                    range.start(),
                    range.end()
                ),
            )
        })
}

/// `DISPATCH_POLL_MS`, 10 ms to 10 s (default 100 ms): how often a dispatcher reads
/// the queue when nothing in its own process signals work. A claimed call its
/// dispatcher lost is settled after the ARI timeout plus the unconfirmed grace.
pub fn dispatch_timing(env: &dyn Env) -> Result<DispatchTiming, ConfigError> {
    let poll = int(env, "DISPATCH_POLL_MS", 100, 10, 10_000)?;
    let ari_timeout = int(env, "ARI_TIMEOUT_MS", 10_000, 100, 120_000)?;
    Ok(DispatchTiming {
        poll: Duration::from_millis(poll.unsigned_abs()),
        claim_timeout: Duration::from_millis(ari_timeout.unsigned_abs()) + unconfirmed_grace(env)?,
        ..DispatchTiming::default()
    })
}

/// `BRIDGE_UNCONFIRMED_GRACE_MS`, 1 s to 10 min (default 30 s).
pub fn unconfirmed_grace(env: &dyn Env) -> Result<Duration, ConfigError> {
    let ms = int(env, "BRIDGE_UNCONFIRMED_GRACE_MS", 30_000, 1_000, 600_000)?;
    Ok(Duration::from_millis(ms.unsigned_abs()))
}

/// `SHUTDOWN_DRAIN_MS`, 0 to 10 s (default 1 s): once a process begins to stop, how
/// long each open connection of its HTTP servers may still deliver a request. At most
/// 10 s, so that with the bridge's queue flush the process still stops within the 30 s
/// ECS gives a task.
pub fn shutdown_drain(env: &dyn Env) -> Result<Duration, ConfigError> {
    let ms = int(env, "SHUTDOWN_DRAIN_MS", 1_000, 0, 10_000)?;
    Ok(Duration::from_millis(ms.unsigned_abs()))
}

fn secrets_ttl(env: &dyn Env) -> Result<Duration, ConfigError> {
    let seconds = int(env, "SECRETS_TTL_SECONDS", 300, 0, 86_400)?;
    Ok(Duration::from_secs(seconds.unsigned_abs()))
}

fn problem(var: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError {
        var,
        problem: problem.into(),
    }
}

fn invalid(var: &'static str, e: &ValidationError) -> ConfigError {
    problem(var, e.message.clone())
}

fn int(
    env: &dyn Env,
    name: &'static str,
    default: i64,
    min: i64,
    max: i64,
) -> Result<i64, ConfigError> {
    let Some(raw) = env.get(name) else {
        return Ok(default);
    };
    raw.trim()
        .parse::<i64>()
        .ok()
        .filter(|v| (min..=max).contains(v))
        .ok_or_else(|| {
            problem(
                name,
                format!("must be an integer from {min} to {max}, got {raw:?}"),
            )
        })
}

/// An integer checked by a domain rule, or the rule applied to `default` when unset.
fn ruled<T>(
    env: &dyn Env,
    name: &'static str,
    default: i64,
    rule: impl Fn(i64) -> Result<T, ValidationError>,
) -> Result<T, ConfigError> {
    let raw = env.get(name);
    let value = match raw.as_deref().map(str::trim) {
        None => default,
        Some(raw) => raw
            .parse::<i64>()
            .map_err(|_| problem(name, format!("must be an integer, got {raw:?}")))?,
    };
    rule(value).map_err(|e| invalid(name, &e))
}

#[cfg(all(test, feature = "ari"))]
mod tests {
    use super::*;

    const KEY: (&str, &str) = ("SECRET_KEY", "0123456789abcdef0123");

    #[test]
    fn defaults_follow_the_original_spec() {
        let settings = OriginateFunction::from_env(&Vars(&[KEY])).expect("loads");
        assert_eq!(settings.policy.default_context, "outbound-ivr");
        assert_eq!(settings.policy.allowed_contexts, vec!["outbound-ivr"]);
        assert_eq!(settings.policy.default_timeout_ms, 30_000);
        assert_eq!(settings.pbx.ari.app, "dialer");
        assert!(!settings.metrics.enabled);
    }

    #[test]
    fn bad_values_name_their_variable() {
        let cases: [(&[(&str, &str)], &str); 9] = [
            (&[], "SECRET_KEY"),
            (&[KEY, ("CALL_RETENTION_DAYS", "0")], "CALL_RETENTION_DAYS"),
            (&[KEY, ("DEFAULT_TIMEOUT", "soon")], "DEFAULT_TIMEOUT"),
            (&[KEY, ("DEFAULT_TIMEOUT", "999")], "DEFAULT_TIMEOUT"),
            (&[KEY, ("METRICS_ENABLED", "maybe")], "METRICS_ENABLED"),
            (&[KEY, ("DIAL_ENDPOINT", "PJSIP/trunk")], "DIAL_ENDPOINT"),
            (&[KEY, ("ARI_HTTP_URL", "asterisk:8088")], "ARI_HTTP_URL"),
            (&[KEY, ("DEFAULT_EXTENSION", "s&x")], "DEFAULT_EXTENSION"),
            (&[KEY, ("DATABASE_URL", "mysql://x")], "DATABASE_URL"),
        ];
        for (vars, var) in cases {
            let env = Vars(vars);
            let err = OriginateFunction::from_env(&env).expect_err(var);
            assert_eq!(err.var, var);
            assert!(err.to_string().contains(var));
        }
    }

    #[test]
    fn login_safety_settings_are_read_and_checked() {
        let env = Vars(&[
            KEY,
            ("LOGIN_MAX_FAILURES_PER_USER", "3"),
            ("LOGIN_MAX_FAILURES_PER_ADDRESS", "50"),
            ("LOGIN_MAX_FAILURES_PER_USER_ALL_ADDRESSES", "400"),
            ("LOGIN_FAILURE_WINDOW_SECONDS", "600"),
            ("LOGIN_MAX_BACKOFF_SECONDS", "60"),
            ("AUTH_USER_CACHE_MS", "0"),
        ]);
        let token = TokenFunction::from_env(&env).expect("loads");
        assert_eq!(token.throttle.user_failures, 3);
        assert_eq!(token.throttle.address_failures, 50);
        assert_eq!(token.throttle.user_ceiling, 400);
        assert_eq!(token.throttle.window, chrono::Duration::minutes(10));
        assert_eq!(token.throttle.max_backoff, chrono::Duration::minutes(1));
        assert!(token.auth.user_cache.is_zero());
        let defaults = TokenFunction::from_env(&Vars(&[KEY])).expect("loads");
        assert_eq!(defaults.throttle, ThrottlePolicy::default());
        assert_eq!(defaults.auth.user_cache, Duration::from_secs(1));
        for (var, value) in [
            ("LOGIN_MAX_FAILURES_PER_USER", "0"),
            ("LOGIN_MAX_FAILURES_PER_ADDRESS", "many"),
            ("LOGIN_MAX_FAILURES_PER_USER_ALL_ADDRESSES", "0"),
            ("LOGIN_FAILURE_WINDOW_SECONDS", "0"),
            ("LOGIN_MAX_BACKOFF_SECONDS", "100000"),
            ("AUTH_USER_CACHE_MS", "61000"),
        ] {
            let err = TokenFunction::from_env(&Vars(&[KEY, (var, value)])).expect_err(var);
            assert_eq!(err.var, var);
        }
    }

    #[test]
    fn queue_limits_default_to_bounded_and_refuse_what_is_out_of_range() {
        let empty = Vars(&[("MAX_QUEUED_CALLS", ""), ("DEFAULT_MAX_QUEUED_CALLS", " ")]);
        assert_eq!(queue_limits(&empty).expect("loads"), QueueLimits::DEFAULT);
        let set = Vars(&[
            ("MAX_QUEUED_CALLS", "200"),
            ("DEFAULT_MAX_QUEUED_CALLS", "20"),
        ]);
        assert_eq!(
            queue_limits(&set).expect("loads"),
            QueueLimits {
                per_user: Some(20),
                total: Some(200)
            }
        );
        for bad in ["0", "100001", "many", "-1"] {
            let e = queue_limits(&Vars(&[("MAX_QUEUED_CALLS", bad)])).expect_err(bad);
            assert!(e.to_string().contains("MAX_QUEUED_CALLS"), "{e}");
        }
    }

    #[test]
    fn trunk_limits_are_read_by_originate_and_the_bridge_and_empty_is_unlimited() {
        let env = Vars(&[
            KEY,
            ("MAX_CALLS_PER_SECOND", "5"),
            ("MAX_CONCURRENT_CALLS", "8"),
            ("DISPATCH_POLL_MS", "50"),
        ]);
        let originate = OriginateFunction::from_env(&env).expect("loads");
        assert_eq!(originate.limits.calls_per_second, Some(5));
        assert_eq!(originate.limits.concurrent_calls, Some(8));
        let bridge = BridgeSettings::from_env(&env).expect("loads");
        assert_eq!(bridge.limits, originate.limits);
        assert_eq!(bridge.dispatch.poll, Duration::from_millis(50));
        // A template leaves an unset parameter empty: unlimited, as unset is.
        let empty = Vars(&[
            KEY,
            ("MAX_CALLS_PER_SECOND", ""),
            ("MAX_CONCURRENT_CALLS", " "),
        ]);
        let limits = OriginateFunction::from_env(&empty).expect("loads").limits;
        assert!(!limits.any());
        for (var, value) in [
            ("MAX_CALLS_PER_SECOND", "0"),
            ("MAX_CALLS_PER_SECOND", "fast"),
            ("MAX_CONCURRENT_CALLS", "5001"),
            ("DISPATCH_POLL_MS", "1"),
        ] {
            let err = BridgeSettings::from_env(&Vars(&[(var, value)])).expect_err(var);
            assert_eq!(err.var, var);
        }
    }

    #[test]
    fn each_part_reads_only_what_it_uses() {
        // No SECRET_KEY: the bridge signs no tokens, dialer-users neither.
        assert!(BridgeSettings::from_env(&Vars(&[])).is_ok());
        assert!(UsersSettings::from_env(&Vars(&[])).is_ok());
        // No ARI: a broken ARI URL does not stop the token or status function.
        let vars = [KEY, ("ARI_HTTP_URL", "asterisk:8088")];
        assert!(TokenFunction::from_env(&Vars(&vars)).is_ok());
        assert!(StatusFunction::from_env(&Vars(&vars)).is_ok());
        assert!(BridgeSettings::from_env(&Vars(&vars[1..])).is_err());
    }

    #[test]
    fn notify_needs_its_retry_queue_and_no_signing_key() {
        let queue = (
            "WEBHOOK_RETRY_QUEUE_URL",
            "https://sqs.eu-west-1.amazonaws.com/1/retry",
        );
        let settings = NotifyFunction::from_env(&Vars(&[queue])).expect("loads");
        assert_eq!(settings.retry_queue_url, queue.1);
        assert_eq!(settings.webhooks.max_age, chrono::Duration::days(1));
        for vars in [&[][..], &[("WEBHOOK_RETRY_QUEUE_URL", "retry")][..]] {
            let err = NotifyFunction::from_env(&Vars(vars)).expect_err("no queue URL");
            assert_eq!(err.var, "WEBHOOK_RETRY_QUEUE_URL");
        }
        let short = [queue, ("WEBHOOK_MAX_AGE_SECONDS", "10")];
        let err = NotifyFunction::from_env(&Vars(&short)).expect_err("too short");
        assert_eq!(err.var, "WEBHOOK_MAX_AGE_SECONDS");
    }

    #[test]
    fn the_store_follows_disable_db_then_database_url_then_the_default() {
        let memory =
            StoreSettings::from_env(&Vars(&[("DISABLE_DB", "true")]), StoreDefault::Dynamo);
        assert!(matches!(memory, Ok(StoreSettings::Memory)));
        let pg = Vars(&[("DATABASE_URL", "postgres://u@h/db")]);
        let pg = StoreSettings::from_env(&pg, StoreDefault::Memory);
        assert!(matches!(pg, Ok(StoreSettings::Postgres { .. })));
        let local = StoreSettings::from_env(&Vars(&[]), StoreDefault::Memory);
        assert!(matches!(local, Ok(StoreSettings::Memory)));
        let deployed = StoreSettings::from_env(&Vars(&[]), StoreDefault::Dynamo);
        assert!(matches!(deployed, Ok(StoreSettings::Dynamo { .. })));
    }

    #[test]
    fn a_deployed_binary_needs_its_variables_and_a_secret_by_id_or_by_value() {
        assert_eq!(
            check_deployed("status", &Vars(&[])).map_err(|e| e.var),
            Err("SECRET_KEY_SECRET_ID")
        );
        let by_id = Vars(&[
            ("SECRET_KEY_SECRET_ID", "dialer/jwt"),
            ("CALLS_TABLE", "calls"),
            ("USERS_TABLE", "users"),
        ]);
        assert!(check_deployed("status", &by_id).is_ok());
        let by_value = Vars(&[KEY, ("CALLS_TABLE", "calls"), ("USERS_TABLE", "users")]);
        assert!(check_deployed("status", &by_value).is_ok());
        assert_eq!(
            check_deployed("status", &Vars(&[KEY])).map_err(|e| e.var),
            Err("CALLS_TABLE")
        );
        assert_eq!(
            check_deployed("status", &Vars(&[KEY, ("CALLS_TABLE", "calls")])).map_err(|e| e.var),
            Err("USERS_TABLE")
        );
    }

    #[test]
    fn allowed_contexts_is_a_comma_list() {
        let env = Vars(&[KEY, ("ALLOWED_CONTEXTS", "outbound-ivr, reminders")]);
        let settings = OriginateFunction::from_env(&env).expect("loads");
        assert_eq!(
            settings.policy.allowed_contexts,
            vec!["outbound-ivr", "reminders"]
        );
    }
}
