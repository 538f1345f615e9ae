//! The bridge core: one ARI event in, conditional store writes and call control out.
//! Everything it needs to decide an outcome is on the call record, so a restarted bridge
//! decides the same way. It keeps two hints between events, never an outcome: which
//! calls' channels are hanging up, so that a playback the hang-up cut short (Asterisk
//! reports it `failed`, after the hang-up request) is not taken for media the PBX lacks;
//! and which calls this process has driven, so that a reconnect's reconciliation does
//! not drive them again (a restarted process knows none, and asks the PBX).

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tracing::{debug, info, warn};
use uuid::Uuid;

use super::signal::{Signal, playback_id, signal_of};
use dialer_ari::AriEvent;
use dialer_core::domain::outcome::progress_of_channel_state;
use dialer_core::domain::validation::{Context, Extension, Media};
use dialer_core::domain::{
    Annotation, Call, CallMode, CallStatus, EndFacts, FailureReason, Transition, final_outcome,
};
use dialer_core::metrics::Metrics;
use dialer_core::pbx::{Pbx, PbxError};
use dialer_core::service::Pacer;
use dialer_core::service::calls::release_ended;
use dialer_core::store::{CallBacklog, StoreError, TransitionResult};

#[derive(Clone)]
pub struct CallEvents {
    store: Arc<dyn CallBacklog>,
    pbx: Arc<dyn Pbx>,
    metrics: Arc<Metrics>,
    /// Frees an attempt's line when its end is written (when calls are paced).
    pacer: Option<Pacer>,
    /// Calls whose channel has a hang-up request and is not yet destroyed. A call's
    /// events reach the core in order, so the request is seen before the playback's end.
    hanging_up: Arc<CallSet>,
    /// Calls this process sent into the dialplan or played media to, until destroyed.
    driven: Arc<CallSet>,
}

/// A set of call ids that lives as long as the process. Bounded: a channel whose
/// destruction was never seen (a lost socket) is forgotten with the rest when the set is
/// full; at worst a cut-short playback is then reported failed, or a call waiting in
/// the app after its media is played to again.
#[derive(Default)]
struct CallSet(std::sync::Mutex<std::collections::HashSet<Uuid>>);

impl CallSet {
    const MAX: usize = 100_000;

    fn insert(&self, id: Uuid) {
        let mut set = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if set.len() >= Self::MAX {
            set.clear();
        }
        set.insert(id);
    }

    fn contains(&self, id: Uuid) -> bool {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .contains(&id)
    }

    fn remove(&self, id: Uuid) {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&id);
    }
}

/// Why a waiting call could not be driven.
#[derive(Debug, thiserror::Error)]
enum ResumeError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Pbx(#[from] PbxError),
}

/// What reconciliation did with the calls the store held as active.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Reconciled {
    pub checked: usize,
    pub finished: usize,
    pub advanced: usize,
    /// Answered calls whose channel still waited in our app, undriven: driven now.
    pub resumed: usize,
}

impl CallEvents {
    pub fn new(store: Arc<dyn CallBacklog>, pbx: Arc<dyn Pbx>, metrics: Arc<Metrics>) -> Self {
        Self {
            store,
            pbx,
            metrics,
            pacer: None,
            hanging_up: Arc::default(),
            driven: Arc::default(),
        }
    }

    /// Frees each paced attempt's line in the store as its end is written, and wakes
    /// the dispatcher of this process.
    pub fn with_pacer(mut self, pacer: Pacer) -> Self {
        self.pacer = Some(pacer);
        self
    }

    /// Handles one event. A store error is returned so the caller can retry the event;
    /// handling the same event twice is harmless (every write is conditional).
    pub async fn handle(&self, event: &AriEvent) -> Result<(), StoreError> {
        let Some((id, signal)) = signal_of(event) else {
            return Ok(());
        };
        match signal {
            Signal::Progress { status, dialstatus } => {
                let change = Transition::to(status, dialer_core::domain::now())
                    .with_dialstatus(dialstatus.clone());
                let result = self.write(id, &change).await?;
                if let (TransitionResult::Refused(call), Some(dialstatus)) = (&result, &dialstatus)
                    && call.dialstatus.as_deref() != Some(dialstatus.as_str())
                {
                    self.store
                        .annotate(id, &Annotation::DialStatus(dialstatus.clone()))
                        .await?;
                }
                if let Some(call) = result.call() {
                    self.end_if_unwanted(call, "progress");
                }
            }
            Signal::DialStatus(dialstatus) => {
                self.store
                    .annotate(id, &Annotation::DialStatus(dialstatus))
                    .await?;
            }
            Signal::HangupRequested => self.hanging_up.insert(id),
            Signal::Destroyed { cause, cause_txt } => {
                self.hanging_up.remove(id);
                self.driven.remove(id);
                if let Some(call) = self.store.get_call(id).await? {
                    self.finish(&call, Some(cause), Some(cause_txt)).await?;
                }
            }
            Signal::StasisStart => self.on_answered(id).await?,
            Signal::Dtmf(digit) => {
                if let Some(call) = self.store.annotate(id, &Annotation::Dtmf(digit)).await?
                    && call.gather_dtmf
                    && call.mode == CallMode::Playback
                {
                    // The callee answered the prompt: nothing more to play.
                    self.control(id, Control::Hangup);
                }
            }
            Signal::PlaybackFinished { failed } => {
                let noted = match failed {
                    Some(media) if self.hanging_up.contains(id) => {
                        debug!(call = %id, media = %media, "a playback cut short by the hang-up");
                        None
                    }
                    Some(media) => {
                        warn!(call = %id, media = %media, "the PBX could not play a media item");
                        self.store
                            .annotate(id, &Annotation::MediaFailed(media))
                            .await?
                    }
                    None => None,
                };
                let call = match noted {
                    Some(call) => Some(call),
                    None => self.store.get_call(id).await?,
                };
                if let Some(call) = call {
                    if call.is_active() && call.mode == CallMode::Playback && !call.gather_dtmf {
                        self.control(id, Control::Hangup);
                    } else if call.is_active() && call.gather_dtmf {
                        self.control(id, Control::HangupAfter(GATHER_WAIT));
                    }
                }
            }
        }
        Ok(())
    }

    /// Brings every call the store still holds as active in line with the PBX: after a
    /// (re)connect, events may have been lost. A channel that no longer exists gets its
    /// final status from what the record knows.
    ///
    /// Only calls created before `connected_at` can have lost events; and the events of
    /// this very moment may still be on their way through the write queue, so a call
    /// found behind waits `settle` and is read again before reconciliation writes
    /// anything: a live event always wins over a guess. Pending calls younger than
    /// `pending_grace` are left alone: their originate may still be under way.
    ///
    /// An answered call whose channel still waits in our app was not driven: the bridge
    /// before this one stopped between the answer and its `continue` or `play`, or
    /// while its media played. After `settle` (a request of this process may still be on
    /// its way), one still waiting is driven as at its answer: continued into its
    /// context, or its media played unless that playback still runs (so a playback that
    /// had ended just before its hang-up plays again: better twice than silence); and its
    /// talk-time limit is armed again for what is left of it.
    pub async fn reconcile(
        &self,
        connected_at: DateTime<Utc>,
        pending_grace: Duration,
        settle: Duration,
    ) -> Result<Reconciled, ReconcileError> {
        let mut report = Reconciled::default();
        let grace = chrono::Duration::from_std(pending_grace).unwrap_or(chrono::Duration::MAX);
        let mut behind = Vec::new();
        let mut waiting = Vec::new();
        for call in self.store.calls_in_progress().await? {
            // An unconfirmed originate's channel may not exist yet: the sweeper settles
            // it after its own grace period. A queued call has no channel to look at.
            if call.status == CallStatus::Queued
                || call.attempt_started_at() >= connected_at
                || (call.status == CallStatus::Pending
                    && Utc::now() - call.attempt_started_at() < grace)
                || (call.status == CallStatus::Dialing && call.originate_unconfirmed_at.is_some())
            {
                continue;
            }
            report.checked += 1;
            match self.pbx.channel(call.id).await {
                Ok(None) => behind.push((call.id, None)),
                Ok(Some(channel)) => {
                    if let Some(status) = progress_of_channel_state(&channel.state)
                        && call.status.can_move_to(status)
                    {
                        behind.push((call.id, Some(status)));
                    }
                    // One the record holds as answered: `advance` drives the others.
                    if channel.in_app
                        && call.answered_at.is_some()
                        && !self.driven.contains(call.id)
                    {
                        waiting.push(call.id);
                    }
                }
                Err(e) => return Err(ReconcileError::Pbx(e)),
            }
        }
        if !behind.is_empty() || !waiting.is_empty() {
            tokio::time::sleep(settle).await;
        }
        for (id, progress) in behind {
            let Some(call) = self.store.get_call(id).await? else {
                continue;
            };
            match progress {
                None => {
                    if self.finish(&call, None, None).await? {
                        report.finished += 1;
                    }
                }
                Some(status) => {
                    if self.advance(id, status).await? {
                        report.advanced += 1;
                    }
                }
            }
        }
        for id in waiting {
            match self.resume(id).await {
                Ok(true) => report.resumed += 1,
                Ok(false) => {}
                // The next reconnect or sweep looks again.
                Err(e) => warn!(call = %id, error = %e, "could not drive a waiting call"),
            }
        }
        if report.checked > 0 {
            info!(?report, "reconciled active calls");
        }
        Ok(report)
    }

    /// Drives an answered call whose channel still waits in our app (see
    /// [`CallEvents::reconcile`]); returns whether it did.
    async fn resume(&self, id: Uuid) -> Result<bool, ResumeError> {
        let Some(call) = self.store.get_call(id).await? else {
            return Ok(false);
        };
        if !call.is_active() || call.answered_at.is_none() || self.driven.contains(id) {
            return Ok(false);
        }
        if self.end_if_unwanted(&call, "reconcile") {
            return Ok(false);
        }
        let still_waiting = self.pbx.channel(id).await?.is_some_and(|c| {
            c.in_app && progress_of_channel_state(&c.state) == Some(CallStatus::Answered)
        });
        if !still_waiting {
            return Ok(false);
        }
        let driven = match call.mode {
            CallMode::Playback if self.pbx.playing(&playback_id(id)).await? => {
                self.driven.insert(id);
                false
            }
            _ => {
                self.drive(&call);
                true
            }
        };
        // The limit's timer lived in the process that stopped.
        if let (Some(max), Some(answered)) = (call.max_duration_ms, call.answered_at) {
            let talked = (Utc::now() - answered).to_std().unwrap_or_default();
            let left = Duration::from_millis(max).saturating_sub(talked);
            self.control(id, Control::HangupAfter(left));
        }
        if driven {
            info!(call = %id, "an answered call nobody drove: driven now");
        }
        Ok(driven)
    }

    /// Settles what events alone cannot:
    /// - an originate the PBX never confirmed, once `unconfirmed_grace` has passed with
    ///   no event of its channel: a channel that exists goes on as usual; none means the
    ///   call was never placed (`failed`, `originate_unconfirmed`; `canceled` when the
    ///   client canceled it meanwhile);
    /// - a recorded cancel whose hang-up did not get through: asked again, until the
    ///   channel is gone;
    /// - calls active longer than they possibly could be: ring timeout plus maximum
    ///   talk time (the call's own, else `talk_limit`) plus a minute. A channel that
    ///   still exists is hung up (its end then arrives as an event); one that is gone,
    ///   or a PBX that cannot be asked, finishes the call from what is known.
    pub async fn sweep(
        &self,
        talk_limit: Duration,
        unconfirmed_grace: Duration,
    ) -> Result<usize, StoreError> {
        let mut finished = 0;
        for call in self.store.calls_in_progress().await? {
            if call.status == CallStatus::Queued {
                // Waiting for the dispatcher; no channel of it exists.
                continue;
            }
            if self.settle_unconfirmed(&call, unconfirmed_grace).await? {
                finished += 1;
                continue;
            }
            if call
                .cancel_requested_at
                .is_some_and(|at| Utc::now() - at >= CANCEL_RETRY)
                && call.status != CallStatus::Pending
            {
                match self.pbx.channel(call.id).await {
                    Ok(Some(_)) => self.control(call.id, Control::Hangup),
                    Ok(None) => {
                        if call.originate_unconfirmed_at.is_none()
                            && self.finish(&call, None, None).await?
                        {
                            finished += 1;
                        }
                    }
                    Err(_) => {}
                }
                continue;
            }
            let talk = call
                .max_duration_ms
                .map_or(talk_limit, Duration::from_millis);
            let lifetime = Duration::from_millis(call.timeout_ms) + talk + Duration::from_secs(60);
            let deadline = call.attempt_started_at()
                + chrono::Duration::from_std(lifetime).unwrap_or(chrono::Duration::MAX);
            if Utc::now() < deadline {
                continue;
            }
            match self.pbx.channel(call.id).await {
                Ok(Some(_)) => self.control(call.id, Control::Hangup),
                Ok(None) => {
                    if self.finish(&call, None, None).await? {
                        finished += 1;
                    }
                }
                Err(_) => {
                    let stale = Transition::to(
                        if call.answered_at.is_some() {
                            CallStatus::Completed
                        } else {
                            CallStatus::Failed
                        },
                        dialer_core::domain::now(),
                    )
                    .with_reason(call.answered_at.is_none().then_some(FailureReason::Stale));
                    if self.write(call.id, &stale).await?.applied() {
                        finished += 1;
                    }
                }
            }
        }
        if finished > 0 {
            warn!(finished, "swept calls that outlived any possible end");
        }
        Ok(finished)
    }

    /// An unconfirmed originate with no sign of its channel after the grace period:
    /// asks the PBX. Returns whether this finished the call.
    async fn settle_unconfirmed(&self, call: &Call, grace: Duration) -> Result<bool, StoreError> {
        let Some(unconfirmed_at) = call.originate_unconfirmed_at else {
            return Ok(false);
        };
        let grace = chrono::Duration::from_std(grace).unwrap_or(chrono::Duration::MAX);
        if call.status != CallStatus::Dialing || Utc::now() - unconfirmed_at < grace {
            return Ok(false);
        }
        match self.pbx.channel(call.id).await {
            Ok(None) => {
                let change = if call.cancel_requested_at.is_some() {
                    Transition::to(CallStatus::Canceled, dialer_core::domain::now())
                } else {
                    Transition::to(CallStatus::Failed, dialer_core::domain::now())
                        .with_reason(Some(FailureReason::OriginateUnconfirmed))
                };
                let applied = self.end_with(call.id, &change).await?;
                if applied {
                    warn!(call = %call.id, "originate never confirmed and no channel exists: settled");
                }
                Ok(applied)
            }
            Ok(Some(channel)) => {
                // The call was placed after all; its later events carry it on.
                if let Some(status) = progress_of_channel_state(&channel.state) {
                    self.advance(call.id, status).await?;
                }
                Ok(false)
            }
            Err(_) => Ok(false),
        }
    }

    /// Finishes a call whose channel is gone; returns whether this write finished it.
    async fn finish(
        &self,
        call: &Call,
        cause: Option<i64>,
        cause_txt: Option<String>,
    ) -> Result<bool, StoreError> {
        if call.is_completed() || call.status == CallStatus::Queued {
            // Final already, or waiting for its next attempt: the end of a channel
            // (a late event of the attempt before) changes nothing.
            return Ok(false);
        }
        let ring_timeout =
            chrono::Duration::milliseconds(i64::try_from(call.timeout_ms).unwrap_or(i64::MAX));
        let (status, reason) = final_outcome(EndFacts {
            answered: call.answered_at.is_some(),
            cancel_requested: call.cancel_requested_at.is_some(),
            dialstatus: call.dialstatus.as_deref(),
            cause,
            rang_out: call
                .ringing_at
                .is_some_and(|rang| Utc::now() - rang >= ring_timeout),
        });
        let change = Transition::to(status, dialer_core::domain::now())
            .with_reason(reason)
            .with_cause(cause, cause_txt);
        self.end_with(call.id, &change).await
    }

    /// Writes a final status and counts it; returns whether this write ended the call.
    async fn end_with(&self, id: Uuid, change: &Transition) -> Result<bool, StoreError> {
        let written = self.write(id, change).await?;
        let TransitionResult::Applied(call) = &written else {
            return Ok(false);
        };
        self.metrics.inc(
            "dialer_calls_finished_total",
            &[("status", change.status.as_str())],
        );
        // One line per outcome, for an operator following a call through the logs. No
        // number or variables: the call id leads to them for whoever may see them.
        info!(
            call = %call.id,
            user = %call.owner,
            attempt = call.attempt_number,
            status = %call.status,
            failure_reason = call.failure_reason.as_ref().map(FailureReason::to_text),
            cause = call.cause,
            dialstatus = call.dialstatus.as_deref(),
            answered = call.answered_at.is_some(),
            "call ended"
        );
        Ok(true)
    }

    /// Moves a call on to what its channel shows (ringing, answered); an answer seen this
    /// way (its StasisStart was lost) drives the call now. Returns whether it moved.
    async fn advance(&self, id: Uuid, status: CallStatus) -> Result<bool, StoreError> {
        let applied = self
            .write(id, &Transition::to(status, dialer_core::domain::now()))
            .await?
            .applied();
        if applied && status == CallStatus::Answered {
            self.on_answered(id).await?;
        }
        Ok(applied)
    }

    async fn on_answered(&self, id: Uuid) -> Result<(), StoreError> {
        let call = match self
            .write(
                id,
                &Transition::to(CallStatus::Answered, dialer_core::domain::now()),
            )
            .await?
        {
            TransitionResult::NotFound => {
                // Not a call of ours (originated into the app by someone else): don't
                // leave it hanging in Stasis.
                warn!(channel = %id, "StasisStart for an unknown call; hanging up");
                self.control(id, Control::Hangup);
                return Ok(());
            }
            TransitionResult::Applied(call) | TransitionResult::Refused(call) => call,
        };
        if self.end_if_unwanted(&call, "answer") {
            return Ok(());
        }
        self.drive(&call);
        if let Some(max) = call.max_duration_ms {
            self.control(id, Control::HangupAfter(Duration::from_millis(max)));
        }
        Ok(())
    }

    /// Sends an answered call where it goes: into its dialplan context, or its media
    /// played to it; and notes that this process drove it.
    fn drive(&self, call: &Call) {
        self.driven.insert(call.id);
        let control = match call.mode {
            CallMode::Ivr => Control::Continue {
                context: call.context.clone(),
                extension: call.extension.clone(),
                priority: call.priority,
            },
            CallMode::Playback => Control::Play(call.media.clone()),
        };
        self.control(call.id, control);
    }

    /// A live channel that nobody wants any more is hung up at once: its record is
    /// already final (the originate was settled as unconfirmed, the sweeper gave up on
    /// it, …), or the client canceled it before it existed. Returns whether it was.
    fn end_if_unwanted(&self, call: &Call, seen: &'static str) -> bool {
        let why = if call.is_completed() {
            "its record is already final"
        } else if call.status == CallStatus::Queued {
            "its attempt already ended"
        } else if call.cancel_requested_at.is_some() {
            "its cancel was requested"
        } else {
            return false;
        };
        warn!(call = %call.id, status = %call.status, seen, "live channel hung up: {why}");
        self.metrics
            .inc("dialer_bridge_unwanted_channels_total", &[]);
        self.control(call.id, Control::Hangup);
        true
    }

    async fn write(&self, id: Uuid, change: &Transition) -> Result<TransitionResult, StoreError> {
        let result = self.store.transition(id, change).await;
        let label = match &result {
            Ok(TransitionResult::Applied(_)) => "applied",
            Ok(TransitionResult::Refused(_)) => "refused",
            Ok(TransitionResult::NotFound) => "not_found",
            Err(_) => "error",
        };
        self.metrics
            .inc("dialer_bridge_status_writes_total", &[("result", label)]);
        if let Ok(applied @ TransitionResult::Applied(call)) = &result {
            debug!(call = %id, status = %call.status, "status written");
            if let Some(pacer) = &self.pacer {
                release_ended(pacer, applied).await;
            }
        }
        result
    }

    /// Call control runs beside the event loop: a slow PBX answer must not hold up the
    /// events of every other call.
    fn control(&self, id: Uuid, action: Control) {
        let pbx = Arc::clone(&self.pbx);
        tokio::spawn(async move {
            let result = match &action {
                Control::Continue {
                    context,
                    extension,
                    priority,
                } => {
                    pbx.continue_in_dialplan(id, context, extension, *priority)
                        .await
                }
                Control::Play(media) => pbx.play(id, &playback_id(id), media).await,
                Control::Hangup => pbx.hangup(id).await,
                Control::HangupAfter(wait) => {
                    tokio::time::sleep(*wait).await;
                    pbx.hangup(id).await
                }
            };
            match result {
                // The channel ended on its own meanwhile: nothing left to do.
                Ok(()) | Err(PbxError::NotFound) => {}
                Err(e) => {
                    warn!(call = %id, action = action.name(), error = %e, "call control failed")
                }
            }
        });
    }
}

/// How long a recorded cancel is left to the API's own hang-up before the sweeper asks
/// the PBX again.
const CANCEL_RETRY: chrono::Duration = chrono::Duration::seconds(2);

/// How long a playback call that gathers DTMF waits for a digit after the prompt.
const GATHER_WAIT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Pbx(PbxError),
}

enum Control {
    Continue {
        context: Context,
        extension: Extension,
        priority: u32,
    },
    Play(Vec<Media>),
    Hangup,
    HangupAfter(Duration),
}

impl Control {
    fn name(&self) -> &'static str {
        match self {
            Control::Continue { .. } => "continue",
            Control::Play(_) => "play",
            Control::Hangup => "hangup",
            Control::HangupAfter(_) => "hangup_after",
        }
    }
}
