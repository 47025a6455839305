//! Job credentials: what the GitOps engine hands one job instead of its own key.
//!
//! A credential is a signed statement "job J, of kind K, for repository R, root T at
//! commit C, may change these modes and environments until E". The engine signs it with
//! its Ed25519 key; the platform checks the signature against the engine's public key,
//! which only the platform's configuration names (never a Terraform configuration). The
//! credential is accepted for its one job: the platform's ledger remembers the job, and
//! refuses the credential once the job has ended (see [`crate::store::Store`]).
//!
//! # Encoding
//!
//! `slwjob.<base64url(claims JSON)>.<base64url(Ed25519 signature)>`, where the signature
//! is over the bytes `slipway-job-credential/v1\n` followed by the claims JSON exactly as
//! encoded. The domain prefix keeps a credential's signature from ever being valid as a
//! provenance or audit signature made with the same key, and the reverse.

use std::fmt;

use serde::{Deserialize, Serialize};
use slipway_provenance::{SigningKey, VerifyingKey};

use crate::signed;

use crate::mode::Mode;

/// The prefix of every job credential.
pub const CREDENTIAL_PREFIX: &str = "slwjob.";

const DOMAIN: &[u8] = b"slipway-job-credential/v1\n";

/// No credential lives longer than this, whatever its claims say: a job's timeout is
/// at most hours, and a credential that outlived it by months must not work.
pub const MAX_LIFETIME_MS: i64 = 24 * 60 * 60 * 1000;

/// Clocks of the engine and the platform may differ this much.
pub const CLOCK_SKEW_MS: i64 = 60 * 1000;

/// What a job is doing, which decides what its credential may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum JobKind {
    /// Applying a merge to a tracked branch: the only way PRODUCTION changes.
    Merge,
    /// `terraform plan` of a pull request: read-only.
    PullRequestPlan,
    /// A pull request's preview: PREVIEW environments only.
    Preview,
    /// A drift check: read-only.
    Drift,
}

impl JobKind {
    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::Merge => "merge",
            JobKind::PullRequestPlan => "pull-request-plan",
            JobKind::Preview => "preview",
            JobKind::Drift => "drift",
        }
    }

    /// Kinds whose credentials can never change anything, whatever else they claim.
    pub fn is_read_only(self) -> bool {
        matches!(self, JobKind::PullRequestPlan | JobKind::Drift)
    }
}

/// Why a preview job tears its preview down, as the engine decided: the platform's
/// audit record's `how` for what the teardown changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Teardown {
    /// The pull request was closed or merged (or found closed by the engine's sweep).
    PrClosed,
    /// The preview was idle past its time to live.
    Ttl,
}

impl Teardown {
    pub fn as_str(self) -> &'static str {
        match self {
            Teardown::PrClosed => "pr-closed",
            Teardown::Ttl => "ttl",
        }
    }
}

/// What a job credential binds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobClaims {
    /// The engine's job id; the platform accepts the credential for this job only.
    pub job_id: String,
    pub kind: JobKind,
    pub repository: String,
    /// The Terraform root the job runs.
    pub root: String,
    /// The full commit SHA the job runs.
    pub commit: String,
    /// The tracked branch, for merge jobs.
    pub branch: Option<String>,
    /// Who caused the job (who merged or pushed), for the audit record.
    pub actor: String,
    /// The modes the root may change. Empty for read-only jobs.
    pub modes: Vec<Mode>,
    /// The environments the root may change, by name; empty means any environment of
    /// the modes above.
    pub environments: Vec<String>,
    /// For a pull-request plan (read-only): the modes the root's merge job will be
    /// allowed, so that the plan-time check ([`crate::Authority::authorize_at_plan`])
    /// answers as it will after the merge. It never lets the plan job change anything.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub merge_modes: Vec<Mode>,
    /// For a merge job of a root that requires approval: the identity (with the
    /// approver role) that approved it. The policy lets a job change a mode whose rule
    /// requires approval (STAGING by default) only when this is set, and never when it
    /// names the job's own `actor`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approved_by: Option<String>,
    /// For a preview job that destroys its preview: why. Only a preview job's
    /// credential may carry it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub teardown: Option<Teardown>,
    /// For a merge job that applies the deployed commit again because the engine's
    /// drift check found drift: the audit records its changes with how
    /// `drift-remediation`. Only a merge job's credential may carry it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub drift_remediation: bool,
    /// When it was minted and when it stops working, in ms since the Unix epoch.
    pub issued_at_ms: i64,
    pub expires_at_ms: i64,
    /// For a job a named identity asked for (a branch preview over MCP): who asked,
    /// how and through which tool. The audit log records its changes under that name;
    /// it decides nothing (the kind, modes and environments above do).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_by: Option<RequestedBy>,
}

/// Who asked for a job, as the engine established it (the platform authenticated
/// their token when they asked).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestedBy {
    /// The identity's name (`claude-code@alice`).
    pub identity: String,
    /// How they asked (`mcp`).
    pub how: String,
    /// The MCP tool, when it came over MCP (`deploy_branch_preview`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool: Option<String>,
}

impl JobClaims {
    /// Whether the claims allow changing this environment of this mode (the policy
    /// decides the rest).
    pub fn may_change(&self, environment: &str, mode: Mode) -> bool {
        !self.kind.is_read_only()
            && self.modes.contains(&mode)
            && (self.environments.is_empty() || self.environments.iter().any(|e| e == environment))
    }
}

/// A minted credential's text. Its `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct JobCredential(String);

impl JobCredential {
    /// The text to hand to the job's provider (in a 0600 file, never an environment
    /// variable every child process inherits).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for JobCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("JobCredential(<redacted>)")
    }
}

/// Why a job credential was not accepted. The messages name no part of the credential.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialError {
    #[error("the job credential is malformed")]
    Malformed,
    #[error("the job credential's signature is not the GitOps engine's")]
    BadSignature,
    #[error("the job credential of job {job_id} expired at {expires_at_ms} (ms since epoch)")]
    Expired { job_id: String, expires_at_ms: i64 },
    #[error("the job credential of job {job_id} is not valid yet")]
    NotYetValid { job_id: String },
    #[error("the job credential of job {job_id} claims a lifetime over 24 hours")]
    TooLong { job_id: String },
    #[error(
        "the job credential of job {job_id} claims to change modes, but a {kind} job is read-only"
    )]
    ReadOnlyKind { job_id: String, kind: &'static str },
    #[error("the job credential of job {job_id} carries a teardown reason, but only a preview job tears a preview down")]
    TeardownOutsidePreview { job_id: String },
    #[error("the job credential of job {job_id} says it remediates drift, but only a merge job applies a commit again")]
    RemediationOutsideMerge { job_id: String },
    #[error(
        "the job credential of job {job_id} carries an approval, but only a merge job is approved"
    )]
    ApprovalOutsideMerge { job_id: String },
    #[error("the job credential of job {job_id} names an approver that is not an identity name")]
    BadApprover { job_id: String },
    #[error("the job credential of job {job_id} is approved by `{approver}`, who caused the job: nobody approves their own change")]
    SelfApproved { job_id: String, approver: String },
    #[error("could not encode the job credential: {0}")]
    Encode(String),
}

/// Signs `claims` with the engine's key.
pub fn mint(claims: &JobClaims, key: &SigningKey) -> Result<JobCredential, CredentialError> {
    let json = serde_json::to_vec(claims).map_err(|e| CredentialError::Encode(e.to_string()))?;
    let (json, signature) = signed::seal(DOMAIN, &json, key);
    Ok(JobCredential(format!(
        "{CREDENTIAL_PREFIX}{json}.{signature}"
    )))
}

/// Checks a presented credential's signature and lifetime at `now_ms`, giving its
/// claims. Whether its job is still running is the ledger's question, not this one.
pub fn verify(text: &str, key: &VerifyingKey, now_ms: i64) -> Result<JobClaims, CredentialError> {
    let body = text
        .trim()
        .strip_prefix(CREDENTIAL_PREFIX)
        .ok_or(CredentialError::Malformed)?;
    let (claims_b64, signature_b64) = body.split_once('.').ok_or(CredentialError::Malformed)?;
    let json = signed::open(DOMAIN, claims_b64, signature_b64, key).map_err(|e| match e {
        signed::Unsealed::Malformed => CredentialError::Malformed,
        signed::Unsealed::BadSignature => CredentialError::BadSignature,
    })?;
    let claims: JobClaims =
        serde_json::from_slice(&json).map_err(|_| CredentialError::Malformed)?;
    check_lifetime(&claims, now_ms)?;
    Ok(claims)
}

/// The checks of a credential's claims that depend on the time, the kind, and what
/// only some kinds may carry (an approval, a teardown reason): run on every call, also
/// when the signature was verified before.
pub fn check_lifetime(claims: &JobClaims, now_ms: i64) -> Result<(), CredentialError> {
    let job_id = claims.job_id.clone();
    if claims.expires_at_ms - claims.issued_at_ms > MAX_LIFETIME_MS {
        return Err(CredentialError::TooLong { job_id });
    }
    if now_ms + CLOCK_SKEW_MS < claims.issued_at_ms {
        return Err(CredentialError::NotYetValid { job_id });
    }
    if now_ms >= claims.expires_at_ms {
        return Err(CredentialError::Expired {
            job_id,
            expires_at_ms: claims.expires_at_ms,
        });
    }
    if claims.kind.is_read_only() && !claims.modes.is_empty() {
        return Err(CredentialError::ReadOnlyKind {
            job_id,
            kind: claims.kind.as_str(),
        });
    }
    if claims.teardown.is_some() && claims.kind != JobKind::Preview {
        return Err(CredentialError::TeardownOutsidePreview { job_id });
    }
    if claims.drift_remediation && claims.kind != JobKind::Merge {
        return Err(CredentialError::RemediationOutsideMerge { job_id });
    }
    if let Some(approver) = &claims.approved_by {
        if claims.kind != JobKind::Merge {
            return Err(CredentialError::ApprovalOutsideMerge { job_id });
        }
        if crate::identity::check_name(approver).is_err() {
            return Err(CredentialError::BadApprover { job_id });
        }
        if approver.eq_ignore_ascii_case(&claims.actor) {
            return Err(CredentialError::SelfApproved {
                job_id,
                approver: approver.clone(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;

    pub(crate) const NOW: i64 = 1_790_000_000_000;

    pub(crate) fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    pub(crate) fn merge_claims() -> JobClaims {
        JobClaims {
            job_id: "42".into(),
            kind: JobKind::Merge,
            repository: "acme/infra".into(),
            root: "prod".into(),
            commit: "a".repeat(40),
            branch: Some("main".into()),
            actor: "alice".into(),
            modes: vec![Mode::Production],
            environments: vec!["prod".into()],
            merge_modes: vec![],
            approved_by: None,
            teardown: None,
            drift_remediation: false,
            issued_at_ms: NOW - 1_000,
            expires_at_ms: NOW + 3_600_000,
            requested_by: None,
        }
    }

    #[test]
    fn a_minted_credential_verifies_and_gives_its_claims_back() {
        let claims = merge_claims();
        let credential = mint(&claims, &key(1)).unwrap();
        assert!(credential.expose().starts_with(CREDENTIAL_PREFIX));
        assert_eq!(format!("{credential:?}"), "JobCredential(<redacted>)");
        assert_eq!(
            verify(credential.expose(), &key(1).verifying_key(), NOW),
            Ok(claims)
        );
    }

    #[test]
    fn a_credential_signed_with_another_key_is_refused() {
        let credential = mint(&merge_claims(), &key(2)).unwrap();
        assert_eq!(
            verify(credential.expose(), &key(1).verifying_key(), NOW),
            Err(CredentialError::BadSignature)
        );
    }

    #[test]
    fn edited_claims_break_the_signature() {
        let credential = mint(&merge_claims(), &key(1)).unwrap();
        let body = credential.expose().strip_prefix(CREDENTIAL_PREFIX).unwrap();
        let (claims_b64, signature) = body.split_once('.').unwrap();
        let json = String::from_utf8(URL_SAFE_NO_PAD.decode(claims_b64).unwrap()).unwrap();
        // A STAGING job's credential edited to reach PRODUCTION.
        let edited = json.replace("\"prod\"]", "\"prod\",\"payments\"]");
        assert_ne!(edited, json);
        let forged = format!(
            "{CREDENTIAL_PREFIX}{}.{signature}",
            URL_SAFE_NO_PAD.encode(edited)
        );
        assert_eq!(
            verify(&forged, &key(1).verifying_key(), NOW),
            Err(CredentialError::BadSignature)
        );
    }

    #[test]
    fn expired_and_future_credentials_are_refused() {
        let credential = mint(&merge_claims(), &key(1)).unwrap();
        let vk = key(1).verifying_key();
        // Eleven months later.
        let later = NOW + 11 * 30 * 24 * 3_600_000;
        assert!(matches!(
            verify(credential.expose(), &vk, later),
            Err(CredentialError::Expired { .. })
        ));
        assert!(matches!(
            verify(credential.expose(), &vk, NOW - 3_600_000),
            Err(CredentialError::NotYetValid { .. })
        ));
    }

    #[test]
    fn a_lifetime_over_a_day_is_refused_even_when_signed() {
        let mut claims = merge_claims();
        claims.expires_at_ms = claims.issued_at_ms + 400 * 24 * 3_600_000;
        let credential = mint(&claims, &key(1)).unwrap();
        assert!(matches!(
            verify(credential.expose(), &key(1).verifying_key(), NOW),
            Err(CredentialError::TooLong { .. })
        ));
    }

    #[test]
    fn read_only_kinds_cannot_claim_modes() {
        let mut claims = merge_claims();
        claims.kind = JobKind::PullRequestPlan;
        let credential = mint(&claims, &key(1)).unwrap();
        assert!(matches!(
            verify(credential.expose(), &key(1).verifying_key(), NOW),
            Err(CredentialError::ReadOnlyKind { .. })
        ));
        claims.modes.clear();
        assert!(!claims.may_change("prod", Mode::Production));
    }

    #[test]
    fn approvals_and_teardown_reasons_only_where_they_belong() {
        let vk = key(1).verifying_key();
        let check = |f: &dyn Fn(&mut JobClaims)| {
            let mut claims = merge_claims();
            f(&mut claims);
            verify(mint(&claims, &key(1)).unwrap().expose(), &vk, NOW)
        };
        assert!(check(&|c| c.approved_by = Some("bob".into())).is_ok());
        assert!(matches!(
            check(&|c| c.approved_by = Some("Alice".into())),
            Err(CredentialError::SelfApproved { approver, .. }) if approver == "Alice"
        ));
        assert!(matches!(
            check(&|c| c.approved_by = Some("bob smith".into())),
            Err(CredentialError::BadApprover { .. })
        ));
        assert!(matches!(
            check(&|c| {
                c.kind = JobKind::Preview;
                c.approved_by = Some("bob".into());
            }),
            Err(CredentialError::ApprovalOutsideMerge { .. })
        ));
        assert!(matches!(
            check(&|c| c.teardown = Some(Teardown::Ttl)),
            Err(CredentialError::TeardownOutsidePreview { .. })
        ));
        let preview = check(&|c| {
            c.kind = JobKind::Preview;
            c.teardown = Some(Teardown::PrClosed);
        })
        .unwrap();
        assert_eq!(preview.teardown.map(Teardown::as_str), Some("pr-closed"));
        assert!(check(&|c| c.drift_remediation = true).is_ok());
        assert!(matches!(
            check(&|c| {
                c.kind = JobKind::Drift;
                c.modes.clear();
                c.drift_remediation = true;
            }),
            Err(CredentialError::RemediationOutsideMerge { .. })
        ));
        // Claims without the new fields encode as before (older engines, older records).
        let json = serde_json::to_string(&merge_claims()).unwrap();
        assert!(
            !json.contains("approved_by")
                && !json.contains("teardown")
                && !json.contains("drift_remediation"),
            "{json}"
        );
    }

    #[test]
    fn garbage_is_malformed_not_a_panic() {
        let vk = key(1).verifying_key();
        for text in [
            "",
            "slwjob.",
            "slwjob.x",
            "slwjob.!!.??",
            "slw_abc",
            "slwjob.e30.AAAA",
        ] {
            assert_eq!(
                verify(text, &vk, NOW),
                Err(CredentialError::Malformed),
                "{text}"
            );
        }
    }

    #[test]
    fn claims_bind_environments_and_modes() {
        let claims = merge_claims();
        assert!(claims.may_change("prod", Mode::Production));
        assert!(!claims.may_change("payments", Mode::Production));
        assert!(!claims.may_change("prod", Mode::Staging));
        let mut any = merge_claims();
        any.environments.clear();
        assert!(any.may_change("payments", Mode::Production));
    }
}
