//! Event sources: the binlog tail and the periodic sweep both yield [`Trigger`]s for the pipeline.

pub mod binlog;
pub mod replica;
pub mod row;
pub mod sweep;

/// What made the daemon look at a process (written to the history table's `trigger` column).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TriggerSource {
    /// A binlog row event set `alarma = 1`.
    Binlog,
    /// The periodic sweep found `alarma = 1`.
    Sweep,
    /// The sweep at start-up (or `--once`) found `alarma = 1`.
    Startup,
    /// An operator asked for it.
    Manual,
    /// A circuit breaker's open period ended: the half-open re-check.
    Breaker,
}

impl TriggerSource {
    pub fn as_str(self) -> &'static str {
        match self {
            TriggerSource::Binlog => "binlog",
            TriggerSource::Sweep => "sweep",
            TriggerSource::Startup => "startup",
            TriggerSource::Manual => "manual",
            TriggerSource::Breaker => "breaker",
        }
    }
}

impl std::fmt::Display for TriggerSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// "Look at process `process_id`": the pipeline re-reads the row and acts if the alarm is still set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Trigger {
    pub process_id: i64,
    pub source: TriggerSource,
}
