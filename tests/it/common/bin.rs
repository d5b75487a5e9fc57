//! The real `monitor_service` binary run as a daemon (its own process, its own log file), for
//! tests that look at what an operator sees: the log, `ps`, /proc.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// A `monitor_service -c CONFIG` child process.
pub struct BinDaemon {
    pub child: Child,
    /// The log file named in the config.
    pub log: PathBuf,
    /// Where the daemon's stderr goes.
    pub stderr: PathBuf,
}

impl BinDaemon {
    /// Starts the binary with `-c config`; stderr to `stderr`, stdout discarded.
    pub fn start(config: &Path, log: &Path, stderr: &Path) -> BinDaemon {
        Self::start_with(config, log, stderr, |_| {})
    }

    /// Starts it with the config's scratch dir's files: the log `monitor_service.log` there (as
    /// `Scratch::config_text` names it) and stderr in `CONFIG.stderr`.
    pub fn beside(config: &Path) -> BinDaemon {
        let dir = config.parent().unwrap();
        Self::start(
            config,
            &dir.join("monitor_service.log"),
            &config.with_extension("stderr"),
        )
    }

    /// Like `start`, with `setup` changing the command first (environment). Without it the
    /// child sees no `RUST_LOG`, `NOTIFY_SOCKET` or `WATCHDOG_USEC` of the test's own.
    pub fn start_with(
        config: &Path,
        log: &Path,
        stderr: &Path,
        setup: impl FnOnce(&mut Command),
    ) -> BinDaemon {
        let err = std::fs::File::create(stderr).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_monitor_service"));
        cmd.arg("-c")
            .arg(config)
            .env_remove("RUST_LOG")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("WATCHDOG_USEC")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(err);
        setup(&mut cmd);
        BinDaemon {
            child: cmd.spawn().unwrap(),
            log: log.to_path_buf(),
            stderr: stderr.to_path_buf(),
        }
    }

    pub fn pid(&self) -> i32 {
        i32::try_from(self.child.id()).unwrap()
    }

    /// Sends `sig` to the daemon.
    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid()), sig).unwrap();
    }

    /// What it wrote to stderr so far.
    pub fn stderr_text(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Waits (at most `timeout`) for it to exit by itself; `None` while it still runs.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let end = Instant::now() + timeout;
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return Some(st);
            }
            if Instant::now() >= end {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The log file so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// True while the process has not exited.
    pub fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Waits until the log holds `needle`; panics (with the log) when it does not within
    /// `timeout` or the daemon exits first.
    pub async fn wait_log(&mut self, needle: &str, timeout: Duration) {
        let end = Instant::now() + timeout;
        loop {
            if self.log_text().contains(needle) {
                return;
            }
            if !self.running() || Instant::now() >= end {
                panic!(
                    "no {needle:?} in the log (running: {}):\n{}\nstderr:\n{}",
                    self.running(),
                    self.log_text(),
                    std::fs::read_to_string(&self.stderr).unwrap_or_default()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits for the start-up to finish: the binlog connected, or the warning that it runs on
    /// sweeps alone.
    pub async fn wait_ready(&mut self) {
        let end = Instant::now() + Duration::from_secs(20);
        loop {
            let log = self.log_text();
            if log.contains("binlog connected") || log.contains("running on sweeps alone") {
                return;
            }
            assert!(
                self.running() && Instant::now() < end,
                "daemon not ready:\n{log}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGTERM, then waits (at most 60 s) for the exit status.
    pub async fn stop(mut self) -> ExitStatus {
        // It may have exited (and been reaped) already: then there is nothing to signal.
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.pid()),
            nix::sys::signal::Signal::SIGTERM,
        );
        match self.wait_exit(Duration::from_secs(60)).await {
            Some(st) => st,
            None => {
                let _ = self.child.kill();
                panic!("daemon did not stop within 60 s of SIGTERM");
            }
        }
    }
}

impl Drop for BinDaemon {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// True when every line of a log looks like `YYYY-MM-DD HH:MM:SS [LEVEL] ...` (so a value from
/// the database never started a line of its own).
pub fn all_lines_well_formed(log: &str) -> Result<(), String> {
    for line in log.lines() {
        let b = line.as_bytes();
        let ok = b.len() > 21
            && b[..4].iter().all(u8::is_ascii_digit)
            && b[4] == b'-'
            && b[7] == b'-'
            && b[10] == b' '
            && b[13] == b':'
            && b[16] == b':'
            && b[19] == b' '
            && b[20] == b'['
            && ["[INFO] ", "[WARNING] ", "[ERROR] ", "[DEBUG] "]
                .iter()
                .any(|l| line[20..].starts_with(l));
        if !ok {
            return Err(line.to_string());
        }
    }
    Ok(())
}
