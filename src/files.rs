//! Files the agent keeps in its state directory, replaced whole: a reader
//! (the agent after a crash, `diag`) sees the old contents or the new, never
//! half of either.
//!
//! The one way to do it: write `{name}.tmp` beside the file, fsync it,
//! rename it over the file. Callers whose file is a commit point (the
//! queue's state, the provisioning journal) also fsync the directory, so
//! that the rename itself survives a power cut; the status file for `diag`
//! does not need to, and spares the flash.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

/// Replaces `path` with what `write` puts in a new file of the given
/// permission bits (before the umask). On error the temp file is removed and
/// `path` is untouched.
pub fn replace(
    path: &Path,
    mode: u32,
    write: impl FnOnce(&mut File) -> io::Result<()>,
) -> io::Result<()> {
    let temp = temp_path(path);
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&temp)?;
        write(&mut file)?;
        file.sync_all()?;
        fs::rename(&temp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&temp);
    }
    result
}

/// Makes the renames in `dir` durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// `{name}.tmp` beside `path`.
pub fn temp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    path.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;
    use std::os::unix::fs::PermissionsExt as _;

    #[test]
    fn the_file_is_replaced_whole_with_its_mode() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("state.json");
        fs::write(&path, "old").expect("write");
        replace(&path, 0o600, |f| f.write_all(b"new")).expect("replace");
        assert_eq!(fs::read_to_string(&path).expect("read"), "new");
        let mode = fs::metadata(&path).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(!temp_path(&path).exists());
        sync_dir(dir.path()).expect("sync");
    }

    #[test]
    fn a_failed_write_leaves_the_old_file_and_no_temp() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("state");
        fs::write(&path, "old").expect("write");
        let failed = replace(&path, 0o644, |f| {
            f.write_all(b"half")?;
            Err(io::Error::other("disk full"))
        });
        assert!(failed.is_err());
        assert_eq!(fs::read_to_string(&path).expect("read"), "old");
        assert!(!temp_path(&path).exists());
    }
}
