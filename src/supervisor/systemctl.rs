//! Talking to systemd through `systemctl`: restart a unit, read a unit's properties from
//! `systemctl show` (`Key=value` lines, as systemd 219 prints them: no `--value`).

use std::collections::BTreeMap;
use std::time::Duration;

use tracing::warn;

use crate::exec::{self, ExitKind};

/// Directories systemd loads system unit files from, generated ones included (e.g. the
/// `.service` units systemd-sysv-generator makes for /etc/init.d scripts on RHEL).
const UNIT_DIRS: &[&str] = &[
    "/etc/systemd/system",
    "/run/systemd/system",
    "/run/systemd/transient",
    "/run/systemd/generator.early",
    "/run/systemd/generator",
    "/run/systemd/generator.late",
    "/usr/local/lib/systemd/system",
    "/usr/lib/systemd/system",
    "/lib/systemd/system",
];

/// How a `systemctl restart` ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Restarted {
    /// Exit 0 (or timed out and the unit is active since).
    Done,
    /// Failed; the `process` strategy may take over.
    Failed(String),
    /// Timed out while systemd still works on the unit's job: starting a copy of our own now
    /// would make two.
    JobRunning(String),
}

/// `Key=value` lines of `systemctl show` into a map (lines without `=` are skipped).
pub fn parse_show(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

/// One property of `unit`, `None` when systemctl cannot say.
pub async fn property(systemctl: &str, unit: &str, key: &str, timeout: Duration) -> Option<String> {
    exec::find_program(systemctl)?;
    let argv = vec![
        systemctl.to_string(),
        "show".to_string(),
        format!("--property={key}"),
        unit.to_string(),
    ];
    match exec::run(&argv, timeout).await {
        Ok(out) if out.success() => parse_show(&out.output).remove(key),
        _ => None,
    }
}

/// True when systemd has `unit` loaded (`LoadState=loaded`).
pub async fn loaded(systemctl: &str, unit: &str, timeout: Duration) -> bool {
    property(systemctl, unit, "LoadState", timeout)
        .await
        .as_deref()
        == Some("loaded")
}

/// True when a unit file for `name` (`name.service` unless it has the suffix) is in one of
/// systemd's unit directories.
pub fn unit_file_exists(name: &str) -> bool {
    let file = if name.ends_with(".service") {
        name.to_string()
    } else {
        format!("{name}.service")
    };
    UNIT_DIRS
        .iter()
        .any(|d| std::path::Path::new(d).join(&file).is_file())
}

/// `systemctl restart UNIT`, exit status checked; a timeout is judged by the unit's state.
pub async fn restart(systemctl: &str, unit: &str, timeout: Duration) -> Restarted {
    let argv = vec![
        systemctl.to_string(),
        "restart".to_string(),
        unit.to_string(),
    ];
    let out = match exec::run(&argv, timeout).await {
        Ok(out) => out,
        Err(e) => return Restarted::Failed(format!("`{systemctl}` could not run: {e}")),
    };
    if out.success() {
        return Restarted::Done;
    }
    warn!(unit = %unit, result = %out.describe(), output = %out.output.trim(), "`systemctl restart` failed");
    let failed = format!("`systemctl restart {unit}` {}", out.describe());
    if out.status != ExitKind::TimedOut {
        return Restarted::Failed(failed);
    }
    let state = property(systemctl, unit, "ActiveState", timeout).await;
    judge_timeout(failed, state.as_deref())
}

/// A timed-out restart: done when the unit is active now, still running while systemd is
/// (de)activating it, failed otherwise.
fn judge_timeout(failed: String, active_state: Option<&str>) -> Restarted {
    match active_state {
        Some("active") => Restarted::Done,
        Some(s @ ("activating" | "deactivating" | "reloading")) => {
            warn!(error = %failed, active_state = s, "systemd still works on the unit's job; no second copy is started");
            Restarted::JobRunning(format!("still {s}; systemctl restart timed out"))
        }
        _ => Restarted::Failed(failed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn show_output_of_old_and_new_systemd() {
        // systemd 219 (RHEL 7) has no --value: Key=value lines.
        let m = parse_show("LoadState=loaded\nActiveState=active\n");
        assert_eq!(m.get("LoadState").map(String::as_str), Some("loaded"));
        assert_eq!(m.get("ActiveState").map(String::as_str), Some("active"));
        let m = parse_show("LoadState=not-found\n");
        assert_eq!(m.get("LoadState").map(String::as_str), Some("not-found"));
        // A bare value (what --value prints) is not taken for a property.
        assert!(parse_show("loaded\n").is_empty());
        let m = parse_show("ExecStart={ path=/bin/x ; argv[]=/bin/x a=b }\n");
        assert!(m["ExecStart"].contains("a=b"));
    }

    #[test]
    fn timed_out_restart_is_judged_by_the_unit_state() {
        let f = || "`systemctl restart x` timed out after 30.0s".to_string();
        assert_eq!(judge_timeout(f(), Some("active")), Restarted::Done);
        assert!(matches!(
            judge_timeout(f(), Some("activating")),
            Restarted::JobRunning(m) if m.starts_with("still activating")
        ));
        assert!(matches!(
            judge_timeout(f(), Some("deactivating")),
            Restarted::JobRunning(_)
        ));
        assert!(matches!(
            judge_timeout(f(), Some("failed")),
            Restarted::Failed(_)
        ));
        assert!(matches!(judge_timeout(f(), None), Restarted::Failed(_)));
    }

    #[test]
    fn unit_files_are_looked_for_by_service_name() {
        assert!(!unit_file_exists("no-such-unit-xyz"));
        assert!(!unit_file_exists("reboot"));
    }
}
