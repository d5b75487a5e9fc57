//! The database going away and coming back: the daemon neither exits nor floods its log,
//! says once that the database is unreachable and once that it is back, then handles alarms.

use std::process::{Command, Stdio};
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::common::daemon::{eventually, Scratch};
use crate::common::db::TestDb;
use crate::common::proxy::Proxy;

#[tokio::test(flavor = "multi_thread")]
async fn unreachable_database_is_logged_once_per_outage_and_alarms_are_handled_after() {
    let db = TestDb::new().await;
    let s = Scratch::new();
    s.fake_systemctl(0, "loaded");
    db.add_process(1, "svc").await;
    let proxy = Proxy::start(&db.host, db.port, false).await;
    let text = s
        .config_text(
            &db,
            "[process.default]\nrestart_strategy = service\nhealth_check_command = true\n",
        )
        .replace(
            &format!("port = {}", db.port),
            &format!("port = {}", proxy.port),
        )
        .replace("check_interval = 3600", "check_interval = 0.3")
        .replace("connect_timeout = 5", "connect_timeout = 1");
    std::fs::write(s.path("c.ini"), text).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_monitor_service"))
        .args(["-c", s.path("c.ini").to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let log = s.path("monitor_service.log");
    let count = |needle: &str| {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .matches(needle)
            .count()
    };

    // Down at start-up: it waits and retries, and says so once.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        child.try_wait().unwrap().is_none(),
        "the daemon must not exit"
    );
    assert_eq!(count("database unreachable"), 1);

    proxy.up();
    db.set_alarm(1).await;
    assert!(db.wait_cleared(1, Duration::from_secs(20)).await);
    assert_eq!(count("database reachable again"), 1);

    // Down while running, for several sweep intervals; an alarm raised meanwhile is handled after.
    proxy.down();
    db.set_alarm(1).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(db.row(1).await.0, 1);
    proxy.up();
    assert!(db.wait_cleared(1, Duration::from_secs(40)).await);
    assert!(
        eventually(Duration::from_secs(5), || count("database reachable again")
            == 2)
        .await
    );
    assert_eq!(count("database unreachable"), 2, "one line per outage");

    kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).unwrap();
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.code(), Some(0));
    assert!(count("monitor_service stopped") == 1);
    db.drop_db().await;
}
