//! Where the stream starts: the saved position when it belongs to this server and the server
//! still has it, else the current end (with a WARNING that says why; the start-up sweep then
//! catches what was missed). A position is bound to its server by `server_id`, MySQL's
//! `server_uuid`, and on MariaDB by the GTID state the log has at that place.

use mysql_async::prelude::Queryable;
use tracing::{info, warn};

use super::connect::gtid_state_at;
use super::gtid;
use super::position::{Origin, Position, Saved};
use super::readiness::{Flavor, Readiness};
use crate::db::Db;

/// What a saved position is worth on this server.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Resume,
    /// Its file is gone (purged).
    Purged,
    /// It came from another server (replaced, rebuilt, restored): why.
    Replaced(String),
}

/// Judges a saved position against the server: its origin, its files and (MariaDB) the GTID
/// state the server's log has at the saved place (`None` when it has none there).
pub fn judge(
    saved: &Saved,
    server: Option<&Origin>,
    files: &[String],
    gtid_there: Option<Option<&str>>,
) -> Verdict {
    if let (Some(was), Some(is)) = (&saved.origin, server) {
        if was.server_id != is.server_id {
            return Verdict::Replaced(format!(
                "it was saved from server_id {}, the server is server_id {}",
                was.server_id, is.server_id
            ));
        }
        if let (Some(a), Some(b)) = (&was.server_uuid, &is.server_uuid) {
            if a != b {
                return Verdict::Replaced(format!(
                    "it was saved from server_uuid {a}, the server is {b}"
                ));
            }
        }
    }
    if !files.contains(&saved.at.file) {
        return Verdict::Purged;
    }
    if let (Some(want), Some(there)) = (&saved.at.gtid, gtid_there) {
        let Some(there) = there else {
            return Verdict::Replaced(format!(
                "the server's log has no event boundary at {}",
                saved.at
            ));
        };
        let have: Vec<&str> = there.split(',').map(str::trim).collect();
        if !want.split(',').all(|g| have.contains(&g.trim())) {
            return Verdict::Replaced(format!(
                "the server's log has GTID state {there} at {}, the saved position had {want}",
                saved.at
            ));
        }
    }
    Verdict::Resume
}

/// The position to start at, from the saved one (if any) and the readiness facts.
pub async fn start_position(db: &Db, readiness: &Readiness, saved: Option<Saved>) -> Position {
    let current = readiness.position.clone().unwrap_or(Position {
        file: String::new(),
        pos: 4,
        gtid: None,
        gtid_set: None,
    });
    let Some(saved) = saved else {
        return current;
    };
    let gtid_there = match (readiness.flavor, &saved.at.gtid) {
        (Flavor::MariaDb, Some(_)) if readiness.files.contains(&saved.at.file) => {
            match db.conn().await {
                Ok(mut conn) => Some(gtid_state_at(&mut conn, &saved.at).await),
                Err(_) => None,
            }
        }
        _ => None,
    };
    let verdict = judge(
        &saved,
        readiness.origin.as_ref(),
        &readiness.files,
        gtid_there.as_ref().map(Option::as_deref),
    );
    match verdict {
        Verdict::Resume => {
            info!(position = %saved.at, "resuming the binlog at the saved position");
            saved.at
        }
        Verdict::Purged => {
            warn!(saved = %saved.at, current = %current, "the saved binlog position is no longer on the server (purged?); starting at the current end, the start-up sweep catches what was missed");
            current
        }
        Verdict::Replaced(why) if has_history(db, readiness, &saved).await => {
            warn!(saved = %saved.at, reason = %why, "the saved binlog position comes from another server, but this one has every transaction it had seen (failover?); resuming by GTID");
            saved.at
        }
        Verdict::Replaced(why) => {
            warn!(saved = %saved.at, current = %current, reason = %why, "the saved binlog position belongs to another server (replaced or rebuilt?); starting at the current end, the start-up sweep catches what was missed");
            current
        }
    }
}

/// True when this server holds every transaction the saved position had seen, so the stream
/// can resume from its GTIDs (a replica swapped for another of the same primary, or a replica
/// promoted in the old server's place). MySQL: the GTID set is a subset of `gtid_executed`.
/// MariaDB (GTIDs name no server, so a rebuilt server keeping the old server_id would look the
/// same): only on a server with another server_id, whose binlog state has passed the saved one.
async fn has_history(db: &Db, readiness: &Readiness, saved: &Saved) -> bool {
    let Ok(mut conn) = db.conn().await else {
        return false;
    };
    match readiness.flavor {
        Flavor::MySql => match saved.at.gtid_set.as_deref() {
            Some(set) => {
                let subset: Option<(Option<i64>,)> = conn
                    .exec_first("SELECT GTID_SUBSET(?, @@GLOBAL.gtid_executed)", (set,))
                    .await
                    .ok()
                    .flatten();
                subset.and_then(|(s,)| s) == Some(1)
            }
            None => false,
        },
        Flavor::MariaDb => {
            let other_server = match (&saved.origin, &readiness.origin) {
                (Some(was), Some(is)) => was.server_id != is.server_id,
                _ => false,
            };
            let Some(state) = saved
                .at
                .gtid
                .as_deref()
                .filter(|g| other_server && gtid::is_state(g))
            else {
                return false;
            };
            let now: Option<String> = conn
                .query_first("SELECT @@GLOBAL.gtid_binlog_state")
                .await
                .ok()
                .flatten();
            now.is_some_and(|now| gtid::covers(&now, state))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn saved(gtid: Option<&str>, origin: Option<(u32, Option<&str>)>) -> Saved {
        Saved {
            at: Position {
                file: "mysql-bin.000001".into(),
                pos: 900,
                gtid: gtid.map(str::to_string),
                gtid_set: None,
            },
            origin: origin.map(|(server_id, u)| Origin {
                server_id,
                server_uuid: u.map(str::to_string),
            }),
        }
    }

    fn origin(id: u32, uuid: Option<&str>) -> Origin {
        Origin {
            server_id: id,
            server_uuid: uuid.map(str::to_string),
        }
    }

    #[test]
    fn a_position_from_another_server_is_not_resumed() {
        let files = vec!["mysql-bin.000001".to_string()];
        let s = saved(None, Some((1, Some("aaaa"))));
        assert!(matches!(
            judge(&s, Some(&origin(1, Some("bbbb"))), &files, None),
            Verdict::Replaced(r) if r.contains("server_uuid aaaa")
        ));
        assert!(matches!(
            judge(&s, Some(&origin(2, Some("aaaa"))), &files, None),
            Verdict::Replaced(r) if r.contains("server_id 1")
        ));
        assert_eq!(
            judge(&s, Some(&origin(1, Some("aaaa"))), &files, None),
            Verdict::Resume
        );
    }

    #[test]
    fn mariadb_positions_are_bound_by_the_gtid_state_there() {
        let files = vec!["mysql-bin.000001".to_string()];
        let s = saved(Some("0-1-42"), Some((1, None)));
        let me = origin(1, None);
        assert_eq!(
            judge(&s, Some(&me), &files, Some(Some("0-1-42,1-1-7"))),
            Verdict::Resume
        );
        assert!(matches!(
            judge(&s, Some(&me), &files, Some(Some("0-1-12"))),
            Verdict::Replaced(_)
        ));
        // Not an event boundary (or past the end) of the log the server has.
        assert!(matches!(
            judge(&s, Some(&me), &files, Some(None)),
            Verdict::Replaced(_)
        ));
        // Could not be asked: trusted as before.
        assert_eq!(judge(&s, Some(&me), &files, None), Verdict::Resume);
    }

    #[test]
    fn old_unbound_files_are_trusted_while_their_file_exists() {
        let s = saved(None, None);
        let me = origin(9, Some("x"));
        assert_eq!(
            judge(&s, Some(&me), &["mysql-bin.000001".into()], None),
            Verdict::Resume
        );
        assert_eq!(
            judge(&s, Some(&me), &["mysql-bin.000002".into()], None),
            Verdict::Purged
        );
    }
}
