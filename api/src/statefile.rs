//! The files the daemons keep in their state directory (overlayd's
//! `overlays.json`, varpd's `varpd.json`), as files: written whole and
//! atomically, read back, and set aside when unusable. What is in them,
//! and how it is checked, is each daemon's business.
//!
//! A write goes to `NAME.tmp`, is fsync'd, renamed over `NAME`, and the
//! directory is fsync'd: a crash at any point leaves the old file or the
//! new one, never a mix. A `NAME.tmp` found on reading is a save a crash
//! interrupted; it is removed and `NAME` read. An unusable `NAME` is renamed
//! to `NAME.corrupt-UNIXTIME` (never over an earlier one), contents intact.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// One state file: `name` in directory `dir`.
#[derive(Clone, Copy, Debug)]
pub struct StateFile<'a> {
    /// The state directory.
    pub dir: &'a Path,
    /// The file's name in it.
    pub name: &'a str,
}

/// What reading a state file found.
#[derive(Debug)]
pub struct Read {
    /// Its text; `None` when there is no file (nothing was ever saved).
    pub text: Option<String>,
    /// A temp file a crashed save left: removed (`Ok`), or not (`Err`).
    pub stale_temp: Option<(PathBuf, io::Result<()>)>,
}

impl StateFile<'_> {
    /// The file's path.
    pub fn path(&self) -> PathBuf {
        self.dir.join(self.name)
    }

    fn temp(&self) -> PathBuf {
        self.dir.join(format!("{}.tmp", self.name))
    }

    /// Reads the file, first removing a temp file a crashed save left.
    pub fn read(&self) -> io::Result<Read> {
        let tmp = self.temp();
        let stale_temp = match fs::remove_file(&tmp) {
            Ok(()) => Some((tmp, Ok(()))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => Some((tmp, Err(e))),
        };
        let text = match fs::read_to_string(self.path()) {
            Ok(t) => Some(t),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        Ok(Read { text, stale_temp })
    }

    /// Replaces the file with `text`, atomically and durably.
    pub fn write(&self, text: &str) -> io::Result<()> {
        let tmp = self.temp();
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, self.path())?;
        File::open(self.dir)?.sync_all()
    }

    /// Renames an unusable file to `NAME.corrupt-UNIXTIME` (`.1`, `.2`...
    /// after an earlier one of the same second) and returns where it went.
    pub fn set_aside(&self) -> io::Result<PathBuf> {
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let base = format!("{}.corrupt-{secs}", self.name);
        let mut to = self.dir.join(&base);
        let mut n = 0;
        while to.exists() {
            n += 1;
            to = self.dir.join(format!("{base}.{n}"));
        }
        fs::rename(self.path(), &to)?;
        File::open(self.dir)?.sync_all()?;
        Ok(to)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_read_and_set_aside() {
        let dir = std::env::temp_dir().join(format!("statefile-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let f = StateFile {
            dir: &dir,
            name: "x.json",
        };
        let r = f.read().unwrap();
        assert!(r.text.is_none() && r.stale_temp.is_none());
        f.write("one\n").unwrap();
        f.write("two\n").unwrap();
        assert!(!dir.join("x.json.tmp").exists());
        assert_eq!(f.read().unwrap().text.as_deref(), Some("two\n"));
        // A crash before the rename: the temp is dropped, the file stays.
        fs::write(dir.join("x.json.tmp"), "half").unwrap();
        let r = f.read().unwrap();
        assert_eq!(r.text.as_deref(), Some("two\n"));
        assert!(matches!(r.stale_temp, Some((_, Ok(())))));
        assert!(!dir.join("x.json.tmp").exists());
        // Set aside twice in a second: two files, contents intact.
        let a = f.set_aside().unwrap();
        f.write("three\n").unwrap();
        let b = f.set_aside().unwrap();
        assert_ne!(a, b);
        assert_eq!(fs::read_to_string(&a).unwrap(), "two\n");
        assert_eq!(fs::read_to_string(&b).unwrap(), "three\n");
        assert!(f.read().unwrap().text.is_none());
        fs::remove_dir_all(&dir).unwrap();
    }
}
