//! Who a request comes from: a named identity, or a job of the GitOps engine holding
//! a credential for one job. [`crate::Authority::authenticate`] makes one of these
//! from a bearer value; policy and the audit log take it from there.

use crate::credential::JobClaims;
use crate::identity::Identity;

/// Who a request comes from, once its bearer value has been checked.
// One per request, never stored in bulk: a box for the job's claims would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// A named token.
    Identity(Identity),
    /// A job credential minted by the GitOps engine for one job.
    Job(JobClaims),
}

impl Caller {
    /// The audit log's "who": the identity's name, or the job that acted (whose
    /// record names the commit and who merged it).
    pub fn who(&self) -> String {
        match self {
            Caller::Identity(identity) => identity.name.clone(),
            // A job a named identity asked for acts in their name; `job_id` keeps
            // the job in the record.
            Caller::Job(claims) => match &claims.requested_by {
                Some(asked) => asked.identity.clone(),
                None => format!("job:{}", claims.job_id),
            },
        }
    }
}
