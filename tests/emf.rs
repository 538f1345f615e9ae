//! What the Lambdas tell CloudWatch: Embedded Metric Format lines for calls originated
//! by result, originate latency and token failures, with no per-call labels.

use std::io::Write;
use std::sync::{Arc, Mutex};

use dialer_core::domain::{CallPolicy, CallRequest};
use dialer_core::metrics::{EMF_NAMESPACE, Metrics};
use dialer_core::service::{CallService, LoginService};
use dialer_core::store::MemoryStore;
use dialer_passwords::Bcrypt;
use serde_json::Value;

use integration::recording::RecordingPbx;

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("lock").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn lines(&self) -> Vec<Value> {
        let bytes = self.0.lock().expect("lock").clone();
        String::from_utf8(bytes)
            .expect("utf-8")
            .lines()
            .map(|l| serde_json::from_str(l).expect("each line is one JSON document"))
            .collect()
    }
}

fn metric_names(line: &Value) -> Vec<String> {
    line["_aws"]["CloudWatchMetrics"][0]["Metrics"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["Name"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test]
async fn lambdas_report_originates_latency_and_token_failures_as_emf() {
    let captured = Captured::default();
    let metrics = Arc::new(Metrics::new().with_emf_to(
        EMF_NAMESPACE,
        "originate".into(),
        Box::new(captured.clone()),
    ));
    let store = Arc::new(MemoryStore::new());
    let calls = CallService::new(
        store.clone(),
        store.clone(),
        Arc::new(dialer_core::webhooks::AcceptAll),
        Arc::new(RecordingPbx::default()),
        CallPolicy::default(),
        metrics.clone(),
        dialer_core::service::Pacer::new(store.clone(), Default::default()),
    );
    calls
        .place_call(
            "alice",
            CallRequest {
                phone_number: "+15550010001".into(),
                ..CallRequest::default()
            },
            None,
        )
        .await
        .expect("placed");
    let _ = calls
        .place_call(
            "alice",
            CallRequest {
                phone_number: "not-a-number".into(),
                ..CallRequest::default()
            },
            None,
        )
        .await;
    let login = LoginService::new(
        store.clone(),
        store,
        dialer_core::domain::ThrottlePolicy::default(),
        Arc::new(Bcrypt::new(4)),
        Arc::new(integration::tokens()),
        metrics,
    );
    assert!(login.login("nobody", "wrong", None).await.is_err());

    let lines = captured.lines();
    let originated: Vec<&Value> = lines
        .iter()
        .filter(|l| metric_names(l) == ["CallsOriginated"])
        .collect();
    let results: Vec<&str> = originated
        .iter()
        .filter_map(|l| l["Result"].as_str())
        .collect();
    assert_eq!(results, ["accepted", "invalid"]);
    let latency: Vec<&Value> = lines
        .iter()
        .filter(|l| metric_names(l) == ["OriginateLatency"])
        .collect();
    assert_eq!(latency.len(), 2);
    assert_eq!(
        latency[0]["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["Unit"],
        "Milliseconds"
    );
    assert!(
        lines
            .iter()
            .any(|l| metric_names(l) == ["TokenFailures"] && l["TokenFailures"] == 1.0)
    );
    for line in &lines {
        assert_eq!(
            line["_aws"]["CloudWatchMetrics"][0]["Namespace"],
            EMF_NAMESPACE
        );
        assert_eq!(line["Function"], "originate");
        let text = line.to_string();
        assert!(
            !text.contains("+1555") && !text.contains("alice") && !text.contains("nobody"),
            "no per-call or per-user labels: {text}"
        );
    }
}
