//! The runner's JSONL event log: one object per line with `ts` and `event`. It lives in
//! the user's own state folder ([`default_path`]) unless `--log-file` says otherwise,
//! never by default in the shared folder, which Codex may write.
//!
//! The file is opened without following a link at its name, made private (0600 in a
//! 0700 folder on Unix), and rotated by size: at most [`MAX_FILE_BYTES`] and
//! three older generations. A line is at most [`MAX_LINE_BYTES`]: long texts in an
//! event are cut, and an event still too long is written as a summary (its size and
//! beginning), both marked `"truncated": true`; a flood of huge controls grows the
//! log by a bounded amount and each is still seen.
//!
//! Secrets never reach the file and neither do contents (see [`redact`]); any occurrence
//! of a known secret (the access token) anywhere in a line is masked too.
//! A failing write (a full disk, a removed folder) never stops the runner: the first
//! failure is reported once, later lines are counted, and logging resumes by itself. A
//! line is written whole or not at all.
mod file;
mod redact;

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use serde_json::{Map, Value, json};
use tracing::warn;

use file::LogFile;
use redact::Redactor;

/// The longest line written, newline included.
pub const MAX_LINE_BYTES: usize = 16 * 1024;
/// The size past which the log is rotated.
pub const MAX_FILE_BYTES: u64 = 10 * 1024 * 1024;
/// How much of an oversized line its summary shows. JSON escaping can grow text at most
/// sixfold (`\u0001`), so the summary stays well under [`MAX_LINE_BYTES`].
const HEAD_BYTES: usize = 2 * 1024;

/// Why the log cannot be written where it was asked to be.
#[derive(Debug, thiserror::Error)]
pub enum EventLogError {
    #[error(
        "refusing to write the event log to {}: it is a symbolic link, and writing would change the file it points to",
        path.display()
    )]
    Symlink { path: PathBuf },
    #[error(
        "refusing to write the event log to {}: it is not a regular file",
        path.display()
    )]
    NotAFile { path: PathBuf },
    #[error(
        "refusing to write the event log to {}: the file has other hard links, and writing would change them too",
        path.display()
    )]
    HardLinked { path: PathBuf },
    #[error("cannot open the event log {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Where a runner logs unless told otherwise: `<state folder>/<runner id>.jsonl`, with
/// the state folder `$XDG_STATE_HOME/linzumi/logs` (else `~/.local/state/linzumi/logs`)
/// on Linux, `~/Library/Logs/Linzumi` on macOS and `%LOCALAPPDATA%\Linzumi\logs` on
/// Windows. `None` when the system names no home folder.
pub fn default_path(runner_id: &str) -> Option<PathBuf> {
    let name = match super::sanitize(runner_id) {
        name if name.is_empty() => "runner".to_owned(),
        name => name,
    };
    Some(default_folder()?.join(format!("{name}.jsonl")))
}

#[cfg(target_os = "macos")]
fn default_folder() -> Option<PathBuf> {
    Some(
        dirs::home_dir()?
            .join("Library")
            .join("Logs")
            .join("Linzumi"),
    )
}

#[cfg(windows)]
fn default_folder() -> Option<PathBuf> {
    Some(dirs::data_local_dir()?.join("Linzumi").join("logs"))
}

#[cfg(not(any(target_os = "macos", windows)))]
fn default_folder() -> Option<PathBuf> {
    Some(dirs::state_dir()?.join("linzumi").join("logs"))
}

pub struct EventLog {
    path: Option<PathBuf>,
    secrets: Vec<String>,
    /// [`MAX_FILE_BYTES`] but in tests.
    rotate_at: u64,
    sink: Mutex<Sink>,
}

struct Sink {
    file: Option<LogFile>,
    failing: bool,
    dropped: u64,
}

impl EventLog {
    /// A log writing to `path`, opened now. A link, a hard-linked file or anything but a
    /// file or device at `path` is refused; a file that cannot be opened for another
    /// reason (an unwritable folder) is reported and tried again at the next line.
    pub fn open(path: &Path, secrets: Vec<String>) -> Result<EventLog, EventLogError> {
        EventLog::open_rotating_at(path, secrets, MAX_FILE_BYTES)
    }

    fn open_rotating_at(
        path: &Path,
        secrets: Vec<String>,
        rotate_at: u64,
    ) -> Result<EventLog, EventLogError> {
        let mut sink = Sink {
            file: None,
            failing: false,
            dropped: 0,
        };
        match LogFile::open(path) {
            Ok(file) => sink.file = Some(file),
            Err(error @ EventLogError::Io { .. }) => sink.failed(path, &error),
            Err(refused) => return Err(refused),
        }
        Ok(EventLog {
            path: Some(path.to_owned()),
            secrets: secrets.into_iter().filter(|s| !s.is_empty()).collect(),
            rotate_at,
            sink: Mutex::new(sink),
        })
    }

    /// A log that writes nothing (tests, embedded uses).
    pub fn disabled() -> EventLog {
        EventLog {
            path: None,
            secrets: Vec::new(),
            rotate_at: MAX_FILE_BYTES,
            sink: Mutex::new(Sink {
                file: None,
                failing: false,
                dropped: 0,
            }),
        }
    }

    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Appends `{"ts", "event", ...fields}`, redacted, and cut or summarised when too
    /// long (then with `"truncated": true`).
    pub fn log(&self, event: &str, fields: Value) {
        let Some(path) = &self.path else {
            return;
        };
        let ts = humantime::format_rfc3339_millis(SystemTime::now()).to_string();
        let mut line = Map::new();
        line.insert("ts".into(), Value::String(ts.clone()));
        line.insert("event".into(), Value::String(event.into()));
        let mut redactor = Redactor::new(&self.secrets);
        if let Value::Object(fields) = redactor.redact(fields) {
            line.extend(fields);
        }
        if redactor.cut {
            line.insert("truncated".into(), Value::Bool(true));
        }
        let mut text = redact::mask(Value::Object(line).to_string(), &self.secrets);
        if text.len() >= MAX_LINE_BYTES {
            text = summary(&ts, event, &text);
        }
        text.push('\n');
        let Ok(mut sink) = self.sink.lock() else {
            return;
        };
        sink.write(path, text.as_bytes(), self.rotate_at);
    }
}

/// The line written for an event too large to log whole: its size and its beginning.
fn summary(ts: &str, event: &str, text: &str) -> String {
    let mut head = HEAD_BYTES.min(text.len());
    while !text.is_char_boundary(head) {
        head -= 1;
    }
    json!({"ts": ts, "event": event, "truncated": true, "bytes": text.len(),
        "head": &text[..head]})
    .to_string()
}

impl Sink {
    fn write(&mut self, path: &Path, bytes: &[u8], rotate_at: u64) {
        match self.append(path, bytes, rotate_at) {
            Ok(()) if self.failing => {
                warn!(path = %path.display(), dropped = self.dropped, "the event log is writable again");
                self.failing = false;
                self.dropped = 0;
            }
            Ok(()) => {}
            Err(error) => {
                // Reopen next time: the file may have been removed or the disk freed.
                self.file = None;
                self.failed(path, &error);
                self.dropped += 1;
            }
        }
    }

    /// Appends `bytes`, first rotating the file if they would take it past `rotate_at`.
    fn append(&mut self, path: &Path, bytes: &[u8], rotate_at: u64) -> Result<(), EventLogError> {
        let io = |source| EventLogError::Io {
            path: path.to_owned(),
            source,
        };
        let file = match &mut self.file {
            Some(file) => file,
            None => self.file.insert(LogFile::open(path)?),
        };
        if file.rotates() {
            let len = file.len().map_err(io)?;
            if len > 0 && len + bytes.len() as u64 > rotate_at {
                self.file = None;
                file::rotate(path).map_err(io)?;
                self.file = Some(LogFile::open(path)?);
            }
        }
        match &mut self.file {
            Some(file) => file.append_whole(bytes).map_err(io),
            None => Ok(()),
        }
    }

    fn failed(&mut self, path: &Path, error: &EventLogError) {
        if !self.failing {
            warn!(path = %path.display(), %error, "cannot write the event log; the runner carries on without it");
        }
        self.failing = true;
    }
}

#[cfg(all(test, unix))]
mod tests;
