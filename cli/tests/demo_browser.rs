//! `linzumi demo` in a real browser: headless Chromium (driven by playwright-core)
//! replies in the thread page, approves the command, and sees the answer stream in.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("linzumi-demo-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::canonicalize(dir).unwrap()
}

#[test]
fn the_demo_page_drives_codex_in_headless_chromium() {
    let project = scratch("project");
    let home = scratch("home");
    let stderr_path = home.join("linzumi.stderr");
    let mut demo = Command::new(env!("CARGO_BIN_EXE_linzumi"))
        .args(["demo"])
        .arg(&project)
        .args(["--port", "0", "--no-open", "--mock-model"])
        .args([
            "--approval-policy",
            "untrusted",
            "--sandbox",
            "danger-full-access",
        ])
        .arg("--codex-bin")
        .arg(mock_model_api::codex_bin().unwrap())
        .env("HOME", &home)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .spawn()
        .unwrap();

    // Wait for the runner to announce the page (it prints once it is connected).
    let deadline = Instant::now() + Duration::from_secs(60);
    let page = loop {
        let text = std::fs::read_to_string(&stderr_path).unwrap_or_default();
        if text.contains("is connected to Kandan")
            && let Some(url) = text
                .lines()
                .find_map(|line| line.strip_prefix("Linzumi demo: open "))
        {
            break url.to_owned();
        }
        assert!(
            Instant::now() < deadline,
            "linzumi demo did not start:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };

    // The page needs the run's key, which only the printed URL carries.
    let (bare, key) = page.split_once("?key=").expect("the URL carries the key");
    assert!(key.len() >= 43, "{page}");
    let refused = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", bare])
        .output()
        .expect("curl is installed by scripts/setup-tests.sh");
    assert_eq!(String::from_utf8_lossy(&refused.stdout), "401");

    let browser_tests = workspace().join("tests/browser");
    if !browser_tests.join("node_modules/playwright-core").exists() {
        let status = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
            .current_dir(&browser_tests)
            .status()
            .expect("npm is installed by scripts/setup.sh");
        assert!(status.success(), "npm ci failed in tests/browser");
    }
    let artifacts = workspace().join(".artifacts");
    let output = Command::new("node")
        .arg(browser_tests.join("demo.mjs"))
        .arg(&page)
        .arg(&artifacts)
        .output()
        .expect("node is installed by scripts/setup.sh");

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(demo.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = demo.wait().unwrap();
    assert!(
        output.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(artifacts.join("demo-thread.png").exists());
    assert!(
        status.success(),
        "{}",
        std::fs::read_to_string(&stderr_path).unwrap()
    );
    let _ = std::fs::remove_dir_all(project);
    let _ = std::fs::remove_dir_all(home);
}
