//! Binlog source: follows the server's binary log as a replica and decodes the row events of
//! `<database>.STATUS_PROCESS` into [`RowChange`]s. It only decodes; what a change means is
//! decided by [`crate::pipeline::alarm_raised`].
//!
//! Also here: the start-up readiness check (log_bin, ROW format, privileges) with the fix for
//! each problem, the saved position (file:pos at transaction ends, atomic writes), reconnects
//! with backoff and jitter, a heartbeat with an idle timeout, and the server_id derivation.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use backon::{BackoffBuilder, ExponentialBuilder};
use futures_util::StreamExt;
use mysql_async::binlog::events::{EventData, RowsEventData};
use mysql_async::binlog::row::BinlogRow;
use mysql_async::binlog::value::BinlogValue;
use mysql_async::prelude::{Query, Queryable, WithParams};
use mysql_async::{BinlogStreamRequest, Conn, Value};
use tokio::sync::{mpsc, Notify};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use super::{Trigger, TriggerSource};
use crate::config::DatabaseConfig;
use crate::db;
use crate::state::StateDir;

/// The table whose row events are followed.
pub const TABLE: &str = "STATUS_PROCESS";
/// Name of the position file in `state_dir`.
pub const POSITION_FILE: &str = "binlog_position";
/// Heartbeat the server is asked to send when the log is idle.
pub const HEARTBEAT: Duration = Duration::from_secs(1);
/// No event (or heartbeat) for this long means the connection is dead.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(3);
/// The position is saved at most this often while nothing relevant happens.
const SAVE_EVERY: Duration = Duration::from_secs(1);

/// MariaDB's GTID event type.
const MARIADB_GTID_EVENT: u8 = 162;

/// A place in the binary log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    pub file: String,
    pub pos: u64,
    /// Last GTID seen (MariaDB `domain-server-seq`, MySQL `uuid:gno`), for status only.
    pub gtid: Option<String>,
}

impl std::fmt::Display for Position {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.file, self.pos)
    }
}

impl Position {
    /// `file pos [gtid]` on one line.
    pub fn to_text(&self) -> String {
        match &self.gtid {
            Some(g) => format!("{} {} {g}\n", self.file, self.pos),
            None => format!("{} {}\n", self.file, self.pos),
        }
    }

    /// Reads what [`Position::to_text`] wrote; `None` when it is not that.
    pub fn from_text(text: &str) -> Option<Position> {
        let mut f = text.split_whitespace();
        let file = f.next()?.to_string();
        let pos = f.next()?.parse().ok()?;
        let gtid = f.next().map(str::to_string);
        if f.next().is_some() || !valid_file_name(&file) {
            return None;
        }
        Some(Position { file, pos, gtid })
    }
}

fn valid_file_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

/// Which server family (they differ in statements and GTIDs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    MariaDb,
    MySql,
}

/// What the readiness check found.
#[derive(Debug, Clone)]
pub struct Readiness {
    pub flavor: Flavor,
    /// The current end of the log, when it could be read.
    pub position: Option<Position>,
    /// Binlog files the server still has (empty when it could not be listed).
    pub files: Vec<String>,
    /// Each problem with its fix; empty when the binlog can be followed.
    pub problems: Vec<String>,
}

impl Readiness {
    pub fn ready(&self) -> bool {
        self.problems.is_empty() && self.position.is_some()
    }
}

/// Checks that the server can serve the binlog to this account: log_bin on, ROW format,
/// REPLICATION SLAVE and BINLOG MONITOR / REPLICATION CLIENT. Each problem names its fix.
pub async fn readiness(conn: &mut Conn, user: &str) -> Result<Readiness, mysql_async::Error> {
    let version: Option<String> = "SELECT VERSION()".first(&mut *conn).await?;
    let flavor = if version.unwrap_or_default().contains("MariaDB") {
        Flavor::MariaDb
    } else {
        Flavor::MySql
    };
    let vars: Option<(i64, String, String)> =
        "SELECT @@GLOBAL.log_bin, @@GLOBAL.binlog_format, @@GLOBAL.binlog_row_image"
            .first(&mut *conn)
            .await?;
    let (log_bin, format, _image) = vars.unwrap_or((0, String::new(), String::new()));
    let mut problems = Vec::new();
    if log_bin != 1 {
        problems.push(
            "the server's binary log is off: add `log_bin = mysql-bin` and `server_id = 1` under [mysqld] in my.cnf and restart the server"
                .to_string(),
        );
    }
    if !format.eq_ignore_ascii_case("ROW") {
        problems.push(format!(
            "binlog_format is {format}, not ROW (alarms would arrive as SQL text only): run `SET GLOBAL binlog_format = 'ROW'` and add `binlog_format = ROW` under [mysqld] in my.cnf"
        ));
    }
    let monitor_grant = match flavor {
        Flavor::MariaDb => "BINLOG MONITOR",
        Flavor::MySql => "REPLICATION CLIENT",
    };
    let mut position = None;
    let mut files = Vec::new();
    if log_bin == 1 {
        match current_position(conn).await {
            Ok(p) => position = p,
            Err(mysql_async::Error::Server(e)) if matches!(e.code, 1227 | 1142 | 1044) => {
                problems.push(format!(
                    "the account lacks {monitor_grant} (needed to read the binlog position): run `GRANT {monitor_grant} ON *.* TO '{user}'@'<host>'`"
                ));
            }
            Err(e) => return Err(e),
        }
        if position.is_some() {
            files = binlog_files(conn).await.unwrap_or_default();
        }
    }
    let grants: Vec<String> = "SHOW GRANTS".fetch(&mut *conn).await.unwrap_or_default();
    let can_replicate = grants.iter().any(|g| {
        let g = g.to_ascii_uppercase();
        g.contains("REPLICATION SLAVE")
            || g.contains("REPLICATION REPLICA")
            || g.starts_with("GRANT ALL PRIVILEGES ON *.*")
    });
    if !can_replicate {
        problems.push(format!(
            "the account lacks REPLICATION SLAVE (needed to follow the binlog): run `GRANT REPLICATION SLAVE ON *.* TO '{user}'@'<host>'`"
        ));
    }
    Ok(Readiness {
        flavor,
        position,
        files,
        problems,
    })
}

/// Connects and runs [`readiness`]: the readiness when the binlog can be followed from a
/// known position, else every problem with its fix (one entry when the check itself failed).
pub async fn check(db: &db::Db, user: &str) -> Result<Readiness, Vec<String>> {
    let readiness = match db.conn().await {
        Ok(mut conn) => readiness(&mut conn, user).await.map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    match readiness {
        Ok(r) if r.ready() => Ok(r),
        Ok(r) if r.problems.is_empty() => Err(vec!["the server reports no binlog position".into()]),
        Ok(r) => Err(r.problems),
        Err(e) => Err(vec![format!("cannot check the binlog settings: {e}")]),
    }
}

/// The current end of the log (`SHOW MASTER STATUS`, or MySQL 8.4's `SHOW BINARY LOG STATUS`).
pub async fn current_position(conn: &mut Conn) -> Result<Option<Position>, mysql_async::Error> {
    let row: Option<mysql_async::Row> = match "SHOW MASTER STATUS".first(&mut *conn).await {
        Err(mysql_async::Error::Server(e)) if e.code == 1064 => {
            "SHOW BINARY LOG STATUS".first(&mut *conn).await?
        }
        other => other?,
    };
    Ok(row.and_then(|r| {
        let file: String = r.get_opt(0)?.ok()?;
        let pos: u64 = r.get_opt(1)?.ok()?;
        Some(Position {
            file,
            pos,
            gtid: None,
        })
    }))
}

/// Names of the binlog files the server still has.
pub async fn binlog_files(conn: &mut Conn) -> Result<Vec<String>, mysql_async::Error> {
    let rows: Vec<mysql_async::Row> = "SHOW BINARY LOGS".fetch(&mut *conn).await?;
    Ok(rows
        .into_iter()
        .filter_map(|r| r.get_opt::<String, usize>(0).and_then(Result::ok))
        .collect())
}

/// A replica id derived from the host name (FNV-1a), in 2..=4294967295: stable for a host,
/// different between hosts, and never the 1 most primaries use.
pub fn derive_server_id(hostname: &str) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in hostname.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h.max(2)
}

/// The configured server_id, or the one derived from this host's name.
pub fn server_id(configured: Option<u32>) -> u32 {
    configured.unwrap_or_else(|| {
        let host = nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok())
            .unwrap_or_default();
        derive_server_id(&host)
    })
}

/// What kind of row event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowKind {
    Insert,
    Update,
    Delete,
}

/// The columns a row image holds (all of them with FULL images; with MINIMAL only some),
/// by name.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RowImage {
    pub columns: Vec<(String, Value)>,
}

impl RowImage {
    /// The value of a column, when the image has it.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.columns
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    /// A column's value as an integer, when the image has it and it is one.
    pub fn int(&self, name: &str) -> Option<i64> {
        match self.get(name)? {
            Value::Int(i) => Some(*i),
            Value::UInt(u) => i64::try_from(*u).ok(),
            Value::Bytes(b) => std::str::from_utf8(b).ok()?.trim().parse().ok(),
            _ => None,
        }
    }
}

/// One row changed in STATUS_PROCESS.
#[derive(Debug, Clone, PartialEq)]
pub struct RowChange {
    pub kind: RowKind,
    pub before: Option<RowImage>,
    pub after: Option<RowImage>,
}

/// Decodes a binlog row into named columns. Columns come from the event by their position in
/// the table (`@N` when the event carries no names), named from `names` (information_schema).
fn decode_row(row: BinlogRow, names: &[String]) -> RowImage {
    let cols: Vec<String> = row
        .columns_ref()
        .iter()
        .map(|c| {
            let n = c.name_str();
            match n.strip_prefix('@').and_then(|i| i.parse::<usize>().ok()) {
                Some(i) => names.get(i).cloned().unwrap_or_else(|| n.to_string()),
                None => n.to_string(),
            }
        })
        .collect();
    let values = row.unwrap();
    RowImage {
        columns: cols
            .into_iter()
            .zip(values)
            .filter_map(|(name, v)| match v {
                BinlogValue::Value(v) => Some((name, v)),
                _ => None,
            })
            .collect(),
    }
}

/// A binlog file name from a ROTATE event. The artificial ROTATE at the start of a stream
/// arrives before the format description, so its checksum bytes can be glued to the name:
/// when the name starts with the file that was asked for, that file is meant.
pub fn rotate_name(raw: &[u8], requested: &str, artificial: bool) -> String {
    if artificial && raw.starts_with(requested.as_bytes()) && !requested.is_empty() {
        return requested.to_string();
    }
    let end = raw
        .iter()
        .position(|b| !(b.is_ascii_alphanumeric() || b"._-".contains(b)))
        .unwrap_or(raw.len());
    String::from_utf8_lossy(&raw[..end]).into_owned()
}

/// Live facts about the binlog source, for status lines.
#[derive(Debug, Clone, Default)]
pub struct Status {
    pub connected: bool,
    pub position: Option<Position>,
    /// Seconds between the last event's timestamp and its arrival.
    pub lag_seconds: Option<i64>,
    pub relevant_events: u64,
}

impl Status {
    /// e.g. `binlog at mysql-bin.000004:1234 (lag 0s)` or `binlog disconnected`.
    pub fn summary(&self) -> String {
        match (&self.position, self.connected) {
            (Some(p), true) => format!("binlog at {p} (lag {}s)", self.lag_seconds.unwrap_or(0)),
            (Some(p), false) => format!("binlog disconnected (last at {p})"),
            (None, _) => "binlog connecting".to_string(),
        }
    }
}

/// Why the binlog source stopped for good.
#[derive(Debug, thiserror::Error)]
pub enum BinlogFatal {
    #[error("another replica is connected to the server with server_id {server_id} ({message}); set [monitor] server_id to a value no other replica or monitor_service uses")]
    ServerIdClash { server_id: u32, message: String },
}

/// Where the stream starts and how to talk to the server.
pub struct BinlogSource {
    pub db: DatabaseConfig,
    pub server_id: u32,
    pub flavor: Flavor,
    pub state: StateDir,
    pub status: Arc<Mutex<Status>>,
}

/// Why one connection ended.
enum End {
    Cancelled,
    Lost(String),
    Purged(String),
    Fatal(BinlogFatal),
}

/// The column names of `STATUS_PROCESS`, in table order.
async fn column_names(conn: &mut Conn) -> Result<Vec<String>, mysql_async::Error> {
    "SELECT COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION"
        .with((TABLE,))
        .fetch(&mut *conn)
        .await
}

impl BinlogSource {
    fn set_status(&self, f: impl FnOnce(&mut Status)) {
        f(&mut self.status.lock().unwrap_or_else(|p| p.into_inner()));
    }

    /// The saved position, if any and readable (a corrupt file is reported and moved aside).
    pub fn saved_position(&self) -> Option<Position> {
        match self.state.read(POSITION_FILE) {
            Ok(Some(text)) => match Position::from_text(&text) {
                Some(p) => Some(p),
                None => {
                    let moved = self.state.quarantine(POSITION_FILE);
                    warn!(file = %self.state.path(POSITION_FILE).display(), moved_to = ?moved.ok(), "corrupt binlog position file; moved aside, starting at the current end");
                    None
                }
            },
            Ok(None) => None,
            Err(e) => {
                warn!(file = %self.state.path(POSITION_FILE).display(), error = %e, "cannot read the binlog position; starting at the current end");
                None
            }
        }
    }

    fn save(&self, p: &Position) {
        if let Err(e) = self.state.write(POSITION_FILE, &p.to_text()) {
            warn!(file = %self.state.path(POSITION_FILE).display(), error = %e, "cannot save the binlog position");
        }
    }

    /// Follows the binlog from `start` until `token` is cancelled, reconnecting with backoff;
    /// after every (re)connect the sweep is kicked so nothing set while disconnected is lost.
    /// Returns an error only when following it cannot work (server_id clash).
    pub async fn run(
        self,
        start: Position,
        tx: mpsc::Sender<Trigger>,
        kick: Arc<Notify>,
        token: CancellationToken,
    ) -> Result<(), BinlogFatal> {
        let backoff_builder = ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(200))
            .with_max_delay(Duration::from_secs(30))
            .with_jitter()
            .without_max_times();
        let mut backoff = backoff_builder.build();
        let mut pos = start;
        // The start-up sweep ran after `start` was taken; later connects each need a sweep.
        let mut first = true;
        let mut down = false;
        loop {
            let began = Instant::now();
            let end = self
                .follow(&mut pos, &tx, (!first).then_some(&*kick), &token)
                .await;
            first = false;
            // A connection that got through ends the outage: its loss is a new one.
            let was_connected = std::mem::take(
                &mut self
                    .status
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .connected,
            );
            if was_connected {
                down = false;
            }
            self.save(&pos);
            let reason = match end {
                End::Cancelled => return Ok(()),
                End::Fatal(f) => return Err(f),
                End::Purged(msg) => {
                    warn!(position = %pos, reason = %msg, "the saved binlog position is no longer on the server; starting at the current end (the sweep catches what was missed)");
                    pos.file.clear();
                    "position purged".to_string()
                }
                End::Lost(msg) => msg,
            };
            if began.elapsed() > Duration::from_secs(10) {
                backoff = backoff_builder.build();
            }
            let delay = backoff.next().unwrap_or(Duration::from_secs(30));
            let retry_in = format!("{:.1}s", delay.as_secs_f64());
            // Once per outage at WARNING; the retries that fail during it at DEBUG.
            if !down {
                warn!(reason = %reason, position = %pos, retry_in = %retry_in, "binlog connection lost; reconnecting");
            } else {
                debug!(reason = %reason, position = %pos, retry_in = %retry_in, "binlog still unreachable; retrying");
            }
            down = true;
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = token.cancelled() => return Ok(()),
            }
        }
    }

    /// One connection: connect, request the stream at `pos`, decode until it ends.
    async fn follow(
        &self,
        pos: &mut Position,
        tx: &mpsc::Sender<Trigger>,
        kick: Option<&Notify>,
        token: &CancellationToken,
    ) -> End {
        let opts = crate::tls::connect_opts(&self.db).await;
        let mut conn = match tokio::time::timeout(self.db.connect_timeout, Conn::new(opts)).await {
            Err(_) => {
                return End::Lost(format!(
                    "no connection within {:?}",
                    self.db.connect_timeout
                ))
            }
            Ok(Err(e)) => return End::Lost(format!("{e}{}", crate::tls::hint(&e))),
            Ok(Ok(c)) => c,
        };
        let mut names = match column_names(&mut conn).await {
            Ok(n) => n,
            Err(e) => return End::Lost(format!("reading the columns of {TABLE}: {e}")),
        };
        if pos.file.is_empty() {
            match current_position(&mut conn).await {
                Ok(Some(p)) => *pos = p,
                Ok(None) => return End::Lost("the server reports no binlog position".into()),
                Err(e) => return End::Lost(format!("reading the binlog position: {e}")),
            }
        }
        let mut setup = vec![format!(
            "SET @master_heartbeat_period = {}",
            HEARTBEAT.as_nanos()
        )];
        if self.flavor == Flavor::MariaDb {
            setup.push("SET @mariadb_slave_capability = 4".to_string());
        }
        for sql in setup {
            if let Err(e) = conn.query_drop(sql).await {
                return End::Lost(e.to_string());
            }
        }
        let requested = pos.file.clone();
        let request = BinlogStreamRequest::new(self.server_id)
            .with_filename(requested.as_bytes())
            .with_pos(pos.pos);
        let mut stream = match conn.get_binlog_stream(request).await {
            Ok(s) => s,
            Err(e) => return classify(e, self.server_id),
        };
        info!(position = %pos, server_id = self.server_id, source = %db::target_of(&self.db), "binlog connected");
        self.save(pos);
        self.set_status(|s| {
            s.connected = true;
            s.position = Some(pos.clone());
        });
        if let Some(kick) = kick {
            kick.notify_one();
        }

        let mut table_id: Option<u64> = None;
        let mut mapped_ids: HashSet<u64> = HashSet::new();
        let mut last_save = Instant::now();
        let mut handled_since_save = false;
        loop {
            let next = tokio::select! {
                n = tokio::time::timeout(IDLE_TIMEOUT, stream.next()) => n,
                _ = token.cancelled() => return End::Cancelled,
            };
            let event = match next {
                Err(_) => {
                    return End::Lost(format!(
                        "no event or heartbeat for {}s",
                        IDLE_TIMEOUT.as_secs()
                    ))
                }
                Ok(None) => return End::Lost("the server ended the binlog stream".into()),
                Ok(Some(Err(e))) => return classify(e, self.server_id),
                Ok(Some(Ok(ev))) => ev,
            };
            let header = event.header();
            if header.event_type_raw() == MARIADB_GTID_EVENT {
                if let Some(g) = mariadb_gtid(event.data(), header.server_id()) {
                    pos.gtid = Some(g);
                }
                continue;
            }
            let data = match event.read_data() {
                Ok(Some(d)) => d,
                Ok(None) => continue,
                Err(e) => return End::Lost(format!("undecodable binlog event: {e}")),
            };
            match data {
                EventData::RotateEvent(r) => {
                    let artificial = header.log_pos() == 0;
                    pos.file = rotate_name(r.name_raw(), &requested, artificial);
                    pos.pos = r.position();
                    debug!(position = %pos, "binlog rotate");
                }
                EventData::TableMapEvent(t)
                    if t.table_name() == TABLE
                        && t.database_name() == self.db.database.as_str() =>
                {
                    let id = t.table_id();
                    // A new table id (DDL changed the table) or a column count that does not
                    // match: read the names again.
                    if !mapped_ids.contains(&id) || t.columns_count() as usize != names.len() {
                        let opts = crate::tls::connect_opts(&self.db).await;
                        if let Ok(mut c) = Conn::new(opts).await {
                            if let Ok(n) = column_names(&mut c).await {
                                names = n;
                            }
                            let _ = c.disconnect().await;
                        }
                        mapped_ids.insert(id);
                        debug!(table_id = id, columns = ?names, "STATUS_PROCESS columns mapped");
                    }
                    table_id = Some(id);
                }
                EventData::RowsEvent(rows) if Some(rows.table_id()) == table_id => {
                    let Some(tme) = stream.get_tme(rows.table_id()) else {
                        continue;
                    };
                    let kind =
                        match &rows {
                            RowsEventData::WriteRowsEventV1(_)
                            | RowsEventData::WriteRowsEvent(_) => RowKind::Insert,
                            RowsEventData::DeleteRowsEventV1(_)
                            | RowsEventData::DeleteRowsEvent(_) => RowKind::Delete,
                            _ => RowKind::Update,
                        };
                    let mut triggers = Vec::new();
                    for row in rows.rows(tme) {
                        let (before, after) = match row {
                            Ok(r) => r,
                            Err(e) => {
                                error!(error = %e, "undecodable STATUS_PROCESS row in the binlog; the sweep will catch its alarm");
                                continue;
                            }
                        };
                        let change = RowChange {
                            kind,
                            before: before.map(|r| decode_row(r, &names)),
                            after: after.map(|r| decode_row(r, &names)),
                        };
                        if let Some(id) = crate::pipeline::alarm_raised(&change) {
                            triggers.push(Trigger {
                                process_id: id,
                                source: TriggerSource::Binlog,
                            });
                        }
                    }
                    let now = chrono::Utc::now().timestamp();
                    self.set_status(|s| {
                        s.relevant_events += 1;
                        s.lag_seconds = Some(now - i64::from(header.timestamp()));
                    });
                    for t in triggers {
                        debug!(process_id = t.process_id, "binlog: alarm raised");
                        handled_since_save = true;
                        if tx.send(t).await.is_err() {
                            return End::Cancelled;
                        }
                    }
                }
                EventData::XidEvent(_) => {
                    pos.pos = u64::from(header.log_pos());
                    if handled_since_save || last_save.elapsed() >= SAVE_EVERY {
                        self.save(pos);
                        self.set_status(|s| s.position = Some(pos.clone()));
                        last_save = Instant::now();
                        handled_since_save = false;
                    }
                }
                EventData::QueryEvent(q) => {
                    if header.log_pos() != 0 {
                        pos.pos = u64::from(header.log_pos());
                    }
                    let sql = q.query();
                    if sql.to_ascii_uppercase().contains("STATUS_PROCESS")
                        && !sql.eq_ignore_ascii_case("BEGIN")
                    {
                        // DDL on the table: map the columns again at the next TABLE_MAP.
                        mapped_ids.clear();
                    }
                }
                EventData::GtidEvent(g) => {
                    pos.gtid = Some(format!("{}:{}", uuid_text(&g.sid()), g.gno()));
                }
                _ => {}
            }
        }
    }
}

/// Sorts a stream error into lost (retry), purged (start at the end) or fatal.
fn classify(e: mysql_async::Error, server_id: u32) -> End {
    if let mysql_async::Error::Server(s) = &e {
        let msg = s.message.to_ascii_lowercase();
        if s.code == 4052 || (s.code == 1236 && msg.contains("same server")) {
            return End::Fatal(BinlogFatal::ServerIdClash {
                server_id,
                message: s.message.clone(),
            });
        }
        if s.code == 1236 {
            return End::Purged(s.message.clone());
        }
        if s.code == 1045 {
            return End::Lost(format!(
                "{e} (registering as a replica needs REPLICATION SLAVE: `GRANT REPLICATION SLAVE ON *.* TO ...`)"
            ));
        }
    }
    End::Lost(e.to_string())
}

/// `domain-server-seq` from a MariaDB GTID event body (seq_no u64, domain_id u32, little endian).
fn mariadb_gtid(data: &[u8], server_id: u32) -> Option<String> {
    let seq = u64::from_le_bytes(data.get(0..8)?.try_into().ok()?);
    let domain = u32::from_le_bytes(data.get(8..12)?.try_into().ok()?);
    Some(format!("{domain}-{server_id}-{seq}"))
}

fn uuid_text(sid: &[u8; 16]) -> String {
    let h: String = sid.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn position_text_round_trip_and_rejects_junk() {
        let p = Position {
            file: "mysql-bin.000004".into(),
            pos: 1234,
            gtid: Some("0-1-42".into()),
        };
        assert_eq!(Position::from_text(&p.to_text()), Some(p.clone()));
        let q = Position { gtid: None, ..p };
        assert_eq!(Position::from_text(&q.to_text()), Some(q));
        for junk in ["", "mysql-bin.000004", "f x", "a/b 4", "f 1 g extra"] {
            assert_eq!(Position::from_text(junk), None, "{junk:?}");
        }
    }

    #[test]
    fn rotate_name_strips_glued_checksum_bytes() {
        let mut raw = b"mysql-bin.000004".to_vec();
        raw.extend_from_slice(&[0x31, 0x9a, 0x00, 0x7f]);
        assert_eq!(
            rotate_name(&raw, "mysql-bin.000004", true),
            "mysql-bin.000004"
        );
        assert_eq!(rotate_name(&raw, "", true), "mysql-bin.0000041");
        assert_eq!(
            rotate_name(b"mysql-bin.000005", "mysql-bin.000004", false),
            "mysql-bin.000005"
        );
    }

    #[test]
    fn derived_server_id_is_stable_and_not_one() {
        assert_eq!(
            derive_server_id("db1.example"),
            derive_server_id("db1.example")
        );
        assert_ne!(
            derive_server_id("db1.example"),
            derive_server_id("db2.example")
        );
        assert!(derive_server_id("") >= 2);
    }

    #[test]
    fn row_image_reads_integers_of_any_representation() {
        let img = RowImage {
            columns: vec![
                ("process_id".into(), Value::Int(7)),
                ("alarma".into(), Value::UInt(1)),
                ("notes".into(), Value::Bytes(b"12".to_vec())),
                ("sound".into(), Value::NULL),
            ],
        };
        assert_eq!(img.int("PROCESS_ID"), Some(7));
        assert_eq!(img.int("alarma"), Some(1));
        assert_eq!(img.int("notes"), Some(12));
        assert_eq!(img.int("sound"), None);
        assert_eq!(img.int("missing"), None);
    }

    #[test]
    fn mariadb_gtid_decodes() {
        let mut d = 42u64.to_le_bytes().to_vec();
        d.extend_from_slice(&3u32.to_le_bytes());
        d.push(0);
        assert_eq!(mariadb_gtid(&d, 1).as_deref(), Some("3-1-42"));
        assert_eq!(mariadb_gtid(&d[..5], 1), None);
    }
}
