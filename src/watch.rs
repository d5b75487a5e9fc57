//! The daemon's periodic look beside supervision: is the database up (and which processes
//! exist), is the binlog connected; that feeds the gauges, the outage alerts, the end of
//! silences and the metrics textfile (rewritten every 10 s).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use mysql_async::prelude::Queryable;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::db::{Db, DbError};
use crate::hub::{process_label, Dependency, Hub};
use crate::metrics::Gauges;
use crate::source::binlog;
use crate::state;
use crate::supervisor::Supervisor;

/// How often the textfile is rewritten.
pub const TEXTFILE_EVERY: Duration = Duration::from_secs(10);
/// A database that has not answered the look within this is down (a connection into a
/// network black hole never fails by itself).
const LOOK_TIMEOUT: Duration = Duration::from_secs(10);

/// What the watch last learnt from the database.
#[derive(Debug, Default)]
struct Seen {
    /// `process_id -> process label` of every PROCESE row.
    processes: BTreeMap<i64, String>,
    database_up: bool,
}

/// The watch and what it reads.
pub struct Watch {
    pub db: Arc<Db>,
    pub hub: Arc<Hub>,
    pub supervisor: Arc<Supervisor>,
    pub binlog: Option<Arc<Mutex<binlog::Status>>>,
    pub textfile: Option<PathBuf>,
    seen: Mutex<Seen>,
}

impl Watch {
    pub fn new(
        db: Arc<Db>,
        hub: Arc<Hub>,
        supervisor: Arc<Supervisor>,
        binlog: Option<Arc<Mutex<binlog::Status>>>,
        textfile: Option<PathBuf>,
    ) -> Watch {
        Watch {
            db,
            hub,
            supervisor,
            binlog,
            textfile,
            seen: Mutex::new(Seen::default()),
        }
    }

    /// The metrics now (gauges read from the live state; no I/O).
    pub fn render(&self) -> String {
        let metrics = self.hub.metrics();
        metrics.set(&self.gauges());
        metrics.render()
    }

    fn gauges(&self) -> Gauges {
        let seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let open_breakers = self
            .supervisor
            .open_breakers()
            .into_iter()
            .map(|(id, _)| {
                seen.processes
                    .get(&id)
                    .cloned()
                    .unwrap_or_else(|| format!("#{id}"))
            })
            .collect();
        let binlog = self
            .binlog
            .as_ref()
            .map(|b| b.lock().unwrap_or_else(|p| p.into_inner()).clone());
        Gauges {
            open_breakers,
            binlog_connected: binlog.as_ref().map(|b| b.connected),
            binlog_lag_seconds: binlog.and_then(|b| b.lag_seconds).map(|s| s.max(0) as f64),
            database_up: seen.database_up,
        }
    }

    /// Looks every `every` until `token` is cancelled; writes the textfile a last time then.
    pub async fn run(self: Arc<Self>, every: Duration, token: CancellationToken) {
        let mut last_textfile: Option<Instant> = None;
        let mut textfile_failing = false;
        loop {
            self.look().await;
            if last_textfile.is_none_or(|t| t.elapsed() >= TEXTFILE_EVERY) {
                self.write_textfile(&mut textfile_failing);
                last_textfile = Some(Instant::now());
            }
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = token.cancelled() => break,
            }
        }
        self.write_textfile(&mut textfile_failing);
    }

    async fn look(&self) {
        let now = Instant::now();
        let processes = match tokio::time::timeout(LOOK_TIMEOUT, processes(&self.db)).await {
            Ok(r) => self.db.observe(r).ok(),
            Err(_) => None,
        };
        let up = processes.is_some();
        {
            let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
            seen.database_up = up;
            if let Some(p) = processes {
                self.hub.metrics().known(p.values().map(String::as_str));
                seen.processes = p;
            }
        }
        self.hub.dependency(Dependency::Database, up, now);
        if let Some(b) = &self.binlog {
            let connected = b.lock().unwrap_or_else(|p| p.into_inner()).connected;
            self.hub.dependency(Dependency::Binlog, connected, now);
        }
        self.hub.expire_silences(SystemTime::now());
    }

    fn write_textfile(&self, failing: &mut bool) {
        let Some(path) = &self.textfile else { return };
        match state::write_atomic(path, &self.render()) {
            Ok(()) => {
                if std::mem::take(failing) {
                    info!(file = %path.display(), "metrics textfile written again");
                }
            }
            Err(e) => {
                if !std::mem::replace(failing, true) {
                    warn!(file = %path.display(), error = %e, "cannot write the metrics textfile; check that its directory exists and is writable ([metrics] textfile)");
                }
            }
        }
    }
}

/// Every PROCESE row, `process_id -> process label`.
async fn processes(db: &Db) -> Result<BTreeMap<i64, String>, DbError> {
    let mut conn = db.conn().await?;
    let rows: Vec<(i64, Vec<u8>)> = conn
        .query("SELECT process_id, process_name FROM PROCESE")
        .await
        .map_err(|source| DbError::Query {
            what: "listing PROCESE for the metrics",
            source,
            hint: "",
        })?;
    Ok(rows
        .into_iter()
        .map(|(id, name)| {
            let label = match std::str::from_utf8(&name) {
                Ok(n) => process_label(id, n),
                Err(_) => format!("#{id}"),
            };
            (id, label)
        })
        .collect())
}
