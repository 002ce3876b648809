//! A runner wired to the Kandan test server and the real codex (against the mock model
//! API), in a throwaway project folder: what every end-to-end test starts from.
#![allow(dead_code)] // each test file uses a different part of the harness

pub mod dev_server;
pub mod other_user;

use std::path::PathBuf;
use std::time::Duration;

use kandan_test_server::{KandanTestServer, RecordedEvent, ServerConfig};
use linzumi_engine::codex::{AppServerSource, AppServerSpec};
use linzumi_engine::kandan_url::KandanUrl;
use linzumi_engine::phoenix::Backoff;
use linzumi_engine::runner::allowed_cwd;
use linzumi_engine::runner::{Runner, RunnerOptions};
use linzumi_engine::session::{ListenUser, SessionOptions};
use mock_model_api::{CodexHome, CodexHomeOptions, MockModelApi};
use serde_json::{Value, json};

pub const WAIT: Duration = Duration::from_secs(30);
pub const RUNNER_ID: &str = "test-runner";
pub const TOPIC: &str = "local_runner:test-runner";
pub const WORKSPACE: &str = "acme";
pub const CHANNEL: &str = "codex";

/// `tests/browser`, with playwright-core installed.
pub fn browser_tests() -> std::path::PathBuf {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/browser");
    if !dir.join("node_modules/playwright-core").exists() {
        let status = std::process::Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
            .current_dir(&dir)
            .status()
            .expect("npm is installed by scripts/setup.sh");
        assert!(status.success(), "npm ci failed in tests/browser");
    }
    dir
}

pub struct Project {
    pub dir: PathBuf,
}

impl Project {
    /// A folder outside any git repository (codex runs git in its cwd).
    pub fn new(name: &str) -> Project {
        let dir = std::env::temp_dir().join(format!(
            "linzumi-e2e-{name}-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Project {
            dir: std::fs::canonicalize(&dir).unwrap(),
        }
    }
}

impl Drop for Project {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub struct Harness {
    pub kandan: KandanTestServer,
    pub model: MockModelApi,
    pub home: CodexHome,
    pub project: Project,
    pub token: String,
    pub log_file: PathBuf,
}

impl Harness {
    pub async fn new(name: &str) -> Harness {
        let kandan = KandanTestServer::start(ServerConfig::default())
            .await
            .unwrap();
        let model = MockModelApi::start().await.unwrap();
        let project = Project::new(name);
        let home = CodexHome::create(
            &model,
            CodexHomeOptions {
                trusted_projects: vec![project.dir.clone()],
                ..CodexHomeOptions::default()
            },
        )
        .unwrap();
        let token = kandan.issue_token("tester", None);
        let log_file = project.dir.join(".kandan-local-codex-runner.log");
        Harness {
            kandan,
            model,
            home,
            project,
            token,
            log_file,
        }
    }

    pub fn codex_source(&self) -> AppServerSource {
        AppServerSource::Spawn(AppServerSpec {
            codex_bin: mock_model_api::codex_bin().unwrap(),
            extra_args: self.home.app_server_args(),
            env: self.home.env(),
            cwd: self.project.dir.clone(),
        })
    }

    pub fn options(&self) -> RunnerOptions {
        let mut options = RunnerOptions::new(
            &KandanUrl::parse(&self.kandan.ws_url()).unwrap(),
            self.token.clone(),
            RUNNER_ID.into(),
            self.project.dir.clone(),
            self.codex_source(),
        );
        let fast = Backoff::new(vec![Duration::from_millis(20)], Duration::from_millis(100));
        options.kandan.reconnect = fast.clone();
        options.kandan.rejoin =
            Backoff::new(vec![Duration::from_millis(50)], Duration::from_millis(100));
        if let Some(tunnel) = &mut options.tunnel {
            tunnel.reconnect = fast;
        }
        options.allowed_roots =
            allowed_cwd::configured_roots(&[self.project.dir.display().to_string()]).unwrap();
        options.log_file = Some(self.log_file.clone());
        options.codex_restart =
            Backoff::new(vec![Duration::from_millis(100)], Duration::from_millis(200));
        options
    }

    pub async fn start_runner(&self) -> Runner {
        Runner::start(self.options()).await.unwrap()
    }

    /// A runner whose owner lets Codex run anything, so Kandan's controls may ask for
    /// full access (the owner's settings are the ceiling of what Kandan may ask).
    pub async fn start_full_access_runner(&self) -> Runner {
        let mut options = self.options();
        options.runtime.sandbox = Some("danger-full-access".into());
        Runner::start(options).await.unwrap()
    }

    /// The URL of `path` on the preview origin of `port` (Kandan's preview proxy).
    pub fn preview_url(&self, port: u16, path: &str) -> String {
        format!(
            "{}{}",
            self.kandan.preview_url(RUNNER_ID, port),
            path.trim_start_matches('/')
        )
    }

    /// GETs `path` on the preview of `port`, the way a browser would.
    pub async fn preview_get(&self, port: u16, path: &str) -> reqwest::Response {
        dev_server::preview_client(&self.kandan, RUNNER_ID, port)
            .get(self.preview_url(port, path))
            .send()
            .await
            .unwrap()
    }

    /// A runner without a chat session that forwards `ports` from the start, tunnel up.
    pub async fn start_forwarding(&self, ports: Vec<u16>) -> Runner {
        let mut options = self.options();
        options.forward_ports = ports;
        let runner = Runner::start(options).await.unwrap();
        self.kandan.wait_for_tunnel(RUNNER_ID, WAIT).await.unwrap();
        runner
    }

    /// Options for a runner bound to the `acme/codex` chat, listening to `tester`.
    pub fn session_options(&self) -> RunnerOptions {
        let mut options = self.options();
        let mut session = SessionOptions::new(
            WORKSPACE.into(),
            CHANNEL.into(),
            ListenUser::parse("tester", Some(("tester".into(), 1))),
        );
        session.stream_flush = Duration::from_millis(50);
        options.channel_session = Some(session);
        options
    }

    /// The thread the runner posted its availability root in.
    pub async fn bound_thread(&self) -> String {
        let messages = self
            .kandan
            .wait_for_thread(
                WORKSPACE,
                CHANNEL,
                |messages| messages.iter().any(|m| m.posted_by_runner.is_some()),
                WAIT,
            )
            .await
            .unwrap();
        messages
            .iter()
            .find(|m| m.payload["structured"]["kind"] == "local_runner_availability")
            .unwrap()
            .thread_id
            .clone()
    }

    /// Posts as a person in the bound thread; returns the message's seq.
    pub async fn say(&self, thread: &str, user: &str, body: &str) -> i64 {
        self.kandan
            .post_user_message(WORKSPACE, CHANNEL, Some(thread), user, body)
            .await
            .unwrap()
            .seq
    }

    /// Says something Codex starts answering and then works on for a minute; returns once
    /// the answer has begun to stream, so the turn is really running.
    pub async fn say_and_keep_codex_busy(&self, thread: &str) -> i64 {
        let seq = self
            .say(
                thread,
                "tester",
                &mock(json!([[{"text": "working on it"}, {"hang_ms": 60000}]])),
            )
            .await;
        self.kandan
            .wait_for_thread(
                WORKSPACE,
                CHANNEL,
                |rows| rows.iter().any(|row| row.payload["reply_to_seq"] == seq),
                WAIT,
            )
            .await
            .unwrap();
        seq
    }

    /// Waits until the message `seq` reaches a state with this status.
    pub async fn state_of(&self, seq: i64, status: &str) -> Value {
        self.state_where(seq, |state| state["status"] == status)
            .await
    }

    /// Waits until the message `seq` has a state matching `pred`, and returns it.
    pub async fn state_where(&self, seq: i64, pred: impl Fn(&Value) -> bool) -> Value {
        let messages = self
            .kandan
            .wait_for_thread(
                WORKSPACE,
                CHANNEL,
                |messages| {
                    messages
                        .iter()
                        .any(|m| m.seq == seq && m.state.as_ref().is_some_and(&pred))
                },
                WAIT,
            )
            .await
            .unwrap_or_else(|error| panic!("message {seq} never reached the state: {error}"));
        messages
            .into_iter()
            .find(|m| m.seq == seq)
            .and_then(|m| m.state)
            .unwrap()
    }

    /// The runner's rows answering `seq`, in order.
    pub fn rows_for(&self, thread: &str, seq: i64) -> Vec<kandan_test_server::ChatMessage> {
        self.kandan
            .thread(WORKSPACE, CHANNEL, thread)
            .into_iter()
            .filter(|m| m.payload["reply_to_seq"] == seq)
            .collect()
    }

    /// Waits for the first event from the runner matching `pred`.
    pub async fn event(&self, pred: impl Fn(&RecordedEvent) -> bool) -> RecordedEvent {
        self.kandan
            .wait_for_event(|event| event.topic == TOPIC && pred(event), WAIT)
            .await
            .unwrap()
    }

    pub async fn control(&self, control: Value) {
        self.kandan.push_control(RUNNER_ID, control).await.unwrap();
    }

    /// Sends a control and returns the runner's `codex_response`/`codex_error` to it.
    pub async fn control_reply(&self, control: Value) -> RecordedEvent {
        let kind = control["type"].as_str().unwrap().to_owned();
        let sent_at = std::time::SystemTime::now();
        self.control(control).await;
        self.kandan
            .wait_for_event(
                |event| {
                    event.topic == TOPIC
                        && event.received_at >= sent_at
                        && (event.event == "codex_response" || event.event == "codex_error")
                        && event.payload["controlType"] == kind.as_str()
                },
                WAIT,
            )
            .await
            .unwrap()
    }

    /// Starts a Codex thread in the project through `start_instance`; returns its id.
    pub async fn start_thread(&self, extra: Value) -> String {
        let mut control = json!({"type": "start_instance", "cwd": self.project.dir});
        if let (Some(control), Value::Object(extra)) = (control.as_object_mut(), extra) {
            control.extend(extra);
        }
        let reply = self.control_reply(control).await;
        assert_eq!(reply.event, "codex_response", "{:?}", reply.payload);
        reply.payload["response"]["thread"]["id"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// Every `codex_notification` the runner pushed, in arrival order.
    pub fn notifications(&self) -> Vec<Value> {
        self.kandan
            .events_for(TOPIC)
            .into_iter()
            .filter(|event| event.event == "codex_notification")
            .map(|event| event.payload)
            .collect()
    }

    pub async fn notification(&self, method: &str, pred: impl Fn(&Value) -> bool) -> Value {
        self.event(|event| {
            event.event == "codex_notification"
                && event.payload["method"] == method
                && pred(&event.payload["params"])
        })
        .await
        .payload
    }

    pub fn log_lines(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.log_file)
            .unwrap_or_default()
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect()
    }
}

/// A prompt that scripts the mock model.
pub fn mock(steps: Value) -> String {
    format!("mock: {}", json!({ "steps": steps }))
}

pub fn text_input(text: &str) -> Value {
    json!([{"type": "text", "text": text}])
}
