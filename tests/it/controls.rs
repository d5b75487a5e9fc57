//! Alerts when supervision gives up, and the operator controls (`reset`, `silence`,
//! `unsilence`, `status`) against a running daemon and a stopped one.

use std::time::{Duration, Instant};

use crate::common::bin::BinDaemon;
use crate::common::daemon::{bin, eventually, read_lines, Daemon, Scratch};
use crate::common::db::TestDb;
use crate::common::procs;
use crate::common::proxy::Proxy;

/// The real binary run to completion, off the async workers (the daemon under test may be in
/// this process and must keep answering).
async fn cli(args: Vec<String>) -> (Option<i32>, String, String) {
    let out = tokio::task::spawn_blocking(move || {
        bin(&args.iter().map(String::as_str).collect::<Vec<_>>())
    })
    .await
    .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn args(config: &std::path::Path, rest: &[&str]) -> Vec<String> {
    let mut v = vec!["-c".to_string(), config.display().to_string()];
    v.extend(rest.iter().map(|s| s.to_string()));
    v
}

/// Waits until the daemon answers `status` on its control socket (it is up then).
async fn wait_answering(config: &std::path::Path) {
    for _ in 0..100 {
        let (_, out, _) = cli(args(config, &["status"])).await;
        if out.contains("daemon running (pid") {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the daemon never answered on its control socket");
}

/// An alert command that appends `EVENT|PROCESS|ID|DETAIL` to `alerts.log`.
fn recorder(s: &Scratch) -> String {
    let log = s.path("alerts.log");
    let rec = s.script(
        "bin/alert",
        &format!(
            "echo \"$MONITOR_EVENT|$MONITOR_PROCESS|$MONITOR_PROCESS_ID|$MONITOR_HOST|$MONITOR_DETAIL\" >> '{}'",
            log.display()
        ),
    );
    format!("[alerts]\ncommand = {}\n", rec.display())
}

fn events(s: &Scratch) -> Vec<String> {
    read_lines(&s.path("alerts.log"))
        .into_iter()
        .map(|l| l.split('|').next().unwrap_or_default().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn one_breaker_open_alert_for_a_flapping_process_and_recovered_after_reset() {
    let db = TestDb::new().await;
    let s = Scratch::new();
    let name = procs::unique_name("fl");
    let bin = procs::demo_binary(s.dir.path(), &name);
    let healthy = s.path("healthy");
    db.add_process(5, &name).await;
    db.set_alarm(5).await;
    let extra = format!(
        "{}[process.{name}]\nrestart_strategy = process\nstart_command = {bin} 100000\n\
         health_check_command = test -e {healthy}\nhealth_check_timeout = 0.2\nmax_attempts = 1\nrestart_delay = 0\n",
        recorder(&s),
        bin = bin.display(),
        healthy = healthy.display()
    );
    let text = s.config_text(&db, &extra).replace(
        "[monitor]\ncheck_interval = 3600\n",
        "[monitor]\ncheck_interval = 0.3\nmax_restart_failures = 2\ncircuit_reset_time = 3600\n",
    );
    std::fs::write(s.path("c.ini"), &text).unwrap();
    let config = monitor_service::Config::load(&s.path("c.ini"))
        .unwrap()
        .config;
    let daemon = Daemon::start(config);

    assert!(
        eventually(Duration::from_secs(20), || events(&s)
            .contains(&"breaker_open".to_string()))
        .await,
        "no breaker_open alert: {:?}",
        events(&s)
    );
    // The sweeps every 0.3 s keep finding the alarm: blocked, and no more alerts.
    tokio::time::sleep(Duration::from_millis(2000)).await;
    assert_eq!(events(&s), vec!["procedure_failed", "breaker_open"]);
    let line = &read_lines(&s.path("alerts.log"))[1];
    assert!(
        line.starts_with(&format!("breaker_open|{name}|5|")),
        "{line}"
    );
    assert!(line.contains("circuit open until"), "{line}");

    // `status` asks the daemon: the live breaker and its re-check time.
    let (_, table, _) = cli(args(&s.path("c.ini"), &["status"])).await;
    let row = table
        .lines()
        .find(|l| l.starts_with("5 "))
        .unwrap_or_else(|| panic!("{table}"));
    assert!(
        row.contains("open until") && row.contains("(2 failures)"),
        "{table}"
    );
    assert!(table.contains("daemon running (pid"), "{table}");

    // The process is fixed; the operator resets the breaker: re-checked at once.
    std::fs::write(&healthy, "").unwrap();
    let reset_at = Instant::now();
    let (code, out, err) = cli(args(&s.path("c.ini"), &["reset", &name])).await;
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("reset 5: breaker was open until"), "{out}");
    assert!(out.contains("re-checking now"), "{out}");
    assert!(
        db.wait_cleared(5, Duration::from_secs(10)).await,
        "alarm not cleared after reset"
    );
    assert!(
        reset_at.elapsed() < Duration::from_secs(5),
        "not re-checked at once"
    );
    assert!(
        eventually(Duration::from_secs(5), || events(&s).len() == 3).await,
        "{:?}",
        events(&s)
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        events(&s),
        vec!["procedure_failed", "breaker_open", "recovered"]
    );
    daemon.stop().await;

    let history = db
        .query_strings(
            "SELECT CONCAT_WS(',', `trigger`, outcome) FROM RESTART_HISTORY WHERE process_id = 5 ORDER BY id",
        )
        .await;
    assert_eq!(history.last().map(String::as_str), Some("manual,success"));
    let saved = std::fs::read_to_string(s.path("state/breakers")).unwrap();
    assert!(!saved.contains("\n5 "), "the reset is saved: {saved}");
    procs::kill_all(&name);
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_silenced_process_is_not_restarted_and_is_rechecked_when_the_silence_ends() {
    let db = TestDb::new().await;
    let s = Scratch::new();
    s.fake_systemctl(0, "loaded");
    db.add_process(3, "silsvc").await;
    let extra = format!(
        "{}[process.default]\nrestart_strategy = service\nhealth_check_command = true\n",
        recorder(&s)
    );
    let config = s.config(&db, &extra);
    let c = s.path("config.ini");
    let daemon = Daemon::start(config.clone());
    wait_answering(&c).await;

    let (code, out, err) = cli(args(&c, &["silence", "silsvc", "--for", "4s"])).await;
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.starts_with("silenced silsvc until "), "{out}");
    let silenced_at = Instant::now();
    db.set_alarm(3).await;
    let mut noted = false;
    for _ in 0..50 {
        if db
            .row(3)
            .await
            .1
            .unwrap_or_default()
            .contains("silenced until")
        {
            noted = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(noted, "notes: {:?}", db.row(3).await);
    assert_eq!(db.row(3).await.0, 1, "the alarm stays raised");
    let (_, table, _) = cli(args(&c, &["status"])).await;
    let line = table.lines().find(|l| l.starts_with("3 ")).unwrap();
    assert!(line.contains("until "), "{table}");
    assert!(table.contains("daemon running"), "{table}");
    assert!(
        s.systemctl_calls().is_empty(),
        "nothing restarted while silenced"
    );

    // The silence ends: re-checked then, restarted once, no alert.
    assert!(
        db.wait_cleared(3, Duration::from_secs(10)).await,
        "not re-checked when the silence ended"
    );
    assert!(silenced_at.elapsed() >= Duration::from_millis(3000));
    assert_eq!(s.systemctl_calls(), vec!["restart silsvc"]);
    assert!(
        events(&s).is_empty(),
        "no alert for a silence: {:?}",
        events(&s)
    );

    // unsilence ends one at once.
    let (code, out, err) = cli(args(&c, &["silence", "3", "--for", "1h"])).await;
    assert_eq!(code, Some(0), "{out}{err}");
    db.set_alarm(3).await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(db.row(3).await.0, 1);
    let (code, out, err) = cli(args(&c, &["unsilence", "3"])).await;
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("silence of 3 ended; re-checking now"), "{out}");
    assert!(db.wait_cleared(3, Duration::from_secs(10)).await);
    assert_eq!(s.systemctl_calls().len(), 2);
    daemon.stop().await;

    let history = db
        .query_strings("SELECT `trigger` FROM RESTART_HISTORY WHERE process_id = 3 ORDER BY id")
        .await;
    assert_eq!(history, vec!["manual", "manual"]);
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn with_the_daemon_stopped_controls_edit_the_state_it_loads() {
    let db = TestDb::new().await;
    let s = Scratch::new();
    s.fake_systemctl(0, "loaded");
    db.add_process(1, "quiet").await;
    db.add_process(2, "stuck").await;
    db.exec("UPDATE STATUS_PROCESS SET alarma = 1").await;
    let config = s.config(
        &db,
        "[process.default]\nrestart_strategy = service\nhealth_check_command = true\n",
    );
    let c = s.path("config.ini");
    // A breaker left open by an earlier run, as the daemon saves it.
    std::fs::create_dir_all(s.path("state")).unwrap();
    let until = std::time::SystemTime::now() + Duration::from_secs(3600);
    let ms = until
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    std::fs::write(s.path("state/breakers"), format!("2 3 open {ms}\n")).unwrap();

    let (code, out, err) = cli(args(&c, &["silence", "quiet", "--until", "23:59"])).await;
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("the daemon is not running"), "{out}");
    let (code, out, err) = cli(args(&c, &["status"])).await;
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.contains("daemon not running; state as saved in"),
        "{out}"
    );
    let quiet = out.lines().find(|l| l.starts_with("1 ")).unwrap();
    assert!(quiet.contains(" until "), "{out}");
    let stuck = out.lines().find(|l| l.starts_with("2 ")).unwrap();
    assert!(
        stuck.contains("open until") && stuck.contains("(3 failures)"),
        "{out}"
    );

    let (code, out, err) = cli(args(&c, &["reset", "stuck"])).await;
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("reset 2: breaker was open until"), "{out}");
    let (code, _, err) = cli(args(&c, &["reset", "nosuch"])).await;
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("no process named nosuch in PROCESE"), "{err}");
    let (code, _, err) = cli(args(&c, &["silence", "a;b", "--for", "1h"])).await;
    assert_eq!(code, Some(64), "{err}");
    let (code, _, err) = cli(args(&c, &["silence", "1", "--for", "40d"])).await;
    assert_eq!(code, Some(64), "{err}");
    assert!(err.contains("at most 30 days"), "{err}");

    // The daemon loads both: `stuck` is restarted at start-up, `quiet` stays silenced.
    let daemon = Daemon::start(config);
    assert!(
        db.wait_cleared(2, Duration::from_secs(15)).await,
        "reset not applied"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(db.row(1).await.0, 1, "the silence survived the start");
    assert_eq!(s.systemctl_calls(), vec!["restart stuck"]);
    let (_, out, _) = cli(args(&c, &["status", "--json"])).await;
    let quiet = out
        .lines()
        .find(|l| l.contains(r#""process_id":1,"name":"quiet","alarm":1"#))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(quiet.contains(r#""silenced_until":""#), "{quiet}");
    daemon.stop().await;
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn alerts_never_delay_restarts_and_a_hanging_command_is_logged_once() {
    let db = TestDb::new().await;
    let s = Scratch::new();
    s.fake_systemctl(0, "loaded");
    // Three refused names (each one `refused` alert) and one good process.
    for (id, name) in [(1, "bad name1"), (2, "bad;name2"), (3, "-bad3")] {
        db.add_process(id, name).await;
    }
    db.add_process(4, "goodsvc").await;
    db.exec("UPDATE STATUS_PROCESS SET alarma = 1").await;
    let hang = s.script("bin/hang", "sleep 30");
    let extra = format!(
        "[alerts]\ncommand = {}\n[process.default]\nrestart_strategy = service\nhealth_check_command = true\ncommand_timeout = 2\n",
        hang.display()
    );
    // One procedure at a time, refused ones first: an alert run inside a procedure would hold
    // the only slot for 3 x 2 s before `goodsvc` is restarted.
    let text = s
        .config_text(&db, &extra)
        .replace("max_parallel_restarts = 4", "max_parallel_restarts = 1");
    std::fs::write(s.path("c.ini"), text).unwrap();
    let started = Instant::now();
    let mut d = BinDaemon::start(
        &s.path("c.ini"),
        &s.path("monitor_service.log"),
        &s.path("stderr"),
    );
    assert!(db.wait_cleared(4, Duration::from_secs(10)).await);
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "the restart waited for alerts: {:?}",
        started.elapsed()
    );
    d.wait_log("alert command failed", Duration::from_secs(10))
        .await;
    // All three alerts run (each killed after 2 s); the failure is said once.
    tokio::time::sleep(Duration::from_millis(5000)).await;
    let log = d.log_text();
    assert_eq!(log.matches("] alert event=refused").count(), 3, "{log}");
    assert_eq!(log.matches("alert command failed;").count(), 1, "{log}");
    assert!(log.contains("timed out after 2.0s"), "{log}");
    assert_eq!(
        log.matches("alert command failed again").count(),
        2,
        "{log}"
    );
    assert_eq!(d.stop().await.code(), Some(0));
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_setup_sql_account_can_read_what_status_shows() {
    let db = TestDb::new().await;
    let s = Scratch::new();
    db.add_process(1, "svc").await;
    db.exec(
        "INSERT INTO RESTART_HISTORY (process_id, process_name, started_at, finished_at, `trigger`, attempts, outcome) \
         VALUES (1, 'svc', NOW(), NOW(), 'sweep', 1, 'success')",
    )
    .await;
    // The account exactly as sql/setup.sql grants it, for this database.
    let sql =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/sql/setup.sql")).unwrap();
    let user = format!("st{}", std::process::id());
    let account = format!("'{user}'@'%'");
    let mut grants = 0;
    for line in sql
        .lines()
        .filter(|l| l.starts_with("GRANT ") && l.contains("v_process_monitor."))
    {
        if grants == 0 {
            db.exec(&format!(
                "CREATE USER IF NOT EXISTS {account} IDENTIFIED BY 'pw-{user}'"
            ))
            .await;
        }
        let stmt = line
            .trim_end_matches(';')
            .replace("v_process_monitor.", &format!("`{}`.", db.name))
            .replace("'monitor'@'localhost'", &account);
        db.exec(&stmt).await;
        grants += 1;
    }
    assert!(grants >= 3, "no table grants found in sql/setup.sql");
    let text = s
        .config_text(&db, "")
        .replace(
            &format!("user = {}\n", db.user),
            &format!("user = {user}\n"),
        )
        .replace(
            &db.password
                .as_ref()
                .map(|p| format!("password = {p}\n"))
                .unwrap_or_default(),
            "",
        )
        .replace(
            "[database]\n",
            &format!("[database]\npassword = pw-{user}\n"),
        );
    std::fs::write(s.path("c.ini"), text).unwrap();
    let (code, out, err) = cli(args(&s.path("c.ini"), &["status"])).await;
    db.exec(&format!("DROP USER {account}")).await;
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        !err.contains("not shown") && !err.contains("denied"),
        "{err}"
    );
    let line = out.lines().find(|l| l.starts_with("1 ")).unwrap();
    assert!(line.contains("success"), "{out}");
    // The demo's account gets the same table grants.
    let demo =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/demo.sh")).unwrap();
    for line in sql.lines().filter(|l| l.starts_with("GRANT ")) {
        let want = line.replace("'monitor'@'localhost'", "'monitor'@'127.0.0.1'");
        assert!(demo.contains(&want), "scripts/demo.sh lacks: {want}");
    }
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn database_and_binlog_outages_alert_after_the_delay_and_recover_once() {
    let db = TestDb::new().await;
    let s = Scratch::new();
    let proxy = Proxy::start(&db.host, db.port, true).await;
    let text = s
        .config_text(&db, &format!("{}after = 1.5\n", recorder(&s)))
        .replace(
            &format!("port = {}", db.port),
            &format!("port = {}", proxy.port),
        )
        .replace("connect_timeout = 5", "connect_timeout = 1")
        .replace("[monitor]\n", "[monitor]\nbinlog = on\n");
    std::fs::write(s.path("c.ini"), text).unwrap();
    let c = s.path("c.ini");
    let config = monitor_service::Config::load(&c).unwrap().config;
    let daemon = Daemon::start(config);
    wait_answering(&c).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(events(&s).is_empty(), "{:?}", events(&s));

    let down_at = Instant::now();
    proxy.down();
    assert!(
        eventually(Duration::from_secs(15), || events(&s).len() >= 2).await,
        "no outage alerts: {:?}",
        events(&s)
    );
    assert!(
        down_at.elapsed() >= Duration::from_millis(1500),
        "alerted before [alerts] after"
    );
    let mut first: Vec<String> = events(&s);
    first.sort();
    assert_eq!(first, vec!["binlog_down", "database_down"]);
    // Still down: no more alerts.
    tokio::time::sleep(Duration::from_millis(2000)).await;
    assert_eq!(events(&s).len(), 2, "{:?}", events(&s));
    let lines = read_lines(&s.path("alerts.log"));
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("database_down|||") && l.contains("database unreachable for")),
        "{lines:?}"
    );

    proxy.up();
    assert!(
        eventually(Duration::from_secs(40), || events(&s).len() >= 4).await,
        "no recovery alerts: {:?}",
        events(&s)
    );
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(
        events(&s)[2..],
        ["recovered", "recovered"],
        "{:?}",
        events(&s)
    );
    daemon.stop().await;
    db.drop_db().await;
}
