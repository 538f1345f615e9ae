//! The dialer's core: the domain (calls, statuses, outcome rules, validation), the ports
//! its adapters implement (store, PBX, secrets, password hashing), the use cases behind
//! the routes, and metrics. Plain Rust: no AWS, HTTP, SQL or Asterisk types, so that the
//! compiler keeps every adapter outside.

pub mod auth;
pub mod domain;
pub mod health;
pub mod metrics;
pub mod pbx;
pub mod secrets;
pub mod service;
pub mod store;
pub mod webhooks;
