//! What the agent keeps, as data: deliveries, jobs, previews, reviews and audit
//! records. These are the words the store ([`crate::store`]) speaks, so they sit below
//! every module that decides about them; those modules add the behaviour
//! (`queue.rs` the audit record of a job, `previews.rs` a preview's name, `audit.rs`
//! the hash chain) and re-export the types where callers have always found them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use slipway_provenance::Trigger;

use crate::job_kind::JobKind;

/// A GitHub delivery, for de-duplication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub id: String,
    pub event: String,
}

/// A commit to deploy to some roots of a repository (or, for the pull request kinds,
/// to plan, preview or tear down).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewJobs {
    pub delivery: Option<Delivery>,
    pub repository: String,
    pub branch: String,
    pub commit_sha: String,
    pub trigger: Trigger,
    pub pull_request: Option<u64>,
    pub actor: Option<String>,
    pub roots: Vec<String>,
    pub kind: JobKind,
    /// A pull request's head commit (its checks and statuses go there).
    pub head_sha: Option<String>,
    /// The commit the pull request is based on, as GitHub said.
    pub base_sha: Option<String>,
    /// Who authored the change (GitHub logins or identity names): they may not
    /// approve it ([`crate::approvals`]).
    pub authors: Vec<String>,
}

impl NewJobs {
    /// Merge jobs of `commit_sha` for `roots`.
    #[allow(clippy::too_many_arguments)]
    pub fn merge(
        delivery: Option<Delivery>,
        repository: String,
        branch: String,
        commit_sha: String,
        trigger: Trigger,
        pull_request: Option<u64>,
        actor: Option<String>,
        roots: Vec<String>,
    ) -> NewJobs {
        NewJobs {
            delivery,
            repository,
            branch,
            commit_sha,
            trigger,
            pull_request,
            actor,
            roots,
            kind: JobKind::Merge,
            head_sha: None,
            base_sha: None,
            authors: Vec::new(),
        }
    }
}

/// A job as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    pub id: i64,
    pub repository: String,
    pub root: String,
    pub branch: String,
    pub commit_sha: String,
    pub trigger: Trigger,
    pub delivery_id: Option<String>,
    pub pull_request: Option<u64>,
    pub actor: Option<String>,
    pub enqueued_at: String,
    /// Commits of jobs collapsed into this one, oldest first (its own is not included).
    pub covered: Vec<String>,
    pub started_at: Option<String>,
    pub attempts: i64,
    pub interrupted: bool,
    pub kind: JobKind,
    pub head_sha: Option<String>,
    pub base_sha: Option<String>,
}

impl Job {
    /// Every commit this job stands for, its own last.
    pub fn all_commits(&self) -> Vec<String> {
        let mut all = self.covered.clone();
        if !all.contains(&self.commit_sha) {
            all.push(self.commit_sha.clone());
        }
        all
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

/// A pull request review in state `approved`, from its webhook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Review {
    pub repository: String,
    pub pull_request: u64,
    pub review_id: i64,
    pub login: String,
    /// The head the review approved.
    pub commit_sha: String,
    /// The pull request's author: never an approver of it.
    pub pull_request_author: Option<String>,
}

/// How a job ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Succeeded,
    Failed,
    Skipped,
    Superseded,
    Interrupted,
    /// An approver approved the job's change (it runs next; its own record follows).
    Approved,
    /// An approval was refused (the author's own, or not an approver's); the job
    /// still waits.
    ApprovalRefused,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Succeeded => "succeeded",
            Outcome::Failed => "failed",
            Outcome::Skipped => "skipped",
            Outcome::Superseded => "superseded",
            Outcome::Interrupted => "interrupted",
            Outcome::Approved => "approved",
            Outcome::ApprovalRefused => "approval-refused",
        }
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Outcome {
    type Err = crate::job_kind::UnknownValue;
    fn from_str(s: &str) -> Result<Outcome, Self::Err> {
        [
            Outcome::Succeeded,
            Outcome::Failed,
            Outcome::Skipped,
            Outcome::Superseded,
            Outcome::Interrupted,
        ]
        .into_iter()
        .find(|o| o.as_str() == s)
        .ok_or_else(|| crate::job_kind::UnknownValue {
            what: "outcome",
            value: s.to_owned(),
        })
    }
}

/// What a plan would do: counts as Terraform reports them (a replacement counts as
/// one add and one destroy) and the resource addresses.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanSummary {
    pub add: u64,
    pub change: u64,
    pub destroy: u64,
    pub to_add: Vec<String>,
    pub to_change: Vec<String>,
    pub to_destroy: Vec<String>,
    /// The destroyed addresses that are in a PRODUCTION environment (an environment
    /// whose `mode` is PRODUCTION, or what lives in one), called out on pull requests.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub production_destroys: Vec<String>,
}

impl PlanSummary {
    /// Whether the plan changes anything (for a drift check: drift).
    pub fn has_changes(&self) -> bool {
        self.add + self.change + self.destroy > 0
    }

    /// `2 to add, 0 to change, 1 to destroy`, or `no changes`.
    pub fn counts(&self) -> String {
        if !self.has_changes() {
            "no changes".to_owned()
        } else {
            format!(
                "{} to add, {} to change, {} to destroy",
                self.add, self.change, self.destroy
            )
        }
    }
}

/// One audit record. Field order is part of the hash: do not reorder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    pub seq: i64,
    pub job_id: Option<i64>,
    /// webhook, poll, manual or api.
    pub trigger: String,
    pub delivery_id: Option<String>,
    pub repository: String,
    pub root: String,
    pub branch: String,
    pub commit_sha: String,
    /// Every commit this record stands for, its own included, oldest job first.
    pub covered_commits: Vec<String>,
    pub pull_request: Option<u64>,
    /// Who merged the pull request, pushed, or triggered the deploy.
    pub merged_by: Option<String>,
    /// The commit's author, `Name <email>`.
    pub author: Option<String>,
    pub started_at: String,
    pub ended_at: String,
    /// succeeded, failed, skipped, superseded or interrupted.
    pub outcome: String,
    pub plan_summary: Option<PlanSummary>,
    pub error: Option<String>,
    pub terraform_version: Option<String>,
    /// The job's kind (`pr-plan`, `preview`, `preview-destroy`); absent for a merge,
    /// so records made before kinds existed hash as they did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// The MCP tool the job was asked for through (`deploy_branch_preview`); then
    /// `merged_by` is the asking identity and `trigger` is `mcp`. Absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool: Option<String>,
    /// Who approved the job's change (an approver's identity), for a root that
    /// requires approval; absent otherwise, so older records hash as they did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approved_by: Option<String>,
}

/// A record as stored, with its chain fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredRecord {
    #[serde(flatten)]
    pub record: AuditRecord,
    pub prev_hash: String,
    pub hash: String,
    pub signature: String,
}
