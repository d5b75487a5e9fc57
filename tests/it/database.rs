//! The database layer bounded and named: start-up denials end the daemon with one message and
//! exit 77/78, a table lock delays procedures but never shutdown, a refused query is logged
//! once per kind while every process is restarted once, and a busy claim is re-checked.

use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;
use mysql_async::Conn;

use crate::common::bin::BinDaemon;
use crate::common::daemon::{eventually, Scratch};
use crate::common::db::TestDb;

const SERVICE: &str =
    "[process.default]\nrestart_strategy = service\nhealth_check_command = true\n";

/// An account of the test's own with the daemon's privileges, granted per table so that a
/// REVOKE takes effect at the next statement of existing sessions. Returns (user, password).
async fn daemon_account(db: &TestDb, tag: &str) -> (String, String) {
    let user = format!("{tag}{}", &db.name[db.name.len() - 6..]);
    let password = format!("pw-{user}");
    let name = &db.name;
    db.exec(&format!(
        "CREATE USER '{user}'@'%' IDENTIFIED BY '{password}'"
    ))
    .await;
    for grant in [
        format!("GRANT SELECT ON `{name}`.PROCESE TO '{user}'@'%'"),
        format!("GRANT SELECT, UPDATE ON `{name}`.STATUS_PROCESS TO '{user}'@'%'"),
        format!("GRANT SELECT, INSERT ON `{name}`.RESTART_HISTORY TO '{user}'@'%'"),
    ] {
        db.exec(&grant).await;
    }
    (user, password)
}

/// A daemon account (see [`daemon_account`]) and `c.ini` using it, on sweeps alone every
/// second (`binlog = off`); returns the account's user and password.
async fn sweeping_config_as_account(s: &Scratch, db: &TestDb, tag: &str) -> (String, String) {
    let (user, password) = daemon_account(db, tag).await;
    let text = config_as(s, db, &user, Some(&password), SERVICE)
        .replace("check_interval = 3600", "check_interval = 1")
        .replace("[monitor]\n", "[monitor]\nbinlog = off\n");
    std::fs::write(s.path("c.ini"), text).unwrap();
    (user, password)
}

/// `config_text` for `db` logging in as `user` with `password`.
fn config_as(s: &Scratch, db: &TestDb, user: &str, password: Option<&str>, extra: &str) -> String {
    let text = s.config_text(db, extra);
    let login = |u: &str, p: Option<&str>| match p {
        Some(p) => format!("user = {u}\npassword = {p}\n"),
        None => format!("user = {u}\n"),
    };
    let from = login(&db.user, db.password.as_deref());
    assert!(text.contains(&from), "{text}");
    text.replacen(&from, &login(user, password), 1)
}

fn count(text: &str, needle: &str) -> usize {
    text.matches(needle).count()
}

/// Lines of the log at `[ERROR]`.
fn errors(log: &str) -> Vec<&str> {
    log.lines().filter(|l| l.contains("[ERROR]")).collect()
}

/// Waits (at most `limit`) for the daemon to exit on its own; its status and how long it took.
async fn exits_within(d: &mut BinDaemon, limit: Duration) -> (Option<i32>, Duration) {
    let t = Instant::now();
    while t.elapsed() < limit {
        if let Some(st) = d.child.try_wait().unwrap() {
            return (st.code(), t.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "the daemon did not exit within {limit:?}:\n{}",
        d.log_text()
    );
}

/// A wrong password (1045), a database the account may not use (1044) and a database that
/// does not exist (1049) end the start-up at once with one ERROR naming the fix, exit 77 or 78,
/// never "unreachable; retrying".
#[tokio::test(flavor = "multi_thread")]
async fn startup_denials_exit_at_once_with_one_message_naming_the_fix() {
    let db = TestDb::new().await;
    let user = format!("dn{}", &db.name[db.name.len() - 6..]);
    db.exec(&format!(
        "CREATE USER '{user}'@'%' IDENTIFIED BY 'right-{user}'"
    ))
    .await;
    let cases = [
        (
            "wrong password",
            user.clone(),
            Some("wrong".to_string()),
            db.name.clone(),
            77,
            "check [database] user and password",
        ),
        (
            "no access to the database",
            user.clone(),
            Some(format!("right-{user}")),
            db.name.clone(),
            77,
            "grant the account its privileges on [database] database",
        ),
        (
            "unknown database",
            db.user.clone(),
            db.password.clone(),
            format!("{}_none", db.name),
            78,
            "check [database] database, or create it with sql/setup.sql",
        ),
    ];
    for (case, user, password, database, want, fix) in cases {
        let s = Scratch::new();
        let text = config_as(&s, &db, &user, password.as_deref(), SERVICE).replacen(
            &format!("database = {}\n", db.name),
            &format!("database = {database}\n"),
            1,
        );
        std::fs::write(s.path("c.ini"), text).unwrap();
        let mut d = BinDaemon::start(
            &s.path("c.ini"),
            &s.path("monitor_service.log"),
            &s.path("stderr"),
        );
        let (code, took) = exits_within(&mut d, Duration::from_secs(15)).await;
        let log = d.log_text();
        assert_eq!(code, Some(want), "{case}: exit status\n{log}");
        let errs = errors(&log);
        assert_eq!(errs.len(), 1, "{case}: one ERROR line\n{log}");
        assert!(errs[0].contains(fix), "{case}: the fix named\n{log}");
        assert_eq!(count(&log, "unreachable"), 0, "{case}\n{log}");
        assert!(
            !log.contains(&format!("right-{user}")),
            "{case}: password in the log"
        );
        eprintln!("database/startup-denial: {case}: exit {want} after {took:?}");
    }
    db.exec(&format!("DROP USER '{user}'@'%'")).await;
    db.drop_db().await;
}

/// `LOCK TABLES STATUS_PROCESS WRITE` held by another session: the procedure waits (the
/// session's lock wait is short, said once), is re-checked with backoff and handled once the
/// lock is gone; held again, it never delays SIGTERM beyond one lock wait.
#[tokio::test(flavor = "multi_thread")]
async fn table_lock_delays_procedures_never_shutdown() {
    let db = TestDb::new().await;
    let s = Scratch::new();
    s.fake_systemctl(0, "loaded");
    db.add_process(1, "lk1").await;
    db.add_process(2, "lk2").await;
    std::fs::write(s.path("c.ini"), s.config_text(&db, SERVICE)).unwrap();
    let mut d = BinDaemon::start(
        &s.path("c.ini"),
        &s.path("monitor_service.log"),
        &s.path("stderr"),
    );
    d.wait_ready().await;
    let mut locker = Conn::from_url(db.url.as_str()).await.unwrap();
    locker
        .query_drop("LOCK TABLES STATUS_PROCESS WRITE")
        .await
        .unwrap();
    locker
        .query_drop("UPDATE STATUS_PROCESS SET alarma = 1 WHERE process_id = 1")
        .await
        .unwrap();
    d.wait_log("the database keeps a lock", Duration::from_secs(20))
        .await;
    // Longer than a few backoff steps: still one line, nothing restarted.
    tokio::time::sleep(Duration::from_secs(8)).await;
    let log = d.log_text();
    assert_eq!(count(&log, "the database keeps a lock"), 1, "{log}");
    assert!(s
        .systemctl_calls()
        .iter()
        .all(|c| !c.starts_with("restart")));
    locker.query_drop("UNLOCK TABLES").await.unwrap();
    assert!(
        db.wait_cleared(1, Duration::from_secs(40)).await,
        "{}",
        d.log_text()
    );
    let restarts = |s: &Scratch| {
        s.systemctl_calls()
            .iter()
            .filter(|c| c.starts_with("restart"))
            .count()
    };
    assert_eq!(restarts(&s), 1, "{:?}", s.systemctl_calls());

    // Held again with a procedure waiting on it: SIGTERM stops the daemon within one lock wait.
    locker
        .query_drop("LOCK TABLES STATUS_PROCESS WRITE")
        .await
        .unwrap();
    locker
        .query_drop("UPDATE STATUS_PROCESS SET alarma = 1 WHERE process_id = 2")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let t = Instant::now();
    let status = d.stop().await;
    let took = t.elapsed();
    assert_eq!(status.code(), Some(0));
    assert!(
        took < Duration::from_secs(12),
        "stopping took {took:?} with the table locked"
    );
    locker.query_drop("UNLOCK TABLES").await.unwrap();
    drop(locker);
    eprintln!("database/table-lock: stopped in {took:?} with STATUS_PROCESS locked");
    db.drop_db().await;
}

/// Name of the `GET_LOCK` claim the daemon takes for process `id` of database `db`.
fn claim_name(db: &str, id: i64) -> String {
    let hash = db.bytes().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    format!("monitor_service:{hash:08x}:{id}")
}

/// A claim held by another session (another daemon) is re-checked later rather than dropped:
/// the alarm is handled once the claim is free, without a sweep.
#[tokio::test(flavor = "multi_thread")]
async fn busy_claim_is_rechecked_until_free() {
    let db = TestDb::new().await;
    let s = Scratch::new();
    s.fake_systemctl(0, "loaded");
    db.add_process(1, "cb1").await;
    std::fs::write(s.path("c.ini"), s.config_text(&db, SERVICE)).unwrap();
    let mut d = BinDaemon::start(
        &s.path("c.ini"),
        &s.path("monitor_service.log"),
        &s.path("stderr"),
    );
    d.wait_ready().await;
    let mut other = Conn::from_url(db.url.as_str()).await.unwrap();
    let got: Option<i64> = other
        .exec_first("SELECT GET_LOCK(?, 0)", (claim_name(&db.name, 1),))
        .await
        .unwrap();
    assert_eq!(got, Some(1));
    db.set_alarm(1).await;
    d.wait_log(
        "another monitor_service is handling this process",
        Duration::from_secs(10),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(db.row(1).await.0, 1, "handled while claimed elsewhere");
    let _: Option<i64> = other
        .exec_first("SELECT RELEASE_LOCK(?)", (claim_name(&db.name, 1),))
        .await
        .unwrap();
    // check_interval is an hour: only the re-check can handle it.
    assert!(
        db.wait_cleared(1, Duration::from_secs(30)).await,
        "{}",
        d.log_text()
    );
    let restarts = s
        .systemctl_calls()
        .iter()
        .filter(|c| c.starts_with("restart"))
        .count();
    assert_eq!(restarts, 1);
    assert_eq!(d.stop().await.code(), Some(0));
    db.drop_db().await;
}

/// UPDATE revoked while running: alarms of several processes give one ERROR for the refused
/// query (not one per process per retry), each process is restarted once (never again for the
/// same alarm), and once UPDATE is granted back every alarm is cleared.
#[tokio::test(flavor = "multi_thread")]
async fn revoked_update_is_logged_once_and_clears_are_retried_not_restarts() {
    let db = TestDb::new().await;
    let s = Scratch::new();
    s.fake_systemctl(0, "loaded");
    let n = 4;
    for id in 1..=n {
        db.add_process(id, &format!("rv{id}")).await;
    }
    let (user, _) = sweeping_config_as_account(&s, &db, "rv").await;
    let mut d = BinDaemon::start(
        &s.path("c.ini"),
        &s.path("monitor_service.log"),
        &s.path("stderr"),
    );
    d.wait_ready().await;
    let table = format!("`{}`.STATUS_PROCESS", db.name);
    db.exec(&format!("REVOKE UPDATE ON {table} FROM '{user}'@'%'"))
        .await;
    for id in 1..=n {
        db.set_alarm(id).await;
    }
    // Many sweeps and re-checks meanwhile.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let log = d.log_text();
    let refused = count(&log, "the database refused the query");
    assert_eq!(refused, 1, "one line for the refused query:\n{log}");
    assert!(errors(&log).len() <= 2, "{log}");
    for id in 1..=n {
        assert_eq!(db.row(id).await.0, 1);
    }
    db.exec(&format!("GRANT UPDATE ON {table} TO '{user}'@'%'"))
        .await;
    for id in 1..=n {
        assert!(
            db.wait_cleared(id, Duration::from_secs(90)).await,
            "process {id}:\n{}",
            d.log_text()
        );
    }
    let calls = s.systemctl_calls();
    for id in 1..=n {
        let want = format!("restart rv{id}");
        let times = calls.iter().filter(|c| c.starts_with(&want)).count();
        assert_eq!(times, 1, "rv{id} restarted once: {calls:?}");
    }
    // Logged when the clear went through (a background writer: it may follow a moment later).
    d.wait_log("accepts this query again", Duration::from_secs(10))
        .await;
    assert_eq!(d.stop().await.code(), Some(0));
    db.exec(&format!("DROP USER '{user}'@'%'")).await;
    db.drop_db().await;
}

/// The claim's connection is killed while the process restarts: the clear is not written blind
/// (the claim is verified first), it is owed and written by the next look, and the process is
/// not restarted a second time.
#[tokio::test(flavor = "multi_thread")]
async fn claim_lost_during_restart_clear_is_owed_not_a_second_restart() {
    let db = TestDb::new().await;
    let s = Scratch::new();
    s.fake_systemctl(0, "loaded");
    db.add_process(1, "cl1").await;
    let extra = format!("{SERVICE}pre_restart_command = sleep 2\n");
    std::fs::write(s.path("c.ini"), s.config_text(&db, &extra)).unwrap();
    let mut d = BinDaemon::start(
        &s.path("c.ini"),
        &s.path("monitor_service.log"),
        &s.path("stderr"),
    );
    d.wait_ready().await;
    db.set_alarm(1).await;
    d.wait_log("alarm raised; restarting", Duration::from_secs(10))
        .await;
    let mut admin = Conn::from_url(db.url.as_str()).await.unwrap();
    let holder: Option<Option<u64>> = admin
        .exec_first("SELECT IS_USED_LOCK(?)", (claim_name(&db.name, 1),))
        .await
        .unwrap();
    let holder = holder.flatten().expect("the daemon holds the claim");
    admin.query_drop(format!("KILL {holder}")).await.unwrap();
    assert!(
        db.wait_cleared(1, Duration::from_secs(30)).await,
        "{}",
        d.log_text()
    );
    // The log is written by a background writer: the line may follow the clear a moment later.
    d.wait_log(
        "alarm cleared after the earlier restart",
        Duration::from_secs(10),
    )
    .await;
    let log = d.log_text();
    let restarts = s
        .systemctl_calls()
        .iter()
        .filter(|c| c.starts_with("restart"))
        .count();
    assert_eq!(restarts, 1, "{log}");
    assert_eq!(count(&log, "alarm raised; restarting"), 1, "{log}");
    drop(admin);
    assert_eq!(d.stop().await.code(), Some(0));
    db.drop_db().await;
}

/// Restarts the fake systemctl recorded for `name`.
fn restarts_of(s: &Scratch, name: &str) -> usize {
    let want = format!("restart {name}");
    s.systemctl_calls()
        .iter()
        .filter(|c| c.starts_with(&want))
        .count()
}

/// Moves the log of a stopped daemon aside (the next one's `wait_ready` reads a fresh log);
/// returns its text.
fn set_log_aside(s: &Scratch, as_name: &str) -> String {
    std::fs::rename(s.path("monitor_service.log"), s.path(as_name)).unwrap();
    std::fs::read_to_string(s.path(as_name)).unwrap()
}

/// A restart succeeds but its clear is refused (UPDATE revoked), and the daemon is stopped
/// (SIGTERM) and started again while it still is: the owed clear survives in
/// `state_dir/owed_clears`, the new daemon writes it once UPDATE is granted back, and the
/// process was restarted exactly once for the one alarm.
#[tokio::test(flavor = "multi_thread")]
async fn owed_clear_survives_a_daemon_restart_not_a_second_restart() {
    let db = TestDb::new().await;
    let s = Scratch::new();
    s.fake_systemctl(0, "loaded");
    db.add_process(1, "ow1").await;
    let (user, _) = sweeping_config_as_account(&s, &db, "ow").await;
    let start = || {
        BinDaemon::start(
            &s.path("c.ini"),
            &s.path("monitor_service.log"),
            &s.path("stderr"),
        )
    };
    let mut d = start();
    d.wait_ready().await;
    let table = format!("`{}`.STATUS_PROCESS", db.name);
    db.exec(&format!("REVOKE UPDATE ON {table} FROM '{user}'@'%'"))
        .await;
    db.set_alarm(1).await;
    d.wait_log("the alarm cannot be cleared now", Duration::from_secs(30))
        .await;
    assert_eq!(d.stop().await.code(), Some(0));
    let first = set_log_aside(&s, "first.log");
    assert_eq!(restarts_of(&s, "ow1"), 1, "{first}");
    let saved = std::fs::read_to_string(s.path("state/owed_clears")).unwrap();
    assert!(
        saved
            .lines()
            .any(|l| l.starts_with("1 ") && l.contains(" ow1 ")),
        "{saved}"
    );

    // Started again while the clear is still refused: sweeps find the alarm, none restarts.
    let mut d = start();
    d.wait_ready().await;
    d.wait_log("owed alarm clears loaded", Duration::from_secs(5))
        .await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(db.row(1).await.0, 1);
    assert_eq!(restarts_of(&s, "ow1"), 1, "{}", d.log_text());
    db.exec(&format!("GRANT UPDATE ON {table} TO '{user}'@'%'"))
        .await;
    assert!(
        db.wait_cleared(1, Duration::from_secs(90)).await,
        "{}",
        d.log_text()
    );
    d.wait_log(
        "alarm cleared after the earlier restart",
        Duration::from_secs(10),
    )
    .await;
    let log = d.log_text();
    assert_eq!(count(&log, "alarm raised; restarting"), 0, "{log}");
    assert_eq!(restarts_of(&s, "ow1"), 1, "{:?}", s.systemctl_calls());
    let notes = db.row(1).await.1.unwrap_or_default();
    assert!(notes.contains("restarted via service"), "{notes}");
    // Written right after the clear.
    let owed = s.path("state/owed_clears");
    let nothing_owed = || {
        std::fs::read_to_string(&owed)
            .unwrap_or_default()
            .lines()
            .all(|l| l.starts_with('#'))
    };
    assert!(
        eventually(Duration::from_secs(5), nothing_owed).await,
        "still owed: {:?}",
        std::fs::read_to_string(&owed)
    );
    assert_eq!(d.stop().await.code(), Some(0));
    db.exec(&format!("DROP USER '{user}'@'%'")).await;
    db.drop_db().await;
}

/// An owed clear older than `circuit_reset_time` is dropped at start with a WARNING and the
/// alarm handled as a new one (restarted, cleared); a corrupt `owed_clears` is reported, moved
/// aside, and the alarm handled as a new one too.
#[tokio::test(flavor = "multi_thread")]
async fn stale_or_corrupt_owed_clears_are_dropped_and_the_alarm_handled_anew() {
    let db = TestDb::new().await;
    let s = Scratch::new();
    s.fake_systemctl(0, "loaded");
    db.add_process(1, "st1").await;
    let text = s
        .config_text(&db, SERVICE)
        .replace("[monitor]\n", "[monitor]\ncircuit_reset_time = 600\n");
    std::fs::write(s.path("c.ini"), text).unwrap();
    std::fs::create_dir_all(s.path("state")).unwrap();
    let hour_ago = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis()
        - 3_600_000;
    let cases = [
        (
            format!("1 {hour_ago} st1 2026-01-01 00:00:00 restarted via service\n"),
            "the owed clear is dropped and the alarm handled as a new one",
        ),
        (
            "1 not-a-time st1 notes\n".to_string(),
            "corrupt owed alarm clears; moved aside",
        ),
    ];
    for (n, (file, said)) in cases.iter().enumerate() {
        std::fs::write(s.path("state/owed_clears"), file).unwrap();
        db.set_alarm(1).await;
        let mut d = BinDaemon::start(
            &s.path("c.ini"),
            &s.path("monitor_service.log"),
            &s.path("stderr"),
        );
        d.wait_ready().await;
        assert!(
            db.wait_cleared(1, Duration::from_secs(30)).await,
            "{}",
            d.log_text()
        );
        assert_eq!(d.stop().await.code(), Some(0));
        let log = set_log_aside(&s, &format!("run{n}.log"));
        let warned: Vec<&str> = log.lines().filter(|l| l.contains(said)).collect();
        assert_eq!(warned.len(), 1, "{log}");
        assert!(warned[0].contains("[WARNING]"), "{log}");
        assert_eq!(restarts_of(&s, "st1"), n + 1, "{log}");
    }
    let moved = std::fs::read_to_string(s.path("state/owed_clears.corrupt")).unwrap();
    assert_eq!(moved, cases[1].0);
    db.drop_db().await;
}

/// The claim is checked before the process is stopped: a procedure whose claim was lost while
/// it waited (here for another id of the same name) and taken by another session does not
/// restart the process; the process is restarted once the other session lets go.
#[tokio::test(flavor = "multi_thread")]
async fn lost_claim_is_noticed_before_stopping() {
    let db = TestDb::new().await;
    let s = Scratch::new();
    s.fake_systemctl(0, "loaded");
    db.add_process(1, "vn").await;
    db.add_process(2, "vn").await;
    let extra = format!("{SERVICE}pre_restart_command = sleep 3\n");
    std::fs::write(s.path("c.ini"), s.config_text(&db, &extra)).unwrap();
    let mut d = BinDaemon::start(
        &s.path("c.ini"),
        &s.path("monitor_service.log"),
        &s.path("stderr"),
    );
    d.wait_ready().await;
    let restarts = |s: &Scratch| {
        s.systemctl_calls()
            .iter()
            .filter(|c| c.starts_with("restart"))
            .count()
    };
    db.set_alarm(1).await;
    d.wait_log("process_id=1 trigger=binlog", Duration::from_secs(10))
        .await;
    // Process 2 is claimed and waits for the name "vn", busy with process 1.
    db.set_alarm(2).await;
    let mut other = Conn::from_url(db.url.as_str()).await.unwrap();
    let name2 = claim_name(&db.name, 2);
    let t = Instant::now();
    let holder = loop {
        let h: Option<Option<u64>> = other
            .exec_first("SELECT IS_USED_LOCK(?)", (name2.as_str(),))
            .await
            .unwrap();
        if let Some(id) = h.flatten() {
            break id;
        }
        assert!(t.elapsed() < Duration::from_secs(3), "{}", d.log_text());
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(
        restarts(&s),
        0,
        "process 1 is still in its pre-restart command"
    );
    // Another session takes the claim over.
    other.query_drop(format!("KILL {holder}")).await.unwrap();
    let t = Instant::now();
    loop {
        let got: Option<i64> = other
            .exec_first("SELECT GET_LOCK(?, 0)", (name2.as_str(),))
            .await
            .unwrap();
        if got == Some(1) {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(3), "claim never freed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        db.wait_cleared(1, Duration::from_secs(15)).await,
        "{}",
        d.log_text()
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        restarts(&s),
        1,
        "process 2 restarted without its claim:\n{}",
        d.log_text()
    );
    assert_eq!(db.row(2).await.0, 1);
    let _: Option<i64> = other
        .exec_first("SELECT RELEASE_LOCK(?)", (name2.as_str(),))
        .await
        .unwrap();
    assert!(
        db.wait_cleared(2, Duration::from_secs(40)).await,
        "{}",
        d.log_text()
    );
    assert_eq!(restarts(&s), 2, "{:?}", s.systemctl_calls());
    drop(other);
    assert_eq!(d.stop().await.code(), Some(0));
    db.drop_db().await;
}

/// The account's password changed under a running daemon: new connections are refused (1045),
/// which is said once (not once per process and retry), the daemon keeps running, and alarms
/// are handled once the password is right again.
#[tokio::test(flavor = "multi_thread")]
async fn password_changed_while_running_is_said_once_and_waited_out() {
    let db = TestDb::new().await;
    let s = Scratch::new();
    s.fake_systemctl(0, "loaded");
    for id in 1..=3 {
        db.add_process(id, &format!("pw{id}")).await;
    }
    let (user, password) = sweeping_config_as_account(&s, &db, "pc").await;
    let mut d = BinDaemon::start(
        &s.path("c.ini"),
        &s.path("monitor_service.log"),
        &s.path("stderr"),
    );
    d.wait_ready().await;
    db.exec(&format!(
        "ALTER USER '{user}'@'%' IDENTIFIED BY 'changed-{user}'"
    ))
    .await;
    // Its open sessions end, so that it has to log in again.
    for id in db
        .query_strings(&format!(
            "SELECT ID FROM information_schema.PROCESSLIST WHERE USER = '{user}'"
        ))
        .await
    {
        let mut c = Conn::from_url(db.url.as_str()).await.unwrap();
        let _ = c.query_drop(format!("KILL {id}")).await;
    }
    for id in 1..=3 {
        db.set_alarm(id).await;
    }
    tokio::time::sleep(Duration::from_secs(8)).await;
    assert!(d.running(), "{}", d.log_text());
    let log = d.log_text();
    let denied = log
        .lines()
        .filter(|l| l.contains("1045") && (l.contains("[ERROR]") || l.contains("[WARNING]")))
        .count();
    assert_eq!(denied, 1, "one line for the refused login:\n{log}");
    assert_eq!(db.row(1).await.0, 1);
    db.exec(&format!(
        "ALTER USER '{user}'@'%' IDENTIFIED BY '{password}'"
    ))
    .await;
    for id in 1..=3 {
        assert!(
            db.wait_cleared(id, Duration::from_secs(60)).await,
            "process {id}:\n{}",
            d.log_text()
        );
    }
    assert_eq!(d.stop().await.code(), Some(0));
    db.exec(&format!("DROP USER '{user}'@'%'")).await;
    db.drop_db().await;
}
