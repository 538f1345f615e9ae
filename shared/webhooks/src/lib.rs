//! The webhook adapter: [`Guard`] checks a callback's host when a call is requested,
//! [`Sender`] signs one event and posts it.
//!
//! A name is resolved here and the addresses it gave are checked before anything
//! connects; the sender then connects to one of those very addresses, so that a name
//! which resolves to a public address when checked and to a private one a moment later
//! cannot steer a delivery inside the network.
//!
//! Names go through [`Resolver`]: a bounded cache, one lookup per name however many ask,
//! a cap on lookups at once, and a budget per request, so that a slow DNS costs only the
//! requests that name it. It caches addresses, not verdicts: every use judges them.

use std::time::Duration;

mod body;
mod dns_cache;
mod guard;
mod resolve;
mod sender;

pub use body::event_body;
pub use dns_cache::{Answer, CacheSettings, Lookup, NotResolved, Resolver, SystemLookup};
pub use guard::Guard;
pub use sender::{Sender, USER_AGENT};

/// How the guard and the sender reach a callback.
#[derive(Clone, Debug)]
pub struct Settings {
    /// `WEBHOOK_ALLOW_PRIVATE`: let callbacks reach loopback, private and the other
    /// forbidden addresses (local development and tests only). Names must still
    /// resolve.
    pub allow_private: bool,
    /// How long one check or delivery waits for a name: its budget. A lookup still
    /// running then goes on in the background, and its answer is cached.
    pub resolve_timeout: Duration,
    /// The resolver's cache and its bounds.
    pub dns_cache: CacheSettings,
    /// How long one TCP connect may take.
    pub connect_timeout: Duration,
    /// How long one delivery may take in all, from resolving to the response's status.
    pub request_timeout: Duration,
}

impl Default for Settings {
    /// Forbidden addresses refused; 3 s to resolve, 3 s to connect, 10 s in all; the
    /// cache's defaults.
    fn default() -> Self {
        Self {
            allow_private: false,
            resolve_timeout: Duration::from_secs(3),
            dns_cache: CacheSettings::default(),
            connect_timeout: Duration::from_secs(3),
            request_timeout: Duration::from_secs(10),
        }
    }
}
