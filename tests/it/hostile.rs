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

// ---------------------------------------------------------------------------
// The corpus against a running daemon (the real binary, its log file, binlog and sweep).

/// Hostile or odd names that a utf8mb4 VARCHAR(100) can hold; `c` is the canary path.
fn utf8_corpus(c: &str) -> Vec<String> {
    let mut v: Vec<String> = [
        // Shell metacharacters: with the shell-using pre-restart command below, any of these
        // getting through would create the canary.
        format!("x;touch {c}"),
        format!("$(touch {c})"),
        format!("`touch {c}`"),
        format!("x|touch {c}"),
        format!("x||touch {c}"),
        format!("x&&touch {c}"),
        format!("x&touch {c}"),
        format!("x>{c}"),
        format!("x>>{c}"),
        format!("<{c}"),
        format!("x\ntouch {c}"),
        format!("x\rtouch {c}"),
        format!("x\ttouch {c}"),
        format!("${{IFS}}touch${{IFS}}{c}"),
        format!("$((1+1));touch {c}"),
        format!("!!;touch {c}"),
        format!("(touch {c})"),
        format!("{{touch,{c}}}"),
        "$HOME".into(),
        "~root".into(),
        "*".into(),
        "?".into(),
        "[a-z]*".into(),
        "#comment".into(),
        "a=b".into(),
        "PATH=/tmp".into(),
        "x^y".into(),
        "%s".into(),
        "%n%n%n%n".into(),
        "%00".into(),
        // Options.
        "-".into(),
        "-rf".into(),
        "--help".into(),
        "--exec=touch".into(),
        "-e".into(),
        // Paths and traversal.
        "/".repeat(100),
        "../../bin/sh".into(),
        "/bin/sh".into(),
        "./x".into(),
        ".".into(),
        "..".into(),
        "a/../b".into(),
        // Quotes, escapes, NUL, control characters, log forging.
        "a b".into(),
        " nginx".into(),
        "nginx ".into(),
        "\"quoted\"".into(),
        "'single'".into(),
        "x\\".into(),
        "\\x41".into(),
        "a\0b".into(),
        "\0".into(),
        "\x1b[31mred\x1b[0m".into(),
        "\x7f".into(),
        "evil\n2026-01-01 00:00:00 [INFO] forged line".into(),
        // SQL fragments (all SQL is parameterised; the tables must stay intact).
        "'; DROP TABLE PROCESE; --".into(),
        "\"; DELETE FROM STATUS_PROCESS; --".into(),
        "1 OR 1=1".into(),
        "x' OR '1'='1".into(),
        "x`; DROP DATABASE x; --".into(),
        // Unicode look-alikes and invisible characters.
        "nginх".into(),            // Cyrillic х
        "ｎｇｉｎｘ".into(),       // fullwidth
        "ngin\u{200b}x".into(),    // zero-width space
        "sshd\u{202e}dhss".into(), // right-to-left override
        "nginx\u{a0}".into(),      // no-break space
        "\u{feff}nginx".into(),    // BOM
        "cafe\u{301}".into(),      // combining accent
        "ⅰnit".into(),             // roman numeral one
        "ｰrf".into(),              // halfwidth prolonged sound mark, not a '-'
        "\u{2010}rf".into(),       // Unicode hyphen
        // Empty and long.
        String::new(),
        format!("{};", "a".repeat(99)),
        format!("{}$(id)", "a".repeat(95)),
    ]
    .into_iter()
    .collect();
    v.dedup();
    v
}

/// Bytes only a binary column can hand over: not UTF-8, or longer than 100 characters.
fn binary_corpus(c: &str) -> Vec<Vec<u8>> {
    vec![
        b"\xff".to_vec(),
        b"nginx\xff".to_vec(),
        b"\xc3\x28".to_vec(),
        b"\xc0\xaf".to_vec(),         // overlong '/'
        b"\xc0\xae\xc0\xae".to_vec(), // overlong ".."
        b"\xed\xa0\x80".to_vec(),     // UTF-16 surrogate
        b"\xf8\x88\x80\x80\x80".to_vec(),
        format!("x\0\u{ff};touch {c}").into_bytes(),
        [b"a".repeat(99), b"\xff".to_vec()].concat(),
        b"a".repeat(101),
        b"a".repeat(1000),
        format!("x;touch {c};").repeat(60).into_bytes(),
    ]
}

struct Corpus {
    names: Vec<Vec<u8>>,
    /// `ALTER TABLE PROCESE MODIFY process_name ...` first, when the names need it.
    column: Option<&'static str>,
}

async fn insert_name(db: &TestDb, id: i64, name: &[u8], alarma: i64) {
    use mysql_async::prelude::Queryable;
    let mut conn = db.pool.get_conn().await.unwrap();
    conn.exec_drop(
        "INSERT INTO PROCESE (process_id, process_name) VALUES (?, ?)",
        (id, name.to_vec()),
    )
    .await
    .unwrap_or_else(|e| panic!("insert {:?}: {e}", name.escape_ascii().to_string()));
    conn.exec_drop(
        "INSERT INTO STATUS_PROCESS (process_id, alarma) VALUES (?, ?)",
        (id, alarma),
    )
    .await
    .unwrap();
}

/// Runs `corpus` against the real binary as a daemon: half the alarms are there at start-up
/// (sweep), half come while it runs (binlog). Every command it may run is a recorder (the
/// pre-restart one through `sh -c` with `%s` inside the script, so an injected name would
/// run), systemctl is a recording fake. Then a valid process is still restarted.
async fn run_corpus(corpus: Corpus, canary: &std::path::Path, s: &Scratch) {
    use std::time::Duration;

    use crate::common::bin::{all_lines_well_formed, BinDaemon};
    use crate::common::procs;

    let db = TestDb::new().await;
    if let Some(column) = corpus.column {
        db.exec(&format!("ALTER TABLE PROCESE MODIFY process_name {column}"))
            .await;
    }
    let calls = s.path("calls");
    let recorder = s.script(
        "bin/record",
        &format!("echo \"$*\" >> '{}'", calls.display()),
    );
    s.fake_systemctl(0, "loaded");

    let valid = procs::unique_name("hv");
    let bin = procs::demo_binary(s.dir.path(), &valid);
    let old = procs::start(&bin);
    db.add_process(1, &valid).await;

    let names = &corpus.names;
    let half = names.len() / 2;
    for (i, n) in names.iter().enumerate().take(half) {
        insert_name(&db, 100 + i as i64, n, 1).await;
    }

    let r = recorder.display();
    let text = s.config_text(
        &db,
        &format!(
            "[process.default]\nrestart_strategy = auto\n\
             pre_restart_command = sh -c \"echo pre %s >> '{calls}'\"\n\
             health_check_command = {r} health %s\nstart_command = {r} start %s\n\
             health_check_timeout = 1\nmax_attempts = 1\n\n\
             [process.{valid}]\nrestart_strategy = process\nstart_command = {bin} 100000\n\
             health_check_command = pgrep -x %s\n",
            calls = calls.display(),
            bin = bin.display(),
        ),
    );
    let config = s.path("config.ini");
    std::fs::write(&config, text).unwrap();
    let mut d = BinDaemon::start(&config, &s.path("monitor_service.log"), &s.path("stderr"));
    d.wait_ready().await;

    // The other half while it runs: new rows with the alarm raised, and rows raised later.
    for (i, n) in names.iter().enumerate().skip(half) {
        let id = 100 + i as i64;
        if i % 2 == 0 {
            insert_name(&db, id, n, 1).await;
        } else {
            insert_name(&db, id, n, 0).await;
            db.set_alarm(id).await;
        }
    }

    // Every hostile row gets its note, the alarm stays raised.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    for (i, n) in names.iter().enumerate() {
        let id = 100 + i as i64;
        loop {
            let (alarma, notes) = db.row(id).await;
            let notes = notes.unwrap_or_default();
            if notes.contains("refused, nothing executed") {
                assert_eq!(alarma, 1, "{:?}", n.escape_ascii().to_string());
                assert!(notes.len() <= 100 && notes.is_ascii(), "{notes:?}");
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no refusal note for {:?} (id {id}): {notes:?}\n{}",
                n.escape_ascii().to_string(),
                d.log_text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    assert!(d.running(), "the daemon must keep running");

    // A valid process is still restarted afterwards.
    db.set_alarm(1).await;
    assert!(
        db.wait_cleared(1, Duration::from_secs(20)).await,
        "valid process not restarted: {:?}\n{}",
        db.row(1).await,
        d.log_text()
    );
    let now = procs::pids(&valid);
    assert!(
        now.len() == 1 && now[0] != old,
        "expected one new instance, old {old}, now {now:?}"
    );
    assert!(d.running());

    // Nothing outside the allow-list ran.
    assert!(!canary.exists(), "a hostile name was executed");
    assert_eq!(
        read_lines(&calls),
        vec![format!("pre {valid}")],
        "only the valid process's commands may run"
    );
    assert_eq!(s.systemctl_calls(), Vec::<String>::new());

    let status = d.stop().await;
    assert_eq!(status.code(), Some(0), "graceful stop");

    // The log: one ERROR per refused id, every line well formed (no forged lines).
    let log = std::fs::read_to_string(s.path("monitor_service.log")).unwrap();
    if let Err(line) = all_lines_well_formed(&log) {
        panic!("malformed log line {line:?} in:\n{log}");
    }
    for i in 0..names.len() {
        let id = 100 + i as i64;
        let refusals = log
            .lines()
            .filter(|l| {
                l.contains("[ERROR] refused: nothing executed")
                    && l.contains(&format!("process_id={id} "))
            })
            .count();
        assert_eq!(refusals, 1, "id {id}: {refusals} ERROR lines\n{log}");
    }
    assert!(!log.contains("panicked"), "{log}");
    eprintln!(
        "hostile corpus: {} names refused, {} log lines, valid process restarted ({old} -> {})",
        names.len(),
        log.lines().count(),
        now[0]
    );
    let sample: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("refused"))
        .take(3)
        .collect();
    eprintln!("{}", sample.join("\n"));

    // The tables are intact, every refusal is in the history.
    assert_eq!(
        db.query_strings("SELECT COUNT(*) FROM PROCESE").await,
        vec![(names.len() + 1).to_string()]
    );
    assert_eq!(
        db.query_strings("SELECT COUNT(*) FROM RESTART_HISTORY WHERE outcome = 'refused'")
            .await,
        vec![names.len().to_string()]
    );
    procs::kill_all(&valid);
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_name_corpus_against_a_running_daemon() {
    let s = Scratch::new();
    let canary = s.path("pwned");
    let names = utf8_corpus(&canary.display().to_string());
    assert!(names.len() >= 50, "{} names", names.len());
    let corpus = Corpus {
        names: names.into_iter().map(String::into_bytes).collect(),
        column: None,
    };
    run_corpus(corpus, &canary, &s).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn non_utf8_and_overlong_names_from_a_binary_column() {
    let s = Scratch::new();
    let canary = s.path("pwned");
    let corpus = Corpus {
        names: binary_corpus(&canary.display().to_string()),
        column: Some("VARBINARY(2000) NOT NULL"),
    };
    run_corpus(corpus, &canary, &s).await;
}

/// The note (100 characters) says why a name was refused, however long the name. Today the
/// note starts with the whole escaped name and then repeats it, so the reason is cut off for
/// 67 of the 72 names of the corpus. Needs `src/supervisor/mod.rs` `check_name` to put
/// `NameError::brief()` before the name in the note (see the report); un-ignore then.
#[tokio::test(flavor = "multi_thread")]
async fn refusal_notes_say_why_within_100_characters() {
    let db = TestDb::new().await;
    let s = Scratch::new();
    let long = "/opt/some/long/path/to/a/program/that/someone/put/into/the/name/column";
    let cases: Vec<(String, &str)> = vec![
        (format!("x;touch {long}"), "bad character ';' at position 1"),
        (
            format!("{}$", "a".repeat(99)),
            "bad character '$' at position 99",
        ),
        (format!("-{}", "a".repeat(99)), "starts with '-'"),
        ("..".to_string(), "path component"),
        (String::new(), "empty name"),
        (
            format!("nginx\n{long}"),
            "bad character '\\n' at position 5",
        ),
    ];
    for (i, (name, _)) in cases.iter().enumerate() {
        db.add_process(10 + i as i64, name).await;
        db.set_alarm(10 + i as i64).await;
    }
    s.fake_systemctl(0, "loaded");
    once(s.config(&db, "")).await.unwrap_err();
    for (i, (name, why)) in cases.iter().enumerate() {
        let notes = db.row(10 + i as i64).await.1.unwrap();
        assert!(
            notes.contains("refused, nothing executed") && notes.contains(why),
            "{name:?}: note {notes:?} does not say {why:?}"
        );
    }
    db.drop_db().await;
}
