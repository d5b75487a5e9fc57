//! Operator controls (`reset`, `silence`, `unsilence`, and `status`'s live view): the line
//! protocol of the control socket, the client side, and the same changes made to the files in
//! `state_dir` when no daemon runs (under the state directory's lock, so a daemon starting
//! meanwhile loads them).

pub mod server;

use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mysql_async::prelude::{Query, WithParams};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

use crate::config::Config;
use crate::db::{Db, DbError};
use crate::exit;
use crate::silence::{Silences, Target, SILENCE_FILE};
use crate::state::StateDir;
use crate::status::Saved;
use crate::supervisor::breaker::{self, Breaker};
use crate::supervisor::BREAKER_FILE;

/// How long the client waits for the daemon's answer.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a name is looked up in PROCESE.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(10);

/// What an operator asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Close the breaker and re-check at once.
    Reset(Target),
    /// No restarts until then.
    Silence(Target, SystemTime),
    Unsilence(Target),
    /// The live state, for `status`.
    Status,
}

fn unix_ms(t: SystemTime) -> u128 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis())
}

impl Request {
    /// The request line (without the newline).
    pub fn to_line(&self) -> String {
        match self {
            Request::Reset(t) => format!("reset {t}"),
            Request::Silence(t, until) => format!("silence {t} {}", unix_ms(*until)),
            Request::Unsilence(t) => format!("unsilence {t}"),
            Request::Status => "status".to_string(),
        }
    }

    /// Reads a request line.
    pub fn parse(line: &str) -> Result<Request, String> {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["reset", t] => Target::parse(t).map(Request::Reset),
            ["unsilence", t] => Target::parse(t).map(Request::Unsilence),
            ["silence", t, ms] => {
                let ms: u64 = ms.parse().map_err(|_| format!("bad end time {ms:?}"))?;
                Ok(Request::Silence(
                    Target::parse(t)?,
                    UNIX_EPOCH + Duration::from_millis(ms),
                ))
            }
            ["status"] => Ok(Request::Status),
            _ => Err(format!("unknown request {line:?}")),
        }
    }
}

/// A request that did not work: what to tell the operator and the exit status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ControlError {
    pub code: i32,
    pub message: String,
}

impl ControlError {
    pub fn new(code: i32, message: impl Into<String>) -> ControlError {
        ControlError {
            code,
            message: message.into(),
        }
    }
}

/// An answer line: `ok MESSAGE` or `error CODE MESSAGE`, then body lines.
pub fn answer_text(result: &Result<String, ControlError>, body: &[String]) -> String {
    let mut out = match result {
        Ok(m) => format!("ok {m}\n"),
        Err(e) => format!("error {} {}\n", e.code, e.message),
    };
    for line in body {
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// Reads an answer: the message (or the error) and the body lines.
pub fn parse_answer(text: &str) -> (Result<String, ControlError>, Vec<String>) {
    let mut lines = text.lines();
    let first = lines.next().unwrap_or_default();
    let body = lines.map(str::to_string).collect();
    let result = if let Some(m) = first.strip_prefix("ok") {
        Ok(m.trim_start().to_string())
    } else if let Some(rest) = first.strip_prefix("error ") {
        let (code, message) = rest.split_once(' ').unwrap_or((rest, ""));
        Err(ControlError::new(
            code.parse().unwrap_or(exit::FAILURE),
            message,
        ))
    } else {
        Err(ControlError::new(
            exit::FAILURE,
            format!("the daemon answered something unexpected: {first:?}"),
        ))
    };
    (result, body)
}

/// Why the daemon could not be asked.
#[derive(Debug)]
enum Unreachable {
    /// No daemon listens there (no socket, or a stale one).
    NotRunning,
    /// The socket is there but this user may not use it.
    Denied(std::io::Error),
    Other(std::io::Error),
}

/// Sends `request` to the daemon at `socket` and reads its whole answer.
async fn ask(socket: &Path, request: &Request) -> Result<String, Unreachable> {
    use std::io::ErrorKind;
    let mut stream = match UnixStream::connect(socket).await {
        Ok(s) => s,
        Err(e) => {
            return Err(match e.kind() {
                ErrorKind::NotFound | ErrorKind::ConnectionRefused => Unreachable::NotRunning,
                ErrorKind::PermissionDenied => Unreachable::Denied(e),
                _ => Unreachable::Other(e),
            })
        }
    };
    let talk = async {
        stream
            .write_all(format!("{}\n", request.to_line()).as_bytes())
            .await?;
        let mut reader = BufReader::new(stream);
        let mut text = String::new();
        let mut line = String::new();
        while reader.read_line(&mut line).await? > 0 {
            text.push_str(&line);
            line.clear();
        }
        Ok::<String, std::io::Error>(text)
    };
    match tokio::time::timeout(ANSWER_TIMEOUT, talk).await {
        Ok(Ok(t)) if !t.is_empty() => Ok(t),
        Ok(Ok(_)) => Err(Unreachable::Other(std::io::Error::new(
            ErrorKind::UnexpectedEof,
            "the daemon closed the connection without an answer (it refuses users other than root and its own)",
        ))),
        Ok(Err(e)) => Err(Unreachable::Other(e)),
        Err(_) => Err(Unreachable::Other(std::io::Error::new(
            ErrorKind::TimedOut,
            format!("no answer within {}s", ANSWER_TIMEOUT.as_secs()),
        ))),
    }
}

/// Carries out `request`: through the running daemon, else (no daemon listening) on the files
/// it will load. Returns what to tell the operator.
pub async fn execute(config: &Config, request: &Request) -> Result<String, ControlError> {
    let socket = &config.monitor.control_socket;
    match ask(socket, request).await {
        Ok(text) => parse_answer(&text).0,
        Err(Unreachable::NotRunning) => offline(config, request).await,
        Err(Unreachable::Denied(e)) => Err(ControlError::new(
            exit::NOPERM,
            format!(
                "cannot use the control socket {}: {e}; run this as root",
                socket.display()
            ),
        )),
        Err(Unreachable::Other(e)) => Err(ControlError::new(
            exit::UNAVAILABLE,
            format!("the daemon at {} did not answer: {e}", socket.display()),
        )),
    }
}

/// The state for `status`: the running daemon's when it answers, else the files.
pub async fn status_state(config: &Config) -> (Saved, Vec<String>) {
    let socket = &config.monitor.control_socket;
    let why = match ask(socket, &Request::Status).await {
        Ok(text) => match parse_answer(&text) {
            (Ok(message), body) => return (saved_from_body(message, &body), Vec::new()),
            (Err(e), _) => format!("the daemon refused: {e}"),
        },
        Err(Unreachable::NotRunning) => "daemon not running".to_string(),
        Err(Unreachable::Denied(e)) => format!("daemon not asked ({}: {e})", socket.display()),
        Err(Unreachable::Other(e)) => format!("daemon did not answer ({e})"),
    };
    Saved::from_files(config, &why)
}

/// Body lines of a status answer: `busy ID`, `breaker LINE`, `silence LINE`.
pub fn status_body(busy: &[i64], breakers: &str, silences: &str) -> Vec<String> {
    let mut out: Vec<String> = busy.iter().map(|id| format!("busy {id}")).collect();
    let data = |text: &str| {
        text.lines()
            .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    out.extend(data(breakers).into_iter().map(|l| format!("breaker {l}")));
    out.extend(data(silences).into_iter().map(|l| format!("silence {l}")));
    out
}

fn saved_from_body(message: String, body: &[String]) -> Saved {
    let mut saved = Saved {
        breakers: Some(String::new()),
        silences: Some(String::new()),
        busy: Vec::new(),
        source: message,
    };
    for line in body {
        if let Some(id) = line.strip_prefix("busy ") {
            saved.busy.extend(id.trim().parse::<i64>());
        } else if let Some(b) = line.strip_prefix("breaker ") {
            push_line(&mut saved.breakers, b);
        } else if let Some(s) = line.strip_prefix("silence ") {
            push_line(&mut saved.silences, s);
        }
    }
    saved
}

fn push_line(text: &mut Option<String>, line: &str) {
    let t = text.get_or_insert_with(String::new);
    t.push_str(line);
    t.push('\n');
}

/// The ids of the PROCESE rows named `name`.
pub async fn ids_of(db: &Db, name: &str) -> Result<Vec<i64>, String> {
    let lookup = async {
        let mut conn = db.conn().await.map_err(|e| e.to_string())?;
        "SELECT process_id FROM PROCESE WHERE process_name = ? ORDER BY process_id"
            .with((name,))
            .fetch(&mut conn)
            .await
            .map_err(|source| {
                DbError::Query {
                    what: "looking up the process by name",
                    source,
                    hint: "",
                }
                .to_string()
            })
    };
    tokio::time::timeout(LOOKUP_TIMEOUT, lookup)
        .await
        .unwrap_or_else(|_| {
            Err(format!(
                "no answer from the database within {}s",
                LOOKUP_TIMEOUT.as_secs()
            ))
        })
}

/// The ids `target` names: itself, or every PROCESE row with that name (at least one).
pub async fn resolve(db: &Db, target: &Target) -> Result<Vec<i64>, ControlError> {
    let name = match target {
        Target::Id(id) => return Ok(vec![*id]),
        Target::Name(n) => n,
    };
    match ids_of(db, name).await {
        Ok(ids) if ids.is_empty() => Err(ControlError::new(
            exit::FAILURE,
            format!("no process named {name} in PROCESE; give its process_id or the name exactly as PROCESE has it"),
        )),
        Ok(ids) => Ok(ids),
        Err(e) => Err(ControlError::new(
            exit::UNAVAILABLE,
            format!("cannot look up the process_id of {name}: {e}; give the process_id instead"),
        )),
    }
}

/// Local time for messages.
pub fn local(t: SystemTime) -> String {
    chrono::DateTime::<chrono::Local>::from(t)
        .format("%Y-%m-%d %H:%M:%S")
        .to_string()
}

/// What a reset found, for the operator: `was open until ... (3 failures)`.
pub fn describe_breaker(b: &Breaker, now: Instant, wall: SystemTime) -> String {
    match b.state {
        breaker::State::Open { until, .. } => format!(
            "breaker was open until {} ({} failures)",
            local(breaker::wall_of(until, now, wall)),
            b.failures
        ),
        breaker::State::HalfOpen => format!("breaker was half-open ({} failures)", b.failures),
        breaker::State::Closed if b.failures > 0 => {
            format!("breaker was closed ({} failures counted)", b.failures)
        }
        breaker::State::Closed => "breaker was closed already".to_string(),
    }
}

/// The change made on the files, with no daemon running.
async fn offline(config: &Config, request: &Request) -> Result<String, ControlError> {
    let dir = &config.monitor.state_dir;
    let cant = |e: std::io::Error| {
        ControlError::new(
            exit::CANTCREAT,
            format!("cannot use the state directory {}: {e}", dir.display()),
        )
    };
    let state = StateDir::open(dir).map_err(cant)?;
    let Some(_lock) = state.try_lock().map_err(cant)? else {
        return Err(ControlError::new(
            exit::UNAVAILABLE,
            format!(
                "a monitor_service holds {} but does not answer on {}: is it still starting, or does it use another [monitor] control_socket?",
                state.path(crate::state::LOCK_FILE).display(),
                config.monitor.control_socket.display()
            ),
        ));
    };
    let later = "the daemon is not running: it applies this when it starts";
    match request {
        Request::Reset(target) => {
            let db = Db::new(&config.database, &config.monitor.history_table);
            let ids = resolve(&db, target).await;
            db.close().await;
            let said = reset_files(&state, config, &ids?).map_err(cant)?;
            Ok(format!("{said}; {later}"))
        }
        Request::Silence(target, until) => {
            edit_silences(&state, |s| s.set(target.clone(), *until)).map_err(cant)?;
            Ok(format!(
                "silenced {target} until {}; {later}",
                local(*until)
            ))
        }
        Request::Unsilence(target) => {
            let had = edit_silences(&state, |s| s.remove(target)).map_err(cant)?;
            Ok(unsilenced_message(target, had, later))
        }
        Request::Status => Err(ControlError::new(exit::FAILURE, "status is not a change")),
    }
}

/// What `unsilence` says.
pub fn unsilenced_message(target: &Target, had: bool, then: &str) -> String {
    if had {
        format!("silence of {target} ended; {then}")
    } else {
        format!("{target} was not silenced (a silence of a name ends only with that name); {then}")
    }
}

fn reset_files(state: &StateDir, config: &Config, ids: &[i64]) -> std::io::Result<String> {
    let (now, wall) = (Instant::now(), SystemTime::now());
    let text = state.read(BREAKER_FILE)?.unwrap_or_default();
    let mut book = breaker::from_text(&text, now, wall, config.monitor.circuit_reset_time)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
    let said: Vec<String> = ids
        .iter()
        .map(|id| {
            let old = book.remove(id).unwrap_or_default();
            format!("reset {id}: {}", describe_breaker(&old, now, wall))
        })
        .collect();
    state.write(BREAKER_FILE, &breaker::to_text(&book, now, wall))?;
    Ok(said.join("; "))
}

fn edit_silences<T>(state: &StateDir, f: impl FnOnce(&mut Silences) -> T) -> std::io::Result<T> {
    let now = SystemTime::now();
    let text = state.read(SILENCE_FILE)?.unwrap_or_default();
    let mut s = Silences::from_text(&text, now)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
    let out = f(&mut s);
    state.write(SILENCE_FILE, &s.to_text(now))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip() {
        let until = UNIX_EPOCH + Duration::from_millis(1_800_000_000_123);
        for r in [
            Request::Reset(Target::Id(5)),
            Request::Reset(Target::Name("web".into())),
            Request::Silence(Target::Name("web".into()), until),
            Request::Unsilence(Target::Id(7)),
            Request::Status,
        ] {
            assert_eq!(Request::parse(&r.to_line()), Ok(r));
        }
        for bad in [
            "",
            "reset",
            "reset a;b",
            "silence 5",
            "silence 5 soon",
            "kill 5",
        ] {
            assert!(Request::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn answers_round_trip() {
        let body = vec!["busy 3".to_string()];
        let ok = answer_text(&Ok("done".into()), &body);
        assert_eq!(parse_answer(&ok), (Ok("done".into()), body));
        let err = answer_text(&Err(ControlError::new(69, "db down")), &[]);
        assert_eq!(parse_answer(&err).0, Err(ControlError::new(69, "db down")));
        assert!(parse_answer("").0.is_err());
    }

    #[test]
    fn status_body_carries_the_files_lines() {
        let body = status_body(
            &[4],
            "# header\n5 3 open 1800000000000\n",
            "# header\nname web 1800000000000\n",
        );
        assert_eq!(
            body,
            vec![
                "busy 4",
                "breaker 5 3 open 1800000000000",
                "silence name web 1800000000000"
            ]
        );
        let saved = saved_from_body("daemon running".into(), &body);
        assert_eq!(saved.busy, vec![4]);
        assert_eq!(saved.breakers.as_deref(), Some("5 3 open 1800000000000\n"));
        assert_eq!(saved.silences.as_deref(), Some("name web 1800000000000\n"));
    }

    #[test]
    fn offline_reset_and_silence_edit_the_files() {
        let tmp = tempfile::tempdir().unwrap();
        let mut config = Config::default();
        config.monitor.state_dir = tmp.path().to_path_buf();
        let state = StateDir::open(tmp.path()).unwrap();
        let (now, wall) = (Instant::now(), SystemTime::now());
        let mut book = std::collections::BTreeMap::new();
        for id in [5, 6] {
            book.insert(
                id,
                Breaker {
                    failures: 3,
                    state: breaker::State::Open {
                        until: now + Duration::from_secs(600),
                        warned: true,
                    },
                },
            );
        }
        state
            .write(BREAKER_FILE, &breaker::to_text(&book, now, wall))
            .unwrap();
        let said = reset_files(&state, &config, &[5, 9]).unwrap();
        assert!(said.contains("reset 5: breaker was open until"), "{said}");
        assert!(
            said.contains("reset 9: breaker was closed already"),
            "{said}"
        );
        let left = state.read(BREAKER_FILE).unwrap().unwrap();
        assert!(
            !left.contains("\n5 ") && left.contains("\n6 3 open "),
            "{left}"
        );

        let until = wall + Duration::from_secs(60);
        edit_silences(&state, |s| s.set(Target::Id(5), until)).unwrap();
        let text = state.read(SILENCE_FILE).unwrap().unwrap();
        assert!(text.contains("id 5 "), "{text}");
        assert!(edit_silences(&state, |s| s.remove(&Target::Id(5))).unwrap());
        assert!(!state.read(SILENCE_FILE).unwrap().unwrap().contains("id 5"));
    }
}
