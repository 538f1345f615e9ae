//! Password hashing and the login check. An unknown user costs the same bcrypt work as
//! a wrong password, so the two cannot be told apart by time.

use std::sync::OnceLock;

use crate::domain::User;

#[derive(Clone, Copy, Debug)]
pub struct Hasher {
    pub cost: u32,
}

impl Hasher {
    pub fn new(cost: u32) -> Self {
        Self {
            cost: cost.clamp(4, 31),
        }
    }

    pub fn hash(&self, password: &str) -> Result<String, bcrypt::BcryptError> {
        bcrypt::hash(password, self.cost)
    }

    /// True only for an enabled user whose hash matches. Runs a full bcrypt check in
    /// every case. CPU-heavy: call it off the async executor.
    pub fn check(&self, user: Option<&User>, password: &str) -> bool {
        match user {
            Some(user) => {
                let matches = bcrypt::verify(password, &user.password_hash).unwrap_or(false);
                matches && !user.disabled
            }
            None => {
                let _ = bcrypt::verify(password, self.decoy());
                false
            }
        }
    }

    fn decoy(&self) -> &'static str {
        static DECOY: OnceLock<String> = OnceLock::new();
        DECOY.get_or_init(|| {
            bcrypt::hash("decoy password for unknown users", self.cost).unwrap_or_default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_right_password_of_an_enabled_user_passes() {
        let hasher = Hasher::new(4);
        let mut user = User {
            username: "alice".into(),
            password_hash: hasher.hash("s3cret").expect("hash"),
            disabled: false,
        };
        assert!(hasher.check(Some(&user), "s3cret"));
        assert!(!hasher.check(Some(&user), "wrong"));
        assert!(!hasher.check(None, "s3cret"));
        user.disabled = true;
        assert!(!hasher.check(Some(&user), "s3cret"));
    }
}
