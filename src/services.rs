//! Starts and stops what runs beside supervision for operators: the `/metrics` endpoint, the
//! watch (gauges, outage alerts, textfile), the control socket, and the state directory's lock.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::{TcpListener, UnixListener};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::Config;
use crate::control::server::{self, Context};
use crate::http;
use crate::metrics;
use crate::source::binlog;
use crate::state::{StateDir, StateLock};
use crate::watch::Watch;

/// How long a starting daemon waits for the state directory's lock (a `reset` or `silence`
/// editing the files holds it for milliseconds).
const LOCK_WAIT: Duration = Duration::from_secs(5);

/// Why the services cannot start.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("[metrics] listen = {addr}: cannot listen there: {source}; {hint}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
        hint: &'static str,
    },
}

/// Sockets bound at start-up, before anything else happens (a taken port is an error then).
pub struct Bound {
    metrics: Option<TcpListener>,
}

impl Bound {
    /// Nothing bound (`--once`).
    pub fn none() -> Bound {
        Bound { metrics: None }
    }
}

/// Binds `[metrics] listen`.
pub async fn bind(config: &Config) -> Result<Bound, ServiceError> {
    let Some(addr) = config.metrics.listen else {
        return Ok(Bound { metrics: None });
    };
    match http::bind(addr).await {
        Ok(l) => Ok(Bound { metrics: Some(l) }),
        Err(source) => {
            let hint = match source.kind() {
                std::io::ErrorKind::AddrInUse => "another program uses that port: stop it or choose another port",
                std::io::ErrorKind::AddrNotAvailable => "no interface of this host has that address: use 127.0.0.1 or one of its addresses",
                std::io::ErrorKind::PermissionDenied => "ports below 1024 need root: choose a higher one",
                _ => "choose another address or port",
            };
            Err(ServiceError::Listen { addr, source, hint })
        }
    }
}

/// Takes the state directory's lock for the daemon's lifetime; `None` (said in a WARNING)
/// when another process keeps it.
pub async fn hold_state(state: &StateDir) -> Option<StateLock> {
    let end = tokio::time::Instant::now() + LOCK_WAIT;
    loop {
        match state.try_lock() {
            Ok(Some(l)) => return Some(l),
            Ok(None) if tokio::time::Instant::now() < end => {}
            Ok(None) => {
                warn!(file = %state.path(crate::state::LOCK_FILE).display(), "another process holds the state directory's lock (a second monitor_service with this state_dir?); going on without it");
                return None;
            }
            Err(e) => {
                warn!(file = %state.path(crate::state::LOCK_FILE).display(), error = %e, "cannot lock the state directory; going on without the lock");
                return None;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The running services.
pub struct Services {
    token: CancellationToken,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

/// Starts the metrics endpoint (on the socket bound by [`bind`]), the watch and the control
/// socket (a control socket that cannot be made is a WARNING, not a reason to stop).
pub async fn start(
    config: &Config,
    bound: Bound,
    ctx: Context,
    binlog: Option<Arc<Mutex<binlog::Status>>>,
) -> Services {
    let token = CancellationToken::new();
    let mut tasks = Vec::new();
    let watch = Arc::new(Watch::new(
        ctx.db.clone(),
        ctx.hub.clone(),
        ctx.supervisor.clone(),
        binlog,
        config.metrics.textfile.clone(),
    ));
    let every =
        (config.alerts.after / 4).clamp(Duration::from_millis(250), Duration::from_secs(10));
    tasks.push(tokio::spawn(watch.clone().run(every, token.clone())));
    if let Some(listener) = bound.metrics {
        if let Ok(addr) = listener.local_addr() {
            info!(listen = %addr, "metrics at http://{addr}/metrics");
        }
        let w = watch.clone();
        let body = move || {
            let w = w.clone();
            async move { (w.render(), metrics::CONTENT_TYPE) }
        };
        tasks.push(tokio::spawn(http::serve(listener, body, token.clone())));
    }
    let path = config.monitor.control_socket.clone();
    match server::bind(&path).await {
        Ok(listener) => {
            tasks.push(tokio::spawn(control(listener, path, ctx, token.clone())));
        }
        Err(e) => {
            warn!(socket = %path.display(), error = %e, "cannot make the control socket; reset, silence and unsilence will not reach this daemon (set [monitor] control_socket)");
        }
    }
    Services {
        token,
        tasks: Mutex::new(tasks),
    }
}

async fn control(
    listener: UnixListener,
    path: std::path::PathBuf,
    ctx: Context,
    token: CancellationToken,
) {
    server::serve(listener, path, Arc::new(ctx), token).await;
}

impl Services {
    /// Stops them (the watch writes the textfile a last time) and waits for them.
    pub async fn stop(&self) {
        self.token.cancel();
        let tasks = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|p| p.into_inner()));
        for t in tasks {
            let _ = t.await;
        }
    }
}
