//! The daemon's wiring, in small steps: open the parts ([`Core::open`]), the start-up sweep,
//! `--once`, start the sources and services ([`Running::start`]), the main loop
//! ([`Running::serve`]) and the graceful stop ([`Running::stop`]).

mod reload;
mod report;
mod startup;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, Notify};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::config::BinlogMode;
use crate::db::Db;
use crate::hosts::Heartbeat;
use crate::hub::Hub;
use crate::pipeline::{Counts, Pipeline};
use crate::scope::Scope;
use crate::source::binlog::{self, BinlogSource, Position};
use crate::source::{self, Trigger, TriggerSource};
use crate::state::{StateDir, StateLock};
use crate::supervisor::Supervisor;
use crate::{control, services, systemd, Config, Error, Hooks, RunOptions, SHUTDOWN_GRACE};

use report::StatusSources;

/// How often the STATUS line is refreshed.
const STATUS_EVERY: Duration = Duration::from_secs(10);

/// Runs the daemon until `token` is cancelled (or, with `once`, one sweep).
pub(crate) async fn run_with(
    config: Config,
    opts: RunOptions,
    token: CancellationToken,
    hooks: Option<Hooks>,
) -> Result<Counts, Error> {
    let Some(core) = Core::open(Arc::new(config), opts, &token).await? else {
        return Ok(Counts::default());
    };
    core.startup_sweep().await?;
    if opts.once {
        return core.finish_once().await;
    }
    let mut running = Running::start(core, &token).await;
    let failure = running.serve(&token, hooks).await;
    running.stop(failure).await
}

/// The parts every run has, built at start.
struct Core {
    config: Arc<Config>,
    opts: RunOptions,
    bound: Option<services::Bound>,
    _state_lock: Option<StateLock>,
    hub: Arc<Hub>,
    db: Arc<Db>,
    scope: Arc<Scope>,
    follow: Option<(BinlogSource, Position)>,
    binlog_status: Option<Arc<std::sync::Mutex<binlog::Status>>>,
    /// Cancelled when the grace period after shutdown has passed: procedures are cut short.
    abort: CancellationToken,
    supervisor: Arc<Supervisor>,
    pipeline: Pipeline,
    heartbeat: Arc<Heartbeat>,
}

impl Core {
    /// Opens the state directory, binds the services, waits for the database, plans the
    /// binlog and builds the supervisor and pipeline. `None`: cancelled while waiting.
    async fn open(
        config: Arc<Config>,
        opts: RunOptions,
        token: &CancellationToken,
    ) -> Result<Option<Core>, Error> {
        let state =
            StateDir::open(&config.monitor.state_dir).map_err(|source| Error::StateDir {
                path: config.monitor.state_dir.clone(),
                source,
            })?;
        let bound = if opts.once {
            None
        } else {
            Some(services::bind(&config).await?)
        };
        let state_lock = services::hold_state(&state).await;
        let hub = Arc::new(Hub::new(config.clone(), state.clone()));
        let db = Arc::new(Db::with_capacity(
            &config.database,
            &config.monitor.history_table,
            config.monitor.max_parallel_restarts,
        ));
        if opts.once {
            db.prepare().await?;
        } else if !startup::wait_for_database(&db, token).await? {
            return Ok(None);
        }

        let scope = Arc::new(Scope::new(&config.monitor.host));
        // The binlog position is taken before the start-up sweep, so no change falls between them.
        let follow = if opts.once {
            None
        } else {
            startup::plan_binlog(&config, &db, &state, &scope).await?
        };
        let binlog_status = follow.as_ref().map(|(source, _)| source.status.clone());

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
        pipeline.limit_to(scope.clone());
        let heartbeat = Arc::new(Heartbeat::new(
            &config.monitor.hosts_table,
            &config.monitor.host,
        ));
        Ok(Some(Core {
            config,
            opts,
            bound,
            _state_lock: state_lock,
            hub,
            db,
            scope,
            follow,
            binlog_status,
            abort,
            supervisor,
            pipeline,
            heartbeat,
        }))
    }

    /// What this daemon's row in the hosts table says, as a function of now.
    fn report(&self) -> impl Fn() -> crate::hosts::Report + Send + 'static {
        let (supervisor, pipeline, binlog) = (
            self.supervisor.clone(),
            self.pipeline.clone(),
            self.binlog_status.clone(),
        );
        // The server the stream is read from: [binlog]'s when set, else [database]'s.
        let target = crate::db::target_of(self.config.binlog_database());
        move || report::host_report(&target, &supervisor, &pipeline, binlog.as_deref())
    }

    /// Writes the hosts row, says the host scoping, sweeps once and hands what it found to the
    /// pipeline (with `--once` a failed sweep is an error; otherwise the sweep loop retries).
    async fn startup_sweep(&self) -> Result<(), Error> {
        let (config, db, opts) = (&self.config, &self.db, self.opts);
        if !opts.once && !opts.dry_run {
            self.heartbeat.beat(db, &self.report()()).await;
        }
        report::say_scope(db, config).await;
        let startup = source::sweep::sweep(db, &self.scope, TriggerSource::Startup).await;
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
            self.pipeline.submit(t);
        }
        Ok(())
    }

    /// `--once`: waits for the procedures and says what they came to.
    async fn finish_once(self) -> Result<Counts, Error> {
        let pipeline = self.pipeline;
        pipeline.idle().await;
        pipeline.shutdown().await;
        let counts = pipeline.counts();
        drop((pipeline, self.supervisor));
        self.hub.close().await;
        db_close(self.db).await;
        if counts.failed + counts.refused + counts.blocked + counts.unavailable > 0 {
            Err(Error::Procedures {
                failed: counts.failed + counts.unavailable,
                refused: counts.refused,
                blocked: counts.blocked,
            })
        } else {
            Ok(counts)
        }
    }
}

/// The daemon while it runs: the parts and the tasks started around them.
struct Running {
    core: Core,
    rx: mpsc::Receiver<Trigger>,
    fatal_rx: mpsc::Receiver<binlog::BinlogFatal>,
    tasks: Vec<JoinHandle<()>>,
    services: services::Services,
    status: StatusSources,
}

impl Running {
    /// Schedules the breakers' re-checks and starts the sweep loop, the DDL follower, the
    /// heartbeat, the binlog source and the services; tells systemd it is ready.
    async fn start(mut core: Core, token: &CancellationToken) -> Running {
        for (id, at) in core.supervisor.open_breakers() {
            core.pipeline.recheck_at(id, at, TriggerSource::Breaker);
        }
        let (tx, rx) = mpsc::channel::<Trigger>(1024);
        let kick = Arc::new(Notify::new());
        let mut tasks = vec![
            tokio::spawn(source::sweep::run(
                core.db.clone(),
                core.scope.clone(),
                core.config.monitor.check_interval,
                kick.clone(),
                tx.clone(),
                token.clone(),
            )),
            tokio::spawn(
                core.scope
                    .clone()
                    .follow_ddl(core.db.clone(), token.clone()),
            ),
        ];
        if !core.opts.dry_run {
            let beat = core
                .heartbeat
                .clone()
                .run(core.db.clone(), core.report(), token.clone());
            tasks.push(tokio::spawn(beat));
        }
        let (fatal_tx, fatal_rx) = mpsc::channel::<binlog::BinlogFatal>(1);
        if let Some((source, start)) = core.follow.take() {
            let mode = core.config.monitor.binlog;
            tasks.push(spawn_binlog(
                source,
                start,
                (tx, kick),
                fatal_tx,
                mode,
                token,
            ));
        }
        let services = start_services(&mut core).await;
        let status = StatusSources {
            db: core.db.clone(),
            supervisor: core.supervisor.clone(),
            pipeline: core.pipeline.clone(),
            binlog: core.binlog_status.clone(),
        };
        systemd::ready(&status.line().await);
        Running {
            core,
            rx,
            fatal_rx,
            tasks,
            services,
            status,
        }
    }

    /// The main loop: dispatches triggers, refreshes the STATUS line, pets the watchdog and
    /// reloads the config, until `token` is cancelled or a required binlog fails (returned).
    async fn serve(
        &mut self,
        token: &CancellationToken,
        mut hooks: Option<Hooks>,
    ) -> Option<Error> {
        let watchdog = systemd::watchdog_interval();
        let mut watchdog_tick =
            tokio::time::interval(watchdog.unwrap_or(Duration::from_secs(3600)));
        let mut status_tick = tokio::time::interval(STATUS_EVERY);
        let mut status_task: Option<JoinHandle<()>> = None;
        loop {
            tokio::select! {
                _ = watchdog_tick.tick(), if watchdog.is_some() => systemd::watchdog(),
                _ = status_tick.tick() => {
                    // The query runs beside the loop, so a slow database never delays dispatch.
                    if status_task.as_ref().is_none_or(|t| t.is_finished()) {
                        let status = self.status.clone();
                        status_task = Some(tokio::spawn(async move { systemd::status(&status.line().await) }));
                    }
                }
                Some(()) = async { match hooks.as_mut() { Some(h) => h.reload.recv().await, None => std::future::pending().await } } => {
                    if let Some(h) = &hooks {
                        reload::reload(&self.core.supervisor, &self.core.hub, h);
                    }
                }
                t = self.rx.recv() => match t {
                    Some(t) => self.core.pipeline.submit(t),
                    None => return None,
                },
                Some(fatal) = self.fatal_rx.recv() => {
                    error!(error = %fatal, "binlog source stopped and [monitor] binlog = on requires it; stopping");
                    token.cancel();
                    return Some(Error::Binlog(fatal.to_string()));
                }
                _ = token.cancelled() => return None,
            }
        }
    }

    /// The graceful stop: no new procedures, the ones under way get [`SHUTDOWN_GRACE`], then
    /// the services, sources and connections end.
    async fn stop(self, failure: Option<Error>) -> Result<Counts, Error> {
        // Sources blocked on a full channel get an error at once instead of waiting for a reader.
        drop(self.rx);
        let core = self.core;
        systemd::stopping();
        info!(
            in_flight = core.pipeline.busy(),
            "stopping: no new procedures"
        );
        if tokio::time::timeout(SHUTDOWN_GRACE, core.pipeline.shutdown())
            .await
            .is_err()
        {
            warn!(grace = ?SHUTDOWN_GRACE, "procedures still running after the grace period; cutting them short");
            core.abort.cancel();
            core.pipeline.shutdown().await;
        }
        self.services.stop().await;
        core.hub.close().await;
        for task in self.tasks {
            let _ = task.await;
        }
        let counts = core.pipeline.counts();
        drop((
            core.pipeline,
            core.supervisor,
            self.status,
            self.services,
            core.hub,
        ));
        info!(
            succeeded = counts.succeeded,
            failed = counts.failed,
            "monitor_service stopped"
        );
        db_close(core.db).await;
        match failure {
            Some(e) => Err(e),
            None => Ok(counts),
        }
    }
}

/// Follows the binlog; a fatal end is sent on `fatal` when `binlog = on` requires the
/// stream, else said once (the daemon runs on sweeps alone).
fn spawn_binlog(
    source: BinlogSource,
    start: Position,
    (tx, kick): (mpsc::Sender<Trigger>, Arc<Notify>),
    fatal: mpsc::Sender<binlog::BinlogFatal>,
    mode: BinlogMode,
    token: &CancellationToken,
) -> JoinHandle<()> {
    let token = token.clone();
    tokio::spawn(async move {
        if let Err(e) = source.run(start, tx, kick, token).await {
            if mode == BinlogMode::On {
                let _ = fatal.send(e).await;
            } else {
                error!(error = %e, "binlog source stopped; running on sweeps alone");
            }
        }
    })
}

/// The control socket, metrics and alerts.
async fn start_services(core: &mut Core) -> services::Services {
    let context = control::server::Context {
        supervisor: core.supervisor.clone(),
        pipeline: core.pipeline.clone(),
        hub: core.hub.clone(),
        db: core.db.clone(),
    };
    let bound = core.bound.take().unwrap_or(services::Bound::none());
    services::start(&core.config, bound, context, core.binlog_status.clone()).await
}

/// Closes the pool; a connection that cannot be closed (a stalled server) does not hold up the
/// exit for more than a few seconds.
async fn db_close(db: Arc<Db>) {
    if let Ok(db) = Arc::try_unwrap(db) {
        let _ = tokio::time::timeout(Duration::from_secs(5), db.close()).await;
    }
}
