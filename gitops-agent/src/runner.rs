//! Runs jobs: one worker per Terraform root, at most `max_parallel` running at once.
//!
//! A worker takes every queued job of its root, fetches the repository, and collapses
//! them into the newest commit (the one no other queued commit descends from), so a
//! burst of merges becomes one apply that lists every commit it covered. Before running
//! Terraform it skips a commit that is already deployed (or an ancestor of the last
//! deployed one: a late or repeated delivery) and a commit that changes none of the
//! root's trigger paths. Then, in a fresh work tree: `init`, `workspace select`,
//! `plan -out`, `show -json` for the summary, and `apply` of exactly that saved plan.
//! Terraform is started directly, never through a shell, with the signed provenance
//! in its environment and the agent's own secrets removed from it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ed25519_dalek::SigningKey;
use slipway_provenance::{Provenance, Trigger};
use tokio::io::AsyncWriteExt;
use tokio::sync::{watch, Notify, Semaphore};
use tokio::time::Instant;

use crate::audit::{Outcome, PlanSummary};
use crate::config::{redact, Config, Repository, Root, Secret};
use crate::db::{self, DbError};
use crate::git::Cache;
use crate::github::GitHub;
use crate::metrics::Metrics;
use crate::queue::{self, Job};

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

/// What the preparation step decided.
struct Prepared {
    /// `None` when no queued commit could be found.
    target: Option<Job>,
    superseded: Vec<Job>,
    missing: Vec<Job>,
}

impl Runner {
    fn redact(&self, text: &str) -> String {
        let refs: Vec<&Secret> = self.secrets.iter().collect();
        redact(text, &refs)
    }

    fn open_db(&self) -> Result<rusqlite::Connection, DbError> {
        db::open(&self.config.database_path())
    }

    /// Stops new jobs from starting and waits until every running job has ended:
    /// recorded, or (after [`Runner::abort_running`]) left for the next start.
    pub async fn drain(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        let all = u32::try_from(self.config.max_parallel).unwrap_or(u32::MAX);
        let _ = self.slots.acquire_many(all).await;
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
            queue::queued_for_root(&conn, &repo_name, &root_name)
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
        if queued.is_empty() {
            return Ok(false);
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
        let started =
            tokio::task::spawn_blocking(move || -> Result<Option<(Job, Vec<Job>)>, String> {
                let mut conn = this.open_db().map_err(|e| e.to_string())?;
                for job in &prepared.missing {
                    let mut record = job.audit_record(Outcome::Failed, db::now());
                    record.error = Some(format!(
                        "commit {} is not on branch {} after fetching; nothing was run",
                        job.commit_sha, job.branch
                    ));
                    let started =
                        queue::start(&mut conn, &this.key, job, &[]).map_err(|e| e.to_string())?;
                    queue::finish(&mut conn, &this.key, &started, record)
                        .map_err(|e| e.to_string())?;
                }
                let Some(target) = &prepared.target else {
                    return Ok(None);
                };
                let target = queue::start(&mut conn, &this.key, target, &prepared.superseded)
                    .map_err(|e| e.to_string())?;
                Ok(Some((target, prepared.superseded)))
            })
            .await
            .map_err(|e| e.to_string())??;
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
        if outcome.interrupted {
            tracing::warn!(
                job = job.id,
                commit = %job.commit_sha,
                "job interrupted by the shutdown; it will be recorded as interrupted and run again at the next start"
            );
            return Ok(true);
        }
        let mut record = job.audit_record(
            outcome.outcome,
            job.started_at.clone().unwrap_or_else(db::now),
        );
        record.author = outcome.author;
        record.plan_summary = outcome.plan;
        record.error = outcome.error.map(|e| self.redact(&e));
        record.terraform_version = outcome.terraform_version;
        // The outcome must be recorded: a job left `running` would block nothing but
        // would be re-run after a restart. Retry until the database takes it.
        let stored = loop {
            let this = self.clone();
            let (job_c, record_c) = (job.clone(), record.clone());
            let result = tokio::task::spawn_blocking(move || {
                let mut conn = this.open_db()?;
                queue::finish(&mut conn, &this.key, &job_c, record_c)
            })
            .await;
            match result {
                Ok(Ok(stored)) => break stored,
                Ok(Err(e)) => {
                    tracing::error!(job = job.id, error = %e, "cannot record the job's outcome; retrying in 2 s")
                }
                Err(e) => {
                    tracing::error!(job = job.id, error = %e, "cannot record the job's outcome; retrying in 2 s")
                }
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        };
        self.metrics
            .job_finished(&stored.record.outcome, clock.elapsed());
        tracing::info!(
            job = job.id,
            outcome = %stored.record.outcome,
            audit_seq = stored.record.seq,
            error = stored.record.error.as_deref().unwrap_or(""),
            "job finished"
        );
        Ok(true)
    }

    /// Fetches, then picks the newest commit among the queued jobs.
    fn prepare(
        &self,
        repo: &Repository,
        queued: Vec<Job>,
        token: Option<&Secret>,
    ) -> Result<Prepared, String> {
        with_cache(&self.config, &self.git_locks, repo, |cache| {
            if let Err(e) = cache.fetch(token) {
                if queued.iter().any(|j| !cache.has_commit(&j.commit_sha)) {
                    return Err(format!("{e}; the jobs stay queued"));
                }
                tracing::warn!(repository = %repo.name, error = %e, "fetch failed; using the cached commits");
            }
            let (present, missing): (Vec<Job>, Vec<Job>) = queued
                .into_iter()
                .partition(|j| cache.has_commit(&j.commit_sha));
            // A job is dominated when another queued job has a different commit that
            // descends from its commit. The newest undominated job is the target.
            let mut target: Option<&Job> = None;
            for job in &present {
                let mut dominated = false;
                for other in &present {
                    if other.commit_sha != job.commit_sha
                        && cache
                            .is_ancestor_or_same(&job.commit_sha, &other.commit_sha)
                            .map_err(|e| e.to_string())?
                    {
                        dominated = true;
                        break;
                    }
                }
                if !dominated && target.is_none_or(|t| job.id > t.id) {
                    target = Some(job);
                }
            }
            let Some(target) = target.cloned() else {
                return Ok(Prepared {
                    target: None,
                    superseded: Vec::new(),
                    missing,
                });
            };
            let superseded = present.into_iter().filter(|j| j.id != target.id).collect();
            Ok(Prepared {
                target: Some(target),
                superseded,
                missing,
            })
        })
    }

    async fn execute(&self, repo: &Repository, root: &Root, job: &Job) -> RunOutcome {
        let mut out = RunOutcome::default();
        let deadline = Instant::now() + self.config.job_timeout;
        let job_dir = self.config.data_dir.join("jobs").join(job.id.to_string());
        let work = self
            .config
            .data_dir
            .join("work")
            .join(format!("job-{}", job.id));
        let result = self
            .execute_inner(repo, root, job, &job_dir, &work, deadline, &mut out)
            .await;
        let _ = tokio::fs::remove_dir_all(&work).await;
        match result {
            Ok(outcome) => out.outcome = outcome,
            Err(e) if e == INTERRUPTED => out.interrupted = true,
            Err(e) => {
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
    ) -> Result<Outcome, String> {
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
                out.error = Some(reason);
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
            ));
        }
        tokio::fs::create_dir_all(job_dir)
            .await
            .map_err(|e| format!("create {}: {e}", job_dir.display()))?;
        let mut log = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(job_dir.join("output.log"))
            .await
            .map_err(|e| format!("open job log: {e}"))?;

        let provenance = Provenance {
            commit_sha: job.commit_sha.clone(),
            repository: repo.name.clone(),
            pull_request: job.pull_request,
            actor: job.actor.clone().unwrap_or(author),
            trigger: job.trigger.parse().unwrap_or(Trigger::Manual),
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
            dir: &dir,
            env: &env,
            deadline,
        };

        // The Terraform version comes from the plan JSON; only when a run fails before
        // that is `terraform version` asked separately (one process less per job).
        let steps = async {
            tf.run(&mut log, &["init", "-input=false", "-no-color"])
                .await?;
            if let Some(ws) = &root.workspace {
                tf.run(
                    &mut log,
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
            tf.run(&mut log, &plan_refs).await?;
            let shown = tf.run_quiet(&["show", "-json", "slipway.tfplan"]).await?;
            out.terraform_version = version_of(&shown);
            out.plan = Some(summarize_plan(&shown)?);
            tf.run(
                &mut log,
                &[
                    "apply",
                    "-input=false",
                    "-no-color",
                    "-lock-timeout=300s",
                    "slipway.tfplan",
                ],
            )
            .await?;
            Ok(Outcome::Succeeded)
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

/// `terraform_version` from `terraform version -json` or `show -json` output.
fn version_of(json: &str) -> Option<String> {
    serde_json::from_str::<serde_json::Value>(json)
        .ok()
        .and_then(|v| v["terraform_version"].as_str().map(str::to_owned))
}

/// Whether a job runs Terraform.
enum Decision {
    Run,
    Skip(String),
}

/// In git: the commit's author, and whether to run — skipping a commit that is already
/// deployed (or an ancestor of the last deployed one) and a commit that changes none of
/// the root's trigger paths — then, to run, checks the commit out into `work`.
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
            author = Some(cache.commit_info(sha).map_err(|e| e.to_string())?.author);
            let mut base = None;
            if let Some(last) = &last {
                if cache
                    .is_ancestor_or_same(sha, last)
                    .map_err(|e| e.to_string())?
                {
                    return Ok(Decision::Skip(format!(
                        "commit {sha} is already deployed or an ancestor of the last deployed commit {last}: a late or repeated delivery"
                    )));
                }
                if cache.has_commit(last)
                    && cache
                        .is_ancestor_or_same(last, sha)
                        .map_err(|e| e.to_string())?
                {
                    base = Some(last.clone());
                }
            }
            let changed = cache
                .changed_paths(base.as_deref(), sha)
                .map_err(|e| e.to_string())?;
            if !changed.iter().any(|p| root.is_triggered_by(p)) {
                return Ok(Decision::Skip(format!(
                    "no change under {} since {}",
                    root.paths.join(", "),
                    base.as_deref().unwrap_or("the commit's parent")
                )));
            }
            let _ = std::fs::remove_dir_all(work);
            cache.checkout(sha, work).map_err(|e| e.to_string())?;
            Ok(Decision::Run)
        })
    })();
    (author, result)
}

/// The error text of a Terraform run stopped by the shutdown (not a job failure).
const INTERRUPTED: &str = "interrupted by the agent's shutdown";

#[derive(Debug)]
struct RunOutcome {
    /// Stopped by the shutdown: not recorded, re-run at the next start.
    interrupted: bool,
    outcome: Outcome,
    author: Option<String>,
    plan: Option<PlanSummary>,
    error: Option<String>,
    terraform_version: Option<String>,
}

impl Default for RunOutcome {
    fn default() -> Self {
        RunOutcome {
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
struct Tf<'a> {
    runner: &'a Runner,
    dir: &'a Path,
    env: &'a [(String, String)],
    deadline: Instant,
}

impl Tf<'_> {
    async fn output(&self, args: &[&str]) -> Result<std::process::Output, String> {
        let mut cmd = tokio::process::Command::new(&self.runner.config.terraform);
        cmd.args(args)
            .current_dir(self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .env_remove("TF_WORKSPACE");
        for name in &self.runner.secret_env_vars {
            cmd.env_remove(name);
        }
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        let mut abort = self.runner.abort.subscribe();
        if *abort.borrow() {
            return Err(INTERRUPTED.to_owned());
        }
        let child = cmd.spawn().map_err(|e| {
            format!(
                "cannot start terraform `{}`: {e}",
                self.runner.config.terraform.display()
            )
        })?;
        let pid = child.id();
        let finished = tokio::time::timeout_at(self.deadline, child.wait_with_output());
        tokio::pin!(finished);
        tokio::select! {
            result = &mut finished => match result {
                Ok(result) => result.map_err(|e| format!("terraform {}: {e}", args.join(" "))),
                Err(_) => Err(format!(
                    "job timed out after {} s during `terraform {}`; terraform was stopped",
                    self.runner.config.job_timeout.as_secs(),
                    args.join(" ")
                )),
            },
            _ = async { abort.wait_for(|stop| *stop).await.map(|_| ()) } => {
                // Terraform treats SIGINT as a request to stop safely: it finishes the
                // resource operations in flight and writes its state. Past 20 s it is
                // killed (when `finished` is dropped).
                if let Some(pid) = pid.and_then(|p| i32::try_from(p).ok()) {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::Signal::SIGINT,
                    );
                }
                let _ = tokio::time::timeout(Duration::from_secs(20), &mut finished).await;
                Err(INTERRUPTED.to_owned())
            }
        }
    }

    /// Runs and logs (redacted); fails with the tail of stderr on a non-zero exit.
    async fn run(&self, log: &mut tokio::fs::File, args: &[&str]) -> Result<String, String> {
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
            let tail: String = stderr
                .lines()
                .rev()
                .take(15)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect::<Vec<_>>()
                .join("\n");
            return Err(format!("terraform {} failed: {}", args[0], tail.trim()));
        }
        Ok(stdout)
    }

    /// Runs without logging stdout (plan JSON can hold sensitive values).
    async fn run_quiet(&self, args: &[&str]) -> Result<String, String> {
        let output = self.output(args).await?;
        if !output.status.success() {
            return Err(format!(
                "terraform {} failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&output.stderr).trim()
            ));
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }
}

/// Counts and addresses from `terraform show -json` of a saved plan.
pub fn summarize_plan(json: &str) -> Result<PlanSummary, String> {
    let plan: serde_json::Value =
        serde_json::from_str(json).map_err(|e| format!("terraform show -json output: {e}"))?;
    let mut s = PlanSummary::default();
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
            s.to_destroy.push(address);
        }
    }
    s.to_add.sort();
    s.to_change.sort();
    s.to_destroy.sort();
    Ok(s)
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
    }
}
