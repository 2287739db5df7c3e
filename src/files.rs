//! Files the agent keeps in its state directory, replaced whole: a reader
//! (the agent after a crash, `diag`) sees the old contents or the new, never
//! half of either. And files an operator names (a config, a rules file, a
//! key, a bundle), read with a bound: [`read_bounded`].
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

/// Why a named file could not be read by [`read_bounded`].
#[derive(Debug)]
pub enum ReadError {
    Io(io::Error),
    /// A FIFO, a device, a directory, a socket: what it is.
    NotRegular(&'static str),
    /// Larger than the bound (bytes).
    TooLarge(u64),
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadError::Io(e) => write!(f, "{e}"),
            ReadError::NotRegular(what) => {
                write!(f, "it is {what}, not a regular file; name a file")
            }
            ReadError::TooLarge(max) => write!(f, "it is larger than {max} bytes"),
        }
    }
}

/// The whole of a regular file of at most `max` bytes. The bound holds while
/// reading (at most `max + 1` bytes are read, whatever the file claims), and
/// a FIFO, a device or a directory is refused without waiting on it: it is
/// opened non-blocking and checked before a byte is read.
pub fn read_bounded(path: &Path, max: u64) -> Result<Vec<u8>, ReadError> {
    use std::io::Read as _;
    use std::os::unix::fs::FileTypeExt as _;
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NONBLOCK)
        .open(path)
        .map_err(ReadError::Io)?;
    let kind = file.metadata().map_err(ReadError::Io)?.file_type();
    let not_regular = if kind.is_dir() {
        Some("a directory")
    } else if kind.is_fifo() {
        Some("a FIFO")
    } else if kind.is_char_device() || kind.is_block_device() {
        Some("a device")
    } else if kind.is_socket() {
        Some("a socket")
    } else {
        None
    };
    if let Some(what) = not_regular {
        return Err(ReadError::NotRegular(what));
    }
    let mut bytes = Vec::new();
    file.take(max.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(ReadError::Io)?;
    if bytes.len() as u64 > max {
        return Err(ReadError::TooLarge(max));
    }
    Ok(bytes)
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
    fn bounded_reads_refuse_devices_fifos_directories_and_big_files() {
        let dir = tempfile::tempdir().expect("temp dir");
        let fifo = dir.path().join("fifo");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .expect("mkfifo (coreutils)");
        assert!(made.success());
        for (path, what) in [
            (Path::new("/dev/zero"), "a device"),
            (fifo.as_path(), "a FIFO"),
            (dir.path(), "a directory"),
        ] {
            match read_bounded(path, 1024) {
                Err(ReadError::NotRegular(w)) => assert_eq!(w, what, "{}", path.display()),
                other => panic!("{}: {other:?}", path.display()),
            }
        }
        let file = dir.path().join("f");
        fs::write(&file, b"12345").expect("write");
        assert_eq!(read_bounded(&file, 5).expect("fits"), b"12345");
        assert!(matches!(
            read_bounded(&file, 4),
            Err(ReadError::TooLarge(4))
        ));
        let missing = read_bounded(&dir.path().join("none"), 5).expect_err("missing");
        assert!(matches!(missing, ReadError::Io(ref e) if e.kind() == io::ErrorKind::NotFound));
    }

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
