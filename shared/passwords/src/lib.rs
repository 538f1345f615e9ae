//! bcrypt behind the core's [`PasswordHasher`] port. An unknown user costs the same
//! bcrypt work as a wrong password (a decoy hash of the same cost is checked), so the
//! two cannot be told apart by time.

use std::sync::OnceLock;

use dialer_core::auth::{HashError, PasswordHasher};

#[derive(Clone, Copy, Debug)]
pub struct Bcrypt {
    pub cost: u32,
}

impl Bcrypt {
    pub fn new(cost: u32) -> Self {
        Self {
            cost: cost.clamp(4, 31),
        }
    }

    fn decoy(&self) -> &'static str {
        static DECOY: OnceLock<String> = OnceLock::new();
        DECOY.get_or_init(|| {
            bcrypt::hash("decoy password for unknown users", self.cost).unwrap_or_default()
        })
    }
}

impl PasswordHasher for Bcrypt {
    fn hash(&self, password: &str) -> Result<String, HashError> {
        bcrypt::hash(password, self.cost).map_err(|e| HashError(Box::new(e)))
    }

    fn verify(&self, password: &str, hash: Option<&str>) -> bool {
        match hash {
            Some(hash) => bcrypt::verify(password, hash).unwrap_or(false),
            None => {
                let _ = bcrypt::verify(password, self.decoy());
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use dialer_core::auth::accepts;
    use dialer_core::domain::User;

    use super::*;

    #[test]
    fn only_the_right_password_of_an_enabled_user_passes() {
        let hasher = Bcrypt::new(4);
        let mut user = User {
            username: "alice".into(),
            password_hash: hasher.hash("s3cret").expect("hash"),
            disabled: false,
        };
        assert!(accepts(&hasher, Some(&user), "s3cret"));
        assert!(!accepts(&hasher, Some(&user), "wrong"));
        assert!(!accepts(&hasher, None, "s3cret"));
        user.disabled = true;
        assert!(!accepts(&hasher, Some(&user), "s3cret"));
    }
}
