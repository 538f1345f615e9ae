//! Delivering webhook events: each call's events in order, one call at a time per
//! deliverer, so that a slow or dead receiver holds back only its own call's events.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use tracing::{debug, warn};
use uuid::Uuid;

use super::ServiceError;
use crate::domain::webhook::SendOutcome;
use crate::metrics::Metrics;
use crate::store::{CallBacklog, UserStore};
use crate::webhooks::WebhookSender;

/// Sends calls' due events and records how each attempt went.
#[derive(Clone)]
pub struct Deliverer {
    calls: Arc<dyn CallBacklog>,
    users: Arc<dyn UserStore>,
    sender: Arc<dyn WebhookSender>,
    /// How long after an event retries go on before it is dead.
    max_age: Duration,
    metrics: Arc<Metrics>,
}

impl Deliverer {
    pub fn new(
        calls: Arc<dyn CallBacklog>,
        users: Arc<dyn UserStore>,
        sender: Arc<dyn WebhookSender>,
        max_age: Duration,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            calls,
            users,
            sender,
            max_age,
            metrics,
        }
    }

    /// Delivers call `id`'s due events, in order, until one is not delivered or none
    /// is due. Returns when the next attempt is due, if one is waiting.
    pub async fn deliver_call(&self, id: Uuid) -> Result<Option<DateTime<Utc>>, ServiceError> {
        loop {
            let Some(call) = self.calls.get_call(id).await? else {
                return Ok(None);
            };
            let now = Utc::now();
            let Some(event) = call.next_event_due(now) else {
                return Ok(call
                    .events
                    .iter()
                    .find(|e| !e.delivery.is_settled())
                    .and_then(|e| e.delivery.next_attempt_at));
            };
            let Some(webhook) = &call.webhook else {
                return Ok(None);
            };
            let owner = self.users.get_user(&call.owner).await?;
            let secrets: Vec<&str> = owner
                .as_ref()
                .map(|u| u.webhook_secrets(now))
                .unwrap_or_default();
            let outcome = if secrets.is_empty() {
                // Nothing to sign with: the event cannot be sent as the contract says.
                SendOutcome::Retry {
                    status: None,
                    error: "the call's owner has no webhook secret".into(),
                }
            } else {
                self.sender.send(&webhook.url, id, event, &secrets).await
            };
            let mut attempted = event.clone();
            attempted.record(&outcome, Utc::now(), self.max_age, jitter());
            let result = match &outcome {
                SendOutcome::Delivered { .. } => "delivered",
                SendOutcome::Retry { .. } if attempted.delivery.dead_at.is_some() => "dead",
                SendOutcome::Retry { .. } => "retry",
                SendOutcome::Rejected { .. } => "rejected",
            };
            self.metrics
                .inc("dialer_webhook_attempts_total", &[("result", result)]);
            if attempted.delivery.dead_at.is_some() {
                self.metrics.inc("dialer_webhook_dead_total", &[]);
                warn!(call_id = %id, sequence = attempted.sequence, error = ?attempted.delivery.last_error, "webhook event given up");
            } else {
                debug!(call_id = %id, sequence = attempted.sequence, result, "webhook attempt");
            }
            let written = self
                .calls
                .record_delivery(id, attempted.sequence, &attempted.delivery)
                .await?;
            if written.is_none() || !matches!(outcome, SendOutcome::Delivered { .. }) {
                if attempted.delivery.dead_at.is_some() {
                    // A dead event no longer holds back the ones after it.
                    continue;
                }
                return Ok(attempted.delivery.next_attempt_at);
            }
        }
    }
}

/// How the drain loop paces itself.
#[derive(Clone, Copy, Debug)]
pub struct DrainTiming {
    /// How often the outbox is looked at when nothing was due last time.
    pub poll: std::time::Duration,
    /// How long a claimed call is held: longer than one delivery can take.
    pub lease: Duration,
    /// Calls delivered at once; each has its own task, so a receiver that hangs holds
    /// one slot for at most the request timeout.
    pub concurrency: usize,
}

impl Default for DrainTiming {
    fn default() -> Self {
        Self {
            poll: std::time::Duration::from_millis(100),
            lease: Duration::seconds(60),
            concurrency: 256,
        }
    }
}

impl Deliverer {
    /// Drains the outbox until `stop` turns true: claims due calls, delivers each in a
    /// task of its own, releases it. Claims live in the store, so any number of these
    /// loops (bridges, restarts) can run at once without sending an event twice at
    /// the same moment or out of order.
    pub async fn drain(self, timing: DrainTiming, mut stop: tokio::sync::watch::Receiver<bool>) {
        let slots = Arc::new(tokio::sync::Semaphore::new(timing.concurrency.max(1)));
        let mut tasks = tokio::task::JoinSet::new();
        while !*stop.borrow() {
            while tasks.try_join_next().is_some() {}
            let free = slots.available_permits();
            let claimed = if free == 0 {
                Vec::new()
            } else {
                match self
                    .calls
                    .claim_due_calls(Utc::now(), timing.lease, free)
                    .await
                {
                    Ok(ids) => ids,
                    Err(e) => {
                        warn!(error = %e, "could not read the webhook outbox");
                        Vec::new()
                    }
                }
            };
            let idle = claimed.is_empty();
            for id in claimed {
                let Ok(slot) = slots.clone().acquire_owned().await else {
                    break;
                };
                let deliverer = self.clone();
                tasks.spawn(async move {
                    let _slot = slot;
                    if let Err(e) = deliverer.deliver_call(id).await {
                        warn!(call_id = %id, error = %e, "webhook delivery failed; the call is tried again");
                    }
                    if let Err(e) = deliverer.calls.release_call(id).await {
                        warn!(call_id = %id, error = %e, "could not release a webhook claim; it lapses");
                    }
                });
            }
            if idle {
                tokio::select! {
                    () = tokio::time::sleep(timing.poll) => {}
                    _ = stop.changed() => {}
                }
            }
        }
        // Deliveries in flight finish (each is bounded by the sender's timeouts).
        while tasks.join_next().await.is_some() {}
    }
}

/// 0.5 to 1.0, for the retry schedule's jitter: from the clock's nanoseconds, which is
/// random enough to keep failing events from coming back in step.
fn jitter() -> f64 {
    let nanos = Utc::now().timestamp_subsec_nanos();
    0.5 + f64::from(nanos % 1000) / 2000.0
}
