//! A process claimed with `GET_LOCK` on the connection that holds it: the row read under the
//! claim, the check that the lock is still this connection's, and the clear written under it.

use std::sync::Arc;
use std::time::Duration;

use mysql_async::prelude::{Query, WithParams};
use mysql_async::Conn;

use super::errors::{query_err, DbError};
use super::fit_notes;
use super::refusals::Refusals;

/// One row of STATUS_PROCESS joined with its PROCESE name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessRow {
    pub alarma: i64,
    /// Raw bytes of `PROCESE.process_name`; `None` when there is no PROCESE row.
    pub name: Option<Vec<u8>>,
}

/// What a clear under the claim came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cleared {
    /// This call cleared the alarm.
    Cleared,
    /// The alarm was no longer raised (someone else cleared it).
    AlreadyClear,
    /// The lock is no longer this connection's: nothing written.
    ClaimLost,
}

/// A process claimed with `GET_LOCK` on the connection it holds; [`Claim::release`] ends it
/// (and so does the connection's end, or its reset when it goes back to the pool).
pub struct Claim {
    conn: Option<Conn>,
    name: String,
    timeout: Duration,
    refusals: Arc<Refusals>,
}

impl Claim {
    pub(super) fn new(
        conn: Conn,
        name: String,
        timeout: Duration,
        refusals: Arc<Refusals>,
    ) -> Claim {
        Claim {
            conn: Some(conn),
            name,
            timeout,
            refusals,
        }
    }

    /// The process's row, read on the claim's own connection (a locking read, see [`read_process`]).
    pub async fn process(&mut self, id: i64) -> Result<Option<ProcessRow>, DbError> {
        let (timeout, refusals) = (self.timeout, self.refusals.clone());
        match self.conn.as_mut() {
            Some(conn) => {
                let read = read_process(conn, id);
                bounded(timeout, &refusals, "reading the process row", read).await
            }
            None => Ok(None),
        }
    }

    /// True while the lock is this connection's (`IS_USED_LOCK(name) = CONNECTION_ID()`):
    /// checked before stopping the process and before clearing its alarm.
    pub async fn verify(&mut self) -> Result<bool, DbError> {
        let (timeout, name, refusals) = (self.timeout, self.name.clone(), self.refusals.clone());
        let Some(conn) = self.conn.as_mut() else {
            return Ok(false);
        };
        let held: Option<Option<i64>> = bounded(
            timeout,
            &refusals,
            "checking the claim (IS_USED_LOCK)",
            "SELECT IS_USED_LOCK(?) = CONNECTION_ID()"
                .with((name.as_str(),))
                .first(conn),
        )
        .await?;
        Ok(held.flatten() == Some(1))
    }

    /// Verifies the claim, then clears the alarm if it is still raised and writes the notes
    /// (at most `notes_len` characters), on the claim's connection.
    pub async fn clear_alarm(
        &mut self,
        id: i64,
        notes: &str,
        notes_len: usize,
    ) -> Result<Cleared, DbError> {
        if !self.verify().await? {
            return Ok(Cleared::ClaimLost);
        }
        let (timeout, refusals) = (self.timeout, self.refusals.clone());
        let Some(conn) = self.conn.as_mut() else {
            return Ok(Cleared::ClaimLost);
        };
        let notes = fit_notes(notes, notes_len);
        bounded(
            timeout,
            &refusals,
            "clearing the alarm",
            "UPDATE STATUS_PROCESS SET alarma = 0, notes = ? WHERE process_id = ? AND alarma = 1"
                .with((notes, id))
                .ignore(&mut *conn),
        )
        .await?;
        Ok(match conn.affected_rows() {
            0 => Cleared::AlreadyClear,
            _ => Cleared::Cleared,
        })
    }

    /// Releases the lock and returns the connection to the pool.
    pub async fn release(mut self) {
        if let Some(conn) = self.conn.take() {
            release_lock(conn, std::mem::take(&mut self.name), self.timeout).await;
        }
    }
}

impl Drop for Claim {
    /// A claim dropped without [`Claim::release`] (a cancelled task) still releases its lock,
    /// before its connection can serve anything else.
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            let name = std::mem::take(&mut self.name);
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(release_lock(conn, name, self.timeout));
            }
        }
    }
}

async fn release_lock(mut conn: Conn, name: String, timeout: Duration) {
    let released = tokio::time::timeout(
        timeout,
        "DO RELEASE_LOCK(?)"
            .with((name.as_str(),))
            .ignore(&mut conn),
    )
    .await;
    if !matches!(released, Ok(Ok(()))) {
        // Closing the connection releases the lock for sure.
        let _ = tokio::time::timeout(timeout, conn.disconnect()).await;
    }
}

/// Runs one statement of `what`, bounded by `timeout`; a success ends the refusals of `what`
/// (said once at INFO when there were any).
pub(super) async fn bounded<T>(
    timeout: Duration,
    refusals: &Refusals,
    what: &'static str,
    query: impl std::future::Future<Output = Result<T, mysql_async::Error>>,
) -> Result<T, DbError> {
    match tokio::time::timeout(timeout, query).await {
        Err(_) => Err(DbError::QueryTimeout { what, timeout }),
        Ok(Err(e)) => Err(query_err(what)(e)),
        Ok(Ok(v)) => {
            refusals.settle_and_say(what);
            Ok(v)
        }
    }
}

/// The current row of one process with its name, or `None` when STATUS_PROCESS has no such id.
///
/// A locking read: the server sends a transaction's binlog events before its commit is
/// visible to plain reads, so a plain read right after a binlog trigger can still see the
/// old `alarma = 0`. The shared lock waits for the writer's commit and reads the result.
async fn read_process(conn: &mut Conn, id: i64) -> Result<Option<ProcessRow>, mysql_async::Error> {
    let row: Option<(i64, Option<Vec<u8>>)> = "SELECT s.alarma, p.process_name FROM STATUS_PROCESS s \
         LEFT JOIN PROCESE p ON p.process_id = s.process_id WHERE s.process_id = ? LOCK IN SHARE MODE"
        .with((id,))
        .first(conn)
        .await?;
    Ok(row.map(|(alarma, name)| ProcessRow { alarma, name }))
}
