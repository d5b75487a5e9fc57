//! monitor_service: restarts the processes whose alarm is raised in STATUS_PROCESS.
//!
//! [`run`] is the daemon (and `--once`); `main.rs` only parses arguments, sets up logging and
//! signals, and maps [`Error`] to an exit code. Tests call [`run`] in-process and cancel the token.

pub mod alerts;
pub mod check;
pub mod command;
pub mod config;
pub mod control;
pub mod db;
pub mod events;
pub mod exec;
pub mod http;
pub mod hub;
pub mod logging;
pub mod metrics;
pub mod pipeline;
pub mod procs;
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
use std::sync::Arc;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use tokio::sync::{mpsc, Notify};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use config::BinlogMode;
pub use config::Config;
use db::{Db, DbError};
use hub::Hub;
use pipeline::{Counts, Pipeline};
use source::binlog::{self, BinlogSource, Position};
use source::{Trigger, TriggerSource};
use state::StateDir;
use supervisor::Supervisor;

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
            Error::Database(_) => exit::UNAVAILABLE,
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

/// How often the STATUS line is refreshed.
const STATUS_EVERY: Duration = Duration::from_secs(10);

/// Runs the daemon until `token` is cancelled (or, with `once`, one sweep). Returns what the
/// procedures came to.
pub async fn run(
    config: Config,
    opts: RunOptions,
    token: CancellationToken,
) -> Result<Counts, Error> {
    run_with(config, opts, token, None).await
}

/// [`run`] with reload hooks.
pub async fn run_with(
    config: Config,
    opts: RunOptions,
    token: CancellationToken,
    mut hooks: Option<Hooks>,
) -> Result<Counts, Error> {
    let config = Arc::new(config);
    let state = StateDir::open(&config.monitor.state_dir).map_err(|source| Error::StateDir {
        path: config.monitor.state_dir.clone(),
        source,
    })?;
    let bound = if opts.once {
        None
    } else {
        Some(services::bind(&config).await?)
    };
    let _state_lock = services::hold_state(&state).await;
    let hub = Arc::new(Hub::new(config.clone(), state.clone()));
    let db = Arc::new(Db::with_capacity(
        &config.database,
        &config.monitor.history_table,
        config.monitor.max_parallel_restarts,
    ));

    if opts.once {
        db.prepare().await?;
    } else if !wait_for_database(&db, &token).await {
        return Ok(Counts::default());
    }

    // The binlog position is taken before the start-up sweep, so no change falls between them.
    let follow = if opts.once {
        None
    } else {
        plan_binlog(&config, &db, &state).await?
    };

    // Procedures are cut short only when the grace period after shutdown has passed.
    let abort = CancellationToken::new();
    let supervisor = Arc::new(Supervisor::with_events(
        config.clone(),
        db.clone(),
        state,
        opts.dry_run,
        abort.clone(),
        hub.clone(),
    ));
    let pipeline = Pipeline::with_events(
        supervisor.clone(),
        config.monitor.max_parallel_restarts,
        token.clone(),
        hub.clone(),
    );

    let startup = source::sweep::sweep(&db, TriggerSource::Startup).await;
    let startup = match startup {
        Ok(t) => t,
        Err(e) if opts.once => return Err(e.into()),
        Err(_) => Vec::new(), // logged by `observe`; the sweep loop retries
    };
    info!(
        database = %db.target(),
        alarms = startup.len(),
        check_interval = %format!("{}s", config.monitor.check_interval.as_secs_f64()),
        dry_run = opts.dry_run,
        "monitor_service started"
    );
    for t in startup {
        pipeline.submit(t);
    }

    if opts.once {
        pipeline.idle().await;
        pipeline.shutdown().await;
        let counts = pipeline.counts();
        drop((pipeline, supervisor));
        hub.close().await;
        db_close(db).await;
        return if counts.failed + counts.refused + counts.blocked + counts.unavailable > 0 {
            Err(Error::Procedures {
                failed: counts.failed + counts.unavailable,
                refused: counts.refused,
                blocked: counts.blocked,
            })
        } else {
            Ok(counts)
        };
    }

    for (id, at) in supervisor.open_breakers() {
        pipeline.recheck_at(id, at, TriggerSource::Breaker);
    }

    let (tx, mut rx) = mpsc::channel::<Trigger>(1024);
    let kick = Arc::new(Notify::new());
    let sweeper = tokio::spawn(source::sweep::run(
        db.clone(),
        config.monitor.check_interval,
        kick.clone(),
        tx.clone(),
        token.clone(),
    ));
    let (fatal_tx, mut fatal_rx) = mpsc::channel::<binlog::BinlogFatal>(1);
    let binlog_status = follow.as_ref().map(|(source, _)| source.status.clone());
    let binlog_task = follow.map(|(source, start)| {
        let (tx, kick, token, mode) = (
            tx.clone(),
            kick.clone(),
            token.clone(),
            config.monitor.binlog,
        );
        tokio::spawn(async move {
            if let Err(fatal) = source.run(start, tx, kick, token).await {
                if mode == BinlogMode::On {
                    let _ = fatal_tx.send(fatal).await;
                } else {
                    error!(error = %fatal, "binlog source stopped; running on sweeps alone");
                }
            }
        })
    });
    drop(tx);
    let context = control::server::Context {
        supervisor: supervisor.clone(),
        pipeline: pipeline.clone(),
        hub: hub.clone(),
        db: db.clone(),
    };
    let bound = bound.unwrap_or(services::Bound::none());
    let services = services::start(&config, bound, context, binlog_status.clone()).await;
    let status = StatusSources {
        db: db.clone(),
        supervisor: supervisor.clone(),
        pipeline: pipeline.clone(),
        binlog: binlog_status,
    };
    systemd::ready(&status.line().await);
    let watchdog = systemd::watchdog_interval();
    let mut watchdog_tick = tokio::time::interval(watchdog.unwrap_or(Duration::from_secs(3600)));
    let mut status_tick = tokio::time::interval(STATUS_EVERY);
    let mut status_task: Option<tokio::task::JoinHandle<()>> = None;

    let mut failure = None;
    loop {
        tokio::select! {
            _ = watchdog_tick.tick(), if watchdog.is_some() => systemd::watchdog(),
            _ = status_tick.tick() => {
                // The query runs beside the loop, so a slow database never delays dispatch.
                if status_task.as_ref().is_none_or(|t| t.is_finished()) {
                    let status = status.clone();
                    status_task = Some(tokio::spawn(async move { systemd::status(&status.line().await) }));
                }
            }
            Some(()) = async { match hooks.as_mut() { Some(h) => h.reload.recv().await, None => std::future::pending().await } } => {
                if let Some(h) = &hooks {
                    reload(&supervisor, &hub, h);
                }
            }
            t = rx.recv() => match t {
                Some(t) => pipeline.submit(t),
                None => break,
            },
            Some(fatal) = fatal_rx.recv() => {
                error!(error = %fatal, "binlog source stopped and [monitor] binlog = on requires it; stopping");
                failure = Some(Error::Binlog(fatal.to_string()));
                token.cancel();
                break;
            }
            _ = token.cancelled() => break,
        }
    }

    systemd::stopping();
    info!(in_flight = pipeline.busy(), "stopping: no new procedures");
    if tokio::time::timeout(SHUTDOWN_GRACE, pipeline.shutdown())
        .await
        .is_err()
    {
        warn!(grace = ?SHUTDOWN_GRACE, "procedures still running after the grace period; cutting them short");
        abort.cancel();
        pipeline.shutdown().await;
    }
    services.stop().await;
    hub.close().await;
    let _ = sweeper.await;
    if let Some(task) = binlog_task {
        let _ = task.await;
    }
    let counts = pipeline.counts();
    drop((pipeline, supervisor, status, status_task, services, hub));
    info!(
        succeeded = counts.succeeded,
        failed = counts.failed,
        "monitor_service stopped"
    );
    db_close(db).await;
    match failure {
        Some(e) => Err(e),
        None => Ok(counts),
    }
}

/// Decides whether to follow the binlog and from where: `off` never; `on` requires it (an error
/// naming each problem and its fix); `auto` follows it when it can, else says why once and runs
/// on sweeps. Resumes at the saved position when the server still has it.
async fn plan_binlog(
    config: &Config,
    db: &Db,
    state: &StateDir,
) -> Result<Option<(BinlogSource, Position)>, Error> {
    let mode = config.monitor.binlog;
    if mode == BinlogMode::Off {
        info!("binlog = off: running on sweeps alone");
        return Ok(None);
    }
    let readiness = match source::replica::check(config, db).await {
        Ok(r) => r,
        Err(problems) => {
            let all = problems.join("; ");
            if mode == BinlogMode::On {
                return Err(Error::Binlog(all));
            }
            warn!(problems = %all, "the binlog cannot be followed; running on sweeps alone every check_interval (fix this, or set [monitor] binlog = off)");
            return Ok(None);
        }
    };
    let source = BinlogSource {
        db: config.binlog_database().clone(),
        server_id: binlog::server_id(config.monitor.server_id),
        flavor: readiness.flavor,
        state: state.clone(),
        status: Arc::new(std::sync::Mutex::new(binlog::Status::default())),
    };
    let current = readiness.position.unwrap_or(Position {
        file: String::new(),
        pos: 4,
        gtid: None,
    });
    let start = match source.saved_position() {
        Some(saved) if readiness.files.contains(&saved.file) => {
            info!(position = %saved, "resuming the binlog at the saved position");
            saved
        }
        Some(saved) => {
            warn!(saved = %saved, current = %current, "the saved binlog position is no longer on the server (purged?); starting at the current end, the start-up sweep catches what was missed");
            current
        }
        None => current,
    };
    Ok(Some((source, start)))
}

/// Connects and reads the schema facts, retrying with backoff until it works; false when
/// `token` was cancelled first.
async fn wait_for_database(db: &Db, token: &CancellationToken) -> bool {
    let mut backoff = ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(500))
        .with_max_delay(Duration::from_secs(30))
        .with_jitter()
        .without_max_times()
        .build();
    loop {
        match db.observe(db.prepare().await) {
            Ok(()) => return true,
            Err(e) if !e.is_connectivity() => {
                warn!(error = %e, "database check failed; retrying");
            }
            Err(_) => {}
        }
        let delay = backoff.next().unwrap_or(Duration::from_secs(30));
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = token.cancelled() => return false,
        }
    }
}

/// Re-reads the config file: a bad one is refused with an ERROR and the old one kept.
fn reload(supervisor: &Supervisor, hub: &Hub, hooks: &Hooks) {
    let current = supervisor.config();
    match Config::load(&current.path) {
        Err(e) => {
            error!(error = %e, "configuration reload failed; keeping the configuration in force")
        }
        Ok(loaded) => {
            for w in &loaded.warnings {
                warn!("{w}");
            }
            let new = loaded.config;
            let later = restart_only_changes(&current, &new);
            if !later.is_empty() {
                warn!(settings = %later.join(", "), "changed settings that take effect only after a restart of the daemon");
            }
            (hooks.after_reload)(&new);
            let new = Arc::new(new);
            hub.set_config(new.clone());
            supervisor.set_config(new);
            info!(file = %current.path.display(), "configuration reloaded");
        }
    }
}

/// Settings a reload cannot apply (connections, sources and files are set up at start).
fn restart_only_changes(old: &Config, new: &Config) -> Vec<&'static str> {
    let (o, n) = (&old.monitor, &new.monitor);
    let (ol, nl) = (&old.logging, &new.logging);
    [
        ("[database]", old.database != new.database),
        ("[binlog]", old.binlog_server != new.binlog_server),
        ("check_interval", o.check_interval != n.check_interval),
        ("binlog", o.binlog != n.binlog),
        ("server_id", o.server_id != n.server_id),
        (
            "max_parallel_restarts",
            o.max_parallel_restarts != n.max_parallel_restarts,
        ),
        ("state_dir", o.state_dir != n.state_dir),
        ("history_table", o.history_table != n.history_table),
        ("control_socket", o.control_socket != n.control_socket),
        ("[metrics]", old.metrics != new.metrics),
        ("log_file", ol.log_file != nl.log_file),
        ("max_log_size", ol.max_log_size_kb != nl.max_log_size_kb),
        (
            "log_files_to_keep",
            ol.log_files_to_keep != nl.log_files_to_keep,
        ),
    ]
    .into_iter()
    .filter_map(|(k, changed)| changed.then_some(k))
    .collect()
}

/// What the STATUS line is made of.
#[derive(Clone)]
struct StatusSources {
    db: Arc<Db>,
    supervisor: Arc<Supervisor>,
    pipeline: Pipeline,
    binlog: Option<Arc<std::sync::Mutex<binlog::Status>>>,
}

impl StatusSources {
    /// e.g. `binlog at mysql-bin.000004:1234 (lag 0s), 12 processes, 1 alarms,
    /// 0 breakers open, 0 restarting`.
    async fn line(&self) -> String {
        let source = match &self.binlog {
            Some(b) => b.lock().unwrap_or_else(|p| p.into_inner()).summary(),
            None => "sweeps only".to_string(),
        };
        let table = match self.db.counts().await {
            Ok((processes, alarms)) => format!("{processes} processes, {alarms} alarms"),
            Err(_) => "database unreachable".to_string(),
        };
        format!(
            "{source}, {table}, {} breakers open, {} restarting",
            self.supervisor.open_breakers().len(),
            self.pipeline.busy()
        )
    }
}

async fn db_close(db: Arc<Db>) {
    if let Ok(db) = Arc::try_unwrap(db) {
        db.close().await;
    }
}
