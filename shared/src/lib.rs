//! The outbound IVR dialer's shared library: the domain, its ports (store, PBX), their
//! adapters, the use cases, the HTTP routes and the ARI event bridge. Every binary in
//! `functions/` is a thin entry point over this crate.

pub mod api;
pub mod ari;
pub mod auth;
pub mod bridge;
pub mod config;
pub mod domain;
#[cfg(feature = "lambda")]
pub mod lambda;
pub mod metrics;
pub mod pbx;
pub mod secret;
pub mod secrets;
pub mod service;
pub mod store;
pub mod telemetry;
#[cfg(feature = "aws")]
pub mod wiring;
