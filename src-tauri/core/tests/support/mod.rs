//! A private desktop session for integration tests: a D-Bus session bus, and whatever
//! daemons a test needs on it (gnome-keyring, Xvfb, dunst), all ended when the test ends,
//! also when it panics.
//!
//! The code under test finds the bus through `DBUS_SESSION_BUS_ADDRESS`, and the
//! workspace forbids `unsafe` (so no `std::env::set_var`). So the outer test starts the
//! daemons and runs an `#[ignore]`d inner test of the same binary in a child process with
//! that variable set ([`run_inner`]); the inner test does nothing unless [`is_inner`].
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const INNER: &str = "LINZUMI_CORE_INNER_TEST";
pub const DIR_VAR: &str = "LINZUMI_CORE_TEST_DIR";

/// True in the child process started by [`run_inner`].
pub fn is_inner() -> bool {
    std::env::var_os(INNER).is_some()
}

/// The folder the outer test made for this run (in the inner test).
pub fn inner_dir() -> PathBuf {
    PathBuf::from(std::env::var_os(DIR_VAR).expect("run by the outer test"))
}

/// Fails with the fix when a program the test needs is not installed.
pub fn require(program: &str) {
    let found = std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()));
    assert!(
        found,
        "`{program}` is not installed, and this test needs it: run scripts/setup-tests.sh \
         (it installs dbus-daemon, gnome-keyring, dunst and xvfb)"
    );
}

pub fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A temporary folder and the daemons started in it; Drop ends the daemons (SIGTERM, then
/// SIGKILL) and removes the folder, printing the daemons' logs if the test failed.
pub struct Session {
    pub dir: PathBuf,
    children: Vec<(String, Child)>,
    pub bus: Option<String>,
}

impl Session {
    pub fn new(name: &str) -> Session {
        let dir = std::env::temp_dir().join(format!(
            "linzumi-core-{name}-{}-{}",
            std::process::id(),
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Session {
            dir,
            children: Vec::new(),
            bus: None,
        }
    }

    fn log(&self, name: &str) -> std::fs::File {
        std::fs::File::create(self.dir.join(format!("{name}.log"))).unwrap()
    }

    /// Starts `command` with its stderr in `<name>.log` and keeps it to end it later.
    pub fn spawn(&mut self, name: &str, command: &mut Command) -> &mut Child {
        if let Some(bus) = &self.bus {
            command.env("DBUS_SESSION_BUS_ADDRESS", bus);
        }
        let child = command
            .stderr(self.log(name))
            .spawn()
            .unwrap_or_else(|error| panic!("could not start {name}: {error}"));
        self.children.push((name.to_owned(), child));
        &mut self.children.last_mut().unwrap().1
    }

    /// A private session bus (no service activation: only what the test starts runs).
    pub fn start_bus(&mut self) -> String {
        require("dbus-daemon");
        let config = self.dir.join("session.conf");
        std::fs::write(
            &config,
            format!(
                r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:dir={}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"#,
                self.dir.display()
            ),
        )
        .unwrap();
        let child = self.spawn(
            "dbus-daemon",
            Command::new("dbus-daemon")
                .arg(format!("--config-file={}", config.display()))
                .args(["--nofork", "--print-address=1"])
                .stdin(Stdio::null())
                .stdout(Stdio::piped()),
        );
        let address = first_line(child, "dbus-daemon's address");
        self.bus = Some(address.clone());
        address
    }

    /// gnome-keyring's Secret Service, unlocked, on the session bus.
    pub fn start_keyring(&mut self) {
        require("gnome-keyring-daemon");
        let data = self.dir.join("data");
        let runtime = self.dir.join("runtime");
        for dir in [&data, &runtime] {
            std::fs::create_dir_all(dir).unwrap();
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&runtime, std::fs::Permissions::from_mode(0o700)).unwrap();
        }
        let home = self.dir.clone();
        // `--unlock` reads the new login keyring's password from stdin until EOF.
        let keyring = self.spawn(
            "gnome-keyring-daemon",
            Command::new("gnome-keyring-daemon")
                .args(["--foreground", "--unlock", "--components=secrets"])
                .env("HOME", &home)
                .env("XDG_DATA_HOME", &data)
                .env("XDG_RUNTIME_DIR", &runtime)
                .stdin(Stdio::piped())
                .stdout(Stdio::null()),
        );
        let mut stdin = keyring.stdin.take().unwrap();
        std::io::Write::write_all(&mut stdin, b"test-keyring-password").unwrap();
        drop(stdin);
        self.wait_for_name("org.freedesktop.secrets");
    }

    /// An X server for daemons that need a display; returns `:N`.
    pub fn start_xvfb(&mut self) -> String {
        require("Xvfb");
        let child = self.spawn(
            "xvfb",
            Command::new("Xvfb")
                .args([
                    "-displayfd",
                    "1",
                    "-screen",
                    "0",
                    "800x600x24",
                    "-nolisten",
                    "tcp",
                ])
                .stdin(Stdio::null())
                .stdout(Stdio::piped()),
        );
        format!(":{}", first_line(child, "Xvfb's display number"))
    }

    /// Waits until `name` is owned on the session bus.
    pub fn wait_for_name(&self, name: &str) {
        require("dbus-send");
        let bus = self.bus.clone().expect("start_bus first");
        wait_until(
            &format!("{name} is on the bus"),
            Duration::from_secs(15),
            || {
                Command::new("dbus-send")
                    .arg(format!("--bus={bus}"))
                    .args([
                        "--print-reply",
                        "--dest=org.freedesktop.DBus",
                        "/org/freedesktop/DBus",
                        "org.freedesktop.DBus.NameHasOwner",
                    ])
                    .arg(format!("string:{name}"))
                    .output()
                    .is_ok_and(|output| {
                        String::from_utf8_lossy(&output.stdout).contains("boolean true")
                    })
            },
        );
    }

    /// Runs the inner test `name` of this test binary with the session's bus and folder,
    /// and fails with its output if it fails.
    pub fn run_inner(&self, name: &str, extra_env: &[(&str, &str)]) {
        let mut command = Command::new(std::env::current_exe().unwrap());
        command
            .args([
                name,
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(INNER, "1")
            .env(DIR_VAR, &self.dir)
            .env_remove("DISPLAY")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(bus) = &self.bus {
            command.env("DBUS_SESSION_BUS_ADDRESS", bus);
        }
        for (key, value) in extra_env {
            command.env(key, value);
        }
        let mut child = command.spawn().unwrap();
        let stdout = drain(child.stdout.take().unwrap());
        let stderr = drain(child.stderr.take().unwrap());
        let deadline = Instant::now() + Duration::from_secs(120);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break Some(status);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let stdout = stdout.join().unwrap();
        let stderr = stderr.join().unwrap();
        println!("--- inner test {name} ---\n{stdout}{stderr}");
        assert!(
            status.is_some_and(|status| status.success()),
            "the inner test {name} failed ({status:?}):\n{stdout}\n{stderr}"
        );
        assert!(
            stdout.contains("1 passed"),
            "the inner test {name} did not run:\n{stdout}"
        );
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        // Newest first: dependents before the bus they use.
        for (name, mut child) in self.children.drain(..).rev() {
            let _ = Command::new("kill")
                .arg(child.id().to_string())
                .stderr(Stdio::null())
                .status();
            let deadline = Instant::now() + Duration::from_secs(3);
            while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            if child.try_wait().ok().flatten().is_none() {
                let _ = child.kill();
                let _ = child.wait();
            }
            if std::thread::panicking() {
                let log = std::fs::read_to_string(self.dir.join(format!("{name}.log")))
                    .unwrap_or_default();
                eprintln!("--- {name} log ---\n{log}");
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn first_line(child: &mut Child, what: &str) -> String {
    let stdout = child.stdout.take().expect("stdout is piped");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        let _ = reader.read_line(&mut line);
        let _ = tx.send(line);
        // Keep reading so that the daemon never blocks on a full pipe.
        let _ = std::io::copy(&mut reader, &mut std::io::sink());
    });
    let line = rx
        .recv_timeout(Duration::from_secs(15))
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"));
    let line = line.trim().to_owned();
    assert!(!line.is_empty(), "no {what}: the program exited");
    line
}

fn drain(mut stream: impl std::io::Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = stream.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

/// Unix permission bits of `path`.
#[cfg(unix)]
pub fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}
