//! MariaDB GTID states (`domain-server-seq`, one per replication domain, comma separated): the
//! state a position is at, kept up to date as transactions pass, and sent back to the server
//! (`@slave_connect_state`) to resume where the log was left.

/// One MariaDB GTID `domain-server-seq`.
fn parse(gtid: &str) -> Option<(u32, u32, u64)> {
    let mut parts = gtid.trim().split('-');
    let domain = parts.next()?.parse().ok()?;
    let server = parts.next()?.parse().ok()?;
    let seq = parts.next()?.parse().ok()?;
    parts.next().is_none().then_some((domain, server, seq))
}

/// True for a MariaDB GTID state (one or more `domain-server-seq`, comma separated); false for
/// MySQL GTIDs and anything else. Only such text is ever put into a statement.
pub fn is_state(text: &str) -> bool {
    !text.is_empty() && text.split(',').all(|g| parse(g).is_some())
}

/// `state` after the transaction `gtid`: its domain's entry replaced (or added), in domain order.
pub fn advance(state: &str, gtid: &str) -> Option<String> {
    let (domain, ..) = parse(gtid)?;
    let mut entries: Vec<(u32, String)> = state
        .split(',')
        .filter_map(|g| parse(g).map(|(d, ..)| (d, g.trim().to_string())))
        .filter(|(d, _)| *d != domain)
        .collect();
    entries.push((domain, gtid.trim().to_string()));
    entries.sort_by_key(|(d, _)| *d);
    Some(
        entries
            .into_iter()
            .map(|(_, g)| g)
            .collect::<Vec<_>>()
            .join(","),
    )
}

/// True when the server's GTID state `server` has passed every entry of `saved` with the same
/// domain and originating server (a sibling replica of the same primary that can resume the
/// saved state); the originating server is compared too, as MariaDB GTIDs name no server.
pub fn covers(server: &str, saved: &str) -> bool {
    let have: Vec<(u32, u32, u64)> = server.split(',').filter_map(parse).collect();
    is_state(saved)
        && saved.split(',').filter_map(parse).all(|(d, s, seq)| {
            have.iter()
                .any(|&(hd, hs, hseq)| hd == d && hs == s && hseq >= seq)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_state_covers_what_it_has_passed_from_the_same_server() {
        assert!(covers("0-1-60", "0-1-57"));
        assert!(covers("0-1-57,1-3-9", "0-1-57"));
        assert!(!covers("0-1-50", "0-1-57"));
        assert!(!covers("0-7-900", "0-1-57"), "another primary's history");
        assert!(!covers("0-1-60", "0-1-57,1-3-9"), "a domain it lacks");
        assert!(!covers("0-1-60", ""));
    }

    #[test]
    fn advancing_replaces_the_domain_entry_only() {
        assert_eq!(advance("0-1-41", "0-1-42").as_deref(), Some("0-1-42"));
        assert_eq!(
            advance("0-1-41,2-5-7", "2-6-8").as_deref(),
            Some("0-1-41,2-6-8")
        );
        assert_eq!(advance("2-5-7", "0-1-1").as_deref(), Some("0-1-1,2-5-7"));
        assert_eq!(advance("0-1-41", "3e11fa47-71ca:5"), None);
    }

    #[test]
    fn only_mariadb_states_are_states() {
        assert!(is_state("0-1-42"));
        assert!(is_state("0-1-42,1-2-3"));
        for not in [
            "",
            "0-1",
            "0-1-x",
            "3e11fa47-71ca-11e1-9e33-c80aa9429562:5",
            "0-1-2'; DROP",
        ] {
            assert!(!is_state(not), "{not:?}");
        }
    }
}
