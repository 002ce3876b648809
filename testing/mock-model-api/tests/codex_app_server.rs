//! End-to-end: the real `codex app-server` (stdio JSON-RPC) against the mock, one scenario
//! per test. Each test waits on codex's messages with a timeout; nothing sleeps.

// The helpers below are test code too (clippy's allow-unwrap-in-tests only covers #[test]
// functions): a panic there is the test failing, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mock_model_api::{CodexHome, CodexHomeOptions, MockModelApi, codex_bin, directive};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::mpsc;

/// How long one wait for a message may take.
const TIMEOUT: Duration = Duration::from_secs(60);

/// A `codex app-server` child driven over stdio: one JSON object per line each way.
struct AppServer {
    child: Child,
    stdin: ChildStdin,
    incoming: mpsc::UnboundedReceiver<Value>,
    /// Received but not yet consumed, in arrival order.
    pending: VecDeque<Value>,
    stderr: Arc<Mutex<String>>,
    next_id: u64,
}

impl AppServer {
    /// Spawns the app-server in `cwd` and completes the `initialize` handshake.
    async fn start(home: &CodexHome, cwd: &Path) -> AppServer {
        let mut child = Command::new(codex_bin().unwrap())
            .arg("app-server")
            .args(home.app_server_args())
            .envs(home.env())
            .current_dir(cwd)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut stderr_lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let (tx, incoming) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok(Some(line)) = stdout.next_line().await {
                let value = serde_json::from_str(&line)
                    .unwrap_or_else(|error| panic!("non-JSON line from codex ({error}): {line}"));
                if tx.send(value).is_err() {
                    break;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = Arc::clone(&stderr);
        tokio::spawn(async move {
            while let Ok(Some(line)) = stderr_lines.next_line().await {
                let mut sink = sink.lock().unwrap();
                sink.push_str(&line);
                sink.push('\n');
            }
        });
        let mut server = AppServer {
            child,
            stdin,
            incoming,
            pending: VecDeque::new(),
            stderr,
            next_id: 1,
        };
        let init = server
            .request(
                "initialize",
                json!({"clientInfo": {"name": "mock_model_api_tests", "title": "mock-model-api tests", "version": "0.0.1"}}),
            )
            .await;
        assert!(init["userAgent"].is_string(), "initialize result: {init}");
        server.send(json!({"method": "initialized"})).await;
        server
    }

    async fn send(&mut self, message: Value) {
        let mut line = message.to_string();
        line.push('\n');
        self.stdin.write_all(line.as_bytes()).await.unwrap();
        self.stdin.flush().await.unwrap();
    }

    /// The next message, failing the test (with codex's stderr) after [`TIMEOUT`].
    async fn recv(&mut self, waiting_for: &str) -> Value {
        if let Some(message) = self.pending.pop_front() {
            return message;
        }
        match tokio::time::timeout(TIMEOUT, self.incoming.recv()).await {
            Ok(Some(message)) => message,
            Ok(None) => panic!(
                "codex closed stdout while waiting for {waiting_for}; stderr:\n{}",
                self.stderr.lock().unwrap()
            ),
            Err(_) => panic!(
                "timed out waiting for {waiting_for}; stderr:\n{}",
                self.stderr.lock().unwrap()
            ),
        }
    }

    /// Sends a request and returns its `result`; other messages stay queued.
    async fn request(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        self.send(json!({"id": id, "method": method, "params": params}))
            .await;
        let mut others = Vec::new();
        let response = loop {
            let message = self.recv(&format!("the response to {method}")).await;
            if message.get("method").is_none() && message["id"] == id {
                break message;
            }
            others.push(message);
        };
        for message in others.into_iter().rev() {
            self.pending.push_front(message);
        }
        assert!(
            response.get("error").is_none(),
            "{method} failed: {response}"
        );
        response["result"].clone()
    }

    /// Every message up to and including the first one `done` accepts.
    async fn until(&mut self, what: &str, done: impl Fn(&Value) -> bool) -> Vec<Value> {
        let mut seen = Vec::new();
        loop {
            let message = self.recv(what).await;
            let finished = done(&message);
            seen.push(message);
            if finished {
                return seen;
            }
        }
    }

    /// Messages up to and including `turn/completed`.
    async fn until_turn_completed(&mut self) -> Vec<Value> {
        self.until("turn/completed", |m| method(m) == "turn/completed")
            .await
    }

    async fn respond(&mut self, id: &Value, result: Value) {
        self.send(json!({"id": id, "result": result})).await;
    }

    async fn start_thread(&mut self, cwd: &Path, approval: &str) -> String {
        let result = self
            .request(
                "thread/start",
                json!({"cwd": cwd, "approvalPolicy": approval, "sandbox": "danger-full-access"}),
            )
            .await;
        result["thread"]["id"].as_str().unwrap().to_string()
    }

    /// Starts a turn with `text` as the user's message; returns the turn id.
    async fn start_turn(&mut self, thread: &str, text: &str) -> String {
        let result = self
            .request(
                "turn/start",
                json!({"threadId": thread, "input": [{"type": "text", "text": text}]}),
            )
            .await;
        result["turn"]["id"].as_str().unwrap().to_string()
    }

    async fn close(mut self) {
        drop(self.stdin);
        if tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .is_err()
        {
            self.child.kill().await.unwrap();
        }
    }
}

fn method(message: &Value) -> &str {
    message["method"].as_str().unwrap_or_default()
}

fn with_method<'a>(messages: &'a [Value], name: &str) -> Vec<&'a Value> {
    messages.iter().filter(|m| method(m) == name).collect()
}

/// `item/completed` items of one type.
fn completed_items<'a>(messages: &'a [Value], kind: &str) -> Vec<&'a Value> {
    with_method(messages, "item/completed")
        .into_iter()
        .map(|m| &m["params"]["item"])
        .filter(|item| item["type"] == kind)
        .collect()
}

fn turn_status(messages: &[Value]) -> &str {
    let last = messages.last().unwrap();
    assert_eq!(method(last), "turn/completed");
    last["params"]["turn"]["status"].as_str().unwrap()
}

/// The concatenated `delta`s of the notifications named `name`.
fn deltas(messages: &[Value], name: &str) -> (usize, String) {
    let found = with_method(messages, name);
    let text = found
        .iter()
        .map(|m| m["params"]["delta"].as_str().unwrap())
        .collect();
    (found.len(), text)
}

/// A scratch project directory, removed on drop. It lives outside any git repository
/// (codex runs `git status` in the cwd); only CODEX_HOME must avoid /tmp.
struct Project(PathBuf);

impl Project {
    fn new() -> Project {
        let path = std::env::temp_dir()
            .join("mock-model-api-projects")
            .join(uuid::Uuid::new_v4().to_string());
        std::fs::create_dir_all(&path).unwrap();
        Project(path.canonicalize().unwrap())
    }
}

impl Drop for Project {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A mock, a codex home for it, a project and an app-server with one thread.
/// Fields drop in order: codex first, then the mock, its home and the project.
struct Setup {
    server: AppServer,
    thread: String,
    mock: MockModelApi,
    _home: CodexHome,
    project: Project,
}

impl Setup {
    /// `approval` is the thread's `approvalPolicy`; the config says `never` (codex 0.169.0
    /// accepts `untrusted` only as a thread or turn setting).
    async fn new(approval: &str) -> Setup {
        let mock = MockModelApi::start().await.unwrap();
        let project = Project::new();
        let home = CodexHome::create(
            &mock,
            CodexHomeOptions {
                approval_policy: Some("never".into()),
                sandbox_mode: Some("danger-full-access".into()),
                trusted_projects: vec![project.0.clone()],
            },
        )
        .unwrap();
        let mut server = AppServer::start(&home, &project.0).await;
        let thread = server.start_thread(&project.0, approval).await;
        Setup {
            server,
            thread,
            mock,
            _home: home,
            project,
        }
    }

    /// Runs one turn with `prompt` and returns every message up to `turn/completed`.
    async fn turn(&mut self, prompt: &str) -> Vec<Value> {
        self.server.start_turn(&self.thread, prompt).await;
        self.server.until_turn_completed().await
    }

    async fn finish(self) {
        self.server.close().await;
        self.mock.shutdown().await;
    }
}

#[tokio::test]
async fn generated_config_passes_strict_validation() {
    let mock = MockModelApi::start().await.unwrap();
    let project = Project::new();
    let home = CodexHome::create(
        &mock,
        CodexHomeOptions {
            approval_policy: Some("on-request".into()),
            sandbox_mode: Some("workspace-write".into()),
            trusted_projects: vec![project.0.clone()],
        },
    )
    .unwrap();
    let output = Command::new(codex_bin().unwrap())
        .args(["app-server", "--strict-config", "--print-startup-config"])
        .args(home.app_server_args())
        .envs(home.env())
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.contains("appServerVersion"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let config = std::fs::read_to_string(home.path().join("config.toml")).unwrap();
    assert!(config.contains(&mock.base_url()));
    let path = home.path().to_path_buf();
    drop(home);
    assert!(!path.exists(), "the codex home was not removed");
    mock.shutdown().await;
}

#[test]
fn untrusted_approval_is_refused_in_config() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let mock = runtime.block_on(MockModelApi::start()).unwrap();
    let error = CodexHome::create(
        &mock,
        CodexHomeOptions {
            approval_policy: Some("untrusted".into()),
            ..CodexHomeOptions::default()
        },
    )
    .unwrap_err();
    assert!(error.to_string().contains("approvalPolicy"), "{error}");
}

#[tokio::test]
async fn text_turn_streams_deltas_and_completes_with_the_text() {
    let mut setup = Setup::new("never").await;
    let text = "Hello from the mock model.";
    let messages = setup
        .turn(&directive(&json!({"steps": [{"text": text, "deltas": 5}]})))
        .await;
    assert_eq!(turn_status(&messages), "completed");
    assert_eq!(
        deltas(&messages, "item/agentMessage/delta"),
        (5, text.to_string())
    );
    let agent = completed_items(&messages, "agentMessage");
    assert_eq!(agent.len(), 1, "{messages:#?}");
    assert_eq!(agent[0]["text"], text);
    assert_eq!(agent[0]["id"], "msg_resp_1_0");

    let requests = setup.mock.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].body["model"], "gpt-5.5");
    let tools: Vec<&str> = requests[0].body["tools"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|tool| tool["name"].as_str())
        .collect();
    assert!(tools.contains(&"exec_command"), "{tools:?}");
    assert!(tools.contains(&"apply_patch"), "{tools:?}");
    setup.finish().await;
}

#[tokio::test]
async fn prompt_without_directive_is_echoed() {
    let mut setup = Setup::new("never").await;
    let messages = setup.turn("just saying hi").await;
    assert_eq!(turn_status(&messages), "completed");
    let agent = completed_items(&messages, "agentMessage");
    assert_eq!(agent.len(), 1, "{messages:#?}");
    assert_eq!(agent[0]["text"], "You said: just saying hi");
    setup.finish().await;
}

#[tokio::test]
async fn exec_step_runs_a_real_command() {
    let mut setup = Setup::new("never").await;
    let script = json!({"steps": [{"exec": "echo hello"}, {"text": "ran it"}]});
    let messages = setup.turn(&directive(&script)).await;
    assert_eq!(turn_status(&messages), "completed");
    let commands = completed_items(&messages, "commandExecution");
    assert_eq!(commands.len(), 1, "{messages:#?}");
    assert_eq!(commands[0]["status"], "completed");
    assert_eq!(commands[0]["aggregatedOutput"], "hello\n");
    assert_eq!(commands[0]["exitCode"], 0);
    let agent = completed_items(&messages, "agentMessage");
    assert_eq!(agent.last().unwrap()["text"], "ran it");

    let requests = setup.mock.requests();
    assert_eq!(requests.len(), 2);
    let input = requests[1].body["input"].as_array().unwrap();
    let output = input
        .iter()
        .find(|item| item["type"] == "function_call_output")
        .unwrap();
    assert_eq!(output["call_id"], "call_resp_1_0");
    setup.finish().await;
}

#[tokio::test]
async fn write_file_step_produces_a_file_change() {
    let mut setup = Setup::new("never").await;
    let script = json!({"steps": [
        {"write_file": {"path": "notes/hello.txt", "content": "hi there\nsecond line\n"}},
        {"text": "wrote it"}
    ]});
    let messages = setup.turn(&directive(&script)).await;
    assert_eq!(turn_status(&messages), "completed");
    let changes = completed_items(&messages, "fileChange");
    assert_eq!(changes.len(), 1, "{messages:#?}");
    assert_eq!(changes[0]["status"], "completed");
    let path = setup.project.0.join("notes/hello.txt");
    assert_eq!(changes[0]["changes"][0]["path"], path.display().to_string());
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        "hi there\nsecond line\n"
    );
    let requests = setup.mock.requests();
    assert_eq!(requests.len(), 2);
    assert!(
        requests[1].body["input"]
            .as_array()
            .unwrap()
            .iter()
            .any(|item| item["type"] == "custom_tool_call_output")
    );
    setup.finish().await;
}

#[tokio::test]
async fn declined_exec_approval_completes_the_item_as_declined() {
    let mut setup = Setup::new("untrusted").await;
    let script =
        json!({"steps": [{"exec": "touch approval_probe.txt"}, {"text": "ok, not running it"}]});
    setup
        .server
        .start_turn(&setup.thread, &directive(&script))
        .await;
    let before = setup
        .server
        .until("a command approval request", |m| {
            method(m) == "item/commandExecution/requestApproval"
        })
        .await;
    let request = before.last().unwrap().clone();
    assert!(request["id"].is_number(), "{request}");
    assert!(
        request["params"]["command"]
            .as_str()
            .unwrap()
            .contains("touch approval_probe.txt"),
        "{request}"
    );
    setup
        .server
        .respond(&request["id"], json!({"decision": "decline"}))
        .await;
    let messages = setup.server.until_turn_completed().await;
    assert_eq!(turn_status(&messages), "completed");
    let commands = completed_items(&messages, "commandExecution");
    assert_eq!(commands.len(), 1, "{messages:#?}");
    assert_eq!(commands[0]["status"], "declined");
    assert_eq!(commands[0]["id"], request["params"]["itemId"]);
    assert!(!setup.project.0.join("approval_probe.txt").exists());
    setup.finish().await;
}

#[tokio::test]
async fn http_500_fails_the_turn() {
    let mut setup = Setup::new("never").await;
    let messages = setup
        .turn(&directive(&json!({"steps": [{"error": 500}]})))
        .await;
    assert_eq!(turn_status(&messages), "failed");
    assert_eq!(with_method(&messages, "error").len(), 1, "{messages:#?}");
    assert_eq!(setup.mock.requests().len(), 1, "codex retried");
    setup.finish().await;
}

#[tokio::test]
async fn two_thousand_deltas_arrive_in_order() {
    let mut setup = Setup::new("never").await;
    let text: String = (0..2000).map(|i| format!("{i:04}.")).collect();
    let messages = setup
        .turn(&directive(&json!({"text": text, "deltas": 2000})))
        .await;
    assert_eq!(turn_status(&messages), "completed");
    assert_eq!(
        deltas(&messages, "item/agentMessage/delta"),
        (2000, text.clone())
    );
    assert_eq!(completed_items(&messages, "agentMessage")[0]["text"], text);
    setup.finish().await;
}

#[tokio::test]
async fn reasoning_summary_streams_before_the_text() {
    let mut setup = Setup::new("never").await;
    let script = json!({"steps": [[
        {"reasoning": "Thinking about the answer", "deltas": 3},
        {"text": "The answer."}
    ]]});
    let messages = setup.turn(&directive(&script)).await;
    assert_eq!(turn_status(&messages), "completed");
    assert_eq!(
        deltas(&messages, "item/reasoning/summaryTextDelta"),
        (3, "Thinking about the answer".to_string())
    );
    let reasoning = completed_items(&messages, "reasoning");
    assert_eq!(reasoning.len(), 1, "{messages:#?}");
    assert_eq!(
        reasoning[0]["summary"],
        json!(["Thinking about the answer"])
    );
    assert_eq!(
        completed_items(&messages, "agentMessage")[0]["text"],
        "The answer."
    );
    setup.finish().await;
}

#[tokio::test]
async fn hang_step_can_be_interrupted() {
    let mut setup = Setup::new("never").await;
    let turn = setup
        .server
        .start_turn(&setup.thread, &directive(&json!({"hang_ms": 60_000})))
        .await;
    setup
        .server
        .until("turn/started", |m| method(m) == "turn/started")
        .await;
    // Interrupt while the mock's stream is stalled.
    setup.mock.wait_for_requests(1, TIMEOUT).await.unwrap();
    setup
        .server
        .request(
            "turn/interrupt",
            json!({"threadId": setup.thread, "turnId": turn}),
        )
        .await;
    let messages = setup.server.until_turn_completed().await;
    assert_eq!(turn_status(&messages), "interrupted");
    let started = std::time::Instant::now();
    setup.finish().await;
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn steps_restart_with_each_turn() {
    let mut setup = Setup::new("never").await;
    let first = json!({"steps": [{"exec": "echo one"}, {"text": "first turn done"}]});
    let messages = setup.turn(&directive(&first)).await;
    assert_eq!(turn_status(&messages), "completed");
    assert_eq!(
        completed_items(&messages, "agentMessage").last().unwrap()["text"],
        "first turn done"
    );
    // The earlier turn's tool output is still in `input`, but it precedes this user message.
    let second = json!({"steps": [{"text": "second turn"}]});
    let messages = setup.turn(&directive(&second)).await;
    assert_eq!(turn_status(&messages), "completed");
    let agent = completed_items(&messages, "agentMessage");
    assert_eq!(agent.len(), 1, "{messages:#?}");
    assert_eq!(agent[0]["text"], "second turn");
    assert_eq!(setup.mock.requests().len(), 3);
    setup.finish().await;
}
