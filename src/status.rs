//! `monitor_service status`: processes, alarms, breaker states, silences and last notes, as a
//! table or JSON; the state comes from the running daemon when it answers, else from the files
//! in `state_dir`. Also the host-scoping line (rows no live daemon handles) and
//! `status --hosts`: every daemon in the hosts table, stale ones marked.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Instant, SystemTime};

use mysql_async::prelude::{Query, Queryable, WithParams};
use mysql_async::Conn;

use crate::config::Config;
use crate::db::{Db, DbError};
use crate::hosts::{self, HostRow};
use crate::scope::{self, Unowned};
use crate::silence::{Silences, SILENCE_FILE};
use crate::state::StateDir;
use crate::supervisor::breaker::{self, Breaker, State};
use crate::supervisor::{wall_str, BREAKER_FILE};

/// One process as `status` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub process_id: i64,
    pub name: Option<String>,
    pub alarm: i64,
    /// `closed`, `open` or `half-open`.
    pub breaker: &'static str,
    /// End of the open period (local time) when open.
    pub breaker_until: Option<String>,
    pub failures: u32,
    pub notes: Option<String>,
    /// `YYYY-MM-DD HH:MM:SS outcome` of the last history row, when the history can be read.
    pub last_restart: Option<String>,
    /// End of an operator's silence (local time) when one applies.
    pub silenced_until: Option<String>,
    /// A procedure is under way (known only when the daemon answered).
    pub restarting: bool,
}

/// The daemon's state as `status` shows it: the breaker and silence files' text (as saved, or
/// as the running daemon has it now) and the procedures under way.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Saved {
    pub breakers: Option<String>,
    pub silences: Option<String>,
    pub busy: Vec<i64>,
    /// One line about where this came from, e.g. `daemon running (pid 812)`.
    pub source: String,
}

impl Saved {
    /// The files in `state_dir`, as a stopped daemon left them.
    pub fn from_files(config: &Config, why: &str) -> (Saved, Vec<String>) {
        let mut remarks = Vec::new();
        let dir = &config.monitor.state_dir;
        let mut read = |name: &str| match StateDir::open(dir).and_then(|st| st.read(name)) {
            Ok(t) => t,
            Err(e) => {
                remarks.push(format!("cannot read {}: {e}", dir.join(name).display()));
                None
            }
        };
        let saved = Saved {
            breakers: read(BREAKER_FILE),
            silences: read(SILENCE_FILE),
            busy: Vec::new(),
            source: format!("{why}; state as saved in {}", dir.display()),
        };
        (saved, remarks)
    }
}

/// `process_id, process_name, alarma, notes` as read (names and notes as raw bytes).
type StatusProcessRow = (i64, Option<Vec<u8>>, i64, Option<Vec<u8>>);

/// Reads everything `status` shows: the rows from the database, the state from `saved`.
pub async fn collect(config: &Config, saved: &Saved) -> Result<(Vec<Row>, Vec<String>), DbError> {
    let mut remarks = Vec::new();
    let (now, wall) = (Instant::now(), SystemTime::now());
    let breakers: BTreeMap<i64, (Breaker, Option<String>)> = match &saved.breakers {
        Some(text) => {
            match breaker::from_text(text, now, wall, config.monitor.circuit_reset_time) {
                Ok(b) => b
                    .into_iter()
                    .map(|(id, b)| (id, (b, breaker_until(b.state))))
                    .collect(),
                Err(e) => {
                    remarks.push(format!("breaker state unreadable: {e}"));
                    BTreeMap::new()
                }
            }
        }
        None => BTreeMap::new(),
    };
    let mut silences = match saved
        .silences
        .as_deref()
        .map(|t| Silences::from_text(t, wall))
    {
        Some(Ok(s)) => s,
        Some(Err(e)) => {
            remarks.push(format!("silences unreadable: {e}"));
            Silences::default()
        }
        None => Silences::default(),
    };
    let db = Db::new(&config.database, &config.monitor.history_table);
    let mut conn = db.conn().await?;
    let rows = own_rows(&mut conn, &config.monitor.host).await?;
    let history = format!(
        "SELECT h.process_id, DATE_FORMAT(h.finished_at, '%Y-%m-%d %H:%i:%s'), h.outcome FROM `{t}` h \
         JOIN (SELECT process_id, MAX(id) AS id FROM `{t}` GROUP BY process_id) l ON l.id = h.id",
        t = config.monitor.history_table
    );
    let last: BTreeMap<i64, String> = match conn.query::<(i64, String, String), _>(history).await {
        Ok(v) => v
            .into_iter()
            .map(|(id, at, o)| (id, format!("{at} {o}")))
            .collect(),
        Err(e) => {
            remarks.push(format!("last restarts not shown: {e}"));
            BTreeMap::new()
        }
    };
    drop(conn);
    db.close().await;
    let text = |b: Option<Vec<u8>>| b.map(|b| String::from_utf8_lossy(&b).into_owned());
    let out = rows
        .into_iter()
        .map(|(id, name, alarm, notes)| {
            let (b, until) = breakers
                .get(&id)
                .cloned()
                .unwrap_or((breaker::Breaker::default(), None));
            let name = text(name);
            let silenced_until = silences
                .check(id, name.as_deref().unwrap_or_default(), wall)
                .map(|s| local(s.until));
            Row {
                process_id: id,
                name,
                alarm,
                breaker: match b.state {
                    State::Closed => "closed",
                    State::Open { .. } => "open",
                    State::HalfOpen => "half-open",
                },
                breaker_until: until,
                failures: b.failures,
                notes: text(notes),
                last_restart: last.get(&id).cloned(),
                silenced_until,
                restarting: saved.busy.contains(&id),
            }
        })
        .collect();
    Ok((out, remarks))
}

/// STATUS_PROCESS's rows that are this host's (every row without PROCESE's host column).
async fn own_rows(conn: &mut Conn, host: &str) -> Result<Vec<StatusProcessRow>, DbError> {
    let column = scope::column(conn)
        .await
        .map_err(read_err("looking for PROCESE's host column"))?;
    let sql = scope::status_sql(column);
    let read = if column.present() {
        sql.with((scope::normalize(host),)).fetch(conn).await
    } else {
        sql.fetch(conn).await
    };
    read.map_err(read_err("reading STATUS_PROCESS"))
}

fn read_err(what: &'static str) -> impl Fn(mysql_async::Error) -> DbError {
    move |source| DbError::Query {
        what,
        source,
        hint: "",
    }
}

/// Counts the processes no live daemon handles (see [`scope::unowned`]); the live daemons come
/// from the hosts table when it can be read.
pub async fn count_unowned(db: &Db, config: &Config) -> Result<Unowned, DbError> {
    let mut conn = db.conn().await?;
    let live = hosts::live(&mut conn, &config.monitor.hosts_table)
        .await
        .ok()
        .flatten();
    scope::unowned(&mut conn, &config.monitor.host, live.as_ref())
        .await
        .map_err(read_err("counting the processes of no live daemon"))
}

/// The host-scoping line of `status`, e.g. `host web01: 2 process(es) with no host and 0 naming
/// no live daemon are left alone; other hosts' processes are not listed`.
pub async fn scope_line(config: &Config) -> Result<String, DbError> {
    let db = Db::new(&config.database, &config.monitor.history_table);
    let counted = count_unowned(&db, config).await;
    db.close().await;
    let counted = counted?;
    let listed = if counted.column {
        "; other hosts' processes are not listed"
    } else {
        ""
    };
    Ok(format!(
        "host {}: {}{listed}",
        config.monitor.host,
        counted.describe()
    ))
}

/// Every row of the hosts table; `Ok(None)` when there is no such table.
pub async fn hosts(config: &Config) -> Result<Option<Vec<HostRow>>, DbError> {
    let db = Db::new(&config.database, &config.monitor.history_table);
    let listed = match db.conn().await {
        Ok(mut conn) => hosts::list(&mut conn, &config.monitor.hosts_table)
            .await
            .map_err(read_err("reading the hosts table")),
        Err(e) => Err(e),
    };
    db.close().await;
    listed
}

/// `status --hosts` as a table: one daemon per line, stale ones marked.
pub fn hosts_table(rows: &[HostRow]) -> String {
    let head = [
        "HOST",
        "STATE",
        "VERSION",
        "STARTED (UTC)",
        "LAST SEEN (UTC)",
        "BINLOG",
        "LAG",
        "BREAKERS OPEN",
        "RUNNING",
    ];
    let cells: Vec<[String; 9]> = rows
        .iter()
        .map(|r| {
            [
                r.host.escape_debug().to_string(),
                if r.stale() {
                    format!("stale ({}s)", r.age_seconds)
                } else {
                    "live".to_string()
                },
                r.version.escape_debug().to_string(),
                r.started_at.clone(),
                r.last_seen.clone(),
                r.binlog_source
                    .as_deref()
                    .map_or_else(|| "sweeps only".into(), |b| b.escape_debug().to_string()),
                r.binlog_lag.map_or_else(|| "-".into(), |l| format!("{l}s")),
                r.breakers_open.to_string(),
                r.procedures_running.to_string(),
            ]
        })
        .collect();
    let mut width = head.map(str::len);
    for c in &cells {
        for (w, s) in width.iter_mut().zip(c.iter()) {
            *w = (*w).max(s.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |c: Vec<&str>| {
        let text: Vec<String> = c
            .iter()
            .enumerate()
            .map(|(i, s)| format!("{s:<w$}", w = width[i]))
            .collect();
        let _ = writeln!(out, "{}", text.join("  ").trim_end());
    };
    line(head.to_vec());
    for c in &cells {
        line(c.iter().map(String::as_str).collect());
    }
    out
}

/// `status --hosts --json`: an array of objects, one per daemon.
pub fn hosts_json(rows: &[HostRow]) -> String {
    let items: Vec<String> = rows
        .iter()
        .map(|r| {
            format!(
                "{{\"host\":{},\"version\":{},\"started_at\":{},\"last_seen\":{},\"age_seconds\":{},\"stale\":{},\"binlog_source\":{},\"binlog_lag\":{},\"breakers_open\":{},\"procedures_running\":{}}}",
                json_str(&Some(r.host.clone())),
                json_str(&Some(r.version.clone())),
                json_str(&Some(r.started_at.clone())),
                json_str(&Some(r.last_seen.clone())),
                r.age_seconds,
                r.stale(),
                json_str(&r.binlog_source),
                r.binlog_lag.map_or_else(|| "null".into(), |l| l.to_string()),
                r.breakers_open,
                r.procedures_running
            )
        })
        .collect();
    format!("[{}]\n", items.join(",\n "))
}

fn local(t: SystemTime) -> String {
    chrono::DateTime::<chrono::Local>::from(t)
        .format("%Y-%m-%d %H:%M:%S")
        .to_string()
}

fn breaker_until(state: State) -> Option<String> {
    match state {
        State::Open { until, .. } => Some(wall_str(until)),
        _ => None,
    }
}

/// A plain-text table, one process per line.
pub fn table(rows: &[Row]) -> String {
    let mut out = String::new();
    let cells: Vec<[String; 7]> = rows
        .iter()
        .map(|r| {
            let breaker = match (&r.breaker_until, r.failures) {
                (Some(u), f) => format!("open until {u} ({f} failures)"),
                (None, 0) => r.breaker.to_string(),
                (None, f) => format!("{} ({f} failures)", r.breaker),
            };
            let alarm = match r.restarting {
                true => format!("{} restarting", r.alarm),
                false => r.alarm.to_string(),
            };
            [
                r.process_id.to_string(),
                r.name.as_deref().map_or_else(
                    || "(no PROCESE row)".into(),
                    |n| n.escape_debug().to_string(),
                ),
                alarm,
                breaker,
                r.silenced_until
                    .as_ref()
                    .map_or_else(|| "-".into(), |u| format!("until {u}")),
                r.last_restart.clone().unwrap_or_else(|| "-".into()),
                r.notes
                    .as_deref()
                    .map_or_else(|| "-".into(), |n| n.escape_debug().to_string()),
            ]
        })
        .collect();
    let head = [
        "ID",
        "NAME",
        "ALARM",
        "BREAKER",
        "SILENCED",
        "LAST RESTART",
        "NOTES",
    ];
    let mut width = head.map(str::len);
    for c in &cells {
        for (w, s) in width.iter_mut().zip(c.iter()).take(6) {
            *w = (*w).max(s.chars().count());
        }
    }
    let line = |out: &mut String, c: [&str; 7]| {
        for (i, s) in c.iter().enumerate() {
            if i < 6 {
                let _ = write!(out, "{s:<w$}  ", w = width[i]);
            } else {
                let _ = writeln!(out, "{s}");
            }
        }
    };
    line(&mut out, head);
    for c in &cells {
        line(
            &mut out,
            [&c[0], &c[1], &c[2], &c[3], &c[4], &c[5], &c[6]].map(String::as_str),
        );
    }
    out
}

/// JSON: an array of objects, one per process.
pub fn json(rows: &[Row]) -> String {
    let s = json_str;
    let items: Vec<String> = rows
        .iter()
        .map(|r| {
            format!(
                "{{\"process_id\":{},\"name\":{},\"alarm\":{},\"breaker\":\"{}\",\"breaker_until\":{},\"failures\":{},\"notes\":{},\"last_restart\":{},\"silenced_until\":{},\"restarting\":{}}}",
                r.process_id,
                s(&r.name),
                r.alarm,
                r.breaker,
                s(&r.breaker_until),
                r.failures,
                s(&r.notes),
                s(&r.last_restart),
                s(&r.silenced_until),
                r.restarting
            )
        })
        .collect();
    format!("[{}]\n", items.join(",\n "))
}

/// A JSON string (or `null`).
fn json_str(v: &Option<String>) -> String {
    match v {
        None => "null".into(),
        Some(t) => {
            let mut o = String::from("\"");
            for c in t.chars() {
                match c {
                    '"' => o.push_str("\\\""),
                    '\\' => o.push_str("\\\\"),
                    c if (c as u32) < 0x20 => {
                        let _ = write!(o, "\\u{:04x}", c as u32);
                    }
                    c => o.push(c),
                }
            }
            o.push('"');
            o
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row() -> Row {
        Row {
            process_id: 3,
            name: Some("nginx".into()),
            alarm: 1,
            breaker: "open",
            breaker_until: Some("2026-11-24 10:45:02".into()),
            failures: 3,
            notes: Some("say \"hi\"\\\n".into()),
            last_restart: None,
            silenced_until: Some("2026-11-24 12:00:00".into()),
            restarting: true,
        }
    }

    #[test]
    fn table_has_a_header_and_one_line_per_process() {
        let t = table(&[row()]);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[0].starts_with("ID"));
        assert!(lines[1].contains("open until 2026-11-24 10:45:02 (3 failures)"));
        assert!(lines[0].contains("SILENCED"));
        assert!(lines[1].contains("until 2026-11-24 12:00:00"), "{t}");
        assert!(lines[1].contains("1 restarting"), "{t}");
    }

    fn host(name: &str, age: i64) -> HostRow {
        HostRow {
            host: name.into(),
            version: "0.1.0".into(),
            started_at: "2026-12-07 10:00:00".into(),
            last_seen: "2026-12-07 10:00:10".into(),
            age_seconds: age,
            binlog_source: Some("db:3306".into()),
            binlog_lag: Some(0),
            breakers_open: 1,
            procedures_running: 2,
        }
    }

    #[test]
    fn hosts_table_marks_stale_daemons() {
        let t = hosts_table(&[host("alpha", 3), host("beta", 95)]);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 3, "{t}");
        assert!(lines[0].starts_with("HOST"));
        assert!(
            lines[1].starts_with("alpha") && lines[1].contains("live"),
            "{t}"
        );
        assert!(
            lines[2].starts_with("beta") && lines[2].contains("stale (95s)"),
            "{t}"
        );
    }

    #[test]
    fn hosts_json_has_the_stale_flag() {
        let j = hosts_json(&[host("alpha", 3), host("beta", 95)]);
        assert!(
            j.contains(r#""host":"alpha""#) && j.contains(r#""stale":false"#),
            "{j}"
        );
        assert!(
            j.contains(r#""host":"beta""#) && j.contains(r#""stale":true"#),
            "{j}"
        );
        assert!(
            j.contains(r#""binlog_lag":0,"breakers_open":1,"procedures_running":2}"#),
            "{j}"
        );
    }

    #[test]
    fn json_escapes_strings() {
        let j = json(&[row()]);
        assert!(j.contains(r#""notes":"say \"hi\"\\\u000a""#), "{j}");
        assert!(j.contains(r#""last_restart":null"#));
        assert!(
            j.contains(r#""silenced_until":"2026-11-24 12:00:00","restarting":true}"#),
            "{j}"
        );
    }
}
