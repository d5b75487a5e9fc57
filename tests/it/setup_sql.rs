//! `sql/setup.sql` run whole by the server's own command-line client on the suite's server
//! (MariaDB or MySQL), unchanged but for the database and account names.

use std::process::Command;

use mysql_async::prelude::*;

use crate::common::daemon::Scratch;
use crate::common::db::TestDb;
use crate::common::server::native_client;

/// The binlog status, by whichever statement the server has.
async fn binlog_status(conn: &mut mysql_async::Conn) -> Result<Vec<mysql_async::Row>, String> {
    match conn.query("SHOW BINARY LOG STATUS").await {
        Ok(rows) => Ok(rows),
        Err(_) => conn
            .query("SHOW MASTER STATUS")
            .await
            .map_err(|e| e.to_string()),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn setup_sql_runs_unchanged_and_grants_the_binlog_status_privilege_the_server_has() {
    let db = TestDb::new().await;
    let s = Scratch::new();
    let account = format!("su_{}", db.name.trim_start_matches("msit_"));
    assert!(account.len() <= 32, "{account}");
    let sql = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/sql/setup.sql"))
        .unwrap()
        .replace("v_process_monitor", &db.name)
        .replace("'monitor'@'localhost'", &format!("'{account}'@'%'"));
    std::fs::write(s.path("setup.sql"), sql).unwrap();
    let password = db.password.clone().unwrap_or_default();
    std::fs::write(
        s.path("client.cnf"),
        format!(
            "[client]\nuser={}\npassword=\"{password}\"\nhost={}\nport={}\nprotocol=TCP\n",
            db.user, db.host, db.port
        ),
    )
    .unwrap();

    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "{} --defaults-file='{}' < '{}'",
            native_client(),
            s.path("client.cnf").display(),
            s.path("setup.sql").display()
        ))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "setup.sql failed: {stderr}");
    assert!(!stderr.contains("ERROR"), "{stderr}");

    // The account setup.sql made, logging in for the first time (a full authentication).
    let url = format!(
        "mysql://{account}:change-me@{}:{}/{}",
        db.host, db.port, db.name
    );
    let mut conn = mysql_async::Conn::from_url(&url)
        .await
        .unwrap_or_else(|e| panic!("setup.sql's account cannot log in: {e}"));
    let version: String = conn.query_first("SELECT VERSION()").await.unwrap().unwrap();
    let grants: Vec<String> = conn.query("SHOW GRANTS").await.unwrap();
    let global = grants
        .iter()
        .find(|g| g.contains("ON *.*"))
        .unwrap_or_else(|| panic!("no global grant: {grants:?}"));
    assert!(global.contains("REPLICATION SLAVE"), "{global}");
    let status_privilege = if version.contains("MariaDB") {
        "BINLOG MONITOR"
    } else {
        "REPLICATION CLIENT"
    };
    assert!(global.contains(status_privilege), "{version}: {global}");
    let status = binlog_status(&mut conn).await;
    assert!(
        status.as_ref().is_ok_and(|rows| !rows.is_empty()),
        "{version}: the binlog status is not readable: {status:?}"
    );
    let samples: Vec<String> = conn
        .query("SELECT process_name FROM PROCESE ORDER BY process_id")
        .await
        .unwrap();
    assert_eq!(samples, ["sshd", "crond", "httpd", "rsyslogd"]);
    let _ = conn.disconnect().await;

    db.exec(&format!("DROP USER '{account}'@'%'")).await;
    db.drop_db().await;
}
