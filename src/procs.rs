//! Processes by exact name through /proc: finding them, stopping them (SIGTERM then SIGKILL) and starting them again detached.

use std::io;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use nix::errno::Errno;
use nix::sys::signal::{kill, Signal};
use nix::unistd::{Gid, Pid, Uid};

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

/// A process's identity: what it is started again as.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Identity {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups.
    pub groups: Vec<u32>,
}

impl Identity {
    /// Root with no supplementary groups: what the daemon itself is.
    pub fn is_plain_root(&self) -> bool {
        self.uid == 0 && self.gid == 0 && self.groups.iter().all(|g| *g == 0)
    }
}

/// One process found in /proc.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcInfo {
    pub pid: i32,
    /// Parent pid.
    pub ppid: i32,
    /// Start time in clock ticks since boot (field 22 of /proc/PID/stat): with the pid, it
    /// names one process even after the pid is reused.
    pub start_time: u64,
    /// argv as read from /proc/PID/cmdline.
    pub cmdline: Vec<String>,
    /// Working directory, when readable.
    pub cwd: Option<PathBuf>,
    /// `/proc/PID/exe`, when readable (may end in " (deleted)").
    pub exe: Option<PathBuf>,
    /// Real uid, gid and supplementary groups (/proc/PID/status).
    pub identity: Identity,
}

/// What `stop` achieved.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StopReport {
    /// Gone after SIGTERM (or already gone).
    pub terminated: usize,
    /// Gone only after SIGKILL.
    pub killed: usize,
    /// Still there at the end (or refused: pid 1, our own pid, our ancestors).
    pub still_alive: Vec<i32>,
}

/// How to start a program detached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Launch {
    /// What is executed (a path, or a name looked up on PATH).
    pub program: String,
    /// argv, argv[0] included (it may differ from `program`).
    pub argv: Vec<String>,
    /// Working directory; `None` = the daemon's.
    pub cwd: Option<PathBuf>,
    /// Run as this; `None` = as the daemon.
    pub identity: Option<Identity>,
}

impl Launch {
    /// `argv` run as the daemon, `argv[0]` being the program.
    pub fn command(argv: &[String]) -> Launch {
        Launch {
            program: argv.first().cloned().unwrap_or_default(),
            argv: argv.to_vec(),
            cwd: None,
            identity: None,
        }
    }
}

fn proc_path(pid: i32, file: &str) -> PathBuf {
    PathBuf::from(format!("/proc/{pid}/{file}"))
}

/// `pid`'s /proc/PID/stat line, parsed.
fn stat_of(pid: i32) -> Option<StatLine> {
    parse_stat(&std::fs::read_to_string(proc_path(pid, "stat")).ok()?)
}

/// Process state letter from /proc/PID/stat (field 3), or None if unreadable.
fn proc_state(pid: i32) -> Option<char> {
    Some(stat_of(pid)?.state)
}

/// Start time (field 22) of `pid`.
fn start_time(pid: i32) -> Option<u64> {
    Some(stat_of(pid)?.start_time)
}

/// Parent pid (field 4) of `pid`.
fn parent_of(pid: i32) -> Option<i32> {
    Some(stat_of(pid)?.ppid)
}

/// True when `pid` exists and is not a zombie (or dead).
pub fn is_alive(pid: i32) -> bool {
    if pid <= 0 {
        return false;
    }
    matches!(proc_state(pid), Some(state) if state != 'Z' && state != 'X' && state != 'x')
}

/// True when the process `pid` that started at `started` is alive (not another one that got
/// its pid since).
pub fn is_same_alive(pid: i32, started: u64) -> bool {
    is_alive(pid) && start_time(pid) == Some(started)
}

fn read_cmdline(pid: i32) -> Option<Vec<String>> {
    let raw = std::fs::read(proc_path(pid, "cmdline")).ok()?;
    Some(split_cmdline(&raw))
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

/// Uid, gid and groups from the text of /proc/PID/status (the real ids).
fn parse_identity(status: &str) -> Option<Identity> {
    let field = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .map(str::split_whitespace)
    };
    let uid = field("Uid:")?.next()?.parse().ok()?;
    let gid = field("Gid:")?.next()?.parse().ok()?;
    let groups = field("Groups:")
        .map(|g| g.filter_map(|x| x.parse().ok()).collect())
        .unwrap_or_default();
    Some(Identity { uid, gid, groups })
}

/// Exact-name rule: basename of argv[0] == name, or comm == name; names longer than what
/// comm holds need comm == the truncated name and argv[0] or exe basename == name. A name of
/// exactly 15 bytes does not match through comm when the executable's longer name was truncated to it.
/// `comm` is only asked for when argv[0] does not decide.
fn matches_name(pid: i32, name: &str, argv0: &[u8], comm: impl FnOnce() -> Option<String>) -> bool {
    if basename_bytes(argv0) == name.as_bytes() {
        return true;
    }
    let Some(comm) = comm() else {
        return false;
    };
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

/// The last `/`-separated piece of a raw path.
fn basename_bytes(path: &[u8]) -> &[u8] {
    path.rsplit(|b| *b == b'/').next().unwrap_or(path)
}

/// /proc/PID/comm without its newline.
fn comm_of(pid: i32, buf: &mut Vec<u8>) -> Option<String> {
    read_proc(pid, "comm", buf)?;
    let raw = buf.strip_suffix(b"\n").unwrap_or(buf);
    Some(String::from_utf8_lossy(raw).into_owned())
}

/// The daemon's PID and mount namespaces (`None` when they cannot be read).
fn namespaces(pid: &str) -> Option<(PathBuf, PathBuf)> {
    let ns = |kind: &str| std::fs::read_link(format!("/proc/{pid}/ns/{kind}")).ok();
    Some((ns("pid")?, ns("mnt")?))
}

/// Pids never signalled whatever their name: init, the daemon, and the daemon's ancestors.
pub fn protected_pids() -> Vec<i32> {
    let mut out = vec![1];
    let mut pid = i32::try_from(std::process::id()).unwrap_or(0);
    while pid > 1 && !out.contains(&pid) {
        out.push(pid);
        pid = parent_of(pid).unwrap_or(0);
    }
    out
}

/// `PF_KTHREAD` in the flags of /proc/PID/stat: a kernel thread (no command line to match).
const PF_KTHREAD: u64 = 0x0020_0000;

/// What the daemon reads from /proc/PID/stat: a process's state, parent, flags and start time.
#[derive(Debug, Clone, PartialEq, Eq)]
struct StatLine {
    state: char,
    ppid: i32,
    flags: u64,
    start_time: u64,
}

/// Parses a /proc/PID/stat line: the fields after comm, which ends at the last ')' (comm
/// may itself hold spaces and parentheses).
fn parse_stat(line: &str) -> Option<StatLine> {
    let close = line.rfind(')')?;
    let fields: Vec<&str> = line.get(close + 1..)?.split_whitespace().collect();
    Some(StatLine {
        state: fields.first()?.chars().next()?,
        ppid: fields.get(1)?.parse().ok()?,
        flags: fields.get(6)?.parse().ok()?,
        start_time: fields.get(19)?.parse().ok()?,
    })
}

/// Reads a small /proc file into `buf` with plain reads (no size probe: /proc reports none).
fn read_proc(pid: i32, file: &str, buf: &mut Vec<u8>) -> Option<()> {
    use std::io::Read;
    buf.clear();
    let mut f = std::fs::File::open(proc_path(pid, file)).ok()?;
    let mut chunk = [0u8; 4096];
    loop {
        match f.read(&mut chunk).ok()? {
            0 => return Some(()),
            n => buf.extend_from_slice(chunk.get(..n)?),
        }
    }
}

/// argv from the raw bytes of /proc/PID/cmdline.
fn split_cmdline(raw: &[u8]) -> Vec<String> {
    let mut args: Vec<String> = raw
        .split(|b| *b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    // cmdline ends with a NUL, which leaves one empty trailing piece.
    if args.last().is_some_and(|a| a.is_empty()) {
        args.pop();
    }
    args
}

/// A scan's two read buffers: the command line, and the other /proc files.
#[derive(Default)]
struct ScanBuffers {
    cmdline: Vec<u8>,
    other: Vec<u8>,
}

/// The process `pid` when its name is `name`. A scan reads every process's command line
/// (empty for kernel threads and zombies) and, unless argv[0] names it, its comm; only a
/// process of that name has its stat line and the rest read. Two buffers serve the scan.
fn inspect(pid: i32, name: &str, bufs: &mut ScanBuffers) -> Option<ProcInfo> {
    let ScanBuffers {
        cmdline,
        other: buf,
    } = bufs;
    read_proc(pid, "cmdline", cmdline)?;
    if cmdline.is_empty() || cmdline[..] == [0] {
        // A kernel thread, a zombie, or a process exiting right now.
        return None;
    }
    let argv0 = cmdline.split(|b| *b == 0).next().unwrap_or_default();
    if !matches_name(pid, name, argv0, || comm_of(pid, buf)) {
        return None;
    }
    read_proc(pid, "stat", buf)?;
    let stat = parse_stat(std::str::from_utf8(buf).ok()?)?;
    if matches!(stat.state, 'Z' | 'X' | 'x') || stat.flags & PF_KTHREAD != 0 {
        return None;
    }
    let status = std::fs::read_to_string(proc_path(pid, "status")).ok()?;
    Some(ProcInfo {
        pid,
        ppid: stat.ppid,
        start_time: stat.start_time,
        cmdline: split_cmdline(cmdline),
        cwd: std::fs::read_link(proc_path(pid, "cwd")).ok(),
        exe: std::fs::read_link(proc_path(pid, "exe")).ok(),
        identity: parse_identity(&status)?,
    })
}

/// All live processes whose name is exactly `name` (see the module rules), in the daemon's
/// own PID and mount namespaces, sorted by pid. Never init, the daemon or its ancestors.
/// Never fails: unreadable or vanishing processes are skipped.
pub fn find_by_name(name: &str) -> Vec<ProcInfo> {
    if name.is_empty() {
        return Vec::new();
    }
    let protected = protected_pids();
    let own_ns = namespaces("self");
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut bufs = ScanBuffers::default();
    let mut found: Vec<ProcInfo> = entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| *pid > 0 && !protected.contains(pid))
        .filter_map(|pid| inspect(pid, name, &mut bufs))
        .filter(|p| own_ns.is_none() || namespaces(&p.pid.to_string()) == own_ns)
        .collect();
    found.sort_by_key(|p| p.pid);
    found
}

/// The root of the process tree among `found`: one whose parent is not itself one of them
/// (the oldest such, when several instances run side by side).
pub fn tree_root(found: &[ProcInfo]) -> Option<&ProcInfo> {
    found
        .iter()
        .filter(|p| !found.iter().any(|q| q.pid == p.ppid))
        .min_by_key(|p| (p.start_time, p.pid))
}

/// How to start a stopped process again from its own executable and command line, in its
/// directory and as its user; `Err` says why it cannot be.
pub fn relaunch_of(info: &ProcInfo) -> Result<Launch, String> {
    if info.cmdline.is_empty() {
        return Err("its command line is empty".to_string());
    }
    let exe = info
        .exe
        .as_ref()
        .ok_or("its executable (/proc/PID/exe) cannot be read")?;
    let shown = exe.to_string_lossy();
    // A package upgrade replaces the file: the new one at the same path starts it again.
    let path = shown.strip_suffix(" (deleted)").unwrap_or(&shown);
    if crate::exec::find_program(path).is_none() || !path.starts_with('/') {
        return Err(format!(
            "its executable {path} was deleted since it started"
        ));
    }
    Ok(Launch {
        program: path.to_string(),
        argv: info.cmdline.clone(),
        cwd: info.cwd.clone(),
        identity: Some(info.identity.clone()),
    })
}

/// A process to signal: the pid and, when known, its start time (so that a pid reused since
/// it was found is never hit).
#[derive(Debug, Clone, Copy)]
pub struct Target {
    pub pid: i32,
    pub start_time: Option<u64>,
}

impl From<&ProcInfo> for Target {
    fn from(p: &ProcInfo) -> Target {
        Target {
            pid: p.pid,
            start_time: Some(p.start_time),
        }
    }
}

/// A process held by a pidfd where the kernel has them (Linux 5.3+), else by its pid.
struct Held {
    pid: i32,
    start_time: Option<u64>,
    fd: Option<OwnedFd>,
}

impl Held {
    /// Holds `t`, or `None` when it is gone already (or its pid now names another process).
    fn open(t: Target) -> Option<Held> {
        let fd = pidfd_open(t.pid);
        // With the fd open, the pid cannot be reused: check it is still the process found.
        if let Some(st) = t.start_time {
            if start_time(t.pid) != Some(st) {
                return None;
            }
        }
        Some(Held {
            pid: t.pid,
            start_time: t.start_time,
            fd,
        })
    }

    fn signal(&self, sig: Signal) -> Result<(), Errno> {
        match &self.fd {
            Some(fd) => pidfd_send_signal(fd, sig),
            None => kill(Pid::from_raw(self.pid), sig),
        }
    }

    fn alive(&self) -> bool {
        match self.start_time {
            Some(st) => is_same_alive(self.pid, st),
            None => is_alive(self.pid),
        }
    }
}

/// `pidfd_open(2)`; `None` where the kernel lacks it.
fn pidfd_open(pid: i32) -> Option<OwnedFd> {
    // SAFETY: a plain system call with integer arguments; it returns a new file descriptor
    // that nothing else owns, or -1.
    let fd = unsafe { nix::libc::syscall(nix::libc::SYS_pidfd_open, pid, 0) };
    let fd = RawFd::try_from(fd).ok().filter(|fd| *fd >= 0)?;
    // SAFETY: `fd` was just returned by the kernel and is owned by no one else.
    Some(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `pidfd_send_signal(2)`.
fn pidfd_send_signal(fd: &OwnedFd, sig: Signal) -> Result<(), Errno> {
    // SAFETY: `fd` is a valid pidfd for the call's duration; a null siginfo is allowed.
    let r = unsafe {
        nix::libc::syscall(
            nix::libc::SYS_pidfd_send_signal,
            fd.as_raw_fd(),
            sig as nix::libc::c_int,
            std::ptr::null::<nix::libc::siginfo_t>(),
            0,
        )
    };
    if r < 0 {
        Err(Errno::last())
    } else {
        Ok(())
    }
}

/// [`stop_targets`] for bare pids.
pub async fn stop(pids: &[i32], stop_timeout: Duration) -> StopReport {
    let targets: Vec<Target> = pids
        .iter()
        .map(|&pid| Target {
            pid,
            start_time: None,
        })
        .collect();
    stop_targets(&targets, stop_timeout).await
}

/// Sends SIGTERM to every target (through a pidfd where the kernel has them), waits up to
/// `stop_timeout` for them to go, SIGKILLs the survivors and waits briefly for those too.
/// Zombies count as gone. Init, the daemon and its ancestors are never signalled.
pub async fn stop_targets(targets: &[Target], stop_timeout: Duration) -> StopReport {
    let mut report = StopReport::default();
    let protected = protected_pids();
    let mut pending: Vec<Held> = Vec::new();
    for &t in targets {
        if t.pid <= 0 {
            // kill(0|-N) would hit whole groups: never.
            tracing::warn!(pid = t.pid, "refusing to signal an invalid pid");
            continue;
        }
        let kernel_thread = read_cmdline(t.pid).is_some_and(|c| c.is_empty()) && is_alive(t.pid);
        if protected.contains(&t.pid) || kernel_thread {
            tracing::warn!(
                pid = t.pid,
                "refusing to stop init, a kernel thread, the daemon itself or its ancestors"
            );
            report.still_alive.push(t.pid);
            continue;
        }
        let Some(held) = Held::open(t) else {
            report.terminated += 1;
            continue;
        };
        match held.signal(Signal::SIGTERM) {
            Ok(()) => pending.push(held),
            Err(Errno::ESRCH) => report.terminated += 1,
            Err(e) => {
                tracing::warn!(pid = t.pid, error = %e, "cannot send SIGTERM");
                // Try SIGKILL later all the same.
                pending.push(held);
            }
        }
    }
    report.terminated += wait_gone(&mut pending, stop_timeout).await;
    if pending.is_empty() {
        return report;
    }
    for held in &pending {
        match held.signal(Signal::SIGKILL) {
            Ok(()) | Err(Errno::ESRCH) => {}
            Err(e) => tracing::warn!(pid = held.pid, error = %e, "cannot send SIGKILL"),
        }
    }
    report.killed += wait_gone(&mut pending, KILL_WAIT).await;
    report.still_alive.extend(pending.iter().map(|h| h.pid));
    report
}

/// Waits up to `within` for the held processes to go; returns how many went.
async fn wait_gone(pending: &mut Vec<Held>, within: Duration) -> usize {
    let deadline = Instant::now() + within;
    let mut gone = 0;
    loop {
        let before = pending.len();
        pending.retain(Held::alive);
        gone += before - pending.len();
        if pending.is_empty() || Instant::now() >= deadline {
            return gone;
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// Starts `argv` as the daemon (see [`spawn`]). Returns its pid.
pub fn spawn_detached(argv: &[String], cwd: Option<&Path>) -> Result<u32, ProcError> {
    let mut launch = Launch::command(argv);
    launch.cwd = cwd.map(Path::to_path_buf);
    spawn(&launch, false)
}

/// The argv that starts `launch` in a transient systemd scope of its own (out of the
/// daemon's cgroup, so that stopping the daemon does not stop it), with its identity set by
/// `setpriv` once the scope is made (systemd-run must run as root to make it).
pub fn scope_argv(launch: &Launch) -> Vec<String> {
    let mut argv: Vec<String> = ["systemd-run", "--scope", "--"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    if let Some(id) = launch.identity.as_ref().filter(|i| !i.is_plain_root()) {
        argv.push("setpriv".to_string());
        argv.push(format!("--reuid={}", id.uid));
        argv.push(format!("--regid={}", id.gid));
        if id.groups.is_empty() {
            argv.push("--clear-groups".to_string());
        } else {
            let list: Vec<String> = id.groups.iter().map(u32::to_string).collect();
            argv.push(format!("--groups={}", list.join(",")));
        }
        argv.push("--".to_string());
    }
    argv.push(launch.program.clone());
    argv.extend(launch.argv.iter().skip(1).cloned());
    argv
}

/// Makes the child leader of a new session and, with `identity`, sets its groups, gid and uid
/// (in that order: setuid last, while setgroups and setgid are still allowed).
fn new_session_as(cmd: &mut tokio::process::Command, identity: Option<Identity>) {
    let groups: Vec<Gid> = identity
        .as_ref()
        .map(|i| i.groups.iter().map(|g| Gid::from_raw(*g)).collect())
        .unwrap_or_default();
    // SAFETY: the closure runs in the forked child before exec and only makes system calls
    // (setsid, setgroups, setgid, setuid) on data prepared before the fork; it allocates
    // nothing and touches no locks.
    unsafe {
        cmd.pre_exec(move || {
            nix::unistd::setsid().map_err(io::Error::from)?;
            if let Some(id) = &identity {
                nix::unistd::setgroups(&groups).map_err(io::Error::from)?;
                nix::unistd::setgid(Gid::from_raw(id.gid)).map_err(io::Error::from)?;
                nix::unistd::setuid(Uid::from_raw(id.uid)).map_err(io::Error::from)?;
            }
            Ok(())
        });
    }
}

/// Why `launch` could not be started.
fn spawn_error(launch: &Launch, e: io::Error) -> ProcError {
    let program = launch.program.clone();
    if let Some(dir) = launch.cwd.as_ref().filter(|d| !d.is_dir()) {
        return ProcError::Cwd {
            program,
            cwd: dir.clone(),
            source: e,
        };
    }
    match e.kind() {
        io::ErrorKind::NotFound => ProcError::NotFound { program },
        _ => ProcError::Spawn { program, source: e },
    }
}

/// Starts `launch` without a shell in a new session (setsid), stdio on /dev/null, the
/// daemon's environment without systemd's variables, as its identity (uid, gid, groups) and
/// in its directory, so that it outlives the daemon. With `scope` (systemd runs the host) it
/// is started through [`scope_argv`]. Returns its pid.
///
/// Must be called inside a tokio runtime: the `Child` handle is dropped at once and tokio
/// reaps the process in the background when it exits, so it never stays a zombie of ours.
pub fn spawn(launch: &Launch, scope: bool) -> Result<u32, ProcError> {
    let program = launch.program.clone();
    if launch.argv.is_empty() || program.is_empty() {
        return Err(ProcError::EmptyCommand);
    }
    if tokio::runtime::Handle::try_current().is_err() {
        return Err(ProcError::NoRuntime { program });
    }
    let mut cmd = if scope {
        let argv = scope_argv(launch);
        let mut c = tokio::process::Command::new(&argv[0]);
        c.args(&argv[1..]);
        c
    } else {
        let mut c = tokio::process::Command::new(&program);
        c.arg0(&launch.argv[0]).args(&launch.argv[1..]);
        c
    };
    for var in crate::exec::SYSTEMD_ENV {
        cmd.env_remove(var);
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(false);
    if let Some(dir) = &launch.cwd {
        cmd.current_dir(dir);
    }
    // Through a scope, setpriv sets the identity after systemd-run (which must be root).
    new_session_as(&mut cmd, if scope { None } else { launch.identity.clone() });
    let child = cmd.spawn().map_err(|e| spawn_error(launch, e))?;
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

    /// Fields of /proc/PID/stat after the comm: index 0 is field 3 (state).
    fn stat_fields(pid: i32) -> Option<Vec<String>> {
        let stat = std::fs::read_to_string(proc_path(pid, "stat")).ok()?;
        let rest = &stat[stat.rfind(')')? + 1..];
        Some(rest.split_whitespace().map(str::to_string).collect())
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
        let report = stop(&[0, -1, 1, own, 2], Duration::from_millis(50)).await;
        // pid 2 is kthreadd where this runs in the host's PID namespace.
        let kthreadd =
            std::fs::read_to_string("/proc/2/comm").is_ok_and(|c| c.trim_end() == "kthreadd");
        let expected = if kthreadd {
            vec![1, own, 2]
        } else {
            vec![1, own]
        };
        assert_eq!(report.still_alive, expected);
        // The daemon's ancestors (here: whatever started the test binary) are protected.
        let parent = parent_of(own).unwrap();
        assert!(parent <= 1 || protected_pids().contains(&parent));
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

    fn info(pid: i32, ppid: i32, start_time: u64) -> ProcInfo {
        ProcInfo {
            pid,
            ppid,
            start_time,
            cmdline: args(&["/bin/sleep", "100"]),
            cwd: Some(PathBuf::from("/opt/app")),
            exe: Some(PathBuf::from("/bin/sleep")),
            identity: Identity {
                uid: 1000,
                gid: 100,
                groups: vec![100, 27],
            },
        }
    }

    #[test]
    fn relaunch_uses_the_executable_command_line_directory_and_identity() {
        let mut i = info(10, 1, 5);
        i.cmdline = args(&["worker: master", "-d"]);
        let l = relaunch_of(&i).unwrap();
        assert_eq!(l.program, "/bin/sleep");
        assert_eq!(l.argv, args(&["worker: master", "-d"]));
        assert_eq!(l.cwd, Some(PathBuf::from("/opt/app")));
        assert_eq!(l.identity.unwrap().groups, vec![100, 27]);
        let mut gone = info(10, 1, 5);
        gone.exe = Some(PathBuf::from("/usr/sbin/no-such-x (deleted)"));
        assert!(relaunch_of(&gone).unwrap_err().contains("deleted"));
        // Replaced by an upgrade: the new file at the same path.
        let mut upgraded = info(10, 1, 5);
        upgraded.exe = Some(PathBuf::from("/bin/sleep (deleted)"));
        assert_eq!(relaunch_of(&upgraded).unwrap().program, "/bin/sleep");
        let mut unreadable = info(10, 1, 5);
        unreadable.exe = None;
        assert!(relaunch_of(&unreadable).unwrap_err().contains("exe"));
        let mut empty = info(10, 1, 5);
        empty.cmdline.clear();
        assert!(relaunch_of(&empty).is_err());
    }

    #[test]
    fn the_tree_root_is_taken_not_the_lowest_pid() {
        // pid 300 is the master (started first); its workers got lower pids after a wrap.
        let found = vec![info(100, 300, 9), info(200, 300, 9), info(300, 1, 5)];
        assert_eq!(tree_root(&found).map(|p| p.pid), Some(300));
        // Two independent instances: the older one.
        let found = vec![info(50, 1, 20), info(60, 1, 10)];
        assert_eq!(tree_root(&found).map(|p| p.pid), Some(60));
        assert!(tree_root(&[]).is_none());
    }

    #[test]
    fn stat_line_parsed_with_odd_comm() {
        let line = "4242 (a) b (c)) S 1 4242 4242 0 -1 4194560 120 0 0 0 1 2 0 0 20 0 1 0 987654 1000 100 18446744073709551615";
        let s = parse_stat(line).unwrap();
        assert_eq!(
            (s.state, s.ppid, s.flags, s.start_time),
            ('S', 1, 4194560, 987654)
        );
        assert_eq!(s.flags & PF_KTHREAD, 0);
        let kthread =
            "2 (kthreadd) S 0 0 0 0 -1 2129984 0 0 0 0 0 0 0 0 20 0 1 0 1 0 0 18446744073709551615";
        assert_ne!(parse_stat(kthread).unwrap().flags & PF_KTHREAD, 0);
        assert_eq!(parse_stat("12 (x S"), None);
    }

    #[test]
    fn own_stat_line_parses() {
        let own = std::fs::read_to_string("/proc/self/stat").unwrap();
        let s = parse_stat(&own).unwrap();
        assert_eq!(s.flags & PF_KTHREAD, 0);
        assert_eq!(Some(s.ppid), parent_of(std::process::id() as i32));
        assert!(!split_cmdline(&std::fs::read("/proc/self/cmdline").unwrap()).is_empty());
    }

    #[test]
    fn identity_from_status() {
        let status = "Name:\tx\nUid:\t1001\t1001\t1001\t1001\nGid:\t1002\t1002\t1002\t1002\nGroups:\t1002 4 27 \n";
        assert_eq!(
            parse_identity(status),
            Some(Identity {
                uid: 1001,
                gid: 1002,
                groups: vec![1002, 4, 27]
            })
        );
        let none = "Uid:\t0\t0\t0\t0\nGid:\t0\t0\t0\t0\nGroups:\t\n";
        assert!(parse_identity(none).unwrap().is_plain_root());
        assert_eq!(parse_identity("garbage"), None);
    }

    #[test]
    fn scope_argv_leaves_the_cgroup_then_sets_the_identity() {
        let l = relaunch_of(&info(10, 1, 5)).unwrap();
        assert_eq!(
            scope_argv(&l),
            args(&[
                "systemd-run",
                "--scope",
                "--",
                "setpriv",
                "--reuid=1000",
                "--regid=100",
                "--groups=100,27",
                "--",
                "/bin/sleep",
                "100"
            ])
        );
        let root = Launch::command(&args(&["/usr/sbin/x", "-f"]));
        assert_eq!(
            scope_argv(&root),
            args(&["systemd-run", "--scope", "--", "/usr/sbin/x", "-f"])
        );
    }

    #[tokio::test]
    async fn spawn_sets_the_identity() {
        let dir = tempfile::tempdir().unwrap();
        let mut l = Launch::command(&args(&["sleep", "5"]));
        l.cwd = Some(dir.path().to_path_buf());
        l.identity = Some(Identity {
            uid: 65534,
            gid: 65534,
            groups: vec![65534, 4],
        });
        let pid = spawn(&l, false).unwrap() as i32;
        let status = std::fs::read_to_string(proc_path(pid, "status")).unwrap();
        let id = parse_identity(&status).unwrap();
        assert_eq!((id.uid, id.gid), (65534, 65534));
        assert_eq!(id.groups, vec![4, 65534]);
        assert_eq!(
            std::fs::read_link(proc_path(pid, "cwd")).unwrap(),
            dir.path()
        );
        stop(&[pid], Duration::from_secs(5)).await;
    }

    #[test]
    fn name_rules() {
        let comm = |c: &'static str| move || Some(c.to_string());
        let nginx = b"/usr/sbin/nginx".as_slice();
        assert!(matches_name(-1, "nginx", nginx, comm("nginx")));
        assert!(!matches_name(-1, "ngin", nginx, comm("nginx")));
        // argv[0] decides without comm being read.
        assert!(matches_name(-1, "nginx", nginx, || None));
        // comm alone matches for short names (argv[0] rewritten by the process).
        let titled = b"nginx: master process /usr/sbin/nginx".as_slice();
        assert!(matches_name(-1, "nginx", titled, comm("nginx")));
        assert!(!matches_name(-1, "nginx: master", titled, comm("nginx")));
        // comm unreadable (the process is gone): no match.
        let worker = b"nginx: worker process".as_slice();
        assert!(matches_name(-1, "nginx", worker, comm("nginx")));
        assert!(!matches_name(-1, "nginx", worker, || None));
        // Long name: argv[0] basename suffices.
        let long = b"/opt/x/a_very_long_process_name".as_slice();
        let name = "a_very_long_process_name";
        assert!(matches_name(-1, name, long, comm("a_very_long_pro")));
        // Long name: truncated comm alone (no exe for pid -1) is not enough.
        assert!(!matches_name(
            -1,
            name,
            b"something",
            comm("a_very_long_pro")
        ));
    }
}
