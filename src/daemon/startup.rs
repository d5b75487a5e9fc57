//! Start-up steps that wait or decide: the database (retried with backoff until it answers)
//! and whether and where to follow the binlog.

use std::sync::Arc;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::BinlogMode;
use crate::db::{Db, DbError};
use crate::pipeline;
use crate::scope::Scope;
use crate::source::binlog::{self, BinlogSource, Position};
use crate::state::StateDir;
use crate::{Config, Error};

/// Decides whether to follow the binlog and from where: `off` never; `on` requires it (an error
/// naming each problem and its fix); `auto` follows it when it can, else says why once and runs
/// on sweeps. Resumes at the saved position when it is this server's (by GTID where it can).
pub(super) async fn plan_binlog(
    config: &Config,
    db: &Db,
    state: &StateDir,
    scope: &Arc<Scope>,
) -> Result<Option<(BinlogSource, Position)>, Error> {
    let mode = config.monitor.binlog;
    if mode == BinlogMode::Off {
        info!("binlog = off: running on sweeps alone");
        return Ok(None);
    }
    let readiness = match crate::source::replica::check(config, db).await {
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
    for setting in readiness.settings.report() {
        info!(setting = %setting, "binlog setting");
    }
    let source = BinlogSource {
        db: config.binlog_database().clone(),
        server_id: binlog::server_id(config.monitor.server_id),
        flavor: readiness.flavor,
        state: state.clone(),
        status: Arc::new(std::sync::Mutex::new(binlog::Status::default())),
        origin: readiness.origin.clone(),
        meaning: pipeline::alarm_raised,
        procese: Some(scope.clone()),
    };
    // The saved position is judged on the server the stream is read from.
    let replica = (config.binlog_server.as_ref())
        .map(|server| Db::new(server, &config.monitor.history_table));
    let start =
        binlog::start_position(replica.as_ref().unwrap_or(db), &readiness, source.saved()).await;
    if let Some(replica) = replica {
        replica.close().await;
    }
    Ok(Some((source, start)))
}

/// Connects and reads the schema facts, retrying with backoff until it works; false when
/// `token` was cancelled first. A server that denies the account or the database (1045, 1044,
/// 1049) is an error at once: waiting cannot fix it.
pub(super) async fn wait_for_database(db: &Db, token: &CancellationToken) -> Result<bool, DbError> {
    let mut backoff = ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(500))
        .with_max_delay(Duration::from_secs(30))
        .with_jitter()
        .without_max_times()
        .build();
    loop {
        match db.prepare().await {
            Err(e) if e.is_denied_at_connect() => return Err(e),
            prepared => match db.observe(prepared) {
                Ok(()) => return Ok(true),
                Err(e) if !e.is_reported() => {
                    warn!(error = %e, "database check failed; retrying");
                }
                Err(_) => {}
            },
        }
        let delay = backoff.next().unwrap_or(Duration::from_secs(30));
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = token.cancelled() => return Ok(false),
        }
    }
}
