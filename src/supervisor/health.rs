//! Health check: runs the configured check until it exits 0 or `health_check_timeout` passes.

use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use tracing::debug;

use crate::command::CommandTemplate;
use crate::exec;

/// Pause between two runs of the health check.
const POLL: Duration = Duration::from_millis(200);

/// Runs `check` (with `%s` = `name`) at least once and again every 200 ms until it succeeds
/// (returns the time since `since`) or `timeout` has passed (returns the last failure).
/// Each run is bounded by `command_timeout`.
pub async fn wait_healthy(
    check: &CommandTemplate,
    name: &str,
    since: Instant,
    timeout: Duration,
    command_timeout: Duration,
    token: &CancellationToken,
) -> Result<Duration, String> {
    let argv = check.render(name);
    let started = Instant::now();
    loop {
        let last = match exec::run(&argv, command_timeout).await {
            Ok(out) if out.success() => return Ok(since.elapsed()),
            Ok(out) => {
                debug!(process = %name, command = %check, result = %out.describe(), output = %out.output.trim(), "health check not passed yet");
                format!("health check `{}` {}", check.program(), out.describe())
            }
            Err(e) => format!("health check `{}` could not run: {e}", check.program()),
        };
        if started.elapsed() + POLL > timeout || token.is_cancelled() {
            return Err(last);
        }
        tokio::select! {
            _ = tokio::time::sleep(POLL) => {}
            _ = token.cancelled() => return Err(last),
        }
    }
}
