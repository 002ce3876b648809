//! The user's Codex settings (model, reasoning effort, fast, approval policy, sandbox)
//! turned into `thread/start` and `turn/start` overrides (seed `codexRuntimeOptions.ts`).
//!
//! Two differences from the seed follow the app-server's schema: thread-level effort is
//! sent as the config key `model_reasoning_effort` (`thread/start` has no effort field),
//! and sandbox policies carry only the fields the schema defines.
use std::path::Path;

use serde_json::{Map, Value};

use super::protocol::{SandboxPolicy, ThreadStartParams, TurnStartParams};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuntimeOptions {
    pub model: Option<String>,
    pub reasoning_effort: Option<String>,
    pub fast: bool,
    pub approval_policy: Option<String>,
    pub sandbox: Option<String>,
}

pub const SANDBOX_MODES: &[&str] = &["danger-full-access", "read-only", "workspace-write"];
pub const APPROVAL_POLICIES: &[&str] = &["untrusted", "on-request", "never"];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuntimeOptionError {
    #[error(
        "unsupported Codex sandbox mode: {0} (use danger-full-access, read-only or workspace-write)"
    )]
    Sandbox(String),
    #[error("unsupported Codex approval policy: {0} (use untrusted, on-request or never)")]
    ApprovalPolicy(String),
}

impl RuntimeOptions {
    /// Checks the values the app-server would otherwise reject mid-session.
    pub fn validate(&self) -> Result<(), RuntimeOptionError> {
        if let Some(sandbox) = &self.sandbox
            && !SANDBOX_MODES.contains(&sandbox.as_str())
        {
            return Err(RuntimeOptionError::Sandbox(sandbox.clone()));
        }
        if let Some(policy) = &self.approval_policy
            && !APPROVAL_POLICIES.contains(&policy.as_str())
        {
            return Err(RuntimeOptionError::ApprovalPolicy(policy.clone()));
        }
        Ok(())
    }

    /// Overrides for `thread/start` / `thread/resume`.
    pub fn thread_overrides(&self) -> Result<ThreadStartParams, RuntimeOptionError> {
        self.validate()?;
        let config = self.reasoning_effort.as_ref().map(|effort| {
            let mut config = Map::new();
            config.insert(
                "model_reasoning_effort".into(),
                Value::String(effort.clone()),
            );
            config
        });
        Ok(ThreadStartParams {
            model: self.model.clone(),
            approval_policy: self.approval_policy.clone(),
            sandbox: self.sandbox.clone(),
            service_tier: self.fast.then(|| "fast".to_owned()),
            config,
            ..ThreadStartParams::default()
        })
    }

    /// Overrides for `turn/start`; they persist for later turns of the thread.
    pub fn turn_overrides(
        &self,
        thread_id: &str,
        input: Vec<Value>,
        cwd: &Path,
    ) -> Result<TurnStartParams, RuntimeOptionError> {
        self.validate()?;
        let sandbox_policy = match &self.sandbox {
            Some(sandbox) => Some(sandbox_policy(sandbox, cwd)?),
            None => None,
        };
        Ok(TurnStartParams {
            thread_id: thread_id.to_owned(),
            input,
            cwd: Some(cwd.display().to_string()),
            model: self.model.clone(),
            effort: self.reasoning_effort.clone(),
            service_tier: self.fast.then(|| "fast".to_owned()),
            approval_policy: self.approval_policy.clone(),
            sandbox_policy,
        })
    }
}

/// The turn-level sandbox policy for a sandbox mode; workspace-write may write `cwd`.
pub fn sandbox_policy(sandbox: &str, cwd: &Path) -> Result<SandboxPolicy, RuntimeOptionError> {
    match sandbox {
        "danger-full-access" => Ok(SandboxPolicy::DangerFullAccess),
        "read-only" => Ok(SandboxPolicy::ReadOnly {
            network_access: false,
        }),
        "workspace-write" => Ok(SandboxPolicy::WorkspaceWrite {
            writable_roots: vec![cwd.display().to_string()],
            network_access: false,
            exclude_tmpdir_env_var: false,
            exclude_slash_tmp: false,
        }),
        other => Err(RuntimeOptionError::Sandbox(other.to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn options() -> RuntimeOptions {
        RuntimeOptions {
            model: Some("gpt-5.5".into()),
            reasoning_effort: Some("low".into()),
            fast: true,
            approval_policy: Some("on-request".into()),
            sandbox: Some("workspace-write".into()),
        }
    }

    #[test]
    fn thread_overrides_carry_effort_as_config() {
        let params = serde_json::to_value(options().thread_overrides().unwrap()).unwrap();
        assert_eq!(
            params,
            json!({"model": "gpt-5.5", "approvalPolicy": "on-request",
                "sandbox": "workspace-write", "serviceTier": "fast",
                "config": {"model_reasoning_effort": "low"}})
        );
    }

    #[test]
    fn turn_overrides_use_effort_and_a_sandbox_policy_for_the_cwd() {
        let params = options()
            .turn_overrides(
                "t",
                vec![json!({"type": "text", "text": "hi"})],
                Path::new("/w"),
            )
            .unwrap();
        assert_eq!(
            serde_json::to_value(params).unwrap(),
            json!({"threadId": "t", "input": [{"type": "text", "text": "hi"}], "cwd": "/w",
                "model": "gpt-5.5", "effort": "low", "serviceTier": "fast",
                "approvalPolicy": "on-request",
                "sandboxPolicy": {"type": "workspaceWrite", "writableRoots": ["/w"],
                    "networkAccess": false, "excludeTmpdirEnvVar": false, "excludeSlashTmp": false}})
        );
    }

    #[test]
    fn defaults_send_no_overrides() {
        let defaults = RuntimeOptions::default();
        assert_eq!(
            serde_json::to_value(defaults.thread_overrides().unwrap()).unwrap(),
            json!({})
        );
        assert_eq!(
            serde_json::to_value(
                defaults
                    .turn_overrides("t", vec![], Path::new("/w"))
                    .unwrap()
            )
            .unwrap(),
            json!({"threadId": "t", "input": [], "cwd": "/w"})
        );
    }

    #[test]
    fn unknown_modes_are_clear_errors() {
        let bad = RuntimeOptions {
            sandbox: Some("yolo".into()),
            ..RuntimeOptions::default()
        };
        assert_eq!(
            bad.thread_overrides().unwrap_err().to_string(),
            "unsupported Codex sandbox mode: yolo (use danger-full-access, read-only or workspace-write)"
        );
        let bad = RuntimeOptions {
            approval_policy: Some("sometimes".into()),
            ..RuntimeOptions::default()
        };
        assert!(matches!(
            bad.validate(),
            Err(RuntimeOptionError::ApprovalPolicy(_))
        ));
        assert_eq!(
            sandbox_policy("read-only", Path::new("/w")).unwrap(),
            SandboxPolicy::ReadOnly {
                network_access: false
            }
        );
    }
}
