//! Bounded command runner: runs one argv without a shell, in its own process group, with a timeout, keeping only the tail of its output.

use std::collections::VecDeque;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Command;
use tokio::task::JoinSet;

/// How many bytes of combined stdout+stderr are kept (the last ones).
pub const OUTPUT_TAIL_BYTES: usize = 2048;

/// How long the output readers may keep going after the child has exited.
/// A backgrounded grandchild can hold the pipes open for ever; we stop reading after this.
pub const READ_GRACE: Duration = Duration::from_millis(100);

/// Search path used when `PATH` is not set (same as a login shell's usual default).
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Variables systemd gives the daemon that must not reach its children: a child that saw
/// them would talk to systemd as if it were the daemon (readiness, watchdog, sockets).
pub const SYSTEMD_ENV: &[&str] = &[
    "NOTIFY_SOCKET",
    "WATCHDOG_PID",
    "WATCHDOG_USEC",
    "INVOCATION_ID",
    "LISTEN_PID",
    "LISTEN_FDS",
    "LISTEN_FDNAMES",
];

/// Errors that prevent a command from being started at all.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// The argv was empty.
    #[error("command is empty")]
    EmptyCommand,
    /// The program does not exist (on PATH, or at the given path).
    #[error("program {program:?} not found{}", if program.contains('/') { "" } else { " on PATH" })]
    NotFound { program: String },
    /// The program exists but may not be executed.
    #[error("program {program:?} cannot be executed: permission denied")]
    PermissionDenied { program: String },
    /// Any other spawn failure.
    #[error("cannot start program {program:?}: {source}")]
    Spawn {
        program: String,
        #[source]
        source: io::Error,
    },
}

/// How the command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitKind {
    /// Exited normally with this code.
    Exited(i32),
    /// Killed by this signal (not by our timeout).
    Signaled(i32),
    /// Ran past its timeout; the whole process group was SIGKILLed.
    TimedOut,
}

/// Result of one bounded command run.
#[derive(Debug, Clone)]
pub struct CommandOutcome {
    pub status: ExitKind,
    /// Tail (at most [`OUTPUT_TAIL_BYTES`]) of the combined stdout+stderr, lossy UTF-8, untrimmed.
    pub output: String,
    /// Time from spawn until the child ended (or until the timeout fired).
    pub elapsed: Duration,
}

impl CommandOutcome {
    /// True when the command exited with status 0.
    pub fn success(&self) -> bool {
        self.status == ExitKind::Exited(0)
    }

    /// Short human description: "exit 1", "killed by signal 9", "timed out after 5.0s".
    pub fn describe(&self) -> String {
        match self.status {
            ExitKind::Exited(code) => format!("exit {code}"),
            ExitKind::Signaled(sig) => format!("killed by signal {sig}"),
            ExitKind::TimedOut => format!("timed out after {:.1}s", self.elapsed.as_secs_f64()),
        }
    }
}

/// Keeps the last `cap` bytes written to it.
#[derive(Debug)]
struct Tail {
    buf: VecDeque<u8>,
    cap: usize,
}

impl Tail {
    fn new(cap: usize) -> Self {
        Self {
            buf: VecDeque::with_capacity(cap),
            cap,
        }
    }

    fn push(&mut self, data: &[u8]) {
        let data = if data.len() > self.cap {
            &data[data.len() - self.cap..]
        } else {
            data
        };
        let overflow = (self.buf.len() + data.len()).saturating_sub(self.cap);
        self.buf.drain(..overflow);
        self.buf.extend(data);
    }

    fn into_string(self) -> String {
        let bytes: Vec<u8> = self.buf.into_iter().collect();
        // The cut may have landed inside a UTF-8 sequence: skip leading continuation bytes.
        let start = bytes
            .iter()
            .take(3)
            .take_while(|b| (**b & 0b1100_0000) == 0b1000_0000)
            .count();
        String::from_utf8_lossy(&bytes[start..]).into_owned()
    }
}

fn lock_tail(tail: &Mutex<Tail>) -> std::sync::MutexGuard<'_, Tail> {
    tail.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

async fn drain_into<R: AsyncRead + Unpin>(mut reader: R, tail: Arc<Mutex<Tail>>) {
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        match reader.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => lock_tail(&tail).push(&chunk[..n]),
        }
    }
}

/// Kills the child's process group when dropped, unless disarmed.
/// Covers the case where `run` is cancelled while the child is still running.
struct GroupKiller {
    pgid: Option<Pid>,
}

impl GroupKiller {
    fn kill(&mut self) {
        if let Some(pgid) = self.pgid.take() {
            // ESRCH (group already empty) is fine.
            let _ = killpg(pgid, Signal::SIGKILL);
        }
    }

    fn disarm(&mut self) {
        self.pgid = None;
    }
}

impl Drop for GroupKiller {
    fn drop(&mut self) {
        self.kill();
    }
}

fn exit_kind(status: ExitStatus) -> ExitKind {
    match (status.code(), status.signal()) {
        (Some(code), _) => ExitKind::Exited(code),
        (None, Some(sig)) => ExitKind::Signaled(sig),
        // Neither code nor signal: cannot happen on Linux for a reaped child.
        (None, None) => ExitKind::Signaled(0),
    }
}

fn spawn_error(program: &str, e: io::Error) -> ExecError {
    match e.kind() {
        io::ErrorKind::NotFound => ExecError::NotFound {
            program: program.to_string(),
        },
        io::ErrorKind::PermissionDenied => ExecError::PermissionDenied {
            program: program.to_string(),
        },
        _ => ExecError::Spawn {
            program: program.to_string(),
            source: e,
        },
    }
}

/// Runs `argv` (argv[0] looked up on PATH by the OS) without a shell, stdin from /dev/null,
/// in a new process group. On timeout the whole group is SIGKILLed and `TimedOut` returned.
pub async fn run(argv: &[String], timeout: Duration) -> Result<CommandOutcome, ExecError> {
    run_with_env(argv, &[], timeout).await
}

/// [`run`] with `env` added to the daemon's environment.
pub async fn run_with_env(
    argv: &[String],
    env: &[(String, String)],
    timeout: Duration,
) -> Result<CommandOutcome, ExecError> {
    let (program, args) = argv.split_first().ok_or(ExecError::EmptyCommand)?;

    let mut cmd = Command::new(program);
    for var in SYSTEMD_ENV {
        cmd.env_remove(var);
    }
    cmd.args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);

    let started = Instant::now();
    let mut child = cmd.spawn().map_err(|e| spawn_error(program, e))?;

    // The child leads its own group, so its pid is the group id.
    let mut killer = GroupKiller {
        pgid: child
            .id()
            .and_then(|id| i32::try_from(id).ok())
            .map(Pid::from_raw),
    };

    let tail = Arc::new(Mutex::new(Tail::new(OUTPUT_TAIL_BYTES)));
    // JoinSet aborts the readers when dropped, so they never outlive this call.
    let mut readers = JoinSet::new();
    if let Some(out) = child.stdout.take() {
        readers.spawn(drain_into(out, Arc::clone(&tail)));
    }
    if let Some(err) = child.stderr.take() {
        readers.spawn(drain_into(err, Arc::clone(&tail)));
    }

    let (status, elapsed) = match tokio::time::timeout(timeout, child.wait()).await {
        Ok(Ok(status)) => {
            let elapsed = started.elapsed();
            killer.disarm();
            (exit_kind(status), elapsed)
        }
        Ok(Err(e)) => {
            // Waiting failed (should not happen); make sure nothing is left behind.
            let elapsed = started.elapsed();
            killer.kill();
            let _ = child.wait().await;
            tracing::warn!(program = %program, error = %e, "cannot wait for command");
            (ExitKind::Signaled(0), elapsed)
        }
        Err(_) => {
            let elapsed = started.elapsed();
            killer.kill();
            // Reap the leader; SIGKILL cannot be ignored so this is quick.
            let _ = child.start_kill();
            let _ = child.wait().await;
            (ExitKind::TimedOut, elapsed)
        }
    };

    // Give the readers a short grace to collect what is left in the pipes.
    let _ = tokio::time::timeout(READ_GRACE, async {
        while readers.join_next().await.is_some() {}
    })
    .await;
    readers.abort_all();
    drop(readers);

    let output = match Arc::try_unwrap(tail) {
        Ok(m) => m.into_inner().unwrap_or_else(|p| p.into_inner()),
        Err(shared) => {
            let mut guard = lock_tail(&shared);
            std::mem::replace(&mut *guard, Tail::new(0))
        }
    }
    .into_string();

    Ok(CommandOutcome {
        status,
        output,
        elapsed,
    })
}

fn is_executable_file(path: &Path) -> bool {
    match std::fs::metadata(path) {
        Ok(meta) => {
            meta.is_file()
                && meta.permissions().mode() & 0o111 != 0
                && nix::unistd::access(path, nix::unistd::AccessFlags::X_OK).is_ok()
        }
        Err(_) => false,
    }
}

/// Finds `program` the way exec would: the path itself when it contains '/', else the first
/// executable regular file named `program` in a directory of `PATH`.
pub fn find_program(program: &str) -> Option<PathBuf> {
    if program.is_empty() {
        return None;
    }
    if program.contains('/') {
        let path = PathBuf::from(program);
        return is_executable_file(&path).then_some(path);
    }
    let search = std::env::var_os("PATH").unwrap_or_else(|| DEFAULT_PATH.into());
    std::env::split_paths(&search)
        .filter(|dir| !dir.as_os_str().is_empty())
        .map(|dir| dir.join(program))
        .find(|candidate| is_executable_file(candidate))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(words: &[&str]) -> Vec<String> {
        words.iter().map(|w| w.to_string()).collect()
    }

    fn pid_exists(pid: i32) -> bool {
        // Gone or zombie both count as not running.
        crate::procs::is_alive(pid)
    }

    async fn wait_gone(pid: i32, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if !pid_exists(pid) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        !pid_exists(pid)
    }

    #[tokio::test]
    async fn success_and_exit_codes() {
        let ok = run(
            &argv(&["sh", "-c", "echo hello; echo oops >&2"]),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
        assert!(ok.success());
        assert_eq!(ok.status, ExitKind::Exited(0));
        assert!(ok.output.contains("hello"), "{:?}", ok.output);
        assert!(ok.output.contains("oops"), "{:?}", ok.output);
        assert_eq!(ok.describe(), "exit 0");

        let bad = run(&argv(&["sh", "-c", "exit 3"]), Duration::from_secs(10))
            .await
            .unwrap();
        assert!(!bad.success());
        assert_eq!(bad.status, ExitKind::Exited(3));
        assert_eq!(bad.describe(), "exit 3");

        let sig = run(&argv(&["sh", "-c", "kill -9 $$"]), Duration::from_secs(10))
            .await
            .unwrap();
        assert_eq!(sig.status, ExitKind::Signaled(9));
        assert_eq!(sig.describe(), "killed by signal 9");
    }

    #[tokio::test]
    async fn stdin_is_dev_null() {
        let out = run(&argv(&["cat"]), Duration::from_secs(5)).await.unwrap();
        assert!(out.success());
        assert_eq!(out.output, "");
    }

    #[tokio::test]
    async fn timeout_kills_the_whole_group() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("pids");
        let script = format!(
            "sleep 30 & echo $! > {p}.tmp; echo $$ >> {p}.tmp; mv {p}.tmp {p}; sleep 30",
            p = pidfile.display()
        );
        let started = Instant::now();
        let out = run(&argv(&["sh", "-c", &script]), Duration::from_millis(300))
            .await
            .unwrap();
        let took = started.elapsed();
        assert_eq!(out.status, ExitKind::TimedOut);
        assert!(!out.success());
        assert!(took < Duration::from_secs(3), "took {took:?}");
        assert!(
            out.describe().starts_with("timed out after 0."),
            "{}",
            out.describe()
        );

        let pids: Vec<i32> = std::fs::read_to_string(&pidfile)
            .unwrap()
            .lines()
            .map(|l| l.trim().parse().unwrap())
            .collect();
        assert_eq!(pids.len(), 2);
        for pid in pids {
            assert!(
                wait_gone(pid, Duration::from_secs(2)).await,
                "pid {pid} survived the timeout"
            );
        }
    }

    #[tokio::test]
    async fn flood_keeps_only_the_tail() {
        let out = run(
            &argv(&["sh", "-c", "head -c 200000000 /dev/zero; echo THE-END"]),
            Duration::from_secs(60),
        )
        .await
        .unwrap();
        assert!(out.success(), "{}", out.describe());
        assert!(
            out.output.len() <= OUTPUT_TAIL_BYTES,
            "{}",
            out.output.len()
        );
        assert!(out.output.ends_with("THE-END\n"));
    }

    #[tokio::test]
    async fn endless_flood_times_out_bounded() {
        let out = run(&argv(&["yes"]), Duration::from_millis(300))
            .await
            .unwrap();
        assert_eq!(out.status, ExitKind::TimedOut);
        assert!(out.output.len() <= OUTPUT_TAIL_BYTES);
        assert!(out.output.contains("y\ny\n"));
    }

    #[tokio::test]
    async fn missing_program_is_a_clear_error() {
        let err = run(&argv(&["no-such-program-xyz"]), Duration::from_secs(1))
            .await
            .unwrap_err();
        assert!(matches!(err, ExecError::NotFound { .. }));
        let msg = err.to_string();
        assert!(msg.contains("no-such-program-xyz"), "{msg}");
        assert!(msg.contains("not found on PATH"), "{msg}");

        let err = run(&argv(&["/nonexistent/prog"]), Duration::from_secs(1))
            .await
            .unwrap_err();
        assert_eq!(err.to_string(), "program \"/nonexistent/prog\" not found");

        let err = run(&[], Duration::from_secs(1)).await.unwrap_err();
        assert!(matches!(err, ExecError::EmptyCommand));
    }

    #[tokio::test]
    async fn permission_denied_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("not-executable");
        std::fs::write(&path, "#!/bin/sh\nexit 0\n").unwrap();
        let p = path.to_string_lossy().into_owned();
        let err = run(std::slice::from_ref(&p), Duration::from_secs(1))
            .await
            .unwrap_err();
        assert!(matches!(err, ExecError::PermissionDenied { .. }), "{err}");
        assert!(err.to_string().contains(&p));
    }

    #[tokio::test]
    async fn grandchild_holding_stdout_does_not_block() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("pid");
        let script = format!(
            "sleep 5 & echo $! > {p}; echo parent-done",
            p = pidfile.display()
        );
        let started = Instant::now();
        let out = run(&argv(&["sh", "-c", &script]), Duration::from_secs(10))
            .await
            .unwrap();
        let took = started.elapsed();
        assert!(out.success());
        assert!(out.output.contains("parent-done"));
        assert!(took < Duration::from_secs(2), "took {took:?}");
        // Clean up the grandchild we left behind.
        let pid: i32 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let _ = nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGKILL);
    }

    #[tokio::test]
    async fn children_get_no_systemd_variables() {
        let out = run_with_env(
            &argv(&["env"]),
            &[("KEPT".to_string(), "1".to_string())],
            Duration::from_secs(5),
        )
        .await
        .unwrap();
        // The variables are removed whether or not the daemon has them (the test cannot set
        // its own environment safely while other tests run).
        for var in SYSTEMD_ENV {
            assert!(!out.output.contains(&format!("{var}=")), "{var}");
        }
        assert!(out.output.contains("KEPT=1"));
    }

    #[test]
    fn tail_keeps_last_bytes_and_valid_utf8() {
        let mut t = Tail::new(4);
        t.push(b"ab");
        t.push(b"cdef");
        assert_eq!(t.into_string(), "cdef");
        let mut t = Tail::new(4);
        t.push(b"0123456789");
        t.push(b"x");
        assert_eq!(t.into_string(), "789x");
        let mut t = Tail::new(3);
        t.push("aé".as_bytes()); // 'é' is two bytes
        t.push("zz".as_bytes());
        // "é" got cut in half: the dangling continuation byte is skipped.
        assert_eq!(t.into_string(), "zz");
    }

    #[test]
    fn find_program_looks_on_path() {
        let sh = find_program("sh").unwrap();
        assert!(sh.is_absolute());
        assert!(find_program("no-such-program-xyz").is_none());
        assert_eq!(find_program("/bin/sh"), Some(PathBuf::from("/bin/sh")));
        assert!(find_program("/etc/passwd").is_none());
        assert!(find_program("/tmp").is_none());
        assert!(find_program("").is_none());
    }
}
