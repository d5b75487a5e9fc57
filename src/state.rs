//! Files in `state_dir`: written atomically (temp file, fsync, rename) so a torn file is never read.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Name of the lock file in `state_dir`.
pub const LOCK_FILE: &str = "lock";

/// The state directory's lock; released when dropped (or when its process ends).
#[derive(Debug)]
pub struct StateLock {
    _lock: nix::fcntl::Flock<fs::File>,
}

/// Replaces `path` atomically (temp file beside it, fsync, rename, fsync of the directory).
pub fn write_atomic(path: &Path, content: &str) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp.{}", std::process::id()));
    {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(content.as_bytes())?;
        f.sync_all()?;
    }
    fs::rename(&tmp, path)?;
    fs::File::open(dir)?.sync_all()
}

/// The daemon's state directory.
#[derive(Debug, Clone)]
pub struct StateDir {
    dir: PathBuf,
}

impl StateDir {
    /// Creates the directory (mode 0700) when missing.
    pub fn open(dir: &Path) -> io::Result<StateDir> {
        use std::os::unix::fs::DirBuilderExt;
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
        Ok(StateDir {
            dir: dir.to_path_buf(),
        })
    }

    /// Path of one state file.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Reads a state file; `Ok(None)` when it does not exist. Bytes that are not UTF-8 come
    /// back replaced, so the caller's parser reports the file as corrupt.
    pub fn read(&self, name: &str) -> io::Result<Option<String>> {
        match fs::read(self.path(name)) {
            Ok(b) => Ok(Some(String::from_utf8_lossy(&b).into_owned())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Replaces a state file atomically: the old or the new content is there, never a mix.
    pub fn write(&self, name: &str, content: &str) -> io::Result<()> {
        write_atomic(&self.path(name), content)
    }

    /// Takes the state directory's lock (`lock`), held while a daemon runs (so `reset` and
    /// `silence` never edit files a running daemon would overwrite); `None` when another
    /// process holds it.
    pub fn try_lock(&self) -> io::Result<Option<StateLock>> {
        use nix::fcntl::{Flock, FlockArg};
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.path(LOCK_FILE))?;
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => Ok(Some(StateLock { _lock: lock })),
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => Ok(None),
            Err((_, e)) => Err(io::Error::from(e)),
        }
    }

    /// Reads the file `name` and parses it: `None` when there is none; also `None` when it
    /// cannot be read or `parse` rejects it (then it is moved aside as `NAME.corrupt`), each
    /// said at WARNING with the file, `what` it holds and what the daemon does `instead`.
    pub fn load<T, E: std::fmt::Display>(
        &self,
        name: &str,
        what: &str,
        instead: &str,
        parse: impl FnOnce(&str) -> Result<T, E>,
    ) -> Option<T> {
        let file = self.path(name);
        let text = match self.read(name) {
            Ok(text) => text?,
            Err(e) => {
                tracing::warn!(file = %file.display(), error = %e, "cannot read the {what}; {instead}");
                return None;
            }
        };
        match parse(&text) {
            Ok(v) => Some(v),
            Err(e) => {
                let moved = self.quarantine(name);
                tracing::warn!(
                    file = %file.display(),
                    error = %e,
                    moved_to = ?moved.ok(),
                    "corrupt {what}; moved aside, {instead}"
                );
                None
            }
        }
    }

    /// Moves a corrupt file aside (`NAME.corrupt`) so it can be inspected and is not read again.
    pub fn quarantine(&self, name: &str) -> io::Result<PathBuf> {
        let to = self.dir.join(format!("{name}.corrupt"));
        fs::rename(self.path(name), &to)?;
        Ok(to)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn load_parses_and_moves_a_corrupt_file_aside() {
        let tmp = tempfile::tempdir().unwrap();
        let st = StateDir::open(tmp.path()).unwrap();
        let parse = |t: &str| t.trim().parse::<u32>().map_err(|e| e.to_string());
        assert_eq!(st.load("n", "number", "using none", parse), None);
        st.write("n", "42\n").unwrap();
        assert_eq!(st.load("n", "number", "using none", parse), Some(42));
        st.write("n", "forty-two").unwrap();
        assert_eq!(st.load("n", "number", "using none", parse), None);
        assert_eq!(st.read("n").unwrap(), None, "moved aside");
        assert_eq!(
            std::fs::read_to_string(tmp.path().join("n.corrupt")).unwrap(),
            "forty-two"
        );
    }

    #[test]
    fn write_then_read_and_replace() {
        let tmp = tempfile::tempdir().unwrap();
        let st = StateDir::open(&tmp.path().join("a/b")).unwrap();
        assert_eq!(st.read("x").unwrap(), None);
        st.write("x", "one").unwrap();
        st.write("x", "two").unwrap();
        assert_eq!(st.read("x").unwrap().as_deref(), Some("two"));
        let leftovers: Vec<_> = fs::read_dir(tmp.path().join("a/b"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(leftovers, vec![std::ffi::OsString::from("x")]);
        let lock = st.try_lock().unwrap().expect("free");
        assert!(st.try_lock().unwrap().is_none(), "held");
        drop(lock);
        assert!(st.try_lock().unwrap().is_some(), "released");
        std::fs::remove_file(st.path(LOCK_FILE)).unwrap();
        let moved = st.quarantine("x").unwrap();
        assert!(moved.ends_with("x.corrupt"));
        assert_eq!(st.read("x").unwrap(), None);
    }
}
