//! The durable job queue.
//!
//! Every way the agent learns of a commit (webhook, poller, CLI, API) ends in
//! [`intake`], which stores one job per Terraform root of the repository in a single
//! transaction; nothing is acknowledged before that commit. Workers then take the
//! queued jobs of one root at a time ([`queued_for_root`]), collapse them into the
//! newest commit ([`start`]), and finish them together with their audit record
//! ([`finish`]). A job found `running` at start-up was interrupted by a crash or kill:
//! [`recover_interrupted`] records that and queues it again.
//!
//! The webhook path is latency-critical, so [`IntakeWriter`] batches concurrent
//! intakes into one transaction (group commit): one fsync serves many deliveries.

use std::sync::mpsc;

use ed25519_dalek::SigningKey;
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use slipway_provenance::Trigger;
use tokio::sync::{oneshot, Notify};

use crate::audit::{self, AuditRecord, Outcome};
use crate::db::{self, DbError};
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

/// Something to store.
#[derive(Debug, Clone)]
pub enum Intake {
    Jobs(NewJobs),
    /// Several kinds of jobs from one delivery (a pull request's plans and previews,
    /// or a merge and the teardown of its previews).
    Batch {
        delivery: Delivery,
        jobs: Vec<NewJobs>,
    },
    /// A delivery that asks for nothing; stored so a redelivery is recognised.
    Ignored {
        delivery: Delivery,
        reason: String,
    },
}

/// What [`intake`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IntakeOutcome {
    /// New jobs, by id.
    Enqueued(Vec<i64>),
    /// The delivery id was seen before; nothing was stored.
    Duplicate,
    /// The ignored delivery was recorded.
    Recorded,
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

    /// An audit record for this job, to be completed by the caller.
    pub fn audit_record(&self, outcome: Outcome, started_at: String) -> AuditRecord {
        AuditRecord {
            seq: 0,
            job_id: Some(self.id),
            trigger: self.trigger.as_str().to_owned(),
            delivery_id: self.delivery_id.clone(),
            repository: self.repository.clone(),
            root: self.root.clone(),
            branch: self.branch.clone(),
            commit_sha: self.commit_sha.clone(),
            covered_commits: self.all_commits(),
            pull_request: self.pull_request,
            merged_by: self.actor.clone(),
            author: None,
            started_at,
            ended_at: db::now(),
            outcome: outcome.as_str().to_owned(),
            plan_summary: None,
            error: None,
            terraform_version: None,
            kind: (self.kind != JobKind::Merge).then(|| self.kind.as_str().to_owned()),
            tool: (self.trigger == Trigger::Mcp)
                .then(|| self.kind.mcp_tool())
                .flatten()
                .map(str::to_owned),
            approved_by: None,
        }
    }
}

const JOB_COLUMNS: &str = "id, repository, root, branch, commit_sha, trigger, delivery_id, pull_request, actor, enqueued_at, covered, started_at, attempts, interrupted, kind, head_sha, base_sha";

/// How many columns [`job_of`] reads; columns a query adds after them start here.
pub(crate) const JOB_COLUMN_COUNT: usize = 17;

/// A stored name that does not parse, as rusqlite's conversion error.
pub(crate) fn parsed<T: std::str::FromStr>(r: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<T>
where
    T::Err: std::error::Error + Send + Sync + 'static,
{
    let text: String = r.get(i)?;
    text.parse().map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, Box::new(e))
    })
}

/// [`parsed`] for a nullable column.
pub(crate) fn parsed_optional<T: std::str::FromStr>(
    r: &rusqlite::Row<'_>,
    i: usize,
) -> rusqlite::Result<Option<T>>
where
    T::Err: std::error::Error + Send + Sync + 'static,
{
    match r.get::<_, Option<String>>(i)? {
        None => Ok(None),
        Some(_) => parsed(r, i).map(Some),
    }
}

/// [`JOB_COLUMNS`] with each column qualified by `prefix` (`"j."`), for joins.
pub(crate) fn job_columns(prefix: &str) -> String {
    JOB_COLUMNS
        .split(", ")
        .map(|c| format!("{prefix}{c}"))
        .collect::<Vec<_>>()
        .join(", ")
}

pub(crate) fn job_of(r: &rusqlite::Row<'_>) -> rusqlite::Result<Job> {
    let covered: String = r.get(10)?;
    let pr: Option<i64> = r.get(7)?;
    Ok(Job {
        id: r.get(0)?,
        repository: r.get(1)?,
        root: r.get(2)?,
        branch: r.get(3)?,
        commit_sha: r.get(4)?,
        trigger: parsed(r, 5)?,
        delivery_id: r.get(6)?,
        pull_request: pr.and_then(|n| u64::try_from(n).ok()),
        actor: r.get(8)?,
        enqueued_at: r.get(9)?,
        covered: serde_json::from_str(&covered).unwrap_or_default(),
        started_at: r.get(11)?,
        attempts: r.get(12)?,
        interrupted: r.get::<_, i64>(13)? != 0,
        kind: parsed(r, 14)?,
        head_sha: r.get(15)?,
        base_sha: r.get(16)?,
    })
}

fn intake_one(tx: &Connection, item: &Intake) -> Result<IntakeOutcome, DbError> {
    let now = db::now();
    let (delivery, outcome_text) = match item {
        Intake::Jobs(jobs) => (jobs.delivery.as_ref(), "enqueued".to_owned()),
        Intake::Batch { delivery, .. } => (Some(delivery), "enqueued".to_owned()),
        Intake::Ignored { delivery, reason } => (Some(delivery), format!("ignored: {reason}")),
    };
    if let Some(delivery) = delivery {
        let inserted = tx.execute(
            "INSERT OR IGNORE INTO deliveries (delivery_id, event, received_at, outcome) VALUES (?1, ?2, ?3, ?4)",
            params![delivery.id, delivery.event, now, outcome_text],
        )?;
        if inserted == 0 {
            return Ok(IntakeOutcome::Duplicate);
        }
    }
    let (groups, delivery_id): (&[NewJobs], Option<&str>) = match item {
        Intake::Jobs(jobs) => (
            std::slice::from_ref(jobs),
            jobs.delivery.as_ref().map(|d| d.id.as_str()),
        ),
        Intake::Batch { delivery, jobs } => (jobs, Some(delivery.id.as_str())),
        Intake::Ignored { .. } => return Ok(IntakeOutcome::Recorded),
    };
    let mut ids = Vec::new();
    for jobs in groups {
        for root in &jobs.roots {
            tx.execute(
                "INSERT INTO jobs (repository, root, branch, commit_sha, trigger, delivery_id, pull_request, actor, enqueued_at, state, kind, head_sha, base_sha, authors)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 'queued', ?10, ?11, ?12, ?13)",
                params![
                    jobs.repository,
                    root,
                    jobs.branch,
                    jobs.commit_sha,
                    jobs.trigger.as_str(),
                    delivery_id,
                    jobs.pull_request.map(|n| n as i64),
                    jobs.actor,
                    now,
                    jobs.kind.as_str(),
                    jobs.head_sha,
                    jobs.base_sha,
                    serde_json::to_string(&jobs.authors)
                        .map_err(|e| DbError::Corrupt(e.to_string()))?,
                ],
            )?;
            ids.push(tx.last_insert_rowid());
        }
    }
    Ok(IntakeOutcome::Enqueued(ids))
}

/// Stores `items` in one transaction; each gets its own outcome.
pub fn intake(conn: &mut Connection, items: &[Intake]) -> Result<Vec<IntakeOutcome>, DbError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        out.push(intake_one(&tx, item)?);
    }
    tx.commit()?;
    Ok(out)
}

/// Where a root stands, for the poller's [`crate::selection::tip_needs_job`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootPosition {
    pub root: String,
    /// The commit of the newest job made for the root (`None`: no job yet).
    pub newest_job: Option<String>,
    pub last_deployed: Option<String>,
}

/// [`RootPosition`] of each of `roots`.
pub fn root_positions(
    conn: &Connection,
    repository: &str,
    roots: &[String],
) -> Result<Vec<RootPosition>, DbError> {
    let mut out = Vec::with_capacity(roots.len());
    for root in roots {
        let newest_job: Option<String> = conn
            .query_row(
                "SELECT commit_sha FROM jobs WHERE repository = ?1 AND root = ?2 AND kind = 'merge' AND trigger != 'drift-remediation' ORDER BY id DESC LIMIT 1",
                params![repository, root],
                |r| r.get(0),
            )
            .optional()?;
        out.push(RootPosition {
            root: root.clone(),
            newest_job,
            last_deployed: last_deployed(conn, repository, root)?,
        });
    }
    Ok(out)
}

/// Queued jobs of one root, oldest first.
pub fn queued_for_root(
    conn: &Connection,
    repository: &str,
    root: &str,
) -> Result<Vec<Job>, DbError> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {JOB_COLUMNS} FROM jobs WHERE repository = ?1 AND root = ?2 AND state = 'queued' ORDER BY id"
    ))?;
    let jobs = stmt
        .query_map(params![repository, root], job_of)?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(jobs)
}

/// One job by id.
pub fn get(conn: &Connection, id: i64) -> Result<Option<Job>, DbError> {
    Ok(conn
        .query_row(
            &format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?1"),
            [id],
            job_of,
        )
        .optional()?)
}

/// The commit last applied successfully to a root.
pub fn last_deployed(
    conn: &Connection,
    repository: &str,
    root: &str,
) -> Result<Option<String>, DbError> {
    Ok(conn
        .query_row(
            "SELECT last_deployed FROM roots WHERE repository = ?1 AND root = ?2",
            params![repository, root],
            |r| r.get(0),
        )
        .optional()?)
}

/// Marks `target` running and every job in `superseded` done (outcome superseded,
/// with an audit record each), in one transaction. Returns the target as now stored,
/// with the commits it covers.
pub fn start(
    conn: &mut Connection,
    key: &SigningKey,
    target: &Job,
    superseded: &[Job],
) -> Result<Job, DbError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let now = db::now();
    let mut covered = target.covered.clone();
    for job in superseded {
        for c in job.all_commits() {
            if !covered.contains(&c) && c != target.commit_sha {
                covered.push(c);
            }
        }
        let changed = tx.execute(
            "UPDATE jobs SET state = 'done', outcome = 'superseded', superseded_by = ?1 WHERE id = ?2 AND state IN ('queued', 'awaiting_approval')",
            params![target.id, job.id],
        )?;
        if changed == 1 {
            let mut record = job.audit_record(Outcome::Superseded, now.clone());
            record.error = Some(format!(
                "superseded by job {} for newer commit {}; applied together with it",
                target.id, target.commit_sha
            ));
            audit::append(&tx, key, record)?;
        }
    }
    let covered_json =
        serde_json::to_string(&covered).map_err(|e| DbError::Corrupt(e.to_string()))?;
    tx.execute(
        "UPDATE jobs SET state = 'running', started_at = ?1, attempts = attempts + 1, covered = ?2 WHERE id = ?3",
        params![now, covered_json, target.id],
    )?;
    tx.commit()?;
    let mut started = target.clone();
    started.covered = covered;
    started.started_at = Some(now);
    started.attempts += 1;
    Ok(started)
}

/// Ends a job: state done, the root's last deployed commit moved on success, and the
/// audit record appended, all in one transaction.
pub fn finish(
    conn: &mut Connection,
    key: &SigningKey,
    job: &Job,
    record: AuditRecord,
) -> Result<audit::StoredRecord, DbError> {
    finish_with(conn, key, job, record, |_| Ok(()))
}

/// [`finish`], with `effect` (a preview's new state, say) in the same transaction.
pub fn finish_with(
    conn: &mut Connection,
    key: &SigningKey,
    job: &Job,
    record: AuditRecord,
    effect: impl FnOnce(&Connection) -> Result<(), DbError>,
) -> Result<audit::StoredRecord, DbError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    effect(&tx)?;
    tx.execute(
        "UPDATE jobs SET state = 'done', outcome = ?1 WHERE id = ?2",
        params![record.outcome, job.id],
    )?;
    if record.outcome == Outcome::Succeeded.as_str() && job.kind == JobKind::Merge {
        tx.execute(
            "INSERT INTO roots (repository, root, last_deployed) VALUES (?1, ?2, ?3)
             ON CONFLICT (repository, root) DO UPDATE SET last_deployed = excluded.last_deployed",
            params![job.repository, job.root, job.commit_sha],
        )?;
    }
    let stored = audit::append(&tx, key, record)?;
    tx.commit()?;
    Ok(stored)
}

/// Jobs left `running` by a process that died: each gets an `interrupted` audit record
/// and goes back to the queue, keeping the commits it covered. Call once at start-up,
/// before any worker runs.
pub fn recover_interrupted(conn: &mut Connection, key: &SigningKey) -> Result<Vec<Job>, DbError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let jobs = {
        let mut stmt = tx.prepare(&format!(
            "SELECT {JOB_COLUMNS} FROM jobs WHERE state = 'running' ORDER BY id"
        ))?;
        let rows = stmt.query_map([], job_of)?;
        rows.collect::<Result<Vec<_>, _>>()?
    };
    for job in &jobs {
        let started = job.started_at.clone().unwrap_or_else(db::now);
        let mut record = job.audit_record(Outcome::Interrupted, started);
        record.error = Some(format!(
            "the agent stopped during attempt {} of this job; it was queued to run again",
            job.attempts
        ));
        audit::append(&tx, key, record)?;
        tx.execute(
            "UPDATE jobs SET state = 'queued', interrupted = 1 WHERE id = ?1",
            [job.id],
        )?;
    }
    tx.commit()?;
    Ok(jobs)
}

/// Counts of jobs by state, for the health endpoint and tests.
pub fn counts(conn: &Connection) -> Result<(i64, i64, i64), DbError> {
    Ok(conn.query_row(
        "SELECT COALESCE(SUM(state = 'queued'), 0), COALESCE(SUM(state = 'running'), 0), COALESCE(SUM(state = 'done'), 0) FROM jobs",
        [],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )?)
}

type Reply = oneshot::Sender<Result<IntakeOutcome, IntakeError>>;

/// Why an intake was not stored. Nothing was acknowledged: the sender may retry
/// (GitHub redelivers a webhook answered with an error).
#[derive(Debug, Clone, thiserror::Error)]
pub enum IntakeError {
    #[error("the intake writer has stopped")]
    Stopped,
    /// The batch's transaction failed (the database's message).
    #[error("could not store the intake: {0}")]
    Store(String),
}

/// A dedicated thread that owns a connection and commits intakes in batches: every
/// intake waiting when a transaction starts shares its fsync. Cloning is cheap.
#[derive(Clone)]
pub struct IntakeWriter {
    tx: mpsc::Sender<(Intake, Reply)>,
}

impl IntakeWriter {
    /// Starts the writer thread with its own connection to `db`; `notify` is woken
    /// after each commit that stored jobs.
    pub fn spawn(db: &db::Db, notify: std::sync::Arc<Notify>) -> Result<IntakeWriter, DbError> {
        let mut conn = db.connect()?;
        let (tx, rx) = mpsc::channel::<(Intake, Reply)>();
        std::thread::Builder::new()
            .name("slipway-intake".into())
            .spawn(move || {
                while let Ok(first) = rx.recv() {
                    let mut batch = vec![first];
                    while batch.len() < 512 {
                        match rx.try_recv() {
                            Ok(item) => batch.push(item),
                            Err(_) => break,
                        }
                    }
                    let items: Vec<Intake> = batch.iter().map(|(i, _)| i.clone()).collect();
                    match intake(&mut conn, &items) {
                        Ok(outcomes) => {
                            let any_jobs = outcomes
                                .iter()
                                .any(|o| matches!(o, IntakeOutcome::Enqueued(_)));
                            for ((_, reply), outcome) in batch.into_iter().zip(outcomes) {
                                let _ = reply.send(Ok(outcome));
                            }
                            if any_jobs {
                                notify.notify_waiters();
                            }
                        }
                        Err(e) => {
                            tracing::error!(error = %e, "could not store a batch of {} intakes", items.len());
                            for (_, reply) in batch {
                                let _ = reply.send(Err(IntakeError::Store(e.to_string())));
                            }
                        }
                    }
                }
            })
            .map_err(|e| DbError::Corrupt(format!("cannot start the intake thread: {e}")))?;
        Ok(IntakeWriter { tx })
    }

    /// Stores one intake; returns once it is committed.
    pub async fn submit(&self, item: Intake) -> Result<IntakeOutcome, IntakeError> {
        let (reply, wait) = oneshot::channel();
        self.tx
            .send((item, reply))
            .map_err(|_| IntakeError::Stopped)?;
        wait.await.map_err(|_| IntakeError::Stopped)?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jobs(delivery: Option<&str>, commit: &str) -> Intake {
        Intake::Jobs(NewJobs::merge(
            delivery.map(|id| Delivery {
                id: id.into(),
                event: "push".into(),
            }),
            "acme/infra".into(),
            "main".into(),
            commit.into(),
            Trigger::Webhook,
            None,
            Some("octocat".into()),
            vec!["prod".into(), "staging".into()],
        ))
    }

    #[test]
    fn a_redelivery_stores_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = db::open(&dir.path().join("q.db")).unwrap();
        let out = intake(&mut conn, &[jobs(Some("d1"), "a"), jobs(Some("d1"), "a")]).unwrap();
        assert!(matches!(&out[0], IntakeOutcome::Enqueued(ids) if ids.len() == 2));
        assert_eq!(out[1], IntakeOutcome::Duplicate);
        assert_eq!(
            queued_for_root(&conn, "acme/infra", "prod").unwrap().len(),
            1
        );
        let positions = root_positions(&conn, "acme/infra", &["prod".into()]).unwrap();
        assert_eq!(
            positions,
            [RootPosition {
                root: "prod".into(),
                newest_job: Some("a".into()),
                last_deployed: None
            }]
        );
    }

    #[test]
    fn collapse_interrupt_and_finish() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = db::open(&dir.path().join("q.db")).unwrap();
        let key = SigningKey::from_bytes(&[1u8; 32]);
        intake(
            &mut conn,
            &[jobs(None, "a"), jobs(None, "b"), jobs(None, "c")],
        )
        .unwrap();
        let queued = queued_for_root(&conn, "acme/infra", "prod").unwrap();
        assert_eq!(queued.len(), 3);
        let target = queued[2].clone();
        let started = start(&mut conn, &key, &target, &queued[..2]).unwrap();
        assert_eq!(started.all_commits(), vec!["a", "b", "c"]);
        assert!(queued_for_root(&conn, "acme/infra", "prod")
            .unwrap()
            .is_empty());

        // A crash now: the job is running. Recovery records it and requeues it.
        let recovered = recover_interrupted(&mut conn, &key).unwrap();
        assert_eq!(recovered.len(), 1);
        let again = queued_for_root(&conn, "acme/infra", "prod").unwrap();
        assert_eq!(again.len(), 1);
        assert!(again[0].interrupted);
        assert_eq!(again[0].all_commits(), vec!["a", "b", "c"]);

        let started = start(&mut conn, &key, &again[0], &[]).unwrap();
        assert_eq!(started.attempts, 2);
        let record = started.audit_record(Outcome::Succeeded, started.started_at.clone().unwrap());
        finish(&mut conn, &key, &started, record).unwrap();
        assert_eq!(
            last_deployed(&conn, "acme/infra", "prod")
                .unwrap()
                .as_deref(),
            Some("c")
        );
        let log = audit::list(&conn).unwrap();
        let outcomes: Vec<_> = log.iter().map(|r| r.record.outcome.as_str()).collect();
        assert_eq!(
            outcomes,
            ["superseded", "superseded", "interrupted", "succeeded"]
        );
        assert!(audit::verify(&conn, Some(&key.verifying_key()))
            .unwrap()
            .problems
            .is_empty());
    }
}
