//! Load: an alarm storm (one UPDATE alarming 1000 processes), a flapping process, and alarms
//! arriving while the server takes an unrelated write load.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;

use crate::common::bin::BinDaemon;
use crate::common::daemon::{eventually, read_lines, Daemon, Scratch};
use crate::common::db::TestDb;
use crate::common::procs;
use crate::common::procstat;
use crate::common::server::OwnServer;

async fn raised(db: &TestDb) -> i64 {
    db.query_strings("SELECT COUNT(*) FROM STATUS_PROCESS WHERE alarma = 1")
        .await[0]
        .parse()
        .unwrap()
}

/// Adds processes `1..=n` named `prefix{id}` with two multi-row INSERTs.
async fn add_many(db: &TestDb, n: i64, prefix: &str) {
    let names: Vec<String> = (1..=n).map(|i| format!("({i}, '{prefix}{i}')")).collect();
    let rows: Vec<String> = (1..=n).map(|i| format!("({i}, 0)")).collect();
    db.exec(&format!(
        "INSERT INTO PROCESE (process_id, process_name) VALUES {}",
        names.join(",")
    ))
    .await;
    db.exec(&format!(
        "INSERT INTO STATUS_PROCESS (process_id, alarma) VALUES {}",
        rows.join(",")
    ))
    .await;
}

/// 8. One UPDATE alarms 1000 processes: all are handled, never more than
/// `max_parallel_restarts` at once, none twice, none lost.
#[tokio::test(flavor = "multi_thread")]
async fn alarm_storm_1000_processes_bounded_parallelism_each_once() {
    let db = TestDb::new().await;
    let s = Scratch::new();
    s.fake_systemctl(0, "loaded");
    let n: i64 = 1000;
    add_many(&db, n, "st").await;
    let rec = s.path("pre.rec");
    let config = s.config(
        &db,
        &format!(
            "[process.default]\nrestart_strategy = service\nhealth_check_command = true\n\
             pre_restart_command = sh -c \"echo start %s >> {r}; sleep 0.01; echo end %s >> {r}\"\n",
            r = rec.display()
        ),
    );
    assert_eq!(config.monitor.max_parallel_restarts, 4);
    let daemon = Daemon::start(config);
    assert!(
        eventually(Duration::from_secs(15), || s
            .path("state/binlog_position")
            .exists())
        .await,
        "binlog never connected"
    );
    let t = Instant::now();
    db.exec("UPDATE STATUS_PROCESS SET alarma = 1").await;
    let mut left = n;
    while t.elapsed() < Duration::from_secs(150) {
        left = raised(&db).await;
        if left == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let took = t.elapsed();
    assert_eq!(left, 0, "alarms left after {took:?}");
    eprintln!(
        "load/storm: 1000 alarms from one UPDATE handled in {:.1}s ({:.0}/s)",
        took.as_secs_f64(),
        n as f64 / took.as_secs_f64()
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    daemon.stop().await;

    let lines = read_lines(&rec);
    let (mut cur, mut max) = (0i64, 0i64);
    let mut starts: BTreeMap<String, usize> = BTreeMap::new();
    for l in &lines {
        match l.split_once(' ') {
            Some(("start", name)) => {
                cur += 1;
                max = max.max(cur);
                *starts.entry(name.to_string()).or_insert(0) += 1;
            }
            Some(("end", _)) => cur -= 1,
            _ => panic!("bad recorder line {l:?}"),
        }
    }
    eprintln!("load/storm: at most {max} pre-restart commands at once");
    assert!(
        max <= 4,
        "{max} procedures at once with max_parallel_restarts = 4"
    );
    assert!(
        max >= 2,
        "procedures never overlapped: the storm ran serially"
    );
    let twice: Vec<_> = starts.iter().filter(|(_, c)| **c > 1).collect();
    assert!(twice.is_empty(), "restarted more than once: {twice:?}");
    assert_eq!(starts.len(), n as usize, "every process restarted");
    assert_eq!(cur, 0, "every start has its end");
    assert_eq!(s.systemctl_calls().len(), n as usize);
    let by_outcome = db
        .query_strings(
            "SELECT CONCAT(outcome, '=', COUNT(*), '/', COUNT(DISTINCT process_id)) FROM RESTART_HISTORY GROUP BY outcome",
        )
        .await;
    assert_eq!(by_outcome, vec![format!("success={n}/{n}")]);
    db.drop_db().await;
}

/// 9. A process that dies right after every restart: the breaker opens after
/// `max_restart_failures` procedures and no restart follows while it is open.
#[tokio::test(flavor = "multi_thread")]
async fn flapping_process_opens_the_breaker_and_stops_restarting() {
    let db = TestDb::new().await;
    let s = Scratch::new();
    let name = procs::unique_name("fl");
    // A copy of `true` under the process's name: it is gone as soon as it starts. The built-in
    // health check (a process found must still live after the settle time) never passes,
    // however briefly a start was seen (a `pgrep` could catch it alive under load).
    let bin = s.path(&format!("bin/{name}"));
    std::fs::create_dir_all(s.path("bin")).unwrap();
    std::fs::copy("/bin/true", &bin).unwrap();
    let starts_file = s.path("starts");
    db.add_process(7, &name).await;
    db.set_alarm(7).await;
    let extra = format!(
        "[process.{name}]\nrestart_strategy = process\nstart_command = sh -c \"echo x >> {starts}; exec {bin}\"\n\
         health_check_timeout = 0.3\nhealth_check_settle = 0.2\nmax_attempts = 2\nrestart_delay = 0\n",
        starts = starts_file.display(),
        bin = bin.display()
    );
    let text = s
        .config_text(&db, &extra)
        .replace("check_interval = 3600", "check_interval = 0.3")
        .replace("[monitor]\n", "[monitor]\nmax_restart_failures = 3\n");
    std::fs::write(s.path("c.ini"), &text).unwrap();
    let starts = || read_lines(&starts_file).len();

    // The real binary: the started copies are its children, reaped by it alone (an in-process
    // daemon would share its reaping with every other test of this process).
    let t = Instant::now();
    let mut daemon = BinDaemon::start(
        &s.path("c.ini"),
        &s.path("monitor_service.log"),
        &s.path("stderr"),
    );
    let reached = eventually(Duration::from_secs(20), || starts() >= 6).await;
    let at_six = t.elapsed();
    assert!(
        reached,
        "only {} starts: {:?} {:?}\n{}",
        starts(),
        db.row(7).await,
        db.query_strings("SELECT CONCAT_WS(' ', outcome, detail) FROM RESTART_HISTORY ORDER BY id")
            .await,
        daemon.log_text()
    );
    // Let a procedure under way finish, then watch two seconds of sweeps.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let after = starts();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let later = starts();
    let (alarma, notes) = db.row(7).await;
    assert!(daemon.running(), "{}", daemon.log_text());
    assert_eq!(daemon.stop().await.code(), Some(0));
    eprintln!(
        "load/flapping: 6 starts in {:.1}s, then {} more",
        at_six.as_secs_f64(),
        later - 6
    );
    assert_eq!(
        after, 6,
        "three procedures of two attempts, then the breaker opens"
    );
    assert_eq!(later, 6, "no start while the breaker is open");
    assert_eq!(alarma, 1);
    let notes = notes.unwrap_or_default();
    assert!(notes.contains("circuit open until"), "{notes}");
    let outcomes = db
        .query_strings("SELECT outcome FROM RESTART_HISTORY WHERE process_id = 7 ORDER BY id")
        .await;
    assert_eq!(outcomes, vec!["failed", "failed", "failed"]);
    procs::kill_all(&name);
    db.drop_db().await;
}

/// 10. Unrelated write load on the server (multi-row INSERTs into another table from a few
/// connections) while 20 alarms arrive paced: each is handled through the binlog within a
/// second. Reports the achieved row rate and the daemon's CPU.
#[tokio::test(flavor = "multi_thread")]
async fn alarms_handled_promptly_under_unrelated_write_load() {
    // A server of its own: every binlog reader on a shared server would have to read this load.
    let server = OwnServer::start("load");
    let db = server.db().await;
    let s = Scratch::new();
    s.fake_systemctl(0, "loaded");
    let n: i64 = 20;
    add_many(&db, n, "ld").await;
    db.exec("CREATE TABLE noise (id BIGINT AUTO_INCREMENT PRIMARY KEY, a INT NOT NULL, b VARCHAR(32) NOT NULL) ENGINE=InnoDB")
        .await;
    std::fs::write(
        s.path("c.ini"),
        s.config_text(
            &db,
            "[process.default]\nrestart_strategy = service\nhealth_check_command = true\n",
        ),
    )
    .unwrap();
    let mut d = BinDaemon::start(
        &s.path("c.ini"),
        &s.path("monitor_service.log"),
        &s.path("stderr"),
    );
    d.wait_log("binlog connected", Duration::from_secs(20))
        .await;
    let pid = d.pid();

    let stop = Arc::new(AtomicBool::new(false));
    let rows = Arc::new(AtomicU64::new(0));
    let batch = 1000;
    let values: Vec<String> = (0..batch)
        .map(|i| format!("({i},'row-{i:08}-payload')"))
        .collect();
    let insert = format!("INSERT INTO noise (a, b) VALUES {}", values.join(","));
    let mut writers = Vec::new();
    for _ in 0..3 {
        let (stop, rows, insert, url) =
            (stop.clone(), rows.clone(), insert.clone(), db.url.clone());
        writers.push(tokio::spawn(async move {
            let mut c = mysql_async::Conn::from_url(&url).await.unwrap();
            while !stop.load(Ordering::Relaxed) {
                c.query_drop(&insert).await.unwrap();
                rows.fetch_add(batch, Ordering::Relaxed);
            }
            let _ = c.disconnect().await;
        }));
    }
    let load_start = Instant::now();
    let cpu_start = procstat::cpu_ticks(pid).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;

    let mut latencies = Vec::new();
    for id in 1..=n {
        let slot = Instant::now();
        db.set_alarm(id).await;
        let cleared = db.wait_cleared(id, Duration::from_secs(5)).await;
        latencies.push((id, slot.elapsed(), cleared));
        if let Some(rest) = Duration::from_millis(150).checked_sub(slot.elapsed()) {
            tokio::time::sleep(rest).await;
        }
    }
    while load_start.elapsed() < Duration::from_secs(3) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.await.unwrap();
    }
    let elapsed = load_start.elapsed();
    let cpu = procstat::cpu_ticks(pid).unwrap() - cpu_start;
    let cpu_s = cpu as f64 / procstat::clk_tck() as f64;
    let total = rows.load(Ordering::Relaxed);
    let rate = total as f64 / elapsed.as_secs_f64();
    let worst = latencies.iter().map(|l| l.1).max().unwrap();
    eprintln!(
        "load/write-load: {total} rows in {:.1}s = {rate:.0} rows/s on another table; \
         20 alarms, worst {:.0} ms; daemon CPU {cpu_s:.2}s = {:.0}% of one core",
        elapsed.as_secs_f64(),
        worst.as_secs_f64() * 1000.0,
        100.0 * cpu_s / elapsed.as_secs_f64()
    );
    assert!(d.running(), "{}", d.log_text());
    let slow: Vec<_> = latencies
        .iter()
        .filter(|(_, took, ok)| !ok || *took >= Duration::from_secs(1))
        .collect();
    assert!(slow.is_empty(), "alarms not handled within 1 s: {slow:?}");
    let triggers = db
        .query_strings(
            "SELECT CONCAT(`trigger`, '=', COUNT(*)) FROM RESTART_HISTORY GROUP BY `trigger`",
        )
        .await;
    assert_eq!(triggers, vec![format!("binlog={n}")]);
    assert_eq!(d.stop().await.code(), Some(0));
    db.drop_db().await;
}
