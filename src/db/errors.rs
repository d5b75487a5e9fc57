//! What went wrong talking to the database, and what kind of wrong: unreachable (an outage),
//! refused (the server answered no: privileges, a missing table, a lock wait), or denied at
//! connection (a wrong password or database name, fatal at start-up).

use std::time::Duration;

use crate::exit;

/// What went wrong talking to the database.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("cannot reach the database at {target} within {timeout:?}; check [database] host/port/socket and that the server is running")]
    ConnectTimeout { target: String, timeout: Duration },
    #[error("cannot connect to the database at {target}: {reason}{hint}")]
    Connect {
        target: String,
        reason: String,
        /// The server's error code when the server refused the connection.
        code: Option<u16>,
        hint: &'static str,
    },
    #[error("{what} failed: {source}{hint}")]
    Query {
        what: &'static str,
        source: mysql_async::Error,
        hint: &'static str,
    },
    #[error("{what} got no answer within {timeout:?}; the server or the network is stalled")]
    QueryTimeout {
        what: &'static str,
        timeout: Duration,
    },
}

/// Server codes that refuse the connection itself: wrong account or password (1045), no access
/// to the database (1044), no such database (1049).
const DENIED_AT_CONNECT: [u16; 3] = [1044, 1045, 1049];

/// Server codes that mean "waited for a lock too long" (lock wait timeout, deadlock).
const LOCK_WAITS: [u16; 2] = [1205, 1213];

impl DbError {
    /// True when the error means the server could not be reached (as opposed to a refused query).
    pub fn is_connectivity(&self) -> bool {
        match self {
            DbError::ConnectTimeout { .. } | DbError::QueryTimeout { .. } => true,
            DbError::Connect { code, .. } => !code.is_some_and(|c| DENIED_AT_CONNECT.contains(&c)),
            DbError::Query { source, .. } => source.is_fatal(),
        }
    }

    /// The kind of a refusal: what was refused and the server's code (`None` when reachable
    /// errors are not refusals). One log line is written per kind, not per process.
    pub fn refusal(&self) -> Option<(&'static str, u16)> {
        match self {
            DbError::Query {
                what,
                source: mysql_async::Error::Server(e),
                ..
            } => Some((what, e.code)),
            DbError::Connect { code: Some(c), .. } if DENIED_AT_CONNECT.contains(c) => {
                Some(("connecting", *c))
            }
            _ => None,
        }
    }

    /// True when the server answered with a refusal (see [`DbError::refusal`]).
    pub fn is_refusal(&self) -> bool {
        self.refusal().is_some()
    }

    /// True when [`crate::db::Db::observe`] logs this error itself (an outage once, a refusal
    /// once per kind): callers then say nothing more.
    pub fn is_reported(&self) -> bool {
        self.is_connectivity() || self.is_refusal()
    }

    /// True for a lock wait timeout or deadlock: someone else holds the rows or the table.
    pub fn is_lock_wait(&self) -> bool {
        self.refusal().is_some_and(|(_, c)| LOCK_WAITS.contains(&c))
    }

    /// The server's error code, when the server answered with an error.
    pub fn server_code(&self) -> Option<u16> {
        match self {
            DbError::Query {
                source: mysql_async::Error::Server(e),
                ..
            } => Some(e.code),
            DbError::Connect { code, .. } => *code,
            _ => None,
        }
    }

    /// The exit code of a daemon that cannot start because of this error: 77 (EX_NOPERM) when
    /// the server denies the account (1045) or its database (1044), 78 (EX_CONFIG) when the
    /// configured database does not exist (1049), else 69 (EX_UNAVAILABLE).
    pub fn exit_code(&self) -> i32 {
        match self.server_code() {
            Some(1044 | 1045) => exit::NOPERM,
            Some(1049) => exit::CONFIG,
            _ => exit::UNAVAILABLE,
        }
    }

    /// True when retrying cannot help until an operator fixes the account or the config:
    /// at start-up the daemon then exits with [`DbError::exit_code`] instead of waiting.
    pub fn is_denied_at_connect(&self) -> bool {
        matches!(self, DbError::Connect { code: Some(c), .. } if DENIED_AT_CONNECT.contains(c))
    }
}

/// What fixes the error, as a `; ...` suffix for its message.
pub fn hint_for(e: &mysql_async::Error) -> &'static str {
    match e {
        mysql_async::Error::Server(s) => match s.code {
            1045 => "; check [database] user and password (and the account's host part on the server), and ssl_mode: a server with require_secure_transport or an account REQUIRE SSL refuses a plain connection this way (set ssl_mode = required or a verify_ mode, not disabled)",
            1044 => "; grant the account its privileges on [database] database (the GRANTs in sql/setup.sql)",
            1049 => "; check [database] database, or create it with sql/setup.sql",
            1142 | 1143 | 1227 => {
                "; grant the daemon's account the privileges listed in sql/setup.sql"
            }
            1146 => "; load sql/setup.sql into the configured database",
            1205 | 1213 => {
                "; another session holds a lock on the table (LOCK TABLES or a long transaction)"
            }
            _ => crate::tls::hint(e),
        },
        _ => crate::tls::hint(e),
    }
}

/// The server's error code of a driver error.
pub fn code_of(e: &mysql_async::Error) -> Option<u16> {
    match e {
        mysql_async::Error::Server(s) => Some(s.code),
        _ => None,
    }
}

/// Maps a driver error of the query `what` to a [`DbError`].
pub fn query_err(what: &'static str) -> impl Fn(mysql_async::Error) -> DbError {
    move |source| DbError::Query {
        what,
        hint: hint_for(&source),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(code: u16) -> mysql_async::Error {
        mysql_async::Error::Server(mysql_async::ServerError {
            code,
            message: "no".into(),
            state: "HY000".into(),
        })
    }

    fn connect(code: Option<u16>) -> DbError {
        DbError::Connect {
            target: "h:1".into(),
            reason: "no".into(),
            code,
            hint: "",
        }
    }

    #[test]
    fn denied_connections_are_refusals_with_their_exit_codes() {
        for (code, exit) in [(1045, 77), (1044, 77), (1049, 78)] {
            let e = connect(Some(code));
            assert!(!e.is_connectivity(), "{code}");
            assert!(e.is_denied_at_connect(), "{code}");
            assert_eq!(e.refusal(), Some(("connecting", code)));
            assert_eq!(e.exit_code(), exit);
        }
        let down = connect(None);
        assert!(down.is_connectivity() && !down.is_refusal() && !down.is_denied_at_connect());
        assert_eq!(down.exit_code(), 69);
        // Too many connections is an outage, not a denial.
        assert!(connect(Some(1040)).is_connectivity());
    }

    #[test]
    fn refused_queries_have_a_kind_and_lock_waits_are_told_apart() {
        let revoked = query_err("clearing the alarm")(server(1142));
        assert_eq!(revoked.refusal(), Some(("clearing the alarm", 1142)));
        assert!(revoked.is_reported() && !revoked.is_connectivity() && !revoked.is_lock_wait());
        assert!(revoked.to_string().contains("grant the daemon's account"));
        let waited = query_err("reading the process row")(server(1205));
        assert!(waited.is_lock_wait());
        let stalled = DbError::QueryTimeout {
            what: "the sweep query",
            timeout: Duration::from_secs(1),
        };
        assert!(stalled.is_connectivity() && stalled.refusal().is_none());
    }
}
