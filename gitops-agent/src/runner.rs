//! Runs jobs: one worker per Terraform root, at most `max_parallel` running at once.
//!
//! A worker takes every queued job of its root, fetches the repository, sets aside
//! (as skipped) the jobs whose commit is not on the branch as just fetched, and
//! collapses the rest into the newest commit (the one no other queued commit descends
//! from), so a burst of merges becomes one apply that lists every commit it covered.
//! Before running Terraform it skips, as [`crate::selection`] decides, a commit that is
//! already deployed or older than the deployed one while the branch is elsewhere (a
//! late or repeated delivery; a rollback by force push does run), and a commit that
//! changes none of the root's trigger paths. Then, in a fresh work tree: `init` (or
//! the root's kept one, [`crate::kept_init`]), `workspace select`, `plan -json -out`
//! (its stream gives the summary), and `apply` of exactly that saved plan
//! ([`crate::terraform`] runs each command), with the path of the job's credential and
//! the job's unsigned labels in Terraform's environment.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ed25519_dalek::SigningKey;
use slipway_provenance::RunLabels;
use tokio::io::AsyncWriteExt;
use tokio::sync::{watch, Notify, Semaphore};
use tokio::time::Instant;

use crate::approvals;
use crate::audit::Outcome;
use crate::config::{redact, Config, Repository, Root, Secret};
use crate::db::{self, Db, DbError};
use crate::git::GitAccess;
use crate::github::GitHub;
use crate::job_error::{JobError, RunOutcome};
use crate::job_kind::JobKind;
use crate::kept_init::{self, KeptInit};
use crate::metrics::Metrics;
use crate::queue::{self, Job};
use crate::selection::{self, Selection, SkipReason, Verdict};
use crate::terraform::{write_var_file, PlanLog, Terraform};
use crate::work_dirs::{private_dir, JobDirs};

/// Everything a worker needs, shared by all of them.
pub struct Runner {
    pub config: Arc<Config>,
    pub db: Db,
    pub key: SigningKey,
    /// Values to remove from any output or error that is stored.
    pub secrets: Vec<Secret>,
    /// Environment variables that hold the agent's secrets; Terraform does not get them.
    pub secret_env_vars: Vec<String>,
    /// The repositories' caches, their locks and fetch credentials.
    pub git: Arc<GitAccess>,
    /// The GitHub client, when one is configured (the preview sweep asks it which pull
    /// requests are closed).
    pub github: Option<GitHub>,
    pub slots: Arc<Semaphore>,
    pub notify: Arc<Notify>,
    pub metrics: Arc<Metrics>,
    /// Set on SIGTERM: no new job starts; running ones finish (see [`Runner::drain`]).
    pub stopping: AtomicBool,
    /// Set when the shutdown grace period is over: Terraform is interrupted and the
    /// job is left `running`, to be recorded as interrupted and re-run at the next start.
    pub abort: watch::Sender<bool>,
}

/// How many off-branch jobs were closed, and the job started with those it supersedes.
type Started = (usize, Option<(Job, Vec<Job>)>);

/// What the preparation step decided.
struct Prepared {
    selection: Selection,
    /// Why each job in `selection.off_branch` is skipped.
    off_branch_reason: SkipReason,
}

impl Runner {
    pub(crate) fn redact(&self, text: &str) -> String {
        let refs: Vec<&Secret> = self.secrets.iter().collect();
        redact(text, &refs)
    }

    /// Terraform for one run of a job: in `dir`, with `env`, until `deadline`.
    pub(crate) fn terraform<'a>(
        &'a self,
        dir: &'a Path,
        work: &'a Path,
        env: &'a [(String, String)],
        deadline: Instant,
    ) -> Terraform<'a> {
        Terraform {
            binary: &self.config.terraform,
            dir,
            work,
            env,
            remove_env: &self.secret_env_vars,
            secrets: &self.secrets,
            deadline,
            timeout: self.config.job_timeout,
            abort: &self.abort,
            commands: AtomicU32::new(0),
        }
    }

    /// Stops new jobs from starting and waits until every running job has ended:
    /// recorded, or (after [`Runner::abort_running`]) left for the next start.
    pub async fn drain(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        let all = u32::try_from(self.config.max_parallel).unwrap_or(u32::MAX);
        let _ = self.slots.acquire_many(all).await;
    }

    /// One of the `max_parallel` job slots, held while a job runs; `None` once a
    /// shutdown has begun (no new job starts).
    pub(crate) async fn job_slot(
        &self,
    ) -> Result<Option<tokio::sync::OwnedSemaphorePermit>, JobError> {
        let permit = self
            .slots
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| JobError::Failed("the job slots are closed".into()))?;
        Ok((!self.is_stopping()).then_some(permit))
    }

    /// Whether a shutdown has begun.
    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    /// Interrupts running Terraform processes (SIGINT, so Terraform saves its state)
    /// and leaves their jobs to be re-run after the restart.
    pub fn abort_running(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        self.abort.send_replace(true);
    }

    /// The token for git over HTTP(S) from `url` ([`GitAccess::credentials`]).
    pub async fn git_credentials(&self, url: &str) -> Option<Secret> {
        self.git.credentials(url).await
    }

    /// Starts one worker task per root.
    pub fn spawn_workers(self: &Arc<Self>) -> Vec<tokio::task::JoinHandle<()>> {
        let mut handles = Vec::new();
        for repo in &self.config.repositories {
            for root in &repo.roots {
                let runner = self.clone();
                let repo = repo.clone();
                let root = root.clone();
                handles.push(tokio::spawn(async move { runner.worker(repo, root).await }));
            }
        }
        handles
    }

    async fn worker(self: Arc<Self>, repo: Repository, root: Root) {
        loop {
            // Register interest before looking, so a job stored in between wakes us;
            // the one-second timeout also picks up jobs that `slipway-agent deploy`
            // wrote from another process.
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            match self.clone().step(&repo, &root).await {
                Ok(true) => continue,
                Ok(false) => {
                    let _ = tokio::time::timeout(Duration::from_secs(1), notified).await;
                }
                Err(e) => {
                    tracing::error!(repository = %repo.name, root = %root.name, error = %e, "worker step failed; retrying in 5 s");
                    tokio::time::sleep(Duration::from_secs(5)).await;
                }
            }
        }
    }

    /// Runs the queued jobs of one root once. `Ok(false)` when there was nothing to do.
    pub async fn step(self: Arc<Self>, repo: &Repository, root: &Root) -> Result<bool, JobError> {
        let (repo_name, root_name) = (repo.name.clone(), root.name.clone());
        let this = self.clone();
        let queued = tokio::task::spawn_blocking(move || {
            let (queued, waiting) = this.db.store().read(|tx| {
                Ok((
                    queue::queued_for_root(tx, &repo_name, &root_name)?,
                    approvals::waiting_for_root(tx, &repo_name, &root_name)?,
                ))
            })?;
            let (merges, others): (Vec<Job>, Vec<Job>) =
                queued.into_iter().partition(|j| j.kind == JobKind::Merge);
            let mut all = selection::candidates(merges, waiting);
            all.extend(others);
            Ok::<_, DbError>(all)
        })
        .await??;
        if queued.is_empty() {
            return Ok(false);
        }
        // Merges first: what the branch says is what runs. Pull request jobs (plans,
        // previews, teardowns) run between them, on the same worker, so that one
        // Terraform at a time touches the root's backend.
        let (queued, pull_requests): (Vec<Job>, Vec<Job>) =
            queued.into_iter().partition(|j| j.kind == JobKind::Merge);
        if queued.is_empty() {
            // Drift checks last: they wait for every other job of the root.
            let (drift, pull_requests): (Vec<Job>, Vec<Job>) = pull_requests
                .into_iter()
                .partition(|j| j.kind == JobKind::Drift);
            if pull_requests.is_empty() {
                return self.step_drift(repo, root, drift).await;
            }
            return self.step_pull_request(repo, root, pull_requests).await;
        }
        let Some(_permit) = self.job_slot().await? else {
            return Ok(false);
        };

        let token = self.git_credentials(&repo.url).await;
        let this = self.clone();
        let repo_c = repo.clone();
        let prepared =
            tokio::task::spawn_blocking(move || this.prepare(&repo_c, queued, token.as_ref()))
                .await??;

        let this = self.clone();
        let started = tokio::task::spawn_blocking(move || -> Result<Started, DbError> {
            let store = this.db.store();
            let selection = prepared.selection;
            for job in &selection.off_branch {
                let mut record = job.audit_record(Outcome::Skipped, db::now());
                record.error = Some(prepared.off_branch_reason.to_string());
                let started = queue::start(store, &this.key, job, &[])?;
                queue::finish(store, &this.key, &started, record)?;
            }
            let off_branch = selection.off_branch.len();
            let Some(target) = &selection.target else {
                return Ok((off_branch, None));
            };
            let target = queue::start(store, &this.key, target, &selection.superseded)?;
            Ok((off_branch, Some((target, selection.superseded))))
        })
        .await??;
        let (off_branch, started) = started;
        if off_branch > 0 {
            self.metrics
                .jobs_closed(Outcome::Skipped.as_str(), off_branch);
        }
        let Some((job, superseded)) = started else {
            return Ok(true);
        };
        if !superseded.is_empty() {
            self.metrics.jobs_closed("superseded", superseded.len());
        }
        let clock = std::time::Instant::now();
        tracing::info!(
            job = job.id,
            repository = %repo.name,
            root = %root.name,
            commit = %job.commit_sha,
            superseded = superseded.len(),
            attempt = job.attempts,
            "job started"
        );

        let outcome = self.execute(repo, root, &job).await;
        if outcome.awaiting_approval {
            self.hold_for_approval(&job).await?;
            return Ok(true);
        }
        if outcome.interrupted {
            tracing::warn!(
                job = job.id,
                commit = %job.commit_sha,
                "job interrupted by the shutdown; it will be recorded as interrupted and run again at the next start"
            );
            return Ok(true);
        }
        let stored = self.record_run(&job, outcome, None, clock).await;
        tracing::info!(
            job = job.id,
            outcome = %stored.record.outcome,
            audit_seq = stored.record.seq,
            error = stored.record.error.as_deref().unwrap_or(""),
            "job finished"
        );
        Ok(true)
    }

    /// The job's credential, in its file: what the platform decides this run may
    /// change (by the job's kind, [`crate::job_credential::claims`]), until `deadline`.
    pub(crate) fn issue_credential(
        &self,
        repo: &Repository,
        root: &Root,
        job: &Job,
        actor: &str,
        approved_by: Option<String>,
        deadline: Instant,
    ) -> Result<crate::job_credential::Issued, JobError> {
        let lifetime = deadline.saturating_duration_since(Instant::now());
        let mut claims =
            crate::job_credential::claims(repo, root, job, actor, db::now_ms(), lifetime).map_err(
                |e| JobError::Failed(format!("no randomness for the job credential: {e}")),
            )?;
        claims.approved_by = approved_by;
        crate::job_credential::issue(
            claims,
            &self.key,
            crate::job_credential::credentials_dir(&self.config.data_dir)
                .join(format!("job-{}", job.id)),
        )
        .map_err(|e| JobError::Failed(e.to_string()))
    }

    /// Ends the job's credential at the platform, with how the run ended for the
    /// platform's audit log (the plan's counts, or the error's first line, redacted).
    pub(crate) async fn end_credential(
        &self,
        issued: crate::job_credential::Issued,
        job: &Job,
        ended: Result<Outcome, &JobError>,
        out: &RunOutcome,
    ) {
        use slipway_platform::job_ending::{JobEnding, JobOutcome, MAX_TEXT};
        let (outcome, error) = match ended {
            Ok(Outcome::Succeeded) => (JobOutcome::Succeeded, None),
            Ok(Outcome::Skipped) => (JobOutcome::Skipped, out.error.clone()),
            Ok(Outcome::Interrupted) | Err(JobError::Interrupted) => {
                (JobOutcome::Interrupted, None)
            }
            // Approvals come before a credential is minted: never a run's ending.
            Ok(
                Outcome::Failed
                | Outcome::Superseded
                | Outcome::Approved
                | Outcome::ApprovalRefused,
            ) => (JobOutcome::Failed, out.error.clone()),
            Err(e) => (JobOutcome::Failed, Some(e.to_string())),
        };
        let first_line = |text: String| -> String {
            let line = self.redact(&text);
            line.lines()
                .next()
                .unwrap_or_default()
                .chars()
                .take(MAX_TEXT)
                .collect()
        };
        let ending = JobEnding {
            job_id: issued.claims.job_id.clone(),
            outcome,
            plan: out.plan.as_ref().map(|p| p.counts()),
            error: error.map(first_line),
            covered_commits: job.covered.clone(),
        };
        crate::job_credential::end(
            issued,
            &ending,
            &self.key,
            crate::job_credential::embedded_platform_socket(),
        )
        .await;
    }

    /// Records how a run ended (its audit record, with `effect`) and counts it.
    pub(crate) async fn record_run(
        self: &Arc<Self>,
        job: &Job,
        outcome: RunOutcome,
        effect: Option<crate::previews::Effect>,
        clock: std::time::Instant,
    ) -> crate::audit::StoredRecord {
        let mut record = job.audit_record(
            outcome.outcome,
            job.started_at.clone().unwrap_or_else(db::now),
        );
        record.author = outcome.author;
        record.plan_summary = outcome.plan;
        record.error = outcome.error.map(|e| self.redact(&e));
        record.terraform_version = outcome.terraform_version;
        record.approved_by = outcome.approved_by;
        let stored = self.record(job, record, effect).await;
        self.metrics
            .job_finished(&stored.record.outcome, clock.elapsed());
        stored
    }

    /// Records a job's end (with `effect`, in the same transaction). The outcome must
    /// be recorded: a job left `running` would be re-run after a restart. Retries
    /// until the database takes it.
    async fn record(
        self: &Arc<Self>,
        job: &Job,
        record: crate::audit::AuditRecord,
        effect: Option<crate::previews::Effect>,
    ) -> crate::audit::StoredRecord {
        loop {
            let this = self.clone();
            let (job_c, record_c, effect_c) = (job.clone(), record.clone(), effect.clone());
            let result = tokio::task::spawn_blocking(move || {
                queue::finish_with(
                    this.db.store(),
                    &this.key,
                    &job_c,
                    record_c,
                    effect_c.as_ref(),
                )
            })
            .await;
            match result {
                Ok(Ok(stored)) => return stored,
                Ok(Err(e)) => {
                    tracing::error!(job = job.id, error = %e, "cannot record the job's outcome; retrying in 2 s")
                }
                Err(e) => {
                    tracing::error!(job = job.id, error = %e, "cannot record the job's outcome; retrying in 2 s")
                }
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    }

    /// Fetches, then picks the newest commit among the queued jobs that is on the
    /// branch as just fetched ([`selection::select`]). A failed fetch leaves the jobs
    /// queued: without the branch's tip, no commit can be shown to be on it.
    fn prepare(
        &self,
        repo: &Repository,
        queued: Vec<Job>,
        token: Option<&Secret>,
    ) -> Result<Prepared, JobError> {
        self.git.with_cache(repo, |cache| {
            let tip = cache
                .fetch(token)
                .map_err(|e| JobError::Failed(format!("{e}; the jobs stay queued")))?;
            let selection = selection::select(queued, &tip, cache)?;
            Ok(Prepared {
                selection,
                off_branch_reason: SkipReason::NotOnBranch {
                    branch: repo.branch.clone(),
                    tip,
                },
            })
        })
    }

    async fn execute(&self, repo: &Repository, root: &Root, job: &Job) -> RunOutcome {
        let mut out = RunOutcome::default();
        let deadline = Instant::now() + self.config.job_timeout;
        let dirs = JobDirs::of(&self.config, job.id);
        dirs.wait_for_previous_terraform(job.id, deadline).await;
        let result = self
            .execute_inner(repo, root, job, &dirs, deadline, &mut out)
            .await;
        dirs.remove_work_tree().await;
        out.settle(result);
        out
    }

    #[allow(clippy::too_many_arguments)]
    async fn execute_inner(
        &self,
        repo: &Repository,
        root: &Root,
        job: &Job,
        dirs: &JobDirs,
        deadline: Instant,
        out: &mut RunOutcome,
    ) -> Result<Outcome, JobError> {
        let work = dirs.work.as_path();
        // Decide in git whether to run at all, and check out the work tree.
        let (git, db) = (self.git.clone(), self.db.clone());
        let (repo_c, root_c, job_c, work_c) =
            (repo.clone(), root.clone(), job.clone(), work.to_owned());
        let (author, decision) = tokio::task::spawn_blocking(move || {
            decide(&git, &db, &repo_c, &root_c, &job_c, &work_c)
        })
        .await?;
        out.author = author.clone();
        match decision? {
            Decision::Run => {}
            Decision::Skip(reason) => {
                out.error = Some(reason.to_string());
                return Ok(Outcome::Skipped);
            }
        }
        let author = author.unwrap_or_default();

        let dir = dirs.root_dir(root, &job.commit_sha)?;
        // A root that requires approval runs only an approved change; the approver
        // goes into the credential, so the platform sees (and records) it.
        if root.require_approval {
            out.approved_by = Some(
                self.approval(job)
                    .await?
                    .ok_or(JobError::AwaitingApproval)?,
            );
        }
        let mut log = dirs.open_log().await?;
        let actor = job.actor.clone().unwrap_or(author);
        let issued =
            self.issue_credential(repo, root, job, &actor, out.approved_by.clone(), deadline)?;
        let credential_file = issued.file.display().to_string();
        let result = self
            .run_terraform(
                root,
                job,
                &dir,
                work,
                deadline,
                &mut log,
                &actor,
                &credential_file,
                out,
            )
            .await;
        self.end_credential(issued, job, result.as_ref().copied(), out)
            .await;
        result
    }

    #[allow(clippy::too_many_arguments)]
    async fn run_terraform(
        &self,
        root: &Root,
        job: &Job,
        dir: &Path,
        work: &Path,
        deadline: Instant,
        log: &mut tokio::fs::File,
        actor: &str,
        credential_file: &str,
        out: &mut RunOutcome,
    ) -> Result<Outcome, JobError> {
        let repo_name = &job.repository;
        // Labels for the record only: what the job may change is the credential's.
        let labels = RunLabels {
            commit_sha: job.commit_sha.clone(),
            repository: repo_name.clone(),
            pull_request: job.pull_request,
            actor: actor.to_owned(),
            trigger: job.trigger,
            job_id: job.id.to_string(),
        };
        let env: Vec<(String, String)> = labels
            .to_env()
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .chain(crate::terraform::automation_env(Path::new(credential_file)))
            .collect();
        let header = format!(
            "\n===== job {} attempt {} at {}: commit {} =====\n",
            job.id,
            job.attempts,
            db::now(),
            job.commit_sha
        );
        let _ = log.write_all(header.as_bytes()).await;
        let tf = self.terraform(dir, work, &env, deadline);
        let kept = KeptInit::for_root(&self.config, &job.repository, root);
        let commit_has_lock = kept_init::has_lock_file(dir);
        let steps = async {
            let mut extra = vec!["-lock-timeout=300s".to_owned()];
            extra.extend(write_var_file(dir, &root.variables).await?);
            let workspace = root.workspace.as_deref();
            let mut planned = false;
            if kept.restore(dir) {
                match tf
                    .plan(&mut *log, workspace, &extra, PlanLog::Actions, out)
                    .await
                {
                    Ok(()) => planned = true,
                    Err(JobError::Interrupted) => return Err(JobError::Interrupted),
                    // Terraform refused the kept init for this commit, or the plan
                    // failed for another reason: either way, plan again after a fresh
                    // `init`, exactly as without a kept one.
                    Err(_) => {
                        let _ = log
                            .write_all(b"# the plan failed with the root's kept `terraform init`: initialising afresh\n")
                            .await;
                        kept_init::remove_from(dir);
                    }
                }
            }
            if !planned {
                tf.run(&mut *log, &["init", "-input=false", "-no-color"])
                    .await?;
                tf.plan(&mut *log, workspace, &extra, PlanLog::Actions, out)
                    .await?;
            }
            tf.apply_saved_plan(&mut *log).await?;
            kept.keep(dir, commit_has_lock);
            Ok::<Outcome, JobError>(Outcome::Succeeded)
        };
        let result = steps.await;
        tf.fill_in_version(out).await;
        result
    }
}

/// Whether a job runs Terraform.
enum Decision {
    Run,
    Skip(SkipReason),
}

/// In git: the commit's author, and whether to run ([`selection::decide`] against the
/// branch tip as fetched for this job, then the root's trigger paths); to run, checks
/// the commit out into `work`.
fn decide(
    git: &GitAccess,
    db: &Db,
    repo: &Repository,
    root: &Root,
    job: &Job,
    work: &Path,
) -> (Option<String>, Result<Decision, JobError>) {
    let mut author = None;
    let result = (|| {
        let last = db
            .store()
            .read(|tx| tx.last_deployed(&job.repository, &job.root))?;
        git.with_cache(repo, |cache| {
            let sha = &job.commit_sha;
            if cache.has_commit(sha) {
                author = Some(cache.commit_info(sha)?.author);
            }
            let tip = cache.tip()?;
            // A drift remediation applies the deployed commit again, on purpose.
            let remediation = job.trigger == slipway_provenance::Trigger::DriftRemediation;
            let verdict = if remediation {
                selection::remediation_verdict(cache, sha, &job.branch, &tip, last.as_deref())?
            } else {
                selection::decide(cache, sha, &job.branch, &tip, last.as_deref())?
            };
            let base = match verdict {
                Verdict::Skip(reason) => return Ok(Decision::Skip(reason)),
                Verdict::Run { base } => base,
            };
            if !remediation
                && !cache
                    .changed_paths(base.as_deref(), sha)?
                    .iter()
                    .any(|p| root.is_triggered_by(p))
            {
                return Ok(Decision::Skip(SkipReason::NoChange {
                    paths: root.paths.clone(),
                    base,
                }));
            }
            let _ = std::fs::remove_dir_all(work);
            private_dir(work).map_err(|e| {
                JobError::Failed(format!("create work tree {}: {e}", work.display()))
            })?;
            cache.checkout(sha, work)?;
            Ok(Decision::Run)
        })
    })();
    (author, result)
}

/// A merge of a root that requires approval ([`crate::approvals`]).
impl Runner {
    /// The approver of `job` (a merge of a root that requires approval), or `None`
    /// when it has none yet: then it is held.
    pub(crate) async fn approval(
        &self,
        job: &Job,
    ) -> Result<Option<String>, crate::job_error::JobError> {
        use crate::job_error::JobError;
        let (config, key, job) = (self.config.clone(), self.key.clone(), job.clone());
        self.db
            .run(move |store| {
                let authority = crate::identities::open(&config, None)
                    .map_err(|e| JobError::Failed(format!("the platform's identities: {e}")))?;
                approvals::at_gate(store, &key, &config.approvals, authority.store(), &job).map_err(
                    |e| match e {
                        approvals::ApproveError::Db(e) => JobError::Db(e),
                        other => JobError::Failed(other.to_string()),
                    },
                )
            })
            .await
    }

    /// Holds `job` as `awaiting_approval` and says so in the log.
    pub(crate) async fn hold_for_approval(&self, job: &Job) -> Result<(), DbError> {
        let held = job.clone();
        self.db.write(move |tx| approvals::hold(tx, &held)).await?;
        tracing::info!(
            job = job.id,
            repository = %job.repository,
            root = %job.root,
            commit = %job.commit_sha,
            "job awaits approval: an approver runs `slipway-agent approve {}`",
            job.id
        );
        Ok(())
    }
}
