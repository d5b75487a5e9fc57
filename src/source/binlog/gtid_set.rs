//! MySQL GTID sets (`uuid:1-72:80,uuid2:1-5`): the set of transactions a position has seen,
//! kept up to date as transactions pass and sent back to the server (COM_BINLOG_DUMP_GTID) to
//! resume. Only ever under-claims: a transaction it cannot record (a tagged one) is sent again
//! on resume, which is harmless (the pipeline re-reads rows); none is ever skipped.

use std::str::FromStr;

/// One `uuid:intervals` entry, intervals inclusive and sorted.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    uuid: String,
    intervals: Vec<(u64, u64)>,
}

fn parse_entry(text: &str) -> Option<Entry> {
    let mut parts = text.trim().split(':');
    let uuid = parts.next()?.trim().to_ascii_lowercase();
    if uuid.len() != 36 || !uuid.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-') {
        return None;
    }
    let mut intervals = Vec::new();
    for part in parts {
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        // A tag (MySQL 8.4+) is not handled: the set is left as it is.
        let (a, b): (u64, u64) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
        if a == 0 || b < a {
            return None;
        }
        intervals.push((a, b));
    }
    (!intervals.is_empty()).then_some(Entry { uuid, intervals })
}

fn parse(set: &str) -> Option<Vec<Entry>> {
    let set: String = set.chars().filter(|c| !c.is_whitespace()).collect();
    if set.is_empty() {
        return Some(Vec::new());
    }
    set.split(',').map(parse_entry).collect()
}

fn format(entries: &[Entry]) -> String {
    entries
        .iter()
        .map(|e| {
            let iv: Vec<String> = e
                .intervals
                .iter()
                .map(|(a, b)| {
                    if a == b {
                        a.to_string()
                    } else {
                        format!("{a}-{b}")
                    }
                })
                .collect();
            format!("{}:{}", e.uuid, iv.join(":"))
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// True for a GTID set this module can keep (untagged `uuid:intervals` entries).
pub fn is_set(text: &str) -> bool {
    parse(text).is_some_and(|e| !e.is_empty())
}

/// The set with transaction `uuid:gno` added; `None` when `set` is not one.
pub fn add(set: &str, uuid: &str, gno: u64) -> Option<String> {
    let mut entries = parse(set)?;
    let uuid = uuid.to_ascii_lowercase();
    let entry = match entries.iter_mut().find(|e| e.uuid == uuid) {
        Some(e) => e,
        None => {
            entries.push(Entry {
                uuid,
                intervals: Vec::new(),
            });
            entries.last_mut()?
        }
    };
    entry.intervals.push((gno, gno));
    entry.intervals.sort_unstable();
    let mut merged: Vec<(u64, u64)> = Vec::new();
    for (a, b) in entry.intervals.drain(..) {
        match merged.last_mut() {
            Some(last) if a <= last.1.saturating_add(1) => last.1 = last.1.max(b),
            _ => merged.push((a, b)),
        }
    }
    entry.intervals = merged;
    Some(format(&entries))
}

/// The set as the stream request wants it; `None` when it cannot be read.
pub fn sids(set: &str) -> Option<Vec<mysql_async::Sid<'static>>> {
    let set: String = set.chars().filter(|c| !c.is_whitespace()).collect();
    set.split(',')
        .map(|s| mysql_async::Sid::from_str(s).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "3e11fa47-71ca-11e1-9e33-c80aa9429562";
    const B: &str = "d218f3e9-f24a-11f1-a6de-02fc00000001";

    #[test]
    fn adding_extends_merges_and_starts_entries() {
        let set = format!("{A}:1-5");
        assert_eq!(add(&set, A, 6).unwrap(), format!("{A}:1-6"));
        assert_eq!(add(&set, A, 3).unwrap(), format!("{A}:1-5"));
        assert_eq!(add(&set, A, 8).unwrap(), format!("{A}:1-5:8"));
        let gap = add(&set, A, 7).unwrap();
        assert_eq!(add(&gap, A, 6).unwrap(), format!("{A}:1-7"));
        assert_eq!(add(&set, B, 1).unwrap(), format!("{A}:1-5,{B}:1"));
        assert_eq!(add("", B, 4).unwrap(), format!("{B}:4"));
    }

    #[test]
    fn sets_as_the_server_prints_them_are_read() {
        let printed = format!("{A}:1-5,\n{}:1-3", B.to_uppercase());
        assert!(is_set(&printed));
        assert_eq!(add(&printed, B, 4).unwrap(), format!("{A}:1-5,{B}:1-4"));
        assert_eq!(sids(&printed).map(|s| s.len()), Some(2));
        for not in [
            "",
            "0-1-42",
            "x:1-5",
            &format!("{A}:tag:1-5"),
            &format!("{A}:5-1"),
        ] {
            assert!(!is_set(not), "{not:?}");
        }
    }
}
