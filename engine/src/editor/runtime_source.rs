//! Where the runner's code-server comes from: a custom executable (`--code-server-bin`)
//! or the runtime Kandan approves, downloaded in the background when the runner starts
//! so that the first "Open editor" does not wait for it (a start that comes while it
//! downloads waits for that download). Its state is the `editorRuntime` capability.
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use super::runtime::{self, Progress, RuntimeCache, RuntimeState, RuntimeStatus};
use crate::dependencies::{self, ToolState};
use crate::kandan_url::KandanUrl;

#[derive(Debug, Clone)]
pub enum RuntimeSource {
    /// `--code-server-bin`.
    Custom(PathBuf),
    /// The runtime Kandan approves for this platform, kept in `cache`.
    Kandan {
        cache: RuntimeCache,
        kandan: KandanUrl,
        token: String,
    },
}

/// What fronts hear about the runtime: a new state, or download progress.
#[derive(Debug, Clone, PartialEq)]
pub enum RuntimeUpdate {
    Status(RuntimeStatus),
    Progress { received: u64, total: u64 },
}

pub type OnUpdate = Arc<dyn Fn(RuntimeUpdate) + Send + Sync>;

/// The editor runtime, resolved at most once at a time; cheap to clone.
#[derive(Clone)]
pub struct EditorRuntime {
    inner: Arc<Inner>,
}

struct Inner {
    source: RuntimeSource,
    status: Mutex<RuntimeStatus>,
    /// Held while resolving, so concurrent starts share one download.
    resolving: tokio::sync::Mutex<Option<PathBuf>>,
    on_update: OnUpdate,
}

impl EditorRuntime {
    pub fn new(source: RuntimeSource, on_update: OnUpdate) -> Self {
        let status = match &source {
            RuntimeSource::Custom(path) => RuntimeStatus::custom(path.clone()),
            RuntimeSource::Kandan { .. } => match runtime::current_platform() {
                Some(_) => RuntimeStatus::default(),
                None => RuntimeStatus::unsupported(),
            },
        };
        EditorRuntime {
            inner: Arc::new(Inner {
                source,
                status: Mutex::new(status),
                resolving: tokio::sync::Mutex::new(None),
                on_update,
            }),
        }
    }

    pub fn status(&self) -> RuntimeStatus {
        self.inner
            .status
            .lock()
            .map(|status| status.clone())
            .unwrap_or_default()
    }

    /// Starts resolving (and downloading, if need be) without waiting for it.
    pub fn prepare_in_background(&self) {
        let runtime = self.clone();
        tokio::spawn(async move {
            let _ = runtime.code_server_bin().await;
        });
    }

    /// The code-server executable; resolves the runtime first if it is not yet (a
    /// failed download is tried again here). The error says what to do.
    pub async fn code_server_bin(&self) -> Result<PathBuf, String> {
        let mut resolved = self.inner.resolving.lock().await;
        if let Some(path) = resolved.as_ref() {
            return Ok(path.clone());
        }
        let result = match &self.inner.source {
            RuntimeSource::Custom(bin) => self.check_custom(bin).await,
            RuntimeSource::Kandan {
                cache,
                kandan,
                token,
            } => self.install(cache, kandan, token).await,
        };
        if let Ok(path) = &result {
            *resolved = Some(path.clone());
        }
        result
    }

    async fn check_custom(&self, bin: &std::path::Path) -> Result<PathBuf, String> {
        let tool = dependencies::code_server_status(bin).await;
        let status = RuntimeStatus {
            state: match tool.state {
                ToolState::Ready => RuntimeState::Custom,
                ToolState::Missing => RuntimeState::Missing,
                ToolState::Broken => RuntimeState::Failed,
            },
            version: tool.version,
            path: tool.path.clone().or_else(|| Some(bin.to_owned())),
            detail: tool.detail.clone(),
            progress: None,
        };
        self.set(status);
        match (tool.state, tool.path) {
            (ToolState::Ready, Some(path)) => Ok(path),
            _ => Err(tool
                .detail
                .unwrap_or_else(|| format!("code-server at {} is not usable", bin.display()))),
        }
    }

    async fn install(
        &self,
        cache: &RuntimeCache,
        kandan: &KandanUrl,
        token: &str,
    ) -> Result<PathBuf, String> {
        let Some(platform) = runtime::current_platform() else {
            let status = RuntimeStatus::unsupported();
            let detail = status.detail.clone().unwrap_or_default();
            self.set(status);
            return Err(detail);
        };
        let failed = |detail: String| {
            self.set(RuntimeStatus::failed(detail.clone()));
            detail
        };
        let http = crate::http::client_for(kandan).map_err(|error| failed(error.to_string()))?;
        let manifest = runtime::fetch_manifest(&http, kandan, token, platform)
            .await
            .map_err(|error| failed(error.to_string()))?;
        if let Some(installed) = cache.installed(&manifest) {
            self.ready(&installed);
            return Ok(installed.code_server_bin);
        }
        self.set(RuntimeStatus::downloading(&manifest.version, Some(0.0)));
        let on_update = self.inner.on_update.clone();
        let progress = move |progress: Progress| {
            if let Progress::Downloading { received, total } = progress {
                on_update(RuntimeUpdate::Progress { received, total });
            }
        };
        let installed = cache
            .install(kandan, token, &manifest, &progress)
            .await
            .map_err(|error| failed(error.to_string()))?;
        self.ready(&installed);
        Ok(installed.code_server_bin)
    }

    fn ready(&self, installed: &runtime::InstalledRuntime) {
        self.set(RuntimeStatus::ready(installed));
    }

    fn set(&self, status: RuntimeStatus) {
        if let Ok(mut current) = self.inner.status.lock() {
            if *current == status {
                return;
            }
            *current = status.clone();
        }
        (self.inner.on_update)(RuntimeUpdate::Status(status));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect() -> (OnUpdate, Arc<Mutex<Vec<RuntimeUpdate>>>) {
        let updates = Arc::new(Mutex::new(Vec::new()));
        let sink = updates.clone();
        (
            Arc::new(move |update| sink.lock().unwrap().push(update)),
            updates,
        )
    }

    #[tokio::test]
    async fn a_missing_custom_code_server_is_reported_with_what_to_do() {
        let (on_update, updates) = collect();
        let runtime = EditorRuntime::new(
            RuntimeSource::Custom("/nonexistent/code-server".into()),
            on_update,
        );
        assert_eq!(runtime.status().state, RuntimeState::Custom);
        let error = runtime.code_server_bin().await.unwrap_err();
        assert!(error.contains("--code-server-bin"), "{error}");
        assert_eq!(runtime.status().state, RuntimeState::Missing);
        assert_eq!(updates.lock().unwrap().len(), 1);
    }
}
