//! The fleet scenario: N daemons (distinct `[monitor] host`, 10 processes each in PROCESE with
//! the host column, distinct server_id) on one server, or reading the binlog from a replica
//! while querying the primary: alarm-to-restart for one host's process, the server's CPU per
//! idle daemon and per 1000 row events/s of unrelated noise, daemon RSS and CPU.

use super::*;

/// Processes per host.
const PER_HOST: usize = 10;
/// Rows of the NOISE table.
const NOISE_ROWS: u64 = 20_000;

/// What one `fleet` command measures.
pub(crate) struct Plan {
    pub ns: Vec<usize>,
    /// The quiet window for idle CPU (a multiple of the 10 s MONITOR_HOSTS interval).
    pub idle: Duration,
    /// Alarms on host h1's processes, `gap` apart.
    pub alarms: usize,
    pub gap: Duration,
    /// Noise rate (rows/s) and how long it is measured.
    pub noise_rate: u64,
    pub noise: Duration,
    /// Daemons read the binlog from a replica of the server they query.
    pub replica: bool,
    /// How the daemons of h2..hN run.
    pub others: Others,
    /// Each process has its `[process.pN] unit = pN.service` (`units=config`): the service
    /// strategy then decides without scanning /proc.
    pub units_in_config: bool,
}

/// How the daemons other than h1's run.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Others {
    /// Like h1's.
    Same,
    /// At nice 19: as if on other machines, they take little of the CPU the server and h1's
    /// daemon need (`others=nice`).
    Niced,
    /// With `binlog = off` (sweeps only): no binlog stream, so the server fans nothing out to
    /// them (`others=sweep`).
    Sweep,
    /// In a CPU cgroup of the least weight (`others=cgroup`): as if on their own machines,
    /// they run on what the server, h1's daemon and the bench leave (nice 19 cannot do that
    /// for 99 processes: their weights add up), while the server still feeds all N streams.
    Cgroup,
}

/// Where `others=cgroup` puts h2..hN: under cgroup v1's `cpu` hierarchy, or v2's root.
const OTHERS_CGROUP_V1: &str = "/sys/fs/cgroup/cpu/monitor_bench_others";
const OTHERS_CGROUP_V2: &str = "/sys/fs/cgroup/monitor_bench_others";

/// The CPU cgroup of `others=cgroup`: cgroup v1's `cpu` hierarchy with `cpu.shares = 2`, or
/// v2 with `cpu.weight = 1` (the cpu controller enabled for the root's children).
fn others_cgroup() -> PathBuf {
    let (dir, knob, value) = if Path::new("/sys/fs/cgroup/cpu/cpu.shares").exists() {
        (OTHERS_CGROUP_V1, "cpu.shares", "2")
    } else {
        (OTHERS_CGROUP_V2, "cpu.weight", "1")
    };
    let dir = PathBuf::from(dir);
    std::fs::create_dir_all(&dir)
        .and_then(|_| std::fs::write(dir.join(knob), value))
        .unwrap_or_else(|e| {
            panic!("others=cgroup: cannot set {}/{knob} ({e}): needs root and the cpu controller (cgroup v1 `cpu`, or v2 with +cpu in cgroup.subtree_control)", dir.display())
        });
    dir
}

impl Plan {
    /// `fleet [replica] [N...] [idle=S] [alarms=A] [gap=MS] [noise=S] [rate=R] [others=nice|sweep|cgroup] [units=config]`.
    pub fn parse(args: &[String]) -> Plan {
        let mut p = Plan {
            ns: Vec::new(),
            idle: Duration::from_secs(20),
            alarms: 200,
            gap: Duration::from_millis(50),
            noise_rate: 1000,
            noise: Duration::from_secs(10),
            replica: false,
            others: Others::Same,
            units_in_config: false,
        };
        for a in args {
            let num = |v: &str| -> u64 {
                v.parse()
                    .unwrap_or_else(|_| panic!("fleet: {a}: expected a number"))
            };
            match a.split_once('=') {
                None if a == "replica" => p.replica = true,
                None => p.ns.push(num(a) as usize),
                Some(("idle", v)) => p.idle = Duration::from_secs(num(v)),
                Some(("alarms", v)) => p.alarms = num(v) as usize,
                Some(("gap", v)) => p.gap = Duration::from_millis(num(v)),
                Some(("noise", v)) => p.noise = Duration::from_secs(num(v)),
                Some(("rate", v)) => p.noise_rate = num(v),
                Some(("others", "nice")) => p.others = Others::Niced,
                Some(("others", "sweep")) => p.others = Others::Sweep,
                Some(("others", "cgroup")) => p.others = Others::Cgroup,
                Some(("units", "config")) => p.units_in_config = true,
                Some(_) => {
                    panic!("fleet: {a}: expected replica, N, idle=S, alarms=A, gap=MS, noise=S, rate=R, others=nice|sweep|cgroup or units=config")
                }
            }
        }
        if p.ns.is_empty() {
            p.ns = vec![1, 10, 50, 100];
        }
        p
    }
}

/// Where the daemons connect: queries to `primary`, the binlog from `replica` when set.
struct Servers {
    primary: String,
    replica: Option<String>,
}

/// CPU seconds of the server(s), as % of one core over a window.
#[derive(Clone, Copy, Default)]
struct ServerCpu {
    primary: Option<f64>,
    replica: Option<f64>,
}

/// The servers' pids (`None` where the server is not a local process).
struct ServerPids {
    primary: Option<u32>,
    replica: Option<u32>,
}

impl ServerPids {
    fn seconds(&self) -> ServerCpu {
        ServerCpu {
            primary: self.primary.map(cpu_seconds),
            replica: self.replica.map(cpu_seconds),
        }
    }
}

impl ServerCpu {
    /// `(self - before)` as % of one core over `window`.
    fn percent_since(&self, before: &ServerCpu, window: Duration) -> ServerCpu {
        let pct = |a: Option<f64>, b: Option<f64>| Some((a? - b?) / window.as_secs_f64() * 100.0);
        ServerCpu {
            primary: pct(self.primary, before.primary),
            replica: pct(self.replica, before.replica),
        }
    }

    /// Applies `f` to each reading (with the baseline's, when there is one).
    fn map(&self, base: &ServerCpu, f: impl Fn(f64, f64) -> f64) -> ServerCpu {
        ServerCpu {
            primary: self.primary.zip(base.primary).map(|(a, b)| f(a, b)),
            replica: self.replica.zip(base.replica).map(|(a, b)| f(a, b)),
        }
    }

    fn cell(&self, decimals: usize) -> String {
        let one = |v: Option<f64>| match v {
            Some(v) => format!("{v:.decimals$} %"),
            None => "n/a".to_string(),
        };
        match self.replica {
            None => one(self.primary),
            Some(_) => format!("{} / {}", one(self.primary), one(self.replica)),
        }
    }
}

/// The pid of the server at `url` when it runs on this machine (its `@@pid_file` names a live
/// mariadbd or mysqld).
async fn server_pid(url: &str) -> Option<u32> {
    let mut c = Conn::new(Opts::from_url(url).ok()?).await.ok()?;
    let file: Option<String> = c.query_first("SELECT @@pid_file").await.ok()?;
    let _ = c.disconnect().await;
    let pid: u32 = std::fs::read_to_string(file?).ok()?.trim().parse().ok()?;
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    matches!(comm.trim(), "mariadbd" | "mysqld" | "ld-linux-x86-64").then_some(pid)
}

/// Room for 100 daemons' connections (each holds a binlog stream and pooled connections).
async fn raise_max_connections(url: &str) {
    let mut c = Conn::new(Opts::from_url(url).unwrap()).await.unwrap();
    c.query_drop("SET GLOBAL max_connections = 2000")
        .await
        .unwrap();
    let _ = c.disconnect().await;
}

/// The primary and replica of scripts/replica.sh in target/bench-primary and
/// target/bench-replica (MariaDB; started once, stopped at the end like the bench's server).
fn replica_pair() -> Servers {
    let (primary, replica) = replica_dirs();
    let out = Command::new("bash")
        .arg(repo().join("scripts/replica.sh"))
        .args(["start"])
        .arg(&primary)
        .arg(&replica)
        .stderr(Stdio::inherit())
        .output()
        .unwrap();
    assert!(out.status.success(), "scripts/replica.sh start failed");
    let env = |dir: &Path| -> String {
        let out = Command::new("bash")
            .arg(repo().join("scripts/testdb.sh"))
            .arg("env")
            .env("MONITOR_TESTDB_DIR", dir)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .find_map(|l| l.strip_prefix("export MONITOR_TEST_DB_URL="))
            .map(|v| v.trim_matches('\'').to_string())
            .expect("no URL from testdb.sh env")
    };
    Servers {
        primary: env(&primary),
        replica: Some(env(&replica)),
    }
}

fn replica_dirs() -> (PathBuf, PathBuf) {
    (
        repo().join("target/bench-primary"),
        repo().join("target/bench-replica"),
    )
}

pub(crate) fn stop_replica_pair() {
    let (primary, replica) = replica_dirs();
    if !primary.exists() && !replica.exists() {
        return;
    }
    let _ = Command::new("bash")
        .arg(repo().join("scripts/replica.sh"))
        .arg("stop")
        .arg(&replica)
        .arg(&primary)
        .status();
}

/// Waits until the replica has applied everything the primary has written (by GTID).
async fn caught_up(servers: &Servers) {
    let Some(replica) = &servers.replica else {
        return;
    };
    let mut p = Conn::new(Opts::from_url(&servers.primary).unwrap())
        .await
        .unwrap();
    let mut r = Conn::new(Opts::from_url(replica).unwrap()).await.unwrap();
    let pos: Option<String> = p.query_first("SELECT @@gtid_binlog_pos").await.unwrap();
    let pos = pos.unwrap_or_default();
    let _: Option<i64> = r
        .exec_first("SELECT MASTER_GTID_WAIT(?, 30)", (pos,))
        .await
        .unwrap();
    let _ = p.disconnect().await;
    let _ = r.disconnect().await;
}

/// The fleet's database: N x 10 processes, process i on host `h{(i - 1) / 10 + 1}`, and the
/// NOISE table.
async fn fleet_db(servers: &Servers, n: usize) -> Bench {
    let b = Bench::on(&servers.primary, &format!("fleet{n}"), n * PER_HOST).await;
    let mut c = b.conn().await;
    c.query_drop("ALTER TABLE PROCESE ADD COLUMN host VARCHAR(255) NULL, ADD KEY idx_host (host)")
        .await
        .unwrap();
    c.query_drop(format!(
        "UPDATE PROCESE SET host = CONCAT('h', (process_id - 1) DIV {PER_HOST} + 1)"
    ))
    .await
    .unwrap();
    create_noise_table(&mut c, NOISE_ROWS).await;
    drop(c);
    caught_up(servers).await;
    b
}

/// A distinct replica id for every daemon this bench process starts.
fn next_server_id() -> u32 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    2_000_000 + (std::process::id() % 1_000) * 2_000 + NEXT.fetch_add(1, Ordering::Relaxed) % 2_000
}

/// Starts the daemons of hosts h1..hN (all spawned, then each waited for); returns them and
/// the time until all follow the binlog.
fn start_fleet(b: &Bench, servers: &Servers, n: usize, plan: &Plan) -> (Vec<Daemon>, Duration) {
    let others = plan.others;
    let cgroup_procs = (others == Others::Cgroup).then(|| others_cgroup().join("cgroup.procs"));
    let binlog_section = servers.replica.as_ref().map(|url| {
        let o = Opts::from_url(url).unwrap();
        format!(
            "\n[binlog]\nhost = {}\nport = {}\nuser = {}\n{}",
            o.ip_or_hostname(),
            o.tcp_port(),
            o.user().unwrap_or("root"),
            o.pass()
                .map(|p| format!("password = {p}\n"))
                .unwrap_or_default()
        )
    });
    let t0 = Instant::now();
    let mut started = Vec::new();
    for h in 1..=n {
        let dir = b.dir.join(format!("h{h}"));
        let monitor = format!("host = h{h}\n");
        let streams = h == 1 || others != Others::Sweep;
        let units = if plan.units_in_config {
            unit_sections(h)
        } else {
            String::new()
        };
        let sections = format!("{}{units}", binlog_section.as_deref().unwrap_or(""));
        let config = b.daemon_config(&DaemonConf {
            dir: &dir,
            check_interval: "300",
            binlog: if streams { "on" } else { "off" },
            parallel: 4,
            server_id: next_server_id(),
            monitor_extra: &monitor,
            sections_extra: &sections,
        });
        let nice = (others == Others::Niced && h > 1).then_some(19);
        let d = spawn_daemon_niced(&dir, &config, nice);
        if let Some(procs) = cgroup_procs.as_ref().filter(|_| h > 1) {
            std::fs::write(procs, d.pid().to_string()).unwrap();
        }
        started.push((d, dir, streams));
    }
    let mut daemons = Vec::new();
    for (mut d, dir, streams) in started {
        if streams {
            wait_following(&mut d, &dir, true);
        }
        daemons.push(d);
    }
    if others == Others::Sweep {
        // The sweep-only ones: started, swept once.
        std::thread::sleep(Duration::from_secs(2));
    }
    (daemons, t0.elapsed())
}

/// `[process.pN] unit = pN.service` for host `h`'s processes.
fn unit_sections(h: usize) -> String {
    let first = (h - 1) * PER_HOST + 1;
    (first..first + PER_HOST)
        .map(|i| format!("\n[process.p{i}]\nunit = p{i}.service\n"))
        .collect()
}

/// SIGTERM to every daemon at once, then waits for each.
fn stop_fleet(daemons: Vec<Daemon>) {
    for d in &daemons {
        let _ = Command::new("kill").arg(d.pid().to_string()).status();
    }
    drop(daemons);
    for dir in [OTHERS_CGROUP_V1, OTHERS_CGROUP_V2] {
        let _ = std::fs::remove_dir(dir);
    }
}

/// One row of the table.
#[derive(Default)]
struct Row {
    n: usize,
    /// The 1-minute load average when the row started (other work on the machine).
    load: String,
    /// CPU (% of one core) the rest of the machine used during the idle window.
    others: f64,
    start: Option<Duration>,
    rss_mean_max: Option<(f64, f64)>,
    latency: Option<([f64; 4], [f64; 4], usize, usize)>,
    idle: ServerCpu,
    per_idle_daemon: Option<ServerCpu>,
    daemons_idle: Option<f64>,
    noise_rows: f64,
    noise: ServerCpu,
    per_1000: ServerCpu,
    daemons_noise: Option<f64>,
}

/// The 1-minute load average (from /proc/loadavg) and how many compilers (rustc, cc1) run
/// now: other work on the machine.
pub(crate) fn load_average() -> String {
    let load = std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .next()
        .unwrap_or("?")
        .to_string();
    let compilers = std::fs::read_dir("/proc")
        .map(|rd| {
            rd.flatten()
                .filter(|e| {
                    let comm = std::fs::read_to_string(e.path().join("comm")).unwrap_or_default();
                    matches!(comm.trim(), "rustc" | "cc1" | "cc1plus")
                })
                .count()
        })
        .unwrap_or(0);
    format!("{load}, {compilers} rustc")
}

/// Summed CPU seconds of the daemons.
fn daemons_cpu(daemons: &[Daemon]) -> f64 {
    daemons.iter().map(|d| cpu_seconds(d.pid())).sum()
}

/// Server (and daemons') CPU over a quiet window of `idle`.
async fn idle_window(
    pids: &ServerPids,
    daemons: &[Daemon],
    idle: Duration,
) -> (ServerCpu, f64, f64) {
    let s0 = pids.seconds();
    let d0 = daemons_cpu(daemons);
    let m0 = machine_busy_seconds();
    let b0 = cpu_seconds(std::process::id());
    tokio::time::sleep(idle).await;
    let d1 = daemons_cpu(daemons);
    let m1 = machine_busy_seconds();
    let b1 = cpu_seconds(std::process::id());
    let s1 = pids.seconds();
    let ours = (d1 - d0)
        + (b1 - b0)
        + (s1.primary.unwrap_or(0.0) - s0.primary.unwrap_or(0.0))
        + (s1.replica.unwrap_or(0.0) - s0.replica.unwrap_or(0.0));
    let pct = |v: f64| v / idle.as_secs_f64() * 100.0;
    (
        s1.percent_since(&s0, idle),
        pct(d1 - d0),
        pct((m1 - m0 - ours).max(0.0)),
    )
}

/// CPU seconds the whole machine spent busy (all cores; /proc/stat).
fn machine_busy_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let f: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal
    let busy: u64 = [0, 1, 2, 5, 6, 7].iter().filter_map(|&i| f.get(i)).sum();
    busy as f64 / clk_tck()
}

/// Server (and daemons') CPU while `rate` rows/s of noise run for `window`; with the rows/s
/// achieved.
async fn noise_window(
    b: &Bench,
    pids: &ServerPids,
    daemons: &[Daemon],
    rate: u64,
    window: Duration,
) -> (ServerCpu, f64, f64) {
    let noise = start_noise(b, Some(rate), NOISE_ROWS);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rows0 = noise.rows.load(Ordering::Relaxed);
    let s0 = pids.seconds();
    let d0 = daemons_cpu(daemons);
    tokio::time::sleep(window).await;
    let d1 = daemons_cpu(daemons);
    let cpu = pids.seconds().percent_since(&s0, window);
    let rows = (noise.rows.load(Ordering::Relaxed) - rows0) as f64 / window.as_secs_f64();
    noise.stop.store(true, Ordering::Relaxed);
    for t in noise.tasks {
        let _ = t.await;
    }
    (cpu, rows, (d1 - d0) / window.as_secs_f64() * 100.0)
}

/// The baseline: the same windows with no daemon attached.
async fn baseline(servers: &Servers, pids: &ServerPids, plan: &Plan) -> Row {
    let b = fleet_db(servers, 1).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (idle, _, others) = idle_window(pids, &[], plan.idle).await;
    let (noise, rows, _) = noise_window(&b, pids, &[], plan.noise_rate, plan.noise).await;
    b.finish().await;
    Row {
        n: 0,
        others,
        idle,
        noise_rows: rows,
        noise,
        per_1000: noise.map(&noise, |v, _| v / (rows / 1000.0)),
        ..Row::default()
    }
}

/// N daemons: start, idle window, alarms on h1, noise window, stop.
async fn fleet_of(servers: &Servers, pids: &ServerPids, plan: &Plan, n: usize, base: &Row) -> Row {
    let b = fleet_db(servers, n).await;
    let (daemons, start) = start_fleet(&b, servers, n, plan);
    // The start-up upserts and first heartbeats settle.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (idle, daemons_idle, others) = idle_window(pids, &daemons, plan.idle).await;
    let rss: Vec<f64> = daemons
        .iter()
        .map(|d| status_kb(d.pid(), "VmRSS") as f64 / 1024.0)
        .collect();
    let ids: Vec<usize> = (0..plan.alarms).map(|k| k % PER_HOST + 1).collect();
    let (cmd, clear, lost) = alarm_series(
        &b.pool,
        &ids,
        plan.gap,
        Duration::from_secs(5),
        &b.dir.join("h1/stamps"),
    )
    .await;
    let handled = cmd.len();
    let (noise, rows, daemons_noise) =
        noise_window(&b, pids, &daemons, plan.noise_rate, plan.noise).await;
    stop_fleet(daemons);
    b.finish().await;
    let nf = n as f64;
    Row {
        n,
        load: String::new(),
        others,
        start: Some(start),
        rss_mean_max: Some((
            rss.iter().sum::<f64>() / nf,
            rss.iter().cloned().fold(0.0, f64::max),
        )),
        latency: Some((summary(cmd), summary(clear), lost.len(), handled)),
        idle,
        per_idle_daemon: Some(idle.map(&base.idle, |v, b| (v - b) / nf)),
        daemons_idle: Some(daemons_idle),
        noise_rows: rows,
        noise,
        per_1000: noise.map(&noise, |v, _| v / (rows / 1000.0)),
        daemons_noise: Some(daemons_noise),
    }
}

fn print_row(r: &Row, alarms: usize) {
    let opt = |v: Option<String>| v.unwrap_or_else(|| "-".into());
    let (c, k, lost) = match &r.latency {
        Some((c, k, lost, _)) => (
            [ms(c[0]), ms(c[2]), ms(c[3])],
            [ms(k[0]), ms(k[2])],
            format!("{lost} of {alarms}"),
        ),
        None => (
            ["-".into(), "-".into(), "-".into()],
            ["-".into(), "-".into()],
            "-".into(),
        ),
    };
    println!(
        "| {} | {}; {:.0} % | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.0} | {} | {} | {} |",
        r.n,
        r.load,
        r.others,
        opt(r.start.map(|d| format!("{:.1} s", d.as_secs_f64()))),
        opt(r.rss_mean_max.map(|(m, x)| format!("{m:.1} / {x:.1} MB"))),
        c[0],
        c[1],
        c[2],
        k[0],
        k[1],
        lost,
        r.idle.cell(2),
        opt(r.per_idle_daemon.map(|c| c.cell(3))),
        opt(r.daemons_idle.map(|v| format!("{v:.2} %"))),
        r.noise_rows,
        r.noise.cell(1),
        r.per_1000.cell(2),
        opt(r.daemons_noise.map(|v| format!("{v:.1} %"))),
    );
}

pub(crate) async fn fleet(plan: &Plan) {
    let servers = if plan.replica {
        replica_pair()
    } else {
        Servers {
            primary: server_url(),
            replica: None,
        }
    };
    raise_max_connections(&servers.primary).await;
    if let Some(r) = &servers.replica {
        raise_max_connections(r).await;
    }
    let pids = ServerPids {
        primary: server_pid(&servers.primary).await,
        replica: match &servers.replica {
            Some(r) => server_pid(r).await,
            None => None,
        },
    };
    let via = if plan.replica {
        "through a replica: the daemons read the binlog from a MariaDB replica (`[binlog]`, log_slave_updates) and query the primary; server CPU is shown as primary / replica"
    } else {
        "one server: the daemons read its binlog and query it"
    };
    let niced = match plan.others {
        Others::Same => "",
        Others::Niced => "; the daemons of h2..hN at nice 19, as if on other machines",
        Others::Sweep => "; the daemons of h2..hN with `binlog = off`: no binlog stream but h1's",
        Others::Cgroup => {
            "; the daemons of h2..hN in a CPU cgroup of the least weight, as if on other machines"
        }
    };
    let units = if plan.units_in_config {
        "; each process with `unit = pN.service` in its section (no /proc scan)"
    } else {
        ""
    };
    println!("## Fleet: N daemons on one database ({via}{niced}{units})");
    println!();
    println!(
        "Server {}. Each daemon: its own `[monitor] host = hK`, 10 processes in PROCESE (host column, index idx_host), distinct server_id, check_interval = 300, binlog on, release build, `systemctl` = bench/stamp.c. \
         Idle = a quiet window of {} s after all follow the binlog (+3 s); server CPU = utime+stime of the server's /proc/PID/stat over it, as % of one core; per idle daemon = (with N - with 0) / N. \
         Alarms: {} on host h1's 10 processes (round robin, {} ms apart; a process is raised again only once cleared), UPDATE's client OK to the restart command's start and to the alarm cleared. \
         Noise: `UPDATE NOISE ...` multi-row statements paced at {} rows/s for {} s; per 1000 rows/s = server CPU / (achieved rows/s / 1000). Daemons' CPU = sum over all N, % of one core. Load = the machine's 1-minute load average when the row started (this machine has 2 cores; it lags, so it includes the previous row's own work) and how many compiler processes (rustc, cc1: other sessions building) ran then; other work = CPU the rest of the machine (all but the server(s), the daemons and this bench; /proc/stat) used during the idle window, as % of one core (of 200 %).",
        server_version(&servers.primary).await,
        plan.idle.as_secs(),
        plan.alarms,
        plan.gap.as_millis(),
        plan.noise_rate,
        plan.noise.as_secs()
    );
    println!();
    println!("| daemons | load, compilers; other work | all following after | RSS mean / max | to command p50 | p99 | max | to cleared p50 | p99 | lost | server CPU idle | per idle daemon | daemons' CPU idle | noise rows/s | server CPU with noise | per 1000 rows/s | daemons' CPU with noise |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    let load = load_average();
    let base = Row {
        load,
        ..baseline(&servers, &pids, plan).await
    };
    print_row(&base, plan.alarms);
    for &n in &plan.ns {
        let load = load_average();
        let row = Row {
            load,
            ..fleet_of(&servers, &pids, plan, n, &base).await
        };
        print_row(&row, plan.alarms);
    }
    println!();
}
