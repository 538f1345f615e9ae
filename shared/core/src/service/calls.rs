//! Placing, reading, listing and canceling calls.

use std::sync::Arc;

use tracing::{info, warn};
use uuid::Uuid;

use super::ServiceError;
use crate::domain::{
    Annotation, Call, CallPolicy, CallRequest, CallStatus, FailureReason, Transition,
};
use crate::metrics::Metrics;
use crate::pbx::{OriginateSpec, Pbx, PbxError};
use crate::store::{CallPage, CallStore, PageCursor, UserStore};
use crate::webhooks::CallbackGuard;

/// Placing and canceling calls: the use cases that talk to the PBX.
#[derive(Clone)]
pub struct CallService {
    queries: CallQueries,
    store: Arc<dyn CallStore>,
    users: Arc<dyn UserStore>,
    guard: Arc<dyn CallbackGuard>,
    pbx: Arc<dyn Pbx>,
    policy: Arc<CallPolicy>,
    metrics: Arc<Metrics>,
}

/// Reading and listing a user's calls: the store alone, no PBX.
#[derive(Clone)]
pub struct CallQueries {
    store: Arc<dyn CallStore>,
}

impl CallService {
    /// `users`: whose default `status_callback` and webhook secret a call takes;
    /// `guard`: what a callback must pass before a call with it is accepted.
    pub fn new(
        store: Arc<dyn CallStore>,
        users: Arc<dyn UserStore>,
        guard: Arc<dyn CallbackGuard>,
        pbx: Arc<dyn Pbx>,
        policy: CallPolicy,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            queries: CallQueries::new(store.clone()),
            store,
            users,
            guard,
            pbx,
            policy: Arc::new(policy),
            metrics,
        }
    }

    pub fn queries(&self) -> &CallQueries {
        &self.queries
    }

    /// Validates, records the call as `pending`, originates it into the Stasis app, and
    /// marks it `dialing`. Returns the record as it stands after that (the bridge may
    /// already have moved it further). An originate the PBX did not answer leaves the
    /// call `dialing` with `originate_unconfirmed_at` set, never `failed`: the call may
    /// well be ringing. With an idempotency key, a repeat of the request
    /// (same owner and key, within a day) returns the first call instead of placing
    /// another.
    pub async fn place_call(
        &self,
        owner: &str,
        request: CallRequest,
        idempotency_key: Option<&str>,
    ) -> Result<Call, ServiceError> {
        let started = std::time::Instant::now();
        let result = self.try_place_call(owner, request, idempotency_key).await;
        let label = match &result {
            Ok(call) if call.originate_unconfirmed_at.is_some() => "unconfirmed",
            Ok(_) => "accepted",
            Err(ServiceError::Invalid(_)) => "invalid",
            Err(ServiceError::BridgeDown) => "no_bridge",
            Err(ServiceError::PbxRejected { .. }) => "pbx_rejected",
            Err(ServiceError::PbxUnavailable { .. }) => "pbx_unavailable",
            Err(ServiceError::StoreUnavailable(_)) => "store_unavailable",
            Err(_) => "error",
        };
        self.metrics
            .inc("dialer_calls_originated_total", &[("result", label)]);
        self.metrics.observe(
            "dialer_originate_seconds",
            &[],
            started.elapsed().as_secs_f64(),
        );
        result
    }

    async fn try_place_call(
        &self,
        owner: &str,
        request: CallRequest,
        idempotency_key: Option<&str>,
    ) -> Result<Call, ServiceError> {
        let mut request = request;
        let user = self.users.get_user(owner).await?;
        if request.status_callback.is_none() {
            request.status_callback = user.as_ref().and_then(|u| u.webhook_url.clone());
        }
        let mut call =
            request.validate(&self.policy, owner, Uuid::new_v4(), crate::domain::now())?;
        if let Some(webhook) = &call.webhook {
            self.guard.check(&webhook.url).await?;
            if let Some(mut user) = user.filter(|u| u.webhook_secret.is_none()) {
                // A user from before webhooks: given a secret the first time one is needed.
                user.webhook_secret = Some(crate::domain::user::new_webhook_secret());
                self.users.update_user(&user).await?;
            }
        }
        call.record_created_event();
        let idempotency_key = idempotency_key.map(idempotency_key_of).transpose()?;
        // An originate nobody listens to is a doomed call: it would ring, be answered
        // and then fail. Refuse it before anything is dialed.
        match self.pbx.app_connected().await {
            Ok(true) => {}
            Ok(false) => return Err(ServiceError::BridgeDown),
            Err(e) => return Err(pbx_error(e, None)),
        }
        if let Some(key) = idempotency_key
            && let Some(existing) = self
                .store
                .claim_idempotency_key(owner, key, call.id, IDEMPOTENCY_TTL_SECONDS)
                .await?
        {
            return self.queries.call_of(owner, &existing.to_string()).await;
        }
        self.store.insert_call(&call).await?;
        let spec = OriginateSpec {
            call_id: call.id,
            endpoint: &call.channel,
            app_args: call.mode.as_str(),
            caller_id: call.caller_id.as_ref(),
            timeout_seconds: call.timeout_ms.div_ceil(1000),
            variables: &call.variables,
        };
        match self.pbx.originate(&spec).await {
            Ok(()) => {
                info!(call = %call.id, "call originated");
                self.mark_dialing(call).await
            }
            Err(e @ PbxError::Unconfirmed { .. }) => {
                // The channel id is ours: the bridge finds out from the channel's own
                // events, or from the PBX after a grace period, whether it exists.
                warn!(call = %call.id, error = %e, "originate unconfirmed; the bridge will settle it");
                self.store
                    .annotate(
                        call.id,
                        &Annotation::OriginateUnconfirmed(crate::domain::now()),
                    )
                    .await?;
                self.mark_dialing(call).await
            }
            Err(e) => {
                let reason = match &e {
                    PbxError::Unreachable { .. } => FailureReason::PbxUnreachable,
                    other => FailureReason::PbxRejected(short(other)),
                };
                warn!(call = %call.id, error = %e, "originate failed");
                self.store
                    .transition(
                        call.id,
                        &Transition::not_dialed(reason, crate::domain::now()),
                    )
                    .await?;
                Err(pbx_error(e, Some(call.id)))
            }
        }
    }

    /// `dialing`, and the record as it stands after that (the bridge may be ahead).
    async fn mark_dialing(&self, call: Call) -> Result<Call, ServiceError> {
        let result = self
            .store
            .transition(
                call.id,
                &Transition::to(CallStatus::Dialing, crate::domain::now()),
            )
            .await?;
        Ok(result.call().cloned().unwrap_or(call))
    }

    /// Asks the PBX to hang the call up. Before an answer the call ends `canceled`;
    /// after, `completed`. The bridge decides, from the cancel recorded here, and keeps
    /// asking the PBX to hang up until the channel is gone: once recorded, a cancel is
    /// honoured even when the PBX cannot be reached now, or the channel does not exist
    /// yet (an unconfirmed originate). The answer is the record a moment later, when the
    /// end has usually been written.
    pub async fn cancel(&self, owner: &str, id: &str) -> Result<Call, ServiceError> {
        let call = self.queries.call_of(owner, id).await?;
        if call.is_completed() {
            return Err(ServiceError::Conflict(format!(
                "the call has already ended ({})",
                call.status
            )));
        }
        let noted = self
            .store
            .annotate(call.id, &Annotation::CancelRequested(crate::domain::now()))
            .await?;
        match self.pbx.hangup(call.id).await {
            Ok(()) => return self.settled(call.id).await,
            Err(PbxError::NotFound) => {}
            Err(e) => {
                warn!(call = %call.id, error = %e, "hang-up not confirmed; the bridge will retry it");
            }
        }
        match noted {
            Some(call) => Ok(call),
            None => self.queries.call_of(owner, id).await,
        }
    }

    /// The record once it is final, or as it is after [`CANCEL_SETTLE`].
    async fn settled(&self, id: Uuid) -> Result<Call, ServiceError> {
        let deadline = tokio::time::Instant::now() + CANCEL_SETTLE;
        // The end is usually written within milliseconds: look soon, then less often,
        // so that a slow end costs a handful of reads, not fifty.
        let mut pause = std::time::Duration::from_millis(10);
        loop {
            let call = self
                .store
                .get_call(id)
                .await?
                .ok_or(ServiceError::NotFound)?;
            if call.is_completed() || tokio::time::Instant::now() >= deadline {
                return Ok(call);
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(std::time::Duration::from_millis(200));
        }
    }
}

/// How long a cancel waits for the bridge to write the call's end before answering.
const CANCEL_SETTLE: std::time::Duration = std::time::Duration::from_secs(1);

impl CallQueries {
    pub fn new(store: Arc<dyn CallStore>) -> Self {
        Self { store }
    }

    /// A call of this owner; another user's call is "not found", never "forbidden".
    pub async fn call_of(&self, owner: &str, id: &str) -> Result<Call, ServiceError> {
        let id = Uuid::try_parse(id).map_err(|_| ServiceError::NotFound)?;
        match self.store.get_call(id).await? {
            Some(call) if call.owner == owner => Ok(call),
            _ => Err(ServiceError::NotFound),
        }
    }

    pub async fn calls_of(
        &self,
        owner: &str,
        before: Option<PageCursor>,
        limit: usize,
    ) -> Result<CallPage, ServiceError> {
        Ok(self
            .store
            .calls_of(owner, before, limit.clamp(1, 100))
            .await?)
    }
}

/// How long an idempotency key keeps pointing at its call.
const IDEMPOTENCY_TTL_SECONDS: i64 = 24 * 60 * 60;

fn idempotency_key_of(raw: &str) -> Result<&str, ServiceError> {
    Ok(crate::domain::validation::idempotency_key(raw)?)
}

fn pbx_error(e: PbxError, call_id: Option<Uuid>) -> ServiceError {
    match e {
        unreachable @ (PbxError::Unreachable { .. } | PbxError::Unconfirmed { .. }) => {
            ServiceError::PbxUnavailable {
                reason: short(&unreachable),
                call_id,
                source: unreachable,
            }
        }
        other => ServiceError::PbxRejected {
            reason: short(&other),
            call_id,
        },
    }
}

fn short(e: &PbxError) -> String {
    match e {
        PbxError::Rejected { status, message } => format!("{status} {message}"),
        PbxError::NotFound => "404 not found".into(),
        PbxError::Unreachable { reason, .. } | PbxError::Unconfirmed { reason, .. } => {
            reason.clone()
        }
    }
}
