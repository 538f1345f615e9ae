//! The ARI event bridge: turns a call's channel events into status writes and drives
//! answered calls. [`CallEvents`] is the core (one event in, store writes and call
//! control out); [`queue`] keeps writes in order through store outages; [`runner`]
//! holds the WebSocket and feeds them; [`port`] serves its health and metrics.

pub mod core;
pub mod port;
pub mod queue;
pub mod runner;
pub mod signal;

pub use core::CallEvents;
pub use dialer_core::health::BridgeHealth;
pub use runner::{EventSource, EventSourceTiming};
