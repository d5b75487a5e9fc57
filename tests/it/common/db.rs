//! A database of its own for each test, on a real server with the binlog on.
//!
//! The server comes from `MONITOR_TEST_DB_URL` (`mysql://user[:pass]@host:port`,
//! optional `MONITOR_TEST_DB_SOCKET`); when it is unset, the first `TestDb` of
//! the test process runs `scripts/testdb.sh start` (a throwaway server of
//! `MONITOR_TESTDB_FLAVOR`, MariaDB by default, under `target/testdb`, reused by
//! later runs; `scripts/testdb.sh stop` ends it). Its account has a password, and
//! nothing here logs in as root or over the socket.
//! Each `TestDb` creates `msit_<pid>_<counter>_<rand>` with the schema part of
//! `sql/setup.sql` (everything before `-- @@end-of-schema`).

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mysql_async::prelude::*;
use mysql_async::{Conn, Opts, OptsBuilder, Pool};

/// Marker line in `sql/setup.sql` after the tables and the index.
const END_OF_SCHEMA: &str = "-- @@end-of-schema";
/// Database name used by `sql/setup.sql`, replaced by the test's own.
const DEFAULT_DB: &str = "v_process_monitor";

pub struct TestDb {
    /// The test's own database.
    pub name: String,
    /// URL of the server with `/name` appended.
    pub url: String,
    /// URL of the server without a database.
    pub server_url: String,
    pub host: String,
    pub port: u16,
    /// Unix socket of the server when known (the throwaway server's).
    pub socket: Option<PathBuf>,
    /// Account on the server.
    pub user: String,
    pub password: Option<String>,
    /// Pool on `url`.
    pub pool: Pool,
}

#[derive(Debug, Clone)]
struct Server {
    url: String,
    socket: Option<PathBuf>,
}

fn repo_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The server for this test process: from the environment, else started once.
fn server() -> &'static Server {
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER.get_or_init(|| {
        if let Ok(url) = std::env::var("MONITOR_TEST_DB_URL") {
            if !url.trim().is_empty() {
                let socket = std::env::var_os("MONITOR_TEST_DB_SOCKET")
                    .filter(|s| !s.is_empty())
                    .map(PathBuf::from);
                return Server {
                    url: url.trim().to_string(),
                    socket,
                };
            }
        }
        start_throwaway_server()
    })
}

fn start_throwaway_server() -> Server {
    let script = repo_dir().join("scripts/testdb.sh");
    let out = Command::new("bash")
        .arg(&script)
        .arg("start")
        .current_dir(repo_dir())
        .stderr(std::process::Stdio::inherit())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{} start failed ({}); stdout: {stdout}",
        script.display(),
        out.status
    );
    let mut url = None;
    let mut socket = None;
    for line in stdout.lines() {
        let Some(rest) = line.trim().strip_prefix("export ") else {
            continue;
        };
        let Some((key, value)) = rest.split_once('=') else {
            continue;
        };
        let value = value
            .trim()
            .trim_matches('\'')
            .trim_matches('"')
            .to_string();
        match key.trim() {
            "MONITOR_TEST_DB_URL" => url = Some(value),
            "MONITOR_TEST_DB_SOCKET" if !value.is_empty() => socket = Some(PathBuf::from(value)),
            _ => {}
        }
    }
    let url = url.unwrap_or_else(|| panic!("no MONITOR_TEST_DB_URL in: {stdout}"));
    Server { url, socket }
}

/// `mysql://u:p@h:p[/db][?q]` with the database replaced by `db`.
fn url_with_db(server_url: &str, db: &str) -> String {
    let (base, query) = match server_url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (server_url, None),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let base = match base[scheme_end..].find('/') {
        Some(i) => &base[..scheme_end + i],
        None => base,
    };
    match query {
        Some(q) => format!("{base}/{db}?{q}"),
        None => format!("{base}/{db}"),
    }
}

fn unique_name() -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let mut h = RandomState::new().build_hasher();
    h.write_u32(nanos);
    h.write_u32(n);
    format!(
        "msit_{}_{}_{:06x}",
        std::process::id(),
        n,
        h.finish() & 0xff_ffff
    )
}

/// The statements of `sql/setup.sql` before `-- @@end-of-schema`, with the
/// database name replaced. Statements end with `;` at the end of a line;
/// comment lines are skipped.
pub fn schema_statements(db_name: &str) -> Vec<String> {
    let path = repo_dir().join("sql/setup.sql");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let schema = match text.find(END_OF_SCHEMA) {
        Some(i) => &text[..i],
        None => panic!("{} has no `{END_OF_SCHEMA}` line", path.display()),
    };
    let mut out = Vec::new();
    let mut cur = String::new();
    for line in schema.lines() {
        let t = line.trim();
        if t.is_empty() || t.starts_with("--") || t.starts_with('#') {
            continue;
        }
        cur.push_str(line);
        cur.push('\n');
        if t.ends_with(';') {
            let stmt = cur.trim().trim_end_matches(';').trim().to_string();
            out.push(stmt.replace(DEFAULT_DB, db_name));
            cur.clear();
        }
    }
    assert!(
        cur.trim().is_empty(),
        "{}: unterminated statement before `{END_OF_SCHEMA}`: {cur}",
        path.display()
    );
    out
}

impl TestDb {
    /// Creates a fresh database with the schema on the test server.
    pub async fn new() -> TestDb {
        Self::create(server().clone()).await
    }

    /// Creates a fresh database with the schema on the server at `url`.
    pub async fn on_server(url: &str, socket: Option<PathBuf>) -> TestDb {
        Self::create(Server {
            url: url.to_string(),
            socket,
        })
        .await
    }

    async fn create(server: Server) -> TestDb {
        let opts = Opts::from_url(&server.url)
            .unwrap_or_else(|e| panic!("bad MONITOR_TEST_DB_URL {:?}: {e}", server.url));
        let host = opts.ip_or_hostname().to_string();
        let port = opts.tcp_port();
        let user = opts.user().unwrap_or("root").to_string();
        let password = opts.pass().map(str::to_string);
        let name = unique_name();

        let mut conn = Conn::new(opts.clone())
            .await
            .unwrap_or_else(|e| panic!("cannot connect to {}: {e}", server.url));
        for stmt in schema_statements(&name) {
            conn.query_drop(&stmt)
                .await
                .unwrap_or_else(|e| panic!("schema statement failed: {e}\n{stmt}"));
        }
        let _ = conn.disconnect().await;

        let url = url_with_db(&server.url, &name);
        let pool = Pool::new(OptsBuilder::from_opts(opts).db_name(Some(name.clone())));
        TestDb {
            name,
            url,
            server_url: server.url,
            host,
            port,
            socket: server.socket,
            user,
            password,
            pool,
        }
    }

    async fn conn(&self) -> Conn {
        self.pool
            .get_conn()
            .await
            .unwrap_or_else(|e| panic!("cannot connect to {}: {e}", self.url))
    }

    /// Runs one statement in the test's database; panics on failure.
    pub async fn exec(&self, sql: &str) {
        let mut conn = self.conn().await;
        if let Err(e) = conn.query_drop(sql).await {
            panic!("SQL failed in {}: {e}\n{sql}", self.name);
        }
    }

    /// Adds a process to PROCESE and its STATUS_PROCESS row (alarma 0).
    pub async fn add_process(&self, id: i64, name: &str) {
        let mut conn = self.conn().await;
        conn.exec_drop(
            "INSERT INTO PROCESE (process_id, process_name) VALUES (?, ?)",
            (id, name),
        )
        .await
        .unwrap_or_else(|e| panic!("insert PROCESE {id} {name}: {e}"));
        conn.exec_drop(
            "INSERT INTO STATUS_PROCESS (process_id, alarma) VALUES (?, 0)",
            (id,),
        )
        .await
        .unwrap_or_else(|e| panic!("insert STATUS_PROCESS {id}: {e}"));
    }

    /// Raises the alarm of a process.
    pub async fn set_alarm(&self, id: i64) {
        let mut conn = self.conn().await;
        conn.exec_drop(
            "UPDATE STATUS_PROCESS SET alarma = 1 WHERE process_id = ?",
            (id,),
        )
        .await
        .unwrap_or_else(|e| panic!("set alarm {id}: {e}"));
    }

    /// `(alarma, notes)` of a process; panics when the row is missing.
    pub async fn row(&self, id: i64) -> (i64, Option<String>) {
        let mut conn = self.conn().await;
        let row: Option<(i64, Option<String>)> = conn
            .exec_first(
                "SELECT alarma, notes FROM STATUS_PROCESS WHERE process_id = ?",
                (id,),
            )
            .await
            .unwrap_or_else(|e| panic!("read STATUS_PROCESS {id}: {e}"));
        row.unwrap_or_else(|| panic!("no STATUS_PROCESS row {id} in {}", self.name))
    }

    /// Raises alarm `id` and asserts it is handled within a second (the tests that call this
    /// put the sweep far away: only the binlog can be that fast).
    pub async fn handled_by_binlog(&self, id: i64) {
        let t = Instant::now();
        self.set_alarm(id).await;
        assert!(
            self.wait_cleared(id, Duration::from_secs(5)).await,
            "alarm {id} never cleared"
        );
        assert!(
            t.elapsed() < Duration::from_secs(1),
            "alarm {id} took {:?}: the binlog did not see it",
            t.elapsed()
        );
    }

    /// Waits until the alarm of a process is 0; false on timeout.
    pub async fn wait_cleared(&self, id: i64, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.row(id).await.0 == 0 {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// First column of every row of a query, as strings (NULL as "NULL").
    pub async fn query_strings(&self, sql: &str) -> Vec<String> {
        let mut conn = self.conn().await;
        let rows: Vec<mysql_async::Row> = conn
            .query(sql)
            .await
            .unwrap_or_else(|e| panic!("query failed in {}: {e}\n{sql}", self.name));
        rows.into_iter()
            .map(|r| match r.get_opt::<mysql_async::Value, usize>(0) {
                Some(Ok(mysql_async::Value::NULL)) | None => "NULL".to_string(),
                Some(Ok(mysql_async::Value::Bytes(b))) => String::from_utf8_lossy(&b).into_owned(),
                Some(Ok(v)) => v.as_sql(true),
                Some(Err(e)) => panic!("{e}"),
            })
            .collect()
    }

    /// The server's current binlog file (first column of `SHOW BINARY LOG STATUS` on MySQL
    /// 8.2+, of `SHOW MASTER STATUS` on MariaDB and older MySQL).
    pub async fn binlog_status(&self) -> Vec<String> {
        let mut conn = self.conn().await;
        let rows: Vec<mysql_async::Row> = match conn.query("SHOW BINARY LOG STATUS").await {
            Ok(rows) => rows,
            Err(_) => conn
                .query("SHOW MASTER STATUS")
                .await
                .unwrap_or_else(|e| panic!("binlog status in {}: {e}", self.name)),
        };
        rows.into_iter()
            .map(|r| r.get::<String, usize>(0).unwrap_or_default())
            .collect()
    }

    /// Drops the database and closes the pool (best effort).
    pub async fn drop_db(self) {
        if let Ok(mut conn) = self.pool.get_conn().await {
            let _ = conn
                .query_drop(format!("DROP DATABASE IF EXISTS `{}`", self.name))
                .await;
        }
        let _ = self.pool.disconnect().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_with_db_replaces_path_and_keeps_query() {
        assert_eq!(
            url_with_db("mysql://root@127.0.0.1:3307", "x"),
            "mysql://root@127.0.0.1:3307/x"
        );
        assert_eq!(
            url_with_db("mysql://u:p@h:1/old?prefer_socket=false", "x"),
            "mysql://u:p@h:1/x?prefer_socket=false"
        );
    }

    #[test]
    fn schema_has_the_tables_and_no_samples() {
        let stmts = schema_statements("msit_x");
        assert!(stmts[0].contains("CREATE DATABASE IF NOT EXISTS msit_x"));
        assert!(stmts.iter().any(|s| s.contains("STATUS_PROCESS")));
        assert!(stmts.iter().all(|s| !s.contains("INSERT")));
        assert!(stmts.iter().all(|s| !s.contains(DEFAULT_DB)));
    }
}
