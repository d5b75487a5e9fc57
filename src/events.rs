//! The one interface between supervision and everything that watches it: the pipeline and the
//! supervisor report triggers, restarts and outcomes to an [`Events`] sink, and ask it whether
//! an operator silenced a process.
//!
//! Every method has a default that does nothing, so the supervisor runs the same without a
//! sink (tests, `--once`). Calls must return at once: a sink queues, it never blocks a restart.

use std::time::{Instant, SystemTime};

use crate::source::TriggerSource;

/// What one procedure came to, as metrics and alerts count it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Outcome {
    /// Restarted and healthy.
    Success,
    /// Restart attempts (or the pre-restart command) failed.
    Failed,
    /// Refused before anything ran (bad name, no PROCESE row).
    Refused,
    /// The circuit breaker is open.
    Blocked,
    /// An operator silenced the process.
    Silenced,
}

impl Outcome {
    /// Every outcome, in the order metrics list them.
    pub const ALL: [Outcome; 5] = [
        Outcome::Success,
        Outcome::Failed,
        Outcome::Refused,
        Outcome::Blocked,
        Outcome::Silenced,
    ];

    /// The `outcome` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failed => "failed",
            Outcome::Refused => "refused",
            Outcome::Blocked => "blocked",
            Outcome::Silenced => "silenced",
        }
    }
}

/// The report of one procedure on a raised alarm.
#[derive(Debug, Clone)]
pub struct Procedure<'a> {
    pub process_id: i64,
    /// The validated name, or for a refused one the name shown safely (escaped, quoted).
    pub name: &'a str,
    pub trigger: TriggerSource,
    pub outcome: Outcome,
    /// The notes written for it (or the reason), for alerts.
    pub detail: &'a str,
    /// Set when this procedure opened the circuit breaker: the end of its open period.
    pub breaker_opened: Option<Instant>,
}

/// An operator's silence that applies to a process now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Silenced {
    /// When it ends (wall clock: operators give wall-clock times).
    pub until: SystemTime,
    /// True the first time this silence stops a procedure for this process (say it then).
    pub first: bool,
}

/// Receives what supervision does. Implementations must not block.
pub trait Events: Send + Sync {
    /// A trigger reached the pipeline (the moment reaction time is measured from).
    fn trigger(&self, _process_id: i64, _source: TriggerSource) {}

    /// A procedure for `process_id` begins: triggers seen until now are served by it.
    fn serving(&self, _process_id: i64) {}

    /// The first restart command of a procedure is about to run.
    fn restarting(&self, _process_id: i64) {}

    /// A restart command succeeded (`method`: `service` or `process`).
    fn restarted(&self, _name: &str, _method: &'static str) {}

    /// A procedure on a raised alarm ended.
    fn procedure(&self, _report: &Procedure<'_>) {}

    /// Whether an operator silenced this process (by id or by name).
    fn silenced(&self, _process_id: i64, _name: &str) -> Option<Silenced> {
        None
    }
}

/// The sink that ignores everything.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoEvents;

impl Events for NoEvents {}
