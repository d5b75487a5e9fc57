//! The binlog connection: its options (built in one place), the facts read on each connect
//! (column names, case folding, files), the stream request, and the sorting of stream errors.

use mysql_async::prelude::Queryable;
use mysql_async::{BinlogStream, BinlogStreamRequest, Conn};

use super::decode::{PROCESE, TABLE};
use super::position::Position;
use super::readiness::{binlog_files, current_position, Flavor};
use super::{gtid, gtid_set};
use super::{BinlogFatal, End, HEARTBEAT};
use crate::config::DatabaseConfig;

/// Options of the binlog connection (`cfg` is `[binlog]`'s server, defaulting to
/// `[database]`'s); built off the async threads, as `ssl_mode = preferred` asks the server first.
pub async fn options(cfg: &DatabaseConfig) -> mysql_async::Opts {
    crate::db::connect_opts_off_thread(cfg).await.into()
}

/// Connects with `opts` (from [`options`]; clones share one TLS context, so a second
/// connection loads no certificates again) within the configured connect timeout.
pub async fn open(cfg: &DatabaseConfig, opts: &mysql_async::Opts) -> Result<Conn, String> {
    match tokio::time::timeout(cfg.connect_timeout, Conn::new(opts.clone())).await {
        Err(_) => Err(format!("no connection within {:?}", cfg.connect_timeout)),
        Ok(Err(e)) => Err(format!("{e}{}", crate::tls::hint(&e))),
        Ok(Ok(c)) => Ok(c),
    }
}

/// What a connection learns before it asks for the stream.
pub struct Session {
    pub names: Vec<String>,
    /// `lower_case_table_names` > 0: the server folds table names.
    pub fold_case: bool,
    /// Files the server has, to read the artificial ROTATE's name.
    pub files: Vec<String>,
    /// PROCESE's column names, when asked for (host scoping follows its rows).
    pub procese_names: Option<Vec<String>>,
}

/// Reads the session facts; `pos` is set to the current end when it has no file yet, and on
/// MariaDB given the GTID state there when it has none.
pub async fn session(
    conn: &mut Conn,
    flavor: Flavor,
    pos: &mut Position,
    procese: bool,
) -> Result<Session, String> {
    let lower: Option<i64> = conn
        .query_first("SELECT @@lower_case_table_names")
        .await
        .map_err(|e| format!("reading lower_case_table_names: {e}"))?;
    let fold_case = lower.unwrap_or(0) != 0;
    let names = column_names(conn, TABLE, fold_case)
        .await
        .map_err(|e| format!("reading the columns of {TABLE}: {e}"))?;
    let procese_names = if procese {
        let read = column_names(conn, PROCESE, fold_case).await;
        Some(read.map_err(|e| format!("reading the columns of {PROCESE}: {e}"))?)
    } else {
        None
    };
    if pos.file.is_empty() {
        *pos = current_position(conn)
            .await
            .map_err(|e| format!("reading the binlog position: {e}"))?
            .ok_or("the server reports no binlog position")?;
    }
    if pos.gtid.is_none() && flavor == Flavor::MariaDb {
        pos.gtid = gtid_state_at(conn, pos).await;
    }
    let mut files = binlog_files(conn).await.unwrap_or_default();
    files.push(pos.file.clone());
    Ok(Session {
        names,
        fold_case,
        files,
        procese_names,
    })
}

/// MariaDB's GTID state at a place in its log (`BINLOG_GTID_POS`); `None` when the place is not
/// an event boundary of the log the server has.
pub async fn gtid_state_at(conn: &mut Conn, pos: &Position) -> Option<String> {
    let sql = format!(
        "SELECT BINLOG_GTID_POS('{}', {})",
        pos.file.replace('\'', ""),
        pos.pos
    );
    let state: Option<(Option<String>,)> = conn.query_first(sql).await.ok().flatten();
    state.and_then(|(s,)| s).filter(|s| !s.is_empty())
}

/// The column names of `STATUS_PROCESS`, in table order.
pub async fn column_names(
    conn: &mut Conn,
    table: &str,
    fold_case: bool,
) -> Result<Vec<String>, mysql_async::Error> {
    let table_match = if fold_case {
        "LOWER(TABLE_NAME) = LOWER(?)"
    } else {
        "TABLE_NAME = ?"
    };
    conn.exec(
        format!("SELECT COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() AND {table_match} ORDER BY ORDINAL_POSITION"),
        (table,),
    )
    .await
}

/// Asks for the stream at `pos` (by its GTID state when `by_gtid`), with a heartbeat (and
/// MariaDB's GTID events).
pub async fn request(
    mut conn: Conn,
    server_id: u32,
    flavor: Flavor,
    pos: &Position,
    by_gtid: bool,
) -> Result<BinlogStream, End> {
    let mut setup = vec![format!(
        "SET @master_heartbeat_period = {}",
        HEARTBEAT.as_nanos()
    )];
    if flavor == Flavor::MariaDb {
        setup.push("SET @mariadb_slave_capability = 4".to_string());
    }
    // MariaDB resumes at the GTID state (it then ignores the file and offset).
    if let Some(state) = pos.gtid.as_deref().filter(|s| by_gtid && gtid::is_state(s)) {
        setup.push(format!("SET @slave_connect_state = '{state}'"));
        setup.push("SET @slave_gtid_strict_mode = 0".to_string());
        setup.push("SET @slave_gtid_ignore_duplicates = 0".to_string());
    }
    for sql in setup {
        if let Err(e) = conn.query_drop(sql).await {
            return Err(End::Lost(e.to_string()));
        }
    }
    let mut request = BinlogStreamRequest::new(server_id)
        .with_filename(pos.file.as_bytes())
        .with_pos(pos.pos);
    // MySQL resumes by the GTID set (COM_BINLOG_DUMP_GTID).
    let sids = pos
        .gtid_set
        .as_deref()
        .filter(|_| by_gtid && flavor == Flavor::MySql)
        .and_then(gtid_set::sids);
    if let Some(sids) = sids {
        // No file: the server finds the first transaction the set lacks itself.
        request = BinlogStreamRequest::new(server_id)
            .with_gtid()
            .with_filename(b"")
            .with_pos(4u64)
            .with_gtid_set(sids);
    }
    conn.get_binlog_stream(request)
        .await
        .map_err(|e| classify(e, server_id))
}

/// Sorts a stream error into lost (retry), purged (start at the end) or fatal.
pub fn classify(e: mysql_async::Error, server_id: u32) -> End {
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
