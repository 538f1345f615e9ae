//! The HTTP surface: authentication, error answers shaped like ARI's, the originate
//! answer, and the test controls.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{Sim, summary};
use serde_json::{Value, json};

async fn body(response: reqwest::Response) -> Value {
    response.json().await.unwrap()
}

#[tokio::test]
async fn basic_auth_and_api_key_are_accepted_and_anything_else_is_401() {
    let sim = Sim::start(0.02).await;
    let ok = sim.get("/ari/channels").await;
    assert_eq!(ok.status(), 200);
    assert_eq!(body(ok).await, json!([]));
    let with_key = sim
        .http
        .get(sim.url("/ari/channels?api_key=asterisk:asterisk"))
        .send()
        .await
        .unwrap();
    assert_eq!(with_key.status(), 200);

    let wrong_password = sim
        .http
        .get(sim.url("/ari/channels"))
        .basic_auth("asterisk", Some("wrong"))
        .send()
        .await
        .unwrap();
    let wrong_key = sim
        .http
        .get(sim.url("/ari/channels?api_key=asterisk:wrong"))
        .send()
        .await
        .unwrap();
    let missing = sim.http.get(sim.url("/ari/channels")).send().await.unwrap();
    for response in [wrong_password, wrong_key, missing] {
        assert_eq!(response.status(), 401);
        assert_eq!(
            body(response).await,
            json!({"message": "Authentication required"})
        );
    }
}

#[tokio::test]
async fn application_is_404_without_a_websocket_and_200_with_one() {
    let sim = Sim::start(0.02).await;
    let missing = sim.get("/ari/applications/dialer").await;
    assert_eq!(missing.status(), 404);
    assert_eq!(
        body(missing).await,
        json!({"message": "Application not found"})
    );

    let _socket = sim.connect("dialer").await;
    let found = sim.get("/ari/applications/dialer").await;
    assert_eq!(found.status(), 200);
    assert_eq!(
        body(found).await,
        json!({
            "name": "dialer",
            "channel_ids": [],
            "bridge_ids": [],
            "endpoint_ids": [],
            "device_names": [],
            "events_allowed": [],
            "events_disallowed": [],
        })
    );
    assert_eq!(sim.handle.connected_apps(), ["dialer"]);
}

#[tokio::test]
async fn originate_without_endpoint_is_400() {
    let sim = Sim::start(0.02).await;
    let response = sim
        .post(
            "/ari/channels",
            json!({"context": "outbound-ivr", "extension": "s", "priority": 1}),
        )
        .await;
    assert_eq!(response.status(), 400);
    assert_eq!(
        body(response).await,
        json!({"message": "Endpoint must be specified"})
    );
    assert_eq!(sim.handle.originate_count(), 0);
}

#[tokio::test]
async fn originate_with_unknown_technology_is_500_allocation_failed() {
    let sim = Sim::start(0.02).await;
    let response = sim
        .post(
            "/ari/channels",
            json!({"endpoint": "Bogus/123", "context": "outbound-ivr", "extension": "s", "priority": 1}),
        )
        .await;
    assert_eq!(response.status(), 500);
    assert_eq!(body(response).await, json!({"error": "Allocation failed"}));
    assert_eq!(sim.handle.originate_count(), 0);
}

#[tokio::test]
async fn originate_with_a_live_channel_id_is_409_and_a_gone_one_is_reusable() {
    let sim = Sim::start(0.02).await;
    let request = json!({
        "endpoint": "Local/+15550010009@test-pstn",
        "context": "outbound-ivr", "extension": "s", "priority": 1,
        "channelId": "d3873ec9-7430-4657-ad14-ade201cf8e7e",
    });
    assert_eq!(
        sim.post("/ari/channels", request.clone()).await.status(),
        200
    );
    let duplicate = sim.post("/ari/channels", request.clone()).await;
    assert_eq!(duplicate.status(), 409);
    assert_eq!(
        body(duplicate).await,
        json!({"message": "Channel with given unique ID already exists"})
    );
    assert_eq!(
        sim.delete("/ari/channels/d3873ec9-7430-4657-ad14-ade201cf8e7e")
            .await
            .status(),
        204
    );
    assert_eq!(sim.post("/ari/channels", request).await.status(), 200);
    assert_eq!(sim.handle.originate_count(), 2);
}

#[tokio::test]
async fn originate_answer_has_the_shape_of_the_trace() {
    let sim = Sim::start(0.02).await;
    let response = sim.originate("b9a03a73", "+15550010001", 30.0).await;
    assert_eq!(response.status(), 200);
    let channel = body(response).await;
    let name = channel["name"].as_str().unwrap();
    assert!(name.starts_with("Local/+15550010001@test-pstn-"), "{name}");
    assert!(name.ends_with(";1"), "{name}");
    assert_eq!(
        name.len(),
        "Local/+15550010001@test-pstn-0000001a;1".len(),
        "{name}"
    );
    let creationtime = channel["creationtime"].as_str().unwrap().to_owned();
    assert_eq!(creationtime.len(), "2026-11-24T11:34:28.485+0000".len());
    assert_eq!(
        channel,
        json!({
            "id": "b9a03a73",
            "name": name,
            "state": "Down",
            "protocol_id": "",
            "caller": {"name": "MyCompany", "number": "+15550000000"},
            "connected": {"name": "MyCompany", "number": "+15550000000"},
            "accountcode": "",
            "dialplan": {
                "context": "test-pstn",
                "exten": "+15550010001",
                "priority": 1,
                "app_name": "AppDial2",
                "app_data": "(Outgoing Line)",
            },
            "creationtime": creationtime,
            "language": "en",
        })
    );
    let listed = body(sim.get("/ari/channels").await).await;
    assert_eq!(listed[0]["id"], "b9a03a73");
}

#[tokio::test]
async fn originate_takes_query_parameters_and_generates_an_id() {
    let sim = Sim::start(0.02).await;
    let response = sim
        .http
        .post(sim.url(
            "/ari/channels?endpoint=PJSIP/%2B15550030001&app=dialer&callerId=%2B15550000000&timeout=30",
        ))
        .basic_auth(common::USER, Some(common::PASSWORD))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let channel = body(response).await;
    let id = channel["id"].as_str().unwrap();
    assert!(!id.is_empty());
    assert_eq!(
        channel["caller"],
        json!({"name": "", "number": "+15550000000"})
    );
    assert_eq!(channel["dialplan"]["exten"], "+15550030001");
    assert_eq!(sim.get(&format!("/ari/channels/{id}")).await.status(), 200);
    assert_eq!(sim.handle.live_channels(), 1);
}

#[tokio::test]
async fn malformed_json_is_400_with_a_message() {
    let sim = Sim::start(0.02).await;
    let response = sim
        .http
        .post(sim.url("/ari/channels"))
        .basic_auth(common::USER, Some(common::PASSWORD))
        .header("content-type", "application/json")
        .body("{\"endpoint\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert!(body(response).await["message"].is_string());
    let bad_timeout = sim
        .post(
            "/ari/channels",
            json!({"endpoint": "Local/1@x", "app": "dialer", "timeout": "soon"}),
        )
        .await;
    assert_eq!(bad_timeout.status(), 400);
}

#[tokio::test]
async fn unknown_channels_are_404_for_every_channel_route() {
    let sim = Sim::start(0.02).await;
    let id = "00000000-0000-0000-0000-000000000000";
    let not_found = json!({"message": "Channel not found"});
    let get = sim.get(&format!("/ari/channels/{id}")).await;
    assert_eq!(get.status(), 404);
    assert_eq!(body(get).await, not_found);
    let delete = sim.delete(&format!("/ari/channels/{id}")).await;
    assert_eq!(delete.status(), 404);
    assert_eq!(body(delete).await, not_found);
    let continued = sim
        .http
        .post(sim.url(&format!(
            "/ari/channels/{id}/continue?context=outbound-ivr&extension=s&priority=1"
        )))
        .basic_auth(common::USER, Some(common::PASSWORD))
        .send()
        .await
        .unwrap();
    assert_eq!(continued.status(), 404);
    assert_eq!(body(continued).await, not_found);
    let played = sim
        .post(
            &format!("/ari/channels/{id}/play"),
            json!({"media": "sound:x"}),
        )
        .await;
    assert_eq!(played.status(), 404);
    assert_eq!(body(played).await, not_found);
}

#[tokio::test]
async fn unknown_routes_are_404_json() {
    let sim = Sim::start(0.02).await;
    for path in ["/ari/nothing", "/elsewhere"] {
        let response = sim.get(path).await;
        assert_eq!(response.status(), 404, "{path}");
        assert_eq!(body(response).await, json!({"message": "Not found"}));
    }
}

#[tokio::test]
async fn dialplan_originate_runs_but_sends_no_events_to_the_app() {
    let sim = Sim::start(0.02).await;
    let mut socket = sim.connect("dialer").await;
    let response = sim
        .post(
            "/ari/channels",
            json!({
                "context": "outbound-ivr", "extension": "s", "priority": 1, "timeout": 30,
                "endpoint": "Local/+15550010001@test-pstn",
                "channelId": "dp", "callerId": "MyCompany <+15550000000>",
            }),
        )
        .await;
    assert_eq!(response.status(), 200);
    // Answered after 20 ms, the IVR hangs up 20 ms later.
    for _ in 0..200 {
        if sim.handle.live_channels() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(sim.handle.live_channels(), 0);
    let mut seen = Vec::new();
    while let Some(event) = common::next_event(&mut socket, Duration::from_millis(50)).await {
        seen.push(event);
    }
    assert!(seen.is_empty(), "{:?}", summary(&seen));
}

#[tokio::test]
async fn stats_report_originates_live_channels_and_apps() {
    let sim = Sim::start(0.02).await;
    let _socket = sim.connect("dialer").await;
    sim.originate("s1", "+15550030001", 30.0).await;
    let stats = body(sim.http.get(sim.url("/_sim/stats")).send().await.unwrap()).await;
    assert_eq!(
        stats,
        json!({"originates": 1, "live_channels": 1, "max_live_channels": 1, "apps": ["dialer"]})
    );
    let applications = body(sim.get("/ari/applications/dialer").await).await;
    assert_eq!(applications["channel_ids"], json!(["s1"]));
}

#[tokio::test]
async fn shutdown_stops_serving() {
    let sim = Sim::start(0.02).await;
    let url = sim.url("/_sim/stats");
    sim.originate("x", "+15550080001", 30.0).await;
    let Sim { handle, http } = sim;
    handle.shutdown().await;
    assert!(http.get(url).send().await.is_err());
}
