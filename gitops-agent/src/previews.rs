//! Previews: one per pull request and opted-in root, in its own Terraform workspace
//! `pr-<number>`, and what keeps them from leaking.
//!
//! A preview is recorded `active` before its first apply starts (so a crash mid-apply
//! still leaves a row to clean up) and `destroyed` only in the transaction that
//! records its successful teardown. Teardowns are ordinary durable jobs: a kill
//! mid-destroy re-runs the destroy at the next start. Three things queue them: the
//! pull request's `closed` webhook (how `pr-closed`), [`crate::preview_sweep::expire`]
//! for previews idle past their time to live (how `ttl`), and
//! [`crate::preview_sweep::sweep`], which asks GitHub about the pull
//! request of every live preview, for a `closed` webhook that never arrived.

use std::collections::BTreeMap;

use rusqlite::{params, Connection, OptionalExtension};
use sha2::{Digest as _, Sha256};
use slipway_provenance::Trigger;

use crate::db::{self, DbError};
use crate::job_kind::JobKind;
use crate::queue::{Job, NewJobs};

/// The Terraform workspace (and the variable `preview_name`) of pull request `number`.
pub fn name(number: u64) -> String {
    format!("pr-{number}")
}

/// How much of a branch's name its preview's name keeps: `br-` + this + `-` + 8 hex
/// digits is 52 characters, so a root may still add a suffix (`-db`) and stay within
/// the 63 of an environment name.
const BRANCH_NAME_KEPT: usize = 40;

/// The Terraform workspace (and `preview_name`) of a pushed branch's preview:
/// `br-<branch>`, lowercased, every other character than a letter or digit made `-`,
/// cut to [`BRANCH_NAME_KEPT`], and a hash of the exact branch name after it, so that
/// `feature/x` and `feature-x` (or two long names alike at the start) never share a
/// workspace.
pub fn branch_name(branch: &str) -> String {
    let mut kept = String::new();
    for c in branch.chars() {
        let c = if c.is_ascii_alphanumeric() {
            c.to_ascii_lowercase()
        } else {
            '-'
        };
        if !(c == '-' && (kept.is_empty() || kept.ends_with('-'))) {
            kept.push(c);
        }
        if kept.len() >= BRANCH_NAME_KEPT {
            break;
        }
    }
    let kept = kept.trim_end_matches('-');
    let digest = hex::encode(Sha256::digest(branch.as_bytes()));
    let hash = &digest[..8];
    if kept.is_empty() {
        format!("br-{hash}")
    } else {
        format!("br-{kept}-{hash}")
    }
}

/// Which preview of a root: a pull request's, or a pushed branch's (asked for over
/// MCP). Both are held to PREVIEW, share the repository's cap and the root's time to
/// live; only where their commit comes from and who asked differ.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PreviewKey {
    PullRequest(u64),
    Branch(String),
}

impl PreviewKey {
    /// The preview a job of a preview kind works on; `None` for merges and plans.
    pub fn of(job: &Job) -> Option<PreviewKey> {
        match job.kind {
            JobKind::Preview | JobKind::PreviewDestroy => {
                job.pull_request.map(PreviewKey::PullRequest)
            }
            JobKind::BranchPreview | JobKind::BranchPreviewDestroy => {
                Some(PreviewKey::Branch(job.branch.clone()))
            }
            JobKind::Merge | JobKind::PullRequestPlan | JobKind::Drift => None,
        }
    }

    /// Its workspace and `preview_name`.
    pub fn name(&self) -> String {
        match self {
            PreviewKey::PullRequest(n) => name(*n),
            PreviewKey::Branch(b) => branch_name(b),
        }
    }

    fn teardown_kind(&self) -> JobKind {
        match self {
            PreviewKey::PullRequest(_) => JobKind::PreviewDestroy,
            PreviewKey::Branch(_) => JobKind::BranchPreviewDestroy,
        }
    }
}

/// A preview as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Preview {
    pub repository: String,
    pub root: String,
    pub key: PreviewKey,
    pub active: bool,
    /// The commit last applied (or being applied).
    pub commit_sha: String,
    /// The root's string outputs after the last apply: the preview's URLs.
    pub urls: BTreeMap<String, String>,
    pub updated_at_ms: i64,
    pub expires_at_ms: i64,
    /// For a branch preview: the identity that last asked for it.
    pub requested_by: Option<String>,
}

fn preview_of(r: &rusqlite::Row<'_>, key: PreviewKey) -> rusqlite::Result<Preview> {
    let urls: String = r.get(5)?;
    Ok(Preview {
        repository: r.get(0)?,
        root: r.get(1)?,
        key,
        active: r.get::<_, String>(3)? == "active",
        commit_sha: r.get(4)?,
        urls: serde_json::from_str(&urls).unwrap_or_default(),
        updated_at_ms: r.get(6)?,
        expires_at_ms: r.get(7)?,
        requested_by: r.get(8)?,
    })
}

fn pull_request_preview(r: &rusqlite::Row<'_>) -> rusqlite::Result<Preview> {
    let number = u64::try_from(r.get::<_, i64>(2)?).unwrap_or(0);
    preview_of(r, PreviewKey::PullRequest(number))
}

fn branch_preview(r: &rusqlite::Row<'_>) -> rusqlite::Result<Preview> {
    let branch: String = r.get(2)?;
    preview_of(r, PreviewKey::Branch(branch))
}

const COLUMNS: &str =
    "repository, root, pull_request, state, commit_sha, urls, updated_at_ms, expires_at_ms, NULL";
const BRANCH_COLUMNS: &str =
    "repository, root, branch, state, commit_sha, urls, updated_at_ms, expires_at_ms, requested_by";

/// One root's preview of one pull request.
pub fn get(
    conn: &Connection,
    repository: &str,
    root: &str,
    pull_request: u64,
) -> Result<Option<Preview>, DbError> {
    get_key(
        conn,
        repository,
        root,
        &PreviewKey::PullRequest(pull_request),
    )
}

/// One root's preview of `key`.
pub fn get_key(
    conn: &Connection,
    repository: &str,
    root: &str,
    key: &PreviewKey,
) -> Result<Option<Preview>, DbError> {
    Ok(match key {
        PreviewKey::PullRequest(n) => conn
            .query_row(
                &format!("SELECT {COLUMNS} FROM previews WHERE repository = ?1 AND root = ?2 AND pull_request = ?3"),
                params![repository, root, *n as i64],
                pull_request_preview,
            )
            .optional()?,
        PreviewKey::Branch(b) => conn
            .query_row(
                &format!("SELECT {BRANCH_COLUMNS} FROM branch_previews WHERE repository = ?1 AND root = ?2 AND branch = ?3"),
                params![repository, root, b],
                branch_preview,
            )
            .optional()?,
    })
}

/// How many other previews (pull requests and branches) of `repository` are live.
pub fn others_active(
    conn: &Connection,
    repository: &str,
    own: &PreviewKey,
) -> Result<usize, DbError> {
    let (own_pr, own_branch) = match own {
        PreviewKey::PullRequest(n) => (Some(*n as i64), None),
        PreviewKey::Branch(b) => (None, Some(b.as_str())),
    };
    let n: i64 = conn.query_row(
        "SELECT (SELECT COUNT(DISTINCT pull_request) FROM previews
                 WHERE repository = ?1 AND state = 'active' AND pull_request IS NOT ?2)
              + (SELECT COUNT(DISTINCT branch) FROM branch_previews
                 WHERE repository = ?1 AND state = 'active' AND branch IS NOT ?3)",
        params![repository, own_pr, own_branch],
        |r| r.get(0),
    )?;
    Ok(usize::try_from(n).unwrap_or(0))
}

/// Every live preview, the pull requests' first.
pub fn active(conn: &Connection) -> Result<Vec<Preview>, DbError> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {COLUMNS} FROM previews WHERE state = 'active' ORDER BY repository, pull_request, root"
    ))?;
    let mut all: Vec<Preview> = stmt
        .query_map([], pull_request_preview)?
        .collect::<Result<_, _>>()?;
    let mut stmt = conn.prepare(&format!(
        "SELECT {BRANCH_COLUMNS} FROM branch_previews WHERE state = 'active' ORDER BY repository, branch, root"
    ))?;
    let branches = stmt.query_map([], branch_preview)?;
    for p in branches {
        all.push(p?);
    }
    Ok(all)
}

/// Marks the preview live at `commit` before its apply starts, its time to live
/// starting again; `requested_by` is who asked for a branch preview.
pub fn mark_active(
    conn: &Connection,
    repository: &str,
    root: &str,
    key: &PreviewKey,
    commit: &str,
    ttl_ms: i64,
    requested_by: Option<&str>,
) -> Result<(), DbError> {
    let now = db::now_ms();
    let expires = now.saturating_add(ttl_ms);
    match key {
        PreviewKey::PullRequest(n) => conn.execute(
            "INSERT INTO previews (repository, root, pull_request, state, commit_sha, updated_at_ms, expires_at_ms)
             VALUES (?1, ?2, ?3, 'active', ?4, ?5, ?6)
             ON CONFLICT (repository, root, pull_request) DO UPDATE SET state = 'active',
               commit_sha = excluded.commit_sha, updated_at_ms = excluded.updated_at_ms,
               expires_at_ms = excluded.expires_at_ms",
            params![repository, root, *n as i64, commit, now, expires],
        )?,
        PreviewKey::Branch(b) => conn.execute(
            "INSERT INTO branch_previews (repository, root, branch, state, commit_sha, updated_at_ms, expires_at_ms, requested_by)
             VALUES (?1, ?2, ?3, 'active', ?4, ?5, ?6, ?7)
             ON CONFLICT (repository, root, branch) DO UPDATE SET state = 'active',
               commit_sha = excluded.commit_sha, updated_at_ms = excluded.updated_at_ms,
               expires_at_ms = excluded.expires_at_ms,
               requested_by = COALESCE(excluded.requested_by, requested_by)",
            params![repository, root, b, commit, now, expires, requested_by],
        )?,
    };
    Ok(())
}

/// What a finished preview job changes, in the transaction that records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// The apply succeeded: the preview's URLs; its time to live starts now.
    Applied {
        repository: String,
        root: String,
        key: PreviewKey,
        urls: BTreeMap<String, String>,
        ttl_ms: i64,
    },
    /// The teardown succeeded: nothing of it is left.
    Destroyed {
        repository: String,
        root: String,
        key: PreviewKey,
    },
}

/// The table and key column of `key`'s row, and the key as SQL.
fn row_of(key: &PreviewKey) -> (&'static str, &'static str, rusqlite::types::Value) {
    match key {
        PreviewKey::PullRequest(n) => ("previews", "pull_request", (*n as i64).into()),
        PreviewKey::Branch(b) => ("branch_previews", "branch", b.clone().into()),
    }
}

impl Effect {
    pub fn apply(&self, tx: &Connection) -> Result<(), DbError> {
        match self {
            Effect::Applied {
                repository,
                root,
                key,
                urls,
                ttl_ms,
            } => {
                let urls =
                    serde_json::to_string(urls).map_err(|e| DbError::Corrupt(e.to_string()))?;
                let now = db::now_ms();
                let (table, column, value) = row_of(key);
                tx.execute(
                    &format!(
                        "UPDATE {table} SET urls = ?4, updated_at_ms = ?5, expires_at_ms = ?6
                     WHERE repository = ?1 AND root = ?2 AND {column} = ?3"
                    ),
                    params![
                        repository,
                        root,
                        value,
                        urls,
                        now,
                        now.saturating_add(*ttl_ms)
                    ],
                )?;
            }
            Effect::Destroyed {
                repository,
                root,
                key,
            } => {
                let (table, column, value) = row_of(key);
                tx.execute(
                    &format!(
                        "UPDATE {table} SET state = 'destroyed', urls = '{{}}', updated_at_ms = ?4
                     WHERE repository = ?1 AND root = ?2 AND {column} = ?3"
                    ),
                    params![repository, root, value, db::now_ms()],
                )?;
            }
        }
        Ok(())
    }
}

/// Whether a teardown of this preview is queued or running already.
pub(crate) fn teardown_pending(conn: &Connection, p: &Preview) -> Result<bool, DbError> {
    let (_, column, value) = row_of(&p.key);
    Ok(conn
        .query_row(
            &format!(
                "SELECT 1 FROM jobs WHERE repository = ?1 AND root = ?2 AND {column} = ?3
                   AND kind = ?4 AND state != 'done' LIMIT 1"
            ),
            params![p.repository, p.root, value, p.key.teardown_kind().as_str()],
            |_| Ok(()),
        )
        .optional()?
        .is_some())
}

/// The teardown job of `preview` (a pull request's runs with the tracked `branch`).
pub fn teardown(p: &Preview, branch: &str, trigger: Trigger, actor: Option<String>) -> NewJobs {
    let (branch, pull_request) = match &p.key {
        PreviewKey::PullRequest(n) => (branch.to_owned(), Some(*n)),
        PreviewKey::Branch(b) => (b.clone(), None),
    };
    NewJobs {
        delivery: None,
        repository: p.repository.clone(),
        branch,
        commit_sha: p.commit_sha.clone(),
        trigger,
        pull_request,
        actor,
        roots: vec![p.root.clone()],
        kind: p.key.teardown_kind(),
        head_sha: None,
        base_sha: None,
        authors: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PR7: PreviewKey = PreviewKey::PullRequest(7);

    #[test]
    fn a_preview_is_live_from_its_first_apply_until_its_teardown_is_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let conn = db::open(&dir.path().join("p.db")).unwrap();
        assert_eq!(get(&conn, "r", "app", 7).unwrap(), None);
        mark_active(&conn, "r", "app", &PR7, "abc", 60_000, None).unwrap();
        let pr8 = PreviewKey::PullRequest(8);
        mark_active(&conn, "r", "app", &pr8, "def", -1, None).unwrap();
        assert_eq!(others_active(&conn, "r", &PR7).unwrap(), 1);
        assert_eq!(
            others_active(&conn, "r", &PreviewKey::PullRequest(9)).unwrap(),
            2
        );
        let urls = BTreeMap::from([("url".to_owned(), "http://127.0.0.1:1".to_owned())]);
        Effect::Applied {
            repository: "r".into(),
            root: "app".into(),
            key: PR7,
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
            key: pr8,
        }
        .apply(&conn)
        .unwrap();
        let live = active(&conn).unwrap();
        assert_eq!(live.len(), 1);
        assert_eq!(live[0].key, PR7);
        assert!(!teardown_pending(&conn, &live[0]).unwrap());
        assert_eq!(name(42), "pr-42");
    }

    #[test]
    fn a_branch_preview_shares_the_cap_and_keeps_who_asked() {
        let dir = tempfile::tempdir().unwrap();
        let conn = db::open(&dir.path().join("p.db")).unwrap();
        let branch = PreviewKey::Branch("feature/login".into());
        mark_active(&conn, "r", "app", &PR7, "abc", 60_000, None).unwrap();
        mark_active(
            &conn,
            "r",
            "app",
            &branch,
            "def",
            60_000,
            Some("claude-code@alice"),
        )
        .unwrap();
        // Each counts against the other's cap, never against its own.
        assert_eq!(others_active(&conn, "r", &PR7).unwrap(), 1);
        assert_eq!(others_active(&conn, "r", &branch).unwrap(), 1);
        // Asked again without a name (a TTL refresh, say): who asked stays.
        mark_active(&conn, "r", "app", &branch, "0ff", 60_000, None).unwrap();
        let p = get_key(&conn, "r", "app", &branch).unwrap().unwrap();
        assert_eq!(p.requested_by.as_deref(), Some("claude-code@alice"));
        assert_eq!(p.commit_sha, "0ff");
        let job = teardown(&p, "main", Trigger::Mcp, Some("claude-code@alice".into()));
        assert_eq!(job.kind, JobKind::BranchPreviewDestroy);
        assert_eq!(
            (job.branch.as_str(), job.pull_request),
            ("feature/login", None)
        );
        Effect::Destroyed {
            repository: "r".into(),
            root: "app".into(),
            key: branch.clone(),
        }
        .apply(&conn)
        .unwrap();
        assert!(!get_key(&conn, "r", "app", &branch).unwrap().unwrap().active);
        assert_eq!(active(&conn).unwrap().len(), 1);
    }

    #[test]
    fn branch_names_become_distinct_bounded_preview_names() {
        let a = branch_name("feature/login");
        assert!(a.starts_with("br-feature-login-") && a.len() == "br-feature-login-".len() + 8);
        assert_ne!(a, branch_name("feature-login"));
        assert_ne!(a, branch_name("Feature/Login"));
        let long = branch_name(&"x".repeat(300));
        assert_eq!(long.len(), 3 + BRANCH_NAME_KEPT + 1 + 8);
        assert_ne!(long, branch_name(&"x".repeat(301)));
        assert!(branch_name("___").starts_with("br-") && branch_name("___").len() == 11);
        for name in [a, long, branch_name("--a..b--/")] {
            assert!(name.len() <= 63, "{name}");
            assert!(name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'));
            assert!(!name.ends_with('-') && !name.contains("--"), "{name}");
        }
    }
}
