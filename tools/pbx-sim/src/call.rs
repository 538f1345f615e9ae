//! One call: a task that plays the callee's script and the caller's requests against one
//! channel. Everything that changes the channel happens in this task, so its events come
//! out in one consistent order and it is destroyed exactly once, however a `DELETE`
//! races the callee.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Map, Value, json};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::callee::{Action, ActionKind, Callee};
use crate::channel::{Channel, DIAL_APP, DIAL_APP_DATA};
use crate::dialplan::{self, Effect};
use crate::events;
use crate::state::{Shared, lock};

/// What the HTTP side asks of a live call. Each carries where to send the outcome; a
/// call that has ended drops the request, which the sender reads as "Channel not found".
pub(crate) enum Command {
    Hangup {
        done: oneshot::Sender<()>,
    },
    Continue {
        target: ContinueTarget,
        done: oneshot::Sender<Result<(), NotInStasis>>,
    },
    Play {
        request: PlayRequest,
        done: oneshot::Sender<Result<Value, NotInStasis>>,
    },
}

/// The channel is not in a Stasis application (ARI's 409).
#[derive(Debug)]
pub(crate) struct NotInStasis;

/// Where `continue` sends the channel; what is missing stays as it is, priority 1.
#[derive(Debug, Default)]
pub(crate) struct ContinueTarget {
    pub context: Option<String>,
    pub extension: Option<String>,
    pub priority: Option<i64>,
}

#[derive(Debug)]
pub(crate) struct PlayRequest {
    pub id: String,
    pub media: Vec<String>,
    pub language: String,
}

/// Everything a call needs to start.
pub(crate) struct CallSpec {
    pub channel: Channel,
    pub dialstring: String,
    pub callee: Callee,
    pub route: Route,
    /// Real time allowed for ringing; `None` rings for as long as the callee does.
    pub ring_timeout: Option<Duration>,
}

/// Where the answered channel goes.
pub(crate) enum Route {
    Stasis {
        app: String,
        /// `app,appArgs`, as the Stasis dialplan step shows it.
        app_data: String,
        args: Vec<String>,
    },
    /// Straight into the dialplan; such a channel sends no events to any application.
    Dialplan {
        context: String,
        extension: String,
        priority: i64,
    },
}

/// Starts the call task.
pub(crate) fn spawn(
    shared: Arc<Shared>,
    spec: CallSpec,
    snapshot: Arc<Mutex<Channel>>,
    commands: mpsc::UnboundedReceiver<Command>,
) {
    let listener = match &spec.route {
        Route::Stasis { app, .. } => Some(app.clone()),
        Route::Dialplan { .. } => None,
    };
    let call = Call {
        shared,
        channel: spec.channel,
        snapshot,
        dialstring: spec.dialstring,
        listener,
        route: spec.route,
        ring_timeout: spec.ring_timeout,
        phase: Phase::Dialing,
        was_in_stasis: false,
        answer_at: None,
        ring_timeout_at: None,
        after_answer: Vec::new(),
        actions: VecDeque::new(),
        dialplan_wait: None,
        dialplan_sets: None,
        playbacks: VecDeque::new(),
        playback_at: None,
    };
    tokio::spawn(call.run(spec.callee, commands));
}

/// The recorded Asterisk sent its first event about 3 ms after the originate; waiting a
/// little also lets the originate's answer reach the client before any event does.
const DIAL_DELAY: Duration = Duration::from_millis(2);

/// Seconds a playback media item takes: the length of the prompt in Asterisk's core
/// sounds where the tests use one, else a second.
pub(crate) fn media_seconds(media: &str) -> f64 {
    match media {
        "sound:hello-world" => 1.42,
        _ => 1.0,
    }
}

/// Guards against a dialplan that would loop without waiting.
const MAX_DIALPLAN_STEPS: usize = 64;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Dialing,
    Ringing,
    Stasis,
    Dialplan,
    Ended,
}

#[derive(Clone, Copy, Debug)]
enum Timer {
    Answer,
    RingTimeout,
    CalleeAction,
    DialplanWait,
    Playback,
}

struct Call {
    shared: Arc<Shared>,
    channel: Channel,
    snapshot: Arc<Mutex<Channel>>,
    dialstring: String,
    /// The application that receives this channel's events.
    listener: Option<String>,
    route: Route,
    ring_timeout: Option<Duration>,
    phase: Phase,
    was_in_stasis: bool,
    answer_at: Option<Instant>,
    ring_timeout_at: Option<Instant>,
    after_answer: Vec<Action>,
    /// The callee's script once answered, earliest first.
    actions: VecDeque<(Instant, ActionKind)>,
    dialplan_wait: Option<Instant>,
    /// The variable a prompt playing in the dialplan sets when it ends.
    dialplan_sets: Option<(&'static str, &'static str)>,
    /// The playing playback first, then the queued ones.
    playbacks: VecDeque<Playback>,
    playback_at: Option<Instant>,
}

struct Playback {
    id: String,
    media: Vec<String>,
    index: usize,
    language: String,
    target_uri: String,
}

impl Call {
    async fn run(mut self, callee: Callee, mut commands: mpsc::UnboundedReceiver<Command>) {
        let shutdown = self.shared.shutdown_signal();
        tokio::pin!(shutdown);
        tokio::select! {
            () = &mut shutdown => return self.abandon(),
            () = tokio::time::sleep(DIAL_DELAY) => {}
        }
        self.dial(callee, Instant::now());
        while self.phase != Phase::Ended {
            let next = self.next_timer();
            let wake_at = next.map_or_else(far_future, |(at, _)| at);
            tokio::select! {
                biased;
                () = &mut shutdown => return self.abandon(),
                command = commands.recv() => match command {
                    Some(command) => self.handle(command),
                    None => return self.abandon(),
                },
                () = tokio::time::sleep_until(wake_at), if next.is_some() => {
                    if let Some((at, timer)) = next {
                        self.fire(timer, at);
                    }
                }
            }
        }
    }

    fn dial(&mut self, callee: Callee, now: Instant) {
        self.emit(events::dial(&self.channel, "", &self.dialstring));
        match callee {
            Callee::Fails(failure) => {
                if failure.hangup_request_first {
                    self.emit(events::hangup_request(&self.channel, failure.cause, false));
                }
                self.emit(events::dial(
                    &self.channel,
                    failure.dialstatus,
                    &self.dialstring,
                ));
                self.destroy(failure.cause);
            }
            Callee::Rings {
                answer_after,
                after_answer,
            } => {
                self.phase = Phase::Ringing;
                self.channel.state = "Ringing";
                self.emit(events::state_change(&self.channel));
                self.emit(events::dial(&self.channel, "RINGING", &self.dialstring));
                self.answer_at = answer_after.and_then(|s| self.after(now, s));
                self.ring_timeout_at = self.ring_timeout.and_then(|d| now.checked_add(d));
                self.after_answer = after_answer;
            }
            Callee::AnswersAtOnce { after_answer } => {
                self.after_answer = after_answer;
                self.answer(now);
            }
        }
    }

    fn answer(&mut self, now: Instant) {
        self.answer_at = None;
        self.ring_timeout_at = None;
        self.channel.state = "Up";
        self.emit(events::state_change(&self.channel));
        self.emit(events::dial(&self.channel, "ANSWER", &self.dialstring));
        for action in std::mem::take(&mut self.after_answer) {
            if let Some(at) = self.after(now, action.at) {
                self.actions.push_back((at, action.kind));
            }
        }
        match &self.route {
            Route::Stasis {
                app,
                app_data,
                args,
            } => {
                let (app, app_data, args) = (app.clone(), app_data.clone(), args.clone());
                self.channel.set_app("Stasis", &app_data);
                if self.shared.is_connected(&app) {
                    self.emit(events::varset(&self.channel, "STASISSTATUS", ""));
                    self.emit(events::stasis_start(&self.channel, &args));
                    self.phase = Phase::Stasis;
                    self.was_in_stasis = true;
                } else {
                    // Stasis() fails when nobody listens, and the channel leaves the
                    // dialplan: the call "fails when answered".
                    self.emit(events::varset(&self.channel, "STASISSTATUS", "FAILED"));
                    self.destroy(16);
                }
            }
            Route::Dialplan {
                context,
                extension,
                priority,
            } => {
                self.channel.dialplan.context.clone_from(context);
                self.channel.dialplan.exten.clone_from(extension);
                self.channel.dialplan.priority = *priority;
                self.phase = Phase::Dialplan;
                self.run_dialplan(now);
            }
        }
    }

    fn handle(&mut self, command: Command) {
        let now = Instant::now();
        match command {
            Command::Hangup { done } => {
                self.hangup_by_caller();
                let _ = done.send(());
            }
            Command::Continue { target, done } => {
                let outcome = self.continue_in_dialplan(target, now);
                let _ = done.send(outcome);
            }
            Command::Play { request, done } => {
                let outcome = self.play(request, now);
                let _ = done.send(outcome);
            }
        }
    }

    fn fire(&mut self, timer: Timer, at: Instant) {
        match timer {
            Timer::Answer => self.answer(at),
            Timer::RingTimeout => self.destroy(19),
            Timer::CalleeAction => {
                if let Some((_, action)) = self.actions.pop_front() {
                    self.callee_acts(action);
                }
            }
            Timer::DialplanWait => {
                self.dialplan_wait = None;
                if let Some((name, value)) = self.dialplan_sets.take() {
                    self.emit(events::varset(&self.channel, name, value));
                }
                self.channel.dialplan.priority = self.channel.dialplan.priority.saturating_add(1);
                self.run_dialplan(at);
            }
            Timer::Playback => self.advance_playback(at),
        }
    }

    fn callee_acts(&mut self, action: ActionKind) {
        match action {
            ActionKind::SendDtmf { digit, duration_ms } => {
                if matches!(self.phase, Phase::Stasis | Phase::Dialplan) {
                    self.emit(events::dtmf(&self.channel, digit, duration_ms));
                }
            }
            ActionKind::Hangup { cause } => match self.phase {
                Phase::Stasis => {
                    self.emit(events::hangup_request(&self.channel, cause, false));
                    self.leave_stasis_for_hangup();
                    self.destroy(cause);
                }
                Phase::Dialplan => {
                    self.emit(events::hangup_request(&self.channel, cause, false));
                    if self.was_in_stasis {
                        self.emit(events::varset(&self.channel, "STASISSTATUS", "SUCCESS"));
                    }
                    self.destroy(cause);
                }
                Phase::Dialing | Phase::Ringing | Phase::Ended => {}
            },
        }
    }

    /// `DELETE /channels/{id}`: only the caller knows it canceled, the cause says 16.
    fn hangup_by_caller(&mut self) {
        match self.phase {
            Phase::Dialing | Phase::Ringing => {
                self.emit(events::hangup_request(&self.channel, 32, true));
                self.emit(events::dial(&self.channel, "NOANSWER", &self.dialstring));
                self.destroy(16);
            }
            Phase::Stasis => {
                self.emit(events::hangup_request(&self.channel, 32, true));
                self.leave_stasis_for_hangup();
                self.destroy(16);
            }
            Phase::Dialplan => {
                self.emit(events::hangup_request(&self.channel, 32, true));
                self.destroy(16);
            }
            Phase::Ended => {}
        }
    }

    fn continue_in_dialplan(
        &mut self,
        target: ContinueTarget,
        now: Instant,
    ) -> Result<(), NotInStasis> {
        if self.phase != Phase::Stasis {
            return Err(NotInStasis);
        }
        self.stop_playback("done");
        self.emit(events::stasis_end(&self.channel));
        let dialplan = &mut self.channel.dialplan;
        if let Some(context) = target.context {
            dialplan.context = context;
        }
        if let Some(extension) = target.extension {
            dialplan.exten = extension;
        }
        dialplan.priority = target.priority.unwrap_or(1);
        self.phase = Phase::Dialplan;
        self.run_dialplan(now);
        Ok(())
    }

    fn play(&mut self, request: PlayRequest, now: Instant) -> Result<Value, NotInStasis> {
        if self.phase != Phase::Stasis {
            return Err(NotInStasis);
        }
        let playback = Playback {
            id: request.id,
            media: request.media,
            index: 0,
            language: request.language,
            target_uri: format!("channel:{}", self.channel.id),
        };
        let answer = playback.json("queued");
        self.shared
            .note_playback("queued", &Value::Object(answer.clone()));
        self.playbacks.push_back(playback);
        if self.playback_at.is_none() {
            self.start_playback(now);
        }
        Ok(Value::Object(answer))
    }

    /// Runs the dialplan from the channel's current priority until it waits or ends.
    fn run_dialplan(&mut self, now: Instant) {
        for _ in 0..MAX_DIALPLAN_STEPS {
            let location = &self.channel.dialplan;
            let Some(step) = dialplan::step(
                &location.context,
                &location.exten,
                location.priority,
                &self.channel.caller.number,
            ) else {
                return self.leave_dialplan(16);
            };
            self.channel.set_app(step.app, &step.data);
            self.emit(events::dialplan(&self.channel));
            let location = &mut self.channel.dialplan;
            match step.effect {
                Effect::Next => location.priority = location.priority.saturating_add(1),
                Effect::Play {
                    seconds,
                    name,
                    value,
                } => {
                    self.dialplan_wait = self.after(now, seconds);
                    self.dialplan_sets = Some((name, value));
                    return;
                }
                Effect::Wait(seconds) => {
                    // A wait too long to represent never ends; the callee still can.
                    self.dialplan_wait = self.after(now, seconds);
                    return;
                }
                Effect::Hangup(cause) => return self.leave_dialplan(cause),
                Effect::Goto { exten, priority } => {
                    exten.clone_into(&mut location.exten);
                    location.priority = priority;
                }
            }
        }
        self.leave_dialplan(16);
    }

    /// The dialplan ran out or hung up. A channel that had been in Stasis reports
    /// STASISSTATUS then, and (as recorded) no hang-up request of its own.
    fn leave_dialplan(&mut self, cause: u16) {
        if self.was_in_stasis {
            self.emit(events::varset(&self.channel, "STASISSTATUS", "SUCCESS"));
        } else {
            self.emit(events::hangup_request(&self.channel, cause, true));
        }
        self.destroy(cause);
    }

    fn leave_stasis_for_hangup(&mut self) {
        // Asterisk reports a playback that a hang-up cut short as failed, after the
        // hang-up request.
        self.stop_playback("failed");
        self.emit(events::stasis_end(&self.channel));
        self.emit(events::varset(&self.channel, "STASISSTATUS", "SUCCESS"));
    }

    fn start_playback(&mut self, now: Instant) {
        let Some(playback) = self.playbacks.front() else {
            self.playback_at = None;
            return;
        };
        let seconds = playback
            .media
            .get(playback.index)
            .map_or(1.0, |m| media_seconds(m));
        let started = events::playback("PlaybackStarted", Value::Object(playback.json("playing")));
        self.emit(started);
        if self.fail_if_missing(now) {
            return;
        }
        self.playback_at = self.after(now, seconds);
    }

    /// A media item the PBX does not have fails at once, and with it the rest of its
    /// list (as Asterisk answers a missing sound file: `PlaybackFinished`, `failed`).
    fn fail_if_missing(&mut self, now: Instant) -> bool {
        let Some(playback) = self.playbacks.front() else {
            return false;
        };
        if !playback
            .media
            .get(playback.index)
            .is_some_and(|m| is_missing(m))
        {
            return false;
        }
        let failed = Value::Object(playback.json("failed"));
        self.playbacks.pop_front();
        self.emit(events::playback("PlaybackFinished", failed));
        self.start_playback(now);
        true
    }

    fn advance_playback(&mut self, at: Instant) {
        let Some(playback) = self.playbacks.front_mut() else {
            self.playback_at = None;
            return;
        };
        if playback.index + 1 < playback.media.len() {
            let continuing = Value::Object(playback.json("continuing"));
            playback.index += 1;
            let seconds = playback
                .media
                .get(playback.index)
                .map_or(1.0, |m| media_seconds(m));
            let started = Value::Object(playback.json("playing"));
            self.emit(events::playback("PlaybackContinuing", continuing));
            self.emit(events::playback("PlaybackStarted", started));
            if self.fail_if_missing(at) {
                return;
            }
            self.playback_at = self.after(at, seconds);
        } else {
            let finished = Value::Object(playback.json("done"));
            self.playbacks.pop_front();
            self.emit(events::playback("PlaybackFinished", finished));
            self.start_playback(at);
        }
    }

    /// Ends the playing playback (queued ones never start) when the channel leaves Stasis,
    /// in `state`.
    fn stop_playback(&mut self, state: &str) {
        if self.playback_at.take().is_some()
            && let Some(playback) = self.playbacks.front()
        {
            let finished = Value::Object(playback.json(state));
            self.emit(events::playback("PlaybackFinished", finished));
        }
        // Those still queued never start, and nothing reports them ended.
        for playback in self.playbacks.drain(..) {
            self.shared
                .note_playback("dropped", &Value::Object(playback.json("queued")));
        }
    }

    fn destroy(&mut self, cause: u16) {
        self.phase = Phase::Ended;
        self.channel.set_app(DIAL_APP, DIAL_APP_DATA);
        // Gone from the map before the event, so a client reacting to it sees a 404.
        lock(&self.shared.channels).remove(&self.channel.id);
        self.emit(events::destroyed(&self.channel, cause));
    }

    /// The simulator is stopping: the channel just disappears.
    fn abandon(self) {
        if self.phase != Phase::Ended {
            lock(&self.shared.channels).remove(&self.channel.id);
        }
    }

    fn emit(&self, event: Map<String, Value>) {
        if let (Some(kind), Some(playback)) = (
            event.get("type").and_then(Value::as_str),
            event.get("playback"),
        ) {
            self.shared.note_playback(kind, playback);
        }
        if event.get("type").and_then(Value::as_str) == Some("PlaybackStarted")
            && let Some(media) = event
                .get("playback")
                .and_then(|p| p.get("media_uri"))
                .and_then(Value::as_str)
        {
            self.shared.record_played(&self.channel.id, media);
        }
        *lock(&self.snapshot) = self.channel.clone();
        if let Some(app) = &self.listener {
            self.shared.deliver(app, event);
        }
    }

    fn next_timer(&self) -> Option<(Instant, Timer)> {
        [
            (self.answer_at, Timer::Answer),
            (self.ring_timeout_at, Timer::RingTimeout),
            (self.actions.front().map(|(at, _)| *at), Timer::CalleeAction),
            (self.dialplan_wait, Timer::DialplanWait),
            (self.playback_at, Timer::Playback),
        ]
        .into_iter()
        .filter_map(|(at, timer)| at.map(|at| (at, timer)))
        // Earliest first; on a tie the order above wins (answering beats the timeout).
        .fold(
            None,
            |best: Option<(Instant, Timer)>, candidate| match best {
                Some(best) if best.0 <= candidate.0 => Some(best),
                _ => Some(candidate),
            },
        )
    }

    /// `seconds` of simulated time after `base`; `None` when that is beyond any clock.
    fn after(&self, base: Instant, seconds: f64) -> Option<Instant> {
        base.checked_add(self.shared.config.scaled(seconds))
    }
}

impl Playback {
    fn json(&self, state: &str) -> Map<String, Value> {
        let mut json = Map::new();
        json.insert("id".to_owned(), json!(self.id));
        json.insert(
            "media_uri".to_owned(),
            json!(self.media.get(self.index).cloned().unwrap_or_default()),
        );
        if let Some(next) = self.media.get(self.index + 1) {
            json.insert("next_media_uri".to_owned(), json!(next));
        }
        json.insert("target_uri".to_owned(), json!(self.target_uri));
        json.insert("language".to_owned(), json!(self.language));
        json.insert("state".to_owned(), json!(state));
        json
    }
}

/// The simulator has every sound and recording except those named `missing…`.
fn is_missing(media: &str) -> bool {
    media.split_once(':').is_some_and(|(scheme, name)| {
        matches!(scheme, "sound" | "recording") && name.starts_with("missing")
    })
}

fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(86_400)
}
