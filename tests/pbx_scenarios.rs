//! One scenario table, run against the simulated PBX and against a real Asterisk
//! (`scripts/asterisk`, the test PSTN of `tests/asterisk/`), with the same assertions:
//! where the two disagree, Asterisk is right and the simulator is fixed. Every call goes
//! through the real `local` binary started from environment variables, on the in-process
//! store or on PostgreSQL. Then what only a real PBX can show: pacing as the PBX itself
//! saw it (its own channel creation times and `GET /ari/channels`), and faults: an
//! originate the PBX acts on after the API gave up on it, a cut WebSocket, the bridge
//! killed mid-call, Asterisk killed and restarted with calls up and ringing.
//!
//! Tests that need Asterisk are named for it (`on_asterisk`), those that need PostgreSQL
//! or moto for it (`postgres`, `dynamodb`): the test command leaves out, and names, a
//! group whose service is missing.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use chrono::{DateTime, FixedOffset};
use integration::api::Api;
use integration::ari_proxy::AriProxy;
use integration::asterisk::{self, Asterisk, ari_channels};
use integration::binaries::{Process, WEBHOOK_SECRET};
use integration::receiver::{Receiver, signature_verifies};
use integration::{ADMIN, pg};
use pbx_sim::{SimConfig, SimHandle};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// Generous: CI runs this on two loaded cores. A call that ends sooner passes sooner.
const LIMIT: Duration = Duration::from_secs(45);

#[tokio::test]
async fn each_callee_and_call_option_ends_rightly_on_the_simulator() {
    let pbx = Pbx::simulated().await;
    run_scenario_table(&pbx, None).await;
}

#[tokio::test]
async fn each_callee_and_call_option_ends_rightly_on_asterisk() {
    let pbx = Pbx::asterisk();
    run_scenario_table(&pbx, None).await;
}

#[tokio::test]
async fn each_callee_and_call_option_ends_rightly_on_asterisk_with_postgres() {
    let pbx = Pbx::asterisk();
    let schema = pg::fresh_schema().await;
    run_scenario_table(&pbx, Some(&schema.url)).await;
}

#[tokio::test]
async fn queued_calls_are_paced_as_the_pbx_sees_them_on_the_simulator() {
    paced_at_the_pbx(&Pbx::simulated().await).await;
}

#[tokio::test]
async fn queued_calls_are_paced_as_the_pbx_sees_them_on_asterisk() {
    paced_at_the_pbx(&Pbx::asterisk()).await;
}

#[tokio::test]
async fn an_unconfirmed_originate_is_followed_to_its_end_on_the_simulator() {
    unconfirmed_originate(&Pbx::simulated().await).await;
}

#[tokio::test]
async fn an_unconfirmed_originate_is_followed_to_its_end_on_asterisk() {
    unconfirmed_originate(&Pbx::asterisk()).await;
}

#[tokio::test]
async fn a_cut_websocket_loses_no_outcome_on_the_simulator() {
    websocket_cut(&Pbx::simulated().await).await;
}

#[tokio::test]
async fn a_cut_websocket_loses_no_outcome_on_asterisk() {
    websocket_cut(&Pbx::asterisk()).await;
}

#[tokio::test]
async fn a_bridge_killed_mid_call_settles_every_call_after_restart_on_the_simulator_with_postgres()
{
    bridge_killed_mid_call(&Pbx::simulated().await).await;
}

#[tokio::test]
async fn a_bridge_killed_mid_call_settles_every_call_after_restart_on_asterisk_with_postgres() {
    bridge_killed_mid_call(&Pbx::asterisk()).await;
}

#[tokio::test]
async fn an_answered_call_the_bridge_never_drove_is_driven_after_restart_on_the_simulator_with_postgres()
 {
    undriven_call_resumed(&Pbx::simulated().await).await;
}

#[tokio::test]
async fn an_answered_call_the_bridge_never_drove_is_driven_after_restart_on_asterisk_with_postgres()
{
    undriven_call_resumed(&Pbx::asterisk()).await;
}

/// The AWS stack's shape: calls placed by the originate side's own code on DynamoDB
/// (moto), followed by the real `bridge` binary, which is SIGKILLed while one call plays
/// its media and one rings, and started again: its reconciliation reads the active calls
/// from DynamoDB's index, and each call ends as it really did.
#[tokio::test]
async fn a_bridge_killed_mid_call_settles_every_call_after_restart_on_asterisk_with_dynamodb() {
    use dialer_core::domain::{CallPolicy, CallRequest};
    use std::sync::Arc;

    let pbx = Pbx::asterisk();
    let (store, tables, _) = integration::aws::dynamo_store().await;
    let store = Arc::new(store);
    let (ari_url, password) = (pbx.ari_url(), pbx.password());
    let endpoint = integration::aws::endpoint();
    let mut bridge = Process::bridge(&[
        ("ARI_HTTP_URL", ari_url.as_str()),
        ("ARI_USERNAME", asterisk::USER),
        ("ARI_PASSWORD", password.as_str()),
        ("CALLS_TABLE", tables.calls.as_str()),
        ("USERS_TABLE", tables.users.as_str()),
        ("AWS_ENDPOINT_URL", endpoint.as_str()),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
    ])
    .await;
    let ari = dialer_ari::AriClient::new(dialer_ari::AriSettings {
        password: dialer_core::secrets::Secret::new(&password),
        ..integration::bridge::ari_settings(ari_url.clone())
    })
    .expect("ARI client");
    let calls = dialer_core::service::CallService::new(
        store.clone(),
        store.clone(),
        Arc::new(dialer_core::webhooks::AcceptAll),
        Arc::new(ari),
        CallPolicy {
            dial_endpoint: "Local/{number}@test-pstn".into(),
            ..CallPolicy::default()
        },
        Arc::new(dialer_core::metrics::Metrics::new()),
        dialer_core::service::Pacer::new(store.clone(), Default::default()),
    );
    let place = |request: CallRequest| {
        let calls = &calls;
        async move {
            calls
                .place_call("alice", request, None)
                .await
                .expect("placed")
                .id
        }
    };
    let playing = place(CallRequest {
        phone_number: "+15550080001".into(),
        mode: Some("playback".into()),
        media: Some(vec!["sound:hello-world".into(); 3]),
        ..CallRequest::default()
    })
    .await;
    let ringing = place(CallRequest {
        phone_number: "+15550030001".into(),
        timeout: Some(5000),
        ..CallRequest::default()
    })
    .await;
    let status_of = |id| {
        let store = store.clone();
        async move {
            dialer_core::store::CallReads::get_call(store.as_ref(), id)
                .await
                .expect("read")
                .expect("the call")
        }
    };
    let deadline = Instant::now() + LIMIT;
    while status_of(playing).await.answered_at.is_none()
        || status_of(ringing).await.ringing_at.is_none()
    {
        assert!(Instant::now() < deadline, "never answered and ringing");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bridge.kill();
    tokio::time::sleep(Duration::from_millis(300)).await;
    bridge.restart().await;

    let until_final = |id| async move {
        loop {
            let call = status_of(id).await;
            if call.status.is_final() {
                return call;
            }
            assert!(Instant::now() < deadline, "not final: {call:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let call = until_final(playing).await;
    assert_eq!(
        call.status.as_str(),
        "completed",
        "{call:?}\n{}",
        bridge.log_tail()
    );
    let duration = call.duration_seconds().unwrap_or_default();
    assert!((3.9..=20.0).contains(&duration), "{call:?}");
    assert!(call.media_failed.is_empty(), "{call:?}");
    let call = until_final(ringing).await;
    assert_eq!(
        call.status.as_str(),
        "no_answer",
        "{call:?}\n{}",
        bridge.log_tail()
    );
}

/// Asterisk SIGKILLed with one call up and one ringing, then started again: both calls
/// end, rightly (the answered one `completed`, the one that never answered
/// `outcome_lost`: nobody can know how it would have ended), and nothing is dialed again.
#[tokio::test]
async fn calls_up_and_ringing_when_the_pbx_is_killed_end_rightly_and_none_is_dialed_twice_on_asterisk()
 {
    let mut pbx = Pbx::asterisk();
    let rig = Rig::start(&pbx, None, &[], false).await;
    let up = rig.call(json!({ "phone_number": "+15550080001" })).await;
    let ringing = rig
        .call(json!({ "phone_number": "+15550030001", "timeout": 60000 }))
        .await;
    rig.wait_status(&up, "answered").await;
    rig.wait_status(&ringing, "ringing").await;

    let Pbx::Asterisk(asterisk) = &mut pbx else {
        unreachable!()
    };
    asterisk.kill();
    tokio::time::sleep(Duration::from_millis(500)).await;
    asterisk.restart().await;

    let up_doc = rig.until_final(&up).await;
    assert_eq!(up_doc["status"], "completed", "{up_doc}");
    assert!(up_doc["answered_at"].is_string(), "{up_doc}");
    let ringing_doc = rig.until_final(&ringing).await;
    assert_eq!(ringing_doc["status"], "failed", "{ringing_doc}");
    assert_eq!(
        ringing_doc["failure_reason"], "outcome_lost",
        "{ringing_doc}"
    );
    assert!(ringing_doc["answered_at"].is_null(), "{ringing_doc}");
    // The restarted Asterisk is asked about both and holds no channel of either, now
    // or a moment later: neither call was placed again.
    for _ in 0..10 {
        let ours = our_channels(&asterisk.channels().await);
        assert!(ours.is_empty(), "dialed again after the restart: {ours:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A new call goes through the restarted Asterisk as usual.
    let after = rig.call(json!({ "phone_number": "+15550020001" })).await;
    assert_eq!(rig.until_final(&after).await["status"], "busy");
    rig.assert_webhooks(&[&up, &ringing, &after]).await;
}

// ---------------------------------------------------------------------------------------
// The scenario table

/// What to do to a call while it runs.
#[derive(Clone, Copy, Debug)]
enum Act {
    Nothing,
    /// `DELETE` it once it rings.
    CancelWhenRinging,
    /// `DELETE` it once it is answered.
    HangUpWhenAnswered,
}

struct Scenario {
    name: &'static str,
    body: Value,
    act: Act,
    status: &'static str,
    reason: Option<&'static str>,
    answered: bool,
    dtmf: Option<&'static str>,
    media_failed: &'static [&'static str],
    /// Talk time bounds in seconds, for answered calls.
    duration: Option<(f64, f64)>,
    attempts: usize,
}

impl Scenario {
    fn new(name: &'static str, body: Value, status: &'static str) -> Self {
        Self {
            name,
            body,
            act: Act::Nothing,
            status,
            reason: None,
            answered: false,
            dtmf: None,
            media_failed: &[],
            duration: None,
            attempts: 1,
        }
    }

    fn failed(name: &'static str, body: Value, reason: &'static str) -> Self {
        Self {
            reason: Some(reason),
            ..Self::new(name, body, "failed")
        }
    }

    fn answered(mut self, duration: (f64, f64)) -> Self {
        self.answered = true;
        self.duration = Some(duration);
        self
    }
}

/// `hello-world` lasts 1.42 s; the `001` callee hangs up 2 s after answering, the `007`
/// callee presses 1 two seconds after answering. Talk times are bounded loosely: the
/// bridge stamps an answer and an end when it handles them, later on a loaded machine.
fn scenarios() -> Vec<Scenario> {
    let in_5_s = (chrono::Utc::now() + chrono::Duration::seconds(5))
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    vec![
        // The IVR plays hello-world (1.42 s) and waits 1 s; the callee hangs up first,
        // at 2 s. An IVR whose prompt did not play would hang up at 1 s.
        Scenario::new(
            "answers, the IVR plays",
            json!({ "phone_number": "+15550010001", "caller_id": "MyCompany <+15550000000>" }),
            "completed",
        )
        .answered((1.5, 2.8)),
        Scenario::new("busy", json!({ "phone_number": "+15550020001" }), "busy"),
        Scenario::new(
            "no answer",
            json!({ "phone_number": "+15550030001", "timeout": 2000 }),
            "no_answer",
        ),
        Scenario::failed(
            "congestion",
            json!({ "phone_number": "+15550040001" }),
            "congestion",
        ),
        Scenario::failed(
            "not in service",
            json!({ "phone_number": "+15550050001" }),
            "invalid_number",
        ),
        Scenario::failed(
            "rejected",
            json!({ "phone_number": "+15550060001" }),
            "rejected",
        ),
        Scenario::failed(
            "unallocated",
            json!({ "phone_number": "+19990001111" }),
            "invalid_number",
        ),
        Scenario::new(
            "playback, then hang up",
            json!({ "phone_number": "+15550080001", "mode": "playback", "media": ["sound:hello-world"] }),
            "completed",
        )
        .answered((1.0, 2.4)),
        Scenario {
            media_failed: &["sound:missing-prompt"],
            ..Scenario::new(
                "playback of a sound the PBX lacks",
                json!({ "phone_number": "+15550080002", "mode": "playback", "media": ["sound:missing-prompt"] }),
                "completed",
            )
            .answered((0.0, 1.0))
        },
        // The digit ends the playback (the call hangs up on it), which the PBX reports
        // as a failed playback: that is not media the PBX lacks.
        Scenario {
            dtmf: Some("1"),
            ..Scenario::new(
                "DTMF gathered during playback",
                json!({
                    "phone_number": "+15550070001", "mode": "playback", "gather_dtmf": true,
                    "media": ["sound:hello-world", "sound:hello-world", "sound:hello-world"]
                }),
                "completed",
            )
            .answered((1.5, 3.0))
        },
        Scenario {
            act: Act::CancelWhenRinging,
            ..Scenario::new(
                "cancel while ringing",
                json!({ "phone_number": "+15550030002", "timeout": 30000 }),
                "canceled",
            )
        },
        Scenario {
            act: Act::HangUpWhenAnswered,
            ..Scenario::new(
                "hang up while up",
                json!({ "phone_number": "+15550080003" }),
                "completed",
            )
            .answered((0.0, 5.0))
        },
        Scenario::new(
            "max_duration",
            json!({ "phone_number": "+15550080004", "max_duration": 2000 }),
            "completed",
        )
        .answered((1.5, 3.2)),
        Scenario {
            attempts: 2,
            ..Scenario::new(
                "retried on busy",
                json!({
                    "phone_number": "+15550020002",
                    "retry": { "max_attempts": 2, "on": ["busy"], "delay_ms": 1000 }
                }),
                "busy",
            )
        },
        Scenario::new(
            "scheduled",
            json!({ "phone_number": "+15550020003", "send_at": in_5_s }),
            "busy",
        ),
    ]
}

async fn run_scenario_table(pbx: &Pbx, database_url: Option<&str>) {
    let rig = Rig::start(pbx, database_url, &[], false).await;
    let runs = scenarios().into_iter().map(|scenario| {
        let rig = &rig;
        async move {
            let id = rig.call(scenario.body.clone()).await;
            match scenario.act {
                Act::Nothing => {}
                Act::CancelWhenRinging => {
                    rig.wait_status(&id, "ringing").await;
                    rig.cancel(&id).await;
                }
                Act::HangUpWhenAnswered => {
                    rig.wait_status(&id, "answered").await;
                    rig.cancel(&id).await;
                }
            }
            let doc = rig.until_final(&id).await;
            (scenario, id, doc)
        }
    });
    let ended = futures_util::future::join_all(runs).await;
    let mut wrong = Vec::new();
    for (scenario, _, doc) in &ended {
        if let Err(why) = check(scenario, doc) {
            wrong.push(format!("{}: {why}\n  {doc}", scenario.name));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} on {}:\n{}\n{}",
        wrong.len(),
        pbx.name(),
        wrong.join("\n"),
        rig.server.log_tail()
    );
    let ids: Vec<&String> = ended.iter().map(|(_, id, _)| id).collect();
    rig.assert_webhooks(&ids).await;
}

fn check(scenario: &Scenario, doc: &Value) -> Result<(), String> {
    let expect = |ok: bool, what: &str| if ok { Ok(()) } else { Err(what.to_owned()) };
    expect(
        doc["status"] == scenario.status,
        &format!("status, not {}", scenario.status),
    )?;
    expect(
        doc["failure_reason"].as_str() == scenario.reason,
        &format!("failure_reason, not {:?}", scenario.reason),
    )?;
    expect(
        doc["is_completed"] == true && doc["is_active"] == false,
        "final flags",
    )?;
    expect(doc["ended_at"].is_string(), "ended_at")?;
    expect(
        doc["answered_at"].is_string() == scenario.answered,
        &format!("answered: {}", scenario.answered),
    )?;
    if let Some((low, high)) = scenario.duration {
        let duration = doc["duration"].as_f64().unwrap_or(-1.0);
        expect(
            (low..=high).contains(&duration),
            &format!("duration {duration} not within {low}..{high} s"),
        )?;
    } else {
        expect(doc["duration"].is_null(), "a duration without an answer")?;
    }
    expect(
        doc["dtmf"].as_str().filter(|d| !d.is_empty()) == scenario.dtmf,
        &format!("dtmf, not {:?}", scenario.dtmf),
    )?;
    let failed: Vec<&str> = doc["media_failed"]
        .as_array()
        .map(|items| items.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    expect(
        failed == scenario.media_failed,
        &format!("media_failed, not {:?}", scenario.media_failed),
    )?;
    let attempts = doc["attempts"].as_array().map_or(0, Vec::len);
    expect(
        attempts == scenario.attempts && doc["attempt_number"] == scenario.attempts,
        &format!("{} attempts", scenario.attempts),
    )?;
    if scenario.body.get("send_at").is_some() {
        let send_at = time(&scenario.body, "send_at");
        let dialed = doc["attempts"][0]["dialed_at"]
            .as_str()
            .map(|t| DateTime::parse_from_rfc3339(t).expect("RFC 3339"));
        expect(
            matches!((send_at, dialed), (Some(s), Some(d)) if d >= s),
            "dialed before its send_at",
        )?;
    }
    if !scenario.answered && scenario.status != "canceled" {
        // The PBX's own words are kept: the last Dial status or the hang-up cause.
        expect(
            doc["cause"].is_i64() || doc["dialstatus"].is_string(),
            "the raw cause, or the Dial status when the PBX gave no cause",
        )?;
        expect(doc["cause"] != 0, "no cause 0 (\"Unknown\")")?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Pacing, as the PBX saw it

/// Nine calls at once that each stay up 1.5 s, at most 2 new calls a second and 3 up at
/// once: Asterisk's own channel creation times and its channel list show both limits
/// held, and every call was dialed once.
async fn paced_at_the_pbx(pbx: &Pbx) {
    let rig = Rig::start(
        pbx,
        None,
        &[("MAX_CALLS_PER_SECOND", "2"), ("MAX_CONCURRENT_CALLS", "3")],
        false,
    )
    .await;
    let (ari, password) = (pbx.ari_url(), pbx.password());
    let watching = tokio::spawn(async move {
        let mut created: BTreeMap<String, DateTime<FixedOffset>> = BTreeMap::new();
        let mut most_up = 0;
        loop {
            let ours = our_channels(&ari_channels(&ari, &password).await);
            most_up = most_up.max(ours.len());
            for (id, at) in ours {
                created.entry(id).or_insert(at);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
            if created.len() == 9 && most_up > 0 {
                // Keep watching until every call is gone: the count can still rise.
                if our_channels(&ari_channels(&ari, &password).await).is_empty() {
                    return (created, most_up);
                }
            }
        }
    });
    let ids = futures_util::future::join_all((1..=9).map(|n| {
        rig.call(json!({ "phone_number": format!("+155500800{n:02}"), "max_duration": 1500 }))
    }))
    .await;
    for id in &ids {
        let doc = rig.until_final(id).await;
        assert_eq!(doc["status"], "completed", "{doc}");
        assert_eq!(doc["attempts"].as_array().map(Vec::len), Some(1), "{doc}");
    }
    let (created, most_up) = tokio::time::timeout(LIMIT, watching)
        .await
        .expect("the PBX's channels are gone")
        .expect("watcher");
    assert_eq!(
        created.keys().collect::<BTreeSet<_>>(),
        ids.iter().collect::<BTreeSet<_>>(),
        "every call reached {} once, and nothing else did",
        pbx.name()
    );
    assert!(
        (2..=3).contains(&most_up),
        "{most_up} of our calls up at once at {} (limit 3)",
        pbx.name()
    );
    let mut times: Vec<DateTime<FixedOffset>> = created.values().copied().collect();
    times.sort();
    // Any three channels (one over the limit of two a second) span a second, give or
    // take the pacer's 50 ms lead and the PBX's clock resolution.
    for three in times.windows(3) {
        let span = three[2] - three[0];
        assert!(
            span >= chrono::Duration::milliseconds(900),
            "three calls created within {span} at {}: {times:?}",
            pbx.name()
        );
    }
}

// ---------------------------------------------------------------------------------------
// Faults

/// The originate reaches the PBX 2.5 s after it was sent, long after the API stopped
/// waiting (1 s): the API says "unconfirmed" (202), the PBX places the call all the
/// same, and the bridge follows it to its true end. It is dialed once.
async fn unconfirmed_originate(pbx: &Pbx) {
    let rig = Rig::start(
        pbx,
        None,
        &[
            ("ARI_TIMEOUT_MS", "1000"),
            ("BRIDGE_UNCONFIRMED_GRACE_MS", "4000"),
        ],
        true,
    )
    .await;
    let proxy = rig.proxy.as_ref().expect("a proxy");
    proxy.delay_requests(Duration::from_millis(2500));
    let response = rig
        .api
        .create_call(
            &rig.token,
            json!({ "phone_number": "+15550010001", "status_callback": rig.receiver.url }),
        )
        .await;
    proxy.delay_requests(Duration::ZERO);
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let body: Value = response.json().await.expect("JSON");
    assert_eq!(body["originate_confirmed"], false, "{body}");
    let id = body["call_id"].as_str().expect("call_id").to_owned();
    let doc = rig.until_final(&id).await;
    assert_eq!(
        doc["status"],
        "completed",
        "{doc}\n{}",
        rig.server.log_tail()
    );
    assert!(doc["answered_at"].is_string(), "{doc}");
    assert!(doc["originate_unconfirmed_at"].is_string(), "{doc}");
    rig.assert_webhooks(&[&id]).await;
}

/// Every connection to the PBX is cut while one call rings, one is up and one is in
/// the IVR: the bridge reconnects and each call still ends as it really did.
async fn websocket_cut(pbx: &Pbx) {
    let rig = Rig::start(pbx, None, &[], true).await;
    let ringing = rig
        .call(json!({ "phone_number": "+15550030001", "timeout": 4000 }))
        .await;
    let up = rig
        .call(json!({ "phone_number": "+15550080001", "max_duration": 3000 }))
        .await;
    let ivr = rig.call(json!({ "phone_number": "+15550010001" })).await;
    rig.wait_status(&up, "answered").await;
    rig.wait_status(&ringing, "ringing").await;
    rig.proxy.as_ref().expect("a proxy").cut_all();

    let expected = [
        (&ringing, "no_answer"),
        (&up, "completed"),
        (&ivr, "completed"),
    ];
    for (id, status) in expected {
        let doc = rig.until_final(id).await;
        assert_eq!(doc["status"], status, "{doc}\n{}", rig.server.log_tail());
    }
    rig.assert_webhooks(&[&ringing, &up, &ivr]).await;
}

/// The local binary (API and bridge) SIGKILLed while one call plays its media and one
/// rings, then started again on the same PostgreSQL: the restarted bridge picks both
/// up and each ends as it really did.
async fn bridge_killed_mid_call(pbx: &Pbx) {
    let schema = pg::fresh_schema().await;
    let mut rig = Rig::start(pbx, Some(&schema.url), &[], false).await;
    let playing = rig
        .call(json!({
            "phone_number": "+15550080001", "mode": "playback",
            "media": ["sound:hello-world", "sound:hello-world", "sound:hello-world"]
        }))
        .await;
    let ringing = rig
        .call(json!({ "phone_number": "+15550030001", "timeout": 5000 }))
        .await;
    rig.wait_status(&playing, "answered").await;
    rig.wait_status(&ringing, "ringing").await;
    rig.server.kill();
    tokio::time::sleep(Duration::from_millis(300)).await;
    rig.server.restart().await;
    // The local server seeds its demo user again at start, which ends its tokens.
    rig.token = rig.api.token(ADMIN.0, ADMIN.1).await;

    let doc = rig.until_final(&playing).await;
    assert_eq!(
        doc["status"],
        "completed",
        "{doc}\n{}",
        rig.server.log_tail()
    );
    let duration = doc["duration"].as_f64().unwrap_or_default();
    // Three times hello-world (1.42 s), then the restarted bridge hangs up; played again
    // from the start when the restart took longer than the media (better twice than
    // silence), but never left to the callee's own hang-up at 60 s.
    assert!((3.9..=20.0).contains(&duration), "{doc}");
    let doc = rig.until_final(&ringing).await;
    assert_eq!(
        doc["status"],
        "no_answer",
        "{doc}\n{}",
        rig.server.log_tail()
    );
}

/// The bridge stops between a call's answer and its `play` or `continue` (here: what it
/// sends the PBX is held from the ringing on, and it is killed once the call is
/// answered): the channel waits in our app, undriven. The restarted bridge drives it,
/// so each call ends when its IVR or media does, long before the callee (`009`) would
/// hang up, 60 s after answering.
async fn undriven_call_resumed(pbx: &Pbx) {
    let schema = pg::fresh_schema().await;
    let mut rig = Rig::start(pbx, Some(&schema.url), &[], true).await;
    let playback = rig
        .call(json!({ "phone_number": "+15550090001", "mode": "playback", "media": ["sound:hello-world"] }))
        .await;
    let ivr = rig.call(json!({ "phone_number": "+15550090002" })).await;
    rig.wait_for(&playback, "ringing_at").await;
    rig.wait_for(&ivr, "ringing_at").await;
    let proxy = rig.proxy.as_ref().expect("a proxy");
    proxy.delay_requests(Duration::from_secs(120));
    rig.wait_for(&playback, "answered_at").await;
    rig.wait_for(&ivr, "answered_at").await;
    rig.server.kill();
    // What it had sent and the PBX had not yet got dies with it.
    proxy.cut_all();
    proxy.delay_requests(Duration::ZERO);
    rig.server.restart().await;
    rig.token = rig.api.token(ADMIN.0, ADMIN.1).await;

    for id in [&playback, &ivr] {
        let doc = rig.until_final(id).await;
        assert_eq!(
            doc["status"],
            "completed",
            "{doc}\n{}",
            rig.server.log_tail()
        );
        let duration = doc["duration"].as_f64().unwrap_or_default();
        assert!(duration < 30.0, "ended only by the callee: {doc}");
        assert_eq!(doc["media_failed"], json!([]), "{doc}");
    }
}

// ---------------------------------------------------------------------------------------
// The rig: a PBX, the local binary in front of it, a client and a webhook receiver

const SIM_PASSWORD: &str = "simulator-password";

enum Pbx {
    Simulated(SimHandle),
    Asterisk(Asterisk),
}

impl Pbx {
    /// The simulator in real time, in this process: for the binary, a PBX like any other.
    async fn simulated() -> Self {
        let sim = pbx_sim::start(SimConfig {
            bind: ([127, 0, 0, 1], 0).into(),
            username: asterisk::USER.to_owned(),
            password: SIM_PASSWORD.to_owned(),
            time_scale: 1.0,
        })
        .await
        .expect("the simulator starts");
        Self::Simulated(sim)
    }

    fn asterisk() -> Self {
        Self::Asterisk(Asterisk::start())
    }

    fn ari_url(&self) -> String {
        match self {
            Self::Simulated(sim) => sim.base_url(),
            Self::Asterisk(asterisk) => asterisk.ari_url.clone(),
        }
    }

    fn password(&self) -> String {
        match self {
            Self::Simulated(_) => SIM_PASSWORD.to_owned(),
            Self::Asterisk(asterisk) => asterisk.password.clone(),
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Self::Simulated(_) => "the simulator",
            Self::Asterisk(_) => "Asterisk",
        }
    }
}

struct Rig {
    server: Process,
    proxy: Option<AriProxy>,
    api: Api,
    token: String,
    receiver: Receiver,
}

impl Rig {
    async fn start(
        pbx: &Pbx,
        database_url: Option<&str>,
        vars: &[(&str, &str)],
        via_proxy: bool,
    ) -> Self {
        let proxy = if via_proxy {
            Some(AriProxy::start(&pbx.ari_url()).await)
        } else {
            None
        };
        let ari_url = proxy
            .as_ref()
            .map_or_else(|| pbx.ari_url(), |p| p.url.clone());
        let password = pbx.password();
        let mut all = vec![
            ("ARI_HTTP_URL", ari_url.as_str()),
            ("ARI_USERNAME", asterisk::USER),
            ("ARI_PASSWORD", password.as_str()),
        ];
        if let Some(url) = database_url {
            all.push(("DATABASE_URL", url));
        }
        all.extend_from_slice(vars);
        let server = Process::start(&all).await;
        let api = Api::new(server.base_url.clone());
        let token = api.token(ADMIN.0, ADMIN.1).await;
        Self {
            server,
            proxy,
            api,
            token,
            receiver: Receiver::start(&[]).await,
        }
    }

    /// Places a call through `POST /api/v2/calls` with a status callback; its id.
    async fn call(&self, mut body: Value) -> String {
        body["status_callback"] = json!(self.receiver.url);
        let response = self.api.create_call(&self.token, body.clone()).await;
        let status = response.status();
        let answer: Value = response.json().await.expect("JSON");
        assert_eq!(status, StatusCode::CREATED, "{body} → {answer}");
        answer["call_id"].as_str().expect("call_id").to_owned()
    }

    async fn cancel(&self, id: &str) {
        let response = self
            .api
            .delete(&self.token, &format!("/api/v2/calls/{id}"))
            .await;
        assert_eq!(response.status(), StatusCode::ACCEPTED, "cancel {id}");
    }

    async fn wait_status(&self, id: &str, status: &str) {
        let deadline = Instant::now() + LIMIT;
        loop {
            let doc = self.api.status(&self.token, id).await;
            if doc["status"] == status {
                return;
            }
            assert!(
                Instant::now() < deadline && doc["is_completed"] != true,
                "{id} never {status}: {doc}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until the call's document has `stamp` (`ringing_at`, `answered_at`, …):
    /// unlike its status, a stamp stays once set.
    async fn wait_for(&self, id: &str, stamp: &str) {
        let deadline = Instant::now() + LIMIT;
        loop {
            let doc = self.api.status(&self.token, id).await;
            if doc[stamp].is_string() {
                return;
            }
            assert!(Instant::now() < deadline, "{id} never got {stamp}: {doc}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn until_final(&self, id: &str) -> Value {
        self.api.until_final(&self.token, id, LIMIT).await.0
    }

    /// Each call's webhook events arrived signed, numbered without gaps, statuses in
    /// order within each attempt, the last one carrying the final document.
    async fn assert_webhooks(&self, ids: &[&String]) {
        let deadline = Instant::now() + LIMIT;
        for id in ids {
            let final_doc = self.api.status(&self.token, id).await;
            let events = loop {
                let events = first_deliveries(&self.receiver.received(), id);
                if events.last().is_some_and(|e| e["call"] == final_doc) {
                    break events;
                }
                assert!(
                    Instant::now() < deadline,
                    "the final webhook of {id} never came: {events:?}"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            };
            let mut last = (0, 0);
            for (n, event) in events.iter().enumerate() {
                assert_eq!(event["sequence"], n + 1, "{id}: no gaps: {events:?}");
                if event["type"] != "status" {
                    continue;
                }
                let step = (
                    event["attempt_number"].as_u64().unwrap_or_default(),
                    rank(event["status"].as_str().unwrap_or_default()),
                );
                assert!(step > last, "{id}: out of order: {events:?}");
                last = step;
            }
        }
        for request in self.receiver.received() {
            assert!(
                signature_verifies(
                    &request.header("dialer-signature"),
                    &request.body,
                    WEBHOOK_SECRET
                ),
                "unsigned: {}",
                request.json()
            );
        }
    }
}

fn rank(status: &str) -> u8 {
    match status {
        "queued" => 0,
        "pending" => 1,
        "dialing" => 2,
        "ringing" => 3,
        "answered" => 4,
        _ => 5,
    }
}

/// The first delivery of each of one call's events, by sequence.
fn first_deliveries(received: &[integration::receiver::Received], id: &str) -> Vec<Value> {
    let mut by_sequence = BTreeMap::new();
    for event in received.iter().map(|r| r.json()) {
        if event["call_id"] == id
            && let Some(sequence) = event["sequence"].as_u64()
        {
            by_sequence.entry(sequence).or_insert(event);
        }
    }
    by_sequence.into_values().collect()
}

/// Our calls' channels (their ids are call ids; the far halves of Local channels end
/// in `;2`), with when the PBX created each.
fn our_channels(channels: &[Value]) -> Vec<(String, DateTime<FixedOffset>)> {
    channels
        .iter()
        .filter_map(|c| {
            let id = c["id"].as_str()?;
            uuid::Uuid::try_parse(id).ok()?;
            let at =
                DateTime::parse_from_str(c["creationtime"].as_str()?, "%Y-%m-%dT%H:%M:%S%.3f%z")
                    .ok()?;
            Some((id.to_owned(), at))
        })
        .collect()
}

fn time(doc: &Value, field: &str) -> Option<DateTime<FixedOffset>> {
    doc[field]
        .as_str()
        .map(|t| DateTime::parse_from_rfc3339(t).expect("RFC 3339"))
}
