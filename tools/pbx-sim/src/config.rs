//! How a simulator is configured: in code, or from `PBX_SIM_*` environment variables.

use std::net::SocketAddr;
use std::time::Duration;

/// Settings of one simulated PBX.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Where to listen, e.g. `127.0.0.1:0` for any free port.
    pub bind: SocketAddr,
    /// ARI user.
    pub username: String,
    /// ARI password.
    pub password: String,
    /// Multiplies every callee delay and the originate timeout: 1.0 is real time,
    /// 0.01 is 100 times faster.
    pub time_scale: f64,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            username: "asterisk".to_owned(),
            password: "asterisk".to_owned(),
            time_scale: 1.0,
        }
    }
}

impl SimConfig {
    /// Reads `PBX_SIM_BIND`, `PBX_SIM_USERNAME`, `PBX_SIM_PASSWORD` and `PBX_SIM_TIME_SCALE`;
    /// an unset variable keeps its [`Default`] value. Errors name the variable at fault.
    pub fn from_env() -> Result<Self, String> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Same as [`SimConfig::from_env`] over any source of variables, so it can be tested
    /// without touching the process environment.
    pub(crate) fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let mut config = Self::default();
        if let Some(bind) = lookup("PBX_SIM_BIND") {
            config.bind = bind
                .trim()
                .parse()
                .map_err(|e| format!("PBX_SIM_BIND: {bind:?} is not a socket address: {e}"))?;
        }
        if let Some(username) = lookup("PBX_SIM_USERNAME") {
            config.username = username;
        }
        if let Some(password) = lookup("PBX_SIM_PASSWORD") {
            config.password = password;
        }
        if let Some(scale) = lookup("PBX_SIM_TIME_SCALE") {
            let value: f64 = scale
                .trim()
                .parse()
                .map_err(|e| format!("PBX_SIM_TIME_SCALE: {scale:?} is not a number: {e}"))?;
            config.time_scale = value;
            config
                .validate()
                .map_err(|e| format!("PBX_SIM_TIME_SCALE: {e}"))?;
        }
        Ok(config)
    }

    /// Rejects settings that would make timers meaningless.
    pub(crate) fn validate(&self) -> Result<(), String> {
        if !self.time_scale.is_finite() || self.time_scale <= 0.0 {
            return Err(format!(
                "time_scale must be a positive finite number, got {}",
                self.time_scale
            ));
        }
        Ok(())
    }

    /// `seconds` of simulated time as a real duration. Saturates instead of panicking,
    /// because the originate timeout comes from the client.
    pub(crate) fn scaled(&self, seconds: f64) -> Duration {
        let real = seconds * self.time_scale;
        if real.is_nan() || real <= 0.0 {
            return Duration::ZERO;
        }
        Duration::try_from_secs_f64(real).unwrap_or(Duration::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn lookup(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn unset_variables_keep_defaults() {
        let config = SimConfig::from_lookup(lookup(&[])).expect("defaults are valid");
        assert_eq!(config.bind, SocketAddr::from(([127, 0, 0, 1], 0)));
        assert_eq!(config.username, "asterisk");
        assert_eq!(config.password, "asterisk");
        assert!((config.time_scale - 1.0).abs() < f64::EPSILON);
    }

    #[test]
    fn variables_override_defaults() {
        let config = SimConfig::from_lookup(lookup(&[
            ("PBX_SIM_BIND", "0.0.0.0:8088"),
            ("PBX_SIM_USERNAME", "u"),
            ("PBX_SIM_PASSWORD", "p"),
            ("PBX_SIM_TIME_SCALE", "0.5"),
        ]))
        .expect("valid values");
        assert_eq!(config.bind, SocketAddr::from(([0, 0, 0, 0], 8088)));
        assert_eq!(config.username, "u");
        assert_eq!(config.password, "p");
        assert!((config.time_scale - 0.5).abs() < f64::EPSILON);
    }

    #[test]
    fn errors_name_the_variable() {
        let err =
            SimConfig::from_lookup(lookup(&[("PBX_SIM_BIND", "nope")])).expect_err("bad address");
        assert!(err.starts_with("PBX_SIM_BIND"), "{err}");
        let err = SimConfig::from_lookup(lookup(&[("PBX_SIM_TIME_SCALE", "fast")]))
            .expect_err("bad number");
        assert!(err.starts_with("PBX_SIM_TIME_SCALE"), "{err}");
        let err =
            SimConfig::from_lookup(lookup(&[("PBX_SIM_TIME_SCALE", "0")])).expect_err("zero scale");
        assert!(err.starts_with("PBX_SIM_TIME_SCALE"), "{err}");
    }

    #[test]
    fn scaled_durations_saturate_instead_of_panicking() {
        let config = SimConfig {
            time_scale: 0.5,
            ..SimConfig::default()
        };
        assert_eq!(config.scaled(2.0), Duration::from_secs(1));
        assert_eq!(config.scaled(-1.0), Duration::ZERO);
        assert_eq!(config.scaled(f64::NAN), Duration::ZERO);
        assert_eq!(config.scaled(1e300), Duration::MAX);
    }
}
