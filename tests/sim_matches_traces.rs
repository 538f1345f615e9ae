//! The simulated PBX, driven through the real ARI adapter, produces the same sequence of
//! events on the call's own channel as the real Asterisk did in each recorded trace.

use std::time::Duration;

use dialer_ari::socket::{self, EventStream};
use dialer_ari::{AriClient, AriSettings};
use dialer_core::domain::validation::{CallerId, Context, Extension, Media, Variables};
use dialer_core::pbx::{OriginateSpec, Pbx, PbxError};
use dialer_core::secrets::Secret;
use futures_util::StreamExt;
use integration::traces::{self, Step, Trace, own_channel_signature};
use pbx_sim::{SimConfig, SimHandle};
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;
use uuid::Uuid;

const SCALE: f64 = 0.02;

/// The simulated time a trace runs at: real time where the order of its events hangs on
/// less than a second (the IVR's prompt ends 0.58 s before the callee hangs up: 12 ms at
/// `SCALE`, less than a loaded machine may take to send the `continue`).
fn scale_of(trace: &Trace) -> f64 {
    if trace.name.ends_with("_with_prompts") {
        1.0
    } else {
        SCALE
    }
}

async fn sim(scale: f64) -> (SimHandle, AriSettings) {
    let handle = pbx_sim::start(SimConfig {
        time_scale: scale,
        ..SimConfig::default()
    })
    .await
    .expect("sim starts");
    let settings = AriSettings {
        url: handle.base_url(),
        username: "asterisk".into(),
        password: Secret::new("asterisk"),
        app: "dialer".into(),
        timeout: std::time::Duration::from_secs(10),
    };
    (handle, settings)
}

/// When the trace's client sent its hang-up: after which event, or at what time.
enum HangupCue {
    AfterEvent(&'static str),
    At(Duration),
}

fn hangup_cue(trace: &Trace) -> Option<HangupCue> {
    let scale = scale_of(trace);
    let mut last_event_type = String::new();
    for step in &trace.steps {
        match step {
            Step::Event(e) => {
                let on_call = own_channel_signature(e, &trace.channel_id).is_some()
                    || e["playback"]["target_uri"].as_str()
                        == Some(&format!("channel:{}", trace.channel_id));
                if on_call {
                    last_event_type = e["type"].as_str().unwrap_or_default().to_owned();
                }
            }
            Step::Request { method, at, .. } if method == "DELETE" => {
                return Some(match last_event_type.as_str() {
                    "PlaybackFinished" => HangupCue::AfterEvent("PlaybackFinished"),
                    "ChannelDtmfReceived" => HangupCue::AfterEvent("ChannelDtmfReceived"),
                    _ => HangupCue::At(Duration::from_secs_f64(at * scale)),
                });
            }
            Step::Request { .. } => {}
        }
    }
    None
}

/// Plays the trace's client against the simulator and returns the own-channel sequence.
async fn run_like_the_trace(trace: &Trace) -> Vec<(String, String, String, Option<i64>)> {
    let (sim, settings) = sim(scale_of(trace)).await;
    let mut events: EventStream = socket::connect(&settings, &settings.password)
        .await
        .expect("event socket");
    let ari = AriClient::new(settings).expect("client");
    let id = Uuid::new_v4();
    let channel_id = id.to_string();
    let originate = &trace.originate;
    let variables = Variables::default();
    let caller_id = originate["callerId"]
        .as_str()
        .map(|c| CallerId::parse(c).expect("the trace's caller id"));
    ari.originate(&OriginateSpec {
        call_id: id,
        endpoint: originate["endpoint"].as_str().expect("endpoint"),
        app_args: originate["appArgs"].as_str().unwrap_or_default(),
        caller_id: caller_id.as_ref(),
        timeout_seconds: originate["timeout"].as_u64().unwrap_or(30),
        variables: &variables,
    })
    .await
    .expect("originate");
    let started = tokio::time::Instant::now();
    let cue = hangup_cue(trace);
    let mut sequence = Vec::new();
    let mut hung_up = false;
    let deadline = started + Duration::from_secs(10);
    loop {
        let timer = match (&cue, hung_up) {
            (Some(HangupCue::At(at)), false) => started + *at,
            _ => deadline,
        };
        let frame = tokio::select! {
            frame = events.next() => frame,
            _ = tokio::time::sleep_until(timer) => {
                assert!(tokio::time::Instant::now() < deadline, "{}: no ChannelDestroyed", trace.name);
                hung_up = true;
                ari.hangup(id).await.expect("hangup");
                continue;
            }
        };
        let Some(Ok(Message::Text(text))) = frame else {
            continue;
        };
        let event: Value = serde_json::from_str(&text).expect("event JSON");
        let kind = event["type"].as_str().unwrap_or_default().to_owned();
        if kind == "StasisStart" {
            perform_stasis_requests(trace, &ari, id).await;
        }
        if let Some(HangupCue::AfterEvent(after)) = cue
            && after == kind
            && !hung_up
        {
            hung_up = true;
            ari.hangup(id).await.expect("hangup");
        }
        if let Some(signature) = own_channel_signature(&event, &channel_id) {
            let done = signature.0 == "ChannelDestroyed";
            sequence.push(signature);
            if done {
                break;
            }
        }
    }
    sim.shutdown().await;
    sequence
}

async fn perform_stasis_requests(trace: &Trace, ari: &AriClient, id: Uuid) {
    for step in &trace.steps {
        let Step::Request { path, params, .. } = step else {
            continue;
        };
        if path.ends_with("/continue") {
            let priority = params["priority"]
                .as_u64()
                .and_then(|p| u32::try_from(p).ok())
                .unwrap_or(1);
            let context = Context::from_record(params["context"].as_str().unwrap_or_default())
                .expect("the trace's context");
            let extension = Extension::parse(params["extension"].as_str().unwrap_or_default())
                .expect("the trace's extension");
            ari.continue_in_dialplan(id, &context, &extension, priority)
                .await
                .expect("continue");
        } else if path.ends_with("/play") {
            let media: Vec<Media> = params["media"]
                .as_str()
                .unwrap_or_default()
                .split(',')
                .map(|m| Media::parse(m).expect("the trace's media"))
                .collect();
            ari.play(id, &format!("{id}-p1"), &media)
                .await
                .expect("play");
        }
    }
}

/// Recorded on an Asterisk without its core sounds, where the IVR's prompt fails at
/// once. The simulator plays prompts as an Asterisk with them does (ours, and any in
/// production): `stasis_continue_answered_with_prompts` is its trace.
const RECORDED_WITHOUT_PROMPTS: &[&str] = &["stasis_continue_answered"];

#[tokio::test]
async fn simulator_reproduces_every_stasis_trace_on_the_calls_channel() {
    for trace in traces::all()
        .iter()
        .filter(|t| t.name.starts_with("stasis_"))
        .filter(|t| !RECORDED_WITHOUT_PROMPTS.contains(&t.name.as_str()))
    {
        let expected = trace.own_channel_sequence();
        let actual = run_like_the_trace(trace).await;
        assert_eq!(actual, expected, "{}", trace.name);
    }
}

#[tokio::test]
async fn simulator_answers_http_errors_like_asterisk() {
    let (sim, settings) = sim(SCALE).await;
    let ari = AriClient::new(settings.clone()).expect("client");
    assert!(
        !ari.app_connected().await.expect("reachable"),
        "no socket: app not found"
    );
    let _socket = socket::connect(&settings, &settings.password)
        .await
        .expect("socket");
    assert!(ari.app_connected().await.expect("reachable"));
    assert_eq!(ari.channel(Uuid::nil()).await.expect("reachable"), None);
    assert!(matches!(
        ari.hangup(Uuid::nil()).await,
        Err(PbxError::NotFound)
    ));
    let wrong_password = AriClient::new(AriSettings {
        password: Secret::new("wrong"),
        ..settings.clone()
    })
    .expect("client");
    assert!(matches!(
        wrong_password.app_connected().await,
        Err(PbxError::Rejected { status: 401, .. })
    ));
    let refused = socket::connect(&settings, &Secret::new("wrong")).await;
    assert!(
        matches!(refused, Err(socket::SocketError::Refused(401))),
        "{refused:?}"
    );
    let vars = Variables::default();
    let bogus = ari
        .originate(&OriginateSpec {
            call_id: Uuid::new_v4(),
            endpoint: "Bogus/123",
            app_args: "ivr",
            caller_id: None,
            timeout_seconds: 30,
            variables: &vars,
        })
        .await;
    assert!(
        matches!(bogus, Err(PbxError::Rejected { status: 500, .. })),
        "{bogus:?}"
    );
    let id = Uuid::new_v4();
    let spec = OriginateSpec {
        call_id: id,
        endpoint: "Local/+15550080001@test-pstn",
        app_args: "ivr",
        caller_id: None,
        timeout_seconds: 30,
        variables: &vars,
    };
    ari.originate(&spec).await.expect("first originate");
    let duplicate = ari.originate(&spec).await;
    assert!(
        matches!(duplicate, Err(PbxError::Rejected { status: 409, .. })),
        "{duplicate:?}"
    );
    assert!(ari.channel(id).await.expect("reachable").is_some());
    sim.shutdown().await;
}
