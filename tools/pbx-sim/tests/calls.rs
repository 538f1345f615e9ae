//! Each callee number range produces, on the originated channel, the event sequence
//! recorded from a real Asterisk (see `tests/ari-traces/`).

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{Sim, events_until, events_until_destroyed, summary};
use serde_json::json;

/// 50x real time: a 1 s ring is 20 ms.
const FAST: f64 = 0.02;

async fn call(number: &str, timeout: f64) -> Vec<String> {
    let sim = Sim::start(FAST).await;
    let mut socket = sim.connect(common::APP).await;
    let id = format!("call-{number}");
    assert_eq!(sim.originate(&id, number, timeout).await.status(), 200);
    let events = summary(&events_until_destroyed(&mut socket, &id).await);
    assert_eq!(sim.handle.live_channels(), 0);
    assert_eq!(sim.get(&format!("/ari/channels/{id}")).await.status(), 404);
    events
}

#[tokio::test]
async fn answering_callee_rings_answers_and_hangs_up_with_cause_16() {
    assert_eq!(
        call("+15550010001", 30.0).await,
        [
            "Dial:@Down",
            "StateChange@Ringing",
            "Dial:RINGING@Ringing",
            "StateChange@Up",
            "Dial:ANSWER@Up",
            "Varset:STASISSTATUS=@Up",
            "StasisStart:[\"ivr\"]@Up",
            "HangupRequest:16@Up",
            "StasisEnd@Up",
            "Varset:STASISSTATUS=SUCCESS@Up",
            "Destroyed:16:Normal Clearing@Up",
        ]
    );
}

#[tokio::test]
async fn busy_callee_ends_with_cause_zero_and_dial_busy() {
    assert_eq!(
        call("+15550020001", 30.0).await,
        ["Dial:@Down", "Dial:BUSY@Down", "Destroyed:0:Unknown@Down"]
    );
}

#[tokio::test]
async fn unanswered_callee_ends_at_the_originate_timeout_with_cause_19_and_no_final_dial() {
    let started = std::time::Instant::now();
    assert_eq!(
        call("+15550030001", 4.0).await,
        [
            "Dial:@Down",
            "StateChange@Ringing",
            "Dial:RINGING@Ringing",
            "Destroyed:19:User alerting, no answer@Ringing",
        ]
    );
    // 4 s scaled by 0.02 is 80 ms.
    assert!(started.elapsed() >= Duration::from_millis(80));
}

#[tokio::test]
async fn congested_callee_ends_with_cause_zero_and_dial_congestion() {
    assert_eq!(
        call("+15550040001", 30.0).await,
        [
            "Dial:@Down",
            "Dial:CONGESTION@Down",
            "Destroyed:0:Unknown@Down"
        ]
    );
}

#[tokio::test]
async fn unallocated_number_ends_with_cause_1_and_dial_noanswer() {
    let expected = [
        "Dial:@Down",
        "HangupRequest:1@Down",
        "Dial:NOANSWER@Down",
        "Destroyed:1:Unallocated (unassigned) number@Down",
    ];
    assert_eq!(call("+15550050001", 30.0).await, expected);
    assert_eq!(call("+15550990001", 30.0).await, expected);
    assert_eq!(call("1000", 30.0).await, expected);
}

#[tokio::test]
async fn rejecting_callee_ends_with_cause_21_and_dial_noanswer() {
    assert_eq!(
        call("+15550060001", 30.0).await,
        [
            "Dial:@Down",
            "HangupRequest:21@Down",
            "Dial:NOANSWER@Down",
            "Destroyed:21:Call Rejected@Down",
        ]
    );
}

#[tokio::test]
async fn dtmf_callee_presses_1_then_hangs_up() {
    assert_eq!(
        call("+15550070001", 30.0).await,
        [
            "Dial:@Down",
            "StateChange@Ringing",
            "Dial:RINGING@Ringing",
            "StateChange@Up",
            "Dial:ANSWER@Up",
            "Varset:STASISSTATUS=@Up",
            "StasisStart:[\"ivr\"]@Up",
            "Dtmf:1:100@Up",
            "HangupRequest:16@Up",
            "StasisEnd@Up",
            "Varset:STASISSTATUS=SUCCESS@Up",
            "Destroyed:16:Normal Clearing@Up",
        ]
    );
}

#[tokio::test]
async fn originate_timeout_shorter_than_the_ringing_ends_an_answering_call_as_no_answer() {
    // The 001 callee would answer after 1 s.
    assert_eq!(
        call("+15550010001", 0.5).await,
        [
            "Dial:@Down",
            "StateChange@Ringing",
            "Dial:RINGING@Ringing",
            "Destroyed:19:User alerting, no answer@Ringing",
        ]
    );
}

#[tokio::test]
async fn delete_while_ringing_gives_noanswer_and_cause_16() {
    let sim = Sim::start(FAST).await;
    let mut socket = sim.connect(common::APP).await;
    assert_eq!(
        sim.originate("ring", "+15550030002", 30.0).await.status(),
        200
    );
    let ringing = events_until(&mut socket, "ring", "Dial").await;
    assert_eq!(summary(&ringing), ["Dial:@Down"]);
    let rest = events_until(&mut socket, "ring", "Dial").await;
    assert_eq!(
        summary(&rest),
        ["StateChange@Ringing", "Dial:RINGING@Ringing"]
    );
    assert_eq!(
        sim.get("/ari/channels/ring")
            .await
            .json::<serde_json::Value>()
            .await
            .unwrap()["state"],
        "Ringing"
    );
    assert_eq!(sim.delete("/ari/channels/ring").await.status(), 204);
    assert_eq!(
        summary(&events_until_destroyed(&mut socket, "ring").await),
        [
            "HangupRequest:32:soft@Ringing",
            "Dial:NOANSWER@Ringing",
            "Destroyed:16:Normal Clearing@Ringing",
        ]
    );
    assert_eq!(sim.delete("/ari/channels/ring").await.status(), 404);
    assert_eq!(sim.handle.live_channels(), 0);
}

#[tokio::test]
async fn delete_while_up_in_stasis_ends_stasis_then_destroys_with_cause_16() {
    let sim = Sim::start(FAST).await;
    let mut socket = sim.connect(common::APP).await;
    assert_eq!(
        sim.originate("hold", "+15550080001", 30.0).await.status(),
        200
    );
    let answered = events_until(&mut socket, "hold", "StasisStart").await;
    assert_eq!(
        summary(&answered),
        [
            "Dial:@Down",
            "StateChange@Up",
            "Dial:ANSWER@Up",
            "Varset:STASISSTATUS=@Up",
            "StasisStart:[\"ivr\"]@Up",
        ]
    );
    assert_eq!(answered[4]["channel"]["dialplan"]["app_name"], "Stasis");
    assert_eq!(answered[4]["channel"]["dialplan"]["app_data"], "dialer,ivr");
    assert_eq!(
        sim.delete("/ari/channels/hold?reason_code=16")
            .await
            .status(),
        204
    );
    let ended = events_until_destroyed(&mut socket, "hold").await;
    assert_eq!(
        summary(&ended),
        [
            "HangupRequest:32:soft@Up",
            "StasisEnd@Up",
            "Varset:STASISSTATUS=SUCCESS@Up",
            "Destroyed:16:Normal Clearing@Up",
        ]
    );
    assert_eq!(ended[3]["channel"]["dialplan"]["app_name"], "AppDial2");
    assert_eq!(sim.get("/ari/channels/hold").await.status(), 404);
}

#[tokio::test]
async fn racing_deletes_and_callee_hangups_destroy_each_channel_exactly_once() {
    let sim = Sim::start(0.001).await;
    let mut socket = sim.connect(common::APP).await;
    let ids: Vec<String> = (0..20).map(|n| format!("race-{n}")).collect();
    for id in &ids {
        assert_eq!(sim.originate(id, "+15550010001", 30.0).await.status(), 200);
    }
    // 001 answers after 1 ms and hangs up 2 ms later: deletes land all over the script.
    for (n, id) in ids.iter().enumerate() {
        tokio::time::sleep(Duration::from_micros(200 * n as u64)).await;
        let status = sim.delete(&format!("/ari/channels/{id}")).await.status();
        assert!(status == 204 || status == 404, "{status}");
    }
    let mut destroyed = std::collections::HashMap::new();
    while destroyed.len() < ids.len() {
        let event = common::next_event(&mut socket, Duration::from_secs(5))
            .await
            .expect("an event");
        if event["type"] == "ChannelDestroyed" {
            *destroyed
                .entry(event["channel"]["id"].as_str().unwrap().to_owned())
                .or_insert(0) += 1;
        }
    }
    // Nothing more may come for these channels.
    while let Some(event) = common::next_event(&mut socket, Duration::from_millis(100)).await {
        assert_ne!(event["type"], "ChannelDestroyed", "{event}");
    }
    assert!(destroyed.values().all(|&n| n == 1), "{destroyed:?}");
    assert_eq!(sim.handle.live_channels(), 0);
}

#[tokio::test]
async fn continue_leaves_stasis_and_runs_the_ivr_until_the_callee_hangs_up() {
    // Real time: the 001 callee's hang-up (2 s after answer) must come before the end of
    // the IVR (its 1.42 s prompt and 1 s wait after continue), as in the trace recorded
    // with prompts, even on a busy machine.
    let sim = Sim::start(1.0).await;
    let mut socket = sim.connect(common::APP).await;
    assert_eq!(
        sim.originate("ivr", "+15550010001", 30.0).await.status(),
        200
    );
    events_until(&mut socket, "ivr", "StasisStart").await;
    let continued = sim
        .http
        .post(sim.url("/ari/channels/ivr/continue?context=outbound-ivr&extension=s&priority=1"))
        .basic_auth(common::USER, Some(common::PASSWORD))
        .send()
        .await
        .unwrap();
    assert_eq!(continued.status(), 204);
    let events = events_until_destroyed(&mut socket, "ivr").await;
    assert_eq!(
        summary(&events),
        [
            "StasisEnd@Up",
            "Dialplan:NoOp(IVR for +15550000000)@Up",
            "Dialplan:Playback(hello-world)@Up",
            "Varset:PLAYBACKSTATUS=SUCCESS@Up",
            "Dialplan:Wait(1)@Up",
            "HangupRequest:16@Up",
            "Varset:STASISSTATUS=SUCCESS@Up",
            "Destroyed:16:Normal Clearing@Up",
        ]
    );
    // Hung up during the Wait, priority 3, as recorded.
    let dialplan = &events[7]["channel"]["dialplan"];
    assert_eq!(dialplan["context"], "outbound-ivr");
    assert_eq!(dialplan["exten"], "s");
    assert_eq!(dialplan["priority"], 3);
    assert_eq!(dialplan["app_name"], "AppDial2");
}

#[tokio::test]
async fn continue_and_play_are_409_unless_in_stasis() {
    // Slow enough that the IVR's 1 s wait outlasts the requests made during it.
    let sim = Sim::start(0.2).await;
    let mut socket = sim.connect(common::APP).await;
    assert_eq!(sim.originate("c", "+15550030001", 30.0).await.status(), 200);
    events_until(&mut socket, "c", "ChannelStateChange").await;
    let continued = sim
        .post(
            "/ari/channels/c/continue",
            json!({"context": "outbound-ivr"}),
        )
        .await;
    assert_eq!(continued.status(), 409);
    assert_eq!(
        continued.json::<serde_json::Value>().await.unwrap(),
        json!({"message": "Channel not in Stasis application"})
    );
    let played = sim
        .post("/ari/channels/c/play", json!({"media": "sound:hello"}))
        .await;
    assert_eq!(played.status(), 409);
    assert_eq!(sim.delete("/ari/channels/c").await.status(), 204);

    // After continue the channel is Up but in the dialplan: still 409, and a DELETE
    // skips StasisEnd.
    assert_eq!(sim.originate("d", "+15550080001", 30.0).await.status(), 200);
    events_until(&mut socket, "d", "StasisStart").await;
    let continued = sim
        .post(
            "/ari/channels/d/continue",
            json!({"context": "outbound-ivr", "extension": "s", "priority": 3}),
        )
        .await;
    assert_eq!(continued.status(), 204);
    assert_eq!(
        summary(&events_until(&mut socket, "d", "ChannelDialplan").await),
        ["StasisEnd@Up", "Dialplan:Wait(1)@Up"]
    );
    let again = sim
        .post(
            "/ari/channels/d/continue",
            json!({"context": "outbound-ivr"}),
        )
        .await;
    assert_eq!(again.status(), 409);
    assert_eq!(sim.delete("/ari/channels/d").await.status(), 204);
    assert_eq!(
        summary(&events_until_destroyed(&mut socket, "d").await),
        [
            "HangupRequest:32:soft@Up",
            "Destroyed:16:Normal Clearing@Up"
        ]
    );
}

#[tokio::test]
async fn play_reports_each_media_item_then_finishes() {
    let sim = Sim::start(FAST).await;
    let mut socket = sim.connect(common::APP).await;
    assert_eq!(sim.originate("p", "+15550080001", 30.0).await.status(), 200);
    events_until(&mut socket, "p", "StasisStart").await;
    let played = sim
        .http
        .post(sim.url("/ari/channels/p/play?media=sound:a,sound:b&playbackId=p-1"))
        .basic_auth(common::USER, Some(common::PASSWORD))
        .send()
        .await
        .unwrap();
    assert_eq!(played.status(), 201);
    assert_eq!(
        played.json::<serde_json::Value>().await.unwrap(),
        json!({
            "id": "p-1",
            "media_uri": "sound:a",
            "next_media_uri": "sound:b",
            "target_uri": "channel:p",
            "language": "en",
            "state": "queued",
        })
    );
    assert_eq!(
        summary(&events_until(&mut socket, "p", "PlaybackFinished").await),
        [
            "PlaybackStarted:playing:sound:a>sound:b",
            "PlaybackContinuing:continuing:sound:a>sound:b",
            "PlaybackStarted:playing:sound:b>",
            "PlaybackFinished:done:sound:b>",
        ]
    );
    assert_eq!(sim.delete("/ari/channels/p").await.status(), 204);
    events_until_destroyed(&mut socket, "p").await;
}

#[tokio::test]
async fn callee_hang_up_during_playback_fails_the_playback_before_stasis_end() {
    // The play request must land within the 2 s (here 200 ms) before the callee hangs up.
    let sim = Sim::start(0.1).await;
    let mut socket = sim.connect(common::APP).await;
    assert_eq!(
        sim.originate("long", "+15550010003", 30.0).await.status(),
        200
    );
    events_until(&mut socket, "long", "StasisStart").await;
    let played = sim
        .post(
            "/ari/channels/long/play",
            json!({"media": ["sound:hello-world", "sound:hello-world", "sound:hello-world"]}),
        )
        .await;
    assert_eq!(played.status(), 201);
    let events = summary(&events_until_destroyed(&mut socket, "long").await);
    // 2 s after answer the callee hangs up while the media list is still playing.
    let hangup = events
        .iter()
        .position(|e| e == "HangupRequest:16@Up")
        .unwrap();
    assert!(
        // As Asterisk reports a playback that a hang-up cut short.
        events[hangup + 1].starts_with("PlaybackFinished:failed:sound:hello-world"),
        "{events:?}"
    );
    assert_eq!(
        &events[hangup + 2..],
        [
            "StasisEnd@Up",
            "Varset:STASISSTATUS=SUCCESS@Up",
            "Destroyed:16:Normal Clearing@Up",
        ]
    );
    assert!(events[0].starts_with("PlaybackStarted:playing"));
}

#[tokio::test]
async fn a_stasis_call_answered_while_its_app_is_away_is_hung_up() {
    let sim = Sim::start(FAST).await;
    assert_eq!(
        sim.originate("lonely", "+15550080001", 30.0).await.status(),
        200
    );
    for _ in 0..200 {
        if sim.handle.live_channels() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(sim.handle.live_channels(), 0);
    assert_eq!(sim.handle.originate_count(), 1);
}
