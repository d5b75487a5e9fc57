//! Benchmarks of the daemon as users run it: a throwaway MariaDB or MySQL (`MONITOR_TESTDB_FLAVOR`,
//! or `MONITOR_TEST_DB_URL`),
//! the release binary as a separate process, trivial restart commands. Prints markdown tables.
//!
//! ```text
//! cargo bench --bench daemon -- latency [ALARMS=1000]
//! cargo bench --bench daemon -- storm [full|quick|N]
//! cargo bench --bench daemon -- noise [SECONDS=15]
//! cargo bench --bench daemon -- footprint [SECONDS=60]
//! cargo bench --bench daemon -- sweep [ROWS=100000] [RUNS=1000]
//! cargo bench --bench daemon -- fleet [replica] [N=1 10 50 100] [idle=20] [alarms=200] [gap=50] [noise=10] [rate=1000] [others=nice|sweep|cgroup] [units=config]
//! cargo bench --bench daemon -- streams [N=10] [tls] [writes=200]
//! cargo bench --bench daemon -- smoke          (all of them, tiny, < 2 minutes; for CI)
//! cargo bench --bench daemon -- all            (all of them, full size)
//! ```
//!
//! See bench/README.md; `bench/run.sh [smoke|quick|full]` builds and runs them. Numbers, not
//! assertions: targets are compared in bench/RESULTS.md. The throwaway server in
//! target/bench-db is stopped at the end unless `MONITOR_BENCH_KEEP_DB=1`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mysql_async::prelude::*;
use mysql_async::{Conn, Opts, OptsBuilder, Pool, Row};

mod fleet;
mod streams;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `MONITOR_TESTDB_FLAVOR` (mariadb or mysql), as scripts/testdb.sh reads it.
fn flavor() -> String {
    std::env::var("MONITOR_TESTDB_FLAVOR")
        .ok()
        .filter(|f| !f.is_empty())
        .unwrap_or_else(|| "mariadb".into())
}

/// target/bench-db for MariaDB, target/bench-db-mysql for MySQL (one server per flavour).
fn bench_db_dir() -> PathBuf {
    match flavor().as_str() {
        "mariadb" => repo().join("target/bench-db"),
        f => repo().join(format!("target/bench-db-{f}")),
    }
}

fn now_ns() -> i128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i128
}

fn external_url() -> Option<String> {
    std::env::var("MONITOR_TEST_DB_URL")
        .ok()
        .filter(|u| !u.is_empty())
}

/// The server: `MONITOR_TEST_DB_URL`, else a throwaway one in target/bench-db (started once).
fn server_url() -> String {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| {
        if let Some(u) = external_url() {
            return u;
        }
        let out = Command::new("bash")
            .arg(repo().join("scripts/testdb.sh"))
            .arg("start")
            .env("MONITOR_TESTDB_DIR", bench_db_dir())
            .stderr(Stdio::inherit())
            .output()
            .unwrap();
        assert!(out.status.success());
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .find_map(|l| l.strip_prefix("export MONITOR_TEST_DB_URL="))
            .map(|v| v.trim_matches('\'').trim_matches('"').to_string())
            .expect("no URL from testdb.sh")
    })
    .clone()
}

/// `SELECT VERSION()` of the server at `url`, for the tables' headers.
async fn server_version(url: &str) -> String {
    let mut c = Conn::new(Opts::from_url(url).unwrap()).await.unwrap();
    let v: Option<String> = c.query_first("SELECT VERSION()").await.unwrap();
    let _ = c.disconnect().await;
    v.unwrap_or_default()
}

fn stop_bench_db() {
    if std::env::var("MONITOR_BENCH_KEEP_DB").as_deref() == Ok("1") {
        return;
    }
    fleet::stop_replica_pair();
    if external_url().is_some() {
        return;
    }
    let _ = Command::new("bash")
        .arg(repo().join("scripts/testdb.sh"))
        .arg("stop")
        .env("MONITOR_TESTDB_DIR", bench_db_dir())
        .status();
}

/// bench/stamp.c compiled to target/bench/stamp (once).
fn stamp_binary() -> PathBuf {
    static STAMP: OnceLock<PathBuf> = OnceLock::new();
    STAMP
        .get_or_init(|| {
            let out = repo().join("target/bench/stamp");
            std::fs::create_dir_all(out.parent().unwrap()).unwrap();
            let st = Command::new("cc")
                .args(["-O2", "-o"])
                .arg(&out)
                .arg(repo().join("bench/stamp.c"))
                .status()
                .unwrap();
            assert!(st.success(), "cannot compile bench/stamp.c");
            out
        })
        .clone()
}

// ---- /proc readings of the daemon ----------------------------------------------------------

fn clk_tck() -> f64 {
    static TCK: OnceLock<f64> = OnceLock::new();
    *TCK.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// utime + stime of the whole process (all threads), in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After the command: state is field 3, utime 14, stime 15 (1-based).
    let t = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    (t(11) + t(12)) as f64 / clk_tck()
}

fn status_kb(pid: u32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| {
            v.trim_start_matches(':')
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

/// Voluntary + nonvoluntary context switches summed over the live threads, and their count.
fn ctx_switches(pid: u32) -> (u64, usize) {
    let mut sum = 0;
    let mut threads = 0;
    if let Ok(rd) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for t in rd.flatten() {
            threads += 1;
            let s = std::fs::read_to_string(t.path().join("status")).unwrap_or_default();
            for l in s.lines() {
                if let Some(v) = l
                    .strip_prefix("voluntary_ctxt_switches:")
                    .or_else(|| l.strip_prefix("nonvoluntary_ctxt_switches:"))
                {
                    sum += v.trim().parse::<u64>().unwrap_or(0);
                }
            }
        }
    }
    (sum, threads)
}

// ---- the daemon under test -------------------------------------------------------------------

/// The daemon process; killed (SIGTERM, then SIGKILL) when dropped.
struct Daemon {
    child: Child,
}

impl Daemon {
    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(10) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Bench {
    url: String,
    db: String,
    pool: Pool,
    dir: PathBuf,
}

impl Bench {
    async fn new(tag: &str, processes: usize) -> Bench {
        Bench::on(&server_url(), tag, processes).await
    }

    /// A fresh database `bench_TAG_PID` on the server at `url` with `processes` processes.
    async fn on(url: &str, tag: &str, processes: usize) -> Bench {
        let url = url.to_string();
        let db = format!("bench_{tag}_{}", std::process::id());
        let opts = Opts::from_url(&url).unwrap();
        let mut conn = Conn::new(opts.clone()).await.unwrap();
        conn.query_drop(format!("DROP DATABASE IF EXISTS `{db}`"))
            .await
            .unwrap();
        let setup = std::fs::read_to_string(repo().join("sql/setup.sql")).unwrap();
        let schema = setup.split("-- @@end-of-schema").next().unwrap();
        conn.query_drop(schema.replace("v_process_monitor", &db))
            .await
            .unwrap();
        conn.query_drop(format!("USE `{db}`")).await.unwrap();
        for chunk in (1..=processes).collect::<Vec<_>>().chunks(2000) {
            let names: Vec<String> = chunk.iter().map(|i| format!("({i}, 'p{i}')")).collect();
            let status: Vec<String> = chunk.iter().map(|i| format!("({i}, 0)")).collect();
            conn.query_drop(format!("INSERT INTO PROCESE VALUES {}", names.join(",")))
                .await
                .unwrap();
            conn.query_drop(format!(
                "INSERT INTO STATUS_PROCESS (process_id, alarma) VALUES {}",
                status.join(",")
            ))
            .await
            .unwrap();
        }
        let _ = conn.disconnect().await;
        let pool = Pool::new(OptsBuilder::from_opts(opts).db_name(Some(db.clone())));
        let dir = repo().join(format!("target/bench/{tag}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Bench { url, db, pool, dir }
    }

    async fn conn(&self) -> Conn {
        self.pool.get_conn().await.unwrap()
    }

    /// All alarms down, notes and history emptied (with no daemon running).
    async fn reset(&self) {
        let mut c = self.conn().await;
        c.query_drop("UPDATE STATUS_PROCESS SET alarma = 0, notes = NULL WHERE alarma <> 0 OR notes IS NOT NULL")
            .await
            .unwrap();
        let _ = c.query_drop("TRUNCATE TABLE RESTART_HISTORY").await;
    }

    async fn finish(self) {
        let mut c = self.conn().await;
        let _ = c
            .query_drop(format!("DROP DATABASE IF EXISTS `{}`", self.db))
            .await;
        drop(c);
        let _ = self.pool.disconnect().await;
    }

    /// Writes a config (service strategy, `systemctl` = the stamp program) and starts the
    /// release daemon; waits until it has followed the binlog (or swept once).
    fn start_daemon(&self, check_interval: &str, binlog: &str, parallel: usize) -> Daemon {
        static STARTS: AtomicU32 = AtomicU32::new(0);
        // A fresh replica id per start: the server may not have dropped the previous one yet.
        let server_id = 900_000
            + (std::process::id() % 9_000) * 10
            + STARTS.fetch_add(1, Ordering::Relaxed) % 10;
        let config = self.daemon_config(&DaemonConf {
            dir: &self.dir,
            check_interval,
            binlog,
            parallel,
            server_id,
            monitor_extra: "",
            sections_extra: "",
        });
        let mut d = spawn_daemon(&self.dir, &config);
        wait_following(&mut d, &self.dir, binlog != "off");
        d
    }

    /// The config text of one daemon whose files (state, log, stamps, control socket) live in
    /// `c.dir`.
    fn daemon_config(&self, c: &DaemonConf) -> String {
        let opts = Opts::from_url(&self.url).unwrap();
        let dir = c.dir;
        format!(
            "[database]\nhost = {}\nport = {}\nuser = {}\n{}database = {}\n{}\n[monitor]\ncheck_interval = {}\nbinlog = {}\n\
             server_id = {}\nmax_parallel_restarts = {}\nstate_dir = {}\nsystemctl = {}\ncontrol_socket = {}\n{}\n[logging]\nlog_file = {}\nlevel = {}\n\n\
             [process.default]\nrestart_strategy = service\nhealth_check_command = true\nrestart_delay = 0\n{}",
            opts.ip_or_hostname(),
            opts.tcp_port(),
            opts.user().unwrap_or("root"),
            opts.pass().map(|p| format!("password = {p}\n")).unwrap_or_default(),
            self.db,
            // `[database] ssl_mode` when MONITOR_BENCH_SSL_MODE says (the default: preferred).
            std::env::var("MONITOR_BENCH_SSL_MODE")
                .map(|m| format!("ssl_mode = {m}\n"))
                .unwrap_or_default(),
            c.check_interval,
            c.binlog,
            c.server_id,
            c.parallel,
            dir.join("state").display(),
            stamp_binary().display(),
            dir.join("control.sock").display(),
            c.monitor_extra,
            dir.join("daemon.log").display(),
            std::env::var("MONITOR_BENCH_LOG_LEVEL").unwrap_or_else(|_| "warn".into()),
            c.sections_extra,
        )
    }

    async fn raised(&self, conn: &mut Conn) -> u64 {
        conn.query_first("SELECT COUNT(*) FROM STATUS_PROCESS WHERE alarma = 1")
            .await
            .unwrap()
            .unwrap_or(0)
    }
}

/// One daemon's settings beyond the bench's defaults.
struct DaemonConf<'a> {
    /// Its own directory: config.ini, state/, daemon.log, stamps, control.sock.
    dir: &'a Path,
    check_interval: &'a str,
    binlog: &'a str,
    parallel: usize,
    server_id: u32,
    /// More `[monitor]` lines (each ending in a newline).
    monitor_extra: &'a str,
    /// More sections, appended at the end.
    sections_extra: &'a str,
}

/// Writes `config` to DIR/config.ini (state and stamps of a previous run removed) and starts
/// the release daemon with `STAMP_FILE=DIR/stamps`.
fn spawn_daemon(dir: &Path, config: &str) -> Daemon {
    spawn_daemon_niced(dir, config, None)
}

/// [`spawn_daemon`] at the given niceness (`nice -n N`, which execs the daemon: same pid).
fn spawn_daemon_niced(dir: &Path, config: &str, nice: Option<u8>) -> Daemon {
    std::fs::create_dir_all(dir).unwrap();
    let _ = std::fs::remove_file(dir.join("stamps"));
    let _ = std::fs::remove_dir_all(dir.join("state"));
    let path = dir.join("config.ini");
    std::fs::write(&path, config).unwrap();
    // It holds the password: 0600, or the daemon warns.
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    // `MONITOR_BENCH_DAEMON_BIN=PATH`: another build of the daemon (an A/B against a commit).
    let bin = std::env::var("MONITOR_BENCH_DAEMON_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_monitor_service").to_string());
    let mut cmd = match nice {
        Some(n) => {
            let mut c = Command::new("nice");
            c.args(["-n", &n.to_string(), &bin]);
            c
        }
        None => Command::new(&bin),
    };
    // `MONITOR_BENCH_DAEMON_WORKERS=N`: the daemons' tokio worker threads (TOKIO_WORKER_THREADS).
    if let Ok(n) = std::env::var("MONITOR_BENCH_DAEMON_WORKERS") {
        cmd.env("TOKIO_WORKER_THREADS", n);
    }
    let child = cmd
        .args(["-c", path.to_str().unwrap()])
        .env("STAMP_FILE", dir.join("stamps"))
        .env_remove("RUST_LOG")
        // cargo's target dirs, which every restart command would search for libc (not so on a host).
        .env_remove("LD_LIBRARY_PATH")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    Daemon { child }
}

/// Waits until the daemon in `dir` follows the binlog (its position file exists), or 0.5 s
/// when it runs on sweeps alone; panics when it exits first or takes over 60 s.
fn wait_following(d: &mut Daemon, dir: &Path, binlog: bool) {
    if !binlog {
        std::thread::sleep(Duration::from_millis(500));
        return;
    }
    let ready = Instant::now();
    while !dir.join("state/binlog_position").exists() {
        if let Ok(Some(st)) = d.child.try_wait() {
            panic!(
                "daemon exited with {st} before following the binlog; see {}",
                dir.join("daemon.log").display()
            );
        }
        assert!(
            ready.elapsed() < Duration::from_secs(60),
            "daemon did not connect; see {}",
            dir.join("daemon.log").display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// p50, p90, p99, max (ms) of a sample in nanoseconds.
fn summary(mut v: Vec<i128>) -> [f64; 4] {
    if v.is_empty() {
        return [f64::NAN; 4];
    }
    v.sort_unstable();
    let at = |q: f64| {
        let i = ((v.len() as f64 - 1.0) * q).round() as usize;
        v[i] as f64 / 1e6
    };
    [at(0.5), at(0.9), at(0.99), *v.last().unwrap() as f64 / 1e6]
}

// ---- 1. latency --------------------------------------------------------------------------------

/// Raises `alarms` alarms one after another (paced `gap` apart, each on its own process) and
/// measures the client's OK to the restart command's start and to the alarm cleared.
/// Alarms still raised `grace` after they were raised are given up on and returned as lost
/// (then cleared by hand so the next run starts clean).
async fn latency_run(
    b: &Bench,
    alarms: usize,
    gap: Duration,
    grace: Duration,
) -> (Vec<i128>, Vec<i128>, Vec<usize>) {
    let ids: Vec<usize> = (1..=alarms).collect();
    alarm_series(&b.pool, &ids, gap, grace, &b.dir.join("stamps")).await
}

/// One alarm per entry of `ids`, paced `gap` apart; a process may come back, and then its
/// alarm waits until the previous one on it is cleared. Returns the client's OK of each
/// UPDATE to the restart command's start (the lines of `stamp_file`, matched in order per
/// process) and to the alarm cleared (ns), and the ids of the alarms still raised `grace` after
/// they were raised (cleared by hand, so the next run starts clean).
async fn alarm_series(
    pool: &Pool,
    ids: &[usize],
    gap: Duration,
    grace: Duration,
    stamp_file: &Path,
) -> (Vec<i128>, Vec<i128>, Vec<usize>) {
    let mut conn = pool.get_conn().await.unwrap();
    let mut poll = pool.get_conn().await.unwrap();
    let n = ids.len();
    let mut ok_at = vec![0i128; n];
    let mut cleared_at = vec![0i128; n];
    let mut lost = vec![false; n];
    // (index into ids, when raised)
    let mut pending: Vec<(usize, Instant)> = Vec::new();
    let mut next = 0usize;
    let mut next_at = Instant::now();
    while next < n || !pending.is_empty() {
        if next < n
            && Instant::now() >= next_at
            && !pending.iter().any(|(k, _)| ids[*k] == ids[next])
        {
            conn.exec_drop(
                "UPDATE STATUS_PROCESS SET alarma = 1 WHERE process_id = ?",
                (ids[next],),
            )
            .await
            .unwrap();
            ok_at[next] = now_ns();
            pending.push((next, Instant::now()));
            next += 1;
            next_at += gap;
        }
        if !pending.is_empty() {
            let raised: Vec<usize> = poll
                .query("SELECT process_id FROM STATUS_PROCESS WHERE alarma = 1")
                .await
                .unwrap();
            let t = now_ns();
            let mut given_up = Vec::new();
            pending.retain(|&(k, at)| {
                if !raised.contains(&ids[k]) {
                    cleared_at[k] = t;
                    false
                } else if at.elapsed() > grace {
                    given_up.push(k);
                    false
                } else {
                    true
                }
            });
            for k in given_up {
                lost[k] = true;
                conn.exec_drop(
                    "UPDATE STATUS_PROCESS SET alarma = 0 WHERE process_id = ?",
                    (ids[k],),
                )
                .await
                .unwrap();
            }
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    // The stamp file is written before the clear, so it is complete now.
    let mut stamps: std::collections::HashMap<String, std::collections::VecDeque<i128>> =
        Default::default();
    for l in std::fs::read_to_string(stamp_file)
        .unwrap_or_default()
        .lines()
    {
        if let Some((u, t)) = l.split_once(' ') {
            if let Ok(t) = t.parse() {
                // `systemctl restart pN` or, with the unit in the config, `pN.service`.
                let process = u.strip_suffix(".service").unwrap_or(u);
                stamps.entry(process.to_string()).or_default().push_back(t);
            }
        }
    }
    let mut to_cmd = Vec::new();
    let mut to_clear = Vec::new();
    for k in 0..n {
        if lost[k] {
            continue;
        }
        if let Some(s) = stamps
            .get_mut(&format!("p{}", ids[k]))
            .and_then(|q| q.pop_front())
        {
            to_cmd.push(s - ok_at[k]);
        }
        to_clear.push(cleared_at[k] - ok_at[k]);
    }
    let lost_ids = (0..n).filter(|&k| lost[k]).map(|k| ids[k]).collect();
    (to_cmd, to_clear, lost_ids)
}

fn ms(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0} ms")
    } else {
        format!("{v:.2} ms")
    }
}

async fn latency(alarms: usize) {
    println!(
        "## Reaction latency: UPDATE commit (client OK) to restart command start / alarm cleared"
    );
    println!();
    println!("Server {} ({}). {alarms} alarms per mode, one process each, paced 20 ms apart (so in sweep-only mode about 50 alarms wait for each sweep); max_parallel_restarts = 4; trivial commands (bench/stamp.c as systemctl, `true` as health check). Load average and compilers running at the start: {}.", server_version(&server_url()).await, flavor(), fleet::load_average());
    println!();
    println!("| mode | to command p50 | p90 | p99 | max | to cleared p50 | p90 | p99 | max | not handled within 10 s |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    let mut rows = Vec::new();
    for (mode, interval, binlog) in [
        ("binlog", "3600", "on"),
        ("sweep-only, check_interval = 1", "1", "off"),
    ] {
        let b = Bench::new("latency", alarms).await;
        let daemon = b.start_daemon(interval, binlog, 4);
        let (cmd, clear, lost) = latency_run(
            &b,
            alarms,
            Duration::from_millis(20),
            Duration::from_secs(10),
        )
        .await;
        drop(daemon);
        b.finish().await;
        let c = summary(cmd);
        let k = summary(clear);
        println!(
            "| {mode} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            ms(c[0]),
            ms(c[1]),
            ms(c[2]),
            ms(c[3]),
            ms(k[0]),
            ms(k[1]),
            ms(k[2]),
            ms(k[3]),
            lost.len()
        );
        rows.push((c, k));
    }
    let ratios: Vec<String> = (0..8)
        .map(|j| {
            let (s, b) = if j < 4 {
                (rows[1].0[j], rows[0].0[j])
            } else {
                (rows[1].1[j - 4], rows[0].1[j - 4])
            };
            format!("{:.0}x", s / b)
        })
        .collect();
    println!("| ratio sweep-only / binlog | {} | |", ratios.join(" | "));
    println!();
}

// ---- 2. storm ------------------------------------------------------------------------------

async fn storm(ns: &[usize], pars: &[usize], budget: Duration) {
    println!("## Storm: one UPDATE raises N alarms; time until all are cleared");
    println!();
    println!("binlog on; each alarm is one process: `systemctl restart` (bench/stamp.c), health check `true`, clear, history row. Wall = client OK of the UPDATE to `SELECT COUNT(*) ... WHERE alarma = 1` returning 0 (polled every 5 ms). A run whose estimate (from the previous N at the same parallelism) exceeds {} s is skipped.", budget.as_secs());
    println!();
    println!("| N | max_parallel_restarts | wall | alarms/s | wall / N | wall / N x parallel | daemon CPU | CPU per alarm |");
    println!("|---|---|---|---|---|---|---|---|");
    let mut per_alarm: std::collections::HashMap<usize, f64> = Default::default();
    let mut matrix: Vec<(usize, Vec<String>)> = Vec::new();
    for &n in ns {
        let b = Bench::new("storm", n).await;
        let mut cells = Vec::new();
        for &p in pars {
            if let Some(est) = per_alarm.get(&p).map(|s| s * n as f64) {
                if est > budget.as_secs_f64() {
                    println!("| {n} | {p} | skipped: estimated {est:.0} s > budget | | | | | |");
                    cells.push(format!("skipped (~{est:.0} s)"));
                    continue;
                }
            }
            b.reset().await;
            let d = b.start_daemon("3600", "on", p);
            let pid = d.pid();
            let cpu0 = cpu_seconds(pid);
            let mut c = b.conn().await;
            let mut poll = b.conn().await;
            c.query_drop(format!(
                "UPDATE STATUS_PROCESS SET alarma = 1 WHERE process_id <= {n}"
            ))
            .await
            .unwrap();
            let t0 = Instant::now();
            let limit = Duration::from_secs_f64((budget.as_secs_f64() * 3.0).max(60.0));
            let mut left;
            loop {
                left = b.raised(&mut poll).await;
                if left == 0 || t0.elapsed() > limit {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            let wall = t0.elapsed().as_secs_f64();
            let cpu = cpu_seconds(pid) - cpu0;
            drop(d);
            if left > 0 {
                println!("| {n} | {p} | timed out after {wall:.0} s, {left} left | | | | | |");
                cells.push(format!("timeout ({left} left)"));
                continue;
            }
            per_alarm.insert(p, wall / n as f64);
            println!(
                "| {n} | {p} | {wall:.2} s | {:.0} | {:.2} ms | {:.2} ms | {cpu:.2} s | {:.2} ms |",
                n as f64 / wall,
                wall / n as f64 * 1e3,
                wall / n as f64 * p as f64 * 1e3,
                cpu / n as f64 * 1e3
            );
            cells.push(format!("{wall:.2} s"));
        }
        matrix.push((n, cells));
        b.finish().await;
    }
    println!();
    print!("| N \\ max_parallel_restarts |");
    for p in pars {
        print!(" {p} |");
    }
    println!();
    print!("|---|");
    for _ in pars {
        print!("---|");
    }
    println!();
    for (n, cells) in matrix {
        println!("| {n} | {} |", cells.join(" | "));
    }
    println!();
}

// ---- 3. noise ----------------------------------------------------------------------------------

struct Noise {
    stop: Arc<AtomicBool>,
    rows: Arc<AtomicU64>,
    stmts: Arc<AtomicU64>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// Row events on table NOISE: `target` rows/s (paced, 2 connections) or as many as the server
/// takes (`None`: 4 connections, 500-row UPDATEs back to back).
fn start_noise(b: &Bench, target: Option<u64>, table_rows: u64) -> Noise {
    let stop = Arc::new(AtomicBool::new(false));
    let rows = Arc::new(AtomicU64::new(0));
    let stmts = Arc::new(AtomicU64::new(0));
    let conns: u64 = if target.is_some() { 2 } else { 4 };
    let mut tasks = Vec::new();
    for k in 0..conns {
        let pool = b.pool.clone();
        let (stop, rows, stmts) = (stop.clone(), rows.clone(), stmts.clone());
        let span = table_rows / conns;
        let base = k * span + 1;
        tasks.push(tokio::spawn(async move {
            let mut c = pool.get_conn().await.unwrap();
            let t0 = Instant::now();
            let mut sent = 0u64;
            let mut at = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let batch = match target {
                    Some(r) => {
                        let due = (t0.elapsed().as_secs_f64() * r as f64 / conns as f64) as u64;
                        if due <= sent {
                            tokio::time::sleep(Duration::from_millis(10)).await;
                            continue;
                        }
                        (due - sent).min(1000)
                    }
                    None => 500,
                };
                let batch = batch.min(span);
                if at + batch > span {
                    at = 0;
                }
                let lo = base + at;
                let hi = lo + batch - 1;
                at += batch;
                c.query_drop(format!(
                    "UPDATE NOISE SET v = v + 1 WHERE id BETWEEN {lo} AND {hi}"
                ))
                .await
                .unwrap();
                let n = c.affected_rows();
                sent += n;
                rows.fetch_add(n, Ordering::Relaxed);
                stmts.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    Noise {
        stop,
        rows,
        stmts,
        tasks,
    }
}

async fn global_status(c: &mut Conn, name: &str) -> f64 {
    let row: Option<(String, String)> = c
        .query_first(format!("SHOW GLOBAL STATUS LIKE '{name}'"))
        .await
        .unwrap();
    row.and_then(|(_, v)| v.parse().ok()).unwrap_or(0.0)
}

async fn noise(levels: &[Option<u64>], seconds: u64) {
    println!("## Noise: unrelated row events on another table while alarms arrive");
    println!();
    println!("Table NOISE (same server and database, 20000 rows): multi-row `UPDATE NOISE SET v = v + 1 WHERE id BETWEEN ...` (FULL row images), paced to the target from 2 connections (one statement per connection every 10 ms carrying the rows due), or back to back from 4 connections with 500 rows per statement for `max`. Meanwhile one alarm every 50 ms for {seconds} s (binlog on). Achieved rate = rows the server reported changed; binlog MB/s from `Binlog_bytes_written`. Daemon CPU = utime+stime delta of its /proc/PID/stat over the window. Everything (server, bench client, daemon) shares this machine's cores.");
    println!();
    println!("| target rows/s | achieved rows/s | statements/s | binlog MB/s | alarm to command p50 | p99 | to cleared p50 | p99 | daemon CPU (% of one core) | daemon CPU per 100k row events | alarms lost (not handled within 5 s) |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    let alarms = (seconds * 20) as usize;
    let b = Bench::new("noise", alarms).await;
    let table_rows = 20_000u64;
    {
        let mut c = b.conn().await;
        create_noise_table(&mut c, table_rows).await;
    }
    for &level in levels {
        let d = b.start_daemon("3600", "on", 4);
        let pid = d.pid();
        let mut sc = b.conn().await;
        let noise = if level == Some(0) {
            None
        } else {
            Some(start_noise(&b, level, table_rows))
        };
        // Let the drivers reach their pace before measuring.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let bytes0 = global_status(&mut sc, "Binlog_bytes_written").await;
        let (rows0, stmts0) = noise
            .as_ref()
            .map(|n| {
                (
                    n.rows.load(Ordering::Relaxed),
                    n.stmts.load(Ordering::Relaxed),
                )
            })
            .unwrap_or((0, 0));
        let cpu0 = cpu_seconds(pid);
        let t0 = Instant::now();
        let (cmd, clear, lost) = latency_run(
            &b,
            alarms,
            Duration::from_millis(50),
            Duration::from_secs(5),
        )
        .await;
        let wall = t0.elapsed().as_secs_f64();
        let cpu = cpu_seconds(pid) - cpu0;
        let (rows1, stmts1) = noise
            .as_ref()
            .map(|n| {
                (
                    n.rows.load(Ordering::Relaxed),
                    n.stmts.load(Ordering::Relaxed),
                )
            })
            .unwrap_or((0, 0));
        let bytes1 = global_status(&mut sc, "Binlog_bytes_written").await;
        if let Some(n) = noise {
            n.stop.store(true, Ordering::Relaxed);
            for t in n.tasks {
                let _ = t.await;
            }
        }
        drop(sc);
        drop(d);
        let events = (rows1 - rows0) as f64;
        let c = summary(cmd);
        let k = summary(clear);
        let label = match level {
            Some(0) => "0 (alarms only)".to_string(),
            Some(r) => format!("{r}"),
            None => "max".to_string(),
        };
        let per100k = if events > 0.0 {
            format!("{:.0} ms", cpu / events * 1e5 * 1e3)
        } else {
            "-".into()
        };
        println!(
            "| {label} | {:.0} | {:.0} | {:.2} | {} | {} | {} | {} | {:.1} % | {per100k} | {} of {alarms} |",
            events / wall,
            (stmts1 - stmts0) as f64 / wall,
            (bytes1 - bytes0) / wall / 1e6,
            ms(c[0]),
            ms(c[2]),
            ms(k[0]),
            ms(k[2]),
            cpu / wall * 100.0,
            lost.len()
        );
    }
    b.finish().await;
    println!();
}

// ---- 4. footprint ------------------------------------------------------------------------------

async fn footprint(window: u64, storm_n: usize, storms: usize) {
    println!("## Footprint: memory, idle CPU, wake-ups");
    println!();
    println!("binlog on, check_interval = 300 (the default), max_parallel_restarts = 4 (the default), {storm_n} processes in the table. Idle = nothing happening for {window} s after a 2 s settle. RSS = VmRSS of /proc/PID/status; wake-ups = voluntary + nonvoluntary context switches summed over /proc/PID/task/*/status.");
    println!();
    let b = Bench::new("footprint", storm_n).await;
    let d = b.start_daemon("300", "on", 4);
    let pid = d.pid();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_idle = status_kb(pid, "VmRSS");
    let (cs0, threads) = ctx_switches(pid);
    let cpu0 = cpu_seconds(pid);
    tokio::time::sleep(Duration::from_secs(window)).await;
    let cpu = cpu_seconds(pid) - cpu0;
    let (cs1, _) = ctx_switches(pid);
    println!("| measure | value |");
    println!("|---|---|");
    println!(
        "| RSS after start (idle) | {:.1} MB |",
        rss_idle as f64 / 1024.0
    );
    println!("| threads | {threads} |");
    println!(
        "| idle CPU over {window} s | {:.3} s ({:.3} % of one core) |",
        cpu,
        cpu / window as f64 * 100.0
    );
    println!(
        "| idle wake-ups | {:.1} per s |",
        (cs1.saturating_sub(cs0)) as f64 / window as f64
    );
    let mut c = b.conn().await;
    for i in 1..=storms {
        let t0 = Instant::now();
        c.query_drop("UPDATE STATUS_PROCESS SET alarma = 1")
            .await
            .unwrap();
        while b.raised(&mut c).await > 0 && t0.elapsed() < Duration::from_secs(600) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let wall = t0.elapsed().as_secs_f64();
        tokio::time::sleep(Duration::from_secs(1)).await;
        println!(
            "| RSS after storm {i} of {storm_n} alarms ({wall:.1} s) | {:.1} MB (peak VmHWM {:.1} MB) |",
            status_kb(pid, "VmRSS") as f64 / 1024.0,
            status_kb(pid, "VmHWM") as f64 / 1024.0
        );
    }
    drop(c);
    drop(d);
    b.finish().await;
    println!();
}

// ---- 5. sweep ----------------------------------------------------------------------------------

const SWEEP_QUERY: &str =
    "SELECT process_id FROM STATUS_PROCESS WHERE alarma = 1 ORDER BY process_id";

async fn time_query(c: &mut Conn, q: &str, runs: usize) -> Vec<i128> {
    let mut v = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t = Instant::now();
        let ids: Vec<i64> = c.query(q).await.unwrap();
        v.push(t.elapsed().as_nanos() as i128);
        std::hint::black_box(ids);
    }
    v
}

async fn sweep(rows: usize, runs: usize) {
    println!("## Sweep cost: {rows} rows in STATUS_PROCESS, 5 alarms raised");
    println!();
    let b = Bench::new("sweep", rows).await;
    let mut c = b.conn().await;
    c.query_drop(format!(
        "UPDATE STATUS_PROCESS SET alarma = 1 WHERE process_id IN (1, {}, {}, {}, {rows})",
        rows / 4,
        rows / 2,
        rows * 3 / 4
    ))
    .await
    .unwrap();
    c.query_drop("ANALYZE TABLE STATUS_PROCESS").await.unwrap();
    println!("The daemon's query, `{SWEEP_QUERY}`, over the text protocol as the daemon sends it, from one connection on 127.0.0.1 (client round trip included).");
    println!();
    println!("```");
    println!("EXPLAIN {SWEEP_QUERY}");
    let explain: Vec<Row> = c.query(format!("EXPLAIN {SWEEP_QUERY}")).await.unwrap();
    let cols: Vec<String> = explain
        .first()
        .map(|r| {
            r.columns_ref()
                .iter()
                .map(|c| c.name_str().to_string())
                .collect()
        })
        .unwrap_or_default();
    for row in &explain {
        let vals: Vec<String> = (0..cols.len())
            .map(|i| {
                let v: Option<String> = row.get_opt(i).and_then(|r| r.ok()).flatten();
                format!("{}={}", cols[i], v.unwrap_or_else(|| "NULL".into()))
            })
            .collect();
        println!("{}", vals.join(" "));
    }
    println!("```");
    println!();
    let _ = time_query(&mut c, SWEEP_QUERY, runs.min(50)).await;
    let with = time_query(&mut c, SWEEP_QUERY, runs).await;
    let no_index = SWEEP_QUERY.replace(
        "FROM STATUS_PROCESS",
        "FROM STATUS_PROCESS IGNORE INDEX (idx_alarma)",
    );
    let without = time_query(&mut c, &no_index, (runs / 10).max(5)).await;
    let mean = |v: &[i128]| v.iter().sum::<i128>() as f64 / v.len() as f64 / 1e6;
    let (mw, mo) = (mean(&with), mean(&without));
    let (nw, no) = (with.len(), without.len());
    let s = summary(with);
    let o = summary(without);
    println!("| query | runs | p50 | p90 | p99 | max | mean |");
    println!("|---|---|---|---|---|---|---|");
    println!(
        "| sweep query (index idx_alarma) | {nw} | {:.3} ms | {:.3} ms | {:.3} ms | {:.3} ms | {mw:.3} ms |",
        s[0], s[1], s[2], s[3]
    );
    println!(
        "| same, `IGNORE INDEX (idx_alarma)` (full scan, for contrast) | {no} | {:.3} ms | {:.3} ms | {:.3} ms | {:.3} ms | {mo:.3} ms |",
        o[0], o[1], o[2], o[3]
    );
    println!();
    drop(c);
    b.finish().await;
}

// ---- main --------------------------------------------------------------------------------------

const FULL_STORM_N: [usize; 3] = [100, 1000, 10000];
const STORM_PAR: [usize; 4] = [1, 4, 16, 64];
const NOISE_LEVELS: [Option<u64>; 4] = [Some(0), Some(10_000), Some(50_000), None];

async fn run(args: Vec<String>) {
    let what = args.first().map(String::as_str).unwrap_or("latency");
    let arg = |i: usize| args.get(i).map(String::as_str);
    let n = |i: usize, d: usize| arg(i).and_then(|a| a.parse().ok()).unwrap_or(d);
    let t0 = Instant::now();
    match what {
        "latency" => latency(n(1, 1000)).await,
        "storm" => match arg(1) {
            None | Some("full") => storm(&FULL_STORM_N, &STORM_PAR, Duration::from_secs(120)).await,
            Some("quick") => storm(&[100, 1000], &STORM_PAR, Duration::from_secs(60)).await,
            Some(v) => {
                let n: usize = v.parse().expect("storm [full|quick|N]");
                storm(&[n], &STORM_PAR, Duration::from_secs(600)).await
            }
        },
        "noise" => match arg(2) {
            Some(r) => {
                noise(
                    &[Some(r.parse().expect("noise SECONDS RATE"))],
                    n(1, 15) as u64,
                )
                .await
            }
            None => noise(&NOISE_LEVELS, n(1, 15) as u64).await,
        },
        "footprint" => footprint(n(1, 60) as u64, 10_000, 3).await,
        "sweep" => sweep(n(1, 100_000), n(2, 1000)).await,
        "fleet" => fleet::fleet(&fleet::Plan::parse(&args[1..])).await,
        "streams" => streams::streams(&args[1..]).await,
        "smoke" => {
            latency(20).await;
            storm(&[100], &[1, 4], Duration::from_secs(20)).await;
            noise(&[Some(10_000)], 2).await;
            footprint(2, 500, 2).await;
            sweep(10_000, 100).await;
            let tiny: Vec<String> = ["2", "idle=2", "alarms=10", "noise=2"]
                .iter()
                .map(|a| a.to_string())
                .collect();
            fleet::fleet(&fleet::Plan::parse(&tiny)).await;
            streams::streams(&["2".to_string(), "writes=10".to_string()]).await;
            // The replica pair is MariaDB's (scripts/replica.sh).
            if flavor() == "mariadb" && external_url().is_none() {
                let mut via = vec!["replica".to_string()];
                via.extend(tiny);
                fleet::fleet(&fleet::Plan::parse(&via)).await;
            }
        }
        "all" => {
            latency(1000).await;
            storm(&FULL_STORM_N, &STORM_PAR, Duration::from_secs(120)).await;
            noise(&NOISE_LEVELS, 15).await;
            footprint(60, 10_000, 3).await;
            sweep(100_000, 1000).await;
            fleet::fleet(&fleet::Plan::parse(&[])).await;
        }
        other => {
            eprintln!(
                "unknown benchmark {other}; try: latency [N] | storm [full|quick|N] | noise [S] | footprint [S] | sweep [ROWS] [RUNS] | fleet [replica] [N...] [idle=S] [alarms=A] [gap=MS] [noise=S] [rate=R] [others=nice|sweep|cgroup] | streams [N] [tls] [writes=W] | smoke | all"
            );
            std::process::exit(2);
        }
    }
    eprintln!("bench {what}: {:.1} s", t0.elapsed().as_secs_f64());
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --all-targets` runs this binary without it,
    // and the test suite is no place for minutes of benchmarks.
    if !std::env::args().any(|a| a == "--bench") {
        println!(
            "benches/daemon.rs: run with `cargo bench --bench daemon -- <scenario>` (bench/run.sh)"
        );
        return;
    }
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| rt.block_on(run(args))));
    drop(rt);
    stop_bench_db();
    if result.is_err() {
        std::process::exit(1);
    }
}

/// The NOISE table the noise scenarios update: `rows` rows of 32 characters of padding.
async fn create_noise_table(c: &mut Conn, rows: u64) {
    c.query_drop("CREATE TABLE NOISE (id INT PRIMARY KEY, v INT NOT NULL, pad CHAR(32) NOT NULL)")
        .await
        .unwrap();
    for chunk in (1..=rows).collect::<Vec<_>>().chunks(2000) {
        let vals: Vec<String> = chunk
            .iter()
            .map(|i| format!("({i}, 0, 'noise-row-{i:08}')"))
            .collect();
        c.query_drop(format!("INSERT INTO NOISE VALUES {}", vals.join(",")))
            .await
            .unwrap();
    }
}
