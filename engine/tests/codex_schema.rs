//! The typed Codex views against the schema the pinned codex prints
//! (`codex app-server generate-json-schema`): every request the runner builds validates,
//! with unknown keys forbidden, and every method and field the runner reads exists.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;

use linzumi_engine::codex::RuntimeOptions;
use linzumi_engine::codex::protocol::{
    ThreadListParams, ThreadReadParams, ThreadResumeParams, ThreadSetNameParams, ThreadStartParams,
    TurnInterruptParams, TurnSteerParams, methods, server_requests, text_input,
};
use serde_json::{Value, json};

struct Schema {
    definitions: serde_json::Map<String, Value>,
    dir: std::path::PathBuf,
}

impl Schema {
    fn generate() -> Schema {
        let dir = std::env::temp_dir().join(format!("linzumi-codex-schema-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let status = Command::new(mock_model_api::codex_bin().unwrap())
            .args(["app-server", "generate-json-schema", "--out"])
            .arg(&dir)
            .status()
            .unwrap();
        assert!(status.success());
        let schema: Value = serde_json::from_str(
            &std::fs::read_to_string(dir.join("codex_app_server_protocol.v2.schemas.json"))
                .unwrap(),
        )
        .unwrap();
        let mut definitions = schema["definitions"].as_object().unwrap().clone();
        for definition in definitions.values_mut() {
            forbid_unknown_keys(definition);
        }
        Schema { definitions, dir }
    }

    fn file(&self, name: &str) -> Value {
        serde_json::from_str(&std::fs::read_to_string(self.dir.join(name)).unwrap()).unwrap()
    }

    fn assert_valid(&self, definition: &str, instance: &Value) {
        let schema = json!({
            "$schema": "http://json-schema.org/draft-07/schema#",
            "$ref": format!("#/definitions/{definition}"),
            "definitions": self.definitions,
        });
        let validator = jsonschema::validator_for(&schema).unwrap();
        let errors: Vec<String> = validator
            .iter_errors(instance)
            .map(|error| format!("{} at {}", error, error.instance_path()))
            .collect();
        assert!(errors.is_empty(), "{definition}: {instance}\n{errors:#?}");
    }

    fn properties(&self, definition: &str) -> Vec<String> {
        self.definitions[definition]["properties"]
            .as_object()
            .unwrap_or_else(|| panic!("{definition} has no properties"))
            .keys()
            .cloned()
            .collect()
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `additionalProperties: false` on every object schema that lists its properties, so a
/// key the app-server does not know fails validation instead of being ignored.
fn forbid_unknown_keys(schema: &mut Value) {
    match schema {
        Value::Object(map) => {
            if map.contains_key("properties") && !map.contains_key("additionalProperties") {
                map.insert("additionalProperties".into(), Value::Bool(false));
            }
            for value in map.values_mut() {
                forbid_unknown_keys(value);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(forbid_unknown_keys),
        _ => {}
    }
}

fn methods_of(file: &Value) -> Vec<String> {
    file["oneOf"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|variant| {
            let method = &variant["properties"]["method"];
            method["enum"]
                .as_array()
                .cloned()
                .unwrap_or_else(|| vec![method["const"].clone()])
        })
        .filter_map(|method| method.as_str().map(str::to_owned))
        .collect()
}

#[test]
fn requests_the_runner_builds_validate_against_the_schema() {
    let schema = Schema::generate();
    let cwd = Path::new("/home/dev/project");
    let every_option = RuntimeOptions {
        model: Some("gpt-5.5".into()),
        reasoning_effort: Some("high".into()),
        fast: true,
        approval_policy: Some("on-request".into()),
        sandbox: Some("workspace-write".into()),
    };

    let start = ThreadStartParams {
        cwd: Some(cwd.display().to_string()),
        service_name: Some("kandan-local-runner".into()),
        personality: Some("pragmatic".into()),
        ..every_option.thread_overrides().unwrap()
    };
    schema.assert_valid("ThreadStartParams", &serde_json::to_value(&start).unwrap());
    let resume = ThreadResumeParams {
        thread_id: "t".into(),
        overrides: every_option.thread_overrides().unwrap(),
    };
    schema.assert_valid(
        "ThreadResumeParams",
        &serde_json::to_value(&resume).unwrap(),
    );

    for sandbox in ["danger-full-access", "read-only", "workspace-write"] {
        let options = RuntimeOptions {
            sandbox: Some(sandbox.into()),
            ..every_option.clone()
        };
        let turn = options
            .turn_overrides("t", vec![text_input("hello")], cwd)
            .unwrap();
        schema.assert_valid("TurnStartParams", &serde_json::to_value(&turn).unwrap());
    }

    let others = [
        (
            "TurnSteerParams",
            serde_json::to_value(TurnSteerParams {
                thread_id: "t".into(),
                expected_turn_id: "u".into(),
                input: vec![text_input("more")],
            }),
        ),
        (
            "TurnInterruptParams",
            serde_json::to_value(TurnInterruptParams {
                thread_id: "t".into(),
                turn_id: "u".into(),
            }),
        ),
        (
            "ThreadReadParams",
            serde_json::to_value(ThreadReadParams {
                thread_id: "t".into(),
                include_turns: true,
            }),
        ),
        (
            "ThreadSetNameParams",
            serde_json::to_value(ThreadSetNameParams {
                thread_id: "t".into(),
                name: "Kandan acme/codex".into(),
            }),
        ),
        (
            "ThreadListParams",
            serde_json::to_value(ThreadListParams {
                limit: Some(5),
                cursor: Some("c".into()),
            }),
        ),
    ];
    for (definition, params) in others {
        schema.assert_valid(definition, &params.unwrap());
    }

    // The check itself must be able to fail: a key the schema does not know.
    let mut unknown = serde_json::to_value(&start).unwrap();
    unknown["reasoningEffort"] = json!("high");
    let validator = jsonschema::validator_for(&json!({
        "$ref": "#/definitions/ThreadStartParams", "definitions": schema.definitions,
    }))
    .unwrap();
    assert!(
        !validator.is_valid(&unknown),
        "thread/start has no reasoningEffort in codex 0.169.0; effort goes in config"
    );
}

#[test]
fn methods_and_fields_the_runner_reads_exist() {
    let schema = Schema::generate();
    let client_methods = methods_of(&schema.file("ClientRequest.json"));
    for method in [
        "initialize",
        methods::THREAD_START,
        methods::THREAD_RESUME,
        methods::THREAD_LIST,
        methods::THREAD_READ,
        methods::THREAD_NAME_SET,
        methods::TURN_START,
        methods::TURN_STEER,
        methods::TURN_INTERRUPT,
    ] {
        assert!(client_methods.iter().any(|m| m == method), "{method}");
    }
    let notifications = methods_of(&schema.file("ServerNotification.json"));
    for method in [
        "item/agentMessage/delta",
        "item/reasoning/summaryTextDelta",
        "item/reasoning/textDelta",
        "item/commandExecution/outputDelta",
        "item/fileChange/outputDelta",
        "item/commandExecution/terminalInteraction",
        "item/started",
        "item/completed",
        "turn/started",
        "turn/completed",
        "serverRequest/resolved",
        "error",
    ] {
        assert!(notifications.iter().any(|m| m == method), "{method}");
    }
    let requests = methods_of(&schema.file("ServerRequest.json"));
    for method in [
        server_requests::COMMAND_APPROVAL,
        server_requests::FILE_CHANGE_APPROVAL,
        server_requests::PERMISSIONS_APPROVAL,
    ] {
        assert!(requests.iter().any(|m| m == method), "{method}");
    }

    let reads = [
        (
            "AgentMessageDeltaNotification",
            &["threadId", "turnId", "itemId", "delta"][..],
        ),
        (
            "CommandExecutionOutputDeltaNotification",
            &["threadId", "turnId", "itemId", "delta"],
        ),
        ("ItemStartedNotification", &["threadId", "turnId", "item"]),
        ("ItemCompletedNotification", &["threadId", "turnId", "item"]),
        ("TurnCompletedNotification", &["threadId", "turn"]),
        ("Turn", &["id", "status", "error"]),
        ("TurnError", &["message", "codexErrorInfo"]),
        (
            "ServerRequestResolvedNotification",
            &["threadId", "requestId"],
        ),
        (
            "ErrorNotification",
            &["threadId", "turnId", "error", "willRetry"],
        ),
        (
            "TerminalInteractionNotification",
            &["threadId", "turnId", "itemId", "processId", "stdin"],
        ),
        ("FileUpdateChange", &["path", "kind", "diff"]),
    ];
    for (definition, fields) in reads {
        let properties = schema.properties(definition);
        for field in fields {
            assert!(
                properties.iter().any(|p| p == field),
                "{definition}.{field} is not in the schema"
            );
        }
    }
    let command = schema.file("CommandExecutionRequestApprovalParams.json");
    for field in ["threadId", "turnId", "itemId", "command", "cwd", "reason"] {
        assert!(command["properties"].get(field).is_some(), "{field}");
    }
    let item_types: Vec<String> = schema.definitions["ThreadItem"]["oneOf"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|variant| {
            variant["properties"]["type"]["enum"][0]
                .as_str()
                .map(str::to_owned)
        })
        .collect();
    for kind in [
        "userMessage",
        "agentMessage",
        "reasoning",
        "commandExecution",
        "fileChange",
        "webSearch",
    ] {
        assert!(item_types.iter().any(|t| t == kind), "{kind}");
    }
}
