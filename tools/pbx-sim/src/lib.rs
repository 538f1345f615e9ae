//! A simulated Asterisk speaking ARI (HTTP + event WebSocket) for outbound calls, so
//! the ARI client and event bridge can be tested without a PBX.
//!
//! The behaviour follows the traces recorded from a real Asterisk in
//! `tests/ari-traces/`: each callee number range (`+1555001xxxx` answers, `002` is
//! busy, ...) produces the same events on the originated channel as the real one did.

mod auth;
mod call;
mod callee;
mod channel;
mod config;
mod dialplan;
mod events;
mod handle;
mod params;
mod server;
mod state;
mod ws;

pub use config::SimConfig;
pub use handle::{SimHandle, start};
