//! The Asterisk REST Interface adapter: the HTTP client (implementing the [`Pbx`] port)
//! and the event WebSocket.
//!
//! [`Pbx`]: crate::pbx::Pbx

pub mod client;
pub mod events;
pub mod socket;

pub use client::{AriClient, AriSettings};
pub use events::AriEvent;
