//! The call status set and the one rule about how a status may change.

use std::fmt;
use std::str::FromStr;

/// Where a call is in its life. Declared in life order: the derived order is not used,
/// [`CallStatus::stage`] is, because every final state shares the last stage.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CallStatus {
    /// Accepted, waiting for the trunk's limits, its `send_at`, its calling window or its
    /// next attempt; only the dispatcher's claim (or a cancel) moves it on.
    Queued,
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
    pub const ALL: [CallStatus; 10] = [
        CallStatus::Queued,
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
    pub const ACTIVE: [CallStatus; 5] = [
        CallStatus::Queued,
        CallStatus::Pending,
        CallStatus::Dialing,
        CallStatus::Ringing,
        CallStatus::Answered,
    ];

    /// Position in an attempt's life; every final status is the last stage.
    pub fn stage(self) -> u8 {
        match self {
            CallStatus::Queued => 0,
            CallStatus::Pending => 1,
            CallStatus::Dialing => 2,
            CallStatus::Ringing => 3,
            CallStatus::Answered => 4,
            _ => FINAL_STAGE,
        }
    }

    pub fn is_final(self) -> bool {
        self.stage() == FINAL_STAGE
    }

    pub fn is_active(self) -> bool {
        !self.is_final()
    }

    /// Within one attempt, statuses only move forward, and never out of a final state.
    /// A queued call waits for the dispatcher: it leaves `queued` only by being claimed
    /// (`pending`) or canceled; no PBX event can move it (no channel of it exists).
    /// Across attempts the order is over (attempt number, status): see
    /// [`Progress::can_move_to`]. Every store enforces exactly this, atomically.
    pub fn can_move_to(self, next: CallStatus) -> bool {
        if self == CallStatus::Queued {
            return matches!(next, CallStatus::Pending | CallStatus::Canceled);
        }
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
            CallStatus::Queued => "queued",
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

const FINAL_STAGE: u8 = 5;

/// Where a call stands: which attempt, and that attempt's status. Calls only move
/// forward in the order over (attempt number, status); a later attempt begins `queued`,
/// which only an attempt's end may bring about (a retry).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Progress {
    pub attempt: u32,
    pub status: CallStatus,
}

impl Progress {
    pub fn can_move_to(self, next: Progress) -> bool {
        if self.status.is_final() {
            return false;
        }
        match next.attempt.cmp(&self.attempt) {
            std::cmp::Ordering::Equal => self.status.can_move_to(next.status),
            std::cmp::Ordering::Greater => {
                next.attempt == self.attempt + 1 && next.status == CallStatus::Queued
            }
            std::cmp::Ordering::Less => false,
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
    fn a_queued_call_leaves_only_by_claim_or_cancel() {
        use CallStatus::*;
        for to in CallStatus::ALL {
            assert_eq!(
                Queued.can_move_to(to),
                matches!(to, Pending | Canceled),
                "queued -> {to}"
            );
        }
        assert!(!Pending.can_move_to(Queued));
    }

    #[test]
    fn progress_orders_attempts_before_statuses() {
        use CallStatus::*;
        let at = |attempt, status| Progress { attempt, status };
        assert!(at(1, Ringing).can_move_to(at(2, Queued)));
        assert!(
            !at(1, Ringing).can_move_to(at(3, Queued)),
            "an attempt skipped"
        );
        assert!(
            !at(1, Ringing).can_move_to(at(2, Dialing)),
            "a retry begins queued"
        );
        assert!(
            !at(2, Queued).can_move_to(at(1, Busy)),
            "a stale attempt's end"
        );
        assert!(at(2, Queued).can_move_to(at(2, Pending)));
        assert!(!at(2, Busy).can_move_to(at(3, Queued)), "final is final");
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
