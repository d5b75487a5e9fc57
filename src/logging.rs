//! Log output: the operators' line format (`YYYY-MM-DD HH:MM:SS [LEVEL] message key=value`), the size-rotated log file and stderr.

use std::fmt::{self, Write as _};
use std::fs::OpenOptions;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use file_rotate::compression::Compression;
use file_rotate::suffix::AppendCount;
use file_rotate::{ContentLimit, FileRotate};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::field::{MakeVisitor, VisitFmt, VisitOutput};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::{reload, Registry};

/// Where and how much to log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogSettings {
    /// Log file; None logs to stderr only (if enabled).
    pub file: Option<PathBuf>,
    /// Rotate the file once it grows past this many KiB (0 is treated as 1).
    pub max_size_kb: u64,
    /// Old files kept (`.1` newest .. `.N` oldest).
    pub files_to_keep: usize,
    /// "error", "warn" (or "warning"), "info", "debug" (or "trace").
    pub level: String,
    /// Also write every line to stderr (for the journal).
    pub stderr: bool,
}

impl Default for LogSettings {
    fn default() -> Self {
        Self {
            file: Some(PathBuf::from("/var/log/monitor_service.log")),
            max_size_kb: 5120,
            files_to_keep: 5,
            level: "info".to_string(),
            stderr: true,
        }
    }
}

/// Errors setting up logging.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("log level {level:?} is invalid: expected error, warn, info or debug")]
    InvalidLevel { level: String },
    #[error("log filter from RUST_LOG is invalid: {message}")]
    InvalidFilter { message: String },
    #[error("cannot create log directory {path:?}: {source}")]
    CreateDir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot open log file {path:?}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("global logger is already installed: {message}")]
    AlreadyInstalled { message: String },
}

/// Keeps the background log writers alive; dropping it flushes them.
#[must_use = "dropping the guard stops and flushes the log writer"]
pub struct LogGuard {
    _guards: Vec<WorkerGuard>,
    handle: LogHandle,
}

impl LogGuard {
    /// A handle to reopen the file and change the level.
    pub fn handle(&self) -> LogHandle {
        self.handle.clone()
    }
}

impl fmt::Debug for LogGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LogGuard")
            .field("writers", &self._guards.len())
            .finish()
    }
}

/// The level word operators grep for.
pub fn level_word(level: &Level) -> &'static str {
    match *level {
        Level::ERROR => "ERROR",
        Level::WARN => "WARNING",
        Level::INFO => "INFO",
        // TRACE maps to DEBUG: the original only knew four words.
        _ => "DEBUG",
    }
}

/// Quotes a value (Rust `{:?}` style) when it would not survive as one `key=value` word.
fn push_value(out: &mut String, value: &str) {
    let plain = !value.is_empty()
        && !value
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '"' || c == '=');
    if plain {
        out.push_str(value);
    } else {
        let _ = write!(out, "{value:?}");
    }
}

/// Messages stay on one line: line breaks become the two characters `\n`.
fn push_message(out: &mut String, message: &str) {
    for c in message.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
}

/// Collects an event's message and its other fields as `key=value` words.
#[derive(Default)]
struct FieldCollector {
    message: String,
    fields: String,
}

impl FieldCollector {
    fn push_field(&mut self, field: &Field, value: &str) {
        let name = field.name();
        if name == "message" {
            push_message(&mut self.message, value);
            return;
        }
        // Metadata added by the `log` bridge is noise in this format.
        if name.starts_with("log.") {
            return;
        }
        if !self.fields.is_empty() {
            self.fields.push(' ');
        }
        self.fields.push_str(name);
        self.fields.push('=');
        push_value(&mut self.fields, value);
    }
}

impl Visit for FieldCollector {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.push_field(field, value);
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let text = format!("{value:?}");
        self.push_field(field, &text);
    }
}

/// Formats span fields the same way as event fields (`key=value`, strings unquoted).
#[derive(Debug, Default, Clone, Copy)]
pub struct LegacyFields;

/// Visitor behind [`LegacyFields`].
pub struct LegacyFieldsVisitor<'a> {
    writer: Writer<'a>,
    collector: FieldCollector,
}

impl<'a> MakeVisitor<Writer<'a>> for LegacyFields {
    type Visitor = LegacyFieldsVisitor<'a>;

    fn make_visitor(&self, target: Writer<'a>) -> Self::Visitor {
        LegacyFieldsVisitor {
            writer: target,
            collector: FieldCollector::default(),
        }
    }
}

impl Visit for LegacyFieldsVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.collector.record_str(field, value);
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.collector.record_debug(field, value);
    }
}

impl VisitOutput<fmt::Result> for LegacyFieldsVisitor<'_> {
    fn finish(mut self) -> fmt::Result {
        let FieldCollector { message, fields } = self.collector;
        // A span's "message" field (rare) is kept as an ordinary field.
        let mut out = String::new();
        if !message.is_empty() {
            out.push_str("message=");
            push_value(&mut out, &message);
        }
        if !fields.is_empty() {
            if !out.is_empty() {
                out.push(' ');
            }
            out.push_str(&fields);
        }
        self.writer.write_str(&out)
    }
}

impl VisitFmt for LegacyFieldsVisitor<'_> {
    fn writer(&mut self) -> &mut dyn fmt::Write {
        &mut self.writer
    }
}

/// Event formatter: `YYYY-MM-DD HH:MM:SS [LEVEL] message key=value ...` in local time,
/// event fields first, then the fields of the enclosing spans (outermost first).
#[derive(Debug, Default, Clone, Copy)]
pub struct LegacyFormat;

impl<S, N> FormatEvent<S, N> for LegacyFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut collector = FieldCollector::default();
        event.record(&mut collector);

        let mut line = String::with_capacity(128);
        let _ = write!(
            line,
            "{} [{}] ",
            chrono::Local::now().format("%Y-%m-%d %H:%M:%S"),
            level_word(event.metadata().level())
        );
        line.push_str(&collector.message);
        if !collector.fields.is_empty() {
            line.push(' ');
            line.push_str(&collector.fields);
        }
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                let ext = span.extensions();
                if let Some(fields) = ext.get::<FormattedFields<N>>() {
                    if !fields.is_empty() {
                        line.push(' ');
                        line.push_str(fields);
                    }
                }
            }
        }
        line.push('\n');
        writer.write_str(&line)
    }
}

fn parse_level(level: &str) -> Result<&'static str, LogError> {
    match level.trim().to_ascii_lowercase().as_str() {
        "error" => Ok("error"),
        "warn" | "warning" => Ok("warn"),
        "info" => Ok("info"),
        "debug" => Ok("debug"),
        "trace" => Ok("trace"),
        _ => Err(LogError::InvalidLevel {
            level: level.to_string(),
        }),
    }
}

/// The rotating log file, reopened on demand (SIGHUP, or after it could not be written).
/// A write that fails (disk full, directory gone or unwritable) never stops the daemon: it is
/// said once on stderr, the line is dropped from the file (stderr still has it), and the next
/// write tries to open the file again.
pub struct FileSink {
    path: PathBuf,
    max_bytes: usize,
    files_to_keep: usize,
    file: Mutex<Option<FileRotate<AppendCount>>>,
    failing: AtomicBool,
}

impl FileSink {
    fn new(path: &Path, max_size_kb: u64, files_to_keep: usize) -> FileSink {
        FileSink {
            path: path.to_path_buf(),
            max_bytes: usize::try_from(max_size_kb.max(1).saturating_mul(1024))
                .unwrap_or(usize::MAX),
            files_to_keep,
            file: Mutex::new(None),
            failing: AtomicBool::new(false),
        }
    }

    /// Opens (creating the directory if needed) the rotating file.
    fn open(&self) -> Result<FileRotate<AppendCount>, LogError> {
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| LogError::CreateDir {
                path: dir.to_path_buf(),
                source,
            })?;
        }
        // file-rotate swallows open errors (and panics on some): check up front.
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(|source| LogError::Open {
                path: self.path.clone(),
                source,
            })?;
        Ok(FileRotate::new(
            &self.path,
            AppendCount::new(self.files_to_keep),
            // Rotate after the write that crosses the limit: lines are never split across files.
            ContentLimit::BytesSurpassed(self.max_bytes),
            Compression::None,
            None,
        ))
    }

    /// Closes the file; the next line opens it again (after logrotate moved it, say).
    pub fn reopen(&self) {
        *self.file.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    fn write_line(&self, buf: &[u8]) {
        let mut file = self.file.lock().unwrap_or_else(|p| p.into_inner());
        let result = match file.as_mut() {
            Some(f) => f.write_all(buf).and_then(|()| f.flush()),
            None => match self.open() {
                Ok(mut f) => {
                    let r = f.write_all(buf).and_then(|()| f.flush());
                    *file = Some(f);
                    r
                }
                Err(e) => Err(io::Error::other(e.to_string())),
            },
        };
        match result {
            Ok(()) => {
                if self.failing.swap(false, Ordering::Relaxed) {
                    eprintln!(
                        "monitor_service: log file {} is writable again",
                        self.path.display()
                    );
                }
            }
            Err(e) => {
                *file = None;
                if !self.failing.swap(true, Ordering::Relaxed) {
                    eprintln!(
                        "monitor_service: WARNING cannot write the log file {}: {e}; logging to stderr only until it works again",
                        self.path.display()
                    );
                }
            }
        }
    }
}

/// `io::Write` for the non-blocking worker thread.
struct SinkWriter(Arc<FileSink>);

impl io::Write for SinkWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write_line(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Changes logging while the daemon runs (SIGHUP).
#[derive(Clone)]
pub struct LogHandle {
    sink: Option<Arc<FileSink>>,
    filter: Option<reload::Handle<EnvFilter, Registry>>,
}

impl LogHandle {
    /// Reopens the log file.
    pub fn reopen(&self) {
        if let Some(s) = &self.sink {
            s.reopen();
        }
    }

    /// Sets the level (ignored while `RUST_LOG` decides it).
    pub fn set_level(&self, level: &str) -> Result<(), LogError> {
        let level = parse_level(level)?;
        if let Some(f) = &self.filter {
            if std::env::var("RUST_LOG").map_or(true, |v| v.trim().is_empty()) {
                f.reload(EnvFilter::new(level))
                    .map_err(|e| LogError::InvalidFilter {
                        message: e.to_string(),
                    })?;
            }
        }
        Ok(())
    }
}

fn build_with_filter(
    settings: &LogSettings,
    filter: EnvFilter,
) -> Result<(impl Subscriber + Send + Sync, LogGuard), LogError> {
    let mut guards = Vec::new();
    let (filter, filter_handle) = reload::Layer::new(filter);

    let mut sink = None;
    let file_layer = match &settings.file {
        Some(path) => {
            let s = Arc::new(FileSink::new(
                path,
                settings.max_size_kb,
                settings.files_to_keep,
            ));
            *s.file.lock().unwrap_or_else(|p| p.into_inner()) = Some(s.open()?);
            let (writer, guard) = tracing_appender::non_blocking(SinkWriter(s.clone()));
            guards.push(guard);
            sink = Some(s);
            Some(
                tracing_subscriber::fmt::layer()
                    .with_ansi(false)
                    .fmt_fields(LegacyFields)
                    .event_format(LegacyFormat)
                    .with_writer(writer),
            )
        }
        None => None,
    };

    let stderr_layer = settings.stderr.then(|| {
        tracing_subscriber::fmt::layer()
            .with_ansi(false)
            .fmt_fields(LegacyFields)
            .event_format(LegacyFormat)
            .with_writer(io::stderr)
    });

    let subscriber = tracing_subscriber::registry()
        .with(filter)
        .with(file_layer)
        .with(stderr_layer);
    let handle = LogHandle {
        sink,
        filter: Some(filter_handle),
    };
    Ok((
        subscriber,
        LogGuard {
            _guards: guards,
            handle,
        },
    ))
}

/// Builds the subscriber without installing it (tests use `tracing::subscriber::with_default`).
/// The level comes from `settings.level` only.
pub fn build(
    settings: &LogSettings,
) -> Result<(impl Subscriber + Send + Sync, LogGuard), LogError> {
    let level = parse_level(&settings.level)?;
    build_with_filter(settings, EnvFilter::new(level))
}

/// Builds and installs the global subscriber (also bridging the `log` crate).
/// `RUST_LOG`, when set and non-empty, overrides `settings.level`.
pub fn init(settings: &LogSettings) -> Result<LogGuard, LogError> {
    let level = parse_level(&settings.level)?;
    let filter =
        match std::env::var("RUST_LOG") {
            Ok(spec) if !spec.trim().is_empty() => EnvFilter::builder()
                .parse(spec.trim())
                .map_err(|e| LogError::InvalidFilter {
                    message: e.to_string(),
                })?,
            _ => EnvFilter::new(level),
        };
    let (subscriber, guard) = build_with_filter(settings, filter)?;
    subscriber
        .try_init()
        .map_err(|e| LogError::AlreadyInstalled {
            message: e.to_string(),
        })?;
    Ok(guard)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing::{debug, error, info, info_span, trace, warn};

    fn settings(file: &Path, level: &str) -> LogSettings {
        LogSettings {
            file: Some(file.to_path_buf()),
            max_size_kb: 1024,
            files_to_keep: 3,
            level: level.to_string(),
            stderr: false,
        }
    }

    /// Runs `f` with a subscriber for `s`, then flushes and returns the file's lines.
    fn capture(s: &LogSettings, f: impl FnOnce()) -> Vec<String> {
        let (subscriber, guard) = build(s).unwrap();
        tracing::subscriber::with_default(subscriber, f);
        drop(guard);
        let path = s.file.as_ref().unwrap();
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// `^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} \[(INFO|WARNING|ERROR|DEBUG)\] `
    fn prefix_ok(line: &str) -> bool {
        let b = line.as_bytes();
        if b.len() < 20 {
            return false;
        }
        let shape = "dddd-dd-dd dd:dd:dd ";
        let stamp_ok = shape.bytes().zip(b).all(|(s, c)| match s {
            b'd' => c.is_ascii_digit(),
            other => other == *c,
        });
        let rest = &line[20..];
        stamp_ok
            && ["[INFO] ", "[WARNING] ", "[ERROR] ", "[DEBUG] "]
                .iter()
                .any(|w| rest.starts_with(w))
    }

    #[test]
    fn line_format() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("x.log");
        let lines = capture(&settings(&file, "trace"), || {
            info!("daemon started");
            warn!(process = "foo", attempts = 2, "restart failed");
            let e = io::Error::other("boom went off");
            error!(process = "foo", error = %e, "cannot restart");
            debug!(detail = "", "empty value");
            trace!("trace shows as debug");
            let span = info_span!("procedure", process = "bar", trigger = "binlog");
            span.in_scope(|| info!(pid = 42, "stopping\nnow"));
        });
        assert_eq!(lines.len(), 6, "{lines:#?}");
        for line in &lines {
            assert!(prefix_ok(line), "bad prefix: {line}");
        }
        assert!(lines[0].ends_with(" [INFO] daemon started"), "{}", lines[0]);
        assert!(
            lines[1].ends_with(" [WARNING] restart failed process=foo attempts=2"),
            "{}",
            lines[1]
        );
        assert!(
            lines[2].ends_with(" [ERROR] cannot restart process=foo error=\"boom went off\""),
            "{}",
            lines[2]
        );
        assert!(
            lines[3].ends_with(" [DEBUG] empty value detail=\"\""),
            "{}",
            lines[3]
        );
        assert!(
            lines[4].contains(" [DEBUG] trace shows as debug"),
            "{}",
            lines[4]
        );
        assert!(
            lines[5].ends_with(" [INFO] stopping\\nnow pid=42 process=bar trigger=binlog"),
            "{}",
            lines[5]
        );
        assert!(!prefix_ok("2024-01-01 10:00:00 [WARN] x"));
    }

    #[test]
    fn level_filter() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("x.log");
        let lines = capture(&settings(&file, "warn"), || {
            debug!("hidden debug");
            info!("hidden info");
            warn!("shown warning");
            error!("shown error");
        });
        assert_eq!(lines.len(), 2, "{lines:#?}");
        assert!(lines[0].contains("[WARNING] shown warning"));
        assert!(lines[1].contains("[ERROR] shown error"));

        let file = dir.path().join("y.log");
        let lines = capture(&settings(&file, "info"), || {
            debug!("hidden debug");
            info!("shown info");
        });
        assert_eq!(lines.len(), 1, "{lines:#?}");
    }

    #[test]
    fn rotation_keeps_files_to_keep_old_files() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("x.log");
        let mut s = settings(&file, "info");
        s.max_size_kb = 1;
        s.files_to_keep = 3;
        let (subscriber, guard) = build(&s).unwrap();
        tracing::subscriber::with_default(subscriber, || {
            for i in 0..200 {
                info!(
                    line = i,
                    process = "foo",
                    "filling the log with a fairly long line"
                );
            }
        });
        drop(guard);
        for n in ["x.log", "x.log.1", "x.log.2", "x.log.3"] {
            assert!(dir.path().join(n).exists(), "{n} missing");
        }
        assert!(!dir.path().join("x.log.4").exists());
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names.len(), 4, "{names:?}");
        // Old files are about the size limit (rotation after the crossing line).
        let old = std::fs::metadata(dir.path().join("x.log.1")).unwrap().len();
        assert!((1024..1024 + 200).contains(&old), "{old}");
        // .1 is the newest old file: its lines come right before the current file's.
        let last_of = |name: &str| -> u32 {
            let text = std::fs::read_to_string(dir.path().join(name)).unwrap();
            let line = text.lines().last().unwrap();
            let at = line.find("line=").unwrap() + 5;
            line[at..].split(' ').next().unwrap().parse().unwrap()
        };
        assert!(last_of("x.log.1") > last_of("x.log.2"));
        assert!(last_of("x.log.2") > last_of("x.log.3"));
        let current = std::fs::read_to_string(&file).unwrap();
        assert!(current.contains("line=199"));
    }

    #[test]
    fn creates_parent_dir_and_names_unopenable_paths() {
        let dir = tempfile::tempdir().unwrap();
        let nested = dir.path().join("a/b/x.log");
        let lines = capture(&settings(&nested, "info"), || info!("hello"));
        assert_eq!(lines.len(), 1);

        // A directory where the file should be cannot be opened as a log file.
        let err = build(&settings(dir.path(), "info"))
            .map(|_| ())
            .unwrap_err();
        assert!(matches!(err, LogError::Open { .. }), "{err}");
        assert!(err.to_string().contains(&dir.path().display().to_string()));

        // A regular file in the way of the directory.
        let blocker = dir.path().join("blocker");
        std::fs::write(&blocker, "").unwrap();
        let err = build(&settings(&blocker.join("x.log"), "info"))
            .map(|_| ())
            .unwrap_err();
        assert!(matches!(err, LogError::CreateDir { .. }), "{err}");
        assert!(err.to_string().contains("blocker"), "{err}");
    }

    #[test]
    fn invalid_level_is_rejected() {
        let err = build(&LogSettings {
            file: None,
            level: "loud".into(),
            stderr: false,
            ..LogSettings::default()
        })
        .map(|_| ())
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "log level \"loud\" is invalid: expected error, warn, info or debug"
        );
        assert!(parse_level("WARNING").is_ok());
    }

    #[test]
    fn value_quoting() {
        let mut s = String::new();
        push_value(&mut s, "plain");
        s.push(' ');
        push_value(&mut s, "two words");
        s.push(' ');
        push_value(&mut s, "a=b");
        s.push(' ');
        push_value(&mut s, "/usr/bin/x");
        assert_eq!(s, "plain \"two words\" \"a=b\" /usr/bin/x");
    }
}
