//! A saved binlog position belongs to the server it was read from: a server rebuilt in place
//! (new data dir, same file names) is not resumed inside of; the daemon warns, starts at the
//! current end and sweeps.

use std::time::Duration;

use crate::common::bin::BinDaemon;
use crate::common::daemon::Scratch;
use crate::common::db::TestDb;
use crate::common::server::OwnServer;

const SERVICE: &str =
    "[process.default]\nrestart_strategy = service\nhealth_check_command = true\n";

async fn triggers(db: &TestDb, id: i64) -> Vec<String> {
    db.query_strings(&format!(
        "SELECT `trigger` FROM RESTART_HISTORY WHERE process_id = {id} ORDER BY id"
    ))
    .await
}

/// Writes the config for `db` and starts the daemon on it, ready (binlog connected).
async fn daemon_on(s: &Scratch, db: &TestDb) -> BinDaemon {
    std::fs::write(s.path("c.ini"), s.config_text(db, SERVICE)).unwrap();
    std::fs::set_permissions(
        s.path("c.ini"),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    let _ = std::fs::remove_file(s.path("monitor_service.log"));
    let mut d = BinDaemon::start(
        &s.path("c.ini"),
        &s.path("monitor_service.log"),
        &s.path("stderr"),
    );
    d.wait_ready().await;
    d
}

/// The size of a binlog file on the server (0 when it has no such file).
async fn file_size(db: &TestDb, file: &str) -> u64 {
    use mysql_async::prelude::Queryable;
    let mut conn = mysql_async::Conn::from_url(&db.url).await.unwrap();
    // Log_name, File_size (and on MySQL, Encrypted).
    let rows: Vec<mysql_async::Row> = conn.query("SHOW BINARY LOGS").await.unwrap_or_default();
    let _ = conn.disconnect().await;
    rows.iter()
        .find(|r| r.get::<String, _>(0).as_deref() == Some(file))
        .and_then(|r| r.get::<u64, _>(1))
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_position_saved_from_a_replaced_server_is_not_resumed() {
    let s = Scratch::new();
    s.fake_systemctl(0, "loaded");
    let saved = {
        let server = OwnServer::start("origin");
        let db = server.db().await;
        db.add_process(1, "svc1").await;
        let daemon = daemon_on(&s, &db).await;
        db.set_alarm(1).await;
        assert!(db.wait_cleared(1, Duration::from_secs(5)).await);
        assert_eq!(daemon.stop().await.code(), Some(0));
        std::fs::read_to_string(s.path("state/binlog_position")).unwrap()
        // The server is stopped and its data dir removed here.
    };
    assert!(saved.contains("\nserver_id 1\n"), "not bound: {saved}");
    let mut words = saved.split_whitespace();
    let (file, pos): (String, u64) = (
        words.next().unwrap().into(),
        words.next().unwrap().parse().unwrap(),
    );

    // Rebuilt in the same place: a new data dir whose log reuses the file names, with more
    // history than the old one so the saved offset lies inside the new log.
    let server = OwnServer::start("origin");
    let db = server.db().await;
    for id in 1..=30 {
        db.add_process(id, &format!("svc{id}")).await;
    }
    assert!(
        file_size(&db, &file).await > pos,
        "the rebuilt server's {file} is not past {pos}"
    );
    db.set_alarm(7).await; // raised while the daemon was away
    let daemon = daemon_on(&s, &db).await;
    assert!(
        db.wait_cleared(7, Duration::from_secs(10)).await,
        "the alarm raised while away was not swept"
    );
    db.handled_by_binlog(8).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let log = daemon.log_text();
    assert_eq!(daemon.stop().await.code(), Some(0));

    assert!(
        log.contains("[WARNING]") && log.contains("belongs to another server"),
        "{log}"
    );
    assert!(
        !log.contains("resuming the binlog at the saved position"),
        "{log}"
    );
    assert_eq!(triggers(&db, 7).await, vec!["startup"]);
    assert_eq!(triggers(&db, 8).await, vec!["binlog"]);
    assert_eq!(
        s.systemctl_calls(),
        vec!["restart svc1", "restart svc7", "restart svc8"],
        "each alarm handled once"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restarted_daemon_resumes_on_the_same_server_by_gtid_where_it_has_them() {
    let db = TestDb::new().await;
    let mariadb = db.query_strings("SELECT VERSION()").await[0].contains("MariaDB");
    let gtids = mariadb || db.query_strings("SELECT @@GLOBAL.gtid_mode").await == vec!["ON"];
    let s = Scratch::new();
    s.fake_systemctl(0, "loaded");
    db.add_process(1, "svc1").await;
    db.add_process(2, "svc2").await;
    let daemon = daemon_on(&s, &db).await;
    db.set_alarm(1).await;
    assert!(db.wait_cleared(1, Duration::from_secs(5)).await);
    assert_eq!(daemon.stop().await.code(), Some(0));
    let saved = std::fs::read_to_string(s.path("state/binlog_position")).unwrap();
    let first: Vec<&str> = saved.lines().next().unwrap().split_whitespace().collect();
    if mariadb {
        assert_eq!(first.len(), 3, "no GTID state saved: {saved}");
    }

    // Raised and cleared while the daemon was away: no sweep can see it, the resumed log does.
    db.add_process(3, "svc3").await;
    db.set_alarm(3).await;
    db.exec("UPDATE STATUS_PROCESS SET alarma = 0 WHERE process_id = 3")
        .await;

    let mut daemon = daemon_on(&s, &db).await;
    daemon
        .wait_log("binlog: alarm raised process_id=3", Duration::from_secs(5))
        .await;
    db.handled_by_binlog(2).await;
    let log = daemon.log_text();
    assert_eq!(daemon.stop().await.code(), Some(0));
    assert!(
        log.contains("resuming the binlog at the saved position"),
        "{log}"
    );
    if gtids {
        assert!(log.contains("by_gtid=true"), "{log}");
    }
    assert!(!log.contains("[WARNING]"), "{log}");
    assert_eq!(triggers(&db, 2).await, vec!["binlog"]);
    assert_eq!(s.systemctl_calls(), vec!["restart svc1", "restart svc2"]);
    db.drop_db().await;
}
