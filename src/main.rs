//! The `monitor_service` binary: arguments, logging, signals, exit codes; the work is in the library.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use monitor_service::logging::{self, LogSettings};
use monitor_service::{check, exit, run_with, status, Config, Hooks, RunOptions};

/// Keeps critical processes alive: restarts a process when its alarm is raised in
/// STATUS_PROCESS (seen within milliseconds through the binlog, and by a periodic sweep).
#[derive(Debug, Parser)]
#[command(name = "monitor_service", version, about, long_about = None)]
struct Cli {
    /// Configuration file [default: $MONITOR_SERVICE_CONFIG, else /etc/monitor_service/config.ini, else /opt/monitor_service/config.ini]
    #[arg(short = 'c', long = "config", value_name = "PATH", global = true)]
    config: Option<PathBuf>,
    /// Validate the config, database access, privileges, binlog readiness and programs, then exit
    #[arg(long, conflicts_with = "once")]
    check_config: bool,
    /// Do one sweep, handle what it finds, then exit (non-zero when any procedure failed)
    #[arg(long)]
    once: bool,
    /// Decide and log everything, but execute nothing and write nothing to the database
    #[arg(long)]
    dry_run: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Show processes, alarms, circuit breakers, last restarts and notes
    Status {
        /// Print JSON instead of a table
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let chosen = Config::default_path(cli.config.as_deref());
    let loaded = match Config::load(&chosen.path) {
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

    if let Some(Command::Status { json }) = cli.command {
        return match runtime.block_on(status::collect(&loaded.config)) {
            Ok((rows, remarks)) => {
                if json {
                    print!("{}", status::json(&rows));
                } else {
                    print!("{}", status::table(&rows));
                }
                for r in remarks {
                    eprintln!("monitor_service: {r}");
                }
                code(0)
            }
            Err(e) => {
                eprintln!("monitor_service: {e}");
                code(exit::UNAVAILABLE)
            }
        };
    }

    if cli.check_config {
        println!(
            "ok: config file {} ({})",
            chosen.path.display(),
            chosen.chosen_by.describe()
        );
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
    let guard = match logging::init(&settings) {
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
    info!(
        file = %chosen.path.display(),
        chosen_by = %chosen.chosen_by.describe(),
        "configuration read"
    );
    for w in &loaded.warnings {
        warn!("{w}");
    }

    let token = CancellationToken::new();
    let opts = RunOptions {
        once: cli.once,
        dry_run: cli.dry_run,
    };
    let (reload_tx, reload_rx) = mpsc::channel(1);
    let log = guard.as_ref().map(logging::LogGuard::handle);
    let hooks = Hooks {
        reload: reload_rx,
        after_reload: Box::new(move |c: &Config| {
            if let Some(log) = &log {
                log.reopen();
                if let Err(e) = log.set_level(c.logging.level.as_filter()) {
                    warn!(error = %e, "cannot change the log level");
                }
            }
        }),
    };
    let result = runtime.block_on(async {
        tokio::spawn(signals(token.clone(), reload_tx));
        run_with(config, opts, token, Some(hooks)).await
    });
    let exit_code = match result {
        Ok(_) => 0,
        Err(e) => {
            error!(error = %e, "monitor_service stopped with an error");
            e.exit_code()
        }
    };
    drop(guard);
    code(exit_code)
}

/// SIGTERM and SIGINT begin a graceful stop; SIGHUP asks for a configuration reload.
async fn signals(token: CancellationToken, reload: mpsc::Sender<()>) {
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
            _ = hup.recv() => {
                info!(signal = "SIGHUP", "reloading the configuration and reopening the log");
                let _ = reload.try_send(());
            }
        }
    }
}

fn code(c: i32) -> ExitCode {
    ExitCode::from(u8::try_from(c).unwrap_or(1))
}
