//! The Prometheus metrics: the families and their labels (names are a contract: dashboards and
//! tests use them), zero series for every known process, and the text format (0.0.4) that
//! both `GET /metrics` and the textfile carry.

use std::collections::BTreeSet;
use std::sync::atomic::AtomicU64;
use std::sync::Mutex;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::events::Outcome;
use crate::source::TriggerSource;

/// `Content-Type` of what [`Metrics::render`] returns.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// Every trigger source, as `alarms_total{source}` lists them.
const SOURCES: [TriggerSource; 5] = [
    TriggerSource::Binlog,
    TriggerSource::Sweep,
    TriggerSource::Startup,
    TriggerSource::Breaker,
    TriggerSource::Manual,
];
/// Restart methods, as `restarts_total{method}` lists them.
const METHODS: [&str; 2] = ["service", "process"];
/// Upper bounds of the reaction-time buckets, in seconds (binlog reactions are milliseconds,
/// sweeps up to `check_interval`).
const REACTION_BUCKETS: [f64; 16] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0, 300.0,
    900.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceLabel {
    source: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    process: String,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabels {
    process: String,
    method: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProcessLabel {
    process: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabel {
    version: &'static str,
}

/// The state the gauges show, read when the metrics are written.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Gauges {
    /// Processes whose breaker is open, by the `process` label.
    pub open_breakers: BTreeSet<String>,
    /// `None` when the daemon does not follow the binlog.
    pub binlog_connected: Option<bool>,
    pub binlog_lag_seconds: Option<f64>,
    pub database_up: bool,
}

/// The daemon's metrics.
pub struct Metrics {
    registry: Registry,
    alarms: Family<SourceLabel, Counter>,
    procedures: Family<OutcomeLabels, Counter>,
    restarts: Family<MethodLabels, Counter>,
    breaker_open: Family<ProcessLabel, Gauge>,
    reaction: Histogram,
    binlog_connected: Gauge,
    binlog_lag: Gauge<f64, AtomicU64>,
    database_up: Gauge,
    /// Every `process` label seen, so each keeps a `breaker_open` series.
    known: Mutex<BTreeSet<String>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let mut m = Metrics {
            alarms: Family::default(),
            procedures: Family::default(),
            restarts: Family::default(),
            breaker_open: Family::default(),
            reaction: Histogram::new(REACTION_BUCKETS),
            binlog_connected: Gauge::default(),
            binlog_lag: Gauge::default(),
            database_up: Gauge::default(),
            known: Mutex::new(BTreeSet::new()),
            registry: Registry::default(),
        };
        registry.register(
            "monitor_service_alarms",
            "Raised alarms handled, by what found them",
            m.alarms.clone(),
        );
        registry.register(
            "monitor_service_procedures",
            "Procedures on raised alarms, by process and outcome",
            m.procedures.clone(),
        );
        registry.register(
            "monitor_service_restarts",
            "Restart commands that succeeded, by process and method",
            m.restarts.clone(),
        );
        registry.register(
            "monitor_service_breaker_open",
            "1 while the process's circuit breaker is open",
            m.breaker_open.clone(),
        );
        registry.register(
            "monitor_service_reaction_seconds",
            "Time from a trigger reaching the daemon to the first restart command",
            m.reaction.clone(),
        );
        registry.register(
            "monitor_service_binlog_connected",
            "1 while the binlog stream is connected",
            m.binlog_connected.clone(),
        );
        registry.register(
            "monitor_service_binlog_lag_seconds",
            "Seconds between the last relevant binlog event's timestamp and its arrival",
            m.binlog_lag.clone(),
        );
        registry.register(
            "monitor_service_database_up",
            "1 when the last query of the database worked",
            m.database_up.clone(),
        );
        let build = Family::<VersionLabel, Gauge>::default();
        build
            .get_or_create(&VersionLabel {
                version: env!("CARGO_PKG_VERSION"),
            })
            .set(1);
        registry.register("monitor_service_build_info", "The running version", build);
        for s in SOURCES {
            m.alarms
                .get_or_create_owned(&SourceLabel { source: s.as_str() });
        }
        m.registry = registry;
        m
    }

    /// Makes every series of these processes exist (at 0 until something happens).
    pub fn known<'a>(&self, processes: impl IntoIterator<Item = &'a str>) {
        let mut known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        for p in processes {
            if known.contains(p) {
                continue;
            }
            for o in Outcome::ALL {
                self.procedures.get_or_create_owned(&OutcomeLabels {
                    process: p.to_string(),
                    outcome: o.as_str(),
                });
            }
            for method in METHODS {
                self.restarts.get_or_create_owned(&MethodLabels {
                    process: p.to_string(),
                    method,
                });
            }
            self.breaker_open.get_or_create_owned(&ProcessLabel {
                process: p.to_string(),
            });
            known.insert(p.to_string());
        }
    }

    /// A procedure on a raised alarm found by `source` ended with `outcome`.
    pub fn procedure(&self, process: &str, source: TriggerSource, outcome: Outcome) {
        self.known([process]);
        self.alarms
            .get_or_create(&SourceLabel {
                source: source.as_str(),
            })
            .inc();
        self.procedures
            .get_or_create(&OutcomeLabels {
                process: process.to_string(),
                outcome: outcome.as_str(),
            })
            .inc();
    }

    /// A restart command succeeded.
    pub fn restarted(&self, process: &str, method: &'static str) {
        self.known([process]);
        self.restarts
            .get_or_create(&MethodLabels {
                process: process.to_string(),
                method,
            })
            .inc();
    }

    /// Trigger seen to first restart command.
    pub fn reaction(&self, took: Duration) {
        self.reaction.observe(took.as_secs_f64());
    }

    /// Sets the gauges from the state now.
    pub fn set(&self, g: &Gauges) {
        self.known(g.open_breakers.iter().map(String::as_str));
        let known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        for p in known.iter() {
            self.breaker_open
                .get_or_create(&ProcessLabel { process: p.clone() })
                .set(i64::from(g.open_breakers.contains(p)));
        }
        self.binlog_connected
            .set(i64::from(g.binlog_connected.unwrap_or(false)));
        self.binlog_lag.set(g.binlog_lag_seconds.unwrap_or(0.0));
        self.database_up.set(i64::from(g.database_up));
    }

    /// The metrics in the Prometheus text format (version 0.0.4).
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(text: &str, series: &str) -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }

    #[test]
    fn known_processes_and_sources_start_at_zero() {
        let m = Metrics::new();
        m.known(["web", "db"]);
        let t = m.render();
        for s in ["binlog", "sweep", "startup", "breaker", "manual"] {
            let series = format!("monitor_service_alarms_total{{source=\"{s}\"}}");
            assert_eq!(sample(&t, &series), Some(0.0), "{series}\n{t}");
        }
        for o in ["success", "failed", "refused", "blocked"] {
            let series =
                format!("monitor_service_procedures_total{{process=\"web\",outcome=\"{o}\"}}");
            assert_eq!(sample(&t, &series), Some(0.0), "{series}\n{t}");
        }
        for method in ["service", "process"] {
            let series =
                format!("monitor_service_restarts_total{{process=\"db\",method=\"{method}\"}}");
            assert_eq!(sample(&t, &series), Some(0.0), "{series}\n{t}");
        }
        assert_eq!(
            sample(&t, "monitor_service_breaker_open{process=\"db\"}"),
            Some(0.0)
        );
        let build = format!(
            "monitor_service_build_info{{version=\"{}\"}}",
            env!("CARGO_PKG_VERSION")
        );
        assert_eq!(sample(&t, &build), Some(1.0), "{t}");
        assert!(
            t.contains("# TYPE monitor_service_alarms_total counter\n"),
            "{t}"
        );
        assert!(
            t.contains("# TYPE monitor_service_reaction_seconds histogram\n"),
            "{t}"
        );
        assert!(!t.contains("# EOF"), "0.0.4 text has no EOF marker");
    }

    #[test]
    fn events_count_and_gauges_follow_the_state() {
        let m = Metrics::new();
        m.procedure("web", TriggerSource::Binlog, Outcome::Failed);
        m.procedure("web", TriggerSource::Sweep, Outcome::Failed);
        m.procedure("web", TriggerSource::Breaker, Outcome::Success);
        m.restarted("web", "process");
        m.reaction(Duration::from_millis(3));
        let mut g = Gauges {
            open_breakers: ["web".to_string()].into(),
            binlog_connected: Some(true),
            binlog_lag_seconds: Some(2.0),
            database_up: true,
        };
        m.set(&g);
        let t = m.render();
        let v = |s: &str| sample(&t, s);
        assert_eq!(
            v("monitor_service_alarms_total{source=\"binlog\"}"),
            Some(1.0)
        );
        assert_eq!(
            v("monitor_service_alarms_total{source=\"breaker\"}"),
            Some(1.0)
        );
        assert_eq!(
            v("monitor_service_procedures_total{process=\"web\",outcome=\"failed\"}"),
            Some(2.0)
        );
        assert_eq!(
            v("monitor_service_restarts_total{process=\"web\",method=\"process\"}"),
            Some(1.0)
        );
        assert_eq!(
            v("monitor_service_breaker_open{process=\"web\"}"),
            Some(1.0)
        );
        assert_eq!(v("monitor_service_binlog_connected"), Some(1.0));
        assert_eq!(v("monitor_service_binlog_lag_seconds"), Some(2.0));
        assert_eq!(v("monitor_service_database_up"), Some(1.0));
        assert_eq!(v("monitor_service_reaction_seconds_count"), Some(1.0));
        assert_eq!(
            v("monitor_service_reaction_seconds_bucket{le=\"0.005\"}"),
            Some(1.0)
        );
        assert_eq!(
            v("monitor_service_reaction_seconds_bucket{le=\"0.0025\"}"),
            Some(0.0)
        );
        g.open_breakers.clear();
        g.database_up = false;
        g.binlog_connected = None;
        m.set(&g);
        let t = m.render();
        assert_eq!(
            sample(&t, "monitor_service_breaker_open{process=\"web\"}"),
            Some(0.0)
        );
        assert_eq!(sample(&t, "monitor_service_database_up"), Some(0.0));
        assert_eq!(sample(&t, "monitor_service_binlog_connected"), Some(0.0));
    }

    #[test]
    fn label_values_are_escaped() {
        let m = Metrics::new();
        m.known(["a\"b\\c\nd"]);
        let t = m.render();
        assert!(
            t.contains(r#"monitor_service_breaker_open{process="a\"b\\c\nd"} 0"#),
            "{t}"
        );
    }
}
