//! The user's Codex settings (model, reasoning effort, fast, approval policy, sandbox)
//! turned into `thread/start` and `turn/start` overrides (seed `codexRuntimeOptions.ts`).
//!
//! Two differences from the seed follow the app-server's schema: thread-level effort is
//! sent as the config key `model_reasoning_effort` (`thread/start` has no effort field),
//! and sandbox policies carry only the fields the schema defines.
//!
//! The owner's sandbox and approval policy are ceilings ([`RuntimeOptions::within`]):
//! Kandan may ask for them or stricter ones, never looser. Where the owner set none, the
//! ceiling is workspace-write and on-request; full access without approvals is the
//! owner's choice alone. [designed]
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

/// Sandbox modes and approval policies from the strictest to the loosest.
const SANDBOX_LOOSENESS: &[&str] = &["read-only", "workspace-write", "danger-full-access"];
const APPROVAL_LOOSENESS: &[&str] = &["untrusted", "on-request", "never"];
/// The ceilings where the owner set none.
pub const DEFAULT_SANDBOX_CEILING: &str = "workspace-write";
pub const DEFAULT_APPROVAL_CEILING: &str = "on-request";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuntimeOptionError {
    #[error(
        "unsupported Codex sandbox mode: {0} (use danger-full-access, read-only or workspace-write)"
    )]
    Sandbox(String),
    #[error("unsupported Codex approval policy: {0} (use untrusted, on-request or never)")]
    ApprovalPolicy(String),
    #[error(
        "Kandan asked for {setting} {asked}, but this computer allows at most {allowed} (its owner sets the limit)"
    )]
    AboveCeiling {
        setting: &'static str,
        asked: String,
        allowed: String,
    },
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

    /// Whether these options (what Kandan asked for, with the owner's where it asked for
    /// nothing) stay within the `owner`'s sandbox and approval policy.
    pub fn within(&self, owner: &RuntimeOptions) -> Result<(), RuntimeOptionError> {
        self.validate()?;
        owner.validate()?;
        let checks = [
            (
                "sandbox",
                &self.sandbox,
                &owner.sandbox,
                DEFAULT_SANDBOX_CEILING,
                SANDBOX_LOOSENESS,
            ),
            (
                "approval policy",
                &self.approval_policy,
                &owner.approval_policy,
                DEFAULT_APPROVAL_CEILING,
                APPROVAL_LOOSENESS,
            ),
        ];
        for (setting, asked, ceiling, default, order) in checks {
            let Some(asked) = asked else {
                // Codex's own default, from the owner's Codex configuration.
                continue;
            };
            let allowed = ceiling.as_deref().unwrap_or(default);
            let rank = |value: &str| order.iter().position(|known| *known == value);
            if rank(asked) > rank(allowed) {
                return Err(RuntimeOptionError::AboveCeiling {
                    setting,
                    asked: asked.clone(),
                    allowed: allowed.to_owned(),
                });
            }
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
    fn kandan_may_ask_for_the_owners_settings_or_stricter_ones() {
        let with = |sandbox: Option<&str>, policy: Option<&str>| RuntimeOptions {
            sandbox: sandbox.map(str::to_owned),
            approval_policy: policy.map(str::to_owned),
            ..RuntimeOptions::default()
        };
        let owner = with(Some("workspace-write"), Some("on-request"));
        for allowed in [
            with(None, None),
            with(Some("workspace-write"), Some("on-request")),
            with(Some("read-only"), Some("untrusted")),
        ] {
            assert_eq!(allowed.within(&owner), Ok(()), "{allowed:?}");
        }
        assert_eq!(
            with(Some("danger-full-access"), None)
                .within(&owner)
                .unwrap_err()
                .to_string(),
            "Kandan asked for sandbox danger-full-access, but this computer allows at most workspace-write (its owner sets the limit)"
        );
        assert!(with(None, Some("never")).within(&owner).is_err());
        // Without owner settings the defaults are the ceilings.
        let unset = RuntimeOptions::default();
        assert!(
            with(Some("danger-full-access"), None)
                .within(&unset)
                .is_err()
        );
        assert!(with(None, Some("never")).within(&unset).is_err());
        assert_eq!(
            with(Some("workspace-write"), Some("on-request")).within(&unset),
            Ok(())
        );
        // An owner who allows everything allows everything.
        let open = with(Some("danger-full-access"), Some("never"));
        assert_eq!(
            with(Some("danger-full-access"), Some("never")).within(&open),
            Ok(())
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
