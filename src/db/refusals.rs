//! Refused queries said once per kind: the first refusal of a (query, server code) pair is
//! logged, repeats are not, and the query working again is said once.

use std::collections::BTreeSet;
use std::sync::Mutex;

/// The refusals seen and not yet followed by a success of the same query.
#[derive(Debug, Default)]
pub struct Refusals {
    seen: Mutex<BTreeSet<(&'static str, u16)>>,
}

impl Refusals {
    /// Records a refusal of `what` with `code`; true when this kind is new (log it).
    pub fn note(&self, what: &'static str, code: u16) -> bool {
        self.lock().insert((what, code))
    }

    /// `what` worked: forgets its refusals and returns their codes (say it works again when
    /// there were any).
    pub fn settle(&self, what: &'static str) -> Vec<u16> {
        let mut seen = self.lock();
        let codes: Vec<u16> = seen
            .iter()
            .filter(|(w, _)| *w == what)
            .map(|(_, c)| *c)
            .collect();
        for c in &codes {
            seen.remove(&(what, *c));
        }
        codes
    }

    /// [`Refusals::settle`], saying once at INFO that `what` works again when it was refused.
    pub fn settle_and_say(&self, what: &'static str) {
        let codes = self.settle(what);
        if !codes.is_empty() {
            tracing::info!(query = what, refused_with = ?codes, "the database accepts this query again");
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeSet<(&'static str, u16)>> {
        self.seen.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_is_new_once_until_its_query_works_again() {
        let r = Refusals::default();
        assert!(r.note("clearing the alarm", 1142));
        assert!(!r.note("clearing the alarm", 1142));
        assert!(
            r.note("clearing the alarm", 1205),
            "another code is another kind"
        );
        assert!(
            r.note("writing the notes", 1142),
            "another query is another kind"
        );
        assert_eq!(r.settle("clearing the alarm"), vec![1142, 1205]);
        assert!(r.settle("clearing the alarm").is_empty());
        assert!(
            r.note("clearing the alarm", 1142),
            "new again after it worked"
        );
        assert!(!r.note("writing the notes", 1142));
    }
}
