//! Alerts when supervision gives up: which events are worth one (one per process and kind in
//! an open period, outages only after `[alerts] after`), and the queue that runs
//! `[alerts] command` for each, one at a time, never in a restart's way.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use crate::events::Outcome;
use crate::exec;

/// Alerts waiting for the command; more are dropped (with one WARNING).
const QUEUE: usize = 256;
/// How long queued alerts may still run at shutdown.
const DRAIN: Duration = Duration::from_secs(10);

/// What an alert is about (`MONITOR_EVENT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    BreakerOpen,
    ProcedureFailed,
    Refused,
    BinlogDown,
    DatabaseDown,
    Recovered,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::BreakerOpen => "breaker_open",
            Kind::ProcedureFailed => "procedure_failed",
            Kind::Refused => "refused",
            Kind::BinlogDown => "binlog_down",
            Kind::DatabaseDown => "database_down",
            Kind::Recovered => "recovered",
        }
    }
}

/// One alert, as the command sees it in its environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alert {
    pub kind: Kind,
    /// `None` for database and binlog events.
    pub process_id: Option<i64>,
    /// The process name; empty for database and binlog events.
    pub process: String,
    /// The note (or what went wrong).
    pub detail: String,
    pub host: String,
    /// Local time, RFC 3339 (`2026-11-24T10:15:02+01:00`).
    pub time: String,
}

impl Alert {
    /// The `MONITOR_*` variables.
    pub fn env(&self) -> Vec<(String, String)> {
        [
            ("MONITOR_EVENT", self.kind.as_str().to_string()),
            ("MONITOR_HOST", self.host.clone()),
            ("MONITOR_PROCESS", self.process.clone()),
            (
                "MONITOR_PROCESS_ID",
                self.process_id.map(|i| i.to_string()).unwrap_or_default(),
            ),
            ("MONITOR_DETAIL", self.detail.clone()),
            ("MONITOR_TIME", self.time.clone()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }
}

/// Per process, the kinds already alerted in its open period (pure). A period opens with the
/// first failure, refusal or open breaker and ends with a success, which is `recovered`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Book {
    open: HashMap<i64, BTreeSet<Kind>>,
}

impl Book {
    /// The alert a procedure's outcome is worth, if any.
    pub fn on_outcome(&mut self, id: i64, outcome: Outcome, opened_breaker: bool) -> Option<Kind> {
        let kind = match outcome {
            Outcome::Success => return self.open.remove(&id).map(|_| Kind::Recovered),
            Outcome::Failed if opened_breaker => Kind::BreakerOpen,
            Outcome::Failed => Kind::ProcedureFailed,
            Outcome::Refused => Kind::Refused,
            Outcome::Blocked | Outcome::Silenced => return None,
        };
        self.open
            .entry(id)
            .or_default()
            .insert(kind)
            .then_some(kind)
    }
}

/// One dependency's outage (pure): down for `after` is one alert, back after that is one
/// `recovered`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Outage {
    down_since: Option<Instant>,
    alerted: bool,
}

/// What an [`Outage`] update calls for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Down for this long: alert.
    Down(Duration),
    /// Back after an alerted outage of this long.
    Back(Duration),
}

impl Outage {
    pub fn update(&mut self, up: bool, now: Instant, after: Duration) -> Option<Change> {
        match (up, self.down_since) {
            (true, None) => None,
            (true, Some(since)) => {
                let alerted = std::mem::take(&mut self.alerted);
                self.down_since = None;
                alerted.then(|| Change::Back(now.saturating_duration_since(since)))
            }
            (false, None) => {
                self.down_since = Some(now);
                self.update(false, now, after)
            }
            (false, Some(since)) => {
                let down = now.saturating_duration_since(since);
                if self.alerted || down < after {
                    return None;
                }
                self.alerted = true;
                Some(Change::Down(down))
            }
        }
    }
}

struct Job {
    alert: Alert,
    argv: Vec<String>,
    timeout: Duration,
}

/// The queue in front of the alert command; its worker runs one command at a time.
pub struct Alerts {
    tx: Mutex<Option<mpsc::Sender<Job>>>,
    full_said: AtomicBool,
    worker: Mutex<Option<JoinHandle<()>>>,
}

impl Alerts {
    /// Starts the worker (needs a tokio runtime).
    pub fn start() -> Alerts {
        let (tx, rx) = mpsc::channel(QUEUE);
        Alerts {
            tx: Mutex::new(Some(tx)),
            full_said: AtomicBool::new(false),
            worker: Mutex::new(Some(tokio::spawn(work(rx)))),
        }
    }

    /// Queues `alert` for `argv` (the rendered command), each run bounded by `timeout`.
    /// Returns at once; a full queue drops the alert (said once until there is room again).
    pub fn send(&self, alert: Alert, argv: Vec<String>, timeout: Duration) {
        let guard = self.tx.lock().unwrap_or_else(|p| p.into_inner());
        let Some(tx) = guard.as_ref() else { return };
        let kind = alert.kind;
        match tx.try_send(Job {
            alert,
            argv,
            timeout,
        }) {
            Ok(()) => self.full_said.store(false, Ordering::Relaxed),
            Err(_) => {
                if !self.full_said.swap(true, Ordering::Relaxed) {
                    warn!(
                        event = kind.as_str(),
                        queued = QUEUE,
                        "alert queue full (the alert command is too slow); alert dropped"
                    );
                }
            }
        }
    }

    /// Stops taking alerts and lets the queued ones run for at most a few seconds.
    pub async fn close(&self) {
        self.tx.lock().unwrap_or_else(|p| p.into_inner()).take();
        let worker = self.worker.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(mut w) = worker {
            if tokio::time::timeout(DRAIN, &mut w).await.is_err() {
                warn!(grace = ?DRAIN, "alerts still queued at shutdown were not sent");
                w.abort();
            }
        }
    }
}

async fn work(mut rx: mpsc::Receiver<Job>) {
    // Kinds whose last run failed: said once at WARNING, then at DEBUG until one works again.
    let mut failing: HashSet<Kind> = HashSet::new();
    while let Some(job) = rx.recv().await {
        let kind = job.alert.kind;
        let program = job.argv.first().cloned().unwrap_or_default();
        let problem = match exec::run_with_env(&job.argv, &job.alert.env(), job.timeout).await {
            Ok(out) if out.success() => None,
            Ok(out) => Some(format!("{}; output: {}", out.describe(), out.output.trim())),
            Err(e) => Some(e.to_string()),
        };
        match problem {
            None => {
                if failing.remove(&kind) {
                    info!(event = kind.as_str(), "alert command works again");
                }
                debug!(event = kind.as_str(), process = %job.alert.process, "alert sent");
            }
            Some(p) if failing.insert(kind) => {
                warn!(event = kind.as_str(), program = %program, problem = %p, "alert command failed; fix [alerts] command (said once per event kind until it works)");
            }
            Some(p) => debug!(event = kind.as_str(), problem = %p, "alert command failed again"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_alert_per_kind_per_open_period_then_recovered() {
        let mut b = Book::default();
        assert_eq!(
            b.on_outcome(1, Outcome::Failed, false),
            Some(Kind::ProcedureFailed)
        );
        assert_eq!(b.on_outcome(1, Outcome::Failed, false), None);
        assert_eq!(
            b.on_outcome(1, Outcome::Failed, true),
            Some(Kind::BreakerOpen)
        );
        assert_eq!(b.on_outcome(1, Outcome::Blocked, false), None);
        // The half-open trial fails and reopens it: same period, no new alert.
        assert_eq!(b.on_outcome(1, Outcome::Failed, true), None);
        // Another process has its own period.
        assert_eq!(
            b.on_outcome(2, Outcome::Refused, false),
            Some(Kind::Refused)
        );
        assert_eq!(b.on_outcome(2, Outcome::Refused, false), None);
        assert_eq!(
            b.on_outcome(1, Outcome::Success, false),
            Some(Kind::Recovered)
        );
        // A success with no open period says nothing; a new failure opens a new period.
        assert_eq!(b.on_outcome(1, Outcome::Success, false), None);
        assert_eq!(
            b.on_outcome(1, Outcome::Failed, false),
            Some(Kind::ProcedureFailed)
        );
        assert_eq!(b.on_outcome(3, Outcome::Silenced, false), None);
    }

    #[test]
    fn outage_alerts_after_the_delay_once_and_recovers_once() {
        let t0 = Instant::now();
        let after = Duration::from_secs(60);
        let s = Duration::from_secs;
        let mut o = Outage::default();
        assert_eq!(o.update(true, t0, after), None);
        assert_eq!(o.update(false, t0, after), None);
        assert_eq!(o.update(false, t0 + s(59), after), None);
        assert_eq!(
            o.update(false, t0 + s(60), after),
            Some(Change::Down(s(60)))
        );
        assert_eq!(o.update(false, t0 + s(120), after), None);
        assert_eq!(
            o.update(true, t0 + s(130), after),
            Some(Change::Back(s(130)))
        );
        assert_eq!(o.update(true, t0 + s(131), after), None);
        // A short outage is no alert and no recovery.
        assert_eq!(o.update(false, t0 + s(200), after), None);
        assert_eq!(o.update(true, t0 + s(210), after), None);
    }

    #[test]
    fn the_environment_names_every_field() {
        let a = Alert {
            kind: Kind::BreakerOpen,
            process_id: Some(5),
            process: "web".into(),
            detail: "circuit open".into(),
            host: "h1".into(),
            time: "2026-11-24T10:15:02+01:00".into(),
        };
        let env: HashMap<String, String> = a.env().into_iter().collect();
        assert_eq!(env["MONITOR_EVENT"], "breaker_open");
        assert_eq!(env["MONITOR_PROCESS_ID"], "5");
        assert_eq!(env["MONITOR_PROCESS"], "web");
        assert_eq!(env["MONITOR_DETAIL"], "circuit open");
        assert_eq!(env["MONITOR_HOST"], "h1");
        assert_eq!(env["MONITOR_TIME"], "2026-11-24T10:15:02+01:00");
        let db = Alert {
            kind: Kind::DatabaseDown,
            process_id: None,
            process: String::new(),
            ..a
        };
        let env: HashMap<String, String> = db.env().into_iter().collect();
        assert_eq!(env["MONITOR_PROCESS_ID"], "");
    }
}
