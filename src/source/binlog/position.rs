//! Places in the binary log: the [`Position`] the source is at, the saved position file
//! (`file pos [gtid]`, then the server it came from) and binlog file names from ROTATE events.

/// A place in the binary log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    pub file: String,
    pub pos: u64,
    /// GTID state at this place: MariaDB `domain-server-seq` (comma separated when the server
    /// has several domains), MySQL `uuid:gno` of the last transaction.
    pub gtid: Option<String>,
    /// MySQL: every transaction the log holds up to here (`@@gtid_executed` form), when known.
    pub gtid_set: Option<String>,
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
        Some(Position {
            file,
            pos,
            gtid,
            gtid_set: None,
        })
    }
}

/// The server a position was read from: a rebuilt or restored server reuses file names, so a
/// position only means something on the server it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub server_id: u32,
    /// MySQL's `@@server_uuid` (new for every data dir); MariaDB has none.
    pub server_uuid: Option<String>,
}

/// The position file: the position, then (since the daemon binds positions to servers) one
/// `server_id N` line and, on MySQL, one `server_uuid U` line and one `gtid_set S` line. A file of the old one-line
/// format has no origin: it is unbound and trusted when its file is still on the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Saved {
    pub at: Position,
    pub origin: Option<Origin>,
}

impl Saved {
    pub fn to_text(&self) -> String {
        let mut text = self.at.to_text();
        if let Some(o) = &self.origin {
            text.push_str(&format!("server_id {}\n", o.server_id));
            if let Some(u) = &o.server_uuid {
                text.push_str(&format!("server_uuid {u}\n"));
            }
        }
        if let Some(set) = &self.at.gtid_set {
            let set: String = set.chars().filter(|c| !c.is_whitespace()).collect();
            text.push_str(&format!("gtid_set {set}\n"));
        }
        text
    }

    /// Reads either format; `None` when the text is neither.
    pub fn from_text(text: &str) -> Option<Saved> {
        let mut lines = text.lines().filter(|l| !l.trim().is_empty());
        let mut at = Position::from_text(lines.next()?)?;
        let mut server_id = None;
        let mut server_uuid = None;
        for line in lines {
            match line.split_once(' ')? {
                ("server_id", v) => server_id = Some(v.trim().parse().ok()?),
                ("server_uuid", v) if !v.trim().is_empty() => {
                    server_uuid = Some(v.trim().to_string())
                }
                ("gtid_set", v) if !v.trim().is_empty() => at.gtid_set = Some(v.trim().to_string()),
                _ => return None,
            }
        }
        if server_uuid.is_some() && server_id.is_none() {
            return None;
        }
        Some(Saved {
            at,
            origin: server_id.map(|server_id| Origin {
                server_id,
                server_uuid,
            }),
        })
    }
}

pub(super) fn valid_file_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

/// A binlog file name from a ROTATE event. The artificial ROTATE at the start of a stream
/// arrives before the format description, so its checksum bytes can be glued to the name:
/// when the name starts with a file the server has (or the one asked for), that file is meant.
pub fn rotate_name(raw: &[u8], known: &[String], artificial: bool) -> String {
    if artificial {
        if let Some(f) = known
            .iter()
            .filter(|f| !f.is_empty() && raw.starts_with(f.as_bytes()))
            .max_by_key(|f| f.len())
        {
            return f.clone();
        }
    }
    let end = raw
        .iter()
        .position(|b| !(b.is_ascii_alphanumeric() || b"._-".contains(b)))
        .unwrap_or(raw.len());
    String::from_utf8_lossy(&raw[..end]).into_owned()
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
            gtid_set: None,
        };
        assert_eq!(Position::from_text(&p.to_text()), Some(p.clone()));
        let q = Position { gtid: None, ..p };
        assert_eq!(Position::from_text(&q.to_text()), Some(q));
        for junk in ["", "mysql-bin.000004", "f x", "a/b 4", "f 1 g extra"] {
            assert_eq!(Position::from_text(junk), None, "{junk:?}");
        }
    }

    #[test]
    fn saved_reads_old_one_line_files_as_unbound_and_round_trips_origins() {
        let old = Saved::from_text("mysql-bin.000004 1234 0-1-42\n").unwrap();
        assert_eq!(old.origin, None);
        assert_eq!(old.at.pos, 1234);
        let mut at = old.at.clone();
        at.gtid_set = Some("3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5".into());
        let bound = Saved {
            at,
            origin: Some(Origin {
                server_id: 7,
                server_uuid: Some("3e11fa47-71ca-11e1-9e33-c80aa9429562".into()),
            }),
        };
        assert_eq!(Saved::from_text(&bound.to_text()), Some(bound.clone()));
        let mariadb = Saved {
            origin: Some(Origin {
                server_id: 1,
                server_uuid: None,
            }),
            ..bound
        };
        assert_eq!(Saved::from_text(&mariadb.to_text()), Some(mariadb));
        for junk in [
            "mysql-bin.000004 1\nserver_id x\n",
            "mysql-bin.000004 1\ncolour blue\n",
            "mysql-bin.000004 1\nserver_uuid u\n",
        ] {
            assert_eq!(Saved::from_text(junk), None, "{junk:?}");
        }
    }

    #[test]
    fn rotate_name_strips_glued_checksum_bytes() {
        let mut raw = b"mysql-bin.000004".to_vec();
        raw.extend_from_slice(&[0x31, 0x9a, 0x00, 0x7f]);
        let known = vec!["mysql-bin.000003".to_string(), "mysql-bin.000004".into()];
        assert_eq!(rotate_name(&raw, &known, true), "mysql-bin.000004");
        assert_eq!(rotate_name(&raw, &[], true), "mysql-bin.0000041");
        assert_eq!(
            rotate_name(b"mysql-bin.000005", &known, false),
            "mysql-bin.000005"
        );
    }
}
