//! The `monitor_service` binary: arguments, logging, signals, exit codes; the work is in the library.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::SystemTime;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use monitor_service::control::{self, Request};
use monitor_service::logging::{self, LogSettings};
use monitor_service::silence::{self, Target};
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
    /// Show processes, alarms, circuit breakers, silences, last restarts and notes
    Status {
        /// Print JSON instead of a table
        #[arg(long)]
        json: bool,
        /// List every daemon in the hosts table (stale ones marked) instead of the processes
        #[arg(long)]
        hosts: bool,
    },
    /// Close a process's circuit breaker and re-check it at once
    Reset {
        /// process_id, or the name in PROCESE
        process: String,
    },
    /// Leave a process's alarms raised and restart nothing until the silence ends
    Silence {
        /// process_id, or the name in PROCESE (a name covers every id with that name)
        process: String,
        /// How long, e.g. 30m, 2h, 1d, 1h30m (at most 30 days)
        #[arg(
            long = "for",
            value_name = "DURATION",
            conflicts_with = "until",
            required_unless_present = "until"
        )]
        duration: Option<String>,
        /// Until this local time: "YYYY-MM-DD HH:MM[:SS]", or HH:MM[:SS] (the next one)
        #[arg(long, value_name = "TIME")]
        until: Option<String>,
    },
    /// End a silence at once (the process is re-checked)
    Unsilence {
        /// process_id, or the name in PROCESE, as given to silence
        process: String,
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

    match cli.command {
        Some(Command::Status { json, hosts: true }) => {
            return show_hosts(&runtime, &loaded.config, json)
        }
        Some(Command::Status { json, .. }) => return show_status(&runtime, &loaded.config, json),
        Some(Command::Reset { process }) => {
            return control_command(&runtime, &loaded.config, &process, Request::Reset)
        }
        Some(Command::Silence {
            process,
            duration,
            until,
        }) => {
            let end = match silence_end(duration.as_deref(), until.as_deref()) {
                Ok(e) => e,
                Err(e) => {
                    eprintln!("monitor_service: {e}");
                    return code(exit::USAGE);
                }
            };
            return control_command(&runtime, &loaded.config, &process, |t| {
                Request::Silence(t, end)
            });
        }
        Some(Command::Unsilence { process }) => {
            return control_command(&runtime, &loaded.config, &process, Request::Unsilence)
        }
        None => {}
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

/// `status`: the table (and where the state came from) or JSON.
fn show_status(runtime: &tokio::runtime::Runtime, config: &Config, json: bool) -> ExitCode {
    let result = runtime.block_on(async {
        let (saved, mut remarks) = control::status_state(config).await;
        let (rows, more) = status::collect(config, &saved).await?;
        remarks.extend(more);
        Ok::<_, monitor_service::db::DbError>((rows, remarks, saved.source))
    });
    match result {
        Ok((rows, remarks, source)) => {
            if json {
                print!("{}", status::json(&rows));
            } else {
                print!("{}", status::table(&rows));
                println!("\n{source}");
                match runtime.block_on(status::scope_line(config)) {
                    Ok(line) => println!("{line}"),
                    Err(e) => eprintln!("monitor_service: host scoping not shown: {e}"),
                }
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
    }
}

/// `status --hosts`: every daemon in the hosts table, as a table or JSON.
fn show_hosts(runtime: &tokio::runtime::Runtime, config: &Config, json: bool) -> ExitCode {
    match runtime.block_on(status::hosts(config)) {
        Ok(Some(rows)) if json => {
            print!("{}", status::hosts_json(&rows));
            code(0)
        }
        Ok(Some(rows)) => {
            print!("{}", status::hosts_table(&rows));
            code(0)
        }
        Ok(None) => {
            eprintln!(
                "monitor_service: the hosts table {} does not exist; create it with sql/setup.sql (or set [monitor] hosts_table)",
                config.monitor.hosts_table
            );
            code(exit::UNAVAILABLE)
        }
        Err(e) => {
            eprintln!("monitor_service: {e}");
            code(exit::UNAVAILABLE)
        }
    }
}

/// `reset`, `silence`, `unsilence`: through the daemon, or on its files when it is stopped.
fn control_command(
    runtime: &tokio::runtime::Runtime,
    config: &Config,
    process: &str,
    request: impl FnOnce(Target) -> Request,
) -> ExitCode {
    let target = match Target::parse(process) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("monitor_service: {e}");
            return code(exit::USAGE);
        }
    };
    match runtime.block_on(control::execute(config, &request(target))) {
        Ok(message) => {
            println!("{message}");
            code(0)
        }
        Err(e) => {
            eprintln!("monitor_service: {e}");
            code(e.code)
        }
    }
}

/// When a silence given as `--for` or `--until` ends.
fn silence_end(duration: Option<&str>, until: Option<&str>) -> Result<SystemTime, String> {
    match (duration, until) {
        (Some(d), _) => Ok(SystemTime::now() + silence::parse_for(d)?),
        (None, Some(u)) => {
            let now = chrono::Local::now();
            let at = silence::parse_until(u, now.naive_local())?;
            let local = at
                .and_local_timezone(chrono::Local)
                .earliest()
                .ok_or_else(|| {
                    format!("--until {u:?}: that local time does not exist (clock change)")
                })?;
            Ok(SystemTime::from(local))
        }
        (None, None) => Err("give --for DURATION or --until TIME".to_string()),
    }
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
