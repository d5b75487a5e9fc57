//! Property tests (proptest) for the parts that read untrusted text: the config reader, the
//! command splitter/substituter and the process-name allow-list. No database needed.
//!
//! Bounded for CI: `PROPTEST_CASES` cases per property (default 2000, a few seconds in all);
//! a longer soak is `PROPTEST_CASES=200000 cargo test --test it props::`.

use std::path::Path;

use monitor_service::command::{
    join_words, quote_word, split_words, validate_process_name, CommandTemplate, SplitError,
    MAX_PROCESS_NAME_LEN,
};
use monitor_service::config::Config;
use proptest::prelude::*;
use proptest::test_runner::{Config as PtConfig, FileFailurePersistence};

const FILE: &str = "/etc/monitor/config.ini";

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(2000)
}

fn pt(divisor: u32) -> PtConfig {
    PtConfig {
        cases: (cases() / divisor).max(1),
        // Regressions are kept in the test's source (cases below), not in files next to it.
        failure_persistence: Some(Box::new(FileFailurePersistence::Off)),
        ..PtConfig::default()
    }
}

/// A message fit for one log line: no line break and no other control character (no forged
/// log lines, no terminal escapes).
fn one_line(m: &str) -> bool {
    !m.chars().any(char::is_control)
}

// ---------------------------------------------------------------------------
// Generators.

/// Any character, weighted towards the ones the parsers treat specially.
fn any_char() -> impl Strategy<Value = char> {
    prop_oneof![
        4 => prop::sample::select(vec![
            ' ', '\t', '\n', '\r', '\0', '\x0b', '\x0c', '\x1b', '\u{85}', '\u{2028}', '\u{feff}',
            '\'', '"', '\\', '%', 's', '=', ':', ';', '#', '[', ']', '.', '-', '$', '`', 'a', '0',
        ]),
        2 => any::<char>(),
        2 => prop::char::range('!', '~'),
    ]
}

fn tricky_string(max: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(any_char(), 0..max).prop_map(|v| v.into_iter().collect())
}

const KEYS: &[&str] = &[
    "host",
    "port",
    "user",
    "password",
    "database",
    "socket",
    "connect_timeout",
    "check_interval",
    "max_restart_failures",
    "circuit_reset_time",
    "binlog",
    "server_id",
    "max_parallel_restarts",
    "state_dir",
    "systemctl",
    "history_table",
    "max_log_size",
    "log_files_to_keep",
    "log_file",
    "level",
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
];

fn section_line() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "database",
            "monitor",
            "logging",
            "process.default",
            "process.apache2",
            "process",
            "databse",
        ])
        .prop_map(|s| format!("[{s}]")),
        tricky_string(12).prop_map(|s| format!("[process.{s}]")),
        tricky_string(12).prop_map(|s| format!("[{s}]")),
        tricky_string(12).prop_map(|s| format!("[{s}")),
    ]
}

fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "",
            "0",
            "1",
            "5",
            "0.5",
            "1.",
            ".5",
            "1e3",
            "-1",
            "2592000",
            "2592001",
            "4294967296",
            "18446744073709551616",
            "NaN",
            "inf",
            "on",
            "off",
            "auto",
            "debug",
            "warning",
            "service",
            "process",
            "pgrep %s",
            "pgrep 'x",
            "sh -c \"a b\"",
            "x \\",
            "a ; b",
            "v_process_monitor",
            "RESTART_HISTORY",
            "/tmp/x",
            "apache2.service",
        ])
        .prop_map(str::to_string),
        any::<u64>().prop_map(|n| n.to_string()),
        any::<f64>().prop_map(|f| f.to_string()),
        tricky_string(24),
    ]
}

fn kv_line() -> impl Strategy<Value = String> {
    (
        prop_oneof![
            4 => prop::sample::select(KEYS.to_vec()).prop_map(str::to_string),
            1 => tricky_string(10),
        ],
        prop::sample::select(vec!["=", " = ", ":", " : ", "= ", "\t=\t"]),
        value(),
    )
        .prop_map(|(k, sep, v)| format!("{k}{sep}{v}"))
}

fn config_line() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => section_line(),
        6 => kv_line(),
        1 => tricky_string(20).prop_map(|s| format!("; {s}")),
        1 => tricky_string(20).prop_map(|s| format!("# {s}")),
        1 => Just(String::new()),
        1 => tricky_string(20),
    ]
}

/// Config-shaped text: mostly sections and keys, with bad lines and odd line ends mixed in.
fn config_text() -> impl Strategy<Value = String> {
    (
        prop::collection::vec(config_line(), 0..16),
        prop::sample::select(vec!["\n", "\r\n", "\r"]),
        any::<bool>(),
    )
        .prop_map(|(lines, eol, bom)| {
            let mut t = if bom {
                String::from("\u{feff}")
            } else {
                String::new()
            };
            t.push_str(&lines.join(eol));
            t
        })
}

fn check_config_result(text: &str) -> Result<(), TestCaseError> {
    match Config::parse(text, Path::new(FILE)) {
        Ok(loaded) => {
            for w in &loaded.warnings {
                prop_assert!(one_line(w), "warning not on one line: {w:?}");
                prop_assert!(w.starts_with(FILE), "warning does not name the file: {w:?}");
            }
        }
        Err(e) => {
            let m = e.to_string();
            prop_assert!(one_line(&m), "error not on one line: {m:?}");
            prop_assert!(m.starts_with(FILE), "error does not name the file: {m:?}");
        }
    }
    Ok(())
}

/// Characters of the process-name allow-list.
fn allowed(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '@' | ':' | '+' | '-')
}

/// The allow-list as the design states it, written independently of the code.
fn model_valid(name: &str) -> bool {
    let n = name.chars().count();
    (1..=MAX_PROCESS_NAME_LEN).contains(&n)
        && !name.starts_with('-')
        && name.chars().all(allowed)
        && name != "."
        && name != ".."
}

fn name_like() -> impl Strategy<Value = String> {
    prop_oneof![
        // Mostly from the allow-list, so that both answers come up often.
        3 => prop::collection::vec(
            prop_oneof![
                8 => prop::sample::select(
                    "abcxyzABZ0189_.@:+-".chars().collect::<Vec<_>>()
                ),
                1 => any_char(),
            ],
            0..110,
        )
        .prop_map(|v| v.into_iter().collect()),
        1 => tricky_string(12),
        1 => any::<String>(),
        1 => prop::sample::select(vec![".", "..", "...", "-", "a".repeat(100).leak() as &str,
            "a".repeat(101).leak() as &str]).prop_map(str::to_string),
    ]
}

// ---------------------------------------------------------------------------
// Config reader.

proptest! {
    #![proptest_config(pt(1))]

    /// Config-shaped input: never a panic; every error and warning is one line naming the file.
    #[test]
    fn config_parse_never_panics_and_errors_are_one_line(text in config_text()) {
        check_config_result(&text)?;
    }

    /// Arbitrary text: the same.
    #[test]
    fn config_parse_arbitrary_text(text in any::<String>()) {
        check_config_result(&text)?;
    }

    /// Any password without surrounding blanks or control characters is read back exactly,
    /// however many `;`, `#`, `=`, `:`, quotes or backslashes it holds.
    #[test]
    fn config_password_round_trips(pw in "[!-~]([ -~]{0,30}[!-~])?") {
        let text = format!("[database]\nuser = m\npassword = {pw}\n");
        let loaded = Config::parse(&text, Path::new(FILE));
        let loaded = match loaded {
            Ok(l) => l,
            Err(e) => return Err(TestCaseError::fail(format!("{e}"))),
        };
        let got = loaded.config.database.password.as_ref().map(|p| p.expose().to_string());
        prop_assert_eq!(got.as_deref(), Some(pw.as_str()));
        let debug = format!("{:?}", loaded.config);
        prop_assert!(!debug.contains(&pw) || pw.len() < 8, "password in Debug output");
    }
}

proptest! {
    #![proptest_config(pt(20))]

    /// Arbitrary bytes in the file (not UTF-8, NULs, ...): `Config::load` never panics and its
    /// error is one line naming the file.
    #[test]
    fn config_load_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let dir = tempfile::tempdir().map_err(|e| TestCaseError::fail(e.to_string()))?;
        let path = dir.path().join("config.ini");
        std::fs::write(&path, &bytes).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let shown = path.display().to_string();
        match Config::load(&path) {
            Ok(l) => {
                for w in &l.warnings {
                    prop_assert!(one_line(w) && w.starts_with(&shown), "{w:?}");
                }
            }
            Err(e) => {
                let m = e.to_string();
                prop_assert!(one_line(&m), "{m:?}");
                prop_assert!(m.starts_with(&shown), "{m:?}");
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Command splitter and substituter.

proptest! {
    #![proptest_config(pt(1))]

    /// Never a panic; errors are one line and point inside the string.
    #[test]
    fn split_never_panics(s in tricky_string(64)) {
        match split_words(&s) {
            Ok(words) => {
                for w in &words {
                    // A word never holds an unquoted separator: all whitespace in a word came
                    // from quotes or a backslash, so quoting it again gives it back.
                    prop_assert_eq!(split_words(&quote_word(w)), Ok(vec![w.clone()]));
                }
            }
            Err(e) => {
                let m = e.to_string();
                prop_assert!(one_line(&m), "{m:?}");
                let n = s.chars().count();
                match e {
                    SplitError::UnclosedSingleQuote { offset } => {
                        prop_assert!(offset < n && s.chars().nth(offset) == Some('\''));
                    }
                    SplitError::UnclosedDoubleQuote { offset } => {
                        prop_assert!(offset < n && s.chars().nth(offset) == Some('"'));
                    }
                    SplitError::TrailingBackslash { offset } => {
                        prop_assert!(offset + 1 == n && s.ends_with('\\'));
                    }
                    SplitError::Empty => prop_assert!(false, "split_words never says Empty"),
                }
            }
        }
        match CommandTemplate::parse(&s) {
            Ok(t) => prop_assert!(!t.words().is_empty()),
            Err(e) => prop_assert!(one_line(&e.to_string())),
        }
    }

    /// Any list of words, quoted and joined, splits back into the same list.
    #[test]
    fn split_round_trips_through_quoting(words in prop::collection::vec(tricky_string(12), 0..8)) {
        let line = join_words(&words);
        prop_assert_eq!(split_words(&line), Ok(words.clone()), "line: {:?}", line);
    }

    /// Rendering never adds or removes words, whatever the name; a word that is exactly `%s`
    /// becomes the name verbatim; `%s` inside a word is replaced in place; words without `%`
    /// stay as they are.
    #[test]
    fn render_never_creates_words(
        words in prop::collection::vec(tricky_string(10), 1..6),
        name in prop_oneof![tricky_string(40), any::<String>()],
        prefix in "[^%]{0,5}",
        suffix in "[^%]{0,5}",
    ) {
        let mut words = words;
        words.push("%s".to_string());
        words.push(format!("{prefix}%s{suffix}"));
        let t = CommandTemplate::parse(&join_words(&words));
        let t = match t {
            Ok(t) => t,
            Err(e) => return Err(TestCaseError::fail(format!("{e}"))),
        };
        prop_assert_eq!(t.words(), words.as_slice());
        let out = t.render(&name);
        prop_assert_eq!(out.len(), words.len());
        prop_assert_eq!(&out[words.len() - 2], &name);
        prop_assert_eq!(&out[words.len() - 1], &format!("{prefix}{name}{suffix}"));
        for (w, o) in words.iter().zip(&out) {
            if !w.contains('%') {
                prop_assert_eq!(w, o);
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Process-name allow-list.

proptest! {
    #![proptest_config(pt(1))]

    /// `validate_process_name` accepts exactly the allow-list; refusals are one line.
    #[test]
    fn process_name_allow_list_is_exact(name in name_like()) {
        let verdict = validate_process_name(&name);
        prop_assert_eq!(verdict.is_ok(), model_valid(&name), "{:?}: {:?}", name, verdict);
        if let Err(e) = verdict {
            let m = e.to_string();
            prop_assert!(one_line(&m), "{m:?}");
            prop_assert!(m.len() < 600, "{} bytes", m.len());
        }
    }

    /// A name accepted by the allow-list renders into a command as itself, in one word, and
    /// cannot be taken for an option or a path.
    #[test]
    fn valid_names_stay_one_plain_word(
        name in "[A-Za-z0-9_.@:+][A-Za-z0-9_.@:+-]{0,99}"
            .prop_filter("path components", |n| n != "." && n != ".."),
    ) {
        prop_assert!(validate_process_name(&name).is_ok(), "{:?}", name);
        let t = CommandTemplate::parse("check --name=%s /run/%s.pid %s").unwrap();
        let out = t.render(&name);
        prop_assert_eq!(out.len(), 4);
        prop_assert_eq!(&out[3], &name);
        prop_assert!(!out[3].starts_with('-') && !out[3].contains('/'));
        prop_assert_eq!(quote_word(&name), name.clone());
    }
}

#[test]
fn regressions_found_by_the_properties() {
    // Kept here when a property finds one (see the report in the commit message).
    for text in [
        "[process.a\rb]\nx = 1",
        "[a\u{1b}b]\n",
        "[monitor]\nk\u{c}ey = 1\n",
        "; \n\0\rhost=",
        "\\:\n[=]",
    ] {
        if let Err(e) = check_config_result(text) {
            panic!("{text:?}: {e}");
        }
    }
}
