//! What a row may make the daemon do on a real host: units from real cgroups, identities of
//! real accounts, refusals that run nothing, health checks that mean healthy.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use crate::common::daemon::{bin, eventually, once, read_lines, Scratch};
use crate::common::db::TestDb;
use crate::common::host::{self, UnitCgroup};
use crate::common::procs;

/// Starts `argv` detached in `cwd` (reaped by the runtime when it exits).
fn start_in(argv: &[String], cwd: &std::path::Path) -> i32 {
    let pid = monitor_service::procs::spawn_detached(argv, Some(cwd)).unwrap();
    i32::try_from(pid).unwrap()
}

/// A unique process name longer than the 15 characters of /proc/PID/comm.
fn long_name(prefix: &str) -> String {
    let short = procs::unique_name(prefix);
    format!("{short}_long_process")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_process_in_a_service_unit_is_restarted_through_that_unit_and_not_killed() {
    let db = TestDb::new().await;
    let s = Scratch::new();
    s.fake_systemctl(0, "loaded");
    let name = procs::unique_name("wu");
    let unit = format!("{name}-bar.service");
    let Some(cgroup) = UnitCgroup::new(&unit) else {
        db.drop_db().await;
        return;
    };
    let bin = procs::demo_binary(s.dir.path(), &name);
    let pid = procs::start(&bin);
    cgroup.add(pid);
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    assert!(
        text.contains(&format!("name=systemd:/system.slice/{unit}")),
        "{text}"
    );
    db.add_process(1, &name).await;
    db.set_alarm(1).await;
    // Both strategies that follow systemd; no [process.NAME] section: a row alone.
    for strategy in ["auto", "service"] {
        let _ = std::fs::remove_file(s.path("systemctl.log"));
        db.set_alarm(1).await;
        let config = s.config(
            &db,
            &format!(
                "[process.default]\nrestart_strategy = {strategy}\nhealth_check_command = true\n"
            ),
        );
        let counts = once(config).await.unwrap();
        assert_eq!(counts.succeeded, 1, "{strategy}");
        assert_eq!(
            s.systemctl_calls(),
            vec![format!("restart {unit}")],
            "{strategy}: the unit its cgroup names"
        );
        assert_eq!(procs::pids(&name), vec![pid], "{strategy}: never killed");
    }
    // The process strategy refuses to kill it behind systemd's back.
    db.set_alarm(1).await;
    let _ = std::fs::remove_file(s.path("systemctl.log"));
    let config = s.config(
        &db,
        "[process.default]\nrestart_strategy = process\nhealth_check_command = true\n",
    );
    once(config).await.unwrap_err();
    assert_eq!(procs::pids(&name), vec![pid]);
    assert!(s.systemctl_calls().is_empty());
    let notes = db.row(1).await.1.unwrap();
    assert!(notes.contains("refused, nothing executed"), "{notes}");
    procs::kill_all(&name);
    drop(cgroup);
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_process_is_relaunched_as_its_user_groups_and_directory() {
    let (uid, gid) = host::ensure_user();
    let db = TestDb::new().await;
    let s = Scratch::new();
    std::fs::set_permissions(s.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let name = procs::unique_name("wi");
    let bin = procs::demo_binary(s.dir.path(), &name);
    let cwd = s.path("work");
    std::fs::create_dir_all(&cwd).unwrap();
    // Scratch sets umask 077: the account must be able to enter its directory.
    std::fs::set_permissions(&cwd, std::fs::Permissions::from_mode(0o755)).unwrap();
    let argv: Vec<String> = [
        "setpriv".to_string(),
        format!("--reuid={uid}"),
        format!("--regid={gid}"),
        format!("--groups={gid},4"),
        "--".to_string(),
        bin.display().to_string(),
        "100000".to_string(),
    ]
    .to_vec();
    start_in(&argv, &cwd);
    assert!(eventually(Duration::from_secs(5), || procs::pids(&name).len() == 1).await);
    let old = procs::pids(&name)[0];
    assert_eq!(host::identity_of(old), (uid, gid, vec![4, gid]));
    db.add_process(1, &name).await;
    db.set_alarm(1).await;
    let config = s.config(
        &db,
        "[process.default]\nrestart_strategy = process\nhealth_check_command = pgrep -x %s\n",
    );
    let counts = once(config).await.unwrap();
    assert_eq!(counts.succeeded, 1);
    let now = procs::pids(&name);
    assert_eq!(now.len(), 1, "{now:?}");
    assert_ne!(now[0], old);
    assert_eq!(
        host::identity_of(now[0]),
        (uid, gid, vec![4, gid]),
        "not root"
    );
    assert_eq!(
        std::fs::read_link(format!("/proc/{}/cwd", now[0])).unwrap(),
        cwd
    );
    // The `user` key overrides: root again, by name.
    db.set_alarm(1).await;
    let config = s.config(
        &db,
        &format!("[process.{name}]\nrestart_strategy = process\nuser = root\nhealth_check_command = pgrep -x %s\n"),
    );
    once(config).await.unwrap();
    let now = procs::pids(&name);
    assert_eq!(now.len(), 1, "{now:?}");
    assert_eq!(host::identity_of(now[0]).0, 0);
    procs::kill_all(&name);
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn rows_naming_units_the_daemon_or_a_stopped_program_run_nothing() {
    let db = TestDb::new().await;
    let s = Scratch::new();
    s.fake_systemctl(0, "loaded");
    let calls = s.path("calls");
    let recorder = s.script(
        "bin/record",
        &format!("echo \"$*\" >> '{}'", calls.display()),
    );
    let names = [
        "reboot.target",
        "poweroff.target",
        "dbus.socket",
        "monitor_service",
        "monitor_service.service",
        "reboot",
    ];
    for (i, n) in names.iter().enumerate() {
        db.add_process(10 + i as i64, n).await;
        db.set_alarm(10 + i as i64).await;
    }
    let r = recorder.display();
    let config = s.config(
        &db,
        &format!("[process.default]\npre_restart_command = {r} pre %s\nhealth_check_command = {r} health %s\n"),
    );
    let counts = once(config.clone()).await.unwrap_err();
    assert_eq!(counts.exit_code(), 1);
    assert_eq!(read_lines(&calls), Vec::<String>::new(), "nothing may run");
    assert_eq!(
        s.systemctl_calls(),
        Vec::<String>::new(),
        "systemctl not even asked"
    );
    for (i, n) in names.iter().enumerate() {
        let (alarma, notes) = db.row(10 + i as i64).await;
        assert_eq!(alarma, 1, "{n}");
        let notes = notes.unwrap();
        assert!(notes.contains("refused, nothing executed"), "{n}: {notes}");
        assert!(notes.chars().count() <= 100, "{n}: {notes}");
    }
    let reboot = db.row(15).await.1.unwrap();
    assert!(
        reboot.contains("not running and not in the config"),
        "{reboot}"
    );
    let target = db.row(10).await.1.unwrap();
    assert!(
        target.contains(".target units are never restarted"),
        "{target}"
    );
    let own = db.row(13).await.1.unwrap();
    assert!(own.contains("never restarts itself"), "{own}");
    // One history row each.
    drop(config);
    let history = db
        .query_strings("SELECT COUNT(*) FROM RESTART_HISTORY WHERE outcome = 'refused'")
        .await;
    assert_eq!(history, vec![names.len().to_string()]);
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn only_configured_refuses_names_without_a_section() {
    let db = TestDb::new().await;
    let s = Scratch::new();
    s.fake_systemctl(0, "loaded");
    db.add_process(1, "svcfree").await;
    db.add_process(2, "svcknown").await;
    db.set_alarm(1).await;
    db.set_alarm(2).await;
    let config = s.config(
        &db,
        "[monitor]\n[process.default]\nrestart_strategy = service\nhealth_check_command = true\n\
         [process.svcknown]\nrestart_strategy = service\nhealth_check_command = true\n",
    );
    let mut config = config;
    config.monitor.only_configured = true;
    once(config).await.unwrap_err();
    assert_eq!(s.systemctl_calls(), vec!["restart svcknown"]);
    let (alarma, notes) = db.row(1).await;
    assert_eq!(alarma, 1);
    assert!(notes.unwrap().contains("only_configured"));
    assert_eq!(db.row(2).await.0, 0);
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_process_of_another_mount_namespace_is_not_ours() {
    let db = TestDb::new().await;
    let s = Scratch::new();
    let name = procs::unique_name("wm");
    let bin = procs::demo_binary(s.dir.path(), &name);
    let argv: Vec<String> = ["unshare", "--mount", "--"]
        .iter()
        .map(|w| w.to_string())
        .chain([bin.display().to_string(), "100000".to_string()])
        .collect();
    let pid = start_in(&argv, s.dir.path());
    // unshare execs the program: same pid, another mount namespace.
    assert!(
        eventually(Duration::from_secs(5), || {
            std::fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|e| e == bin)
        })
        .await
    );
    assert!(procs::pids(&name).is_empty(), "not in our namespaces");
    db.add_process(1, &name).await;
    db.set_alarm(1).await;
    let config = s.config(
        &db,
        "[process.default]\nrestart_strategy = process\nhealth_check_command = true\n",
    );
    once(config).await.unwrap_err();
    assert!(monitor_service::procs::is_alive(pid), "never signalled");
    let notes = db.row(1).await.1.unwrap();
    assert!(notes.contains("not running"), "{notes}");
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    );
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_long_name_passes_the_default_health_check() {
    let db = TestDb::new().await;
    let s = Scratch::new();
    let name = long_name("wl");
    assert!(name.len() > 15);
    let bin = procs::demo_binary(s.dir.path(), &name);
    let old = procs::start(&bin);
    assert!(eventually(Duration::from_secs(5), || procs::pids(&name) == vec![old]).await);
    db.add_process(1, &name).await;
    db.set_alarm(1).await;
    // Default health check (pgrep %s), settle shortened.
    let config = s.config(
        &db,
        "[process.default]\nrestart_strategy = process\nhealth_check_settle = 0.3\nmax_attempts = 1\n",
    );
    let counts = once(config).await.unwrap();
    assert_eq!(counts.succeeded, 1);
    let notes = db.row(1).await.1.unwrap();
    assert!(
        notes.contains("restarted via process (attempt 1/1"),
        "{notes}"
    );
    let now = procs::pids(&name);
    assert_eq!(now.len(), 1);
    assert_ne!(now[0], old);
    procs::kill_all(&name);
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_look_alike_does_not_make_the_process_healthy() {
    let db = TestDb::new().await;
    let s = Scratch::new();
    let name = procs::unique_name("wd");
    let safe = format!("{name}_safe");
    let bin = procs::demo_binary(s.dir.path(), &safe);
    procs::start(&bin);
    assert!(eventually(Duration::from_secs(5), || procs::pids(&safe).len() == 1).await);
    db.add_process(1, &name).await;
    db.set_alarm(1).await;
    // `pgrep NAME` would match NAME_safe: the built-in check does not.
    let config = s.config(
        &db,
        &format!("[process.{name}]\nrestart_strategy = process\nstart_command = true\nhealth_check_timeout = 0.5\nhealth_check_settle = 0\nmax_attempts = 1\n"),
    );
    once(config).await.unwrap_err();
    let (alarma, notes) = db.row(1).await;
    assert_eq!(alarma, 1);
    let notes = notes.unwrap();
    assert!(
        notes.contains(&format!("no process named {name} is running")),
        "{notes}"
    );
    assert_eq!(procs::pids(&safe).len(), 1, "the look-alike is left alone");
    procs::kill_all(&safe);
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn health_check_timeout_zero_runs_the_check_once() {
    let db = TestDb::new().await;
    let s = Scratch::new();
    s.fake_systemctl(0, "loaded");
    let runs = s.path("health.runs");
    let check = s.script(
        "bin/check",
        &format!("echo run >> '{}'; exit 1", runs.display()),
    );
    db.add_process(1, "svczero").await;
    db.set_alarm(1).await;
    let config = s.config(
        &db,
        &format!("[process.svczero]\nrestart_strategy = service\nhealth_check_command = {}\nhealth_check_timeout = 0\nmax_attempts = 1\n", check.display()),
    );
    assert_eq!(
        config.process("svczero").health_check_timeout,
        Duration::ZERO
    );
    once(config).await.unwrap_err();
    assert_eq!(read_lines(&runs).len(), 1);
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn children_get_no_systemd_variables() {
    let db = TestDb::new().await;
    let s = Scratch::new();
    s.fake_systemctl(0, "loaded");
    let env = s.path("env.txt");
    db.add_process(1, "svcenv").await;
    db.set_alarm(1).await;
    let text = s.config_text(
        &db,
        &format!(
            "[process.svcenv]\nrestart_strategy = service\npre_restart_command = sh -c \"env > {}\"\nhealth_check_command = true\n",
            env.display()
        ),
    );
    let path = s.path("config.ini");
    std::fs::write(&path, text).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_monitor_service"))
        .args(["-c", path.to_str().unwrap(), "--once"])
        .env("WATCHDOG_USEC", "1000000")
        .env("WATCHDOG_PID", "1")
        .env("INVOCATION_ID", "0123")
        .env("LISTEN_FDS", "3")
        .env("LISTEN_PID", "1")
        .env("KEPT_VARIABLE", "yes")
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen = std::fs::read_to_string(&env).unwrap();
    assert!(seen.contains("KEPT_VARIABLE=yes"), "{seen}");
    for var in [
        "WATCHDOG_USEC",
        "WATCHDOG_PID",
        "INVOCATION_ID",
        "LISTEN_FDS",
        "LISTEN_PID",
    ] {
        assert!(!seen.contains(&format!("{var}=")), "{var} reached a child");
    }
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_config_others_could_change_is_refused_as_root() {
    let (uid, _) = host::ensure_user();
    let s = Scratch::new();
    let path = s.path("config.ini");
    std::fs::write(&path, "[monitor]\ncheck_interval = 60\n").unwrap();
    let p = path.to_str().unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o664)).unwrap();
    let out = bin(&["-c", p, "--check-config"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{err}");
    assert!(
        err.contains(p) && err.contains("0664") && err.contains("writable by group/others"),
        "{err}"
    );
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    nix::unistd::chown(&path, Some(nix::unistd::Uid::from_raw(uid)), None).unwrap();
    let out = bin(&["-c", p, "--check-config"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{err}");
    assert!(
        err.contains("not owned by root") && err.contains(&format!("uid {uid}")),
        "{err}"
    );
}

#[test]
fn shell_syntax_and_quoted_values_are_warned_about_with_file_line_and_key() {
    let text = "[process.a]\nstart_command = /opt/a/run > /var/log/a.log 2>&1\n\
                health_check_command = curl -s localhost | grep ok\n\
                pre_restart_command = sh -c \"test -f /x && echo ok\"\n\
                [logging]\nlog_file = \"/var/log/m.log\"\n";
    let loaded = monitor_service::Config::parse(text, std::path::Path::new("/etc/m.ini")).unwrap();
    let w = loaded.warnings.join("\n");
    assert!(
        w.contains("/etc/m.ini:2: [process.a] start_command") && w.contains("\">\""),
        "{w}"
    );
    assert!(
        w.contains("/etc/m.ini:3: [process.a] health_check_command") && w.contains("\"|\""),
        "{w}"
    );
    assert!(!w.contains("pre_restart_command"), "sh -c is a shell: {w}");
    assert!(
        w.contains("/etc/m.ini:6: [logging] log_file: the value is wrapped in quotes"),
        "{w}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refusal_is_said_once_to_a_running_daemon() {
    let db = TestDb::new().await;
    let s = Scratch::new();
    s.fake_systemctl(0, "loaded");
    db.add_process(1, "reboot").await;
    db.add_process(2, "dbus.socket").await;
    let daemon = crate::common::daemon::Daemon::start(s.config(&db, ""));
    let refused = || async {
        db.query_strings("SELECT COUNT(*) FROM RESTART_HISTORY WHERE outcome = 'refused'")
            .await
    };
    for round in 0..3 {
        db.exec("UPDATE STATUS_PROCESS SET alarma = 0").await;
        db.exec("UPDATE STATUS_PROCESS SET alarma = 1").await;
        let mut seen = false;
        for _ in 0..100 {
            if refused().await == vec!["2".to_string()] {
                seen = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(seen, "round {round}: {:?}", refused().await);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    daemon.stop().await;
    assert_eq!(
        refused().await,
        vec!["2".to_string()],
        "one history row each"
    );
    assert!(s.systemctl_calls().is_empty());
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_process_that_could_not_be_started_again_is_not_stopped() {
    let db = TestDb::new().await;
    let s = Scratch::new();
    let name = procs::unique_name("wx");
    let bin = procs::demo_binary(s.dir.path(), &name);
    let pid = procs::start(&bin);
    assert!(eventually(Duration::from_secs(5), || procs::pids(&name) == vec![pid]).await);
    // Its executable is gone: its own command line cannot start it again.
    std::fs::remove_file(&bin).unwrap();
    db.add_process(1, &name).await;
    db.set_alarm(1).await;
    let config = s.config(
        &db,
        "[process.default]\nrestart_strategy = process\nhealth_check_command = true\n",
    );
    once(config).await.unwrap_err();
    assert_eq!(procs::pids(&name), vec![pid], "not stopped");
    let (alarma, notes) = db.row(1).await;
    assert_eq!(alarma, 1);
    let notes = notes.unwrap();
    assert!(
        notes.contains("cannot be started again; set start_command"),
        "{notes}"
    );
    let reason = db
        .query_strings("SELECT detail FROM RESTART_HISTORY WHERE process_id = 1")
        .await;
    assert!(reason[0].contains("was deleted"), "{reason:?}");
    procs::kill_all(&name);
    db.drop_db().await;
}
