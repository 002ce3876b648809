//! The log file itself: opened for appending without following a link at its name,
//! refused when it is not a file of its own, made private, and rotated by renaming.
//!
//! Why so careful: the name may sit in a folder someone else can write (the shared
//! folder Codex works in, when `--log-file` points there). A link planted at the name
//! would turn every appended line into a write to the link's target (`~/.bashrc`).
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

use super::EventLogError;
use crate::private_file;

/// Old generations kept next to the log: `<name>.1` (newest) to `<name>.3`.
pub(super) const GENERATIONS: u32 = 3;

pub(super) struct LogFile {
    file: File,
    /// A regular file grows and is rotated; a device (`/dev/null`, `/dev/full`) is not.
    rotates: bool,
}

impl LogFile {
    /// Opens `path` for appending, creating it (0600) and its folder (0700) if missing.
    pub(super) fn open(path: &Path) -> Result<LogFile, EventLogError> {
        if let Some(folder) = path.parent().filter(|folder| !folder.exists()) {
            private_file::create_private_folder(folder).map_err(|source| EventLogError::Io {
                path: path.to_owned(),
                source,
            })?;
        }
        let file = options()
            .open(path)
            .map_err(|source| classify(path, source))?;
        let rotates = check(path, &file)?;
        Ok(LogFile { file, rotates })
    }

    pub(super) fn rotates(&self) -> bool {
        self.rotates
    }

    pub(super) fn len(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }

    /// Appends `bytes` whole or not at all: a write cut short (a full disk) is taken
    /// back, so the file never holds half a line for the next line to run into.
    pub(super) fn append_whole(&mut self, bytes: &[u8]) -> io::Result<()> {
        let start = self.len()?;
        self.file.write_all(bytes).inspect_err(|_| {
            let _ = self.file.set_len(start);
        })
    }
}

/// Moves `path` to `<path>.1`, each `<path>.n` to `<path>.n+1`, and drops the oldest.
/// A rename moves a name: a link planted at any of these names is moved or replaced,
/// never written through.
pub(super) fn rotate(path: &Path) -> io::Result<()> {
    for n in (1..GENERATIONS).rev() {
        rename_if_present(&generation(path, n), &generation(path, n + 1))?;
    }
    rename_if_present(path, &generation(path, 1))
}

pub(super) fn generation(path: &Path, n: u32) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

fn rename_if_present(from: &Path, to: &Path) -> io::Result<()> {
    match fs::rename(from, to) {
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

#[cfg(unix)]
fn options() -> OpenOptions {
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut options = OpenOptions::new();
    options
        .create(true)
        .append(true)
        .mode(0o600)
        // O_NOFOLLOW: a link at the name fails the open instead of being followed (even
        // a dangling one, which O_CREAT would otherwise create the target of).
        // O_NONBLOCK: a FIFO at the name fails instead of hanging the runner until
        // someone reads it; regular files and devices ignore it.
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK);
    options
}

/// Windows has no O_NOFOLLOW: FILE_FLAG_OPEN_REPARSE_POINT opens a symbolic link or
/// junction itself rather than its target, and [`check`] then refuses it. Untested here
/// (only Linux runs the tests).
#[cfg(windows)]
fn options() -> OpenOptions {
    use std::os::windows::fs::OpenOptionsExt as _;
    const FILE_FLAG_OPEN_REPARSE_POINT: u32 = 0x0020_0000;
    let mut options = OpenOptions::new();
    options
        .create(true)
        .append(true)
        .custom_flags(FILE_FLAG_OPEN_REPARSE_POINT);
    options
}

/// Names a failed open: a link or a FIFO at the name gets a refusal of its own.
fn classify(path: &Path, source: io::Error) -> EventLogError {
    match fs::symlink_metadata(path) {
        Ok(metadata) if metadata.file_type().is_symlink() => EventLogError::Symlink {
            path: path.to_owned(),
        },
        Ok(metadata) if !metadata.is_file() && !is_device(&metadata) => EventLogError::NotAFile {
            path: path.to_owned(),
        },
        _ => EventLogError::Io {
            path: path.to_owned(),
            source,
        },
    }
}

/// Refuses what was opened unless it is a file of its own (or a character device), and
/// makes a regular file private; returns whether it rotates.
#[cfg(unix)]
fn check(path: &Path, file: &File) -> Result<bool, EventLogError> {
    use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
    let metadata = file.metadata().map_err(|source| EventLogError::Io {
        path: path.to_owned(),
        source,
    })?;
    if is_device(&metadata) {
        return Ok(false);
    }
    if !metadata.is_file() {
        return Err(EventLogError::NotAFile {
            path: path.to_owned(),
        });
    }
    // A second name for the same file (a hard link planted at the log's name pointing
    // at `~/.bashrc`) would be written through just like a symbolic link.
    if metadata.nlink() > 1 {
        return Err(EventLogError::HardLinked {
            path: path.to_owned(),
        });
    }
    if metadata.mode() & 0o077 != 0
        && let Err(error) = file.set_permissions(fs::Permissions::from_mode(0o600))
    {
        tracing::warn!(path = %path.display(), %error, "could not make the event log private");
    }
    Ok(true)
}

#[cfg(windows)]
fn check(path: &Path, file: &File) -> Result<bool, EventLogError> {
    use std::os::windows::fs::MetadataExt as _;
    const FILE_ATTRIBUTE_REPARSE_POINT: u32 = 0x0400;
    let metadata = file.metadata().map_err(|source| EventLogError::Io {
        path: path.to_owned(),
        source,
    })?;
    if metadata.file_attributes() & FILE_ATTRIBUTE_REPARSE_POINT != 0 {
        return Err(EventLogError::Symlink {
            path: path.to_owned(),
        });
    }
    if !metadata.is_file() {
        return Err(EventLogError::NotAFile {
            path: path.to_owned(),
        });
    }
    Ok(true)
}

#[cfg(unix)]
fn is_device(metadata: &fs::Metadata) -> bool {
    use std::os::unix::fs::FileTypeExt as _;
    metadata.file_type().is_char_device()
}

#[cfg(windows)]
fn is_device(_metadata: &fs::Metadata) -> bool {
    false
}
