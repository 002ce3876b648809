//! Where Kandan may start Codex sessions: a folder is allowed only if, after resolving
//! symlinks and `..`, it lies inside one of the allowed roots (seed
//! `localCapabilities.ts`). Both sides are canonicalized, so neither a symlink inside a
//! root pointing out of it nor `root/../elsewhere` escapes, and `/a/bc` is not inside
//! `/a/b` (comparison is by path component).
use std::path::{Path, PathBuf};

/// An allowed root as configured, with its canonical form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedRoot {
    pub configured: String,
    pub canonical: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedCwd {
    pub cwd: PathBuf,
    pub matched_root: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CwdRefused {
    #[error("starting sessions is disabled on this runner: no allowed cwd roots are configured")]
    NoRoots,
    #[error("cwd must be an absolute path: {0}")]
    NotAbsolute(String),
    #[error("cwd does not exist on this computer: {0}")]
    Missing(String),
    #[error("cwd is not a folder: {0}")]
    NotADirectory(String),
    #[error("cwd {0} is outside the allowed roots")]
    OutsideRoots(String),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Invalid --allowed-cwd: allowed cwd roots must exist locally. ({path} does not exist)")]
pub struct MissingRoot {
    pub path: String,
}

/// Splits a comma-separated `--allowed-cwd` value, expanding `~`.
pub fn parse_list(value: &str) -> Vec<String> {
    normalize(value.split(',').map(|part| expand_home(part.trim())))
}

/// Trims, drops empties and duplicates, keeping the first occurrence's order (seed
/// `normalizeAllowedCwds`).
pub fn normalize(values: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    let mut kept = Vec::new();
    for value in values {
        let value = value.trim();
        if !value.is_empty() && seen.insert(value.to_owned()) {
            kept.push(value.to_owned());
        }
    }
    kept
}

/// At most this many roots from Kandan are used (each costs a filesystem lookup now and
/// a comparison per `start_instance`); a longer list is cut, keeping the first ones.
pub const MAX_KANDAN_ROOTS: usize = 256;

/// Roots given on the command line: each must exist (seed `assertConfiguredAllowedCwds`).
pub fn configured_roots(values: &[String]) -> Result<Vec<AllowedRoot>, MissingRoot> {
    values
        .iter()
        .map(|value| {
            std::fs::canonicalize(value)
                .map(|canonical| AllowedRoot {
                    configured: value.clone(),
                    canonical,
                })
                .map_err(|_| MissingRoot {
                    path: value.clone(),
                })
        })
        .collect()
}

/// Roots Kandan sent (`update_runner_config`): ones that do not exist here are skipped,
/// since they cannot contain anything.
pub fn roots_from_kandan(values: &[String]) -> Vec<AllowedRoot> {
    normalize(values.iter().cloned())
        .into_iter()
        .take(MAX_KANDAN_ROOTS)
        .filter_map(|configured| {
            let canonical = std::fs::canonicalize(&configured).ok()?;
            Some(AllowedRoot {
                configured,
                canonical,
            })
        })
        .collect()
}

/// Kandan may narrow the folders the owner shares, never widen them: of the roots Kandan
/// sent, the ones inside a `shared` root are kept; the others come back as sent, to be
/// refused. [designed]
pub fn within_share(
    roots: Vec<AllowedRoot>,
    shared: &[AllowedRoot],
) -> (Vec<AllowedRoot>, Vec<String>) {
    let (kept, refused): (Vec<_>, Vec<_>) = roots.into_iter().partition(|root| {
        shared
            .iter()
            .any(|share| root.canonical.starts_with(&share.canonical))
    });
    (
        kept,
        refused.into_iter().map(|root| root.configured).collect(),
    )
}

/// What the owner shares: the configured roots, or else the shared folder itself.
pub fn shared_roots(configured: &[AllowedRoot], cwd: &Path) -> Vec<AllowedRoot> {
    if !configured.is_empty() {
        return configured.to_vec();
    }
    std::fs::canonicalize(cwd)
        .map(|canonical| AllowedRoot {
            configured: cwd.display().to_string(),
            canonical,
        })
        .into_iter()
        .collect()
}

/// Resolves a requested cwd (`None`: the first root) against the allowed roots.
pub fn resolve(requested: Option<&str>, roots: &[AllowedRoot]) -> Result<ResolvedCwd, CwdRefused> {
    let first = roots.first().ok_or(CwdRefused::NoRoots)?;
    let requested = match requested.map(str::trim).filter(|text| !text.is_empty()) {
        Some(text) => text.to_owned(),
        None => first.canonical.display().to_string(),
    };
    let path = Path::new(&requested);
    if !path.is_absolute() {
        return Err(CwdRefused::NotAbsolute(requested));
    }
    let canonical =
        std::fs::canonicalize(path).map_err(|_| CwdRefused::Missing(requested.clone()))?;
    if !canonical.is_dir() {
        return Err(CwdRefused::NotADirectory(requested));
    }
    roots
        .iter()
        .find(|root| canonical.starts_with(&root.canonical))
        .map(|root| ResolvedCwd {
            cwd: canonical.clone(),
            matched_root: root.configured.clone(),
        })
        .ok_or(CwdRefused::OutsideRoots(requested))
}

/// `~` and `~/x` relative to the home folder.
pub fn expand_home(path: &str) -> String {
    let home = || std::env::var("HOME").ok().filter(|home| !home.is_empty());
    if path == "~" {
        return home().unwrap_or_else(|| path.to_owned());
    }
    if let Some(rest) = path.strip_prefix("~/")
        && let Some(home) = home()
    {
        return Path::new(&home).join(rest).display().to_string();
    }
    path.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Sandbox(PathBuf);

    impl Sandbox {
        fn new(name: &str) -> Sandbox {
            let dir =
                std::env::temp_dir().join(format!("linzumi-cwd-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(dir.join("root/project/src")).unwrap();
            std::fs::create_dir_all(dir.join("outside")).unwrap();
            std::fs::create_dir_all(dir.join("rootish")).unwrap();
            std::fs::write(dir.join("root/file.txt"), "x").unwrap();
            #[cfg(unix)]
            std::os::unix::fs::symlink(dir.join("outside"), dir.join("root/escape")).unwrap();
            Sandbox(dir)
        }

        fn path(&self, relative: &str) -> String {
            self.0.join(relative).display().to_string()
        }

        fn roots(&self) -> Vec<AllowedRoot> {
            configured_roots(&[self.path("root")]).unwrap()
        }
    }

    impl Drop for Sandbox {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn folders_inside_a_root_are_allowed() {
        let sandbox = Sandbox::new("inside");
        let resolved = resolve(Some(&sandbox.path("root/project/src")), &sandbox.roots()).unwrap();
        assert!(resolved.cwd.ends_with("root/project/src"));
        assert_eq!(resolved.matched_root, sandbox.path("root"));
        let root = resolve(None, &sandbox.roots()).unwrap();
        assert!(root.cwd.ends_with("root"), "no cwd means the first root");
    }

    #[test]
    fn dot_dot_and_symlinks_cannot_escape() {
        let sandbox = Sandbox::new("escape");
        let roots = sandbox.roots();
        assert!(matches!(
            resolve(Some(&sandbox.path("root/project/../../outside")), &roots),
            Err(CwdRefused::OutsideRoots(_))
        ));
        #[cfg(unix)]
        assert!(matches!(
            resolve(Some(&sandbox.path("root/escape")), &roots),
            Err(CwdRefused::OutsideRoots(_))
        ));
        // A sibling whose name starts with the root's name is not inside it.
        assert!(matches!(
            resolve(Some(&sandbox.path("rootish")), &roots),
            Err(CwdRefused::OutsideRoots(_))
        ));
    }

    #[test]
    fn refusals_say_why() {
        let sandbox = Sandbox::new("why");
        let roots = sandbox.roots();
        assert_eq!(
            resolve(Some("relative/path"), &roots),
            Err(CwdRefused::NotAbsolute("relative/path".into()))
        );
        assert!(matches!(
            resolve(Some(&sandbox.path("root/nope")), &roots),
            Err(CwdRefused::Missing(_))
        ));
        assert!(matches!(
            resolve(Some(&sandbox.path("root/file.txt")), &roots),
            Err(CwdRefused::NotADirectory(_))
        ));
        assert_eq!(resolve(Some("/"), &[]), Err(CwdRefused::NoRoots));
        assert_eq!(
            CwdRefused::OutsideRoots("/etc".into()).to_string(),
            "cwd /etc is outside the allowed roots"
        );
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn case_variants_are_different_folders_on_linux() {
        let sandbox = Sandbox::new("case");
        let upper = sandbox.path("ROOT/project");
        assert!(matches!(
            resolve(Some(&upper), &sandbox.roots()),
            Err(CwdRefused::Missing(_))
        ));
    }

    #[test]
    fn configured_roots_must_exist() {
        let error = configured_roots(&["/does/not/exist".into()]).unwrap_err();
        assert_eq!(
            error.to_string(),
            "Invalid --allowed-cwd: allowed cwd roots must exist locally. (/does/not/exist does not exist)"
        );
        assert!(roots_from_kandan(&["/does/not/exist".into(), " / ".into()]).len() == 1);
    }

    #[test]
    fn lists_are_trimmed_and_deduplicated() {
        assert_eq!(
            parse_list(" /a, /b,,/a ,"),
            vec!["/a".to_string(), "/b".into()]
        );
        let home = std::env::var("HOME").unwrap();
        assert_eq!(parse_list("~/code"), vec![format!("{home}/code")]);
    }

    #[test]
    fn a_huge_list_from_kandan_keeps_its_first_roots() {
        // "/" exists everywhere; the distinct spellings of it all resolve.
        let many: Vec<String> = (0..100_000)
            .map(|n| format!("/{}", "/".repeat(n % 1000)))
            .collect();
        let roots = roots_from_kandan(&many);
        assert_eq!(roots.len(), MAX_KANDAN_ROOTS);
        assert_eq!(roots[0].configured, "/");
        assert!(roots.iter().all(|root| root.canonical == Path::new("/")));
    }
}
