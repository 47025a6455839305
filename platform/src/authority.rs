//! The authority: bearer value -> caller -> policy decision.
//!
//! Everything that reaches the runtime goes through [`Authority::authenticate`] and
//! [`Authority::authorize`]: the platform API's handlers, the MCP tools and the CLI
//! call the same two functions, so the rules cannot differ between paths.

use slipway_provenance::VerifyingKey;

use crate::caller::Caller;
use crate::credential::{self, CredentialError, JobClaims, CREDENTIAL_PREFIX};
use crate::identity::{check_name, Identity, InvalidName, Role, Token};
use crate::policy::{Action, Approval, Decision, Policy, Target};
use crate::store::{JobStanding, Store, StoreError};

/// Why a bearer value was not accepted, or an identity not created. The messages
/// never contain the token or the credential.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("no token: send `Authorization: Bearer <token>` (create one with `slipway-agent token create`)")]
    MissingToken,
    #[error("the token is not known or was revoked: ask an admin for a new one")]
    UnknownToken,
    #[error(transparent)]
    Credential(#[from] CredentialError),
    #[error("job {job_id} has ended: its credential is no longer accepted")]
    JobEnded { job_id: String },
    #[error(
        "job credentials are not accepted: the platform's configuration names no GitOps \
         engine key"
    )]
    NoEngineKey,
    #[error(transparent)]
    Name(#[from] InvalidName),
    #[error("no randomness available to make a token: {0}")]
    Random(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Ending(#[from] crate::job_ending::EndingError),
}

/// The value of an `Authorization` header without its `Bearer ` scheme.
pub fn bearer(header: Option<&str>) -> Option<&str> {
    let value = header?.trim();
    let (scheme, rest) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| rest.trim())
        .filter(|token| !token.is_empty())
}

/// Identities, policy and the GitOps engine's key, over a [`Store`].
pub struct Authority<S> {
    store: S,
    policy: Policy,
    engine_key: Option<VerifyingKey>,
    /// Credentials whose signature verified, by the SHA-256 of their text: a job's
    /// provider presents the same one on every call, and the signature is the cost.
    /// Their lifetime and the ledger are still checked on every call.
    verified: std::sync::Mutex<std::collections::HashMap<[u8; 32], JobClaims>>,
}

/// More verified credentials than this at once and the cache starts over.
const VERIFIED_CACHE: usize = 1024;

impl<S: Store> Authority<S> {
    /// `engine_key` is the GitOps engine's public key, from the platform's own
    /// configuration; without it no job credential is accepted.
    pub fn new(store: S, policy: Policy, engine_key: Option<VerifyingKey>) -> Authority<S> {
        Authority {
            store,
            policy,
            engine_key,
            verified: std::sync::Mutex::new(std::collections::HashMap::new()),
        }
    }

    pub fn store(&self) -> &S {
        &self.store
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Creates a named identity and returns its token: the only time it is visible.
    pub fn create_identity(&self, name: &str, role: Role, now_ms: i64) -> Result<Token, AuthError> {
        check_name(name)?;
        let token = Token::generate().map_err(|e| AuthError::Random(e.to_string()))?;
        let identity = Identity {
            name: name.to_owned(),
            role,
        };
        self.store
            .create_identity(&identity, &token.digest(), now_ms)?;
        Ok(token)
    }

    /// Who a bearer value (a named token or a job credential) belongs to.
    pub fn authenticate(&self, bearer: Option<&str>, now_ms: i64) -> Result<Caller, AuthError> {
        let presented = bearer.map(str::trim).filter(|b| !b.is_empty());
        let presented = presented.ok_or(AuthError::MissingToken)?;
        if presented.starts_with(CREDENTIAL_PREFIX) {
            let key = self.engine_key.as_ref().ok_or(AuthError::NoEngineKey)?;
            let claims = self.verified_claims(presented, key, now_ms)?;
            return match self.store.job_presented(&claims.job_id, now_ms)? {
                JobStanding::Running => Ok(Caller::Job(claims)),
                JobStanding::Ended => Err(AuthError::JobEnded {
                    job_id: claims.job_id,
                }),
            };
        }
        let digest = Token::from_presented(presented).digest();
        match self.store.identity_by_digest(&digest)? {
            Some(identity) => Ok(Caller::Identity(identity)),
            None => Err(AuthError::UnknownToken),
        }
    }

    fn verified_claims(
        &self,
        presented: &str,
        key: &VerifyingKey,
        now_ms: i64,
    ) -> Result<JobClaims, CredentialError> {
        use sha2::Digest as _;
        let digest: [u8; 32] = sha2::Sha256::digest(presented.as_bytes()).into();
        let cached = self
            .verified
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&digest)
            .cloned();
        if let Some(claims) = cached {
            credential::check_lifetime(&claims, now_ms)?;
            return Ok(claims);
        }
        let claims = credential::verify(presented, key, now_ms)?;
        let mut verified = self.verified.lock().unwrap_or_else(|p| p.into_inner());
        if verified.len() >= VERIFIED_CACHE {
            verified.clear();
        }
        verified.insert(digest, claims.clone());
        Ok(claims)
    }

    /// The policy's decision for this caller, action and environment.
    pub fn authorize(&self, caller: &Caller, action: Action, target: &Target) -> Decision {
        self.policy.decide(caller, action, target)
    }

    /// The decision for `terraform plan`'s check of a change it would make (nothing is
    /// changed by the check itself). A pull-request plan job is read-only, yet its plan
    /// should say what the merge will be allowed: its check is decided as the root's
    /// merge job would be (the `merge_modes` its credential names). Importing brings
    /// something under the caller's state, so it is never relaxed. Every other caller
    /// (a read-only job whose credential names no `merge_modes` too) is decided as by
    /// [`Authority::authorize`].
    pub fn authorize_at_plan(&self, caller: &Caller, action: Action, target: &Target) -> Decision {
        match caller {
            Caller::Job(claims)
                if claims.kind.is_read_only()
                    && !claims.merge_modes.is_empty()
                    && action != Action::Import =>
            {
                let as_merge = Caller::Job(JobClaims {
                    kind: credential::JobKind::Merge,
                    modes: claims.merge_modes.clone(),
                    ..claims.clone()
                });
                // The merge is approved before it runs (when its root requires it), so
                // the plan is not refused for the approval it has not had yet.
                self.policy
                    .decide_with(&as_merge, action, target, Approval::Assumed)
            }
            _ => self.authorize(caller, action, target),
        }
    }

    /// The engine reports a job ended: its credential stops working now.
    pub fn end_job(&self, job_id: &str, now_ms: i64) -> Result<(), AuthError> {
        Ok(self.store.end_job(job_id, now_ms)?)
    }

    /// Ends the presented credential's job with the engine's signed account of how it
    /// ended ([`crate::job_ending`]); the caller records it. A job credential alone
    /// cannot end its job: whatever Terraform runs can read it.
    pub fn end_job_with(
        &self,
        claims: &crate::JobClaims,
        sent: &crate::job_ending::SignedEnding,
        now_ms: i64,
    ) -> Result<crate::job_ending::JobEnding, AuthError> {
        let key = self.engine_key.as_ref().ok_or(AuthError::NoEngineKey)?;
        let ending = crate::job_ending::verify(sent, key, &claims.job_id)?;
        self.end_job(&claims.job_id, now_ms)?;
        Ok(ending)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::credential::tests::{key, merge_claims, NOW};
    use crate::credential::JobKind;
    use crate::mode::Mode;
    use crate::store::SqliteStore;

    fn authority() -> Authority<SqliteStore> {
        Authority::new(
            SqliteStore::in_memory().unwrap(),
            Policy::default(),
            Some(key(1).verifying_key()),
        )
    }

    fn prod() -> Target {
        Target {
            environment: "prod".into(),
            mode: Mode::Production,
        }
    }

    #[test]
    fn a_pull_request_plan_is_checked_at_plan_as_its_merge_would_be_and_changes_nothing() {
        use crate::policy::RefusalReason;
        let authority = authority();
        let mut claims = merge_claims();
        claims.kind = JobKind::PullRequestPlan;
        claims.modes.clear();
        claims.merge_modes = vec![Mode::Production];
        let plan = Caller::Job(claims.clone());
        // The plan-time check answers as the merge will be answered.
        assert_eq!(
            authority.authorize_at_plan(&plan, Action::Create, &prod()),
            Ok(())
        );
        let staging = Target {
            environment: "prod".into(),
            mode: Mode::Staging,
        };
        assert!(authority
            .authorize_at_plan(&plan, Action::Create, &staging)
            .is_err());
        // Importing is never relaxed, and nothing the plan job does is a change.
        let import = authority.authorize_at_plan(&plan, Action::Import, &prod());
        assert!(matches!(
            import.map_err(|r| r.reason),
            Err(RefusalReason::ReadOnlyJob { .. })
        ));
        for action in [Action::Create, Action::Update, Action::Delete] {
            let refused = authority.authorize(&plan, action, &prod());
            assert!(matches!(
                refused.map_err(|r| r.reason),
                Err(RefusalReason::ReadOnlyJob { .. })
            ));
        }
        // A STAGING merge is approved before it runs: its pull request's plan is not
        // refused for the approval to come (and its apply still needs one).
        let mut staging_plan = claims.clone();
        staging_plan.merge_modes = vec![Mode::Staging];
        let staging_plan = Caller::Job(staging_plan);
        assert_eq!(
            authority.authorize_at_plan(&staging_plan, Action::Create, &staging),
            Ok(())
        );
        // Without merge_modes (drift, an older engine): decided as at apply.
        let mut bare = claims.clone();
        bare.merge_modes.clear();
        assert!(authority
            .authorize_at_plan(&Caller::Job(bare), Action::Create, &prod())
            .is_err());
        // Other callers: the same answer as at apply.
        let mut preview = merge_claims();
        preview.kind = JobKind::Preview;
        preview.modes = vec![Mode::Preview];
        let preview = Caller::Job(preview);
        assert!(authority
            .authorize_at_plan(&preview, Action::Create, &prod())
            .is_err());
    }

    #[test]
    fn bearer_header_parsing() {
        assert_eq!(bearer(Some("Bearer abc")), Some("abc"));
        assert_eq!(bearer(Some("bearer  abc ")), Some("abc"));
        assert_eq!(bearer(Some("Basic abc")), None);
        assert_eq!(bearer(Some("Bearer ")), None);
        assert_eq!(bearer(None), None);
    }

    #[test]
    fn a_created_token_authenticates_as_its_identity_until_revoked() {
        let authority = authority();
        let token = authority
            .create_identity("alice", Role::Developer, NOW)
            .unwrap();
        let caller = authority.authenticate(Some(token.expose()), NOW).unwrap();
        assert_eq!(caller.who(), "alice");
        authority.store().revoke_identity("alice", NOW).unwrap();
        assert!(matches!(
            authority.authenticate(Some(token.expose()), NOW),
            Err(AuthError::UnknownToken)
        ));
    }

    #[test]
    fn no_token_or_a_made_up_one_is_refused() {
        let authority = authority();
        assert!(matches!(
            authority.authenticate(None, NOW),
            Err(AuthError::MissingToken)
        ));
        assert!(matches!(
            authority.authenticate(Some("  "), NOW),
            Err(AuthError::MissingToken)
        ));
        let err = authority.authenticate(Some("slw_guess"), NOW).unwrap_err();
        assert!(matches!(err, AuthError::UnknownToken));
        assert!(!err.to_string().contains("slw_guess"));
    }

    #[test]
    fn a_job_credential_works_during_its_job_and_never_after() {
        let authority = authority();
        let credential = credential::mint(&merge_claims(), &key(1)).unwrap();
        let caller = authority
            .authenticate(Some(credential.expose()), NOW)
            .unwrap();
        assert_eq!(caller.who(), "job:42");
        // A job someone asked for over MCP acts in their name.
        let asked = Caller::Job(JobClaims {
            requested_by: Some(credential::RequestedBy {
                identity: "claude-code@alice".into(),
                how: "mcp".into(),
                tool: Some("deploy_branch_preview".into()),
            }),
            ..merge_claims()
        });
        assert_eq!(asked.who(), "claude-code@alice");
        authority
            .authorize(&caller, Action::Update, &prod())
            .unwrap();
        authority.end_job("42", NOW + 10).unwrap();
        // Replayed after its job, still inside its expiry.
        assert!(matches!(
            authority.authenticate(Some(credential.expose()), NOW + 20),
            Err(AuthError::JobEnded { job_id }) if job_id == "42"
        ));
    }

    /// The signature is verified once per credential; its expiry is checked on every
    /// call, so a credential seen before still stops at its deadline.
    #[test]
    fn a_verified_credential_still_expires() {
        let authority = authority();
        let claims = merge_claims();
        let credential = credential::mint(&claims, &key(1)).unwrap();
        authority
            .authenticate(Some(credential.expose()), NOW)
            .unwrap();
        authority
            .authenticate(Some(credential.expose()), NOW + 1)
            .unwrap();
        assert!(matches!(
            authority.authenticate(Some(credential.expose()), claims.expires_at_ms),
            Err(AuthError::Credential(CredentialError::Expired { .. }))
        ));
        // A changed byte is another credential, verified afresh (and refused).
        let mut tampered = credential.expose().to_owned();
        tampered.push('A');
        assert!(authority.authenticate(Some(&tampered), NOW + 2).is_err());
    }

    #[test]
    fn a_credential_signed_by_anyone_but_the_engine_is_refused() {
        let authority = authority();
        let forged = credential::mint(&merge_claims(), &key(9)).unwrap();
        assert!(matches!(
            authority.authenticate(Some(forged.expose()), NOW),
            Err(AuthError::Credential(CredentialError::BadSignature))
        ));
        let without_key =
            Authority::new(SqliteStore::in_memory().unwrap(), Policy::default(), None);
        let credential = credential::mint(&merge_claims(), &key(1)).unwrap();
        assert!(matches!(
            without_key.authenticate(Some(credential.expose()), NOW),
            Err(AuthError::NoEngineKey)
        ));
    }

    #[test]
    fn identity_names_are_checked_before_anything_is_stored() {
        let authority = authority();
        assert!(matches!(
            authority.create_identity("bad name", Role::Viewer, NOW),
            Err(AuthError::Name(_))
        ));
        assert!(authority.store().list_identities().unwrap().is_empty());
    }
}
