//! Failing health checks, the circuit breaker's open period, its half-open trial, and its
//! state across a daemon restart.

use std::time::{Duration, Instant};

use crate::common::daemon::{eventually, read_lines, Daemon, Scratch};
use crate::common::db::TestDb;
use crate::common::procs;

#[tokio::test(flavor = "multi_thread")]
async fn breaker_opens_after_max_failures_then_one_trial_and_survives_restart() {
    let db = TestDb::new().await;
    let s = Scratch::new();
    let name = procs::unique_name("wb");
    let bin = procs::demo_binary(s.dir.path(), &name);
    let count = s.path("starts");
    db.add_process(5, &name).await;
    db.set_alarm(5).await;
    let extra = format!(
        "[process.{name}]\nrestart_strategy = process\nstart_command = sh -c \"echo x >> {count}; exec {bin} 100000\"\n\
         health_check_command = false\nhealth_check_timeout = 0.2\nmax_attempts = 1\nrestart_delay = 0\n",
        count = count.display(),
        bin = bin.display()
    );
    let mut config = s.config(&db, &extra);
    config.monitor.check_interval = Duration::from_millis(300);
    config.monitor.max_restart_failures = 2;
    config.monitor.circuit_reset_time = Duration::from_secs(3);
    let starts = || read_lines(&count).len();

    let daemon = Daemon::start(config.clone());
    assert!(
        eventually(Duration::from_secs(15), || starts() >= 2).await,
        "two failed procedures expected"
    );
    let opened = Instant::now();
    // Open: the sweeps every 300 ms restart nothing.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(starts(), 2, "no restart while the breaker is open");
    let (alarma, notes) = db.row(5).await;
    assert_eq!(alarma, 1, "a failed restart leaves the alarm raised");
    let notes = notes.unwrap();
    assert!(notes.contains("circuit open until"), "{notes}");
    assert!(notes.contains("health check `false` exit 1"), "{notes}");

    // The open period ends: exactly one trial, which fails and opens it again.
    assert!(
        eventually(Duration::from_secs(6), || starts() == 3).await,
        "one half-open trial expected"
    );
    assert!(
        opened.elapsed() >= Duration::from_millis(2500),
        "trial came too early: {:?}",
        opened.elapsed()
    );
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(starts(), 3, "the failed trial reopens the breaker");
    daemon.stop().await;

    let saved = std::fs::read_to_string(s.path("state/breakers")).unwrap();
    assert!(saved.contains("5 3 open "), "{saved}");

    // A new daemon keeps the breaker open: its start-up sweep restarts nothing.
    let daemon = Daemon::start(config);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(starts(), 3, "breaker state must survive a daemon restart");
    daemon.stop().await;

    let outcomes = db
        .query_strings("SELECT CONCAT_WS(',', `trigger`, outcome) FROM RESTART_HISTORY WHERE process_id = 5 ORDER BY id")
        .await;
    assert_eq!(
        outcomes,
        vec!["startup,failed", "sweep,failed", "breaker,failed"]
    );
    procs::kill_all(&name);
    db.drop_db().await;
}
