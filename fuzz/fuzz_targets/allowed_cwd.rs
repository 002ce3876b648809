//! Where Kandan may start sessions (`runner::allowed_cwd`): arbitrary path strings
//! resolved against roots in a scratch folder full of traps (symlinks out of the root, to
//! its parent, to itself, dangling and looping ones, a sibling named like the root).
//!
//! Input: the first line is the requested cwd, further lines the roots Kandan sends
//! (default: `<sandbox>/root`). A line is taken relative to the sandbox unless it starts
//! with `!` (then the rest is used as is, e.g. `!/etc`).
//!
//! Properties, beyond not panicking: a resolved cwd is an existing, canonical folder
//! inside the root it names; a refusal is for the reason it gives (a folder inside a root
//! is never refused as outside); comma lists are trimmed and free of empties and repeats.
#![no_main]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use linzumi_engine::runner::allowed_cwd::{
    AllowedRoot, CwdRefused, configured_roots, parse_list, resolve, roots_from_kandan,
};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let sandbox = sandbox();
    let mut lines = text.split('\n');
    let requested = lines.next().unwrap_or("");
    let root_lines: Vec<String> = lines.take(4).map(|line| place(sandbox, line)).collect();

    for line in &root_lines {
        check_list(line);
    }
    let roots = if root_lines.is_empty() {
        configured_roots(&[place(sandbox, "root")]).expect("the sandbox root exists")
    } else {
        let roots = roots_from_kandan(&root_lines);
        if let Ok(configured) = configured_roots(&root_lines) {
            assert!(configured.len() >= roots.len());
        }
        roots
    };
    for root in &roots {
        assert_eq!(
            std::fs::canonicalize(&root.canonical).ok().as_ref(),
            Some(&root.canonical)
        );
    }

    let requested = (!requested.is_empty()).then(|| place(sandbox, requested));
    let outcome = resolve(requested.as_deref(), &roots);
    check(requested.as_deref(), &roots, &outcome);
    if root_lines.is_empty()
        && let Ok(resolved) = &outcome
    {
        // With the one default root, nothing outside `<sandbox>/root` is ever allowed.
        let root = sandbox.join("root");
        assert!(
            resolved.cwd.starts_with(&root),
            "{} escaped",
            resolved.cwd.display()
        );
        assert!(!resolved.cwd.starts_with(sandbox.join("outside")));
    }
});

fn check(
    requested: Option<&str>,
    roots: &[AllowedRoot],
    outcome: &Result<linzumi_engine::runner::allowed_cwd::ResolvedCwd, CwdRefused>,
) {
    let Some(first) = roots.first() else {
        return assert_eq!(outcome, &Err(CwdRefused::NoRoots));
    };
    let wanted = requested
        .map(str::trim)
        .filter(|text| !text.is_empty())
        .map_or_else(|| first.canonical.clone(), PathBuf::from);
    let canonical = std::fs::canonicalize(&wanted);
    let containing = |path: &Path| roots.iter().find(|root| path.starts_with(&root.canonical));
    match outcome {
        Ok(resolved) => {
            let canonical = canonical.expect("a resolved cwd exists");
            assert_eq!(resolved.cwd, canonical);
            assert!(resolved.cwd.is_absolute() && resolved.cwd.is_dir());
            let root = containing(&resolved.cwd).expect("a resolved cwd is inside a root");
            assert_eq!(resolved.matched_root, root.configured);
        }
        Err(CwdRefused::NoRoots) => panic!("NoRoots with {} roots", roots.len()),
        Err(CwdRefused::NotAbsolute(_)) => assert!(!wanted.is_absolute()),
        Err(CwdRefused::Missing(_)) => {
            assert!(wanted.is_absolute() && canonical.is_err())
        }
        Err(CwdRefused::NotADirectory(_)) => {
            assert!(canonical.is_ok_and(|path| !path.is_dir()))
        }
        Err(CwdRefused::OutsideRoots(_)) => {
            let canonical = canonical.expect("refused as outside, so it exists");
            assert!(canonical.is_dir());
            assert!(
                containing(&canonical).is_none(),
                "{} is inside a root",
                canonical.display()
            );
        }
    }
}

/// `--allowed-cwd a, b,,a` lists.
fn check_list(line: &str) {
    let list = parse_list(line);
    for (index, item) in list.iter().enumerate() {
        assert!(!item.is_empty() && item.trim() == item, "{item:?}");
        assert!(!list[..index].contains(item), "{item:?} twice");
    }
}

fn place(sandbox: &Path, line: &str) -> String {
    match line.strip_prefix('!') {
        Some(raw) => raw.to_owned(),
        None => format!("{}/{line}", sandbox.display()),
    }
}

/// The scratch tree, made once per process (and reused by later runs: creation ignores
/// what already exists).
fn sandbox() -> &'static Path {
    static SANDBOX: OnceLock<PathBuf> = OnceLock::new();
    SANDBOX.get_or_init(|| {
        let base = std::env::temp_dir().join("linzumi-fuzz-allowed-cwd");
        for dir in [
            "root/project/src",
            "root/sp ace",
            "outside/inner",
            "rootish",
        ] {
            std::fs::create_dir_all(base.join(dir)).expect("sandbox folder");
        }
        std::fs::write(base.join("root/file.txt"), "x").expect("sandbox file");
        let outside = base.join("outside").display().to_string();
        #[cfg(unix)]
        for (link, target) in [
            ("root/escape", "../outside"),
            ("root/escape-abs", outside.as_str()),
            ("root/up", ".."),
            ("root/self", "."),
            ("root/dangling", "missing"),
            ("root/loop", "loop"),
            ("root/file-link", "file.txt"),
            ("root/project/back", "../.."),
            ("link-root", "root"),
        ] {
            let _ = std::os::unix::fs::symlink(target, base.join(link));
        }
        std::fs::canonicalize(&base).expect("sandbox path")
    })
}
