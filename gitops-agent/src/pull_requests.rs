//! Runs the pull request kinds of job: plans, previews and preview teardowns.
//!
//! They share the root's worker with merges (one Terraform at a time per root), but
//! never the tracked branch's state: a plan only plans (its credential is read-only,
//! so even a `terraform apply` it managed to start would be refused by the platform);
//! a preview applies the pull request's head into the workspace `pr-<number>` with a
//! credential for PREVIEW environments only, so a root whose code reaches for anything
//! else fails at `terraform plan` with the platform's refusal; a teardown destroys that
//! workspace and deletes it. Jobs of one pull request and kind collapse into the newest,
//! and a queued teardown supersedes the pull request's other queued jobs.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use tokio::io::AsyncWriteExt as _;
use tokio::time::Instant;

use crate::audit::Outcome;
use crate::config::{Repository, Root};
use crate::db;
use crate::job_error::{JobError, RunOutcome};
use crate::job_kind::JobKind;
use crate::previews::{self, Effect, PreviewKey};
use crate::queue::{self, Job};
use crate::runner::Runner;
use crate::terraform::{write_var_file, PlanLog, Terraform};
use crate::work_dirs::{private_dir, JobDirs};

/// Why a pull request job ran nothing. Shown on the pull request and in the audit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PullRequestSkip {
    #[error("the pull request changes none of this root's paths ({})", paths.join(", "))]
    Untouched { paths: Vec<String> },
    #[error(
        "no preview: this repository has {max} previews up already (max_previews = {max}); \
         close a pull request whose preview is no longer needed, or raise max_previews"
    )]
    PreviewCap { max: usize },
    #[error("no preview of this pull request is up: nothing to destroy")]
    NoPreview,
    #[error("the remote has no branch `{branch}` any more: push it again to preview it")]
    NoBranch { branch: String },
}

/// The jobs that collapse together: those of one pull request, or of one branch's
/// preview.
fn group(job: &Job) -> (Option<u64>, Option<&str>) {
    if job.kind.is_branch_preview() {
        (None, Some(job.branch.as_str()))
    } else {
        (job.pull_request, None)
    }
}

/// The job that runs now and those it supersedes, from a root's queued pull request
/// jobs (oldest first): the newest job of the oldest job's pull request and kind, or
/// that pull request's teardown when one is queued.
pub fn choose(queued: &[Job]) -> Option<(Job, Vec<Job>)> {
    let first = queued.first()?;
    let same_pr = |j: &&Job| group(j) == group(first);
    let teardown = queued
        .iter()
        .filter(same_pr)
        .rfind(|j| j.kind.destroys_preview());
    let target = match teardown {
        Some(t) => t,
        None => queued
            .iter()
            .filter(same_pr)
            .rfind(|j| j.kind == first.kind)
            .unwrap_or(first),
    };
    let superseded = queued
        .iter()
        .filter(same_pr)
        .filter(|j| j.id != target.id && (teardown.is_some() || j.kind == target.kind))
        .cloned()
        .collect();
    Some((target.clone(), superseded))
}

/// What a pull request job found in git before running Terraform.
enum Checkout {
    Run { commit: String },
    Skip(PullRequestSkip),
}

impl Runner {
    /// Runs one pull request job of `root` (with those it supersedes). `Ok(true)`:
    /// something was done.
    pub(crate) async fn step_pull_request(
        self: Arc<Self>,
        repo: &Repository,
        root: &Root,
        queued: Vec<Job>,
    ) -> Result<bool, JobError> {
        let Some((target, superseded)) = choose(&queued) else {
            return Ok(false);
        };
        let Some(_permit) = self.job_slot().await? else {
            return Ok(false);
        };
        let this = self.clone();
        let sup = superseded.clone();
        let job = tokio::task::spawn_blocking(move || {
            queue::start(this.db.store(), &this.key, &target, &sup)
        })
        .await??;
        if !superseded.is_empty() {
            self.metrics.jobs_closed("superseded", superseded.len());
        }
        let clock = std::time::Instant::now();
        tracing::info!(job = job.id, kind = %job.kind, repository = %repo.name, root = %root.name, pull_request = ?job.pull_request, commit = %job.commit_sha, "pull request job started");
        let (outcome, effect) = self.execute_pull_request(repo, root, &job).await;
        if outcome.interrupted {
            tracing::warn!(
                job = job.id,
                "job interrupted by the shutdown; it runs again at the next start"
            );
            return Ok(true);
        }
        let effect = (outcome.outcome == Outcome::Succeeded)
            .then_some(effect)
            .flatten();
        let stored = self.record_run(&job, outcome, effect, clock).await;
        tracing::info!(job = job.id, kind = %job.kind, outcome = %stored.record.outcome, error = stored.record.error.as_deref().unwrap_or(""), "pull request job finished");
        Ok(true)
    }

    async fn execute_pull_request(
        self: &Arc<Self>,
        repo: &Repository,
        root: &Root,
        job: &Job,
    ) -> (RunOutcome, Option<Effect>) {
        let mut out = RunOutcome::default();
        let deadline = Instant::now() + self.config.job_timeout;
        let dirs = JobDirs::of(&self.config, job.id);
        // A killed agent's Terraform (a teardown, say) may still run: wait for it.
        dirs.wait_for_previous_terraform(job.id, deadline).await;
        let mut effect = None;
        let result = self
            .pull_request_inner(repo, root, job, &dirs, deadline, &mut out)
            .await
            .map(|(outcome, e)| {
                effect = e;
                outcome
            });
        dirs.remove_work_tree().await;
        out.settle(result);
        (out, effect)
    }

    /// Fetches the pull request, decides whether to run, and checks the commit out.
    async fn pull_request_checkout(
        self: &Arc<Self>,
        repo: &Repository,
        root: &Root,
        job: &Job,
        work: &Path,
    ) -> Result<Checkout, JobError> {
        let number = job.pull_request.unwrap_or(0);
        // A teardown runs the configuration its preview was applied from.
        let destroy_commit = if job.kind.destroys_preview() {
            let (r, t) = (job.repository.clone(), job.root.clone());
            let key = PreviewKey::of(job)
                .ok_or_else(|| JobError::Failed("a teardown without a preview".into()))?;
            let preview = self.db.read(move |tx| tx.preview(&r, &t, &key)).await?;
            match preview {
                Some(p) if p.active => Some(p.commit_sha),
                _ => return Ok(Checkout::Skip(PullRequestSkip::NoPreview)),
            }
        } else {
            None
        };
        let token = self.git_credentials(&repo.url).await;
        let git = self.git.clone();
        let (repo_c, root_c, job_c, work_c) =
            (repo.clone(), root.clone(), job.clone(), work.to_owned());
        tokio::task::spawn_blocking(move || {
            git.with_cache(&repo_c, |cache| {
                let tip = cache.fetch(token.as_ref())?;
                if job_c.kind.is_branch_preview() {
                    let fetched = cache.fetch_branch(&job_c.branch, token.as_ref())?;
                    // A teardown needs only the commit it applied, which is cached.
                    if fetched.is_none() && job_c.kind == JobKind::BranchPreview {
                        return Ok(Checkout::Skip(PullRequestSkip::NoBranch {
                            branch: job_c.branch.clone(),
                        }));
                    }
                } else {
                    cache.fetch_pull_request(number, token.as_ref())?;
                }
                let head = job_c.head_sha.clone().unwrap_or(job_c.commit_sha.clone());
                let commit = match (&destroy_commit, job_c.kind) {
                    (Some(c), _) => c.clone(),
                    // GitHub's test merge when it has one, else the head.
                    (None, JobKind::PullRequestPlan) if cache.has_commit(&job_c.commit_sha) => {
                        job_c.commit_sha.clone()
                    }
                    _ => head.clone(),
                };
                if !cache.has_commit(&commit) {
                    return Err(JobError::Failed(if job_c.kind.is_branch_preview() {
                        format!(
                            "commit {commit} of branch {} is not in the repository as fetched",
                            job_c.branch
                        )
                    } else {
                        format!(
                            "commit {commit} of pull request #{number} is not in the repository (refs/pull/{number}/head as fetched)"
                        )
                    }));
                }
                if job_c.kind == JobKind::PullRequestPlan {
                    let base = cache.merge_base(&tip, &head)?;
                    let changed = cache.changed_paths(base.as_deref(), &head)?;
                    if !changed.iter().any(|p| root_c.is_triggered_by(p)) {
                        return Ok(Checkout::Skip(PullRequestSkip::Untouched {
                            paths: root_c.paths.clone(),
                        }));
                    }
                }
                let _ = std::fs::remove_dir_all(&work_c);
                private_dir(&work_c).map_err(|e| {
                    JobError::Failed(format!("create work tree {}: {e}", work_c.display()))
                })?;
                cache.checkout(&commit, &work_c)?;
                Ok(Checkout::Run { commit })
            })
        })
        .await?
    }

    async fn pull_request_inner(
        self: &Arc<Self>,
        repo: &Repository,
        root: &Root,
        job: &Job,
        dirs: &JobDirs,
        deadline: Instant,
        out: &mut RunOutcome,
    ) -> Result<(Outcome, Option<Effect>), JobError> {
        let work = dirs.work.as_path();
        if job.kind.applies_preview() {
            let Some(preview) = root.preview else {
                return Err(JobError::Failed(format!(
                    "root `{}` has no previews configured",
                    root.name
                )));
            };
            let key = PreviewKey::of(job)
                .ok_or_else(|| JobError::Failed("a preview job without a preview".into()))?;
            let asked_by = job
                .kind
                .is_branch_preview()
                .then(|| job.actor.clone())
                .flatten();
            // The cap, then the preview is live before anything is applied.
            let (r, t, c) = (
                job.repository.clone(),
                job.root.clone(),
                job.commit_sha.clone(),
            );
            let max = repo.max_previews;
            let ttl_ms = i64::try_from(preview.ttl.as_millis()).unwrap_or(i64::MAX);
            let capped = self
                .db
                .run(move |store| {
                    // One transaction: two previews starting at once cannot both
                    // take the last place under the cap.
                    store.write(|tx| {
                        let own = tx.preview(&r, &t, &key)?.is_some_and(|p| p.active);
                        if !own && tx.other_active_previews(&r, &key)? >= max {
                            return Ok(true);
                        }
                        previews::mark_active(tx, &r, &t, &key, &c, ttl_ms, asked_by.as_deref())?;
                        Ok::<bool, db::DbError>(false)
                    })
                })
                .await?;
            if capped {
                out.error = Some(PullRequestSkip::PreviewCap { max }.to_string());
                return Ok((Outcome::Skipped, None));
            }
        }
        let commit = match self.pull_request_checkout(repo, root, job, work).await? {
            Checkout::Run { commit } => commit,
            Checkout::Skip(reason) => {
                out.error = Some(reason.to_string());
                return Ok((Outcome::Skipped, None));
            }
        };
        let dir = dirs.root_dir(root, &commit)?;
        let mut log = dirs.open_log().await?;
        let actor = job.actor.clone().unwrap_or_default();
        let issued = self.issue_credential(repo, root, job, &actor, None, deadline)?;
        // The credential's path only: a pull request job's Terraform runs code from the
        // pull request, and what it may do is the credential's to say.
        let env = crate::terraform::automation_env(&issued.file);
        let of = match PreviewKey::of(job) {
            Some(PreviewKey::Branch(branch)) => format!("branch {branch}"),
            _ => format!("pull request #{}", job.pull_request.unwrap_or(0)),
        };
        let header = format!(
            "\n===== job {} ({}, {of}) attempt {} at {}: commit {commit} =====\n",
            job.id,
            job.kind,
            job.attempts,
            db::now(),
        );
        let _ = log.write_all(header.as_bytes()).await;
        let tf = self.terraform(&dir, work, &env, deadline);
        let result = run_kind(&tf, &mut log, root, job, &dir, out).await;
        tf.fill_in_version(out).await;
        self.end_credential(issued, job, result.as_ref().map(|(o, _)| *o), out)
            .await;
        result
    }
}

/// The Terraform commands of each kind.
async fn run_kind(
    tf: &Terraform<'_>,
    log: &mut tokio::fs::File,
    root: &Root,
    job: &Job,
    dir: &Path,
    out: &mut RunOutcome,
) -> Result<(Outcome, Option<Effect>), JobError> {
    let key = PreviewKey::of(job);
    let name = key.as_ref().map(PreviewKey::name).unwrap_or_default();
    tf.run(&mut *log, &["init", "-input=false", "-no-color"])
        .await?;
    let mut vars = root.variables.clone();
    if job.kind != JobKind::PullRequestPlan {
        vars.insert(
            "preview_name".into(),
            serde_json::Value::String(name.clone()),
        );
    }
    let var_file = write_var_file(dir, &vars).await?;
    let with_vars = |mut args: Vec<String>| {
        args.extend(var_file.clone());
        args
    };
    match job.kind {
        JobKind::Merge | JobKind::Drift => Err(JobError::Failed(format!(
            "a {} job is not a pull request job",
            job.kind
        ))),
        JobKind::PullRequestPlan => {
            // A plan takes no lock: it must never hold up the merges of the root.
            let workspace = root.workspace.as_deref();
            tf.plan(
                &mut *log,
                workspace,
                &with_vars(strings(&["-lock=false"])),
                // The whole plan is behind the comment's job-log link.
                PlanLog::Full,
                out,
            )
            .await?;
            Ok((Outcome::Succeeded, None))
        }
        JobKind::Preview | JobKind::BranchPreview => {
            let key = key.ok_or_else(|| "a preview job without a preview".to_owned())?;
            let lock = with_vars(strings(&["-lock-timeout=300s"]));
            tf.plan(&mut *log, Some(&name), &lock, PlanLog::Actions, out)
                .await?;
            tf.apply_saved_plan(&mut *log).await?;
            let outputs = tf.run_quiet(&["output", "-json"]).await?;
            Ok((
                Outcome::Succeeded,
                Some(Effect::Applied {
                    repository: job.repository.clone(),
                    root: job.root.clone(),
                    key,
                    urls: string_outputs(&outputs),
                    ttl_ms: root
                        .preview
                        .map_or(0, |p| i64::try_from(p.ttl.as_millis()).unwrap_or(i64::MAX)),
                }),
            ))
        }
        JobKind::PreviewDestroy | JobKind::BranchPreviewDestroy => {
            let destroyed = Effect::Destroyed {
                repository: job.repository.clone(),
                root: job.root.clone(),
                key: key.ok_or_else(|| "a teardown without a preview".to_owned())?,
            };
            let list = tf.run_quiet(&["workspace", "list", "-no-color"]).await?;
            if !workspace_listed(&list, &name) {
                // Never applied (or its workspace already deleted by a teardown whose
                // record was lost): nothing is left.
                return Ok((Outcome::Succeeded, Some(destroyed)));
            }
            tf.run_args(
                &mut *log,
                &strings(&["workspace", "select", "-no-color", &name]),
            )
            .await?;
            tf.run_args(
                &mut *log,
                &with_vars(strings(&[
                    "apply",
                    "-destroy",
                    "-auto-approve",
                    "-input=false",
                    "-no-color",
                    "-lock-timeout=300s",
                ])),
            )
            .await?;
            tf.run_args(
                &mut *log,
                &strings(&["workspace", "select", "-no-color", "default"]),
            )
            .await?;
            tf.run_args(
                &mut *log,
                &strings(&["workspace", "delete", "-no-color", &name]),
            )
            .await?;
            Ok((Outcome::Succeeded, Some(destroyed)))
        }
    }
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|a| (*a).to_owned()).collect()
}

/// Whether `terraform workspace list` output names `name` (`* pr-7` when current).
fn workspace_listed(list: &str, name: &str) -> bool {
    list.lines()
        .any(|l| l.trim_start_matches('*').trim() == name)
}

/// The root's non-sensitive string outputs (`terraform output -json`): the preview's
/// URLs, posted on the pull request.
pub fn string_outputs(json: &str) -> BTreeMap<String, String> {
    let Ok(serde_json::Value::Object(outputs)) = serde_json::from_str(json) else {
        return BTreeMap::new();
    };
    outputs
        .into_iter()
        .filter(|(_, o)| o["sensitive"] != serde_json::Value::Bool(true))
        .filter_map(|(k, o)| o["value"].as_str().map(|v| (k, v.to_owned())))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use slipway_provenance::Trigger;

    fn job(id: i64, kind: JobKind, pr: u64) -> Job {
        Job {
            id,
            repository: "r".into(),
            root: "app".into(),
            branch: "main".into(),
            commit_sha: format!("{id:040}"),
            trigger: Trigger::PullRequest,
            delivery_id: None,
            pull_request: Some(pr),
            actor: None,
            enqueued_at: String::new(),
            covered: vec![],
            started_at: None,
            attempts: 0,
            interrupted: false,
            kind,
            head_sha: None,
            base_sha: None,
        }
    }

    #[test]
    fn the_newest_job_of_a_pull_request_runs_and_a_teardown_wins() {
        let queued = [
            job(1, JobKind::PullRequestPlan, 7),
            job(2, JobKind::Preview, 7),
            job(3, JobKind::PullRequestPlan, 8),
            job(4, JobKind::PullRequestPlan, 7),
        ];
        let (target, superseded) = choose(&queued).unwrap();
        assert_eq!(target.id, 4);
        assert_eq!(superseded.iter().map(|j| j.id).collect::<Vec<_>>(), [1]);
        let mut closing = queued.to_vec();
        closing.push(job(5, JobKind::PreviewDestroy, 7));
        let (target, superseded) = choose(&closing).unwrap();
        assert_eq!(target.id, 5);
        assert_eq!(
            superseded.iter().map(|j| j.id).collect::<Vec<_>>(),
            [1, 2, 4]
        );
        assert!(choose(&[]).is_none());
    }

    #[test]
    fn outputs_and_workspaces_are_read_from_terraform() {
        let json = r#"{"url":{"sensitive":false,"type":"string","value":"http://127.0.0.1:4000"},
            "token":{"sensitive":true,"type":"string","value":"x"},
            "n":{"sensitive":false,"type":"number","value":1}}"#;
        assert_eq!(
            string_outputs(json),
            BTreeMap::from([("url".to_owned(), "http://127.0.0.1:4000".to_owned())])
        );
        assert!(string_outputs("nope").is_empty());
        assert!(workspace_listed("  default\n* pr-7\n", "pr-7"));
        assert!(!workspace_listed("* default\n  pr-70\n", "pr-7"));
    }
}
