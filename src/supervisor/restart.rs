//! Restart strategies: decide once per procedure how (systemd unit of the running process,
//! `systemctl restart UNIT`, or stop by exact name and start again detached), then carry that
//! out once per attempt.

use tracing::{debug, info, warn};

use super::systemctl::{self, Restarted};
use crate::cgroup;
use crate::config::{Account, ProcessConfig};
use crate::exec;
use crate::policy::{self, Facts, Plan, Refusal, Running, Start};
use crate::procs::{self, Identity, Launch};

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

/// What the host allows for one name, for [`decide`].
pub struct Subject<'a> {
    pub name: &'a str,
    pub settings: &'a ProcessConfig,
    /// `[process.NAME]` exists.
    pub configured: bool,
    pub systemctl: &'a str,
    pub own_unit: Option<&'a str>,
}

/// The decision for one procedure: what to do, with the running process's own command line
/// taken before anything is stopped.
#[derive(Debug, Clone)]
pub struct Decision {
    pub plan: Plan,
    /// The root process's own launch (its executable, command line, directory, identity).
    own: Option<Launch>,
    /// The root process's identity, for a configured start command.
    old_identity: Option<Identity>,
}

/// Looks at the host (running processes, their unit, systemd's units) and decides how to
/// restart, or refuses.
pub async fn decide(s: &Subject<'_>) -> Decision {
    let look = policy::needs_host_facts(s.settings.restart_strategy, s.settings.unit.as_deref());
    let found = if look {
        procs::find_by_name(s.name)
    } else {
        debug!(process = %s.name, "service strategy with a configured unit: /proc not scanned");
        Vec::new()
    };
    let root = procs::tree_root(&found);
    let own = root.map(procs::relaunch_of);
    let running = root.map(|r| Running {
        pid: r.pid,
        unit: cgroup::unit_of_pid(r.pid),
        not_relaunchable: own.as_ref().and_then(|o| o.as_ref().err().cloned()),
    });
    let facts = Facts {
        name: s.name,
        strategy: s.settings.restart_strategy,
        configured: s.configured,
        unit: s.settings.unit.as_deref(),
        start_command: s.settings.start_command.is_some(),
        running,
        own_unit: s.own_unit,
        unit_file: look && !s.configured && root.is_none() && systemctl::unit_file_exists(s.name),
    };
    let plan = resolve(policy::plan(&facts), s).await;
    debug!(process = %s.name, plan = ?plan, "restart decided");
    Decision {
        plan,
        own: own.and_then(Result::ok),
        old_identity: root.map(|r| r.identity.clone()),
    }
}

/// Asks systemd what [`Plan::ServiceIfLoaded`] needs to know.
async fn resolve(plan: Plan, s: &Subject<'_>) -> Plan {
    match plan {
        Plan::ServiceIfLoaded { unit, otherwise } => {
            if systemctl::loaded(s.systemctl, &unit, s.settings.command_timeout).await {
                Plan::Service {
                    fallback: policy::fallback_of(&otherwise),
                    unit,
                }
            } else {
                debug!(process = %s.name, unit = %unit, "systemd does not know the unit");
                *otherwise
            }
        }
        other => other,
    }
}

/// Why an attempt did not restart.
pub enum AttemptError {
    /// Failed: try again (the reason goes to the notes).
    Failed(String),
    /// Refused: nothing was or will be done.
    Refused(Refusal),
}

/// One restart attempt by `decision`.
pub async fn restart(s: &Subject<'_>, decision: &Decision) -> Result<Method, AttemptError> {
    match &decision.plan {
        Plan::Refuse(r) => Err(AttemptError::Refused(r.clone())),
        Plan::Service { unit, fallback } => {
            let timeout = s.settings.command_timeout;
            match systemctl::restart(s.systemctl, unit, timeout).await {
                Restarted::Done => Ok(Method::Service),
                Restarted::JobRunning(e) => Err(AttemptError::Failed(e)),
                Restarted::Failed(e) => match fallback {
                    Some(start) => {
                        warn!(process = %s.name, unit = %unit, error = %e, "service restart failed; falling back to the process strategy");
                        restart_process(s, decision, *start).await
                    }
                    None => Err(AttemptError::Failed(e)),
                },
            }
        }
        Plan::ServiceIfLoaded { .. } => Err(AttemptError::Failed(
            "internal: the plan was not resolved".to_string(),
        )),
        Plan::Process(start) => restart_process(s, decision, *start).await,
    }
}

/// Stops every process named exactly `name` (SIGTERM, SIGKILL after `stop_timeout`) and starts
/// it again detached as `start` says.
async fn restart_process(
    s: &Subject<'_>,
    decision: &Decision,
    start: Start,
) -> Result<Method, AttemptError> {
    let name = s.name;
    let launch = launch_for(s, decision, start).map_err(AttemptError::Failed)?;
    let running = procs::find_by_name(name);
    if let Some((pid, unit)) = running
        .iter()
        .find_map(|p| Some((p.pid, cgroup::unit_of_pid(p.pid)?)))
        .filter(|(_, unit)| s.own_unit != Some(unit.as_str()))
    {
        return Err(AttemptError::Failed(format!(
            "pid {pid} of {name} now belongs to {unit}; not killed behind systemd's back"
        )));
    }
    if !running.is_empty() {
        let targets: Vec<procs::Target> = running.iter().map(procs::Target::from).collect();
        let report = procs::stop_targets(&targets, s.settings.stop_timeout).await;
        if !report.still_alive.is_empty() {
            return Err(AttemptError::Failed(format!(
                "could not stop {name}: pids {:?} survived SIGKILL",
                report.still_alive
            )));
        }
        let pids: Vec<i32> = running.iter().map(|p| p.pid).collect();
        info!(process = %name, pids = ?pids, terminated = report.terminated, killed = report.killed, "stopped");
    }
    match procs::spawn(&launch, use_scope(&launch)) {
        Ok(pid) => {
            info!(process = %name, pid, command = ?launch.argv, uid = ?launch.identity.as_ref().map(|i| i.uid), "started");
            Ok(Method::Process)
        }
        Err(e) => Err(AttemptError::Failed(format!("could not start {name}: {e}"))),
    }
}

/// True when the relaunched process can leave the daemon's cgroup through a transient scope:
/// systemd runs the host and has `systemd-run` (and `setpriv` for a non-root identity).
fn use_scope(launch: &Launch) -> bool {
    let needs_setpriv = launch.identity.as_ref().is_some_and(|i| !i.is_plain_root());
    let scope = cgroup::systemd_running()
        && exec::find_program("systemd-run").is_some()
        && (!needs_setpriv || exec::find_program("setpriv").is_some());
    if cgroup::systemd_running() && !scope {
        warn!(program = %launch.program, "systemd runs this host but systemd-run or setpriv is missing: the process stays in monitor_service's cgroup");
    }
    scope
}

/// The launch for `start`, with the identity the config or the old process gives.
fn launch_for(s: &Subject<'_>, decision: &Decision, start: Start) -> Result<Launch, String> {
    let name = s.name;
    let mut launch = match start {
        Start::Configured => {
            let argv = s
                .settings
                .start_command
                .as_ref()
                .map(|c| c.render(name))
                .unwrap_or_default();
            let mut l = Launch::command(&argv);
            l.identity = decision.old_identity.clone();
            l
        }
        Start::OwnCommandLine => decision.own.clone().ok_or_else(|| {
            format!("cannot start {name} again: its command line was not saved; set start_command")
        })?,
        Start::Path => Launch::command(&[name.to_string()]),
    };
    launch.identity = identity(
        launch.identity.take(),
        s.settings.user.as_ref(),
        s.settings.group.as_ref(),
    );
    Ok(launch)
}

/// The identity to start with: the `user`/`group` keys override the old process's.
fn identity(
    old: Option<Identity>,
    user: Option<&Account>,
    group: Option<&Account>,
) -> Option<Identity> {
    if user.is_none() && group.is_none() {
        return old;
    }
    let mut id = old.unwrap_or_default();
    if let Some(u) = user {
        id.uid = u.id;
        id.gid = u.gid.unwrap_or(id.gid);
        id.groups = user_groups(&u.name, id.gid);
    }
    if let Some(g) = group {
        id.gid = g.id;
        if user.is_none() {
            id.groups = vec![g.id];
        }
    }
    Some(id)
}

/// The supplementary groups of account `name` (from /etc/group), its primary group included.
fn user_groups(name: &str, gid: u32) -> Vec<u32> {
    let Ok(cname) = std::ffi::CString::new(name) else {
        return vec![gid];
    };
    nix::unistd::getgrouplist(&cname, nix::unistd::Gid::from_raw(gid))
        .map(|g| g.into_iter().map(|g| g.as_raw()).collect())
        .unwrap_or_else(|_| vec![gid])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account(id: u32, gid: Option<u32>) -> Account {
        Account {
            name: "root".to_string(),
            id,
            gid,
        }
    }

    #[test]
    fn identity_keys_override_the_old_process() {
        let old = Identity {
            uid: 1000,
            gid: 1000,
            groups: vec![1000, 27],
        };
        assert_eq!(identity(Some(old.clone()), None, None), Some(old.clone()));
        assert_eq!(identity(None, None, None), None);
        let g = account(50, None);
        let id = identity(Some(old.clone()), None, Some(&g)).unwrap();
        assert_eq!((id.uid, id.gid, id.groups), (1000, 50, vec![50]));
        let u = account(0, Some(0));
        let id = identity(Some(old), Some(&u), None).unwrap();
        assert_eq!((id.uid, id.gid), (0, 0));
        assert!(id.groups.contains(&0));
    }
}
