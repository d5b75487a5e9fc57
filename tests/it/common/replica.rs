//! A throwaway primary and its replicas, started by `scripts/replica.sh` (each server a
//! `scripts/testdb.sh` of its own dir); stopped and removed on drop.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use mysql_async::prelude::Queryable;

/// One server of the set.
#[derive(Debug, Clone)]
pub struct Server {
    pub url: String,
    pub socket: PathBuf,
    pub port: u16,
}

pub struct Replicated {
    root: PathBuf,
    dirs: Vec<PathBuf>,
    pub primary: Server,
}

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn try_script(args: &[&str], envs: &[(&str, &str)]) -> Option<String> {
    let out = Command::new("bash")
        .arg(repo().join("scripts/replica.sh"))
        .args(args)
        .envs(envs.iter().copied())
        .stderr(std::process::Stdio::inherit())
        .output()
        .unwrap();
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

fn script(args: &[&str], envs: &[(&str, &str)]) -> String {
    try_script(args, envs).unwrap_or_else(|| panic!("scripts/replica.sh {args:?} failed"))
}

fn export(stdout: &str, key: &str) -> String {
    stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix(&format!("export {key}=")))
        .map(|v| v.trim_matches('\'').to_string())
        .unwrap_or_else(|| panic!("no {key} in {stdout}"))
}

fn server(stdout: &str, which: &str) -> Server {
    let url = export(stdout, &format!("MONITOR_TEST_{which}_URL"));
    let port = url.rsplit(':').next().unwrap().parse().unwrap();
    Server {
        socket: PathBuf::from(export(stdout, &format!("MONITOR_TEST_{which}_SOCKET"))),
        url,
        port,
    }
}

impl Replicated {
    /// A primary and one replica (`server_id` 2) that logs what it replicates, of the suite's
    /// flavour (scripts/replica.sh pairs MariaDB or Oracle MySQL servers).
    pub fn start(tag: &str) -> (Replicated, Server) {
        let root = repo().join(format!("target/own-{tag}-{}", std::process::id()));
        let mut set = Replicated {
            dirs: vec![root.join("primary")],
            root,
            primary: Server {
                url: String::new(),
                socket: PathBuf::new(),
                port: 0,
            },
        };
        let replica = set.add_replica(2, true);
        (set, replica)
    }

    /// Another replica of the primary, with `server_id`; `log_updates` false starts it not
    /// logging what it replicates (MariaDB `log_slave_updates`, MySQL `log_replica_updates`).
    pub fn add_replica(&mut self, server_id: u32, log_updates: bool) -> Server {
        let dir = self.root.join(format!("replica{server_id}"));
        self.dirs.push(dir.clone());
        let args = [
            "start",
            self.dirs[0].to_str().unwrap(),
            dir.to_str().unwrap(),
            &server_id.to_string(),
        ];
        let flavor = super::server::flavor();
        let envs = [
            (
                "MONITOR_REPLICA_LOG_UPDATES",
                if log_updates { "ON" } else { "OFF" },
            ),
            ("MONITOR_TESTDB_FLAVOR", flavor.as_str()),
        ];
        // mariadb-install-db now and then fails under load; a second try on a clean dir works.
        let out = try_script(&args, &envs).unwrap_or_else(|| {
            eprintln!(
                "scripts/replica.sh start failed for {}; retrying once",
                dir.display()
            );
            try_script(&["stop", dir.to_str().unwrap()], &[]);
            script(&args, &envs)
        });
        self.primary = server(&out, "PRIMARY");
        server(&out, "REPLICA")
    }

    /// Stops the replica of `server_id` and starts it again (replication resumes by GTID).
    pub fn restart_replica(&self, server_id: u32) {
        let dir = self.root.join(format!("replica{server_id}"));
        script(&["restart", dir.to_str().unwrap()], &[]);
    }
}

impl Drop for Replicated {
    fn drop(&mut self) {
        let mut args = vec!["stop"];
        args.extend(self.dirs.iter().rev().map(|d| d.to_str().unwrap()));
        script(&args, &[]);
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// Waits until `server` has `db`'s STATUS_PROCESS row of process `id` with `alarma` = `alarm`
/// (replication caught up with that write).
pub async fn caught_up(server: &Server, db: &str, id: i64, alarm: i64) -> bool {
    let opts = mysql_async::OptsBuilder::default()
        .user(Some("root"))
        .socket(Some(server.socket.display().to_string()));
    let Ok(mut conn) = mysql_async::Conn::new(opts).await else {
        return false;
    };
    for _ in 0..200 {
        let row: Result<Option<i64>, _> = conn
            .exec_first(
                format!("SELECT alarma FROM `{db}`.STATUS_PROCESS WHERE process_id = ?"),
                (id,),
            )
            .await;
        if matches!(row, Ok(Some(a)) if a == alarm) {
            let _ = conn.disconnect().await;
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = conn.disconnect().await;
    false
}
