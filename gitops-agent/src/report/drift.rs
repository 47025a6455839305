//! The report of a drift check ([`crate::drift`]): the commit status
//! `slipway/drift/<root>` on the deployed commit it planned. `success` when the plan
//! shows no changes, `failure` with the counts when it found drift, `error` when the
//! check could not plan; a moot (skipped) or superseded check says nothing.

use super::{CommitStatus, Ending, Reporter};
use crate::audit::Outcome;
use crate::drift::Finding;
use crate::github::GithubError;
use crate::queue::Job;

/// The status's state and description for a check that ran.
fn status_of(end: &Ending) -> Option<(&'static str, String)> {
    let finding = Finding::of(end.outcome.as_str(), end.summary.as_ref())?;
    Some(match finding {
        Finding::Clean => (
            "success",
            "No drift: the plan of the deployed commit shows no changes".to_owned(),
        ),
        Finding::Drift => (
            "failure",
            format!(
                "Drift: {}",
                end.summary.as_ref().map(|s| s.counts()).unwrap_or_default()
            ),
        ),
        Finding::Failed => (
            "error",
            format!(
                "Drift check failed: {}",
                end.error
                    .as_deref()
                    .and_then(|e| e.lines().find(|l| !l.trim().is_empty()))
                    .unwrap_or("see the job log")
                    .trim()
            ),
        ),
    })
}

impl Reporter {
    /// Posts the drift check's commit status; `Ok(false)` when it has none to post.
    pub(super) async fn drift_status(
        &self,
        github_name: &str,
        job: &Job,
        end: &Ending,
        log_url: Option<&str>,
    ) -> Result<bool, GithubError> {
        if end.outcome == Outcome::Superseded {
            return Ok(false);
        }
        let Some((state, description)) = status_of(end) else {
            return Ok(false);
        };
        let status = CommitStatus {
            sha: &job.commit_sha,
            context: format!("slipway/drift/{}", job.root),
            state,
            description: &description,
        };
        self.post_status(github_name, status, log_url).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::PlanSummary;

    fn ending(outcome: Outcome, summary: Option<PlanSummary>, error: Option<&str>) -> Ending {
        Ending {
            success: outcome == Outcome::Succeeded,
            deployment_state: "success",
            description: String::new(),
            summary,
            error: error.map(str::to_owned),
            outcome,
            last_pr_plan: None,
            urls: Default::default(),
        }
    }

    #[test]
    fn drift_fails_the_status_with_the_counts() {
        let drift = PlanSummary {
            change: 1,
            to_change: vec!["slipway_application.web".into()],
            ..PlanSummary::default()
        };
        let (state, text) = status_of(&ending(Outcome::Succeeded, Some(drift), None)).unwrap();
        assert_eq!(state, "failure");
        assert_eq!(text, "Drift: 0 to add, 1 to change, 0 to destroy");
        let clean = ending(Outcome::Succeeded, Some(PlanSummary::default()), None);
        assert_eq!(status_of(&clean).unwrap().0, "success");
        let failed = ending(
            Outcome::Failed,
            None,
            Some("\nterraform plan failed: boom\n"),
        );
        assert_eq!(
            status_of(&failed).unwrap(),
            (
                "error",
                "Drift check failed: terraform plan failed: boom".to_owned()
            )
        );
        assert_eq!(status_of(&ending(Outcome::Skipped, None, None)), None);
    }
}
