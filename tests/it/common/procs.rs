//! Real processes for tests: copies of `sleep` under unique names, so that exact-name matching
//! and killing can never touch another test's (or the host's) processes.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

use monitor_service::procs;

/// A unique process name of at most 15 characters (so /proc/PID/comm holds all of it).
pub fn unique_name(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let pid = std::process::id() % 100_000;
    let name = format!("{prefix}{pid:05}{n:03}");
    assert!(name.len() <= 15, "{name} too long");
    name
}

/// A copy of /bin/sleep named `name` in `dir/bin`.
pub fn demo_binary(dir: &std::path::Path, name: &str) -> PathBuf {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    // Scratch's umask is 077: other accounts (the identity tests) must reach the program.
    std::fs::set_permissions(
        &bin,
        <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o755),
    )
    .unwrap();
    let p = bin.join(name);
    std::fs::copy("/bin/sleep", &p).unwrap();
    p
}

/// Starts `path 100000` detached (own session, like a service started long ago).
pub fn start(path: &std::path::Path) -> i32 {
    let pid = procs::spawn_detached(&[path.display().to_string(), "100000".into()], None).unwrap();
    i32::try_from(pid).unwrap()
}

/// Pids running under exactly `name`.
pub fn pids(name: &str) -> Vec<i32> {
    procs::find_by_name(name)
        .into_iter()
        .map(|p| p.pid)
        .collect()
}

/// Kills every process named `name` (cleanup).
pub fn kill_all(name: &str) {
    for pid in pids(name) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

/// Session id of `pid` (field 6 of /proc/PID/stat).
pub fn session_of(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split_whitespace().nth(3)?.parse().ok()
}
