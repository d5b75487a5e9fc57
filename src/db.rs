//! Database access: the sweep query, one process's row, the outcome writes and the history rows.
//!
//! All SQL is parameterised; the only identifier put into SQL text is the history table name,
//! which the config validated as `[A-Za-z0-9_$]{1,64}`. Connectivity problems are logged once
//! per outage (and once when the database is back) through [`Db::observe`].

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use mysql_async::prelude::{Query, Queryable, WithParams};
use mysql_async::{Conn, OptsBuilder, Pool, PoolConstraints, PoolOpts};
use tracing::{error, info, warn};

use crate::config::DatabaseConfig;

/// Length of `STATUS_PROCESS.notes` when information_schema does not tell (the schema's value).
pub const DEFAULT_NOTES_LEN: usize = 100;

/// What went wrong talking to the database.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("cannot reach the database at {target} within {timeout:?}; check [database] host/port/socket and that the server is running")]
    ConnectTimeout { target: String, timeout: Duration },
    #[error("cannot connect to the database at {target}: {reason}{hint}")]
    Connect {
        target: String,
        reason: String,
        hint: &'static str,
    },
    #[error("{what} failed: {source}{hint}")]
    Query {
        what: &'static str,
        source: mysql_async::Error,
        hint: &'static str,
    },
}

impl DbError {
    /// True when the error means the server could not be reached (as opposed to a refused query).
    pub fn is_connectivity(&self) -> bool {
        match self {
            DbError::ConnectTimeout { .. } | DbError::Connect { .. } => true,
            DbError::Query { source, .. } => source.is_fatal(),
        }
    }

    /// The server's error code, when the server answered with an error.
    pub fn server_code(&self) -> Option<u16> {
        match self {
            DbError::Query {
                source: mysql_async::Error::Server(e),
                ..
            } => Some(e.code),
            _ => None,
        }
    }
}

fn hint_for(e: &mysql_async::Error) -> &'static str {
    match e {
        mysql_async::Error::Server(s) => match s.code {
            1045 => "; check [database] user and password, and ssl_mode: a server with require_secure_transport or an account REQUIRE SSL refuses a plain connection this way (set ssl_mode = required or a verify_ mode, not disabled)",
            1044 | 1049 => "; check [database] database and that sql/setup.sql was loaded",
            1142 | 1143 | 1227 => {
                "; grant the daemon's account the privileges listed in sql/setup.sql"
            }
            1146 => "; load sql/setup.sql into the configured database",
            _ => crate::tls::hint(e),
        },
        _ => crate::tls::hint(e),
    }
}

fn query_err(what: &'static str) -> impl Fn(mysql_async::Error) -> DbError {
    move |source| DbError::Query {
        what,
        hint: hint_for(&source),
        source,
    }
}

/// One row of STATUS_PROCESS joined with its PROCESE name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessRow {
    pub alarma: i64,
    /// Raw bytes of `PROCESE.process_name`; `None` when there is no PROCESE row.
    pub name: Option<Vec<u8>>,
}

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

/// A process claimed with `GET_LOCK` on the connection it holds; [`Claim::release`] ends it
/// (and so does the connection's end, or its reset when it goes back to the pool).
pub struct Claim {
    conn: Option<Conn>,
    name: String,
}

impl Claim {
    /// The process's row, read on the claim's own connection (a locking read, see [`read_process`]).
    pub async fn process(&mut self, id: i64) -> Result<Option<ProcessRow>, DbError> {
        match self.conn.as_mut() {
            Some(conn) => read_process(conn, id).await,
            None => Ok(None),
        }
    }

    /// Releases the lock and returns the connection to the pool.
    pub async fn release(mut self) {
        if let Some(conn) = self.conn.take() {
            release_lock(conn, std::mem::take(&mut self.name)).await;
        }
    }
}

impl Drop for Claim {
    /// A claim dropped without [`Claim::release`] (a cancelled task) still releases its lock,
    /// before its connection can serve anything else.
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            let name = std::mem::take(&mut self.name);
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(release_lock(conn, name));
            }
        }
    }
}

async fn release_lock(mut conn: Conn, name: String) {
    if "DO RELEASE_LOCK(?)"
        .with((name.as_str(),))
        .ignore(&mut conn)
        .await
        .is_err()
    {
        // Closing the connection releases the lock for sure.
        let _ = conn.disconnect().await;
    }
}

/// The current row of one process with its name, or `None` when STATUS_PROCESS has no such id.
///
/// A locking read: the server sends a transaction's binlog events before its commit is
/// visible to plain reads, so a plain read right after a binlog trigger can still see the
/// old `alarma = 0`. The shared lock waits for the writer's commit and reads the result.
async fn read_process(conn: &mut Conn, id: i64) -> Result<Option<ProcessRow>, DbError> {
    let row: Option<(i64, Option<Vec<u8>>)> = "SELECT s.alarma, p.process_name FROM STATUS_PROCESS s \
         LEFT JOIN PROCESE p ON p.process_id = s.process_id WHERE s.process_id = ? LOCK IN SHARE MODE"
        .with((id,))
        .first(conn)
        .await
        .map_err(query_err("reading the process row"))?;
    Ok(row.map(|(alarma, name)| ProcessRow { alarma, name }))
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
        }
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
                hint: hint_for(&e),
            }),
            Ok(Ok(c)) => Ok(c),
        }
    }

    /// Logs the first failure of an outage and the recovery after it; returns the result as is.
    pub fn observe<T>(&self, result: Result<T, DbError>) -> Result<T, DbError> {
        let mut outage = self.outage.lock().unwrap_or_else(|p| p.into_inner());
        match &result {
            Ok(_) => {
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
            Err(_) => {}
        }
        result
    }

    /// Reads what the daemon needs to know about the schema: the real length of
    /// `STATUS_PROCESS.notes` and whether the history table exists (said once at INFO when not).
    pub async fn prepare(&self) -> Result<(), DbError> {
        let mut conn = self.conn().await?;
        let len: Option<Option<u64>> = "SELECT CHARACTER_MAXIMUM_LENGTH FROM information_schema.COLUMNS \
             WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'STATUS_PROCESS' AND COLUMN_NAME = 'notes'"
            .first(&mut conn)
            .await
            .map_err(query_err("reading the length of STATUS_PROCESS.notes"))?;
        match len.flatten() {
            Some(n) => self.notes_len.store(
                usize::try_from(n).unwrap_or(DEFAULT_NOTES_LEN),
                Ordering::Relaxed,
            ),
            None => {
                warn!("STATUS_PROCESS.notes not found in information_schema; assuming VARCHAR(100)")
            }
        }
        let present: Option<i64> = "SELECT COUNT(*) FROM information_schema.TABLES \
             WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ?"
            .with((self.history_table.as_str(),))
            .first(&mut conn)
            .await
            .map_err(query_err("looking for the history table"))?;
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
            "SELECT process_id FROM STATUS_PROCESS WHERE alarma = 1 ORDER BY process_id"
                .fetch(&mut conn)
                .await
                .map_err(query_err("the sweep query"))
        })
        .await
    }

    /// Claims process `id` for one procedure; `None` when another session (another daemon)
    /// holds it.
    pub async fn claim(&self, id: i64) -> Result<Option<Claim>, DbError> {
        let name = format!("monitor_service:{:08x}:{id}", self.lock_space);
        self.again_if_stale(|| async {
            let mut conn = self.conn().await?;
            let got: Option<Option<i64>> = "SELECT GET_LOCK(?, 0)"
                .with((name.as_str(),))
                .first(&mut conn)
                .await
                .map_err(query_err("claiming the process (GET_LOCK)"))?;
            Ok((got.flatten() == Some(1)).then(|| Claim {
                conn: Some(conn),
                name: name.clone(),
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
        let row: Option<(u64, u64)> =
            "SELECT COUNT(*), CAST(COALESCE(SUM(alarma = 1), 0) AS UNSIGNED) FROM STATUS_PROCESS"
                .first(&mut conn)
                .await
                .map_err(query_err("counting processes"))?;
        Ok(row.unwrap_or((0, 0)))
    }

    /// Clears the alarm if it is still raised and writes the notes; true when this call cleared it.
    pub async fn clear_alarm(&self, id: i64, notes: &str) -> Result<bool, DbError> {
        let notes = fit_notes(notes, self.notes_len());
        let mut conn = self.conn().await?;
        "UPDATE STATUS_PROCESS SET alarma = 0, notes = ? WHERE process_id = ? AND alarma = 1"
            .with((notes, id))
            .ignore(&mut conn)
            .await
            .map_err(query_err("clearing the alarm"))?;
        Ok(conn.affected_rows() > 0)
    }

    /// Writes the notes and leaves the alarm as it is.
    pub async fn set_notes(&self, id: i64, notes: &str) -> Result<(), DbError> {
        let notes = fit_notes(notes, self.notes_len());
        let mut conn = self.conn().await?;
        "UPDATE STATUS_PROCESS SET notes = ? WHERE process_id = ?"
            .with((notes, id))
            .ignore(&mut conn)
            .await
            .map_err(query_err("writing the notes"))
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
        let result = sql
            .with((
                rec.process_id,
                fit_notes(&rec.process_name, 100),
                rec.started_at.format("%Y-%m-%d %H:%M:%S%.3f").to_string(),
                rec.finished_at.format("%Y-%m-%d %H:%M:%S%.3f").to_string(),
                rec.trigger,
                rec.strategy.clone(),
                rec.attempts,
                rec.outcome,
                fit_notes(&rec.detail, 1000),
            ))
            .ignore(&mut conn)
            .await
            .map_err(query_err("writing the history row"));
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
            match conn.query_drop(sql.as_str()).await {
                Ok(()) => {}
                Err(mysql_async::Error::Server(e)) if matches!(e.code, 1142 | 1143 | 1044) => {
                    missing.push(format!("missing privilege: {grant} ({})", e.message));
                }
                Err(mysql_async::Error::Server(e)) if e.code == 1146 && i == 3 => {
                    // The history table is optional.
                }
                Err(e) => return Err(query_err("checking privileges")(e)),
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

/// Connection options for `cfg`: the socket when set, else host:port (never switching to a
/// socket on its own).
pub fn connect_opts(cfg: &DatabaseConfig) -> OptsBuilder {
    let opts = OptsBuilder::default()
        .user(Some(cfg.user.clone()))
        .pass(cfg.password.as_ref().map(|p| p.expose().to_string()))
        .db_name(Some(cfg.database.clone()))
        .tcp_keepalive(Some(Duration::from_secs(30)))
        // ssl_mode: `preferred` asks the server once here whether it offers TLS.
        .ssl_opts(crate::tls::ssl_opts(cfg));
    match &cfg.socket {
        Some(sock) => opts.socket(Some(sock.display().to_string())),
        None => opts
            .ip_or_hostname(cfg.host.clone())
            .tcp_port(cfg.port)
            .prefer_socket(false),
    }
}

/// Where `cfg` points, for messages (never the password).
pub fn target_of(cfg: &DatabaseConfig) -> String {
    match &cfg.socket {
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
