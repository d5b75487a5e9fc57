//! Restart strategies: `service` (systemctl restart UNIT), `process` (stop by exact name,
//! start again detached) and `auto` (service when systemd knows the unit, else process).

use std::time::Duration;

use tracing::{debug, info, warn};

use crate::command::CommandTemplate;
use crate::config::{ProcessConfig, Strategy};
use crate::exec;
use crate::procs;

/// How a restart was done, for notes and history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Service,
    Process,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Service => "service",
            Method::Process => "process",
        }
    }
}

/// Restarts `name` with its strategy; on failure returns why.
pub async fn restart(
    name: &str,
    settings: &ProcessConfig,
    systemctl: &str,
) -> Result<Method, String> {
    let unit = settings.unit.as_deref().unwrap_or(name);
    match settings.restart_strategy {
        Strategy::Service => restart_service(systemctl, unit, settings.command_timeout)
            .await
            .map(|()| Method::Service),
        Strategy::Process => restart_process(name, settings)
            .await
            .map(|()| Method::Process),
        Strategy::Auto => {
            if unit_known(systemctl, unit, settings.command_timeout).await {
                match restart_service(systemctl, unit, settings.command_timeout).await {
                    Ok(()) => return Ok(Method::Service),
                    Err(e) => {
                        warn!(process = %name, unit = %unit, error = %e, "service restart failed; falling back to the process strategy");
                    }
                }
            } else {
                debug!(process = %name, unit = %unit, "systemd does not know the unit; using the process strategy");
            }
            restart_process(name, settings)
                .await
                .map(|()| Method::Process)
        }
    }
}

/// `systemctl restart UNIT`, exit status checked.
async fn restart_service(systemctl: &str, unit: &str, timeout: Duration) -> Result<(), String> {
    let argv = vec![
        systemctl.to_string(),
        "restart".to_string(),
        unit.to_string(),
    ];
    match exec::run(&argv, timeout).await {
        Ok(out) if out.success() => Ok(()),
        Ok(out) => {
            warn!(unit = %unit, result = %out.describe(), output = %out.output.trim(), "`systemctl restart` failed");
            Err(format!("`systemctl restart {unit}` {}", out.describe()))
        }
        Err(e) => Err(format!("`{systemctl}` could not run: {e}")),
    }
}

/// True when `systemctl show --property=LoadState --value UNIT` says `loaded`.
async fn unit_known(systemctl: &str, unit: &str, timeout: Duration) -> bool {
    if exec::find_program(systemctl).is_none() {
        return false;
    }
    let argv: Vec<String> = [systemctl, "show", "--property=LoadState", "--value", unit]
        .iter()
        .map(|s| s.to_string())
        .collect();
    match exec::run(&argv, timeout).await {
        Ok(out) => out.success() && out.output.trim() == "loaded",
        Err(_) => false,
    }
}

/// Stops every process named exactly `name` (SIGTERM, SIGKILL after `stop_timeout`) and starts
/// it again detached: the configured start command, else the killed process's command line,
/// else the name on PATH.
async fn restart_process(name: &str, settings: &ProcessConfig) -> Result<(), String> {
    let running = procs::find_by_name(name);
    let argv = start_argv(name, settings.start_command.as_ref(), running.first())?;
    if !running.is_empty() {
        let pids: Vec<i32> = running.iter().map(|p| p.pid).collect();
        let report = procs::stop(&pids, settings.stop_timeout).await;
        if !report.still_alive.is_empty() {
            return Err(format!(
                "could not stop {name}: pids {:?} survived SIGKILL",
                report.still_alive
            ));
        }
        info!(process = %name, pids = ?pids, terminated = report.terminated, killed = report.killed, "stopped");
    }
    let cwd = running.first().and_then(|p| p.cwd.clone());
    let start_cwd = if settings.start_command.is_some() {
        None
    } else {
        cwd
    };
    match procs::spawn_detached(&argv, start_cwd.as_deref()) {
        Ok(pid) => {
            info!(process = %name, pid, command = ?argv, "started");
            Ok(())
        }
        Err(e) => Err(format!("could not start {name}: {e}")),
    }
}

/// The argv that starts `name` again.
fn start_argv(
    name: &str,
    start_command: Option<&CommandTemplate>,
    running: Option<&procs::ProcInfo>,
) -> Result<Vec<String>, String> {
    if let Some(cmd) = start_command {
        return Ok(cmd.render(name));
    }
    if let Some(info) = running {
        let argv = procs::relaunch_argv(info);
        if !argv.is_empty() {
            return Ok(argv);
        }
    }
    if exec::find_program(name).is_some() {
        return Ok(vec![name.to_string()]);
    }
    Err(format!(
        "cannot start {name}: no start_command, no running instance, not on PATH"
    ))
}
