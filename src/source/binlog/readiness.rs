//! Whether the server can serve the binlog to this account (log_bin, ROW format, privileges),
//! with the fix for each problem, and what each binlog setting means for the daemon: row image,
//! case folding of table names, MariaDB's compressed events, MySQL's transaction compression.

use mysql_async::prelude::Queryable;
use mysql_async::Conn;

use super::position::{Origin, Position};
use crate::db;

/// Which server family (they differ in statements and GTIDs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    MariaDb,
    MySql,
}

/// The server's binlog settings that change how events look.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settings {
    pub log_bin: bool,
    pub format: String,
    pub row_image: String,
    pub lower_case_table_names: i64,
    /// MariaDB's `log_bin_compress` (`None` on MySQL).
    pub log_bin_compress: Option<bool>,
    /// MySQL's `binlog_transaction_compression` (`None` on MariaDB and MySQL before 8.0.20).
    pub transaction_compression: Option<bool>,
}

fn on_off(b: bool) -> &'static str {
    if b {
        "ON"
    } else {
        "OFF"
    }
}

impl Settings {
    /// One line per setting: its value and what the daemon does about it.
    pub fn report(&self) -> Vec<String> {
        let mut lines = Vec::new();
        if self.format.eq_ignore_ascii_case("ROW") {
            lines.push("binlog_format = ROW: row events are decoded; a session that logs STATEMENT changes to STATUS_PROCESS makes the daemon sweep at once".to_string());
        }
        lines.push(match self.row_image.to_ascii_uppercase().as_str() {
            "MINIMAL" => "binlog_row_image = MINIMAL: columns are read from the images' bitmaps; an UPDATE that sets alarma = 1 triggers, the procedure re-reads the row".to_string(),
            "NOBLOB" => "binlog_row_image = NOBLOB: images lack unchanged BLOB/TEXT columns; alarma and process_id are always in them".to_string(),
            image => format!("binlog_row_image = {image}: full before and after images are compared"),
        });
        lines.push(if self.lower_case_table_names == 0 {
            "lower_case_table_names = 0: events must name STATUS_PROCESS exactly".to_string()
        } else {
            format!(
                "lower_case_table_names = {}: table and database names in events match case-insensitively",
                self.lower_case_table_names
            )
        });
        if let Some(c) = self.log_bin_compress {
            lines.push(format!(
                "log_bin_compress = {}: compressed query and row events are inflated and decoded",
                on_off(c)
            ));
        }
        if let Some(c) = self.transaction_compression {
            lines.push(format!(
                "binlog_transaction_compression = {}: compressed transaction payloads are unpacked and decoded",
                on_off(c)
            ));
        }
        lines
    }
}

/// What the readiness check found.
#[derive(Debug, Clone)]
pub struct Readiness {
    pub flavor: Flavor,
    pub settings: Settings,
    /// The server the log belongs to.
    pub origin: Option<Origin>,
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

/// Reads the binlog settings (the flavour's own ones where it has them).
async fn settings(conn: &mut Conn, flavor: Flavor) -> Result<Settings, mysql_async::Error> {
    let vars: Option<(i64, String, String, i64)> = conn
        .query_first("SELECT @@GLOBAL.log_bin, @@GLOBAL.binlog_format, @@GLOBAL.binlog_row_image, @@lower_case_table_names")
        .await?;
    let (log_bin, format, row_image, lower) = vars.unwrap_or_default();
    let (log_bin_compress, transaction_compression) = match flavor {
        Flavor::MariaDb => (global_flag(conn, "log_bin_compress").await, None),
        Flavor::MySql => (
            None,
            global_flag(conn, "binlog_transaction_compression").await,
        ),
    };
    Ok(Settings {
        log_bin: log_bin == 1,
        format,
        row_image,
        lower_case_table_names: lower,
        log_bin_compress,
        transaction_compression,
    })
}

/// A boolean global variable; `None` where the server has no such variable.
async fn global_flag(conn: &mut Conn, name: &str) -> Option<bool> {
    let value: Option<i64> = conn
        .query_first(format!("SELECT @@GLOBAL.{name}"))
        .await
        .ok()
        .flatten();
    value.map(|v| v == 1)
}

/// The server's identity: `@@server_id`, and `@@server_uuid` where it has one (MySQL).
pub async fn origin(conn: &mut Conn, flavor: Flavor) -> Result<Origin, mysql_async::Error> {
    let server_id: Option<u32> = conn.query_first("SELECT @@server_id").await?;
    let server_uuid = match flavor {
        Flavor::MySql => {
            let uuid: Option<(Option<String>,)> = conn.query_first("SELECT @@server_uuid").await?;
            uuid.and_then(|(u,)| u)
        }
        Flavor::MariaDb => None,
    };
    Ok(Origin {
        server_id: server_id.unwrap_or(0),
        server_uuid,
    })
}

/// Checks that the server can serve the binlog to this account: log_bin on, ROW format,
/// REPLICATION SLAVE and BINLOG MONITOR / REPLICATION CLIENT. Each problem names its fix.
pub async fn readiness(conn: &mut Conn, user: &str) -> Result<Readiness, mysql_async::Error> {
    let version: Option<String> = conn.query_first("SELECT VERSION()").await?;
    let flavor = if version.unwrap_or_default().contains("MariaDB") {
        Flavor::MariaDb
    } else {
        Flavor::MySql
    };
    let settings = settings(conn, flavor).await?;
    let mut problems = Vec::new();
    if !settings.log_bin {
        problems.push(
            "the server's binary log is off: add `log_bin = mysql-bin` and `server_id = 1` under [mysqld] in my.cnf and restart the server"
                .to_string(),
        );
    }
    if !settings.format.eq_ignore_ascii_case("ROW") {
        problems.push(format!(
            "binlog_format is {}, not ROW (alarms would arrive as SQL text only): run `SET GLOBAL binlog_format = 'ROW'` and add `binlog_format = ROW` under [mysqld] in my.cnf",
            settings.format
        ));
    }
    let (position, files) = log_end(conn, flavor, user, settings.log_bin, &mut problems).await?;
    if !can_replicate(conn).await {
        problems.push(format!(
            "the account lacks REPLICATION SLAVE (needed to follow the binlog): run `GRANT REPLICATION SLAVE ON *.* TO '{user}'@'<host>'`"
        ));
    }
    let origin = origin(conn, flavor).await.ok();
    Ok(Readiness {
        flavor,
        settings,
        origin,
        position,
        files,
        problems,
    })
}

/// The current end of the log and the files the server has; a missing status privilege is a
/// problem with its fix.
async fn log_end(
    conn: &mut Conn,
    flavor: Flavor,
    user: &str,
    log_bin: bool,
    problems: &mut Vec<String>,
) -> Result<(Option<Position>, Vec<String>), mysql_async::Error> {
    if !log_bin {
        return Ok((None, Vec::new()));
    }
    let monitor_grant = match flavor {
        Flavor::MariaDb => "BINLOG MONITOR",
        Flavor::MySql => "REPLICATION CLIENT",
    };
    let position = match current_position(conn).await {
        Ok(p) => p,
        Err(mysql_async::Error::Server(e)) if matches!(e.code, 1227 | 1142 | 1044) => {
            problems.push(format!(
                "the account lacks {monitor_grant} (needed to read the binlog position): run `GRANT {monitor_grant} ON *.* TO '{user}'@'<host>'`"
            ));
            None
        }
        Err(e) => return Err(e),
    };
    let files = match position {
        Some(_) => binlog_files(conn).await.unwrap_or_default(),
        None => Vec::new(),
    };
    Ok((position, files))
}

/// True when the account's grants include REPLICATION SLAVE (or everything).
async fn can_replicate(conn: &mut Conn) -> bool {
    let grants: Vec<String> = conn.query("SHOW GRANTS").await.unwrap_or_default();
    grants.iter().any(|g| {
        let g = g.to_ascii_uppercase();
        g.contains("REPLICATION SLAVE")
            || g.contains("REPLICATION REPLICA")
            || g.starts_with("GRANT ALL PRIVILEGES ON *.*")
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
    let row: Option<mysql_async::Row> = match conn.query_first("SHOW MASTER STATUS").await {
        Err(mysql_async::Error::Server(e)) if e.code == 1064 => {
            conn.query_first("SHOW BINARY LOG STATUS").await?
        }
        other => other?,
    };
    Ok(row.and_then(|r| {
        let file: String = r.get_opt(0)?.ok()?;
        let pos: u64 = r.get_opt(1)?.ok()?;
        // MySQL's fifth column: the GTID set executed up to here.
        let gtid_set = r
            .get_opt::<String, usize>(4)
            .and_then(Result::ok)
            .map(|s| s.chars().filter(|c| !c.is_whitespace()).collect::<String>())
            .filter(|s| super::gtid_set::is_set(s));
        Some(Position {
            file,
            pos,
            gtid: None,
            gtid_set,
        })
    }))
}

/// Names of the binlog files the server still has.
pub async fn binlog_files(conn: &mut Conn) -> Result<Vec<String>, mysql_async::Error> {
    let rows: Vec<mysql_async::Row> = conn.query("SHOW BINARY LOGS").await?;
    Ok(rows
        .into_iter()
        .filter_map(|r| r.get_opt::<String, usize>(0).and_then(Result::ok))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_names_each_setting_and_what_is_done() {
        let s = Settings {
            log_bin: true,
            format: "ROW".into(),
            row_image: "FULL".into(),
            lower_case_table_names: 1,
            log_bin_compress: Some(true),
            transaction_compression: None,
        };
        let text = s.report().join("\n");
        assert!(text.contains("STATEMENT changes to STATUS_PROCESS makes the daemon sweep at once"));
        assert!(text.contains("binlog_row_image = FULL"));
        assert!(text.contains("lower_case_table_names = 1: table and database names in events match case-insensitively"));
        assert!(
            text.contains("log_bin_compress = ON: compressed query and row events are inflated")
        );
        assert!(!text.contains("binlog_transaction_compression"));
        let mysql = Settings {
            log_bin_compress: None,
            transaction_compression: Some(false),
            lower_case_table_names: 0,
            ..s
        };
        let text = mysql.report().join("\n");
        assert!(text.contains("binlog_transaction_compression = OFF"));
        assert!(text.contains("must name STATUS_PROCESS exactly"));
    }
}
