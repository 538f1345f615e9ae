//! The outcome rules: how a call's final status is read from what the PBX said.
//!
//! Neither the last `Dial` dialstatus nor the `ChannelDestroyed` cause alone tells the
//! outcome (a busy callee ends with cause 0; an unallocated number reports NOANSWER), and
//! only we know whether we canceled the call. So the final status is decided from all
//! three, here, in one place.

use super::status::CallStatus;

/// Why a call failed. Stored and shown as its snake_case name.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum FailureReason {
    Congestion,
    InvalidNumber,
    Rejected,
    Unavailable,
    /// The PBX refused the originate; the text is a short reason from the PBX.
    PbxRejected(String),
    PbxUnreachable,
    /// The channel ended while nobody was listening, and nothing tells how.
    OutcomeLost,
    /// A call that stayed active far longer than it could have.
    Stale,
    /// The PBX never confirmed the originate (it timed out or broke off), and no channel
    /// of the call ever appeared.
    OriginateUnconfirmed,
}

impl FailureReason {
    /// The text form a failure reason is stored and shown as; [`FailureReason::parse`]
    /// reads it back.
    pub fn to_text(&self) -> String {
        match self {
            FailureReason::Congestion => "congestion".into(),
            FailureReason::InvalidNumber => "invalid_number".into(),
            FailureReason::Rejected => "rejected".into(),
            FailureReason::Unavailable => "unavailable".into(),
            FailureReason::PbxRejected(detail) => format!("pbx_rejected: {detail}"),
            FailureReason::PbxUnreachable => "pbx_unreachable".into(),
            FailureReason::OutcomeLost => "outcome_lost".into(),
            FailureReason::Stale => "stale".into(),
            FailureReason::OriginateUnconfirmed => "originate_unconfirmed".into(),
        }
    }
}

impl FailureReason {
    pub fn parse(text: &str) -> Option<Self> {
        if let Some(detail) = text.strip_prefix("pbx_rejected: ") {
            return Some(FailureReason::PbxRejected(detail.to_owned()));
        }
        Some(match text {
            "congestion" => FailureReason::Congestion,
            "invalid_number" => FailureReason::InvalidNumber,
            "rejected" => FailureReason::Rejected,
            "unavailable" => FailureReason::Unavailable,
            "pbx_unreachable" => FailureReason::PbxUnreachable,
            "outcome_lost" => FailureReason::OutcomeLost,
            "stale" => FailureReason::Stale,
            "originate_unconfirmed" => FailureReason::OriginateUnconfirmed,
            _ => return None,
        })
    }
}

impl std::fmt::Display for FailureReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_text())
    }
}

/// What is known about a call when its channel is gone.
#[derive(Clone, Copy, Debug, Default)]
pub struct EndFacts<'a> {
    pub answered: bool,
    pub cancel_requested: bool,
    /// The last non-empty `Dial` dialstatus seen on the call's channel.
    pub dialstatus: Option<&'a str>,
    /// The `ChannelDestroyed` cause; `None` when the destruction was not seen.
    pub cause: Option<i64>,
    /// The call was ringing and its ring timeout has passed: a channel that vanished
    /// unseen by then was not answered in time.
    pub rang_out: bool,
}

/// The final status and failure reason for a call whose channel no longer exists.
pub fn final_outcome(facts: EndFacts<'_>) -> (CallStatus, Option<FailureReason>) {
    let dialstatus = facts.dialstatus.unwrap_or("");
    if facts.answered {
        return (CallStatus::Completed, None);
    }
    if dialstatus == "BUSY" || facts.cause == Some(17) {
        return (CallStatus::Busy, None);
    }
    if dialstatus == "CONGESTION" || matches!(facts.cause, Some(34 | 38 | 41 | 42 | 44)) {
        return (CallStatus::Failed, Some(FailureReason::Congestion));
    }
    if facts.cancel_requested {
        return (CallStatus::Canceled, None);
    }
    match facts.cause {
        Some(18 | 19) => (CallStatus::NoAnswer, None),
        Some(1 | 22 | 28) => (CallStatus::Failed, Some(FailureReason::InvalidNumber)),
        Some(21) => (CallStatus::Failed, Some(FailureReason::Rejected)),
        // Normal clearing or no cause before an answer: the callee's side gave up while
        // it rang, which is what the dialstatus then says too.
        Some(0 | 16) if dialstatus == "NOANSWER" || dialstatus == "CANCEL" => {
            (CallStatus::NoAnswer, None)
        }
        Some(_) => (CallStatus::Failed, Some(FailureReason::Unavailable)),
        None if dialstatus == "CHANUNAVAIL" => {
            (CallStatus::Failed, Some(FailureReason::Unavailable))
        }
        None if facts.rang_out => (CallStatus::NoAnswer, None),
        None => (CallStatus::Failed, Some(FailureReason::OutcomeLost)),
    }
}

/// What a channel-state name or dialstatus says about progress before the end.
pub fn progress_of_channel_state(state: &str) -> Option<CallStatus> {
    match state {
        "Ringing" | "Ring" => Some(CallStatus::Ringing),
        "Up" => Some(CallStatus::Answered),
        _ => None,
    }
}

pub fn progress_of_dialstatus(dialstatus: &str) -> Option<CallStatus> {
    match dialstatus {
        "RINGING" | "PROGRESS" => Some(CallStatus::Ringing),
        "ANSWER" => Some(CallStatus::Answered),
        _ => None,
    }
}

impl TryFrom<String> for FailureReason {
    type Error = String;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        Self::parse(&text).ok_or_else(|| format!("{text:?} is not a failure reason"))
    }
}

impl From<FailureReason> for String {
    fn from(reason: FailureReason) -> Self {
        reason.to_text()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_reasons_read_back_from_their_text() {
        let all = [
            FailureReason::Congestion,
            FailureReason::InvalidNumber,
            FailureReason::Rejected,
            FailureReason::Unavailable,
            FailureReason::PbxRejected("400 Bad Request".into()),
            FailureReason::PbxUnreachable,
            FailureReason::OutcomeLost,
            FailureReason::Stale,
            FailureReason::OriginateUnconfirmed,
        ];
        for reason in all {
            assert_eq!(FailureReason::parse(&reason.to_text()), Some(reason));
        }
        assert_eq!(FailureReason::parse("gremlins"), None);
    }

    fn ended(dialstatus: Option<&str>, cause: i64) -> (CallStatus, Option<FailureReason>) {
        final_outcome(EndFacts {
            dialstatus,
            cause: Some(cause),
            ..EndFacts::default()
        })
    }

    #[test]
    fn busy_callee_ends_busy_even_when_cause_is_zero() {
        assert_eq!(ended(Some("BUSY"), 0), (CallStatus::Busy, None));
        assert_eq!(ended(None, 17), (CallStatus::Busy, None));
    }

    #[test]
    fn congestion_is_read_from_dialstatus_or_cause() {
        let congestion = (CallStatus::Failed, Some(FailureReason::Congestion));
        assert_eq!(ended(Some("CONGESTION"), 0), congestion);
        for cause in [34, 38, 41, 42, 44] {
            assert_eq!(ended(None, cause), congestion);
        }
    }

    #[test]
    fn misleading_noanswer_dialstatus_yields_to_the_cause() {
        assert_eq!(
            ended(Some("NOANSWER"), 1),
            (CallStatus::Failed, Some(FailureReason::InvalidNumber))
        );
        assert_eq!(
            ended(Some("NOANSWER"), 21),
            (CallStatus::Failed, Some(FailureReason::Rejected))
        );
    }

    #[test]
    fn ring_timeout_is_no_answer() {
        assert_eq!(ended(Some("RINGING"), 19), (CallStatus::NoAnswer, None));
        assert_eq!(ended(None, 18), (CallStatus::NoAnswer, None));
    }

    #[test]
    fn unavailable_causes_fail_as_unavailable() {
        for cause in [3, 20, 27, 2, 102] {
            assert_eq!(
                ended(None, cause),
                (CallStatus::Failed, Some(FailureReason::Unavailable))
            );
        }
    }

    #[test]
    fn our_cancel_before_answer_is_canceled() {
        let facts = EndFacts {
            cancel_requested: true,
            dialstatus: Some("NOANSWER"),
            cause: Some(16),
            ..EndFacts::default()
        };
        assert_eq!(final_outcome(facts), (CallStatus::Canceled, None));
    }

    #[test]
    fn anything_after_answer_is_completed() {
        let facts = EndFacts {
            answered: true,
            cancel_requested: true,
            dialstatus: Some("ANSWER"),
            cause: Some(16),
            rang_out: false,
        };
        assert_eq!(final_outcome(facts), (CallStatus::Completed, None));
    }

    #[test]
    fn a_vanished_channel_with_nothing_known_is_an_outcome_lost() {
        assert_eq!(
            final_outcome(EndFacts::default()),
            (CallStatus::Failed, Some(FailureReason::OutcomeLost))
        );
        let busy_then_lost = EndFacts {
            dialstatus: Some("BUSY"),
            ..EndFacts::default()
        };
        assert_eq!(final_outcome(busy_then_lost), (CallStatus::Busy, None));
    }

    #[test]
    fn a_ringing_call_gone_unseen_after_its_ring_timeout_did_not_answer() {
        let rang_out = EndFacts {
            dialstatus: Some("RINGING"),
            rang_out: true,
            ..EndFacts::default()
        };
        assert_eq!(final_outcome(rang_out), (CallStatus::NoAnswer, None));
    }
}
