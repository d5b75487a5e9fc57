//! `streams N [tls] [writes=W]`: N raw binlog streams (mysql_async, no daemon) in this
//! process, W one-row commits 50 ms apart; for each commit, the time from its client OK to its
//! XID event on each stream. Tells the server's and the client library's share of a fleet's
//! latency apart from the daemon's.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use mysql_async::binlog::events::EventData;
use mysql_async::prelude::*;
use mysql_async::{BinlogStreamRequest, Conn, Opts, OptsBuilder, SslOpts};

use super::{server_url, server_version, summary};

/// Arrival times of XID events, per stream.
type Arrivals = Arc<Vec<Mutex<Vec<Instant>>>>;

pub async fn streams(args: &[String]) {
    let n: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(10);
    let tls = args.iter().any(|a| a == "tls");
    let writes: usize = args
        .iter()
        .find_map(|a| a.strip_prefix("writes=").and_then(|v| v.parse().ok()))
        .unwrap_or(200);
    let url = server_url();
    let mut admin = Conn::new(Opts::from_url(&url).unwrap()).await.unwrap();
    admin
        .query_drop("CREATE DATABASE IF NOT EXISTS bench_streams")
        .await
        .unwrap();
    admin
        .query_drop("CREATE TABLE IF NOT EXISTS bench_streams.t (id INT PRIMARY KEY, v INT)")
        .await
        .unwrap();
    admin
        .query_drop("REPLACE INTO bench_streams.t VALUES (1, 0)")
        .await
        .unwrap();
    let arrivals: Arrivals = Arc::new((0..n).map(|_| Mutex::new(Vec::new())).collect());
    let mut tasks = Vec::new();
    for s in 0..n {
        let conn = connect(&url, tls).await;
        tasks.push(tokio::spawn(follow(conn, s, arrivals.clone())));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    for a in arrivals.iter() {
        a.lock().unwrap().clear();
    }
    let mut oks = Vec::new();
    for _ in 0..writes {
        admin
            .query_drop("UPDATE bench_streams.t SET v = v + 1 WHERE id = 1")
            .await
            .unwrap();
        oks.push(Instant::now());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    report(n, tls, &url, &oks, &arrivals).await;
    for t in tasks {
        t.abort();
    }
    admin
        .query_drop("DROP DATABASE bench_streams")
        .await
        .unwrap();
}

async fn connect(url: &str, tls: bool) -> Conn {
    let mut b = OptsBuilder::from_opts(Opts::from_url(url).unwrap());
    if tls {
        b = b.ssl_opts(SslOpts::default().with_danger_accept_invalid_certs(true));
    }
    Conn::new(b).await.unwrap()
}

async fn follow(mut conn: Conn, s: usize, arrivals: Arrivals) {
    conn.query_drop("SET @master_heartbeat_period = 1000000000")
        .await
        .unwrap();
    let (file, pos): (String, u64) = match conn.query_first("SHOW BINARY LOG STATUS").await {
        Ok(Some(row)) => {
            let row: mysql_async::Row = row;
            (row.get(0).unwrap(), row.get(1).unwrap())
        }
        _ => conn
            .query_first::<(String, u64, String, String), _>("SHOW MASTER STATUS")
            .await
            .unwrap()
            .map(|(f, p, _, _)| (f, p))
            .unwrap(),
    };
    let req = BinlogStreamRequest::new(1_000_000 + s as u32)
        .with_filename(file.as_bytes())
        .with_pos(pos);
    let mut stream = conn.get_binlog_stream(req).await.unwrap();
    while let Some(ev) = stream.next().await {
        let Ok(ev) = ev else { return };
        if let Ok(Some(EventData::XidEvent(_))) = ev.read_data() {
            arrivals[s].lock().unwrap().push(Instant::now());
        }
    }
}

async fn report(n: usize, tls: bool, url: &str, oks: &[Instant], arrivals: &Arrivals) {
    let mut all = Vec::new();
    let mut first = Vec::new();
    let mut missing = 0;
    for (s, a) in arrivals.iter().enumerate() {
        let a = a.lock().unwrap();
        for (k, ok) in oks.iter().enumerate() {
            match a.get(k) {
                Some(t) => {
                    let ns = t.saturating_duration_since(*ok).as_nanos() as i128;
                    all.push(ns);
                    if s == 0 {
                        first.push(ns);
                    }
                }
                None => missing += 1,
            }
        }
    }
    let [a50, _, a99, amax] = summary(all);
    let [f50, _, f99, fmax] = summary(first);
    println!(
        "streams {n} ({}, {}): commit OK to XID, all streams p50 {a50:.2} ms p99 {a99:.2} ms max {amax:.2} ms; stream 0 p50 {f50:.2} p99 {f99:.2} max {fmax:.2}; missing {missing}",
        if tls { "TLS" } else { "plaintext" },
        server_version(url).await,
    );
}
