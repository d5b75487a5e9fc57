//! Real host facilities for policy tests: an unprivileged account, a systemd-like cgroup for
//! a process (the v1 `name=systemd` hierarchy), and the identity of a running process.

use std::path::PathBuf;
use std::time::Duration;

/// The unprivileged account the identity tests run processes as.
pub const TEST_USER: &str = "msit_worker";

/// Creates [`TEST_USER`] (no home, no login shell) unless it exists; returns (uid, gid).
pub fn ensure_user() -> (u32, u32) {
    let lookup = || nix::unistd::User::from_name(TEST_USER).ok().flatten();
    if lookup().is_none() {
        let out = std::process::Command::new("useradd")
            .args(["-M", "-s", "/usr/sbin/nologin", TEST_USER])
            .output()
            .unwrap();
        // Another test process may have created it meanwhile (exit 9: already exists).
        assert!(
            out.status.success() || out.status.code() == Some(9),
            "useradd failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let u = lookup().expect("the test account exists");
    (u.uid.as_raw(), u.gid.as_raw())
}

/// Uid, gid and supplementary groups of `pid` from /proc/PID/status.
pub fn identity_of(pid: i32) -> (u32, u32, Vec<u32>) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |key: &str| -> Vec<u32> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .unwrap_or("")
            .split_whitespace()
            .filter_map(|x| x.parse().ok())
            .collect()
    };
    (field("Uid:")[0], field("Gid:")[0], field("Groups:"))
}

/// Where the v1 `name=systemd` hierarchy is mounted on these test hosts.
const SYSTEMD_HIERARCHY: &str = "/sys/fs/cgroup/systemd";

/// A cgroup `system.slice/UNIT` made for a test, as systemd makes one for a service;
/// removed on drop (its processes are moved back to the root first).
pub struct UnitCgroup {
    dir: PathBuf,
}

impl UnitCgroup {
    /// `None` (said loudly on stderr) when this host has no `name=systemd` hierarchy.
    pub fn new(unit: &str) -> Option<UnitCgroup> {
        if !std::path::Path::new(SYSTEMD_HIERARCHY)
            .join("cgroup.procs")
            .exists()
        {
            eprintln!(
                "SKIPPED: {SYSTEMD_HIERARCHY} is not mounted on this host: the unit mapping is not tested here"
            );
            return None;
        }
        let dir = PathBuf::from(SYSTEMD_HIERARCHY)
            .join("system.slice")
            .join(unit);
        std::fs::create_dir_all(&dir).unwrap();
        Some(UnitCgroup { dir })
    }

    /// Moves `pid` into the unit's cgroup.
    pub fn add(&self, pid: i32) {
        std::fs::write(self.dir.join("cgroup.procs"), pid.to_string()).unwrap();
    }
}

impl Drop for UnitCgroup {
    fn drop(&mut self) {
        let procs = std::fs::read_to_string(self.dir.join("cgroup.procs")).unwrap_or_default();
        for pid in procs.lines() {
            let _ = std::fs::write(PathBuf::from(SYSTEMD_HIERARCHY).join("cgroup.procs"), pid);
        }
        for _ in 0..50 {
            if std::fs::remove_dir(&self.dir).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!("cannot remove the test cgroup {}", self.dir.display());
    }
}
