//! What the daemon says about itself: the STATUS line (systemd), its row in the hosts table,
//! and the host-scoping line at start-up.

use std::sync::Arc;

use tracing::{info, warn};

use crate::db::Db;
use crate::hosts;
use crate::pipeline::Pipeline;
use crate::source::binlog;
use crate::status;
use crate::supervisor::Supervisor;
use crate::Config;

/// What the STATUS line is made of.
#[derive(Clone)]
pub(super) struct StatusSources {
    pub(super) db: Arc<Db>,
    pub(super) supervisor: Arc<Supervisor>,
    pub(super) pipeline: Pipeline,
    pub(super) binlog: Option<Arc<std::sync::Mutex<binlog::Status>>>,
}

impl StatusSources {
    /// e.g. `binlog at mysql-bin.000004:1234 (lag 0s), 12 processes, 1 alarms,
    /// 0 breakers open, 0 restarting`.
    pub(super) async fn line(&self) -> String {
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

/// What this daemon's row in the hosts table says now.
pub(super) fn host_report(
    target: &str,
    supervisor: &Supervisor,
    pipeline: &Pipeline,
    binlog: Option<&std::sync::Mutex<binlog::Status>>,
) -> hosts::Report {
    let (binlog_source, binlog_lag) = match binlog {
        None => (None, None),
        Some(b) => {
            let b = b.lock().unwrap_or_else(|p| p.into_inner());
            let lag = if b.connected {
                b.lag_seconds.or(Some(0))
            } else {
                None
            };
            (Some(target.to_string()), lag)
        }
    };
    hosts::Report {
        binlog_source,
        binlog_lag,
        breakers_open: supervisor.open_breakers().len() as u64,
        procedures_running: pipeline.busy() as u64,
    }
}

/// Says once which processes are this daemon's and how many no live daemon handles.
pub(super) async fn say_scope(db: &Db, config: &Config) {
    let host = &config.monitor.host;
    match status::count_unowned(db, config).await {
        Ok(u) if !u.column => info!(host = %host, "host scoping: {}", u.describe()),
        Ok(u) => info!(
            host = %host,
            without_host = u.without_host,
            no_live_daemon = %u.no_live_daemon.map_or_else(|| "unknown".to_string(), |n| n.to_string()),
            "host scoping: this daemon handles the processes whose PROCESE.host is {host}; {}",
            u.describe()
        ),
        Err(e) => warn!(host = %host, error = %e, "cannot count the processes no daemon handles"),
    }
}
