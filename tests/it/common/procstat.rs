//! What /proc says about a process: resident memory, CPU time, process-group members.

use std::sync::OnceLock;

/// `VmRSS` of `pid` in kB.
pub fn vm_rss_kb(pid: i32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Fields after `(comm)` of /proc/PID/stat: index 0 is the state (field 3).
fn stat_fields(pid: i32) -> Option<(String, Vec<String>)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat[open + 1..close].to_string();
    let rest = stat[close + 2..]
        .split_whitespace()
        .map(str::to_string)
        .collect();
    Some((comm, rest))
}

/// utime + stime of `pid` in clock ticks.
pub fn cpu_ticks(pid: i32) -> Option<u64> {
    let (_, f) = stat_fields(pid)?;
    // utime is field 14, stime field 15; index 0 here is field 3.
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// Clock ticks per second (`getconf CLK_TCK`, 100 when that fails).
pub fn clk_tck() -> u64 {
    static TCK: OnceLock<u64> = OnceLock::new();
    *TCK.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .unwrap_or(100)
    })
}

/// Live (not zombie) processes whose process group is `pgid`, as `(pid, comm)`.
pub fn group_members(pgid: i32) -> Vec<(i32, String)> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let Some((comm, f)) = stat_fields(pid) else {
            continue;
        };
        let state = f.first().map(String::as_str).unwrap_or("");
        let pgrp: Option<i32> = f.get(2).and_then(|s| s.parse().ok());
        if pgrp == Some(pgid) && !matches!(state, "Z" | "X" | "x") {
            out.push((pid, comm));
        }
    }
    out
}
