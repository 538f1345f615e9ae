//! Placing, reading, listing and canceling calls.

use std::sync::Arc;

use tracing::{info, warn};
use uuid::Uuid;

use super::ServiceError;
use super::pacing::{PLACEMENT_PATIENCE, Pacer};
use crate::domain::pacing::queue_full_retry_after;
use crate::domain::{
    Admission, Annotation, Call, CallPolicy, CallRequest, CallStatus, FailureReason, Transition,
    User,
};
use crate::metrics::Metrics;
use crate::pbx::{OriginateSpec, Pbx, PbxError};
use crate::store::{
    CallPage, CallReads, CallStore, IdempotencyBinding, PageCursor, StoreError, TransitionResult,
    UserStore,
};
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
    pacer: Pacer,
    dialer: Dialer,
}

/// Dialing a stored call: the originate and what its answer means for the record.
/// The call service dials new calls with it, the dispatcher queued ones.
#[derive(Clone)]
pub struct Dialer {
    store: Arc<dyn CallStore>,
    pbx: Arc<dyn Pbx>,
    pacer: Pacer,
}

/// Reading and listing a user's calls: the store alone, no PBX.
#[derive(Clone)]
pub struct CallQueries {
    store: Arc<dyn CallReads>,
}

impl CallService {
    /// `users`: whose default `status_callback` and webhook secret a call takes;
    /// `guard`: what a callback must pass before a call with it is accepted;
    /// `pacer`: the trunk's and the users' limits (a call over one is queued).
    pub fn new(
        store: Arc<dyn CallStore>,
        users: Arc<dyn UserStore>,
        guard: Arc<dyn CallbackGuard>,
        pbx: Arc<dyn Pbx>,
        policy: CallPolicy,
        metrics: Arc<Metrics>,
        pacer: Pacer,
    ) -> Self {
        Self {
            queries: CallQueries::new(store.clone()),
            dialer: Dialer::new(store.clone(), pbx.clone(), pacer.clone()),
            store,
            users,
            guard,
            pbx,
            policy: Arc::new(policy),
            metrics,
            pacer,
        }
    }

    pub fn dialer(&self) -> &Dialer {
        &self.dialer
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
            Ok(call) if call.status == CallStatus::Queued => "queued",
            Ok(_) => "accepted",
            Err(ServiceError::QueueFull { .. }) => "queue_full",
            Err(ServiceError::Invalid(_)) => "invalid",
            Err(ServiceError::IdempotencyKeyReused) => "idempotency_key_reused",
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
        let idempotency = idempotency_key
            .map(|raw| {
                Ok::<_, ServiceError>(Idempotency {
                    key: idempotency_key_of(raw)?,
                    fingerprint: request.fingerprint(),
                })
            })
            .transpose()?;
        let mut request = request;
        let user = self.users.get_user(owner).await?;
        if request.status_callback.is_none() {
            request.status_callback = user.as_ref().and_then(|u| u.webhook_url.clone());
        }
        let now = crate::domain::now();
        let mut call = request.validate(&self.policy, owner, Uuid::new_v4(), now)?;
        let idempotency_key = idempotency.as_ref();
        if let Some(webhook) = &call.webhook {
            self.guard.check(&webhook.url).await?;
            if let Some(mut user) = user.clone().filter(|u| u.webhook_secret.is_none()) {
                // A user from before webhooks: given a secret the first time one is needed.
                user.webhook_secret = Some(crate::domain::user::new_webhook_secret());
                self.users.update_user(&user).await?;
            }
        }
        let limits = user.as_ref().map(|u| u.limits).unwrap_or_default();
        let admission = match call.held_until(now) {
            Some(due) => Err(due),
            None if self.pacer.applies(limits) => {
                let admission = self
                    .pacer
                    .admit_within(owner, limits, call.slot(), PLACEMENT_PATIENCE)
                    .await?;
                match admission {
                    Some((Admission::Granted, granted_at)) => {
                        call.paced = true;
                        Ok(self.pacer.limits().calls_per_second.map(|_| granted_at))
                    }
                    Some((
                        Admission::RateLimited { .. } | Admission::TrunkFull | Admission::UserFull,
                        _,
                    )) => Err(now),
                    // The trunk's state is contended: a trunk that busy is full for
                    // now, and the dispatcher admits the call when it can.
                    None => Err(now),
                }
            }
            None => Ok(None),
        };
        match admission {
            Ok(rate_granted_at) => {
                self.place_now(owner, call, idempotency_key, rate_granted_at)
                    .await
            }
            Err(due) => {
                self.enqueue(user.as_ref(), call, due, idempotency_key)
                    .await
            }
        }
    }

    /// Records the call and originates it at once.
    async fn place_now(
        &self,
        owner: &str,
        mut call: Call,
        idempotency_key: Option<&Idempotency<'_>>,
        rate_granted_at: Option<chrono::DateTime<chrono::Utc>>,
    ) -> Result<Call, ServiceError> {
        // Until the originate is sent, a failure gives the line back; after, the
        // attempt's end frees it, as for any dialed call.
        let recorded = async {
            // An originate nobody listens to is a doomed call: it would ring, be
            // answered and then fail. Refuse it before anything is dialed.
            match self.pbx.app_connected().await {
                Ok(true) => {}
                Ok(false) => return Err(ServiceError::BridgeDown),
                Err(e) => return Err(pbx_error(e, None)),
            }
            if let Some(existing) = self.repeat_of(owner, call.id, idempotency_key).await? {
                return Ok(Some(existing));
            }
            call.record_created_event();
            self.store.insert_call(&call).await?;
            Ok(None)
        }
        .await;
        match recorded {
            Ok(None) => {}
            other => {
                if call.paced {
                    self.pacer.release(owner, call.slot()).await?;
                }
                return other.map(|existing| existing.unwrap_or(call));
            }
        }
        if let Some(granted_at) = rate_granted_at {
            self.pacer.before_dial(granted_at).await?;
        }
        self.dialer.dial(call).await
    }

    /// Accepts the call as `queued` until `due`: over a limit, before its `send_at`, or
    /// outside its calling window. The dispatcher dials it when it may.
    async fn enqueue(
        &self,
        user: Option<&User>,
        mut call: Call,
        due: chrono::DateTime<chrono::Utc>,
        idempotency_key: Option<&Idempotency<'_>>,
    ) -> Result<Call, ServiceError> {
        let owner = call.owner.clone();
        let limits = user.map(|u| u.limits).unwrap_or_default();
        if let Err(full) = self.pacer.enqueue(&owner, limits).await? {
            // A repeat of a request that was accepted gets its call, full queue or not.
            if let Some(idempotency) = idempotency_key
                && let Some(existing) = self
                    .store
                    .idempotency_binding(&owner, idempotency.key)
                    .await?
            {
                return self.repeated(&owner, idempotency, &existing).await;
            }
            warn!(
                user = %owner,
                queued = full.queued,
                whole_service = full.whole_service,
                "call refused: queue full"
            );
            return Err(ServiceError::QueueFull {
                retry_after_seconds: queue_full_retry_after(full.queued, self.pacer.limits()),
                whole_service: full.whole_service,
            });
        }
        let queue = self.pacer.queue_limits();
        let counted = queue.of_user(limits).is_some() || queue.total.is_some();
        let stored = async {
            if let Some(existing) = self.repeat_of(&owner, call.id, idempotency_key).await? {
                return Ok::<_, ServiceError>(Some(existing));
            }
            call.enqueue(due);
            call.record_created_event();
            self.store.insert_call(&call).await?;
            Ok(None)
        }
        .await;
        match stored {
            Ok(None) => {
                info!(call = %call.id, due = %due, "call queued");
                self.pacer.wake();
                Ok(call)
            }
            Ok(Some(existing)) => {
                if counted {
                    self.pacer.dequeue(&owner).await?;
                }
                Ok(existing)
            }
            Err(e) => {
                if counted {
                    let _ = self.pacer.dequeue(&owner).await;
                }
                Err(e)
            }
        }
    }

    /// The call an idempotency key already names (a repeat of a request), binding the
    /// key to `id` when it names none.
    async fn repeat_of(
        &self,
        owner: &str,
        id: Uuid,
        idempotency: Option<&Idempotency<'_>>,
    ) -> Result<Option<Call>, ServiceError> {
        let Some(idempotency) = idempotency else {
            return Ok(None);
        };
        let binding = IdempotencyBinding {
            call_id: id,
            fingerprint: idempotency.fingerprint.clone(),
        };
        match self
            .store
            .claim_idempotency_key(owner, idempotency.key, &binding, IDEMPOTENCY_TTL_SECONDS)
            .await?
        {
            Some(existing) => Ok(Some(self.repeated(owner, idempotency, &existing).await?)),
            None => Ok(None),
        }
    }

    /// The first call of a request repeated under its idempotency key; a different
    /// request under that key is refused, never answered with the first one's call.
    async fn repeated(
        &self,
        owner: &str,
        idempotency: &Idempotency<'_>,
        existing: &IdempotencyBinding,
    ) -> Result<Call, ServiceError> {
        if !existing.repeated_by(&idempotency.fingerprint) {
            return Err(ServiceError::IdempotencyKeyReused);
        }
        self.queries
            .call_of(owner, &existing.call_id.to_string())
            .await
    }

    /// Asks the PBX to hang the call up. Before an answer the call ends `canceled`;
    /// after, `completed`. The bridge decides, from the cancel recorded here, and keeps
    /// asking the PBX to hang up until the channel is gone: once recorded, a cancel is
    /// honoured even when the PBX cannot be reached now, or the channel does not exist
    /// yet (an unconfirmed originate). The answer is the record a moment later, when the
    /// end has usually been written.
    ///
    /// A call still waiting in the queue (over a limit, scheduled, or between attempts)
    /// ends `canceled` at once, without a dial.
    pub async fn cancel(&self, owner: &str, id: &str) -> Result<Call, ServiceError> {
        let call = self.queries.call_of(owner, id).await?;
        if call.is_completed() {
            return Err(ServiceError::Conflict(format!(
                "the call has already ended ({})",
                call.status
            )));
        }
        // A call claimed meanwhile is canceled like any call on its way, below.
        if call.status == CallStatus::Queued
            && let TransitionResult::Applied(canceled) = self.dialer.cancel_in_queue(&call).await?
        {
            info!(call = %call.id, "queued call canceled");
            return Ok(canceled);
        }
        let noted = self
            .store
            .annotate(call.id, &Annotation::CancelRequested(crate::domain::now()))
            .await?;
        if let Some(requeued) = noted.as_ref().filter(|c| c.status == CallStatus::Queued) {
            // The attempt ended while the cancel was on its way and a retry queued the
            // next one: that one is canceled in the queue (the dispatcher would also
            // refuse to claim it, seeing the cancel).
            if let Some(call) = self.dialer.cancel_in_queue(requeued).await?.call() {
                return Ok(call.clone());
            }
        }
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

impl Dialer {
    pub fn new(store: Arc<dyn CallStore>, pbx: Arc<dyn Pbx>, pacer: Pacer) -> Self {
        Self { store, pbx, pacer }
    }

    pub fn pacer(&self) -> &Pacer {
        &self.pacer
    }

    pub fn pbx(&self) -> &Arc<dyn Pbx> {
        &self.pbx
    }

    /// Ends a call still waiting in the queue `canceled`, never dialed, unless it was
    /// claimed meanwhile; a new call leaving the queue this way frees its place in the
    /// user's queue count.
    pub async fn cancel_in_queue(&self, call: &Call) -> Result<TransitionResult, StoreError> {
        let result = self
            .store
            .transition(
                call.id,
                &Transition::canceled_in_queue(call.attempt_number, crate::domain::now()),
            )
            .await?;
        if result.applied() && call.attempt_number == 1 {
            self.pacer.dequeue(&call.owner).await?;
        }
        Ok(result)
    }

    /// Dials a call claimed from the queue, unless a cancel reached it in the meantime
    /// (between the claim and the dial): that one ends `canceled`, never dialed.
    pub async fn dial_unless_canceled(&self, call: Call) -> Result<Call, ServiceError> {
        let current = self.store.get_call(call.id).await?;
        if let Some(settled) = current
            .as_ref()
            .filter(|c| c.status != CallStatus::Pending || c.attempt_number != call.attempt_number)
        {
            // Settled meanwhile, by another dispatcher that took this claim for lost
            // (it waited past the claim timeout): the record says the attempt is over,
            // so it is not dialed behind the record's back.
            warn!(call = %call.id, status = %settled.status, "claimed call settled before its dial; not dialed");
            return Ok(settled.clone());
        }
        if let Some(current) = current.filter(|c| c.cancel_requested_at.is_some()) {
            let result = self
                .store
                .transition(
                    current.id,
                    &Transition::canceled_in_queue(current.attempt_number, crate::domain::now()),
                )
                .await?;
            self.release_ended(&result).await;
            return Ok(result.call().cloned().unwrap_or(current));
        }
        self.dial(call).await
    }

    /// Originates a stored call (new, or claimed from the queue) and marks it
    /// `dialing`. An originate the PBX did not answer leaves it `dialing` with
    /// `originate_unconfirmed_at`; one it refused ends the attempt `failed` (and may
    /// queue the next attempt).
    pub async fn dial(&self, call: Call) -> Result<Call, ServiceError> {
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
                info!(call = %call.id, attempt = call.attempt_number, "call originated");
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
                let result = self
                    .store
                    .transition(
                        call.id,
                        &Transition::not_dialed(reason, crate::domain::now())
                            .of_attempt(call.attempt_number),
                    )
                    .await?;
                self.release_ended(&result).await;
                Err(pbx_error(e, Some(call.id)))
            }
        }
    }

    /// Frees the line of the attempt a write just ended, if it held one.
    pub async fn release_ended(&self, result: &TransitionResult) {
        release_ended(&self.pacer, result).await;
    }

    /// `dialing`, and the record as it stands after that (the bridge may be ahead).
    async fn mark_dialing(&self, call: Call) -> Result<Call, ServiceError> {
        let result = self
            .store
            .transition(
                call.id,
                &Transition::to(CallStatus::Dialing, crate::domain::now())
                    .of_attempt(call.attempt_number),
            )
            .await?;
        Ok(result.call().cloned().unwrap_or(call))
    }
}

/// How long a cancel waits for the bridge to write the call's end before answering.
const CANCEL_SETTLE: std::time::Duration = std::time::Duration::from_secs(1);

impl CallQueries {
    pub fn new(store: Arc<dyn CallReads>) -> Self {
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

/// Frees the line of the attempt a write just ended, if it held one. A store error is
/// logged, not returned: the dispatcher's reconciliation frees a line left behind.
pub async fn release_ended(pacer: &Pacer, result: &TransitionResult) {
    let TransitionResult::Applied(call) = result else {
        return;
    };
    let Some(slot) = call.ended_attempt_slot() else {
        return;
    };
    if let Err(e) = pacer.release(&call.owner, slot).await {
        warn!(call = %call.id, error = %e, "could not free the call's line; reconciliation will");
    }
}

/// How long an idempotency key keeps pointing at its call.
const IDEMPOTENCY_TTL_SECONDS: i64 = 24 * 60 * 60;

/// A request's idempotency key and the fingerprint of what it asks for.
struct Idempotency<'a> {
    key: &'a str,
    fingerprint: String,
}

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
