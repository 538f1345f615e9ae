//! The dialer's domain: calls, statuses, the outcome rules and validation. Plain Rust:
//! no HTTP, AWS or Asterisk types.

pub mod call;
mod callback_url;
pub mod outcome;
pub mod pacing;
pub mod schedule;
pub mod status;
pub mod throttle;
pub mod time_zone;
mod time_zone_rules;
pub mod user;
pub mod validation;
pub mod webhook;

pub use call::{Annotation, Attempt, Call, CallMode, CallPolicy, CallRequest, Transition};
pub use outcome::{EndFacts, FailureReason, final_outcome};
pub use pacing::{Admission, Pacing, Slot, TrunkLimits, UserLimits};
pub use schedule::{CallingWindow, RetryPolicy};
pub use status::{CallStatus, Progress};
pub use throttle::{FailureCount, ThrottleKey, ThrottlePolicy};
pub use time_zone::TimeZone;
pub use user::{Password, User};
pub use validation::ValidationError;

/// The time a call event happened, at the millisecond precision every store keeps and
/// the API shows, so that a record reads back exactly as it was written.
pub fn now() -> chrono::DateTime<chrono::Utc> {
    use chrono::SubsecRound;
    chrono::Utc::now().trunc_subsecs(3)
}
