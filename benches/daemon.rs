//! Benchmarks of the daemon as users run it: a throwaway MariaDB (or `MONITOR_TEST_DB_URL`),
//! the release binary as a separate process, trivial restart commands. Prints tables.
//!
//! `cargo bench --bench daemon -- latency [ALARMS]` (see bench/README.md; `bench/run.sh` runs
//! them all). Numbers, not assertions: targets are compared in bench/RESULTS.md.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mysql_async::prelude::*;
use mysql_async::{Conn, Opts, OptsBuilder, Pool};

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn now_ns() -> i128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i128
}

/// The server: `MONITOR_TEST_DB_URL`, else a throwaway one in target/bench-db.
fn server_url() -> String {
    if let Ok(u) = std::env::var("MONITOR_TEST_DB_URL") {
        if !u.is_empty() {
            return u;
        }
    }
    let out = Command::new("bash")
        .arg(repo().join("scripts/testdb.sh"))
        .arg("start")
        .env("MONITOR_TESTDB_DIR", repo().join("target/bench-db"))
        .stderr(Stdio::inherit())
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("export MONITOR_TEST_DB_URL="))
        .map(|v| v.trim_matches('\'').trim_matches('"').to_string())
        .expect("no URL from testdb.sh")
}

/// bench/stamp.c compiled to target/bench/stamp.
fn stamp_binary() -> PathBuf {
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
}

struct Bench {
    url: String,
    db: String,
    pool: Pool,
    dir: PathBuf,
}

impl Bench {
    async fn new(tag: &str, processes: usize) -> Bench {
        let url = server_url();
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
        for chunk in (1..=processes).collect::<Vec<_>>().chunks(1000) {
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
        let pool = Pool::new(OptsBuilder::from_opts(opts).db_name(Some(db.clone())));
        let dir = repo().join(format!("target/bench/{tag}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Bench { url, db, pool, dir }
    }

    /// Writes a config (service strategy, `systemctl` = the stamp program) and starts the
    /// release daemon; waits until it has followed the binlog (or swept once).
    fn start_daemon(&self, check_interval: &str, binlog: &str, parallel: usize) -> Child {
        let opts = Opts::from_url(&self.url).unwrap();
        let stamps = self.dir.join("stamps");
        let _ = std::fs::remove_file(&stamps);
        let state = self.dir.join("state");
        let _ = std::fs::remove_dir_all(&state);
        let config = format!(
            "[database]\nhost = {}\nport = {}\nuser = {}\n{}database = {}\n\n[monitor]\ncheck_interval = {check_interval}\nbinlog = {binlog}\n\
             server_id = {}\nmax_parallel_restarts = {parallel}\nstate_dir = {}\nsystemctl = {}\n\n[logging]\nlog_file = {}\nlevel = warn\n\n\
             [process.default]\nrestart_strategy = service\nhealth_check_command = true\nrestart_delay = 0\n",
            opts.ip_or_hostname(),
            opts.tcp_port(),
            opts.user().unwrap_or("root"),
            opts.pass().map(|p| format!("password = {p}\n")).unwrap_or_default(),
            self.db,
            900_000 + std::process::id() % 90_000,
            state.display(),
            stamp_binary().display(),
            self.dir.join("daemon.log").display(),
        );
        let path = self.dir.join("config.ini");
        std::fs::write(&path, config).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_monitor_service"))
            .args(["-c", path.to_str().unwrap()])
            .env("STAMP_FILE", &stamps)
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let ready = Instant::now();
        if binlog != "off" {
            while !state.join("binlog_position").exists() {
                assert!(
                    ready.elapsed() < Duration::from_secs(30),
                    "daemon did not connect"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        } else {
            std::thread::sleep(Duration::from_millis(500));
        }
        child
    }

    /// `unit -> ns` from the stamp file.
    fn stamps(&self) -> std::collections::HashMap<String, i128> {
        std::fs::read_to_string(self.dir.join("stamps"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| {
                let (u, t) = l.split_once(' ')?;
                Some((u.to_string(), t.parse().ok()?))
            })
            .collect()
    }
}

fn stop(mut child: Child) {
    let _ = Command::new("kill").arg(child.id().to_string()).status();
    let _ = child.wait();
}

/// p50, p90, p99, max (ms) of a sample in nanoseconds.
fn summary(mut v: Vec<i128>) -> [f64; 4] {
    v.sort_unstable();
    let at = |q: f64| {
        let i = ((v.len() as f64 - 1.0) * q).round() as usize;
        v[i] as f64 / 1e6
    };
    [at(0.5), at(0.9), at(0.99), *v.last().unwrap() as f64 / 1e6]
}

/// Raises `alarms` alarms one after another (paced `gap` apart, each on its own process) and
/// measures the client's OK to the restart command's start and to the alarm cleared.
async fn latency_run(b: &Bench, alarms: usize, gap: Duration) -> (Vec<i128>, Vec<i128>) {
    let mut conn = b.pool.get_conn().await.unwrap();
    let mut poll = b.pool.get_conn().await.unwrap();
    let mut ok_at = vec![0i128; alarms + 1];
    let mut cleared_at = vec![0i128; alarms + 1];
    let mut pending: Vec<usize> = Vec::new();
    let mut next = 1usize;
    let mut next_at = Instant::now();
    let deadline = Instant::now() + gap * alarms as u32 + Duration::from_secs(30);
    while (next <= alarms || !pending.is_empty()) && Instant::now() < deadline {
        if next <= alarms && Instant::now() >= next_at {
            conn.exec_drop(
                "UPDATE STATUS_PROCESS SET alarma = 1 WHERE process_id = ?",
                (next,),
            )
            .await
            .unwrap();
            ok_at[next] = now_ns();
            pending.push(next);
            next += 1;
            next_at += gap;
        }
        if !pending.is_empty() {
            let raised: Vec<usize> = poll
                .query("SELECT process_id FROM STATUS_PROCESS WHERE alarma = 1")
                .await
                .unwrap();
            let t = now_ns();
            pending.retain(|id| {
                if raised.contains(id) {
                    true
                } else {
                    cleared_at[*id] = t;
                    false
                }
            });
        }
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
    assert!(pending.is_empty(), "alarms not cleared: {pending:?}");
    // The stamp file is written before the clear, so it is complete now.
    let stamps = b.stamps();
    let mut to_cmd = Vec::new();
    let mut to_clear = Vec::new();
    for id in 1..=alarms {
        let s = stamps[&format!("p{id}")];
        to_cmd.push(s - ok_at[id]);
        to_clear.push(cleared_at[id] - ok_at[id]);
    }
    (to_cmd, to_clear)
}

async fn latency(alarms: usize) {
    println!(
        "## Reaction latency: UPDATE commit (client OK) to restart command start / alarm cleared"
    );
    println!();
    println!("{alarms} alarms per mode, one process each, paced; trivial commands (bench/stamp.c as systemctl, `true` as health check).");
    println!();
    println!("| mode | to command p50 | p90 | p99 | max | to cleared p50 | p90 | p99 | max |");
    println!("|---|---|---|---|---|---|---|---|---|");
    let mut p50 = Vec::new();
    for (mode, interval, binlog, gap) in [
        ("binlog", "3600", "on", Duration::from_millis(20)),
        (
            "sweep-only, check_interval = 1",
            "1",
            "off",
            Duration::from_millis(37),
        ),
    ] {
        let b = Bench::new("latency", alarms).await;
        let daemon = b.start_daemon(interval, binlog, 4);
        let (cmd, clear) = latency_run(&b, alarms, gap).await;
        stop(daemon);
        let c = summary(cmd);
        let k = summary(clear);
        p50.push(c[0]);
        println!(
            "| {mode} | {:.2} ms | {:.2} ms | {:.2} ms | {:.2} ms | {:.2} ms | {:.2} ms | {:.2} ms | {:.2} ms |",
            c[0], c[1], c[2], c[3], k[0], k[1], k[2], k[3]
        );
    }
    println!();
    println!(
        "sweep-only / binlog, p50 to command: {:.0}x",
        p50[1] / p50[0]
    );
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let what = args.first().map(String::as_str).unwrap_or("latency");
    let n = |i: usize, d: usize| args.get(i).and_then(|a| a.parse().ok()).unwrap_or(d);
    let rt = tokio::runtime::Runtime::new().unwrap();
    match what {
        "latency" => rt.block_on(latency(n(1, 200))),
        other => eprintln!("unknown benchmark {other}; try: latency"),
    }
}
