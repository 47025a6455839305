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

use sha2::{Digest as _, Sha256};
use slipway_provenance::Trigger;

use crate::db::{self, DbError};
use crate::job_kind::JobKind;
use crate::records::{Job, NewJobs};
pub use crate::records::{Preview, PreviewKey};
use crate::store::AgentTx;

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

/// One root's preview of one pull request.
pub fn get(
    tx: &dyn AgentTx,
    repository: &str,
    root: &str,
    pull_request: u64,
) -> Result<Option<Preview>, DbError> {
    tx.preview(repository, root, &PreviewKey::PullRequest(pull_request))
}

/// Marks the preview live at `commit` before its apply starts, its time to live
/// starting again; `requested_by` is who asked for a branch preview.
pub fn mark_active(
    tx: &dyn AgentTx,
    repository: &str,
    root: &str,
    key: &PreviewKey,
    commit: &str,
    ttl_ms: i64,
    requested_by: Option<&str>,
) -> Result<(), DbError> {
    let now = db::now_ms();
    tx.mark_preview_active(
        repository,
        root,
        key,
        commit,
        now,
        now.saturating_add(ttl_ms),
        requested_by,
    )
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

impl Effect {
    /// Writes the change in `tx`, the transaction that records the job's end.
    pub fn apply(&self, tx: &dyn AgentTx) -> Result<(), DbError> {
        let now = db::now_ms();
        match self {
            Effect::Applied {
                repository,
                root,
                key,
                urls,
                ttl_ms,
            } => tx.preview_applied(
                repository,
                root,
                key,
                urls,
                now,
                now.saturating_add(*ttl_ms),
            ),
            Effect::Destroyed {
                repository,
                root,
                key,
            } => tx.preview_destroyed(repository, root, key, now),
        }
    }
}

/// Whether a teardown of this preview is queued or running already.
pub(crate) fn teardown_pending(tx: &dyn AgentTx, p: &Preview) -> Result<bool, DbError> {
    tx.preview_job_pending(&p.repository, &p.root, &p.key, p.key.teardown_kind())
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
        let db = db::Db::open(&dir.path().join("p.db")).unwrap();
        let tx = db.store().begin(crate::store::Access::Write).unwrap();
        let tx = &*tx;
        assert_eq!(get(tx, "r", "app", 7).unwrap(), None);
        mark_active(tx, "r", "app", &PR7, "abc", 60_000, None).unwrap();
        let pr8 = PreviewKey::PullRequest(8);
        mark_active(tx, "r", "app", &pr8, "def", -1, None).unwrap();
        assert_eq!(tx.other_active_previews("r", &PR7).unwrap(), 1);
        assert_eq!(
            tx.other_active_previews("r", &PreviewKey::PullRequest(9))
                .unwrap(),
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
        .apply(tx)
        .unwrap();
        let p = get(tx, "r", "app", 7).unwrap().unwrap();
        assert!(p.active && p.urls == urls && p.expires_at_ms > p.updated_at_ms);
        Effect::Destroyed {
            repository: "r".into(),
            root: "app".into(),
            key: pr8,
        }
        .apply(tx)
        .unwrap();
        let live = tx.active_previews().unwrap();
        assert_eq!(live.len(), 1);
        assert_eq!(live[0].key, PR7);
        assert!(!teardown_pending(tx, &live[0]).unwrap());
        assert_eq!(name(42), "pr-42");
    }

    #[test]
    fn a_branch_preview_shares_the_cap_and_keeps_who_asked() {
        let dir = tempfile::tempdir().unwrap();
        let db = db::Db::open(&dir.path().join("p.db")).unwrap();
        let tx = db.store().begin(crate::store::Access::Write).unwrap();
        let tx = &*tx;
        let branch = PreviewKey::Branch("feature/login".into());
        mark_active(tx, "r", "app", &PR7, "abc", 60_000, None).unwrap();
        mark_active(
            tx,
            "r",
            "app",
            &branch,
            "def",
            60_000,
            Some("claude-code@alice"),
        )
        .unwrap();
        // Each counts against the other's cap, never against its own.
        assert_eq!(tx.other_active_previews("r", &PR7).unwrap(), 1);
        assert_eq!(tx.other_active_previews("r", &branch).unwrap(), 1);
        // Asked again without a name (a TTL refresh, say): who asked stays.
        mark_active(tx, "r", "app", &branch, "0ff", 60_000, None).unwrap();
        let p = tx.preview("r", "app", &branch).unwrap().unwrap();
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
        .apply(tx)
        .unwrap();
        assert!(!tx.preview("r", "app", &branch).unwrap().unwrap().active);
        assert_eq!(tx.active_previews().unwrap().len(), 1);
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
