//! The poller: fetches the tracked branch of every repository at an interval and
//! enqueues its tip for each root whose newest job is for another commit and which
//! does not run the tip already ([`crate::selection::tip_needs_job`]).
//!
//! It is how the agent follows git remotes that are not GitHub, how it catches a
//! merge whose webhook never arrived (GitHub does not redeliver by itself), and how a
//! rollback by force push to an older commit is deployed even without a webhook. It
//! runs once at start-up too, so what happened while the agent was down is not missed.

use std::sync::Arc;

use slipway_provenance::Trigger;

use crate::config::Repository;
use crate::db::DbError;
use crate::git::GitError;
use crate::queue::IntakeError;
use crate::queue::{self, Intake, NewJobs};
use crate::selection;
use crate::state::AppState;

/// Why one poll of a repository failed (the next interval tries again).
#[derive(Debug, thiserror::Error)]
pub enum PollError {
    #[error(transparent)]
    Git(#[from] GitError),
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Intake(#[from] IntakeError),
    #[error("poll task: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// Polls forever.
pub async fn run(state: Arc<AppState>) {
    loop {
        for repo in &state.config.repositories {
            if let Err(e) = poll_once(&state, repo).await {
                tracing::warn!(repository = %repo.name, error = %e, "poll failed; will try again");
            }
        }
        tokio::time::sleep(state.config.poll_interval).await;
    }
}

/// Fetches one repository and enqueues its tip if it is new. Returns the job ids.
pub async fn poll_once(state: &Arc<AppState>, repo: &Repository) -> Result<Vec<i64>, PollError> {
    let token = state.runner.git_credentials(&repo.url).await;
    let (git, db, repo_c) = (state.runner.git.clone(), state.db.clone(), repo.clone());
    let found = tokio::task::spawn_blocking(move || -> Result<(String, Vec<String>), PollError> {
        let tip = git.with_cache(&repo_c, |cache| cache.fetch(token.as_ref()))?;
        let roots: Vec<String> = repo_c.roots.iter().map(|r| r.name.clone()).collect();
        let due = db
            .store()
            .read(|tx| queue::root_positions(tx, &repo_c.name, &roots))?
            .into_iter()
            .filter(|p| {
                selection::tip_needs_job(&tip, p.newest_job.as_deref(), p.last_deployed.as_deref())
            })
            .map(|p| p.root)
            .collect();
        Ok((tip, due))
    })
    .await??;
    let (tip, roots) = found;
    if roots.is_empty() {
        return Ok(Vec::new());
    }
    tracing::info!(repository = %repo.name, commit = %tip, ?roots, "poller found a tip to deploy");
    let outcome = state
        .writer
        .submit(Intake::Jobs(NewJobs::merge(
            None,
            repo.name.clone(),
            repo.branch.clone(),
            tip,
            Trigger::Poll,
            None,
            None,
            roots,
        )))
        .await?;
    Ok(match outcome {
        queue::IntakeOutcome::Enqueued(ids) => ids,
        _ => Vec::new(),
    })
}
