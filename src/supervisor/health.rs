//! Health check: the configured command, or the built-in exact check (what `pgrep %s` stands
//! for), run until it passes or `health_check_timeout` passes (at least once).

use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use tracing::debug;

use crate::command::CommandTemplate;
use crate::exec;
use crate::procs;

/// Pause between two runs of the health check.
const POLL: Duration = Duration::from_millis(200);

/// How to check and for how long.
pub struct Check<'a> {
    pub command: &'a CommandTemplate,
    pub name: &'a str,
    /// How long to keep trying (0 = once).
    pub timeout: Duration,
    /// Built-in check: how long a found process must stay alive.
    pub settle: Duration,
    /// Bound on each run of a command.
    pub command_timeout: Duration,
}

/// True when `command` is the default or exactly `pgrep %s`: checked in-process then.
pub fn is_builtin(command: &CommandTemplate) -> bool {
    command.words() == ["pgrep", "%s"]
}

/// Runs the check at least once and again every 200 ms until it succeeds (returns the time
/// since `since`) or the timeout has passed (returns the last failure).
pub async fn wait_healthy(
    check: &Check<'_>,
    since: Instant,
    token: &CancellationToken,
) -> Result<Duration, String> {
    let started = Instant::now();
    loop {
        let last = match once(check, token).await {
            Ok(()) => return Ok(since.elapsed()),
            Err(e) => e,
        };
        if started.elapsed() + POLL > check.timeout || token.is_cancelled() {
            return Err(last);
        }
        tokio::select! {
            _ = tokio::time::sleep(POLL) => {}
            _ = token.cancelled() => return Err(last),
        }
    }
}

/// One run of the check.
async fn once(check: &Check<'_>, token: &CancellationToken) -> Result<(), String> {
    if is_builtin(check.command) {
        return builtin(check.name, check.settle, token).await;
    }
    let argv = check.command.render(check.name);
    let program = check.command.program();
    match exec::run(&argv, check.command_timeout).await {
        Ok(out) if out.success() => Ok(()),
        Ok(out) => {
            debug!(process = %check.name, command = %check.command, result = %out.describe(), output = %out.output.trim(), "health check not passed yet");
            Err(format!("health check `{program}` {}", out.describe()))
        }
        Err(e) => Err(format!("health check `{program}` could not run: {e}")),
    }
}

/// The built-in check: a live, non-zombie process with exactly this name in our namespaces,
/// still alive after `settle`.
async fn builtin(name: &str, settle: Duration, token: &CancellationToken) -> Result<(), String> {
    // A row naming a unit (`nginx.service`) is healthy when its program runs.
    let name = name.strip_suffix(".service").unwrap_or(name);
    let found = procs::find_by_name(name);
    if found.is_empty() {
        return Err(format!("no process named {name} is running"));
    }
    if !settle.is_zero() {
        tokio::select! {
            _ = tokio::time::sleep(settle) => {}
            _ = token.cancelled() => {}
        }
    }
    if found
        .iter()
        .any(|p| procs::is_same_alive(p.pid, p.start_time))
    {
        Ok(())
    } else {
        Err(format!(
            "{name} did not stay up for {:.1}s",
            settle.as_secs_f64()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_pgrep_percent_s_is_the_builtin() {
        assert!(is_builtin(&CommandTemplate::default()));
        assert!(is_builtin(&CommandTemplate::parse("pgrep %s").unwrap()));
        assert!(is_builtin(
            &CommandTemplate::parse("  pgrep   %s ").unwrap()
        ));
        assert!(!is_builtin(&CommandTemplate::parse("pgrep -x %s").unwrap()));
        assert!(!is_builtin(
            &CommandTemplate::parse("/usr/bin/pgrep %s").unwrap()
        ));
    }

    #[tokio::test]
    async fn a_name_that_is_not_running_fails_once_with_timeout_zero() {
        let cmd = CommandTemplate::default();
        let check = Check {
            command: &cmd,
            name: "no-such-process-xyz",
            timeout: Duration::ZERO,
            settle: Duration::ZERO,
            command_timeout: Duration::from_secs(5),
        };
        let err = wait_healthy(&check, Instant::now(), &CancellationToken::new())
            .await
            .unwrap_err();
        assert_eq!(err, "no process named no-such-process-xyz is running");
    }
}
