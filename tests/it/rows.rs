//! Rows that break the schema's assumptions, against a running daemon: STATUS_PROCESS rows
//! without a PROCESE row, `alarma` values other than 0 and 1, NULL / full / non-ASCII notes,
//! extreme ids, and one name under two ids.

use std::time::Duration;

use crate::common::daemon::{eventually, read_lines, Daemon, Scratch};
use crate::common::db::TestDb;
use crate::common::procs;

/// Config whose every command records its argv into `calls` (service strategy through the
/// recording fake systemctl; the health check records too and succeeds).
fn recording_config(s: &Scratch, db: &TestDb) -> monitor_service::Config {
    let calls = s.path("calls");
    let r = s.script(
        "bin/record",
        &format!("echo \"$*\" >> '{}'", calls.display()),
    );
    s.fake_systemctl(0, "loaded");
    s.config(
        db,
        &format!(
            "[process.default]\nrestart_strategy = service\npre_restart_command = {r} pre %s\n\
             health_check_command = {r} health %s\n",
            r = r.display()
        ),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn alarma_other_than_one_is_not_an_alarm_and_odd_rows_do_not_stop_the_daemon() {
    let db = TestDb::new().await;
    let s = Scratch::new();
    let config = recording_config(&s, &db);
    // Present at start-up: 2, -1, 127, and a row without a PROCESE row.
    for (id, name) in [(20, "odd20"), (21, "odd21"), (22, "odd22"), (30, "nulls")] {
        db.add_process(id, name).await;
    }
    db.add_process(i64::from(i32::MAX), "maxid").await;
    db.add_process(-5, "negid").await;
    db.exec(
        "UPDATE STATUS_PROCESS SET alarma = 2 WHERE process_id = 20; \
         UPDATE STATUS_PROCESS SET alarma = -1 WHERE process_id = 21; \
         UPDATE STATUS_PROCESS SET alarma = 127 WHERE process_id = 22; \
         SET FOREIGN_KEY_CHECKS = 0; \
         INSERT INTO STATUS_PROCESS (process_id, alarma) VALUES (10, 1); \
         SET FOREIGN_KEY_CHECKS = 1",
    )
    .await;
    let d = Daemon::start(config);

    let orphan = |notes: Option<String>| notes.is_some_and(|n| n.contains("no PROCESE row"));
    let mut ok = false;
    for _ in 0..200 {
        if orphan(db.row(10).await.1) {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ok, "the orphan row at start-up gets a note");

    // While it runs (binlog): odd values again, an orphan row, rows with odd notes.
    db.exec(&format!(
        "UPDATE STATUS_PROCESS SET alarma = 127 WHERE process_id = 20; \
         UPDATE STATUS_PROCESS SET alarma = -128 WHERE process_id = 21; \
         UPDATE STATUS_PROCESS SET alarma = 2, notes = NULL WHERE process_id = 22; \
         SET FOREIGN_KEY_CHECKS = 0; \
         INSERT INTO STATUS_PROCESS (process_id, alarma) VALUES (11, 1); \
         SET FOREIGN_KEY_CHECKS = 1; \
         UPDATE STATUS_PROCESS SET alarma = 1, notes = '{}' WHERE process_id = {}; \
         UPDATE STATUS_PROCESS SET alarma = 1, notes = NULL WHERE process_id = -5",
        "é".repeat(100),
        i32::MAX
    ))
    .await;
    // The later rows are handled, so the earlier events were seen (one binlog, in order).
    assert!(
        db.wait_cleared(i64::from(i32::MAX), Duration::from_secs(20))
            .await
    );
    assert!(db.wait_cleared(-5, Duration::from_secs(20)).await);
    for _ in 0..200 {
        if orphan(db.row(11).await.1) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(orphan(db.row(11).await.1), "{:?}", db.row(11).await);
    assert_eq!(db.row(10).await.0, 1, "an orphan's alarm stays raised");

    // Values other than 1 were left alone: nothing ran, nothing written.
    assert_eq!(db.row(20).await, (127, None));
    assert_eq!(db.row(21).await, (-128, None));
    assert_eq!(db.row(22).await, (2, None));
    let calls = read_lines(&s.path("calls"));
    for c in &calls {
        assert!(
            c.ends_with(" maxid") || c.ends_with(" negid"),
            "unexpected command {c:?}"
        );
    }
    let notes = db.row(i64::from(i32::MAX)).await.1.unwrap();
    assert!(notes.contains("restarted via service"), "{notes}");

    // 127 -> 1 and 2 -> 1 are alarms being raised.
    db.exec(
        "UPDATE STATUS_PROCESS SET alarma = 1 WHERE process_id IN (20, 22); \
         UPDATE STATUS_PROCESS SET alarma = 0 WHERE process_id = 21",
    )
    .await;
    assert!(db.wait_cleared(20, Duration::from_secs(20)).await);
    assert!(db.wait_cleared(22, Duration::from_secs(20)).await);
    assert_eq!(db.row(21).await, (0, None));

    // The orphan gets its PROCESE row: the next alarm restarts it.
    db.exec("INSERT INTO PROCESE (process_id, process_name) VALUES (11, 'late11'); UPDATE STATUS_PROCESS SET alarma = 0 WHERE process_id = 11; UPDATE STATUS_PROCESS SET alarma = 1 WHERE process_id = 11").await;
    assert!(db.wait_cleared(11, Duration::from_secs(20)).await);

    let counts = d.stop().await;
    assert_eq!(counts.failed, 0, "{counts:?}");
    assert_eq!(counts.succeeded, 5, "{counts:?}");
    assert!(counts.refused >= 2, "{counts:?}");
    let systemctl = s.systemctl_calls();
    let mut restarts: Vec<&str> = systemctl
        .iter()
        .filter(|c| c.starts_with("restart"))
        .map(String::as_str)
        .collect();
    restarts.sort_unstable();
    assert_eq!(
        restarts,
        [
            "restart late11",
            "restart maxid",
            "restart negid",
            "restart odd20",
            "restart odd22"
        ],
        "{systemctl:?}"
    );
    db.drop_db().await;
}

/// Two ids name the same process and both alarms are raised in one statement. Both are alarms
/// (both get handled and cleared); the process must end up running exactly once.
///
/// Fails today: the pipeline keeps one procedure per id, so the two procedures run at once,
/// both find the old instance, both start a new one, and two instances run. Needs procedures
/// serialised per process name in `src/supervisor/mod.rs` (a per-name async lock around the
/// attempts); un-ignore when that is in.
#[tokio::test(flavor = "multi_thread")]
async fn one_name_under_two_ids() {
    let db = TestDb::new().await;
    let s = Scratch::new();
    let name = procs::unique_name("dup");
    let bin = procs::demo_binary(s.dir.path(), &name);
    let starts = s.path("starts");
    let old = procs::start(&bin);
    assert!(eventually(Duration::from_secs(5), || procs::pids(&name) == vec![old]).await);
    db.add_process(1, &name).await;
    db.add_process(2, &name).await;
    let config = s.config(
        &db,
        &format!(
            "[process.default]\nrestart_strategy = process\n\
             start_command = sh -c \"echo start >> '{}'; exec '{}' 100000\"\n\
             health_check_command = pgrep -x %s\nrestart_delay = 0.2\n",
            starts.display(),
            bin.display()
        ),
    );
    let d = Daemon::start(config);
    tokio::time::sleep(Duration::from_millis(500)).await;
    db.exec("UPDATE STATUS_PROCESS SET alarma = 1 WHERE process_id IN (1, 2)")
        .await;
    assert!(
        db.wait_cleared(1, Duration::from_secs(30)).await,
        "{:?}",
        db.row(1).await
    );
    assert!(
        db.wait_cleared(2, Duration::from_secs(30)).await,
        "{:?}",
        db.row(2).await
    );
    // Let anything started late show up.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let running = procs::pids(&name);
    let started = read_lines(&starts).len();
    let counts = d.stop().await;
    eprintln!(
        "one name under two ids: {started} start(s), running now {running:?} (old {old}), notes {:?} / {:?}, {counts:?}",
        db.row(1).await.1,
        db.row(2).await.1
    );
    procs::kill_all(&name);
    assert!(!running.contains(&old), "the old instance was restarted");
    assert_eq!(
        running.len(),
        1,
        "exactly one instance must run after two alarms for one name ({started} starts): {running:?}"
    );
    assert_eq!(counts.succeeded, 2, "{counts:?}");
    db.drop_db().await;
}
