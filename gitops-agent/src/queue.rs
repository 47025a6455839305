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

use std::collections::HashSet;
use std::sync::mpsc;

use ed25519_dalek::SigningKey;
use slipway_provenance::Trigger;
use tokio::sync::{oneshot, Notify};

use crate::audit::{self, AuditRecord, Outcome};
use crate::db::{self, DbError};
use crate::job_kind::{JobKind, JobState};
use crate::previews::Effect;
pub use crate::records::{Delivery, Job, NewJobs};
use crate::store::{AgentStore, AgentTx, JobQuery};

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

impl Job {
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

fn intake_one(tx: &dyn AgentTx, item: &Intake) -> Result<IntakeOutcome, DbError> {
    let now = db::now();
    let (delivery, outcome_text) = match item {
        Intake::Jobs(jobs) => (jobs.delivery.as_ref(), "enqueued".to_owned()),
        Intake::Batch { delivery, .. } => (Some(delivery), "enqueued".to_owned()),
        Intake::Ignored { delivery, reason } => (Some(delivery), format!("ignored: {reason}")),
    };
    if let Some(delivery) = delivery {
        if !tx.record_delivery(delivery, &outcome_text, &now)? {
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
            ids.push(tx.insert_job(jobs, root, delivery_id, &now)?);
        }
    }
    Ok(IntakeOutcome::Enqueued(ids))
}

/// Stores `items` in one transaction; each gets its own outcome.
pub fn intake(store: &dyn AgentStore, items: &[Intake]) -> Result<Vec<IntakeOutcome>, DbError> {
    store.write(|tx| items.iter().map(|item| intake_one(tx, item)).collect())
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
    tx: &dyn AgentTx,
    repository: &str,
    roots: &[String],
) -> Result<Vec<RootPosition>, DbError> {
    roots
        .iter()
        .map(|root| {
            Ok(RootPosition {
                root: root.clone(),
                newest_job: tx.newest_merge_commit(repository, root)?,
                last_deployed: tx.last_deployed(repository, root)?,
            })
        })
        .collect()
}

/// Queued jobs of one root, oldest first.
pub fn queued_for_root(
    tx: &dyn AgentTx,
    repository: &str,
    root: &str,
) -> Result<Vec<Job>, DbError> {
    tx.jobs(&JobQuery::of_root(JobState::Queued, repository, root))
}

/// Marks `target` running and every job in `superseded` done (outcome superseded,
/// with an audit record each), in one transaction. Returns the target as now stored,
/// with the commits it covers.
pub fn start(
    store: &dyn AgentStore,
    key: &SigningKey,
    target: &Job,
    superseded: &[Job],
) -> Result<Job, DbError> {
    let mut covered = Covered::of(target);
    // All but the last chunk close in transactions of their own, the target still
    // queued but already carrying the commits it covers, so a crash in between loses
    // none of them: the next start supersedes the rest, or the target with them.
    let cut = superseded.len().saturating_sub(1) / SUPERSEDED_PER_TRANSACTION
        * SUPERSEDED_PER_TRANSACTION;
    let (earlier, last) = superseded.split_at(cut);
    for chunk in earlier.chunks(SUPERSEDED_PER_TRANSACTION) {
        store.write(|tx| {
            supersede(tx, key, target, chunk, &mut covered)?;
            tx.cover_commits(target.id, &covered.commits)
        })?;
    }
    store.write(|tx| {
        let now = supersede(tx, key, target, last, &mut covered)?;
        tx.start_job(target.id, &now, &covered.commits)?;
        let mut started = target.clone();
        started.covered = covered.commits;
        started.started_at = Some(now);
        started.attempts += 1;
        Ok(started)
    })
}

/// How many superseded jobs one transaction closes at most. Each one is an audit
/// record signed inside the transaction, and the webhook's intake must wait for the
/// write lock to acknowledge a delivery: superseding 2,000 queued jobs at once held
/// the lock for 40 ms, the acknowledgements' p99. A chunk holds it about a millisecond.
const SUPERSEDED_PER_TRANSACTION: usize = 32;

/// The commits a starting job covers besides its own, in the order they were added,
/// each once (a set beside the list: thousands of superseded jobs may add theirs).
struct Covered {
    commits: Vec<String>,
    seen: HashSet<String>,
}

impl Covered {
    fn of(target: &Job) -> Covered {
        let mut seen: HashSet<String> = target.covered.iter().cloned().collect();
        seen.insert(target.commit_sha.clone());
        Covered {
            commits: target.covered.clone(),
            seen,
        }
    }

    fn add(&mut self, commit: String) {
        if self.seen.insert(commit.clone()) {
            self.commits.push(commit);
        }
    }
}

/// Closes `jobs` as superseded by `target` (each with its audit record), adding their
/// commits to `covered`; returns the time recorded.
fn supersede(
    tx: &dyn AgentTx,
    key: &SigningKey,
    target: &Job,
    jobs: &[Job],
    covered: &mut Covered,
) -> Result<String, DbError> {
    let now = db::now();
    for job in jobs {
        for c in job.all_commits() {
            covered.add(c);
        }
        if tx.supersede_job(job.id, target.id)? {
            let mut record = job.audit_record(Outcome::Superseded, now.clone());
            record.error = Some(format!(
                "superseded by job {} for newer commit {}; applied together with it",
                target.id, target.commit_sha
            ));
            audit::append(tx, key, record)?;
        }
    }
    Ok(now)
}

/// Ends a job: state done, the root's last deployed commit moved on success, and the
/// audit record appended, all in one transaction.
pub fn finish(
    store: &dyn AgentStore,
    key: &SigningKey,
    job: &Job,
    record: AuditRecord,
) -> Result<audit::StoredRecord, DbError> {
    finish_with(store, key, job, record, None)
}

/// [`finish`], with `effect` (a preview's new state) in the same transaction.
pub fn finish_with(
    store: &dyn AgentStore,
    key: &SigningKey,
    job: &Job,
    record: AuditRecord,
    effect: Option<&Effect>,
) -> Result<audit::StoredRecord, DbError> {
    store.write(|tx| {
        if let Some(effect) = effect {
            effect.apply(tx)?;
        }
        tx.end_job(job.id, &record.outcome)?;
        if record.outcome == Outcome::Succeeded.as_str() && job.kind == JobKind::Merge {
            tx.set_last_deployed(&job.repository, &job.root, &job.commit_sha)?;
        }
        audit::append(tx, key, record)
    })
}

/// Jobs left `running` by a process that died: each gets an `interrupted` audit record
/// and goes back to the queue, keeping the commits it covered. Call once at start-up,
/// before any worker runs.
pub fn recover_interrupted(store: &dyn AgentStore, key: &SigningKey) -> Result<Vec<Job>, DbError> {
    store.write(|tx| {
        let jobs = tx.jobs(&JobQuery::in_state(JobState::Running))?;
        for job in &jobs {
            let started = job.started_at.clone().unwrap_or_else(db::now);
            let mut record = job.audit_record(Outcome::Interrupted, started);
            record.error = Some(format!(
                "the agent stopped during attempt {} of this job; it was queued to run again",
                job.attempts
            ));
            audit::append(tx, key, record)?;
            tx.requeue_interrupted(job.id)?;
        }
        Ok(jobs)
    })
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

/// A dedicated thread that commits intakes in batches, one transaction each: every
/// intake waiting when a transaction starts shares its fsync. Cloning is cheap.
#[derive(Clone)]
pub struct IntakeWriter {
    tx: mpsc::Sender<(Intake, Reply)>,
}

impl IntakeWriter {
    /// Starts the writer thread on `db`; `notify` is woken
    /// after each commit that stored jobs.
    pub fn spawn(db: &db::Db, notify: std::sync::Arc<Notify>) -> Result<IntakeWriter, DbError> {
        let db = db.clone();
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
                    match intake(db.store(), &items) {
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
        let db = db::Db::open(&dir.path().join("q.db")).unwrap();
        let store = db.store();
        let out = intake(store, &[jobs(Some("d1"), "a"), jobs(Some("d1"), "a")]).unwrap();
        assert!(matches!(&out[0], IntakeOutcome::Enqueued(ids) if ids.len() == 2));
        assert_eq!(out[1], IntakeOutcome::Duplicate);
        assert_eq!(
            store
                .read(|tx| queued_for_root(tx, "acme/infra", "prod"))
                .unwrap()
                .len(),
            1
        );
        let positions = store
            .read(|tx| root_positions(tx, "acme/infra", &["prod".into()]))
            .unwrap();
        assert_eq!(
            positions,
            [RootPosition {
                root: "prod".into(),
                newest_job: Some("a".into()),
                last_deployed: None
            }]
        );
    }

    /// A new database (in a folder kept while the test holds it) and a signing key.
    fn fresh() -> (tempfile::TempDir, db::Db, SigningKey) {
        let dir = tempfile::tempdir().unwrap();
        let db = db::Db::open(&dir.path().join("q.db")).unwrap();
        (dir, db, SigningKey::from_bytes(&[1u8; 32]))
    }

    /// `n` merge jobs of commits `c0`..`c{n-1}` for root `prod`, oldest first.
    fn queue_commits(store: &dyn AgentStore, n: usize) -> Vec<Job> {
        let items: Vec<Intake> = (0..n).map(|i| jobs(None, &format!("c{i}"))).collect();
        intake(store, &items).unwrap();
        store
            .read(|tx| queued_for_root(tx, "acme/infra", "prod"))
            .unwrap()
    }

    #[test]
    fn superseding_many_jobs_takes_several_transactions_and_loses_no_commit() {
        let (_dir, db, key) = fresh();
        let store = db.store();
        let n = 3 * SUPERSEDED_PER_TRANSACTION + 5;
        let queued = queue_commits(store, n);
        let (older, target) = queued.split_at(n - 1);
        let started = start(store, &key, &target[0], older).unwrap();
        let expected: Vec<String> = (0..n).map(|i| format!("c{i}")).collect();
        assert_eq!(
            started.all_commits(),
            expected,
            "every commit, in order, once"
        );
        let (stored, status) = store
            .read(|tx| Ok((tx.job(started.id)?, tx.job_status(started.id)?)))
            .unwrap();
        assert_eq!(status.unwrap().state, JobState::Running);
        assert_eq!(stored.unwrap().all_commits(), expected);
        let log = store.read(audit::list).unwrap();
        assert_eq!(log.len(), n - 1);
        assert!(log.iter().all(|r| r.record.outcome == "superseded"));
        assert!(store
            .read(|tx| audit::verify(tx, Some(&key.verifying_key())))
            .unwrap()
            .problems
            .is_empty());
    }

    #[test]
    fn a_start_cut_short_between_its_transactions_loses_no_commit() {
        let (_dir, db, key) = fresh();
        let store = db.store();
        let n = 2 * SUPERSEDED_PER_TRANSACTION + 1;
        let queued = queue_commits(store, n);
        let (older, target) = (&queued[..n - 1], &queued[n - 1]);
        // The first chunk's transaction commits, then the agent dies.
        let mut covered = Covered::of(target);
        store
            .write(|tx| {
                supersede(
                    tx,
                    &key,
                    target,
                    &older[..SUPERSEDED_PER_TRANSACTION],
                    &mut covered,
                )?;
                tx.cover_commits(target.id, &covered.commits)
            })
            .unwrap();
        // After the restart a newer commit arrived: its job supersedes what is left,
        // the cut-short target with the commits it had taken over among them.
        intake(store, &[jobs(None, "newer")]).unwrap();
        let left = store
            .read(|tx| queued_for_root(tx, "acme/infra", "prod"))
            .unwrap();
        assert_eq!(left.len(), n - SUPERSEDED_PER_TRANSACTION + 1);
        let (older, newest) = left.split_at(left.len() - 1);
        let started = start(store, &key, &newest[0], older).unwrap();
        let mut commits = started.all_commits();
        commits.sort();
        let mut expected: Vec<String> = (0..n).map(|i| format!("c{i}")).collect();
        expected.push("newer".into());
        expected.sort();
        assert_eq!(commits, expected);
    }

    #[test]
    fn collapse_interrupt_and_finish() {
        let (_dir, db, key) = fresh();
        let store = db.store();
        intake(store, &[jobs(None, "a"), jobs(None, "b"), jobs(None, "c")]).unwrap();
        let queued = store
            .read(|tx| queued_for_root(tx, "acme/infra", "prod"))
            .unwrap();
        assert_eq!(queued.len(), 3);
        let target = queued[2].clone();
        let started = start(store, &key, &target, &queued[..2]).unwrap();
        assert_eq!(started.all_commits(), vec!["a", "b", "c"]);
        assert!(store
            .read(|tx| queued_for_root(tx, "acme/infra", "prod"))
            .unwrap()
            .is_empty());

        // A crash now: the job is running. Recovery records it and requeues it.
        let recovered = recover_interrupted(store, &key).unwrap();
        assert_eq!(recovered.len(), 1);
        let again = store
            .read(|tx| queued_for_root(tx, "acme/infra", "prod"))
            .unwrap();
        assert_eq!(again.len(), 1);
        assert!(again[0].interrupted);
        assert_eq!(again[0].all_commits(), vec!["a", "b", "c"]);

        let started = start(store, &key, &again[0], &[]).unwrap();
        assert_eq!(started.attempts, 2);
        let record = started.audit_record(Outcome::Succeeded, started.started_at.clone().unwrap());
        finish(store, &key, &started, record).unwrap();
        assert_eq!(
            store
                .read(|tx| tx.last_deployed("acme/infra", "prod"))
                .unwrap()
                .as_deref(),
            Some("c")
        );
        let log = store.read(audit::list).unwrap();
        let outcomes: Vec<_> = log.iter().map(|r| r.record.outcome.as_str()).collect();
        assert_eq!(
            outcomes,
            ["superseded", "superseded", "interrupted", "succeeded"]
        );
        assert!(store
            .read(|tx| audit::verify(tx, Some(&key.verifying_key())))
            .unwrap()
            .problems
            .is_empty());
    }
}
