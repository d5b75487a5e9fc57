//! Operations files: the man page, the systemd unit, `scripts/test_alarm.sh` (against a real
//! database), and the Docker files (checked by reading: no Docker engine is needed).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::common::daemon::Scratch;
use crate::common::db::TestDb;

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo(rel)).unwrap_or_else(|e| panic!("cannot read {rel}: {e}"))
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn have(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|d| d.join(program).is_file()))
}

fn require(program: &str, package: &str) {
    assert!(
        have(program),
        "`{program}` is needed for this test: apt-get install {package} (or dnf install {package})"
    );
}

// ---------------------------------------------------------------------------
// man/monitor_service.8

/// `[section] -> keys` of the repository's config.ini, including keys shown only as
/// commented-out examples (`; socket = ...`).
fn config_ini_keys() -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut section = String::new();
    for line in read("config.ini").lines() {
        let t = line.trim();
        if let Some(name) = t.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
            section = name.trim().to_string();
            continue;
        }
        // Real keys, and examples commented out as "; key = value".
        let body = t.strip_prefix(';').map_or(t, str::trim);
        let Some((key, _)) = body.split_once(" = ") else {
            continue;
        };
        if !key.is_empty() && key.chars().all(|c| c.is_ascii_lowercase() || c == '_') {
            let keys = out.entry(section.clone()).or_default();
            if !keys.iter().any(|k| k == key) {
                keys.push(key.to_string());
            }
        }
    }
    out
}

/// The roff source between `.SH`/`.SS` heading lines that contain `heading` and the next heading
/// of the same level.
fn man_block<'a>(src: &'a str, macro_: &str, heading: &str) -> &'a str {
    let start = src
        .lines()
        .scan(0usize, |pos, l| {
            let here = *pos;
            *pos += l.len() + 1;
            Some((here, l))
        })
        .find(|(_, l)| l.starts_with(macro_) && l.contains(heading))
        .map(|(p, _)| p)
        .unwrap_or_else(|| panic!("man page has no `{macro_}` heading with {heading:?}"));
    let rest = &src[start + 1..];
    let end = rest
        .find(&format!("\n{macro_} "))
        .map_or(src.len(), |i| start + 1 + i);
    let end_sh = rest.find("\n.SH ").map_or(src.len(), |i| start + 1 + i);
    &src[start..end.min(end_sh)]
}

#[test]
fn man_page_renders_without_warnings() {
    require("groff", "groff");
    let page = repo("man/monitor_service.8");
    let out = Command::new("groff")
        .args(["-man", "-ww", "-z"])
        .arg(&page)
        .output()
        .unwrap();
    assert!(out.status.success(), "groff failed: {}", text(&out));
    assert_eq!(text(&out), "", "groff -man -ww -z printed warnings");

    if have("man") {
        let out = Command::new("man")
            .arg("-l")
            .arg(&page)
            .env("MANWIDTH", "80")
            .env("MAN_DISABLE_SECCOMP", "1")
            .env_remove("MANPAGER")
            .env_remove("PAGER")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(out.status.success(), "man -l failed: {}", text(&out));
        assert_eq!(
            String::from_utf8_lossy(&out.stderr),
            "",
            "man -l printed warnings"
        );
        let shown = String::from_utf8_lossy(&out.stdout);
        for h in [
            "NAME",
            "SYNOPSIS",
            "DESCRIPTION",
            "OPTIONS",
            "CONFIGURATION",
            "DATABASE",
            "SIGNALS",
            "FILES",
            "EXIT STATUS",
            "ENVIRONMENT",
            "EXAMPLES",
            "TROUBLESHOOTING",
            "SEE ALSO",
        ] {
            assert!(
                shown.lines().any(|l| l == h),
                "section {h} missing from the rendered page"
            );
        }
    } else {
        eprintln!("man not installed: checked the page with groff only");
    }
}

#[test]
fn man_page_documents_every_config_key_option_and_exit_status() {
    let src = read("man/monitor_service.8");
    let keys = config_ini_keys();
    for section in ["database", "monitor", "logging", "process.default"] {
        assert!(keys.contains_key(section), "config.ini has no [{section}]");
    }
    // Keys in config.ini: each one a `.B key` entry in the matching subsection.
    for (section, names) in &keys {
        let heading = if section.starts_with("process.") {
            "[process.default]".to_string()
        } else {
            format!("[{section}]")
        };
        let block = man_block(&src, ".SS", &heading);
        for key in names {
            assert!(
                block.lines().any(|l| l == format!(".B {key}")),
                "man page: key {key} of [{section}] is not documented under {heading}"
            );
        }
    }
    // The contract's keys, in case config.ini ever drops an example.
    let contract = [
        ("[database]", "host user password database port socket connect_timeout"),
        ("[monitor]", "check_interval max_restart_failures circuit_reset_time binlog server_id max_parallel_restarts state_dir systemctl history_table"),
        ("[logging]", "max_log_size log_files_to_keep log_file level"),
        ("[process.default]", "restart_strategy pre_restart_command health_check_command health_check_timeout restart_delay max_attempts unit start_command stop_timeout command_timeout"),
    ];
    for (heading, names) in contract {
        let block = man_block(&src, ".SS", heading);
        for key in names.split_whitespace() {
            assert!(
                block.lines().any(|l| l == format!(".B {key}")),
                "man page: {key} missing under {heading}"
            );
        }
    }

    // Every long option of --help is in OPTIONS.
    let help = Command::new(env!("CARGO_BIN_EXE_monitor_service"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(help.status.success());
    let options = man_block(&src, ".SH", "OPTIONS");
    let help = String::from_utf8_lossy(&help.stdout).into_owned();
    let mut seen = 0;
    for word in help.split_whitespace() {
        let Some(opt) = word.strip_prefix("--") else {
            continue;
        };
        let opt: String = opt
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
            .collect();
        if opt.is_empty() {
            continue;
        }
        seen += 1;
        let roff = format!("\\-\\-{}", opt.replace('-', "\\-"));
        assert!(
            options.contains(&roff),
            "--{opt} (from --help) is not documented in OPTIONS"
        );
    }
    assert!(seen >= 4, "no options found in --help: {help}");

    // Exit statuses of the library, each a `.B N` entry in EXIT STATUS.
    let exits = man_block(&src, ".SH", "\"EXIT STATUS\"");
    use monitor_service::exit;
    for code in [
        0,
        exit::FAILURE,
        exit::UNAVAILABLE,
        exit::CANTCREAT,
        exit::NOPERM,
        exit::CONFIG,
    ] {
        assert!(
            exits.lines().any(|l| l == format!(".B {code}")),
            "exit status {code} not documented"
        );
    }
    // Signals and the environment.
    let signals = man_block(&src, ".SH", "SIGNALS");
    for s in ["SIGTERM", "SIGINT", "SIGHUP"] {
        assert!(signals.contains(s), "{s} not documented");
    }
    let grace = monitor_service::SHUTDOWN_GRACE.as_secs();
    assert!(
        signals.contains(&format!("{grace} seconds")),
        "SIGNALS must give the {grace} s grace period"
    );
    let env = man_block(&src, ".SH", "ENVIRONMENT");
    for v in ["MONITOR_SERVICE_CONFIG", "RUST_LOG"] {
        assert!(env.contains(v), "{v} not documented");
    }
}

// ---------------------------------------------------------------------------
// systemd/monitor_service.service

fn unit_directives(unit: &str) -> Vec<(String, String, String)> {
    let mut section = String::new();
    let mut out = Vec::new();
    for line in unit.lines() {
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') || t.starts_with(';') {
            continue;
        }
        if let Some(s) = t.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
            section = s.to_string();
        } else if let Some((k, v)) = t.split_once('=') {
            out.push((section.clone(), k.trim().to_string(), v.trim().to_string()));
        }
    }
    out
}

/// `systemd-analyze verify` on a copy whose ExecStart is the built binary (verify checks that
/// the program exists), with MANPATH pointing at our man page (verify checks Documentation=).
/// Returns its exit status and output.
fn verify_unit(unit_text: &str, dir: &Path) -> (bool, String) {
    let bin = env!("CARGO_BIN_EXE_monitor_service");
    let unit = unit_text.replace(
        "ExecStart=/usr/bin/monitor_service",
        &format!("ExecStart={bin}"),
    );
    assert!(
        unit.contains(bin),
        "no ExecStart=/usr/bin/monitor_service to replace"
    );
    let path = dir.join("monitor_service.service");
    std::fs::write(&path, unit).unwrap();
    let mut cmd = Command::new("systemd-analyze");
    cmd.arg("verify");
    if have("man") {
        let man8 = dir.join("man/man8");
        std::fs::create_dir_all(&man8).unwrap();
        std::fs::copy(
            repo("man/monitor_service.8"),
            man8.join("monitor_service.8"),
        )
        .unwrap();
        cmd.env("MANPATH", dir.join("man"));
    } else {
        cmd.arg("--man=no");
    }
    let out = cmd.arg(&path).current_dir(dir).output().unwrap();
    (out.status.success(), text(&out))
}

#[test]
fn systemd_unit_has_the_contract_directives() {
    let unit = read("systemd/monitor_service.service");
    let d = unit_directives(&unit);
    let get = |section: &str, key: &str| -> Vec<String> {
        d.iter()
            .filter(|(s, k, _)| s == section && k == key)
            .map(|(_, _, v)| v.clone())
            .collect()
    };
    let one = |section: &str, key: &str| -> String {
        let v = get(section, key);
        assert_eq!(v.len(), 1, "[{section}] {key}= must be set once: {v:?}");
        v[0].clone()
    };
    assert_eq!(one("Service", "Type"), "notify");
    // No -c: the daemon's lookup order (/etc, then the bash service's /opt) applies.
    assert_eq!(one("Service", "ExecStart"), "/usr/bin/monitor_service");
    assert_eq!(one("Service", "ExecReload"), "/bin/kill -HUP $MAINPID");
    assert_eq!(one("Service", "NotifyAccess"), "main");
    assert_eq!(one("Service", "WatchdogSec"), "30");
    assert_eq!(one("Service", "Restart"), "on-failure");
    assert_eq!(one("Service", "RestartSec"), "5");
    // Processes started by the `process` strategy must survive a daemon restart.
    assert_eq!(one("Service", "KillMode"), "process");
    // One OOM-killed child must not take the daemon down with it.
    assert_eq!(one("Service", "OOMPolicy"), "continue");
    assert_eq!(one("Service", "StateDirectory"), "monitor_service");
    assert_eq!(one("Install", "WantedBy"), "multi-user.target");
    // Longer than the daemon's own grace period for in-flight procedures.
    let stop: u64 = one("Service", "TimeoutStopSec").parse().unwrap();
    assert!(
        stop > monitor_service::SHUTDOWN_GRACE.as_secs() + 5,
        "TimeoutStopSec={stop} leaves no room for the {:?} grace period",
        monitor_service::SHUTDOWN_GRACE
    );
    let after = one("Unit", "After");
    let wants = one("Unit", "Wants");
    for u in ["network-online.target", "mariadb.service", "mysqld.service"] {
        assert!(after.split_whitespace().any(|x| x == u), "After= lacks {u}");
        assert!(wants.split_whitespace().any(|x| x == u), "Wants= lacks {u}");
    }
    // Options that would break restarted services or relaunched programs (they inherit the
    // sandbox) must stay off; each choice is explained by a comment above it.
    for (key, allowed) in [
        ("NoNewPrivileges", "no"),
        ("PrivateTmp", "no"),
        ("MemoryDenyWriteExecute", "no"),
        ("ProtectSystem", "no"),
        ("ProtectHome", "no"),
        ("RestrictNamespaces", "no"),
    ] {
        for v in get("Service", key) {
            assert_eq!(v, allowed, "{key}={v} is inherited by relaunched programs");
        }
    }
    for key in [
        "SystemCallFilter",
        "CapabilityBoundingSet",
        "RestrictAddressFamilies",
        "PrivateNetwork",
        "ProtectProc",
        "OOMScoreAdjust",
    ] {
        assert!(
            get("Service", key).is_empty(),
            "{key}= is inherited by relaunched programs; leave it unset"
        );
    }
    let lines: Vec<&str> = unit.lines().collect();
    for (i, l) in lines.iter().enumerate() {
        let t = l.trim();
        let is_hardening = [
            "Protect",
            "Private",
            "Restrict",
            "NoNewPrivileges",
            "LockPersonality",
            "MemoryDeny",
        ]
        .iter()
        .any(|p| t.starts_with(p));
        if is_hardening {
            assert!(
                i > 0 && lines[i - 1].trim_start().starts_with('#'),
                "hardening option without an explaining comment above it: {t}"
            );
        }
    }
}

#[test]
fn systemd_unit_verifies() {
    require("systemd-analyze", "systemd");
    let unit = read("systemd/monitor_service.service");
    let dir = tempfile::tempdir().unwrap();
    let (ok, out) = verify_unit(&unit, dir.path());
    assert!(ok, "systemd-analyze verify failed:\n{out}");
    assert_eq!(out, "", "systemd-analyze verify reported problems");

    // The check above means something: a broken copy is reported.
    let dir = tempfile::tempdir().unwrap();
    let broken = unit.replace("KillMode=process", "KillMode=process\nKilMode=typo");
    let (_, out) = verify_unit(&broken, dir.path());
    assert!(
        out.contains("KilMode"),
        "systemd-analyze verify did not report an unknown key: {out:?}"
    );
}

// ---------------------------------------------------------------------------
// scripts/test_alarm.sh against a real database

/// A test database with three processes, an account with a password, a config.ini for it and
/// a client wrapper that records how the script calls the client.
struct Alarm {
    db: TestDb,
    /// Holds the temp dir (config, wrapper, TMPDIR) until the test ends.
    _scratch: Scratch,
    user: String,
    password: String,
    config: PathBuf,
    wrapper: PathBuf,
    calls: PathBuf,
    tmp: PathBuf,
}

impl Alarm {
    async fn new() -> Alarm {
        Self::with_client(None).await
    }

    /// With `client` (a shell command) behind the wrapper; by default mariadb, else mysql.
    async fn with_client(client: Option<&str>) -> Alarm {
        let exec_client = match client {
            Some(c) => format!(r#"exec {c} "$@""#),
            None => r#"if command -v mariadb >/dev/null 2>&1; then exec mariadb "$@"; else exec mysql "$@"; fi"#
                .to_string(),
        };
        let db = TestDb::new().await;
        for (id, name) in [(1, "ta_one"), (2, "ta_two"), (3, "ta_three")] {
            db.add_process(id, name).await;
        }
        let s = Scratch::new();
        let user = format!("ta_{}", db.name.trim_start_matches("msit_"));
        assert!(user.len() <= 32, "{user}");
        // #, ", \ and ; check the option file quoting; the tail makes it unique.
        let password = format!(
            "Pw#\"\\;x-{}-{}",
            std::process::id(),
            db.name.rsplit('_').next().unwrap()
        );
        let sql_password = password.replace('\\', "\\\\").replace('\'', "\\'");
        db.exec(&format!(
            "CREATE USER IF NOT EXISTS '{user}'@'%' IDENTIFIED BY '{sql_password}'"
        ))
        .await;
        db.exec(&format!(
            "GRANT SELECT, UPDATE ON `{}`.* TO '{user}'@'%'",
            db.name
        ))
        .await;

        let suite_account = format!(
            "user = {}\n{}",
            db.user,
            db.password
                .as_ref()
                .map(|p| format!("password = {p}\n"))
                .unwrap_or_default()
        );
        let text = s.config_text(&db, "").replacen(
            &suite_account,
            &format!("user = {user}\npassword = {password}\n"),
            1,
        );
        assert!(text.contains(&format!("password = {password}\n")), "{text}");
        let config = s.path("config.ini");
        std::fs::write(&config, text).unwrap();

        let calls = s.path("client-calls.log");
        let wrapper = s.script(
            "bin/client",
            &format!(
                r#"log='{log}'
{{
  printf 'ARGV'; for a in "$@"; do printf ' %s' "$a"; done; echo
  env | sed 's/^/ENV /'
  case "$1" in
  --defaults-file=*) f="${{1#--defaults-file=}}"; echo "MODE $(stat -c %a "$f")"; echo "FILE $f" ;;
  esac
}} >>"$log"
{exec_client}"#,
                log = calls.display()
            ),
        );
        let tmp = s.path("tmp");
        std::fs::create_dir_all(&tmp).unwrap();
        Alarm {
            db,
            _scratch: s,
            user,
            password,
            config,
            wrapper,
            calls,
            tmp,
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new("bash");
        c.arg(repo("scripts/test_alarm.sh"))
            .arg("-c")
            .arg(&self.config)
            .args(args)
            .env("MONITOR_MYSQL_CLIENT", &self.wrapper)
            .env("TMPDIR", &self.tmp)
            .env_remove("MYSQL_PWD")
            .env_remove("MONITOR_SERVICE_CONFIG")
            .stdin(Stdio::null());
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    async fn alarms(&self) -> Vec<i64> {
        let mut v = Vec::new();
        for id in 1..=3 {
            v.push(self.db.row(id).await.0);
        }
        v
    }

    fn calls(&self) -> String {
        std::fs::read_to_string(&self.calls).unwrap_or_default()
    }

    /// How the client was called: the password only in the option file, which was mode 600
    /// and is gone now.
    fn assert_password_only_in_option_file(&self) {
        let calls = self.calls();
        assert!(calls.contains("ARGV "), "the client was never run");
        for line in calls.lines() {
            assert!(
                !line.contains(&self.password),
                "password visible to the client process: {line}"
            );
            assert!(!line.starts_with("ENV MYSQL_PWD"), "MYSQL_PWD set: {line}");
            if let Some(argv) = line.strip_prefix("ARGV ") {
                assert!(
                    argv.starts_with("--defaults-file="),
                    "client not called with an option file first: {argv}"
                );
            }
            if let Some(mode) = line.strip_prefix("MODE ") {
                assert_eq!(mode, "600", "option file mode");
            }
            if let Some(f) = line.strip_prefix("FILE ") {
                assert!(
                    Path::new(f).starts_with(&self.tmp),
                    "option file outside TMPDIR: {f}"
                );
            }
        }
        let left: Vec<_> = std::fs::read_dir(&self.tmp).unwrap().collect();
        assert!(left.is_empty(), "option files left behind: {left:?}");
    }

    async fn drop(self) {
        self.db
            .exec(&format!("DROP USER IF EXISTS '{}'@'%'", self.user))
            .await;
        self.db.drop_db().await;
    }
}

/// `| id | name | alarma | notes |` rows of `--list` as `(id, name, alarma)`.
fn listed(out: &Output) -> Vec<(String, String, String)> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            (cells.len() >= 5
                && cells[1].chars().all(|c| c.is_ascii_digit())
                && !cells[1].is_empty())
            .then(|| {
                (
                    cells[1].to_string(),
                    cells[2].to_string(),
                    cells[3].to_string(),
                )
            })
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn test_alarm_flags_change_the_real_rows() {
    flags_change_the_real_rows(None).await;
}

/// The same with the suite server's own client: Oracle `mysql` on MySQL (a full
/// caching_sha2_password login), `mariadb` on MariaDB.
#[tokio::test(flavor = "multi_thread")]
async fn test_alarm_flags_change_the_real_rows_with_the_servers_own_client() {
    flags_change_the_real_rows(Some(&crate::common::server::native_client())).await;
}

async fn flags_change_the_real_rows(client: Option<&str>) {
    let a = Alarm::with_client(client).await;
    assert_eq!(a.alarms().await, vec![0, 0, 0]);

    let out = a.run(&["--alarm", "1"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(a.alarms().await, vec![1, 0, 0]);

    // Without MONITOR_MYSQL_CLIENT: the script finds mariadb (or mysql) itself.
    let out = a
        .command(&["--list"])
        .env_remove("MONITOR_MYSQL_CLIENT")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let rows = listed(&out);
    assert_eq!(
        rows,
        vec![
            ("1".into(), "ta_one".into(), "1".into()),
            ("2".into(), "ta_two".into(), "0".into()),
            ("3".into(), "ta_three".into(), "0".into()),
        ],
        "{}",
        text(&out)
    );

    let out = a.run(&["--alarm-all"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(a.alarms().await, vec![1, 1, 1]);

    let out = a.run(&["--reset-all"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(a.alarms().await, vec![0, 0, 0]);

    // An ID without a row: exit 1, nothing changed.
    let out = a.run(&["--alarm", "42"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("no process with ID 42"),
        "{}",
        text(&out)
    );
    assert_eq!(a.alarms().await, vec![0, 0, 0]);

    // The menu, fed from stdin: 2 (alarm one) with ID 3, then 5 (exit).
    let mut child = a
        .command(&[])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"2\n3\n5\n").unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("4) Reset all alarms"), "{}", text(&out));
    assert_eq!(a.alarms().await, vec![0, 0, 1]);

    a.assert_password_only_in_option_file();
    a.drop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn test_alarm_refuses_bad_ids_before_any_sql() {
    let a = Alarm::new().await;
    a.db.set_alarm(2).await;
    for bad in [
        "1;DROP",
        "1 OR 1=1",
        "1;DROP TABLE STATUS_PROCESS",
        "0",
        "-1",
        "01",
        "abc",
        "",
        "1e3",
        "99999999999",
    ] {
        for action in ["--alarm", "--wait"] {
            let out = a.run(&[action, bad]);
            assert_eq!(
                out.status.code(),
                Some(2),
                "{action} {bad:?}: {}",
                text(&out)
            );
            assert!(
                text(&out).contains("invalid ID"),
                "{action} {bad:?}: {}",
                text(&out)
            );
        }
    }
    let out = a.run(&["--wait", "1", "--timeout", "soon"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let out = a.run(&["--bogus"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let out = a.run(&["--help"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("--alarm ID"), "{}", text(&out));

    assert_eq!(a.calls(), "", "the client was run for an invalid argument");
    assert_eq!(a.alarms().await, vec![0, 1, 0]);
    assert_eq!(
        a.db.query_strings("SELECT COUNT(*) FROM STATUS_PROCESS")
            .await,
        vec!["3"]
    );
    a.drop().await;
}

/// Every process's command line and environment, as `ps` would show them.
fn proc_texts() -> Vec<(i32, Vec<u8>, Vec<u8>)> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in dir.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        let environ = std::fs::read(e.path().join("environ")).unwrap_or_default();
        out.push((pid, cmdline, environ));
    }
    out
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test(flavor = "multi_thread")]
async fn test_alarm_wait_times_out_then_sees_the_clear_and_hides_the_password() {
    let a = Alarm::new().await;
    a.db.set_alarm(1).await;

    // Still raised: exit 1 after about the timeout.
    let t0 = Instant::now();
    let out = a.run(&["--wait", "1", "--timeout", "1"]);
    let took = t0.elapsed();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("still raised"), "{}", text(&out));
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(15),
        "{took:?}"
    );

    // Cleared while waiting: exit 0. Meanwhile nothing on the host shows the password.
    let mut child = a
        .command(&["--wait", "1", "--timeout", "30"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let needle = a.password.as_bytes();
    let script_pid = i32::try_from(child.id()).unwrap();
    let mut saw_script = false;
    let mut saw_client = false;
    let end = Instant::now() + Duration::from_secs(2);
    while Instant::now() < end {
        for (pid, cmdline, environ) in proc_texts() {
            assert!(
                !contains(&cmdline, needle),
                "password in the command line of pid {pid}: {}",
                String::from_utf8_lossy(&cmdline)
            );
            assert!(
                !contains(&environ, needle),
                "password in the environment of pid {pid}"
            );
            if pid == script_pid {
                saw_script = true;
            }
            if contains(&cmdline, b"--defaults-file=")
                && contains(&cmdline, a.tmp.to_string_lossy().as_bytes())
            {
                saw_client = true;
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    if have("ps") {
        let ps = Command::new("ps")
            .args(["axww", "-o", "args"])
            .output()
            .unwrap();
        assert!(!contains(&ps.stdout, needle), "password in ps output");
    }
    assert!(saw_script, "the waiting script was not seen in /proc");
    assert!(
        saw_client || a.calls().contains("ARGV --defaults-file="),
        "no client process was seen"
    );
    assert!(
        child.try_wait().unwrap().is_none(),
        "--wait returned while the alarm was raised"
    );

    a.db.exec("UPDATE STATUS_PROCESS SET alarma = 0 WHERE process_id = 1")
        .await;
    let end = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        assert!(Instant::now() < end, "--wait did not see the alarm cleared");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let out = child.wait_with_output().unwrap();
    assert_eq!(status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("cleared"), "{}", text(&out));

    a.assert_password_only_in_option_file();
    a.drop().await;
}

// ---------------------------------------------------------------------------
// docker-compose.yml, Dockerfile, docker/

/// What this checks, honestly: the compose file is valid YAML with the required structure
/// (when python3 with PyYAML is available; otherwise only the required lines are looked for),
/// every host file it mounts and every file the Dockerfile copies exists, the demo config
/// loads in the daemon without warnings, the MySQL init script sends only the schema part of
/// sql/setup.sql, and the shell scripts parse. It does not build images or start containers.
#[test]
fn docker_files_are_consistent() {
    let compose = read("docker-compose.yml");
    for needle in [
        "image: mysql:8.4",
        "--log-bin=mysql-bin",
        "--binlog-format=ROW",
        "--binlog-row-image=FULL",
        "--server-id=1",
        "healthcheck:",
        "condition: service_healthy",
        "/docker-entrypoint-initdb.d/",
        "./sql/setup.sql:",
        "./docker/config.ini:",
    ] {
        assert!(
            compose.contains(needle),
            "docker-compose.yml lacks {needle:?}"
        );
    }
    // Host paths of bind mounts exist.
    for line in compose.lines() {
        let t = line.trim().trim_start_matches("- ").trim_matches('"');
        if let Some(rest) = t.strip_prefix("./") {
            let host = rest.split(':').next().unwrap();
            assert!(
                repo(host).exists(),
                "docker-compose.yml mounts missing ./{host}"
            );
        }
    }

    let yaml_ok = Command::new("python3")
        .args(["-c", "import yaml"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if yaml_ok {
        let script = r#"
import sys, yaml
c = yaml.safe_load(open(sys.argv[1]))
s = c["services"]
m, d = s["mysql"], s["monitor"]
assert m["image"].startswith("mysql:8"), m["image"]
cmd = m["command"]
for f in ["--log-bin=mysql-bin", "--binlog-format=ROW", "--binlog-row-image=FULL", "--server-id=1"]:
    assert f in cmd, (f, cmd)
assert m["healthcheck"]["test"][0] in ("CMD", "CMD-SHELL"), m["healthcheck"]
init = [v for v in m["volumes"] if ":/docker-entrypoint-initdb.d/" in v]
assert any("10-schema" in v for v in init) and any("20-account" in v for v in init), init
assert any(v.startswith("./sql/setup.sql:") for v in m["volumes"]), m["volumes"]
assert d["build"]["context"] == "." and d["build"]["dockerfile"] == "Dockerfile", d["build"]
assert d["depends_on"]["mysql"]["condition"] == "service_healthy", d["depends_on"]
assert d["init"] is True
assert any(v.startswith("./docker/config.ini:/usr/local/etc/monitor_service/config.ini") for v in d["volumes"]), d["volumes"]
for name in s:
    for v in s[name].get("volumes", []):
        src = v.split(":")[0]
        if not src.startswith("./"):
            assert src in (c.get("volumes") or {}), ("undeclared volume", src)
print("yaml structure ok")
"#;
        let out = Command::new("python3")
            .args(["-c", script])
            .arg(repo("docker-compose.yml"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "docker-compose.yml structure: {}",
            text(&out)
        );
    } else {
        eprintln!(
            "python3 with PyYAML not available: docker-compose.yml checked line by line only"
        );
    }

    let dockerfile = read("Dockerfile");
    assert!(dockerfile.contains("FROM rust:1-bookworm AS build"));
    assert!(dockerfile.contains("FROM debian:bookworm-slim"));
    assert!(dockerfile.contains("procps"));
    assert!(dockerfile.contains("COPY --from=build"));
    for line in dockerfile.lines() {
        let Some(rest) = line.strip_prefix("COPY ") else {
            continue;
        };
        if rest.starts_with("--from") {
            continue;
        }
        let words: Vec<&str> = rest.split_whitespace().collect();
        for src in &words[..words.len() - 1] {
            assert!(repo(src).exists(), "Dockerfile copies missing {src}");
        }
    }

    // The demo config is valid for the daemon (the entrypoint installs it with mode 600).
    let s = Scratch::new();
    let cfg = s.path("config.ini");
    std::fs::write(&cfg, read("docker/config.ini")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&cfg, std::fs::Permissions::from_mode(0o600)).unwrap();
    let loaded = monitor_service::Config::load(&cfg).unwrap();
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);

    // The MySQL init script is sourced by the image's entrypoint (so it must not be
    // executable) and sends only the schema part of setup.sql to docker_process_sql.
    let init = repo("docker/mysql-init/10-schema.sh");
    let mode = std::fs::metadata(&init).unwrap().permissions().mode();
    assert_eq!(
        mode & 0o111,
        0,
        "10-schema.sh must not be executable (it is sourced)"
    );
    let out = Command::new("sh")
        .arg("-c")
        .arg(r#"set -eu; docker_process_sql() { cat; }; . "$1""#)
        .arg("sh")
        .arg(&init)
        .env("MONITOR_SETUP_SQL", repo("sql/setup.sql"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let sql = String::from_utf8_lossy(&out.stdout);
    assert!(
        sql.contains("CREATE TABLE IF NOT EXISTS STATUS_PROCESS"),
        "{sql}"
    );
    assert!(sql.contains("CREATE TABLE IF NOT EXISTS PROCESE"), "{sql}");
    for bad in ["GRANT", "BINLOG MONITOR", "CREATE USER", "INSERT"] {
        assert!(
            !sql.contains(bad),
            "schema part sent to MySQL contains {bad}"
        );
    }
    let grants: String = read("docker/mysql-init/20-account.sql")
        .lines()
        .filter(|l| !l.trim_start().starts_with("--"))
        .collect::<Vec<_>>()
        .join("\n");
    assert!(grants.contains("REPLICATION SLAVE, REPLICATION CLIENT"));
    assert!(!grants.contains("BINLOG MONITOR"), "not a MySQL privilege");
    assert!(grants.contains("IDENTIFIED BY 'change-me'"));
    assert!(read("docker/config.ini").contains("password = change-me"));

    for script in ["docker/entrypoint.sh", "scripts/test_alarm.sh"] {
        let out = Command::new("bash")
            .arg("-n")
            .arg(repo(script))
            .output()
            .unwrap();
        assert!(out.status.success(), "{script}: {}", text(&out));
    }
    if have("shellcheck") {
        let out = Command::new("shellcheck")
            .arg(repo("scripts/test_alarm.sh"))
            .arg(repo("docker/entrypoint.sh"))
            .output()
            .unwrap();
        assert!(out.status.success(), "shellcheck: {}", text(&out));
    } else {
        eprintln!("shellcheck not installed: scripts only checked with bash -n");
    }
}
