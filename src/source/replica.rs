//! Where the binlog stream is read from: `[database]`, or a replica named by `[binlog]`. The
//! readiness check runs against that server and, for a replica, checks that it writes the
//! updates it replicates to its own binlog (else alarms set on the primary never show up).

use mysql_async::prelude::Queryable;
use mysql_async::Conn;

use crate::config::Config;
use crate::db::{self, Db};
use crate::source::binlog::{self, Readiness};

/// [`binlog::check`] against the server the stream comes from; with `[binlog]`, also that the
/// server is fit to be read from ([`replica_problems`]). `db` is the `[database]` pool.
pub async fn check(config: &Config, db: &Db) -> Result<Readiness, Vec<String>> {
    let Some(server) = &config.binlog_server else {
        return binlog::check(db, &config.database.user).await;
    };
    let source = Db::new(server, &config.monitor.history_table);
    let target = db::target_of(server);
    let mut result = binlog::check(&source, &server.user).await;
    let extra = match source.conn().await {
        Ok(mut conn) => replica_problems(&mut conn).await,
        Err(_) => Vec::new(),
    };
    source.close().await;
    if !extra.is_empty() {
        result = match result {
            Ok(_) => Err(extra),
            Err(mut problems) => {
                problems.extend(extra);
                Err(problems)
            }
        };
    }
    result.map_err(|problems| {
        problems
            .into_iter()
            .map(|p| format!("[binlog] server {target}: {p}"))
            .collect()
    })
}

/// On a replica, `log_replica_updates` (MySQL 8.0.26+) / `log_slave_updates` must be ON; a
/// server that replicates from nothing (the primary itself) needs nothing more.
pub async fn replica_problems(conn: &mut Conn) -> Vec<String> {
    let is_replica = match conn.query_iter("SHOW REPLICA STATUS").await {
        Ok(mut r) => r
            .collect::<mysql_async::Row>()
            .await
            .is_ok_and(|v| !v.is_empty()),
        Err(_) => {
            let rows: Vec<mysql_async::Row> =
                conn.query("SHOW SLAVE STATUS").await.unwrap_or_default();
            !rows.is_empty()
        }
    };
    if !is_replica {
        return Vec::new();
    }
    let on: Result<Option<i64>, _> = conn
        .query_first("SELECT @@GLOBAL.log_replica_updates")
        .await;
    let (name, on) = match on {
        Ok(v) => ("log_replica_updates", v),
        Err(_) => (
            "log_slave_updates",
            conn.query_first("SELECT @@GLOBAL.log_slave_updates")
                .await
                .unwrap_or(None),
        ),
    };
    match on {
        Some(1) => Vec::new(),
        _ => vec![format!(
            "the replica does not write the updates it replicates to its binlog ({name} is OFF), so alarms set on the primary would never reach the daemon: add `{name} = ON` under [mysqld] in the replica's my.cnf and restart it"
        )],
    }
}
