//! The daemon's [`Events`] sink: counts what supervision reports into the metrics, turns it
//! into alerts, measures reaction times, and keeps the operators' silences (saved in
//! `state_dir`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Instant, SystemTime};

use tracing::{debug, info, warn};

use crate::alerts::{Alert, Alerts, Book, Change, Kind, Outage};
use crate::command;
use crate::config::Config;
use crate::events::{Events, Procedure, Silenced};
use crate::metrics::Metrics;
use crate::silence::{Silences, Target, SILENCE_FILE};
use crate::source::TriggerSource;
use crate::state::StateDir;

/// A dependency whose outage is an alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dependency {
    Database,
    Binlog,
}

/// What supervision reports ends up here.
pub struct Hub {
    config: RwLock<Arc<Config>>,
    state: StateDir,
    host: String,
    metrics: Metrics,
    alerts: Alerts,
    book: Mutex<Book>,
    outages: Mutex<[Outage; 2]>,
    silences: Mutex<Silences>,
    /// Per process, the oldest trigger not yet served by a procedure.
    seen: Mutex<HashMap<i64, Instant>>,
    /// Per process with a procedure under way, the trigger it serves.
    serving: Mutex<HashMap<i64, Instant>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The `process` label: the name when it is a valid one, else `#ID` (a refused name is data,
/// never a label).
pub fn process_label(id: i64, name: &str) -> String {
    if command::is_valid_process_name(name) {
        name.to_string()
    } else {
        format!("#{id}")
    }
}

impl Hub {
    /// Loads the saved silences and starts the alert queue (needs a tokio runtime).
    pub fn new(config: Arc<Config>, state: StateDir) -> Hub {
        let silences = load_silences(&state);
        let host = nix::unistd::gethostname()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_default();
        Hub {
            config: RwLock::new(config),
            state,
            host,
            metrics: Metrics::new(),
            alerts: Alerts::start(),
            book: Mutex::new(Book::default()),
            outages: Mutex::new([Outage::default(); 2]),
            silences: Mutex::new(silences),
            seen: Mutex::new(HashMap::new()),
            serving: Mutex::new(HashMap::new()),
        }
    }

    /// Replaces the configuration (SIGHUP): the alert command and delay.
    pub fn set_config(&self, config: Arc<Config>) {
        *self.config.write().unwrap_or_else(|p| p.into_inner()) = config;
    }

    fn config(&self) -> Arc<Config> {
        self.config
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The database or the binlog is up or down now; an outage of `[alerts] after` is one
    /// alert, its end one `recovered`.
    pub fn dependency(&self, what: Dependency, up: bool, now: Instant) {
        let after = self.config().alerts.after;
        let change = lock(&self.outages)[what as usize].update(up, now, after);
        let (down, name) = match what {
            Dependency::Database => (Kind::DatabaseDown, "database"),
            Dependency::Binlog => (Kind::BinlogDown, "binlog"),
        };
        match change {
            Some(Change::Down(d)) => {
                let detail = format!("{name} unreachable for {:.0}s", d.as_secs_f64());
                self.alert(down, None, detail);
            }
            Some(Change::Back(d)) => {
                let detail = format!("{name} back after {:.0}s", d.as_secs_f64());
                self.alert(Kind::Recovered, None, detail);
            }
            None => {}
        }
    }

    /// Silences `target` until `until` and saves the silences.
    pub fn silence(&self, target: Target, until: SystemTime) -> std::io::Result<()> {
        let mut s = lock(&self.silences);
        s.set(target, until);
        self.state
            .write(SILENCE_FILE, &s.to_text(SystemTime::now()))
    }

    /// Ends the silence of `target` and saves the silences; false when there was none.
    pub fn unsilence(&self, target: &Target) -> std::io::Result<bool> {
        let mut s = lock(&self.silences);
        let had = s.remove(target);
        self.state
            .write(SILENCE_FILE, &s.to_text(SystemTime::now()))?;
        Ok(had)
    }

    /// The silences in force, in their file form.
    pub fn silences_text(&self) -> String {
        lock(&self.silences).to_text(SystemTime::now())
    }

    /// Forgets ended silences (and saves when any ended).
    pub fn expire_silences(&self, now: SystemTime) {
        let mut s = lock(&self.silences);
        if s.expire(now) {
            if let Err(e) = self.state.write(SILENCE_FILE, &s.to_text(now)) {
                warn!(file = %self.state.path(SILENCE_FILE).display(), error = %e, "cannot save the silences");
            }
        }
    }

    /// Lets queued alerts run (bounded) and stops the queue.
    pub async fn close(&self) {
        self.alerts.close().await;
    }

    fn alert(&self, kind: Kind, process: Option<(i64, &str)>, detail: String) {
        let config = self.config();
        let Some(command) = &config.alerts.command else {
            debug!(event = kind.as_str(), detail = %detail, "no [alerts] command; alert not sent");
            return;
        };
        let name = process.map(|(_, n)| n).unwrap_or_default();
        info!(event = kind.as_str(), process = %name, detail = %detail, "alert");
        let timeout = match process {
            Some((_, n)) => config.process(n).command_timeout,
            None => config.process_default.command_timeout,
        };
        let alert = Alert {
            kind,
            process_id: process.map(|(id, _)| id),
            process: name.to_string(),
            detail,
            host: self.host.clone(),
            time: chrono::Local::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, false),
        };
        let argv = command.render(if command::is_valid_process_name(name) {
            name
        } else {
            ""
        });
        self.alerts.send(alert, argv, timeout);
    }
}

impl Events for Hub {
    fn trigger(&self, process_id: i64, _source: TriggerSource) {
        lock(&self.seen)
            .entry(process_id)
            .or_insert_with(Instant::now);
    }

    fn serving(&self, process_id: i64) {
        let seen = lock(&self.seen).remove(&process_id);
        let mut serving = lock(&self.serving);
        match seen {
            Some(at) => serving.insert(process_id, at),
            None => serving.remove(&process_id),
        };
    }

    fn restarting(&self, process_id: i64) {
        if let Some(at) = lock(&self.serving).remove(&process_id) {
            self.metrics.reaction(at.elapsed());
        }
    }

    fn restarted(&self, name: &str, method: &'static str) {
        self.metrics.restarted(name, method);
    }

    fn procedure(&self, r: &Procedure<'_>) {
        lock(&self.serving).remove(&r.process_id);
        let label = process_label(r.process_id, r.name);
        self.metrics.procedure(&label, r.trigger, r.outcome);
        let kind = lock(&self.book).on_outcome(r.process_id, r.outcome, r.breaker_opened.is_some());
        if let Some(kind) = kind {
            self.alert(kind, Some((r.process_id, r.name)), r.detail.to_string());
        }
    }

    fn silenced(&self, process_id: i64, name: &str) -> Option<Silenced> {
        lock(&self.silences).check(process_id, name, SystemTime::now())
    }
}

fn load_silences(state: &StateDir) -> Silences {
    let now = SystemTime::now();
    match state.read(SILENCE_FILE) {
        Ok(None) => Silences::default(),
        Ok(Some(text)) => match Silences::from_text(&text, now) {
            Ok(s) => {
                let n = s.list(now).len();
                if n > 0 {
                    info!(silences = n, "silences loaded");
                }
                s
            }
            Err(e) => {
                let moved = state.quarantine(SILENCE_FILE);
                warn!(file = %state.path(SILENCE_FILE).display(), error = %e, moved_to = ?moved.ok(), "corrupt silences file; moved aside, nothing is silenced");
                Silences::default()
            }
        },
        Err(e) => {
            warn!(file = %state.path(SILENCE_FILE).display(), error = %e, "cannot read the silences; nothing is silenced");
            Silences::default()
        }
    }
}
