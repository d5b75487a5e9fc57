//! Outcome writes: NULL notes, full notes, a narrow notes column, STRICT mode.

use crate::common::daemon::{once, Scratch};
use crate::common::db::TestDb;

#[tokio::test(flavor = "multi_thread")]
async fn clear_succeeds_with_null_full_and_narrow_notes_in_strict_mode() {
    let db = TestDb::new().await;
    let s = Scratch::new();
    let mode = db.query_strings("SELECT @@GLOBAL.sql_mode").await;
    assert!(
        mode[0].contains("STRICT_TRANS_TABLES"),
        "the server must be in STRICT mode: {mode:?}"
    );
    s.fake_systemctl(0, "loaded");
    db.add_process(1, "svc1").await;
    db.add_process(2, "svc2").await;
    db.exec(&format!(
        "UPDATE STATUS_PROCESS SET alarma = 1, notes = NULL WHERE process_id = 1; \
         UPDATE STATUS_PROCESS SET alarma = 1, notes = '{}' WHERE process_id = 2",
        "n".repeat(100)
    ))
    .await;
    let config = s.config(
        &db,
        "[process.default]\nrestart_strategy = service\nhealth_check_command = true\n",
    );
    once(config.clone()).await.unwrap();
    for id in [1, 2] {
        let (alarma, notes) = db.row(id).await;
        assert_eq!(alarma, 0);
        let notes = notes.unwrap();
        assert!(
            notes.len() <= 100 && notes.contains("restarted via service"),
            "{notes}"
        );
    }

    // A narrower column than the schema's: the real length is read, the note truncated.
    db.exec("UPDATE STATUS_PROCESS SET notes = NULL; ALTER TABLE STATUS_PROCESS MODIFY notes VARCHAR(20) NULL").await;
    db.set_alarm(1).await;
    once(config).await.unwrap();
    let (alarma, notes) = db.row(1).await;
    assert_eq!(alarma, 0);
    assert_eq!(notes.unwrap().chars().count(), 20);
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn without_the_history_table_it_works_and_says_so_once() {
    let db = TestDb::new().await;
    let s = Scratch::new();
    s.fake_systemctl(0, "loaded");
    db.exec("DROP TABLE RESTART_HISTORY").await;
    db.add_process(1, "svc1").await;
    db.add_process(2, "svc2").await;
    db.exec("UPDATE STATUS_PROCESS SET alarma = 1").await;
    std::fs::write(
        s.path("c.ini"),
        s.config_text(
            &db,
            "[process.default]\nrestart_strategy = service\nhealth_check_command = true\n",
        ),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_monitor_service"))
        .args(["-c", s.path("c.ini").to_str().unwrap(), "--once"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(db.row(1).await.0, 0);
    assert_eq!(db.row(2).await.0, 0);
    let log = std::fs::read_to_string(s.path("monitor_service.log")).unwrap();
    assert_eq!(
        log.matches("[INFO] history table not found").count(),
        1,
        "{log}"
    );
    db.drop_db().await;
}
