//! Daemon handle for tests: a config written for a throwaway database, the daemon run in-process
//! through the same `run` as `main.rs`, stopped by cancelling its token.

use std::path::{Path, PathBuf};
use std::time::Duration;

use monitor_service::pipeline::Counts;
use monitor_service::{run, Config, RunOptions};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::db::TestDb;

/// A temp dir with the files one test's daemon uses.
pub struct Scratch {
    pub dir: tempfile::TempDir,
}

impl Scratch {
    /// A fresh temp dir. The configs tests write there hold the test account's password, so the
    /// test process writes private files (umask 077), as an operator installing a config with a
    /// password does; otherwise the daemon rightly warns that the config is readable by others.
    pub fn new() -> Scratch {
        private_files();
        Scratch {
            dir: tempfile::Builder::new().prefix("ms-it-").tempdir().unwrap(),
        }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Writes an executable shell script.
    pub fn script(&self, rel: &str, body: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let p = self.path(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        p
    }

    /// A `systemctl` stand-in that appends its argv (one line) to `systemctl.log` and exits
    /// with `restart_exit` for `restart`; `show --property=KEY` prints `KEY=VALUE` lines as
    /// systemd 219 does (no `--value`): `LoadState=load_state`, `ActiveState=failed`.
    pub fn fake_systemctl(&self, restart_exit: i32, load_state: &str) -> PathBuf {
        let log = self.path("systemctl.log");
        self.script(
            "bin/systemctl",
            &format!(
                "echo \"$*\" >> '{}'\ncase \"$1\" in\n  show) echo 'LoadState={load_state}'; echo 'ActiveState=failed' ;;\n  restart) exit {restart_exit} ;;\nesac\nexit 0",
                log.display()
            ),
        )
    }

    /// Lines the fake systemctl recorded.
    pub fn systemctl_calls(&self) -> Vec<String> {
        read_lines(&self.path("systemctl.log"))
    }

    /// Config text for `db` with the daemon's files in this dir; `extra` is appended. Each
    /// config gets its own `server_id`, so daemons of parallel tests never share one.
    pub fn config_text(&self, db: &TestDb, extra: &str) -> String {
        let password = match &db.password {
            Some(p) => format!("password = {p}\n"),
            None => String::new(),
        };
        format!(
            "[database]\nhost = {host}\nport = {port}\nuser = {user}\n{password}database = {name}\nconnect_timeout = 5\n\n\
             [monitor]\ncheck_interval = 3600\nstate_dir = {state}\nsystemctl = {systemctl}\nmax_parallel_restarts = 4\nserver_id = {server_id}\ncontrol_socket = {control}\n\n\
             [logging]\nlog_file = {log}\nlevel = debug\n\n{extra}\n",
            host = db.host,
            port = db.port,
            name = db.name,
            user = db.user,
            server_id = unique_server_id(),
            state = self.path("state").display(),
            control = self.path("control.sock").display(),
            systemctl = self.path("bin/systemctl").display(),
            log = self.path("monitor_service.log").display(),
        )
    }

    /// Writes and loads the config; panics on errors (tests give valid configs).
    pub fn config(&self, db: &TestDb, extra: &str) -> Config {
        let path = self.path("config.ini");
        std::fs::write(&path, self.config_text(db, extra)).unwrap();
        let loaded = Config::load(&path).unwrap();
        assert!(
            loaded.warnings.is_empty(),
            "config warnings: {:?}",
            loaded.warnings
        );
        loaded.config
    }
}

/// Sets umask 077 for this test process (idempotent; every thread gets the same value).
pub fn private_files() {
    use nix::sys::stat::{umask, Mode};
    umask(Mode::from_bits_truncate(0o077));
}

/// A replica id no other config of this test process uses (and unlikely in another process).
pub fn unique_server_id() -> u32 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    1_000_000 + (std::process::id() % 40_000) * 1000 + N.fetch_add(1, Ordering::Relaxed)
}

/// Runs the real binary to completion (no `RUST_LOG` from the test's environment).
pub fn bin(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_monitor_service"))
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .unwrap()
}

pub fn read_lines(p: &Path) -> Vec<String> {
    std::fs::read_to_string(p)
        .map(|s| s.lines().map(str::to_string).collect())
        .unwrap_or_default()
}

/// A daemon running in this test process.
pub struct Daemon {
    token: CancellationToken,
    handle: JoinHandle<Result<Counts, monitor_service::Error>>,
}

impl Daemon {
    pub fn start(config: Config) -> Daemon {
        let token = CancellationToken::new();
        let handle = tokio::spawn(run(config, RunOptions::default(), token.clone()));
        Daemon { token, handle }
    }

    /// Cancels the token and waits for `run` to return.
    pub async fn stop(self) -> Counts {
        self.token.cancel();
        tokio::time::timeout(Duration::from_secs(60), self.handle)
            .await
            .expect("daemon did not stop within 60 s")
            .unwrap()
            .unwrap()
    }
}

/// `run` with `--once`.
pub async fn once(config: Config) -> Result<Counts, monitor_service::Error> {
    run(
        config,
        RunOptions {
            once: true,
            dry_run: false,
        },
        CancellationToken::new(),
    )
    .await
}

/// Polls `f` every 50 ms until it is true or `timeout` passes.
pub async fn eventually(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = tokio::time::Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if tokio::time::Instant::now() >= end {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
