//! Runs jobs: one worker per Terraform root, at most `max_parallel` running at once.
//!
//! A worker takes every queued job of its root, fetches the repository, sets aside
//! (as skipped) the jobs whose commit is not on the branch as just fetched, and
//! collapses the rest into the newest commit (the one no other queued commit descends
//! from), so a burst of merges becomes one apply that lists every commit it covered.
//! Before running Terraform it skips, as [`crate::selection`] decides, a commit that is
//! already deployed or older than the deployed one while the branch is elsewhere (a
//! late or repeated delivery; a rollback by force push does run), and a commit that
//! changes none of the root's trigger paths. Then, in a fresh work tree: `init`, `workspace select`,
//! `plan -out`, `show -json` for the summary, and `apply` of exactly that saved plan.
//! Terraform is started directly, never through a shell, with the signed provenance
//! in its environment and the agent's own secrets removed from it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ed25519_dalek::SigningKey;
use slipway_provenance::Provenance;
use tokio::io::AsyncWriteExt;
use tokio::sync::{watch, Notify, Semaphore};
use tokio::time::Instant;

use crate::audit::{Outcome, PlanSummary};
use crate::config::{redact, Config, Repository, Root, Secret};
use crate::db::{self, DbError};
use crate::git::Cache;
use crate::github::GitHub;
use crate::job_kind::JobKind;
use crate::metrics::Metrics;
use crate::queue::{self, Job};
use crate::selection::{self, Selection, SkipReason, Verdict};

/// One lock per repository cache: libgit2 must not fetch into the same bare repository
/// from two threads at once.
#[derive(Default)]
pub struct GitLocks {
    locks: Mutex<HashMap<String, Arc<Mutex<()>>>>,
}

impl GitLocks {
    pub fn for_repo(&self, name: &str) -> Arc<Mutex<()>> {
        let mut map = match self.locks.lock() {
            Ok(m) => m,
            Err(poisoned) => poisoned.into_inner(),
        };
        map.entry(name.to_owned()).or_default().clone()
    }
}

/// Runs `f` with the repository's cache opened and locked.
pub fn with_cache<T>(
    config: &Config,
    locks: &GitLocks,
    repo: &Repository,
    f: impl FnOnce(&Cache) -> Result<T, String>,
) -> Result<T, String> {
    let lock = locks.for_repo(&repo.name);
    let _guard = match lock.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    };
    let cache = Cache::open(
        &config.data_dir.join("git"),
        &repo.name,
        &repo.url,
        &repo.branch,
    )
    .map_err(|e| e.to_string())?;
    f(&cache)
}

/// Everything a worker needs, shared by all of them.
pub struct Runner {
    pub config: Arc<Config>,
    pub key: SigningKey,
    /// Values to remove from any output or error that is stored.
    pub secrets: Vec<Secret>,
    /// Environment variables that hold the agent's secrets; Terraform does not get them.
    pub secret_env_vars: Vec<String>,
    pub git_token: Option<Secret>,
    /// When the agent is a GitHub App, git fetches over HTTPS use its installation
    /// token (unless `secrets.git_token` is set).
    pub github: Option<GitHub>,
    pub git_locks: Arc<GitLocks>,
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

    pub(crate) fn open_db(&self) -> Result<rusqlite::Connection, DbError> {
        db::open(&self.config.database_path())
    }

    /// Stops new jobs from starting and waits until every running job has ended:
    /// recorded, or (after [`Runner::abort_running`]) left for the next start.
    pub async fn drain(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        let all = u32::try_from(self.config.max_parallel).unwrap_or(u32::MAX);
        let _ = self.slots.acquire_many(all).await;
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

    /// The token for git over HTTP(S) from `url`: `secrets.git_token`, else the
    /// GitHub App's installation token (renewed before it expires), else none. ssh and
    /// local remotes take no token, so none is fetched for them.
    pub async fn git_credentials(&self, url: &str) -> Option<Secret> {
        if !crate::git::is_http(url) {
            return None;
        }
        if let Some(token) = &self.git_token {
            return Some(token.clone());
        }
        let github = self.github.as_ref()?;
        match github.git_token().await {
            Ok(token) => token,
            Err(e) => {
                tracing::warn!(error = %e, "no GitHub App installation token for git; fetching without one");
                None
            }
        }
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
    pub async fn step(self: Arc<Self>, repo: &Repository, root: &Root) -> Result<bool, String> {
        let (repo_name, root_name) = (repo.name.clone(), root.name.clone());
        let this = self.clone();
        let queued = tokio::task::spawn_blocking(move || {
            let conn = this.open_db()?;
            let queued = queue::queued_for_root(&conn, &repo_name, &root_name)?;
            let (merges, others): (Vec<Job>, Vec<Job>) =
                queued.into_iter().partition(|j| j.kind == JobKind::Merge);
            let waiting = crate::approvals::waiting_for_root(&conn, &repo_name, &root_name)?;
            let mut all = selection::candidates(merges, waiting);
            all.extend(others);
            Ok::<_, DbError>(all)
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
        if queued.is_empty() {
            return Ok(false);
        }
        // Merges first: what the branch says is what runs. Pull request jobs (plans,
        // previews, teardowns) run between them, on the same worker, so that one
        // Terraform at a time touches the root's backend.
        let (queued, pull_requests): (Vec<Job>, Vec<Job>) =
            queued.into_iter().partition(|j| j.kind == JobKind::Merge);
        if queued.is_empty() {
            return self.step_pull_request(repo, root, pull_requests).await;
        }
        let _permit = self
            .slots
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| e.to_string())?;
        if self.stopping.load(Ordering::SeqCst) {
            return Ok(false);
        }

        let token = self.git_credentials(&repo.url).await;
        let this = self.clone();
        let repo_c = repo.clone();
        let prepared =
            tokio::task::spawn_blocking(move || this.prepare(&repo_c, queued, token.as_ref()))
                .await
                .map_err(|e| e.to_string())??;

        let this = self.clone();
        let started = tokio::task::spawn_blocking(move || -> Result<Started, String> {
            let mut conn = this.open_db().map_err(|e| e.to_string())?;
            let selection = prepared.selection;
            for job in &selection.off_branch {
                let mut record = job.audit_record(Outcome::Skipped, db::now());
                record.error = Some(prepared.off_branch_reason.to_string());
                let started =
                    queue::start(&mut conn, &this.key, job, &[]).map_err(|e| e.to_string())?;
                queue::finish(&mut conn, &this.key, &started, record).map_err(|e| e.to_string())?;
            }
            let off_branch = selection.off_branch.len();
            let Some(target) = &selection.target else {
                return Ok((off_branch, None));
            };
            let target = queue::start(&mut conn, &this.key, target, &selection.superseded)
                .map_err(|e| e.to_string())?;
            Ok((off_branch, Some((target, selection.superseded))))
        })
        .await
        .map_err(|e| e.to_string())??;
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
    ) -> Result<crate::job_credential::Issued, String> {
        let lifetime = deadline.saturating_duration_since(Instant::now());
        let mut claims =
            crate::job_credential::claims(repo, root, job, actor, db::now_ms(), lifetime)
                .map_err(|e| format!("no randomness for the job credential: {e}"))?;
        claims.approved_by = approved_by;
        crate::job_credential::issue(
            claims,
            &self.key,
            crate::job_credential::credentials_dir(&self.config.data_dir)
                .join(format!("job-{}", job.id)),
        )
        .map_err(|e| e.to_string())
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
                let mut conn = this.open_db()?;
                queue::finish_with(&mut conn, &this.key, &job_c, record_c, |tx| {
                    effect_c.map_or(Ok(()), |e| e.apply(tx))
                })
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
    ) -> Result<Prepared, String> {
        with_cache(&self.config, &self.git_locks, repo, |cache| {
            let tip = cache
                .fetch(token)
                .map_err(|e| format!("{e}; the jobs stay queued"))?;
            let selection = selection::select(queued, &tip, cache).map_err(|e| e.to_string())?;
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
        let job_dir = self.config.data_dir.join("jobs").join(job.id.to_string());
        let work = work_root(&self.config).join(format!("job-{}", job.id));
        if let Some(pid) = crate::detached::running_in(&work) {
            // A previous agent process was killed while this job's Terraform ran; it
            // carried on. Running again before it ends would do its change twice.
            tracing::warn!(
                job = job.id,
                pid,
                "waiting for the Terraform a previous agent process started for this job"
            );
            while crate::detached::running_in(&work).is_some() && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            tracing::info!(
                job = job.id,
                pid,
                "the previous Terraform has ended; the job runs again from its state"
            );
        }
        let result = self
            .execute_inner(repo, root, job, &job_dir, &work, deadline, &mut out)
            .await;
        let _ = tokio::fs::remove_dir_all(&work).await;
        match result {
            Ok(outcome) => out.outcome = outcome,
            Err(JobError::Interrupted) => out.interrupted = true,
            Err(JobError::AwaitingApproval) => out.awaiting_approval = true,
            Err(JobError::Failed(e)) => {
                out.outcome = Outcome::Failed;
                out.error = Some(e);
            }
        }
        out
    }

    #[allow(clippy::too_many_arguments)]
    async fn execute_inner(
        &self,
        repo: &Repository,
        root: &Root,
        job: &Job,
        job_dir: &Path,
        work: &Path,
        deadline: Instant,
        out: &mut RunOutcome,
    ) -> Result<Outcome, JobError> {
        // Decide in git whether to run at all, and check out the work tree.
        let config = self.config.clone();
        let locks = self.git_locks.clone();
        let (repo_c, root_c, job_c, work_c) =
            (repo.clone(), root.clone(), job.clone(), work.to_owned());
        let db_path = self.config.database_path();
        let (author, decision) = tokio::task::spawn_blocking(move || {
            decide(&config, &locks, &repo_c, &root_c, &job_c, &db_path, &work_c)
        })
        .await
        .map_err(|e| e.to_string())?;
        out.author = author.clone();
        match decision? {
            Decision::Run => {}
            Decision::Skip(reason) => {
                out.error = Some(reason.to_string());
                return Ok(Outcome::Skipped);
            }
        }
        let author = author.unwrap_or_default();

        let dir = if root.path == "." {
            work.to_owned()
        } else {
            work.join(&root.path)
        };
        if !dir.is_dir() {
            return Err(format!(
                "root path `{}` does not exist in commit {}",
                root.path, job.commit_sha
            )
            .into());
        }
        // A root that requires approval runs only an approved change; the approver
        // goes into the credential, so the platform sees (and records) it.
        if root.require_approval {
            out.approved_by = Some(
                self.approval(job)
                    .await?
                    .ok_or(JobError::AwaitingApproval)?,
            );
        }
        let mut log = open_job_log(job_dir).await?;
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
        crate::job_credential::end(issued, crate::job_credential::embedded_platform_socket()).await;
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
        let provenance = Provenance {
            commit_sha: job.commit_sha.clone(),
            repository: repo_name.clone(),
            pull_request: job.pull_request,
            actor: actor.to_owned(),
            trigger: job.trigger,
            job_id: job.id.to_string(),
            timestamp: Provenance::now_timestamp(),
        }
        .sign(&self.key);
        let env: Vec<(String, String)> = provenance
            .to_env()
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .chain([
                ("CHECKPOINT_DISABLE".to_owned(), "1".to_owned()),
                ("TF_IN_AUTOMATION".to_owned(), "1".to_owned()),
                ("TF_INPUT".to_owned(), "0".to_owned()),
                (
                    crate::job_credential::ENV_FILE.to_owned(),
                    credential_file.to_owned(),
                ),
            ])
            .collect();
        let header = format!(
            "\n===== job {} attempt {} at {}: commit {} =====\n",
            job.id,
            job.attempts,
            db::now(),
            job.commit_sha
        );
        let _ = log.write_all(header.as_bytes()).await;
        let tf = Tf {
            runner: self,
            dir,
            work,
            env: &env,
            deadline,
            commands: std::sync::atomic::AtomicU32::new(0),
        };

        // The Terraform version comes from the plan JSON; only when a run fails before
        // that is `terraform version` asked separately (one process less per job).
        let steps = async {
            tf.run(&mut *log, &["init", "-input=false", "-no-color"])
                .await?;
            if let Some(ws) = &root.workspace {
                tf.run(
                    &mut *log,
                    &["workspace", "select", "-or-create=true", "-no-color", ws],
                )
                .await?;
            }
            let mut plan_args = vec![
                "plan".to_owned(),
                "-input=false".to_owned(),
                "-no-color".to_owned(),
                "-lock-timeout=300s".to_owned(),
                "-out=slipway.tfplan".to_owned(),
            ];
            if !root.variables.is_empty() {
                let vars = serde_json::to_vec_pretty(&root.variables).map_err(|e| e.to_string())?;
                let file = dir.join("slipway-agent.tfvars.json");
                tokio::fs::write(&file, vars)
                    .await
                    .map_err(|e| format!("write variables: {e}"))?;
                plan_args.push(format!("-var-file={}", file.display()));
            }
            let plan_refs: Vec<&str> = plan_args.iter().map(String::as_str).collect();
            tf.run(&mut *log, &plan_refs).await?;
            let shown = tf.run_quiet(&["show", "-json", "slipway.tfplan"]).await?;
            out.terraform_version = version_of(&shown);
            out.plan = Some(summarize_plan(&shown)?);
            tf.run(
                &mut *log,
                &[
                    "apply",
                    "-input=false",
                    "-no-color",
                    "-lock-timeout=300s",
                    "slipway.tfplan",
                ],
            )
            .await?;
            Ok::<Outcome, JobError>(Outcome::Succeeded)
        };
        let result = steps.await;
        if out.terraform_version.is_none() {
            if let Ok(text) = tf.run_quiet(&["version", "-json"]).await {
                out.terraform_version = version_of(&text);
            }
        }
        result
    }
}

/// Creates `dir` (and missing parents) readable by the agent's user only: a work tree
/// holds the root's variables, which can be secret, and the saved plan.
pub(crate) fn private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}

/// Opens (appending) the job's log in `job_dir`, creating the directory.
pub(crate) async fn open_job_log(job_dir: &Path) -> Result<tokio::fs::File, String> {
    tokio::fs::create_dir_all(job_dir)
        .await
        .map_err(|e| format!("create {}: {e}", job_dir.display()))?;
    tokio::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(job_dir.join("output.log"))
        .await
        .map_err(|e| format!("open job log: {e}"))
}

/// Where job work trees live, under the data directory.
pub fn work_root(config: &Config) -> PathBuf {
    config.data_dir.join("work")
}

/// Removes the work trees a killed agent left (each holds the root's variables and
/// a saved plan; an interrupted job runs again in a fresh one), except one whose
/// Terraform still runs, and leaves the work directory private. Call at start-up, before any worker runs.
pub fn clean_work_root(config: &Config) -> std::io::Result<usize> {
    let root = work_root(config);
    let mut removed = 0;
    if let Ok(entries) = std::fs::read_dir(&root) {
        for entry in entries.flatten() {
            let path = entry.path();
            if crate::detached::running_in(&path).is_some() {
                // Its Terraform still runs; the job's worker waits for it, then
                // replaces the tree.
                continue;
            }
            let gone = if path.is_dir() {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
            gone?;
            removed += 1;
        }
    }
    private_dir(&root)?;
    Ok(removed)
}

/// `terraform_version` from `terraform version -json` or `show -json` output.
pub(crate) fn version_of(json: &str) -> Option<String> {
    serde_json::from_str::<serde_json::Value>(json)
        .ok()
        .and_then(|v| v["terraform_version"].as_str().map(str::to_owned))
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
    config: &Config,
    locks: &GitLocks,
    repo: &Repository,
    root: &Root,
    job: &Job,
    db_path: &Path,
    work: &Path,
) -> (Option<String>, Result<Decision, String>) {
    let mut author = None;
    let result = (|| {
        let conn = db::open(db_path).map_err(|e| e.to_string())?;
        let last =
            queue::last_deployed(&conn, &job.repository, &job.root).map_err(|e| e.to_string())?;
        with_cache(config, locks, repo, |cache| {
            let sha = &job.commit_sha;
            if cache.has_commit(sha) {
                author = Some(cache.commit_info(sha).map_err(|e| e.to_string())?.author);
            }
            let tip = cache.tip().map_err(|e| e.to_string())?;
            let base = match selection::decide(cache, sha, &job.branch, &tip, last.as_deref())
                .map_err(|e| e.to_string())?
            {
                Verdict::Skip(reason) => return Ok(Decision::Skip(reason)),
                Verdict::Run { base } => base,
            };
            let changed = cache
                .changed_paths(base.as_deref(), sha)
                .map_err(|e| e.to_string())?;
            if !changed.iter().any(|p| root.is_triggered_by(p)) {
                return Ok(Decision::Skip(SkipReason::NoChange {
                    paths: root.paths.clone(),
                    base,
                }));
            }
            let _ = std::fs::remove_dir_all(work);
            private_dir(work).map_err(|e| format!("create work tree {}: {e}", work.display()))?;
            cache.checkout(sha, work).map_err(|e| e.to_string())?;
            Ok(Decision::Run)
        })
    })();
    (author, result)
}

/// Why a job's run ended early.
#[derive(Debug)]
pub(crate) enum JobError {
    /// Stopped by the shutdown: not a job failure; the job runs again at the next start.
    Interrupted,
    /// The root requires approval and the job has none: it is held, not failed.
    AwaitingApproval,
    /// The job failed, with what to record.
    Failed(String),
}

impl From<String> for JobError {
    fn from(message: String) -> JobError {
        JobError::Failed(message)
    }
}

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

/// One Terraform invocation context.
pub(crate) struct Tf<'a> {
    pub(crate) runner: &'a Runner,
    /// The root's directory, where Terraform runs.
    pub(crate) dir: &'a Path,
    /// The job's work tree: Terraform's output files and pid file.
    pub(crate) work: &'a Path,
    pub(crate) env: &'a [(String, String)],
    pub(crate) deadline: Instant,
    /// Commands run so far, to name their output files.
    pub(crate) commands: std::sync::atomic::AtomicU32,
}

impl Tf<'_> {
    /// Runs Terraform detached from the agent ([`crate::detached`]): its own session,
    /// output to files in the work tree, read when it exits.
    pub(crate) async fn output(&self, args: &[&str]) -> Result<std::process::Output, JobError> {
        let mut cmd = tokio::process::Command::new(&self.runner.config.terraform);
        cmd.args(args)
            .current_dir(self.dir)
            .env_remove("TF_WORKSPACE");
        for name in &self.runner.secret_env_vars {
            cmd.env_remove(name);
        }
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        let mut abort = self.runner.abort.subscribe();
        if *abort.borrow() {
            return Err(JobError::Interrupted);
        }
        let n = self.commands.fetch_add(1, Ordering::Relaxed) + 1;
        let mut started = crate::detached::spawn(cmd, self.work, n).map_err(|e| {
            format!(
                "cannot start terraform `{}`: {e}",
                self.runner.config.terraform.display()
            )
        })?;
        let waited = {
            let finished = tokio::time::timeout_at(self.deadline, started.child.wait());
            tokio::pin!(finished);
            tokio::select! {
                result = &mut finished => match result {
                    Ok(status) => Ok(status),
                    Err(_) => Err(false),
                },
                _ = async { abort.wait_for(|stop| *stop).await.map(|_| ()) } => Err(true),
            }
        };
        let status = match waited {
            Ok(status) => status.map_err(|e| format!("terraform {}: {e}", args.join(" ")))?,
            Err(interrupted) => {
                if interrupted {
                    // Terraform treats SIGINT as a request to stop safely: it finishes
                    // the resource operations in flight and writes its state.
                    started.signal(nix::sys::signal::Signal::SIGINT);
                    let grace = tokio::time::timeout(Duration::from_secs(20), started.child.wait());
                    if grace.await.is_ok() {
                        return Err(JobError::Interrupted);
                    }
                }
                // Past its time (or 20 s after SIGINT): Terraform and its providers go.
                started.signal_group(nix::sys::signal::Signal::SIGKILL);
                let _ = started.child.wait().await;
                return Err(if interrupted {
                    JobError::Interrupted
                } else {
                    format!(
                        "job timed out after {} s during `terraform {}`; terraform was stopped",
                        self.runner.config.job_timeout.as_secs(),
                        args.join(" ")
                    )
                    .into()
                });
            }
        };
        Ok(started
            .finish(status)
            .await
            .map_err(|e| format!("terraform {}: read its output: {e}", args.join(" ")))?)
    }

    /// Runs and logs (redacted); fails with the tail of stderr on a non-zero exit.
    pub(crate) async fn run(
        &self,
        log: &mut tokio::fs::File,
        args: &[&str],
    ) -> Result<String, JobError> {
        let output = self.output(args).await?;
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        let text = format!(
            "$ terraform {}\n{}{}[exit {}]\n",
            args.join(" "),
            stdout,
            stderr,
            output
                .status
                .code()
                .map_or("signal".to_owned(), |c| c.to_string())
        );
        let _ = log.write_all(self.runner.redact(&text).as_bytes()).await;
        let _ = log.flush().await;
        if !output.status.success() {
            return Err(failure(args[0], &stderr).into());
        }
        Ok(stdout)
    }

    /// Runs without logging stdout (plan JSON can hold sensitive values).
    pub(crate) async fn run_quiet(&self, args: &[&str]) -> Result<String, JobError> {
        let output = self.output(args).await?;
        if !output.status.success() {
            return Err(failure(&args.join(" "), &String::from_utf8_lossy(&output.stderr)).into());
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }
}

/// Terraform's summary of its first error (`Error: Unsupported argument`), wherever it
/// is in `stderr`: after warnings, inside the `╷ │ ╵` box Terraform draws around each
/// diagnostic.
pub fn error_summary(stderr: &str) -> Option<&str> {
    stderr.lines().find_map(|line| {
        let text = line
            .trim_start_matches(['│', '╷', '╵', ' ', '\t'])
            .trim_end();
        text.starts_with("Error: ").then_some(text)
    })
}

/// A failed command's error: its first line says what failed with Terraform's error
/// summary (what a commit status shows), then the end of stderr.
fn failure(command: &str, stderr: &str) -> String {
    let lines: Vec<&str> = stderr.lines().collect();
    let tail = lines[lines.len().saturating_sub(15)..].join("\n");
    let summary = error_summary(stderr).or_else(|| {
        lines
            .iter()
            .map(|l| l.trim_start_matches(['│', '╷', '╵', ' ', '\t']).trim())
            .find(|l| !l.is_empty())
    });
    match summary {
        Some(summary) => format!("terraform {command} failed: {summary}\n{}", tail.trim()),
        None => format!("terraform {command} failed with no message"),
    }
}

/// Counts and addresses from `terraform show -json` of a saved plan.
pub fn summarize_plan(json: &str) -> Result<PlanSummary, String> {
    let plan: serde_json::Value =
        serde_json::from_str(json).map_err(|e| format!("terraform show -json output: {e}"))?;
    let mut s = PlanSummary::default();
    let production = production_environment_ids(&plan);
    for change in plan["resource_changes"].as_array().into_iter().flatten() {
        let address = change["address"].as_str().unwrap_or("?").to_owned();
        let actions: Vec<&str> = change["change"]["actions"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|a| a.as_str())
            .collect();
        if actions.contains(&"create") {
            s.add += 1;
            s.to_add.push(address.clone());
        }
        if actions.contains(&"update") {
            s.change += 1;
            s.to_change.push(address.clone());
        }
        if actions.contains(&"delete") {
            s.destroy += 1;
            let before = &change["change"]["before"];
            let in_production = before["mode"] == "PRODUCTION"
                || before["environment_id"]
                    .as_str()
                    .is_some_and(|id| production.iter().any(|p| p == id));
            if in_production {
                s.production_destroys.push(address.clone());
            }
            s.to_destroy.push(address);
        }
    }
    s.production_destroys.sort();
    s.to_add.sort();
    s.to_change.sort();
    s.to_destroy.sort();
    Ok(s)
}

/// The ids of the PRODUCTION environments in a plan's prior state (`slipway_environment`
/// resources, at any module depth), to tell what a destroy takes out of production.
fn production_environment_ids(plan: &serde_json::Value) -> Vec<String> {
    fn walk(module: &serde_json::Value, out: &mut Vec<String>) {
        for r in module["resources"].as_array().into_iter().flatten() {
            if r["values"]["mode"] == "PRODUCTION" {
                if let Some(id) = r["values"]["id"].as_str() {
                    out.push(id.to_owned());
                }
            }
        }
        for child in module["child_modules"].as_array().into_iter().flatten() {
            walk(child, out);
        }
    }
    let mut out = Vec::new();
    walk(&plan["prior_state"]["values"]["root_module"], &mut out);
    out
}

/// Where a job's Terraform output is kept.
pub fn output_log(config: &Config, job_id: i64) -> PathBuf {
    config
        .data_dir
        .join("jobs")
        .join(job_id.to_string())
        .join("output.log")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_quotes_terraforms_error_summary_not_the_warning_box() {
        let stderr = "╷\n│ Warning: Value for undeclared variable\n│ \n│ The root module does not declare a variable named \"extra\".\n╵\n╷\n│ Error: Reference to undeclared input variable\n│ \n│   on main.tf line 8, in resource \"terraform_data\" \"release\":\n╵\n";
        assert_eq!(
            error_summary(stderr),
            Some("Error: Reference to undeclared input variable")
        );
        let text = failure("plan", stderr);
        assert_eq!(
            text.lines().next(),
            Some("terraform plan failed: Error: Reference to undeclared input variable")
        );
        assert!(text.contains("on main.tf line 8"), "{text}");
        // No diagnostic: the first line with words.
        assert_eq!(
            failure("init", "\n  boom\nmore\n").lines().next(),
            Some("terraform init failed: boom")
        );
        assert_eq!(error_summary("Error: x"), Some("Error: x"));
        assert_eq!(
            failure("apply", ""),
            "terraform apply failed with no message"
        );
    }

    #[test]
    fn plan_summary_counts_like_terraform() {
        let json = r#"{"resource_changes":[
            {"address":"terraform_data.a","change":{"actions":["create"]}},
            {"address":"terraform_data.b","change":{"actions":["update"]}},
            {"address":"terraform_data.c","change":{"actions":["delete","create"]}},
            {"address":"terraform_data.d","change":{"actions":["no-op"]}},
            {"address":"terraform_data.e","change":{"actions":["delete"]}}]}"#;
        let s = summarize_plan(json).unwrap();
        assert_eq!((s.add, s.change, s.destroy), (2, 1, 2));
        assert_eq!(s.to_add, ["terraform_data.a", "terraform_data.c"]);
        assert_eq!(s.to_destroy, ["terraform_data.c", "terraform_data.e"]);
        assert_eq!(summarize_plan("{}").unwrap(), PlanSummary::default());
        assert!(s.production_destroys.is_empty());
    }

    #[test]
    fn destroys_in_production_are_named() {
        let json = r#"{
          "prior_state": {"values": {"root_module": {"resources": [
            {"address": "slipway_environment.prod", "values": {"id": "env-1", "mode": "PRODUCTION"}},
            {"address": "slipway_environment.dev", "values": {"id": "env-2", "mode": "DEVELOPMENT"}}]}}},
          "resource_changes": [
            {"address": "slipway_environment.prod", "change": {"actions": ["delete"], "before": {"id": "env-1", "mode": "PRODUCTION"}}},
            {"address": "slipway_application.web", "change": {"actions": ["delete"], "before": {"environment_id": "env-1"}}},
            {"address": "slipway_application.dev", "change": {"actions": ["delete"], "before": {"environment_id": "env-2"}}}]}"#;
        let s = summarize_plan(json).unwrap();
        assert_eq!(s.destroy, 3);
        assert_eq!(
            s.production_destroys,
            ["slipway_application.web", "slipway_environment.prod"]
        );
    }
}
