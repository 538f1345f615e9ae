//! API users. Passwords are kept only as bcrypt hashes.

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct User {
    pub username: String,
    pub password_hash: String,
    pub disabled: bool,
}

/// Usernames are what tokens carry in `sub` and what calls are owned by.
pub fn valid_username(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._@-".contains(&b))
}
