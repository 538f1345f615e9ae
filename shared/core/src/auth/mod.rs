//! Authentication: access tokens (HS256 JWTs) and the password-hashing port that the
//! bcrypt adapter (`dialer-passwords`) implements.

pub mod tokens;

pub use tokens::{Claims, TokenError, TokenSettings, TokenSubject, Tokens};

use crate::domain::User;

/// How passwords are hashed and checked. CPU-heavy by design: call it off the async
/// executor.
pub trait PasswordHasher: Send + Sync {
    fn hash(&self, password: &str) -> Result<String, HashError>;

    /// Whether `password` matches `hash`. With no hash (an unknown user) it does the same
    /// work as a real check and answers false, so the two cannot be told apart by time.
    fn verify(&self, password: &str, hash: Option<&str>) -> bool;
}

#[derive(Debug, thiserror::Error)]
#[error("password hashing failed: {0}")]
pub struct HashError(#[source] pub Box<dyn std::error::Error + Send + Sync>);

/// The login check: true only for an enabled user whose hash matches. Runs a full check
/// in every case.
pub fn accepts(hasher: &dyn PasswordHasher, user: Option<&User>, password: &str) -> bool {
    let matches = hasher.verify(password, user.map(|u| u.password_hash.as_str()));
    matches && user.is_some_and(|u| !u.disabled)
}
