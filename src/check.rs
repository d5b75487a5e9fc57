//! `--check-config`: the config is valid (it was loaded), the database is reachable, the
//! account has its privileges, and the programs the commands name exist on this host.

use std::collections::BTreeSet;

use crate::config::{BinlogMode, Config};
use crate::db::Db;
use crate::exec;
use crate::exit;
use crate::source::binlog;

/// One finding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    Ok(String),
    Warning(String),
    Error(String),
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Finding::Ok(m) => write!(f, "ok: {m}"),
            Finding::Warning(m) => write!(f, "warning: {m}"),
            Finding::Error(m) => write!(f, "error: {m}"),
        }
    }
}

/// What `--check-config` found and the exit code it leads to.
#[derive(Debug, Clone)]
pub struct Report {
    pub findings: Vec<Finding>,
    pub exit_code: i32,
}

/// Programs named by the config that are not on this host: warnings, not errors (the config
/// may be shared by hosts that run different services).
pub fn missing_programs(config: &Config) -> Vec<Finding> {
    let mut programs = BTreeSet::new();
    programs.insert(config.monitor.systemctl.clone());
    if let Some(alert) = &config.alerts.command {
        programs.insert(alert.program().to_string());
    }
    for p in std::iter::once(&config.process_default).chain(config.processes.values()) {
        for cmd in [
            &p.pre_restart_command,
            // The default `pgrep %s` is checked inside the daemon: no program needed.
            &Some(p.health_check_command.clone())
                .filter(|c| !crate::supervisor::health::is_builtin(c)),
            &p.start_command,
        ]
        .into_iter()
        .flatten()
        {
            let prog = cmd.program();
            if !prog.contains("%s") {
                programs.insert(prog.to_string());
            }
        }
    }
    programs
        .into_iter()
        .filter(|p| exec::find_program(p).is_none())
        .map(|p| {
            Finding::Warning(format!(
                "program `{p}` named in the config is not found on this host"
            ))
        })
        .collect()
}

/// The binlog readiness as the daemon would judge it at start-up; the bool is true when
/// `binlog = on` and it cannot be followed (the daemon would refuse to start).
async fn binlog_readiness(config: &Config, db: &Db) -> (Vec<Finding>, bool) {
    let mode = config.monitor.binlog;
    if mode == BinlogMode::Off {
        return (vec![Finding::Ok("binlog = off: sweeps only".into())], false);
    }
    let problems = match crate::source::replica::check(config, db).await {
        Ok(r) => {
            let at = r.position.map(|p| p.to_string()).unwrap_or_default();
            let mut findings = vec![Finding::Ok(format!(
                "the binlog can be followed (ROW, now at {at}, server_id {})",
                binlog::server_id(config.monitor.server_id)
            ))];
            findings.extend(
                r.settings
                    .report()
                    .into_iter()
                    .map(|s| Finding::Ok(format!("binlog: {s}"))),
            );
            return (findings, false);
        }
        Err(problems) => problems,
    };
    let on = mode == BinlogMode::On;
    let findings = problems
        .into_iter()
        .map(|p| {
            if on {
                Finding::Error(format!("binlog: {p}"))
            } else {
                Finding::Warning(format!(
                    "binlog (the daemon would run on sweeps alone): {p}"
                ))
            }
        })
        .collect();
    (findings, on)
}

/// Host scoping: which rows are this daemon's, and how many no live daemon handles.
async fn scope_finding(config: &Config, db: &Db) -> Finding {
    match crate::status::count_unowned(db, config).await {
        Ok(unowned) => Finding::Ok(format!(
            "host {}: {}",
            config.monitor.host,
            unowned.describe()
        )),
        Err(e) => Finding::Warning(format!("host scoping cannot be checked: {e}")),
    }
}

/// Runs every check.
pub async fn check(config: &Config) -> Report {
    let mut findings = vec![Finding::Ok(format!(
        "config {} is valid",
        config.path.display()
    ))];
    findings.extend(missing_programs(config));
    let db = Db::new(&config.database, &config.monitor.history_table);
    let mut exit_code = 0;
    match db.prepare().await {
        Err(e) => {
            findings.push(Finding::Error(e.to_string()));
            exit_code = if e
                .server_code()
                .is_some_and(|c| matches!(c, 1142 | 1143 | 1227 | 1044))
            {
                exit::NOPERM
            } else {
                // 1045 -> 77, 1049 -> 78, unreachable -> 69: as the daemon's start-up.
                e.exit_code()
            };
        }
        Ok(()) => {
            findings.push(Finding::Ok(format!("database {} reachable", db.target())));
            match db.missing_privileges().await {
                Ok(missing) if missing.is_empty() => findings.push(Finding::Ok(
                    "the account has the privileges the daemon uses".into(),
                )),
                Ok(missing) => {
                    exit_code = exit::NOPERM;
                    findings.extend(missing.into_iter().map(Finding::Error));
                }
                Err(e) => {
                    exit_code = exit::UNAVAILABLE;
                    findings.push(Finding::Error(e.to_string()));
                }
            }
            let (binlog_findings, binlog_fatal) = binlog_readiness(config, &db).await;
            findings.extend(binlog_findings);
            findings.push(scope_finding(config, &db).await);
            if binlog_fatal && exit_code == 0 {
                exit_code = exit::UNAVAILABLE;
            }
        }
    }
    db.close().await;
    Report {
        findings,
        exit_code,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_alert_program_is_a_warning() {
        let text = "[monitor]\nsystemctl = /bin/true\n[alerts]\ncommand = /no/such/alerter %s\n\
                    [process.default]\nhealth_check_command = /bin/true\n";
        let config = Config::parse(text, std::path::Path::new("c.ini"))
            .unwrap()
            .config;
        let found: Vec<String> = missing_programs(&config)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            found,
            vec![
                "warning: program `/no/such/alerter` named in the config is not found on this host"
            ]
        );
    }
}
