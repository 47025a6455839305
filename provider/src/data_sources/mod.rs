//! Data sources: look an environment or application up by name, and see where what is
//! running now came from (its provenance).

pub mod application;
pub mod environment;

use serde::{Deserialize, Serialize};
use tfplug::schema::{Attribute, Nesting};

use crate::runtime::ChangeRecord;

/// The change that produced what is running now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProvenanceState {
    pub commit_sha: String,
    pub repository: String,
    pub pull_request: Option<u64>,
    pub actor: String,
    pub trigger: String,
    pub job_id: String,
    pub changed_at: String,
    pub verified: bool,
}

impl From<ChangeRecord> for ProvenanceState {
    fn from(c: ChangeRecord) -> Self {
        ProvenanceState {
            commit_sha: c.commit_sha,
            repository: c.repository,
            pull_request: c.pull_request,
            actor: c.actor,
            trigger: c.trigger,
            job_id: c.job_id,
            changed_at: c.changed_at,
            verified: c.verified,
        }
    }
}

/// The computed `provenance` attribute both data sources share.
pub(crate) fn provenance_attribute() -> Attribute {
    Attribute::nested(
        "provenance",
        Nesting::Single,
        vec![
            Attribute::string("commit_sha").computed().description("The commit applied; empty for a manual apply outside git."),
            Attribute::string("repository").computed(),
            Attribute::number("pull_request").computed().description("The merged pull request, when there was one."),
            Attribute::string("actor").computed().description("Who merged, pushed, called the API or ran terraform apply."),
            Attribute::string("trigger").computed().description("webhook or poll (a git merge or push), api, manual (slipway-agent deploy), or terraform-apply (run by hand)."),
            Attribute::string("job_id").computed().description("The slipway-agent job; empty for a manual apply."),
            Attribute::string("changed_at").computed().description("When the change was written (RFC 3339, UTC)."),
            Attribute::bool("verified").computed().description("True when the platform took this record from a job credential slipway-agent minted (commit, repository, actor and job id are then the credential's); false for a change by a named identity or the local user."),
        ],
    )
    .computed()
    .description("The change that produced what is running now.")
}
