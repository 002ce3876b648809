//! The `mock:` prompt directive: parsing the script out of a Responses API request body and
//! choosing what to reply. Pure functions (no I/O), so they are unit-tested here.
//!
//! The mock is stateless: everything it needs is in the request. It takes the text of the
//! last user message in `input`; if that text holds `mock:` followed by a JSON object, the
//! object is the script. The step to play is the number of tool-call outputs
//! (`function_call_output`, `custom_tool_call_output`) in `input` after that user message.
//! See the crate documentation for the format.

use serde::Deserialize;
use serde_json::Value;

/// The marker that starts a script in a user message.
pub const DIRECTIVE: &str = "mock:";
/// Deltas a text or reasoning item is streamed in when the script does not say.
pub const DEFAULT_DELTAS: usize = 5;
/// `yield_time_ms` of an exec call when the script does not say.
pub const DEFAULT_YIELD_MS: u64 = 2000;
/// The reply once a script has no steps left.
pub const DONE_TEXT: &str = "done";
/// The reply to title-generation requests (`tools: []`).
pub const TITLE_TEXT: &str = "Mock task";
/// How many characters of the user's text the default reply echoes.
pub const ECHO_CHARS: usize = 200;

/// One output item of a streamed response (or a pause in the stream).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// An assistant message, streamed as `deltas` text deltas `delay_ms` apart.
    Text {
        text: String,
        deltas: usize,
        delay_ms: u64,
    },
    /// A reasoning item whose summary is streamed as `deltas` deltas `delay_ms` apart.
    Reasoning {
        text: String,
        deltas: usize,
        delay_ms: u64,
    },
    /// A `function_call` to `exec_command`.
    Exec { cmd: String, yield_ms: u64 },
    /// A `custom_tool_call` to `apply_patch`.
    Patch { patch: String },
    /// The stream stalls this long at this point.
    Hang { ms: u64 },
}

impl Item {
    /// The item's kind as the script names it (`"text"`, `"exec"`, …), for logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Item::Text { .. } => "text",
            Item::Reasoning { .. } => "reasoning",
            Item::Exec { .. } => "exec",
            Item::Patch { .. } => "patch",
            Item::Hang { .. } => "hang_ms",
        }
    }
}

/// What the mock answers one request with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `200 text/event-stream` carrying these items, then `response.completed`.
    Stream(Vec<Item>),
    /// An HTTP error status with a JSON error body.
    HttpError { status: u16, message: String },
}

impl Reply {
    fn text(text: impl Into<String>) -> Reply {
        Reply::Stream(vec![Item::Text {
            text: text.into(),
            deltas: DEFAULT_DELTAS,
            delay_ms: 0,
        }])
    }
}

/// Decides the reply to a `POST /responses` body.
pub fn plan(body: &Value) -> Reply {
    if body
        .get("tools")
        .and_then(Value::as_array)
        .is_some_and(Vec::is_empty)
    {
        return Reply::text(TITLE_TEXT);
    }
    let input = body
        .get("input")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let Some((user_index, user_text)) = last_user_message(input) else {
        return Reply::text("You said: ");
    };
    let Some(script) = find_directive(&user_text) else {
        let echoed: String = user_text.chars().take(ECHO_CHARS).collect();
        return Reply::text(format!("You said: {echoed}"));
    };
    let steps = match parse_script(script) {
        Ok(steps) => steps,
        Err(error) => {
            tracing::warn!(%error, "invalid mock script");
            return Reply::text(format!("mock: invalid script: {error}"));
        }
    };
    let step = tool_outputs_after(input, user_index);
    match steps.into_iter().nth(step) {
        Some(reply) => reply,
        None => Reply::text(DONE_TEXT),
    }
}

/// Builds the directive text for a script, to put in a prompt: `mock: {json}`.
pub fn directive(script: &Value) -> String {
    format!("{DIRECTIVE} {script}")
}

/// Index and text of the last `role: "user"` message in `input`.
pub fn last_user_message(input: &[Value]) -> Option<(usize, String)> {
    input.iter().enumerate().rev().find_map(|(index, item)| {
        let is_message = item
            .get("type")
            .and_then(Value::as_str)
            .is_none_or(|kind| kind == "message");
        let is_user = item.get("role").and_then(Value::as_str) == Some("user");
        (is_message && is_user).then(|| (index, message_text(item)))
    })
}

/// The text of a message: a plain string `content`, or its text parts joined.
fn message_text(message: &Value) -> String {
    match message.get("content") {
        Some(Value::String(text)) => text.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|part| part.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

/// Number of tool-call outputs in `input` after index `user_index`.
pub fn tool_outputs_after(input: &[Value], user_index: usize) -> usize {
    input
        .iter()
        .skip(user_index + 1)
        .filter(|item| {
            matches!(
                item.get("type").and_then(Value::as_str),
                Some("function_call_output" | "custom_tool_call_output")
            )
        })
        .count()
}

/// The JSON value right after the first `mock:` that is followed by a JSON object.
pub fn find_directive(text: &str) -> Option<Value> {
    text.match_indices(DIRECTIVE).find_map(|(at, _)| {
        let rest = text[at + DIRECTIVE.len()..].trim_start();
        if !rest.starts_with('{') {
            return None;
        }
        let mut values = serde_json::Deserializer::from_str(rest).into_iter::<Value>();
        match values.next() {
            Some(Ok(value @ Value::Object(_))) => Some(value),
            _ => None,
        }
    })
}

/// Parses a script object into the reply of each step.
///
/// `{"steps": [step, ...]}`; an object without `steps` is a one-step script. A step is an
/// item object or a list of item objects played in one response.
pub fn parse_script(script: Value) -> Result<Vec<Reply>, String> {
    let steps = match script {
        Value::Object(mut object) if object.contains_key("steps") => {
            if object.len() != 1 {
                return Err("a script with \"steps\" must have no other keys".into());
            }
            match object.remove("steps") {
                Some(Value::Array(steps)) => steps,
                _ => return Err("\"steps\" must be a list".into()),
            }
        }
        step => vec![step],
    };
    steps
        .into_iter()
        .enumerate()
        .map(|(index, step)| parse_step(step).map_err(|error| format!("step {index}: {error}")))
        .collect()
}

fn parse_step(step: Value) -> Result<Reply, String> {
    let specs = match step {
        Value::Array(items) => items,
        item @ Value::Object(_) => vec![item],
        other => return Err(format!("expected an object or a list, got {other}")),
    };
    if specs.is_empty() {
        return Err("empty list of items".into());
    }
    let mut items = Vec::with_capacity(specs.len());
    let mut error = None;
    for spec in specs {
        match parse_item(spec)? {
            Parsed::Item(item) => items.push(item),
            Parsed::Error { status, message } => error = Some(Reply::HttpError { status, message }),
        }
    }
    match error {
        Some(_) if !items.is_empty() => Err("an error item must be alone in its step".into()),
        Some(reply) => Ok(reply),
        None => Ok(Reply::Stream(items)),
    }
}

enum Parsed {
    Item(Item),
    Error { status: u16, message: String },
}

const KINDS: [&str; 7] = [
    "text",
    "reasoning",
    "exec",
    "patch",
    "write_file",
    "error",
    "hang_ms",
];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TextSpec {
    text: String,
    deltas: Option<usize>,
    delay_ms: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReasoningSpec {
    reasoning: String,
    deltas: Option<usize>,
    delay_ms: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExecSpec {
    exec: String,
    yield_ms: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PatchSpec {
    patch: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WriteFileSpec {
    write_file: WriteFile,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WriteFile {
    path: String,
    content: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ErrorSpec {
    error: u16,
    message: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HangSpec {
    hang_ms: u64,
}

fn parse_item(spec: Value) -> Result<Parsed, String> {
    let Value::Object(object) = &spec else {
        return Err(format!("an item must be an object, got {spec}"));
    };
    let kinds: Vec<&str> = KINDS
        .into_iter()
        .filter(|kind| object.contains_key(*kind))
        .collect();
    let [kind] = kinds.as_slice() else {
        return Err(format!(
            "an item needs exactly one of {KINDS:?}, got {}",
            Value::Object(object.clone())
        ));
    };
    fn de<T: serde::de::DeserializeOwned>(kind: &str, spec: Value) -> Result<T, String> {
        serde_json::from_value(spec).map_err(|error| format!("{kind} item: {error}"))
    }
    let item = match *kind {
        "text" => {
            let spec: TextSpec = de(kind, spec)?;
            Item::Text {
                text: spec.text,
                deltas: spec.deltas.unwrap_or(DEFAULT_DELTAS),
                delay_ms: spec.delay_ms.unwrap_or(0),
            }
        }
        "reasoning" => {
            let spec: ReasoningSpec = de(kind, spec)?;
            Item::Reasoning {
                text: spec.reasoning,
                deltas: spec.deltas.unwrap_or(DEFAULT_DELTAS),
                delay_ms: spec.delay_ms.unwrap_or(0),
            }
        }
        "exec" => {
            let spec: ExecSpec = de(kind, spec)?;
            Item::Exec {
                cmd: spec.exec,
                yield_ms: spec.yield_ms.unwrap_or(DEFAULT_YIELD_MS),
            }
        }
        "patch" => Item::Patch {
            patch: de::<PatchSpec>(kind, spec)?.patch,
        },
        "write_file" => {
            let spec: WriteFileSpec = de(kind, spec)?;
            Item::Patch {
                patch: add_file_patch(&spec.write_file.path, &spec.write_file.content),
            }
        }
        "hang_ms" => Item::Hang {
            ms: de::<HangSpec>(kind, spec)?.hang_ms,
        },
        _ => {
            let spec: ErrorSpec = de(kind, spec)?;
            if !(400..=599).contains(&spec.error) {
                return Err(format!("error status {} is not 400..=599", spec.error));
            }
            return Ok(Parsed::Error {
                status: spec.error,
                message: spec
                    .message
                    .unwrap_or_else(|| format!("mock model API error {}", spec.error)),
            });
        }
    };
    Ok(Parsed::Item(item))
}

/// An apply_patch patch that adds `path` with `content` (every line ends up with `\n`).
pub fn add_file_patch(path: &str, content: &str) -> String {
    let mut patch = format!("*** Begin Patch\n*** Add File: {path}\n");
    let body = content.strip_suffix('\n').unwrap_or(content);
    if !content.is_empty() {
        for line in body.split('\n') {
            patch.push('+');
            patch.push_str(line);
            patch.push('\n');
        }
    }
    patch.push_str("*** End Patch\n");
    patch
}

/// Splits `text` into at most `parts` non-empty pieces of near-equal length (in chars).
pub fn split_deltas(text: &str, parts: usize) -> Vec<&str> {
    let chars = text.chars().count();
    let parts = parts.clamp(1, chars.max(1));
    if chars == 0 {
        return Vec::new();
    }
    let (base, extra) = (chars / parts, chars % parts);
    let bounds: Vec<usize> = text
        .char_indices()
        .map(|(at, _)| at)
        .chain([text.len()])
        .collect();
    let mut pieces = Vec::with_capacity(parts);
    let mut taken = 0;
    for part in 0..parts {
        let next = taken + base + usize::from(part < extra);
        pieces.push(&text[bounds[taken]..bounds[next]]);
        taken = next;
    }
    pieces
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn user(text: &str) -> Value {
        json!({"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]})
    }

    fn body(input: Vec<Value>) -> Value {
        json!({"model": "gpt-5.5", "input": input, "tools": [{"type": "function", "name": "exec_command"}]})
    }

    fn text(text: &str, deltas: usize) -> Item {
        Item::Text {
            text: text.into(),
            deltas,
            delay_ms: 0,
        }
    }

    #[test]
    fn echoes_without_directive() {
        let reply = plan(&body(vec![user("context"), user("hello there")]));
        assert_eq!(reply, Reply::Stream(vec![text("You said: hello there", 5)]));
    }

    #[test]
    fn echo_is_cut_at_200_chars() {
        let long = "é".repeat(300);
        let Reply::Stream(items) = plan(&body(vec![user(&long)])) else {
            panic!("expected a stream");
        };
        assert_eq!(
            items,
            vec![text(&format!("You said: {}", "é".repeat(200)), 5)]
        );
    }

    #[test]
    fn title_requests_get_a_title() {
        let request = json!({"input": [user("mock: {\"error\": 500}")], "tools": []});
        assert_eq!(plan(&request), Reply::Stream(vec![text(TITLE_TEXT, 5)]));
    }

    #[test]
    fn step_is_chosen_by_tool_outputs_after_last_user_message() {
        let script = r#"do it mock: {"steps": [{"exec": "echo hi"}, [{"reasoning": "hm", "deltas": 2}, {"write_file": {"path": "a.txt", "content": "x\ny\n"}}], {"text": "end", "deltas": 1, "delay_ms": 3}]} trailing"#;
        let old_turn = vec![
            user(script),
            json!({"type": "function_call", "call_id": "a"}),
            json!({"type": "function_call_output", "call_id": "a"}),
        ];
        let mut input = old_turn.clone();
        input.push(user(script));
        assert_eq!(
            plan(&body(input.clone())),
            Reply::Stream(vec![Item::Exec {
                cmd: "echo hi".into(),
                yield_ms: 2000
            }])
        );
        input.push(json!({"type": "function_call_output", "call_id": "b"}));
        assert_eq!(
            plan(&body(input.clone())),
            Reply::Stream(vec![
                Item::Reasoning {
                    text: "hm".into(),
                    deltas: 2,
                    delay_ms: 0
                },
                Item::Patch {
                    patch: "*** Begin Patch\n*** Add File: a.txt\n+x\n+y\n*** End Patch\n".into()
                },
            ])
        );
        input.push(json!({"type": "custom_tool_call_output", "call_id": "c"}));
        assert_eq!(
            plan(&body(input.clone())),
            Reply::Stream(vec![Item::Text {
                text: "end".into(),
                deltas: 1,
                delay_ms: 3
            }])
        );
        input.push(json!({"type": "function_call_output", "call_id": "d"}));
        assert_eq!(plan(&body(input)), Reply::text(DONE_TEXT));
    }

    #[test]
    fn a_single_object_is_a_one_step_script() {
        let reply = plan(&body(vec![user(r#"mock: {"hang_ms": 50}"#)]));
        assert_eq!(reply, Reply::Stream(vec![Item::Hang { ms: 50 }]));
    }

    #[test]
    fn error_step() {
        let reply = plan(&body(vec![user(r#"mock:{"steps":[{"error":500}]}"#)]));
        assert_eq!(
            reply,
            Reply::HttpError {
                status: 500,
                message: "mock model API error 500".into()
            }
        );
    }

    #[test]
    fn invalid_scripts_are_reported_as_text() {
        for bad in [
            r#"mock: {"steps": [{"txt": "typo"}]}"#,
            r#"mock: {"steps": [{"text": "a", "exec": "b"}]}"#,
            r#"mock: {"steps": [[{"text": "a"}, {"error": 500}]]}"#,
            r#"mock: {"steps": [{"error": 200}]}"#,
            r#"mock: {"steps": [{"text": "a", "deltaz": 3}]}"#,
            r#"mock: {"steps": {"text": "a"}}"#,
            r#"mock: {"steps": [[]]}"#,
        ] {
            let Reply::Stream(items) = plan(&body(vec![user(bad)])) else {
                panic!("expected a stream for {bad}");
            };
            let [Item::Text { text, .. }] = items.as_slice() else {
                panic!("expected one text item for {bad}");
            };
            assert!(text.starts_with("mock: invalid script"), "{bad}: {text}");
        }
    }

    #[test]
    fn directive_needs_a_json_object() {
        assert_eq!(find_directive("mock: not json"), None);
        assert_eq!(find_directive("mock: [1]"), None);
        assert_eq!(
            find_directive("see mock: x, then mock: {\"text\": \"a\"} ok"),
            Some(json!({"text": "a"}))
        );
        assert_eq!(
            find_directive(&directive(&json!({"text": "b"}))),
            Some(json!({"text": "b"}))
        );
    }

    #[test]
    fn string_content_counts_as_user_text() {
        let input = vec![json!({"role": "user", "content": "plain"})];
        assert_eq!(last_user_message(&input), Some((0, "plain".into())));
    }

    #[test]
    fn add_file_patch_shapes() {
        assert_eq!(
            add_file_patch("x", "a"),
            "*** Begin Patch\n*** Add File: x\n+a\n*** End Patch\n"
        );
        assert_eq!(
            add_file_patch("x", "a\n\nb\n"),
            "*** Begin Patch\n*** Add File: x\n+a\n+\n+b\n*** End Patch\n"
        );
        assert_eq!(
            add_file_patch("x", ""),
            "*** Begin Patch\n*** Add File: x\n*** End Patch\n"
        );
    }

    #[test]
    fn split_deltas_covers_the_text() {
        assert_eq!(split_deltas("abcdefg", 3), vec!["abc", "de", "fg"]);
        assert_eq!(split_deltas("ab", 5), vec!["a", "b"]);
        assert_eq!(split_deltas("", 5), Vec::<&str>::new());
        assert_eq!(split_deltas("héllo", 0), vec!["héllo"]);
        assert_eq!(
            split_deltas("héllo wörld", 4),
            vec!["hél", "lo ", "wör", "ld"]
        );
        let long = "xyz".repeat(1000);
        let pieces = split_deltas(&long, 2000);
        assert_eq!(pieces.len(), 2000);
        assert_eq!(pieces.concat(), long);
    }
}
