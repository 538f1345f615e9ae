//! The Asterisk REST Interface adapter: the HTTP client (implementing the [`Pbx`] port)
//! and, with the `socket` feature, the event WebSocket (only the bridge holds one).
//!
//! [`Pbx`]: dialer_core::pbx::Pbx

pub mod client;
pub mod events;
#[cfg(feature = "socket")]
pub mod socket;
mod transport;

pub use client::{AriClient, AriSettings};
pub use events::AriEvent;
