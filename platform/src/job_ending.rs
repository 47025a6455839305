//! How a job ended, as the GitOps engine tells the platform when it ends the job's
//! credential, so that the platform's one audit log holds each job's end next to the
//! changes the job made.
//!
//! The ending is signed with the engine's key (the key that signs job credentials),
//! not merely sent with the job's credential: the credential reaches the provider and
//! whatever the configuration runs beside it, and none of those may end the job early
//! (which would refuse the rest of its changes) or write its outcome. Only the engine
//! holds the key.

use serde::{Deserialize, Serialize};
use slipway_provenance::{SigningKey, VerifyingKey};

use crate::signed;

/// Domain separation: an ending's signature is never a valid credential's, nor the
/// reverse.
const DOMAIN: &[u8] = b"slipway-job-ending-v1\n";

/// The longest plan summary or error line kept in the audit record.
pub const MAX_TEXT: usize = 1000;

/// How the job ended, in the engine's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobOutcome {
    Succeeded,
    Failed,
    Skipped,
    Interrupted,
}

impl JobOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            JobOutcome::Succeeded => "succeeded",
            JobOutcome::Failed => "failed",
            JobOutcome::Skipped => "skipped",
            JobOutcome::Interrupted => "interrupted",
        }
    }
}

/// One job's end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobEnding {
    /// The job whose credential this ends; must be the presented credential's job.
    pub job_id: String,
    pub outcome: JobOutcome,
    /// What the applied plan did: `1 to add, 0 to change, 0 to destroy`.
    pub plan: Option<String>,
    /// The first line of the error (redacted by the engine), when it failed.
    pub error: Option<String>,
    /// The other commits the job's commit carried (a burst of merges run as one).
    #[serde(default)]
    pub covered_commits: Vec<String>,
}

impl JobEnding {
    /// The audit record's `reason`: the outcome, then the plan or the error.
    pub fn summary(&self) -> String {
        let mut text = self.outcome.as_str().to_owned();
        for part in [&self.plan, &self.error].into_iter().flatten() {
            text.push_str(": ");
            text.push_str(part);
        }
        if !self.covered_commits.is_empty() {
            text.push_str(&format!(
                " (also carried {})",
                self.covered_commits.join(", ")
            ));
        }
        text
    }
}

/// Why an ending was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum EndingError {
    #[error("only the GitOps engine can end a job: the ending is missing or malformed")]
    Malformed,
    #[error("only the GitOps engine can end a job: the ending's signature is not the engine's")]
    BadSignature,
    #[error("the ending is for job {ending}, but the credential is job {credential}'s")]
    OtherJob { ending: String, credential: String },
    #[error("the ending's `{field}` is longer than {MAX_TEXT} characters or spans lines")]
    TooLong { field: &'static str },
    #[error("could not encode the ending: {0}")]
    Encode(String),
}

/// The ending as sent: its JSON and the engine's signature over it, both base64url.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedEnding {
    pub ending: String,
    pub signature: String,
}

/// Signs `ending` with the engine's key.
pub fn sign(ending: &JobEnding, key: &SigningKey) -> Result<SignedEnding, EndingError> {
    let json = serde_json::to_vec(ending).map_err(|e| EndingError::Encode(e.to_string()))?;
    let (ending, signature) = signed::seal(DOMAIN, &json, key);
    Ok(SignedEnding { ending, signature })
}

/// Checks a sent ending against the engine's key and the credential's job.
pub fn verify(
    sent: &SignedEnding,
    key: &VerifyingKey,
    credential_job: &str,
) -> Result<JobEnding, EndingError> {
    let json = signed::open(DOMAIN, &sent.ending, &sent.signature, key).map_err(|e| match e {
        signed::Unsealed::Malformed => EndingError::Malformed,
        signed::Unsealed::BadSignature => EndingError::BadSignature,
    })?;
    let ending: JobEnding = serde_json::from_slice(&json).map_err(|_| EndingError::Malformed)?;
    if ending.job_id != credential_job {
        return Err(EndingError::OtherJob {
            ending: ending.job_id,
            credential: credential_job.to_owned(),
        });
    }
    for (field, text) in [("plan", &ending.plan), ("error", &ending.error)] {
        if text
            .as_ref()
            .is_some_and(|t| t.chars().count() > MAX_TEXT || t.contains('\n'))
        {
            return Err(EndingError::TooLong { field });
        }
    }
    let commits_ok = ending.covered_commits.len() <= 1000
        && ending
            .covered_commits
            .iter()
            .all(|c| c.len() == 40 && c.bytes().all(|b| b.is_ascii_hexdigit()));
    if !commits_ok {
        return Err(EndingError::Malformed);
    }
    Ok(ending)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ending(job: &str) -> JobEnding {
        JobEnding {
            job_id: job.into(),
            outcome: JobOutcome::Succeeded,
            plan: Some("1 to add, 0 to change, 0 to destroy".into()),
            error: None,
            covered_commits: vec!["a".repeat(40)],
        }
    }

    #[test]
    fn only_the_engines_signature_for_the_same_job_is_accepted() {
        let engine = slipway_provenance::generate_signing_key().unwrap();
        let other = slipway_provenance::generate_signing_key().unwrap();
        let sent = sign(&ending("7.1"), &engine).unwrap();
        let got = verify(&sent, &engine.verifying_key(), "7.1").unwrap();
        assert_eq!(got, ending("7.1"));
        assert_eq!(
            got.summary(),
            format!(
                "succeeded: 1 to add, 0 to change, 0 to destroy (also carried {})",
                "a".repeat(40)
            )
        );
        assert!(matches!(
            verify(&sent, &other.verifying_key(), "7.1"),
            Err(EndingError::BadSignature)
        ));
        assert!(matches!(
            verify(&sent, &engine.verifying_key(), "8.1"),
            Err(EndingError::OtherJob { .. })
        ));
        // The engine's signature over another ending does not carry over.
        let mut failed = ending("7.1");
        failed.outcome = JobOutcome::Failed;
        let tampered = SignedEnding {
            ending: sign(&failed, &other).unwrap().ending,
            signature: sent.signature,
        };
        assert!(matches!(
            verify(&tampered, &engine.verifying_key(), "7.1"),
            Err(EndingError::BadSignature)
        ));
        let empty = SignedEnding {
            ending: String::new(),
            signature: String::new(),
        };
        assert!(matches!(
            verify(&empty, &engine.verifying_key(), "7.1"),
            Err(EndingError::Malformed)
        ));
    }

    #[test]
    fn long_or_multi_line_text_is_refused() {
        let engine = slipway_provenance::generate_signing_key().unwrap();
        let mut e = ending("7.1");
        e.error = Some("line one\nline two".into());
        let sent = sign(&e, &engine).unwrap();
        assert!(matches!(
            verify(&sent, &engine.verifying_key(), "7.1"),
            Err(EndingError::TooLong { field: "error" })
        ));
    }
}
