//! A throwaway server of the test's own (started by `scripts/testdb.sh` in its own dir), for
//! tests that kill the server, purge its binlog or change its global settings. It is the same
//! flavour as the suite's server (`MONITOR_TESTDB_FLAVOR`: mariadb, the default, or mysql); a
//! host without that server fails the test, it never skips it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::db::TestDb;

pub struct OwnServer {
    dir: PathBuf,
    pub url: String,
    pub socket: PathBuf,
    argv: Vec<String>,
}

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The suite's server flavour: `MONITOR_TESTDB_FLAVOR`, else mariadb.
pub fn flavor() -> String {
    std::env::var("MONITOR_TESTDB_FLAVOR")
        .ok()
        .filter(|f| !f.trim().is_empty())
        .unwrap_or_else(|| "mariadb".to_string())
}

/// The command-line client of the suite's flavour, as a shell command: MariaDB's `mariadb`, or
/// the Oracle `mysql` client unpacked beside the MySQL server (run through its loader).
pub fn native_client() -> String {
    if flavor() == "mysql" {
        format!(
            "'{}' run mysql",
            repo().join("scripts/mysql-sid.sh").display()
        )
    } else {
        "mariadb".to_string()
    }
}

fn try_testdb(dir: &Path, action: &str) -> Option<String> {
    let out = Command::new("bash")
        .arg(repo().join("scripts/testdb.sh"))
        .arg(action)
        .env("MONITOR_TESTDB_DIR", dir)
        .env("MONITOR_TESTDB_FLAVOR", flavor())
        .stderr(std::process::Stdio::inherit())
        .output()
        .unwrap();
    if !out.status.success() {
        eprintln!("testdb.sh {action} in {}: {}", dir.display(), out.status);
        return None;
    }
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn testdb(dir: &Path, action: &str) -> String {
    try_testdb(dir, action).unwrap_or_else(|| panic!("testdb.sh {action} failed"))
}

fn export(stdout: &str, key: &str) -> String {
    stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix(&format!("export {key}=")))
        .map(|v| v.trim_matches('\'').trim_matches('"').to_string())
        .unwrap_or_else(|| panic!("no {key} in {stdout}"))
}

impl OwnServer {
    /// Starts one of the suite's flavour; panics (with testdb.sh's message) when it cannot.
    pub fn start(tag: &str) -> OwnServer {
        let dir = repo().join(format!("target/own-{tag}-{}", std::process::id()));
        // mariadb-install-db now and then fails under load (seen: "ERROR: 1051 Unknown table
        // 'mysql.tmp_user_sys'"); a second try on a clean dir works.
        let out = match try_testdb(&dir, "start") {
            Some(out) => out,
            None => {
                eprintln!("testdb.sh start failed in {}; retrying once", dir.display());
                // What counts is a clean dir for the second try (see Drop).
                if try_testdb(&dir, "stop").is_none() && dir.exists() {
                    panic!("testdb.sh stop failed; {} is left", dir.display());
                }
                testdb(&dir, "start")
            }
        };
        let url = export(&out, "MONITOR_TEST_DB_URL");
        let socket = PathBuf::from(export(&out, "MONITOR_TEST_DB_SOCKET"));
        let pid = std::fs::read_to_string(dir.join("pid")).unwrap();
        let cmdline = std::fs::read(format!("/proc/{}/cmdline", pid.trim())).unwrap();
        let argv = cmdline
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        OwnServer {
            dir,
            url,
            socket,
            argv,
        }
    }

    pub async fn db(&self) -> TestDb {
        TestDb::on_server(&self.url, Some(self.socket.clone())).await
    }

    fn pid(&self) -> Option<i32> {
        std::fs::read_to_string(self.dir.join("pid"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// SIGKILL, as a crash would.
    pub fn kill9(&self) {
        let pid = self.pid().expect("server pid");
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
        for _ in 0..100 {
            if !monitor_service::procs::is_alive(pid) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("server {pid} survived SIGKILL");
    }

    /// Starts it again on the same data dir and port; waits until it answers.
    pub async fn restart(&self) {
        let _ = std::fs::remove_file(&self.socket);
        let pid = monitor_service::procs::spawn_detached(&self.argv, None).unwrap();
        // `testdb.sh stop` (on drop) stops the pid recorded here: without this the restarted
        // server outlived the test, running on a deleted data dir.
        std::fs::write(self.dir.join("pid"), format!("{pid}\n")).unwrap();
        for _ in 0..300 {
            if mysql_async::Conn::from_url(&self.url).await.is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("server did not come back");
    }
}

impl OwnServer {
    /// Where this server keeps its state (for files the test puts beside it).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Stops it cleanly (SIGTERM) and starts it again with `extra` server options added
    /// (e.g. `--ssl-cert=...`, `--log-slave-updates`); waits until it answers.
    pub async fn restart_with<S: AsRef<str>>(&mut self, extra: &[S]) {
        let pid = self.pid().expect("server pid");
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGTERM,
        );
        for _ in 0..750 {
            if !monitor_service::procs::is_alive(pid) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(
            !monitor_service::procs::is_alive(pid),
            "server {pid} did not stop"
        );
        self.argv
            .extend(extra.iter().map(|a| a.as_ref().to_string()));
        self.restart().await;
    }
}

impl Drop for OwnServer {
    fn drop(&mut self) {
        // Once seen under load: the stop said "stopped and removed" and yet its status was a
        // failure. What counts is that the server's dir is gone.
        if try_testdb(&self.dir, "stop").is_none() && self.dir.exists() {
            panic!("testdb.sh stop failed; {} is left", self.dir.display());
        }
    }
}
