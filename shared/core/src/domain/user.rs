//! API users. Passwords are kept only as bcrypt hashes.

use super::ValidationError;

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct User {
    pub username: String,
    pub password_hash: String,
    pub disabled: bool,
    /// Tokens carry the version they were issued under; raising it (a password reset,
    /// `dialer-users revoke-tokens`) ends every token issued before.
    #[serde(default)]
    pub token_version: u64,
}

impl User {
    /// A new, enabled user.
    pub fn new(username: impl Into<String>, password_hash: impl Into<String>) -> Self {
        Self {
            username: username.into(),
            password_hash: password_hash.into(),
            disabled: false,
            token_version: 0,
        }
    }

    /// Whether a token issued under `version` still speaks for this user.
    pub fn accepts_token(&self, version: u64) -> bool {
        !self.disabled && version == self.token_version
    }
}

/// Usernames are what tokens carry in `sub` and what calls are owned by.
pub fn valid_username(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._@-".contains(&b))
}

/// A password that may be set: 8 to 72 bytes of UTF-8 without control characters.
/// bcrypt reads only the first 72 bytes, so a longer one would share its hash with
/// every password that starts the same way; a NUL would end it early.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl Password {
    pub const MIN_CHARS: usize = 8;
    pub const MAX_BYTES: usize = 72;

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
    fn passwords_over_72_bytes_are_refused_because_bcrypt_would_ignore_the_rest() {
        assert!(Password::parse(&"a".repeat(72)).is_ok());
        let error = Password::parse(&"a".repeat(73)).expect_err("73 bytes");
        assert_eq!(error.field, "password");
        assert!(error.message.contains("72 bytes"), "{}", error.message);
        // 25 three-byte characters: 25 characters, 75 bytes.
        assert!(Password::parse(&"€".repeat(25)).is_err());
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
}
