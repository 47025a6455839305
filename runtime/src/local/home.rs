//! The Slipway home directory: where the daemon keeps its socket, lock, state and logs.
//!
//! Everything lives under one directory so that a person can find it (and delete it),
//! and so that tests can run isolated daemons side by side in temporary directories.

use std::path::{Path, PathBuf};

/// The layout of a Slipway home directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Home {
    root: PathBuf,
}

impl Home {
    pub fn new(root: impl Into<PathBuf>) -> Home {
        Home { root: root.into() }
    }

    /// `$SLIPWAY_HOME`, or `slipway` in the user's data directory
    /// (see [`slipway_platform::embedded::default_home`]).
    pub fn default_root() -> Result<PathBuf, String> {
        slipway_platform::embedded::default_home(&|name| std::env::var(name).ok())
            .map_err(|e| e.to_string())
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The daemon's gRPC socket.
    pub fn socket(&self) -> PathBuf {
        slipway_platform::embedded::socket(&self.root)
    }

    /// Held (flock) by the one daemon that serves this home.
    pub fn lock_file(&self) -> PathBuf {
        self.root.join("daemon.lock")
    }

    /// Held (flock) by the one watchdog that runs this home's daemon.
    pub fn watchdog_lock_file(&self) -> PathBuf {
        self.root.join("watchdog.lock")
    }

    pub fn watchdog_pid_file(&self) -> PathBuf {
        self.root.join("watchdog.pid")
    }

    pub fn pid_file(&self) -> PathBuf {
        self.root.join("daemon.pid")
    }

    /// The daemon's own log (its stdout and stderr when started by the provider).
    pub fn daemon_log(&self) -> PathBuf {
        self.root.join("daemon.log")
    }

    /// The desired state: environments and applications, with their stable ports.
    pub fn state_file(&self) -> PathBuf {
        self.root.join("state.json")
    }

    /// The platform's database: identities, the job-credential ledger, the audit log.
    pub fn platform_db(&self) -> PathBuf {
        self.root.join("platform.db")
    }

    /// The platform's configuration (policy, the GitOps engine's key), written by the
    /// operator; missing means the defaults.
    pub fn platform_config(&self) -> PathBuf {
        self.root.join("platform.toml")
    }

    /// The platform's Ed25519 key, which signs its audit records.
    pub fn platform_key(&self) -> PathBuf {
        self.root.join("platform.key")
    }

    /// The signed head of the audit log, unless `platform.toml` names another place
    /// (better: another disk than the database's).
    pub fn audit_checkpoint(&self) -> PathBuf {
        self.root.join("audit-checkpoint.json")
    }

    /// Replica logs: `logs/<application id>/<replica id>.log`.
    pub fn logs_dir(&self) -> PathBuf {
        self.root.join("logs")
    }

    pub fn app_logs_dir(&self, app_id: &str) -> PathBuf {
        self.logs_dir().join(sanitize(app_id))
    }

    /// An application's working directory when its spec names none: its own, never
    /// the home itself (which holds the platform's database and key).
    pub fn app_work_dir(&self, app_id: &str) -> PathBuf {
        self.root.join("apps").join(sanitize(app_id))
    }

    /// One file per running replica process, so that a daemon that died hard can find
    /// and stop the replicas it left behind.
    pub fn run_dir(&self) -> PathBuf {
        self.root.join("run")
    }

    /// Creates the directory tree, private to the user (it holds secrets in the state).
    pub fn create(&self) -> std::io::Result<()> {
        use std::os::unix::fs::PermissionsExt;
        for dir in [self.root.clone(), self.logs_dir(), self.run_dir()] {
            std::fs::create_dir_all(&dir)?;
        }
        std::fs::set_permissions(&self.root, std::fs::Permissions::from_mode(0o700))?;
        Ok(())
    }
}

/// Makes an id safe as a single path component.
pub fn sanitize(id: &str) -> String {
    let cleaned: String = id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if cleaned.is_empty() || cleaned.starts_with('.') {
        format!("_{cleaned}")
    } else {
        cleaned
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_become_single_path_components() {
        assert_eq!(sanitize("app-1"), "app-1");
        assert_eq!(sanitize("../etc"), "_.._etc");
        assert_eq!(sanitize(""), "_");
    }
}
