//! Binlog source: follows the server's binary log as a replica and turns the row events of
//! `<database>.STATUS_PROCESS` into [`Trigger`]s through the meaning it is given (the
//! pipeline's `alarm_raised`); it only decodes. PROCESE's row changes and DDL are handed to a
//! [`ProceseSink`] (host scoping), which also says which alarms are this daemon's. Each connection is connect
//! ([`connect`]), decode ([`decode`]) and bookkeeping (the saved position, status, sweeps
//! asked for), with reconnects under backoff and jitter and a heartbeat with an idle timeout.
//!
//! Beside it: the start-up readiness ([`readiness`]), the saved position bound to its server
//! ([`position`], [`resume`]; resumed by GTID: MariaDB [`gtid`], MySQL [`gtid_set`]) and MariaDB's compressed
//! events ([`compressed`]).

pub mod compressed;
pub mod connect;
pub mod decode;
pub mod gtid;
pub mod gtid_set;
pub mod position;
pub mod readiness;
pub mod resume;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use backon::{BackoffBuilder, ExponentialBuilder};
use futures_util::StreamExt;
use mysql_async::binlog::events::Event;
use mysql_async::BinlogStream;
use tokio::sync::{mpsc, Notify};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::{Trigger, TriggerSource};
use crate::config::DatabaseConfig;
use crate::row::{Meaning, ProceseSink, RowChange};
use crate::state::StateDir;
use decode::{Decoder, Procese, Step};

pub use decode::{PROCESE, TABLE};
pub use position::{rotate_name, Origin, Position, Saved};
pub use readiness::{
    binlog_files, check, current_position, readiness, Flavor, Readiness, Settings,
};
pub use resume::start_position;

/// Name of the position file in `state_dir`.
pub const POSITION_FILE: &str = "binlog_position";
/// Heartbeat the server is asked to send when the log is idle.
pub const HEARTBEAT: Duration = Duration::from_secs(1);
/// No event (or heartbeat) for this long means the connection is dead.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(3);
/// The position is saved at most this often while nothing relevant happens.
const SAVE_EVERY: Duration = Duration::from_secs(1);

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
    /// The server the log belongs to (saved with the position).
    pub origin: Option<Origin>,
    /// What a row change means: the pipeline's `alarm_raised`.
    pub meaning: Meaning,
    /// Receives PROCESE's row events; `None`: PROCESE is not decoded, every alarm is wanted.
    pub procese: Option<Arc<dyn ProceseSink>>,
}

/// Why one connection ended.
pub enum End {
    Cancelled,
    Lost(String),
    Purged(String),
    Fatal(BinlogFatal),
}

/// When the position was last saved and whether an alarm was handed on since.
struct Bookkeeping {
    last_save: Instant,
    handled_since_save: bool,
}

impl BinlogSource {
    fn set_status(&self, f: impl FnOnce(&mut Status)) {
        f(&mut self.status.lock().unwrap_or_else(|p| p.into_inner()));
    }

    /// The saved position, if any and readable (a corrupt file is reported and moved aside).
    pub fn saved(&self) -> Option<Saved> {
        let file = self.state.path(POSITION_FILE);
        match self.state.read(POSITION_FILE) {
            Ok(Some(text)) => Saved::from_text(&text).or_else(|| {
                let moved = self.state.quarantine(POSITION_FILE);
                warn!(file = %file.display(), moved_to = ?moved.ok(), "corrupt binlog position file; moved aside, starting at the current end");
                None
            }),
            Ok(None) => None,
            Err(e) => {
                warn!(file = %file.display(), error = %e, "cannot read the binlog position; starting at the current end");
                None
            }
        }
    }

    fn save(&self, p: &Position) {
        let saved = Saved {
            at: p.clone(),
            origin: self.origin.clone(),
        };
        if let Err(e) = self.state.write(POSITION_FILE, &saved.to_text()) {
            warn!(file = %self.state.path(POSITION_FILE).display(), error = %e, "cannot save the binlog position");
        }
    }

    /// Follows the binlog from `start` until `token` is cancelled, reconnecting with backoff;
    /// after every reconnect the sweep is kicked so nothing set while disconnected is lost, and
    /// a change that arrives as SQL text kicks it at once. Returns an error only for what
    /// retrying cannot fix (a server_id clash).
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
            let end = self.follow(&mut pos, &tx, &kick, !first, &token).await;
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
                    pos.gtid = None;
                    pos.gtid_set = None;
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

    /// One connection: connect, then decode and keep the books until it ends.
    async fn follow(
        &self,
        pos: &mut Position,
        tx: &mpsc::Sender<Trigger>,
        kick: &Notify,
        kick_on_connect: bool,
        token: &CancellationToken,
    ) -> End {
        let (mut stream, mut decoder, opts) = match self.connect(pos).await {
            Ok(c) => c,
            Err(end) => return end,
        };
        if kick_on_connect {
            kick.notify_one();
        }
        let mut books = Bookkeeping {
            last_save: Instant::now(),
            handled_since_save: false,
        };
        loop {
            let event = match next_event(&mut stream, token, self.server_id).await {
                Ok(e) => e,
                Err(end) => return end,
            };
            let step = match decoder.step(event, &stream, pos) {
                Ok(s) => s,
                Err(e) => return End::Lost(format!("undecodable binlog event: {e}")),
            };
            match step {
                Step::Nothing => {}
                Step::Committed => self.bookkeep(pos, &mut books),
                Step::Remap => {
                    if let Some(names) = self.column_names(&opts, TABLE).await {
                        decoder.names = names;
                    }
                }
                Step::ProceseRemap => {
                    if let (Some(names), Some(p)) = (
                        self.column_names(&opts, PROCESE).await,
                        decoder.procese.as_mut(),
                    ) {
                        p.names = names;
                    }
                }
                Step::ProceseRows(changes) => {
                    if let Some(sink) = &self.procese {
                        changes.iter().for_each(|c| sink.changed(c));
                    }
                }
                Step::ProceseRedefined => {
                    if let Some(sink) = &self.procese {
                        sink.redefined();
                    }
                    self.bookkeep(pos, &mut books);
                }
                Step::Rows(changes, timestamp) => {
                    if !self.hand_on(changes, timestamp, tx, &mut books).await {
                        return End::Cancelled;
                    }
                }
                Step::Statement(sql) => {
                    // One log line, whatever the statement holds.
                    let sql: String = sql
                        .chars()
                        .take(120)
                        .map(|c| if c.is_control() { ' ' } else { c })
                        .collect();
                    info!(statement = %sql, "a change to STATUS_PROCESS arrived as SQL text (binlog_format = STATEMENT in that session); sweeping now");
                    kick.notify_one();
                    self.bookkeep(pos, &mut books);
                }
            }
        }
    }

    /// Connects, reads the session facts and requests the stream at `pos`; the options are
    /// kept for the column lookups of this connection's life.
    async fn connect(
        &self,
        pos: &mut Position,
    ) -> Result<(BinlogStream, Decoder, mysql_async::Opts), End> {
        let opts = connect::options(&self.db).await;
        let mut conn = connect::open(&self.db, &opts).await.map_err(End::Lost)?;
        let session = connect::session(&mut conn, self.flavor, pos, self.procese.is_some())
            .await
            .map_err(End::Lost)?;
        let by_gtid = match self.flavor {
            Flavor::MariaDb => pos.gtid.as_deref().is_some_and(gtid::is_state),
            Flavor::MySql => pos.gtid_set.as_deref().is_some_and(gtid_set::is_set),
        };
        let stream = connect::request(conn, self.server_id, self.flavor, pos, by_gtid).await?;
        let gtid = pos
            .gtid_set
            .as_deref()
            .or(pos.gtid.as_deref())
            .unwrap_or("");
        info!(position = %pos, gtid, by_gtid, server_id = self.server_id, source = %crate::db::target_of(&self.db), "binlog connected");
        self.save(pos);
        self.set_status(|s| {
            s.connected = true;
            s.position = Some(pos.clone());
        });
        let mut decoder = Decoder::new(
            &self.db.database,
            session.fold_case,
            session.files,
            session.names,
        );
        decoder.by_gtid = by_gtid;
        decoder.procese = session.procese_names.map(Procese::with_names);
        Ok((stream, decoder, opts))
    }

    /// A table has a new table id or column count: its column names, read again (`None` when
    /// they cannot be read now; the old ones stay).
    async fn column_names(&self, opts: &mysql_async::Opts, table: &str) -> Option<Vec<String>> {
        let mut c = connect::open(&self.db, opts).await.ok()?;
        let fold: Option<i64> =
            mysql_async::prelude::Queryable::query_first(&mut c, "SELECT @@lower_case_table_names")
                .await
                .ok()
                .flatten();
        let names = connect::column_names(&mut c, table, fold.unwrap_or(0) != 0)
            .await
            .ok();
        let _ = c.disconnect().await;
        debug!(table, columns = ?names, "columns mapped");
        names
    }

    /// Hands the changes that mean an alarm on to the pipeline; false when it is gone.
    async fn hand_on(
        &self,
        changes: Vec<RowChange>,
        timestamp: u32,
        tx: &mpsc::Sender<Trigger>,
        books: &mut Bookkeeping,
    ) -> bool {
        let now = chrono::Utc::now().timestamp();
        self.set_status(|s| {
            s.relevant_events += 1;
            s.lag_seconds = Some(now - i64::from(timestamp));
        });
        let wanted = |id: &i64| self.procese.as_ref().is_none_or(|s| s.wants(*id));
        for process_id in changes.iter().filter_map(self.meaning).filter(wanted) {
            debug!(process_id, "binlog: alarm raised");
            books.handled_since_save = true;
            let trigger = Trigger {
                process_id,
                source: TriggerSource::Binlog,
            };
            if tx.send(trigger).await.is_err() {
                return false;
            }
        }
        true
    }

    /// At a transaction end: saves the position when an alarm was handed on since the last
    /// save, or a second has passed.
    fn bookkeep(&self, pos: &Position, books: &mut Bookkeeping) {
        if books.handled_since_save || books.last_save.elapsed() >= SAVE_EVERY {
            self.save(pos);
            self.set_status(|s| s.position = Some(pos.clone()));
            books.last_save = Instant::now();
            books.handled_since_save = false;
        }
    }
}

/// The next event, or why the connection ended (cancelled, idle past the heartbeat, closed,
/// or a stream error).
async fn next_event(
    stream: &mut BinlogStream,
    token: &CancellationToken,
    server_id: u32,
) -> Result<Event, End> {
    let next = tokio::select! {
        n = tokio::time::timeout(IDLE_TIMEOUT, stream.next()) => n,
        _ = token.cancelled() => return Err(End::Cancelled),
    };
    match next {
        Err(_) => Err(End::Lost(format!(
            "no event or heartbeat for {}s",
            IDLE_TIMEOUT.as_secs()
        ))),
        Ok(None) => Err(End::Lost("the server ended the binlog stream".into())),
        Ok(Some(Err(e))) => Err(connect::classify(e, server_id)),
        Ok(Some(Ok(ev))) => Ok(ev),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
