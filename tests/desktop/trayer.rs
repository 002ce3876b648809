//! trayer as the tray host of a test session (an XEmbed tray panel on Xvfb), for the
//! end-to-end test and the desktop benchmark.
use std::process::{Command, Stdio};

use crate::session::Session;

/// The panel's height; trayer also owns a small helper window, told apart by this.
pub const PANEL_HEIGHT: i32 = 24;

/// Starts trayer at the top right of the session's display (`env` names it).
pub fn start(session: &mut Session, env: &[(String, String)]) {
    let mut trayer = Command::new("trayer");
    trayer
        .args([
            "--edge",
            "top",
            "--align",
            "right",
            "--widthtype",
            "request",
        ])
        .args(["--height", &PANEL_HEIGHT.to_string()])
        .envs(env.iter().cloned())
        .stdout(Stdio::null());
    session.spawn("trayer", &mut trayer);
}

/// The panel's geometry, `(x, y, width, height)`; it widens when an icon is embedded.
pub fn panel(env: &[(String, String)]) -> Option<(i32, i32, i32, i32)> {
    let xdotool = |args: &[&str]| {
        Command::new("xdotool")
            .args(args)
            .envs(env.iter().cloned())
            .output()
            .ok()
            .and_then(|output| String::from_utf8(output.stdout).ok())
    };
    xdotool(&["search", "--class", "trayer"])?
        .lines()
        .filter_map(|id| {
            let text = xdotool(&["getwindowgeometry", "--shell", id])?;
            let field = |name: &str| -> Option<i32> {
                text.lines()
                    .find_map(|line| line.strip_prefix(&format!("{name}=")))?
                    .parse()
                    .ok()
            };
            Some((field("X")?, field("Y")?, field("WIDTH")?, field("HEIGHT")?))
        })
        .find(|&(_, _, _, height)| height == PANEL_HEIGHT)
}
