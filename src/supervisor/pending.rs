//! Alarms owed a clear: a restart that succeeded but whose clear could not be written is
//! remembered, and the next look at the process writes the clear instead of restarting it
//! again. Also the claim checks around a procedure and how a database error maps to [`Handled`].

use std::collections::HashMap;
use std::sync::Mutex;

use tracing::{debug, info};

use super::Handled;
use crate::db::{Claim, Cleared, Db, DbError};

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

/// A clear owed to one process: the notes of its successful restart.
#[derive(Debug, Clone)]
struct Owed {
    name: String,
    notes: String,
}

/// The clears owed, by process_id.
#[derive(Debug, Default)]
pub struct PendingClears {
    owed: Mutex<HashMap<i64, Owed>>,
}

impl PendingClears {
    /// True when process `id` was restarted and its alarm is still to be cleared.
    pub fn owes(&self, id: i64) -> bool {
        self.lock().contains_key(&id)
    }

    /// The alarm of `id` is no longer raised (someone cleared it): nothing is owed any more.
    pub fn forget(&self, id: i64) {
        if self.lock().remove(&id).is_some() {
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
                info!(process = %name, process_id = id, "restarted, but the alarm cannot be cleared now; clearing is retried and the process is not restarted again");
                self.lock().insert(
                    id,
                    Owed {
                        name: name.to_string(),
                        notes: notes.to_string(),
                    },
                );
            }
        }
    }

    /// When a clear is owed to `id` (whose alarm is still raised), writes it instead of a
    /// procedure: `Some(NotAlarmed)` once written, `Some(ClearPending)` while it still cannot
    /// be; `None` when nothing is owed.
    pub async fn retry(&self, db: &Db, claim: &mut Claim, id: i64) -> Option<Handled> {
        let owed = self.lock().get(&id).cloned()?;
        match db.observe(claim.clear_alarm(id, &owed.notes, db.notes_len()).await) {
            Ok(Cleared::Cleared | Cleared::AlreadyClear) => {
                self.lock().remove(&id);
                info!(process = %owed.name, process_id = id, "alarm cleared after the earlier restart");
                Some(Handled::NotAlarmed)
            }
            Ok(Cleared::ClaimLost) => Some(Handled::LockBusy),
            Err(_) => Some(Handled::ClearPending),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<i64, Owed>> {
        self.owed.lock().unwrap_or_else(|p| p.into_inner())
    }
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
