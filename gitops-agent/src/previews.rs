//! Previews: one per pull request and opted-in root, in its own Terraform workspace
//! `pr-<number>`, and what keeps them from leaking.
//!
//! A preview is recorded `active` before its first apply starts (so a crash mid-apply
//! still leaves a row to clean up) and `destroyed` only in the transaction that
//! records its successful teardown. Teardowns are ordinary durable jobs: a kill
//! mid-destroy re-runs the destroy at the next start. Three things queue them: the
//! pull request's `closed` webhook (how `pr-closed`), [`expire`] for previews idle
//! past their time to live (how `ttl`), and [`sweep`], which asks GitHub about the pull
//! request of every live preview, for a `closed` webhook that never arrived.

use std::collections::BTreeMap;
use std::sync::Arc;

use rusqlite::{params, Connection, OptionalExtension};
use slipway_provenance::Trigger;

use crate::db::{self, DbError};
use crate::http::AppState;
use crate::job_kind::JobKind;
use crate::queue::{Intake, NewJobs};

/// The Terraform workspace (and the variable `preview_name`) of pull request `number`.
pub fn name(number: u64) -> String {
    format!("pr-{number}")
}

/// A preview as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Preview {
    pub repository: String,
    pub root: String,
    pub pull_request: u64,
    pub active: bool,
    /// The commit last applied (or being applied).
    pub commit_sha: String,
    /// The root's string outputs after the last apply: the preview's URLs.
    pub urls: BTreeMap<String, String>,
    pub updated_at_ms: i64,
    pub expires_at_ms: i64,
}

fn preview_of(r: &rusqlite::Row<'_>) -> rusqlite::Result<Preview> {
    let urls: String = r.get(5)?;
    Ok(Preview {
        repository: r.get(0)?,
        root: r.get(1)?,
        pull_request: u64::try_from(r.get::<_, i64>(2)?).unwrap_or(0),
        active: r.get::<_, String>(3)? == "active",
        commit_sha: r.get(4)?,
        urls: serde_json::from_str(&urls).unwrap_or_default(),
        updated_at_ms: r.get(6)?,
        expires_at_ms: r.get(7)?,
    })
}

const COLUMNS: &str =
    "repository, root, pull_request, state, commit_sha, urls, updated_at_ms, expires_at_ms";

/// One root's preview of one pull request.
pub fn get(
    conn: &Connection,
    repository: &str,
    root: &str,
    pull_request: u64,
) -> Result<Option<Preview>, DbError> {
    Ok(conn
        .query_row(
            &format!("SELECT {COLUMNS} FROM previews WHERE repository = ?1 AND root = ?2 AND pull_request = ?3"),
            params![repository, root, pull_request as i64],
            preview_of,
        )
        .optional()?)
}

/// How many other pull requests of `repository` have a live preview.
pub fn others_active(
    conn: &Connection,
    repository: &str,
    pull_request: u64,
) -> Result<usize, DbError> {
    let n: i64 = conn.query_row(
        "SELECT COUNT(DISTINCT pull_request) FROM previews
         WHERE repository = ?1 AND state = 'active' AND pull_request != ?2",
        params![repository, pull_request as i64],
        |r| r.get(0),
    )?;
    Ok(usize::try_from(n).unwrap_or(0))
}

/// Every live preview.
pub fn active(conn: &Connection) -> Result<Vec<Preview>, DbError> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {COLUMNS} FROM previews WHERE state = 'active' ORDER BY repository, pull_request, root"
    ))?;
    let rows = stmt.query_map([], preview_of)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Marks the preview live at `commit` before its apply starts, its time to live
/// starting again.
pub fn mark_active(
    conn: &Connection,
    repository: &str,
    root: &str,
    pull_request: u64,
    commit: &str,
    ttl_ms: i64,
) -> Result<(), DbError> {
    let now = db::now_ms();
    conn.execute(
        "INSERT INTO previews (repository, root, pull_request, state, commit_sha, updated_at_ms, expires_at_ms)
         VALUES (?1, ?2, ?3, 'active', ?4, ?5, ?6)
         ON CONFLICT (repository, root, pull_request) DO UPDATE SET state = 'active',
           commit_sha = excluded.commit_sha, updated_at_ms = excluded.updated_at_ms,
           expires_at_ms = excluded.expires_at_ms",
        params![repository, root, pull_request as i64, commit, now, now.saturating_add(ttl_ms)],
    )?;
    Ok(())
}

/// What a finished preview job changes, in the transaction that records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// The apply succeeded: the preview's URLs; its time to live starts now.
    Applied {
        repository: String,
        root: String,
        pull_request: u64,
        urls: BTreeMap<String, String>,
        ttl_ms: i64,
    },
    /// The teardown succeeded: nothing of it is left.
    Destroyed {
        repository: String,
        root: String,
        pull_request: u64,
    },
}

impl Effect {
    pub fn apply(&self, tx: &Connection) -> Result<(), DbError> {
        match self {
            Effect::Applied {
                repository,
                root,
                pull_request,
                urls,
                ttl_ms,
            } => {
                let urls =
                    serde_json::to_string(urls).map_err(|e| DbError::Corrupt(e.to_string()))?;
                let now = db::now_ms();
                tx.execute(
                    "UPDATE previews SET urls = ?4, updated_at_ms = ?5, expires_at_ms = ?6
                     WHERE repository = ?1 AND root = ?2 AND pull_request = ?3",
                    params![
                        repository,
                        root,
                        *pull_request as i64,
                        urls,
                        now,
                        now.saturating_add(*ttl_ms)
                    ],
                )?;
            }
            Effect::Destroyed {
                repository,
                root,
                pull_request,
            } => {
                tx.execute(
                    "UPDATE previews SET state = 'destroyed', urls = '{}', updated_at_ms = ?4
                     WHERE repository = ?1 AND root = ?2 AND pull_request = ?3",
                    params![repository, root, *pull_request as i64, db::now_ms()],
                )?;
            }
        }
        Ok(())
    }
}

/// Whether a teardown of this preview is queued or running already.
fn teardown_pending(conn: &Connection, p: &Preview) -> Result<bool, DbError> {
    Ok(conn
        .query_row(
            "SELECT 1 FROM jobs WHERE repository = ?1 AND root = ?2 AND pull_request = ?3
               AND kind = 'preview-destroy' AND state != 'done' LIMIT 1",
            params![p.repository, p.root, p.pull_request as i64],
            |_| Ok(()),
        )
        .optional()?
        .is_some())
}

/// The teardown job of `preview`.
fn teardown(p: &Preview, branch: &str, trigger: Trigger) -> NewJobs {
    NewJobs {
        delivery: None,
        repository: p.repository.clone(),
        branch: branch.to_owned(),
        commit_sha: p.commit_sha.clone(),
        trigger,
        pull_request: Some(p.pull_request),
        actor: None,
        roots: vec![p.root.clone()],
        kind: JobKind::PreviewDestroy,
        head_sha: None,
        base_sha: None,
        authors: Vec::new(),
    }
}

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
            .run(move |conn| teardown_pending(conn, &check))
            .await?;
        if pending {
            continue;
        }
        tracing::info!(repository = %p.repository, root = %p.root, pull_request = p.pull_request, how = trigger.as_str(), "preview teardown queued");
        state
            .writer
            .submit(Intake::Jobs(teardown(&p, &repo.branch, trigger)))
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
        .run(|conn| active(conn))
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
    let live = state.db.run(|conn| active(conn)).await?;
    let mut closed = Vec::new();
    for p in live {
        let Some(github_name) = state
            .config
            .repository(&p.repository)
            .and_then(|r| r.github.clone())
        else {
            continue;
        };
        let route = format!("/repos/{github_name}/pulls/{}", p.pull_request);
        match github.get("read a pull request's state", &route).await {
            Ok(pull) if pull["state"].as_str() == Some("closed") => closed.push(p),
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(pull_request = p.pull_request, error = %e, "preview sweep: cannot read the pull request; trying again at the next sweep")
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_preview_is_live_from_its_first_apply_until_its_teardown_is_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let conn = db::open(&dir.path().join("p.db")).unwrap();
        assert_eq!(get(&conn, "r", "app", 7).unwrap(), None);
        mark_active(&conn, "r", "app", 7, "abc", 60_000).unwrap();
        mark_active(&conn, "r", "app", 8, "def", -1).unwrap();
        assert_eq!(others_active(&conn, "r", 7).unwrap(), 1);
        assert_eq!(others_active(&conn, "r", 9).unwrap(), 2);
        let urls = BTreeMap::from([("url".to_owned(), "http://127.0.0.1:1".to_owned())]);
        Effect::Applied {
            repository: "r".into(),
            root: "app".into(),
            pull_request: 7,
            urls: urls.clone(),
            ttl_ms: 60_000,
        }
        .apply(&conn)
        .unwrap();
        let p = get(&conn, "r", "app", 7).unwrap().unwrap();
        assert!(p.active && p.urls == urls && p.expires_at_ms > p.updated_at_ms);
        Effect::Destroyed {
            repository: "r".into(),
            root: "app".into(),
            pull_request: 8,
        }
        .apply(&conn)
        .unwrap();
        let live = active(&conn).unwrap();
        assert_eq!(live.len(), 1);
        assert_eq!(live[0].pull_request, 7);
        assert!(!teardown_pending(&conn, &live[0]).unwrap());
        assert_eq!(name(42), "pr-42");
    }
}
