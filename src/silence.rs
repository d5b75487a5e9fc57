//! Operators' silences: which processes (by id or by name) must not be restarted until when, a
//! pure store with the time passed in, its text form in `state_dir`, and the `--for`/`--until`
//! values that make one.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::command;
use crate::events::Silenced;

/// Name of the silences file in `state_dir`.
pub const SILENCE_FILE: &str = "silences";

/// Longest silence accepted (30 days): a forgotten silence must end by itself.
pub const MAX_SILENCE: Duration = Duration::from_secs(30 * 24 * 3600);

/// A process as an operator names it: its `process_id`, or its name in PROCESE.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Target {
    Id(i64),
    Name(String),
}

impl Target {
    /// `5` is an id; anything else must be a valid process name.
    pub fn parse(s: &str) -> Result<Target, String> {
        let s = s.trim();
        if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
            return s
                .parse()
                .map(Target::Id)
                .map_err(|_| format!("process id {s} is too large"));
        }
        command::validate_process_name(s)
            .map(|()| Target::Name(s.to_string()))
            .map_err(|e| format!("{e}; give a process_id or a name from PROCESE"))
    }

    /// True when this target names process `id` called `name`.
    pub fn matches(&self, id: i64, name: &str) -> bool {
        match self {
            Target::Id(i) => *i == id,
            Target::Name(n) => n == name,
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Id(i) => write!(f, "{i}"),
            Target::Name(n) => f.write_str(n),
        }
    }
}

/// The silences in force, and which processes each one already stopped (to say it once).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Silences {
    until: BTreeMap<Target, SystemTime>,
    /// `(process_id, end in ms)` pairs already noted.
    noted: BTreeSet<(i64, u128)>,
}

fn unix_ms(t: SystemTime) -> u128 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis())
}

impl Silences {
    /// Silences `target` until `until` (replacing an earlier silence of it).
    pub fn set(&mut self, target: Target, until: SystemTime) {
        self.until.insert(target, until);
    }

    /// Ends the silence of `target`; false when there was none.
    pub fn remove(&mut self, target: &Target) -> bool {
        self.until.remove(target).is_some()
    }

    /// Drops the silences that ended by `now`; true when any did.
    pub fn expire(&mut self, now: SystemTime) -> bool {
        let before = self.until.len();
        self.until.retain(|_, until| *until > now);
        let now_ms = unix_ms(now);
        self.noted.retain(|(_, ms)| *ms > now_ms);
        before != self.until.len()
    }

    /// The end of the silence that applies to process `id` called `name` at `now` (the later
    /// one when both its id and its name are silenced), and whether this is the first time it
    /// is asked for this process and this end.
    pub fn check(&mut self, id: i64, name: &str, now: SystemTime) -> Option<Silenced> {
        let until = self
            .until
            .iter()
            .filter(|(t, until)| t.matches(id, name) && **until > now)
            .map(|(_, until)| *until)
            .max()?;
        let first = self.noted.insert((id, unix_ms(until)));
        Some(Silenced { until, first })
    }

    /// The silences in force at `now`.
    pub fn list(&self, now: SystemTime) -> Vec<(Target, SystemTime)> {
        self.until
            .iter()
            .filter(|(_, until)| **until > now)
            .map(|(t, u)| (t.clone(), *u))
            .collect()
    }

    /// One line per silence in force: `id 5 UNTIL_MS` or `name nginx UNTIL_MS`.
    pub fn to_text(&self, now: SystemTime) -> String {
        let mut out = String::from("# monitor_service silences: id|name target until_unix_ms\n");
        for (t, until) in self.list(now) {
            let kind = match t {
                Target::Id(_) => "id",
                Target::Name(_) => "name",
            };
            out.push_str(&format!("{kind} {t} {}\n", unix_ms(until)));
        }
        out
    }

    /// Reads what [`Silences::to_text`] wrote; silences that ended by `now` are left out.
    pub fn from_text(text: &str, now: SystemTime) -> Result<Silences, String> {
        let mut s = Silences::default();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bad = |why: &str| format!("line {}: {why}: {line:?}", i + 1);
            let f: Vec<&str> = line.split_whitespace().collect();
            let [kind, target, ms] = f.as_slice() else {
                return Err(bad("expected 3 fields"));
            };
            let target = match (*kind, Target::parse(target)) {
                ("id", Ok(t @ Target::Id(_))) | ("name", Ok(t @ Target::Name(_))) => t,
                _ => return Err(bad("bad target")),
            };
            let ms: u64 = ms.parse().map_err(|_| bad("bad end time"))?;
            let until = UNIX_EPOCH + Duration::from_millis(ms);
            if until > now {
                s.set(target, until);
            }
        }
        Ok(s)
    }
}

/// `--for` values: a number with a unit, e.g. `90s`, `30m`, `2h`, `1d`, or several (`1h30m`).
pub fn parse_for(s: &str) -> Result<Duration, String> {
    let err = || {
        format!(
            "--for {s:?}: expected a duration such as 30m, 2h, 1d or 1h30m (s, m, h, d), at most 30 days"
        )
    };
    let mut total = 0u64;
    let mut digits = String::new();
    let mut any = false;
    for c in s.trim().chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            _ => return Err(err()),
        };
        let n: u64 = digits.parse().map_err(|_| err())?;
        total = n
            .checked_mul(unit)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(err)?;
        digits.clear();
        any = true;
    }
    if !digits.is_empty() || !any || total == 0 {
        return Err(err());
    }
    let d = Duration::from_secs(total);
    if d > MAX_SILENCE {
        return Err(err());
    }
    Ok(d)
}

/// `--until` values in local time: `YYYY-MM-DD HH:MM[:SS]`, `YYYY-MM-DDTHH:MM[:SS]`, or
/// `HH:MM[:SS]` (today, or tomorrow when that time has passed). Must be after `now` and at
/// most 30 days later.
pub fn parse_until(s: &str, now: chrono::NaiveDateTime) -> Result<chrono::NaiveDateTime, String> {
    use chrono::{NaiveDateTime, NaiveTime};
    let t = s.trim();
    let err = |why: &str| {
        format!("--until {s:?}: {why}; expected local time as YYYY-MM-DD HH:MM[:SS] or HH:MM[:SS]")
    };
    let full = [
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%d %H:%M",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%dT%H:%M",
    ]
    .iter()
    .find_map(|f| NaiveDateTime::parse_from_str(t, f).ok());
    let at = match full {
        Some(at) => at,
        None => {
            let time = ["%H:%M:%S", "%H:%M"]
                .iter()
                .find_map(|f| NaiveTime::parse_from_str(t, f).ok())
                .ok_or_else(|| err("not a time"))?;
            let today = now.date().and_time(time);
            if today > now {
                today
            } else {
                today + chrono::Duration::days(1)
            }
        }
    };
    if at <= now {
        return Err(err("that time has passed"));
    }
    let max = chrono::Duration::from_std(MAX_SILENCE).unwrap_or(chrono::Duration::days(30));
    if at - now > max {
        return Err(err("more than 30 days away"));
    }
    Ok(at)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_800_000_000 + s)
    }

    #[test]
    fn targets_are_ids_or_valid_names() {
        assert_eq!(Target::parse("42"), Ok(Target::Id(42)));
        assert_eq!(Target::parse("nginx"), Ok(Target::Name("nginx".into())));
        assert_eq!(
            Target::parse("web-1.service"),
            Ok(Target::Name("web-1.service".into()))
        );
        for bad in ["", "a b", "-x", "x;rm", "99999999999999999999999"] {
            assert!(Target::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_silence_applies_by_id_or_name_until_it_ends_and_is_noted_once() {
        let mut s = Silences::default();
        s.set(Target::Name("web".into()), at(100));
        s.set(Target::Id(7), at(50));
        // Process 7 named web: both apply, the later end wins.
        let first = s.check(7, "web", at(0)).unwrap();
        assert_eq!(
            first,
            Silenced {
                until: at(100),
                first: true
            }
        );
        assert!(!s.check(7, "web", at(10)).unwrap().first);
        // Another id with the same name is noted on its own.
        assert!(s.check(8, "web", at(10)).unwrap().first);
        assert_eq!(s.check(9, "db", at(10)), None);
        // Extending the silence is a new end: noted again.
        s.set(Target::Name("web".into()), at(200));
        assert!(s.check(7, "web", at(20)).unwrap().first);
        // Ended: nothing applies, and expire drops it.
        assert_eq!(s.check(7, "web", at(200)), None);
        assert!(s.expire(at(200)));
        assert!(s.list(at(0)).is_empty());
    }

    #[test]
    fn unsilence_removes_only_that_target() {
        let mut s = Silences::default();
        s.set(Target::Id(1), at(100));
        s.set(Target::Name("x".into()), at(100));
        assert!(s.remove(&Target::Id(1)));
        assert!(!s.remove(&Target::Id(1)));
        assert_eq!(s.check(1, "y", at(0)), None);
        assert!(s.check(2, "x", at(0)).is_some());
    }

    #[test]
    fn text_round_trip_drops_ended_silences_and_rejects_garbage() {
        let mut s = Silences::default();
        s.set(Target::Id(3), at(100));
        s.set(Target::Name("nginx".into()), at(5));
        let text = s.to_text(at(0));
        assert!(text.contains("id 3 1800000100000\n"), "{text}");
        assert!(text.contains("name nginx 1800000005000\n"), "{text}");
        let back = Silences::from_text(&text, at(10)).unwrap();
        assert_eq!(back.list(at(10)), vec![(Target::Id(3), at(100))]);
        for bad in [
            "id x 1",
            "name a;b 1",
            "id 3",
            "id 3 soon",
            "name 5 1",
            "what 3 1",
        ] {
            assert!(Silences::from_text(bad, at(0)).is_err(), "{bad}");
        }
    }

    #[test]
    fn for_takes_units_and_refuses_the_rest() {
        assert_eq!(parse_for("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_for("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_for("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_for("30d"), Ok(MAX_SILENCE));
        for bad in [
            "",
            "2",
            "h",
            "0m",
            "31d",
            "2 h",
            "-1h",
            "1w",
            "99999999999999999999d",
        ] {
            assert!(parse_for(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn until_is_local_time_today_tomorrow_or_a_date() {
        let now = chrono::NaiveDate::from_ymd_opt(2026, 11, 24)
            .unwrap()
            .and_hms_opt(10, 0, 0)
            .unwrap();
        let day = |d, h, m| {
            chrono::NaiveDate::from_ymd_opt(2026, 11, d)
                .unwrap()
                .and_hms_opt(h, m, 0)
                .unwrap()
        };
        assert_eq!(parse_until("12:30", now), Ok(day(24, 12, 30)));
        assert_eq!(parse_until("09:00", now), Ok(day(25, 9, 0)));
        assert_eq!(parse_until("2026-11-26 08:15", now), Ok(day(26, 8, 15)));
        assert_eq!(parse_until("2026-11-26T08:15:00", now), Ok(day(26, 8, 15)));
        assert!(parse_until("2026-11-24 09:00", now).is_err());
        assert!(parse_until("2027-01-24 09:00", now).is_err());
        assert!(parse_until("soon", now).is_err());
    }
}
