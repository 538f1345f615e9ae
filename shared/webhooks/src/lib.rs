//! The webhook adapter: [`Guard`] checks a callback's host when a call is requested,
//! [`Sender`] signs one event and posts it.
//!
//! A name is resolved here and the addresses it gave are checked before anything
//! connects; the sender then connects to one of those very addresses, so that a name
//! which resolves to a public address when checked and to a private one a moment later
//! cannot steer a delivery inside the network.

use std::time::Duration;

mod body;
mod guard;
mod resolve;
mod sender;

pub use body::event_body;
pub use guard::Guard;
pub use sender::{Sender, USER_AGENT};

/// How the guard and the sender reach a callback.
#[derive(Clone, Debug)]
pub struct Settings {
    /// `WEBHOOK_ALLOW_PRIVATE`: let callbacks reach loopback, private and the other
    /// forbidden addresses (local development and tests only). Names must still
    /// resolve.
    pub allow_private: bool,
    /// How long a name may take to resolve.
    pub resolve_timeout: Duration,
    /// How long one TCP connect may take.
    pub connect_timeout: Duration,
    /// How long one delivery may take in all, from resolving to the response's status.
    pub request_timeout: Duration,
}

impl Default for Settings {
    /// Forbidden addresses refused; 3 s to resolve, 3 s to connect, 10 s in all.
    fn default() -> Self {
        Self {
            allow_private: false,
            resolve_timeout: Duration::from_secs(3),
            connect_timeout: Duration::from_secs(3),
            request_timeout: Duration::from_secs(10),
        }
    }
}
