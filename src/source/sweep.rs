//! The sweep: reads every raised alarm of this daemon's processes from STATUS_PROCESS (host
//! scoping filters in SQL, see [`crate::scope`]), at start-up, every `check_interval`, and
//! whenever another part asks (after a binlog reconnect).

use std::sync::Arc;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use tokio::sync::{mpsc, Notify};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use super::{Trigger, TriggerSource};
use crate::db::{Db, DbError};
use crate::scope::Scope;

/// One sweep: a trigger for each of this daemon's processes whose alarm is raised.
pub async fn sweep(db: &Db, scope: &Scope, source: TriggerSource) -> Result<Vec<Trigger>, DbError> {
    let ids = db.observe(scope.alarmed(db).await)?;
    debug!(alarms = ids.len(), trigger = %source, "sweep done");
    Ok(ids
        .into_iter()
        .map(|process_id| Trigger { process_id, source })
        .collect())
}

/// Sweeps every `interval` (and when `kick` is notified) until `token` is cancelled. While the
/// database is unreachable it retries with exponential backoff (jittered, at most `interval`).
pub async fn run(
    db: Arc<Db>,
    scope: Arc<Scope>,
    interval: Duration,
    kick: Arc<Notify>,
    tx: mpsc::Sender<Trigger>,
    token: CancellationToken,
) {
    let retry = || {
        ExponentialBuilder::default()
            .with_min_delay(Duration::from_secs(1))
            .with_max_delay(interval.min(Duration::from_secs(30)))
            .with_jitter()
            .without_max_times()
            .build()
    };
    let mut backoff = retry();
    let mut next = Instant::now() + interval;
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(next) => {}
            _ = kick.notified() => {}
            _ = token.cancelled() => return,
        }
        match sweep(&db, &scope, TriggerSource::Sweep).await {
            Ok(triggers) => {
                backoff = retry();
                next = Instant::now() + interval;
                for t in triggers {
                    if tx.send(t).await.is_err() {
                        return;
                    }
                }
            }
            Err(_) => {
                // `sweep` logged the outage once through `Db::observe`.
                let delay = backoff.next().unwrap_or(interval);
                next = Instant::now() + delay.min(interval);
            }
        }
    }
}
