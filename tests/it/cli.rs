//! The binary as operators run it: config errors (exit 78), `--check-config`, `--once`.

use std::process::Output;

use crate::common::daemon::{bin, Scratch};
use crate::common::db::TestDb;

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn each_invalid_value_names_section_key_value_and_exits_78() {
    let s = Scratch::new();
    let cases = [
        ("monitor", "check_interval", "abc"),
        ("monitor", "check_interval", "0"),
        ("monitor", "max_restart_failures", "0"),
        ("monitor", "circuit_reset_time", "-5"),
        ("monitor", "binlog", "maybe"),
        ("monitor", "max_parallel_restarts", "0"),
        ("monitor", "server_id", "0"),
        ("monitor", "history_table", "x; DROP TABLE y"),
        ("database", "port", "70000"),
        ("database", "connect_timeout", "soon"),
        ("logging", "max_log_size", "0"),
        ("logging", "level", "loud"),
        ("logging", "log_files_to_keep", "-1"),
        ("process.default", "restart_strategy", "reboot"),
        ("process.default", "max_attempts", "0"),
        ("process.default", "health_check_timeout", "x"),
        ("process.default", "restart_delay", "-1"),
        ("process.default", "health_check_command", "pgrep 'unclosed"),
        ("process.default", "stop_timeout", "forever"),
        ("process.default", "command_timeout", "0"),
    ];
    for (section, key, value) in cases {
        let path = s.path("bad.ini");
        std::fs::write(
            &path,
            format!("; a comment\n# another\n[{section}]\n{key} = {value}\n"),
        )
        .unwrap();
        let out = bin(&["-c", path.to_str().unwrap(), "--check-config"]);
        let msg = text(&out);
        assert_eq!(
            out.status.code(),
            Some(78),
            "{section}.{key}={value}: {msg}"
        );
        assert!(
            msg.contains(&format!("[{section}]")),
            "section missing: {msg}"
        );
        assert!(msg.contains(key), "key missing: {msg}");
        assert!(msg.contains(value), "value missing: {msg}");
        assert!(msg.contains(":4"), "line missing: {msg}");
    }
}

#[test]
fn missing_config_file_exits_78_with_the_path() {
    let out = bin(&["-c", "/nonexistent/monitor.ini", "--once"]);
    assert_eq!(out.status.code(), Some(78));
    assert!(text(&out).contains("/nonexistent/monitor.ini"));
}

#[tokio::test(flavor = "multi_thread")]
async fn check_config_passes_against_a_reachable_database() {
    let db = TestDb::new().await;
    let s = Scratch::new();
    std::fs::write(
        s.path("c.ini"),
        s.config_text(&db, "[process.x]\nstart_command = /no/such/program\n"),
    )
    .unwrap();
    let out = bin(&["-c", s.path("c.ini").to_str().unwrap(), "--check-config"]);
    let msg = text(&out);
    assert_eq!(out.status.code(), Some(0), "{msg}");
    assert!(msg.contains("reachable"), "{msg}");
    assert!(msg.contains("warning: program `/no/such/program`"), "{msg}");
    db.drop_db().await;
}

#[test]
fn check_config_reports_an_unreachable_database() {
    let s = Scratch::new();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    std::fs::write(
        s.path("c.ini"),
        format!("[database]\nhost = 127.0.0.1\nport = {port}\nconnect_timeout = 2\n[monitor]\nstate_dir = {}\n", s.path("st").display()),
    )
    .unwrap();
    let out = bin(&["-c", s.path("c.ini").to_str().unwrap(), "--check-config"]);
    let msg = text(&out);
    assert_eq!(out.status.code(), Some(69), "{msg}");
    assert!(msg.contains(&format!("127.0.0.1:{port}")), "{msg}");
}

#[tokio::test(flavor = "multi_thread")]
async fn once_exits_zero_when_all_handled_and_one_when_a_procedure_fails() {
    let db = TestDb::new().await;
    let s = Scratch::new();
    s.fake_systemctl(0, "loaded");
    db.add_process(1, "svc").await;
    db.set_alarm(1).await;
    let good = s.config_text(
        &db,
        "[process.default]\nrestart_strategy = service\nhealth_check_command = true\n",
    );
    std::fs::write(s.path("good.ini"), good).unwrap();
    let out = bin(&["-c", s.path("good.ini").to_str().unwrap(), "--once"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(db.row(1).await.0, 0);

    db.set_alarm(1).await;
    let bad = s.config_text(&db, "[process.default]\nrestart_strategy = service\nhealth_check_command = false\nhealth_check_timeout = 0.1\nmax_attempts = 1\n");
    std::fs::write(s.path("bad.ini"), bad).unwrap();
    let out = bin(&["-c", s.path("bad.ini").to_str().unwrap(), "--once"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert_eq!(db.row(1).await.0, 1);
    let log = std::fs::read_to_string(s.path("monitor_service.log")).unwrap();
    assert!(
        log.contains("[ERROR] restart failed; alarm stays raised"),
        "{log}"
    );
    db.drop_db().await;
}

/// Runs `monitor_service ARGS --once` with `$MONITOR_SERVICE_CONFIG` set to `env`, asserts exit
/// 0 and returns the `configuration read` INFO lines of `log` so far.
fn once_config_lines(args: &[&str], env: &str, log: &std::path::Path) -> Vec<String> {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_monitor_service"))
        .args(args)
        .arg("--once")
        .env("MONITOR_SERVICE_CONFIG", env)
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    std::fs::read_to_string(log)
        .unwrap()
        .lines()
        .filter(|l| l.contains("[INFO] configuration read "))
        .map(str::to_string)
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn startup_logs_one_info_line_naming_the_config_file_and_why() {
    let db = TestDb::new().await;
    let s = Scratch::new();
    let path = s.path("c.ini");
    std::fs::write(&path, s.config_text(&db, "")).unwrap();
    let path_str = path.to_str().unwrap();
    let log = s.path("monitor_service.log");

    // -c wins over the environment.
    let lines = once_config_lines(&["-c", path_str], "/nonexistent/env.ini", &log);
    assert_eq!(lines.len(), 1, "{lines:?}");
    let want = format!("file={path_str} chosen_by=\"given with -c\"");
    assert!(lines[0].contains(&want), "{lines:?}");

    // No -c: $MONITOR_SERVICE_CONFIG names the file.
    let lines = once_config_lines(&[], path_str, &log);
    assert_eq!(lines.len(), 2, "one line per start: {lines:?}");
    let want = format!("file={path_str} chosen_by=\"named by $MONITOR_SERVICE_CONFIG\"");
    assert!(lines[1].contains(&want), "{lines:?}");

    // --check-config says the same on its first line.
    let out = bin(&["-c", path_str, "--check-config"]);
    let first = String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .unwrap_or_default()
        .to_string();
    assert_eq!(first, format!("ok: config file {path_str} (given with -c)"));
    db.drop_db().await;
}
