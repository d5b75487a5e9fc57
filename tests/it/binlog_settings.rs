//! Server settings that change what the binlog carries, against real servers: MariaDB's
//! compressed events, MySQL's compressed transactions, `lower_case_table_names = 1`, changes
//! logged as SQL text (session `binlog_format = STATEMENT`), and what `--check-config` says.

use std::time::{Duration, Instant};

use crate::common::daemon::{bin, eventually, Daemon, Scratch};
use crate::common::db::TestDb;
use crate::common::server::{self, OwnServer};

const SERVICE: &str =
    "[process.default]\nrestart_strategy = service\nhealth_check_command = true\n";

/// Waits until the daemon has saved a binlog position (it does so on connect).
async fn connected(s: &Scratch) -> bool {
    let f = s.path("state/binlog_position");
    eventually(Duration::from_secs(15), || f.exists()).await
}

async fn triggers(db: &TestDb, id: i64) -> Vec<String> {
    db.query_strings(&format!(
        "SELECT `trigger` FROM RESTART_HISTORY WHERE process_id = {id} ORDER BY id"
    ))
    .await
}

async fn is_mariadb(db: &TestDb) -> bool {
    db.query_strings("SELECT VERSION()").await[0].contains("MariaDB")
}

/// The type of every event in the server's binlog files (SHOW BINLOG EVENTS).
async fn event_types(db: &TestDb) -> Vec<String> {
    use mysql_async::prelude::Queryable;
    let mut conn = mysql_async::Conn::from_url(&db.url).await.unwrap();
    let mut types = Vec::new();
    for file in db.query_strings("SHOW BINARY LOGS").await {
        let rows: Vec<mysql_async::Row> = conn
            .query(format!("SHOW BINLOG EVENTS IN '{file}'"))
            .await
            .unwrap();
        types.extend(rows.iter().filter_map(|r| r.get::<String, _>(2)));
    }
    let _ = conn.disconnect().await;
    types
}

#[tokio::test(flavor = "multi_thread")]
async fn mariadb_compressed_events_are_decoded_by_the_binlog() {
    if server::flavor() != "mariadb" {
        eprintln!("skipped: log_bin_compress is MariaDB's (the MariaDB run covers it)");
        return;
    }
    let server = OwnServer::start("compress");
    let db = server.db().await;
    db.exec("SET GLOBAL log_bin_compress = ON; SET GLOBAL log_bin_compress_min_len = 10")
        .await;
    let s = Scratch::new();
    s.fake_systemctl(0, "loaded");
    db.add_process(1, "svc1").await;
    db.add_process(2, "svc2").await;
    let daemon = Daemon::start(s.config(&db, SERVICE));
    assert!(connected(&s).await, "binlog never connected");
    db.handled_by_binlog(1).await;
    // DDL arrives as a compressed query event: the columns are mapped again.
    db.exec("ALTER TABLE STATUS_PROCESS ADD COLUMN extra INT NOT NULL DEFAULT 7 FIRST")
        .await;
    db.handled_by_binlog(2).await;
    daemon.stop().await;
    assert_eq!(triggers(&db, 1).await, vec!["binlog"]);
    assert_eq!(triggers(&db, 2).await, vec!["binlog"]);
    assert_eq!(s.systemctl_calls(), vec!["restart svc1", "restart svc2"]);
    let types = event_types(&db).await;
    for t in ["Update_rows_compressed_v1", "Query_compressed"] {
        assert!(
            types.iter().any(|x| x == t),
            "no {t} event written: {types:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn mysql_compressed_transactions_are_decoded_by_the_binlog() {
    let db = TestDb::new().await;
    if is_mariadb(&db).await {
        eprintln!("skipped: binlog_transaction_compression is MySQL's (run the suite on MySQL)");
        db.drop_db().await;
        return;
    }
    let s = Scratch::new();
    s.fake_systemctl(0, "loaded");
    db.add_process(1, "svc1").await;
    let daemon = Daemon::start(s.config(&db, SERVICE));
    assert!(connected(&s).await, "binlog never connected");
    let t = Instant::now();
    db.exec(
        "SET SESSION binlog_transaction_compression = ON; \
         UPDATE STATUS_PROCESS SET alarma = 1 WHERE process_id = 1; \
         SET SESSION binlog_transaction_compression = OFF",
    )
    .await;
    assert!(db.wait_cleared(1, Duration::from_secs(5)).await);
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "took {:?}",
        t.elapsed()
    );
    daemon.stop().await;
    assert_eq!(triggers(&db, 1).await, vec!["binlog"]);
    let types = event_types(&db).await;
    assert!(
        types.iter().any(|x| x == "Transaction_payload"),
        "no compressed transaction written: {types:?}"
    );
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn lower_case_table_names_1_still_follows_status_process() {
    if server::flavor() != "mariadb" {
        eprintln!("skipped: MySQL sets lower_case_table_names only when a data dir is made (the MariaDB run covers it)");
        return;
    }
    let mut server = OwnServer::start("lctn");
    server.restart_with(&["--lower-case-table-names=1"]).await;
    let db = server.db().await;
    let folded = db
        .query_strings("SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME LIKE 'status%'")
        .await;
    assert_eq!(
        folded,
        vec!["status_process"],
        "the server does not fold names"
    );
    let s = Scratch::new();
    s.fake_systemctl(0, "loaded");
    db.add_process(1, "svc1").await;
    let daemon = Daemon::start(s.config(&db, SERVICE));
    assert!(connected(&s).await, "binlog never connected");
    db.handled_by_binlog(1).await;
    daemon.stop().await;
    assert_eq!(triggers(&db, 1).await, vec!["binlog"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_statement_format_change_kicks_a_sweep_at_once() {
    let db = TestDb::new().await;
    let s = Scratch::new();
    s.fake_systemctl(0, "loaded");
    db.add_process(1, "svc1").await;
    db.add_process(2, "svc2").await;
    let daemon = Daemon::start(s.config(&db, SERVICE)); // check_interval = 3600
    assert!(connected(&s).await, "binlog never connected");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let t = Instant::now();
    db.exec(
        "SET SESSION binlog_format = 'STATEMENT'; \
         UPDATE STATUS_PROCESS SET alarma = 1 WHERE process_id = 1; \
         SET SESSION binlog_format = 'ROW'",
    )
    .await;
    assert!(
        db.wait_cleared(1, Duration::from_secs(5)).await,
        "the change logged as SQL text waited for the hourly sweep"
    );
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "took {:?}",
        t.elapsed()
    );
    // Row format again: the binlog itself.
    db.handled_by_binlog(2).await;
    daemon.stop().await;
    assert_eq!(triggers(&db, 1).await, vec!["sweep"]);
    assert_eq!(triggers(&db, 2).await, vec!["binlog"]);
    assert_eq!(s.systemctl_calls(), vec!["restart svc1", "restart svc2"]);
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn check_config_reports_each_binlog_setting_and_what_is_done() {
    let db = TestDb::new().await;
    let s = Scratch::new();
    s.fake_systemctl(0, "loaded");
    std::fs::write(s.path("c.ini"), s.config_text(&db, SERVICE)).unwrap();
    let out = bin(&["--check-config", "-c", s.path("c.ini").to_str().unwrap()]);
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{text}");
    for needle in [
        "binlog_format = ROW: row events are decoded",
        "STATEMENT changes to STATUS_PROCESS makes the daemon sweep at once",
        "binlog_row_image = FULL",
        "lower_case_table_names = 0: events must name STATUS_PROCESS exactly",
    ] {
        assert!(text.contains(needle), "no {needle:?} in:\n{text}");
    }
    let flavour_line = if is_mariadb(&db).await {
        "log_bin_compress = OFF: compressed query and row events are inflated and decoded"
    } else {
        "binlog_transaction_compression = OFF"
    };
    assert!(
        text.contains(flavour_line),
        "no {flavour_line:?} in:\n{text}"
    );
    db.drop_db().await;
}
