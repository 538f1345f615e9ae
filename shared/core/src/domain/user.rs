//! API users. Passwords are kept only as bcrypt hashes.

use super::ValidationError;

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct User {
    pub username: String,
    pub password_hash: String,
    pub disabled: bool,
    /// Tokens carry the version they were issued under; raising it (a password reset,
    /// `dialer-users revoke-tokens`, a disable) ends every token issued before.
    #[serde(default)]
    pub token_version: u64,
    /// Where this user's calls send their events when a request names no
    /// `status_callback`.
    #[serde(default)]
    pub webhook_url: Option<String>,
    /// What webhook events are signed with (see [`User::webhook_secrets`]).
    #[serde(default)]
    pub webhook_secret: Option<String>,
    /// The secret before the last rotation, and when it was replaced: events carry a
    /// signature under it too for [`WEBHOOK_SECRET_OVERLAP_HOURS`] after.
    #[serde(default)]
    pub previous_webhook_secret: Option<(String, chrono::DateTime<chrono::Utc>)>,
    /// This user's share of the trunk (`dialer-users set-limits`).
    #[serde(default)]
    pub limits: super::pacing::UserLimits,
}

/// How long after a rotation events are signed with the old secret as well.
pub const WEBHOOK_SECRET_OVERLAP_HOURS: i64 = 24;

impl User {
    /// A new, enabled user.
    pub fn new(username: impl Into<String>, password_hash: impl Into<String>) -> Self {
        Self {
            username: username.into(),
            password_hash: password_hash.into(),
            disabled: false,
            token_version: 0,
            webhook_url: None,
            webhook_secret: Some(new_webhook_secret()),
            previous_webhook_secret: None,
            limits: super::pacing::UserLimits::default(),
        }
    }

    /// The secrets webhook events are signed with at `now`: the current one, and the
    /// one before it for a day after a rotation.
    pub fn webhook_secrets(&self, now: chrono::DateTime<chrono::Utc>) -> Vec<&str> {
        let mut secrets: Vec<&str> = self.webhook_secret.as_deref().into_iter().collect();
        if let Some((previous, replaced_at)) = &self.previous_webhook_secret
            && now - *replaced_at < chrono::Duration::hours(WEBHOOK_SECRET_OVERLAP_HOURS)
        {
            secrets.push(previous);
        }
        secrets
    }

    /// A new secret; the old one keeps signing for a day.
    pub fn rotate_webhook_secret(&mut self, now: chrono::DateTime<chrono::Utc>) {
        if let Some(old) = self.webhook_secret.replace(new_webhook_secret()) {
            self.previous_webhook_secret = Some((old, now));
        }
    }

    /// Refuses the user's logins and tokens, and ends for good every token issued so
    /// far: enabling the user again does not bring them back.
    pub fn disable(&mut self) {
        self.disabled = true;
        self.revoke_tokens();
    }

    /// Allows the user's logins again; only tokens issued from now on work.
    pub fn enable(&mut self) {
        self.disabled = false;
    }

    /// Ends every token issued so far.
    pub fn revoke_tokens(&mut self) {
        self.token_version = self.token_version.saturating_add(1);
    }

    /// Whether a token issued under `version` still speaks for this user.
    pub fn accepts_token(&self, version: u64) -> bool {
        !self.disabled && version == self.token_version
    }
}

/// 256 random bits, as `whsec_` and 64 hex digits.
pub fn new_webhook_secret() -> String {
    let a = uuid::Uuid::new_v4().simple().to_string();
    let b = uuid::Uuid::new_v4().simple().to_string();
    // A v4 UUID has 122 random bits; two of them, version digits dropped, make 244.
    // Hash them into 256 bits of even spread.
    let digest = super::webhook::signature(&a, 0, b.as_bytes());
    format!("whsec_{digest}")
}

/// Usernames are what tokens carry in `sub` and what calls are owned by.
pub fn valid_username(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._@-".contains(&b))
}

/// A password that may be set: 8 to 71 bytes of UTF-8 without control characters.
/// bcrypt reads 72 bytes, the password's terminating NUL among them, so a longer one
/// would share its hash with every password that starts the same way (the hasher
/// refuses one rather than cut it); a NUL inside would end it early.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl Password {
    pub const MIN_CHARS: usize = 8;
    pub const MAX_BYTES: usize = 71;

    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        let problem = |message: String| Err(ValidationError::new("password", message));
        if raw.chars().count() < Self::MIN_CHARS {
            return problem(format!("needs at least {} characters", Self::MIN_CHARS));
        }
        if raw.len() > Self::MAX_BYTES {
            return problem(format!(
                "may be at most {} bytes (bcrypt ignores the rest); this one is {}",
                Self::MAX_BYTES,
                raw.len()
            ));
        }
        if raw.chars().any(char::is_control) {
            return problem("may not contain control characters".into());
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(***)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_over_71_bytes_are_refused_because_bcrypt_would_ignore_the_rest() {
        assert!(Password::parse(&"a".repeat(71)).is_ok());
        let error = Password::parse(&"a".repeat(72)).expect_err("72 bytes");
        assert_eq!(error.field, "password");
        assert!(error.message.contains("71 bytes"), "{}", error.message);
        // 24 three-byte characters: 24 characters, 72 bytes.
        assert!(Password::parse(&"€".repeat(24)).is_err());
    }

    #[test]
    fn short_passwords_and_control_characters_are_refused() {
        assert!(Password::parse("seven77").is_err());
        assert!(Password::parse("eight888").is_ok());
        assert!(Password::parse("with\0nul-inside").is_err());
        assert!(Password::parse("with\nnewline").is_err());
    }

    #[test]
    fn a_token_speaks_for_an_enabled_user_at_its_version_only() {
        let mut user = User::new("alice", "hash");
        assert!(user.accepts_token(0));
        user.token_version = 1;
        assert!(!user.accepts_token(0));
        assert!(user.accepts_token(1));
        user.disabled = true;
        assert!(!user.accepts_token(1));
    }

    #[test]
    fn a_token_issued_before_a_disable_stays_ended_after_the_enable() {
        let mut user = User::new("alice", "hash");
        let issued = user.token_version;
        user.disable();
        assert!(!user.accepts_token(issued));
        user.enable();
        assert!(!user.accepts_token(issued), "the old token stays ended");
        assert!(user.accepts_token(user.token_version), "a new one works");
    }
}
