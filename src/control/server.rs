//! The daemon's end of the control socket: a Unix socket only root (and the daemon's own user)
//! may use; each connection carries one request and gets one answer.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::{
    answer_text, describe_breaker, local, resolve, status_body, unsilenced_message, ControlError,
    Request,
};
use crate::db::Db;
use crate::exit;
use crate::hub::Hub;
use crate::pipeline::Pipeline;
use crate::silence::Target;
use crate::source::{Trigger, TriggerSource};
use crate::supervisor::{breaker, Supervisor};

/// A client has this long to send its request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// What the requests act on.
pub struct Context {
    pub supervisor: Arc<Supervisor>,
    pub pipeline: Pipeline,
    pub hub: Arc<Hub>,
    pub db: Arc<Db>,
}

/// Binds the socket at `path` (mode 0600; its directory is made 0700 when missing). A stale
/// socket left by a killed daemon is replaced; one a live daemon answers on is an error.
pub async fn bind(path: &Path) -> std::io::Result<UnixListener> {
    use std::os::unix::fs::DirBuilderExt;
    if let Some(dir) = path.parent() {
        if !dir.exists() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)?;
        }
    }
    if path.exists() {
        if UnixStream::connect(path).await.is_ok() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AddrInUse,
                "another monitor_service answers on it",
            ));
        }
        std::fs::remove_file(path)?;
    }
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// Answers requests until `token` is cancelled, then removes the socket.
pub async fn serve(
    listener: UnixListener,
    path: std::path::PathBuf,
    ctx: Arc<Context>,
    token: CancellationToken,
) {
    let me = nix::unistd::geteuid().as_raw();
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = token.cancelled() => break,
        };
        let stream = match accepted {
            Ok((s, _)) => s,
            Err(e) => {
                debug!(error = %e, "control socket: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let uid = stream.peer_cred().map(|c| c.uid()).ok();
        if !uid.is_some_and(|u| u == 0 || u == me) {
            warn!(uid = ?uid, "control socket: refused a user that is neither root nor the daemon's");
            continue;
        }
        let ctx = ctx.clone();
        tokio::spawn(async move {
            if let Err(e) = converse(stream, &ctx).await {
                debug!(error = %e, "control socket: client gone");
            }
        });
    }
    let _ = std::fs::remove_file(&path);
}

async fn converse(stream: UnixStream, ctx: &Context) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    tokio::time::timeout(REQUEST_TIMEOUT, reader.read_line(&mut line))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no request"))??;
    let (result, body) = match Request::parse(line.trim()) {
        Ok(request) => handle(ctx, &request).await,
        Err(e) => (Err(ControlError::new(exit::FAILURE, e)), Vec::new()),
    };
    let mut stream = reader.into_inner();
    stream
        .write_all(answer_text(&result, &body).as_bytes())
        .await?;
    stream.shutdown().await
}

async fn handle(ctx: &Context, request: &Request) -> (Result<String, ControlError>, Vec<String>) {
    match request {
        Request::Status => {
            let (now, wall) = (Instant::now(), SystemTime::now());
            let breakers = breaker::to_text(&ctx.supervisor.breakers(), now, wall);
            let body = status_body(
                &ctx.pipeline.busy_ids(),
                &breakers,
                &ctx.hub.silences_text(),
            );
            let message = format!(
                "daemon running (pid {}), {} restarting",
                std::process::id(),
                ctx.pipeline.busy()
            );
            (Ok(message), body)
        }
        Request::Reset(target) => (reset(ctx, target).await, Vec::new()),
        Request::Silence(target, until) => {
            let result = ctx
                .hub
                .silence(target.clone(), *until)
                .map(|()| {
                    info!(target = %target, until = %local(*until), "silenced by an operator");
                    format!("silenced {target} until {}", local(*until))
                })
                .map_err(|e| {
                    ControlError::new(exit::CANTCREAT, format!("cannot save the silence: {e}"))
                });
            (result, Vec::new())
        }
        Request::Unsilence(target) => (unsilence(ctx, target).await, Vec::new()),
    }
}

/// Closes the breakers and re-checks each process at once.
async fn reset(ctx: &Context, target: &Target) -> Result<String, ControlError> {
    let ids = resolve(&ctx.db, target).await?;
    let (now, wall) = (Instant::now(), SystemTime::now());
    let said: Vec<String> = ids
        .iter()
        .map(|id| {
            let old = ctx.supervisor.reset_breaker(*id);
            info!(
                process_id = id,
                failures = old.failures,
                "circuit breaker reset by an operator; re-checking"
            );
            recheck(ctx, *id);
            format!("reset {id}: {}", describe_breaker(&old, now, wall))
        })
        .collect();
    Ok(format!("{}; re-checking now", said.join("; ")))
}

/// Ends the silence and re-checks the processes it named (when they can be found).
async fn unsilence(ctx: &Context, target: &Target) -> Result<String, ControlError> {
    let had = ctx.hub.unsilence(target).map_err(|e| {
        ControlError::new(exit::CANTCREAT, format!("cannot save the silences: {e}"))
    })?;
    info!(target = %target, "silence ended by an operator");
    let then = match resolve(&ctx.db, target).await {
        Ok(ids) => {
            for id in ids {
                recheck(ctx, id);
            }
            "re-checking now".to_string()
        }
        Err(e) => format!("not re-checked now ({e}); the next sweep looks at it"),
    };
    Ok(unsilenced_message(target, had, &then))
}

fn recheck(ctx: &Context, id: i64) {
    ctx.pipeline.submit(Trigger {
        process_id: id,
        source: TriggerSource::Manual,
    });
}
