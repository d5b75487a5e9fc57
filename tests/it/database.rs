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
