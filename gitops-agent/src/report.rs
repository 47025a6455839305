//! Reports each job to GitHub: a Deployment for the root's environment with its
//! statuses, a commit status on the deployed commit, and optionally a comment on the
//! merged pull request.
//!
//! The reporter is level-triggered: it reads the jobs table and brings GitHub up to
//! date with it, one request ([`Step`]) at a time, remembering in `github_reports` how
//! many steps of each job are done (and the deployment's id). So it needs no hook in
//! the hot path, sees jobs queued by the CLI from another process, picks up after a
//! restart, and never touches a job's outcome: a GitHub outage delays the report, it
//! never fails or repeats a deployment. A failed step is retried with exponential
//! backoff ([`RetryPolicy`]), logged each time, and given up (logged as an error) after
//! `max_attempts`, or at once when GitHub refuses it for good (a 4xx other than rate
//! limiting).
//!
//! Every job of a repository with a GitHub name walks the same steps, so the requests
//! GitHub sees are deterministic: deployment created, `queued`, commit `pending`;
//! `in_progress`, `pending`; then the outcome on both, and the comment. A step that
//! does not apply (a superseded job never ran) is passed without a request.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use crate::audit::{Outcome, PlanSummary};
use crate::config::{Config, RetryPolicy};
use crate::db::{self, now_ms, DbError};
use crate::github::{GitHub, GithubError};
use crate::job_kind::{JobKind, JobState};
use crate::metrics::Metrics;
use crate::queue::Job;
use crate::store::{AgentTx, DueReport, JobStatus, ReportProgress};

mod drift;
mod pull_request;

/// GitHub's limit on a status description.
const DESCRIPTION_LIMIT: usize = 140;

/// The steps of one job's report, in order. Their index is stored, so never reorder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    CreateDeployment,
    DeploymentQueued,
    CommitQueued,
    DeploymentInProgress,
    CommitRunning,
    DeploymentOutcome,
    CommitOutcome,
    PullRequestComment,
    /// A pull request plan: the commit status `slipway/plan/<root>` on its head.
    PlanStatus,
    /// A pull request plan: its comment, edited in place on every push.
    PlanComment,
    /// A preview: its transient Deployment, created once the apply succeeded.
    PreviewDeployment,
    /// A preview: the deployment's `success` with the preview's URL.
    PreviewDeploymentStatus,
    /// A preview (or its teardown, or why there is none): its comment.
    PreviewComment,
    /// A teardown: the preview's deployment marked `inactive`.
    PreviewInactive,
    /// A drift check: the commit status `slipway/drift/<root>` on the deployed commit.
    DriftStatus,
}

/// The steps of a pull request job's report, by kind (indexes are stored: append only).
const PLAN_STEPS: [Step; 2] = [Step::PlanStatus, Step::PlanComment];
const PREVIEW_STEPS: [Step; 3] = [
    Step::PreviewDeployment,
    Step::PreviewDeploymentStatus,
    Step::PreviewComment,
];
const TEARDOWN_STEPS: [Step; 2] = [Step::PreviewInactive, Step::PreviewComment];

fn steps_of(kind: JobKind) -> &'static [Step] {
    match kind {
        JobKind::Merge => &STEPS,
        JobKind::PullRequestPlan => &PLAN_STEPS,
        JobKind::Preview => &PREVIEW_STEPS,
        JobKind::PreviewDestroy => &TEARDOWN_STEPS,
        // Asked for over MCP: the caller reads the job's status there.
        JobKind::BranchPreview | JobKind::BranchPreviewDestroy => &[],
        JobKind::Drift => &[Step::DriftStatus],
    }
}

const STEPS: [Step; 8] = [
    Step::CreateDeployment,
    Step::DeploymentQueued,
    Step::CommitQueued,
    Step::DeploymentInProgress,
    Step::CommitRunning,
    Step::DeploymentOutcome,
    Step::CommitOutcome,
    Step::PullRequestComment,
];

/// A job as the reporter sees it: its state and how far its report got.
type Tracked = DueReport;

/// How a job ended, as reported.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Ending {
    success: bool,
    /// `inactive` for a superseded deployment, else `success` or `failure`.
    deployment_state: &'static str,
    description: String,
    summary: Option<PlanSummary>,
    error: Option<String>,
    outcome: Outcome,
    /// For a merge of a pull request: the last plan shown on it for this root (its
    /// job id and summary), to say whether the applied plan matched it.
    last_pr_plan: Option<(i64, PlanSummary)>,
    /// For a preview: its URLs as recorded after the apply.
    urls: std::collections::BTreeMap<String, String>,
}

/// The reporter task's shared parts.
pub struct Reporter {
    config: Arc<Config>,
    github: GitHub,
    metrics: Arc<Metrics>,
    db: db::Db,
    /// The first job to report ([`start_point`]).
    from: i64,
    /// One round at a time: the loop's and a shutdown's [`Reporter::flush`].
    busy: tokio::sync::Mutex<()>,
    /// No request before this: GitHub's rate limit said so.
    paused_until: std::sync::Mutex<Option<std::time::Instant>>,
    /// Set by [`Reporter::flush`]: the loop sends nothing more.
    stopped: std::sync::atomic::AtomicBool,
}

impl Reporter {
    /// A reporter on `db`, from its [`AgentTx::report_start_point`].
    pub async fn new(
        config: Arc<Config>,
        db: &db::Db,
        github: GitHub,
        metrics: Arc<Metrics>,
    ) -> Result<Reporter, DbError> {
        let from = db.write(|tx| tx.report_start_point()).await?;
        Ok(Reporter {
            config,
            github,
            metrics,
            db: db.clone(),
            from,
            busy: tokio::sync::Mutex::new(()),
            paused_until: std::sync::Mutex::new(None),
            stopped: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// Whether GitHub's rate limit still forbids requests.
    fn paused(&self) -> bool {
        let until = self
            .paused_until
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        until.is_some_and(|t| std::time::Instant::now() < t)
    }

    fn pause(&self, wait: Duration) {
        let mut until = self
            .paused_until
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let t = std::time::Instant::now() + wait;
        *until = Some(until.map_or(t, |u| u.max(t)));
    }

    /// Sends what is due until nothing more can be sent now, or `within` passes, then
    /// stops the reporter: for a graceful stop, so GitHub shows the jobs' outcomes.
    pub async fn flush(&self, within: Duration) {
        let deadline = tokio::time::Instant::now() + within;
        let flushed = tokio::time::timeout_at(deadline, async {
            loop {
                let sent = {
                    let _busy = self.busy.lock().await;
                    self.round().await
                };
                match sent {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(e) => {
                        tracing::error!(error = %e, "GitHub reporter: cannot read or write the database while flushing");
                        break;
                    }
                }
            }
        })
        .await;
        self.stopped
            .store(true, std::sync::atomic::Ordering::SeqCst);
        if flushed.is_err() {
            tracing::warn!(
                within_secs = within.as_secs(),
                "GitHub reports not all sent before stopping; the next start sends the rest"
            );
        }
    }

    /// Runs `f` in a read transaction, off the async threads.
    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&dyn AgentTx) -> Result<T, DbError> + Send + 'static,
    ) -> Result<T, DbError> {
        self.db.read(f).await
    }

    /// Runs `f` in a write transaction, off the async threads.
    async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&dyn AgentTx) -> Result<T, DbError> + Send + 'static,
    ) -> Result<T, DbError> {
        self.db.write(f).await
    }

    /// Runs until the process ends (or [`Reporter::flush`]): every 300 ms, reports
    /// what changed.
    pub async fn run(self: Arc<Self>) {
        tracing::info!(from_job = self.from, "reporting jobs to GitHub");
        while !self.stopped.load(std::sync::atomic::Ordering::SeqCst) {
            let result = {
                let _busy = self.busy.lock().await;
                if self.stopped.load(std::sync::atomic::Ordering::SeqCst) {
                    return;
                }
                self.round().await
            };
            if let Err(e) = result {
                tracing::error!(error = %e, "GitHub reporter: cannot read or write the database; retrying");
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }

    /// One pass over every job whose report is due; how many steps it completed.
    async fn round(&self) -> Result<usize, DbError> {
        let from = self.from;
        let due = self
            .read(move |tx| tx.due_reports(from, now_ms(), DUE_PER_ROUND))
            .await?;
        let mut steps = 0;
        for tracked in due {
            if self.paused() {
                break;
            }
            steps += self.advance(tracked).await?;
        }
        Ok(steps)
    }

    /// Takes one job as far as its state allows, stopping at a failed step; how many
    /// steps it completed.
    async fn advance(&self, mut tracked: Tracked) -> Result<usize, DbError> {
        let Some(github_name) = self
            .config
            .repository(&tracked.job.repository)
            .and_then(|r| r.github.clone())
        else {
            // Not a GitHub repository (or no longer configured): nothing to report.
            tracked.steps_done = steps_of(tracked.job.kind).len();
            self.save(&tracked, 0, None).await?;
            return Ok(0);
        };
        let ending = if tracked.state == JobState::Done {
            let t = tracked.clone();
            self.read(move |tx| ending_of(tx, &t)).await?
        } else {
            None
        };
        let mut steps = 0;
        let all = steps_of(tracked.job.kind);
        while tracked.steps_done < all.len() {
            let step = all[tracked.steps_done];
            if self.paused() {
                return Ok(steps);
            }
            let available = match step {
                Step::CreateDeployment | Step::DeploymentQueued | Step::CommitQueued => true,
                Step::DeploymentInProgress | Step::CommitRunning => {
                    tracked.state != JobState::Queued || tracked.job.attempts > 0
                }
                Step::DeploymentOutcome
                | Step::CommitOutcome
                | Step::PullRequestComment
                | Step::PlanStatus
                | Step::PlanComment
                | Step::PreviewDeployment
                | Step::PreviewDeploymentStatus
                | Step::PreviewComment
                | Step::PreviewInactive
                | Step::DriftStatus => ending.is_some(),
            };
            if !available {
                return Ok(steps);
            }
            // Stored before the request: if its answer is lost, even across a restart,
            // the next attempt looks for the deployment before creating one.
            let attempted = if step == Step::CreateDeployment {
                let job_id = tracked.job.id;
                self.write(move |tx| tx.note_deployment_attempt(job_id))
                    .await?
            } else {
                false
            };
            match self
                .perform(step, &github_name, &tracked, ending.as_ref(), attempted)
                .await
            {
                Ok(deployment) => {
                    if deployment.is_some() {
                        tracked.deployment_id = deployment;
                    }
                    tracked.steps_done += 1;
                    tracked.failures = 0;
                    steps += 1;
                    self.save(&tracked, 0, None).await?;
                }
                Err(GithubError::RateLimited { message, wait }) => {
                    self.pause(wait);
                    self.metrics.github_report("retried");
                    tracing::warn!(job = tracked.job.id, step = ?step, wait_secs = wait.as_secs(), error = %message, "GitHub rate limit: no report is sent until it resets");
                    let next = now_ms() + i64::try_from(wait.as_millis()).unwrap_or(i64::MAX / 2);
                    self.save(&tracked, next, Some(message)).await?;
                    return Ok(steps);
                }
                Err(error) => {
                    let failures = tracked.failures + 1;
                    let policy: RetryPolicy = self.github_retry();
                    if error.is_retryable() && failures < policy.max_attempts {
                        let delay = policy.delay(failures);
                        self.metrics.github_report("retried");
                        tracing::warn!(job = tracked.job.id, step = ?step, attempt = failures, retry_in_ms = delay.as_millis() as u64, error = %error, "GitHub report failed; will retry");
                        let next =
                            now_ms() + i64::try_from(delay.as_millis()).unwrap_or(i64::MAX / 2);
                        tracked.failures = failures;
                        self.save(&tracked, next, Some(error.to_string())).await?;
                        return Ok(steps);
                    }
                    self.metrics.github_report("abandoned");
                    tracing::error!(job = tracked.job.id, step = ?step, attempts = failures, error = %error, "GitHub report given up; the deployment itself is unaffected");
                    tracked.steps_done += 1;
                    tracked.failures = 0;
                    self.save(&tracked, 0, Some(error.to_string())).await?;
                }
            }
        }
        Ok(steps)
    }

    fn github_retry(&self) -> RetryPolicy {
        self.config
            .github
            .as_ref()
            .map(|g| g.retry)
            .unwrap_or(RetryPolicy {
                initial: Duration::from_secs(1),
                max: Duration::from_secs(600),
                max_attempts: 10,
            })
    }

    /// Stores how far `t`'s report got; `next_attempt_at` (Unix ms) delays the next try.
    async fn save(
        &self,
        t: &Tracked,
        next_attempt_at: i64,
        last_error: Option<String>,
    ) -> Result<(), DbError> {
        let (job_id, steps_done, deployment_id, failures) =
            (t.job.id, t.steps_done, t.deployment_id, t.failures);
        let progress = ReportProgress {
            job_id,
            steps_done,
            deployment_id,
            failures,
            next_attempt_at,
            last_error,
            complete: steps_done >= steps_of(t.job.kind).len(),
        };
        self.write(move |tx| tx.save_report(&progress)).await
    }

    /// The deployment an earlier attempt for `job` created, if GitHub has one: same
    /// sha and environment, and the job's id in its payload.
    async fn find_deployment(
        &self,
        github_name: &str,
        job: &Job,
    ) -> Result<Option<u64>, GithubError> {
        let route = format!(
            "/repos/{github_name}/deployments?sha={}&environment={}&per_page=100",
            query_value(&job.commit_sha),
            query_value(&job.root)
        );
        let answer = self
            .github
            .get("look for the job's deployment", &route)
            .await?;
        Ok(deployment_of_job(&answer, job.id))
    }

    /// Sends one step's request. `Ok(Some(id))` when it created (or, after a lost
    /// answer, found) the deployment; `attempted`: an earlier creation was tried.
    async fn perform(
        &self,
        step: Step,
        github_name: &str,
        t: &Tracked,
        ending: Option<&Ending>,
        attempted: bool,
    ) -> Result<Option<u64>, GithubError> {
        let job = &t.job;
        let log_url = self
            .config
            .public_url
            .as_ref()
            .map(|base| format!("{base}/api/v1/jobs/{}/log", job.id));
        let never_ran = t.outcome == Some(Outcome::Superseded);
        let result = match step {
            Step::CreateDeployment => {
                if attempted {
                    if let Some(id) = self.find_deployment(github_name, job).await? {
                        tracing::info!(
                            job = job.id,
                            deployment = id,
                            "the deployment an earlier attempt created is reused"
                        );
                        return Ok(Some(id));
                    }
                }
                let body = json!({
                    "ref": job.commit_sha,
                    "task": "deploy",
                    "auto_merge": false,
                    "required_contexts": [],
                    "environment": job.root,
                    "description": format!("slipway-agent job {} for {}", job.id, job.root),
                    "payload": {"job_id": job.id, "repository": job.repository, "root": job.root},
                    "transient_environment": false,
                });
                let answer = self
                    .github
                    .post(
                        "create a deployment",
                        &format!("/repos/{github_name}/deployments"),
                        &body,
                    )
                    .await?;
                let id = answer["id"].as_u64().ok_or_else(|| {
                    GithubError::Permanent(
                        "create a deployment: GitHub's answer has no deployment id".to_owned(),
                    )
                })?;
                self.metrics.github_report("sent");
                return Ok(Some(id));
            }
            Step::DeploymentQueued => {
                self.deployment_status(github_name, t, "queued", "Queued", &log_url)
                    .await
            }
            Step::CommitQueued => {
                self.commit_status(github_name, job, "pending", "Queued", &log_url)
                    .await
            }
            Step::DeploymentInProgress if !never_ran => {
                self.deployment_status(
                    github_name,
                    t,
                    "in_progress",
                    "Running terraform plan and apply",
                    &log_url,
                )
                .await
            }
            Step::CommitRunning if !never_ran => {
                self.commit_status(
                    github_name,
                    job,
                    "pending",
                    "Running terraform plan and apply",
                    &log_url,
                )
                .await
            }
            Step::DeploymentInProgress | Step::CommitRunning => Ok(false),
            Step::DeploymentOutcome => {
                let Some(end) = ending else { return Ok(None) };
                self.deployment_status(
                    github_name,
                    t,
                    end.deployment_state,
                    &end.description,
                    &log_url,
                )
                .await
            }
            Step::CommitOutcome => {
                let Some(end) = ending else { return Ok(None) };
                let state = if end.success { "success" } else { "failure" };
                self.commit_status(github_name, job, state, &end.description, &log_url)
                    .await
            }
            Step::PlanStatus
            | Step::PlanComment
            | Step::PreviewDeployment
            | Step::PreviewDeploymentStatus
            | Step::PreviewComment
            | Step::PreviewInactive => {
                let Some(end) = ending else { return Ok(None) };
                return self
                    .perform_pull_request(step, github_name, t, end, log_url.as_deref())
                    .await;
            }
            Step::DriftStatus => {
                let Some(end) = ending else { return Ok(None) };
                self.drift_status(github_name, job, end, log_url.as_deref())
                    .await
            }
            Step::PullRequestComment => {
                let wanted = self
                    .config
                    .github
                    .as_ref()
                    .is_some_and(|g| g.comment_on_pull_request);
                match (wanted, job.pull_request, ending) {
                    (true, Some(number), Some(end)) if !never_ran => {
                        let body = json!({"body": comment_body(job, end, log_url.as_deref())});
                        self.github
                            .post(
                                "comment on the pull request",
                                &format!("/repos/{github_name}/issues/{number}/comments"),
                                &body,
                            )
                            .await
                            .map(|_| true)
                    }
                    _ => Ok(false),
                }
            }
        };
        if result? {
            self.metrics.github_report("sent");
        }
        Ok(None)
    }

    /// Posts a deployment status; `Ok(false)` when there is no deployment to post on
    /// (its creation was given up).
    async fn deployment_status(
        &self,
        github_name: &str,
        t: &Tracked,
        state: &str,
        description: &str,
        log_url: &Option<String>,
    ) -> Result<bool, GithubError> {
        let Some(id) = t.deployment_id else {
            return Ok(false);
        };
        let mut body = json!({
            "state": state,
            "description": truncate(description),
            "environment": t.job.root,
            "auto_inactive": true,
        });
        if let Some(url) = log_url {
            body["log_url"] = json!(url);
        }
        self.github
            .post(
                "post a deployment status",
                &format!("/repos/{github_name}/deployments/{id}/statuses"),
                &body,
            )
            .await
            .map(|_| true)
    }

    async fn commit_status(
        &self,
        github_name: &str,
        job: &Job,
        state: &str,
        description: &str,
        log_url: &Option<String>,
    ) -> Result<bool, GithubError> {
        let status = CommitStatus {
            sha: &job.commit_sha,
            context: format!("slipway/{}", job.root),
            state,
            description,
        };
        self.post_status(github_name, status, log_url.as_deref())
            .await
    }

    /// Posts a commit status; `Ok(true)` once sent.
    async fn post_status(
        &self,
        github_name: &str,
        status: CommitStatus<'_>,
        log_url: Option<&str>,
    ) -> Result<bool, GithubError> {
        let mut body = json!({
            "state": status.state,
            "description": truncate(status.description),
            "context": status.context,
        });
        if let Some(url) = log_url {
            body["target_url"] = json!(url);
        }
        self.github
            .post(
                "post a commit status",
                &format!("/repos/{github_name}/statuses/{}", status.sha),
                &body,
            )
            .await
            .map(|_| true)
    }
}

/// A commit status to post.
struct CommitStatus<'a> {
    sha: &'a str,
    context: String,
    state: &'a str,
    description: &'a str,
}

/// A value for a URL query.
fn query_value(text: &str) -> String {
    form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

/// The id of the deployment in GitHub's list whose payload names `job_id` (GitHub
/// returns the payload as sent, an object; a string holding JSON is read too).
fn deployment_of_job(list: &serde_json::Value, job_id: i64) -> Option<u64> {
    list.as_array()?.iter().find_map(|d| {
        let payload = match &d["payload"] {
            serde_json::Value::String(text) => serde_json::from_str(text).ok()?,
            other => other.clone(),
        };
        (payload["job_id"].as_i64() == Some(job_id))
            .then(|| d["id"].as_u64())
            .flatten()
    })
}

/// How many due jobs one round reads.
const DUE_PER_ROUND: usize = 200;

/// How a done job ended; for a superseded job, how the job that carried its commit
/// ended (`None` while that one is still to finish).
fn ending_of(tx: &dyn AgentTx, t: &Tracked) -> Result<Option<Ending>, DbError> {
    if t.outcome == Some(Outcome::Superseded) {
        // Follow the chain: an interrupted job can itself be superseded later.
        let mut next = t.superseded_by;
        for _ in 0..32 {
            let Some(id) = next else { break };
            let Some(JobStatus {
                state,
                outcome,
                superseded_by: by,
                commit_sha: sha,
            }) = tx.job_status(id)?
            else {
                break;
            };
            if state != JobState::Done {
                return Ok(None);
            }
            match outcome {
                Some(Outcome::Superseded) => next = by,
                Some(Outcome::Failed) => {
                    return Ok(Some(Ending {
                        success: false,
                        deployment_state: "inactive",
                        description: format!(
                            "Newer commit {} (job {id}), which includes this one, failed to deploy",
                            short(&sha)
                        ),
                        summary: None,
                        error: None,
                        outcome: Outcome::Superseded,
                        last_pr_plan: None,
                        urls: Default::default(),
                    }))
                }
                _ => {
                    return Ok(Some(Ending {
                        success: true,
                        deployment_state: "inactive",
                        description: format!(
                            "Deployed together with newer commit {} (job {id})",
                            short(&sha)
                        ),
                        summary: None,
                        error: None,
                        outcome: Outcome::Superseded,
                        last_pr_plan: None,
                        urls: Default::default(),
                    }))
                }
            }
        }
        return Ok(Some(Ending {
            success: true,
            deployment_state: "inactive",
            description: "Superseded by a newer commit".to_owned(),
            summary: None,
            error: None,
            outcome: Outcome::Superseded,
            last_pr_plan: None,
            urls: Default::default(),
        }));
    }
    let outcome = t.outcome.unwrap_or(Outcome::Failed);
    let (summary, error) = tx
        .end_record(t.job.id, Some(outcome.as_str()))?
        .map_or((None, None), |r| (r.plan_summary, r.error));
    let (success, deployment_state, description) = match outcome {
        Outcome::Succeeded => (
            true,
            "success",
            match &summary {
                Some(s) => format!("Applied: {}", s.counts()),
                None => "Applied".to_owned(),
            },
        ),
        Outcome::Skipped => (
            true,
            "success",
            format!(
                "Nothing to apply: {}",
                error.as_deref().unwrap_or("no change for this root")
            ),
        ),
        _ => (
            false,
            "failure",
            format!(
                "Failed: {}",
                error
                    .as_deref()
                    .and_then(|e| e.lines().find(|l| !l.trim().is_empty()))
                    .unwrap_or("see the job log")
                    .trim()
            ),
        ),
    };
    let last_pr_plan = match (t.job.kind, t.job.pull_request) {
        (JobKind::Merge, Some(number)) => tx
            .last_pull_request_plan(&t.job.repository, &t.job.root, number)?
            .and_then(|(id, summary)| summary.map(|s| (id, s))),
        _ => None,
    };
    let urls = match (t.job.kind, t.job.pull_request) {
        (JobKind::Preview, Some(number)) => {
            crate::previews::get(tx, &t.job.repository, &t.job.root, number)?
                .map(|p| p.urls)
                .unwrap_or_default()
        }
        _ => Default::default(),
    };
    Ok(Some(Ending {
        success,
        deployment_state,
        description,
        summary,
        error,
        outcome,
        last_pr_plan,
        urls,
    }))
}

/// The hidden line that marks the agent's comment for a root and purpose, so that it
/// is found again (and edited) when its id was lost.
fn marker(purpose: &str, root: &str) -> String {
    format!("<!-- slipway:{purpose}:{root} -->")
}

fn short(sha: &str) -> &str {
    sha.get(..7).unwrap_or(sha)
}

/// At most [`DESCRIPTION_LIMIT`] characters, cut on a character boundary.
fn truncate(text: &str) -> String {
    if text.chars().count() <= DESCRIPTION_LIMIT {
        return text.to_owned();
    }
    let mut out: String = text.chars().take(DESCRIPTION_LIMIT - 1).collect();
    out.push('…');
    out
}

/// The pull request comment: what was applied, or why it failed.
fn comment_body(job: &Job, end: &Ending, log_url: Option<&str>) -> String {
    let mut text = format!(
        "**Slipway** {} `{}` to `{}` (job {}, {}).\n",
        if end.success {
            "applied"
        } else {
            "could not apply"
        },
        short(&job.commit_sha),
        job.root,
        job.id,
        end.outcome
    );
    if let Some(s) = &end.summary {
        text.push_str(&format!("\nPlan: {}.\n", s.counts()));
        pull_request::addresses(&mut text, s);
    }
    if end.success {
        if let Some(line) = pull_request::plan_match(end) {
            text.push_str(&format!("\n{line}\n"));
        }
    }
    if !end.success {
        if let Some(error) = &end.error {
            text.push_str(&format!("\n```\n{}\n```\n", error.trim()));
        }
    }
    if let Some(url) = log_url {
        text.push_str(&format!("\n[Job log]({url})\n"));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptions_fit_github_limit() {
        let long = "é".repeat(500);
        let t = truncate(&long);
        assert_eq!(t.chars().count(), DESCRIPTION_LIMIT);
        assert!(t.ends_with('…'));
        assert_eq!(truncate("short"), "short");
    }

    #[test]
    fn a_superseded_commit_is_reported_with_the_outcome_of_the_commit_that_carried_it() {
        use crate::audit::Outcome;
        use crate::queue::{self, Intake, NewJobs};
        use crate::store::AgentStore;
        let dir = tempfile::tempdir().unwrap();
        let db = db::Db::open(&dir.path().join("r.db")).unwrap();
        let conn = db.store();
        let key = ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]);
        let new = |sha: &str| {
            Intake::Jobs(NewJobs::merge(
                None,
                "acme/infra".into(),
                "main".into(),
                sha.into(),
                slipway_provenance::Trigger::Webhook,
                Some(3),
                None,
                vec!["prod".into()],
            ))
        };
        let old_sha = "a".repeat(40);
        let new_sha = "b".repeat(40);
        queue::intake(conn, &[new(&old_sha), new(&new_sha)]).unwrap();
        let queued = conn
            .read(|tx| queue::queued_for_root(tx, "acme/infra", "prod"))
            .unwrap();
        let target = queue::start(conn, &key, &queued[1], &queued[..1]).unwrap();
        let tracked = |conn: &dyn AgentStore, sha: &str| {
            conn.read(|tx| tx.due_reports(0, i64::MAX, DUE_PER_ROUND))
                .unwrap()
                .into_iter()
                .find(|t| t.job.commit_sha == sha)
                .unwrap()
        };

        // While the newer commit runs, the older one's outcome is not known yet.
        let old = tracked(conn, &old_sha);
        assert_eq!(old.outcome, Some(Outcome::Superseded));
        assert_eq!(conn.read(|tx| ending_of(tx, &old)).unwrap(), None);

        let mut record = target.audit_record(Outcome::Failed, db::now());
        record.error = Some("terraform apply failed: boom\nmore".into());
        queue::finish(conn, &key, &target, record).unwrap();
        let end = conn
            .read(|tx| ending_of(tx, &tracked(conn, &old_sha)))
            .unwrap()
            .unwrap();
        assert!(!end.success);
        assert_eq!(end.deployment_state, "inactive");
        assert_eq!(
            end.description,
            format!(
                "Newer commit bbbbbbb (job {}), which includes this one, failed to deploy",
                target.id
            )
        );
        let own = conn
            .read(|tx| ending_of(tx, &tracked(conn, &new_sha)))
            .unwrap()
            .unwrap();
        assert!(!own.success);
        assert_eq!(own.description, "Failed: terraform apply failed: boom");
    }

    #[test]
    fn a_lost_creation_finds_its_deployment_by_the_job_id_in_the_payload() {
        let list = json!([
            {"id": 7, "payload": {"job_id": 3}},
            {"id": 8, "payload": "{\"job_id\": 4}"},
            {"id": 9, "payload": {}}
        ]);
        assert_eq!(deployment_of_job(&list, 3), Some(7));
        assert_eq!(deployment_of_job(&list, 4), Some(8));
        assert_eq!(deployment_of_job(&list, 5), None);
        assert_eq!(deployment_of_job(&json!({"message": "x"}), 3), None);

        let dir = tempfile::tempdir().unwrap();
        let db = db::Db::open(&dir.path().join("a.db")).unwrap();
        let noted = |id| {
            db.store()
                .write(|tx| tx.note_deployment_attempt(id))
                .unwrap()
        };
        assert!(!noted(1));
        assert!(noted(1));
        assert!(!noted(2));
    }

    #[test]
    fn plan_counts_read_like_terraform() {
        let mut s = PlanSummary::default();
        assert_eq!(s.counts(), "no changes");
        s.add = 2;
        s.destroy = 1;
        assert_eq!(s.counts(), "2 to add, 0 to change, 1 to destroy");
    }
}
