//! Pre-restart and health-check commands: failures stop the procedure, hangs are cut at
//! `command_timeout`.

use std::time::{Duration, Instant};

use crate::common::daemon::{eventually, once, Scratch};
use crate::common::db::TestDb;
use crate::common::procs;

#[tokio::test(flavor = "multi_thread")]
async fn failing_pre_restart_command_restarts_nothing() {
    let db = TestDb::new().await;
    let s = Scratch::new();
    let name = procs::unique_name("wr");
    let bin = procs::demo_binary(s.dir.path(), &name);
    let old = procs::start(&bin);
    assert!(eventually(Duration::from_secs(5), || procs::pids(&name) == vec![old]).await);
    db.add_process(2, &name).await;
    db.set_alarm(2).await;
    let config = s.config(
        &db,
        "[process.default]\nrestart_strategy = process\npre_restart_command = false\nhealth_check_command = true\n",
    );
    let err = once(config).await.unwrap_err();
    assert_eq!(err.exit_code(), 1);
    assert_eq!(
        procs::pids(&name),
        vec![old],
        "the process must not be touched"
    );
    let (alarma, notes) = db.row(2).await;
    assert_eq!(alarma, 1);
    let notes = notes.unwrap();
    assert!(
        notes.contains("pre-restart command `false` exit 1; nothing restarted"),
        "{notes}"
    );
    procs::kill_all(&name);
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn hanging_pre_restart_command_is_killed_at_its_timeout() {
    let db = TestDb::new().await;
    let s = Scratch::new();
    db.add_process(1, "hangpre").await;
    db.set_alarm(1).await;
    let pidfile = s.path("pre.pid");
    let config = s.config(
        &db,
        &format!(
            // Named in the config: a process that is not running may be started.
            "[process.hangpre]\nrestart_strategy = process\npre_restart_command = sh -c \"echo $$ > {}; exec sleep 60\"\ncommand_timeout = 0.5\n",
            pidfile.display()
        ),
    );
    let t = Instant::now();
    once(config).await.unwrap_err();
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "took {:?}",
        t.elapsed()
    );
    let pid: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(
        !monitor_service::procs::is_alive(pid),
        "the hanging command must be killed"
    );
    let notes = db.row(1).await.1.unwrap();
    assert!(notes.contains("timed out after 0.5s"), "{notes}");
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn hanging_health_check_is_killed_at_its_timeout() {
    let db = TestDb::new().await;
    let s = Scratch::new();
    let name = procs::unique_name("wh");
    let bin = procs::demo_binary(s.dir.path(), &name);
    db.add_process(1, &name).await;
    db.set_alarm(1).await;
    let pidfile = s.path("health.pid");
    let config = s.config(
        &db,
        &format!(
            "[process.default]\nrestart_strategy = process\nstart_command = {} 100000\n\
             health_check_command = sh -c \"echo $$ > {}; exec sleep 60\"\ncommand_timeout = 0.5\nhealth_check_timeout = 0.2\nmax_attempts = 1\n",
            bin.display(),
            pidfile.display()
        ),
    );
    let t = Instant::now();
    once(config).await.unwrap_err();
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "took {:?}",
        t.elapsed()
    );
    let pid: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(!monitor_service::procs::is_alive(pid));
    let notes = db.row(1).await.1.unwrap();
    assert!(notes.contains("timed out after 0.5s"), "{notes}");
    procs::kill_all(&name);
    db.drop_db().await;
}
