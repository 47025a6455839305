//! Where a job's files live under the agent's data directory, and the steps every
//! job kind takes with them before Terraform runs.
//!
//! - `work/job-<id>`: the job's work tree, private to the agent's user (it holds the
//!   root's variables, which can be secret, and the saved plan), removed when the job
//!   ends and at start-up ([`clean_work_root`]);
//! - `jobs/<id>/output.log`: the job's log, kept ([`output_log`]).
//!
//! The merge runner and the pull request jobs share [`JobDirs`], so the wait for a
//! killed agent's Terraform and the root-path check are one piece of code.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::time::Instant;

use crate::config::{Config, Root};
use crate::job_error::JobError;

/// One job's work tree and log directory.
pub(crate) struct JobDirs {
    pub(crate) work: PathBuf,
    log_dir: PathBuf,
}

impl JobDirs {
    pub(crate) fn of(config: &Config, job_id: i64) -> JobDirs {
        JobDirs {
            work: work_root(config).join(format!("job-{job_id}")),
            log_dir: log_dir(config, job_id),
        }
    }

    /// Waits, until `deadline`, for a Terraform that a previous agent process started
    /// in this job's work tree and that carried on after it was killed: running the job
    /// again before it ends would do its change twice.
    pub(crate) async fn wait_for_previous_terraform(&self, job_id: i64, deadline: Instant) {
        let Some(pid) = crate::detached::running_in(&self.work) else {
            return;
        };
        tracing::warn!(
            job = job_id,
            pid,
            "waiting for the Terraform a previous agent process started for this job"
        );
        while crate::detached::running_in(&self.work).is_some() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        tracing::info!(
            job = job_id,
            pid,
            "the previous Terraform has ended; the job runs again from its state"
        );
    }

    /// The root's directory in the checked-out work tree; a commit without it fails
    /// the job, naming the path.
    pub(crate) fn root_dir(&self, root: &Root, commit: &str) -> Result<PathBuf, JobError> {
        let dir = if root.path == "." {
            self.work.clone()
        } else {
            self.work.join(&root.path)
        };
        if !dir.is_dir() {
            return Err(JobError::Failed(format!(
                "root path `{}` does not exist in commit {commit}",
                root.path
            )));
        }
        Ok(dir)
    }

    /// Opens (appending) the job's log, creating its directory.
    pub(crate) async fn open_log(&self) -> Result<tokio::fs::File, JobError> {
        tokio::fs::create_dir_all(&self.log_dir)
            .await
            .map_err(|e| JobError::Failed(format!("create {}: {e}", self.log_dir.display())))?;
        tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_dir.join(LOG_FILE))
            .await
            .map_err(|e| JobError::Failed(format!("open job log: {e}")))
    }

    /// Removes the work tree; the log stays.
    pub(crate) async fn remove_work_tree(&self) {
        let _ = tokio::fs::remove_dir_all(&self.work).await;
    }
}

const LOG_FILE: &str = "output.log";

fn log_dir(config: &Config, job_id: i64) -> PathBuf {
    config.data_dir.join("jobs").join(job_id.to_string())
}

/// Where a job's Terraform output is kept.
pub fn output_log(config: &Config, job_id: i64) -> PathBuf {
    log_dir(config, job_id).join(LOG_FILE)
}

/// Where job work trees live, under the data directory.
pub fn work_root(config: &Config) -> PathBuf {
    config.data_dir.join("work")
}

/// Creates `dir` (and missing parents) readable by the agent's user only: a work tree
/// holds the root's variables, which can be secret, and the saved plan.
pub(crate) fn private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}

/// Removes the work trees a killed agent left (each holds the root's variables and
/// a saved plan; an interrupted job runs again in a fresh one), except one whose
/// Terraform still runs, and leaves the work directory private. Call at start-up,
/// before any worker runs.
pub fn clean_work_root(config: &Config) -> std::io::Result<usize> {
    let root = work_root(config);
    let mut removed = 0;
    if let Ok(entries) = std::fs::read_dir(&root) {
        for entry in entries.flatten() {
            let path = entry.path();
            if crate::detached::running_in(&path).is_some() {
                // Its Terraform still runs; the job's worker waits for it, then
                // replaces the tree.
                continue;
            }
            let gone = if path.is_dir() {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
            gone?;
            removed += 1;
        }
    }
    private_dir(&root)?;
    Ok(removed)
}
