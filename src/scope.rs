//! Host scoping: which processes are this daemon's. Without a `PROCESE.host` column every row
//! is (single-host databases work unchanged); with it, only the rows whose `host` names
//! `[monitor] host`, compared case-insensitively. Rows with `host` NULL or naming no live
//! daemon are left alone and counted ([`unowned`]).
//!
//! One [`Scope`] is shared by the sweep (filters in SQL, [`Scope::alarmed`]), the binlog path
//! (the process-id -> host map, kept as the set of this host's process ids, current by
//! PROCESE's own row events and asked without a query per event, [`Scope::owns`]) and `status`.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, RwLock};

use mysql_async::prelude::{Query, WithParams};
use mysql_async::{Conn, Value};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use crate::db::{Db, DbError};
use crate::row::{ProceseSink, RowChange, RowKind};

/// What PROCESE's `host` column is like.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Column {
    /// No such column: every row is this daemon's.
    #[default]
    Absent,
    /// Present with a case-insensitive collation (the default): `host = ?` uses the index.
    CaseInsensitive,
    /// Present with a binary or case-sensitive collation: compared through `LOWER()`.
    CaseSensitive,
}

impl Column {
    /// From information_schema's COLLATION_NAME of the column (`None`: no such column).
    pub fn from_collation(collation: Option<Option<&str>>) -> Column {
        match collation {
            None => Column::Absent,
            Some(Some(c)) if c.ends_with("_ci") => Column::CaseInsensitive,
            Some(_) => Column::CaseSensitive,
        }
    }

    pub fn present(self) -> bool {
        self != Column::Absent
    }
}

/// A host name as compared: lowercase, trailing spaces dropped (as SQL's PAD SPACE does).
pub fn normalize(host: &str) -> String {
    host.trim_end_matches(' ').to_lowercase()
}

/// The sweep's query: ids of the processes whose alarm is raised and that are this daemon's
/// (the one parameter, when there is one, is the normalized host name).
pub fn alarmed_sql(column: Column) -> &'static str {
    match column {
        Column::Absent => "SELECT process_id FROM STATUS_PROCESS WHERE alarma = 1 ORDER BY process_id",
        Column::CaseInsensitive => {
            "SELECT s.process_id FROM STATUS_PROCESS s JOIN PROCESE p ON p.process_id = s.process_id \
             WHERE s.alarma = 1 AND p.host = ? ORDER BY s.process_id"
        }
        Column::CaseSensitive => {
            "SELECT s.process_id FROM STATUS_PROCESS s JOIN PROCESE p ON p.process_id = s.process_id \
             WHERE s.alarma = 1 AND LOWER(p.host) = ? ORDER BY s.process_id"
        }
    }
}

/// The query for the ids of this daemon's processes (parameter: the normalized host name);
/// `None` without the column.
pub fn mine_sql(column: Column) -> Option<&'static str> {
    match column {
        Column::Absent => None,
        Column::CaseInsensitive => Some("SELECT process_id FROM PROCESE WHERE host = ?"),
        Column::CaseSensitive => Some("SELECT process_id FROM PROCESE WHERE LOWER(host) = ?"),
    }
}

/// `status`'s query: every STATUS_PROCESS row with its PROCESE name and notes, only this
/// daemon's when there is a host column (the one parameter then is the normalized host name).
pub fn status_sql(column: Column) -> &'static str {
    match column {
        Column::Absent => {
            "SELECT s.process_id, p.process_name, s.alarma, s.notes FROM STATUS_PROCESS s \
             LEFT JOIN PROCESE p ON p.process_id = s.process_id ORDER BY s.process_id"
        }
        Column::CaseInsensitive => {
            "SELECT s.process_id, p.process_name, s.alarma, s.notes FROM STATUS_PROCESS s \
             JOIN PROCESE p ON p.process_id = s.process_id WHERE p.host = ? ORDER BY s.process_id"
        }
        Column::CaseSensitive => {
            "SELECT s.process_id, p.process_name, s.alarma, s.notes FROM STATUS_PROCESS s \
             JOIN PROCESE p ON p.process_id = s.process_id WHERE LOWER(p.host) = ? ORDER BY s.process_id"
        }
    }
}

/// What PROCESE's `host` column is like on `conn`'s database (information_schema).
pub async fn column(conn: &mut Conn) -> Result<Column, mysql_async::Error> {
    let collation: Option<Option<String>> =
        "SELECT COLLATION_NAME FROM information_schema.COLUMNS \
         WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'PROCESE' AND COLUMN_NAME = 'host'"
            .first(&mut *conn)
            .await?;
    Ok(Column::from_collation(
        collation.as_ref().map(|c| c.as_deref()),
    ))
}

/// One change to the process-id -> host map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Edit {
    /// The process's host is now this (normalized; `None` = NULL).
    Set(i64, Option<String>),
    /// The process is gone.
    Remove(i64),
}

/// A host value from a row image: `Some(None)` for NULL, `None` when the image lacks the column.
fn host_of(image: &crate::row::RowImage) -> Option<Option<String>> {
    match image.get("host")? {
        Value::NULL => Some(None),
        Value::Bytes(b) => Some(Some(normalize(&String::from_utf8_lossy(b)))),
        other => Some(Some(normalize(&other.as_sql(true)))),
    }
}

/// What a PROCESE row change does to the map. A MINIMAL after-image without `host` leaves the
/// host as it was (only a changed key moves it); an insert without it means NULL.
pub fn edits(change: &RowChange) -> Vec<Edit> {
    let before_id = change.before.as_ref().and_then(|b| b.int("process_id"));
    let after_id = change.after.as_ref().and_then(|a| a.int("process_id"));
    let after_host = change.after.as_ref().and_then(host_of);
    match change.kind {
        RowKind::Delete => before_id.map(Edit::Remove).into_iter().collect(),
        RowKind::Insert => after_id
            .map(|id| Edit::Set(id, after_host.flatten()))
            .into_iter()
            .collect(),
        RowKind::Update => {
            let id = after_id.or(before_id);
            let mut out = Vec::new();
            if let (Some(old), Some(new)) = (before_id, after_id) {
                if old != new {
                    out.push(Edit::Remove(old));
                    let host = after_host
                        .clone()
                        .or_else(|| change.before.as_ref().and_then(host_of));
                    out.push(Edit::Set(new, host.flatten()));
                    return out;
                }
            }
            if let (Some(id), Some(host)) = (id, after_host) {
                out.push(Edit::Set(id, host));
            }
            out
        }
    }
}

/// What is known about PROCESE.
#[derive(Debug, Default)]
struct Known {
    /// PROCESE has been read at least once.
    loaded: bool,
    column: Column,
    /// The processes whose host is this daemon's (only they are kept: a daemon's map grows
    /// with its own processes, not the fleet's); consulted only while the column is present.
    mine: HashSet<i64>,
    /// Reads of PROCESE under way.
    loading: u32,
    /// Edits applied while a read was under way: replayed over its snapshot, which may be
    /// older than they are (every edit arrives in log order, so the map still converges).
    journal: Vec<Edit>,
    /// PROCESE's definition changed (DDL in the binlog) and no read begun since has finished:
    /// the binlog path cannot tell whose an alarm is and leaves it to the sweep that follows.
    stale: bool,
    /// Counts definition changes, so a read begun before the latest one does not end `stale`.
    generation: u64,
}

impl Known {
    fn edit(&mut self, own: &str, edit: &Edit) {
        match edit {
            Edit::Set(id, Some(host)) if host == own => self.mine.insert(*id),
            Edit::Set(id, _) | Edit::Remove(id) => self.mine.remove(id),
        };
    }
}

/// Marks a read of PROCESE under way; the read's end (or its cancellation) ends it.
struct Loading<'a> {
    scope: &'a Scope,
    done: bool,
    /// [`Known::generation`] when the read began.
    generation: u64,
}

impl Loading<'_> {
    /// Installs a snapshot (`column`, the ids of this daemon's processes) read while this was
    /// under way.
    fn install(mut self, column: Column, mine: HashSet<i64>) {
        self.done = true;
        let mut known = self.scope.write();
        if known.loaded && known.column != column {
            info!(column = ?column, host = %self.scope.own, "PROCESE.host column changed; host scoping follows it");
        }
        known.loaded = true;
        known.column = column;
        known.mine = mine;
        known.stale = known.generation != self.generation;
        for edit in known.journal.clone() {
            known.edit(&self.scope.own, &edit);
        }
        Loading::end(&mut known);
    }

    fn end(known: &mut Known) {
        known.loading = known.loading.saturating_sub(1);
        if known.loading == 0 {
            known.journal.clear();
        }
    }
}

impl Drop for Loading<'_> {
    fn drop(&mut self) {
        if !self.done {
            Loading::end(&mut self.scope.write());
        }
    }
}

/// This daemon's scope; shared behind an `Arc`.
#[derive(Debug)]
pub struct Scope {
    own: String,
    known: RwLock<Known>,
    /// Notified when PROCESE's definition changed: [`Scope::follow_ddl`] re-reads it.
    redefined: Notify,
}

impl Scope {
    /// The scope of a daemon named `host`; every row is its own until [`Scope::load`] finds
    /// the column.
    pub fn new(host: &str) -> Scope {
        Scope {
            own: normalize(host),
            known: RwLock::new(Known::default()),
            redefined: Notify::new(),
        }
    }

    /// This daemon's host name, normalized.
    pub fn own(&self) -> &str {
        &self.own
    }

    /// What PROCESE's `host` column is like, as last read.
    pub fn column(&self) -> Column {
        self.read().column
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Known> {
        self.known.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Known> {
        self.known.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether process `id` is this daemon's: always without the column; with it, when its
    /// PROCESE row names this host.
    pub fn owns(&self, id: i64) -> bool {
        let known = self.read();
        !known.column.present() || known.mine.contains(&id)
    }

    /// Applies one PROCESE row change (from the binlog, in log order).
    pub fn apply(&self, change: &RowChange) {
        let mut known = self.write();
        for edit in edits(change) {
            debug!(edit = ?edit, "PROCESE host map");
            known.edit(&self.own, &edit);
            if known.loading > 0 {
                known.journal.push(edit);
            }
        }
    }

    fn begin_load(&self) -> Loading<'_> {
        let mut known = self.write();
        known.loading += 1;
        Loading {
            scope: self,
            done: false,
            generation: known.generation,
        }
    }

    /// PROCESE's definition changed (in log order): until a read begun after this has finished,
    /// alarms from the binlog are left to the sweep ([`Scope::follow_ddl`] asks for one).
    pub fn redefine(&self) {
        let mut known = self.write();
        known.generation += 1;
        known.stale = true;
    }

    /// Re-reads the column and the map on `conn`.
    pub async fn load(&self, conn: &mut Conn) -> Result<Column, mysql_async::Error> {
        let loading = self.begin_load();
        let column = column(conn).await?;
        let mine: Vec<i64> = match mine_sql(column) {
            Some(sql) => sql.with((self.own.as_str(),)).fetch(&mut *conn).await?,
            None => Vec::new(),
        };
        loading.install(column, mine.into_iter().collect());
        Ok(column)
    }

    /// The sweep: re-reads the map (the sweep runs after every binlog reconnect, so the map
    /// catches up with what the stream missed) and reads the ids of this daemon's raised alarms.
    pub async fn alarmed(&self, db: &Db) -> Result<Vec<i64>, DbError> {
        match self.alarmed_once(db).await {
            // A pooled connection can be dead after a server restart: the pool replaces it.
            Err(DbError::Query { source, .. }) if source.is_fatal() => self.alarmed_once(db).await,
            other => other,
        }
    }

    async fn alarmed_once(&self, db: &Db) -> Result<Vec<i64>, DbError> {
        let mut conn = db.conn().await?;
        let column = self
            .load(&mut conn)
            .await
            .map_err(query_err("reading PROCESE hosts"))?;
        let sql = alarmed_sql(column);
        let ids = if column.present() {
            sql.with((self.own.as_str(),)).fetch(&mut conn).await
        } else {
            sql.fetch(&mut conn).await
        };
        ids.map_err(query_err("the sweep query"))
    }

    /// Each time PROCESE's definition changes, asks for a sweep (`kick`): it re-reads PROCESE
    /// (ending the stale time) and then finds this daemon's alarms raised meanwhile, which the
    /// binlog path left alone. Until `token` is cancelled.
    pub async fn follow_ddl(self: Arc<Self>, kick: Arc<Notify>, token: CancellationToken) {
        loop {
            tokio::select! {
                _ = self.redefined.notified() => {}
                _ = token.cancelled() => return,
            }
            debug!("PROCESE changed; sweeping to re-read it");
            kick.notify_one();
        }
    }
}

impl ProceseSink for Scope {
    fn changed(&self, change: &RowChange) {
        self.apply(change);
    }

    fn redefined(&self) {
        self.redefine();
        self.redefined.notify_one();
    }

    fn wants(&self, process_id: i64) -> bool {
        if self.read().stale {
            debug!(
                process_id,
                "binlog: PROCESE is being re-read; the sweep that follows decides"
            );
            return false;
        }
        let mine = self.owns(process_id);
        if !mine {
            debug!(
                process_id,
                "binlog: alarm of another host's process; left alone"
            );
        }
        mine
    }
}

fn query_err(what: &'static str) -> impl Fn(mysql_async::Error) -> DbError {
    move |source| DbError::Query {
        what,
        source,
        hint: "",
    }
}

/// Rows no running daemon handles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Unowned {
    /// PROCESE has a `host` column (without it nothing is unowned).
    pub column: bool,
    /// Rows with `host` NULL.
    pub without_host: u64,
    /// Rows naming a host with no live daemon (known only with the hosts table).
    pub no_live_daemon: Option<u64>,
}

impl Unowned {
    /// One line for the log and `status`.
    pub fn describe(&self) -> String {
        if !self.column {
            return "PROCESE has no host column: every process is this daemon's".to_string();
        }
        match self.no_live_daemon {
            Some(n) => format!(
                "{} process(es) with no host and {n} naming no live daemon are left alone",
                self.without_host
            ),
            None => format!(
                "{} process(es) with no host are left alone (without the hosts table, rows naming other hosts are not checked)",
                self.without_host
            ),
        }
    }
}

/// Counts the unowned rows from PROCESE's rows per host (normalized; `None` = NULL) and the
/// live daemons' hosts (`None` when unknown). This daemon is always live.
pub fn count_unowned(
    own: &str,
    per_host: &BTreeMap<Option<String>, u64>,
    live: Option<&HashSet<String>>,
) -> Unowned {
    let without_host = per_host.get(&None).copied().unwrap_or(0);
    let no_live_daemon = live.map(|live| {
        per_host
            .iter()
            .filter_map(|(h, n)| h.as_ref().map(|h| (h, n)))
            .filter(|(h, _)| h.as_str() != own && !live.contains(h.as_str()))
            .map(|(_, n)| n)
            .sum()
    });
    Unowned {
        column: true,
        without_host,
        no_live_daemon,
    }
}

/// Reads and counts the unowned rows; `live` is the set of hosts with a live daemon, when
/// known (see [`crate::hosts::live`]).
pub async fn unowned(
    conn: &mut Conn,
    own: &str,
    live: Option<&HashSet<String>>,
) -> Result<Unowned, mysql_async::Error> {
    if !column(conn).await?.present() {
        return Ok(Unowned::default());
    }
    let rows: Vec<(Option<Vec<u8>>, u64)> = "SELECT host, COUNT(*) FROM PROCESE GROUP BY host"
        .fetch(&mut *conn)
        .await?;
    let mut per_host: BTreeMap<Option<String>, u64> = BTreeMap::new();
    for (h, n) in rows {
        let h = h.map(|h| normalize(&String::from_utf8_lossy(&h)));
        *per_host.entry(h).or_default() += n;
    }
    Ok(count_unowned(&normalize(own), &per_host, live))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::row::RowImage;

    fn img(id: i64, host: Option<Option<&str>>) -> RowImage {
        let mut columns = vec![("process_id".to_string(), Value::Int(id))];
        if let Some(h) = host {
            let v = h.map_or(Value::NULL, |h| Value::Bytes(h.as_bytes().to_vec()));
            columns.push(("host".to_string(), v));
        }
        RowImage { columns }
    }

    #[test]
    fn column_kind_follows_the_collation() {
        assert_eq!(Column::from_collation(None), Column::Absent);
        assert_eq!(
            Column::from_collation(Some(Some("utf8mb4_general_ci"))),
            Column::CaseInsensitive
        );
        assert_eq!(
            Column::from_collation(Some(Some("utf8mb4_bin"))),
            Column::CaseSensitive
        );
        assert_eq!(Column::from_collation(Some(None)), Column::CaseSensitive);
    }

    #[test]
    fn sweep_sql_filters_only_with_the_column() {
        assert!(!alarmed_sql(Column::Absent).contains('?'));
        assert!(alarmed_sql(Column::CaseInsensitive).contains("p.host = ?"));
        assert!(alarmed_sql(Column::CaseSensitive).contains("LOWER(p.host) = ?"));
        assert_eq!(mine_sql(Column::Absent), None);
        assert!(mine_sql(Column::CaseInsensitive).is_some_and(|q| q.ends_with("WHERE host = ?")));
    }

    #[test]
    fn row_changes_edit_the_map() {
        let ins = RowChange::new(RowKind::Insert, None, Some(img(1, Some(Some("Alpha ")))));
        assert_eq!(edits(&ins), vec![Edit::Set(1, Some("alpha".into()))]);
        let ins_no_col = RowChange::new(RowKind::Insert, None, Some(img(2, None)));
        assert_eq!(edits(&ins_no_col), vec![Edit::Set(2, None)]);
        let moved = RowChange::new(
            RowKind::Update,
            Some(img(1, Some(Some("alpha")))),
            Some(img(1, Some(Some("BETA")))),
        );
        assert_eq!(edits(&moved), vec![Edit::Set(1, Some("beta".into()))]);
        let to_null = RowChange::new(
            RowKind::Update,
            Some(img(1, Some(Some("alpha")))),
            Some(img(1, Some(None))),
        );
        assert_eq!(edits(&to_null), vec![Edit::Set(1, None)]);
        let del = RowChange::new(RowKind::Delete, Some(img(1, Some(Some("alpha")))), None);
        assert_eq!(edits(&del), vec![Edit::Remove(1)]);
    }

    #[test]
    fn minimal_images_keep_the_host_unless_it_changed() {
        // MINIMAL: a name-only update carries no host: nothing changes.
        let name_only = RowChange::new(RowKind::Update, Some(img(4, None)), Some(img(4, None)));
        assert_eq!(edits(&name_only), vec![]);
        // A host-only update carries the key in the before image only.
        let after = RowImage {
            columns: vec![("host".into(), Value::Bytes(b"beta".to_vec()))],
        };
        let host_only = RowChange::new(RowKind::Update, Some(img(4, None)), Some(after));
        assert_eq!(edits(&host_only), vec![Edit::Set(4, Some("beta".into()))]);
        // A new key moves the old host along.
        let rekeyed = RowChange::new(
            RowKind::Update,
            Some(img(4, Some(Some("alpha")))),
            Some(img(5, None)),
        );
        assert_eq!(
            edits(&rekeyed),
            vec![Edit::Remove(4), Edit::Set(5, Some("alpha".into()))]
        );
    }

    #[test]
    fn after_a_definition_change_the_binlog_path_waits_for_a_read_begun_later() {
        let scope = Scope::new("alpha");
        assert!(scope.wants(1), "no column: every process");
        let early = scope.begin_load();
        ProceseSink::redefined(&scope);
        assert!(!scope.wants(1), "stale: left to the sweep");
        early.install(Column::CaseInsensitive, HashSet::new());
        assert!(
            !scope.wants(1),
            "a read begun before the change does not end it"
        );
        let later = scope.begin_load();
        later.install(Column::CaseInsensitive, HashSet::from([1]));
        assert!(scope.wants(1));
        assert!(!scope.wants(2));
    }

    #[test]
    fn owns_everything_without_the_column_and_only_its_rows_with_it() {
        let scope = Scope::new("Alpha");
        assert!(scope.owns(1));
        scope.write().column = Column::CaseInsensitive;
        scope.apply(&RowChange::new(
            RowKind::Insert,
            None,
            Some(img(1, Some(Some("ALPHA")))),
        ));
        scope.apply(&RowChange::new(
            RowKind::Insert,
            None,
            Some(img(2, Some(Some("beta")))),
        ));
        scope.apply(&RowChange::new(
            RowKind::Insert,
            None,
            Some(img(3, Some(None))),
        ));
        assert!(scope.owns(1));
        assert!(!scope.owns(2));
        assert!(!scope.owns(3));
        assert!(!scope.owns(4), "an unknown process is not this daemon's");
        scope.apply(&RowChange::new(
            RowKind::Update,
            Some(img(2, Some(Some("beta")))),
            Some(img(2, Some(Some("alpha")))),
        ));
        assert!(scope.owns(2));
        scope.apply(&RowChange::new(RowKind::Delete, Some(img(2, None)), None));
        assert!(!scope.owns(2));
    }

    #[test]
    fn edits_during_a_read_survive_its_older_snapshot() {
        let scope = Scope::new("alpha");
        let loading = scope.begin_load();
        // The stream moves process 1 to alpha while the read is under way...
        scope.apply(&RowChange::new(
            RowKind::Update,
            Some(img(1, Some(Some("beta")))),
            Some(img(1, Some(Some("alpha")))),
        ));
        // ...and the read's snapshot was taken before that.
        let snapshot = HashSet::new();
        loading.install(Column::CaseInsensitive, snapshot);
        assert!(scope.owns(1));
        assert_eq!(scope.read().loading, 0);
        assert!(scope.read().journal.is_empty());
        // A read that fails (dropped) ends too: the journal does not grow for ever.
        drop(scope.begin_load());
        scope.apply(&RowChange::new(RowKind::Delete, Some(img(1, None)), None));
        assert!(scope.read().journal.is_empty());
        assert!(!scope.owns(1));
    }

    #[test]
    fn unowned_counts_null_rows_and_hosts_without_a_live_daemon() {
        let per_host: BTreeMap<Option<String>, u64> = [
            (None, 2),
            (Some("alpha".to_string()), 5),
            (Some("beta".to_string()), 3),
            (Some("gone".to_string()), 4),
        ]
        .into_iter()
        .collect();
        let live: HashSet<String> = ["beta".to_string()].into_iter().collect();
        let u = count_unowned("alpha", &per_host, Some(&live));
        assert_eq!(u.without_host, 2);
        assert_eq!(u.no_live_daemon, Some(4));
        assert!(u
            .describe()
            .contains("2 process(es) with no host and 4 naming no live daemon"));
        let unknown = count_unowned("alpha", &per_host, None);
        assert_eq!(unknown.no_live_daemon, None);
        assert!(Unowned::default().describe().contains("no host column"));
    }
}
