//! Runs a program as another Unix user (`nobody`, uid 65534), the way a second person on
//! the same computer would try to reach what the runner started. Needs `setpriv` and the
//! right to change uid (root); where either is missing the attempt is skipped, and says so.
use std::path::Path;
use std::process::{Command, Output};

const NOBODY: &str = "65534";

/// The output of `program args…` run as `nobody`, or `None` (with a visible reason on
/// stderr) where this machine cannot run it as another user.
pub fn run(program: &str, args: &[&str]) -> Option<Output> {
    let setpriv = ["/usr/bin/setpriv", "/bin/setpriv"]
        .into_iter()
        .find(|path| Path::new(path).exists());
    let Some(setpriv) = setpriv else {
        eprintln!("SKIPPED: setpriv is missing, so nothing can be tried as another user");
        return None;
    };
    // /proc/self belongs to the process's effective user.
    let uid =
        std::os::unix::fs::MetadataExt::uid(&std::fs::metadata("/proc/self").expect("procfs"));
    if uid != 0 {
        eprintln!("SKIPPED: only root can run a test program as another user");
        return None;
    }
    let output = Command::new(setpriv)
        .args([
            &format!("--reuid={NOBODY}"),
            &format!("--regid={NOBODY}"),
            "--clear-groups",
            "--",
            program,
        ])
        .args(args)
        .output()
        .expect("setpriv runs");
    Some(output)
}

/// `tests/support/raw_ws.py` against `url` as `nobody`: the handshake's status line and
/// the first message, as text.
pub fn raw_websocket(url: &str, token: &str) -> Option<String> {
    let script = raw_ws_script();
    let output = run("/usr/bin/python3", &[&script, url, token])?;
    Some(
        String::from_utf8_lossy(&output.stdout).into_owned()
            + &String::from_utf8_lossy(&output.stderr),
    )
}

/// The raw WebSocket client, run as this user.
pub fn raw_websocket_as_me(url: &str, token: &str) -> String {
    let output = Command::new("/usr/bin/python3")
        .args([&raw_ws_script(), url, token])
        .output()
        .expect("python3 runs");
    String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr)
}

fn raw_ws_script() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/support/raw_ws.py")
        .display()
        .to_string()
}
