//! Processes by exact name through /proc: finding them, stopping them (SIGTERM then SIGKILL) and starting them again detached.

use std::io;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// Linux truncates /proc/PID/comm to this many bytes.
const COMM_LEN: usize = 15;

/// How often `stop` looks whether the processes are gone.
const POLL_INTERVAL: Duration = Duration::from_millis(25);

/// How long `stop` waits for SIGKILLed processes to disappear.
const KILL_WAIT: Duration = Duration::from_secs(2);

/// Errors from starting a process.
#[derive(Debug, thiserror::Error)]
pub enum ProcError {
    /// The argv was empty.
    #[error("start command is empty")]
    EmptyCommand,
    /// The program does not exist.
    #[error("program {program:?} not found{}", if program.contains('/') { "" } else { " on PATH" })]
    NotFound { program: String },
    /// The working directory is missing or unusable (spawn reports it the same way as a missing program).
    #[error("cannot start program {program:?} in directory {cwd:?}: {source}")]
    Cwd {
        program: String,
        cwd: PathBuf,
        #[source]
        source: io::Error,
    },
    /// Any other spawn failure (permission denied, ...).
    #[error("cannot start program {program:?}: {source}")]
    Spawn {
        program: String,
        #[source]
        source: io::Error,
    },
    /// Called outside a tokio runtime (the runtime reaps the detached child when it exits).
    #[error("cannot start program {program:?}: no tokio runtime to reap it")]
    NoRuntime { program: String },
}

/// One process found in /proc.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcInfo {
    pub pid: i32,
    /// argv as read from /proc/PID/cmdline.
    pub cmdline: Vec<String>,
    /// Working directory, when readable.
    pub cwd: Option<PathBuf>,
}

/// What `stop` achieved.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StopReport {
    /// Gone after SIGTERM (or already gone).
    pub terminated: usize,
    /// Gone only after SIGKILL.
    pub killed: usize,
    /// Still there at the end (or refused: pid 1, our own pid).
    pub still_alive: Vec<i32>,
}

fn proc_path(pid: i32, file: &str) -> PathBuf {
    PathBuf::from(format!("/proc/{pid}/{file}"))
}

/// Process state letter from /proc/PID/stat (field 3), or None if unreadable.
fn proc_state(pid: i32) -> Option<char> {
    let stat = std::fs::read_to_string(proc_path(pid, "stat")).ok()?;
    // comm (field 2) is in parentheses and may itself contain ')' and spaces.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().next()?.chars().next()
}

/// Fields of /proc/PID/stat after the comm: index 0 is field 3 (state).
#[cfg(test)]
fn stat_fields(pid: i32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(proc_path(pid, "stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    Some(rest.split_whitespace().map(str::to_string).collect())
}

/// True when `pid` exists and is not a zombie (or dead).
pub fn is_alive(pid: i32) -> bool {
    if pid <= 0 {
        return false;
    }
    matches!(proc_state(pid), Some(state) if state != 'Z' && state != 'X' && state != 'x')
}

fn read_cmdline(pid: i32) -> Option<Vec<String>> {
    let raw = std::fs::read(proc_path(pid, "cmdline")).ok()?;
    let mut args: Vec<String> = raw
        .split(|b| *b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    // cmdline ends with a NUL, which leaves one empty trailing piece.
    if args.last().is_some_and(|a| a.is_empty()) {
        args.pop();
    }
    Some(args)
}

fn read_comm(pid: i32) -> Option<String> {
    let comm = std::fs::read_to_string(proc_path(pid, "comm")).ok()?;
    Some(comm.trim_end_matches('\n').to_string())
}

fn basename(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

fn exe_basename(pid: i32) -> Option<String> {
    let exe = std::fs::read_link(proc_path(pid, "exe")).ok()?;
    let exe = exe.to_string_lossy();
    let exe = exe.strip_suffix(" (deleted)").unwrap_or(&exe);
    Some(basename(exe).to_string())
}

/// Exact-name rule: basename of argv[0] == name, or comm == name; names longer than what
/// comm holds need comm == the truncated name and argv[0] or exe basename == name. A name of
/// exactly 15 bytes does not match through comm when the executable's longer name was truncated to it.
fn matches_name(pid: i32, name: &str, cmdline: &[String], comm: &str) -> bool {
    if cmdline.first().is_some_and(|a0| basename(a0) == name) {
        return true;
    }
    if name.len() < COMM_LEN {
        return comm == name;
    }
    if name.len() == COMM_LEN {
        // comm may be the truncation of a longer name: then the executable's name says so.
        return comm == name
            && !exe_basename(pid).is_some_and(|exe| exe.len() > COMM_LEN && exe.starts_with(name));
    }
    let truncated = &name.as_bytes()[..COMM_LEN];
    comm.as_bytes() == truncated && exe_basename(pid).is_some_and(|exe| exe == name)
}

fn inspect(pid: i32, name: &str) -> Option<ProcInfo> {
    match proc_state(pid)? {
        'Z' | 'X' | 'x' => return None,
        _ => {}
    }
    let cmdline = read_cmdline(pid)?;
    if cmdline.is_empty() {
        // Kernel thread (or a process exiting right now).
        return None;
    }
    let comm = read_comm(pid)?;
    if !matches_name(pid, name, &cmdline, &comm) {
        return None;
    }
    let cwd = std::fs::read_link(proc_path(pid, "cwd")).ok();
    Some(ProcInfo { pid, cmdline, cwd })
}

/// All live processes whose name is exactly `name` (see the module rules), sorted by pid.
/// Never fails: unreadable or vanishing processes are skipped.
pub fn find_by_name(name: &str) -> Vec<ProcInfo> {
    if name.is_empty() {
        return Vec::new();
    }
    let own = i32::try_from(std::process::id()).unwrap_or(0);
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut found: Vec<ProcInfo> = entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| *pid > 0 && *pid != own)
        .filter_map(|pid| inspect(pid, name))
        .collect();
    found.sort_by_key(|p| p.pid);
    found
}

fn refused(pid: i32) -> bool {
    pid == 1 || u32::try_from(pid).is_ok_and(|p| p == std::process::id())
}

/// Sends SIGTERM to every pid, waits up to `stop_timeout` for them to go, SIGKILLs the
/// survivors and waits briefly for those too. Zombies count as gone.
pub async fn stop(pids: &[i32], stop_timeout: Duration) -> StopReport {
    let mut report = StopReport::default();
    let mut pending: Vec<i32> = Vec::new();
    for &pid in pids {
        if pid <= 0 {
            // kill(0|-N) would hit whole groups: never.
            tracing::warn!(pid, "refusing to signal an invalid pid");
            continue;
        }
        if refused(pid) {
            tracing::warn!(pid, "refusing to stop init or the daemon itself");
            report.still_alive.push(pid);
            continue;
        }
        match kill(Pid::from_raw(pid), Signal::SIGTERM) {
            Ok(()) => pending.push(pid),
            Err(Errno::ESRCH) => report.terminated += 1,
            Err(e) => {
                tracing::warn!(pid, error = %e, "cannot send SIGTERM");
                // Try SIGKILL later all the same.
                pending.push(pid);
            }
        }
    }

    let deadline = Instant::now() + stop_timeout;
    loop {
        let before = pending.len();
        pending.retain(|pid| is_alive(*pid));
        report.terminated += before - pending.len();
        if pending.is_empty() || Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
    if pending.is_empty() {
        return report;
    }

    for &pid in &pending {
        match kill(Pid::from_raw(pid), Signal::SIGKILL) {
            Ok(()) | Err(Errno::ESRCH) => {}
            Err(e) => tracing::warn!(pid, error = %e, "cannot send SIGKILL"),
        }
    }
    let deadline = Instant::now() + KILL_WAIT;
    loop {
        let before = pending.len();
        pending.retain(|pid| is_alive(*pid));
        report.killed += before - pending.len();
        if pending.is_empty() || Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
    report.still_alive.extend(pending);
    report
}

/// Starts `argv` without a shell in a new session (setsid), stdio on /dev/null, environment
/// inherited, so that it outlives the daemon. Returns its pid.
///
/// Must be called inside a tokio runtime: the `Child` handle is dropped at once and tokio
/// reaps the process in the background when it exits, so it never stays a zombie of ours.
pub fn spawn_detached(argv: &[String], cwd: Option<&Path>) -> Result<u32, ProcError> {
    let (program, args) = argv.split_first().ok_or(ProcError::EmptyCommand)?;
    if tokio::runtime::Handle::try_current().is_err() {
        return Err(ProcError::NoRuntime {
            program: program.clone(),
        });
    }

    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(false);
    if let Some(dir) = cwd {
        cmd.current_dir(dir);
    }
    // SAFETY: the closure runs in the forked child before exec and only calls setsid(2),
    // which is async-signal-safe; it allocates nothing and touches no locks.
    unsafe {
        cmd.pre_exec(|| nix::unistd::setsid().map(|_| ()).map_err(io::Error::from));
    }

    let child = cmd.spawn().map_err(|e| {
        if let Some(dir) = cwd.filter(|d| !d.is_dir()) {
            return ProcError::Cwd {
                program: program.clone(),
                cwd: dir.to_path_buf(),
                source: e,
            };
        }
        match e.kind() {
            io::ErrorKind::NotFound => ProcError::NotFound {
                program: program.clone(),
            },
            _ => ProcError::Spawn {
                program: program.clone(),
                source: e,
            },
        }
    })?;
    let pid = child.id().unwrap_or(0);
    // It keeps running; a task waits for it so that it is reaped the moment it exits. A zombie
    // left waiting would still match `pgrep NAME`: a process that died at once would pass the
    // default health check.
    let mut child = child;
    tokio::spawn(async move {
        let _ = child.wait().await;
    });
    Ok(pid)
}

/// Turns a stopped process's command line into an argv to start it again: a relative
/// argv[0] containing '/' is resolved against the saved cwd; bare names stay for PATH lookup.
pub fn relaunch_argv(info: &ProcInfo) -> Vec<String> {
    let mut argv = info.cmdline.clone();
    if let (Some(first), Some(cwd)) = (argv.first_mut(), info.cwd.as_ref()) {
        if first.contains('/') && !first.starts_with('/') {
            *first = cwd.join(first.as_str()).to_string_lossy().into_owned();
        }
    }
    argv
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::SystemTime;

    fn unique(prefix: &str) -> String {
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        format!("{prefix}{}_{nanos:x}", std::process::id())
    }

    /// Copies /bin/sleep into `dir` as `name` and returns its path.
    fn copy_sleep(dir: &Path, name: &str) -> String {
        let path = dir.join(name);
        std::fs::copy("/bin/sleep", &path).unwrap();
        // A child forked by another test thread while the copy was open holds the write
        // handle until its exec (ETXTBSY on exec); give such children time to exec.
        std::thread::sleep(Duration::from_millis(100));
        path.to_string_lossy().into_owned()
    }

    /// spawn_detached, retrying ETXTBSY: another test thread may fork while the copy's
    /// write handle is still open, and the forked child briefly holds it.
    fn spawn_retry(argv: &[String], cwd: Option<&Path>) -> u32 {
        for _ in 0..50 {
            match spawn_detached(argv, cwd) {
                Ok(pid) => return pid,
                Err(ProcError::Spawn { source, .. }) if source.raw_os_error() == Some(26) => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => panic!("spawn failed: {e}"),
            }
        }
        panic!("spawn kept failing with ETXTBSY");
    }

    async fn wait_found(name: &str, count: usize) -> Vec<ProcInfo> {
        for _ in 0..100 {
            let found = find_by_name(name);
            if found.len() >= count {
                return found;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        find_by_name(name)
    }

    fn args(words: &[&str]) -> Vec<String> {
        words.iter().map(|w| w.to_string()).collect()
    }

    #[tokio::test]
    async fn find_exactly_and_stop() {
        let dir = tempfile::tempdir().unwrap();
        let name = unique("ptest_");
        let longer = format!("{name}x");
        let exact = copy_sleep(dir.path(), &name);
        let similar = copy_sleep(dir.path(), &longer);

        let pid = spawn_retry(&args(&[&exact, "30"]), Some(dir.path()));
        let other = spawn_retry(&args(&[&similar, "30"]), None);

        let found = wait_found(&name, 1).await;
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].pid as u32, pid);
        assert_eq!(found[0].cmdline, args(&[&exact, "30"]));
        assert_eq!(found[0].cwd.as_deref(), Some(dir.path()));
        assert!(is_alive(pid as i32));

        let report = stop(&[pid as i32], Duration::from_secs(5)).await;
        assert_eq!(
            report,
            StopReport {
                terminated: 1,
                killed: 0,
                still_alive: vec![]
            }
        );
        assert!(!is_alive(pid as i32));
        assert!(find_by_name(&name).is_empty());

        // The similarly named one was left alone.
        assert!(is_alive(other as i32));
        let report = stop(&[other as i32], Duration::from_secs(5)).await;
        assert_eq!(report.terminated, 1);
    }

    #[tokio::test]
    async fn long_names_match_through_truncated_comm() {
        let dir = tempfile::tempdir().unwrap();
        let name = unique("ptest_long_name_");
        assert!(name.len() > COMM_LEN);
        let path = copy_sleep(dir.path(), &name);
        // argv[0] is something else: only comm (truncated) + exe identify it.
        let script = format!("exec -a renamed {path} 30");
        let pid = spawn_retry(&args(&["bash", "-c", &script]), None) as i32;

        let mut found = Vec::new();
        for _ in 0..100 {
            found = find_by_name(&name);
            if !found.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].pid, pid);
        assert_eq!(found[0].cmdline[0], "renamed");
        // The truncated comm alone is not the name.
        assert!(find_by_name(&name[..COMM_LEN]).iter().all(|p| p.pid != pid));
        stop(&[pid], Duration::from_secs(5)).await;
    }

    #[tokio::test]
    async fn sigterm_ignorer_gets_killed() {
        let dir = tempfile::tempdir().unwrap();
        let name = unique("ptest_");
        let path = copy_sleep(dir.path(), &name);
        let script = format!("trap '' TERM; exec {path} 30");
        spawn_retry(&args(&["sh", "-c", &script]), None);

        let found = wait_found(&name, 1).await;
        assert_eq!(found.len(), 1, "{found:?}");
        let pid = found[0].pid;

        let started = Instant::now();
        let report = stop(&[pid], Duration::from_millis(300)).await;
        let took = started.elapsed();
        assert_eq!(
            report,
            StopReport {
                terminated: 0,
                killed: 1,
                still_alive: vec![]
            }
        );
        assert!(took >= Duration::from_millis(300), "{took:?}");
        assert!(took < Duration::from_secs(3), "{took:?}");
        assert!(!is_alive(pid));
    }

    #[tokio::test]
    async fn detached_child_has_its_own_session_and_is_reaped() {
        let dir = tempfile::tempdir().unwrap();
        let name = unique("ptest_");
        let path = copy_sleep(dir.path(), &name);
        let pid = spawn_retry(&args(&[&path, "0.5"]), None) as i32;

        let fields = stat_fields(pid).unwrap();
        // Field 6 (session) is index 3 here; field 5 (pgrp) is index 2.
        assert_eq!(fields[3], pid.to_string(), "session id");
        assert_eq!(fields[2], pid.to_string(), "process group");
        let own_sid = nix::unistd::getsid(None).unwrap().as_raw();
        assert_ne!(own_sid, pid);
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(is_alive(pid));

        // After it exits, the runtime reaps it: /proc/PID disappears entirely.
        let deadline = Instant::now() + Duration::from_secs(5);
        while proc_path(pid, "stat").exists() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(
            !proc_path(pid, "stat").exists(),
            "pid {pid} left as a zombie"
        );
    }

    #[tokio::test]
    async fn spawn_errors_are_clear() {
        let err = spawn_detached(&args(&["no-such-program-xyz"]), None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "program \"no-such-program-xyz\" not found on PATH"
        );
        let err = spawn_detached(&args(&["sleep", "1"]), Some(Path::new("/nonexistent-dir")))
            .unwrap_err();
        assert!(matches!(err, ProcError::Cwd { .. }), "{err}");
        assert!(err.to_string().contains("/nonexistent-dir"));
        assert!(matches!(
            spawn_detached(&[], None),
            Err(ProcError::EmptyCommand)
        ));
    }

    #[test]
    fn spawn_outside_runtime_is_refused() {
        let err = spawn_detached(&args(&["true"]), None).unwrap_err();
        assert!(matches!(err, ProcError::NoRuntime { .. }));
    }

    #[test]
    fn zombie_is_not_alive() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id() as i32;
        // Not reaped yet: it becomes a zombie.
        let deadline = Instant::now() + Duration::from_secs(5);
        while proc_state(pid) != Some('Z') && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(proc_state(pid), Some('Z'));
        assert!(!is_alive(pid));
        child.wait().unwrap();
        assert!(!is_alive(pid));
        assert!(!is_alive(0));
        assert!(!is_alive(-1));
        assert!(is_alive(std::process::id() as i32));
    }

    #[tokio::test]
    async fn stop_refuses_dangerous_pids_and_handles_gone_ones() {
        let own = std::process::id() as i32;
        let report = stop(&[0, -1, 1, own], Duration::from_millis(50)).await;
        assert_eq!(report.still_alive, vec![1, own]);
        assert_eq!(report.terminated + report.killed, 0);

        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id() as i32;
        child.wait().unwrap();
        let report = stop(&[pid], Duration::from_millis(50)).await;
        assert_eq!(report.terminated, 1);
    }

    #[test]
    fn own_process_and_kernel_threads_are_skipped() {
        let me = std::fs::read_to_string("/proc/self/comm").unwrap();
        let own = std::process::id() as i32;
        assert!(find_by_name(me.trim()).iter().all(|p| p.pid != own));
        // kthreadd (pid 2) has an empty cmdline, when visible at all.
        assert!(find_by_name("kthreadd").is_empty());
        assert!(find_by_name("").is_empty());
    }

    #[test]
    fn relaunch_argv_resolves_relative_paths() {
        let info = ProcInfo {
            pid: 10,
            cmdline: args(&["./bin/server", "--port", "80"]),
            cwd: Some(PathBuf::from("/opt/app")),
        };
        assert_eq!(
            relaunch_argv(&info),
            args(&["/opt/app/./bin/server", "--port", "80"])
        );
        let bare = ProcInfo {
            pid: 10,
            cmdline: args(&["server", "-d"]),
            cwd: Some(PathBuf::from("/opt/app")),
        };
        assert_eq!(relaunch_argv(&bare), args(&["server", "-d"]));
        let abs = ProcInfo {
            pid: 10,
            cmdline: args(&["/usr/bin/server"]),
            cwd: None,
        };
        assert_eq!(relaunch_argv(&abs), args(&["/usr/bin/server"]));
        let no_cwd = ProcInfo {
            pid: 10,
            cmdline: args(&["bin/server"]),
            cwd: None,
        };
        assert_eq!(relaunch_argv(&no_cwd), args(&["bin/server"]));
    }

    #[test]
    fn name_rules() {
        let cmd = args(&["/usr/sbin/nginx", "-g", "daemon off;"]);
        assert!(matches_name(-1, "nginx", &cmd, "nginx"));
        assert!(!matches_name(-1, "ngin", &cmd, "nginx"));
        // comm alone matches for short names (argv[0] rewritten by the process).
        let titled = args(&["nginx: master process /usr/sbin/nginx"]);
        assert!(matches_name(-1, "nginx", &titled, "nginx"));
        assert!(!matches_name(-1, "nginx: master", &titled, "nginx"));
        // Long name: argv[0] basename suffices.
        let long = args(&["/opt/x/a_very_long_process_name"]);
        assert!(matches_name(
            -1,
            "a_very_long_process_name",
            &long,
            "a_very_long_pro"
        ));
        // Long name: truncated comm alone (no exe for pid -1) is not enough.
        let other = args(&["something"]);
        assert!(!matches_name(
            -1,
            "a_very_long_process_name",
            &other,
            "a_very_long_pro"
        ));
    }
}
