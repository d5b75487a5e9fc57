//! `monitor_service status`: processes, alarms, breaker states and last notes, as a table or JSON.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Instant, SystemTime};

use mysql_async::prelude::Queryable;

use crate::config::Config;
use crate::db::{Db, DbError};
use crate::state::StateDir;
use crate::supervisor::breaker::{self, State};
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
}

/// `process_id, process_name, alarma, notes` as read (names and notes as raw bytes).
type StatusProcessRow = (i64, Option<Vec<u8>>, i64, Option<Vec<u8>>);

/// Reads everything `status` shows. The breaker file is read as saved by the daemon.
pub async fn collect(config: &Config) -> Result<(Vec<Row>, Vec<String>), DbError> {
    let mut remarks = Vec::new();
    let breakers =
        match StateDir::open(&config.monitor.state_dir).and_then(|st| st.read(BREAKER_FILE)) {
            Ok(Some(text)) => {
                let (now, wall) = (Instant::now(), SystemTime::now());
                match breaker::from_text(&text, now, wall, config.monitor.circuit_reset_time) {
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
            Ok(None) => BTreeMap::new(),
            Err(e) => {
                remarks.push(format!(
                    "cannot read {}: {e}",
                    config.monitor.state_dir.join(BREAKER_FILE).display()
                ));
                BTreeMap::new()
            }
        };
    let db = Db::new(&config.database, &config.monitor.history_table);
    let mut conn = db.conn().await?;
    let rows: Vec<StatusProcessRow> = conn
        .query(
            "SELECT s.process_id, p.process_name, s.alarma, s.notes FROM STATUS_PROCESS s \
             LEFT JOIN PROCESE p ON p.process_id = s.process_id ORDER BY s.process_id",
        )
        .await
        .map_err(|source| DbError::Query {
            what: "reading STATUS_PROCESS",
            source,
            hint: "",
        })?;
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
            Row {
                process_id: id,
                name: text(name),
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
            }
        })
        .collect();
    Ok((out, remarks))
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
    let cells: Vec<[String; 6]> = rows
        .iter()
        .map(|r| {
            let breaker = match (&r.breaker_until, r.failures) {
                (Some(u), f) => format!("open until {u} ({f} failures)"),
                (None, 0) => r.breaker.to_string(),
                (None, f) => format!("{} ({f} failures)", r.breaker),
            };
            [
                r.process_id.to_string(),
                r.name.as_deref().map_or_else(
                    || "(no PROCESE row)".into(),
                    |n| n.escape_debug().to_string(),
                ),
                r.alarm.to_string(),
                breaker,
                r.last_restart.clone().unwrap_or_else(|| "-".into()),
                r.notes
                    .as_deref()
                    .map_or_else(|| "-".into(), |n| n.escape_debug().to_string()),
            ]
        })
        .collect();
    let head = ["ID", "NAME", "ALARM", "BREAKER", "LAST RESTART", "NOTES"];
    let mut width = head.map(str::len);
    for c in &cells {
        for (w, s) in width.iter_mut().zip(c.iter()).take(5) {
            *w = (*w).max(s.chars().count());
        }
    }
    let line = |out: &mut String, c: [&str; 6]| {
        for (i, s) in c.iter().enumerate() {
            if i < 5 {
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
            [&c[0], &c[1], &c[2], &c[3], &c[4], &c[5]].map(String::as_str),
        );
    }
    out
}

/// JSON: an array of objects, one per process.
pub fn json(rows: &[Row]) -> String {
    fn s(v: &Option<String>) -> String {
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
    let items: Vec<String> = rows
        .iter()
        .map(|r| {
            format!(
                "{{\"process_id\":{},\"name\":{},\"alarm\":{},\"breaker\":\"{}\",\"breaker_until\":{},\"failures\":{},\"notes\":{},\"last_restart\":{}}}",
                r.process_id,
                s(&r.name),
                r.alarm,
                r.breaker,
                s(&r.breaker_until),
                r.failures,
                s(&r.notes),
                s(&r.last_restart)
            )
        })
        .collect();
    format!("[{}]\n", items.join(",\n "))
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
        }
    }

    #[test]
    fn table_has_a_header_and_one_line_per_process() {
        let t = table(&[row()]);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[0].starts_with("ID"));
        assert!(lines[1].contains("open until 2026-11-24 10:45:02 (3 failures)"));
    }

    #[test]
    fn json_escapes_strings() {
        let j = json(&[row()]);
        assert!(j.contains(r#""notes":"say \"hi\"\\\u000a""#), "{j}");
        assert!(j.contains(r#""last_restart":null"#));
    }
}
