//! The database password: never in the log (at debug level), on stderr, in `ps` of the daemon
//! or its children, in their command lines or environments; a config holding it that others
//! can read gets a WARNING naming the file and its mode.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::common::bin::BinDaemon;
use crate::common::daemon::Scratch;
use crate::common::db::TestDb;

/// An account with a password on the test server, allowed what the daemon needs.
struct Account {
    user: String,
    password: String,
    /// Unique parts of the password: none may show up anywhere, escaped or not.
    tokens: Vec<String>,
}

fn rand_hex() -> String {
    use std::collections::hash_map::RandomState;
    use std::hash::{BuildHasher, Hasher};
    let mut h = RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos(),
    );
    format!("{:016x}", h.finish())
}

async fn account(db: &TestDb) -> Account {
    let user = format!("u_{}", &db.name[5..]);
    let (a, b) = (rand_hex(), rand_hex());
    // Characters that configs, shells and SQL treat specially, around two unique tokens.
    let password = format!("Pw{a};#\"'\\ $(id) `x` %s=:{b}");
    let sql_literal = password.replace('\\', "\\\\").replace('\'', "\\'");
    for host in ["%", "localhost", "127.0.0.1"] {
        db.exec(&format!(
            "CREATE USER '{user}'@'{host}' IDENTIFIED BY '{sql_literal}'; \
             GRANT SELECT, UPDATE, INSERT ON `{db}`.* TO '{user}'@'{host}'; \
             GRANT REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO '{user}'@'{host}'",
            db = db.name
        ))
        .await;
    }
    Account {
        user,
        password,
        tokens: vec![a, b],
    }
}

async fn drop_account(db: &TestDb, acc: &Account) {
    for host in ["%", "localhost", "127.0.0.1"] {
        db.exec(&format!("DROP USER IF EXISTS '{}'@'{host}'", acc.user))
            .await;
    }
}

/// The scratch config for `db`, logging at debug, connecting as `user` with `password`.
fn config_as(s: &Scratch, db: &TestDb, user: &str, password: &str, extra: &str) -> PathBuf {
    let text: String = s
        .config_text(db, extra)
        .lines()
        .filter(|l| !l.starts_with("password ="))
        .map(|l| {
            if l.starts_with("user =") {
                format!("user = {user}\npassword = {password}\n")
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    assert!(text.contains("level = debug"));
    let path = s.path("config.ini");
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

/// Panics when `text` holds the password or a token of it.
fn assert_clean(acc: &Account, what: &str, text: &str) {
    assert!(
        !text.contains(&acc.password),
        "the password is in {what}:\n{text}"
    );
    for t in &acc.tokens {
        assert!(
            !text.contains(t.as_str()),
            "a part of the password ({t}) is in {what}:\n{text}"
        );
    }
}

fn read_lossy(p: &Path) -> String {
    String::from_utf8_lossy(&std::fs::read(p).unwrap_or_default()).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn password_never_in_logs_ps_cmdlines_or_environments() {
    let db = TestDb::new().await;
    let acc = account(&db).await;
    let s = Scratch::new();
    let dumps = s.path("dumps");
    std::fs::create_dir_all(&dumps).unwrap();
    // Every command the daemon runs dumps its environment, its own and its parent's command
    // line and environment, and `ps axww` / `ps axwwe` taken while the daemon waits for it.
    let body = |tag: &str| {
        format!(
            "tag={tag}\nd='{}'\nenv > \"$d/env.$tag.$$\"\n\
             tr '\\0' ' ' < /proc/$$/cmdline > \"$d/cmdline.$tag.$$\"\n\
             tr '\\0' ' ' < /proc/$PPID/cmdline > \"$d/parent-cmdline.$tag.$$\"\n\
             tr '\\0' '\\n' < /proc/$PPID/environ > \"$d/parent-environ.$tag.$$\"\n\
             ps axww > \"$d/ps.$tag.$$\"\nps axwwe > \"$d/pse.$tag.$$\"\n",
            dumps.display()
        )
    };
    let dump = s.script("bin/dump", &format!("{}exit 0", body("$1")));
    s.script(
        "bin/systemctl",
        &format!(
            "{}case \"$1\" in show) echo LoadState=loaded ;; esac\nexit 0",
            body("systemctl")
        ),
    );
    let d = dump.display();
    let config = config_as(
        &s,
        &db,
        &acc.user,
        &acc.password,
        &format!(
            "[process.default]\nrestart_strategy = auto\npre_restart_command = {d} pre %s\n\
             health_check_command = {d} health %s\n\n\
             [process.procb]\nrestart_strategy = process\nstart_command = {d} start %s\n\n\
             [process.svca]\nrestart_strategy = auto\n"
        ),
    );
    db.add_process(1, "svca").await;
    db.add_process(2, "procb").await;
    db.add_process(3, "bad;name").await;

    let mut daemon = BinDaemon::start(&config, &s.path("monitor_service.log"), &s.path("stderr"));
    daemon.wait_ready().await;
    daemon.wait_log("[DEBUG]", Duration::from_secs(5)).await;
    db.exec("UPDATE STATUS_PROCESS SET alarma = 1").await;
    assert!(
        db.wait_cleared(1, Duration::from_secs(20)).await,
        "{}",
        daemon.log_text()
    );
    assert!(
        db.wait_cleared(2, Duration::from_secs(20)).await,
        "{}",
        daemon.log_text()
    );

    // While it runs: ps as an operator would, and /proc of the daemon itself.
    let pid = daemon.pid();
    for args in [&["axww"][..], &["axwwe"][..], &["-eo", "pid,args"][..]] {
        let out = Command::new("ps").args(args).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("monitor_service"), "{text}");
        assert_clean(&acc, &format!("ps {}", args.join(" ")), &text);
    }
    for f in ["cmdline", "environ"] {
        let text = read_lossy(Path::new(&format!("/proc/{pid}/{f}")));
        assert!(!text.is_empty(), "/proc/{pid}/{f}");
        assert_clean(&acc, &format!("/proc/<daemon>/{f}"), &text);
    }
    assert!(daemon.running());
    let log_file = daemon.log.clone();
    let stderr_file = daemon.stderr.clone();
    let status = daemon.stop().await;
    assert_eq!(status.code(), Some(0));

    // The log at debug level and stderr.
    let log = read_lossy(&log_file);
    assert!(
        log.contains("[DEBUG]") && log.contains("restarted and healthy"),
        "{log}"
    );
    assert_clean(&acc, "the log", &log);
    assert_clean(&acc, "stderr", &read_lossy(&stderr_file));

    // What every child saw: pre-restart, systemctl, start (detached) and health check all ran.
    let mut kinds = std::collections::BTreeSet::new();
    for e in std::fs::read_dir(&dumps).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        let mut parts = name.split('.');
        let (kind, tag) = (parts.next().unwrap(), parts.next().unwrap());
        kinds.insert(format!("{kind}.{tag}"));
        let text = read_lossy(&p);
        if kind == "parent-cmdline" {
            assert!(text.contains("monitor_service"), "{name}: parent is {text}");
        }
        assert_clean(&acc, &name, &text);
    }
    for tag in ["pre", "systemctl", "start", "health"] {
        for kind in [
            "env",
            "cmdline",
            "parent-cmdline",
            "parent-environ",
            "ps",
            "pse",
        ] {
            assert!(
                kinds.contains(&format!("{kind}.{tag}")),
                "no {kind} dump from the {tag} command: {kinds:?}"
            );
        }
    }

    // --check-config and --once print nothing of it either.
    for args in [&["--check-config"][..], &["--once"][..]] {
        let out = Command::new(env!("CARGO_BIN_EXE_monitor_service"))
            .arg("-c")
            .arg(&config)
            .args(args)
            .env_remove("RUST_LOG")
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_clean(&acc, &format!("{args:?} output"), &text);
    }
    assert_clean(&acc, "the log", &read_lossy(&log_file));
    drop_account(&db, &acc).await;
    db.drop_db().await;
}

/// A wrong password is refused by the server; the messages say so without showing it.
#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_password_is_not_shown_in_errors() {
    let db = TestDb::new().await;
    let acc = account(&db).await;
    let s = Scratch::new();
    let wrong = Account {
        user: acc.user.clone(),
        password: format!("Wr0ng-{}-{}", rand_hex(), rand_hex()),
        tokens: vec![],
    };
    let config = config_as(&s, &db, &wrong.user, &wrong.password, "");
    for args in [&["--check-config"][..], &["--once"][..]] {
        let out = Command::new(env!("CARGO_BIN_EXE_monitor_service"))
            .arg("-c")
            .arg(&config)
            .args(args)
            .env_remove("RUST_LOG")
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        // A wrong password is EX_NOPERM (77), at start-up and in --check-config alike.
        assert_eq!(out.status.code(), Some(77), "{args:?}: {text}");
        assert!(text.contains("Access denied"), "{args:?}: {text}");
        assert!(
            text.contains("check [database] user and password"),
            "{args:?}: {text}"
        );
        assert_clean(&wrong, &format!("{args:?} output"), &text);
    }
    assert_clean(
        &wrong,
        "the log",
        &read_lossy(&s.path("monitor_service.log")),
    );
    drop_account(&db, &acc).await;
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn config_readable_by_others_gets_a_warning_naming_file_and_mode() {
    let db = TestDb::new().await;
    let acc = account(&db).await;
    let s = Scratch::new();
    let config = config_as(&s, &db, &acc.user, &acc.password, "");
    let shown = config.display().to_string();
    let log = s.path("monitor_service.log");
    let warning = |mode: u32| {
        format!(
            "[WARNING] {shown}: holds the database password but is readable by group/others (mode {mode:04o}); run chmod 600 {shown}"
        )
    };
    for (mode, warned) in [
        (0o644, true),
        (0o640, true),
        (0o604, true),
        // Writable by others is refused as root (tests/it/policy.rs); readable is warned.
        (0o444, true),
        (0o600, false),
        (0o400, false),
    ] {
        std::fs::set_permissions(&config, std::fs::Permissions::from_mode(mode)).unwrap();
        let _ = std::fs::remove_file(&log);
        let out = Command::new(env!("CARGO_BIN_EXE_monitor_service"))
            .arg("-c")
            .arg(&config)
            .arg("--once")
            .env_remove("RUST_LOG")
            .output()
            .unwrap();
        let text = read_lossy(&log);
        assert_eq!(out.status.code(), Some(0), "{mode:o}: {text}");
        assert_eq!(
            text.contains(&warning(mode)),
            warned,
            "mode {mode:04o}: {text}"
        );
        assert_eq!(
            text.contains("readable by group/others"),
            warned,
            "mode {mode:04o}: {text}"
        );
        assert_clean(&acc, "the log", &text);
        // The journal (stderr) gets it too.
        assert_eq!(
            String::from_utf8_lossy(&out.stderr).contains("readable by group/others"),
            warned
        );
    }

    // No password, no warning, whatever the mode.
    let text: String = std::fs::read_to_string(&config)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with("password ="))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&config, text).unwrap();
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_monitor_service"))
        .arg("-c")
        .arg(&config)
        .arg("--check-config")
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&out.stdout).contains("readable by group/others"));
    drop_account(&db, &acc).await;
    db.drop_db().await;
}
