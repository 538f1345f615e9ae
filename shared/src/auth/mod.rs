//! Authentication: bcrypt passwords and JWT access tokens.

pub mod jwt;
pub mod password;

pub use jwt::{TokenSettings, Tokens};
pub use password::Hasher;
