//! Many hosts on one database: with `PROCESE.host`, each daemon (`[monitor] host`) restarts
//! only its own processes, through the binlog and through the sweep, follows a row moved to
//! another host, and counts the rows no live daemon handles; without the column every row is
//! handled. The `MONITOR_HOSTS` table lists every daemon and `status --hosts` marks stopped
//! ones stale; without the table the daemon says so once and works.

use std::time::Duration;

use crate::common::bin::BinDaemon;
use crate::common::daemon::{bin, eventually, Scratch};
use crate::common::db::TestDb;

const SERVICE: &str =
    "[process.default]\nrestart_strategy = service\nhealth_check_command = true\n";

/// One host's daemon: its own scratch dir (config, state, log, recording systemctl).
struct Host {
    scratch: Scratch,
    daemon: Option<BinDaemon>,
}

impl Host {
    /// Writes the config for `db` with `[monitor] host = name` (and `monitor` more keys), the
    /// sweep every `interval` seconds; does not start the daemon.
    fn config(db: &TestDb, name: &str, monitor: &str, interval: &str) -> Host {
        let scratch = Scratch::new();
        scratch.fake_systemctl(0, "loaded");
        let text = scratch.config_text(db, SERVICE).replace(
            "check_interval = 3600",
            &format!("check_interval = {interval}\nhost = {name}\n{monitor}"),
        );
        std::fs::write(scratch.path("config.ini"), text).unwrap();
        Host {
            scratch,
            daemon: None,
        }
    }

    /// [`Host::config`] and starts the binary; returns when it is ready.
    async fn start(db: &TestDb, name: &str, monitor: &str, interval: &str) -> Host {
        let mut h = Host::config(db, name, monitor, interval);
        h.run().await;
        h
    }

    async fn run(&mut self) {
        let s = &self.scratch;
        let mut d = BinDaemon::start(
            &s.path("config.ini"),
            &s.path("monitor_service.log"),
            &s.path("stderr"),
        );
        d.wait_ready().await;
        d.wait_log("monitor_service started", Duration::from_secs(20))
            .await;
        self.daemon = Some(d);
    }

    fn calls(&self) -> Vec<String> {
        self.scratch.systemctl_calls()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.scratch.path("monitor_service.log")).unwrap_or_default()
    }

    /// `monitor_service -c CONFIG ARGS...` with this host's config: (exit code, stdout, stderr).
    fn command(&self, args: &[&str]) -> (Option<i32>, String, String) {
        let cfg = self.scratch.path("config.ini");
        let mut all = vec!["-c", cfg.to_str().unwrap()];
        all.extend_from_slice(args);
        let out = bin(&all);
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    async fn stop(&mut self) {
        if let Some(d) = self.daemon.take() {
            assert_eq!(d.stop().await.code(), Some(0), "{}", self.log());
        }
    }
}

/// A database with the host column and processes `svcN` on the given hosts (`None`: NULL).
async fn fleet_db(hosts: &[(i64, Option<&str>)]) -> TestDb {
    let db = TestDb::new().await;
    db.exec("ALTER TABLE PROCESE ADD COLUMN host VARCHAR(255) NULL, ADD KEY idx_host (host)")
        .await;
    for (id, host) in hosts {
        db.add_process(*id, &format!("svc{id}")).await;
        if let Some(h) = host {
            db.exec(&format!(
                "UPDATE PROCESE SET host = '{h}' WHERE process_id = {id}"
            ))
            .await;
        }
    }
    db
}

async fn triggers(db: &TestDb, id: i64) -> Vec<String> {
    db.query_strings(&format!(
        "SELECT `trigger` FROM RESTART_HISTORY WHERE process_id = {id} ORDER BY id"
    ))
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn binlog_alarm_is_restarted_by_its_own_host_only() {
    // Host names compare case-insensitively: the row says ALPHA, the config alpha.
    let db = fleet_db(&[(1, Some("ALPHA")), (2, Some("beta"))]).await;
    let mut alpha = Host::start(&db, "alpha", "", "3600").await;
    let mut beta = Host::start(&db, "beta", "", "3600").await;

    db.set_alarm(1).await;
    assert!(
        db.wait_cleared(1, Duration::from_secs(5)).await,
        "{}",
        alpha.log()
    );
    db.set_alarm(2).await;
    assert!(
        db.wait_cleared(2, Duration::from_secs(5)).await,
        "{}",
        beta.log()
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    alpha.stop().await;
    beta.stop().await;

    assert_eq!(alpha.calls(), vec!["restart svc1"]);
    assert_eq!(beta.calls(), vec!["restart svc2"]);
    assert_eq!(triggers(&db, 1).await, vec!["binlog"]);
    assert_eq!(triggers(&db, 2).await, vec!["binlog"]);
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn row_moved_to_another_host_is_handled_there_through_the_binlog() {
    let db = fleet_db(&[(1, Some("alpha")), (2, Some("beta"))]).await;
    let mut alpha = Host::start(&db, "alpha", "", "3600").await;
    let mut beta = Host::start(&db, "beta", "", "3600").await;

    db.exec("UPDATE PROCESE SET host = 'beta' WHERE process_id = 1")
        .await;
    db.set_alarm(1).await;
    assert!(
        db.wait_cleared(1, Duration::from_secs(5)).await,
        "{}",
        beta.log()
    );
    // And back: a process added for alpha while both run is alpha's.
    db.add_process(3, "svc3").await;
    db.exec("UPDATE PROCESE SET host = 'alpha' WHERE process_id = 3")
        .await;
    db.set_alarm(3).await;
    assert!(
        db.wait_cleared(3, Duration::from_secs(5)).await,
        "{}",
        alpha.log()
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    alpha.stop().await;
    beta.stop().await;

    assert_eq!(beta.calls(), vec!["restart svc1"]);
    assert_eq!(alpha.calls(), vec!["restart svc3"]);
    assert_eq!(triggers(&db, 1).await, vec!["binlog"]);
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sweep_handles_own_rows_and_leaves_the_unowned_counted() {
    let db = fleet_db(&[
        (1, Some("alpha")),
        (2, Some("beta")),
        (3, None),
        (4, Some("gamma")),
    ])
    .await;
    let mut alpha = Host::start(&db, "alpha", "binlog = off\n", "0.5").await;
    let mut beta = Host::start(&db, "beta", "binlog = off\n", "0.5").await;
    for id in 1..=4 {
        db.set_alarm(id).await;
    }
    assert!(db.wait_cleared(1, Duration::from_secs(10)).await);
    assert!(db.wait_cleared(2, Duration::from_secs(10)).await);
    tokio::time::sleep(Duration::from_secs(2)).await; // several more sweeps
    assert_eq!(db.row(3).await.0, 1, "a row with no host is left alone");
    assert_eq!(
        db.row(4).await.0,
        1,
        "a row of no live daemon is left alone"
    );

    // Both daemons are in MONITOR_HOSTS; gamma is not: status counts its row, and lists
    // alpha's own processes only.
    let (code, out, err) = alpha.command(&["status"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.contains(
            "host alpha: 1 process(es) with no host and 1 naming no live daemon are left alone; other hosts' processes are not listed"
        ),
        "{out}"
    );
    let listed =
        |out: &str, name: &str| out.lines().any(|l| l.split_whitespace().any(|w| w == name));
    assert!(listed(&out, "svc1"), "{out}");
    for other in ["svc2", "svc3", "svc4"] {
        assert!(!listed(&out, other), "{other} is not alpha's: {out}");
    }
    let (_, json, _) = alpha.command(&["status", "--json"]);
    assert!(json.contains(r#""process_id":1,"name":"svc1""#), "{json}");
    assert!(!json.contains(r#""process_id":2,"#), "{json}");
    let (_, out, _) = beta.command(&["status"]);
    assert!(listed(&out, "svc2") && !listed(&out, "svc1"), "{out}");
    // --check-config says the same.
    let (code, out, err) = alpha.command(&["--check-config"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        out.contains(
            "host alpha: 1 process(es) with no host and 1 naming no live daemon are left alone"
        ),
        "{out}"
    );
    alpha.stop().await;
    beta.stop().await;

    assert_eq!(alpha.calls(), vec!["restart svc1"]);
    assert_eq!(beta.calls(), vec!["restart svc2"]);
    assert_eq!(triggers(&db, 1).await, vec!["sweep"]);
    let started = alpha
        .log()
        .lines()
        .filter(|l| l.contains("host scoping"))
        .map(str::to_string)
        .collect::<Vec<_>>();
    assert_eq!(started.len(), 1, "{started:?}");
    // At alpha's start beta was not yet running: its row counted as no live daemon's too.
    assert!(
        started[0].contains("1 process(es) with no host and 2 naming no live daemon"),
        "{started:?}"
    );
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn without_the_host_column_every_row_is_handled() {
    let db = TestDb::new().await;
    db.add_process(1, "svc1").await;
    db.add_process(2, "svc2").await;
    let mut alpha = Host::start(&db, "alpha", "", "3600").await;
    db.set_alarm(1).await;
    assert!(db.wait_cleared(1, Duration::from_secs(5)).await);
    db.set_alarm(2).await;
    assert!(db.wait_cleared(2, Duration::from_secs(5)).await);
    let (code, out, _) = alpha.command(&["status"]);
    assert_eq!(code, Some(0));
    assert!(out.contains("PROCESE has no host column"), "{out}");
    assert!(
        out.contains("svc1") && out.contains("svc2"),
        "every row is listed: {out}"
    );
    alpha.stop().await;
    assert_eq!(alpha.calls(), vec!["restart svc1", "restart svc2"]);
    assert!(alpha
        .log()
        .contains("host scoping: PROCESE has no host column"));
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn host_column_added_while_running_scopes_through_the_binlog() {
    let db = TestDb::new().await;
    db.add_process(1, "svc1").await;
    db.add_process(2, "svc2").await;
    let mut alpha = Host::start(&db, "alpha", "", "3600").await;
    db.exec("ALTER TABLE PROCESE ADD COLUMN host VARCHAR(255) NULL")
        .await;
    db.exec("UPDATE PROCESE SET host = 'alpha' WHERE process_id = 1")
        .await;
    // The DDL re-read is asynchronous: wait until a scoped alarm is handled.
    db.set_alarm(1).await;
    assert!(
        db.wait_cleared(1, Duration::from_secs(5)).await,
        "{}",
        alpha.log()
    );
    db.set_alarm(2).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(db.row(2).await.0, 1, "{}", alpha.log());
    alpha.stop().await;
    assert_eq!(alpha.calls(), vec!["restart svc1"]);
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn hosts_table_lists_every_daemon_and_marks_a_stopped_one_stale() {
    let db = fleet_db(&[(1, Some("alpha"))]).await;
    let mut alpha = Host::start(&db, "alpha", "", "3600").await;
    let mut beta = Host::start(&db, "beta", "binlog = off\n", "3600").await;
    let seen = |host: &str| {
        format!(
            "SELECT DATE_FORMAT(last_seen, '%Y-%m-%d %H:%i:%s') FROM MONITOR_HOSTS WHERE host = '{host}'"
        )
    };
    let first = db.query_strings(&seen("alpha")).await;
    assert_eq!(first.len(), 1);
    let row = db
        .query_strings(
            "SELECT CONCAT_WS('|', host, version, binlog_source IS NOT NULL, breakers_open, procedures_running) \
             FROM MONITOR_HOSTS ORDER BY host",
        )
        .await;
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(
        row,
        vec![
            format!("alpha|{version}|1|0|0"),
            format!("beta|{version}|0|0|0")
        ]
    );

    // Written every 10 s: last_seen advances.
    let mut advanced = false;
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        if db.query_strings(&seen("alpha")).await != first {
            advanced = true;
            break;
        }
    }
    assert!(advanced, "last_seen did not advance in 20 s");

    beta.stop().await;
    // A stopped daemon's row stays; once three intervals old it is stale.
    db.exec(
        "UPDATE MONITOR_HOSTS SET last_seen = last_seen - INTERVAL 60 SECOND WHERE host = 'beta'",
    )
    .await;
    let (code, out, err) = alpha.command(&["status", "--hosts"]);
    assert_eq!(code, Some(0), "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert!(lines[0].starts_with("HOST"), "{out}");
    assert!(
        lines[1].starts_with("alpha") && lines[1].contains(" live "),
        "{out}"
    );
    assert!(
        lines[2].starts_with("beta") && lines[2].contains("stale ("),
        "{out}"
    );
    assert!(lines[2].contains("sweeps only"), "{out}");
    let (code, json, _) = alpha.command(&["status", "--hosts", "--json"]);
    assert_eq!(code, Some(0));
    assert!(
        json.contains(r#""host":"alpha""#) && json.contains(r#""stale":false"#),
        "{json}"
    );
    assert!(
        json.contains(r#""host":"beta""#) && json.contains(r#""stale":true"#),
        "{json}"
    );
    alpha.stop().await;
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn without_the_hosts_table_it_says_so_once_and_works() {
    let db = TestDb::new().await;
    db.exec("DROP TABLE MONITOR_HOSTS").await;
    db.add_process(1, "svc1").await;
    let mut alpha = Host::start(&db, "alpha", "", "3600").await;
    db.set_alarm(1).await;
    assert!(db.wait_cleared(1, Duration::from_secs(5)).await);
    // Past one more write interval: still said only once.
    let log_path = alpha.scratch.path("monitor_service.log");
    let twice = eventually(Duration::from_secs(12), || {
        std::fs::read_to_string(&log_path)
            .unwrap_or_default()
            .matches("hosts table not found")
            .count()
            > 1
    })
    .await;
    assert!(!twice, "{}", alpha.log());
    let (code, _, err) = alpha.command(&["status", "--hosts"]);
    assert_eq!(code, Some(69));
    assert!(
        err.contains("the hosts table MONITOR_HOSTS does not exist"),
        "{err}"
    );
    alpha.stop().await;
    let log = alpha.log();
    assert_eq!(log.matches("hosts table not found").count(), 1, "{log}");
    let said: Vec<&str> = log.lines().filter(|l| l.contains("hosts table")).collect();
    assert!(said.len() == 1 && said[0].contains("[INFO]"), "{log}");
    assert_eq!(alpha.calls(), vec!["restart svc1"]);
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_setup_sql_account_scopes_and_writes_its_hosts_row() {
    let db = fleet_db(&[(1, Some("alpha")), (2, None)]).await;
    // The account exactly as sql/setup.sql grants it, for this database.
    let sql =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/sql/setup.sql")).unwrap();
    let user = format!("fl{}", std::process::id());
    let account = format!("'{user}'@'%'");
    db.exec(&format!(
        "CREATE USER IF NOT EXISTS {account} IDENTIFIED BY 'pw-{user}'"
    ))
    .await;
    for line in sql.lines().filter(|l| l.starts_with("GRANT ")) {
        let stmt = line
            .trim_end_matches(';')
            .replace("v_process_monitor.", &format!("`{}`.", db.name))
            .replace("'monitor'@'localhost'", &account);
        db.exec(&stmt).await;
    }
    let mut alpha = Host::config(&db, "alpha", "binlog = on\n", "3600");
    let cfg = alpha.scratch.path("config.ini");
    let text = std::fs::read_to_string(&cfg).unwrap();
    let password = db
        .password
        .as_ref()
        .map(|p| format!("password = {p}\n"))
        .unwrap_or_default();
    let text = text
        .replace(
            &format!("user = {}\n", db.user),
            &format!("user = {user}\n"),
        )
        .replacen(&password, "", usize::from(!password.is_empty()))
        .replace(
            "[database]\n",
            &format!("[database]\npassword = pw-{user}\n"),
        );
    std::fs::write(&cfg, text).unwrap();
    std::fs::set_permissions(&cfg, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    alpha.run().await;

    db.set_alarm(1).await;
    assert!(
        db.wait_cleared(1, Duration::from_secs(5)).await,
        "{}",
        alpha.log()
    );
    let rows = db
        .query_strings("SELECT CONCAT_WS('|', host, binlog_source IS NOT NULL) FROM MONITOR_HOSTS")
        .await;
    assert_eq!(rows, vec!["alpha|1"]);
    alpha.stop().await;
    db.exec(&format!("DROP USER {account}")).await;
    let log = alpha.log();
    assert!(!log.contains("[WARN"), "{log}");
    assert!(
        log.contains("1 process(es) with no host and 0 naming no live daemon"),
        "{log}"
    );
    assert_eq!(alpha.calls(), vec!["restart svc1"]);
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_case_sensitive_host_column_still_matches_the_host_case_insensitively() {
    let db = TestDb::new().await;
    db.exec(
        "ALTER TABLE PROCESE ADD COLUMN host VARCHAR(255) CHARACTER SET utf8mb4 \
         COLLATE utf8mb4_bin NULL",
    )
    .await;
    db.add_process(1, "svc1").await;
    db.add_process(2, "svc2").await;
    db.exec("UPDATE PROCESE SET host = 'ALPHA' WHERE process_id = 1")
        .await;
    db.exec("UPDATE PROCESE SET host = 'beta' WHERE process_id = 2")
        .await;
    let mut alpha = Host::start(&db, "alpha", "binlog = off\n", "0.5").await;
    db.set_alarm(1).await;
    db.set_alarm(2).await;
    assert!(
        db.wait_cleared(1, Duration::from_secs(10)).await,
        "{}",
        alpha.log()
    );
    tokio::time::sleep(Duration::from_secs(1)).await; // two more sweeps
    assert_eq!(db.row(2).await.0, 1, "beta's row is left alone");
    let (code, out, err) = alpha.command(&["status"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("svc1") && !out.contains("svc2"), "{out}");
    alpha.stop().await;
    assert_eq!(alpha.calls(), vec!["restart svc1"]);
    db.drop_db().await;
}
