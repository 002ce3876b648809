//! The editor runtime's state in the terminal: a progress bar while it downloads (on a
//! terminal; indicatif draws nothing otherwise) and one line per state change.
use indicatif::{ProgressBar, ProgressStyle};
use linzumi_engine::editor::runtime::{RuntimeState, RuntimeStatus};
use linzumi_engine::editor::runtime_source::RuntimeUpdate;

#[derive(Default)]
pub struct EditorProgress {
    bar: Option<ProgressBar>,
}

impl EditorProgress {
    pub fn update(&mut self, update: &RuntimeUpdate) {
        match update {
            RuntimeUpdate::Progress { received, total } => {
                let bar = self.bar.get_or_insert_with(|| new_bar(*total));
                bar.set_length(*total);
                bar.set_position(*received);
            }
            RuntimeUpdate::Status(status) => {
                if status.state != RuntimeState::Downloading
                    && let Some(bar) = self.bar.take()
                {
                    bar.finish_and_clear();
                }
                if let Some(line) = describe(status) {
                    eprintln!("{line}");
                }
            }
        }
    }
}

fn new_bar(total: u64) -> ProgressBar {
    let bar = ProgressBar::new(total);
    if let Ok(style) = ProgressStyle::with_template(
        "Editor runtime {bar:30} {bytes}/{total_bytes} ({bytes_per_sec}, {eta} left)",
    ) {
        bar.set_style(style);
    }
    bar
}

fn describe(status: &RuntimeStatus) -> Option<String> {
    let version = status.version.as_deref().unwrap_or("");
    let detail = status.detail.as_deref().unwrap_or("");
    Some(match status.state {
        RuntimeState::Downloading => {
            format!("Downloading the editor runtime (code-server {version}) from Kandan.")
        }
        RuntimeState::Ready => format!("Editor runtime ready: code-server {version}."),
        RuntimeState::Custom => match &status.version {
            Some(version) => format!("Editor: your code-server ({version})."),
            None => return None,
        },
        RuntimeState::Missing | RuntimeState::Failed | RuntimeState::Unsupported => {
            format!("The editor is not available: {detail}")
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_read_as_sentences() {
        let ready = RuntimeStatus {
            state: RuntimeState::Ready,
            version: Some("4.100.3".into()),
            ..RuntimeStatus::default()
        };
        assert_eq!(
            describe(&ready).as_deref(),
            Some("Editor runtime ready: code-server 4.100.3.")
        );
        assert_eq!(
            describe(&RuntimeStatus::failed("checksum mismatch")).as_deref(),
            Some("The editor is not available: checksum mismatch")
        );
        assert_eq!(describe(&RuntimeStatus::custom("/bin/cs".into())), None);
    }
}
