//! What a row may make the daemon do: the host's config decides, the database only names.
//! Pure functions: the screen of a name before anything runs, and the restart plan from the
//! facts gathered about the host.

use crate::config::Strategy;

/// Unit types other than `.service`: a row naming one is refused (`reboot.target`,
/// `dbus.socket`, ...).
pub const FORBIDDEN_UNIT_SUFFIXES: &[&str] = &[
    ".target",
    ".socket",
    ".mount",
    ".timer",
    ".slice",
    ".scope",
    ".device",
    ".path",
    ".swap",
    ".automount",
];

/// The daemon's own name (and unit stem): never restarted through a row.
pub const OWN_NAME: &str = "monitor_service";

/// Why a name is refused; `brief` fits the 100-character notes, `reason` goes to the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub brief: String,
    pub reason: String,
}

impl Refusal {
    fn new(brief: impl Into<String>, reason: impl Into<String>) -> Refusal {
        Refusal {
            brief: brief.into(),
            reason: reason.into(),
        }
    }
}

/// What the host says about a name, for [`screen`].
#[derive(Debug, Clone, Default)]
pub struct Host<'a> {
    /// `[process.NAME]` exists.
    pub configured: bool,
    /// `[monitor] only_configured = yes`.
    pub only_configured: bool,
    /// The daemon's own names: its unit (when systemd runs it) and its program name.
    pub own_names: &'a [String],
}

/// Refuses, before anything is looked up or run, a name that is a non-service unit, the
/// daemon itself, or (with `only_configured`) not in the config.
pub fn screen(name: &str, host: &Host<'_>) -> Result<(), Refusal> {
    if let Some(suffix) = FORBIDDEN_UNIT_SUFFIXES.iter().find(|s| name.ends_with(*s)) {
        return Err(Refusal::new(
            format!("{suffix} units are never restarted"),
            format!(
                "process name {name:?} names a {suffix} unit: only processes and .service units are restarted; fix PROCESE.process_name"
            ),
        ));
    }
    let stem = name.strip_suffix(".service").unwrap_or(name);
    let own = stem == OWN_NAME
        || host.own_names.iter().any(|o| {
            let o_stem = o.strip_suffix(".service").unwrap_or(o);
            !o_stem.is_empty() && o_stem == stem
        });
    if own {
        return Err(Refusal::new(
            "the monitor never restarts itself",
            format!("process name {name:?} is monitor_service itself: it never restarts itself (systemd does); fix PROCESE.process_name"),
        ));
    }
    if host.only_configured && !host.configured {
        return Err(Refusal::new(
            "not in the config (only_configured)",
            format!("process {name:?} has no [process.{name}] section and [monitor] only_configured = yes: add the section to allow it"),
        ));
    }
    Ok(())
}

/// The running process a restart would act on (the root of its process tree).
#[derive(Debug, Clone, Default)]
pub struct Running {
    pub pid: i32,
    /// Its systemd `.service` unit, from its cgroup.
    pub unit: Option<String>,
    /// Why its own command line cannot start it again (`None` = it can: `/proc/PID/exe`
    /// and the command line resolve).
    pub not_relaunchable: Option<String>,
}

/// Everything [`plan`] decides from.
#[derive(Debug, Clone)]
pub struct Facts<'a> {
    pub name: &'a str,
    pub strategy: Strategy,
    /// `[process.NAME]` exists.
    pub configured: bool,
    /// The `unit` key.
    pub unit: Option<&'a str>,
    /// A `start_command` applies (from the section or `[process.default]`).
    pub start_command: bool,
    /// The running process, when one runs in our namespaces.
    pub running: Option<Running>,
    /// The daemon's own unit.
    pub own_unit: Option<&'a str>,
    /// A unit file `NAME.service` exists in systemd's unit directories.
    pub unit_file: bool,
}

/// How the `process` strategy starts the program again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// The configured `start_command`.
    Configured,
    /// The stopped process's own executable and command line.
    OwnCommandLine,
    /// The bare name from PATH (the config names the process).
    Path,
}

/// What to do for one restart attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Do nothing, and say why.
    Refuse(Refusal),
    /// `systemctl restart UNIT`; on failure fall back to `fallback` (when systemd has no job
    /// running for the unit).
    Service {
        unit: String,
        fallback: Option<Start>,
    },
    /// Ask systemd whether `unit` is loaded: if so as [`Plan::Service`], else `otherwise`.
    ServiceIfLoaded { unit: String, otherwise: Box<Plan> },
    /// Stop the processes (if any) and start it again.
    Process(Start),
}

/// True when what runs on the host can change the plan for this strategy and `unit` key:
/// only the `service` strategy with the unit named in the config is decided without looking
/// (always `systemctl restart UNIT`, no fallback), so its /proc scan is skipped.
pub fn needs_host_facts(strategy: Strategy, unit: Option<&str>) -> bool {
    !(strategy == Strategy::Service && unit.is_some())
}

/// Decides how to restart from `facts` (see DESIGN.md section 4): a process in a `.service`
/// unit goes through that unit; a row alone may restart a running process from its own
/// command line or a loaded `.service` unit, and nothing else.
pub fn plan(facts: &Facts<'_>) -> Plan {
    if let Some(p) = in_unit(facts) {
        return p;
    }
    let process = process_plan(facts);
    match facts.strategy {
        Strategy::Process => process,
        Strategy::Service => Plan::Service {
            unit: facts.unit.unwrap_or(facts.name).to_string(),
            fallback: None,
        },
        Strategy::Auto => {
            let named = facts.unit.is_some()
                || facts.configured
                || facts.running.is_some()
                || facts.name.ends_with(".service")
                || facts.unit_file;
            if named {
                Plan::ServiceIfLoaded {
                    unit: facts.unit.unwrap_or(facts.name).to_string(),
                    otherwise: Box::new(process),
                }
            } else {
                process
            }
        }
    }
}

/// A running process that belongs to a `.service` unit: through that unit (the `unit` key,
/// when set, names it), never behind systemd's back. A process in the daemon's own unit was
/// started by the daemon (or its predecessor): it is the daemon's to restart.
fn in_unit(facts: &Facts<'_>) -> Option<Plan> {
    let running = facts.running.as_ref()?;
    let cgroup_unit = running
        .unit
        .as_deref()
        .filter(|u| facts.own_unit != Some(*u))?;
    let name = facts.name;
    if facts.strategy == Strategy::Process {
        return Some(Plan::Refuse(Refusal::new(
            format!("runs in {cgroup_unit}; set restart_strategy"),
            format!("process {name:?} (pid {}) belongs to {cgroup_unit}: killing it behind systemd's back would start a second copy; set restart_strategy = service or auto in [process.{name}]", running.pid),
        )));
    }
    Some(Plan::Service {
        unit: facts.unit.unwrap_or(cgroup_unit).to_string(),
        fallback: None,
    })
}

/// The `process` strategy's plan: a running process from its own command line (or the
/// configured start command), a stopped one only when the config says how.
fn process_plan(facts: &Facts<'_>) -> Plan {
    let name = facts.name;
    if facts.start_command {
        return Plan::Process(Start::Configured);
    }
    match &facts.running {
        Some(r) => match &r.not_relaunchable {
            None => Plan::Process(Start::OwnCommandLine),
            Some(why) => Plan::Refuse(Refusal::new(
                "cannot be started again; set start_command",
                format!("process {name:?} (pid {}) would not be stopped: {why}; set start_command in [process.{name}]", r.pid),
            )),
        },
        None if facts.configured => Plan::Process(Start::Path),
        None => Plan::Refuse(Refusal::new(
            "not running and not in the config",
            format!("process {name:?} is not running and the config does not say how to start it: add [process.{name}] (with start_command or unit) to allow it"),
        )),
    }
}

/// The start a failed service restart may fall back to: only a plan that starts a process.
pub fn fallback_of(plan: &Plan) -> Option<Start> {
    match plan {
        Plan::Process(s) => Some(*s),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(configured: bool, only: bool) -> Host<'static> {
        Host {
            configured,
            only_configured: only,
            own_names: &[],
        }
    }

    #[test]
    fn non_service_units_are_refused() {
        for name in [
            "reboot.target",
            "poweroff.target",
            "dbus.socket",
            "home.mount",
            "fstrim.timer",
            "user.slice",
            "session-1.scope",
            "dev-sda.device",
            "x.path",
            "dev-dm.swap",
            "proc.automount",
        ] {
            let r = screen(name, &host(true, false)).unwrap_err();
            assert!(r.brief.contains("units are never restarted"), "{name}");
            assert!(r.reason.contains(name), "{}", r.reason);
        }
        assert!(screen("nginx.service", &host(false, false)).is_ok());
        assert!(screen("nginx", &host(false, false)).is_ok());
        assert!(screen("targetd", &host(false, false)).is_ok());
    }

    #[test]
    fn the_daemon_itself_is_refused() {
        let own = vec!["monitor_service.service".to_string(), "msd".to_string()];
        let h = Host {
            configured: true,
            only_configured: false,
            own_names: &own,
        };
        for name in [
            "monitor_service",
            "monitor_service.service",
            "msd",
            "msd.service",
        ] {
            let r = screen(name, &h).unwrap_err();
            assert!(r.reason.contains("itself"), "{name}: {r:?}");
        }
        assert!(screen("monitor", &h).is_ok());
    }

    #[test]
    fn only_configured_limits_to_sections() {
        assert!(screen("nginx", &host(false, true)).is_err());
        assert!(screen("nginx", &host(true, true)).is_ok());
        assert!(screen("nginx", &host(false, false)).is_ok());
        let r = screen("nginx", &host(false, true)).unwrap_err();
        assert!(r.reason.contains("[process.nginx]"), "{}", r.reason);
        assert!(r.brief.len() < 60);
    }

    fn facts(name: &str, strategy: Strategy) -> Facts<'_> {
        Facts {
            name,
            strategy,
            configured: false,
            unit: None,
            start_command: false,
            running: None,
            own_unit: None,
            unit_file: false,
        }
    }

    fn running(unit: Option<&str>) -> Option<Running> {
        Some(Running {
            pid: 42,
            unit: unit.map(str::to_string),
            not_relaunchable: None,
        })
    }

    /// Every combination of what the host could show: what `needs_host_facts` skips.
    fn host_variants<'a>(base: &Facts<'a>) -> Vec<Facts<'a>> {
        let mut out = Vec::new();
        for run in [
            None,
            running(None),
            running(Some("other.service")),
            running(Some("monitor_service.service")),
            Some(Running {
                pid: 7,
                unit: None,
                not_relaunchable: Some("deleted".into()),
            }),
        ] {
            for unit_file in [false, true] {
                let mut f = base.clone();
                f.running = run.clone();
                f.unit_file = unit_file;
                f.own_unit = Some("monitor_service.service");
                out.push(f);
            }
        }
        out
    }

    #[test]
    fn only_service_with_a_configured_unit_is_planned_without_the_host() {
        for strategy in [Strategy::Auto, Strategy::Service, Strategy::Process] {
            for unit in [None, Some("web.service")] {
                for (configured, start_command) in [(false, false), (true, false), (true, true)] {
                    let mut base = facts("web", strategy);
                    base.unit = unit;
                    base.configured = configured;
                    base.start_command = start_command;
                    let plans: Vec<Plan> = host_variants(&base).iter().map(plan).collect();
                    let same = plans.iter().all(|p| *p == plans[0]);
                    if !needs_host_facts(strategy, unit) {
                        assert!(same, "{strategy:?} {unit:?}: {plans:?}");
                        assert_eq!(
                            plans[0],
                            Plan::Service {
                                unit: "web.service".into(),
                                fallback: None
                            }
                        );
                    } else if !(strategy == Strategy::Process && start_command) {
                        // Where the host is looked at, it matters.
                        assert!(!same, "{strategy:?} {unit:?} {configured}: {plans:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn a_process_in_a_service_unit_goes_through_that_unit() {
        for strategy in [Strategy::Auto, Strategy::Service] {
            let mut f = facts("rsyslogd", strategy);
            f.running = running(Some("rsyslog.service"));
            assert_eq!(
                plan(&f),
                Plan::Service {
                    unit: "rsyslog.service".into(),
                    fallback: None
                }
            );
        }
        // Never killed behind systemd's back, even with the process strategy.
        let mut f = facts("httpd", Strategy::Process);
        f.running = running(Some("apache2.service"));
        assert!(matches!(plan(&f), Plan::Refuse(r) if r.reason.contains("apache2.service")));
        // A process in the daemon's own unit was started by the daemon: its own to restart.
        let mut f = facts("helper", Strategy::Process);
        f.running = running(Some("monitor_service.service"));
        f.own_unit = Some("monitor_service.service");
        assert_eq!(plan(&f), Plan::Process(Start::OwnCommandLine));
    }

    #[test]
    fn a_row_alone_starts_nothing_that_is_not_running() {
        let f = facts("reboot", Strategy::Auto);
        match plan(&f) {
            Plan::Refuse(r) => {
                assert!(r.reason.contains("[process.reboot]"), "{}", r.reason);
                assert_eq!(r.brief, "not running and not in the config");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            plan(&facts("reboot", Strategy::Process)),
            Plan::Refuse(_)
        ));
    }

    #[test]
    fn a_row_alone_restarts_a_running_process_or_a_loaded_service() {
        let mut f = facts("worker", Strategy::Auto);
        f.running = running(None);
        assert_eq!(
            plan(&f),
            Plan::ServiceIfLoaded {
                unit: "worker".into(),
                otherwise: Box::new(Plan::Process(Start::OwnCommandLine))
            }
        );
        let mut f = facts("worker", Strategy::Process);
        f.running = running(None);
        assert_eq!(plan(&f), Plan::Process(Start::OwnCommandLine));
        // A unit named by the row, or with a unit file, is asked about.
        let f = facts("nginx.service", Strategy::Auto);
        assert!(
            matches!(plan(&f), Plan::ServiceIfLoaded { otherwise, .. } if matches!(*otherwise, Plan::Refuse(_)))
        );
        let mut f = facts("nginx", Strategy::Auto);
        f.unit_file = true;
        assert!(matches!(plan(&f), Plan::ServiceIfLoaded { unit, .. } if unit == "nginx"));
    }

    #[test]
    fn a_running_process_that_cannot_be_started_again_is_not_stopped() {
        let mut f = facts("worker", Strategy::Process);
        f.running = Some(Running {
            pid: 7,
            unit: None,
            not_relaunchable: Some("its executable was deleted".into()),
        });
        match plan(&f) {
            Plan::Refuse(r) => {
                assert!(r.reason.contains("start_command"), "{}", r.reason);
                assert!(r.reason.contains("deleted"), "{}", r.reason);
            }
            other => panic!("{other:?}"),
        }
        f.start_command = true;
        assert_eq!(plan(&f), Plan::Process(Start::Configured));
    }

    #[test]
    fn the_config_allows_starting() {
        let mut f = facts("app", Strategy::Process);
        f.configured = true;
        assert_eq!(plan(&f), Plan::Process(Start::Path));
        f.start_command = true;
        assert_eq!(plan(&f), Plan::Process(Start::Configured));
        let mut f = facts("app", Strategy::Auto);
        f.configured = true;
        f.unit = Some("app-custom.service");
        assert_eq!(
            plan(&f),
            Plan::ServiceIfLoaded {
                unit: "app-custom.service".into(),
                otherwise: Box::new(Plan::Process(Start::Path))
            }
        );
        let mut f = facts("svc", Strategy::Service);
        f.unit = Some("custom.service");
        assert_eq!(
            plan(&f),
            Plan::Service {
                unit: "custom.service".into(),
                fallback: None
            }
        );
    }

    #[test]
    fn fallback_only_to_a_start() {
        assert_eq!(fallback_of(&Plan::Process(Start::Path)), Some(Start::Path));
        assert_eq!(fallback_of(&Plan::Refuse(Refusal::new("a", "b"))), None);
    }
}
