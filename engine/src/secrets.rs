//! The secrets this process holds (Kandan access tokens, Codex capability tokens), so that
//! none of them reaches a place someone else can read: the environment of a child process
//! (a command Codex runs can print its environment), or a line of the log (libraries log
//! request lines and headers at trace level).
//!
//! The set is process-wide on purpose: masking a secret of another shared folder too is
//! harmless, and a front cannot forget to pass it to each writer.
use std::borrow::Cow;
use std::collections::BTreeSet;
use std::ffi::{OsStr, OsString};
use std::io::Write;
use std::sync::{Mutex, PoisonError};

/// What a masked secret reads as.
pub const MASK: &str = "[REDACTED]";

/// Variables that carry a secret of ours by name, whatever their value.
const SECRET_VARIABLES: &[&str] = &["KANDAN_TOKEN", "LINZUMI_CODEX_REMOTE_TOKEN"];

/// Shorter strings would mask ordinary words; no token of ours is this short.
const MIN_SECRET_LEN: usize = 12;

static KNOWN: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());

/// Adds `secret` to the set that is masked and kept out of child environments.
pub fn remember(secret: &str) {
    if secret.len() >= MIN_SECRET_LEN {
        KNOWN
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(secret.to_owned());
    }
}

/// `text` with every known secret replaced by [`MASK`].
pub fn mask(text: &str) -> Cow<'_, str> {
    let known = KNOWN.lock().unwrap_or_else(PoisonError::into_inner);
    let mut text = Cow::Borrowed(text);
    for secret in known.iter() {
        if text.contains(secret.as_str()) {
            text = Cow::Owned(text.replace(secret.as_str(), MASK));
        }
    }
    text
}

/// Whether a variable is one of ours by name, or holds a known secret.
fn is_secret(name: &OsStr, value: &OsStr) -> bool {
    if SECRET_VARIABLES.iter().any(|secret| name == *secret) {
        return true;
    }
    let value = value.to_string_lossy();
    let known = KNOWN.lock().unwrap_or_else(PoisonError::into_inner);
    known.iter().any(|secret| value.contains(secret.as_str()))
}

/// Removes this process's secrets from what `command` inherits: Codex, code-server and
/// the TUI run commands (or let a person run them) that can read their environment.
/// Variables the caller set on `command` explicitly are kept.
pub fn clear_from_environment(command: &mut std::process::Command) {
    let explicit: Vec<OsString> = command
        .get_envs()
        .map(|(name, _)| name.to_owned())
        .collect();
    for name in inherited_secrets(std::env::vars_os(), &explicit) {
        command.env_remove(name);
    }
}

/// The variables of `environment` that hold a secret, but for the `explicit` ones.
fn inherited_secrets(
    environment: impl IntoIterator<Item = (OsString, OsString)>,
    explicit: &[OsString],
) -> Vec<OsString> {
    environment
        .into_iter()
        .filter(|(name, value)| !explicit.contains(name) && is_secret(name, value))
        .map(|(name, _)| name)
        .collect()
}

/// A writer that masks known secrets: one is made per log line (as `tracing`'s fmt
/// layer does), which it buffers and writes masked when dropped.
pub struct MaskingWriter<W: Write> {
    inner: W,
    line: Vec<u8>,
}

impl<W: Write> MaskingWriter<W> {
    pub fn new(inner: W) -> Self {
        MaskingWriter {
            inner,
            line: Vec::new(),
        }
    }
}

impl<W: Write> Write for MaskingWriter<W> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.line.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if !self.line.is_empty() {
            let line = std::mem::take(&mut self.line);
            let text = String::from_utf8_lossy(&line);
            self.inner.write_all(mask(&text).as_bytes())?;
        }
        self.inner.flush()
    }
}

impl<W: Write> Drop for MaskingWriter<W> {
    fn drop(&mut self) {
        let _ = self.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_secrets_are_masked_and_short_strings_are_not_secrets() {
        let secret = format!("secret-{}", uuid::Uuid::new_v4());
        remember(&secret);
        remember("short");
        assert_eq!(
            mask(&format!("GET /socket?token={secret} HTTP/1.1")),
            "GET /socket?token=[REDACTED] HTTP/1.1"
        );
        assert_eq!(mask("a short word"), "a short word");
    }

    #[test]
    fn a_masking_writer_masks_what_is_split_over_writes() {
        let secret = format!("secret-{}", uuid::Uuid::new_v4());
        remember(&secret);
        let mut out = Vec::new();
        {
            let mut writer = MaskingWriter::new(&mut out);
            let (head, tail) = secret.split_at(5);
            write!(writer, "Authorization: Bearer {head}").unwrap();
            writeln!(writer, "{tail}").unwrap();
        }
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "Authorization: Bearer [REDACTED]\n"
        );
    }

    #[test]
    fn children_inherit_no_secret_of_ours() {
        let secret = format!("secret-{}", uuid::Uuid::new_v4());
        remember(&secret);
        let variable = |name: &str, value: &str| (OsString::from(name), OsString::from(value));
        let environment = [
            variable("PATH", "/usr/bin"),
            variable("KANDAN_TOKEN", "whatever it holds"),
            variable("MY_COPY", &format!("Bearer {secret}")),
            variable("PASSED_ON", &secret),
        ];
        assert_eq!(
            inherited_secrets(environment, &[OsString::from("PASSED_ON")]),
            ["KANDAN_TOKEN", "MY_COPY"]
        );
    }
}
