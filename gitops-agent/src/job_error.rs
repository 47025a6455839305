//! How a job's run ends: [`JobError`] when it stops early, [`RunOutcome`] for what is
//! recorded.

use crate::audit::{Outcome, PlanSummary};
use crate::db::DbError;
use crate::git::GitError;

/// Why a job's run ended early. The runner decides on the variant: an interruption
/// leaves the job to run again; every other variant is recorded as the job's failure,
/// with its message (redacted) as the audit record's error.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// Stopped by the shutdown: not a job failure; the job runs again at the next start.
    #[error("interrupted by the agent's shutdown; the job runs again at the next start")]
    Interrupted,
    /// The root requires approval and the job has none: it is held as
    /// `awaiting_approval`, not failed ([`crate::approvals`]).
    #[error("the job awaits an approval")]
    AwaitingApproval,
    #[error(transparent)]
    Git(#[from] GitError),
    #[error(transparent)]
    Db(#[from] DbError),
    /// A blocking task of the job panicked or was cancelled.
    #[error("job task: {0}")]
    Task(#[from] tokio::task::JoinError),
    /// The job failed, with what to record (a Terraform command's error summary, a
    /// missing root directory, a refused credential...).
    #[error("{0}")]
    Failed(String),
}

impl From<String> for JobError {
    fn from(message: String) -> JobError {
        JobError::Failed(message)
    }
}

/// How a job's run ended, as the runner records it.
#[derive(Debug)]
pub(crate) struct RunOutcome {
    /// Stopped by the shutdown: not recorded, re-run at the next start.
    pub(crate) interrupted: bool,
    pub(crate) outcome: Outcome,
    pub(crate) author: Option<String>,
    pub(crate) plan: Option<PlanSummary>,
    pub(crate) error: Option<String>,
    pub(crate) terraform_version: Option<String>,
    /// Held for an approval: not recorded, waits as `awaiting_approval`.
    pub(crate) awaiting_approval: bool,
    /// Who approved the run (a root that requires approval).
    pub(crate) approved_by: Option<String>,
}

impl RunOutcome {
    /// Takes a job's result: an interruption re-runs the job, a hold waits for its
    /// approval, any other error fails it with the error's text.
    pub(crate) fn settle(&mut self, result: Result<Outcome, JobError>) {
        match result {
            Ok(outcome) => self.outcome = outcome,
            Err(JobError::Interrupted) => self.interrupted = true,
            Err(JobError::AwaitingApproval) => self.awaiting_approval = true,
            Err(e) => {
                self.outcome = Outcome::Failed;
                self.error = Some(e.to_string());
            }
        }
    }
}

impl Default for RunOutcome {
    fn default() -> Self {
        RunOutcome {
            awaiting_approval: false,
            approved_by: None,
            interrupted: false,
            outcome: Outcome::Failed,
            author: None,
            plan: None,
            error: None,
            terraform_version: None,
        }
    }
}
