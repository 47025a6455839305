//! What a job does, and where it is in its life: the enums the queue stores as text.
//!
//! A merge applies the tracked branch; the three pull-request kinds never touch it: a
//! plan shows a pull request's change (read-only credential), a preview applies the
//! pull request's head into its own workspace (PREVIEW-only credential), and a preview
//! destroy takes that workspace down again. A drift check plans a root's deployed
//! commit (read-only credential) on a schedule. The kind decides which credential the job
//! gets ([`JobKind::credential_kind`]) and how it is reported; the database holds
//! [`JobKind::as_str`], and a value it does not know is an error, never a default.

use std::fmt;
use std::str::FromStr;

/// The MCP tool that queues a branch preview, and the one that destroys it: the
/// names a caller sees, and the `tool` the audit records for their jobs.
pub const DEPLOY_BRANCH: &str = "deploy_branch_preview";
pub const DESTROY_PREVIEW: &str = "destroy_preview";

/// What a job does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobKind {
    /// Apply a commit of the tracked branch.
    Merge,
    /// `terraform plan` of a pull request, shown on it.
    PullRequestPlan,
    /// Apply a pull request's head into its preview workspace `pr-<number>`.
    Preview,
    /// Destroy a pull request's preview and remove its workspace.
    PreviewDestroy,
    /// Apply a pushed branch's commit into its preview workspace `br-<branch>`, as a
    /// named identity asked over MCP (PREVIEW-only credential, like a pull request's).
    BranchPreview,
    /// Destroy a branch's preview and remove its workspace.
    BranchPreviewDestroy,
    /// `terraform plan` of a root's deployed commit on the drift schedule
    /// ([`crate::drift`]), with a read-only credential: it never changes anything.
    Drift,
}

/// Text in the database that is not a known value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{value}` is not a known job {what}")]
pub struct UnknownValue {
    pub what: &'static str,
    pub value: String,
}

impl JobKind {
    pub const ALL: [JobKind; 7] = [
        JobKind::Merge,
        JobKind::PullRequestPlan,
        JobKind::Preview,
        JobKind::PreviewDestroy,
        JobKind::BranchPreview,
        JobKind::BranchPreviewDestroy,
        JobKind::Drift,
    ];

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::Merge => "merge",
            JobKind::PullRequestPlan => "pr-plan",
            JobKind::Preview => "preview",
            JobKind::PreviewDestroy => "preview-destroy",
            JobKind::BranchPreview => "branch-preview",
            JobKind::BranchPreviewDestroy => "branch-preview-destroy",
            JobKind::Drift => "drift",
        }
    }

    /// The MCP tool a job of this kind is asked for through (when its trigger is
    /// `mcp`): the audit records it. The tools themselves are in [`crate::mcp::jobs`].
    pub fn mcp_tool(self) -> Option<&'static str> {
        match self {
            JobKind::BranchPreview => Some(DEPLOY_BRANCH),
            JobKind::BranchPreviewDestroy => Some(DESTROY_PREVIEW),
            JobKind::Merge
            | JobKind::PullRequestPlan
            | JobKind::Preview
            | JobKind::PreviewDestroy
            | JobKind::Drift => None,
        }
    }

    /// The kind of job credential the platform sees: it decides what the job may do.
    pub fn credential_kind(self) -> slipway_platform::JobKind {
        match self {
            JobKind::Merge => slipway_platform::JobKind::Merge,
            JobKind::PullRequestPlan => slipway_platform::JobKind::PullRequestPlan,
            JobKind::Preview
            | JobKind::PreviewDestroy
            | JobKind::BranchPreview
            | JobKind::BranchPreviewDestroy => slipway_platform::JobKind::Preview,
            JobKind::Drift => slipway_platform::JobKind::Drift,
        }
    }

    /// Whether the job works on a pull request rather than the tracked branch.
    pub fn is_pull_request(self) -> bool {
        matches!(
            self,
            JobKind::PullRequestPlan | JobKind::Preview | JobKind::PreviewDestroy
        )
    }

    /// Whether the job works on a branch's preview (`br-<branch>`).
    pub fn is_branch_preview(self) -> bool {
        matches!(self, JobKind::BranchPreview | JobKind::BranchPreviewDestroy)
    }

    /// Whether the job applies a preview (of a pull request or a branch).
    pub fn applies_preview(self) -> bool {
        matches!(self, JobKind::Preview | JobKind::BranchPreview)
    }

    /// Whether the job tears a preview down.
    pub fn destroys_preview(self) -> bool {
        matches!(
            self,
            JobKind::PreviewDestroy | JobKind::BranchPreviewDestroy
        )
    }
}

impl fmt::Display for JobKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for JobKind {
    type Err = UnknownValue;
    fn from_str(s: &str) -> Result<JobKind, UnknownValue> {
        JobKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| UnknownValue {
                what: "kind",
                value: s.to_owned(),
            })
    }
}

/// Where a job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobState {
    Queued,
    Running,
    /// Held until an approver approves it (a merge of a root that requires approval,
    /// see [`crate::approvals`]); then queued again, or superseded by a newer merge.
    AwaitingApproval,
    Done,
}

impl JobState {
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::AwaitingApproval => "awaiting_approval",
            JobState::Done => "done",
        }
    }
}

impl FromStr for JobState {
    type Err = UnknownValue;
    fn from_str(s: &str) -> Result<JobState, UnknownValue> {
        [
            JobState::Queued,
            JobState::Running,
            JobState::AwaitingApproval,
            JobState::Done,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
        .ok_or_else(|| UnknownValue {
            what: "state",
            value: s.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_ones_are_errors() {
        for kind in JobKind::ALL {
            assert_eq!(kind.as_str().parse::<JobKind>(), Ok(kind));
        }
        assert!("deploy".parse::<JobKind>().is_err());
        assert_eq!("done".parse::<JobState>(), Ok(JobState::Done));
        assert_eq!(
            "awaiting_approval".parse::<JobState>(),
            Ok(JobState::AwaitingApproval)
        );
        assert!("".parse::<JobState>().is_err());
        assert!(JobKind::PullRequestPlan.credential_kind().is_read_only());
        assert_eq!(
            JobKind::PreviewDestroy.credential_kind(),
            slipway_platform::JobKind::Preview
        );
        // A branch preview is held to PREVIEW like a pull request's.
        assert_eq!(
            JobKind::BranchPreview.credential_kind(),
            slipway_platform::JobKind::Preview
        );
        assert!(!JobKind::BranchPreview.is_pull_request());
        assert!(JobKind::Drift.credential_kind().is_read_only());
        assert!(!JobKind::Drift.is_pull_request());
    }
}
