//! Files in `state_dir`: written atomically (temp file, fsync, rename) so a torn file is never read.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

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
        let path = self.path(name);
        let tmp = self.dir.join(format!(".{name}.tmp.{}", std::process::id()));
        {
            let mut f = fs::File::create(&tmp)?;
            f.write_all(content.as_bytes())?;
            f.sync_all()?;
        }
        fs::rename(&tmp, &path)?;
        fs::File::open(&self.dir)?.sync_all()
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
        let moved = st.quarantine("x").unwrap();
        assert!(moved.ends_with("x.corrupt"));
        assert_eq!(st.read("x").unwrap(), None);
    }
}
