//! Reading the agent's records out of a backend's rows, written once: each backend
//! says how to read one column ([`Columns`]), and the columns every backend selects in
//! the same order ([`JOB_COLUMNS`], [`AUDIT_COLUMNS`]) become records here.

use super::{AuditRow, DbError, DueReport};
use crate::records::{AuditRecord, Job, PlanSummary, Preview, PreviewKey};

/// One result row, column by column (by position).
pub(super) trait Columns {
    fn text(&self, i: usize) -> Result<Option<String>, DbError>;
    fn int(&self, i: usize) -> Result<Option<i64>, DbError>;
    /// A yes/no column (SQLite keeps it as 0 or 1, PostgreSQL as a boolean).
    fn flag(&self, i: usize) -> Result<bool, DbError>;
}

/// A value kept as JSON text.
pub(super) fn json<T: serde::Serialize>(value: &T) -> Result<String, DbError> {
    serde_json::to_string(value).map_err(|e| DbError::Corrupt(e.to_string()))
}

/// A count or id as the databases' signed 64-bit integers.
pub(super) fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn missing(i: usize) -> DbError {
    DbError::Corrupt(format!("column {i} is empty"))
}

fn text(r: &impl Columns, i: usize) -> Result<String, DbError> {
    r.text(i)?.ok_or_else(|| missing(i))
}

fn int(r: &impl Columns, i: usize) -> Result<i64, DbError> {
    r.int(i)?.ok_or_else(|| missing(i))
}

/// A stored name (a state, a kind, an outcome) that must parse.
pub(super) fn parsed<T: std::str::FromStr>(r: &impl Columns, i: usize) -> Result<T, DbError>
where
    T::Err: std::fmt::Display,
{
    parsed_optional(r, i)?.ok_or_else(|| missing(i))
}

pub(super) fn parsed_optional<T: std::str::FromStr>(
    r: &impl Columns,
    i: usize,
) -> Result<Option<T>, DbError>
where
    T::Err: std::fmt::Display,
{
    r.text(i)?
        .map(|t| {
            t.parse()
                .map_err(|e: T::Err| DbError::Corrupt(format!("column {i}: {e}")))
        })
        .transpose()
}

/// A plan summary column; one that no longer parses reads as none, as the reports
/// have always treated it.
pub(super) fn plan_of(text: Option<String>) -> Option<PlanSummary> {
    text.and_then(|s| serde_json::from_str(&s).ok())
}

fn count(n: Option<i64>) -> Option<u64> {
    n.and_then(|n| u64::try_from(n).ok())
}

/// The columns [`job`] reads, in its order.
pub(super) const JOB_COLUMNS: &str = "id, repository, root, branch, commit_sha, trigger, delivery_id, pull_request, actor, enqueued_at, covered, started_at, attempts, interrupted, kind, head_sha, base_sha";

/// How many columns [`job`] reads; columns a query adds after them start here.
const JOB_COLUMN_COUNT: usize = 17;

/// [`JOB_COLUMNS`] with each column qualified by `prefix` (`"j."`), for joins.
pub(super) fn job_columns(prefix: &str) -> String {
    JOB_COLUMNS
        .split(", ")
        .map(|c| format!("{prefix}{c}"))
        .collect::<Vec<_>>()
        .join(", ")
}

pub(super) fn job(r: &impl Columns) -> Result<Job, DbError> {
    Ok(Job {
        id: int(r, 0)?,
        repository: text(r, 1)?,
        root: text(r, 2)?,
        branch: text(r, 3)?,
        commit_sha: text(r, 4)?,
        trigger: parsed(r, 5)?,
        delivery_id: r.text(6)?,
        pull_request: count(r.int(7)?),
        actor: r.text(8)?,
        enqueued_at: text(r, 9)?,
        covered: serde_json::from_str(&text(r, 10)?).unwrap_or_default(),
        started_at: r.text(11)?,
        attempts: int(r, 12)?,
        interrupted: r.flag(13)?,
        kind: parsed(r, 14)?,
        head_sha: r.text(15)?,
        base_sha: r.text(16)?,
    })
}

/// The columns [`due_report`] reads: a job's, then its state and report progress
/// (`j` the jobs table, `r` the GitHub reports).
pub(super) fn due_report_columns() -> String {
    format!(
        "{}, j.state, j.outcome, j.superseded_by, COALESCE(r.steps_done, 0), r.deployment_id, COALESCE(r.failures, 0)",
        job_columns("j.")
    )
}

pub(super) fn due_report(r: &impl Columns) -> Result<DueReport, DbError> {
    let n = JOB_COLUMN_COUNT;
    Ok(DueReport {
        job: job(r)?,
        state: parsed(r, n)?,
        outcome: parsed_optional(r, n + 1)?,
        superseded_by: r.int(n + 2)?,
        steps_done: count(r.int(n + 3)?)
            .and_then(|n| usize::try_from(n).ok())
            .unwrap_or(0),
        deployment_id: count(r.int(n + 4)?),
        failures: u32::try_from(int(r, n + 5)?).unwrap_or(u32::MAX),
    })
}

/// A preview row: repository, root, its key column, state, commit, urls, updated,
/// expires, who asked.
fn preview(r: &impl Columns, key: PreviewKey) -> Result<Preview, DbError> {
    Ok(Preview {
        repository: text(r, 0)?,
        root: text(r, 1)?,
        key,
        active: text(r, 3)? == "active",
        commit_sha: text(r, 4)?,
        urls: serde_json::from_str(&text(r, 5)?).unwrap_or_default(),
        updated_at_ms: int(r, 6)?,
        expires_at_ms: int(r, 7)?,
        requested_by: r.text(8)?,
    })
}

pub(super) fn pull_request_preview(r: &impl Columns) -> Result<Preview, DbError> {
    let number = count(r.int(2)?).unwrap_or(0);
    preview(r, PreviewKey::PullRequest(number))
}

pub(super) fn branch_preview(r: &impl Columns) -> Result<Preview, DbError> {
    preview(r, PreviewKey::Branch(text(r, 2)?))
}

/// The columns [`audit_row`] reads, in its order.
pub(super) const AUDIT_COLUMNS: &str =
    "seq, job_id, trigger, delivery_id, repository, root, branch, commit_sha,
    covered_commits, pull_request, merged_by, author, started_at, ended_at, outcome,
    plan_summary, error, terraform_version, prev_hash, hash, signature, kind, tool, approved_by";

/// An audit row, its record parsed without trusting it: a field that no longer reads
/// is the reason [`crate::audit::verify`] reports.
pub(super) fn audit_row(r: &impl Columns) -> Result<AuditRow, DbError> {
    let record = (|| -> Result<AuditRecord, String> {
        let s = |e: DbError| e.to_string();
        let covered = text(r, 8).map_err(s)?;
        let plan = r.text(15).map_err(s)?;
        Ok(AuditRecord {
            seq: int(r, 0).map_err(s)?,
            job_id: r.int(1).map_err(s)?,
            trigger: text(r, 2).map_err(s)?,
            delivery_id: r.text(3).map_err(s)?,
            repository: text(r, 4).map_err(s)?,
            root: text(r, 5).map_err(s)?,
            branch: text(r, 6).map_err(s)?,
            commit_sha: text(r, 7).map_err(s)?,
            covered_commits: serde_json::from_str(&covered)
                .map_err(|e| format!("covered_commits: {e}"))?,
            pull_request: r
                .int(9)
                .map_err(s)?
                .map(u64::try_from)
                .transpose()
                .map_err(|e| format!("pull_request: {e}"))?,
            merged_by: r.text(10).map_err(s)?,
            author: r.text(11).map_err(s)?,
            started_at: text(r, 12).map_err(s)?,
            ended_at: text(r, 13).map_err(s)?,
            outcome: text(r, 14).map_err(s)?,
            plan_summary: plan
                .as_deref()
                .map(serde_json::from_str::<PlanSummary>)
                .transpose()
                .map_err(|e| format!("plan_summary: {e}"))?,
            error: r.text(16).map_err(s)?,
            terraform_version: r.text(17).map_err(s)?,
            kind: r.text(21).map_err(s)?,
            tool: r.text(22).map_err(s)?,
            approved_by: r.text(23).map_err(s)?,
        })
    })();
    Ok(AuditRow {
        seq: int(r, 0)?,
        record,
        prev_hash: text(r, 18)?,
        hash: text(r, 19)?,
        signature: text(r, 20)?,
    })
}
