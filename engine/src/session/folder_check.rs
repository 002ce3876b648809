//! Is the shared folder still the folder that was shared? Checked before every turn, so
//! Codex never starts work in a folder that was moved or deleted, nor in whatever was put
//! at its path afterwards: a link to somewhere else resolves elsewhere and is refused.
use std::path::{Path, PathBuf};

/// The shared folder as it was when the session started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedFolder {
    path: PathBuf,
    /// Where `path` led then (symlinks resolved); `None` if it could not be resolved.
    resolved: Option<PathBuf>,
}

impl SharedFolder {
    /// Remembers where `path` leads now.
    pub fn remember(path: &Path) -> SharedFolder {
        SharedFolder {
            path: path.to_owned(),
            resolved: std::fs::canonicalize(path).ok(),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the path still leads to the same place, and that place is a folder.
    pub fn intact(&self) -> bool {
        match (&self.resolved, std::fs::canonicalize(&self.path)) {
            (Some(then), Ok(now)) => *then == now && now.is_dir(),
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "linzumi-folder-check-{name}-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn moved_deleted_and_replaced_folders_are_not_intact() {
        let base = temp("base");
        let shared = base.join("app");
        std::fs::create_dir(&shared).unwrap();
        let folder = SharedFolder::remember(&shared);
        assert!(folder.intact());
        assert_eq!(folder.path(), shared);

        std::fs::rename(&shared, base.join("moved")).unwrap();
        assert!(!folder.intact(), "moved away");
        std::fs::rename(base.join("moved"), &shared).unwrap();
        assert!(folder.intact(), "moved back");

        std::fs::remove_dir(&shared).unwrap();
        assert!(!folder.intact(), "deleted");
        #[cfg(unix)]
        {
            let elsewhere = temp("elsewhere");
            std::os::unix::fs::symlink(&elsewhere, &shared).unwrap();
            assert!(!folder.intact(), "a link to another folder at its path");
            std::fs::remove_file(&shared).unwrap();
            std::fs::remove_dir_all(elsewhere).unwrap();
        }
        std::fs::write(&shared, "a file").unwrap();
        assert!(!folder.intact(), "a file at its path");
        std::fs::remove_dir_all(base).unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn a_folder_shared_through_a_link_stays_intact() {
        let base = temp("linked");
        std::fs::create_dir(base.join("real")).unwrap();
        std::os::unix::fs::symlink(base.join("real"), base.join("link")).unwrap();
        let folder = SharedFolder::remember(&base.join("link"));
        assert!(folder.intact());
        std::fs::remove_dir_all(base).unwrap();
    }
}
