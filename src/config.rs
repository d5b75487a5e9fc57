//! config.ini: reading it into raw strings with their line numbers, then
//! validating those into typed settings with defaults, located errors,
//! warnings for unknown keys, and the `[process.NAME]` lookup order.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::command::{self, CommandTemplate};

/// Exit status for a bad configuration (EX_CONFIG from sysexits.h).
pub const EXIT_CONFIG: i32 = 78;
/// Where the config lives when neither `-c` nor the environment says (the
/// packages install it there).
pub const DEFAULT_CONFIG_PATH: &str = "/etc/monitor_service/config.ini";
/// The bash service's config file: read when [`DEFAULT_CONFIG_PATH`] does
/// not exist, so a host switching over keeps working.
pub const LEGACY_CONFIG_PATH: &str = "/opt/monitor_service/config.ini";
/// Environment variable naming the config file.
pub const CONFIG_ENV: &str = "MONITOR_SERVICE_CONFIG";

/// Longest duration accepted for any key (30 days), in seconds.
const MAX_SECONDS: u64 = 30 * 24 * 3600;
/// Largest `max_log_size` accepted (1 TiB), in KB.
const MAX_LOG_SIZE_KB: u64 = 1024 * 1024 * 1024;

/// Why the configuration cannot be used. Every message names the file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{}: cannot read the config file: {source}; {hint}", .path.display())]
    Io {
        /// The config file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
        /// How to fix it.
        hint: String,
    },
    /// A line is not INI syntax.
    #[error("{}:{line}: {message}", .path.display())]
    Parse {
        /// The config file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong and what was expected.
        message: String,
    },
    /// Run as root, the file could be changed by someone else than root: it names commands
    /// that run as root.
    #[error("{}: refusing to run as root with a config file {problem} (owner uid {owner}, mode {mode:04o}): it names commands that run as root; run chown root {} and chmod go-w {}", .path.display(), .path.display(), .path.display())]
    Unsafe {
        /// The config file.
        path: PathBuf,
        /// What is wrong.
        problem: &'static str,
        /// Its owner's uid.
        owner: u32,
        /// Its permission bits.
        mode: u32,
    },
    /// A key has a value that is not allowed (boxed to keep the error small).
    #[error("{0}")]
    Invalid(Box<InvalidValue>),
    /// A section header is not allowed, e.g. a bad process name.
    #[error("{}:{line}: [{}] {reason}", .path.display(), shown(.section))]
    InvalidSection {
        /// The config file.
        path: PathBuf,
        /// 1-based line number of the header.
        line: usize,
        /// The section name as written.
        section: String,
        /// Why, and what is allowed.
        reason: String,
    },
}

/// Where and why a value is not allowed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{}: [{}] {} = {value:?}: {expected}", .path.display(), line_suffix(*.line), shown(.section), shown(.key))]
pub struct InvalidValue {
    /// The config file.
    pub path: PathBuf,
    /// 1-based line number, when known.
    pub line: Option<usize>,
    /// The section, e.g. `monitor` or `process.apache2`.
    pub section: String,
    /// The key.
    pub key: String,
    /// The value as written.
    pub value: String,
    /// What is allowed.
    pub expected: String,
}

/// A section or key name as written, for messages: as it is, unless it holds control
/// characters (a stray `\r`, NUL, an escape sequence), which are shown escaped so every
/// message stays on one line.
fn shown(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.chars().any(char::is_control) {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if c.is_control() {
            out.extend(c.escape_debug());
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

fn line_suffix(line: Option<usize>) -> String {
    line.map(|l| format!(":{l}")).unwrap_or_default()
}

/// A validated configuration plus the non-fatal findings to log.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The settings.
    pub config: Config,
    /// One line each: unknown keys and sections, duplicates, file mode.
    pub warnings: Vec<String>,
}

/// All settings of the daemon.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The file this was read from.
    pub path: PathBuf,
    /// `[database]`.
    pub database: DatabaseConfig,
    /// `[monitor]`.
    pub monitor: MonitorConfig,
    /// `[logging]`.
    pub logging: LoggingConfig,
    /// `[metrics]`.
    pub metrics: MetricsConfig,
    /// `[alerts]`.
    pub alerts: AlertsConfig,
    /// `[binlog]`: the server the binlog stream is read from (a replica), when not `[database]`.
    pub binlog_server: Option<DatabaseConfig>,
    /// Built-ins overlaid by `[process.default]`.
    pub process_default: ProcessConfig,
    /// `[process.NAME]` overlaid on `process_default`.
    pub processes: BTreeMap<String, ProcessConfig>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            path: PathBuf::from(DEFAULT_CONFIG_PATH),
            database: DatabaseConfig::default(),
            monitor: MonitorConfig::default(),
            logging: LoggingConfig::default(),
            metrics: MetricsConfig::default(),
            alerts: AlertsConfig::default(),
            binlog_server: None,
            process_default: ProcessConfig::default(),
            processes: BTreeMap::new(),
        }
    }
}

/// A password that never shows up in `Debug` or `Display` output.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a password.
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }

    /// The password itself; only for handing it to the database driver.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// `[database]`.
#[derive(Debug, Clone, PartialEq)]
pub struct DatabaseConfig {
    /// Server host name or address.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// Account name.
    pub user: String,
    /// Password, if any.
    pub password: Option<Secret>,
    /// Database holding PROCESE and STATUS_PROCESS (a safe SQL identifier).
    pub database: String,
    /// Unix socket, used instead of host:port when set.
    pub socket: Option<PathBuf>,
    /// Bound on establishing a connection.
    pub connect_timeout: Duration,
    /// `ssl_mode`, `ssl_ca`, `ssl_cert`, `ssl_key`.
    pub tls: TlsConfig,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig {
            host: "localhost".to_string(),
            port: 3306,
            user: "root".to_string(),
            password: None,
            database: "v_process_monitor".to_string(),
            socket: None,
            connect_timeout: Duration::from_secs(10),
            tls: TlsConfig::default(),
        }
    }
}

/// `ssl_mode`: the mysql client's meanings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SslMode {
    /// Never TLS.
    Disabled,
    /// TLS when the server offers it (certificate not checked), else plain.
    #[default]
    Preferred,
    /// TLS or no connection (certificate not checked).
    Required,
    /// TLS with a certificate signed by `ssl_ca` (or the system's CAs).
    VerifyCa,
    /// As `VerifyCa`, and the certificate names the host connected to.
    VerifyIdentity,
}

impl SslMode {
    /// The names `ssl_mode` accepts, in order.
    pub const NAMES: &'static [&'static str] = &[
        "disabled",
        "preferred",
        "required",
        "verify_ca",
        "verify_identity",
    ];
}

impl fmt::Display for SslMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let i = match self {
            SslMode::Disabled => 0,
            SslMode::Preferred => 1,
            SslMode::Required => 2,
            SslMode::VerifyCa => 3,
            SslMode::VerifyIdentity => 4,
        };
        f.write_str(SslMode::NAMES[i])
    }
}

/// The TLS keys of `[database]` (and `[binlog]`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TlsConfig {
    /// `ssl_mode`.
    pub mode: SslMode,
    /// `ssl_ca`: PEM file of the CA(s) that sign the server's certificate.
    pub ca: Option<PathBuf>,
    /// `ssl_cert`: PEM file of this client's certificate (with `ssl_key`).
    pub cert: Option<PathBuf>,
    /// `ssl_key`: PEM file of this client's private key.
    pub key: Option<PathBuf>,
}

/// `[monitor] binlog`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinlogMode {
    /// Required: refuse to start without it.
    On,
    /// Sweeps only.
    Off,
    /// Use it when the server can serve it, else warn once and sweep.
    Auto,
}

impl fmt::Display for BinlogMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BinlogMode::On => "on",
            BinlogMode::Off => "off",
            BinlogMode::Auto => "auto",
        })
    }
}

/// `[monitor]`.
#[derive(Debug, Clone, PartialEq)]
pub struct MonitorConfig {
    /// Time between sweeps.
    pub check_interval: Duration,
    /// Failed procedures in a row that open the circuit breaker.
    pub max_restart_failures: u32,
    /// How long the breaker stays open.
    pub circuit_reset_time: Duration,
    /// Whether to follow the binary log.
    pub binlog: BinlogMode,
    /// Replica id for the binlog connection; `None` = derive from the host name.
    pub server_id: Option<u32>,
    /// Procedures running at once.
    pub max_parallel_restarts: usize,
    /// Breaker state and binlog position.
    pub state_dir: PathBuf,
    /// Program used by the `service` strategy.
    pub systemctl: String,
    /// Optional history table (a safe SQL identifier).
    pub history_table: String,
    /// Where the daemon listens for `reset`, `silence`, `unsilence` and `status`.
    pub control_socket: PathBuf,
    /// This daemon's name in `PROCESE.host` and `MONITOR_HOSTS` (compared case-insensitively).
    pub host: String,
    /// Optional table with one row per daemon (a safe SQL identifier).
    pub hosts_table: String,
    /// Only names with a `[process.NAME]` section are restarted.
    pub only_configured: bool,
}

impl Default for MonitorConfig {
    fn default() -> Self {
        MonitorConfig {
            check_interval: Duration::from_secs(300),
            max_restart_failures: 3,
            circuit_reset_time: Duration::from_secs(1800),
            binlog: BinlogMode::Auto,
            server_id: None,
            max_parallel_restarts: 4,
            state_dir: PathBuf::from("/var/lib/monitor_service"),
            systemctl: "systemctl".to_string(),
            history_table: "RESTART_HISTORY".to_string(),
            control_socket: PathBuf::from(DEFAULT_CONTROL_SOCKET),
            host: machine_host_name(),
            hosts_table: "MONITOR_HOSTS".to_string(),
            only_configured: false,
        }
    }
}

/// The machine's host name as `hostname` prints it (empty when it cannot be read).
pub fn machine_host_name() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_default()
}

/// Where the control socket is when `[monitor] control_socket` does not say.
pub const DEFAULT_CONTROL_SOCKET: &str = "/run/monitor_service/control.sock";

/// `[metrics]`: both off by default.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MetricsConfig {
    /// Address for `GET /metrics`.
    pub listen: Option<std::net::SocketAddr>,
    /// File rewritten every 10 s for node_exporter's textfile collector.
    pub textfile: Option<PathBuf>,
}

/// `[alerts]`.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertsConfig {
    /// Run for each alert; `None` = no alerts.
    pub command: Option<CommandTemplate>,
    /// How long the database or the binlog must be down before it is an alert.
    pub after: Duration,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        AlertsConfig {
            command: None,
            after: Duration::from_secs(60),
        }
    }
}

/// `[logging] level`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    /// Errors only.
    Error,
    /// Warnings and errors.
    Warn,
    /// Normal operation.
    Info,
    /// Everything.
    Debug,
}

impl LogLevel {
    /// The level as a tracing filter directive.
    pub fn as_filter(&self) -> &'static str {
        match self {
            LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
        }
    }
}

impl fmt::Display for LogLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_filter())
    }
}

/// `[logging]`.
#[derive(Debug, Clone, PartialEq)]
pub struct LoggingConfig {
    /// Rotate when the log reaches this size, in KB.
    pub max_log_size_kb: u64,
    /// Rotated files kept.
    pub log_files_to_keep: usize,
    /// The log file.
    pub log_file: PathBuf,
    /// Least severe level written.
    pub level: LogLevel,
}

impl Default for LoggingConfig {
    fn default() -> Self {
        LoggingConfig {
            max_log_size_kb: 5120,
            log_files_to_keep: 5,
            log_file: PathBuf::from("/var/log/monitor_service.log"),
            level: LogLevel::Info,
        }
    }
}

/// `restart_strategy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// `systemctl restart UNIT`.
    Service,
    /// Signal the processes and start the program again.
    Process,
    /// `service` when systemd knows the unit, else `process`.
    Auto,
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Strategy::Service => "service",
            Strategy::Process => "process",
            Strategy::Auto => "auto",
        })
    }
}

/// `[process.NAME]` / `[process.default]`.
#[derive(Debug, Clone, PartialEq)]
pub struct ProcessConfig {
    /// How to restart.
    pub restart_strategy: Strategy,
    /// Run once before restarting; failure aborts the procedure.
    pub pre_restart_command: Option<CommandTemplate>,
    /// Exit 0 = healthy; `%s` = process name.
    pub health_check_command: CommandTemplate,
    /// How long to keep re-running the health check after a restart.
    pub health_check_timeout: Duration,
    /// Pause between attempts.
    pub restart_delay: Duration,
    /// Restart attempts per procedure.
    pub max_attempts: u32,
    /// systemd unit; `None` = the process name.
    pub unit: Option<String>,
    /// How the `process` strategy starts it again; `None` = its old command line or the name.
    pub start_command: Option<CommandTemplate>,
    /// SIGTERM to SIGKILL.
    pub stop_timeout: Duration,
    /// Bound on each pre-restart or health-check run.
    pub command_timeout: Duration,
    /// Account the `process` strategy starts it as; `None` = the account it ran as.
    pub user: Option<Account>,
    /// Group the `process` strategy starts it with; `None` = the user's (or the old process's).
    pub group: Option<Account>,
    /// How long the built-in health check wants the process to stay alive once found.
    pub health_check_settle: Duration,
}

/// A user or group from the config, resolved on this host when the config is loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// As written.
    pub name: String,
    /// The uid or gid.
    pub id: u32,
    /// For a user: its primary group.
    pub gid: Option<u32>,
}

impl Default for ProcessConfig {
    fn default() -> Self {
        ProcessConfig {
            restart_strategy: Strategy::Auto,
            pre_restart_command: None,
            health_check_command: CommandTemplate::default(),
            health_check_timeout: Duration::from_secs(5),
            restart_delay: Duration::from_secs(2),
            max_attempts: 2,
            unit: None,
            start_command: None,
            stop_timeout: Duration::from_secs(10),
            command_timeout: Duration::from_secs(30),
            user: None,
            group: None,
            health_check_settle: Duration::from_secs(1),
        }
    }
}

const DATABASE_KEYS: &[&str] = &[
    "host",
    "port",
    "user",
    "password",
    "database",
    "socket",
    "connect_timeout",
    "ssl_mode",
    "ssl_ca",
    "ssl_cert",
    "ssl_key",
];
/// `[binlog]`: where the binlog stream is read from (each key defaults to `[database]`'s).
const BINLOG_KEYS: &[&str] = &[
    "host", "port", "user", "password", "socket", "ssl_mode", "ssl_ca", "ssl_cert", "ssl_key",
];
const MONITOR_KEYS: &[&str] = &[
    "check_interval",
    "max_restart_failures",
    "circuit_reset_time",
    "binlog",
    "server_id",
    "max_parallel_restarts",
    "state_dir",
    "systemctl",
    "history_table",
    "control_socket",
    "host",
    "hosts_table",
    "only_configured",
];
const METRICS_KEYS: &[&str] = &["listen", "textfile"];
const ALERTS_KEYS: &[&str] = &["command", "after"];
const LOGGING_KEYS: &[&str] = &["max_log_size", "log_files_to_keep", "log_file", "level"];
const PROCESS_KEYS: &[&str] = &[
    "restart_strategy",
    "pre_restart_command",
    "health_check_command",
    "health_check_timeout",
    "restart_delay",
    "max_attempts",
    "unit",
    "start_command",
    "stop_timeout",
    "command_timeout",
    "user",
    "group",
    "health_check_settle",
];
const PROCESS_PREFIX: &str = "process.";

impl Config {
    /// Reads and validates the file at `path`. Also warns when the file
    /// holds a password and is readable by group or others.
    pub fn load(path: &Path) -> Result<Loaded, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            hint: io_hint(&source),
            path: path.to_path_buf(),
            source,
        })?;
        if nix::unistd::geteuid().is_root() {
            ownership_check(path)?;
        }
        let mut loaded = Config::parse(&text, path)?;
        if loaded.config.database.password.is_some() {
            if let Some(w) = mode_warning(path) {
                loaded.warnings.push(w);
            }
        }
        Ok(loaded)
    }

    /// Validates `text` as if read from `path` (used in messages and kept
    /// in [`Config::path`]).
    pub fn parse(text: &str, path: &Path) -> Result<Loaded, ConfigError> {
        let raw = read_raw(text, path)?;
        let mut warnings = raw.warnings.clone();
        let config = build(&raw, path, &mut warnings)?;
        Ok(Loaded { config, warnings })
    }

    /// The server the binlog stream is read from: `[binlog]` when present, else `[database]`.
    pub fn binlog_database(&self) -> &DatabaseConfig {
        self.binlog_server.as_ref().unwrap_or(&self.database)
    }

    /// Settings for process `name`: `[process.NAME]`, else
    /// `[process.default]`, else the built-ins.
    pub fn process(&self, name: &str) -> &ProcessConfig {
        self.processes.get(name).unwrap_or(&self.process_default)
    }

    /// The config file to read: `-c PATH`, else `$MONITOR_SERVICE_CONFIG`,
    /// else [`DEFAULT_CONFIG_PATH`], else [`LEGACY_CONFIG_PATH`] when only
    /// that one exists.
    pub fn default_path(cli: Option<&Path>) -> ConfigFile {
        default_path_from(
            cli,
            std::env::var_os(CONFIG_ENV),
            Path::new(DEFAULT_CONFIG_PATH),
            Path::new(LEGACY_CONFIG_PATH),
        )
    }
}

/// The config file chosen at start-up and the rule that chose it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigFile {
    /// The file to read.
    pub path: PathBuf,
    /// Which rule picked it.
    pub chosen_by: ChosenBy,
}

/// The rule of the lookup order that picked the config file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChosenBy {
    /// `-c PATH` on the command line.
    Flag,
    /// `$MONITOR_SERVICE_CONFIG`.
    Env,
    /// [`DEFAULT_CONFIG_PATH`] (also when no file exists at all, so that
    /// the error names the place to create it).
    Default,
    /// [`LEGACY_CONFIG_PATH`]: the default does not exist, the old one does.
    Legacy,
}

impl ChosenBy {
    /// Why this file, for the start-up log line and `--check-config`.
    pub fn describe(self) -> String {
        match self {
            ChosenBy::Flag => "given with -c".to_string(),
            ChosenBy::Env => format!("named by ${CONFIG_ENV}"),
            ChosenBy::Default => "the default".to_string(),
            ChosenBy::Legacy => format!(
                "the bash service's old location, because {DEFAULT_CONFIG_PATH} does not exist; \
                 move the file there when convenient"
            ),
        }
    }
}

/// The lookup order of [`Config::default_path`] with its inputs passed in:
/// `default` and `legacy` are checked on the file system.
fn default_path_from(
    cli: Option<&Path>,
    env: Option<std::ffi::OsString>,
    default: &Path,
    legacy: &Path,
) -> ConfigFile {
    let (path, chosen_by) = match (cli, env) {
        (Some(p), _) => (p.to_path_buf(), ChosenBy::Flag),
        (None, Some(e)) if !e.is_empty() => (PathBuf::from(e), ChosenBy::Env),
        _ if !present(default) && present(legacy) => (legacy.to_path_buf(), ChosenBy::Legacy),
        _ => (default.to_path_buf(), ChosenBy::Default),
    };
    ConfigFile { path, chosen_by }
}

/// False only when nothing is at `path`: a dangling link or a file that
/// cannot be looked at counts as there, so its read error names it instead
/// of another file being read silently.
fn present(path: &Path) -> bool {
    !matches!(std::fs::symlink_metadata(path), Err(e) if e.kind() == std::io::ErrorKind::NotFound)
}

fn io_hint(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => format!(
            "create it from the example config.ini, or point -c PATH or ${CONFIG_ENV} at the right file"
        ),
        std::io::ErrorKind::PermissionDenied => {
            "make it readable by the user the daemon runs as (e.g. owned by it with chmod 600)"
                .to_string()
        }
        std::io::ErrorKind::InvalidData => "save the file as UTF-8 text".to_string(),
        _ => "check that the path names a readable file".to_string(),
    }
}

/// Refuses a config file that someone other than root could change (not owned by root, or
/// writable by group/others).
fn ownership_check(path: &Path) -> Result<(), ConfigError> {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = std::fs::metadata(path) else {
        return Ok(());
    };
    let (owner, mode) = (meta.uid(), meta.mode() & 0o7777);
    let problem = if owner != 0 {
        "not owned by root"
    } else if mode & 0o022 != 0 {
        "writable by group/others"
    } else {
        return Ok(());
    };
    Err(ConfigError::Unsafe {
        path: path.to_path_buf(),
        problem,
        owner,
        mode,
    })
}

fn mode_warning(path: &Path) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o7777;
    if mode & 0o044 == 0 {
        return None;
    }
    Some(format!(
        "{}: holds the database password but is readable by group/others (mode {mode:04o}); run chmod 600 {}",
        path.display(),
        path.display()
    ))
}

// ---------------------------------------------------------------------------
// Stage 1: raw strings with line numbers.

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct RawValue {
    value: String,
    line: Option<usize>,
}

#[derive(Debug, Clone, Default)]
struct RawSection {
    line: Option<usize>,
    keys: BTreeMap<String, RawValue>,
}

#[derive(Debug, Clone, Default)]
struct Raw {
    /// Sections in the order the file names them first.
    order: Vec<String>,
    sections: BTreeMap<String, RawSection>,
    warnings: Vec<String>,
}

/// A line quoted for a syntax error, unless it may hold the database password (any line of
/// `[database]`, or one that mentions a password): then only that it is hidden.
fn quoted_line(section: Option<&str>, line: &str) -> String {
    if section == Some("database") || line.to_ascii_lowercase().contains("pass") {
        "a line that is not shown because it may hold the password".to_string()
    } else {
        format!("{line:?}")
    }
}

fn read_raw(text: &str, path: &Path) -> Result<Raw, ConfigError> {
    let file = path.display().to_string();
    let parse_error = |line: usize, message: String| ConfigError::Parse {
        path: path.to_path_buf(),
        line,
        message,
    };
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);

    // Our own pass: check the syntax line by line, note where each section
    // and key is, and hand rust-ini only lines it reads the same way
    // (comment lines blanked, so line numbers stay the same).
    let mut cleaned = String::with_capacity(text.len());
    let mut section_lines: Vec<(Option<String>, usize)> = Vec::new();
    let mut key_lines: BTreeMap<(Option<String>, String), Vec<usize>> = BTreeMap::new();
    let mut current: Option<String> = None;
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        let t = line.trim();
        if t.is_empty() || t.starts_with(';') || t.starts_with('#') {
            cleaned.push('\n');
            continue;
        }
        if t.contains('\r') {
            // rust-ini ends a line at a lone CR; this pass does not: refuse rather than let
            // the two read different keys.
            return Err(parse_error(
                n,
                format!(
                    "stray carriage return (\\r) inside the line {}: save the file with Unix (LF) or Windows (CRLF) line ends",
                    quoted_line(current.as_deref(), t)
                ),
            ));
        }
        if let Some(rest) = t.strip_prefix('[') {
            let Some(inner) = rest.strip_suffix(']') else {
                return Err(parse_error(
                    n,
                    format!("section header {t:?} has no closing ']': write it as [name]"),
                ));
            };
            let name = inner.trim();
            if name.is_empty() || name.contains(['[', ']']) {
                return Err(parse_error(
                    n,
                    format!("section header {t:?} is not valid: write it as [name]"),
                ));
            }
            current = Some(name.to_string());
            section_lines.push((current.clone(), n));
        } else {
            let Some(pos) = t.find(['=', ':']) else {
                return Err(parse_error(
                    n,
                    format!(
                        "expected \"key = value\", a [section] header or a comment starting with ; or #, found {}",
                        quoted_line(current.as_deref(), t)
                    ),
                ));
            };
            let key = t[..pos].trim();
            if key.is_empty() {
                return Err(parse_error(
                    n,
                    format!(
                        "missing key name before '{}' in {}: write \"key = value\"",
                        &t[pos..=pos],
                        quoted_line(current.as_deref(), t)
                    ),
                ));
            }
            if key.contains('\\') {
                // rust-ini reads `\=` and `\:` as part of the key and goes on to the next
                // line; no key has a backslash, so refuse it here.
                return Err(parse_error(
                    n,
                    format!(
                        "key name {key:?} contains a backslash: key names are plain words such as check_interval"
                    ),
                ));
            }
            key_lines
                .entry((current.clone(), key.to_string()))
                .or_default()
                .push(n);
        }
        cleaned.push_str(t);
        if t.ends_with('\\') {
            // rust-ini reads backslash-newline as a line continuation; a
            // space keeps the backslash part of the value (and is trimmed).
            cleaned.push(' ');
        }
        cleaned.push('\n');
    }

    let opt = ini::ParseOption {
        enabled_quote: false,
        enabled_escape: false,
        ..ini::ParseOption::default()
    };
    let ini = ini::Ini::load_from_str_opt(&cleaned, opt)
        .map_err(|e| parse_error(e.line, format!("{} (column {})", e.msg, e.col)))?;

    let mut values: BTreeMap<(Option<String>, String), Vec<String>> = BTreeMap::new();
    for (section, props) in ini.iter() {
        for (key, value) in props.iter() {
            values
                .entry((section.map(str::to_string), key.to_string()))
                .or_default()
                .push(value.to_string());
        }
    }

    let mut raw = Raw::default();
    for (section, line) in &section_lines {
        if let Some(name) = section {
            if !raw.sections.contains_key(name) {
                raw.order.push(name.clone());
                raw.sections.insert(
                    name.clone(),
                    RawSection {
                        line: Some(*line),
                        keys: BTreeMap::new(),
                    },
                );
            }
        }
    }

    let mut found: Vec<(usize, String)> = Vec::new();
    for ((section, key), vals) in values {
        let lines = key_lines
            .get(&(section.clone(), key.clone()))
            .cloned()
            .unwrap_or_default();
        let line = lines.last().copied();
        let Some(value) = vals.last().cloned() else {
            continue;
        };
        if line.is_none() {
            // Cannot happen after the checks above; if it does, a key was read that this
            // pass did not see, and guessing would be worse than refusing.
            return Err(parse_error(
                text.lines().count().max(1),
                format!(
                    "cannot tell which line sets key {key:?}{}: look for a backslash before '=' or ':' or a stray carriage return",
                    section.as_deref().map(|s| format!(" in [{}]", shown(s))).unwrap_or_default()
                ),
            ));
        }
        let Some(section) = section else {
            found.push((
                line.unwrap_or(0),
                format!(
                    "{file}: key '{}' is outside any [section] and ignored{}",
                    shown(&key),
                    line.map(|l| format!(" (line {l})")).unwrap_or_default()
                ),
            ));
            continue;
        };
        if lines.len() > 1 {
            let all: Vec<String> = lines.iter().map(usize::to_string).collect();
            found.push((
                line.unwrap_or(0),
                format!(
                    "{file}: [{}] key '{}' is set more than once (lines {}); the last one is used",
                    shown(&section),
                    shown(&key),
                    all.join(", ")
                ),
            ));
        }
        raw.sections
            .entry(section)
            .or_default()
            .keys
            .insert(key, RawValue { value, line });
    }
    found.sort();
    raw.warnings = found.into_iter().map(|(_, w)| w).collect();
    Ok(raw)
}

// ---------------------------------------------------------------------------
// Stage 2: typed values.

/// One section's raw keys, with what is needed to report a bad value.
struct Sect<'a> {
    path: &'a Path,
    name: &'a str,
    keys: Option<&'a BTreeMap<String, RawValue>>,
}

impl Sect<'_> {
    fn invalid(&self, key: &str, raw: &RawValue, mut expected: String) -> ConfigError {
        if raw.value.contains(" ;") || raw.value.contains(" #") {
            expected.push_str(" (comments must be on a line of their own)");
        }
        ConfigError::Invalid(Box::new(InvalidValue {
            path: self.path.to_path_buf(),
            line: raw.line,
            section: self.name.to_string(),
            key: key.to_string(),
            value: raw.value.clone(),
            expected,
        }))
    }

    /// A required value: absent = `default`; present = `parse(value)`.
    fn field<T>(
        &self,
        key: &str,
        default: T,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Result<T, ConfigError> {
        match self.keys.and_then(|k| k.get(key)) {
            None => Ok(default),
            Some(raw) => parse(raw.value.trim()).map_err(|e| self.invalid(key, raw, e)),
        }
    }

    /// An optional value: absent = `default`; empty = `None`.
    fn opt_field<T>(
        &self,
        key: &str,
        default: Option<T>,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Result<Option<T>, ConfigError> {
        match self.keys.and_then(|k| k.get(key)) {
            None => Ok(default),
            Some(raw) if raw.value.trim().is_empty() => Ok(None),
            Some(raw) => parse(raw.value.trim())
                .map(Some)
                .map_err(|e| self.invalid(key, raw, e)),
        }
    }

    fn warn_unknown(&self, known: &[&str], warnings: &mut Vec<String>) {
        let Some(keys) = self.keys else { return };
        let mut unknown: Vec<(Option<usize>, &String)> = keys
            .iter()
            .filter(|(k, _)| !known.contains(&k.as_str()))
            .map(|(k, v)| (v.line, k))
            .collect();
        unknown.sort();
        for (line, key) in unknown {
            let mut w = format!(
                "{}: [{}] unknown key '{}' ignored",
                self.path.display(),
                shown(self.name),
                shown(key)
            );
            if let Some(l) = line {
                w.push_str(&format!(" (line {l})"));
            }
            if let Some(s) = suggest(key, known) {
                w.push_str(&format!("; did you mean '{s}'?"));
            }
            warnings.push(w);
        }
    }
}

fn build(raw: &Raw, path: &Path, warnings: &mut Vec<String>) -> Result<Config, ConfigError> {
    let sect = |name: &'static str| Sect {
        path,
        name,
        keys: raw.sections.get(name).map(|s| &s.keys),
    };

    let db = sect("database");
    db.warn_unknown(DATABASE_KEYS, warnings);
    let d = DatabaseConfig::default();
    let database = DatabaseConfig {
        host: db.field("host", d.host, host_name)?,
        port: db.field("port", d.port, |s| {
            uint(s, 1, 65535).map(|v| u16::try_from(v).unwrap_or(u16::MAX))
        })?,
        user: db.field("user", d.user, user_name)?,
        password: db.opt_field("password", d.password, |s| Ok(Secret::new(s)))?,
        database: db.field("database", d.database, sql_identifier)?,
        socket: db.opt_field("socket", d.socket, file_path)?,
        connect_timeout: db.field("connect_timeout", d.connect_timeout, positive_seconds)?,
        tls: tls_config(&db, &d.tls)?,
    };
    socket_tls_warning(&database, path, "database", warnings);
    let binlog_server = binlog_server(&sect("binlog"), &database, warnings)?;
    if let Some(b) = &binlog_server {
        socket_tls_warning(b, path, "binlog", warnings);
    }

    let mon = sect("monitor");
    mon.warn_unknown(MONITOR_KEYS, warnings);
    let m = MonitorConfig::default();
    let monitor = MonitorConfig {
        check_interval: mon.field("check_interval", m.check_interval, positive_seconds)?,
        max_restart_failures: mon.field("max_restart_failures", m.max_restart_failures, |s| {
            uint32(s, 1, 1_000_000)
        })?,
        circuit_reset_time: mon.field(
            "circuit_reset_time",
            m.circuit_reset_time,
            positive_seconds,
        )?,
        binlog: mon.field("binlog", m.binlog, binlog_mode)?,
        server_id: mon.opt_field("server_id", m.server_id, |s| {
            uint32(s, 1, u64::from(u32::MAX))
        })?,
        max_parallel_restarts: mon.field(
            "max_parallel_restarts",
            m.max_parallel_restarts,
            |s| uint(s, 1, 1024).map(|v| usize::try_from(v).unwrap_or(1024)),
        )?,
        state_dir: mon.field("state_dir", m.state_dir, file_path)?,
        systemctl: mon.field("systemctl", m.systemctl, program_name)?,
        history_table: mon.field("history_table", m.history_table, sql_identifier)?,
        control_socket: mon.field("control_socket", m.control_socket, socket_path)?,
        host: mon.field("host", m.host, daemon_host)?,
        hosts_table: mon.field("hosts_table", m.hosts_table, sql_identifier)?,
        only_configured: mon.field("only_configured", m.only_configured, yes_no)?,
    };

    let lg = sect("logging");
    lg.warn_unknown(LOGGING_KEYS, warnings);
    let l = LoggingConfig::default();
    let logging = LoggingConfig {
        max_log_size_kb: lg.field("max_log_size", l.max_log_size_kb, |s| {
            uint(s, 1, MAX_LOG_SIZE_KB)
        })?,
        log_files_to_keep: lg.field("log_files_to_keep", l.log_files_to_keep, |s| {
            uint(s, 0, 1000).map(|v| usize::try_from(v).unwrap_or(1000))
        })?,
        log_file: lg.field("log_file", l.log_file, file_path)?,
        level: lg.field("level", l.level, log_level)?,
    };

    let me = sect("metrics");
    me.warn_unknown(METRICS_KEYS, warnings);
    let metrics = MetricsConfig {
        listen: me.opt_field("listen", None, listen_address)?,
        textfile: me.opt_field("textfile", None, textfile_path)?,
    };

    let al = sect("alerts");
    al.warn_unknown(ALERTS_KEYS, warnings);
    let a = AlertsConfig::default();
    let alerts = AlertsConfig {
        command: al.opt_field("command", a.command, command)?,
        after: al.field("after", a.after, positive_seconds)?,
    };

    let def = sect("process.default");
    def.warn_unknown(PROCESS_KEYS, warnings);
    let process_default = process_config(&def, &ProcessConfig::default())?;

    let mut processes = BTreeMap::new();
    for name in &raw.order {
        let Some(section) = raw.sections.get(name) else {
            continue;
        };
        let line = section.line.unwrap_or(0);
        match name.as_str() {
            "database" | "monitor" | "logging" | "metrics" | "alerts" | "process.default" => {
                continue
            }
            "binlog" => continue,
            _ => {}
        }
        let Some(process) = name.strip_prefix(PROCESS_PREFIX) else {
            let mut w = format!(
                "{}: unknown section [{}] ignored (line {line})",
                path.display(),
                shown(name)
            );
            if name == "process" {
                w.push_str("; did you mean [process.NAME] or [process.default]?");
            } else if let Some(s) = suggest(
                name,
                &[
                    "database", "monitor", "logging", "metrics", "alerts", "binlog",
                ],
            ) {
                w.push_str(&format!("; did you mean [{s}]?"));
            }
            warnings.push(w);
            continue;
        };
        if let Err(e) = command::validate_process_name(process) {
            return Err(ConfigError::InvalidSection {
                path: path.to_path_buf(),
                line,
                section: name.clone(),
                reason: format!(
                    "{e}; name the section [process.NAME] after a process name from PROCESE"
                ),
            });
        }
        let s = Sect {
            path,
            name,
            keys: Some(&section.keys),
        };
        s.warn_unknown(PROCESS_KEYS, warnings);
        processes.insert(process.to_string(), process_config(&s, &process_default)?);
    }

    lint_values(raw, path, warnings);

    Ok(Config {
        path: path.to_path_buf(),
        database,
        monitor,
        logging,
        metrics,
        alerts,
        binlog_server,
        process_default,
        processes,
    })
}

/// The TLS keys of `s`, each defaulting to `base`'s.
fn tls_config(s: &Sect<'_>, base: &TlsConfig) -> Result<TlsConfig, ConfigError> {
    let b = base.clone();
    let tls = TlsConfig {
        mode: s.field("ssl_mode", b.mode, ssl_mode)?,
        ca: s.opt_field("ssl_ca", b.ca, |v| pem_file(v, "CERTIFICATE"))?,
        cert: s.opt_field("ssl_cert", b.cert, |v| pem_file(v, "CERTIFICATE"))?,
        key: s.opt_field("ssl_key", b.key, |v| pem_file(v, "PRIVATE KEY"))?,
    };
    let missing = match (&tls.cert, &tls.key) {
        (Some(_), None) => Some(("ssl_cert", "ssl_key")),
        (None, Some(_)) => Some(("ssl_key", "ssl_cert")),
        _ => None,
    };
    if let Some((given, absent)) = missing {
        let raw = s
            .keys
            .and_then(|k| k.get(given))
            .cloned()
            .unwrap_or_default();
        return Err(s.invalid(
            given,
            &raw,
            format!("{given} needs {absent} too (the client certificate and its private key)"),
        ));
    }
    if let (Some(cert), Some(key)) = (&tls.cert, &tls.key) {
        if let Err(e) = crate::tls::check_identity(cert, key) {
            let raw = s.keys.and_then(|k| k.get("ssl_key")).cloned();
            return Err(s.invalid("ssl_key", &raw.unwrap_or_default(), e));
        }
    }
    Ok(tls)
}

/// A Unix socket never uses TLS: say so when `ssl_mode` asks for more than `preferred`.
fn socket_tls_warning(d: &DatabaseConfig, path: &Path, section: &str, warnings: &mut Vec<String>) {
    let strict = !matches!(d.tls.mode, SslMode::Disabled | SslMode::Preferred);
    if let (Some(sock), true) = (&d.socket, strict) {
        warnings.push(format!(
            "{}: [{section}] ssl_mode = {} has no effect: connections go through the Unix socket {} (local, never TLS); set host/port without socket for TLS",
            path.display(),
            d.tls.mode,
            sock.display()
        ));
    }
}

/// `[binlog]`: absent = `None` (the stream comes from `[database]`); present = `[database]`
/// with the keys it sets. A `host` or `port` of its own means TCP (no `[database] socket`).
fn binlog_server(
    s: &Sect<'_>,
    database: &DatabaseConfig,
    warnings: &mut Vec<String>,
) -> Result<Option<DatabaseConfig>, ConfigError> {
    let Some(keys) = s.keys else {
        return Ok(None);
    };
    s.warn_unknown(BINLOG_KEYS, warnings);
    let d = database.clone();
    let own_tcp = keys.contains_key("host") || keys.contains_key("port");
    let socket = if own_tcp { None } else { d.socket.clone() };
    Ok(Some(DatabaseConfig {
        host: s.field("host", d.host.clone(), host_name)?,
        port: s.field("port", d.port, |v| {
            uint(v, 1, 65535).map(|p| u16::try_from(p).unwrap_or(u16::MAX))
        })?,
        user: s.field("user", d.user.clone(), user_name)?,
        password: s.opt_field("password", d.password.clone(), |v| Ok(Secret::new(v)))?,
        socket: s.opt_field("socket", socket, file_path)?,
        tls: tls_config(s, &d.tls)?,
        ..d
    }))
}

fn process_config(s: &Sect<'_>, base: &ProcessConfig) -> Result<ProcessConfig, ConfigError> {
    let b = base.clone();
    Ok(ProcessConfig {
        restart_strategy: s.field("restart_strategy", b.restart_strategy, strategy)?,
        pre_restart_command: s.opt_field("pre_restart_command", b.pre_restart_command, command)?,
        health_check_command: s.field("health_check_command", b.health_check_command, command)?,
        health_check_timeout: s.field("health_check_timeout", b.health_check_timeout, seconds)?,
        restart_delay: s.field("restart_delay", b.restart_delay, seconds)?,
        max_attempts: s.field("max_attempts", b.max_attempts, |v| uint32(v, 1, 100))?,
        unit: s.opt_field("unit", b.unit, unit_name)?,
        start_command: s.opt_field("start_command", b.start_command, command)?,
        stop_timeout: s.field("stop_timeout", b.stop_timeout, seconds)?,
        command_timeout: s.field("command_timeout", b.command_timeout, positive_seconds)?,
        user: s.opt_field("user", b.user, user_account)?,
        group: s.opt_field("group", b.group, group_account)?,
        health_check_settle: s.field("health_check_settle", b.health_check_settle, seconds)?,
    })
}

/// `yes`/`no` (also true/false, on/off, 1/0).
fn yes_no(s: &str) -> Result<bool, String> {
    match s.to_ascii_lowercase().as_str() {
        "yes" | "true" | "on" | "1" => Ok(true),
        "no" | "false" | "off" | "0" => Ok(false),
        _ => Err("expected yes or no".to_string()),
    }
}

/// `user`: an account name or uid that exists on this host.
fn user_account(s: &str) -> Result<Account, String> {
    use nix::unistd::{Uid, User};
    let found = match s.parse::<u32>() {
        Ok(n) => User::from_uid(Uid::from_raw(n)),
        Err(_) => User::from_name(s),
    };
    match found {
        Ok(Some(u)) => Ok(Account {
            name: s.to_string(),
            id: u.uid.as_raw(),
            gid: Some(u.gid.as_raw()),
        }),
        _ => Err(format!(
            "expected a user of this host (a name from /etc/passwd or a uid): no user {s:?}; create it or fix the name"
        )),
    }
}

/// `group`: a group name or gid that exists on this host.
fn group_account(s: &str) -> Result<Account, String> {
    use nix::unistd::{Gid, Group};
    let found = match s.parse::<u32>() {
        Ok(n) => Group::from_gid(Gid::from_raw(n)),
        Err(_) => Group::from_name(s),
    };
    match found {
        Ok(Some(g)) => Ok(Account {
            name: s.to_string(),
            id: g.gid.as_raw(),
            gid: None,
        }),
        _ => Err(format!(
            "expected a group of this host (a name from /etc/group or a gid): no group {s:?}; create it or fix the name"
        )),
    }
}

/// Keys whose value is a command run without a shell.
const COMMAND_KEYS: &[&str] = &[
    "pre_restart_command",
    "health_check_command",
    "start_command",
    "command",
];

/// Warnings for values that will not do what they seem to: a command with shell syntax
/// (run without a shell, `|` or `>` are plain words), or a value wrapped in quotes.
fn lint_values(raw: &Raw, path: &Path, warnings: &mut Vec<String>) {
    for (section, sect) in &raw.sections {
        for (key, v) in &sect.keys {
            let at = format!(
                "{}{}: [{}] {}",
                path.display(),
                line_suffix(v.line),
                shown(section),
                shown(key)
            );
            let value = v.value.trim();
            if wrapped_in_quotes(value) {
                warnings.push(format!(
                    "{at}: the value is wrapped in quotes, which are kept (or, in a command, make it one word); remove them"
                ));
            }
            let is_command = COMMAND_KEYS.contains(&key.as_str())
                && (section.starts_with(PROCESS_PREFIX) || section == "alerts");
            if is_command {
                if let Some(token) = shell_syntax(value) {
                    warnings.push(format!(
                        "{at}: the command holds shell syntax {token:?}, which does not work without a shell (commands run without one); wrap it as sh -c \"...\" or use a script"
                    ));
                }
            }
        }
    }
}

fn wrapped_in_quotes(value: &str) -> bool {
    value.len() >= 2
        && ((value.starts_with('"') && value.ends_with('"'))
            || (value.starts_with('\'') && value.ends_with('\'')))
}

/// The first shell operator outside quotes: `|`, `>`, `<`, `&&`, `;`, `2>&1`, `$(`.
fn shell_syntax(command: &str) -> Option<&'static str> {
    let chars: Vec<char> = command.chars().collect();
    let mut quote: Option<char> = None;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        match (quote, c) {
            (Some(q), _) if c == q => quote = None,
            (Some('"'), '\\') => i += 1,
            (Some(_), _) => {}
            (None, '\'' | '"') => quote = Some(c),
            (None, '\\') => i += 1,
            (None, '2') if chars[i..].starts_with(&['2', '>', '&', '1']) => return Some("2>&1"),
            (None, '|') => return Some("|"),
            (None, '>') => return Some(">"),
            (None, '<') => return Some("<"),
            (None, ';') => return Some(";"),
            (None, '&') if next == Some('&') => return Some("&&"),
            (None, '$') if next == Some('(') => return Some("$("),
            _ => {}
        }
        i += 1;
    }
    None
}

// ---------------------------------------------------------------------------
// Value parsers: Ok(value) or Err(what is allowed).

fn parse_seconds(s: &str, allow_zero: bool) -> Option<Duration> {
    let digits = s.chars().filter(char::is_ascii_digit).count();
    let dots = s.chars().filter(|c| *c == '.').count();
    if digits == 0 || dots > 1 || digits + dots != s.chars().count() {
        return None;
    }
    let v: f64 = s.parse().ok()?;
    if !v.is_finite() || v > MAX_SECONDS as f64 {
        return None;
    }
    let d = Duration::try_from_secs_f64(v).ok()?;
    if !allow_zero && d.is_zero() {
        return None;
    }
    Some(d)
}

fn positive_seconds(s: &str) -> Result<Duration, String> {
    parse_seconds(s, false).ok_or_else(|| {
        format!("expected a number of seconds greater than 0 and at most {MAX_SECONDS} (30 days), e.g. 5 or 0.5")
    })
}

fn seconds(s: &str) -> Result<Duration, String> {
    parse_seconds(s, true).ok_or_else(|| {
        format!("expected a number of seconds from 0 to {MAX_SECONDS} (30 days), e.g. 2 or 0.5")
    })
}

fn uint(s: &str, min: u64, max: u64) -> Result<u64, String> {
    let err = || format!("expected a whole number from {min} to {max}");
    if s.is_empty() || !s.chars().all(|c| c.is_ascii_digit()) {
        return Err(err());
    }
    match s.parse::<u64>() {
        Ok(v) if (min..=max).contains(&v) => Ok(v),
        _ => Err(err()),
    }
}

fn uint32(s: &str, min: u64, max: u64) -> Result<u32, String> {
    uint(s, min, max).and_then(|v| {
        u32::try_from(v).map_err(|_| format!("expected a whole number from {min} to {max}"))
    })
}

fn binlog_mode(s: &str) -> Result<BinlogMode, String> {
    match s.to_ascii_lowercase().as_str() {
        "on" => Ok(BinlogMode::On),
        "off" => Ok(BinlogMode::Off),
        "auto" => Ok(BinlogMode::Auto),
        _ => Err("expected on, off or auto".to_string()),
    }
}

fn log_level(s: &str) -> Result<LogLevel, String> {
    match s.to_ascii_lowercase().as_str() {
        "error" => Ok(LogLevel::Error),
        "warn" | "warning" => Ok(LogLevel::Warn),
        "info" => Ok(LogLevel::Info),
        "debug" => Ok(LogLevel::Debug),
        _ => Err("expected error, warn (or warning), info or debug".to_string()),
    }
}

fn strategy(s: &str) -> Result<Strategy, String> {
    match s.to_ascii_lowercase().as_str() {
        "service" => Ok(Strategy::Service),
        "process" => Ok(Strategy::Process),
        "auto" => Ok(Strategy::Auto),
        _ => Err("expected service, process or auto".to_string()),
    }
}

fn command(s: &str) -> Result<CommandTemplate, String> {
    CommandTemplate::parse(s).map_err(|e| {
        format!("expected a command (program and arguments, run without a shell, %s = process name): {e}")
    })
}

fn ssl_mode(s: &str) -> Result<SslMode, String> {
    match s.to_ascii_lowercase().as_str() {
        "disabled" => Ok(SslMode::Disabled),
        "preferred" => Ok(SslMode::Preferred),
        "required" => Ok(SslMode::Required),
        "verify_ca" => Ok(SslMode::VerifyCa),
        "verify_identity" => Ok(SslMode::VerifyIdentity),
        _ => Err(format!("expected one of {}", SslMode::NAMES.join(", "))),
    }
}

/// `ssl_ca`, `ssl_cert`, `ssl_key`: a readable PEM file holding a `-----BEGIN ...{label}-----`
/// block (checked at load, so a wrong path stops the daemon with the key named).
fn pem_file(s: &str, label: &str) -> Result<PathBuf, String> {
    let p = file_path(s)?;
    let text = std::fs::read(&p).map_err(|e| {
        format!(
            "cannot read {}: {e}; give the path of a PEM file the daemon's user can read",
            p.display()
        )
    })?;
    let text = String::from_utf8_lossy(&text);
    let found = text
        .lines()
        .any(|l| l.starts_with("-----BEGIN ") && l.trim_end().ends_with(&format!("{label}-----")));
    if found {
        Ok(p)
    } else {
        Err(format!(
            "{} holds no PEM \"{label}\" block (-----BEGIN ...{label}-----); give a PEM file (convert DER with `openssl x509 -inform der` or `openssl pkey -inform der`)",
            p.display()
        ))
    }
}

fn sql_identifier(s: &str) -> Result<String, String> {
    let ok = (1..=64).contains(&s.len())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$');
    if ok {
        Ok(s.to_string())
    } else {
        Err("expected a name of 1 to 64 characters from A-Z a-z 0-9 _ $".to_string())
    }
}

fn host_name(s: &str) -> Result<String, String> {
    if s.is_empty() || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        Err("expected a host name or IP address without spaces, e.g. localhost".to_string())
    } else {
        Ok(s.to_string())
    }
}

fn daemon_host(s: &str) -> Result<String, String> {
    if s.is_empty()
        || s.chars().count() > 255
        || s.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        Err("expected this daemon's host name as PROCESE.host names it: 1 to 255 characters without spaces, e.g. web01".to_string())
    } else {
        Ok(s.to_string())
    }
}

fn user_name(s: &str) -> Result<String, String> {
    if s.is_empty() || s.chars().any(char::is_control) {
        Err("expected a database account name, e.g. monitor".to_string())
    } else {
        Ok(s.to_string())
    }
}

fn program_name(s: &str) -> Result<String, String> {
    if s.is_empty() || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        Err("expected a program name or path without spaces, e.g. systemctl".to_string())
    } else {
        Ok(s.to_string())
    }
}

fn file_path(s: &str) -> Result<PathBuf, String> {
    if s.is_empty() || s.chars().any(char::is_control) {
        Err("expected a file system path".to_string())
    } else {
        Ok(PathBuf::from(s))
    }
}

/// `[metrics] listen`: `ADDRESS:PORT` (`[::1]:PORT` for IPv6), or a port alone for loopback.
fn listen_address(s: &str) -> Result<std::net::SocketAddr, String> {
    let expected = || {
        "expected ADDRESS:PORT such as 127.0.0.1:9870 or [::1]:9870, or a port alone for 127.0.0.1 (port 1 to 65535)".to_string()
    };
    let addr = if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        let port: u16 = s.parse().map_err(|_| expected())?;
        std::net::SocketAddr::from(([127, 0, 0, 1], port))
    } else {
        s.parse().map_err(|_| expected())?
    };
    if addr.port() == 0 {
        return Err(expected());
    }
    Ok(addr)
}

/// `[metrics] textfile`: node_exporter's textfile collector reads only `*.prom` files.
fn textfile_path(s: &str) -> Result<PathBuf, String> {
    let p = file_path(s)?;
    let named = p
        .file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.len() > 5 && n.ends_with(".prom"));
    if named && p.is_absolute() {
        Ok(p)
    } else {
        Err("expected an absolute path of a file ending in .prom (node_exporter's textfile collector reads only *.prom), e.g. /var/lib/node_exporter/textfile/monitor_service.prom".to_string())
    }
}

/// `[monitor] control_socket`: a path that fits a Unix socket address (107 bytes).
fn socket_path(s: &str) -> Result<PathBuf, String> {
    let p = file_path(s)?;
    if s.len() <= 107 && p.is_absolute() && p.file_name().is_some() {
        Ok(p)
    } else {
        Err("expected an absolute path of at most 107 bytes (the limit of a Unix socket address), e.g. /run/monitor_service/control.sock".to_string())
    }
}

fn unit_name(s: &str) -> Result<String, String> {
    let ok = s.len() <= 255
        && !s.starts_with('-')
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, ':' | '_' | '.' | '\\' | '@' | '-'));
    if ok {
        Ok(s.to_string())
    } else {
        Err("expected a systemd unit name such as apache2 or apache2.service (letters, digits and : _ . \\ @ -, not starting with '-')".to_string())
    }
}

/// The closest of `known` to `word`, if it is close enough to be a typo.
fn suggest<'a>(word: &str, known: &[&'a str]) -> Option<&'a str> {
    if word.len() >= 5 {
        if let Some(k) = known.iter().find(|k| k.starts_with(word)) {
            return Some(k);
        }
    }
    known
        .iter()
        .map(|k| (edit_distance(word, k), *k))
        .filter(|(d, k)| *d <= 2.max(k.len() / 5))
        .min()
        .map(|(_, k)| k)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "/etc/x/config.ini";

    fn parse(text: &str) -> Loaded {
        Config::parse(text, Path::new(FILE)).unwrap()
    }

    fn parse_err(text: &str) -> String {
        Config::parse(text, Path::new(FILE))
            .unwrap_err()
            .to_string()
    }

    fn cmd(s: &str) -> CommandTemplate {
        CommandTemplate::parse(s).unwrap()
    }

    const LEGACY: &str = "\
[database]
host = localhost
user = monitor
password = secret
database = v_process_monitor

[monitor]
check_interval = 300
max_restart_failures = 3
circuit_reset_time = 1800

[logging]
max_log_size = 5120
log_files_to_keep = 5

[process.default]
restart_strategy = auto
health_check_command = pgrep %s
health_check_timeout = 5
restart_delay = 2
max_attempts = 2

[process.apache2]
restart_strategy = service
pre_restart_command = apachectl configtest
health_check_command = systemctl is-active apache2
";

    #[test]
    fn empty_file_gives_all_defaults() {
        let l = parse("");
        assert!(l.warnings.is_empty());
        let c = l.config;
        assert_eq!(c.path, PathBuf::from(FILE));
        let d = &c.database;
        assert_eq!(d.host, "localhost");
        assert_eq!(d.port, 3306);
        assert_eq!(d.user, "root");
        assert_eq!(d.password, None);
        assert_eq!(d.database, "v_process_monitor");
        assert_eq!(d.socket, None);
        assert_eq!(d.connect_timeout, Duration::from_secs(10));
        let m = &c.monitor;
        assert_eq!(m.check_interval, Duration::from_secs(300));
        assert_eq!(m.max_restart_failures, 3);
        assert_eq!(m.circuit_reset_time, Duration::from_secs(1800));
        assert_eq!(m.binlog, BinlogMode::Auto);
        assert_eq!(m.server_id, None);
        assert_eq!(m.max_parallel_restarts, 4);
        assert_eq!(m.state_dir, PathBuf::from("/var/lib/monitor_service"));
        assert_eq!(m.systemctl, "systemctl");
        assert_eq!(m.history_table, "RESTART_HISTORY");
        assert_eq!(m.host, machine_host_name());
        assert_eq!(m.hosts_table, "MONITOR_HOSTS");
        let g = &c.logging;
        assert_eq!(g.max_log_size_kb, 5120);
        assert_eq!(g.log_files_to_keep, 5);
        assert_eq!(g.log_file, PathBuf::from("/var/log/monitor_service.log"));
        assert_eq!(g.level, LogLevel::Info);
        let p = &c.process_default;
        assert_eq!(p.restart_strategy, Strategy::Auto);
        assert_eq!(p.pre_restart_command, None);
        assert_eq!(p.health_check_command, cmd("pgrep %s"));
        assert_eq!(p.health_check_timeout, Duration::from_secs(5));
        assert_eq!(p.restart_delay, Duration::from_secs(2));
        assert_eq!(p.max_attempts, 2);
        assert_eq!(p.unit, None);
        assert_eq!(p.start_command, None);
        assert_eq!(p.stop_timeout, Duration::from_secs(10));
        assert_eq!(p.command_timeout, Duration::from_secs(30));
        assert!(c.processes.is_empty());
        assert_eq!(c.process("anything"), &ProcessConfig::default());
        let expected = Config {
            path: PathBuf::from(FILE),
            ..Config::default()
        };
        assert_eq!(c, expected);
    }

    #[test]
    fn legacy_bash_config_loads_unchanged() {
        let l = parse(LEGACY);
        assert!(l.warnings.is_empty(), "{:?}", l.warnings);
        let c = l.config;
        assert_eq!(c.database.user, "monitor");
        assert_eq!(
            c.database.password.as_ref().map(Secret::expose),
            Some("secret")
        );
        assert_eq!(c.monitor.check_interval, Duration::from_secs(300));
        assert_eq!(c.logging.max_log_size_kb, 5120);
        let a = c.process("apache2");
        assert_eq!(a.restart_strategy, Strategy::Service);
        assert_eq!(a.pre_restart_command, Some(cmd("apachectl configtest")));
        assert_eq!(
            a.health_check_command.render("apache2"),
            ["systemctl", "is-active", "apache2"]
        );
        assert_eq!(a.max_attempts, 2);
        assert_eq!(c.process("nginx").restart_strategy, Strategy::Auto);
        assert_eq!(
            c.process("nginx").health_check_command.render("nginx"),
            ["pgrep", "nginx"]
        );
    }

    #[test]
    fn lookup_order_name_then_default_then_builtin() {
        let c = parse(
            "[process.default]\nmax_attempts = 5\nrestart_delay = 0.5\n\
             [process.web]\nmax_attempts = 7\nunit = nginx.service\n",
        )
        .config;
        let web = c.process("web");
        assert_eq!(web.max_attempts, 7); // own section
        assert_eq!(web.restart_delay, Duration::from_millis(500)); // from default
        assert_eq!(web.stop_timeout, Duration::from_secs(10)); // built-in
        assert_eq!(web.unit.as_deref(), Some("nginx.service"));
        let other = c.process("other");
        assert_eq!(other.max_attempts, 5);
        assert_eq!(other.restart_delay, Duration::from_millis(500));
        assert_eq!(other.unit, None);
        assert_eq!(c.process_default.max_attempts, 5);
    }

    #[test]
    fn process_section_before_default_still_overlays_default() {
        let c =
            parse("[process.web]\nmax_attempts = 7\n[process.default]\nstop_timeout = 3\n").config;
        assert_eq!(c.process("web").stop_timeout, Duration::from_secs(3));
        assert_eq!(c.process("web").max_attempts, 7);
    }

    #[test]
    fn all_new_keys_parse() {
        let c = parse(
            "[database]\nport = 3307\nsocket = /run/mysqld/mysqld.sock\nconnect_timeout = 2.5\n\
             [monitor]\nbinlog = OFF\nserver_id = 4294967295\nmax_parallel_restarts = 1024\n\
             state_dir = /tmp/st\nsystemctl = /usr/local/bin/fake-systemctl\nhistory_table = hist$1\n\
             host = Web01.example\nhosts_table = FLEET\n\
             [logging]\nlog_file = /tmp/m.log\nlevel = WARNING\nlog_files_to_keep = 0\n\
             [process.w]\nrestart_strategy = Process\nstart_command = /bin/w --name \"%s x\"\n\
             stop_timeout = 0\nrestart_delay = 0\ncommand_timeout = 0.25\n",
        )
        .config;
        assert_eq!(c.database.port, 3307);
        assert_eq!(
            c.database.socket,
            Some(PathBuf::from("/run/mysqld/mysqld.sock"))
        );
        assert_eq!(c.database.connect_timeout, Duration::from_millis(2500));
        assert_eq!(c.monitor.binlog, BinlogMode::Off);
        assert_eq!(c.monitor.server_id, Some(u32::MAX));
        assert_eq!(c.monitor.max_parallel_restarts, 1024);
        assert_eq!(c.monitor.state_dir, PathBuf::from("/tmp/st"));
        assert_eq!(c.monitor.systemctl, "/usr/local/bin/fake-systemctl");
        assert_eq!(c.monitor.history_table, "hist$1");
        assert_eq!(c.monitor.host, "Web01.example");
        assert_eq!(c.monitor.hosts_table, "FLEET");
        assert_eq!(c.logging.log_file, PathBuf::from("/tmp/m.log"));
        assert_eq!(c.logging.level, LogLevel::Warn);
        assert_eq!(c.logging.level.as_filter(), "warn");
        assert_eq!(c.logging.log_files_to_keep, 0);
        let w = c.process("w");
        assert_eq!(w.restart_strategy, Strategy::Process);
        assert_eq!(w.restart_strategy.to_string(), "process");
        assert_eq!(
            w.start_command.as_ref().map(|t| t.render("w")),
            Some(vec![
                "/bin/w".to_string(),
                "--name".to_string(),
                "w x".to_string()
            ])
        );
        assert_eq!(w.stop_timeout, Duration::ZERO);
        assert_eq!(w.restart_delay, Duration::ZERO);
        assert_eq!(w.command_timeout, Duration::from_millis(250));
    }

    #[test]
    fn trailing_backslash_is_kept_not_a_continuation() {
        let c = parse("[database]\npassword = ab\\\nuser = u\n").config;
        assert_eq!(
            c.database.password.as_ref().map(Secret::expose),
            Some("ab\\")
        );
        assert_eq!(c.database.user, "u");
    }

    #[test]
    fn values_are_kept_verbatim() {
        let c = parse(
            "[database]\npassword = \"p;a#s's\\w=:rd\"\n\
             [process.x]\nhealth_check_command = sh-free 'a b' \"c\\\"d\" e\\ f\n",
        )
        .config;
        assert_eq!(
            c.database.password.as_ref().map(Secret::expose),
            Some("\"p;a#s's\\w=:rd\"")
        );
        assert_eq!(
            c.process("x").health_check_command.render("x"),
            ["sh-free", "a b", "c\"d", "e f"]
        );
        assert_eq!(
            c.process("x").health_check_command.source(),
            "sh-free 'a b' \"c\\\"d\" e\\ f"
        );
    }

    #[test]
    fn empty_optional_values_mean_none() {
        let c = parse(
            "[database]\npassword =\nsocket = \n[monitor]\nserver_id =\n\
             [process.default]\npre_restart_command = apachectl configtest\nstart_command = /bin/x\nunit = u\n\
             [process.a]\npre_restart_command =\nstart_command =\nunit =\n",
        )
        .config;
        assert_eq!(c.database.password, None);
        assert_eq!(c.database.socket, None);
        assert_eq!(c.monitor.server_id, None);
        assert!(c.process_default.pre_restart_command.is_some());
        assert_eq!(c.process("a").pre_restart_command, None);
        assert_eq!(c.process("a").start_command, None);
        assert_eq!(c.process("a").unit, None);
    }

    #[test]
    fn comments_with_semicolon_and_hash() {
        let l = parse(
            "; top comment\n# another\n[monitor]\n  ; indented comment\n\t# tabbed\n\
             check_interval = 7\n#check_interval = 9\n;check_interval = 11\n",
        );
        assert!(l.warnings.is_empty(), "{:?}", l.warnings);
        assert_eq!(l.config.monitor.check_interval, Duration::from_secs(7));
    }

    #[test]
    fn crlf_bom_and_indentation_are_accepted() {
        let l = parse("\u{feff}[monitor]\r\n  check_interval = 8\r\n\tbinlog=on\r\n");
        assert!(l.warnings.is_empty(), "{:?}", l.warnings);
        assert_eq!(l.config.monitor.check_interval, Duration::from_secs(8));
        assert_eq!(l.config.monitor.binlog, BinlogMode::On);
    }

    fn assert_invalid(
        text: &str,
        line: usize,
        section: &str,
        key: &str,
        value: &str,
        allowed: &str,
    ) {
        let err = Config::parse(text, Path::new(FILE)).unwrap_err();
        let m = err.to_string();
        let ConfigError::Invalid(v) = &err else {
            panic!("not an invalid-value error: {m}");
        };
        assert_eq!(v.line, Some(line), "{m}");
        assert_eq!(v.section, section, "{m}");
        assert_eq!(v.key, key, "{m}");
        assert_eq!(v.value, value, "{m}");
        let prefix = format!("{FILE}:{line}: [{section}] {key} = {value:?}: ");
        assert!(m.starts_with(&prefix), "{m}\nexpected prefix {prefix}");
        assert!(m.contains(allowed), "{m}\nexpected to contain {allowed}");
        assert!(!m.contains('\n'), "{m}");
    }

    #[test]
    fn invalid_values_name_file_line_section_key_value_and_allowed() {
        let cases: &[(&str, &str, &str, &str)] = &[
            ("monitor", "check_interval", "abc", "seconds greater than 0"),
            ("monitor", "check_interval", "0", "seconds greater than 0"),
            ("monitor", "check_interval", "-5", "seconds greater than 0"),
            (
                "monitor",
                "check_interval",
                "0.0000000001",
                "seconds greater than 0",
            ),
            ("monitor", "check_interval", "1e3", "seconds greater than 0"),
            ("monitor", "check_interval", "inf", "seconds greater than 0"),
            ("monitor", "check_interval", "2592001", "at most 2592000"),
            (
                "monitor",
                "check_interval",
                "1.2.3",
                "seconds greater than 0",
            ),
            (
                "monitor",
                "circuit_reset_time",
                "0",
                "seconds greater than 0",
            ),
            (
                "monitor",
                "max_restart_failures",
                "0",
                "whole number from 1",
            ),
            (
                "monitor",
                "max_restart_failures",
                "2.5",
                "whole number from 1",
            ),
            ("monitor", "binlog", "yes", "on, off or auto"),
            (
                "monitor",
                "server_id",
                "0",
                "whole number from 1 to 4294967295",
            ),
            (
                "monitor",
                "server_id",
                "4294967296",
                "whole number from 1 to 4294967295",
            ),
            (
                "monitor",
                "max_parallel_restarts",
                "0",
                "whole number from 1 to 1024",
            ),
            (
                "monitor",
                "max_parallel_restarts",
                "1025",
                "whole number from 1 to 1024",
            ),
            (
                "monitor",
                "history_table",
                "hist; DROP TABLE x",
                "A-Z a-z 0-9 _ $",
            ),
            ("monitor", "history_table", "`h`", "A-Z a-z 0-9 _ $"),
            ("monitor", "systemctl", "sudo systemctl", "program name"),
            ("monitor", "host", "web 01", "255 characters without spaces"),
            ("monitor", "hosts_table", "my-hosts", "A-Z a-z 0-9 _ $"),
            ("database", "port", "0", "whole number from 1 to 65535"),
            ("database", "port", "65536", "whole number from 1 to 65535"),
            ("database", "port", "-1", "whole number from 1 to 65535"),
            ("database", "database", "v-process", "A-Z a-z 0-9 _ $"),
            (
                "database",
                "database",
                &"d".repeat(65),
                "1 to 64 characters",
            ),
            ("database", "connect_timeout", "0", "seconds greater than 0"),
            ("database", "host", "a b", "host name"),
            ("logging", "max_log_size", "0", "whole number from 1"),
            (
                "logging",
                "log_files_to_keep",
                "1001",
                "whole number from 0 to 1000",
            ),
            (
                "logging",
                "level",
                "verbose",
                "error, warn (or warning), info or debug",
            ),
            (
                "process.default",
                "restart_strategy",
                "systemd",
                "service, process or auto",
            ),
            (
                "process.default",
                "health_check_timeout",
                "-1",
                "seconds from 0",
            ),
            (
                "process.default",
                "health_check_settle",
                "x",
                "seconds from 0",
            ),
            ("monitor", "only_configured", "maybe", "yes or no"),
            (
                "process.default",
                "user",
                "no-such-user-xyz",
                "user of this host",
            ),
            (
                "process.default",
                "group",
                "no-such-group-xyz",
                "group of this host",
            ),
            (
                "process.default",
                "command_timeout",
                "0",
                "seconds greater than 0",
            ),
            ("process.default", "stop_timeout", "-1", "seconds from 0 to"),
            ("process.default", "restart_delay", "x", "seconds from 0 to"),
            (
                "process.default",
                "max_attempts",
                "0",
                "whole number from 1 to 100",
            ),
            (
                "process.default",
                "max_attempts",
                "101",
                "whole number from 1 to 100",
            ),
            (
                "process.default",
                "health_check_command",
                "",
                "empty command",
            ),
            (
                "process.default",
                "health_check_command",
                "pgrep 'x",
                "unclosed single quote",
            ),
            (
                "process.apache2",
                "pre_restart_command",
                "apachectl \"configtest",
                "unclosed double quote",
            ),
            (
                "process.apache2",
                "start_command",
                "run \\",
                "trailing backslash",
            ),
            ("process.apache2", "unit", "-x.service", "systemd unit name"),
            ("process.apache2", "unit", "a b", "systemd unit name"),
            ("process.apache2", "unit", "a/b", "systemd unit name"),
        ];
        for (section, key, value, allowed) in cases {
            let text = format!("; comment\n[{section}]\n\n{key} = {value}\n");
            assert_invalid(&text, 4, section, key, value, allowed);
        }
    }

    #[test]
    fn invalid_value_message_matches_the_documented_shape() {
        assert_eq!(
            parse_err("[monitor]\ncheck_interval = abc\n"),
            format!(
                "{FILE}:2: [monitor] check_interval = \"abc\": expected a number of seconds greater than 0 \
                 and at most 2592000 (30 days), e.g. 5 or 0.5"
            )
        );
    }

    #[test]
    fn invalid_value_in_a_process_section_names_that_section() {
        let text = "[process.default]\nmax_attempts = 3\n[process.web]\nrestart_delay = 1\nmax_attempts = zero\n";
        assert_invalid(
            text,
            5,
            "process.web",
            "max_attempts",
            "zero",
            "whole number from 1 to 100",
        );
    }

    #[test]
    fn bad_process_section_names_are_errors() {
        for name in ["a b", "-rf", "x;y", "", "$(id)", "café"] {
            let text = format!("[monitor]\n\n[process.{name}]\nmax_attempts = 1\n");
            let err = Config::parse(&text, Path::new(FILE)).unwrap_err();
            let m = err.to_string();
            assert!(
                matches!(err, ConfigError::InvalidSection { line: 3, .. }),
                "{m}"
            );
            assert!(
                m.starts_with(&format!("{FILE}:3: [process.{}]", name.trim())),
                "{m}"
            );
            assert!(m.contains("process name"), "{m}");
        }
    }

    #[test]
    fn unknown_keys_and_sections_are_warnings() {
        let l = parse(
            "[monitor]\nchek_interval = 5\nfoo = 1\n[databse]\nhost = x\n[process]\nx = 1\n\
             [process.w]\nhealth_check = pgrep w\n",
        );
        assert_eq!(
            l.warnings,
            vec![
                format!("{FILE}: [monitor] unknown key 'chek_interval' ignored (line 2); did you mean 'check_interval'?"),
                format!("{FILE}: [monitor] unknown key 'foo' ignored (line 3)"),
                format!("{FILE}: unknown section [databse] ignored (line 4); did you mean [database]?"),
                format!("{FILE}: unknown section [process] ignored (line 6); did you mean [process.NAME] or [process.default]?"),
                format!("{FILE}: [process.w] unknown key 'health_check' ignored (line 9); did you mean 'health_check_command'?"),
            ]
        );
        // The typo did not change anything.
        assert_eq!(l.config.monitor.check_interval, Duration::from_secs(300));
        assert_eq!(l.config.database.host, "localhost");
    }

    #[test]
    fn keys_are_case_sensitive() {
        let l = parse("[monitor]\nCheck_Interval = 5\n");
        assert_eq!(l.warnings.len(), 1, "{:?}", l.warnings);
        assert!(l.warnings[0].contains("'Check_Interval'"));
    }

    #[test]
    fn duplicates_warn_and_last_wins() {
        let l = parse("[monitor]\ncheck_interval = 5\n[logging]\n[monitor]\ncheck_interval = 6\n");
        assert_eq!(l.config.monitor.check_interval, Duration::from_secs(6));
        assert_eq!(
            l.warnings,
            vec![format!(
                "{FILE}: [monitor] key 'check_interval' is set more than once (lines 2, 5); the last one is used"
            )]
        );
        // The line reported for a bad duplicate is the one that is used.
        assert_invalid(
            "[monitor]\ncheck_interval = 5\ncheck_interval = x\n",
            3,
            "monitor",
            "check_interval",
            "x",
            "seconds",
        );
    }

    #[test]
    fn keys_outside_sections_warn() {
        let l = parse("check_interval = 5\n[monitor]\n");
        assert_eq!(
            l.warnings,
            vec![format!(
                "{FILE}: key 'check_interval' is outside any [section] and ignored (line 1)"
            )]
        );
    }

    #[test]
    fn syntax_errors_have_lines() {
        for (text, line, needle) in [
            (
                "[monitor]\ncheck_interval 5\n",
                2,
                "expected \"key = value\"",
            ),
            ("[monitor\ncheck_interval = 5\n", 1, "no closing ']'"),
            ("[]\n", 1, "not valid"),
            ("[monitor]\n\n= 5\n", 3, "missing key name"),
            (
                "[monitor]\ncheck_interval = 5 ; comment\n",
                2,
                "line of their own",
            ),
        ] {
            let err = Config::parse(text, Path::new(FILE)).unwrap_err();
            let m = err.to_string();
            assert!(m.starts_with(&format!("{FILE}:{line}: ")), "{m}");
            assert!(m.contains(needle), "{m}");
        }
    }

    #[test]
    fn names_with_control_characters_are_escaped_in_messages() {
        let l =
            parse("[monitor]\nk\u{1b}[31mey = 1\n[a\u{0}b]\n[logging]\nx\u{c}y = 1\nx\u{c}y = 2\n");
        assert_eq!(l.warnings.len(), 4, "{:?}", l.warnings);
        for w in &l.warnings {
            assert!(!w.chars().any(char::is_control), "{w:?}");
        }
        assert!(
            l.warnings.iter().any(|w| w.contains(r"'k\u{1b}[31mey'")),
            "{:?}",
            l.warnings
        );
        assert!(
            l.warnings.iter().any(|w| w.contains(r"[a\0b]")),
            "{:?}",
            l.warnings
        );
        let m = parse_err("[process.a\u{7}b]\nmax_attempts = 1\n");
        assert!(
            m.starts_with(&format!("{FILE}:1: [process.a\\u{{7}}b]")),
            "{m}"
        );
    }

    #[test]
    fn stray_carriage_return_and_backslash_keys_are_syntax_errors() {
        // rust-ini would read `password = y` as a second line here.
        let m = parse_err("[monitor]\ncheck_interval = 5\rstate_dir = /x\n");
        assert!(
            m.starts_with(&format!("{FILE}:2: stray carriage return")),
            "{m}"
        );
        // CRLF files are fine.
        assert_eq!(
            parse("[monitor]\r\ncheck_interval = 5\r\n")
                .config
                .monitor
                .check_interval,
            Duration::from_secs(5)
        );
        // rust-ini would take `\:` as part of the key and run on into the next line.
        let m = parse_err("[monitor]\nchec\\:k\n[logging]\nlevel = debug\n");
        assert!(
            m.starts_with(&format!("{FILE}:2: key name")) && m.contains("backslash"),
            "{m}"
        );
    }

    #[test]
    fn syntax_errors_never_show_a_line_that_may_hold_the_password() {
        for text in [
            "[database]\npassword hunter2\n",
            "[database]\n= hunter2\n",
            "[database]\nhunter2\n",
            "[monitor]\npassword hunter2\n",
            "[database]\npassword = x\rhunter2\n",
        ] {
            let m = parse_err(text);
            assert!(!m.contains("hunter2"), "{text:?}: {m}");
            assert!(m.contains("not shown"), "{text:?}: {m}");
        }
        // Elsewhere the line is quoted, so the operator sees what is wrong.
        assert!(parse_err("[monitor]\ncheck_interval 5\n").contains("\"check_interval 5\""));
    }

    #[test]
    fn secret_is_never_printed() {
        let c = parse("[database]\npassword = hunter2\n").config;
        let s = c.database.password.clone().unwrap();
        assert_eq!(s.expose(), "hunter2");
        assert_eq!(format!("{s}"), "***");
        assert_eq!(format!("{s:?}"), "***");
        assert!(!format!("{c:?}").contains("hunter2"));
        assert!(!format!("{c:#?}").contains("hunter2"));
        assert!(!format!("{:?}", c.database).contains("hunter2"));
    }

    /// `default_path_from` with `default` and `legacy` under `dir`, made
    /// (as files) when asked.
    fn lookup(
        dir: &Path,
        cli: Option<&str>,
        env: Option<&str>,
        make_default: bool,
        make_legacy: bool,
    ) -> ConfigFile {
        let default = dir.join("etc/config.ini");
        let legacy = dir.join("opt/config.ini");
        for (path, make) in [(&default, make_default), (&legacy, make_legacy)] {
            let _ = std::fs::remove_file(path);
            if make {
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                std::fs::write(path, "").unwrap();
            }
        }
        default_path_from(cli.map(Path::new), env.map(Into::into), &default, &legacy)
    }

    #[test]
    fn lookup_order_flag_then_env_then_etc_then_opt() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let file = |p: &str, chosen_by| ConfigFile {
            path: PathBuf::from(p),
            chosen_by,
        };
        let etc = d.join("etc/config.ini").to_str().unwrap().to_string();
        let opt = d.join("opt/config.ini").to_str().unwrap().to_string();
        // -c wins over everything, whether or not the file exists.
        for (e, o) in [(true, true), (false, false)] {
            assert_eq!(
                lookup(d, Some("/x/c.ini"), Some("/env.ini"), e, o),
                file("/x/c.ini", ChosenBy::Flag)
            );
        }
        // Then the environment, even when it names a missing file.
        assert_eq!(
            lookup(d, None, Some("/env.ini"), true, true),
            file("/env.ini", ChosenBy::Env)
        );
        // An empty variable counts as unset.
        assert_eq!(
            lookup(d, None, Some(""), true, true),
            file(&etc, ChosenBy::Default)
        );
        // /etc when it exists, also when the old file is still there.
        assert_eq!(
            lookup(d, None, None, true, true),
            file(&etc, ChosenBy::Default)
        );
        assert_eq!(
            lookup(d, None, None, true, false),
            file(&etc, ChosenBy::Default)
        );
        // /opt only when /etc has nothing.
        assert_eq!(
            lookup(d, None, None, false, true),
            file(&opt, ChosenBy::Legacy)
        );
        // Neither: /etc, so the error names where to create it.
        assert_eq!(
            lookup(d, None, None, false, false),
            file(&etc, ChosenBy::Default)
        );
    }

    #[test]
    fn lookup_reads_a_dangling_link_at_etc_instead_of_falling_back() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        lookup(d, None, None, false, true);
        std::fs::create_dir_all(d.join("etc")).unwrap();
        std::os::unix::fs::symlink(d.join("gone.ini"), d.join("etc/config.ini")).unwrap();
        let chosen = default_path_from(
            None,
            None,
            &d.join("etc/config.ini"),
            &d.join("opt/config.ini"),
        );
        assert_eq!(chosen.chosen_by, ChosenBy::Default);
        assert_eq!(chosen.path, d.join("etc/config.ini"));
    }

    #[test]
    fn lookup_defaults_are_etc_then_the_bash_services_opt() {
        assert_eq!(DEFAULT_CONFIG_PATH, "/etc/monitor_service/config.ini");
        assert_eq!(LEGACY_CONFIG_PATH, "/opt/monitor_service/config.ini");
        assert_eq!(
            Config::default_path(Some(Path::new("/x/c.ini"))),
            ConfigFile {
                path: PathBuf::from("/x/c.ini"),
                chosen_by: ChosenBy::Flag
            }
        );
        assert!(ChosenBy::Legacy
            .describe()
            .contains("/etc/monitor_service/config.ini does not exist"));
    }

    #[test]
    fn load_reports_missing_file_with_a_hint() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("nope.ini");
        let err = Config::load(&p).unwrap_err();
        let m = err.to_string();
        assert!(matches!(err, ConfigError::Io { .. }));
        assert!(m.starts_with(&p.display().to_string()), "{m}");
        assert!(m.contains("-c PATH") && m.contains(CONFIG_ENV), "{m}");
    }

    #[test]
    fn load_warns_about_a_readable_password_file() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("config.ini");
        std::fs::write(&p, "[database]\npassword = s3cret\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let l = Config::load(&p).unwrap();
        assert_eq!(l.warnings.len(), 1, "{:?}", l.warnings);
        let w = &l.warnings[0];
        assert!(
            w.contains(&p.display().to_string()) && w.contains("0644") && w.contains("chmod 600"),
            "{w}"
        );
        assert!(!w.contains("s3cret"));

        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(Config::load(&p).unwrap().warnings.is_empty());

        // No password, no warning.
        std::fs::write(&p, "[database]\nuser = m\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(Config::load(&p).unwrap().warnings.is_empty());
    }

    #[test]
    fn example_config_documents_every_key_and_loads_cleanly() {
        let path = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/config.ini"));
        let text = std::fs::read_to_string(path).unwrap();
        let l = Config::parse(&text, path).unwrap();
        assert!(l.warnings.is_empty(), "{:?}", l.warnings);
        let c = &l.config;
        assert_eq!(c.database.user, "monitor");
        assert_eq!(
            c.database.password.as_ref().map(Secret::expose),
            Some("change-me")
        );
        assert_eq!(c.database.host, "localhost");
        assert_eq!(c.database.port, 3306);
        assert_eq!(c.database.database, "v_process_monitor");
        assert_eq!(c.database.socket, None);
        assert_eq!(c.monitor, MonitorConfig::default());
        assert_eq!(c.logging, LoggingConfig::default());
        assert_eq!(c.process_default, ProcessConfig::default());

        let a = c.process("apache2");
        assert_eq!(a.restart_strategy, Strategy::Service);
        assert_eq!(a.unit.as_deref(), Some("apache2.service"));
        assert_eq!(a.pre_restart_command, Some(cmd("apachectl configtest")));
        assert_eq!(
            a.health_check_command,
            cmd("systemctl is-active --quiet apache2")
        );

        let w = c.process("myworker");
        assert_eq!(w.restart_strategy, Strategy::Process);
        assert_eq!(
            w.start_command,
            Some(cmd(
                "/opt/myworker/bin/myworker --config /etc/myworker.conf"
            ))
        );
        assert_eq!(w.health_check_command, cmd("pgrep -x myworker"));
        assert_eq!(w.health_check_timeout, Duration::from_secs(10));
        assert_eq!(w.stop_timeout, Duration::from_secs(15));
        assert_eq!(w.max_attempts, 3);
        assert_eq!(c.processes.len(), 2);

        // Every key of every section is mentioned, with its default.
        for key in DATABASE_KEYS
            .iter()
            .chain(MONITOR_KEYS)
            .chain(LOGGING_KEYS)
            .chain(METRICS_KEYS)
            .chain(ALERTS_KEYS)
            .chain(BINLOG_KEYS)
            .chain(PROCESS_KEYS)
        {
            assert!(
                text.lines().any(|l| {
                    let l = l.trim_start_matches([';', ' ']);
                    l.starts_with(&format!("{key} =")) || l.starts_with(&format!("{key}="))
                }),
                "config.ini does not document {key}"
            );
        }
        assert_eq!(
            text.matches("Default:").count(),
            45,
            "one 'Default:' per key"
        );

        // The file loads from disk the same way.
        let from_disk = Config::load(path).unwrap();
        assert_eq!(from_disk.config, l.config);
    }

    #[test]
    fn edit_distance_and_suggestions() {
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(
            suggest("chek_interval", MONITOR_KEYS),
            Some("check_interval")
        );
        assert_eq!(suggest("zzz", MONITOR_KEYS), None);
    }

    #[test]
    fn metrics_alerts_and_control_keys_parse() {
        let c = parse("").config;
        assert_eq!(c.metrics, MetricsConfig::default());
        assert_eq!(c.metrics.listen, None);
        assert_eq!(c.alerts.command, None);
        assert_eq!(c.alerts.after, Duration::from_secs(60));
        assert_eq!(
            c.monitor.control_socket,
            PathBuf::from("/run/monitor_service/control.sock")
        );
        let l = parse(
            "[metrics]\nlisten = 127.0.0.1:9870\ntextfile = /var/lib/node_exporter/ms.prom\n\
             [alerts]\ncommand = /usr/local/bin/page --host %s\nafter = 2.5\n\
             [monitor]\ncontrol_socket = /tmp/x/c.sock\n",
        );
        assert!(l.warnings.is_empty(), "{:?}", l.warnings);
        let c = l.config;
        assert_eq!(c.metrics.listen, Some("127.0.0.1:9870".parse().unwrap()));
        assert_eq!(
            c.metrics.textfile,
            Some(PathBuf::from("/var/lib/node_exporter/ms.prom"))
        );
        assert_eq!(c.alerts.command, Some(cmd("/usr/local/bin/page --host %s")));
        assert_eq!(c.alerts.after, Duration::from_millis(2500));
        assert_eq!(c.monitor.control_socket, PathBuf::from("/tmp/x/c.sock"));
        let port_only = parse("[metrics]\nlisten = 9100\n").config;
        assert_eq!(
            port_only.metrics.listen,
            Some("127.0.0.1:9100".parse().unwrap())
        );
        let v6 = parse("[metrics]\nlisten = [::1]:9100\n").config;
        assert_eq!(v6.metrics.listen, Some("[::1]:9100".parse().unwrap()));
    }

    #[test]
    fn bad_metrics_alerts_and_control_values_name_the_key() {
        for (text, key, allowed) in [
            (
                "[metrics]\nlisten = localhost:9870\n",
                "[metrics] listen",
                "ADDRESS:PORT",
            ),
            (
                "[metrics]\nlisten = 127.0.0.1:0\n",
                "[metrics] listen",
                "ADDRESS:PORT",
            ),
            (
                "[metrics]\nlisten = 70000\n",
                "[metrics] listen",
                "ADDRESS:PORT",
            ),
            (
                "[metrics]\ntextfile = /tmp/ms.txt\n",
                "[metrics] textfile",
                ".prom",
            ),
            (
                "[metrics]\ntextfile = ms.prom\n",
                "[metrics] textfile",
                "absolute",
            ),
            (
                "[alerts]\ncommand = \"unclosed\n",
                "[alerts] command",
                "command",
            ),
            ("[alerts]\nafter = 0\n", "[alerts] after", "greater than 0"),
            (
                "[monitor]\ncontrol_socket = relative.sock\n",
                "[monitor] control_socket",
                "107 bytes",
            ),
        ] {
            let m = parse_err(text);
            assert!(m.starts_with("/etc/x/config.ini:2: "), "{m}");
            assert!(m.contains(key) && m.contains(allowed), "{text}: {m}");
        }
        let long = format!("[monitor]\ncontrol_socket = /{}\n", "a".repeat(107));
        assert!(parse_err(&long).contains("107 bytes"));
        let w = parse("[metrics]\nlisen = 1\n[alerts]\ncomand = x\n").warnings;
        assert!(w[0].contains("did you mean 'listen'"), "{w:?}");
        assert!(w[1].contains("did you mean 'command'"), "{w:?}");
        assert!(parse("[metric]\n").warnings[0].contains("did you mean [metrics]"));
    }

    #[test]
    fn ssl_keys_default_to_preferred_and_check_their_files_at_load() {
        let c = parse("[database]\nhost = db\n").config;
        assert_eq!(c.database.tls, TlsConfig::default());
        assert_eq!(c.database.tls.mode, SslMode::Preferred);
        assert!(c.binlog_server.is_none());
        assert_eq!(c.binlog_database(), &c.database);

        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(
            &ca,
            "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let c = parse(&format!(
            "[database]\nssl_mode = VERIFY_IDENTITY\nssl_ca = {}\n",
            ca.display()
        ))
        .config;
        assert_eq!(c.database.tls.mode, SslMode::VerifyIdentity);
        assert_eq!(c.database.tls.ca.as_deref(), Some(ca.as_path()));

        let e = parse_err("[database]\nssl_mode = on\n");
        assert!(e.contains("[database] ssl_mode = \"on\""), "{e}");
        assert!(
            e.contains("disabled, preferred, required, verify_ca, verify_identity"),
            "{e}"
        );
        let e = parse_err("[database]\nssl_ca = /nonexistent/ca.pem\n");
        assert!(e.contains(":2: [database] ssl_ca"), "{e}");
        assert!(e.contains("cannot read /nonexistent/ca.pem"), "{e}");
        let e = parse_err(&format!("[database]\nssl_key = {}\n", ca.display()));
        assert!(e.contains("no PEM \"PRIVATE KEY\" block"), "{e}");
        let e = parse_err(&format!("[database]\nssl_cert = {}\n", ca.display()));
        assert!(e.contains("ssl_cert needs ssl_key too"), "{e}");
    }

    #[test]
    fn binlog_section_defaults_each_key_to_database() {
        let c = parse(
            "[database]\nhost = primary\nuser = mon\npassword = pw\nsocket = /run/db.sock\nssl_mode = required\n\
             [binlog]\nhost = replica1\nport = 3307\n",
        )
        .config;
        let b = c.binlog_database();
        assert_eq!((b.host.as_str(), b.port), ("replica1", 3307));
        assert_eq!(b.user, "mon");
        assert_eq!(b.password.as_ref().map(Secret::expose), Some("pw"));
        assert_eq!(b.tls.mode, SslMode::Required);
        assert_eq!(b.socket, None, "a host of its own means TCP");
        assert_eq!(b.database, c.database.database);
        let l = parse("[database]\nsocket = /run/db.sock\nssl_mode = verify_ca\n");
        assert!(
            l.warnings[0].contains("[database] ssl_mode = verify_ca has no effect"),
            "{:?}",
            l.warnings
        );
        let c = parse(
            "[database]\nsocket = /run/db.sock\n[binlog]\nuser = repl\nssl_mode = disabled\n",
        )
        .config;
        let b = c.binlog_database();
        assert_eq!(b.socket.as_deref(), Some(Path::new("/run/db.sock")));
        assert_eq!((b.user.as_str(), b.tls.mode), ("repl", SslMode::Disabled));
        let l = parse("[binlog]\nhots = x\n");
        assert!(
            l.warnings
                .iter()
                .any(|w| w.contains("[binlog] unknown key 'hots'")),
            "{:?}",
            l.warnings
        );
        let e = parse_err("[binlog]\nport = 0\n");
        assert!(e.contains("[binlog] port"), "{e}");
    }
}
