//! Faults: the database SIGKILLed and restarted under the daemon, the database unreachable at
//! start-up, the daemon SIGKILLed in the middle of a procedure, corrupt state files, two daemons
//! on one database, a health check that hangs, forks and floods stdout, and an unwritable log.
//!
//! Clock jumps are covered by the unit tests of `src/supervisor/breaker.rs` (the breaker keeps
//! monotonic deadlines); the wall clock cannot be set back from here.

use std::collections::BTreeMap;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

use crate::common::bin::BinDaemon;
use crate::common::daemon::{eventually, read_lines, Scratch};
use crate::common::db::TestDb;
use crate::common::procstat;
use crate::common::proxy::Proxy;
use crate::common::server::OwnServer;

const SERVICE: &str =
    "[process.default]\nrestart_strategy = service\nhealth_check_command = true\n";

fn count(text: &str, needle: &str) -> usize {
    text.matches(needle).count()
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}

/// Runs `sql` on a fresh connection to `url`, retrying for up to 20 s (the server may have
/// just come back); panics when it never works.
async fn exec_retry(url: &str, sql: &str) {
    let end = Instant::now() + Duration::from_secs(20);
    loop {
        let err = match mysql_async::Conn::from_url(url).await {
            Ok(mut c) => match c.query_drop(sql).await {
                Ok(()) => {
                    let _ = c.disconnect().await;
                    return;
                }
                Err(e) => e.to_string(),
            },
            Err(e) => e.to_string(),
        };
        assert!(Instant::now() < end, "{sql}: {err}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// First column of every row, on a fresh connection (NULL and errors panic).
async fn column(url: &str, sql: &str) -> Vec<String> {
    let mut c = mysql_async::Conn::from_url(url).await.unwrap();
    let rows: Vec<String> = c.query(sql).await.unwrap();
    let _ = c.disconnect().await;
    rows
}

async fn raised(url: &str) -> i64 {
    column(
        url,
        "SELECT CAST(COUNT(*) AS CHAR) FROM STATUS_PROCESS WHERE alarma = 1",
    )
    .await[0]
        .parse()
        .unwrap()
}

/// Waits until no alarm is raised; false after `timeout`.
async fn all_cleared(url: &str, timeout: Duration) -> bool {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if raised(url).await == 0 {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// Each line of the recorder as a name, with how often it appears.
fn tally(lines: &[String]) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for l in lines {
        *m.entry(l.trim().to_string()).or_insert(0) += 1;
    }
    m
}

/// 1. The server is SIGKILLed and restarted three times while alarms are raised (30 in all,
/// each on its own process): every alarm is handled exactly once, the daemon never exits, and
/// the log says each outage and recovery once.
#[tokio::test(flavor = "multi_thread")]
async fn database_killed_three_times_every_alarm_handled_exactly_once() {
    let server = OwnServer::start("faultkill");
    let db = server.db().await;
    let url = db.url.clone();
    let s = Scratch::new();
    s.fake_systemctl(0, "loaded");
    let n: i64 = 30;
    let mut procese = Vec::new();
    let mut status = Vec::new();
    for id in 1..=n {
        procese.push(format!("({id}, 'svc{id}')"));
        status.push(format!("({id}, 0)"));
    }
    db.exec(&format!(
        "INSERT INTO PROCESE (process_id, process_name) VALUES {}",
        procese.join(",")
    ))
    .await;
    db.exec(&format!(
        "INSERT INTO STATUS_PROCESS (process_id, alarma) VALUES {}",
        status.join(",")
    ))
    .await;
    let rec = s.path("pre.rec");
    let text = s
        .config_text(
            &db,
            &format!(
                "{SERVICE}pre_restart_command = sh -c \"echo %s >> {}\"\n",
                rec.display()
            ),
        )
        .replace("check_interval = 3600", "check_interval = 1")
        .replace("connect_timeout = 5", "connect_timeout = 2")
        .replace("[monitor]\n", "[monitor]\nbinlog = on\n");
    std::fs::write(s.path("c.ini"), text).unwrap();
    let mut d = BinDaemon::start(
        &s.path("c.ini"),
        &s.path("monitor_service.log"),
        &s.path("stderr"),
    );
    d.wait_log("binlog connected", Duration::from_secs(20))
        .await;

    let started = Instant::now();
    let per_phase = [8, 8, 7, 7];
    let mut next: i64 = 1;
    for (phase, &k) in per_phase.iter().enumerate() {
        // Half of the phase's alarms right away (after a restart: before the binlog is back,
        // so the reconnect sweep must catch them), the rest once the binlog is connected.
        let first_half = k / 2;
        for i in 0..k {
            if i == first_half && phase > 0 {
                let want = phase + 1;
                let log = d.log.clone();
                assert!(
                    eventually(Duration::from_secs(40), || count(
                        &read(&log),
                        "binlog connected"
                    ) >= want)
                    .await,
                    "binlog did not reconnect after restart {phase}:\n{}",
                    d.log_text()
                );
            }
            exec_retry(
                &url,
                &format!("UPDATE STATUS_PROCESS SET alarma = 1 WHERE process_id = {next}"),
            )
            .await;
            next += 1;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(d.running(), "the daemon exited:\n{}", d.log_text());
        if phase < 3 {
            server.kill9();
            tokio::time::sleep(Duration::from_millis(1500)).await;
            assert!(
                d.running(),
                "the daemon exited during an outage:\n{}",
                d.log_text()
            );
            server.restart().await;
        }
    }
    assert_eq!(next, n + 1);
    assert!(
        all_cleared(&url, Duration::from_secs(60)).await,
        "alarms left: {} after {:?}\n{}",
        raised(&url).await,
        started.elapsed(),
        d.log_text()
    );
    // Time for a duplicate to show up (a late sweep or a replayed binlog event).
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(d.running(), "the daemon exited:\n{}", d.log_text());
    let log = d.log.clone();
    assert!(
        eventually(Duration::from_secs(10), || {
            let l = read(&log);
            count(&l, "database unreachable") == count(&l, "database reachable again")
        })
        .await,
        "an outage without its recovery line:\n{}",
        d.log_text()
    );
    eprintln!(
        "faults/db-kill: 30 alarms over 3 crashes handled in {:.1}s",
        started.elapsed().as_secs_f64()
    );

    let seen = tally(&read_lines(&rec));
    let want: BTreeMap<String, usize> = (1..=n).map(|i| (format!("svc{i}"), 1)).collect();
    assert_eq!(
        seen, want,
        "each alarm handled exactly once (pre_restart recorder)"
    );
    let success = column(
        &url,
        "SELECT CONCAT(process_id, '=', COUNT(*)) FROM RESTART_HISTORY WHERE outcome = 'success' \
         GROUP BY process_id ORDER BY process_id",
    )
    .await;
    let want: Vec<String> = (1..=n).map(|i| format!("{i}=1")).collect();
    assert_eq!(
        success, want,
        "one success row per process in RESTART_HISTORY"
    );

    let l = d.log_text();
    let unreachable = count(&l, "database unreachable");
    assert!(
        unreachable <= 3,
        "at most one `database unreachable` per outage:\n{l}"
    );
    assert_eq!(unreachable, count(&l, "database reachable again"), "{l}");
    assert_eq!(
        count(&l, "binlog connected"),
        4,
        "one connect + one per restart:\n{l}"
    );
    assert_eq!(
        count(&l, "binlog connection lost"),
        3,
        "one `binlog connection lost` per outage, not one per retry:\n{l}"
    );
    let status = d.stop().await;
    assert_eq!(status.code(), Some(0));
    db.drop_db().await;
}

/// 2. The database cannot be reached at start-up: the daemon waits and retries, says READY to
/// systemd only once it has reached the database (and swept), then handles alarms.
#[tokio::test(flavor = "multi_thread")]
async fn database_unreachable_at_startup_ready_only_once_reached() {
    let db = TestDb::new().await;
    let s = Scratch::new();
    s.fake_systemctl(0, "loaded");
    db.add_process(1, "svc1").await;
    db.add_process(2, "svc2").await;
    // Raised while the daemon cannot see the database: the start-up sweep must catch it.
    db.set_alarm(1).await;
    let proxy = Proxy::start(&db.host, db.port, false).await;
    let text = s
        .config_text(&db, SERVICE)
        .replace(
            &format!("port = {}", db.port),
            &format!("port = {}", proxy.port),
        )
        .replace("connect_timeout = 5", "connect_timeout = 1");
    std::fs::write(s.path("c.ini"), text).unwrap();
    let sock_path = s.path("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let log = s.path("monitor_service.log");
    let mut child = BinDaemon::start_with(&s.path("c.ini"), &log, &s.path("stderr"), |c| {
        c.env("NOTIFY_SOCKET", &sock_path);
    });
    let mut messages: Vec<String> = Vec::new();
    let mut buf = [0u8; 4096];
    let mut drain = |messages: &mut Vec<String>| {
        while let Ok(n) = sock.recv(&mut buf) {
            messages.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    };

    let down_until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < down_until {
        drain(&mut messages);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(child.running(), "the daemon must wait, not exit");
    assert!(
        !messages.iter().any(|m| m.contains("READY=1")),
        "READY before the database was reached: {messages:?}"
    );
    assert!(
        read(&log).contains("database unreachable"),
        "{}",
        read(&log)
    );
    assert_eq!(db.row(1).await.0, 1);

    proxy.up();
    let up_at = Instant::now();
    let mut ready_after = None;
    while up_at.elapsed() < Duration::from_secs(40) {
        drain(&mut messages);
        if messages.iter().any(|m| m.contains("READY=1")) {
            ready_after = Some(up_at.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let ready_after = ready_after.unwrap_or_else(|| {
        panic!(
            "no READY=1 within 40 s of the database coming back: {messages:?}\n{}",
            read(&log)
        )
    });
    let l = read(&log);
    assert!(l.contains("monitor_service started"), "{l}");
    // READY follows the start-up sweep, which handled the alarm raised while unreachable.
    assert!(
        db.wait_cleared(1, Duration::from_secs(10)).await,
        "{}",
        read(&log)
    );
    assert!(
        eventually(Duration::from_secs(20), || read(&log)
            .contains("binlog connected"))
        .await
    );
    db.set_alarm(2).await;
    assert!(
        db.wait_cleared(2, Duration::from_secs(10)).await,
        "{}",
        read(&log)
    );
    eprintln!(
        "faults/startup: READY {:.1}s after the database came back",
        ready_after.as_secs_f64()
    );
    let status = child.stop().await;
    assert_eq!(status.code(), Some(0));
    db.drop_db().await;
}

/// `id failures state ...` lines of the breaker file.
fn breaker_lines(s: &Scratch) -> BTreeMap<i64, (u32, String)> {
    read(&s.path("state/breakers"))
        .lines()
        .filter(|l| !l.trim_start().starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            (
                w[0].parse().unwrap(),
                (w[1].parse().unwrap(), w[2..].join(" ")),
            )
        })
        .collect()
}

/// `file pos [gtid]` of the saved binlog position, or why it does not parse.
fn parse_position(text: &str) -> Result<(String, u64), String> {
    // `file pos [gtid]` on the first line; the server it came from on the lines after.
    let w: Vec<&str> = text
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    if !(2..=3).contains(&w.len()) || w[0].is_empty() {
        return Err(format!("not `file pos`: {text:?}"));
    }
    let pos = w[1].parse().map_err(|_| format!("bad pos: {text:?}"))?;
    Ok((w[0].to_string(), pos))
}

/// 3a. The daemon is SIGKILLed while a pre-restart command runs: the next daemon handles the
/// alarm (still raised), and the breaker state and binlog position written before are intact.
#[tokio::test(flavor = "multi_thread")]
async fn daemon_killed_mid_procedure_alarm_handled_after_restart_state_intact() {
    let db = TestDb::new().await;
    let s = Scratch::new();
    s.fake_systemctl(0, "loaded");
    db.add_process(1, "svcA").await;
    db.add_process(2, "svcB").await;
    let marker = s.path("pre.pid");
    let rec = s.path("pre.rec");
    let config_with = |pre_a: &str| {
        s.config_text(
            &db,
            &format!(
                "{SERVICE}\n[process.svcA]\nrestart_strategy = service\nhealth_check_command = true\npre_restart_command = {pre_a}\n\
                 [process.svcB]\nrestart_strategy = service\nhealth_check_command = false\nhealth_check_timeout = 0.1\nmax_attempts = 1\n"
            ),
        )
    };
    std::fs::write(
        s.path("c.ini"),
        config_with(&format!(
            "sh -c \"echo $$ > {m}.tmp; mv {m}.tmp {m}; sleep 5\"",
            m = marker.display()
        )),
    )
    .unwrap();
    let log = s.path("monitor_service.log");
    let mut d = BinDaemon::start(&s.path("c.ini"), &log, &s.path("stderr"));
    d.wait_log("binlog connected", Duration::from_secs(20))
        .await;

    // An earlier failed procedure leaves svcB's breaker at one failure; the operator then
    // lowers its alarm by hand.
    db.set_alarm(2).await;
    assert!(
        eventually(Duration::from_secs(10), || breaker_lines(&s)
            .get(&2)
            .is_some_and(|b| b.0 == 1))
        .await,
        "no breaker entry for process 2: {:?}\n{}",
        read(&s.path("state/breakers")),
        d.log_text()
    );
    db.exec("UPDATE STATUS_PROCESS SET alarma = 0 WHERE process_id = 2")
        .await;

    db.set_alarm(1).await;
    assert!(
        eventually(Duration::from_secs(10), || marker.exists()).await,
        "the pre-restart command never started:\n{}",
        d.log_text()
    );
    d.child.kill().unwrap();
    let _ = d.child.wait();
    let pre_pid: i32 = read(&marker).trim().parse().unwrap();
    // The orphaned pre-restart command (its own group) is not ours to keep.
    let _ = killpg(Pid::from_raw(pre_pid), Signal::SIGKILL);

    assert_eq!(
        db.row(1).await.0,
        1,
        "the killed procedure did not clear the alarm"
    );
    let pos = read(&s.path("state/binlog_position"));
    parse_position(&pos).unwrap();
    assert_eq!(
        breaker_lines(&s).get(&2).map(|b| b.0),
        Some(1),
        "{:?}",
        read(&s.path("state/breakers"))
    );
    let leftovers: Vec<String> = std::fs::read_dir(s.path("state"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp"))
        .collect();
    eprintln!("faults/kill-daemon: temp files left by the SIGKILL: {leftovers:?}");

    // Started again with a quick pre-restart command: the alarm still raised is handled.
    std::fs::write(
        s.path("c.ini"),
        config_with(&format!("sh -c \"echo %s >> {}\"", rec.display())),
    )
    .unwrap();
    let mut d = BinDaemon::start(&s.path("c.ini"), &log, &s.path("stderr2"));
    assert!(
        db.wait_cleared(1, Duration::from_secs(15)).await,
        "the alarm left by the killed daemon was not handled:\n{}",
        d.log_text()
    );
    d.wait_log("binlog connected", Duration::from_secs(20))
        .await;
    assert_eq!(read_lines(&rec), vec!["svcA"]);
    assert_eq!(
        breaker_lines(&s).get(&2).map(|b| b.0),
        Some(1),
        "process 2's breaker must survive: {:?}",
        read(&s.path("state/breakers"))
    );
    parse_position(&read(&s.path("state/binlog_position"))).unwrap();
    let l = d.log_text();
    assert!(!l.contains("corrupt"), "{l}");
    assert_eq!(d.stop().await.code(), Some(0));
    db.drop_db().await;
}

/// Starts a daemon on `breakers`/`binlog_position` garbage; checks it reports both files as
/// corrupt, moves them aside and handles alarms (one raised before start, one after).
async fn corrupt_state_case(breakers: &[u8], position: &[u8]) {
    let db = TestDb::new().await;
    let s = Scratch::new();
    s.fake_systemctl(0, "loaded");
    db.add_process(1, "svc1").await;
    db.add_process(2, "svc2").await;
    db.set_alarm(1).await;
    std::fs::create_dir_all(s.path("state")).unwrap();
    std::fs::write(s.path("state/breakers"), breakers).unwrap();
    std::fs::write(s.path("state/binlog_position"), position).unwrap();
    std::fs::write(s.path("c.ini"), s.config_text(&db, SERVICE)).unwrap();
    let mut d = BinDaemon::start(
        &s.path("c.ini"),
        &s.path("monitor_service.log"),
        &s.path("stderr"),
    );
    assert!(
        db.wait_cleared(1, Duration::from_secs(15)).await,
        "{}",
        d.log_text()
    );
    d.wait_log("binlog connected", Duration::from_secs(20))
        .await;
    db.set_alarm(2).await;
    assert!(
        db.wait_cleared(2, Duration::from_secs(5)).await,
        "{}",
        d.log_text()
    );
    let l = d.log_text();
    assert!(
        l.contains("corrupt circuit breaker state; moved aside"),
        "{l}"
    );
    assert!(
        l.contains("corrupt binlog position file; moved aside"),
        "{l}"
    );
    assert_eq!(
        std::fs::read(s.path("state/breakers.corrupt"))
            .ok()
            .as_deref(),
        Some(breakers),
        "the corrupt breaker file is kept as breakers.corrupt"
    );
    assert_eq!(
        std::fs::read(s.path("state/binlog_position.corrupt"))
            .ok()
            .as_deref(),
        Some(position),
        "the corrupt position file is kept as binlog_position.corrupt"
    );
    assert!(d.running());
    assert_eq!(d.stop().await.code(), Some(0));
    parse_position(&read(&s.path("state/binlog_position"))).unwrap();
    db.drop_db().await;
}

/// 3b. Text garbage (with NULs, as a torn write can leave) in the breaker and binlog position
/// files: reported, moved aside, not fatal.
#[tokio::test(flavor = "multi_thread")]
async fn corrupt_state_files_are_moved_aside_and_the_daemon_works() {
    corrupt_state_case(
        b"garbage {{ 1 2 3 not a breaker\n\0\0\0\0\nzz yy\n",
        b"@@@ not-a-position\n\0\0\0\n",
    )
    .await;
}

/// 3c. Binary garbage (not UTF-8) in both files is corrupt too: reported and moved aside, not
/// merely "cannot read" and left in place to be tripped over at every start.
#[tokio::test(flavor = "multi_thread")]
async fn binary_garbage_state_files_are_moved_aside_too() {
    corrupt_state_case(
        b"\x00\xff\xfegarbage\x80 1 2 open\n",
        b"mysql-bin.000001 \xff\xfe\x80\n",
    )
    .await;
}

/// 4. Two daemons (different server_ids, both on the binlog) on one database by mistake:
/// each alarm restarts its process once, and every alarm is cleared.
#[tokio::test(flavor = "multi_thread")]
async fn two_daemons_on_one_database_restart_each_process_once() {
    let db = TestDb::new().await;
    let (s1, s2) = (Scratch::new(), Scratch::new());
    s1.fake_systemctl(0, "loaded");
    s2.fake_systemctl(0, "loaded");
    let n = 20;
    for id in 1..=n {
        db.add_process(id, &format!("svc{id}")).await;
    }
    let rec = s1.path("pre.rec");
    let extra = format!(
        "{SERVICE}pre_restart_command = sh -c \"echo %s >> {}; sleep 0.2\"\n",
        rec.display()
    );
    let mut daemons = Vec::new();
    for s in [&s1, &s2] {
        let text = s
            .config_text(&db, &extra)
            .replace("[monitor]\n", "[monitor]\nbinlog = on\n");
        std::fs::write(s.path("c.ini"), text).unwrap();
        daemons.push(BinDaemon::start(
            &s.path("c.ini"),
            &s.path("monitor_service.log"),
            &s.path("stderr"),
        ));
    }
    for d in &mut daemons {
        d.wait_log("binlog connected", Duration::from_secs(20))
            .await;
    }
    db.exec("UPDATE STATUS_PROCESS SET alarma = 1").await;
    assert!(
        all_cleared(&db.url, Duration::from_secs(30)).await,
        "alarms left: {}",
        raised(&db.url).await
    );
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let skipped: usize = daemons
        .iter()
        .map(|d| {
            count(
                &d.log_text(),
                "another monitor_service is handling this process",
            )
        })
        .sum();
    let calls = s1.systemctl_calls().len() + s2.systemctl_calls().len();
    eprintln!(
        "faults/two-daemons: restarts {calls} for {n} alarms, skipped by the claim {skipped}"
    );
    let seen = tally(&read_lines(&rec));
    let want: BTreeMap<String, usize> = (1..=n).map(|i| (format!("svc{i}"), 1)).collect();
    assert_eq!(
        seen, want,
        "each process restarted exactly once (pre_restart recorder)"
    );
    assert_eq!(calls, n as usize, "systemctl restart once per alarm");
    for d in daemons {
        assert_eq!(d.stop().await.code(), Some(0));
    }
    db.drop_db().await;
}

/// 5. A health check that hangs, forks children and floods stdout: bounded by its timeout, the
/// whole group killed, the daemon's memory stays small.
#[tokio::test(flavor = "multi_thread")]
async fn hanging_forking_flooding_health_check_is_bounded_and_its_group_killed() {
    let db = TestDb::new().await;
    let s = Scratch::new();
    s.fake_systemctl(0, "loaded");
    db.add_process(1, "svc1").await;
    let pids = s.path("hc.pids");
    std::fs::write(
        s.path("c.ini"),
        s.config_text(
            &db,
            &format!(
                "[process.default]\nrestart_strategy = service\nmax_attempts = 1\ncommand_timeout = 1\nhealth_check_timeout = 0.5\n\
                 health_check_command = sh -c \"echo $$ >> {}; yes & yes & sleep 60\"\n",
                pids.display()
            ),
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
    let rss_before = procstat::vm_rss_kb(pid).unwrap();
    let t = Instant::now();
    db.set_alarm(1).await;
    let mut rss_max = rss_before;
    let mut ended = None;
    while t.elapsed() < Duration::from_secs(15) {
        rss_max = rss_max.max(procstat::vm_rss_kb(pid).unwrap_or(0));
        if d.log_text().contains("restart failed; alarm stays raised") {
            ended = Some(t.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let ended = ended.unwrap_or_else(|| panic!("the procedure did not end:\n{}", d.log_text()));
    assert!(
        ended < Duration::from_secs(4),
        "procedure took {ended:?} with command_timeout 1"
    );
    let (alarma, notes) = db.row(1).await;
    assert_eq!(alarma, 1);
    let notes = notes.unwrap_or_default();
    assert!(notes.contains("timed out"), "{notes}");
    let groups: Vec<i32> = read_lines(&pids)
        .iter()
        .map(|l| l.trim().parse().unwrap())
        .collect();
    assert!(!groups.is_empty(), "the health check never ran");
    let gone = eventually(Duration::from_secs(2), || {
        groups
            .iter()
            .all(|g| procstat::group_members(*g).is_empty())
    })
    .await;
    let left: Vec<(i32, String)> = groups
        .iter()
        .flat_map(|g| procstat::group_members(*g))
        .collect();
    for g in &groups {
        let _ = killpg(Pid::from_raw(*g), Signal::SIGKILL);
    }
    assert!(gone, "children of the health check survived: {left:?}");
    for _ in 0..4 {
        rss_max = rss_max.max(procstat::vm_rss_kb(pid).unwrap_or(0));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "faults/flood: procedure ended in {:.2}s; daemon VmRSS {} kB before, {} kB max",
        ended.as_secs_f64(),
        rss_before,
        rss_max
    );
    assert!(rss_max < 40 * 1024, "VmRSS {rss_max} kB");
    assert!(d.running());
    assert_eq!(d.stop().await.code(), Some(0));
    db.drop_db().await;
}

/// 6a. The log file cannot be created (its parent is a regular file): the daemon starts anyway,
/// says so on stderr, and still restarts processes.
#[tokio::test(flavor = "multi_thread")]
async fn unwritable_log_at_start_logs_to_stderr_and_still_restarts() {
    let db = TestDb::new().await;
    let s = Scratch::new();
    s.fake_systemctl(0, "loaded");
    db.add_process(1, "svc1").await;
    std::fs::write(s.path("afile"), "a regular file\n").unwrap();
    let log = s.path("afile/monitor_service.log");
    let text = s.config_text(&db, SERVICE).replace(
        &format!("log_file = {}", s.path("monitor_service.log").display()),
        &format!("log_file = {}", log.display()),
    );
    assert!(text.contains(&log.display().to_string()));
    std::fs::write(s.path("c.ini"), text).unwrap();
    let stderr = s.path("stderr");
    let mut child = BinDaemon::start(&s.path("c.ini"), &log, &stderr);
    assert!(
        eventually(Duration::from_secs(20), || read(&stderr)
            .contains("binlog connected"))
        .await,
        "{}",
        read(&stderr)
    );
    assert!(child.running(), "{}", read(&stderr));
    assert!(
        read(&stderr).contains("logging to stderr only"),
        "{}",
        read(&stderr)
    );
    db.set_alarm(1).await;
    assert!(
        db.wait_cleared(1, Duration::from_secs(5)).await,
        "{}",
        read(&stderr)
    );
    assert_eq!(s.systemctl_calls(), vec!["restart svc1"]);
    let status = child.stop().await;
    assert_eq!(status.code(), Some(0));
    db.drop_db().await;
}

/// 6b. The log directory is replaced by a file while the daemon runs, then SIGHUP reopens the
/// log: stderr says once that the file cannot be written, and alarms are still handled.
#[tokio::test(flavor = "multi_thread")]
async fn log_directory_gone_after_sighup_says_so_once_and_still_restarts() {
    let db = TestDb::new().await;
    let s = Scratch::new();
    s.fake_systemctl(0, "loaded");
    db.add_process(1, "svc1").await;
    db.add_process(2, "svc2").await;
    let log = s.path("logs/monitor_service.log");
    let text = s.config_text(&db, SERVICE).replace(
        &format!("log_file = {}", s.path("monitor_service.log").display()),
        &format!("log_file = {}", log.display()),
    );
    std::fs::write(s.path("c.ini"), text).unwrap();
    let stderr = s.path("stderr");
    let mut child = BinDaemon::start(&s.path("c.ini"), &log, &stderr);
    assert!(
        eventually(Duration::from_secs(20), || read(&log)
            .contains("binlog connected"))
        .await,
        "{}",
        read(&stderr)
    );
    db.set_alarm(1).await;
    assert!(db.wait_cleared(1, Duration::from_secs(5)).await);

    std::fs::rename(s.path("logs"), s.path("logs.old")).unwrap();
    std::fs::write(s.path("logs"), "not a directory\n").unwrap();
    child.signal(Signal::SIGHUP);
    assert!(
        eventually(Duration::from_secs(5), || read(&stderr)
            .contains("configuration reloaded"))
        .await,
        "{}",
        read(&stderr)
    );
    db.set_alarm(2).await;
    assert!(
        db.wait_cleared(2, Duration::from_secs(5)).await,
        "{}",
        read(&stderr)
    );
    db.set_alarm(1).await;
    assert!(
        db.wait_cleared(1, Duration::from_secs(5)).await,
        "{}",
        read(&stderr)
    );
    assert!(child.running());
    assert_eq!(
        s.systemctl_calls(),
        vec!["restart svc1", "restart svc2", "restart svc1"]
    );
    let status = child.stop().await;
    assert_eq!(status.code(), Some(0));
    let e = read(&stderr);
    assert_eq!(count(&e, "cannot write the log file"), 1, "{e}");
    assert!(std::fs::metadata(s.path("logs")).unwrap().is_file());
    db.drop_db().await;
}
