//! Per-process circuit breaker: a pure state machine (time is passed in, no I/O) and its text form.
//!
//! Closed counts consecutive failed procedures; at `max_failures` it opens for `reset_after`.
//! When that period ends the next check is a half-open trial: success closes it, failure opens
//! it again at once. Timing uses the monotonic clock; the saved form uses wall-clock deadlines,
//! converted back to monotonic ones (and capped at `reset_after`) when loaded.

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// When a breaker opens and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    pub max_failures: u32,
    pub reset_after: Duration,
}

/// State of one process's breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Closed,
    Open { until: Instant, warned: bool },
    HalfOpen,
}

/// One process's breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Breaker {
    pub failures: u32,
    pub state: State,
}

impl Default for Breaker {
    fn default() -> Self {
        Breaker {
            failures: 0,
            state: State::Closed,
        }
    }
}

/// What the breaker allows now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Run the procedure; `trial` when it is the half-open trial.
    Proceed { trial: bool },
    /// Do not restart until `until`; `first` is true once per open period (say it then).
    Blocked { until: Instant, first: bool },
}

impl Breaker {
    /// Decides whether a procedure may run at `now`, moving an expired open breaker to half-open.
    pub fn check(&mut self, now: Instant) -> Decision {
        match self.state {
            State::Closed => Decision::Proceed { trial: false },
            State::HalfOpen => Decision::Proceed { trial: true },
            State::Open { until, .. } if now >= until => {
                self.state = State::HalfOpen;
                Decision::Proceed { trial: true }
            }
            State::Open { until, warned } => {
                self.state = State::Open {
                    until,
                    warned: true,
                };
                Decision::Blocked {
                    until,
                    first: !warned,
                }
            }
        }
    }

    /// A procedure succeeded: failures reset, breaker closed.
    pub fn record_success(&mut self) {
        *self = Breaker::default();
    }

    /// A procedure failed; returns the end of the open period when this failure opened it.
    /// The caller says so (one WARNING per open period), so the period starts as warned.
    pub fn record_failure(&mut self, now: Instant, policy: Policy) -> Option<Instant> {
        self.failures = self.failures.saturating_add(1);
        let open = matches!(self.state, State::HalfOpen) || self.failures >= policy.max_failures;
        if open {
            let until = now + policy.reset_after;
            self.state = State::Open {
                until,
                warned: true,
            };
            Some(until)
        } else {
            None
        }
    }

    /// True when nothing distinguishes it from a fresh breaker.
    pub fn is_default(&self) -> bool {
        *self == Breaker::default()
    }
}

/// Wall-clock time of a monotonic instant, given one matching pair of readings.
pub fn wall_of(at: Instant, now: Instant, now_wall: SystemTime) -> SystemTime {
    if at >= now {
        now_wall + (at - now)
    } else {
        now_wall - (now - at)
    }
}

/// Serialises the breakers that are not default: `id failures state [until_unix_ms]` per line.
pub fn to_text(book: &BTreeMap<i64, Breaker>, now: Instant, now_wall: SystemTime) -> String {
    let mut out = String::from(
        "# monitor_service circuit breakers: process_id failures state until_unix_ms\n",
    );
    for (id, b) in book.iter().filter(|(_, b)| !b.is_default()) {
        let line = match b.state {
            State::Closed => format!("{id} {} closed\n", b.failures),
            State::HalfOpen => format!("{id} {} half-open\n", b.failures),
            State::Open { until, .. } => {
                let ms = wall_of(until, now, now_wall)
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_millis())
                    .unwrap_or(0);
                format!("{id} {} open {ms}\n", b.failures)
            }
        };
        out.push_str(&line);
    }
    out
}

/// Error in a saved state file (breakers, owed clears): the line and what is wrong with it.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("line {line}: {reason}")]
pub struct ParseError {
    pub line: usize,
    pub reason: String,
}

impl ParseError {
    /// `reason` about record `text` on line `line`.
    pub fn at(line: usize, text: &str, reason: &str) -> ParseError {
        ParseError {
            line,
            reason: format!("{reason}: {text:?}"),
        }
    }
}

/// The records of a state file: (line number, trimmed text) of each line that is neither
/// blank nor a `#` comment.
pub fn records(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines()
        .enumerate()
        .map(|(i, raw)| (i + 1, raw.trim()))
        .filter(|(_, line)| !line.is_empty() && !line.starts_with('#'))
}

/// Reads what [`to_text`] wrote. A deadline further away than `reset_after` (clock set back
/// since) is capped at `reset_after`; one already past makes the breaker half-open.
pub fn from_text(
    text: &str,
    now: Instant,
    now_wall: SystemTime,
    reset_after: Duration,
) -> Result<BTreeMap<i64, Breaker>, ParseError> {
    let mut book = BTreeMap::new();
    for (n, line) in records(text) {
        let err = |reason: &str| ParseError::at(n, line, reason);
        let f: Vec<&str> = line.split_whitespace().collect();
        let (id, failures) = match (f.first(), f.get(1)) {
            (Some(id), Some(n)) => (
                id.parse::<i64>().map_err(|_| err("bad process id"))?,
                n.parse::<u32>().map_err(|_| err("bad failure count"))?,
            ),
            _ => return Err(err("too few fields")),
        };
        let state = match (f.get(2).copied(), f.get(3), f.len()) {
            (Some("closed"), None, 3) => State::Closed,
            (Some("half-open"), None, 3) => State::HalfOpen,
            (Some("open"), Some(ms), 4) => {
                let ms: u64 = ms.parse().map_err(|_| err("bad deadline"))?;
                let until_wall = UNIX_EPOCH + Duration::from_millis(ms);
                match until_wall.duration_since(now_wall) {
                    Ok(left) => State::Open {
                        until: now + left.min(reset_after),
                        warned: false,
                    },
                    Err(_) => State::HalfOpen,
                }
            }
            _ => return Err(err("bad state")),
        };
        book.insert(id, Breaker { failures, state });
    }
    Ok(book)
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: Policy = Policy {
        max_failures: 3,
        reset_after: Duration::from_secs(60),
    };

    #[test]
    fn opens_after_max_failures_and_blocks_with_one_warning() {
        let t0 = Instant::now();
        let mut b = Breaker::default();
        assert_eq!(b.check(t0), Decision::Proceed { trial: false });
        assert_eq!(b.record_failure(t0, P), None);
        assert_eq!(b.record_failure(t0, P), None);
        let until = b.record_failure(t0, P).unwrap();
        assert_eq!(until, t0 + P.reset_after);
        // The opening failure is the warning; later checks are quiet.
        assert_eq!(
            b.check(t0 + Duration::from_secs(1)),
            Decision::Blocked {
                until,
                first: false
            }
        );
    }

    #[test]
    fn half_open_trial_closes_on_success_and_reopens_on_failure() {
        let t0 = Instant::now();
        let mut b = Breaker::default();
        for _ in 0..3 {
            b.record_failure(t0, P);
        }
        let later = t0 + Duration::from_secs(61);
        assert_eq!(b.check(later), Decision::Proceed { trial: true });
        let mut ok = b;
        ok.record_success();
        assert!(ok.is_default());
        assert_eq!(b.record_failure(later, P), Some(later + P.reset_after));
        assert_eq!(b.failures, 4);
    }

    #[test]
    fn a_trial_failure_reopens_even_below_the_threshold() {
        let t0 = Instant::now();
        let mut b = Breaker {
            failures: 0,
            state: State::HalfOpen,
        };
        assert!(b.record_failure(t0, P).is_some());
    }

    #[test]
    fn loaded_open_breaker_warns_once_more() {
        let t0 = Instant::now();
        let mut b = Breaker {
            failures: 3,
            state: State::Open {
                until: t0 + P.reset_after,
                warned: false,
            },
        };
        assert!(matches!(b.check(t0), Decision::Blocked { first: true, .. }));
        assert!(matches!(
            b.check(t0),
            Decision::Blocked { first: false, .. }
        ));
    }

    #[test]
    fn text_round_trip_keeps_deadlines_and_drops_defaults() {
        let now = Instant::now();
        let wall = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let mut book = BTreeMap::new();
        book.insert(1, Breaker::default());
        book.insert(
            2,
            Breaker {
                failures: 1,
                state: State::Closed,
            },
        );
        book.insert(
            3,
            Breaker {
                failures: 3,
                state: State::Open {
                    until: now + Duration::from_secs(30),
                    warned: true,
                },
            },
        );
        book.insert(
            4,
            Breaker {
                failures: 3,
                state: State::HalfOpen,
            },
        );
        let text = to_text(&book, now, wall);
        assert!(!text.contains("\n1 "));
        let back = from_text(&text, now, wall, P.reset_after).unwrap();
        assert_eq!(back.len(), 3);
        assert_eq!(
            back[&2],
            Breaker {
                failures: 1,
                state: State::Closed
            }
        );
        assert_eq!(
            back[&3].state,
            State::Open {
                until: now + Duration::from_secs(30),
                warned: false
            }
        );
        assert_eq!(back[&4].state, State::HalfOpen);
    }

    #[test]
    fn clock_set_back_is_capped_and_expired_deadline_is_half_open() {
        let now = Instant::now();
        let wall = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let far = (1_800_000_000u64 + 86_400) * 1000;
        let past = (1_800_000_000u64 - 10) * 1000;
        let text = format!("7 3 open {far}\n8 3 open {past}\n");
        let back = from_text(&text, now, wall, P.reset_after).unwrap();
        assert_eq!(
            back[&7].state,
            State::Open {
                until: now + P.reset_after,
                warned: false
            }
        );
        assert_eq!(back[&8].state, State::HalfOpen);
    }

    #[test]
    fn corrupt_text_is_an_error_with_the_line() {
        let now = Instant::now();
        let wall = SystemTime::now();
        for bad in [
            "x 1 closed",
            "1 y closed",
            "1 2 ajar",
            "1 2 open",
            "1 2 open zz",
            "1",
        ] {
            let e = from_text(&format!("# header\n{bad}\n"), now, wall, P.reset_after).unwrap_err();
            assert_eq!(e.line, 2, "{bad}");
        }
    }
}
