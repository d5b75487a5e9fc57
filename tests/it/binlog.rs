//! The binlog source against a real server: latency, multi-row events, server crashes, purged
//! positions, a server that cannot serve the binlog, DDL while running, server_id clashes.

use std::time::{Duration, Instant};

use crate::common::bin::BinDaemon;
use crate::common::daemon::{eventually, read_lines, Daemon, Scratch};
use crate::common::db::TestDb;
use crate::common::server::OwnServer;

const SERVICE: &str =
    "[process.default]\nrestart_strategy = service\nhealth_check_command = true\n";

/// Waits until the daemon has saved a binlog position (it does so on connect).
async fn connected(s: &Scratch) -> bool {
    let f = s.path("state/binlog_position");
    eventually(Duration::from_secs(15), || f.exists()).await
}

fn log_of(s: &Scratch) -> String {
    std::fs::read_to_string(s.path("monitor_service.log")).unwrap_or_default()
}

async fn triggers(db: &TestDb, id: i64) -> Vec<String> {
    db.query_strings(&format!(
        "SELECT `trigger` FROM RESTART_HISTORY WHERE process_id = {id} ORDER BY id"
    ))
    .await
}

/// For a server that cannot serve the binlog: `binlog = on` must exit 69 (its stderr is
/// returned), then `binlog = auto` must handle alarm 1 by sweeps (its log is returned).
async fn on_refuses_auto_sweeps(s: &Scratch, db: &TestDb) -> (String, String) {
    let text = s
        .config_text(db, SERVICE)
        .replace("check_interval = 3600", "check_interval = 0.5");
    std::fs::write(s.path("auto.ini"), &text).unwrap();
    std::fs::write(
        s.path("on.ini"),
        text.replace("[monitor]\n", "[monitor]\nbinlog = on\n"),
    )
    .unwrap();

    let mut child = BinDaemon::beside(&s.path("on.ini"));
    let status = child
        .wait_exit(Duration::from_secs(20))
        .await
        .expect("binlog = on must exit");
    assert_eq!(status.code(), Some(69));
    let err = child.stderr_text();

    std::fs::remove_file(s.path("monitor_service.log")).unwrap();
    let child = BinDaemon::beside(&s.path("auto.ini"));
    tokio::time::sleep(Duration::from_millis(500)).await;
    db.set_alarm(1).await;
    assert!(db.wait_cleared(1, Duration::from_secs(10)).await);
    tokio::time::sleep(Duration::from_millis(1200)).await; // a few more sweeps
    assert_eq!(child.stop().await.code(), Some(0));
    (err, log_of(s))
}

#[tokio::test(flavor = "multi_thread")]
async fn alarm_is_handled_through_the_binlog_within_a_second() {
    let db = TestDb::new().await;
    let s = Scratch::new();
    s.fake_systemctl(0, "loaded");
    db.add_process(1, "svc").await;
    let daemon = Daemon::start(s.config(&db, SERVICE)); // check_interval = 3600
    assert!(connected(&s).await, "binlog never connected");
    let t = Instant::now();
    db.set_alarm(1).await;
    assert!(db.wait_cleared(1, Duration::from_secs(5)).await);
    let took = t.elapsed();
    daemon.stop().await;
    assert!(
        took < Duration::from_secs(1),
        "took {took:?}: the sweep is an hour away"
    );
    assert_eq!(triggers(&db, 1).await, vec!["binlog"]);
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn one_update_alarming_many_rows_handles_each_once() {
    let db = TestDb::new().await;
    let s = Scratch::new();
    s.fake_systemctl(0, "loaded");
    let n = 120;
    for id in 1..=n {
        db.add_process(id, &format!("svc{id}")).await;
    }
    let log = s.path("pre.log");
    let mut config = s.config(
        &db,
        &format!(
            "[process.default]\nrestart_strategy = service\nhealth_check_command = true\npre_restart_command = sh -c \"echo %s >> {}\"\n",
            log.display()
        ),
    );
    config.monitor.max_parallel_restarts = 16;
    let daemon = Daemon::start(config);
    assert!(connected(&s).await);
    db.exec("UPDATE STATUS_PROCESS SET alarma = 1").await;
    let cleared = async {
        for _ in 0..600 {
            if db
                .query_strings("SELECT COUNT(*) FROM STATUS_PROCESS WHERE alarma = 1")
                .await
                == vec!["0"]
            {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    };
    assert!(cleared.await, "not all alarms cleared");
    daemon.stop().await;
    let mut seen = read_lines(&log);
    seen.sort();
    let mut want: Vec<String> = (1..=n).map(|i| format!("svc{i}")).collect();
    want.sort();
    assert_eq!(seen, want, "each process exactly once");
    let by_trigger = db
        .query_strings(
            "SELECT CONCAT(`trigger`, '=', COUNT(*)) FROM RESTART_HISTORY GROUP BY `trigger`",
        )
        .await;
    assert_eq!(by_trigger, vec![format!("binlog={n}")]);
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn column_added_first_while_running_still_maps_to_the_right_process() {
    let db = TestDb::new().await;
    let s = Scratch::new();
    s.fake_systemctl(0, "loaded");
    db.add_process(1, "svcA").await;
    db.add_process(2, "svcB").await;
    let daemon = Daemon::start(s.config(&db, SERVICE));
    assert!(connected(&s).await);
    db.set_alarm(1).await;
    assert!(db.wait_cleared(1, Duration::from_secs(5)).await);
    db.exec("ALTER TABLE STATUS_PROCESS ADD COLUMN extra INT NOT NULL DEFAULT 7 FIRST")
        .await;
    db.handled_by_binlog(2).await;
    daemon.stop().await;
    assert_eq!(s.systemctl_calls(), vec!["restart svcA", "restart svcB"]);
    assert_eq!(triggers(&db, 2).await, vec!["binlog"]);
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn server_killed_and_restarted_alarms_are_handled_after() {
    let server = OwnServer::start("kill");
    let db = server.db().await;
    let s = Scratch::new();
    s.fake_systemctl(0, "loaded");
    db.add_process(1, "svc1").await;
    db.add_process(2, "svc2").await;
    let mut config = s.config(&db, SERVICE);
    config.database.connect_timeout = Duration::from_secs(2);
    let daemon = Daemon::start(config);
    assert!(connected(&s).await);

    server.kill9();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    server.restart().await;
    // Raised right after the restart, before the daemon's binlog connection is back.
    db.set_alarm(1).await;
    assert!(
        db.wait_cleared(1, Duration::from_secs(40)).await,
        "alarm raised around the crash was lost"
    );

    // Once reconnected, alarms come through the binlog again.
    let pos_file = s.path("state/binlog_position");
    let _ = std::fs::remove_file(&pos_file);
    assert!(
        eventually(Duration::from_secs(30), || pos_file.exists()).await
            || triggers(&db, 1).await.len() == 1
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let t = Instant::now();
    db.set_alarm(2).await;
    assert!(db.wait_cleared(2, Duration::from_secs(10)).await);
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "took {:?}",
        t.elapsed()
    );
    daemon.stop().await;
    assert_eq!(triggers(&db, 2).await, vec!["binlog"]);
    assert_eq!(triggers(&db, 1).await.len(), 1, "handled exactly once");
}

#[tokio::test(flavor = "multi_thread")]
async fn purged_saved_position_warns_and_still_handles_the_alarm() {
    let server = OwnServer::start("purge");
    let db = server.db().await;
    let s = Scratch::new();
    s.fake_systemctl(0, "loaded");
    db.add_process(1, "svc1").await;
    std::fs::write(s.path("c.ini"), s.config_text(&db, SERVICE)).unwrap();
    let child = BinDaemon::beside(&s.path("c.ini"));
    assert!(connected(&s).await);
    assert_eq!(child.stop().await.code(), Some(0));
    let saved = std::fs::read_to_string(s.path("state/binlog_position")).unwrap();

    db.exec("FLUSH BINARY LOGS").await;
    db.exec("FLUSH BINARY LOGS").await;
    let current = db.binlog_status().await;
    let saved_file = saved.split_whitespace().next().unwrap().to_string();
    // The server keeps a file a (just stopped) replica still reads: purge until it is gone.
    let mut purged = false;
    for _ in 0..100 {
        db.exec(&format!("PURGE BINARY LOGS TO '{}'", current[0]))
            .await;
        if !db
            .query_strings("SHOW BINARY LOGS")
            .await
            .contains(&saved_file)
        {
            purged = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(purged, "{saved_file} could not be purged");
    db.set_alarm(1).await;

    let child = BinDaemon::beside(&s.path("c.ini"));
    assert!(db.wait_cleared(1, Duration::from_secs(20)).await);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(child.stop().await.code(), Some(0));
    let log = log_of(&s);
    assert!(log.contains("no longer on the server"), "{saved}\n{log}");
    assert!(log.contains("[WARNING]"), "{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn mixed_binlog_format_auto_warns_once_and_sweeps_on_refuses() {
    let server = OwnServer::start("mixed");
    let db = server.db().await;
    db.exec("SET GLOBAL binlog_format = 'MIXED'").await;
    let s = Scratch::new();
    s.fake_systemctl(0, "loaded");
    db.add_process(1, "svc1").await;
    let (err, log) = on_refuses_auto_sweeps(&s, &db).await;
    assert!(err.contains("binlog_format is MIXED, not ROW"), "{err}");
    assert!(err.contains("SET GLOBAL binlog_format = 'ROW'"), "{err}");
    assert_eq!(log.matches("binlog_format is MIXED").count(), 1, "{log}");
    assert_eq!(triggers(&db, 1).await, vec!["sweep"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_replication_grants_auto_sweeps_on_refuses() {
    let mut db = TestDb::new().await;
    let s = Scratch::new();
    s.fake_systemctl(0, "loaded");
    db.add_process(1, "svc1").await;
    let user = format!("nb{}", &db.name[db.name.len() - 6..]);
    db.exec(&format!(
        "CREATE USER '{user}'@'%' IDENTIFIED BY 'pw-{user}'; \
         GRANT SELECT, UPDATE, INSERT ON `{name}`.* TO '{user}'@'%'",
        name = db.name
    ))
    .await;
    db.user = user.clone();
    db.password = Some(format!("pw-{user}"));
    let (err, log) = on_refuses_auto_sweeps(&s, &db).await;
    assert!(err.contains("lacks REPLICATION SLAVE"), "{err}");
    assert!(
        err.contains("GRANT BINLOG MONITOR ON *.*")
            || err.contains("GRANT REPLICATION CLIENT ON *.*"),
        "{err}"
    );
    assert_eq!(
        log.matches("the binlog cannot be followed").count(),
        1,
        "{log}"
    );
    db.exec(&format!("DROP USER '{user}'@'%'")).await;
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn two_daemons_with_one_server_id_give_a_clear_error_not_a_loop() {
    let db = TestDb::new().await;
    let s1 = Scratch::new();
    let s2 = Scratch::new();
    for s in [&s1, &s2] {
        s.fake_systemctl(0, "loaded");
        let text = s.config_text(&db, SERVICE);
        let text = text
            .lines()
            .map(|l| {
                if l.starts_with("server_id") {
                    "server_id = 777001\nbinlog = on"
                } else {
                    l
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        std::fs::write(s.path("c.ini"), text).unwrap();
    }
    let mut first = BinDaemon::beside(&s1.path("c.ini"));
    assert!(connected(&s1).await);
    let mut second = BinDaemon::beside(&s2.path("c.ini"));
    // One of them gives up with a clear message; the other keeps following the binlog.
    let end = Instant::now() + Duration::from_secs(20);
    let (loser, winner) = loop {
        if let Some(st) = first.child.try_wait().unwrap() {
            break ((st, first, &s1), (second, &s2));
        }
        if let Some(st) = second.child.try_wait().unwrap() {
            break ((st, second, &s2), (first, &s1));
        }
        assert!(
            Instant::now() < end,
            "neither daemon reported the server_id clash"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let (status, child, ls) = loser;
    assert_eq!(status.code(), Some(69));
    let err = child.stderr_text();
    assert!(err.contains("server_id 777001"), "{err}");
    assert!(err.contains("set [monitor] server_id"), "{err}");
    let reconnects = log_of(ls).matches("binlog connected").count();
    assert!(reconnects <= 2, "looped: {reconnects} connects");
    let (mut winner, _) = winner;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(winner.running(), "the other daemon keeps running");
    assert_eq!(winner.stop().await.code(), Some(0));
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn minimal_row_images_still_trigger_through_the_binlog() {
    let server = OwnServer::start("minimal");
    let db = server.db().await;
    db.exec("SET GLOBAL binlog_row_image = 'MINIMAL'").await;
    let s = Scratch::new();
    s.fake_systemctl(0, "loaded");
    db.add_process(1, "svc1").await;
    db.add_process(2, "svc2").await;
    let daemon = Daemon::start(s.config(&db, SERVICE));
    assert!(connected(&s).await);
    // A notes-only update (no alarma in the after image) must not trigger.
    db.exec("UPDATE STATUS_PROCESS SET notes = 'x' WHERE process_id = 2")
        .await;
    db.handled_by_binlog(1).await;
    daemon.stop().await;
    assert_eq!(triggers(&db, 1).await, vec!["binlog"]);
    assert_eq!(s.systemctl_calls(), vec!["restart svc1"]);
    db.drop_db().await;
}
