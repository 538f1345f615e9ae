//! bcrypt behind the core's [`PasswordHasher`] port. An unknown user costs the same
//! bcrypt work as a wrong password (a decoy hash of the same cost is checked), so the
//! two cannot be told apart by time. bcrypt reads 72 bytes, a password's terminating
//! NUL among them: the non-truncating calls refuse a password of 72 bytes or more
//! instead of letting it match every password that starts the same way.

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
        bcrypt::non_truncating_hash(password, self.cost).map_err(|e| HashError(Box::new(e)))
    }

    fn verify(&self, password: &str, hash: Option<&str>) -> bool {
        match hash {
            Some(hash) => bcrypt::non_truncating_verify(password, hash).unwrap_or(false),
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
        let mut user = User::new("alice", hasher.hash("s3cret").expect("hash"));
        assert!(accepts(&hasher, Some(&user), "s3cret"));
        assert!(!accepts(&hasher, Some(&user), "wrong"));
        assert!(!accepts(&hasher, None, "s3cret"));
        user.disabled = true;
        assert!(!accepts(&hasher, Some(&user), "s3cret"));
    }

    #[test]
    fn passwords_sharing_their_first_72_bytes_do_not_both_log_in() {
        let hasher = Bcrypt::new(4);
        let set = "p".repeat(71);
        let user = User::new("alice", hasher.hash(&set).expect("hash"));
        assert!(accepts(&hasher, Some(&user), &set));
        assert!(!accepts(&hasher, Some(&user), &format!("{set}-and-more")));
        assert!(hasher.hash(&format!("{set}x")).is_err());
    }
}
