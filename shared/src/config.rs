//! Configuration from the environment, under the original spec's names. A bad value
//! stops the program at start with a message that names the variable.

use crate::ari::AriSettings;
use crate::auth::TokenSettings;
use crate::domain::CallPolicy;
use crate::secret::Secret;

#[derive(Clone, Debug)]
pub struct Config {
    pub ari: AriSettings,
    pub policy: CallPolicy,
    pub tokens: TokenSettings,
    /// The JWT signing key: a fixed value (`SECRET_KEY`) or a Secrets Manager id
    /// (`SECRET_KEY_SECRET_ID`).
    pub secret_key: SecretSetting,
    /// `ARI_PASSWORD_SECRET_ID`: when set, the ARI password comes from Secrets Manager.
    pub ari_password_secret_id: Option<String>,
    /// How long a value read from Secrets Manager is used before it is read again.
    pub secrets_ttl_seconds: u64,
    pub calls_table: String,
    pub users_table: String,
    pub call_retention_days: i64,
    pub metrics_enabled: bool,
    pub disable_db: bool,
    pub database_url: Option<Secret>,
    /// `DATABASE_POOL_SIZE`; by default 2 in a Lambda, 10 elsewhere.
    pub database_pool_size: Option<u32>,
    pub bcrypt_cost: u32,
}

/// A secret given by value or by reference to a secrets store.
#[derive(Clone, Debug)]
pub enum SecretSetting {
    Value(Secret),
    SecretId(String),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("configuration: {var}: {problem}")]
pub struct ConfigError {
    pub var: &'static str,
    pub problem: String,
}

/// Reads variables by name; the process environment in production, a map in tests.
pub trait Env {
    fn get(&self, name: &str) -> Option<String>;
}

pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn get(&self, name: &str) -> Option<String> {
        std::env::var(name).ok().filter(|v| !v.trim().is_empty())
    }
}

/// Variables from a list; for tests and tools that build a configuration by hand.
pub struct Vars<'a>(pub &'a [(&'a str, &'a str)]);

impl Env for Vars<'_> {
    fn get(&self, name: &str) -> Option<String> {
        self.0
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| (*v).to_owned())
    }
}

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::load(&ProcessEnv)
    }

    /// `SECRET_KEY` may be absent only when `fallback_secret` is given (the local
    /// server makes one up for the session).
    pub fn load(env: &dyn Env) -> Result<Self, ConfigError> {
        Self::load_with(env, None)
    }

    pub fn load_with(env: &dyn Env, fallback_secret: Option<Secret>) -> Result<Self, ConfigError> {
        let default_context = text(env, "DEFAULT_CONTEXT", "outbound-ivr");
        let allowed_contexts = match env.get("ALLOWED_CONTEXTS") {
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
        if !dial_endpoint.contains("{number}") || !dial_endpoint.contains('/') {
            return Err(problem(
                "DIAL_ENDPOINT",
                "must look like TECH/...{number}..., e.g. PJSIP/{number}@trunk",
            ));
        }
        let default_priority = int(env, "DEFAULT_PRIORITY", 1, 1, 999)?;
        let secret_key = match (
            env.get("SECRET_KEY"),
            env.get("SECRET_KEY_SECRET_ID"),
            fallback_secret,
        ) {
            (Some(key), _, _) if key.len() >= 16 => SecretSetting::Value(Secret::new(key)),
            (Some(_), _, _) => return Err(problem("SECRET_KEY", "must be at least 16 characters")),
            (None, Some(id), _) => SecretSetting::SecretId(id),
            (None, None, Some(fallback)) => SecretSetting::Value(fallback),
            (None, None, None) => {
                return Err(problem(
                    "SECRET_KEY",
                    "is required (or SECRET_KEY_SECRET_ID)",
                ));
            }
        };
        let ari_url = text(env, "ARI_HTTP_URL", "http://127.0.0.1:8088");
        if !(ari_url.starts_with("http://") || ari_url.starts_with("https://")) {
            return Err(problem(
                "ARI_HTTP_URL",
                "must start with http:// or https://",
            ));
        }
        let ari_app = text(env, "ARI_APP", "dialer");
        if ari_app.is_empty()
            || !ari_app
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b))
        {
            return Err(problem("ARI_APP", "must be letters, digits, _ - ."));
        }
        Ok(Self {
            ari: AriSettings {
                url: ari_url,
                username: text(env, "ARI_USERNAME", "asterisk"),
                password: Secret::new(env.get("ARI_PASSWORD").unwrap_or_else(|| "asterisk".into())),
                app: ari_app,
            },
            policy: CallPolicy {
                default_extension: text(env, "DEFAULT_EXTENSION", "s"),
                default_priority: u32::try_from(default_priority).unwrap_or(1),
                default_timeout_ms: int(env, "DEFAULT_TIMEOUT", 30_000, 1_000, 600_000)?,
                default_caller_id: env.get("DEFAULT_CALLER_ID"),
                allowed_contexts,
                dial_endpoint,
                default_context,
                max_duration_ms: match env.get("MAX_CALL_DURATION") {
                    Some(_) => {
                        Some(int(env, "MAX_CALL_DURATION", 0, 1_000, 86_400_000)?.unsigned_abs())
                    }
                    None => None,
                },
            },
            secret_key,
            ari_password_secret_id: env.get("ARI_PASSWORD_SECRET_ID"),
            secrets_ttl_seconds: u64::try_from(int(env, "SECRETS_TTL_SECONDS", 300, 0, 86_400)?)
                .unwrap_or(300),
            calls_table: text(env, "CALLS_TABLE", "dialer-calls"),
            users_table: text(env, "USERS_TABLE", "dialer-users"),
            call_retention_days: int(env, "CALL_RETENTION_DAYS", 90, 1, 3650)?,
            tokens: TokenSettings {
                issuer: env.get("JWT_ISSUER"),
                audience: env.get("JWT_AUDIENCE"),
                ttl_seconds: int(env, "ACCESS_TOKEN_EXPIRE_MINUTES", 60, 1, 7 * 24 * 60)? * 60,
            },
            metrics_enabled: flag(env, "METRICS_ENABLED", false)?,
            disable_db: flag(env, "DISABLE_DB", false)?,
            database_url: env.get("DATABASE_URL").map(Secret::new),
            database_pool_size: match env.get("DATABASE_POOL_SIZE") {
                Some(_) => {
                    Some(u32::try_from(int(env, "DATABASE_POOL_SIZE", 10, 1, 100)?).unwrap_or(10))
                }
                None => None,
            },
            bcrypt_cost: u32::try_from(int(env, "BCRYPT_COST", 12, 4, 16)?).unwrap_or(12),
        })
    }
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
        ],
    ),
    ("status", &["SECRET_KEY_SECRET_ID", "CALLS_TABLE"]),
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

/// A secret given by value satisfies the requirement for its secret id.
const GIVEN_BY_VALUE: &[(&str, &str)] = &[
    ("SECRET_KEY_SECRET_ID", "SECRET_KEY"),
    ("ARI_PASSWORD_SECRET_ID", "ARI_PASSWORD"),
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

fn problem(var: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError {
        var,
        problem: problem.into(),
    }
}

fn text(env: &dyn Env, name: &str, default: &str) -> String {
    env.get(name).unwrap_or_else(|| default.to_owned())
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

fn flag(env: &dyn Env, name: &'static str, default: bool) -> Result<bool, ConfigError> {
    match env.get(name).map(|v| v.trim().to_ascii_lowercase()) {
        None => Ok(default),
        Some(v) if ["true", "1", "yes", "on"].contains(&v.as_str()) => Ok(true),
        Some(v) if ["false", "0", "no", "off"].contains(&v.as_str()) => Ok(false),
        Some(v) => Err(problem(name, format!("must be true or false, got {v:?}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: (&str, &str) = ("SECRET_KEY", "0123456789abcdef0123");

    #[test]
    fn defaults_follow_the_original_spec() {
        let config = Config::load(&Vars(&[KEY])).expect("loads");
        assert_eq!(config.policy.default_context, "outbound-ivr");
        assert_eq!(config.policy.allowed_contexts, vec!["outbound-ivr"]);
        assert_eq!(config.policy.default_timeout_ms, 30_000);
        assert_eq!(config.ari.app, "dialer");
        assert!(!config.metrics_enabled);
    }

    #[test]
    fn bad_values_name_their_variable() {
        let cases: [(&[(&str, &str)], &str); 6] = [
            (&[], "SECRET_KEY"),
            (&[KEY, ("CALL_RETENTION_DAYS", "0")], "CALL_RETENTION_DAYS"),
            (&[KEY, ("DEFAULT_TIMEOUT", "soon")], "DEFAULT_TIMEOUT"),
            (&[KEY, ("METRICS_ENABLED", "maybe")], "METRICS_ENABLED"),
            (&[KEY, ("DIAL_ENDPOINT", "PJSIP/trunk")], "DIAL_ENDPOINT"),
            (&[KEY, ("ARI_HTTP_URL", "asterisk:8088")], "ARI_HTTP_URL"),
        ];
        for (vars, var) in cases {
            let env = Vars(vars);
            let err = Config::load(&env).expect_err(var);
            assert_eq!(err.var, var);
            assert!(err.to_string().contains(var));
        }
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
        ]);
        assert!(check_deployed("status", &by_id).is_ok());
        let by_value = Vars(&[KEY, ("CALLS_TABLE", "calls")]);
        assert!(check_deployed("status", &by_value).is_ok());
        assert_eq!(
            check_deployed("status", &Vars(&[KEY])).map_err(|e| e.var),
            Err("CALLS_TABLE")
        );
    }

    #[test]
    fn allowed_contexts_is_a_comma_list() {
        let env = Vars(&[KEY, ("ALLOWED_CONTEXTS", "outbound-ivr, reminders")]);
        let config = Config::load(&env).expect("loads");
        assert_eq!(
            config.policy.allowed_contexts,
            vec!["outbound-ivr", "reminders"]
        );
    }
}
