//! The embedded store: one SQLite file in the data directory.
//!
//! WAL mode with `synchronous = FULL` makes a committed transaction survive the
//! process being killed (and power loss), which is what lets the webhook handler answer
//! GitHub as soon as its transaction commits. WAL also lets readers read while one
//! writer writes, so each transaction takes its own connection; finished connections
//! are kept for the next transaction (with their prepared statements), since opening
//! one costs more than most of the statements it runs.

mod schema;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use rusqlite::types::Value;
use rusqlite::{params, params_from_iter, Connection, OptionalExtension as _, Row};

use super::rows::{self, json, to_i64, Columns, JOB_COLUMNS};
use super::{
    Access, AgentStore, AgentTx, AuditRow, DbError, DeployedRoot, DriftCheck, DueReport, EndRecord,
    JobCounts, JobQuery, JobStatus, KeptReview, MergeOfCommit, ReportProgress, RootActivity,
};
use crate::job_kind::{JobKind, JobState};
use crate::records::{
    Delivery, Job, NewJobs, PlanSummary, Preview, PreviewKey, Review, StoredRecord,
};

/// Connections kept for reuse; more than this many at once are closed when done.
const KEPT_CONNECTIONS: usize = 8;

/// The agent's SQLite database.
#[derive(Debug)]
pub struct SqliteStore {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
}

impl SqliteStore {
    /// Opens (creating if needed, mode 0600 in a 0700 directory) the database at
    /// `path` and brings its schema up to date.
    pub fn open(path: &Path) -> Result<SqliteStore, DbError> {
        if let Some(dir) = path.parent() {
            slipway_platform::store::create_private_dir(dir).map_err(|source| {
                DbError::DataDir {
                    path: dir.display().to_string(),
                    source,
                }
            })?;
        }
        // Jobs, deliveries and the audit log: the owner's only.
        slipway_platform::store::create_private_file(path).map_err(|source| DbError::File {
            path: path.display().to_string(),
            source,
        })?;
        let store = SqliteStore {
            path: path.to_owned(),
            idle: Mutex::new(Vec::new()),
        };
        let conn = store.connect()?;
        // WAL is a property of the file: set once, every later connection uses it.
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.execute_batch(schema::SCHEMA)?;
        schema::migrate(&conn)?;
        // After the migration, which adds the columns they cover.
        conn.execute_batch(schema::INDEXES)?;
        store.give_back(conn);
        Ok(store)
    }

    /// A new connection with the durability settings every writer relies on.
    fn connect(&self) -> Result<Connection, DbError> {
        let conn = Connection::open(&self.path).map_err(|source| DbError::Open {
            path: self.path.display().to_string(),
            source,
        })?;
        conn.busy_timeout(Duration::from_secs(30))?;
        // Every statement the store runs stays prepared on a kept connection.
        conn.set_prepared_statement_cache_capacity(64);
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        Ok(conn)
    }

    fn take(&self) -> Result<Connection, DbError> {
        let kept = self
            .idle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .pop();
        match kept {
            Some(conn) => Ok(conn),
            None => self.connect(),
        }
    }

    fn give_back(&self, conn: Connection) {
        let mut idle = self
            .idle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if idle.len() < KEPT_CONNECTIONS {
            idle.push(conn);
        }
    }
}

impl AgentStore for SqliteStore {
    fn begin(&self, access: Access) -> Result<Box<dyn AgentTx + '_>, DbError> {
        let conn = self.take()?;
        conn.execute_batch(match access {
            Access::Read => "BEGIN DEFERRED",
            Access::Write => "BEGIN IMMEDIATE",
        })?;
        Ok(Box::new(SqliteTx {
            store: self,
            conn: Some(conn),
        }))
    }
}

/// One open transaction on a connection of the store.
struct SqliteTx<'s> {
    store: &'s SqliteStore,
    /// `None` once committed or rolled back.
    conn: Option<Connection>,
}

impl Drop for SqliteTx<'_> {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            // Not committed: undo. A connection whose rollback failed is not reused.
            if conn.execute_batch("ROLLBACK").is_ok() {
                self.store.give_back(conn);
            }
        }
    }
}

impl SqliteTx<'_> {
    fn conn(&self) -> Result<&Connection, DbError> {
        self.conn
            .as_ref()
            .ok_or_else(|| DbError::Corrupt("transaction used after it ended".into()))
    }
}

impl Columns for Row<'_> {
    fn text(&self, i: usize) -> Result<Option<String>, DbError> {
        Ok(self.get(i)?)
    }

    fn int(&self, i: usize) -> Result<Option<i64>, DbError> {
        Ok(self.get(i)?)
    }

    fn flag(&self, i: usize) -> Result<bool, DbError> {
        Ok(self.get::<_, i64>(i)? != 0)
    }
}

/// Every row `stmt` returns for `params`, read by `read`.
fn all<T>(
    stmt: &mut rusqlite::CachedStatement<'_>,
    params: impl rusqlite::Params,
    read: impl Fn(&Row<'_>) -> Result<T, DbError>,
) -> Result<Vec<T>, DbError> {
    let mut rows = stmt.query(params)?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        out.push(read(r)?);
    }
    Ok(out)
}

/// The first row `stmt` returns for `params`, if any, read by `read`.
fn first<T>(
    stmt: &mut rusqlite::CachedStatement<'_>,
    params: impl rusqlite::Params,
    read: impl Fn(&Row<'_>) -> Result<T, DbError>,
) -> Result<Option<T>, DbError> {
    let mut rows = stmt.query(params)?;
    rows.next()?.map(read).transpose()
}

/// `?n, ?n+1, ...` for `count` values from `first`.
fn placeholders(first: usize, count: usize) -> String {
    (first..first + count)
        .map(|i| format!("?{i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

const PREVIEW_COLUMNS: &str =
    "repository, root, pull_request, state, commit_sha, urls, updated_at_ms, expires_at_ms, NULL";
const BRANCH_PREVIEW_COLUMNS: &str =
    "repository, root, branch, state, commit_sha, urls, updated_at_ms, expires_at_ms, requested_by";

/// The table and key column of `key`'s row, and the key as SQL.
fn preview_row(key: &PreviewKey) -> (&'static str, &'static str, Value) {
    match key {
        PreviewKey::PullRequest(n) => ("previews", "pull_request", to_i64(*n).into()),
        PreviewKey::Branch(b) => ("branch_previews", "branch", b.clone().into()),
    }
}

impl AgentTx for SqliteTx<'_> {
    fn commit(mut self: Box<Self>) -> Result<(), DbError> {
        let conn = self
            .conn
            .take()
            .ok_or_else(|| DbError::Corrupt("transaction committed twice".into()))?;
        match conn.execute_batch("COMMIT") {
            Ok(()) => {
                self.store.give_back(conn);
                Ok(())
            }
            Err(e) => {
                let _ = conn.execute_batch("ROLLBACK");
                Err(e.into())
            }
        }
    }

    fn ping(&self) -> Result<(), DbError> {
        self.conn()?.query_row("SELECT 1", [], |_| Ok(()))?;
        Ok(())
    }

    fn record_delivery(
        &self,
        delivery: &Delivery,
        outcome: &str,
        at: &str,
    ) -> Result<bool, DbError> {
        let inserted = self.conn()?.prepare_cached(
            "INSERT OR IGNORE INTO deliveries (delivery_id, event, received_at, outcome) VALUES (?1, ?2, ?3, ?4)",
        )?
        .execute(params![delivery.id, delivery.event, at, outcome])?;
        Ok(inserted == 1)
    }

    fn insert_job(
        &self,
        jobs: &NewJobs,
        root: &str,
        delivery_id: Option<&str>,
        at: &str,
    ) -> Result<i64, DbError> {
        let conn = self.conn()?;
        conn.prepare_cached(
            "INSERT INTO jobs (repository, root, branch, commit_sha, trigger, delivery_id, pull_request, actor, enqueued_at, state, kind, head_sha, base_sha, authors)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 'queued', ?10, ?11, ?12, ?13)",
        )?
        .execute(params![
            jobs.repository,
            root,
            jobs.branch,
            jobs.commit_sha,
            jobs.trigger.as_str(),
            delivery_id,
            jobs.pull_request.map(to_i64),
            jobs.actor,
            at,
            jobs.kind.as_str(),
            jobs.head_sha,
            jobs.base_sha,
            json(&jobs.authors)?,
        ])?;
        Ok(conn.last_insert_rowid())
    }

    fn job(&self, id: i64) -> Result<Option<Job>, DbError> {
        first(
            &mut self
                .conn()?
                .prepare_cached(&format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?1"))?,
            [id],
            |r| rows::job(r),
        )
    }

    fn job_status(&self, id: i64) -> Result<Option<JobStatus>, DbError> {
        first(
            &mut self.conn()?.prepare_cached(
                "SELECT state, outcome, superseded_by, commit_sha FROM jobs WHERE id = ?1",
            )?,
            [id],
            |r| {
                Ok(JobStatus {
                    state: rows::parsed(r, 0)?,
                    outcome: rows::parsed_optional(r, 1)?,
                    superseded_by: r.get(2)?,
                    commit_sha: r.get(3)?,
                })
            },
        )
    }

    fn jobs(&self, query: &JobQuery<'_>) -> Result<Vec<Job>, DbError> {
        let mut sql = format!("SELECT {JOB_COLUMNS} FROM jobs WHERE state = ?1");
        let mut values: Vec<Value> = vec![query.state.as_str().to_owned().into()];
        for (column, value) in [
            ("repository", query.repository),
            ("root", query.root),
            ("kind", query.kind.map(JobKind::as_str)),
        ] {
            if let Some(value) = value {
                values.push(value.to_owned().into());
                sql.push_str(&format!(" AND {column} = ?{}", values.len()));
            }
        }
        sql.push_str(" ORDER BY id");
        all(
            &mut self.conn()?.prepare_cached(&sql)?,
            params_from_iter(values),
            |r| rows::job(r),
        )
    }

    fn job_counts(&self) -> Result<JobCounts, DbError> {
        Ok(self.conn()?.query_row(
            "SELECT COALESCE(SUM(state = 'queued'), 0), COALESCE(SUM(state = 'running'), 0),
                    COALESCE(SUM(state = 'awaiting_approval'), 0), COALESCE(SUM(state = 'done'), 0)
             FROM jobs",
            [],
            |r| {
                Ok(JobCounts {
                    queued: r.get(0)?,
                    running: r.get(1)?,
                    awaiting_approval: r.get(2)?,
                    done: r.get(3)?,
                })
            },
        )?)
    }

    fn set_job_state(&self, id: i64, from: &[JobState], to: JobState) -> Result<bool, DbError> {
        let sql = format!(
            "UPDATE jobs SET state = ?1 WHERE id = ?2 AND state IN ({})",
            placeholders(3, from.len())
        );
        let mut values: Vec<Value> = vec![to.as_str().to_owned().into(), id.into()];
        values.extend(from.iter().map(|s| Value::from(s.as_str().to_owned())));
        let changed = self
            .conn()?
            .prepare_cached(&sql)?
            .execute(params_from_iter(values))?;
        Ok(changed == 1)
    }

    fn supersede_job(&self, id: i64, by: i64) -> Result<bool, DbError> {
        let changed = self.conn()?.prepare_cached(
            "UPDATE jobs SET state = 'done', outcome = 'superseded', superseded_by = ?1 WHERE id = ?2 AND state IN ('queued', 'awaiting_approval')",
        )?
        .execute(params![by, id])?;
        Ok(changed == 1)
    }

    fn start_job(&self, id: i64, at: &str, covered: &[String]) -> Result<(), DbError> {
        self.conn()?.prepare_cached(
            "UPDATE jobs SET state = 'running', started_at = ?1, attempts = attempts + 1, covered = ?2 WHERE id = ?3",
        )?
        .execute(params![at, json(&covered)?, id])?;
        Ok(())
    }

    fn cover_commits(&self, id: i64, covered: &[String]) -> Result<(), DbError> {
        self.conn()?
            .prepare_cached("UPDATE jobs SET covered = ?1 WHERE id = ?2")?
            .execute(params![json(&covered)?, id])?;
        Ok(())
    }

    fn end_job(&self, id: i64, outcome: &str) -> Result<(), DbError> {
        self.conn()?
            .prepare_cached("UPDATE jobs SET state = 'done', outcome = ?1 WHERE id = ?2")?
            .execute(params![outcome, id])?;
        Ok(())
    }

    fn requeue_interrupted(&self, id: i64) -> Result<(), DbError> {
        self.conn()?
            .prepare_cached("UPDATE jobs SET state = 'queued', interrupted = 1 WHERE id = ?1")?
            .execute([id])?;
        Ok(())
    }

    fn newest_merge_commit(&self, repository: &str, root: &str) -> Result<Option<String>, DbError> {
        Ok(self
            .conn()?
            .prepare_cached(
                "SELECT commit_sha FROM jobs WHERE repository = ?1 AND root = ?2 AND kind = 'merge' AND trigger != 'drift-remediation' ORDER BY id DESC LIMIT 1",
            )?
            .query_row(params![repository, root], |r| r.get(0))
            .optional()?)
    }

    fn root_activity(
        &self,
        repository: &str,
        root: &str,
        kinds: &[JobKind],
        pending: &[JobState],
    ) -> Result<RootActivity, DbError> {
        let sql = format!(
            "SELECT COALESCE(SUM(state IN ({})), 0), MAX(enqueued_at) FROM jobs
             WHERE repository = ?1 AND root = ?2 AND kind IN ({})",
            placeholders(3, pending.len()),
            placeholders(3 + pending.len(), kinds.len()),
        );
        let mut values: Vec<Value> = vec![repository.to_owned().into(), root.to_owned().into()];
        values.extend(pending.iter().map(|s| Value::from(s.as_str().to_owned())));
        values.extend(kinds.iter().map(|k| Value::from(k.as_str().to_owned())));
        let (count, last): (i64, Option<String>) = self
            .conn()?
            .prepare_cached(&sql)?
            .query_row(params_from_iter(values), |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(RootActivity {
            pending: usize::try_from(count).unwrap_or(0),
            last_enqueued_at: last,
        })
    }

    fn preview_job_pending(
        &self,
        repository: &str,
        root: &str,
        key: &PreviewKey,
        kind: JobKind,
    ) -> Result<bool, DbError> {
        let (_, column, value) = preview_row(key);
        Ok(self
            .conn()?
            .prepare_cached(&format!(
                "SELECT 1 FROM jobs WHERE repository = ?1 AND root = ?2 AND {column} = ?3
                   AND kind = ?4 AND state != 'done' LIMIT 1"
            ))?
            .query_row(params![repository, root, value, kind.as_str()], |_| Ok(()))
            .optional()?
            .is_some())
    }

    fn merges_of_commit(
        &self,
        repository: &str,
        commit: &str,
    ) -> Result<Vec<MergeOfCommit>, DbError> {
        let conn = self.conn()?;
        let mut stmt = conn.prepare_cached(
            "SELECT pull_request, head_sha, authors FROM jobs
             WHERE repository = ?1 AND commit_sha = ?2 AND kind = 'merge' ORDER BY id",
        )?;
        let rows = stmt.query_map(params![repository, commit], |r| {
            Ok((
                r.get::<_, Option<i64>>(0)?,
                r.get::<_, Option<String>>(1)?,
                r.get::<_, String>(2)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (pull_request, head_sha, authors) = row?;
            out.push(MergeOfCommit {
                pull_request: pull_request.and_then(|n| u64::try_from(n).ok()),
                head_sha,
                authors: serde_json::from_str(&authors)
                    .map_err(|e| DbError::Corrupt(format!("a job's authors: {e}")))?,
            });
        }
        Ok(out)
    }

    fn last_deployed(&self, repository: &str, root: &str) -> Result<Option<String>, DbError> {
        Ok(self
            .conn()?
            .prepare_cached("SELECT last_deployed FROM roots WHERE repository = ?1 AND root = ?2")?
            .query_row(params![repository, root], |r| r.get(0))
            .optional()?)
    }

    fn set_last_deployed(&self, repository: &str, root: &str, commit: &str) -> Result<(), DbError> {
        self.conn()?
            .prepare_cached(
                "INSERT INTO roots (repository, root, last_deployed) VALUES (?1, ?2, ?3)
                 ON CONFLICT (repository, root) DO UPDATE SET last_deployed = excluded.last_deployed",
            )?
            .execute(params![repository, root, commit])?;
        Ok(())
    }

    fn deployed_roots(&self) -> Result<Vec<DeployedRoot>, DbError> {
        let conn = self.conn()?;
        let mut stmt = conn.prepare_cached(
            "SELECT r.repository, r.root, r.last_deployed,
                    (SELECT a.ended_at FROM audit a WHERE a.repository = r.repository AND a.root = r.root
                       AND a.commit_sha = r.last_deployed AND a.outcome = 'succeeded'
                     ORDER BY a.seq DESC LIMIT 1)
             FROM roots r ORDER BY r.repository, r.root",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(DeployedRoot {
                repository: r.get(0)?,
                root: r.get(1)?,
                commit_sha: r.get(2)?,
                deployed_at: r.get(3)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn audit_head(&self) -> Result<Option<(i64, String)>, DbError> {
        Ok(self
            .conn()?
            .prepare_cached("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1")?
            .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?)
    }

    fn insert_audit(&self, stored: &StoredRecord) -> Result<(), DbError> {
        let record = &stored.record;
        let plan = record.plan_summary.as_ref().map(json).transpose()?;
        self.conn()?.prepare_cached(
            "INSERT INTO audit (seq, job_id, trigger, delivery_id, repository, root, branch, commit_sha,
                covered_commits, pull_request, merged_by, author, started_at, ended_at, outcome,
                plan_summary, error, terraform_version, prev_hash, hash, signature, kind, tool, approved_by)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24)",
        )?
        .execute(params![
            record.seq,
            record.job_id,
            record.trigger,
            record.delivery_id,
            record.repository,
            record.root,
            record.branch,
            record.commit_sha,
            json(&record.covered_commits)?,
            record.pull_request.map(to_i64),
            record.merged_by,
            record.author,
            record.started_at,
            record.ended_at,
            record.outcome,
            plan,
            record.error,
            record.terraform_version,
            stored.prev_hash,
            stored.hash,
            stored.signature,
            record.kind,
            record.tool,
            record.approved_by,
        ])?;
        Ok(())
    }

    fn audit_rows(&self) -> Result<Vec<AuditRow>, DbError> {
        all(
            &mut self.conn()?.prepare_cached(&format!(
                "SELECT {} FROM audit ORDER BY rowid",
                rows::AUDIT_COLUMNS
            ))?,
            [],
            |r| rows::audit_row(r),
        )
    }

    fn end_record(&self, job_id: i64, outcome: Option<&str>) -> Result<Option<EndRecord>, DbError> {
        Ok(self
            .conn()?
            .prepare_cached(
                "SELECT ended_at, plan_summary, error FROM audit
                 WHERE job_id = ?1 AND (?2 IS NULL OR outcome = ?2) ORDER BY seq DESC LIMIT 1",
            )?
            .query_row(params![job_id, outcome], |r| {
                Ok(EndRecord {
                    ended_at: r.get(0)?,
                    plan_summary: rows::plan_of(r.get(1)?),
                    error: r.get(2)?,
                })
            })
            .optional()?)
    }

    fn last_pull_request_plan(
        &self,
        repository: &str,
        root: &str,
        pull_request: u64,
    ) -> Result<Option<(i64, Option<PlanSummary>)>, DbError> {
        Ok(self
            .conn()?
            .prepare_cached(
                "SELECT a.job_id, a.plan_summary FROM audit a JOIN jobs j ON j.id = a.job_id
                 WHERE j.repository = ?1 AND j.root = ?2 AND j.pull_request = ?3
                   AND j.kind = 'pr-plan' AND a.outcome = 'succeeded'
                 ORDER BY a.seq DESC LIMIT 1",
            )?
            .query_row(params![repository, root, to_i64(pull_request)], |r| {
                Ok((r.get(0)?, rows::plan_of(r.get(1)?)))
            })
            .optional()?)
    }

    fn last_drift_checks(&self) -> Result<Vec<DriftCheck>, DbError> {
        let conn = self.conn()?;
        let mut stmt = conn.prepare_cached(
            "SELECT a.repository, a.root, a.plan_summary FROM audit a
             WHERE a.seq IN (SELECT MAX(seq) FROM audit WHERE kind = 'drift' AND outcome = 'succeeded'
                             GROUP BY repository, root)
             ORDER BY a.repository, a.root",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(DriftCheck {
                repository: r.get(0)?,
                root: r.get(1)?,
                plan_summary: rows::plan_of(r.get(2)?),
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn approver_of(&self, job_id: i64) -> Result<Option<String>, DbError> {
        Ok(self
            .conn()?
            .prepare_cached("SELECT approver FROM approvals WHERE job_id = ?1")?
            .query_row([job_id], |r| r.get(0))
            .optional()?)
    }

    fn insert_approval(
        &self,
        job_id: i64,
        approver: &str,
        via: &str,
        at: &str,
    ) -> Result<(), DbError> {
        self.conn()?
            .prepare_cached(
                "INSERT OR REPLACE INTO approvals (job_id, approver, via, approved_at) VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![job_id, approver, via, at])?;
        Ok(())
    }

    fn insert_review(&self, review: &Review, at: &str) -> Result<(), DbError> {
        self.conn()?.prepare_cached(
            "INSERT OR IGNORE INTO pull_request_reviews (review_id, repository, pull_request, login, commit_sha, submitted_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?
        .execute(params![
            review.review_id,
            review.repository,
            to_i64(review.pull_request),
            review.login,
            review.commit_sha,
            at
        ])?;
        Ok(())
    }

    fn reviews_of(&self, repository: &str, pull_request: u64) -> Result<Vec<KeptReview>, DbError> {
        let conn = self.conn()?;
        let mut stmt = conn.prepare_cached(
            "SELECT review_id, login, commit_sha FROM pull_request_reviews
             WHERE repository = ?1 AND pull_request = ?2 ORDER BY review_id",
        )?;
        let rows = stmt.query_map(params![repository, to_i64(pull_request)], |r| {
            Ok(KeptReview {
                review_id: r.get(0)?,
                login: r.get(1)?,
                commit_sha: r.get(2)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn preview(
        &self,
        repository: &str,
        root: &str,
        key: &PreviewKey,
    ) -> Result<Option<Preview>, DbError> {
        let conn = self.conn()?;
        match key {
            PreviewKey::PullRequest(n) => first(
                &mut conn.prepare_cached(&format!(
                    "SELECT {PREVIEW_COLUMNS} FROM previews WHERE repository = ?1 AND root = ?2 AND pull_request = ?3"
                ))?,
                params![repository, root, to_i64(*n)],
                |r| rows::pull_request_preview(r),
            ),
            PreviewKey::Branch(b) => first(
                &mut conn.prepare_cached(&format!(
                    "SELECT {BRANCH_PREVIEW_COLUMNS} FROM branch_previews WHERE repository = ?1 AND root = ?2 AND branch = ?3"
                ))?,
                params![repository, root, b],
                |r| rows::branch_preview(r),
            ),
        }
    }

    fn other_active_previews(&self, repository: &str, own: &PreviewKey) -> Result<usize, DbError> {
        let (own_pr, own_branch) = match own {
            PreviewKey::PullRequest(n) => (Some(to_i64(*n)), None),
            PreviewKey::Branch(b) => (None, Some(b.as_str())),
        };
        let n: i64 = self
            .conn()?
            .prepare_cached(
                "SELECT (SELECT COUNT(DISTINCT pull_request) FROM previews
                     WHERE repository = ?1 AND state = 'active' AND pull_request IS NOT ?2)
                  + (SELECT COUNT(DISTINCT branch) FROM branch_previews
                     WHERE repository = ?1 AND state = 'active' AND branch IS NOT ?3)",
            )?
            .query_row(params![repository, own_pr, own_branch], |r| r.get(0))?;
        Ok(usize::try_from(n).unwrap_or(0))
    }

    fn active_previews(&self) -> Result<Vec<Preview>, DbError> {
        let conn = self.conn()?;
        let mut previews = all(
            &mut conn.prepare_cached(&format!(
                "SELECT {PREVIEW_COLUMNS} FROM previews WHERE state = 'active' ORDER BY repository, pull_request, root"
            ))?,
            [],
            |r| rows::pull_request_preview(r),
        )?;
        previews.extend(all(
            &mut conn.prepare_cached(&format!(
                "SELECT {BRANCH_PREVIEW_COLUMNS} FROM branch_previews WHERE state = 'active' ORDER BY repository, branch, root"
            ))?,
            [],
            |r| rows::branch_preview(r),
        )?);
        Ok(previews)
    }

    fn mark_preview_active(
        &self,
        repository: &str,
        root: &str,
        key: &PreviewKey,
        commit: &str,
        now_ms: i64,
        expires_at_ms: i64,
        requested_by: Option<&str>,
    ) -> Result<(), DbError> {
        let conn = self.conn()?;
        match key {
            PreviewKey::PullRequest(n) => conn.prepare_cached(
                "INSERT INTO previews (repository, root, pull_request, state, commit_sha, updated_at_ms, expires_at_ms)
                 VALUES (?1, ?2, ?3, 'active', ?4, ?5, ?6)
                 ON CONFLICT (repository, root, pull_request) DO UPDATE SET state = 'active',
                   commit_sha = excluded.commit_sha, updated_at_ms = excluded.updated_at_ms,
                   expires_at_ms = excluded.expires_at_ms",
            )?
            .execute(params![repository, root, to_i64(*n), commit, now_ms, expires_at_ms])?,
            PreviewKey::Branch(b) => conn.prepare_cached(
                "INSERT INTO branch_previews (repository, root, branch, state, commit_sha, updated_at_ms, expires_at_ms, requested_by)
                 VALUES (?1, ?2, ?3, 'active', ?4, ?5, ?6, ?7)
                 ON CONFLICT (repository, root, branch) DO UPDATE SET state = 'active',
                   commit_sha = excluded.commit_sha, updated_at_ms = excluded.updated_at_ms,
                   expires_at_ms = excluded.expires_at_ms,
                   requested_by = COALESCE(excluded.requested_by, requested_by)",
            )?
            .execute(params![repository, root, b, commit, now_ms, expires_at_ms, requested_by])?,
        };
        Ok(())
    }

    fn preview_applied(
        &self,
        repository: &str,
        root: &str,
        key: &PreviewKey,
        urls: &BTreeMap<String, String>,
        now_ms: i64,
        expires_at_ms: i64,
    ) -> Result<(), DbError> {
        let (table, column, value) = preview_row(key);
        self.conn()?
            .prepare_cached(&format!(
                "UPDATE {table} SET urls = ?4, updated_at_ms = ?5, expires_at_ms = ?6
                 WHERE repository = ?1 AND root = ?2 AND {column} = ?3"
            ))?
            .execute(params![
                repository,
                root,
                value,
                json(urls)?,
                now_ms,
                expires_at_ms
            ])?;
        Ok(())
    }

    fn preview_destroyed(
        &self,
        repository: &str,
        root: &str,
        key: &PreviewKey,
        now_ms: i64,
    ) -> Result<(), DbError> {
        let (table, column, value) = preview_row(key);
        self.conn()?
            .prepare_cached(&format!(
                "UPDATE {table} SET state = 'destroyed', urls = '{{}}', updated_at_ms = ?4
                 WHERE repository = ?1 AND root = ?2 AND {column} = ?3"
            ))?
            .execute(params![repository, root, value, now_ms])?;
        Ok(())
    }

    fn report_start_point(&self) -> Result<i64, DbError> {
        let conn = self.conn()?;
        conn.execute(
            "INSERT OR IGNORE INTO meta (key, value) VALUES ('github_report_from',
               (SELECT COALESCE(MIN(id), (SELECT COALESCE(MAX(id), 0) + 1 FROM jobs))
                  FROM jobs WHERE state != 'done'))",
            [],
        )?;
        let value: String = conn.query_row(
            "SELECT value FROM meta WHERE key = 'github_report_from'",
            [],
            |r| r.get(0),
        )?;
        value
            .parse()
            .map_err(|_| DbError::Corrupt(format!("meta github_report_from = {value:?}")))
    }

    fn due_reports(&self, from: i64, now_ms: i64, limit: usize) -> Result<Vec<DueReport>, DbError> {
        all(
            &mut self.conn()?.prepare_cached(&format!(
                "SELECT {cols}
                 FROM jobs j LEFT JOIN github_reports r ON r.job_id = j.id
                 WHERE j.id >= ?1 AND COALESCE(r.complete, 0) = 0 AND COALESCE(r.next_attempt_at, 0) <= ?2
                 ORDER BY j.id LIMIT ?3",
                cols = rows::due_report_columns(),
            ))?,
            params![from, now_ms, i64::try_from(limit).unwrap_or(i64::MAX)],
            |r| rows::due_report(r),
        )
    }

    fn save_report(&self, p: &ReportProgress) -> Result<(), DbError> {
        self.conn()?.prepare_cached(
            "INSERT INTO github_reports (job_id, steps_done, deployment_id, failures, next_attempt_at, last_error, complete)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
             ON CONFLICT (job_id) DO UPDATE SET steps_done = excluded.steps_done,
               deployment_id = excluded.deployment_id, failures = excluded.failures,
               next_attempt_at = excluded.next_attempt_at, last_error = excluded.last_error,
               complete = excluded.complete",
        )?
        .execute(params![
            p.job_id,
            i64::try_from(p.steps_done).unwrap_or(i64::MAX),
            p.deployment_id.map(to_i64),
            p.failures,
            p.next_attempt_at,
            p.last_error,
            p.complete
        ])?;
        Ok(())
    }

    fn note_deployment_attempt(&self, job_id: i64) -> Result<bool, DbError> {
        let inserted = self
            .conn()?
            .prepare_cached(
                "INSERT OR IGNORE INTO github_deployment_attempts (job_id) VALUES (?1)",
            )?
            .execute([job_id])?;
        Ok(inserted == 0)
    }

    fn preview_deployment(
        &self,
        repository: &str,
        root: &str,
        pull_request: Option<u64>,
    ) -> Result<Option<u64>, DbError> {
        let id: Option<i64> = self
            .conn()?
            .prepare_cached(
                "SELECT r.deployment_id FROM github_reports r JOIN jobs j ON j.id = r.job_id
                 WHERE j.repository = ?1 AND j.root = ?2 AND j.pull_request = ?3
                   AND j.kind = 'preview' AND r.deployment_id IS NOT NULL
                 ORDER BY j.id DESC LIMIT 1",
            )?
            .query_row(params![repository, root, pull_request.map(to_i64)], |r| {
                r.get(0)
            })
            .optional()?;
        Ok(id.and_then(|d| u64::try_from(d).ok()))
    }

    fn pull_request_comment(
        &self,
        repository: &str,
        pull_request: Option<u64>,
        root: &str,
        purpose: &str,
    ) -> Result<Option<u64>, DbError> {
        let id: Option<i64> = self
            .conn()?
            .prepare_cached(
                "SELECT comment_id FROM pr_comments WHERE repository = ?1 AND pull_request = ?2 AND root = ?3 AND purpose = ?4",
            )?
            .query_row(
                params![repository, pull_request.map(to_i64), root, purpose],
                |r| r.get(0),
            )
            .optional()?;
        Ok(id.and_then(|d| u64::try_from(d).ok()))
    }

    fn set_pull_request_comment(
        &self,
        repository: &str,
        pull_request: Option<u64>,
        root: &str,
        purpose: &str,
        comment_id: u64,
    ) -> Result<(), DbError> {
        self.conn()?.prepare_cached(
            "INSERT INTO pr_comments (repository, pull_request, root, purpose, comment_id) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (repository, pull_request, root, purpose) DO UPDATE SET comment_id = excluded.comment_id",
        )?
        .execute(params![
            repository,
            pull_request.map(to_i64),
            root,
            purpose,
            to_i64(comment_id)
        ])?;
        Ok(())
    }
}
