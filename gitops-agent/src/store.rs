//! The agent's state behind one interface: jobs, deliveries, each root's deployed
//! commit, the audit log, previews, approvals and how far each GitHub report got.
//!
//! What the agent decides (which jobs collapse, who may approve, how the audit chain
//! links, what a report says) is written once, in its own module, against
//! [`AgentTx`]: one transaction of row operations. A backend implements only those
//! operations, each as plain storage with no policy of its own, and [`AgentStore`],
//! which begins transactions. [`sqlite::SqliteStore`] is the embedded default (one file
//! in the data directory). A shared PostgreSQL store, so that several agent replicas
//! share the work without a shared disk, is another implementation of these two
//! traits: the job modules do not change, and the conformance tests that pin each
//! operation's meaning (`store_conformance.rs`) run against it as against SQLite.
//!
//! A write transaction is all or nothing and serialised against other writers (SQLite
//! `BEGIN IMMEDIATE`; PostgreSQL would take row locks, `FOR UPDATE SKIP LOCKED` for
//! claims). That is what lets a job's state and its audit record commit together
//! ([`crate::queue::finish`]).

use std::collections::BTreeMap;

use crate::job_kind::{JobKind, JobState};
use crate::records::{
    AuditRecord, Delivery, Job, NewJobs, Outcome, PlanSummary, Preview, PreviewKey, Review,
    StoredRecord,
};

pub mod postgres;
mod rows;
pub mod sqlite;

/// Why the database could not be used.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("database {path}: {source}")]
    Open {
        path: String,
        source: rusqlite::Error,
    },
    #[error("cannot create data directory {path}: {source}")]
    DataDir {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot create the database file {path} (mode 0600): {source}")]
    File {
        path: String,
        source: std::io::Error,
    },
    #[error("no agent database at {path}: the agent has not run with this data_dir yet; check --config and its `data_dir`")]
    Missing { path: String },
    #[error("database: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("cannot connect to the {location}: {source}")]
    Connect {
        location: String,
        source: ::postgres::Error,
    },
    #[error("database: {0}")]
    Postgres(::postgres::Error),
    #[error("[database] settings: {0}")]
    Settings(String),
    #[error("database holds an unreadable value: {0}")]
    Corrupt(String),
    /// The blocking task that held the connection panicked or was cancelled.
    #[error("database task: {0}")]
    Task(String),
}

/// What a transaction may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Reads only, from one consistent snapshot; never waits for a writer.
    Read,
    /// Reads and writes; one writer at a time, so what it read stays true until it
    /// commits.
    Write,
}

/// Where the agent's state is kept. Implementations must be safe to share between
/// threads; every call may block (run it on a blocking thread: [`crate::db::Db::run`]).
pub trait AgentStore: Send + Sync + std::fmt::Debug {
    /// Begins a transaction. Dropping it without [`AgentTx::commit`] rolls it back.
    fn begin(&self, access: Access) -> Result<Box<dyn AgentTx + '_>, DbError>;
}

impl dyn AgentStore + '_ {
    /// Runs `f` in a read transaction.
    pub fn read<T>(
        &self,
        f: impl FnOnce(&dyn AgentTx) -> Result<T, DbError>,
    ) -> Result<T, DbError> {
        let tx = self.begin(Access::Read)?;
        f(&*tx)
    }

    /// Runs `f` in a write transaction, committed when `f` returns `Ok` and rolled back
    /// otherwise.
    pub fn write<T, E: From<DbError>>(
        &self,
        f: impl FnOnce(&dyn AgentTx) -> Result<T, E>,
    ) -> Result<T, E> {
        let tx = self.begin(Access::Write)?;
        let value = f(&*tx)?;
        tx.commit()?;
        Ok(value)
    }
}

/// Which jobs [`AgentTx::jobs`] lists (oldest first).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobQuery<'a> {
    pub state: JobState,
    pub repository: Option<&'a str>,
    pub root: Option<&'a str>,
    pub kind: Option<JobKind>,
}

impl<'a> JobQuery<'a> {
    /// Every job in `state`.
    pub fn in_state(state: JobState) -> JobQuery<'a> {
        JobQuery {
            state,
            repository: None,
            root: None,
            kind: None,
        }
    }

    /// The jobs of one root in `state`.
    pub fn of_root(state: JobState, repository: &'a str, root: &'a str) -> JobQuery<'a> {
        JobQuery {
            state,
            repository: Some(repository),
            root: Some(root),
            kind: None,
        }
    }
}

/// Where a job stands, beside what it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobStatus {
    pub state: JobState,
    /// Set once the job is done.
    pub outcome: Option<Outcome>,
    /// The job that carried this one's commit, when it was superseded.
    pub superseded_by: Option<i64>,
    pub commit_sha: String,
}

/// How many jobs are in each state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JobCounts {
    pub queued: i64,
    pub running: i64,
    pub awaiting_approval: i64,
    pub done: i64,
}

/// What is going on at one root, for the schedules (drift checks, remediation).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RootActivity {
    /// Jobs of the asked kinds in the asked states.
    pub pending: usize,
    /// When the newest job of the asked kinds was queued (any state).
    pub last_enqueued_at: Option<String>,
}

/// A merge job of one commit, for who authored it and which pull request it merged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MergeOfCommit {
    pub pull_request: Option<u64>,
    /// The pull request's head as merged.
    pub head_sha: Option<String>,
    pub authors: Vec<String>,
}

/// The newest audit record of a job, as the reporters and tools show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndRecord {
    pub ended_at: String,
    pub plan_summary: Option<PlanSummary>,
    pub error: Option<String>,
}

/// A root's deployed commit, and when its successful apply was recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeployedRoot {
    pub repository: String,
    pub root: String,
    pub commit_sha: String,
    pub deployed_at: Option<String>,
}

/// A root's newest drift check that planned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriftCheck {
    pub repository: String,
    pub root: String,
    pub plan_summary: Option<PlanSummary>,
}

/// An audit row read without trusting it: a record whose stored fields no longer
/// parse is kept as the reason, for [`crate::audit::verify`] to report.
#[derive(Debug, Clone)]
pub struct AuditRow {
    pub seq: i64,
    pub record: Result<AuditRecord, String>,
    pub prev_hash: String,
    pub hash: String,
    pub signature: String,
}

/// A kept pull request review (see [`crate::approvals`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeptReview {
    pub review_id: i64,
    pub login: String,
    pub commit_sha: String,
}

/// A job whose GitHub report is not complete, with how far it got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueReport {
    pub job: Job,
    pub state: JobState,
    pub outcome: Option<Outcome>,
    pub superseded_by: Option<i64>,
    pub steps_done: usize,
    pub deployment_id: Option<u64>,
    pub failures: u32,
}

/// How far a job's GitHub report got, to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportProgress {
    pub job_id: i64,
    pub steps_done: usize,
    pub deployment_id: Option<u64>,
    pub failures: u32,
    /// Unix ms before which the next attempt is not made.
    pub next_attempt_at: i64,
    pub last_error: Option<String>,
    pub complete: bool,
}

/// One transaction's row operations. Each is storage only: the decisions are the
/// callers'. Times are the agent's text timestamps ([`crate::db::now`]) or Unix ms,
/// as named.
pub trait AgentTx {
    /// Makes everything this transaction wrote durable.
    fn commit(self: Box<Self>) -> Result<(), DbError>;

    /// Whether the database answers.
    fn ping(&self) -> Result<(), DbError>;

    // --- deliveries

    /// Records a GitHub delivery id; `false` when it was recorded before.
    fn record_delivery(
        &self,
        delivery: &Delivery,
        outcome: &str,
        at: &str,
    ) -> Result<bool, DbError>;

    // --- jobs

    /// Stores a queued job of `jobs` for `root`; its id.
    fn insert_job(
        &self,
        jobs: &NewJobs,
        root: &str,
        delivery_id: Option<&str>,
        at: &str,
    ) -> Result<i64, DbError>;
    fn job(&self, id: i64) -> Result<Option<Job>, DbError>;
    fn job_status(&self, id: i64) -> Result<Option<JobStatus>, DbError>;
    fn jobs(&self, query: &JobQuery<'_>) -> Result<Vec<Job>, DbError>;
    fn job_counts(&self) -> Result<JobCounts, DbError>;
    /// Moves job `id` to `to` if it is in one of `from`; whether it moved.
    fn set_job_state(&self, id: i64, from: &[JobState], to: JobState) -> Result<bool, DbError>;
    /// Marks a queued or waiting job done as superseded by `by`; whether it was.
    fn supersede_job(&self, id: i64, by: i64) -> Result<bool, DbError>;
    /// Marks a job running from `at`, one more attempt, carrying `covered`.
    fn start_job(&self, id: i64, at: &str, covered: &[String]) -> Result<(), DbError>;
    /// Sets the commits job `id` covers, its state unchanged.
    fn cover_commits(&self, id: i64, covered: &[String]) -> Result<(), DbError>;
    /// Marks a job done with `outcome`.
    fn end_job(&self, id: i64, outcome: &str) -> Result<(), DbError>;
    /// Queues a running job again, marked interrupted.
    fn requeue_interrupted(&self, id: i64) -> Result<(), DbError>;
    /// The commit of the newest merge job of a root, remediations of drift left out
    /// (they re-apply a commit that already had its job).
    fn newest_merge_commit(&self, repository: &str, root: &str) -> Result<Option<String>, DbError>;
    /// [`RootActivity`] of the jobs of `kinds` at a root, counting those in `pending`.
    fn root_activity(
        &self,
        repository: &str,
        root: &str,
        kinds: &[JobKind],
        pending: &[JobState],
    ) -> Result<RootActivity, DbError>;
    /// Whether a job of `kind` for the preview `key` of a root is not done yet.
    fn preview_job_pending(
        &self,
        repository: &str,
        root: &str,
        key: &PreviewKey,
        kind: JobKind,
    ) -> Result<bool, DbError>;
    /// Every merge job of `commit` in `repository`, oldest first.
    fn merges_of_commit(
        &self,
        repository: &str,
        commit: &str,
    ) -> Result<Vec<MergeOfCommit>, DbError>;

    // --- roots

    /// The commit last applied successfully to a root.
    fn last_deployed(&self, repository: &str, root: &str) -> Result<Option<String>, DbError>;
    fn set_last_deployed(&self, repository: &str, root: &str, commit: &str) -> Result<(), DbError>;
    /// Every root with a deployed commit, by repository and root.
    fn deployed_roots(&self) -> Result<Vec<DeployedRoot>, DbError>;

    // --- audit

    /// The newest record's sequence number and hash.
    fn audit_head(&self) -> Result<Option<(i64, String)>, DbError>;
    fn insert_audit(&self, stored: &StoredRecord) -> Result<(), DbError>;
    /// Every record in the order it was stored.
    fn audit_rows(&self) -> Result<Vec<AuditRow>, DbError>;
    /// The newest record of `job_id` (with `outcome`, when given).
    fn end_record(&self, job_id: i64, outcome: Option<&str>) -> Result<Option<EndRecord>, DbError>;
    /// The newest successful plan of a pull request for a root: its job id and summary.
    fn last_pull_request_plan(
        &self,
        repository: &str,
        root: &str,
        pull_request: u64,
    ) -> Result<Option<(i64, Option<PlanSummary>)>, DbError>;
    /// Each root's newest drift check that planned.
    fn last_drift_checks(&self) -> Result<Vec<DriftCheck>, DbError>;

    // --- approvals

    fn approver_of(&self, job_id: i64) -> Result<Option<String>, DbError>;
    fn insert_approval(
        &self,
        job_id: i64,
        approver: &str,
        via: &str,
        at: &str,
    ) -> Result<(), DbError>;
    /// Keeps a review (once per review id).
    fn insert_review(&self, review: &Review, at: &str) -> Result<(), DbError>;
    /// The kept reviews of a pull request, oldest first.
    fn reviews_of(&self, repository: &str, pull_request: u64) -> Result<Vec<KeptReview>, DbError>;

    // --- previews

    fn preview(
        &self,
        repository: &str,
        root: &str,
        key: &PreviewKey,
    ) -> Result<Option<Preview>, DbError>;
    /// How many previews (distinct pull requests and branches) of `repository` other
    /// than `own` are live.
    fn other_active_previews(&self, repository: &str, own: &PreviewKey) -> Result<usize, DbError>;
    /// Every live preview, the pull requests' first.
    fn active_previews(&self) -> Result<Vec<Preview>, DbError>;
    /// Makes the preview live at `commit` (creating it), expiring at `expires_at_ms`;
    /// `requested_by` replaces who asked only when given.
    #[allow(clippy::too_many_arguments)]
    fn mark_preview_active(
        &self,
        repository: &str,
        root: &str,
        key: &PreviewKey,
        commit: &str,
        now_ms: i64,
        expires_at_ms: i64,
        requested_by: Option<&str>,
    ) -> Result<(), DbError>;
    /// The preview's URLs after an apply.
    fn preview_applied(
        &self,
        repository: &str,
        root: &str,
        key: &PreviewKey,
        urls: &BTreeMap<String, String>,
        now_ms: i64,
        expires_at_ms: i64,
    ) -> Result<(), DbError>;
    fn preview_destroyed(
        &self,
        repository: &str,
        root: &str,
        key: &PreviewKey,
        now_ms: i64,
    ) -> Result<(), DbError>;

    // --- GitHub reports

    /// The first job to report: fixed the first time it is asked as the oldest job
    /// not done then (or the next job to come).
    fn report_start_point(&self) -> Result<i64, DbError>;
    /// Up to `limit` jobs from `from` on whose report is incomplete and due at `now_ms`.
    fn due_reports(&self, from: i64, now_ms: i64, limit: usize) -> Result<Vec<DueReport>, DbError>;
    fn save_report(&self, progress: &ReportProgress) -> Result<(), DbError>;
    /// Notes that the deployment of `job_id` is being created; whether it was noted before.
    fn note_deployment_attempt(&self, job_id: i64) -> Result<bool, DbError>;
    /// The deployment of the newest preview job of a pull request and root that made one.
    fn preview_deployment(
        &self,
        repository: &str,
        root: &str,
        pull_request: Option<u64>,
    ) -> Result<Option<u64>, DbError>;
    /// The comment kept for a pull request, root and purpose.
    fn pull_request_comment(
        &self,
        repository: &str,
        pull_request: Option<u64>,
        root: &str,
        purpose: &str,
    ) -> Result<Option<u64>, DbError>;
    fn set_pull_request_comment(
        &self,
        repository: &str,
        pull_request: Option<u64>,
        root: &str,
        purpose: &str,
        comment_id: u64,
    ) -> Result<(), DbError>;
}
