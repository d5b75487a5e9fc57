//! Turns binlog events into what the source acts on: row changes of STATUS_PROCESS (and, for
//! host scoping, of PROCESE) by column name, transaction ends (safe places to save the
//! position), file rotations, table maps that need the column names again, and statements that
//! name the tables (STATEMENT format, DDL). Compressed MariaDB events are inflated first.
//! Nothing here knows what a row means.

use std::collections::HashSet;

use mysql_async::binlog::events::{Event, EventData, RowsEventData};
use mysql_async::binlog::row::BinlogRow;
use mysql_async::binlog::value::BinlogValue;
use mysql_async::BinlogStream;
use tracing::{debug, error};

use super::compressed;
use super::position::{rotate_name, Position};
use super::{gtid, gtid_set};
use crate::row::{RowChange, RowImage, RowKind};

/// The table whose row events are followed.
pub const TABLE: &str = "STATUS_PROCESS";
/// The table whose row events are followed for host scoping (when asked for).
pub const PROCESE: &str = "PROCESE";

/// MariaDB's GTID event type.
const MARIADB_GTID_EVENT: u8 = 162;

/// What one event comes to.
#[derive(Debug)]
pub enum Step {
    Nothing,
    /// A transaction ended: the position moved to a safe place to save.
    Committed,
    /// STATUS_PROCESS was mapped under another table id than the one the names were read for
    /// (or its column count changed): the column names must be read again.
    Remap,
    /// Rows of STATUS_PROCESS changed; the event's timestamp.
    Rows(Vec<RowChange>, u32),
    /// A data change to STATUS_PROCESS in our database logged as SQL text (STATEMENT format):
    /// no rows follow.
    Statement(String),
    /// PROCESE was mapped under a new table id (or column count): its names must be read again.
    ProceseRemap,
    /// Rows of PROCESE changed.
    ProceseRows(Vec<RowChange>),
    /// A statement (DDL, or a change logged as SQL text) named PROCESE; it ended a transaction.
    ProceseRedefined,
}

/// PROCESE as the stream maps it (followed only for host scoping).
#[derive(Debug, Default)]
pub struct Procese {
    /// Column names of PROCESE, in table order.
    pub names: Vec<String>,
    table_id: Option<u64>,
    mapped: HashSet<u64>,
}

impl Procese {
    /// PROCESE with the names read when the connection began: its first TABLE_MAP needs no
    /// second read unless the column count differs.
    pub fn with_names(names: Vec<String>) -> Procese {
        Procese {
            names,
            ..Procese::default()
        }
    }
}

/// One connection's decoding state.
pub struct Decoder {
    database: String,
    /// The server folds table names (`lower_case_table_names` > 0).
    fold_case: bool,
    /// Files the server has (and the one asked for), to read the artificial ROTATE's name.
    known_files: Vec<String>,
    /// Column names of the table, in table order.
    pub names: Vec<String>,
    table_id: Option<u64>,
    mapped: HashSet<u64>,
    /// The GTID of the transaction in progress; it becomes the position's at its end.
    pending_gtid: Option<String>,
    /// The same for MySQL, as `(uuid, gno)` (untagged GTIDs only).
    pending_mysql: Option<(String, u64)>,
    /// Between a BEGIN and its XID / COMMIT: not a place to save.
    in_transaction: bool,
    /// The stream was asked for by GTID state: its first ROTATE does not give the offset.
    pub by_gtid: bool,
    /// PROCESE, when its changes are wanted.
    pub procese: Option<Procese>,
}

impl Decoder {
    pub fn new(
        database: &str,
        fold_case: bool,
        known_files: Vec<String>,
        names: Vec<String>,
    ) -> Decoder {
        Decoder {
            database: database.to_string(),
            fold_case,
            known_files,
            names,
            table_id: None,
            mapped: HashSet::new(),
            pending_gtid: None,
            pending_mysql: None,
            in_transaction: false,
            by_gtid: false,
            procese: None,
        }
    }

    fn same(&self, a: &str, b: &str) -> bool {
        if self.fold_case {
            a.eq_ignore_ascii_case(b)
        } else {
            a == b
        }
    }

    /// True for `database.table` when that is our STATUS_PROCESS.
    pub fn ours(&self, database: &str, table: &str) -> bool {
        self.same(database, &self.database) && self.same(table, TABLE)
    }

    /// Decodes one event, moving `pos` along.
    pub fn step(
        &mut self,
        event: Event,
        stream: &BinlogStream,
        pos: &mut Position,
    ) -> Result<Step, String> {
        let event = match compressed::decompress(&event) {
            Ok(Some(plain)) => plain,
            Ok(None) => event,
            Err(e) => return Err(format!("compressed event at {pos}: {e}")),
        };
        let header = event.header();
        if header.event_type_raw() == MARIADB_GTID_EVENT {
            self.pending_gtid = mariadb_gtid(event.data(), header.server_id());
            return Ok(Step::Nothing);
        }
        let data = match event.read_data() {
            Ok(Some(d)) => d,
            Ok(None) => return Ok(Step::Nothing),
            Err(e) => return Err(e.to_string()),
        };
        let end = u64::from(header.log_pos());
        Ok(match data {
            EventData::RotateEvent(r) => {
                self.rotate(r.name_raw(), r.position(), end == 0, pos);
                Step::Nothing
            }
            EventData::TableMapEvent(t) => self.table_map(
                &t.database_name(),
                &t.table_name(),
                t.table_id(),
                t.columns_count(),
            ),
            EventData::RowsEvent(rows) if Some(rows.table_id()) == self.table_id => {
                match stream.get_tme(rows.table_id()) {
                    Some(tme) => {
                        Step::Rows(changes(&rows, tme, &self.names, TABLE), header.timestamp())
                    }
                    None => Step::Nothing,
                }
            }
            EventData::RowsEvent(rows) => match (&self.procese, stream.get_tme(rows.table_id())) {
                (Some(p), Some(tme)) if p.table_id == Some(rows.table_id()) => {
                    Step::ProceseRows(changes(&rows, tme, &p.names, PROCESE))
                }
                _ => Step::Nothing,
            },
            EventData::XidEvent(_) => {
                self.in_transaction = false;
                self.commit(pos, end);
                Step::Committed
            }
            EventData::QueryEvent(q) => self.query(&q.schema(), &q.query(), end, pos),
            EventData::GtidEvent(g) => {
                let uuid = uuid_text(&g.sid());
                self.pending_mysql = (!g.is_tagged()).then(|| (uuid.clone(), g.gno()));
                self.pending_gtid = Some(format!("{uuid}:{}", g.gno()));
                Step::Nothing
            }
            _ => Step::Nothing,
        })
    }

    /// A ROTATE: the file (and offset) the log goes on in.
    fn rotate(&mut self, raw_name: &[u8], offset: u64, artificial: bool, pos: &mut Position) {
        let file = rotate_name(raw_name, &self.known_files, artificial);
        // Resumed by GTID in the same file: the offset stays the one the state was at.
        if !(artificial && self.by_gtid && file == pos.file) {
            pos.pos = offset;
        }
        pos.file = file;
        debug!(position = %pos, "binlog rotate");
    }

    /// A TABLE_MAP: ours under a new id (or with another column count) needs the names again,
    /// except the first one after the names were read at connect.
    fn table_map(&mut self, database: &str, table: &str, id: u64, columns: u64) -> Step {
        if !self.ours(database, table) {
            return self.procese_map(database, table, id, columns);
        }
        let first = self.table_id.replace(id).is_none();
        if remap_needed(&mut self.mapped, first, &self.names, id, columns) {
            Step::Remap
        } else {
            Step::Nothing
        }
    }

    /// A TABLE_MAP of PROCESE (when followed): a new id or column count needs the names again.
    fn procese_map(&mut self, database: &str, table: &str, id: u64, columns: u64) -> Step {
        if !(self.same(database, &self.database) && self.same(table, PROCESE)) {
            return Step::Nothing;
        }
        let Some(p) = self.procese.as_mut() else {
            return Step::Nothing;
        };
        let first = p.table_id.replace(id).is_none();
        if remap_needed(&mut p.mapped, first, &p.names, id, columns) {
            Step::ProceseRemap
        } else {
            Step::Nothing
        }
    }

    /// A QUERY: BEGIN opens a transaction; anything else outside one (DDL) or COMMIT ends it; a
    /// data change to our table in SQL text is a [`Step::Statement`]; DDL on it remaps.
    fn query(&mut self, schema: &str, sql: &str, end: u64, pos: &mut Position) -> Step {
        let word = sql
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_ascii_uppercase();
        if word == "BEGIN" {
            self.in_transaction = true;
            return Step::Nothing;
        }
        let ends = !self.in_transaction || matches!(word.as_str(), "COMMIT" | "ROLLBACK");
        if ends && end != 0 {
            self.in_transaction = false;
            self.commit(pos, end);
        }
        if self.names_our_table(schema, sql) {
            if matches!(
                word.as_str(),
                "UPDATE" | "INSERT" | "REPLACE" | "DELETE" | "LOAD" | "WITH"
            ) {
                return Step::Statement(sql.to_string());
            }
            // DDL may reorder columns: map them again at the next TABLE_MAP.
            self.mapped.clear();
        }
        if self.procese.is_some() && self.in_our_database(schema, sql) && names_word(sql, PROCESE) {
            if let Some(p) = self.procese.as_mut() {
                p.mapped.clear();
            }
            return Step::ProceseRedefined;
        }
        if ends {
            Step::Committed
        } else {
            Step::Nothing
        }
    }

    /// A transaction (or statement) ended at `end`.
    fn commit(&mut self, pos: &mut Position, end: u64) {
        pos.pos = end;
        if let Some((uuid, gno)) = self.pending_mysql.take() {
            pos.gtid_set = pos
                .gtid_set
                .as_deref()
                .and_then(|set| gtid_set::add(set, &uuid, gno));
        }
        if let Some(g) = self.pending_gtid.take() {
            // A MariaDB state advances by domain; anything else is the last GTID.
            let state = pos.gtid.as_deref().filter(|s| gtid::is_state(s));
            pos.gtid = Some(state.and_then(|s| gtid::advance(s, &g)).unwrap_or(g));
        }
    }

    /// True when a statement names STATUS_PROCESS in our database (its default schema is ours,
    /// or it names ours). BEGIN, COMMIT and XA markers never do.
    fn names_our_table(&self, schema: &str, sql: &str) -> bool {
        let upper = sql.to_ascii_uppercase();
        let upper = upper.trim();
        if matches!(upper, "BEGIN" | "COMMIT" | "ROLLBACK") || upper.starts_with("XA ") {
            return false;
        }
        let mentions_table = if self.fold_case {
            upper.contains(TABLE)
        } else {
            sql.contains(TABLE)
        };
        mentions_table && self.in_our_database(schema, sql)
    }

    /// True when a statement runs in our database or names it (another database's PROCESE or
    /// STATUS_PROCESS is not ours).
    fn in_our_database(&self, schema: &str, sql: &str) -> bool {
        self.same(schema, &self.database) || sql.contains(self.database.as_str())
    }
}

/// True when a TABLE_MAP under `id` with `columns` columns needs the names read again: the
/// count differs, or the id is new and it is not the connection's `first` map (whose names
/// were read when the connection began: a fleet's daemons all see that map at once; a table
/// whose names were not read has none, so its count differs).
fn remap_needed(
    mapped: &mut HashSet<u64>,
    first: bool,
    names: &[String],
    id: u64,
    columns: u64,
) -> bool {
    let stale = columns as usize != names.len();
    let new_id = mapped.insert(id);
    stale || (new_id && !first)
}

/// The row changes of one rows event of `table`, with columns named from `names`; an
/// undecodable row is said and skipped (the sweep re-reads the table).
fn changes(
    rows: &RowsEventData<'_>,
    tme: &mysql_async::binlog::events::TableMapEvent<'_>,
    names: &[String],
    table: &str,
) -> Vec<RowChange> {
    let kind = match rows {
        RowsEventData::WriteRowsEventV1(_) | RowsEventData::WriteRowsEvent(_) => RowKind::Insert,
        RowsEventData::DeleteRowsEventV1(_) | RowsEventData::DeleteRowsEvent(_) => RowKind::Delete,
        _ => RowKind::Update,
    };
    let mut changes = Vec::new();
    for row in rows.rows(tme) {
        match row {
            Ok((before, after)) => changes.push(RowChange {
                kind,
                before: before.map(|r| decode_row(r, names)),
                after: after.map(|r| decode_row(r, names)),
            }),
            Err(e) => {
                error!(table, error = %e, "undecodable row in the binlog; the next sweep reads the table again");
            }
        }
    }
    changes
}

/// Whether `sql` names the upper-case `table` as a whole word (`PROCESE`, not `PROCESE_OLD`),
/// in any case: one re-read too many costs nothing, one too few misses a host change.
fn names_word(sql: &str, table: &str) -> bool {
    let text = sql.to_ascii_uppercase();
    let word = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
    text.match_indices(table).any(|(i, _)| {
        !word(text[..i].chars().next_back()) && !word(text[i + table.len()..].chars().next())
    })
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
    fn procese_statements_are_told_from_other_tables() {
        assert!(names_word(
            "ALTER TABLE PROCESE ADD COLUMN host VARCHAR(255)",
            PROCESE
        ));
        assert!(names_word(
            "alter table `procese` add key h (host)",
            PROCESE
        ));
        assert!(!names_word(
            "ALTER TABLE STATUS_PROCESS ADD COLUMN x INT",
            PROCESE
        ));
        assert!(!names_word(
            "ALTER TABLE PROCESE_OLD ADD COLUMN x INT",
            PROCESE
        ));
    }

    #[test]
    fn mariadb_gtid_decodes() {
        let mut d = 42u64.to_le_bytes().to_vec();
        d.extend_from_slice(&3u32.to_le_bytes());
        d.push(0);
        assert_eq!(mariadb_gtid(&d, 1).as_deref(), Some("3-1-42"));
        assert_eq!(mariadb_gtid(&d[..5], 1), None);
    }

    #[test]
    fn table_names_fold_only_where_the_server_folds_them() {
        let exact = Decoder::new("app", false, vec![], vec![]);
        assert!(exact.ours("app", "STATUS_PROCESS"));
        assert!(!exact.ours("app", "status_process"));
        assert!(!exact.ours("App", "STATUS_PROCESS"));
        let folding = Decoder::new("App", true, vec![], vec![]);
        assert!(folding.ours("app", "status_process"));
        assert!(!folding.ours("app", "status_process2"));
    }

    fn at() -> Position {
        Position {
            file: "mysql-bin.000001".into(),
            pos: 4,
            gtid: Some("0-1-1".into()),
            gtid_set: None,
        }
    }

    #[test]
    fn the_first_map_after_connect_uses_the_names_read_then() {
        let names = vec!["process_id".to_string(), "alarma".to_string()];
        let mut d = Decoder::new("app", false, vec![], names.clone());
        // Read at connect: the first map (a fleet's daemons all see it at once) needs no query.
        assert!(matches!(d.table_map("app", TABLE, 7, 2), Step::Nothing));
        assert!(matches!(d.table_map("app", TABLE, 7, 2), Step::Nothing));
        // Another id later: the table was reopened or altered, read again.
        assert!(matches!(d.table_map("app", TABLE, 8, 2), Step::Remap));
        // Another column count, even on the first map: read again.
        let mut d = Decoder::new("app", false, vec![], names.clone());
        assert!(matches!(d.table_map("app", TABLE, 7, 3), Step::Remap));
        // After DDL the next map reads again, whatever its id.
        let mut d = Decoder::new("app", false, vec![], names);
        assert!(matches!(d.table_map("app", TABLE, 7, 2), Step::Nothing));
        let mut pos = at();
        d.query(
            "app",
            "ALTER TABLE STATUS_PROCESS MODIFY alarma INT",
            100,
            &mut pos,
        );
        assert!(matches!(d.table_map("app", TABLE, 7, 2), Step::Remap));
    }

    #[test]
    fn procese_names_read_at_connect_serve_its_first_map() {
        let mut d = Decoder::new("app", false, vec![], vec![]);
        d.procese = Some(Procese::with_names(vec![
            "process_id".into(),
            "host".into(),
        ]));
        assert!(matches!(d.table_map("app", PROCESE, 9, 2), Step::Nothing));
        assert!(matches!(
            d.table_map("app", PROCESE, 10, 2),
            Step::ProceseRemap
        ));
        // Not read at connect (no names): the first map reads them.
        d.procese = Some(Procese::default());
        assert!(matches!(
            d.table_map("app", PROCESE, 9, 2),
            Step::ProceseRemap
        ));
    }

    #[test]
    fn statement_dml_is_a_statement_ddl_remaps_and_transactions_end_where_they_end() {
        let mut d = Decoder::new("app", false, vec![], vec![]);
        let mut pos = at();
        d.pending_gtid = Some("0-1-2".into());
        assert!(matches!(
            d.query("app", "BEGIN", 100, &mut pos),
            Step::Nothing
        ));
        assert!(matches!(
            d.query("app", "UPDATE STATUS_PROCESS SET alarma = 1", 200, &mut pos),
            Step::Statement(_)
        ));
        assert_eq!(pos.pos, 4, "not a place to save: inside the transaction");
        assert!(matches!(
            d.query("app", "COMMIT", 300, &mut pos),
            Step::Committed
        ));
        assert_eq!((pos.pos, pos.gtid.as_deref()), (300, Some("0-1-2")));
        d.mapped.insert(7);
        assert!(matches!(
            d.query("app", "ALTER TABLE STATUS_PROCESS ADD x INT", 400, &mut pos),
            Step::Committed
        ));
        assert!(d.mapped.is_empty(), "DDL maps the columns again");
        assert_eq!(pos.pos, 400);
    }

    #[test]
    fn only_our_databases_procese_statements_redefine_it() {
        let mut d = Decoder::new("app", false, vec![], vec![]);
        d.procese = Some(Procese::default());
        let mut pos = at();
        let alter = "ALTER TABLE PROCESE ADD COLUMN host VARCHAR(255) NULL";
        assert!(matches!(
            d.query("app", alter, 100, &mut pos),
            Step::ProceseRedefined
        ));
        assert!(matches!(
            d.query("other", alter, 200, &mut pos),
            Step::Committed
        ));
        assert!(matches!(
            d.query(
                "other",
                "ALTER TABLE app.PROCESE ADD KEY h (host)",
                300,
                &mut pos
            ),
            Step::ProceseRedefined
        ));
        d.procese = None;
        assert!(matches!(
            d.query("app", alter, 400, &mut pos),
            Step::Committed
        ));
    }

    #[test]
    fn statements_naming_our_table_are_recognised() {
        let d = Decoder::new("app", false, vec![], vec![]);
        assert!(d.names_our_table("app", "UPDATE STATUS_PROCESS SET alarma = 1"));
        assert!(d.names_our_table("other", "update app.STATUS_PROCESS set alarma=1"));
        assert!(!d.names_our_table("other", "UPDATE STATUS_PROCESS SET alarma = 1"));
        assert!(!d.names_our_table("app", "BEGIN"));
        assert!(!d.names_our_table("app", "UPDATE status_process SET alarma = 1"));
        let folding = Decoder::new("app", true, vec![], vec![]);
        assert!(folding.names_our_table("APP", "update status_process set alarma = 1"));
    }
}
