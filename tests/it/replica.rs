//! The binlog read from a replica (`[binlog]`): a real primary + replica pair started by
//! `scripts/replica.sh` (MariaDB or Oracle MySQL, as the suite runs); alarms written on the
//! primary, handled through the replica's binlog (`check_interval = 3600`, so no sweep helps);
//! a replica that does not log what it replicates is refused with the fix named.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::common::daemon::{bin, eventually, read_lines, Scratch};
use crate::common::db::TestDb;
use crate::common::replica::{caught_up, Replicated, Server};

const SERVICE: &str =
    "[process.default]\nrestart_strategy = service\nhealth_check_command = true\n";

fn binlog_section(replica: &Server) -> String {
    format!("[binlog]\nhost = 127.0.0.1\nport = {}\n", replica.port)
}

async fn triggers(db: &TestDb, id: i64) -> Vec<String> {
    db.query_strings(&format!(
        "SELECT `trigger` FROM RESTART_HISTORY WHERE process_id = {id} ORDER BY id"
    ))
    .await
}

/// The real binary on `config` (its log goes to the scratch dir's log file).
fn spawn(config: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_monitor_service"))
        .args(["-c", config.to_str().unwrap()])
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

fn stop(mut child: Child) {
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let _ = child.wait();
}

/// Writes the config for `db` reading the binlog from `replica` and starts the daemon.
fn start_daemon(s: &Scratch, db: &TestDb, replica: &Server) -> Child {
    let path = s.path("config.ini");
    std::fs::write(
        &path,
        s.config_text(db, &format!("{SERVICE}{}", binlog_section(replica))),
    )
    .unwrap();
    spawn(&path)
}

/// The `binlog connected` lines of the daemon's log.
fn connected_lines(s: &Scratch) -> Vec<String> {
    read_lines(&s.path("monitor_service.log"))
        .into_iter()
        .filter(|l| l.contains("binlog connected"))
        .collect()
}

/// Raises the alarm of `id` on the primary and waits until the daemon cleared it and wrote
/// its history row.
async fn handled(db: &TestDb, id: i64) -> bool {
    db.set_alarm(id).await;
    db.wait_cleared(id, Duration::from_secs(15)).await && {
        for _ in 0..100 {
            if !triggers(db, id).await.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        true
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn alarm_on_the_primary_is_handled_through_the_replicas_binlog() {
    let (set, replica) = Replicated::start("replica-read");
    let db = TestDb::on_server(&set.primary.url, Some(set.primary.socket.clone())).await;
    db.add_process(1, "svc1").await;
    assert!(
        caught_up(&replica, &db.name, 1, 0).await,
        "the replica never got the schema"
    );
    let s = Scratch::new();
    s.fake_systemctl(0, "loaded");
    let daemon = start_daemon(&s, &db, &replica);
    let pos = s.path("state/binlog_position");
    assert!(
        eventually(Duration::from_secs(20), || pos.exists()).await,
        "binlog never connected"
    );

    // The stream is the replica's: the log names it as the source.
    let lines = connected_lines(&s);
    let source = format!("source=127.0.0.1:{}", replica.port);
    assert!(lines.iter().all(|l| l.contains(&source)), "{lines:?}");
    assert!(!lines.is_empty());

    assert!(
        handled(&db, 1).await,
        "alarm written on the primary not handled"
    );
    assert_eq!(triggers(&db, 1).await, vec!["binlog".to_string()]);
    assert_eq!(s.systemctl_calls(), vec!["restart svc1".to_string()]);
    stop(daemon);
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn replica_without_log_slave_updates_is_refused_with_the_fix() {
    let (mut set, _good) = Replicated::start("replica-nolog");
    let bad = set.add_replica(3, false);
    let db = TestDb::on_server(&set.primary.url, Some(set.primary.socket.clone())).await;
    let s = Scratch::new();
    s.fake_systemctl(0, "loaded");
    let text = s.config_text(&db, &format!("{SERVICE}{}", binlog_section(&bad)));
    let text = text.replace("[monitor]\n", "[monitor]\nbinlog = on\n");
    let path = s.path("config.ini");
    std::fs::write(&path, text).unwrap();
    let out = bin(&["--check-config", "-c", path.to_str().unwrap()]);
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "{all}");
    assert!(
        all.contains(&format!("[binlog] server 127.0.0.1:{}", bad.port)),
        "{all}"
    );
    // The variable as the server names it: MySQL 8.0.26+ renamed log_slave_updates.
    let var = match crate::common::server::flavor().as_str() {
        "mysql" => "log_replica_updates",
        _ => "log_slave_updates",
    };
    assert!(all.contains(&format!("{var} is OFF")), "{all}");
    assert!(all.contains(&format!("`{var} = ON`")), "{all}");
    db.drop_db().await;
}

/// The replica restarted under the daemon, then a second replica swapped in (the daemon
/// restarted with `[binlog]` naming it, resumed by GTID): every alarm is handled, and only once.
#[tokio::test(flavor = "multi_thread")]
async fn replica_restarted_and_another_swapped_in_every_alarm_once() {
    let (mut set, first) = Replicated::start("replica-swap");
    let second = set.add_replica(4, true);
    let db = TestDb::on_server(&set.primary.url, Some(set.primary.socket.clone())).await;
    for id in 1..=4 {
        db.add_process(id, &format!("svc{id}")).await;
    }
    assert!(caught_up(&first, &db.name, 4, 0).await);
    assert!(caught_up(&second, &db.name, 4, 0).await);
    let s = Scratch::new();
    s.fake_systemctl(0, "loaded");
    let daemon = start_daemon(&s, &db, &first);
    let pos = s.path("state/binlog_position");
    assert!(eventually(Duration::from_secs(20), || pos.exists()).await);
    assert!(handled(&db, 1).await, "alarm 1 (before the restart)");

    set.restart_replica(2);
    assert!(
        handled(&db, 2).await,
        "alarm 2 (after the replica restarted)"
    );
    stop(daemon);

    let daemon = start_daemon(&s, &db, &second);
    let source = format!("source=127.0.0.1:{}", second.port);
    assert!(
        eventually(Duration::from_secs(20), || connected_lines(&s)
            .iter()
            .any(|l| l.contains(&source)))
        .await,
        "never connected to the second replica"
    );
    // The saved position came from the first replica: the second one, which has every
    // transaction it had seen, is resumed by GTID (not reused by file:offset, not skipped).
    let log = read_lines(&s.path("monitor_service.log"));
    assert!(
        log.iter().any(|l| l.contains("resuming by GTID")),
        "not resumed by GTID: {log:#?}"
    );
    assert!(
        connected_lines(&s)
            .iter()
            .any(|l| l.contains(&source) && l.contains("by_gtid=true")),
        "{:#?}",
        connected_lines(&s)
    );
    assert!(handled(&db, 3).await, "alarm 3 (second replica)");
    assert!(handled(&db, 4).await, "alarm 4 (second replica)");
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop(daemon);
    for id in 1..=4 {
        assert_eq!(
            triggers(&db, id).await.len(),
            1,
            "alarm {id}: {:?}",
            triggers(&db, id).await
        );
    }
    let mut calls = s.systemctl_calls();
    calls.sort();
    let want: Vec<String> = (1..=4).map(|i| format!("restart svc{i}")).collect();
    assert_eq!(calls, want);
    db.drop_db().await;
}
