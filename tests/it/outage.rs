//! The database going away and coming back: the daemon neither exits nor floods its log,
//! says once that the database is unreachable and once that it is back, then handles alarms.

use std::time::Duration;

use crate::common::bin::BinDaemon;
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
    let log = s.path("monitor_service.log");
    let mut child = BinDaemon::start(&s.path("c.ini"), &log, &s.path("stderr"));
    let count = |needle: &str| {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .matches(needle)
            .count()
    };

    // Down at start-up: it waits and retries, and says so once.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(child.running(), "the daemon must not exit");
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

    let status = child.stop().await;
    assert_eq!(status.code(), Some(0));
    assert!(count("monitor_service stopped") == 1);
    db.drop_db().await;
}
