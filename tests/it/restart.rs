//! Restart strategies against a real database and real processes.

use std::time::Duration;

use crate::common::daemon::{eventually, once, Daemon, Scratch};
use crate::common::db::TestDb;
use crate::common::procs;

#[tokio::test(flavor = "multi_thread")]
async fn process_strategy_replaces_the_process_and_clears_the_alarm() {
    let db = TestDb::new().await;
    let s = Scratch::new();
    let name = procs::unique_name("wp");
    let bin = procs::demo_binary(s.dir.path(), &name);
    let old = procs::start(&bin);
    assert!(eventually(Duration::from_secs(5), || procs::pids(&name) == vec![old]).await);
    db.add_process(1, &name).await;
    db.set_alarm(1).await;

    let config = s.config(
        &db,
        &format!("[process.{name}]\nrestart_strategy = process\nhealth_check_command = pgrep -x %s\nrestart_delay = 0\n"),
    );
    let daemon = Daemon::start(config);
    assert!(
        db.wait_cleared(1, Duration::from_secs(20)).await,
        "alarm not cleared"
    );
    let counts = daemon.stop().await;
    assert_eq!(counts.succeeded, 1);

    let now = procs::pids(&name);
    assert_eq!(now.len(), 1, "exactly one new instance: {now:?}");
    assert_ne!(now[0], old, "the old pid must be gone");
    assert!(!monitor_service::procs::is_alive(old));
    // Detached in its own session, still running after the daemon stopped.
    assert_eq!(procs::session_of(now[0]), Some(now[0]));
    let (alarma, notes) = db.row(1).await;
    assert_eq!(alarma, 0);
    let notes = notes.unwrap();
    assert!(
        notes.contains("restarted via process (attempt 1/2, healthy in"),
        "{notes}"
    );
    let history = db
        .query_strings(
            "SELECT CONCAT_WS(',', `trigger`, strategy, attempts, outcome) FROM RESTART_HISTORY WHERE process_id = 1",
        )
        .await;
    assert_eq!(history, vec!["startup,process,1,success".to_string()]);
    procs::kill_all(&name);
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn service_strategy_runs_systemctl_restart_unit() {
    let db = TestDb::new().await;
    let s = Scratch::new();
    s.fake_systemctl(0, "loaded");
    db.add_process(7, "nginx").await;
    db.set_alarm(7).await;
    let config = s.config(
        &db,
        "[process.nginx]\nrestart_strategy = service\nunit = nginx-custom.service\nhealth_check_command = true\n",
    );
    let counts = once(config).await.unwrap();
    assert_eq!(counts.succeeded, 1);
    assert_eq!(
        s.systemctl_calls(),
        vec!["restart nginx-custom.service".to_string()]
    );
    let (alarma, notes) = db.row(7).await;
    assert_eq!(alarma, 0);
    assert!(notes
        .unwrap()
        .contains("restarted via service (attempt 1/2"));
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn auto_falls_back_to_process_when_the_service_restart_fails() {
    let db = TestDb::new().await;
    let s = Scratch::new();
    s.fake_systemctl(1, "loaded");
    let name = procs::unique_name("wa");
    let bin = procs::demo_binary(s.dir.path(), &name);
    let old = procs::start(&bin);
    assert!(eventually(Duration::from_secs(5), || procs::pids(&name) == vec![old]).await);
    db.add_process(3, &name).await;
    db.set_alarm(3).await;
    let config = s.config(
        &db,
        "[process.default]\nrestart_strategy = auto\nhealth_check_command = pgrep -x %s\n",
    );
    let counts = once(config).await.unwrap();
    assert_eq!(counts.succeeded, 1);
    let calls = s.systemctl_calls();
    assert!(calls.contains(&format!("restart {name}")), "{calls:?}");
    let now = procs::pids(&name);
    assert_eq!(now.len(), 1);
    assert_ne!(now[0], old);
    let (alarma, notes) = db.row(3).await;
    assert_eq!(alarma, 0);
    assert!(notes.unwrap().contains("restarted via process"));
    procs::kill_all(&name);
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn auto_uses_process_when_systemd_does_not_know_the_unit() {
    let db = TestDb::new().await;
    let s = Scratch::new();
    s.fake_systemctl(0, "not-found");
    let name = procs::unique_name("wn");
    let bin = procs::demo_binary(s.dir.path(), &name);
    db.add_process(4, &name).await;
    db.set_alarm(4).await;
    // Not running at all: started from start_command.
    let config = s.config(
        &db,
        &format!(
            "[process.{name}]\nstart_command = {} 100000\nhealth_check_command = pgrep -x %s\n",
            bin.display()
        ),
    );
    let counts = once(config).await.unwrap();
    assert_eq!(counts.succeeded, 1);
    assert!(!s.systemctl_calls().iter().any(|c| c.starts_with("restart")));
    assert_eq!(procs::pids(&name).len(), 1);
    procs::kill_all(&name);
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_timed_out_systemctl_restart_whose_job_still_runs_starts_no_second_copy() {
    let db = TestDb::new().await;
    let s = Scratch::new();
    let log = s.path("systemctl.log");
    // systemd 219 style `show` output (Key=value lines); `restart` hangs past command_timeout
    // while the unit is still activating.
    s.script(
        "bin/systemctl",
        &format!(
            "echo \"$*\" >> '{}'\ncase \"$1\" in\n  show) echo LoadState=loaded; echo ActiveState=activating ;;\n  restart) exec sleep 30 ;;\nesac\nexit 0",
            log.display()
        ),
    );
    let name = procs::unique_name("wj");
    let bin = procs::demo_binary(s.dir.path(), &name);
    let old = procs::start(&bin);
    assert!(eventually(Duration::from_secs(5), || procs::pids(&name) == vec![old]).await);
    db.add_process(5, &name).await;
    db.set_alarm(5).await;
    let config = s.config(
        &db,
        "[process.default]\nrestart_strategy = auto\ncommand_timeout = 0.5\nmax_attempts = 1\nhealth_check_command = true\n",
    );
    once(config).await.unwrap_err();
    assert_eq!(
        procs::pids(&name),
        vec![old],
        "no fallback while the job runs"
    );
    let calls = s.systemctl_calls();
    assert!(calls.contains(&format!("restart {name}")), "{calls:?}");
    let (alarma, notes) = db.row(5).await;
    assert_eq!(alarma, 1);
    let notes = notes.unwrap();
    assert!(notes.contains("still activating"), "{notes}");
    procs::kill_all(&name);
    db.drop_db().await;
}
