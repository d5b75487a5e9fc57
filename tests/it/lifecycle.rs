//! The daemon's life as systemd and operators see it: notify protocol (READY, STATUS,
//! WATCHDOG, STOPPING), SIGTERM with a procedure in flight, SIGHUP reload and log reopen,
//! `status`, `--dry-run`, `--version`.

use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::common::bin::BinDaemon;
use crate::common::daemon::{bin, eventually, read_lines, Scratch};
use crate::common::db::TestDb;

fn log(s: &Scratch) -> String {
    std::fs::read_to_string(s.path("monitor_service.log")).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn notify_protocol_ready_status_watchdog_stopping() {
    let db = TestDb::new().await;
    let s = Scratch::new();
    s.fake_systemctl(0, "loaded");
    db.add_process(1, "svc").await;
    db.set_alarm(1).await;
    std::fs::write(
        s.path("c.ini"),
        s.config_text(
            &db,
            "[process.default]\nrestart_strategy = service\nhealth_check_command = true\n",
        ),
    )
    .unwrap();
    let sock_path = s.path("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut child = BinDaemon::start_with(
        &s.path("c.ini"),
        &s.path("monitor_service.log"),
        &s.path("stderr"),
        |c| {
            c.env("NOTIFY_SOCKET", &sock_path)
                .env("WATCHDOG_USEC", "400000")
                .env_remove("WATCHDOG_PID");
        },
    );
    let mut messages: Vec<String> = Vec::new();
    let mut buf = [0u8; 4096];
    let started = Instant::now();
    let mut stopped_at = None;
    while started.elapsed() < Duration::from_secs(20) {
        if let Ok(n) = sock.recv(&mut buf) {
            messages.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
        let pings = messages.iter().filter(|m| m.contains("WATCHDOG=1")).count();
        if stopped_at.is_none() && pings >= 5 {
            child.signal(Signal::SIGTERM);
            stopped_at = Some(messages.len());
        }
        if messages.iter().any(|m| m.contains("STOPPING=1")) {
            break;
        }
    }
    let status = child.wait_exit(Duration::from_secs(60)).await;
    assert_eq!(status.and_then(|s| s.code()), Some(0));
    let all = messages.join("\n");
    let ready = messages
        .iter()
        .position(|m| m.contains("READY=1"))
        .expect(&all);
    // READY only after the first sweep handled the alarm raised before start.
    assert!(read_lines(&s.path("monitor_service.log"))
        .iter()
        .any(|l| l.contains("monitor_service started")));
    assert!(
        messages[ready].contains("STATUS=binlog connecting, 1 processes"),
        "{all}"
    );
    assert!(messages[ready].contains("breakers open"), "{all}");
    let pings_before_stop = messages[..stopped_at.unwrap()]
        .iter()
        .filter(|m| m.contains("WATCHDOG=1"))
        .count();
    assert!(pings_before_stop >= 5, "{all}");
    assert!(messages.last().unwrap().contains("STOPPING=1"), "{all}");
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_lets_the_procedure_in_flight_finish() {
    let db = TestDb::new().await;
    let s = Scratch::new();
    s.fake_systemctl(0, "loaded");
    db.add_process(1, "svc").await;
    let started = s.path("pre.started");
    std::fs::write(
        s.path("c.ini"),
        s.config_text(
            &db,
            &format!(
                "[process.default]\nrestart_strategy = service\nhealth_check_command = true\npre_restart_command = sh -c \"touch {}; sleep 1.5\"\n",
                started.display()
            ),
        ),
    )
    .unwrap();
    let child = BinDaemon::beside(&s.path("c.ini"));
    assert!(
        eventually(Duration::from_secs(15), || s
            .path("state/binlog_position")
            .exists())
        .await
    );
    db.set_alarm(1).await;
    assert!(eventually(Duration::from_secs(5), || started.exists()).await);
    let status = child.stop().await;
    assert_eq!(status.code(), Some(0));
    assert_eq!(
        db.row(1).await.0,
        0,
        "the procedure under way was finished, not dropped"
    );
    assert_eq!(s.systemctl_calls(), vec!["restart svc"]);
    let l = log(&s);
    assert!(l.contains("stopping: no new procedures in_flight=1"), "{l}");
    assert!(s.path("state/binlog_position").exists());
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_reloads_a_good_config_keeps_the_old_on_a_bad_one_and_reopens_the_log() {
    let db = TestDb::new().await;
    let s = Scratch::new();
    s.fake_systemctl(0, "loaded");
    db.add_process(1, "svc").await;
    let base = s.config_text(&db, "");
    let with = |unit: &str| {
        format!("{base}[process.svc]\nrestart_strategy = service\nhealth_check_command = true\nunit = {unit}\n")
    };
    std::fs::write(s.path("c.ini"), with("first.service")).unwrap();
    let child = BinDaemon::beside(&s.path("c.ini"));
    assert!(
        eventually(Duration::from_secs(15), || s
            .path("state/binlog_position")
            .exists())
        .await
    );

    // A good new config applies to the next procedure.
    std::fs::write(s.path("c.ini"), with("second.service")).unwrap();
    child.signal(Signal::SIGHUP);
    assert!(
        eventually(Duration::from_secs(5), || log(&s)
            .contains("configuration reloaded"))
        .await
    );
    db.set_alarm(1).await;
    assert!(db.wait_cleared(1, Duration::from_secs(5)).await);

    // A bad one is refused and the old one stays in force.
    std::fs::write(
        s.path("c.ini"),
        format!(
            "{}\n[monitor]\ncheck_interval = never\n",
            with("third.service")
        ),
    )
    .unwrap();
    child.signal(Signal::SIGHUP);
    assert!(
        eventually(Duration::from_secs(5), || log(&s)
            .contains("[ERROR] configuration reload failed"))
        .await
    );
    db.set_alarm(1).await;
    assert!(db.wait_cleared(1, Duration::from_secs(5)).await);
    assert_eq!(
        s.systemctl_calls(),
        vec!["restart second.service", "restart second.service"]
    );
    assert!(
        log(&s).contains("check_interval"),
        "the error names the key"
    );

    // Log reopen: after the file was moved away (as logrotate does), a new one is written.
    std::fs::rename(s.path("monitor_service.log"), s.path("moved.log")).unwrap();
    std::fs::write(s.path("c.ini"), with("second.service")).unwrap();
    child.signal(Signal::SIGHUP);
    assert!(
        eventually(Duration::from_secs(5), || log(&s)
            .contains("configuration reloaded"))
        .await
    );
    let status = child.stop().await;
    assert_eq!(status.code(), Some(0));
    assert!(std::fs::read_to_string(s.path("moved.log"))
        .unwrap()
        .contains("reloading the configuration"));
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn status_shows_alarms_breakers_notes_and_last_restart() {
    let db = TestDb::new().await;
    let s = Scratch::new();
    s.fake_systemctl(0, "loaded");
    db.add_process(1, "good").await;
    db.add_process(2, "bad").await;
    db.exec("UPDATE STATUS_PROCESS SET alarma = 1").await;
    let text = s.config_text(
        &db,
        "[process.default]\nrestart_strategy = service\nhealth_check_command = true\n\
         [process.bad]\nrestart_strategy = service\nhealth_check_command = false\nhealth_check_timeout = 0.1\nmax_attempts = 1\n",
    );
    let text = text.replace("[monitor]\n", "[monitor]\nmax_restart_failures = 1\n");
    std::fs::write(s.path("c.ini"), text).unwrap();
    let c = s.path("c.ini");
    let c = c.to_str().unwrap();
    assert_eq!(bin(&["-c", c, "--once"]).status.code(), Some(1));

    let out = bin(&["-c", c, "status"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let table = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = table.lines().collect();
    assert!(
        lines[0].starts_with("ID") && lines[0].contains("BREAKER"),
        "{table}"
    );
    assert!(
        lines[1].starts_with("1 ") && lines[1].contains("good") && lines[1].contains("closed"),
        "{table}"
    );
    assert!(
        lines[1].contains("success") && lines[1].contains("restarted via service"),
        "{table}"
    );
    assert!(
        lines[2].contains("bad")
            && lines[2].contains("open until")
            && lines[2].contains("(1 failures)"),
        "{table}"
    );

    let out = bin(&["-c", c, "status", "--json"]);
    let json = String::from_utf8_lossy(&out.stdout);
    assert!(
        json.starts_with('[') && json.trim_end().ends_with(']'),
        "{json}"
    );
    assert!(
        json.contains(r#""process_id":2,"name":"bad","alarm":1,"breaker":"open""#),
        "{json}"
    );
    assert!(
        json.contains(r#""process_id":1,"name":"good","alarm":0,"breaker":"closed""#),
        "{json}"
    );
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn dry_run_executes_nothing_and_writes_nothing() {
    let db = TestDb::new().await;
    let s = Scratch::new();
    s.fake_systemctl(0, "loaded");
    let calls = s.path("calls");
    let rec = s.script("bin/rec", &format!("echo \"$*\" >> '{}'", calls.display()));
    db.add_process(1, "svc").await;
    db.exec("UPDATE STATUS_PROCESS SET alarma = 1, notes = 'before' WHERE process_id = 1")
        .await;
    std::fs::write(
        s.path("c.ini"),
        s.config_text(
            &db,
            &format!(
                "[process.default]\nrestart_strategy = auto\npre_restart_command = {r} pre\nhealth_check_command = {r} health\nstart_command = {r} start\n",
                r = rec.display()
            ),
        ),
    )
    .unwrap();
    let out = bin(&[
        "-c",
        s.path("c.ini").to_str().unwrap(),
        "--once",
        "--dry-run",
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!calls.exists(), "nothing may run");
    assert_eq!(s.systemctl_calls(), Vec::<String>::new());
    assert_eq!(db.row(1).await, (1, Some("before".to_string())));
    assert_eq!(
        db.query_strings("SELECT COUNT(*) FROM RESTART_HISTORY")
            .await,
        vec!["0"]
    );
    assert!(
        log(&s).contains("dry-run: would restart process=svc"),
        "{}",
        log(&s)
    );
    db.drop_db().await;
}

#[test]
fn version_and_help() {
    let out = bin(&["--version"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("monitor_service {}", env!("CARGO_PKG_VERSION"))
    );
    let help = String::from_utf8_lossy(&bin(&["--help"]).stdout).into_owned();
    for opt in [
        "--config",
        "--check-config",
        "--once",
        "--dry-run",
        "status",
        "--version",
    ] {
        assert!(help.contains(opt), "{opt} missing from --help");
    }
}
