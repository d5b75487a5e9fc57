//! The `monitor_service` binary: arguments, logging, signals, exit codes; the work is in the library.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use monitor_service::logging::{self, LogSettings};
use monitor_service::{check, exit, run, Config, RunOptions};

/// Keeps critical processes alive: restarts a process when its alarm is raised in
/// STATUS_PROCESS (seen within milliseconds through the binlog, and by a periodic sweep).
#[derive(Debug, Parser)]
#[command(name = "monitor_service", version, about, long_about = None)]
struct Cli {
    /// Configuration file [default: $MONITOR_SERVICE_CONFIG, else /opt/monitor_service/config.ini]
    #[arg(short = 'c', long = "config", value_name = "PATH")]
    config: Option<PathBuf>,
    /// Validate the config, database access, privileges and programs, then exit
    #[arg(long)]
    check_config: bool,
    /// Do one sweep, handle what it finds, then exit (non-zero when any procedure failed)
    #[arg(long)]
    once: bool,
    /// Decide and log everything, but execute nothing and write nothing to the database
    #[arg(long)]
    dry_run: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let path = Config::default_path(cli.config.as_deref());
    let loaded = match Config::load(&path) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("monitor_service: {e}");
            return code(exit::CONFIG);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("monitor_service: {e:#}");
            return code(exit::FAILURE);
        }
    };

    if cli.check_config {
        for w in &loaded.warnings {
            println!("warning: {w}");
        }
        let report = runtime.block_on(check::check(&loaded.config));
        for f in &report.findings {
            println!("{f}");
        }
        return code(report.exit_code);
    }

    let config = loaded.config;
    let settings = LogSettings {
        file: Some(config.logging.log_file.clone()),
        max_size_kb: config.logging.max_log_size_kb,
        files_to_keep: config.logging.log_files_to_keep,
        level: config.logging.level.as_filter().to_string(),
        stderr: true,
    };
    let _guard = match logging::init(&settings) {
        Ok(g) => Some(g),
        Err(e) => {
            eprintln!("monitor_service: WARNING {e}; logging to stderr only");
            logging::init(&LogSettings {
                file: None,
                ..settings
            })
            .ok()
        }
    };
    for w in &loaded.warnings {
        warn!("{w}");
    }

    let token = CancellationToken::new();
    let opts = RunOptions {
        once: cli.once,
        dry_run: cli.dry_run,
    };
    let result = runtime.block_on(async {
        tokio::spawn(signals(token.clone()));
        run(config, opts, token).await
    });
    match result {
        Ok(_) => code(0),
        Err(e) => {
            error!(error = %e, "monitor_service stopped with an error");
            code(e.exit_code())
        }
    }
}

/// SIGTERM and SIGINT begin a graceful stop; SIGHUP is acknowledged.
async fn signals(token: CancellationToken) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) else {
        error!("cannot install signal handlers; stop the daemon with SIGKILL");
        return;
    };
    loop {
        tokio::select! {
            _ = term.recv() => { info!(signal = "SIGTERM", "stopping"); token.cancel(); }
            _ = int.recv() => { info!(signal = "SIGINT", "stopping"); token.cancel(); }
            _ = hup.recv() => { warn!(signal = "SIGHUP", "configuration reload is not supported yet; restart the daemon to apply changes"); }
        }
    }
}

fn code(c: i32) -> ExitCode {
    ExitCode::from(u8::try_from(c).unwrap_or(1))
}
