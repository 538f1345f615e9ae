//! The call status set and the one rule about how a status may change.

use std::fmt;
use std::str::FromStr;

/// Where a call is in its life. Declared in life order: the derived order is not used,
/// [`CallStatus::stage`] is, because every final state shares the last stage.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CallStatus {
    Pending,
    Dialing,
    Ringing,
    Answered,
    Completed,
    Busy,
    NoAnswer,
    Failed,
    Canceled,
}

impl CallStatus {
    pub const ALL: [CallStatus; 9] = [
        CallStatus::Pending,
        CallStatus::Dialing,
        CallStatus::Ringing,
        CallStatus::Answered,
        CallStatus::Completed,
        CallStatus::Busy,
        CallStatus::NoAnswer,
        CallStatus::Failed,
        CallStatus::Canceled,
    ];

    /// The statuses a call can still leave.
    pub const ACTIVE: [CallStatus; 4] = [
        CallStatus::Pending,
        CallStatus::Dialing,
        CallStatus::Ringing,
        CallStatus::Answered,
    ];

    /// Position in the call's life; every final status is stage 4.
    pub fn stage(self) -> u8 {
        match self {
            CallStatus::Pending => 0,
            CallStatus::Dialing => 1,
            CallStatus::Ringing => 2,
            CallStatus::Answered => 3,
            _ => 4,
        }
    }

    pub fn is_final(self) -> bool {
        self.stage() == 4
    }

    pub fn is_active(self) -> bool {
        !self.is_final()
    }

    /// Statuses only move forward, and never out of a final state. Every store enforces
    /// exactly this, atomically.
    pub fn can_move_to(self, next: CallStatus) -> bool {
        !self.is_final() && next.stage() > self.stage()
    }

    /// The statuses from which `next` may be reached; stores use it to build their
    /// conditional writes.
    pub fn predecessors(next: CallStatus) -> impl Iterator<Item = CallStatus> {
        CallStatus::ACTIVE
            .into_iter()
            .filter(move |s| s.can_move_to(next))
    }

    pub fn as_str(self) -> &'static str {
        match self {
            CallStatus::Pending => "pending",
            CallStatus::Dialing => "dialing",
            CallStatus::Ringing => "ringing",
            CallStatus::Answered => "answered",
            CallStatus::Completed => "completed",
            CallStatus::Busy => "busy",
            CallStatus::NoAnswer => "no_answer",
            CallStatus::Failed => "failed",
            CallStatus::Canceled => "canceled",
        }
    }
}

impl fmt::Display for CallStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error)]
#[error("unknown call status {0:?}")]
pub struct UnknownStatus(pub String);

impl FromStr for CallStatus {
    type Err = UnknownStatus;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        CallStatus::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| UnknownStatus(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_only_move_forward() {
        use CallStatus::*;
        assert!(Pending.can_move_to(Dialing));
        assert!(Pending.can_move_to(Answered));
        assert!(Dialing.can_move_to(Busy));
        assert!(Answered.can_move_to(Completed));
        assert!(!Ringing.can_move_to(Dialing));
        assert!(!Answered.can_move_to(Ringing));
        assert!(!Ringing.can_move_to(Ringing));
    }

    #[test]
    fn nothing_leaves_a_final_state() {
        for from in CallStatus::ALL.into_iter().filter(|s| s.is_final()) {
            for to in CallStatus::ALL {
                assert!(!from.can_move_to(to), "{from} -> {to}");
            }
        }
    }

    #[test]
    fn predecessors_agree_with_can_move_to() {
        for to in CallStatus::ALL {
            for from in CallStatus::ALL {
                let listed = CallStatus::predecessors(to).any(|s| s == from);
                assert_eq!(listed, from.can_move_to(to), "{from} -> {to}");
            }
        }
    }

    #[test]
    fn status_names_round_trip() {
        for status in CallStatus::ALL {
            assert_eq!(status.as_str().parse::<CallStatus>().ok(), Some(status));
        }
        assert!("ANSWERED".parse::<CallStatus>().is_err());
    }
}
