//! Who watches the watcher: the optional `MONITOR_HOSTS` table (`[monitor] hosts_table`), one
//! row per daemon (host, version, started_at, last_seen, binlog source and lag, breakers open,
//! procedures running), upserted at start and every [`EVERY`]; and reading it back for
//! `status --hosts` and for which hosts have a live daemon. Times are the server's UTC clock, so
//! hosts with skewed clocks still agree on who is stale.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use mysql_async::prelude::{Query, WithParams};
use mysql_async::Conn;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::db::{Db, DbError};
use crate::scope::normalize;

/// How often the row is written.
pub const EVERY: Duration = Duration::from_secs(10);
/// A daemon not seen for this long is stale (three intervals).
pub const STALE_AFTER: Duration = Duration::from_secs(3 * EVERY.as_secs());

/// What one row says about a daemon now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Where the binlog is read from (`None`: sweeps only).
    pub binlog_source: Option<String>,
    /// Seconds behind the binlog, when connected.
    pub binlog_lag: Option<i64>,
    pub breakers_open: u64,
    pub procedures_running: u64,
}

/// One row of the table as `status --hosts` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostRow {
    pub host: String,
    pub version: String,
    /// `YYYY-MM-DD HH:MM:SS` UTC.
    pub started_at: String,
    /// `YYYY-MM-DD HH:MM:SS` UTC.
    pub last_seen: String,
    /// Seconds since `last_seen`, by the server's clock.
    pub age_seconds: i64,
    pub binlog_source: Option<String>,
    pub binlog_lag: Option<i64>,
    pub breakers_open: u64,
    pub procedures_running: u64,
}

impl HostRow {
    /// Not seen for more than three intervals.
    pub fn stale(&self) -> bool {
        self.age_seconds > i64::try_from(STALE_AFTER.as_secs()).unwrap_or(i64::MAX)
    }
}

/// The upsert: `started_at` is set only on the first write of a run (the first parameter).
fn upsert_sql(table: &str) -> String {
    format!(
        "INSERT INTO `{table}` (host, version, started_at, last_seen, binlog_source, binlog_lag, breakers_open, procedures_running) \
         VALUES (?, ?, UTC_TIMESTAMP(), UTC_TIMESTAMP(), ?, ?, ?, ?) \
         ON DUPLICATE KEY UPDATE started_at = IF(?, UTC_TIMESTAMP(), started_at), last_seen = UTC_TIMESTAMP(), \
         version = ?, binlog_source = ?, binlog_lag = ?, breakers_open = ?, procedures_running = ?"
    )
}

/// Writes this daemon's row; says once when the table is missing (the daemon works without it).
pub struct Heartbeat {
    table: String,
    host: String,
    /// The first write of this run has been made (it sets `started_at`).
    started: AtomicBool,
    /// The missing table was said.
    said_missing: AtomicBool,
    /// A failing write was said.
    said_failing: AtomicBool,
}

impl Heartbeat {
    pub fn new(table: &str, host: &str) -> Heartbeat {
        Heartbeat {
            table: table.to_string(),
            host: host.to_string(),
            started: AtomicBool::new(false),
            said_missing: AtomicBool::new(false),
            said_failing: AtomicBool::new(false),
        }
    }

    /// Upserts the row; true when it was written.
    pub async fn beat(&self, db: &Db, report: &Report) -> bool {
        let first = !self.started.load(Ordering::Relaxed);
        let result = match db.conn().await {
            Ok(mut conn) => self.write(&mut conn, report, first).await,
            Err(e) => Err(e),
        };
        match result {
            Ok(()) => {
                self.started.store(true, Ordering::Relaxed);
                if self.said_failing.swap(false, Ordering::Relaxed) {
                    info!(table = %self.table, "hosts table written again");
                }
                true
            }
            Err(e) if e.server_code() == Some(1146) => {
                if !self.said_missing.swap(true, Ordering::Relaxed) {
                    info!(table = %self.table, "hosts table not found; this daemon is not listed for `status --hosts` (sql/setup.sql creates it)");
                }
                false
            }
            // An outage is said by the database handle; the row is written when it is back.
            Err(e) if e.is_connectivity() => {
                debug!(table = %self.table, error = %e, "hosts table not written: the database cannot be reached (the outage is logged once by itself)");
                false
            }
            Err(e) => {
                if !self.said_failing.swap(true, Ordering::Relaxed) {
                    warn!(table = %self.table, error = %e, "cannot write this daemon's row in the hosts table; grant SELECT, INSERT, UPDATE on it as sql/setup.sql does");
                } else {
                    debug!(table = %self.table, error = %e, "hosts table still not written");
                }
                false
            }
        }
    }

    async fn write(&self, conn: &mut Conn, r: &Report, first: bool) -> Result<(), DbError> {
        let version = env!("CARGO_PKG_VERSION");
        let source = r.binlog_source.clone();
        upsert_sql(&self.table)
            .with(mysql_async::Params::Positional(vec![
                self.host.as_str().into(),
                version.into(),
                source.clone().into(),
                r.binlog_lag.into(),
                r.breakers_open.into(),
                r.procedures_running.into(),
                first.into(),
                version.into(),
                source.into(),
                r.binlog_lag.into(),
                r.breakers_open.into(),
                r.procedures_running.into(),
            ]))
            .ignore(&mut *conn)
            .await
            .map_err(|source| DbError::Query {
                what: "writing this daemon's row in the hosts table",
                source,
                hint: "",
            })
    }

    /// Writes the row every [`EVERY`] (the first write is the caller's) until `token` is
    /// cancelled; `report` says what the row holds now.
    pub async fn run(
        self: Arc<Self>,
        db: Arc<Db>,
        report: impl Fn() -> Report + Send,
        token: CancellationToken,
    ) {
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + EVERY, EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = token.cancelled() => return,
            }
            self.beat(&db, &report()).await;
        }
    }
}

/// Every row of the hosts table, by host; `Ok(None)` when the table does not exist.
pub async fn list(
    conn: &mut Conn,
    table: &str,
) -> Result<Option<Vec<HostRow>>, mysql_async::Error> {
    type Raw = (
        String,
        String,
        String,
        String,
        i64,
        Option<String>,
        Option<i64>,
        u64,
        u64,
    );
    let sql = format!(
        "SELECT host, version, DATE_FORMAT(started_at, '%Y-%m-%d %H:%i:%s'), DATE_FORMAT(last_seen, '%Y-%m-%d %H:%i:%s'), \
         TIMESTAMPDIFF(SECOND, last_seen, UTC_TIMESTAMP()), binlog_source, binlog_lag, breakers_open, procedures_running \
         FROM `{table}` ORDER BY host"
    );
    let rows: Vec<Raw> = match sql.fetch(&mut *conn).await {
        Ok(r) => r,
        Err(mysql_async::Error::Server(e)) if e.code == 1146 => return Ok(None),
        Err(e) => return Err(e),
    };
    Ok(Some(
        rows.into_iter()
            .map(|r| HostRow {
                host: r.0,
                version: r.1,
                started_at: r.2,
                last_seen: r.3,
                age_seconds: r.4,
                binlog_source: r.5,
                binlog_lag: r.6,
                breakers_open: r.7,
                procedures_running: r.8,
            })
            .collect(),
    ))
}

/// The hosts with a live daemon (normalized); `None` when the table does not exist.
pub async fn live(
    conn: &mut Conn,
    table: &str,
) -> Result<Option<HashSet<String>>, mysql_async::Error> {
    Ok(list(conn, table).await?.map(|rows| {
        rows.into_iter()
            .filter(|r| !r.stale())
            .map(|r| normalize(&r.host))
            .collect()
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(age: i64) -> HostRow {
        HostRow {
            host: "alpha".into(),
            version: "0.1.0".into(),
            started_at: "2026-12-07 10:00:00".into(),
            last_seen: "2026-12-07 10:00:10".into(),
            age_seconds: age,
            binlog_source: None,
            binlog_lag: None,
            breakers_open: 0,
            procedures_running: 0,
        }
    }

    #[test]
    fn stale_after_three_intervals() {
        assert!(!row(0).stale());
        assert!(!row(30).stale());
        assert!(row(31).stale());
    }

    #[test]
    fn upsert_names_the_table_and_every_column() {
        let sql = upsert_sql("FLEET");
        assert!(sql.starts_with("INSERT INTO `FLEET`"));
        for col in [
            "host",
            "version",
            "started_at",
            "last_seen",
            "binlog_source",
            "binlog_lag",
            "breakers_open",
            "procedures_running",
        ] {
            assert!(sql.contains(col), "{col}");
        }
        assert_eq!(sql.matches('?').count(), 12);
    }
}
