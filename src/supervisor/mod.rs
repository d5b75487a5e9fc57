//! One restart procedure for one process: breaker, pre-restart command, attempts with health
//! checks, then the outcome to notes, history, breaker state and the log.

pub mod breaker;
pub mod health;
pub mod pending;
pub mod restart;
pub mod systemctl;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use backon::{ExponentialBuilder, Retryable};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::cgroup;
use crate::command;
use crate::config::{Config, ProcessConfig};
use crate::db::{Claim, Db, DbError, HistoryRecord};
use crate::events::{Events, NoEvents, Outcome, Procedure};
use crate::exec;
use crate::policy::{self, Plan, Refusal};
use crate::source::TriggerSource;
use crate::state::StateDir;
use breaker::{Breaker, Decision, Policy};

/// Name of the breaker state file in `state_dir`.
pub const BREAKER_FILE: &str = "breakers";

/// What handling one trigger came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Handled {
    /// The alarm was not (or no longer) raised: nothing to do.
    NotAlarmed,
    /// Refused before anything ran (bad name, no PROCESE row).
    Refused,
    /// The breaker is open.
    Blocked,
    /// `--dry-run`: decided and logged, nothing done.
    DryRun,
    Succeeded,
    /// Failed; `reopen_at` is set when this failure opened the breaker.
    Failed {
        reopen_at: Option<Instant>,
    },
    /// The database could not be reached; the sweep will try again.
    DbUnavailable,
    /// The server refused a query (privileges, a missing table, a lock wait): re-checked with
    /// backoff, said once per kind.
    QueryRefused,
    /// Another session holds the process's claim (`GET_LOCK`), or this one lost it: re-checked later.
    LockBusy,
    /// Restarted earlier; its alarm is still to be cleared (re-checked with backoff).
    ClearPending,
    /// An operator silenced the process until `until`: alarm left raised, nothing run.
    /// `first` the first time this silence stopped it (the re-check at `until` is due then).
    Silenced {
        until: Instant,
        first: bool,
    },
}

/// Runs restart procedures; shared by all pipeline tasks.
pub struct Supervisor {
    config: RwLock<Arc<Config>>,
    db: Arc<Db>,
    state: StateDir,
    breakers: Mutex<BTreeMap<i64, Breaker>>,
    refused: Mutex<HashMap<i64, Vec<u8>>>,
    /// Restarts whose clear is still to be written.
    pending: pending::PendingClears,
    /// One lock per process name: ids that share a name never restart it at the same time.
    names: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    dry_run: bool,
    token: CancellationToken,
    /// Where triggers, restarts and outcomes are reported (metrics, alerts, silences).
    events: Arc<dyn Events>,
    /// The daemon's own systemd unit, when systemd runs it.
    own_unit: Option<String>,
    /// Names a row may not restart because they are the daemon itself.
    own_names: Vec<String>,
}

/// What deciding and running the attempts came to.
enum Ran {
    /// The host's policy refused: nothing was run.
    Refused(Refusal),
    Done(Attempts),
    /// The claim was lost (or could not be checked) before anything was stopped.
    Lost(Handled),
}

/// The procedure being recorded.
struct Run {
    id: i64,
    name: String,
    source: TriggerSource,
    started_wall: chrono::NaiveDateTime,
}

/// Result of the restart attempts: on success how and how fast, on failure the last reason
/// (short: it goes into the 100-character notes; the log has the details).
struct Attempts {
    result: Result<Duration, String>,
    method: Option<restart::Method>,
    attempts: u32,
}

impl Supervisor {
    /// Loads the saved breakers and owed clears (a corrupt file is reported, moved aside and
    /// replaced).
    pub fn new(
        config: Arc<Config>,
        db: Arc<Db>,
        state: StateDir,
        dry_run: bool,
        token: CancellationToken,
    ) -> Supervisor {
        Supervisor::with_events(config, db, state, dry_run, token, Arc::new(NoEvents))
    }

    /// [`Supervisor::new`] reporting to `events`.
    pub fn with_events(
        config: Arc<Config>,
        db: Arc<Db>,
        state: StateDir,
        dry_run: bool,
        token: CancellationToken,
        events: Arc<dyn Events>,
    ) -> Supervisor {
        let reset = config.monitor.circuit_reset_time;
        let breakers = load_breakers(&state, reset);
        let pending = pending::PendingClears::load(state.clone(), reset);
        let own_unit = cgroup::own_unit();
        let own_names = own_names(own_unit.as_deref());
        Supervisor {
            config: RwLock::new(config),
            db,
            state,
            breakers: Mutex::new(breakers),
            refused: Mutex::new(HashMap::new()),
            pending,
            names: Mutex::new(HashMap::new()),
            dry_run,
            token,
            events,
            own_unit,
            own_names,
        }
    }

    /// The configuration in force.
    pub fn config(&self) -> Arc<Config> {
        self.config
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Replaces the configuration (SIGHUP).
    pub fn set_config(&self, config: Arc<Config>) {
        self.pending.set_limit(config.monitor.circuit_reset_time);
        *self.config.write().unwrap_or_else(|p| p.into_inner()) = config;
    }

    /// The database handle.
    pub fn db(&self) -> &Arc<Db> {
        &self.db
    }

    /// True when process `id` was restarted and its alarm is still to be cleared.
    pub fn owes_clear(&self, id: i64) -> bool {
        self.pending.owes(id)
    }

    /// Breakers that are open now, with the end of their open period (for the re-check timers).
    pub fn open_breakers(&self) -> Vec<(i64, Instant)> {
        self.breakers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter_map(|(id, b)| match b.state {
                breaker::State::Open { until, .. } => Some((*id, until)),
                _ => None,
            })
            .collect()
    }

    /// A copy of every breaker, for status output.
    pub fn breakers(&self) -> BTreeMap<i64, Breaker> {
        self.breakers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Closes the breaker of process `id` (an operator's `reset`) and saves the state; returns
    /// what it was.
    pub fn reset_breaker(&self, id: i64) -> Breaker {
        self.update_breaker(id, std::mem::take)
    }

    /// Handles one trigger for process `id`: re-reads the row and, if the alarm is raised,
    /// runs the whole procedure.
    ///
    /// A named lock on the database (`GET_LOCK`) claims the process first, so that two daemons
    /// watching one database by mistake never restart it twice for one alarm: the second one
    /// skips while the first works, and finds the alarm cleared afterwards.
    pub async fn handle(&self, id: i64, source: TriggerSource) -> Handled {
        let mut claim = match self.claim(id, source).await {
            Ok(c) => c,
            Err(handled) => return handled,
        };
        let handled = self.handle_claimed(id, source, &mut claim).await;
        claim.release().await;
        handled
    }

    /// Takes the process's named lock; `LockBusy` when another monitor_service holds it.
    async fn claim(&self, id: i64, source: TriggerSource) -> Result<Claim, Handled> {
        match self.db.observe(self.db.claim(id).await) {
            Ok(Some(c)) => Ok(c),
            Ok(None) => {
                debug!(process_id = id, trigger = %source, "another monitor_service is handling this process; re-checked later");
                Err(Handled::LockBusy)
            }
            Err(e) => Err(db_failure(id, &e, "cannot claim the process")),
        }
    }

    /// The procedure once the process is claimed: decide, run, record.
    async fn handle_claimed(&self, id: i64, source: TriggerSource, claim: &mut Claim) -> Handled {
        let started_wall = chrono::Local::now().naive_local();
        let name = match self.alarmed_name(id, source, claim).await {
            Ok(name) => name,
            Err(handled) => return handled,
        };
        if let Some((until, first)) = self.silenced(id, &name, source).await {
            return Handled::Silenced { until, first };
        }
        let source = match self.breaker_gate(id, &name, source).await {
            Ok(source) => source,
            Err(blocked) => return blocked,
        };
        let config = self.config();
        if self.dry_run {
            return dry_run(id, &name, source, config.process(&name));
        }
        info!(process = %name, process_id = id, trigger = %source, strategy = %config.process(&name).restart_strategy, "alarm raised; restarting");
        match self.run(id, &name, &config, claim).await {
            Ran::Refused(r) => {
                let shown = escape(name.as_bytes());
                self.refuse(
                    id,
                    Some(name.as_bytes()),
                    &shown,
                    &r.brief,
                    r.reason,
                    source,
                )
                .await;
                Handled::Refused
            }
            Ran::Done(outcome) => {
                self.refused
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&id);
                let run = Run {
                    id,
                    name,
                    source,
                    started_wall,
                };
                self.record(run, &config, outcome, claim).await
            }
            Ran::Lost(handled) => handled,
        }
    }

    /// Reads the row: the name when the alarm is raised and the name may be acted on.
    async fn alarmed_name(
        &self,
        id: i64,
        source: TriggerSource,
        claim: &mut Claim,
    ) -> Result<String, Handled> {
        let row = match self.db.observe(claim.process(id).await) {
            Ok(Some(row)) => row,
            Ok(None) => {
                debug!(process_id = id, trigger = %source, "no STATUS_PROCESS row; nothing to do");
                return Err(Handled::NotAlarmed);
            }
            Err(e) => return Err(db_failure(id, &e, "cannot read the process row")),
        };
        if row.alarma != 1 {
            debug!(process_id = id, trigger = %source, alarma = row.alarma, "alarm not raised; nothing to do");
            self.pending.forget(id);
            return Err(Handled::NotAlarmed);
        }
        if let Some(handled) = self.pending.retry(&self.db, claim, id).await {
            return Err(handled);
        }
        self.check_name(id, row.name, source)
            .await
            .ok_or(Handled::Refused)
    }

    /// The circuit breaker's say: `Err(Blocked)` (noted once per open period) or the trigger to
    /// go on with; a half-open trial is the breaker's, whichever trigger (sweep, binlog, the
    /// breaker's own re-check) reached it first.
    async fn breaker_gate(
        &self,
        id: i64,
        name: &str,
        source: TriggerSource,
    ) -> Result<TriggerSource, Handled> {
        let decision = self
            .breakers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(id)
            .or_default()
            .check(Instant::now());
        match decision {
            Decision::Blocked { until, first } => {
                if first {
                    let until_s = wall_str(until);
                    warn!(process = %name, process_id = id, until = %until_s, "circuit breaker open; not restarting until then");
                    if !self.dry_run {
                        let notes = format!(
                            "{} circuit breaker open until {until_s}; not restarted",
                            stamp()
                        );
                        self.write_notes(id, name, &notes).await;
                    }
                } else {
                    debug!(process = %name, process_id = id, "circuit breaker open; skipped");
                }
                self.report(
                    id,
                    name,
                    source,
                    Outcome::Blocked,
                    "circuit breaker open",
                    None,
                );
                Err(Handled::Blocked)
            }
            Decision::Proceed { trial: true } => {
                info!(process = %name, process_id = id, found_by = %source, "circuit breaker half-open: trial restart");
                Ok(TriggerSource::Breaker)
            }
            Decision::Proceed { trial: false } => Ok(source),
        }
    }

    /// Decides how to restart and runs the attempts, holding the name's lock (another id with
    /// the same name may be restarting it right now).
    async fn run(&self, id: i64, name: &str, config: &Config, claim: &mut Claim) -> Ran {
        let lock = self
            .names
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(name.to_string())
            .or_default()
            .clone();
        let _guard = lock.lock().await;
        if let Err(handled) = pending::still_claimed(&self.db, claim).await {
            return Ran::Lost(handled);
        }
        let subject = restart::Subject {
            name,
            settings: config.process(name),
            configured: config.processes.contains_key(name),
            systemctl: config.monitor.systemctl.as_str(),
            own_unit: self.own_unit.as_deref(),
        };
        let decision = restart::decide(&subject).await;
        if let Plan::Refuse(r) = &decision.plan {
            return Ran::Refused(r.clone());
        }
        Ran::Done(self.attempts(id, &subject, &decision).await)
    }

    /// Writes the outcome: breaker, log, notes (or the cleared alarm), events and history.
    async fn record(
        &self,
        run: Run,
        config: &Config,
        outcome: Attempts,
        claim: &mut Claim,
    ) -> Handled {
        let Run {
            id,
            name,
            source,
            started_wall,
        } = run;
        let finished_wall = chrono::Local::now().naive_local();
        let max = config.process(&name).max_attempts;
        let (handled, notes, outcome_word, detail) = match &outcome.result {
            Ok(took) => self.succeeded(id, &name, &outcome, *took, max),
            Err(reason) => self.failed(id, &name, &outcome, reason, config),
        };
        let (word, opened) = match &handled {
            Handled::Succeeded => (Outcome::Success, None),
            Handled::Failed { reopen_at } => (Outcome::Failed, *reopen_at),
            _ => (Outcome::Failed, None),
        };
        self.report(id, &name, source, word, &notes, opened);
        match &handled {
            Handled::Succeeded => self.pending.clear(&self.db, claim, id, &name, &notes).await,
            _ => self.write_notes(id, &name, &notes).await,
        }
        self.history(HistoryRecord {
            process_id: id,
            process_name: name,
            started_at: started_wall,
            finished_at: finished_wall,
            trigger: source.as_str(),
            strategy: outcome.method.map(|m| m.as_str().to_string()),
            attempts: outcome.attempts,
            outcome: outcome_word,
            detail,
        })
        .await;
        handled
    }

    /// Success: breaker reset; (outcome, notes, history word, detail).
    fn succeeded(
        &self,
        id: i64,
        name: &str,
        outcome: &Attempts,
        took: Duration,
        max: u32,
    ) -> (Handled, String, &'static str, String) {
        self.update_breaker(id, |b| {
            b.record_success();
            None::<Instant>
        });
        let how = outcome.method.map_or("?", restart::Method::as_str);
        let detail = format!(
            "restarted via {how} (attempt {}/{max}, healthy in {:.1}s)",
            outcome.attempts,
            took.as_secs_f64()
        );
        info!(process = %name, process_id = id, method = how, attempt = outcome.attempts, max_attempts = max, healthy_in = %format!("{:.1}s", took.as_secs_f64()), "restarted and healthy");
        (
            Handled::Succeeded,
            format!("{} {detail}", stamp()),
            "success",
            detail,
        )
    }

    /// Failure: one more breaker failure (it may open); (outcome, notes, history word, detail).
    fn failed(
        &self,
        id: i64,
        name: &str,
        outcome: &Attempts,
        reason: &str,
        config: &Config,
    ) -> (Handled, String, &'static str, String) {
        let max = config.process(name).max_attempts;
        let policy = Policy {
            max_failures: config.monitor.max_restart_failures,
            reset_after: config.monitor.circuit_reset_time,
        };
        let reopen_at = self.update_breaker(id, |b| b.record_failure(Instant::now(), policy));
        error!(process = %name, process_id = id, attempts = outcome.attempts, max_attempts = max, reason = %reason, "restart failed; alarm stays raised");
        let detail = match outcome.attempts {
            0 => format!("failed: {reason}"),
            n => format!("failed after {n}/{max} attempts: {reason}"),
        };
        let notes = match reopen_at {
            Some(until) => {
                let until_s = wall_str(until);
                warn!(process = %name, process_id = id, until = %until_s, failures = policy.max_failures, "circuit breaker open; no restarts until then");
                format!(
                    "{} circuit open until {}; failed: {reason}",
                    stamp(),
                    short_time(&until_s)
                )
            }
            None => format!("{} restart {detail}", stamp()),
        };
        (Handled::Failed { reopen_at }, notes, "failed", detail)
    }

    /// Validates the name from PROCESE and screens it by the host's policy; refuses (ERROR,
    /// note, history) and returns `None` when it is missing, outside the allow-list, or not
    /// for a row to act on. A refusal is said once per id and name.
    async fn check_name(
        &self,
        id: i64,
        raw: Option<Vec<u8>>,
        source: TriggerSource,
    ) -> Option<String> {
        let (brief, reason) = match self.verdict(raw.as_deref()) {
            Ok(name) => {
                // A refusal of this same name found later (at decide time) stays in force.
                let mut refused = self.refused.lock().unwrap_or_else(|p| p.into_inner());
                let mut prefix = name.as_bytes().to_vec();
                prefix.push(0);
                if !refused.get(&id).is_some_and(|k| k.starts_with(&prefix)) {
                    refused.remove(&id);
                }
                return Some(name);
            }
            Err(r) => r,
        };
        let shown = raw.as_deref().map(escape).unwrap_or_default();
        self.refuse(id, raw.as_deref(), &shown, &brief, reason, source)
            .await;
        None
    }

    /// The name, or (brief reason for the 100-character notes, full reason for the log).
    fn verdict(&self, raw: Option<&[u8]>) -> Result<String, (String, String)> {
        let Some(bytes) = raw else {
            return Err((
                "no PROCESE row".to_string(),
                "no PROCESE row for this process_id".to_string(),
            ));
        };
        let name = std::str::from_utf8(bytes).map_err(|_| {
            (
                "name is not valid UTF-8".to_string(),
                format!("process name {} is not valid UTF-8", escape(bytes)),
            )
        })?;
        command::validate_process_name(name).map_err(|e| (e.brief(), e.to_string()))?;
        let config = self.config();
        let host = policy::Host {
            configured: config.processes.contains_key(name),
            only_configured: config.monitor.only_configured,
            own_names: &self.own_names,
        };
        policy::screen(name, &host).map_err(|r| (r.brief, r.reason))?;
        Ok(name.to_string())
    }

    /// Reports a refusal: ERROR, note and history the first time for this id, name and
    /// reason; DEBUG after that.
    async fn refuse(
        &self,
        id: i64,
        raw: Option<&[u8]>,
        shown: &str,
        brief: &str,
        reason: String,
        source: TriggerSource,
    ) {
        self.report(id, shown, source, Outcome::Refused, &reason, None);
        let mut key = raw.map(<[u8]>::to_vec).unwrap_or_default();
        key.push(0);
        key.extend_from_slice(brief.as_bytes());
        let repeated = self
            .refused
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, key.clone())
            .is_some_and(|old| old == key);
        if repeated {
            debug!(process_id = id, reason = %reason, "still refused");
            return;
        }
        error!(process_id = id, reason = %reason, "refused: nothing executed");
        if self.dry_run {
            return;
        }
        let notes = match raw {
            None => format!("{} refused, nothing executed: {brief}", stamp()),
            Some(_) => format!(
                "{} refused, nothing executed: {brief}; name {shown}",
                stamp()
            ),
        };
        self.write_notes(id, shown, &notes).await;
        let now = chrono::Local::now().naive_local();
        self.history(HistoryRecord {
            process_id: id,
            process_name: shown.to_string(),
            started_at: now,
            finished_at: now,
            trigger: source.as_str(),
            strategy: None,
            attempts: 0,
            outcome: "refused",
            detail: reason,
        })
        .await;
    }

    /// Pre-restart command, then up to `max_attempts` restarts each followed by the health check.
    async fn attempts(
        &self,
        id: i64,
        subject: &restart::Subject<'_>,
        decision: &restart::Decision,
    ) -> Attempts {
        let (name, settings) = (subject.name, subject.settings);
        if let Some(failure) = pre_restart(name, settings).await {
            return Attempts {
                result: Err(format!("{failure}; nothing restarted")),
                method: None,
                attempts: 0,
            };
        }
        let max = settings.max_attempts;
        let mut last = String::from("daemon stopping; not restarted");
        let mut method = None;
        let mut done = 0;
        for attempt in 1..=max {
            if self.token.is_cancelled() {
                break;
            }
            done = attempt;
            if attempt == 1 {
                self.events.restarting(id);
            }
            let t = Instant::now();
            match restart::restart(subject, decision).await {
                Ok(m) => {
                    self.events.restarted(name, m.as_str());
                    method = Some(m);
                    let check = health::Check {
                        command: &settings.health_check_command,
                        name,
                        timeout: settings.health_check_timeout,
                        settle: settings.health_check_settle,
                        command_timeout: settings.command_timeout,
                    };
                    match health::wait_healthy(&check, t, &self.token).await {
                        Ok(took) => {
                            return Attempts {
                                result: Ok(took),
                                method,
                                attempts: attempt,
                            }
                        }
                        Err(e) => last = e,
                    }
                }
                Err(restart::AttemptError::Failed(e)) => last = e,
                Err(restart::AttemptError::Refused(r)) => last = r.reason,
            }
            warn!(process = %name, attempt, max_attempts = max, method = method.map_or("none", restart::Method::as_str), reason = %last, "restart attempt failed");
            if attempt < max {
                tokio::select! {
                    _ = tokio::time::sleep(settings.restart_delay) => {}
                    _ = self.token.cancelled() => {}
                }
            }
        }
        Attempts {
            result: Err(last),
            method,
            attempts: done,
        }
    }

    /// An operator's silence of this process: noted once per silence (INFO, notes); returns
    /// the moment it ends (the process is looked at again then) and whether this was the first
    /// time it stopped the process.
    async fn silenced(
        &self,
        id: i64,
        name: &str,
        source: TriggerSource,
    ) -> Option<(Instant, bool)> {
        let s = self.events.silenced(id, name)?;
        let until_s = chrono::DateTime::<chrono::Local>::from(s.until)
            .format("%Y-%m-%d %H:%M:%S")
            .to_string();
        if s.first {
            info!(process = %name, process_id = id, until = %until_s, "silenced by an operator; alarm left raised, not restarted");
            if !self.dry_run {
                let notes = format!("{} silenced until {until_s}; not restarted", stamp());
                self.write_notes(id, name, &notes).await;
            }
        } else {
            debug!(process = %name, process_id = id, until = %until_s, "silenced; skipped");
        }
        let detail = format!("silenced until {until_s}");
        self.report(id, name, source, Outcome::Silenced, &detail, None);
        let left = s
            .until
            .duration_since(SystemTime::now())
            .unwrap_or_default();
        Some((Instant::now() + left, s.first))
    }

    fn report(
        &self,
        id: i64,
        name: &str,
        trigger: TriggerSource,
        outcome: Outcome,
        detail: &str,
        breaker_opened: Option<Instant>,
    ) {
        self.events.procedure(&Procedure {
            process_id: id,
            name,
            trigger,
            outcome,
            detail,
            breaker_opened,
        });
    }

    /// Changes one breaker and saves all of them (under the lock, so saves never interleave).
    fn update_breaker<T>(&self, id: i64, f: impl FnOnce(&mut Breaker) -> T) -> T {
        let mut book = self.breakers.lock().unwrap_or_else(|p| p.into_inner());
        let out = f(book.entry(id).or_default());
        if book.get(&id).is_some_and(Breaker::is_default) {
            book.remove(&id);
        }
        let text = breaker::to_text(&book, Instant::now(), SystemTime::now());
        if let Err(e) = self.state.write(BREAKER_FILE, &text) {
            warn!(file = %self.state.path(BREAKER_FILE).display(), error = %e, "cannot save the circuit breaker state");
        }
        out
    }

    async fn write_notes(&self, id: i64, name: &str, notes: &str) {
        let db = &self.db;
        let written = (|| async { db.set_notes(id, notes).await })
            .retry(write_backoff())
            .when(|e: &DbError| e.is_connectivity() && !self.token.is_cancelled())
            .await;
        if let Err(e) = self.db.observe(written) {
            if !e.is_reported() {
                error!(process = %name, process_id = id, error = %e, "cannot write the notes");
            }
        }
    }

    async fn history(&self, rec: HistoryRecord) {
        if let Err(e) = self.db.observe(self.db.record_history(&rec).await) {
            if e.is_reported() {
                return;
            }
            warn!(process_id = rec.process_id, error = %e, "cannot write the history row");
        }
    }
}

/// The daemon's names: its unit and its program's name.
fn own_names(own_unit: Option<&str>) -> Vec<String> {
    let mut names: Vec<String> = own_unit.map(str::to_string).into_iter().collect();
    if let Some(exe) = std::env::current_exe()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
    {
        names.push(exe);
    }
    names
}

/// A database error while handling a process: an outage or a query the server refused (both
/// re-checked with backoff); said here unless the database handle already said it.
fn db_failure(id: i64, e: &DbError, what: &str) -> Handled {
    if !e.is_reported() {
        error!(process_id = id, error = %e, "{what}");
    }
    Handled::from_db(e)
}

/// `--dry-run`: says what would be done.
fn dry_run(id: i64, name: &str, source: TriggerSource, settings: &ProcessConfig) -> Handled {
    info!(
        process = %name,
        process_id = id,
        trigger = %source,
        strategy = %settings.restart_strategy,
        pre_restart = ?settings.pre_restart_command.as_ref().map(|c| c.render(name)),
        health_check = ?settings.health_check_command.render(name),
        "dry-run: would restart"
    );
    Handled::DryRun
}

/// Runs the pre-restart command; `Some(why)` when it failed.
async fn pre_restart(name: &str, settings: &ProcessConfig) -> Option<String> {
    let pre = settings.pre_restart_command.as_ref()?;
    let argv = pre.render(name);
    match exec::run(&argv, settings.command_timeout).await {
        Ok(out) if out.success() => None,
        Ok(out) => {
            warn!(process = %name, command = %pre, result = %out.describe(), output = %out.output.trim(), "pre-restart command failed");
            Some(format!(
                "pre-restart command `{}` {}",
                pre.program(),
                out.describe()
            ))
        }
        Err(e) => Some(format!(
            "pre-restart command `{}` could not run: {e}",
            pre.program()
        )),
    }
}

/// Retries for outcome writes during a short outage (about half a minute in all).
fn write_backoff() -> ExponentialBuilder {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(200))
        .with_max_delay(Duration::from_secs(5))
        .with_max_times(8)
        .with_jitter()
}

fn load_breakers(state: &StateDir, reset: Duration) -> BTreeMap<i64, Breaker> {
    let book = state
        .load(
            BREAKER_FILE,
            "circuit breaker state",
            "starting with all breakers closed",
            |text| breaker::from_text(text, Instant::now(), SystemTime::now(), reset),
        )
        .unwrap_or_default();
    if !book.is_empty() {
        info!(breakers = book.len(), "circuit breaker state loaded");
    }
    book
}

/// Local wall-clock time now, as notes show it.
fn stamp() -> String {
    chrono::Local::now().format("%Y-%m-%d %H:%M:%S").to_string()
}

/// `HH:MM:SS` of a `YYYY-MM-DD HH:MM:SS` stamp when the date is today, else the whole stamp.
fn short_time(stamp_s: &str) -> &str {
    let today = chrono::Local::now().format("%Y-%m-%d ").to_string();
    stamp_s.strip_prefix(today.as_str()).unwrap_or(stamp_s)
}

/// Local wall-clock time of a monotonic deadline, as notes and `status` show it.
pub(crate) fn wall_str(at: Instant) -> String {
    let wall = breaker::wall_of(at, Instant::now(), SystemTime::now());
    chrono::DateTime::<chrono::Local>::from(wall)
        .format("%Y-%m-%d %H:%M:%S")
        .to_string()
}

/// Bytes from the database shown safely on one line.
fn escape(bytes: &[u8]) -> String {
    format!("\"{}\"", bytes.escape_ascii())
}
