//! monitor_service: restarts the processes whose alarm is raised in STATUS_PROCESS.
//!
//! [`run`] is the daemon (and `--once`); `main.rs` only parses arguments, sets up logging and
//! signals, and maps [`Error`] to an exit code. Tests call [`run`] in-process and cancel the token.

pub mod alerts;
pub mod cgroup;
pub mod check;
pub mod command;
pub mod config;
pub mod control;
mod daemon;
pub mod db;
pub mod events;
pub mod exec;
pub mod hosts;
pub mod http;
pub mod hub;
pub mod logging;
pub mod metrics;
pub mod pipeline;
pub mod policy;
pub mod procs;
pub mod scope;
pub mod services;
pub mod silence;
pub mod source;
pub mod state;
pub mod status;
pub mod supervisor;
pub mod systemd;
pub mod tls;
pub mod watch;

use std::path::PathBuf;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub use config::Config;
use db::DbError;
use pipeline::Counts;

/// sysexits codes used by the daemon.
pub mod exit {
    /// A procedure failed (`--once`).
    pub const FAILURE: i32 = 1;
    /// A command line argument is wrong (EX_USAGE).
    pub const USAGE: i32 = 64;
    /// The database cannot be reached (EX_UNAVAILABLE).
    pub const UNAVAILABLE: i32 = 69;
    /// The state directory cannot be created or written (EX_CANTCREAT).
    pub const CANTCREAT: i32 = 73;
    /// The account lacks privileges (EX_NOPERM).
    pub const NOPERM: i32 = 77;
    /// Invalid configuration (EX_CONFIG).
    pub const CONFIG: i32 = 78;
}

/// How long in-flight procedures may take to finish after SIGTERM before they are cut short.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// Why the daemon stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error(transparent)]
    Database(#[from] DbError),
    #[error("cannot use the state directory {path}: {source}; create it or set [monitor] state_dir to a writable directory")]
    StateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the binlog cannot be followed and [monitor] binlog = on requires it: {0}")]
    Binlog(String),
    #[error(transparent)]
    Services(#[from] services::ServiceError),
    #[error("{failed} restart procedure(s) failed, {refused} refused, {blocked} blocked by an open circuit breaker")]
    Procedures {
        failed: u64,
        refused: u64,
        blocked: u64,
    },
}

impl Error {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Config(_) => exit::CONFIG,
            Error::Database(e) => e.exit_code(),
            Error::StateDir { .. } => exit::CANTCREAT,
            Error::Binlog(_) => exit::UNAVAILABLE,
            Error::Services(_) => exit::UNAVAILABLE,
            Error::Procedures { .. } => exit::FAILURE,
        }
    }
}

/// How to run.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunOptions {
    /// One sweep, handle what it finds, return.
    pub once: bool,
    /// Decide and log, execute nothing, write nothing to the database.
    pub dry_run: bool,
}

/// Lets `main.rs` reload the configuration (SIGHUP): each message on `reload` re-reads the
/// config file; `after_reload` runs with a new valid config (reopen the log, set the level).
pub struct Hooks {
    pub reload: mpsc::Receiver<()>,
    pub after_reload: Box<dyn Fn(&Config) + Send + Sync>,
}

/// Runs the daemon until `token` is cancelled (or, with `once`, one sweep). Returns what the
/// procedures came to.
pub async fn run(
    config: Config,
    opts: RunOptions,
    token: CancellationToken,
) -> Result<Counts, Error> {
    run_with(config, opts, token, None).await
}

/// [`run`] with reload hooks; the wiring is in the `daemon` module.
pub async fn run_with(
    config: Config,
    opts: RunOptions,
    token: CancellationToken,
    hooks: Option<Hooks>,
) -> Result<Counts, Error> {
    daemon::run_with(config, opts, token, hooks).await
}
