//! Hostile process names from the database are refused: nothing executed, a note says why.

use crate::common::daemon::{once, read_lines, Scratch};
use crate::common::db::TestDb;

#[tokio::test(flavor = "multi_thread")]
async fn hostile_names_are_refused_and_nothing_runs() {
    let db = TestDb::new().await;
    let s = Scratch::new();
    let canary = s.path("pwned");
    let calls = s.path("calls");
    let recorder = s.script(
        "bin/record",
        &format!("echo \"$*\" >> '{}'", calls.display()),
    );
    s.fake_systemctl(0, "loaded");
    let c = canary.display();
    let names: Vec<String> = vec![
        format!("x;touch {c}"),
        format!("$(touch {c})"),
        format!("`touch {c}`"),
        "-rf".into(),
        "a b".into(),
        "/".repeat(100),
        format!("x\ntouch {c}"),
        "../../bin/sh".into(),
        format!("x|touch {c}"),
        format!("x&&touch {c}"),
        "'; DROP TABLE PROCESE; --".into(),
        "".into(),
    ];
    for (i, n) in names.iter().enumerate() {
        let id = 100 + i as i64;
        db.add_process(id, n).await;
        db.set_alarm(id).await;
    }
    // Every command of every strategy is the recorder: anything executed leaves a line.
    let r = recorder.display();
    let config = s.config(
        &db,
        &format!(
            "[process.default]\nrestart_strategy = auto\npre_restart_command = {r} pre %s\nhealth_check_command = {r} health %s\nstart_command = {r} start %s\n"
        ),
    );
    let err = once(config).await.unwrap_err();
    assert_eq!(err.exit_code(), 1);
    assert!(!canary.exists(), "a hostile name was executed");
    assert_eq!(
        read_lines(&calls),
        Vec::<String>::new(),
        "nothing may run for a refused name"
    );
    assert_eq!(s.systemctl_calls(), Vec::<String>::new());
    for (i, n) in names.iter().enumerate() {
        let (alarma, notes) = db.row(100 + i as i64).await;
        assert_eq!(alarma, 1, "{n:?}: alarm stays raised");
        let notes = notes.unwrap();
        assert!(
            notes.contains("refused, nothing executed"),
            "{n:?}: {notes}"
        );
    }
    let refused = db
        .query_strings("SELECT COUNT(*) FROM RESTART_HISTORY WHERE outcome = 'refused'")
        .await;
    assert_eq!(refused, vec![names.len().to_string()]);
    // The tables are intact.
    assert_eq!(
        db.query_strings("SELECT COUNT(*) FROM PROCESE").await,
        vec![names.len().to_string()]
    );
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn alarm_without_a_procese_row_is_refused_with_a_note() {
    let db = TestDb::new().await;
    let s = Scratch::new();
    db.exec("SET FOREIGN_KEY_CHECKS = 0; INSERT INTO STATUS_PROCESS (process_id, alarma) VALUES (77, 1)")
        .await;
    let config = s.config(&db, "");
    once(config).await.unwrap_err();
    let (alarma, notes) = db.row(77).await;
    assert_eq!(alarma, 1);
    assert!(notes.unwrap().contains("no PROCESE row"));
    db.drop_db().await;
}
