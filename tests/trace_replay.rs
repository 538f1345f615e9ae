//! Every recorded trace, replayed into the bridge core, gives the right final status.

use std::sync::Arc;

use chrono::Utc;
use dialer_ari::AriEvent;
use dialer_bridge::CallEvents;
use dialer_core::domain::{Annotation, Call, CallPolicy, CallRequest, CallStatus, Transition};
use dialer_core::metrics::Metrics;
use dialer_core::store::{CallReads, CallStore, MemoryStore};
use integration::recording::RecordingPbx;
use integration::traces::{self, Step, Trace};
use uuid::Uuid;

struct Replayed {
    call: Call,
    actions: Vec<String>,
}

/// Creates the call the trace's originate describes (dialing), replays every event in
/// order, and records a cancel where the trace's client hung up.
async fn replay(trace: &Trace) -> Replayed {
    let store = Arc::new(MemoryStore::new());
    let pbx = Arc::new(RecordingPbx::default());
    let events = CallEvents::new(store.clone(), pbx.clone(), Arc::new(Metrics::new()));
    let id = Uuid::parse_str(&trace.channel_id).expect("trace channel id is a UUID");
    let call = call_for(trace, id);
    store.insert_call(&call).await.expect("insert");
    store
        .transition(id, &Transition::to(CallStatus::Dialing, Utc::now()))
        .await
        .expect("dialing");
    for step in &trace.steps {
        match step {
            Step::Event(event) => {
                let parsed = AriEvent::parse(&event.to_string()).unwrap_or_else(|e| {
                    panic!("{}: event does not parse: {e}: {event}", trace.name)
                });
                events
                    .handle(&parsed)
                    .await
                    .expect("in-process store never fails");
            }
            Step::Request { method, .. } if method == "DELETE" => {
                store
                    .annotate(id, &Annotation::CancelRequested(Utc::now()))
                    .await
                    .expect("annotate");
            }
            Step::Request { .. } => {}
        }
    }
    // Call control runs on spawned tasks; let them finish.
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    Replayed {
        call: store.get_call(id).await.expect("get").expect("call exists"),
        actions: pbx.actions(),
    }
}

pub(crate) fn call_for(trace: &Trace, id: Uuid) -> Call {
    let args = trace.originate["appArgs"].as_str().unwrap_or("ivr");
    let media: Vec<String> = trace
        .steps
        .iter()
        .find_map(|s| match s {
            Step::Request { path, params, .. } if path.ends_with("/play") => params["media"]
                .as_str()
                .map(|m| m.split(',').map(str::to_owned).collect()),
            _ => None,
        })
        .unwrap_or_default();
    let playback = args.starts_with("playback") || args == "gather";
    let endpoint = trace.originate["endpoint"].as_str().expect("endpoint");
    let number = endpoint
        .trim_start_matches("Local/")
        .split('@')
        .next()
        .expect("number");
    let request = CallRequest {
        phone_number: number.to_owned(),
        mode: Some(if playback { "playback" } else { "ivr" }.into()),
        media: playback.then_some(media),
        gather_dtmf: Some(args == "gather"),
        ..CallRequest::default()
    };
    request
        .validate(&policy(), "replay", id, Utc::now())
        .expect("trace request is valid")
}

fn policy() -> CallPolicy {
    CallPolicy {
        dial_endpoint: "Local/{number}@test-pstn".into(),
        ..CallPolicy::default()
    }
}

fn outcome(replayed: &Replayed) -> (&str, Option<String>) {
    (
        replayed.call.status.as_str(),
        replayed.call.failure_reason.as_ref().map(|r| r.to_text()),
    )
}

#[tokio::test]
async fn every_recorded_trace_ends_in_the_right_status() {
    let expected: &[(&str, &str, Option<&str>)] = &[
        // Originated straight into the dialplan: the app hears nothing, which is why
        // calls are originated into the Stasis app.
        ("dialplan_answered_app_only", "dialing", None),
        ("dialplan_answered_subscribe_all", "completed", None),
        ("dialplan_busy_subscribe_all", "busy", None),
        ("stasis_busy", "busy", None),
        ("stasis_callee_hangs_up_during_playback", "completed", None),
        ("stasis_cancel_while_ringing", "canceled", None),
        ("stasis_congestion", "failed", Some("congestion")),
        ("stasis_continue_answered", "completed", None),
        ("stasis_continue_answered_with_prompts", "completed", None),
        ("stasis_dtmf", "completed", None),
        ("stasis_dtmf_during_playback", "completed", None),
        ("stasis_hangup_while_up", "completed", None),
        ("stasis_no_answer", "no_answer", None),
        ("stasis_playback", "completed", None),
        ("stasis_rejected", "failed", Some("rejected")),
        ("stasis_unallocated", "failed", Some("invalid_number")),
    ];
    let all = traces::all();
    assert_eq!(all.len(), expected.len(), "every trace has an expectation");
    for (trace, (name, status, reason)) in all.iter().zip(expected) {
        assert_eq!(&trace.name, name);
        let replayed = replay(trace).await;
        assert_eq!(
            outcome(&replayed),
            (*status, reason.map(str::to_owned)),
            "{name}"
        );
    }
}

#[tokio::test]
async fn busy_callee_ends_busy_even_when_cause_is_zero() {
    let replayed = replay(&traces::load("stasis_busy")).await;
    assert_eq!(replayed.call.status, CallStatus::Busy);
    // Asterisk's cause 0 is "no cause": the record shows none rather than "Unknown",
    // and the Dial status the outcome came from.
    assert_eq!(replayed.call.cause, None);
    assert_eq!(replayed.call.cause_txt, None);
    assert_eq!(replayed.call.dialstatus.as_deref(), Some("BUSY"));
    assert!(replayed.call.ended_at.is_some());
    assert_eq!(replayed.call.answered_at, None);
}

#[tokio::test]
async fn unallocated_number_fails_despite_a_noanswer_dialstatus() {
    let replayed = replay(&traces::load("stasis_unallocated")).await;
    assert_eq!(
        outcome(&replayed),
        ("failed", Some("invalid_number".to_owned()))
    );
    assert_eq!(replayed.call.dialstatus.as_deref(), Some("NOANSWER"));
    assert_eq!(replayed.call.cause, Some(1));
}

#[tokio::test]
async fn answered_ivr_call_is_continued_into_its_context() {
    let replayed = replay(&traces::load("stasis_continue_answered")).await;
    assert_eq!(replayed.actions, vec!["continue outbound-ivr s 1"]);
    let call = replayed.call;
    assert!(call.ringing_at.is_some() && call.answered_at.is_some() && call.ended_at.is_some());
    assert!(call.duration_seconds().is_some());
}

#[tokio::test]
async fn answered_playback_call_plays_its_media_then_hangs_up() {
    let trace = traces::load("stasis_playback");
    let replayed = replay(&trace).await;
    let id = &trace.channel_id;
    assert_eq!(
        replayed.actions,
        vec![
            format!("play {id}-p1 sound:hello-world"),
            "hangup".to_owned()
        ]
    );
}

#[tokio::test]
async fn dtmf_digits_are_recorded_on_the_call() {
    let replayed = replay(&traces::load("stasis_dtmf")).await;
    assert_eq!(replayed.call.dtmf, "1");
    assert_eq!(replayed.call.status, CallStatus::Completed);
}

/// Asterisk reports the playback that our hang-up on the digit cut short as `failed`,
/// after the hang-up request: the sound was there, so nothing is media the PBX lacks.
#[tokio::test]
async fn a_playback_cut_short_by_the_hang_up_on_a_digit_is_not_media_the_pbx_lacks() {
    let trace = traces::load("stasis_dtmf_during_playback");
    let replayed = replay(&trace).await;
    assert_eq!(replayed.call.dtmf, "1");
    assert_eq!(replayed.call.status, CallStatus::Completed);
    assert!(
        replayed.call.media_failed.is_empty(),
        "{:?}",
        replayed.call.media_failed
    );
    assert!(
        replayed.actions.contains(&"hangup".to_owned()),
        "{:?}",
        replayed.actions
    );
}

#[tokio::test]
async fn other_channels_in_a_subscribe_all_trace_are_ignored() {
    let trace = traces::load("dialplan_answered_subscribe_all");
    let replayed = replay(&trace).await;
    assert_eq!(replayed.call.status, CallStatus::Completed);
    assert!(
        replayed.actions.is_empty(),
        "no control for a dialplan-originated call"
    );
}
