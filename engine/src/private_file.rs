//! Small JSON files that only their owner may read (the CLI's auth cache, the desktop
//! settings): written atomically (a temporary file in the same folder, then a rename)
//! with mode 0600 in a 0700 folder on Unix, and moved aside rather than overwritten when
//! they cannot be read.
use std::fs::{self, OpenOptions};
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// What failed while writing, for messages like "could not write <path>".
#[derive(Debug)]
pub struct WriteError {
    /// "create the folder of" or "write".
    pub action: &'static str,
    pub error: io::Error,
}

/// Replaces `path` with `contents` atomically; creates its folder (0700) if missing.
pub fn write_atomically(path: &Path, contents: &[u8]) -> Result<(), WriteError> {
    let folder = match path.parent() {
        Some(folder) if !folder.as_os_str().is_empty() => folder.to_owned(),
        _ => PathBuf::from("."),
    };
    if !folder.exists() {
        create_private_folder(&folder).map_err(|error| WriteError {
            action: "create the folder of",
            error,
        })?;
    }
    let mut temp_name = std::ffi::OsString::from(".");
    temp_name.push(path.file_name().unwrap_or_default());
    temp_name.push(format!(
        ".{}.{}.tmp",
        std::process::id(),
        rand::random::<u32>()
    ));
    let temp = folder.join(temp_name);
    let written = write_private_file(&temp, contents).and_then(|()| fs::rename(&temp, path));
    if let Err(error) = written {
        let _ = fs::remove_file(&temp);
        return Err(WriteError {
            action: "write",
            error,
        });
    }
    Ok(())
}

/// Renames an unusable `path` to `<name>.corrupt-<unix ms>` (numbered if taken) and
/// returns where it went.
pub fn set_aside(path: &Path) -> io::Result<PathBuf> {
    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis();
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".corrupt-{millis}"));
    let mut aside = path.with_file_name(&name);
    let mut attempt = 1;
    while aside.exists() {
        let mut numbered = name.clone();
        numbered.push(format!("-{attempt}"));
        aside = path.with_file_name(numbered);
        attempt += 1;
    }
    fs::rename(path, &aside)?;
    Ok(aside)
}

/// Creates `folder` and any missing parents with mode 0700 on Unix (the default ACL of
/// the user's profile elsewhere); an existing folder is left as it is.
#[cfg(unix)]
pub fn create_private_folder(folder: &Path) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt as _;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(folder)
}

#[cfg(not(unix))]
pub fn create_private_folder(folder: &Path) -> io::Result<()> {
    fs::create_dir_all(folder)
}

fn write_private_file(path: &Path, contents: &[u8]) -> io::Result<()> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(contents)?;
    file.sync_all()
}
