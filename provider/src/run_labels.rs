//! What this Terraform run says about itself: the change record the provider sends with
//! every write.
//!
//! `slipway-agent` runs Terraform with unsigned labels in the environment (the commit,
//! repository, pull request, actor, trigger and job id of the job; see the
//! `slipway_provenance` crate for their names). They decide nothing: who may change what
//! is the platform's decision, from the caller's identity or job credential alone, and
//! the platform replaces every field it can prove (commit, repository, actor, job id,
//! `verified`) with what that credential says before it stores the record. Without the
//! labels the change is a manual `terraform apply` by the local user.

use slipway_platform::identity::local_user;
use slipway_provenance::Trigger;

use crate::runtime::ChangeRecord;

/// The labels of this run, read from the environment at configure time.
#[derive(Debug, Clone)]
pub struct RunLabels {
    /// Everything but the time, which is stamped per write by [`RunLabels::record`].
    template: ChangeRecord,
}

impl RunLabels {
    /// Reads the labels through `lookup` (a variable name to its value); an empty
    /// value counts as unset, and a pull request that is not a number as none.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> RunLabels {
        let lookup = |name: &str| lookup(name).filter(|v| !v.is_empty());
        let get = |name: &str| lookup(name).unwrap_or_default();
        RunLabels {
            template: ChangeRecord {
                commit_sha: get(slipway_provenance::ENV_COMMIT_SHA),
                repository: get(slipway_provenance::ENV_REPOSITORY),
                pull_request: lookup(slipway_provenance::ENV_PULL_REQUEST)
                    .and_then(|s| s.parse().ok()),
                actor: lookup(slipway_provenance::ENV_ACTOR).unwrap_or_else(local_user),
                trigger: lookup(slipway_provenance::ENV_TRIGGER)
                    .unwrap_or_else(|| Trigger::TerraformApply.as_str().to_owned()),
                job_id: get(slipway_provenance::ENV_JOB_ID),
                changed_at: String::new(),
                // Only the platform says a record is proven.
                verified: false,
            },
        }
    }

    /// A manual `terraform apply` by `actor`.
    pub fn manual(actor: String) -> RunLabels {
        RunLabels {
            template: ChangeRecord {
                actor,
                trigger: Trigger::TerraformApply.as_str().to_owned(),
                ..ChangeRecord::default()
            },
        }
    }

    /// The record to send with a write happening now.
    pub fn record(&self) -> ChangeRecord {
        ChangeRecord {
            changed_at: slipway_provenance::now_timestamp(),
            ..self.template.clone()
        }
    }

    /// A one-line description for logs: no secrets here, only what the run says.
    pub fn describe(&self) -> String {
        let t = &self.template;
        format!(
            "trigger={} actor={} repository={} commit={} job={}",
            t.trigger, t.actor, t.repository, t.commit_sha, t.job_id
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn read(env: &[(&str, &str)]) -> RunLabels {
        let env: BTreeMap<String, String> = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        RunLabels::from_lookup(|name| env.get(name).cloned())
    }

    #[test]
    fn the_agent_labels_are_recorded_and_never_marked_verified() {
        let record = read(&[
            (slipway_provenance::ENV_COMMIT_SHA, "0123abcd"),
            (slipway_provenance::ENV_REPOSITORY, "acme/infra"),
            (slipway_provenance::ENV_PULL_REQUEST, "7"),
            (slipway_provenance::ENV_ACTOR, "octocat"),
            (slipway_provenance::ENV_TRIGGER, "webhook"),
            (slipway_provenance::ENV_JOB_ID, "42"),
        ])
        .record();
        assert_eq!(record.commit_sha, "0123abcd");
        assert_eq!(record.repository, "acme/infra");
        assert_eq!(record.pull_request, Some(7));
        assert_eq!(record.actor, "octocat");
        assert_eq!(record.trigger, "webhook");
        assert_eq!(record.job_id, "42");
        assert!(!record.verified, "only the platform proves a record");
        assert!(record.changed_at.ends_with('Z'), "{}", record.changed_at);
    }

    #[test]
    fn no_labels_is_a_manual_apply_by_the_local_user() {
        let record = read(&[(slipway_provenance::ENV_PULL_REQUEST, "not a number")]).record();
        assert_eq!(record.trigger, "terraform-apply");
        assert!(!record.actor.is_empty());
        assert_eq!(record.pull_request, None);
        assert_eq!(record.commit_sha, "");
        assert!(!record.verified);
    }
}
