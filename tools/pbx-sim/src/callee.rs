//! The far end of each number range, like the `test-pstn` context of the recorded
//! Asterisk's `extensions.conf`. Times are in simulated seconds.

/// How a callee reacts to being dialed.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Callee {
    /// The dial fails at once, with no ringing.
    Fails(Failure),
    /// Rings, and answers after `answer_after` seconds unless it never does.
    Rings {
        answer_after: Option<f64>,
        after_answer: Vec<Action>,
    },
    /// Answers without ringing.
    AnswersAtOnce { after_answer: Vec<Action> },
}

/// An immediate failure as our own channel sees it: the cause on our channel differs
/// from the callee's (busy is cause 17 on the far half but 0 on ours).
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Failure {
    pub dialstatus: &'static str,
    pub cause: u16,
    /// Whether a `ChannelHangupRequest` with `cause` precedes the final `Dial`.
    pub hangup_request_first: bool,
}

/// Something the callee does at `at` seconds after answering.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Action {
    pub at: f64,
    pub kind: ActionKind,
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) enum ActionKind {
    SendDtmf {
        digit: &'static str,
        duration_ms: u64,
    },
    Hangup {
        cause: u16,
    },
}

impl Callee {
    /// The callee behind `number` (the part of the endpoint between `/` and `@`).
    pub(crate) fn for_number(number: &str) -> Self {
        match number_range(number) {
            Some("001") => Self::Rings {
                answer_after: Some(1.0),
                after_answer: vec![hangup(2.0)],
            },
            Some("002") => Self::Fails(Failure {
                dialstatus: "BUSY",
                cause: 0,
                hangup_request_first: false,
            }),
            Some("003") => Self::Rings {
                answer_after: None,
                after_answer: Vec::new(),
            },
            Some("004") => Self::Fails(Failure {
                dialstatus: "CONGESTION",
                cause: 0,
                hangup_request_first: false,
            }),
            Some("006") => Self::Fails(Failure {
                dialstatus: "NOANSWER",
                cause: 21,
                hangup_request_first: true,
            }),
            Some("007") => Self::Rings {
                answer_after: Some(1.0),
                after_answer: vec![
                    Action {
                        at: 2.0,
                        kind: ActionKind::SendDtmf {
                            digit: "1",
                            duration_ms: 100,
                        },
                    },
                    hangup(8.0),
                ],
            },
            // Not in the recorded dialplan: ours (tests/asterisk/extensions.conf).
            Some("009") => Self::Rings {
                answer_after: Some(1.0),
                after_answer: vec![hangup(60.0)],
            },
            Some("008") => Self::AnswersAtOnce {
                after_answer: vec![hangup(60.0)],
            },
            _ => Self::Fails(Failure {
                dialstatus: "NOANSWER",
                cause: 1,
                hangup_request_first: true,
            }),
        }
    }
}

fn hangup(at: f64) -> Action {
    Action {
        at,
        kind: ActionKind::Hangup { cause: 16 },
    }
}

/// The three digits after `+1555` when `number` matches `_+1555NNNXXXX`.
fn number_range(number: &str) -> Option<&str> {
    let rest = number.strip_prefix("+1555")?;
    if rest.len() == 7 && rest.bytes().all(|b| b.is_ascii_digit()) {
        rest.get(..3)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_follow_the_test_pstn_dialplan() {
        assert!(matches!(
            Callee::for_number("+15550010001"),
            Callee::Rings {
                answer_after: Some(_),
                ..
            }
        ));
        assert!(matches!(
            Callee::for_number("+15550020001"),
            Callee::Fails(Failure {
                dialstatus: "BUSY",
                cause: 0,
                ..
            })
        ));
        assert!(matches!(
            Callee::for_number("+15550030001"),
            Callee::Rings {
                answer_after: None,
                ..
            }
        ));
        assert!(matches!(
            Callee::for_number("+15550080001"),
            Callee::AnswersAtOnce { .. }
        ));
    }

    #[test]
    fn numbers_outside_the_ranges_are_unallocated() {
        for number in [
            "+15550100001",
            "15550010001",
            "+1555001000",
            "+1555001000x",
            "1000",
        ] {
            assert_eq!(
                Callee::for_number(number),
                Callee::Fails(Failure {
                    dialstatus: "NOANSWER",
                    cause: 1,
                    hangup_request_first: true,
                }),
                "{number}"
            );
        }
    }
}
