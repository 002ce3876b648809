//! A scriptable mock of the OpenAI Responses API (SSE) so the real `codex app-server` runs
//! offline in tests, plus throwaway `CODEX_HOME` set-up for it. Test infrastructure.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use mock_model_api::{CodexHome, CodexHomeOptions, MockModelApi, codex_bin};
//! let mock = MockModelApi::start().await?;
//! let home = CodexHome::create(&mock, CodexHomeOptions::default())?;
//! let mut codex = tokio::process::Command::new(codex_bin()?);
//! codex.arg("app-server").args(home.app_server_args()).envs(home.env());
//! // … drive it over stdio; then look at mock.requests() …
//! mock.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! # Scripting by prompt
//!
//! The mock keeps no per-conversation state. For each `POST /v1/responses` it takes the
//! **last user message** in `input`. If that text contains `mock:` followed by a JSON
//! object, the object is the script:
//!
//! ```text
//! mock: {"steps": [STEP, STEP, ...]}
//! ```
//!
//! The step played is the number of tool-call outputs (`function_call_output`,
//! `custom_tool_call_output`) in `input` after that user message: the first request of a
//! turn plays `steps[0]`; after codex ran one tool call and asked again, `steps[1]`; and so
//! on. Past the end the reply is the text `done`. An object without `"steps"` is a one-step
//! script (`mock: {"text": "hi"}`). [`directive`] builds the text from a `serde_json::Value`.
//!
//! A STEP is one item object, or a list of item objects streamed in one response
//! (`[{"reasoning": "…"}, {"text": "…"}]`, `[{"text": "…"}, {"exec": "ls"}]`). Items:
//!
//! | item | reply |
//! |------|-------|
//! | `{"text": "Hello", "deltas": 5, "delay_ms": 0}` | an assistant message in `deltas` (default 5) `response.output_text.delta` events, `delay_ms` (default 0) apart |
//! | `{"reasoning": "Thinking", "deltas": 5, "delay_ms": 0}` | a reasoning item whose summary streams as `response.reasoning_summary_text.delta` (codex: `item/reasoning/summaryTextDelta`) |
//! | `{"exec": "echo hello", "yield_ms": 2000}` | a `function_call` to `exec_command` with `{"cmd", "yield_time_ms"}` |
//! | `{"patch": "*** Begin Patch\n*** Add File: a.txt\n+hi\n*** End Patch\n"}` | a `custom_tool_call` to `apply_patch` |
//! | `{"write_file": {"path": "notes/a.txt", "content": "hi\n"}}` | the same, with an Add File patch built for you (lines end with `\n`) |
//! | `{"error": 500, "message": "…"}` | that HTTP status with a JSON error body; must be alone in its step |
//! | `{"hang_ms": 10000}` | the stream stalls this long at this point (alone: after `response.created`); a client disconnect ends it |
//!
//! Unknown keys are rejected. An invalid script is answered with the text
//! `mock: invalid script: <why>`, so the mistake shows up in the agent message.
//!
//! Without a directive the reply is `You said: <first 200 chars of the user text>` in 5
//! deltas. Requests with `tools: []` (the TUI's title generation) get the text `Mock task`.
//!
//! Response ids count up per server (`resp_1`, `resp_2`, …); item ids derive from them
//! (`msg_resp_1_0`, `call_resp_2_0`), and codex uses those as its item ids. Usage is a
//! fixed 10 input + 5 output tokens per response.

mod codex_home;
pub mod script;
mod server;
pub mod sse;

pub use codex_home::{
    API_KEY_ENV, CODEX_BIN_ENV, CodexHome, CodexHomeOptions, DISABLED_FEATURES, HOMES_DIR_ENV,
    MODEL, codex_bin, config_toml,
};
pub use script::directive;
pub use server::{MockModelApi, RecordedRequest};
