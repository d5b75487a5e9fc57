//! Dispatch of triggers to procedures: one procedure per process at a time (triggers that
//! arrive meanwhile coalesce into one re-check afterwards), at most `max_parallel_restarts`
//! at once, the half-open re-check when a breaker's open period ends, and re-checks with
//! exponential backoff while the database cannot serve a procedure.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::debug;

use crate::events::{Events, NoEvents};
use crate::source::row::{RowChange, RowKind};
use crate::source::{Trigger, TriggerSource};
use crate::supervisor::{Handled, Supervisor};

/// What a STATUS_PROCESS row change means: the id of a process whose alarm was just raised.
/// An insert with `alarma = 1`, or an update whose after-image has `alarma = 1` and whose
/// before-image did not (a MINIMAL before-image without the column counts as "did not"; the
/// procedure re-reads the row anyway). Deletes and everything else mean nothing.
pub fn alarm_raised(change: &RowChange) -> Option<i64> {
    let after = change.after.as_ref()?;
    if change.kind == RowKind::Delete || after.int("alarma")? != 1 {
        return None;
    }
    let before = change.before.as_ref();
    if change.kind == RowKind::Update && before.and_then(|b| b.int("alarma")) == Some(1) {
        return None;
    }
    after
        .int("process_id")
        .or_else(|| before.and_then(|b| b.int("process_id")))
}

/// How soon a process whose procedure the database could not serve is looked at again the
/// first time; each further failure in a row doubles it, up to [`DB_RETRY_MAX`].
const DB_RETRY: Duration = Duration::from_secs(2);
/// The longest wait between re-checks of a process the database cannot serve.
const DB_RETRY_MAX: Duration = Duration::from_secs(60);

/// The wait before re-check number `failures` (1 after the first failure) of a process.
pub fn retry_delay(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    DB_RETRY.saturating_mul(1 << doublings).min(DB_RETRY_MAX)
}

/// Counts of what the procedures came to.
#[derive(Debug, Default)]
pub struct Stats {
    pub succeeded: AtomicU64,
    pub failed: AtomicU64,
    pub refused: AtomicU64,
    pub blocked: AtomicU64,
    pub unavailable: AtomicU64,
}

/// A snapshot of [`Stats`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub succeeded: u64,
    pub failed: u64,
    pub refused: u64,
    pub blocked: u64,
    pub unavailable: u64,
}

struct Inner {
    supervisor: Arc<Supervisor>,
    /// Processes with a procedure under way; the value is a coalesced trigger that came meanwhile.
    busy: Mutex<HashMap<i64, Option<TriggerSource>>>,
    /// Failures in a row of the procedures the database could not serve, by process.
    failures: Mutex<HashMap<i64, u32>>,
    /// Processes with a backoff re-check scheduled (one timer each at most).
    retrying: Mutex<HashSet<i64>>,
    permits: Semaphore,
    procedures: TaskTracker,
    timers: TaskTracker,
    /// Cancelled at shutdown (and with `token`): pending re-check timers end.
    timers_stop: CancellationToken,
    token: CancellationToken,
    stats: Stats,
    /// Signalled whenever the last procedure under way ends.
    idle: Notify,
    events: Arc<dyn Events>,
    /// Host scoping for the breaker's re-checks (the sources filter their own triggers).
    scope: std::sync::OnceLock<Arc<crate::scope::Scope>>,
}

/// The dispatcher; cheap to clone.
#[derive(Clone)]
pub struct Pipeline {
    inner: Arc<Inner>,
}

impl Pipeline {
    pub fn new(
        supervisor: Arc<Supervisor>,
        max_parallel: usize,
        token: CancellationToken,
    ) -> Pipeline {
        Pipeline::with_events(supervisor, max_parallel, token, Arc::new(NoEvents))
    }

    /// [`Pipeline::new`] reporting each trigger and procedure start to `events`.
    pub fn with_events(
        supervisor: Arc<Supervisor>,
        max_parallel: usize,
        token: CancellationToken,
        events: Arc<dyn Events>,
    ) -> Pipeline {
        Pipeline {
            inner: Arc::new(Inner {
                supervisor,
                busy: Mutex::new(HashMap::new()),
                failures: Mutex::new(HashMap::new()),
                retrying: Mutex::new(HashSet::new()),
                permits: Semaphore::new(max_parallel.max(1)),
                procedures: TaskTracker::new(),
                timers: TaskTracker::new(),
                timers_stop: token.child_token(),
                token,
                stats: Stats::default(),
                idle: Notify::new(),
                events,
                scope: std::sync::OnceLock::new(),
            }),
        }
    }

    /// Host scoping: a breaker's re-check of a process that moved to another host is dropped.
    pub fn limit_to(&self, scope: Arc<crate::scope::Scope>) {
        let _ = self.inner.scope.set(scope);
    }

    /// Hands a trigger to its process's procedure: starts one, or coalesces into a re-check
    /// after the one under way. Ignored once shutdown has begun.
    pub fn submit(&self, trigger: Trigger) {
        if self.inner.token.is_cancelled() {
            return;
        }
        let id = trigger.process_id;
        if trigger.source == TriggerSource::Breaker
            && self.inner.scope.get().is_some_and(|s| !s.owns(id))
        {
            debug!(
                process_id = id,
                "breaker re-check of another host's process; left alone"
            );
            return;
        }
        self.inner.events.trigger(id, trigger.source);
        {
            let mut busy = self.inner.busy.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(pending) = busy.get_mut(&id) {
                debug!(process_id = id, trigger = %trigger.source, "procedure under way; coalesced into one re-check");
                pending.get_or_insert(trigger.source);
                return;
            }
            busy.insert(id, None);
        }
        let inner = self.inner.clone();
        self.inner
            .procedures
            .spawn(async move { drive(inner, id, trigger.source).await });
    }

    /// Submits a re-check for `id` at `at`.
    pub fn recheck_at(&self, id: i64, at: Instant, source: TriggerSource) {
        let me = self.clone();
        let token = self.inner.timers_stop.clone();
        self.inner.timers.spawn(async move {
            tokio::select! {
                _ = tokio::time::sleep_until(at.into()) => me.submit(Trigger { process_id: id, source }),
                _ = token.cancelled() => {}
            }
        });
    }

    /// Schedules a re-check of `id` after the next backoff step (the database could not serve
    /// its procedure); at most one such re-check is pending per process.
    fn retry_later(&self, id: i64, source: TriggerSource) {
        let failures = {
            let mut f = lock(&self.inner.failures);
            let n = f.entry(id).or_insert(0);
            *n = n.saturating_add(1);
            *n
        };
        if !lock(&self.inner.retrying).insert(id) {
            return;
        }
        let delay = retry_delay(failures);
        debug!(process_id = id, failures, delay = ?delay, "re-checked after a backoff");
        let me = self.clone();
        let token = self.inner.timers_stop.clone();
        self.inner.timers.spawn(async move {
            tokio::select! {
                _ = tokio::time::sleep(delay) => {
                    lock(&me.inner.retrying).remove(&id);
                    me.submit(Trigger { process_id: id, source });
                }
                _ = token.cancelled() => {}
            }
        });
    }

    /// The database served a procedure of `id`: the next failure starts the backoff anew.
    fn served(&self, id: i64) {
        lock(&self.inner.failures).remove(&id);
    }

    /// Waits until no procedure is under way (timers are not waited for).
    pub async fn idle(&self) {
        loop {
            let notified = self.inner.idle.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.busy() == 0 {
                return;
            }
            notified.await;
        }
    }

    /// Stops accepting work, drops pending re-check timers and waits for the procedures under way.
    pub async fn shutdown(&self) {
        self.inner.procedures.close();
        self.inner.timers.close();
        self.inner.timers_stop.cancel();
        self.inner.procedures.wait().await;
        self.inner.timers.wait().await;
    }

    /// Number of procedures under way or waiting for a slot.
    pub fn busy(&self) -> usize {
        self.inner
            .busy
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len()
    }

    /// Ids of the processes with a procedure under way or waiting for a slot.
    pub fn busy_ids(&self) -> Vec<i64> {
        let busy = self.inner.busy.lock().unwrap_or_else(|p| p.into_inner());
        let mut ids: Vec<i64> = busy.keys().copied().collect();
        ids.sort_unstable();
        ids
    }

    /// What the procedures came to so far.
    pub fn counts(&self) -> Counts {
        let s = &self.inner.stats;
        Counts {
            succeeded: s.succeeded.load(Ordering::Relaxed),
            failed: s.failed.load(Ordering::Relaxed),
            refused: s.refused.load(Ordering::Relaxed),
            blocked: s.blocked.load(Ordering::Relaxed),
            unavailable: s.unavailable.load(Ordering::Relaxed),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Counts what a procedure came to and schedules what follows from it (a backoff re-check,
/// the half-open re-check, the end of a silence).
fn follow_up(inner: &Arc<Inner>, id: i64, source: TriggerSource, handled: &Handled) {
    let me = Pipeline {
        inner: inner.clone(),
    };
    let stats = &inner.stats;
    match handled {
        Handled::Succeeded => {
            stats.succeeded.fetch_add(1, Ordering::Relaxed);
            if inner.supervisor.owes_clear(id) {
                me.retry_later(id, source);
            } else {
                me.served(id);
            }
        }
        Handled::Failed { reopen_at } => {
            stats.failed.fetch_add(1, Ordering::Relaxed);
            me.served(id);
            if let Some(at) = reopen_at {
                me.recheck_at(id, *at, TriggerSource::Breaker);
            }
        }
        Handled::Refused => {
            stats.refused.fetch_add(1, Ordering::Relaxed);
            me.served(id);
        }
        Handled::Blocked => {
            stats.blocked.fetch_add(1, Ordering::Relaxed);
            me.served(id);
        }
        Handled::DbUnavailable | Handled::QueryRefused => {
            stats.unavailable.fetch_add(1, Ordering::Relaxed);
            // The trigger must not be lost to an outage or a refusal: look again, backing off.
            me.retry_later(id, source);
        }
        Handled::LockBusy | Handled::ClearPending => me.retry_later(id, source),
        Handled::Silenced { until, first } => {
            me.served(id);
            // Looked at again the moment the silence ends (one timer per silence).
            if *first {
                me.recheck_at(id, *until, TriggerSource::Manual);
            }
        }
        Handled::NotAlarmed | Handled::DryRun => me.served(id),
    }
}

/// Runs procedures for `id` until no coalesced trigger is left.
async fn drive(inner: Arc<Inner>, id: i64, first: TriggerSource) {
    let mut source = first;
    loop {
        let handled = {
            let permit = tokio::select! {
                p = inner.permits.acquire() => p.ok(),
                _ = inner.token.cancelled() => None,
            };
            match permit {
                Some(_permit) => {
                    inner.events.serving(id);
                    Some(inner.supervisor.handle(id, source).await)
                }
                None => None,
            }
        };
        if let Some(h) = &handled {
            follow_up(&inner, id, source, h);
        }
        let mut busy = inner.busy.lock().unwrap_or_else(|p| p.into_inner());
        let next = if inner.token.is_cancelled() || handled.is_none() {
            None
        } else {
            busy.get_mut(&id).and_then(Option::take)
        };
        match next {
            Some(s) => source = s,
            None => {
                busy.remove(&id);
                if busy.is_empty() {
                    inner.idle.notify_waiters();
                }
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::row::RowImage;
    use mysql_async::Value;

    fn img(cols: &[(&str, i64)]) -> RowImage {
        RowImage {
            columns: cols
                .iter()
                .map(|(n, v)| (n.to_string(), Value::Int(*v)))
                .collect(),
        }
    }

    #[test]
    fn retry_delay_doubles_from_two_seconds_up_to_a_minute() {
        let secs: Vec<u64> = (1..=8).map(|n| retry_delay(n).as_secs()).collect();
        assert_eq!(secs, vec![2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(retry_delay(0), DB_RETRY);
        assert_eq!(retry_delay(u32::MAX), DB_RETRY_MAX);
    }

    #[test]
    fn update_from_zero_to_one_raises() {
        let c = RowChange::new(
            RowKind::Update,
            Some(img(&[("process_id", 5), ("alarma", 0)])),
            Some(img(&[("process_id", 5), ("alarma", 1)])),
        );
        assert_eq!(alarm_raised(&c), Some(5));
    }

    #[test]
    fn update_already_raised_or_cleared_does_not() {
        let stays = RowChange::new(
            RowKind::Update,
            Some(img(&[("process_id", 5), ("alarma", 1)])),
            Some(img(&[("process_id", 5), ("alarma", 1)])),
        );
        assert_eq!(alarm_raised(&stays), None);
        let cleared = RowChange::new(
            RowKind::Update,
            Some(img(&[("process_id", 5), ("alarma", 1)])),
            Some(img(&[("process_id", 5), ("alarma", 0)])),
        );
        assert_eq!(alarm_raised(&cleared), None);
        let other_value = RowChange::new(
            RowKind::Update,
            Some(img(&[("process_id", 5), ("alarma", 0)])),
            Some(img(&[("process_id", 5), ("alarma", 2)])),
        );
        assert_eq!(alarm_raised(&other_value), None);
    }

    #[test]
    fn insert_with_alarm_raises_and_delete_does_not() {
        let ins = RowChange::new(
            RowKind::Insert,
            None,
            Some(img(&[("process_id", 9), ("alarma", 1)])),
        );
        assert_eq!(alarm_raised(&ins), Some(9));
        let del = RowChange::new(
            RowKind::Delete,
            Some(img(&[("process_id", 9), ("alarma", 1)])),
            None,
        );
        assert_eq!(alarm_raised(&del), None);
    }

    #[test]
    fn minimal_images_use_what_they_have() {
        // MINIMAL: before holds the key only, after only the assigned columns.
        let c = RowChange::new(
            RowKind::Update,
            Some(img(&[("process_id", 3)])),
            Some(img(&[("alarma", 1)])),
        );
        assert_eq!(alarm_raised(&c), Some(3));
        // A notes-only update has no alarma in the after image.
        let notes = RowChange::new(
            RowKind::Update,
            Some(img(&[("process_id", 3)])),
            Some(img(&[])),
        );
        assert_eq!(alarm_raised(&notes), None);
    }
}
