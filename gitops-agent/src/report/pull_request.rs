//! Reports of the pull request jobs: the plan's commit status and comment, the
//! preview's transient Deployment (with its URL) and comment, and the teardown.
//!
//! Each root keeps one comment per purpose (`plan`, `preview`) on a pull request,
//! edited in place on every push: its id is kept in `pr_comments`, and the comment
//! carries a hidden marker so that it is found again (and not duplicated) when the id
//! was lost with a creation whose answer never came.

use serde_json::json;

use super::{marker, short, truncate, CommitStatus, Ending, Reporter, Step, Tracked};
use crate::audit::{Outcome, PlanSummary};
use crate::github::GithubError;
use crate::job_kind::JobKind;
use crate::queue::Job;

/// The GitHub environment of a root's preview for pull request `number`.
pub(super) fn preview_environment(root: &str, number: u64) -> String {
    format!("{root}-pr-{number}")
}

/// Whether a pull request job's outcome is reported: a plan of a root the change
/// does not touch, or any job that a newer one superseded, says nothing.
fn reported(kind: JobKind, end: &Ending) -> bool {
    match end.outcome {
        Outcome::Succeeded | Outcome::Failed => true,
        Outcome::Skipped => kind == JobKind::Preview,
        // Approvals are steps of merge jobs, never a pull request job's end.
        Outcome::Superseded
        | Outcome::Interrupted
        | Outcome::Approved
        | Outcome::ApprovalRefused => false,
    }
}

/// The URL a preview's deployment links to: the output named `url`, else the first.
fn environment_url(end: &Ending) -> Option<&str> {
    end.urls
        .get("url")
        .or_else(|| end.urls.values().next())
        .map(String::as_str)
}

impl Reporter {
    /// Sends one step of a pull request job's report; `Ok(Some(id))` when it created
    /// the preview's deployment.
    pub(super) async fn perform_pull_request(
        &self,
        step: Step,
        github_name: &str,
        t: &Tracked,
        end: &Ending,
        log_url: Option<&str>,
    ) -> Result<Option<u64>, GithubError> {
        let job = &t.job;
        let Some(number) = job.pull_request else {
            return Ok(None);
        };
        if !reported(job.kind, end) {
            return Ok(None);
        }
        // A preview that was skipped (past the cap) has no deployment.
        let applied = end.outcome == Outcome::Succeeded;
        let sent = match step {
            Step::PlanStatus => {
                let head = job.head_sha.as_deref().unwrap_or(&job.commit_sha);
                let description = match &end.summary {
                    Some(s) if end.success => format!("Plan: {}", s.counts()),
                    _ => end.description.clone(),
                };
                let status = CommitStatus {
                    sha: head,
                    context: format!("slipway/plan/{}", job.root),
                    state: if end.success { "success" } else { "failure" },
                    description: &description,
                };
                self.post_status(github_name, status, log_url).await?
            }
            Step::PlanComment => {
                let body = plan_comment(job, end, log_url);
                self.upsert_comment(github_name, job, number, "plan", &body)
                    .await?;
                true
            }
            Step::PreviewDeployment if applied => {
                let body = json!({
                    "ref": job.head_sha.as_deref().unwrap_or(&job.commit_sha),
                    "task": "deploy:preview",
                    "auto_merge": false,
                    "required_contexts": [],
                    "environment": preview_environment(&job.root, number),
                    "description": format!("slipway-agent preview of {} for pull request #{number}", job.root),
                    "payload": {"job_id": job.id, "repository": job.repository, "root": job.root, "pull_request": number},
                    "transient_environment": true,
                    "production_environment": false,
                });
                let answer = self
                    .github
                    .post(
                        "create the preview's deployment",
                        &format!("/repos/{github_name}/deployments"),
                        &body,
                    )
                    .await?;
                self.metrics.github_report("sent");
                return Ok(answer["id"].as_u64());
            }
            Step::PreviewDeploymentStatus if applied => {
                let Some(id) = t.deployment_id else {
                    return Ok(None);
                };
                let mut body = json!({
                    "state": "success",
                    "description": truncate(&end.description),
                    "environment": preview_environment(&job.root, number),
                    "auto_inactive": true,
                });
                if let Some(url) = environment_url(end) {
                    body["environment_url"] = json!(url);
                }
                if let Some(url) = log_url {
                    body["log_url"] = json!(url);
                }
                self.github
                    .post(
                        "post the preview's deployment status",
                        &format!("/repos/{github_name}/deployments/{id}/statuses"),
                        &body,
                    )
                    .await?;
                true
            }
            Step::PreviewInactive if applied => {
                let j = job.clone();
                let found = self
                    .read(move |tx| tx.preview_deployment(&j.repository, &j.root, j.pull_request))
                    .await
                    .map_err(|e| GithubError::Retryable(e.to_string()))?;
                let Some(id) = found else {
                    return Ok(None);
                };
                let body = json!({
                    "state": "inactive",
                    "description": truncate(&format!("Preview destroyed (how: {})", job.trigger)),
                    "environment": preview_environment(&job.root, number),
                });
                self.github
                    .post(
                        "mark the preview's deployment inactive",
                        &format!("/repos/{github_name}/deployments/{id}/statuses"),
                        &body,
                    )
                    .await?;
                true
            }
            Step::PreviewComment => {
                let body = preview_comment(job, end, log_url);
                self.upsert_comment(github_name, job, number, "preview", &body)
                    .await?;
                true
            }
            _ => false,
        };
        if sent {
            self.metrics.github_report("sent");
        }
        Ok(None)
    }

    /// Edits the root's comment for `purpose` on the pull request, or creates it.
    async fn upsert_comment(
        &self,
        github_name: &str,
        job: &Job,
        number: u64,
        purpose: &'static str,
        body: &str,
    ) -> Result<(), GithubError> {
        let j = job.clone();
        let stored = self
            .read(move |tx| {
                tx.pull_request_comment(&j.repository, j.pull_request, &j.root, purpose)
            })
            .await
            .map_err(|e| GithubError::Retryable(e.to_string()))?;
        let mark = marker(purpose, &job.root);
        let existing = match stored {
            Some(id) => Some(id),
            None => {
                let list = self
                    .github
                    .get(
                        "list the pull request's comments",
                        &format!("/repos/{github_name}/issues/{number}/comments?per_page=100"),
                    )
                    .await?;
                list.as_array().and_then(|comments| {
                    comments.iter().find_map(|c| {
                        c["body"]
                            .as_str()
                            .is_some_and(|b| b.contains(&mark))
                            .then(|| c["id"].as_u64())
                            .flatten()
                    })
                })
            }
        };
        let text = json!({ "body": body });
        let id = match existing {
            Some(id) => {
                let edited = self
                    .github
                    .patch(
                        "edit the pull request comment",
                        &format!("/repos/{github_name}/issues/comments/{id}"),
                        &text,
                    )
                    .await;
                match edited {
                    Ok(_) => id,
                    // Deleted by someone: write a new one.
                    Err(GithubError::Permanent(_)) => {
                        self.create_comment(github_name, number, &text).await?
                    }
                    Err(e) => return Err(e),
                }
            }
            None => self.create_comment(github_name, number, &text).await?,
        };
        let j = job.clone();
        self.write(move |tx| {
            tx.set_pull_request_comment(&j.repository, j.pull_request, &j.root, purpose, id)
        })
        .await
        .map_err(|e| GithubError::Retryable(e.to_string()))
    }

    async fn create_comment(
        &self,
        github_name: &str,
        number: u64,
        text: &serde_json::Value,
    ) -> Result<u64, GithubError> {
        let answer = self
            .github
            .post(
                "comment on the pull request",
                &format!("/repos/{github_name}/issues/{number}/comments"),
                text,
            )
            .await?;
        answer["id"].as_u64().ok_or_else(|| {
            GithubError::Permanent("comment on the pull request: GitHub's answer has no id".into())
        })
    }
}

/// One line per planned address: `- add `terraform_data.x``.
pub(super) fn addresses(text: &mut String, s: &PlanSummary) {
    for (label, list) in [
        ("add", &s.to_add),
        ("change", &s.to_change),
        ("destroy", &s.to_destroy),
    ] {
        for address in list {
            text.push_str(&format!("- {label} `{address}`\n"));
        }
    }
}

/// The plan's comment: a PRODUCTION destroy first, then the counts and addresses.
pub(super) fn plan_comment(job: &Job, end: &Ending, log_url: Option<&str>) -> String {
    let mut text = format!("{}\n", marker("plan", &job.root));
    if let Some(s) = end
        .summary
        .as_ref()
        .filter(|s| !s.production_destroys.is_empty())
    {
        text.push_str(&format!(
            "> [!CAUTION]\n> **This plan destroys {} resource(s) in a PRODUCTION environment:** {}\n\n",
            s.production_destroys.len(),
            s.production_destroys
                .iter()
                .map(|a| format!("`{a}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    text.push_str(&format!(
        "**Slipway plan** of `{}` at `{}` (job {}): ",
        job.root,
        short(&job.commit_sha),
        job.id
    ));
    match (&end.summary, end.success) {
        (Some(s), true) => {
            text.push_str(&format!("{}.\n\n", s.counts()));
            addresses(&mut text, s);
        }
        _ => {
            text.push_str("the plan failed.\n");
            if let Some(error) = &end.error {
                text.push_str(&format!("\n```\n{}\n```\n", error.trim()));
            }
        }
    }
    if let Some(url) = log_url {
        text.push_str(&format!("\n[Full plan in the job log]({url})\n"));
    }
    text.push_str("\nUpdated on every push to this pull request.\n");
    text
}

/// The preview's comment: its URLs, why there is none, or that it was destroyed.
pub(super) fn preview_comment(job: &Job, end: &Ending, log_url: Option<&str>) -> String {
    let number = job.pull_request.unwrap_or(0);
    let mut text = format!("{}\n", marker("preview", &job.root));
    let name = crate::previews::name(number);
    match (job.kind, end.outcome) {
        (JobKind::PreviewDestroy, Outcome::Succeeded) => text.push_str(&format!(
            "**Slipway preview** `{name}` of `{}` was destroyed (how: `{}`, job {}).\n",
            job.root, job.trigger, job.id
        )),
        (JobKind::Preview, Outcome::Succeeded) => {
            text.push_str(&format!(
                "**Slipway preview** `{name}` of `{}` is up at `{}` (job {}):\n\n",
                job.root,
                short(job.head_sha.as_deref().unwrap_or(&job.commit_sha)),
                job.id
            ));
            for (output, url) in &end.urls {
                text.push_str(&format!("- {output}: {url}\n"));
            }
            if end.urls.is_empty() {
                text.push_str("- the root has no string outputs to show\n");
            }
        }
        (JobKind::Preview, Outcome::Skipped) => text.push_str(&format!(
            "**Slipway preview** of `{}`: none for this pull request. {}\n",
            job.root,
            end.error.as_deref().unwrap_or("")
        )),
        _ => {
            text.push_str(&format!(
                "**Slipway preview** `{name}` of `{}` failed (job {}).\n",
                job.root, job.id
            ));
            if let Some(error) = &end.error {
                text.push_str(&format!("\n```\n{}\n```\n", error.trim()));
            }
        }
    }
    if let Some(url) = log_url {
        text.push_str(&format!("\n[Job log]({url})\n"));
    }
    text
}

/// For a merge's comment: whether what was applied is what the pull request showed.
pub(super) fn plan_match(end: &Ending) -> Option<String> {
    let applied = end.summary.as_ref()?;
    Some(match &end.last_pr_plan {
        None => "No plan of this root was shown on this pull request.".to_owned(),
        Some((job, shown)) if same_changes(shown, applied) => {
            format!("The applied plan matched the last plan shown on this pull request (job {job}).")
        }
        Some((job, shown)) => format!(
            "**The applied plan differed from the last plan shown on this pull request** (job {job}: {}; applied: {}).",
            shown.counts(),
            applied.counts()
        ),
    })
}

fn same_changes(a: &PlanSummary, b: &PlanSummary) -> bool {
    (
        a.add,
        a.change,
        a.destroy,
        &a.to_add,
        &a.to_change,
        &a.to_destroy,
    ) == (
        b.add,
        b.change,
        b.destroy,
        &b.to_add,
        &b.to_change,
        &b.to_destroy,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ending(summary: Option<PlanSummary>) -> Ending {
        Ending {
            success: true,
            deployment_state: "success",
            description: "Applied".into(),
            summary,
            error: None,
            outcome: Outcome::Succeeded,
            last_pr_plan: None,
            urls: Default::default(),
        }
    }

    #[test]
    fn a_production_destroy_is_called_out_first() {
        let job = Job {
            id: 9,
            repository: "r".into(),
            root: "prod".into(),
            branch: "main".into(),
            commit_sha: "a".repeat(40),
            trigger: slipway_provenance::Trigger::PullRequest,
            delivery_id: None,
            pull_request: Some(4),
            actor: None,
            enqueued_at: String::new(),
            covered: vec![],
            started_at: None,
            attempts: 1,
            interrupted: false,
            kind: JobKind::PullRequestPlan,
            head_sha: None,
            base_sha: None,
        };
        let summary = PlanSummary {
            destroy: 1,
            to_destroy: vec!["slipway_application.web".into()],
            production_destroys: vec!["slipway_application.web".into()],
            ..Default::default()
        };
        let text = plan_comment(&job, &ending(Some(summary.clone())), Some("http://x/log"));
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "<!-- slipway:plan:prod -->");
        assert!(lines[2].contains("PRODUCTION"), "{text}");
        assert!(text.contains("- destroy `slipway_application.web`"));
        assert!(text.contains("(http://x/log)"));

        let mut merged = ending(Some(summary.clone()));
        assert!(plan_match(&merged).unwrap().starts_with("No plan"));
        merged.last_pr_plan = Some((3, summary.clone()));
        assert!(plan_match(&merged).unwrap().contains("matched"));
        merged.last_pr_plan = Some((3, PlanSummary::default()));
        assert!(plan_match(&merged).unwrap().contains("differed"));
    }
}
