//! Alarms owed a clear: a restart that succeeded but whose clear could not be written is
//! remembered (in memory and in `state_dir/owed_clears`, so a daemon restart keeps it), and the
//! next look at the process writes the clear instead of restarting it again; an owed clear
//! older than `circuit_reset_time` is dropped and the alarm handled as a new one. Also the
//! claim checks around a procedure and how a database error maps to [`Handled`].

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tracing::{debug, info, warn};

use super::breaker::{records, ParseError};
use super::Handled;
use crate::command;
use crate::db::{Claim, Cleared, Db, DbError};
use crate::state::StateDir;

/// Name of the owed clears file in `state_dir`.
pub const OWED_FILE: &str = "owed_clears";

impl Handled {
    /// What a failed database call makes of a procedure: refused by the server (retried with
    /// backoff, said once per kind), or the database unreachable.
    pub(crate) fn from_db(e: &DbError) -> Handled {
        if e.is_refusal() {
            Handled::QueryRefused
        } else {
            Handled::DbUnavailable
        }
    }
}

/// A clear owed to one process: the notes of its successful restart, and when it was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owed {
    pub name: String,
    pub notes: String,
    /// Wall-clock time the restart succeeded (the clear was first tried).
    pub since: SystemTime,
}

impl Owed {
    /// True when the clear has been owed longer than `limit` at `now`: it is dropped and the
    /// alarm handled as a new one. A `since` in the future (clock set back) is not expired.
    pub fn expired(&self, now: SystemTime, limit: Duration) -> bool {
        now.duration_since(self.since).is_ok_and(|age| age > limit)
    }
}

/// The owed clears, by process_id, and how long one is kept.
#[derive(Debug)]
struct Book {
    owed: HashMap<i64, Owed>,
    limit: Duration,
}

/// The clears owed, by process_id; every change is saved to `state_dir/owed_clears`.
#[derive(Debug)]
pub struct PendingClears {
    book: Mutex<Book>,
    state: StateDir,
}

impl PendingClears {
    /// Loads the clears owed before the daemon last stopped; a corrupt file is reported, moved
    /// aside and replaced at the next change; clears owed longer than `limit` are dropped with
    /// a WARNING (their alarms are then handled as new ones).
    pub fn load(state: StateDir, limit: Duration) -> PendingClears {
        let mut owed = read_owed(&state);
        let dropped = drop_expired(&mut owed, SystemTime::now(), limit);
        for (id, o) in &dropped {
            warn_dropped(*id, o, limit);
        }
        if !owed.is_empty() {
            info!(owed_clears = owed.len(), "owed alarm clears loaded; they are written instead of restarting the processes again");
        }
        let pending = PendingClears {
            book: Mutex::new(Book { owed, limit }),
            state,
        };
        if !dropped.is_empty() {
            pending.save(&pending.lock().owed);
        }
        pending
    }

    /// How long a clear is owed before it is dropped (`circuit_reset_time`, after a SIGHUP).
    pub fn set_limit(&self, limit: Duration) {
        self.lock().limit = limit;
    }

    /// True when process `id` was restarted and its alarm is still to be cleared.
    pub fn owes(&self, id: i64) -> bool {
        self.lock().owed.contains_key(&id)
    }

    /// The alarm of `id` is no longer raised (someone cleared it): nothing is owed any more.
    pub fn forget(&self, id: i64) {
        let mut book = self.lock();
        if book.owed.remove(&id).is_some() {
            self.save(&book.owed);
            debug!(
                process_id = id,
                "alarm cleared meanwhile; the owed clear is dropped"
            );
        }
    }

    /// Clears the alarm of a process just restarted, under its claim; remembers the clear when
    /// it cannot be written (the process is then not restarted again, see [`PendingClears::retry`]).
    pub async fn clear(&self, db: &Db, claim: &mut Claim, id: i64, name: &str, notes: &str) {
        match db.observe(claim.clear_alarm(id, notes, db.notes_len()).await) {
            Ok(Cleared::Cleared) => {}
            Ok(Cleared::AlreadyClear) => {
                info!(process = %name, process_id = id, "alarm was already cleared by someone else")
            }
            Ok(Cleared::ClaimLost) | Err(_) => {
                let mut book = self.lock();
                book.owed.insert(
                    id,
                    Owed {
                        name: name.to_string(),
                        notes: notes.to_string(),
                        since: SystemTime::now(),
                    },
                );
                self.save(&book.owed);
                info!(process = %name, process_id = id, "restarted, but the alarm cannot be cleared now; clearing is retried and the process is not restarted again");
            }
        }
    }

    /// When a clear is owed to `id` (whose alarm is still raised), writes it instead of a
    /// procedure: `Some(NotAlarmed)` once written, `Some(ClearPending)` while it still cannot
    /// be; `None` when nothing is owed, or when it was owed too long (dropped with a WARNING:
    /// the alarm is then handled as a new one).
    pub async fn retry(&self, db: &Db, claim: &mut Claim, id: i64) -> Option<Handled> {
        let owed = self.owed_now(id)?;
        match db.observe(claim.clear_alarm(id, &owed.notes, db.notes_len()).await) {
            Ok(Cleared::Cleared | Cleared::AlreadyClear) => {
                let mut book = self.lock();
                if book.owed.remove(&id).is_some() {
                    self.save(&book.owed);
                }
                info!(process = %owed.name, process_id = id, "alarm cleared after the earlier restart");
                Some(Handled::NotAlarmed)
            }
            Ok(Cleared::ClaimLost) => Some(Handled::LockBusy),
            Err(_) => Some(Handled::ClearPending),
        }
    }

    /// The clear owed to `id`, unless owed longer than the limit (then dropped and said).
    fn owed_now(&self, id: i64) -> Option<Owed> {
        let mut book = self.lock();
        let owed = book.owed.get(&id)?.clone();
        if !owed.expired(SystemTime::now(), book.limit) {
            return Some(owed);
        }
        book.owed.remove(&id);
        self.save(&book.owed);
        warn_dropped(id, &owed, book.limit);
        None
    }

    /// Saves the clears owed (called under the lock, so saves never interleave).
    fn save(&self, owed: &HashMap<i64, Owed>) {
        if let Err(e) = self.state.write(OWED_FILE, &to_text(owed)) {
            warn!(file = %self.state.path(OWED_FILE).display(), error = %e, "cannot save the owed alarm clears; a daemon restart now would restart these processes again");
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Book> {
        self.book.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The saved clears; empty when there is no file, it cannot be read, or it is corrupt (then
/// moved aside as `owed_clears.corrupt`).
fn read_owed(state: &StateDir) -> HashMap<i64, Owed> {
    state
        .load(
            OWED_FILE,
            "owed alarm clears",
            "alarms still raised are handled as new ones",
            |text| from_text(text, SystemTime::now()),
        )
        .unwrap_or_default()
}

/// Says that a clear owed too long is dropped (the alarm is handled as a new one).
fn warn_dropped(id: i64, owed: &Owed, limit: Duration) {
    let at = chrono::DateTime::<chrono::Local>::from(owed.since)
        .format("%Y-%m-%d %H:%M:%S")
        .to_string();
    warn!(process = %owed.name, process_id = id, restarted_at = %at, limit_s = limit.as_secs(), "the alarm could not be cleared within circuit_reset_time of the restart; the owed clear is dropped and the alarm handled as a new one");
}

/// Removes the clears owed longer than `limit` at `now`; returns them (by process_id).
pub fn drop_expired(
    owed: &mut HashMap<i64, Owed>,
    now: SystemTime,
    limit: Duration,
) -> BTreeMap<i64, Owed> {
    let ids: Vec<i64> = owed
        .iter()
        .filter(|(_, o)| o.expired(now, limit))
        .map(|(id, _)| *id)
        .collect();
    ids.into_iter()
        .filter_map(|id| owed.remove(&id).map(|o| (id, o)))
        .collect()
}

/// Serialises the clears owed, by process_id: `id restarted_unix_ms name notes` per line
/// (line breaks in the notes become spaces).
pub fn to_text(owed: &HashMap<i64, Owed>) -> String {
    let mut out = String::from(
        "# monitor_service owed alarm clears: process_id restarted_unix_ms name notes\n",
    );
    let sorted: BTreeMap<_, _> = owed.iter().collect();
    for (id, o) in sorted {
        let ms = o
            .since
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        let notes: String = o
            .notes
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        out.push_str(&format!("{id} {ms} {} {notes}\n", o.name));
    }
    out
}

/// Reads what [`to_text`] wrote. A restart time later than `now` (clock set back since) is
/// taken as `now`, so the clear still expires.
pub fn from_text(text: &str, now: SystemTime) -> Result<HashMap<i64, Owed>, ParseError> {
    let mut owed = HashMap::new();
    for (n, line) in records(text) {
        let err = |reason: &str| ParseError::at(n, line, reason);
        let mut f = line.splitn(4, ' ');
        let (Some(id), Some(ms), Some(name)) = (f.next(), f.next(), f.next()) else {
            return Err(err("too few fields"));
        };
        let id: i64 = id.parse().map_err(|_| err("bad process id"))?;
        let ms: u64 = ms.parse().map_err(|_| err("bad restart time"))?;
        if !command::is_valid_process_name(name) {
            return Err(err("bad process name"));
        }
        let since = (UNIX_EPOCH + Duration::from_millis(ms)).min(now);
        let entry = Owed {
            name: name.to_string(),
            notes: f.next().unwrap_or("").trim().to_string(),
            since,
        };
        if owed.insert(id, entry).is_some() {
            return Err(err("process id listed twice"));
        }
    }
    Ok(owed)
}

/// Checks that the claim is still this daemon's before the process is stopped: `Err` with
/// what the procedure comes to when it is not (or cannot be checked).
pub async fn still_claimed(db: &Db, claim: &mut Claim) -> Result<(), Handled> {
    match db.observe(claim.verify().await) {
        Ok(true) => Ok(()),
        Ok(false) => Err(Handled::LockBusy),
        Err(e) => Err(Handled::from_db(&e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(ms)
    }

    fn owed(name: &str, notes: &str, ms: u64) -> Owed {
        Owed {
            name: name.to_string(),
            notes: notes.to_string(),
            since: at(ms),
        }
    }

    #[test]
    fn text_round_trips_sorted_by_id() {
        let mut book = HashMap::new();
        book.insert(
            7,
            owed(
                "httpd",
                "2026-12-07 15:00:00 restarted via service (attempt 1/2, healthy in 0.4s)",
                1_765_000_000_123,
            ),
        );
        book.insert(-2, owed("a.b@c:d+e-f_g", "", 5));
        let text = to_text(&book);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with('#'));
        assert_eq!(lines[1], "-2 5 a.b@c:d+e-f_g ");
        assert!(lines[2].starts_with("7 1765000000123 httpd 2026-12-07"));
        let back = from_text(&text, at(u64::MAX / 4)).unwrap();
        assert_eq!(back, book);
    }

    #[test]
    fn line_breaks_in_notes_do_not_break_the_file() {
        let mut book = HashMap::new();
        book.insert(1, owed("x", "one\ntwo\rthree", 10));
        let back = from_text(&to_text(&book), at(20)).unwrap();
        assert_eq!(back[&1].notes, "one two three");
    }

    #[test]
    fn corrupt_lines_are_errors_naming_the_line() {
        let now = at(1_000);
        for (text, reason) in [
            ("1 5\n", "too few fields"),
            ("x 5 n notes\n", "bad process id"),
            ("1 -5 n notes\n", "bad restart time"),
            ("1 5 -n notes\n", "bad process name"),
            ("1 5 n a\n1 6 m b\n", "process id listed twice"),
            ("\u{fffd}\u{fffd}\n", "too few fields"),
        ] {
            let e = from_text(&format!("# head\n{text}"), now).unwrap_err();
            assert!(e.reason.starts_with(reason), "{text:?}: {e}");
            assert!(e.line >= 2, "{text:?}: {e}");
        }
        assert_eq!(from_text("", now).unwrap(), HashMap::new());
        assert_eq!(from_text("# only\n\n", now).unwrap(), HashMap::new());
    }

    #[test]
    fn a_restart_time_in_the_future_is_taken_as_now() {
        let back = from_text("3 9000 n notes\n", at(1_000)).unwrap();
        assert_eq!(back[&3].since, at(1_000));
    }

    #[test]
    fn expiry_is_strictly_past_the_limit() {
        let limit = Duration::from_secs(60);
        let o = owed("n", "", 10_000);
        assert!(!o.expired(at(10_000), limit));
        assert!(!o.expired(at(70_000), limit));
        assert!(o.expired(at(70_001), limit));
        assert!(!o.expired(at(5_000), limit), "clock set back: not expired");
    }

    #[test]
    fn drop_expired_keeps_the_fresh_ones() {
        let mut book = HashMap::new();
        book.insert(1, owed("old", "", 0));
        book.insert(2, owed("new", "", 100_000));
        let dropped = drop_expired(&mut book, at(120_000), Duration::from_secs(60));
        assert_eq!(dropped.keys().copied().collect::<Vec<_>>(), vec![1]);
        assert_eq!(book.keys().copied().collect::<Vec<_>>(), vec![2]);
    }

    #[test]
    fn loading_drops_expired_and_quarantines_corrupt_files() {
        let tmp = tempfile::tempdir().unwrap();
        let st = StateDir::open(tmp.path()).unwrap();
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis();
        let old = now_ms - 3_600_000;
        st.write(
            OWED_FILE,
            &format!("4 {now_ms} fresh n1\n5 {old} stale n2\n"),
        )
        .unwrap();
        let p = PendingClears::load(st.clone(), Duration::from_secs(600));
        assert!(p.owes(4));
        assert!(!p.owes(5));
        let saved = st.read(OWED_FILE).unwrap().unwrap();
        assert!(saved.contains("4 ") && !saved.contains("stale"), "{saved}");
        p.forget(4);
        let saved = st.read(OWED_FILE).unwrap().unwrap();
        assert_eq!(
            from_text(&saved, SystemTime::now()).unwrap(),
            HashMap::new()
        );

        st.write(OWED_FILE, "garbage\n").unwrap();
        let p = PendingClears::load(st.clone(), Duration::from_secs(600));
        assert!(!p.owes(4));
        assert_eq!(st.read(OWED_FILE).unwrap(), None);
        assert!(st.path("owed_clears.corrupt").exists());
    }
}
