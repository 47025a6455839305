//! The poller: fetches the tracked branch of every repository at an interval and
//! enqueues its tip when no job was ever made for it.
//!
//! It is how the agent follows git remotes that are not GitHub, and how it catches a
//! merge whose webhook never arrived (GitHub does not redeliver by itself). It runs
//! once at start-up too, so merges made while the agent was down are not missed.

use std::sync::Arc;

use slipway_provenance::Trigger;

use crate::agent::AppState;
use crate::config::Repository;
use crate::queue::{self, Intake, NewJobs};
use crate::runner::{with_cache, GitLocks};

/// Polls forever.
pub async fn run(state: Arc<AppState>, locks: Arc<GitLocks>) {
    loop {
        for repo in &state.config.repositories {
            if let Err(e) = poll_once(&state, &locks, repo).await {
                tracing::warn!(repository = %repo.name, error = %e, "poll failed; will try again");
            }
        }
        tokio::time::sleep(state.config.poll_interval).await;
    }
}

/// Fetches one repository and enqueues its tip if it is new. Returns the job ids.
pub async fn poll_once(
    state: &Arc<AppState>,
    locks: &Arc<GitLocks>,
    repo: &Repository,
) -> Result<Vec<i64>, String> {
    let token = state.runner.git_credentials(&repo.url).await;
    let (config, locks_c, repo_c) = (state.config.clone(), locks.clone(), repo.clone());
    let tip = tokio::task::spawn_blocking(move || -> Result<Option<String>, String> {
        let tip = with_cache(&config, &locks_c, &repo_c, |cache| {
            cache.fetch(token.as_ref()).map_err(|e| e.to_string())
        })?;
        let conn = crate::db::open(&config.database_path()).map_err(|e| e.to_string())?;
        if queue::commit_known(&conn, &repo_c.name, &tip).map_err(|e| e.to_string())? {
            return Ok(None);
        }
        Ok(Some(tip))
    })
    .await
    .map_err(|e| e.to_string())??;
    let Some(tip) = tip else {
        return Ok(Vec::new());
    };
    tracing::info!(repository = %repo.name, commit = %tip, "poller found a new commit");
    let outcome = state
        .writer
        .submit(Intake::Jobs(NewJobs {
            delivery: None,
            repository: repo.name.clone(),
            branch: repo.branch.clone(),
            commit_sha: tip,
            trigger: Trigger::Poll,
            pull_request: None,
            actor: None,
            roots: repo.roots.iter().map(|r| r.name.clone()).collect(),
        }))
        .await?;
    Ok(match outcome {
        queue::IntakeOutcome::Enqueued(ids) => ids,
        _ => Vec::new(),
    })
}
