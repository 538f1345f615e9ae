//! The `outbound-ivr` context of the recorded Asterisk, run after `continue` or a
//! dialplan originate. No other context exists here.

/// One dialplan priority: the application it runs and what that does to the call.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Step {
    pub app: &'static str,
    pub data: String,
    pub effect: Effect,
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Effect {
    /// Go on to the next priority at once.
    Next,
    /// Go on after this many simulated seconds.
    Wait(f64),
    /// Play a prompt of this many simulated seconds, set a variable, then go on.
    Play {
        seconds: f64,
        name: &'static str,
        value: &'static str,
    },
    Hangup(u16),
    Goto {
        exten: &'static str,
        priority: i64,
    },
}

/// The step at `context,exten,priority`, or `None` where the dialplan has nothing (the
/// channel then leaves the dialplan and is hung up).
pub(crate) fn step(context: &str, exten: &str, priority: i64, caller_number: &str) -> Option<Step> {
    if context != "outbound-ivr" {
        return None;
    }
    if exten == "s" {
        return match priority {
            1 => Some(Step {
                app: "NoOp",
                data: format!("IVR for {caller_number}"),
                effect: Effect::Next,
            }),
            // As an Asterisk with the core sounds plays it (the prompt is 1.42 s long):
            // the `001` callee, who hangs up 2 s after answering, ends the call first.
            2 => Some(Step {
                app: "Playback",
                data: "hello-world".to_owned(),
                effect: Effect::Play {
                    seconds: crate::call::media_seconds("sound:hello-world"),
                    name: "PLAYBACKSTATUS",
                    value: "SUCCESS",
                },
            }),
            3 => Some(Step {
                app: "Wait",
                data: "1".to_owned(),
                effect: Effect::Wait(1.0),
            }),
            4 => Some(Step {
                app: "Hangup",
                data: "16".to_owned(),
                effect: Effect::Hangup(16),
            }),
            _ => None,
        };
    }
    (priority == 1 && matches_any_number(exten)).then(|| Step {
        app: "Goto",
        data: "s,1".to_owned(),
        effect: Effect::Goto {
            exten: "s",
            priority: 1,
        },
    })
}

/// Asterisk's `_X.` or `_+X.`: a digit (after an optional `+`) and at least one more
/// character.
fn matches_any_number(exten: &str) -> bool {
    let digits = exten.strip_prefix('+').unwrap_or(exten);
    digits.len() >= 2 && digits.bytes().next().is_some_and(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ivr_runs_noop_playback_wait_hangup() {
        let apps: Vec<&str> = (1..=4)
            .filter_map(|p| step("outbound-ivr", "s", p, "+1"))
            .map(|s| s.app)
            .collect();
        assert_eq!(apps, ["NoOp", "Playback", "Wait", "Hangup"]);
        assert_eq!(
            step("outbound-ivr", "s", 1, "+15550000000").map(|s| s.data),
            Some("IVR for +15550000000".to_owned())
        );
        assert_eq!(step("outbound-ivr", "s", 5, ""), None);
    }

    #[test]
    fn numbers_go_to_s_and_other_places_are_empty() {
        assert!(matches!(
            step("outbound-ivr", "+15550010001", 1, "").map(|s| s.effect),
            Some(Effect::Goto { exten: "s", .. })
        ));
        assert_eq!(step("outbound-ivr", "x", 1, ""), None);
        assert_eq!(step("default", "s", 1, ""), None);
    }
}
