//! Smoke test of the test harness itself: the throwaway server, the schema
//! from `sql/setup.sql` and the per-test databases.

use std::time::Duration;

use mysql_async::prelude::*;

use crate::common::db::TestDb;

#[tokio::test]
async fn testdb_has_schema_binlog_and_unique_databases() {
    let db = TestDb::new().await;
    assert!(db.name.starts_with("msit_"), "{}", db.name);
    assert!(db.url.ends_with(&db.name), "{} / {}", db.url, db.name);
    assert!(!db.host.is_empty() && db.port > 0);
    if let Some(sock) = &db.socket {
        assert!(sock.is_absolute(), "{}", sock.display());
    }

    let mut conn = db.pool.get_conn().await.unwrap();
    let tables: Vec<String> = conn
        .exec(
            "SELECT TABLE_NAME FROM information_schema.TABLES \
             WHERE TABLE_SCHEMA = ? ORDER BY TABLE_NAME",
            (db.name.as_str(),),
        )
        .await
        .unwrap();
    for t in ["PROCESE", "RESTART_HISTORY", "STATUS_PROCESS"] {
        assert!(tables.iter().any(|x| x == t), "{t} missing: {tables:?}");
    }
    let idx: Option<String> = conn
        .exec_first(
            "SELECT INDEX_NAME FROM information_schema.STATISTICS \
             WHERE TABLE_SCHEMA = ? AND TABLE_NAME = 'STATUS_PROCESS' \
             AND COLUMN_NAME = 'alarma'",
            (db.name.as_str(),),
        )
        .await
        .unwrap();
    assert_eq!(idx.as_deref(), Some("idx_alarma"));

    // The binlog path needs ROW format with full images.
    let (log_bin, format, image): (i64, String, String) = conn
        .query_first("SELECT @@log_bin, @@binlog_format, @@binlog_row_image")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(log_bin, 1);
    assert_eq!(format, "ROW");
    assert_eq!(image, "FULL");
    drop(conn);

    // Row helpers.
    db.add_process(7, "demo_worker7").await;
    assert_eq!(db.row(7).await, (0, None));
    db.set_alarm(7).await;
    assert_eq!(db.row(7).await.0, 1);
    assert!(!db.wait_cleared(7, Duration::from_millis(100)).await);
    db.exec("UPDATE STATUS_PROCESS SET alarma = 0, notes = 'ok' WHERE process_id = 7")
        .await;
    assert!(db.wait_cleared(7, Duration::from_secs(1)).await);
    assert_eq!(db.row(7).await, (0, Some("ok".to_string())));

    // Each TestDb gets its own database, on the same server.
    let other = TestDb::new().await;
    assert_ne!(db.name, other.name);
    assert_eq!(db.server_url, other.server_url);
    let n: Option<i64> = other
        .pool
        .get_conn()
        .await
        .unwrap()
        .query_first("SELECT COUNT(*) FROM STATUS_PROCESS")
        .await
        .unwrap();
    assert_eq!(n, Some(0));

    other.drop_db().await;
    db.drop_db().await;
}
