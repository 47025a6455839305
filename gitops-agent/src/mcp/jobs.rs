//! The GitOps engine's jobs as MCP tools: deploy a pushed branch as a preview, destroy
//! that preview, and read any job's status and log.
//!
//! These tools need the engine (its configuration, queue and git cache), so they are
//! served at `/mcp` on `slipway-agent run` only, not by `slipway-agent mcp` on stdio.
//!
//! Who may do what is the platform's to say, as for every other tool: before a job is
//! queued, the caller's own token asks the platform whether it may create (or delete)
//! a PREVIEW environment (`Authorize`, with how `mcp` and the tool's name), and a
//! refusal is the platform's, in its audit log. What the job may then change is not
//! the caller's to say: the caller names a branch (and optionally a commit on it);
//! the repository, the root (one that opts into previews), the Terraform variables,
//! the PREVIEW-only job credential, the time to live and the cap all come from the
//! agent's configuration. The job's "who" is the name the platform gave the token
//! (`claude-code@alice`), never a field of the request; it is the job's actor, the
//! `merged_by` of the agent's audit record (with trigger `mcp` and the tool) and, through
//! the credential's `requested_by`, the "who" of the platform's records of its changes.

use std::collections::BTreeMap;
use std::io::{Read as _, Seek as _};
use std::sync::Arc;
use std::time::Duration;

use rmcp::model::{Tool, ToolAnnotations};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use slipway_platform::Mode;
use slipway_proto::runtime as pb;
use slipway_provenance::Trigger;

use super::platform::{Caller, PlatformError};
use super::tools::{input, out, parse, tool, ToolError};
use crate::audit::Outcome;
use crate::config::{Repository, Root};
use crate::db::DbError;
use crate::job_kind::{JobKind, JobState};
use crate::previews::{self, Preview, PreviewKey};
use crate::queue::{Intake, IntakeOutcome, Job, NewJobs};
use crate::state::AppState;
use crate::store::AgentTx;

pub use crate::job_kind::{DEPLOY_BRANCH, DESTROY_PREVIEW};
pub const JOB_STATUS: &str = "job_status";
pub const JOB_LOG: &str = "job_log";

/// The job tools that change something: listed only for callers the platform lets
/// change some mode.
pub const WRITE_TOOLS: [&str; 2] = [DEPLOY_BRANCH, DESTROY_PREVIEW];

/// The longest a tool call waits for its job (`wait_secs`): less than the agent's
/// HTTP request timeout (60 s), so the caller hears the job's state, not a cut
/// connection. Longer: poll `job_status`.
const MAX_WAIT_SECS: u32 = 50;
/// The longest branch name accepted (git allows more; no one needs it).
const MAX_BRANCH: usize = 200;
/// `job_log`: the default and the most bytes of one answer, and the most lines.
const DEFAULT_LOG_BYTES: u32 = 16 * 1024;
const MAX_LOG_BYTES: u32 = 256 * 1024;
const MAX_LOG_LINES: u32 = 5000;

/// The job tools, for `tools/list`.
pub fn catalogue() -> Vec<Tool> {
    let read = ToolAnnotations::new()
        .read_only(true)
        .idempotent(true)
        .open_world(false);
    vec![
        tool::<DeployBranchInput, JobOutput>(
            DEPLOY_BRANCH,
            "Deploy a preview of a pushed branch (or of a commit on it): queues a preview job \
             that applies the branch's Terraform root, as the agent's configuration says, into \
             its own PREVIEW workspace `br-<branch>`, and returns the job's id at once. Poll \
             `job_status` (or give `wait_secs`) for its state and, once it succeeded, its URLs. \
             It can only change PREVIEW environments, is destroyed after the root's time to \
             live, and counts against the repository's cap on previews. Push the branch first.",
            ToolAnnotations::new()
                .read_only(false)
                .destructive(false)
                .idempotent(true)
                .open_world(false),
        ),
        tool::<DestroyPreviewInput, JobOutput>(
            DESTROY_PREVIEW,
            "Destroy a branch's preview: queues the job that destroys everything its \
             workspace made and deletes the workspace; returns the job's id at once (or waits \
             `wait_secs`). Cannot be undone.",
            ToolAnnotations::new()
                .read_only(false)
                .destructive(true)
                .idempotent(true)
                .open_world(false),
        ),
        tool::<JobStatusInput, JobOutput>(
            JOB_STATUS,
            "A job of the GitOps engine by id: its state (queued, running, done), kind, \
             repository and root, commit, trigger, who asked, timestamps, outcome and error, \
             and for a preview its name and URLs.",
            read.clone(),
        ),
        tool::<JobLogInput, JobLogOutput>(
            JOB_LOG,
            "The end of a job's Terraform output (at most `max_bytes`, 256 KiB, and \
             `max_lines`), secret values redacted.",
            read,
        ),
    ]
}

/// Runs job tool `name` as `caller` (whom the platform calls `who`), on the engine
/// of `state`. `None`: not a job tool.
pub async fn call(
    name: &str,
    arguments: serde_json::Value,
    caller: &mut Caller,
    who: &str,
    state: &Arc<AppState>,
) -> Option<Result<serde_json::Value, ToolError>> {
    Some(match name {
        DEPLOY_BRANCH => match parse(arguments) {
            Ok(i) => deploy_branch(caller, who, state, i).await.and_then(out),
            Err(e) => Err(e),
        },
        DESTROY_PREVIEW => match parse(arguments) {
            Ok(i) => destroy_preview(caller, who, state, i).await.and_then(out),
            Err(e) => Err(e),
        },
        JOB_STATUS => match parse::<JobStatusInput>(arguments) {
            Ok(i) => job_view(state, i.job_id).await.and_then(out),
            Err(e) => Err(e),
        },
        JOB_LOG => match parse(arguments) {
            Ok(i) => job_log(state, i).await.and_then(out),
            Err(e) => Err(e),
        },
        _ => return None,
    })
}

// ---------------------------------------------------------------------------------
// Inputs and outputs

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DeployBranchInput {
    /// The pushed branch to preview, e.g. `feature/login`.
    pub branch: String,
    /// A full 40-character commit SHA on that branch; its tip when absent.
    #[serde(default)]
    pub commit: Option<String>,
    /// The configured repository; may be left out when only one has preview roots.
    #[serde(default)]
    pub repository: Option<String>,
    /// The Terraform root to preview (one with `preview` in the agent's
    /// configuration); may be left out when the repository has only one.
    #[serde(default)]
    pub root: Option<String>,
    /// Wait up to this many seconds (0 to 50; 0 by default) for the job to finish.
    #[serde(default)]
    #[schemars(range(min = 0, max = 50))]
    pub wait_secs: Option<u32>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DestroyPreviewInput {
    /// The branch whose preview to destroy.
    pub branch: String,
    #[serde(default)]
    pub repository: Option<String>,
    #[serde(default)]
    pub root: Option<String>,
    /// Wait up to this many seconds (0 to 50; 0 by default) for the teardown.
    #[serde(default)]
    #[schemars(range(min = 0, max = 50))]
    pub wait_secs: Option<u32>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JobStatusInput {
    /// The job's id, as `deploy_branch_preview` returned it.
    #[schemars(range(min = 1))]
    pub job_id: i64,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JobLogInput {
    #[schemars(range(min = 1))]
    pub job_id: i64,
    /// At most this many bytes from the end of the log (1 to 262144; 16384 by default).
    #[serde(default)]
    #[schemars(range(min = 1, max = 262144))]
    pub max_bytes: Option<u32>,
    /// At most this many lines from the end (1 to 5000).
    #[serde(default)]
    #[schemars(range(min = 1, max = 5000))]
    pub max_lines: Option<u32>,
}

/// A preview as a job's status shows it.
#[derive(Debug, Serialize, JsonSchema)]
pub struct PreviewView {
    /// Its Terraform workspace and `preview_name` (`br-feature-login-1a2b3c4d`).
    pub name: String,
    pub active: bool,
    /// The commit it runs (or is being applied).
    pub commit: String,
    /// The root's string outputs after its last apply.
    pub urls: BTreeMap<String, String>,
    /// When it is destroyed unless updated again (ms since the Unix epoch).
    pub expires_at_ms: i64,
    pub requested_by: Option<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct JobOutput {
    pub job_id: i64,
    /// `queued`, `running` or `done`.
    pub state: String,
    /// `merge`, `pr-plan`, `preview`, `preview-destroy`, `branch-preview`,
    /// `branch-preview-destroy`.
    pub kind: String,
    pub repository: String,
    pub root: String,
    pub branch: String,
    pub commit: String,
    /// What queued it: `mcp`, `webhook`, `poll`, `pull-request`, `ttl`, ...
    pub trigger: String,
    /// Who asked (an MCP caller's identity, who merged or pushed).
    pub requested_by: Option<String>,
    pub pull_request: Option<u64>,
    pub enqueued_at: String,
    pub started_at: Option<String>,
    pub ended_at: Option<String>,
    /// Once done: `succeeded`, `failed`, `skipped`, `superseded`.
    pub outcome: Option<String>,
    /// Why it failed or was skipped (secrets redacted).
    pub error: Option<String>,
    /// The preview's URLs, once this job's apply succeeded.
    pub urls: BTreeMap<String, String>,
    pub preview: Option<PreviewView>,
    /// What to do next.
    pub message: String,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct JobLogOutput {
    pub job_id: i64,
    /// The end of the log.
    pub text: String,
    /// Whether earlier output was left out.
    pub truncated: bool,
    /// The whole log's size.
    pub total_bytes: u64,
}

// ---------------------------------------------------------------------------------
// Checks

/// A branch name git accepts for `refs/heads/<name>`, within [`MAX_BRANCH`].
fn check_branch(branch: &str) -> Result<(), ToolError> {
    if branch.len() > MAX_BRANCH {
        return Err(input(
            "branch",
            format!(
                "is {} bytes long; a branch to preview has at most {MAX_BRANCH}",
                branch.len()
            ),
        ));
    }
    let valid = !branch.is_empty()
        && !branch.starts_with('-')
        && git2::Reference::is_valid_name(&format!("refs/heads/{branch}"));
    if valid {
        Ok(())
    } else {
        Err(input(
            "branch",
            format!("{branch:?} is not a branch name git accepts (for example `feature/login`)"),
        ))
    }
}

fn check_commit(commit: &str) -> Result<String, ToolError> {
    if commit.len() == 40 && commit.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(commit.to_ascii_lowercase())
    } else {
        Err(input(
            "commit",
            format!("{commit:?} is not a full 40-character commit SHA"),
        ))
    }
}

fn check_wait(wait: Option<u32>) -> Result<Duration, ToolError> {
    match wait.unwrap_or(0) {
        n if n <= MAX_WAIT_SECS => Ok(Duration::from_secs(u64::from(n))),
        _ => Err(input(
            "wait_secs",
            format!("at most {MAX_WAIT_SECS}; for longer, poll `{JOB_STATUS}`"),
        )),
    }
}

fn names<'a>(items: impl Iterator<Item = &'a str>) -> String {
    let all: Vec<&str> = items.collect();
    if all.is_empty() {
        "none".into()
    } else {
        all.join(", ")
    }
}

/// The configured repository and root to preview: named, or the only one there is.
/// A root that does not opt into previews is refused here, whatever the caller says.
fn preview_root<'a>(
    state: &'a AppState,
    repository: Option<&str>,
    root: Option<&str>,
) -> Result<(&'a Repository, &'a Root), ToolError> {
    let with_previews = || {
        state
            .config
            .repositories
            .iter()
            .filter(|r| r.roots.iter().any(|t| t.preview.is_some()))
    };
    let repo = match repository {
        Some(name) => state.config.repository(name).ok_or_else(|| {
            input(
                "repository",
                format!(
                    "`{name}` is not a repository of this agent; those with preview roots: {}",
                    names(with_previews().map(|r| r.name.as_str()))
                ),
            )
        })?,
        None => {
            let mut all = with_previews();
            match (all.next(), all.next()) {
                (Some(only), None) => only,
                _ => {
                    return Err(input(
                        "repository",
                        format!(
                            "name the repository; those with preview roots: {}",
                            names(with_previews().map(|r| r.name.as_str()))
                        ),
                    ))
                }
            }
        }
    };
    let previewed = || repo.roots.iter().filter(|t| t.preview.is_some());
    let root = match root {
        Some(name) => {
            let found = repo.roots.iter().find(|t| t.name == name).ok_or_else(|| {
                input(
                    "root",
                    format!(
                        "`{name}` is not a root of {}; its preview roots: {}",
                        repo.name,
                        names(previewed().map(|t| t.name.as_str()))
                    ),
                )
            })?;
            if found.preview.is_none() {
                return Err(input(
                    "root",
                    format!(
                        "root `{name}` of {} does not opt into previews (`preview = true` in the agent's configuration); its preview roots: {}",
                        repo.name,
                        names(previewed().map(|t| t.name.as_str()))
                    ),
                ));
            }
            found
        }
        None => {
            let mut all = previewed();
            match (all.next(), all.next()) {
                (Some(only), None) => only,
                _ => {
                    return Err(input(
                        "root",
                        format!(
                            "name the root; the preview roots of {}: {}",
                            repo.name,
                            names(previewed().map(|t| t.name.as_str()))
                        ),
                    ))
                }
            }
        }
    };
    Ok((repo, root))
}

// ---------------------------------------------------------------------------------
// The tools

fn engine_error(e: impl std::fmt::Display) -> ToolError {
    ToolError::Platform(PlatformError::Invalid(e.to_string()))
}

/// Runs `f` in a read transaction of the agent's database.
async fn in_db<T: Send + 'static>(
    state: &AppState,
    f: impl FnOnce(&dyn AgentTx) -> Result<T, DbError> + Send + 'static,
) -> Result<T, ToolError> {
    state.db.read(f).await.map_err(engine_error)
}

async fn submit(state: &AppState, jobs: NewJobs) -> Result<i64, ToolError> {
    match state
        .writer
        .submit(Intake::Jobs(jobs))
        .await
        .map_err(engine_error)?
    {
        IntakeOutcome::Enqueued(ids) => ids
            .first()
            .copied()
            .ok_or_else(|| engine_error("no job was stored")),
        other => Err(engine_error(format!("the job was not stored: {other:?}"))),
    }
}

async fn deploy_branch(
    caller: &mut Caller,
    who: &str,
    state: &Arc<AppState>,
    input: DeployBranchInput,
) -> Result<JobOutput, ToolError> {
    check_branch(&input.branch)?;
    let commit = input.commit.as_deref().map(check_commit).transpose()?;
    let wait = check_wait(input.wait_secs)?;
    let (repo, root) = preview_root(state, input.repository.as_deref(), input.root.as_deref())?;
    let key = PreviewKey::Branch(input.branch.clone());
    let name = key.name();
    // The platform says whether this caller may have a PREVIEW environment at all
    // (and records a refusal); the job's credential says what the job may change.
    caller
        .authorize(
            &name,
            Mode::Preview,
            pb::ChangeAction::Create,
            format!("preview {name} of {}/{}", repo.name, root.name),
        )
        .await?;
    let commit = resolve_commit(state, repo, &input.branch, commit).await?;
    let id = submit(
        state,
        NewJobs {
            delivery: None,
            repository: repo.name.clone(),
            branch: input.branch.clone(),
            commit_sha: commit,
            trigger: Trigger::Mcp,
            pull_request: None,
            actor: Some(who.to_owned()),
            roots: vec![root.name.clone()],
            kind: JobKind::BranchPreview,
            head_sha: None,
            base_sha: None,
            // Who asked may not approve it (a preview needs no approval anyway).
            authors: vec![who.to_owned()],
        },
    )
    .await?;
    tracing::info!(job = id, who, branch = %input.branch, root = %root.name, "branch preview asked for over MCP");
    wait_for(state, id, wait).await
}

/// The commit to preview: `commit` when it is on the branch as just fetched, else the
/// branch's tip. The branch must exist on the remote.
async fn resolve_commit(
    state: &Arc<AppState>,
    repo: &Repository,
    branch: &str,
    commit: Option<String>,
) -> Result<String, ToolError> {
    let git = state.runner.git.clone();
    let token = git.credentials(&repo.url).await;
    let (repo_c, branch_c) = (repo.clone(), branch.to_owned());
    let found = tokio::task::spawn_blocking(move || {
        git.with_cache(&repo_c, |cache| {
            let Some(tip) = cache.fetch_branch(&branch_c, token.as_ref())? else {
                return Ok(Err(input(
                    "branch",
                    format!(
                        "the remote of {} has no branch `{branch_c}`: push it first (`git push origin {branch_c}`)",
                        repo_c.name
                    ),
                )));
            };
            let Some(commit) = commit else {
                return Ok(Ok(tip));
            };
            let on_branch =
                cache.has_commit(&commit) && cache.is_ancestor_or_same(&commit, &tip)?;
            Ok(if on_branch {
                Ok(commit)
            } else {
                Err(input(
                    "commit",
                    format!(
                        "{commit} is not on branch `{branch_c}` (its tip is {tip}); push it, or leave `commit` out for the tip"
                    ),
                ))
            })
        })
    })
    .await
    .map_err(engine_error)?
    .map_err(|e: crate::git::GitError| engine_error(e))?;
    found
}

async fn destroy_preview(
    caller: &mut Caller,
    who: &str,
    state: &Arc<AppState>,
    input: DestroyPreviewInput,
) -> Result<JobOutput, ToolError> {
    check_branch(&input.branch)?;
    let wait = check_wait(input.wait_secs)?;
    let (repo, root) = preview_root(state, input.repository.as_deref(), input.root.as_deref())?;
    let key = PreviewKey::Branch(input.branch.clone());
    let (r, t, k) = (repo.name.clone(), root.name.clone(), key.clone());
    let preview = in_db(state, move |tx| tx.preview(&r, &t, &k))
        .await?
        .filter(|p| p.active)
        .ok_or_else(|| {
            ToolError::NotFound(format!(
                "`branch`: no preview of branch `{}` is up in {}/{}: nothing to destroy",
                input.branch, repo.name, root.name
            ))
        })?;
    let name = key.name();
    caller
        .authorize(
            &name,
            Mode::Preview,
            pb::ChangeAction::Delete,
            format!("preview {name} of {}/{}", repo.name, root.name),
        )
        .await?;
    let id = submit(
        state,
        previews::teardown(&preview, &repo.branch, Trigger::Mcp, Some(who.to_owned())),
    )
    .await?;
    tracing::info!(job = id, who, branch = %input.branch, root = %root.name, "branch preview teardown asked for over MCP");
    wait_for(state, id, wait).await
}

/// The job's status once it is done, or when `wait` has passed.
async fn wait_for(state: &Arc<AppState>, id: i64, wait: Duration) -> Result<JobOutput, ToolError> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let view = job_view(state, id).await?;
        if view.state == JobState::Done.as_str() || tokio::time::Instant::now() >= deadline {
            return Ok(view);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// What the database says about job `id`.
struct Stored {
    job: Job,
    state: JobState,
    outcome: Option<Outcome>,
    ended_at: Option<String>,
    error: Option<String>,
    preview: Option<Preview>,
}

fn stored(tx: &dyn AgentTx, id: i64) -> Result<Option<Stored>, DbError> {
    let (Some(job), Some(status)) = (tx.job(id)?, tx.job_status(id)?) else {
        return Ok(None);
    };
    let (state, outcome) = (status.state, status.outcome);
    // The record of how it ended (an interrupted attempt's record does not count).
    let (ended_at, error) = match tx.end_record(id, None)? {
        Some(end) if state == JobState::Done => (Some(end.ended_at), end.error),
        _ => (None, None),
    };
    let preview = match PreviewKey::of(&job) {
        Some(key) => tx.preview(&job.repository, &job.root, &key)?,
        None => None,
    };
    Ok(Some(Stored {
        job,
        state,
        outcome,
        ended_at,
        error,
        preview,
    }))
}

async fn job_view(state: &Arc<AppState>, id: i64) -> Result<JobOutput, ToolError> {
    let found = in_db(state, move |tx| stored(tx, id))
        .await?
        .ok_or_else(|| no_job(id))?;
    Ok(view(state, found))
}

fn no_job(id: i64) -> ToolError {
    ToolError::NotFound(format!(
        "`job_id`: no job {id}; `{DEPLOY_BRANCH}` returns the id of the job it queues"
    ))
}

fn view(state: &AppState, s: Stored) -> JobOutput {
    let succeeded = s.outcome == Some(Outcome::Succeeded);
    let job = &s.job;
    // This job's URLs: it applied a preview, and that preview still runs its commit.
    let urls = match &s.preview {
        Some(p)
            if job.kind.applies_preview()
                && succeeded
                && p.active
                && p.commit_sha == job.commit_sha =>
        {
            p.urls.clone()
        }
        _ => BTreeMap::new(),
    };
    let message = match (s.state, succeeded) {
        (JobState::Done, true) if job.kind.applies_preview() => {
            "the preview is up: its URLs are in `urls`".to_owned()
        }
        (JobState::Done, true) => "done".to_owned(),
        (JobState::Done, false) => format!(
            "the job did not succeed; `{JOB_LOG}` with this job_id shows Terraform's output"
        ),
        _ => format!("call `{JOB_STATUS}` with this job_id until `state` is `done`"),
    };
    JobOutput {
        job_id: job.id,
        state: s.state.as_str().to_owned(),
        kind: job.kind.as_str().to_owned(),
        repository: job.repository.clone(),
        root: job.root.clone(),
        branch: job.branch.clone(),
        commit: job.commit_sha.clone(),
        trigger: job.trigger.as_str().to_owned(),
        requested_by: job.actor.clone(),
        pull_request: job.pull_request,
        enqueued_at: job.enqueued_at.clone(),
        started_at: job.started_at.clone(),
        ended_at: s.ended_at,
        outcome: s.outcome.map(|o| o.as_str().to_owned()),
        error: s.error.map(|e| state.runner.redact(&e)),
        urls,
        preview: s.preview.map(|p| PreviewView {
            name: p.key.name(),
            active: p.active,
            commit: p.commit_sha,
            urls: p.urls,
            expires_at_ms: p.expires_at_ms,
            requested_by: p.requested_by,
        }),
        message,
    }
}

async fn job_log(state: &Arc<AppState>, input: JobLogInput) -> Result<JobLogOutput, ToolError> {
    let max_bytes = input.max_bytes.unwrap_or(DEFAULT_LOG_BYTES);
    if !(1..=MAX_LOG_BYTES).contains(&max_bytes) {
        return Err(self::input(
            "max_bytes",
            format!("must be between 1 and {MAX_LOG_BYTES}"),
        ));
    }
    if let Some(lines) = input.max_lines {
        if !(1..=MAX_LOG_LINES).contains(&lines) {
            return Err(self::input(
                "max_lines",
                format!("must be between 1 and {MAX_LOG_LINES}"),
            ));
        }
    }
    let id = input.job_id;
    in_db(state, move |tx| tx.job(id))
        .await?
        .ok_or_else(|| no_job(id))?;
    let log = crate::work_dirs::output_log(&state.config, id);
    let tail = tokio::task::spawn_blocking(move || tail_of(&log, u64::from(max_bytes)))
        .await
        .map_err(engine_error)?;
    let (text, total_bytes) = match tail {
        Ok(found) => found,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => (String::new(), 0),
        Err(e) => return Err(engine_error(format!("read the log of job {id}: {e}"))),
    };
    let mut truncated = (text.len() as u64) < total_bytes;
    let text = match input.max_lines {
        Some(n) => {
            let lines: Vec<&str> = text.lines().collect();
            let keep = lines.len().saturating_sub(n as usize);
            truncated |= keep > 0;
            lines[keep..].join("\n")
        }
        None => text,
    };
    // Written redacted; redacted again, in case a secret changed since.
    Ok(JobLogOutput {
        job_id: id,
        text: state.runner.redact(&text),
        truncated,
        total_bytes,
    })
}

/// The last `max` bytes of the file at `path` (from a line start when cut), and its
/// size.
fn tail_of(path: &std::path::Path, max: u64) -> std::io::Result<(String, u64)> {
    let mut file = std::fs::File::open(path)?;
    let total = file.metadata()?.len();
    let start = total.saturating_sub(max);
    file.seek(std::io::SeekFrom::Start(start))?;
    let mut bytes = Vec::new();
    file.take(max).read_to_end(&mut bytes)?;
    let mut text = String::from_utf8_lossy(&bytes).into_owned();
    if start > 0 {
        if let Some(newline) = text.find('\n') {
            text.drain(..=newline);
        }
    }
    Ok((text, total))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(e: ToolError) -> String {
        match e {
            ToolError::Input { field, .. } => field,
            other => panic!("not an input error: {other}"),
        }
    }

    #[test]
    fn bad_branches_commits_and_waits_name_their_field() {
        check_branch("feature/login").unwrap();
        for bad in ["", "-x", "a..b", "a b", "a~1", "x.lock", "a/", "@{u}"] {
            assert_eq!(field(check_branch(bad).unwrap_err()), "branch", "{bad:?}");
        }
        let long = check_branch(&"x".repeat(MAX_BRANCH + 1)).unwrap_err();
        assert!(long.to_string().contains("at most 200"), "{long}");
        assert_eq!(check_commit(&"A".repeat(40)).unwrap(), "a".repeat(40));
        assert_eq!(field(check_commit("abc").unwrap_err()), "commit");
        assert_eq!(check_wait(None).unwrap(), Duration::ZERO);
        assert_eq!(field(check_wait(Some(51)).unwrap_err()), "wait_secs");
        let unknown: Result<DeployBranchInput, _> =
            parse(serde_json::json!({"branch": "x", "environment": "prod"}));
        assert!(unknown.unwrap_err().to_string().contains("environment"));
    }

    #[test]
    fn a_log_tail_is_bounded_and_starts_at_a_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("output.log");
        std::fs::write(&path, "one\ntwo\nthree\n").unwrap();
        assert_eq!(
            tail_of(&path, 1000).unwrap(),
            ("one\ntwo\nthree\n".into(), 14)
        );
        assert_eq!(tail_of(&path, 8).unwrap(), ("three\n".into(), 14));
    }

    #[test]
    fn the_job_tools_have_schemas_and_only_destroy_is_destructive() {
        for tool in catalogue() {
            assert_eq!(tool.input_schema["type"], "object", "{}", tool.name);
            assert!(tool.output_schema.is_some(), "{}", tool.name);
            let a = tool.annotations.expect("annotations");
            let writes = WRITE_TOOLS.contains(&tool.name.as_ref());
            assert_eq!(a.read_only_hint, Some(!writes), "{}", tool.name);
            assert_eq!(
                a.destructive_hint == Some(true),
                tool.name == DESTROY_PREVIEW,
                "{}",
                tool.name
            );
        }
        assert_eq!(JobKind::BranchPreview.mcp_tool(), Some(DEPLOY_BRANCH));
        assert_eq!(JobKind::Preview.mcp_tool(), None);
    }
}
