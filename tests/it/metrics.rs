//! Prometheus metrics from a running daemon after real alarms: `GET /metrics`, the textfile,
//! and the error when the port is taken.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::daemon::{Daemon, Scratch};
use crate::common::db::TestDb;

/// A port nothing listens on now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `GET path` on 127.0.0.1:port: the status line, the head and the body.
pub async fn get(port: u16, path: &str) -> (String, String) {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    let (head, body) = out.split_once("\r\n\r\n").unwrap();
    (head.to_string(), body.to_string())
}

/// Parses the text format: `series -> value` for every sample line; panics on a malformed one.
pub fn parse(text: &str) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        if line.is_empty() || line.starts_with("# HELP ") || line.starts_with("# TYPE ") {
            continue;
        }
        assert!(!line.starts_with('#'), "unexpected comment: {line}");
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("{line}"));
        let name_end = series.find('{').unwrap_or(series.len());
        let name = &series[..name_end];
        assert!(
            name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "bad metric name in {line}"
        );
        if name_end < series.len() {
            assert!(series.ends_with('}'), "bad labels in {line}");
        }
        let v: f64 = match value {
            "+Inf" => f64::INFINITY,
            v => v.parse().unwrap_or_else(|_| panic!("bad value in {line}")),
        };
        out.insert(series.to_string(), v);
    }
    out
}

async fn scrape(port: u16) -> BTreeMap<String, f64> {
    let (head, body) = get(port, "/metrics").await;
    assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
    assert!(
        head.contains("Content-Type: text/plain; version=0.0.4"),
        "{head}"
    );
    parse(&body)
}

async fn wait_for(port: u16, series: &str, value: f64) -> BTreeMap<String, f64> {
    let end = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        // Until the daemon has bound the port, there is nothing to scrape.
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            assert!(
                tokio::time::Instant::now() < end,
                "nothing listens on {port}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        }
        let m = scrape(port).await;
        if m.get(series) == Some(&value) {
            return m;
        }
        assert!(
            tokio::time::Instant::now() < end,
            "{series} never became {value}: {m:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_count_real_alarms_by_source_process_outcome_and_method() {
    let db = TestDb::new().await;
    let s = Scratch::new();
    s.fake_systemctl(0, "loaded");
    db.add_process(1, "good").await;
    db.add_process(2, "bad").await;
    db.add_process(3, "idle").await;
    db.set_alarm(1).await;
    let port = free_port();
    let textfile = s.path("tf/monitor_service.prom");
    std::fs::create_dir_all(textfile.parent().unwrap()).unwrap();
    let extra = format!(
        "[metrics]\nlisten = 127.0.0.1:{port}\ntextfile = {}\n\
         [process.default]\nrestart_strategy = service\nhealth_check_command = true\n\
         [process.bad]\nrestart_strategy = service\nhealth_check_command = false\nhealth_check_timeout = 0.1\nmax_attempts = 1\n",
        textfile.display()
    );
    let text = s.config_text(&db, &extra).replace(
        "[monitor]\n",
        "[monitor]\nmax_restart_failures = 1\nbinlog = on\n",
    );
    std::fs::write(s.path("c.ini"), text).unwrap();
    let config = monitor_service::Config::load(&s.path("c.ini"))
        .unwrap()
        .config;
    let daemon = Daemon::start(config);

    // The start-up sweep restarts `good`; then an alarm through the binlog fails for `bad`.
    wait_for(port, "monitor_service_binlog_connected", 1.0).await;
    wait_for(
        port,
        "monitor_service_procedures_total{process=\"good\",outcome=\"success\"}",
        1.0,
    )
    .await;
    db.set_alarm(2).await;
    let m = wait_for(port, "monitor_service_breaker_open{process=\"bad\"}", 1.0).await;

    let v = |k: &str| *m.get(k).unwrap_or_else(|| panic!("no {k} in {m:#?}"));
    assert_eq!(v("monitor_service_alarms_total{source=\"startup\"}"), 1.0);
    assert_eq!(v("monitor_service_alarms_total{source=\"binlog\"}"), 1.0);
    for s in ["sweep", "breaker", "manual"] {
        assert_eq!(
            v(&format!("monitor_service_alarms_total{{source=\"{s}\"}}")),
            0.0
        );
    }
    let proc_ = |p: &str, o: &str| {
        v(&format!(
            "monitor_service_procedures_total{{process=\"{p}\",outcome=\"{o}\"}}"
        ))
    };
    assert_eq!(proc_("good", "success"), 1.0);
    assert_eq!(proc_("good", "failed"), 0.0);
    assert_eq!(proc_("bad", "failed"), 1.0);
    assert_eq!(proc_("bad", "success"), 0.0);
    // A process nothing happened to has every series, at 0.
    for o in ["success", "failed", "refused", "blocked"] {
        assert_eq!(proc_("idle", o), 0.0, "{o}");
    }
    let restarts = |p: &str, m: &str| {
        v(&format!(
            "monitor_service_restarts_total{{process=\"{p}\",method=\"{m}\"}}"
        ))
    };
    assert_eq!(restarts("good", "service"), 1.0);
    assert_eq!(restarts("bad", "service"), 1.0, "restarted, then unhealthy");
    assert_eq!(restarts("idle", "process"), 0.0);
    assert_eq!(v("monitor_service_breaker_open{process=\"good\"}"), 0.0);
    assert_eq!(v("monitor_service_breaker_open{process=\"idle\"}"), 0.0);
    assert_eq!(v("monitor_service_reaction_seconds_count"), 2.0);
    assert_eq!(
        v("monitor_service_reaction_seconds_bucket{le=\"+Inf\"}"),
        2.0
    );
    assert!(v("monitor_service_reaction_seconds_sum") > 0.0);
    assert_eq!(v("monitor_service_database_up"), 1.0);
    assert!(m.contains_key("monitor_service_binlog_lag_seconds"));
    assert_eq!(
        v(&format!(
            "monitor_service_build_info{{version=\"{}\"}}",
            env!("CARGO_PKG_VERSION")
        )),
        1.0
    );
    let (head, _) = get(port, "/other").await;
    assert!(head.starts_with("HTTP/1.1 404"), "{head}");

    // The textfile: written at start and every 10 s, parses, same series.
    let tf = parse(&std::fs::read_to_string(&textfile).unwrap());
    assert!(
        tf.contains_key("monitor_service_procedures_total{process=\"idle\",outcome=\"blocked\"}")
    );
    assert!(tf.contains_key("monitor_service_alarms_total{source=\"binlog\"}"));
    daemon.stop().await;
    // The last write at shutdown has the final counts.
    let tf = parse(&std::fs::read_to_string(&textfile).unwrap());
    assert_eq!(
        tf["monitor_service_procedures_total{process=\"bad\",outcome=\"failed\"}"],
        1.0
    );
    assert_eq!(tf["monitor_service_breaker_open{process=\"bad\"}"], 1.0);
    let leftovers: Vec<_> = std::fs::read_dir(textfile.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers.len(), 1, "no temp files left: {leftovers:?}");
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_taken_metrics_port_is_an_error_naming_the_setting() {
    let db = TestDb::new().await;
    let s = Scratch::new();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let config = s.config(&db, &format!("[metrics]\nlisten = 127.0.0.1:{port}\n"));
    let err = monitor_service::run(
        config,
        monitor_service::RunOptions::default(),
        tokio_util::sync::CancellationToken::new(),
    )
    .await
    .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.starts_with(&format!(
            "[metrics] listen = 127.0.0.1:{port}: cannot listen there"
        )),
        "{msg}"
    );
    assert!(msg.contains("another program uses that port"), "{msg}");
    assert_eq!(err.exit_code(), 69);
    drop(taken);
    db.drop_db().await;
}
