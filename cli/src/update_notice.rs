//! The one-line "a newer linzumi is available" notice. It reads the `version` of the
//! release feed the desktop app's updater reads, at most once a day (a stamp in the state
//! folder), and only for a person at a terminal: never in CI (`CI` set), never with
//! `LINZUMI_NO_UPDATE_NOTICE` set, never when stderr is a pipe or a file. A feed that
//! cannot be read says nothing, and is tried again next time.
use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

/// The feed of the newest release (GitHub redirects it to the release's latest.json).
pub const FEED_URL: &str =
    "https://github.com/linzumi/linzumi-desktop/releases/latest/download/latest.json";
const REPOSITORY: &str = "https://github.com/linzumi/linzumi-desktop";
const DAY: Duration = Duration::from_secs(24 * 60 * 60);
/// A notice is not worth a slow start.
const TIMEOUT: Duration = Duration::from_secs(5);

/// Where and how to look; `None` from [`UpdateNotice::from_env`] when it is off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpdateNotice {
    feed: String,
    stamp: PathBuf,
    current: semver::Version,
}

fn set(name: &str) -> bool {
    std::env::var_os(name).is_some_and(|value| !value.is_empty() && value != "false")
}

impl UpdateNotice {
    /// On for a terminal outside CI. `LINZUMI_UPDATE_FEED` names another feed (the
    /// tests' local one); the stamp lives in the state folder (`$XDG_STATE_HOME/linzumi`).
    pub fn from_env() -> Option<UpdateNotice> {
        if set("LINZUMI_NO_UPDATE_NOTICE") || set("CI") || !std::io::stderr().is_terminal() {
            return None;
        }
        Some(UpdateNotice {
            feed: std::env::var("LINZUMI_UPDATE_FEED").unwrap_or_else(|_| FEED_URL.to_owned()),
            stamp: dirs::state_dir()?
                .join("linzumi")
                .join("update-notice-checked"),
            current: env!("CARGO_PKG_VERSION").parse().ok()?,
        })
    }

    /// The notice, when a day has passed since the last look and the feed offers a newer
    /// version than this one.
    pub async fn check(&self) -> Option<String> {
        if self.looked_within_a_day() {
            return None;
        }
        let offered = tokio::time::timeout(TIMEOUT, self.offered_version())
            .await
            .ok()??;
        self.remember_look();
        notice(&self.current, &offered)
    }

    fn looked_within_a_day(&self) -> bool {
        std::fs::metadata(&self.stamp)
            .and_then(|stamp| stamp.modified())
            .ok()
            .and_then(|at| SystemTime::now().duration_since(at).ok())
            .is_some_and(|age| age < DAY)
    }

    fn remember_look(&self) {
        if let Some(folder) = self.stamp.parent() {
            let _ = std::fs::create_dir_all(folder);
        }
        let _ = std::fs::write(&self.stamp, b"");
    }

    async fn offered_version(&self) -> Option<semver::Version> {
        let tls = linzumi_engine::tls::client_config(None).ok()?;
        let client = linzumi_engine::http::client_builder(tls)
            // No credentials go with this request, and the release download redirects.
            .redirect(reqwest::redirect::Policy::limited(5))
            .timeout(TIMEOUT)
            .build()
            .ok()?;
        let feed: serde_json::Value = client
            .get(&self.feed)
            .send()
            .await
            .ok()?
            .error_for_status()
            .ok()?
            .json()
            .await
            .ok()?;
        feed.get("version")?
            .as_str()?
            .trim_start_matches('v')
            .parse()
            .ok()
    }
}

/// The line for `offered`, when it is newer than `current`.
fn notice(current: &semver::Version, offered: &semver::Version) -> Option<String> {
    (offered > current).then(|| {
        format!(
            "linzumi: a newer linzumi is available: {offered} (this is {current}); \
             see {REPOSITORY}/releases/tag/v{offered}"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn version(text: &str) -> semver::Version {
        text.parse()
            .unwrap_or_else(|_| semver::Version::new(0, 0, 0))
    }

    #[test]
    fn only_a_newer_version_is_announced() {
        let current = version("0.1.0");
        assert_eq!(
            notice(&current, &version("0.2.0")).as_deref(),
            Some(
                "linzumi: a newer linzumi is available: 0.2.0 (this is 0.1.0); \
                 see https://github.com/linzumi/linzumi-desktop/releases/tag/v0.2.0"
            )
        );
        assert_eq!(notice(&current, &version("0.1.0")), None);
        assert_eq!(notice(&current, &version("0.0.9")), None);
        assert_eq!(notice(&current, &version("0.1.0-rc.1")), None);
    }
}
