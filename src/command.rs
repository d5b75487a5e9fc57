//! Command templates from the config (word splitting without a shell, `%s`
//! substitution) and the allow-list for process names that come from the
//! database. Pure functions: nothing here runs anything or touches the disk.

use std::fmt;

/// Why a command string could not be split into words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SplitError {
    /// A `'` was opened and never closed.
    #[error(
        "unclosed single quote (') opened at char offset {offset}: add the closing ' or escape the quote as \\'"
    )]
    UnclosedSingleQuote {
        /// 0-based character offset of the opening quote.
        offset: usize,
    },
    /// A `"` was opened and never closed.
    #[error(
        "unclosed double quote (\") opened at char offset {offset}: add the closing \" or escape the quote as \\\""
    )]
    UnclosedDoubleQuote {
        /// 0-based character offset of the opening quote.
        offset: usize,
    },
    /// The string ends with a backslash that escapes nothing.
    #[error(
        "trailing backslash at char offset {offset} escapes nothing: remove it or write \\\\ for a literal backslash"
    )]
    TrailingBackslash {
        /// 0-based character offset of the backslash.
        offset: usize,
    },
    /// The command has no words at all.
    #[error("empty command: give a program followed by its arguments, e.g. \"pgrep %s\"")]
    Empty,
}

/// Splits `s` into words the way a POSIX shell would, but without any
/// expansion: no globbing, no `$`, no backticks, and `;`, `|`, `&`, `>` are
/// ordinary characters.
///
/// - whitespace separates words;
/// - `'...'` is literal;
/// - `"..."` is literal except for `\"` and `\\`;
/// - outside quotes a backslash makes the next character literal.
///
/// An empty or all-whitespace string yields no words (not an error here;
/// [`CommandTemplate::parse`] rejects it).
pub fn split_words(s: &str) -> Result<Vec<String>, SplitError> {
    let mut words = Vec::new();
    let mut word = String::new();
    // A word exists even when empty, e.g. `''`.
    let mut in_word = false;
    let mut chars = s.chars().enumerate();

    while let Some((i, c)) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                let mut closed = false;
                for (_, q) in chars.by_ref() {
                    if q == '\'' {
                        closed = true;
                        break;
                    }
                    word.push(q);
                }
                if !closed {
                    return Err(SplitError::UnclosedSingleQuote { offset: i });
                }
            }
            '"' => {
                in_word = true;
                let mut closed = false;
                while let Some((_, q)) = chars.next() {
                    match q {
                        '"' => {
                            closed = true;
                            break;
                        }
                        '\\' => match chars.next() {
                            Some((_, e @ ('"' | '\\'))) => word.push(e),
                            Some((_, other)) => {
                                word.push('\\');
                                word.push(other);
                            }
                            // The string ends inside the quotes.
                            None => break,
                        },
                        other => word.push(other),
                    }
                }
                if !closed {
                    return Err(SplitError::UnclosedDoubleQuote { offset: i });
                }
            }
            '\\' => match chars.next() {
                Some((_, e)) => {
                    in_word = true;
                    word.push(e);
                }
                None => return Err(SplitError::TrailingBackslash { offset: i }),
            },
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            other => {
                in_word = true;
                word.push(other);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

/// Quotes `word` so that [`split_words`] reads it back as exactly one word
/// equal to `word`: plain words stay as they are, anything else goes in
/// single quotes (a `'` inside becomes `'\''`). Used to show argv in messages
/// in a form that can be pasted back into the config.
pub fn quote_word(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| !c.is_whitespace() && !matches!(c, '\'' | '"' | '\\'));
    if plain {
        return word.to_string();
    }
    let mut out = String::with_capacity(word.len() + 2);
    out.push('\'');
    for c in word.chars() {
        if c == '\'' {
            out.push_str("'\\''");
        } else {
            out.push(c);
        }
    }
    out.push('\'');
    out
}

/// [`quote_word`] for each word, separated by single spaces.
pub fn join_words<S: AsRef<str>>(words: &[S]) -> String {
    words
        .iter()
        .map(|w| quote_word(w.as_ref()))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A command from the config, already split into words. `%s` inside any
/// word stands for the process name and is substituted after splitting, so a
/// name can never add words or change how the command is parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandTemplate {
    words: Vec<String>,
    source: String,
}

impl CommandTemplate {
    /// Splits `s` with [`split_words`]; an empty command is an error.
    pub fn parse(s: &str) -> Result<CommandTemplate, SplitError> {
        let words = split_words(s)?;
        if words.is_empty() {
            return Err(SplitError::Empty);
        }
        Ok(CommandTemplate {
            words,
            source: s.to_string(),
        })
    }

    /// The first word, unrendered (it may still contain `%s`).
    pub fn program(&self) -> &str {
        self.words.first().map(String::as_str).unwrap_or_default()
    }

    /// The text the template was parsed from.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The unrendered words.
    pub fn words(&self) -> &[String] {
        &self.words
    }

    /// The words with every `%s` replaced by `name` and every `%%` by `%`.
    /// Any other `%` is kept as it is.
    pub fn render(&self, name: &str) -> Vec<String> {
        self.words.iter().map(|w| render_word(w, name)).collect()
    }
}

/// The built-in health check, `pgrep %s`.
pub const DEFAULT_HEALTH_CHECK: &str = "pgrep %s";

impl Default for CommandTemplate {
    /// The built-in health check, [`DEFAULT_HEALTH_CHECK`].
    fn default() -> Self {
        CommandTemplate {
            words: vec!["pgrep".to_string(), "%s".to_string()],
            source: DEFAULT_HEALTH_CHECK.to_string(),
        }
    }
}

impl fmt::Display for CommandTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

fn render_word(word: &str, name: &str) -> String {
    let mut out = String::with_capacity(word.len() + name.len());
    let mut chars = word.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '%' {
            match chars.peek() {
                Some('s') => {
                    chars.next();
                    out.push_str(name);
                    continue;
                }
                Some('%') => {
                    chars.next();
                    out.push('%');
                    continue;
                }
                _ => {}
            }
        }
        out.push(c);
    }
    out
}

/// Longest process name accepted (the length of `PROCESE.process_name`).
pub const MAX_PROCESS_NAME_LEN: usize = 100;

/// Why a process name from the database is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// The name is the empty string.
    #[error("process name is empty: set PROCESE.process_name to the program's name")]
    Empty,
    /// More than [`MAX_PROCESS_NAME_LEN`] characters.
    #[error(
        "process name {shown} is too long ({len} characters, at most {MAX_PROCESS_NAME_LEN}): use the program's short name"
    )]
    TooLong {
        /// The start of the name, escaped.
        shown: String,
        /// Length in characters.
        len: usize,
    },
    /// Starts with `-`, which a command would take as an option.
    #[error("process name {name:?} starts with '-', which commands would read as an option: rename the process")]
    LeadingDash {
        /// The name.
        name: String,
    },
    /// `.` or `..`: a path component that `%s` inside a path would turn into
    /// path traversal (`/opt/%s/run` with `..` is `/opt/../run`).
    #[error("process name {name:?} is a path component ('.' or '..'), which commands using %s in a path would follow: rename the process")]
    DotName {
        /// The name.
        name: String,
    },
    /// Contains a character outside the allow-list.
    #[error(
        "process name {name:?} contains character {ch:?} at position {position}: only letters, digits and _ . @ : + - are allowed"
    )]
    BadChar {
        /// The name.
        name: String,
        /// The first refused character.
        ch: char,
        /// 0-based character position of `ch`.
        position: usize,
    },
}

impl NameError {
    /// Why, in a few words and without the name, for the 100-character notes (where the
    /// name itself, possibly 100 characters, would crowd out the reason).
    pub fn brief(&self) -> String {
        match self {
            NameError::Empty => "empty name".to_string(),
            NameError::TooLong { len, .. } => {
                format!("name too long ({len} chars, max {MAX_PROCESS_NAME_LEN})")
            }
            NameError::LeadingDash { .. } => "name starts with '-'".to_string(),
            NameError::DotName { name } => format!("name {name:?} is a path component"),
            NameError::BadChar { ch, position, .. } => {
                format!("bad character {ch:?} at position {position}")
            }
        }
    }
}

fn is_allowed_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '@' | ':' | '+' | '-')
}

/// True when `name` may be used in commands: 1 to 100 characters from
/// `[A-Za-z0-9_.@:+-]`, not starting with `-`, and not `.` or `..`.
pub fn is_valid_process_name(name: &str) -> bool {
    validate_process_name(name).is_ok()
}

/// Like [`is_valid_process_name`], with the reason when it is not valid.
/// The name appears escaped in the message, so control characters and
/// newlines stay visible and on one log line.
pub fn validate_process_name(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    let len = name.chars().count();
    if len > MAX_PROCESS_NAME_LEN {
        let head: String = name.chars().take(40).collect();
        return Err(NameError::TooLong {
            shown: format!("{head:?}..."),
            len,
        });
    }
    if name.starts_with('-') {
        return Err(NameError::LeadingDash {
            name: name.to_string(),
        });
    }
    if let Some((position, ch)) = name
        .chars()
        .enumerate()
        .find(|(_, c)| !is_allowed_name_char(*c))
    {
        return Err(NameError::BadChar {
            name: name.to_string(),
            ch,
            position,
        });
    }
    if name == "." || name == ".." {
        return Err(NameError::DotName {
            name: name.to_string(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(s: &str) -> Vec<String> {
        split_words(s).unwrap()
    }

    fn v(words: &[&str]) -> Vec<String> {
        words.iter().map(|w| w.to_string()).collect()
    }

    #[test]
    fn splits_on_any_whitespace() {
        assert_eq!(split("pgrep %s"), v(&["pgrep", "%s"]));
        assert_eq!(split("  a \t b\n c  "), v(&["a", "b", "c"]));
        assert_eq!(split(""), Vec::<String>::new());
        assert_eq!(split("   \t "), Vec::<String>::new());
    }

    #[test]
    fn single_quotes_are_literal() {
        assert_eq!(
            split(r#"echo 'a b' 'c\d' '"'"#),
            v(&["echo", "a b", r"c\d", "\""])
        );
        assert_eq!(split("a'b c'd"), v(&["ab cd"]));
    }

    #[test]
    fn double_quotes_allow_two_escapes() {
        assert_eq!(
            split(r#"echo "a \"b\" \\ c""#),
            v(&["echo", r#"a "b" \ c"#])
        );
        // Other backslashes stay as they are.
        assert_eq!(split(r#""a\nb\$""#), v(&[r"a\nb\$"]));
        assert_eq!(split(r#""it's""#), v(&["it's"]));
    }

    #[test]
    fn empty_quotes_make_an_empty_word() {
        assert_eq!(split("a '' \"\" b"), v(&["a", "", "", "b"]));
    }

    #[test]
    fn backslash_outside_quotes_escapes_next_char() {
        assert_eq!(split(r"a\ b c\\d \'"), v(&["a b", r"c\d", "'"]));
        assert_eq!(split(r#"\"x\""#), v(&["\"x\""]));
    }

    #[test]
    fn shell_metacharacters_are_plain_characters() {
        assert_eq!(
            split("sh -c $(id);rm|x `y` * > out &"),
            v(&["sh", "-c", "$(id);rm|x", "`y`", "*", ">", "out", "&"])
        );
        assert_eq!(split("echo $HOME ~"), v(&["echo", "$HOME", "~"]));
    }

    #[test]
    fn unbalanced_quotes_are_errors_with_offset() {
        assert_eq!(
            split_words("echo 'abc"),
            Err(SplitError::UnclosedSingleQuote { offset: 5 })
        );
        assert_eq!(
            split_words("ab \"c"),
            Err(SplitError::UnclosedDoubleQuote { offset: 3 })
        );
        assert_eq!(
            split_words("x \"a\\\""),
            Err(SplitError::UnclosedDoubleQuote { offset: 2 })
        );
        assert_eq!(
            split_words("x \"a\\"),
            Err(SplitError::UnclosedDoubleQuote { offset: 2 })
        );
        assert_eq!(
            split_words("abc \\"),
            Err(SplitError::TrailingBackslash { offset: 4 })
        );
        // Offsets count characters, not bytes.
        assert_eq!(
            split_words("é 'x"),
            Err(SplitError::UnclosedSingleQuote { offset: 2 })
        );
    }

    #[test]
    fn error_messages_name_the_quote_and_offset() {
        let m = split_words("echo 'abc").unwrap_err().to_string();
        assert!(m.contains("single quote") && m.contains("offset 5"), "{m}");
        let m = split_words("echo \"abc").unwrap_err().to_string();
        assert!(m.contains("double quote") && m.contains("offset 5"), "{m}");
        let m = split_words("echo \\").unwrap_err().to_string();
        assert!(
            m.contains("trailing backslash") && m.contains("offset 5"),
            "{m}"
        );
        assert!(m.starts_with(char::is_lowercase));
    }

    #[test]
    fn template_parse_and_accessors() {
        let t = CommandTemplate::parse("systemctl is-active  %s").unwrap();
        assert_eq!(t.program(), "systemctl");
        assert_eq!(t.source(), "systemctl is-active  %s");
        assert_eq!(t.to_string(), "systemctl is-active  %s");
        assert_eq!(t.words(), v(&["systemctl", "is-active", "%s"]).as_slice());
        assert_eq!(CommandTemplate::parse("  "), Err(SplitError::Empty));
        assert_eq!(CommandTemplate::parse(""), Err(SplitError::Empty));
        assert!(CommandTemplate::parse("a 'b").is_err());
        assert_eq!(
            CommandTemplate::default(),
            CommandTemplate::parse(DEFAULT_HEALTH_CHECK).unwrap()
        );
    }

    #[test]
    fn render_substitutes_inside_words() {
        let t = CommandTemplate::parse("pgrep -x %s").unwrap();
        assert_eq!(t.render("nginx"), v(&["pgrep", "-x", "nginx"]));
        let t = CommandTemplate::parse("/usr/bin/check --unit=%s.service --pid=/run/%s/%s.pid")
            .unwrap();
        assert_eq!(
            t.render("db"),
            v(&[
                "/usr/bin/check",
                "--unit=db.service",
                "--pid=/run/db/db.pid"
            ])
        );
        let t = CommandTemplate::parse("/usr/sbin/%s -f").unwrap();
        assert_eq!(t.render("worker"), v(&["/usr/sbin/worker", "-f"]));
    }

    #[test]
    fn render_percent_escapes() {
        let t = CommandTemplate::parse("date +%%s %%%s 100% %d %").unwrap();
        assert_eq!(t.render("n"), v(&["date", "+%s", "%n", "100%", "%d", "%"]));
        // A name containing %s is not substituted again.
        let t = CommandTemplate::parse("x %s").unwrap();
        assert_eq!(t.render("%s%%"), v(&["x", "%s%%"]));
    }

    #[test]
    fn hostile_names_never_create_words() {
        let t = CommandTemplate::parse("pgrep %s").unwrap();
        for name in [
            "x;touch /tmp/pwned",
            "$(id)",
            "a b",
            "`id`",
            "a\nb",
            "-rf",
            "' \"",
        ] {
            let words = t.render(name);
            assert_eq!(words.len(), 2, "{name:?}");
            assert_eq!(words[1], name);
        }
    }

    #[test]
    fn valid_process_names() {
        for name in [
            "apache2",
            "my_worker.py",
            "getty@tty1",
            "a:b",
            "c++",
            "x-y",
            "A",
            "0",
            "a-",
            "...",
            ".x",
            "x..",
            &"a".repeat(100),
        ] {
            assert!(is_valid_process_name(name), "{name:?}");
            assert_eq!(validate_process_name(name), Ok(()));
        }
    }

    #[test]
    fn invalid_process_names() {
        for name in [
            "",
            "x;touch /tmp/pwned",
            "$(id)",
            "`id`",
            "-rf",
            "-",
            "a b",
            "a\nb",
            "a\0b",
            "a/b",
            "../etc",
            &"/".repeat(100),
            &"a".repeat(101),
            "café",
            "naïve",
            "a\tb",
            "*",
            "a|b",
            "a>b",
            "a'b",
            "a\"b",
            "a\\b",
            "%s",
            ".",
            "..",
        ] {
            assert!(!is_valid_process_name(name), "{name:?}");
            assert!(validate_process_name(name).is_err(), "{name:?}");
        }
    }

    #[test]
    fn name_error_messages_say_why() {
        assert!(validate_process_name("")
            .unwrap_err()
            .to_string()
            .contains("empty"));
        let m = validate_process_name(&"a".repeat(101))
            .unwrap_err()
            .to_string();
        assert!(
            m.contains("too long") && m.contains("101") && m.contains("100"),
            "{m}"
        );
        let m = validate_process_name("-rf").unwrap_err().to_string();
        assert!(
            m.contains("starts with '-'") && m.contains("\"-rf\""),
            "{m}"
        );
        let m = validate_process_name("x;touch /tmp/pwned")
            .unwrap_err()
            .to_string();
        assert!(m.contains("';'") && m.contains("position 1"), "{m}");
        let m = validate_process_name(&"/".repeat(100))
            .unwrap_err()
            .to_string();
        assert!(m.contains("'/'") && m.contains("position 0"), "{m}");
        let m = validate_process_name("café").unwrap_err().to_string();
        assert!(m.contains("'é'") && m.contains("position 3"), "{m}");
    }

    #[test]
    fn brief_reasons_are_short_and_safe() {
        for name in [
            "",
            "-rf",
            ".",
            "..",
            &"a".repeat(101),
            "x;touch /tmp/pwned",
            "a\nb",
            "\u{1b}[31m",
            &format!("{}\0", "a".repeat(99)),
        ] {
            let b = validate_process_name(name).unwrap_err().brief();
            assert!(b.len() <= 50, "{b:?}");
            assert!(!b.chars().any(char::is_control), "{b:?}");
        }
        assert_eq!(
            validate_process_name("x;y").unwrap_err().brief(),
            "bad character ';' at position 1"
        );
    }

    #[test]
    fn name_error_messages_stay_on_one_safe_line() {
        for name in [
            "a\nb",
            "a\0b",
            "a\rb\x1b[31m",
            "evil\n2026-01-01 [ERROR] forged",
        ] {
            let m = validate_process_name(name).unwrap_err().to_string();
            assert!(
                !m.contains('\n') && !m.contains('\r') && !m.contains('\0') && !m.contains('\x1b'),
                "{m:?}"
            );
        }
        let m = validate_process_name("a\nb").unwrap_err().to_string();
        assert!(m.contains(r"'\n'") && m.contains(r#""a\nb""#), "{m}");
        let m = validate_process_name("a\0b").unwrap_err().to_string();
        assert!(m.contains(r"'\0'"), "{m}");
        // Too long names are cut and escaped as well.
        let m = validate_process_name(&format!("{}\n", "x".repeat(200)))
            .unwrap_err()
            .to_string();
        assert!(!m.contains('\n') && m.len() < 200, "{m}");
    }
}
