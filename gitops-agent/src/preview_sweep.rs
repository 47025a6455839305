//! The previews' clock and sweep: [`expire`] queues the teardown (how `ttl`) of every
//! preview idle past its time to live, [`sweep`] that (how `pr-closed`) of previews whose
//! pull request GitHub says is closed, and [`run`] does both on their intervals.
//!
//! Apart from [`crate::previews`] (the previews' rows, which the runner updates in the
//! same transaction as a job's end) because these enqueue through the agent's shared
//! state ([`AppState`]), which holds the runner.

use std::sync::Arc;

use slipway_provenance::Trigger;

use crate::db::{self, DbError};
use crate::previews::{teardown, teardown_pending, Preview, PreviewKey};
use crate::queue::Intake;
use crate::state::AppState;

/// Why a round of the preview expiry or sweep stopped (it runs again at the next
/// interval).
#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Intake(#[from] crate::queue::IntakeError),
}

/// Queues the teardown of each of `previews` that has none yet; how many were queued.
async fn queue_teardowns(
    state: &AppState,
    previews: Vec<Preview>,
    trigger: Trigger,
) -> Result<usize, SweepError> {
    let mut queued = 0;
    for p in previews {
        let Some(repo) = state.config.repository(&p.repository) else {
            continue;
        };
        let check = p.clone();
        let pending = state
            .db
            .read(move |tx| teardown_pending(tx, &check))
            .await?;
        if pending {
            continue;
        }
        tracing::info!(repository = %p.repository, root = %p.root, preview = %p.key.name(), how = trigger.as_str(), "preview teardown queued");
        state
            .writer
            .submit(Intake::Jobs(teardown(&p, &repo.branch, trigger, None)))
            .await?;
        queued += 1;
    }
    Ok(queued)
}

/// Queues the teardown (how `ttl`) of every live preview idle past its time to live.
pub async fn expire(state: &AppState) -> Result<usize, SweepError> {
    let now = db::now_ms();
    let expired = state
        .db
        .read(|tx| tx.active_previews())
        .await?
        .into_iter()
        .filter(|p| p.expires_at_ms <= now)
        .collect();
    queue_teardowns(state, expired, Trigger::Ttl).await
}

/// Asks GitHub about the pull request of every live preview, and queues the teardown
/// (how `pr-closed`) of those whose pull request is closed: their `closed` webhook
/// was lost, or came while the agent was down and GitHub gave up redelivering it.
pub async fn sweep(state: &AppState) -> Result<usize, SweepError> {
    let Some(github) = state.runner.github.as_ref() else {
        return Ok(0);
    };
    let live = state.db.read(|tx| tx.active_previews()).await?;
    let mut closed = Vec::new();
    for p in live {
        // A branch's preview has no pull request to ask about.
        let PreviewKey::PullRequest(number) = p.key else {
            continue;
        };
        let Some(github_name) = state
            .config
            .repository(&p.repository)
            .and_then(|r| r.github.clone())
        else {
            continue;
        };
        let route = format!("/repos/{github_name}/pulls/{number}");
        match github.get("read a pull request's state", &route).await {
            Ok(pull) if pull["state"].as_str() == Some("closed") => closed.push(p),
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(pull_request = number, error = %e, "preview sweep: cannot read the pull request; trying again at the next sweep")
            }
        }
    }
    queue_teardowns(state, closed, Trigger::PrClosed).await
}

/// Runs [`expire`] every `previews.check_interval` and [`sweep`] at start and every
/// `previews.sweep_interval`, until the process ends.
pub async fn run(state: Arc<AppState>) {
    let settings = state.config.previews;
    let mut last_sweep: Option<tokio::time::Instant> = None;
    loop {
        if state.runner.is_stopping() {
            return;
        }
        // The sweep first: a preview whose pull request closed is destroyed as such
        // (how `pr-closed`), even when its time to live has also passed.
        let due = last_sweep.is_none_or(|t| t.elapsed() >= settings.sweep_interval);
        if due {
            last_sweep = Some(tokio::time::Instant::now());
            if let Err(e) = sweep(&state).await {
                tracing::error!(error = %e, "preview sweep failed; retrying");
            }
        }
        if let Err(e) = expire(&state).await {
            tracing::error!(error = %e, "preview expiry failed; retrying");
        }
        tokio::time::sleep(settings.check_interval).await;
    }
}
