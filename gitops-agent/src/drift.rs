//! Drift detection: every root with drift checks (`drift_interval_secs`, or
//! `[drift] interval_secs`) has its deployed commit planned on a schedule, with a
//! read-only credential, so a change made outside Git (by hand, by another tool, by a
//! runtime that lost something) shows before the next merge runs into it.
//!
//! - [`run`] is the schedule: it queues a [`JobKind::Drift`] job of a root's deployed
//!   commit (the last one the agent applied successfully; none yet, nothing to check)
//!   once per interval, and never while a merge of the root is queued or running (it
//!   would plan a moving target) or a check of it is pending.
//! - The root's worker runs it after the root's merges and pull request jobs
//!   ([`crate::runner`]): `init`, then `plan` of the deployed commit with the whole plan
//!   in the job log. A check whose commit is no longer the deployed one is moot and
//!   skipped. The platform refuses any change a drift credential asks for.
//! - A plan with changes is drift: a log line, the `slipway_drift_detected` gauge
//!   ([`crate::metrics`]), the commit status `slipway/drift/<root>` on the deployed
//!   commit ([`crate::report`]), and the job's audit record (kind `drift`, the plan's
//!   counts and addresses); the platform records the job's end as for every job.
//! - With `remediate = true`, drift queues the deployed commit again as a merge job
//!   (trigger `drift-remediation`), so every policy of merges applies (PRODUCTION from
//!   merge jobs only, approvals); at most one per root is pending, and none while any
//!   merge of the root is.

use std::sync::Arc;
use std::time::Duration;

use slipway_provenance::Trigger;
use tokio::io::AsyncWriteExt as _;
use tokio::time::Instant;

use crate::audit::{Outcome, PlanSummary};
use crate::config::{Repository, Root};
use crate::db::{self, DbError};
use crate::job_error::{JobError, RunOutcome};
use crate::job_kind::{JobKind, JobState};
use crate::queue::{self, Intake, IntakeWriter, Job, NewJobs};
use crate::runner::Runner;
use crate::store::{AgentStore, AgentTx};
use crate::terraform::{write_var_file, PlanLog};
use crate::work_dirs::{private_dir, JobDirs};

/// How often the schedule looks for roots whose check is due.
const TICK: Duration = Duration::from_secs(1);

/// What a drift check found, for the log and the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finding {
    /// The plan of the deployed commit is empty.
    Clean,
    /// The plan would change something.
    Drift,
    /// The check could not plan (its error is in the audit record).
    Failed,
}

impl Finding {
    /// The metric's label.
    pub fn as_str(self) -> &'static str {
        match self {
            Finding::Clean => "clean",
            Finding::Drift => "drift",
            Finding::Failed => "failed",
        }
    }

    /// What a recorded check found (`None`: it did not run, e.g. moot).
    pub fn of(outcome: &str, plan: Option<&PlanSummary>) -> Option<Finding> {
        if outcome == Outcome::Failed.as_str() {
            return Some(Finding::Failed);
        }
        if outcome != Outcome::Succeeded.as_str() {
            return None;
        }
        Some(match plan {
            Some(p) if p.has_changes() => Finding::Drift,
            _ => Finding::Clean,
        })
    }
}

/// The commit to check for `root`, when its check is due at `now_ms`: it has a
/// deployed commit, no merge or check of it is queued or running, and no merge or
/// check was queued within `interval`.
pub fn due(
    tx: &dyn AgentTx,
    repository: &str,
    root: &str,
    interval: Duration,
    now_ms: i64,
) -> Result<Option<String>, DbError> {
    let Some(deployed) = tx.last_deployed(repository, root)? else {
        return Ok(None);
    };
    let activity = tx.root_activity(
        repository,
        root,
        &[JobKind::Merge, JobKind::Drift],
        &[JobState::Queued, JobState::Running],
    )?;
    if activity.pending > 0 {
        return Ok(None);
    }
    let since = now_ms.saturating_sub(i64::try_from(interval.as_millis()).unwrap_or(i64::MAX));
    let since = chrono::DateTime::from_timestamp_millis(since)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    // Every timestamp has the same format (`db::now`), so text order is time order.
    Ok(activity
        .last_enqueued_at
        .is_none_or(|t| t <= since)
        .then_some(deployed))
}

/// A drift check of `commit` for `root`.
pub fn check_job(repo: &Repository, root: &Root, commit: String) -> NewJobs {
    NewJobs {
        kind: JobKind::Drift,
        ..NewJobs::merge(
            None,
            repo.name.clone(),
            repo.branch.clone(),
            commit,
            Trigger::Drift,
            None,
            None,
            vec![root.name.clone()],
        )
    }
}

/// The schedule: every [`TICK`], queues the check of every root whose check is due
/// ([`due`]), until the shutdown.
pub async fn run(runner: Arc<Runner>, writer: IntakeWriter) {
    let roots: Vec<(Repository, Root, Duration)> = runner
        .config
        .repositories
        .iter()
        .flat_map(|repo| {
            repo.roots
                .iter()
                .filter_map(|root| root.drift.map(|d| (repo.clone(), root.clone(), d.interval)))
        })
        .collect();
    while !runner.is_stopping() {
        for (repo, root, interval) in &roots {
            let (r, t, interval) = (repo.name.clone(), root.name.clone(), *interval);
            let found = runner
                .db
                .read(move |tx| due(tx, &r, &t, interval, db::now_ms()))
                .await;
            let commit = match found {
                Ok(Some(commit)) => commit,
                Ok(None) => continue,
                Err(e) => {
                    tracing::error!(repository = %repo.name, root = %root.name, error = %e, "drift schedule: cannot read the queue; retrying");
                    continue;
                }
            };
            tracing::debug!(repository = %repo.name, root = %root.name, commit = %commit, "drift check queued");
            if let Err(e) = writer
                .submit(Intake::Jobs(check_job(repo, root, commit)))
                .await
            {
                tracing::error!(repository = %repo.name, root = %root.name, error = %e, "drift schedule: cannot queue the check; retrying");
            }
        }
        tokio::time::sleep(TICK).await;
    }
}

/// Queues the remediation of `job`'s drift (its commit again, as a merge job), unless
/// a merge of the root is pending already (a remediation, or a merge that applies the
/// root anyway). Only the root's worker calls it, so the check and the insert need no
/// lock between them. Whether it queued one.
fn queue_remediation(
    store: &dyn AgentStore,
    repo: &Repository,
    job: &Job,
) -> Result<bool, DbError> {
    let activity = store.read(|tx| {
        tx.root_activity(
            &job.repository,
            &job.root,
            &[JobKind::Merge],
            &[
                JobState::Queued,
                JobState::Running,
                JobState::AwaitingApproval,
            ],
        )
    })?;
    if activity.pending > 0 {
        return Ok(false);
    }
    queue::intake(
        store,
        &[Intake::Jobs(NewJobs::merge(
            None,
            repo.name.clone(),
            repo.branch.clone(),
            job.commit_sha.clone(),
            Trigger::DriftRemediation,
            None,
            None,
            vec![job.root.clone()],
        ))],
    )?;
    Ok(true)
}

/// Why a drift check did not plan.
fn moot(deployed: Option<&str>) -> String {
    format!(
        "moot: the root's deployed commit is {} now; its own check follows",
        deployed.unwrap_or("none")
    )
}

impl Runner {
    /// Runs the newest of a root's queued drift checks (the older ones superseded by
    /// it). `Ok(true)`: something was done.
    pub(crate) async fn step_drift(
        self: Arc<Self>,
        repo: &Repository,
        root: &Root,
        queued: Vec<Job>,
    ) -> Result<bool, JobError> {
        let Some((target, superseded)) = queued.split_last() else {
            return Ok(false);
        };
        let (target, superseded) = (target.clone(), superseded.to_vec());
        let Some(_permit) = self.job_slot().await? else {
            return Ok(false);
        };
        let this = self.clone();
        let sup = superseded.clone();
        let started = tokio::task::spawn_blocking(move || {
            let store = this.db.store();
            // A merge queued since the worker looked runs first: never plan a
            // moving target.
            let (merges, deployed) = store.read(|tx| {
                let merges = queue::queued_for_root(tx, &target.repository, &target.root)?
                    .into_iter()
                    .any(|j| j.kind == JobKind::Merge);
                Ok((merges, tx.last_deployed(&target.repository, &target.root)?))
            })?;
            if merges {
                return Ok::<_, DbError>(None);
            }
            let job = queue::start(store, &this.key, &target, &sup)?;
            Ok(Some((job, deployed)))
        })
        .await??;
        let Some((job, deployed)) = started else {
            return Ok(true);
        };
        if !superseded.is_empty() {
            self.metrics.jobs_closed("superseded", superseded.len());
        }
        let clock = std::time::Instant::now();
        let outcome = if deployed.as_deref() != Some(job.commit_sha.as_str()) {
            RunOutcome {
                outcome: Outcome::Skipped,
                error: Some(moot(deployed.as_deref())),
                ..RunOutcome::default()
            }
        } else {
            tracing::info!(job = job.id, repository = %repo.name, root = %root.name, commit = %job.commit_sha, "drift check started");
            self.execute_drift(repo, root, &job).await
        };
        if outcome.interrupted {
            tracing::warn!(
                job = job.id,
                "drift check interrupted by the shutdown; it runs again at the next start"
            );
            return Ok(true);
        }
        let stored = self.record_run(&job, outcome, None, clock).await;
        let record = &stored.record;
        let Some(finding) = Finding::of(&record.outcome, record.plan_summary.as_ref()) else {
            return Ok(true);
        };
        self.metrics.drift_checked(finding.as_str());
        let counts = record
            .plan_summary
            .as_ref()
            .map(PlanSummary::counts)
            .unwrap_or_default();
        match finding {
            Finding::Clean => {
                tracing::info!(job = job.id, repository = %repo.name, root = %root.name, commit = %job.commit_sha, "no drift: the deployed commit's plan shows no changes")
            }
            Finding::Failed => {
                tracing::error!(job = job.id, repository = %repo.name, root = %root.name, commit = %job.commit_sha, error = record.error.as_deref().unwrap_or(""), "drift check failed")
            }
            Finding::Drift => {
                let plan = record.plan_summary.clone().unwrap_or_default();
                tracing::warn!(
                    job = job.id,
                    repository = %repo.name,
                    root = %root.name,
                    commit = %job.commit_sha,
                    drift = %counts,
                    to_add = ?plan.to_add,
                    to_change = ?plan.to_change,
                    to_destroy = ?plan.to_destroy,
                    "drift detected: the deployed commit's plan is not empty"
                );
                if root.drift.is_some_and(|d| d.remediate) {
                    self.remediate(repo, &job).await?;
                }
            }
        }
        Ok(true)
    }

    /// Queues the remediation of `job`'s drift and wakes the workers.
    async fn remediate(&self, repo: &Repository, job: &Job) -> Result<(), JobError> {
        let (repo_c, job_c) = (repo.clone(), job.clone());
        let queued = self
            .db
            .run(move |store| queue_remediation(store, &repo_c, &job_c))
            .await?;
        if queued {
            self.notify.notify_waiters();
            tracing::warn!(job = job.id, root = %job.root, commit = %job.commit_sha, "drift remediation queued: the deployed commit is applied again as a merge job");
        } else {
            tracing::info!(job = job.id, root = %job.root, "no drift remediation queued: a merge of the root is pending already");
        }
        Ok(())
    }

    async fn execute_drift(&self, repo: &Repository, root: &Root, job: &Job) -> RunOutcome {
        let mut out = RunOutcome::default();
        let deadline = Instant::now() + self.config.job_timeout;
        let dirs = JobDirs::of(&self.config, job.id);
        let result = self
            .drift_inner(repo, root, job, &dirs, deadline, &mut out)
            .await;
        dirs.remove_work_tree().await;
        out.settle(result.map(|()| Outcome::Succeeded));
        out
    }

    async fn drift_inner(
        &self,
        repo: &Repository,
        root: &Root,
        job: &Job,
        dirs: &JobDirs,
        deadline: Instant,
        out: &mut RunOutcome,
    ) -> Result<(), JobError> {
        let work = dirs.work.as_path();
        let token = self.git_credentials(&repo.url).await;
        let git = self.git.clone();
        let (repo_c, sha, work_c) = (repo.clone(), job.commit_sha.clone(), work.to_owned());
        out.author = tokio::task::spawn_blocking(move || {
            git.with_cache(&repo_c, |cache| {
                if !cache.has_commit(&sha) {
                    cache.fetch(token.as_ref())?;
                }
                let author = cache.commit_info(&sha)?.author;
                let _ = std::fs::remove_dir_all(&work_c);
                private_dir(&work_c).map_err(|e| {
                    JobError::Failed(format!("create work tree {}: {e}", work_c.display()))
                })?;
                cache.checkout(&sha, &work_c)?;
                Ok::<_, JobError>(Some(author))
            })
        })
        .await??;
        let dir = dirs.root_dir(root, &job.commit_sha)?;
        let mut log = dirs.open_log().await?;
        let issued = self.issue_credential(repo, root, job, "slipway-agent", None, deadline)?;
        let env = crate::terraform::automation_env(&issued.file);
        let header = format!(
            "\n===== job {} (drift check) attempt {} at {}: commit {} =====\n",
            job.id,
            job.attempts,
            db::now(),
            job.commit_sha
        );
        let _ = log.write_all(header.as_bytes()).await;
        let tf = self.terraform(&dir, work, &env, deadline);
        let steps = async {
            tf.run(&mut log, &["init", "-input=false", "-no-color"])
                .await?;
            let mut args = vec!["-lock=false".to_owned()];
            args.extend(write_var_file(&dir, &root.variables).await?);
            // The whole plan in the job log: what drifted, attribute by attribute.
            tf.plan(
                &mut log,
                root.workspace.as_deref(),
                &args,
                PlanLog::Full,
                out,
            )
            .await
        };
        let result = steps.await;
        tf.fill_in_version(out).await;
        self.end_credential(
            issued,
            job,
            result.as_ref().map(|()| Outcome::Succeeded),
            out,
        )
        .await;
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plan_with_changes_is_drift() {
        let drift = PlanSummary {
            change: 1,
            ..PlanSummary::default()
        };
        assert_eq!(Finding::of("succeeded", Some(&drift)), Some(Finding::Drift));
        assert_eq!(
            Finding::of("succeeded", Some(&PlanSummary::default())),
            Some(Finding::Clean)
        );
        assert_eq!(Finding::of("failed", None), Some(Finding::Failed));
        assert_eq!(Finding::of("skipped", None), None);
    }

    #[test]
    fn a_check_is_due_once_per_interval_and_never_beside_a_pending_merge() {
        let dir = tempfile::tempdir().unwrap();
        let db = db::Db::open(&dir.path().join("q.db")).unwrap();
        let conn = db.store();
        let key = ed25519_dalek::SigningKey::from_bytes(&[1u8; 32]);
        let hour = Duration::from_secs(3600);
        let due_at = |at| conn.read(|tx| due(tx, "r", "app", hour, at)).unwrap();
        let now = db::now_ms();
        // Nothing deployed: nothing to check.
        assert_eq!(due_at(now), None);
        let merge = NewJobs::merge(
            None,
            "r".into(),
            "main".into(),
            "c1".into(),
            Trigger::Webhook,
            None,
            None,
            vec!["app".into()],
        );
        queue::intake(conn, &[Intake::Jobs(merge)]).unwrap();
        let job = conn
            .read(|tx| queue::queued_for_root(tx, "r", "app"))
            .unwrap()
            .remove(0);
        let job = queue::start(conn, &key, &job, &[]).unwrap();
        // Running: a moving target.
        assert_eq!(due_at(now + 2 * 3_600_000), None);
        let record = job.audit_record(Outcome::Succeeded, db::now());
        queue::finish(conn, &key, &job, record).unwrap();
        // Deployed: due one interval after the merge was queued, not before.
        assert_eq!(due_at(now), None);
        let later = now + 2 * 3_600_000;
        assert_eq!(due_at(later).as_deref(), Some("c1"));
        // Queued: not again until it has run and an interval has passed.
        let repo_root = |kind| {
            let mut j = NewJobs::merge(
                None,
                "r".into(),
                "main".into(),
                "c1".into(),
                Trigger::Drift,
                None,
                None,
                vec!["app".into()],
            );
            j.kind = kind;
            Intake::Jobs(j)
        };
        queue::intake(conn, &[repo_root(JobKind::Drift)]).unwrap();
        assert_eq!(due_at(later), None);
    }
}
