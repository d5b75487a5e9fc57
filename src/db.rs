//! Database access: the sweep query, one process's row, the outcome writes and the history rows.
//!
//! All SQL is parameterised; the only identifier put into SQL text is the history table name,
//! which the config validated as `[A-Za-z0-9_$]{1,64}`. Every statement is bounded (sessions
//! wait at most [`LOCK_WAIT_SECS`] for a lock, the client at most [`Db::query_timeout`] for an
//! answer). Connectivity problems are logged once per outage (and once when the database is
//! back), refused queries once per kind, through [`Db::observe`].

mod claim;
mod errors;
mod refusals;
pub mod socket;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mysql_async::prelude::{Query, Queryable, WithParams};
use mysql_async::{Conn, OptsBuilder, Pool, PoolConstraints, PoolOpts};
use tracing::{error, info, warn};

use crate::config::DatabaseConfig;
use claim::bounded;
pub use claim::{Claim, Cleared, ProcessRow};
pub use errors::DbError;
use errors::{code_of, hint_for};
use refusals::Refusals;

/// Seconds a session of the daemon waits for a table or row lock (`lock_wait_timeout`,
/// `innodb_lock_wait_timeout`) before the server answers 1205: a `LOCK TABLES` held by someone
/// else delays a procedure by this much at a time, never the daemon's shutdown.
pub const LOCK_WAIT_SECS: u64 = 5;

/// The client's bound on one statement beyond `connect_timeout`: longer than the server's own
/// lock wait, so a lock wait is answered by the server (1205) and a timeout means a stall.
const QUERY_SLACK: Duration = Duration::from_secs(2 * LOCK_WAIT_SECS);

/// Length of `STATUS_PROCESS.notes` when information_schema does not tell (the schema's value).
pub const DEFAULT_NOTES_LEN: usize = 100;

/// One restart procedure, as written to the history table.
#[derive(Debug, Clone)]
pub struct HistoryRecord {
    pub process_id: i64,
    pub process_name: String,
    pub started_at: chrono::NaiveDateTime,
    pub finished_at: chrono::NaiveDateTime,
    pub trigger: &'static str,
    pub strategy: Option<String>,
    pub attempts: u32,
    pub outcome: &'static str,
    pub detail: String,
}

/// Handle on the monitored database (cheap to share behind an `Arc`).
pub struct Db {
    pool: Pool,
    target: String,
    connect_timeout: Duration,
    history_table: String,
    notes_len: AtomicUsize,
    history_present: AtomicBool,
    history_checked: AtomicBool,
    outage: Mutex<Option<Instant>>,
    /// Refused queries seen (each kind is logged once until the query works again).
    refusals: Arc<Refusals>,
    /// Bound on each statement.
    query_timeout: Duration,
    /// Distinguishes this database's lock names from other databases' on the same server.
    lock_space: u32,
}

impl Db {
    /// Builds the pool (16 connections at most); nothing is connected until the first query.
    pub fn new(cfg: &DatabaseConfig, history_table: &str) -> Db {
        Db::with_capacity(cfg, history_table, 16)
    }

    /// Builds the pool for a daemon running `max_parallel` procedures at once (each holds a
    /// connection for its claim while it runs).
    pub fn with_capacity(cfg: &DatabaseConfig, history_table: &str, max_parallel: usize) -> Db {
        let max = max_parallel.saturating_add(8).clamp(16, 1100);
        let constraints = PoolConstraints::new(0, max).unwrap_or_default();
        let pool_opts = PoolOpts::default()
            .with_constraints(constraints)
            .with_inactive_connection_ttl(Duration::from_secs(60))
            // A returned connection is reusable at once (no COM_RESET_CONNECTION round trip):
            // the daemon keeps no session state, and claims release their locks themselves.
            .with_reset_connection(false);
        let opts = connect_opts(cfg).pool_opts(pool_opts);
        Db {
            pool: Pool::new(opts),
            target: target_of(cfg),
            lock_space: fnv32(&cfg.database),
            connect_timeout: cfg.connect_timeout,
            history_table: history_table.to_string(),
            notes_len: AtomicUsize::new(DEFAULT_NOTES_LEN),
            history_present: AtomicBool::new(false),
            history_checked: AtomicBool::new(false),
            outage: Mutex::new(None),
            refusals: Arc::new(Refusals::default()),
            query_timeout: cfg.connect_timeout + QUERY_SLACK,
        }
    }

    /// The bound on each statement: `connect_timeout` plus twice the session's lock wait.
    pub fn query_timeout(&self) -> Duration {
        self.query_timeout
    }

    /// Runs one statement of `what` within [`Db::query_timeout`].
    async fn bounded<T>(
        &self,
        what: &'static str,
        query: impl std::future::Future<Output = Result<T, mysql_async::Error>>,
    ) -> Result<T, DbError> {
        bounded(self.query_timeout, &self.refusals, what, query).await
    }

    /// Where the database is, for messages (never includes the password).
    pub fn target(&self) -> &str {
        &self.target
    }

    /// A pooled connection, bounded by `connect_timeout`.
    pub async fn conn(&self) -> Result<Conn, DbError> {
        match tokio::time::timeout(self.connect_timeout, self.pool.get_conn()).await {
            Err(_) => Err(DbError::ConnectTimeout {
                target: self.target.clone(),
                timeout: self.connect_timeout,
            }),
            Ok(Err(e)) => Err(DbError::Connect {
                target: self.target.clone(),
                reason: e.to_string(),
                code: code_of(&e),
                hint: hint_for(&e),
            }),
            Ok(Ok(c)) => Ok(c),
        }
    }

    /// Logs the first failure of an outage and the recovery after it, and the first refusal of
    /// each kind (see [`DbError::refusal`]); returns the result as is.
    pub fn observe<T>(&self, result: Result<T, DbError>) -> Result<T, DbError> {
        let mut outage = self.outage.lock().unwrap_or_else(|p| p.into_inner());
        match &result {
            Ok(_) => {
                self.refusals.settle_and_say("connecting");
                if let Some(since) = outage.take() {
                    info!(
                        target_db = %self.target,
                        down_for = %format!("{:.1}s", since.elapsed().as_secs_f64()),
                        "database reachable again"
                    );
                }
            }
            Err(e) if e.is_connectivity() => {
                if outage.is_none() {
                    *outage = Some(Instant::now());
                    error!(target_db = %self.target, error = %e, "database unreachable; retrying");
                }
            }
            Err(e) => {
                drop(outage);
                self.say_refused(e);
            }
        }
        result
    }

    /// Logs a refusal the first time of its kind: a lock wait at WARNING (someone holds the
    /// table), anything else at ERROR; the affected procedures retry with backoff meanwhile.
    fn say_refused(&self, e: &DbError) {
        let Some((what, code)) = e.refusal() else {
            return;
        };
        if !self.refusals.note(what, code) {
            return;
        }
        if e.is_lock_wait() {
            warn!(query = what, code, error = %e, "the database keeps a lock; retrying with backoff (said once until it works again)");
        } else {
            error!(query = what, code, error = %e, "the database refused the query; retrying with backoff (said once until it works again)");
        }
    }

    /// Reads what the daemon needs to know about the schema: the real length of
    /// `STATUS_PROCESS.notes` and whether the history table exists (said once at INFO when not).
    pub async fn prepare(&self) -> Result<(), DbError> {
        let mut conn = self.conn().await?;
        let len: Option<Option<u64>> = self
            .bounded(
                "reading the length of STATUS_PROCESS.notes",
                "SELECT CHARACTER_MAXIMUM_LENGTH FROM information_schema.COLUMNS \
                 WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'STATUS_PROCESS' AND COLUMN_NAME = 'notes'"
                    .first(&mut conn),
            )
            .await?;
        match len.flatten() {
            Some(n) => self.notes_len.store(
                usize::try_from(n).unwrap_or(DEFAULT_NOTES_LEN),
                Ordering::Relaxed,
            ),
            None => {
                warn!("STATUS_PROCESS.notes not found in information_schema; assuming VARCHAR(100)")
            }
        }
        let present: Option<i64> = self
            .bounded(
                "looking for the history table",
                "SELECT COUNT(*) FROM information_schema.TABLES \
                 WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ?"
                    .with((self.history_table.as_str(),))
                    .first(&mut conn),
            )
            .await?;
        let present = present.unwrap_or(0) > 0;
        self.history_present.store(present, Ordering::Relaxed);
        if !present && !self.history_checked.swap(true, Ordering::Relaxed) {
            info!(
                table = %self.history_table,
                "history table not found; restart history is kept in STATUS_PROCESS.notes and the log only (sql/setup.sql creates it)"
            );
        }
        self.history_checked.store(true, Ordering::Relaxed);
        Ok(())
    }

    /// Length of `STATUS_PROCESS.notes` in characters, as read by [`Db::prepare`].
    pub fn notes_len(&self) -> usize {
        self.notes_len.load(Ordering::Relaxed)
    }

    /// Ids of every process whose alarm is raised.
    pub async fn alarmed(&self) -> Result<Vec<i64>, DbError> {
        self.again_if_stale(|| async {
            let mut conn = self.conn().await?;
            self.bounded(
                "the sweep query",
                "SELECT process_id FROM STATUS_PROCESS WHERE alarma = 1 ORDER BY process_id"
                    .fetch(&mut conn),
            )
            .await
        })
        .await
    }

    /// Claims process `id` for one procedure; `None` when another session (another daemon)
    /// holds it.
    pub async fn claim(&self, id: i64) -> Result<Option<Claim>, DbError> {
        let name = format!("monitor_service:{:08x}:{id}", self.lock_space);
        self.again_if_stale(|| async {
            let mut conn = self.conn().await?;
            let got: Option<Option<i64>> = self
                .bounded(
                    "claiming the process (GET_LOCK)",
                    "SELECT GET_LOCK(?, 0)"
                        .with((name.as_str(),))
                        .first(&mut conn),
                )
                .await?;
            Ok((got.flatten() == Some(1)).then(|| {
                Claim::new(
                    conn,
                    name.clone(),
                    self.query_timeout,
                    self.refusals.clone(),
                )
            }))
        })
        .await
    }

    /// Runs `f` once more when it failed on a broken connection: a pooled connection can be
    /// dead after the server restarted, and the pool replaces it on the second try.
    async fn again_if_stale<T, F, Fut>(&self, f: F) -> Result<T, DbError>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<T, DbError>>,
    {
        match f().await {
            Err(DbError::Query { source, .. }) if source.is_fatal() => f().await,
            other => other,
        }
    }

    /// Number of processes in STATUS_PROCESS and of raised alarms.
    pub async fn counts(&self) -> Result<(u64, u64), DbError> {
        let mut conn = self.conn().await?;
        let row: Option<(u64, u64)> = self
            .bounded(
                "counting processes",
                "SELECT COUNT(*), CAST(COALESCE(SUM(alarma = 1), 0) AS UNSIGNED) FROM STATUS_PROCESS"
                    .first(&mut conn),
            )
            .await?;
        Ok(row.unwrap_or((0, 0)))
    }

    /// Writes the notes and leaves the alarm as it is.
    pub async fn set_notes(&self, id: i64, notes: &str) -> Result<(), DbError> {
        let notes = fit_notes(notes, self.notes_len());
        let mut conn = self.conn().await?;
        self.bounded(
            "writing the notes",
            "UPDATE STATUS_PROCESS SET notes = ? WHERE process_id = ?"
                .with((notes, id))
                .ignore(&mut conn),
        )
        .await
    }

    /// Appends one history row when the history table exists; a vanished table is said once.
    pub async fn record_history(&self, rec: &HistoryRecord) -> Result<(), DbError> {
        if !self.history_present.load(Ordering::Relaxed) {
            return Ok(());
        }
        let sql = format!(
            "INSERT INTO `{}` (process_id, process_name, started_at, finished_at, `trigger`, strategy, attempts, outcome, detail) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            self.history_table
        );
        let mut conn = self.conn().await?;
        let insert = sql.with((
            rec.process_id,
            fit_notes(&rec.process_name, 100),
            rec.started_at.format("%Y-%m-%d %H:%M:%S%.3f").to_string(),
            rec.finished_at.format("%Y-%m-%d %H:%M:%S%.3f").to_string(),
            rec.trigger,
            rec.strategy.clone(),
            rec.attempts,
            rec.outcome,
            fit_notes(&rec.detail, 1000),
        ));
        let result = self
            .bounded("writing the history row", insert.ignore(&mut conn))
            .await;
        if let Err(e) = &result {
            if e.server_code() == Some(1146) {
                self.history_present.store(false, Ordering::Relaxed);
                info!(table = %self.history_table, "history table is gone; history is no longer written");
                return Ok(());
            }
        }
        result
    }

    /// Checks each privilege the daemon uses with statements that change nothing.
    /// Returns one line per missing privilege, naming the GRANT that fixes it.
    pub async fn missing_privileges(&self) -> Result<Vec<String>, DbError> {
        let mut conn = self.conn().await?;
        let mut missing = Vec::new();
        let history_insert = format!(
            "INSERT INTO `{}` (process_id, started_at, finished_at, `trigger`, outcome) SELECT 0, NOW(), NOW(), 'manual', 'skipped' FROM DUAL WHERE 1 = 0",
            self.history_table
        );
        let checks: [(&str, String); 4] = [
            (
                "GRANT SELECT ON <db>.PROCESE",
                "SELECT process_id, process_name FROM PROCESE WHERE 1 = 0".into(),
            ),
            (
                "GRANT SELECT ON <db>.STATUS_PROCESS",
                "SELECT process_id, alarma, notes FROM STATUS_PROCESS WHERE 1 = 0".into(),
            ),
            (
                "GRANT UPDATE ON <db>.STATUS_PROCESS",
                "UPDATE STATUS_PROCESS SET alarma = alarma, notes = notes WHERE 1 = 0".into(),
            ),
            ("GRANT INSERT ON <db>.<history_table>", history_insert),
        ];
        for (i, (grant, sql)) in checks.iter().enumerate() {
            let checked = self
                .bounded("checking privileges", conn.query_drop(sql.as_str()))
                .await;
            match checked {
                Ok(()) => {}
                Err(e) if matches!(e.server_code(), Some(1142 | 1143 | 1044)) => {
                    missing.push(format!("missing privilege: {grant} ({e})"));
                }
                Err(e) if e.server_code() == Some(1146) && i == 3 => {
                    // The history table is optional.
                }
                Err(e) => return Err(e),
            }
        }
        Ok(missing)
    }

    /// Closes the pool's connections.
    pub async fn close(self) {
        let _ = self.pool.disconnect().await;
    }
}

fn fnv32(s: &str) -> u32 {
    s.bytes().fold(0x811c_9dc5, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

/// Connection options for `cfg`: the socket when set (or found for `localhost`, see
/// [`socket_of`]), else host:port; each session waits at most [`LOCK_WAIT_SECS`] for a lock.
pub fn connect_opts(cfg: &DatabaseConfig) -> OptsBuilder {
    let socket = socket_of(cfg);
    let opts = OptsBuilder::default()
        .user(Some(cfg.user.clone()))
        .pass(cfg.password.as_ref().map(|p| p.expose().to_string()))
        .db_name(Some(cfg.database.clone()))
        .tcp_keepalive(Some(Duration::from_secs(30)))
        .init(vec![format!(
            "SET SESSION lock_wait_timeout = {LOCK_WAIT_SECS}, innodb_lock_wait_timeout = {LOCK_WAIT_SECS}"
        )])
        // ssl_mode: `preferred` asks the server once here whether it offers TLS (a socket never).
        .ssl_opts(crate::tls::ssl_opts(cfg, socket.is_some()));
    match socket {
        Some(sock) => opts.socket(Some(sock.display().to_string())),
        None => opts
            .ip_or_hostname(cfg.host.clone())
            .tcp_port(cfg.port)
            .prefer_socket(false),
    }
}

/// The Unix socket `cfg` connects through: `[database] socket`, else the server's socket at a
/// usual path for `host = localhost` on the default port; `None` means TCP.
pub fn socket_of(cfg: &DatabaseConfig) -> Option<std::path::PathBuf> {
    let present = match (&cfg.socket, cfg.host.eq_ignore_ascii_case("localhost")) {
        (None, true) => socket::present(&socket::USUAL_SOCKETS),
        _ => Vec::new(),
    };
    socket::choose(cfg.socket.as_deref(), &cfg.host, cfg.port, &present)
}

/// Where `cfg` points, for messages (never the password).
pub fn target_of(cfg: &DatabaseConfig) -> String {
    match socket_of(cfg) {
        Some(sock) => format!("{} (socket)", sock.display()),
        None => format!("{}:{}", cfg.host, cfg.port),
    }
}

/// Makes a notes value safe for any column charset and STRICT mode: printable ASCII only
/// (anything else becomes `?`), at most `max` characters.
pub fn fit_notes(s: &str, max: usize) -> String {
    s.chars()
        .map(|c| {
            if c == ' ' || c.is_ascii_graphic() {
                c
            } else {
                '?'
            }
        })
        .take(max)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fit_notes_truncates_by_characters_and_replaces_non_ascii() {
        assert_eq!(fit_notes("abc", 100), "abc");
        assert_eq!(fit_notes(&"x".repeat(150), 100).len(), 100);
        assert_eq!(fit_notes("é\nb\0", 10), "??b?");
        assert_eq!(fit_notes("ab", 0), "");
    }
}
