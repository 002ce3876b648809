//! The "a newer linzumi is available" line of `linzumi version`, against the local release
//! feed of testing/release-feed. `script` gives the binary a real terminal, as a person's.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use release_feed::{Offer, ReleaseFeed};

const NOTICE: &str = "a newer linzumi is available: 0.2.0 (this is 0.1.0)";

struct Run<'a> {
    feed: &'a ReleaseFeed,
    state: &'a Path,
    terminal: bool,
    env: Vec<(&'static str, &'static str)>,
}

impl Run<'_> {
    /// `linzumi version`; what a terminal (or the pipe) showed.
    async fn output(&self) -> String {
        let binary = env!("CARGO_BIN_EXE_linzumi");
        let mut command = if self.terminal {
            let mut command = Command::new("script");
            command.args(["-qec", &format!("'{binary}' version"), "/dev/null"]);
            command
        } else {
            let mut command = Command::new(binary);
            command.arg("version");
            command
        };
        command
            .env_remove("CI")
            .env_remove("LINZUMI_NO_UPDATE_NOTICE")
            .env("LINZUMI_UPDATE_FEED", self.feed.url())
            .env("XDG_STATE_HOME", self.state)
            .envs(self.env.iter().copied());
        let output =
            tokio::task::spawn_blocking(move || command.output().expect("script is in util-linux"))
                .await
                .unwrap();
        assert!(output.status.success(), "{output:?}");
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    }
}

fn scratch() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("linzumi-notice-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test(flavor = "multi_thread")]
async fn a_terminal_is_told_about_a_newer_release_once_a_day() {
    let feed = ReleaseFeed::start(Offer::Newer).await.unwrap();
    let state = scratch();
    let run = Run {
        feed: &feed,
        state: &state,
        terminal: true,
        env: Vec::new(),
    };
    let first = run.output().await;
    assert!(first.contains("linzumi 0.1.0"), "{first}");
    assert!(
        first.contains(NOTICE) && first.contains("/releases/tag/v0.2.0"),
        "{first}"
    );
    assert_eq!(
        first.lines().filter(|line| line.contains(NOTICE)).count(),
        1
    );
    let asked = feed.feed_requests();
    let second = run.output().await;
    assert!(!second.contains(NOTICE), "{second}");
    assert_eq!(feed.feed_requests(), asked, "the feed is read once a day");
    std::fs::remove_dir_all(state).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn ci_the_env_var_and_pipes_get_no_notice_and_no_request() {
    let feed = ReleaseFeed::start(Offer::Newer).await.unwrap();
    let state = scratch();
    for (terminal, env) in [
        (true, vec![("CI", "true")]),
        (true, vec![("LINZUMI_NO_UPDATE_NOTICE", "1")]),
        (false, Vec::new()),
    ] {
        let output = Run {
            feed: &feed,
            state: &state,
            terminal,
            env,
        }
        .output()
        .await;
        assert!(
            output.contains("linzumi 0.1.0") && !output.contains(NOTICE),
            "{output}"
        );
    }
    assert_eq!(feed.feed_requests(), 0);
    std::fs::remove_dir_all(state).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_feed_says_nothing_and_is_tried_again_next_time() {
    let feed = ReleaseFeed::start(Offer::Unreachable).await.unwrap();
    let state = scratch();
    let run = Run {
        feed: &feed,
        state: &state,
        terminal: true,
        env: Vec::new(),
    };
    let quiet = run.output().await;
    assert!(
        !quiet.contains(NOTICE) && !quiet.contains("error"),
        "{quiet}"
    );
    assert_eq!(feed.feed_requests(), 1);
    feed.set(Offer::Newer);
    assert!(run.output().await.contains(NOTICE));
    std::fs::remove_dir_all(state).unwrap();
}
