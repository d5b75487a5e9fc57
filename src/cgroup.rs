//! Which systemd unit a process belongs to, read from `/proc/PID/cgroup` (cgroup v2
//! `0::/system.slice/X.service` and the v1 `name=systemd:` hierarchy).

use std::path::Path;

/// The `.service` unit of the system manager that a process belongs to, from the text of its
/// `/proc/PID/cgroup`; `None` when it belongs to none (the root cgroup, `init.scope`, a
/// session scope, a container's cgroup, or a user manager's units under `user@UID.service`).
///
/// The v1 `name=systemd:` line is the one systemd tracks units with on hybrid hosts (RHEL 7/8),
/// so it wins over the `0::` line; on a v2-only host (RHEL 9) the `0::` line is all there is.
pub fn service_unit(cgroup: &str) -> Option<String> {
    let mut v1 = None;
    let mut v2 = None;
    for line in cgroup.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(id), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        if controllers == "name=systemd" {
            v1 = Some(path);
        } else if id == "0" && controllers.is_empty() {
            v2 = Some(path);
        }
    }
    unit_of_path(v1.or(v2)?)
}

/// The deepest unit named in a cgroup path, when it is a system `.service`.
fn unit_of_path(path: &str) -> Option<String> {
    let mut deepest: Option<&str> = None;
    for part in path.split('/').filter(|p| !p.is_empty()) {
        if part.starts_with("user@") && part.ends_with(".service") {
            // A user's own service manager: its units are not the system's.
            return None;
        }
        if is_unit_name(part) {
            deepest = Some(part);
        }
    }
    deepest
        .filter(|u| u.ends_with(".service"))
        .map(str::to_string)
}

/// Unit suffixes that may appear in a cgroup path.
fn is_unit_name(part: &str) -> bool {
    [".service", ".scope", ".slice"]
        .iter()
        .any(|s| part.len() > s.len() && part.ends_with(s))
}

/// The `.service` unit of process `pid`, `None` when it has none or is gone.
pub fn unit_of_pid(pid: i32) -> Option<String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    service_unit(&text)
}

/// The daemon's own `.service` unit, when systemd runs it.
pub fn own_unit() -> Option<String> {
    let text = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    service_unit(&text)
}

/// True when systemd is the service manager of this host (`/run/systemd/system` exists, the
/// test `sd_booted(3)` makes).
pub fn systemd_running() -> bool {
    Path::new("/run/systemd/system").is_dir()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v2_service() {
        assert_eq!(
            service_unit("0::/system.slice/rsyslog.service\n").as_deref(),
            Some("rsyslog.service")
        );
        // A delegated sub-cgroup still belongs to the unit.
        assert_eq!(
            service_unit("0::/system.slice/docker.service/sub\n").as_deref(),
            Some("docker.service")
        );
        assert_eq!(
            service_unit("0::/system.slice/system-getty.slice/getty@tty1.service\n").as_deref(),
            Some("getty@tty1.service")
        );
    }

    #[test]
    fn v1_name_systemd_wins_over_unified() {
        let rhel7 = "11:pids:/system.slice/httpd.service\n\
                     3:cpu,cpuacct:/system.slice/httpd.service\n\
                     1:name=systemd:/system.slice/apache2.service\n";
        assert_eq!(service_unit(rhel7).as_deref(), Some("apache2.service"));
        let hybrid = "1:name=systemd:/system.slice/bar.service\n0::/\n";
        assert_eq!(service_unit(hybrid).as_deref(), Some("bar.service"));
        let hybrid_root = "1:name=systemd:/\n0::/system.slice/x.service\n";
        assert_eq!(service_unit(hybrid_root), None);
    }

    #[test]
    fn not_a_system_service() {
        for text in [
            "0::/\n",
            "0::/init.scope\n",
            "0::/user.slice/user-1000.slice/session-3.scope\n",
            "0::/user.slice/user-1000.slice/user@1000.service/app.slice/foo.service\n",
            "0::/system.slice/docker-abc.scope\n",
            "0::/system.slice\n",
            "1:name=systemd:/lxc/ct1\n",
            "",
            "garbage",
            "9:memory:/system.slice/x.service\n",
        ] {
            assert_eq!(service_unit(text), None, "{text:?}");
        }
    }

    #[test]
    fn our_own_process_is_readable() {
        // Whatever cgroup the tests run in, reading it never fails loudly.
        let _ = own_unit();
        assert_eq!(unit_of_pid(-5), None);
    }
}
