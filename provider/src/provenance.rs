//! The change record of a Terraform run, and the production gate.
//!
//! `slipway-agent` runs Terraform with the commit, repository, pull request, actor,
//! trigger and job id in environment variables, signed with its Ed25519 key (see the
//! `slipway_provenance` crate, which both sides link so the variable names and signed
//! bytes cannot drift). The provider reads them once, at configure time, and stamps the
//! resulting [`ChangeRecord`] on every object it writes. Without them the change is a
//! manual `terraform apply` by the local user.
//!
//! The [`Policy`] can make PRODUCTION environments accept changes only when that
//! record is signed by the agent: production changes then come through a merge, never
//! from someone's laptop. The gate runs at plan time (so `terraform plan` already fails)
//! and again at apply, since a saved plan can be applied later from elsewhere.

use slipway_platform::identity::local_user;
use slipway_provenance::{ProvenanceError, SignedProvenance, Trigger, VerifyingKey};
use tfplug::{AttributePath, Diagnostic};

use crate::runtime::{ChangeRecord, Mode};

/// What the provider enforces, from its configuration.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// PRODUCTION environments (and their applications) change only with provenance
    /// signed by the agent.
    pub production_requires_signed_provenance: bool,
    /// The agent's public key; required when the rule above is on.
    pub agent_public_key: Option<VerifyingKey>,
}

/// Whether the run's provenance can be trusted, and if not, why: the reason ends up in
/// the gate's diagnostic so the user knows what was missing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trust {
    /// Signed by the agent's key, and the signature verifies.
    Verified,
    /// No provenance variables at all: a person ran `terraform apply`.
    Manual,
    /// Provenance variables are present but carry no signature.
    Unsigned,
    /// The variables are incomplete or malformed.
    Invalid(String),
    /// A signature is present but does not verify against the configured key.
    BadSignature,
    /// A signature is present but no public key is configured to check it.
    NoKey,
    /// Signed by the agent, but too old (or from the future) to be this run's: a record
    /// kept and replayed.
    Stale(slipway_provenance::Staleness),
}

impl Trust {
    fn explain(&self) -> &str {
        match self {
            Trust::Verified => "the provenance is signed by the agent",
            Trust::Manual => {
                "this run has no provenance from slipway-agent (it looks like a manual `terraform apply`)"
            }
            Trust::Unsigned => "this run's provenance is not signed by slipway-agent",
            Trust::Invalid(_) => "this run's provenance variables are incomplete or malformed",
            Trust::BadSignature => {
                "this run's provenance signature does not verify against the agent's public key (the record was altered, or signed by another key)"
            }
            Trust::NoKey => {
                "the provider has no agent public key to verify this run's provenance with"
            }
            Trust::Stale(_) => {
                "this run's provenance is signed by the agent but is not from a current job (it was signed more than 24 hours ago, or in the future): a replayed record"
            }
        }
    }
}

/// The change record of this run, read from the environment at configure time.
#[derive(Debug, Clone)]
pub struct RunProvenance {
    /// Everything but the time, which is stamped per write by [`RunProvenance::record`].
    template: ChangeRecord,
    pub trust: Trust,
}

impl RunProvenance {
    /// Reads the agent's variables from the process environment.
    pub fn from_env(key: Option<&VerifyingKey>) -> RunProvenance {
        RunProvenance::from_lookup(|name| std::env::var(name).ok(), key)
    }

    /// Reads the agent's variables through `lookup` (a variable name to its value), and
    /// verifies the signature with `key` when there is one.
    pub fn from_lookup(
        lookup: impl Fn(&str) -> Option<String>,
        key: Option<&VerifyingKey>,
    ) -> RunProvenance {
        let lookup = |name: &str| lookup(name).filter(|v| !v.is_empty());
        let any_present = slipway_provenance::ENV_VARS
            .iter()
            .any(|name| lookup(name).is_some());
        if !any_present {
            return RunProvenance::manual(local_user());
        }
        match SignedProvenance::from_lookup(lookup) {
            Ok(signed) => {
                let trust = match key {
                    None => Trust::NoKey,
                    Some(key) => match signed.verify(key) {
                        Ok(()) => match signed.provenance.check_age_now() {
                            Ok(()) => Trust::Verified,
                            Err(staleness) => Trust::Stale(staleness),
                        },
                        Err(_) => Trust::BadSignature,
                    },
                };
                let p = signed.provenance;
                RunProvenance {
                    template: ChangeRecord {
                        commit_sha: p.commit_sha,
                        repository: p.repository,
                        pull_request: p.pull_request,
                        actor: p.actor,
                        trigger: p.trigger.as_str().to_owned(),
                        job_id: p.job_id,
                        changed_at: String::new(),
                        verified: trust == Trust::Verified,
                    },
                    trust,
                }
            }
            Err(error) => {
                // Keep what was given, so the record still says where the change came
                // from, but never trust it.
                let trust = match error {
                    ProvenanceError::Unsigned => Trust::Unsigned,
                    other => Trust::Invalid(other.to_string()),
                };
                let get = |name: &str| lookup(name).unwrap_or_default();
                RunProvenance {
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
                        verified: false,
                    },
                    trust,
                }
            }
        }
    }

    /// A manual `terraform apply` by `actor`.
    pub fn manual(actor: String) -> RunProvenance {
        RunProvenance {
            template: ChangeRecord {
                actor,
                trigger: Trigger::TerraformApply.as_str().to_owned(),
                ..ChangeRecord::default()
            },
            trust: Trust::Manual,
        }
    }

    /// The record to store with a write happening now.
    pub fn record(&self) -> ChangeRecord {
        ChangeRecord {
            changed_at: slipway_provenance::Provenance::now_timestamp(),
            ..self.template.clone()
        }
    }

    /// A one-line description for logs: no secrets here, only who and where from.
    pub fn describe(&self) -> String {
        let t = &self.template;
        format!(
            "trigger={} actor={} repository={} commit={} job={} verified={}",
            t.trigger, t.actor, t.repository, t.commit_sha, t.job_id, t.verified
        )
    }
}

/// The production gate: `Ok` unless `mode` is PRODUCTION, the policy demands signed
/// provenance, and this run does not have it. `what` names the object being changed
/// (`environment "prod"`); `at` is the attribute the diagnostic points at.
pub fn production_gate(
    policy: &Policy,
    run: &RunProvenance,
    mode: Mode,
    what: &str,
    at: Option<AttributePath>,
) -> Result<(), Diagnostic> {
    if mode != Mode::Production
        || !policy.production_requires_signed_provenance
        || run.trust == Trust::Verified
    {
        return Ok(());
    }
    let mut detail = format!(
        "{what} is a PRODUCTION environment, and this provider's policy (production_requires_signed_provenance) accepts production changes only with provenance signed by slipway-agent. Production changes come through a merge: open a pull request with this change and merge it; slipway-agent then applies it. Here, {}.",
        run.trust.explain()
    );
    match &run.trust {
        Trust::Invalid(reason) => detail.push_str(&format!(" ({reason})")),
        Trust::Stale(staleness) => detail.push_str(&format!(" ({staleness})")),
        _ => {}
    }
    let diagnostic = Diagnostic::error("Production changes come through a merge", detail);
    Err(match at {
        Some(path) => diagnostic.at(path),
        None => diagnostic,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use slipway_provenance::{Provenance, SigningKey};
    use std::collections::BTreeMap;

    fn key() -> SigningKey {
        SigningKey::from_bytes(&[3u8; 32])
    }

    fn signed_env() -> BTreeMap<&'static str, String> {
        Provenance {
            commit_sha: "0123456789abcdef0123456789abcdef01234567".into(),
            repository: "acme/infra".into(),
            pull_request: Some(7),
            actor: "octocat".into(),
            trigger: Trigger::Webhook,
            job_id: "42".into(),
            timestamp: Provenance::now_timestamp(),
        }
        .sign(&key())
        .to_env_map()
    }

    fn read(env: &BTreeMap<&'static str, String>, key: Option<&VerifyingKey>) -> RunProvenance {
        RunProvenance::from_lookup(|name| env.get(name).cloned(), key)
    }

    fn gate_on() -> Policy {
        Policy {
            production_requires_signed_provenance: true,
            agent_public_key: Some(key().verifying_key()),
        }
    }

    #[test]
    fn signed_provenance_is_recorded_and_verified() {
        let vk = key().verifying_key();
        let run = read(&signed_env(), Some(&vk));
        assert_eq!(run.trust, Trust::Verified);
        let record = run.record();
        assert_eq!(
            record.commit_sha,
            "0123456789abcdef0123456789abcdef01234567"
        );
        assert_eq!(record.repository, "acme/infra");
        assert_eq!(record.pull_request, Some(7));
        assert_eq!(record.actor, "octocat");
        assert_eq!(record.trigger, "webhook");
        assert_eq!(record.job_id, "42");
        assert!(record.verified);
        assert!(record.changed_at.ends_with('Z'), "{}", record.changed_at);
    }

    #[test]
    fn no_variables_is_a_manual_apply_by_the_local_user() {
        let run = read(&BTreeMap::new(), None);
        assert_eq!(run.trust, Trust::Manual);
        let record = run.record();
        assert_eq!(record.trigger, "terraform-apply");
        assert!(!record.actor.is_empty());
        assert!(!record.verified);
    }

    #[test]
    fn tampered_unsigned_and_unverifiable_records_are_not_trusted() {
        let vk = key().verifying_key();
        let mut tampered = signed_env();
        tampered.insert(slipway_provenance::ENV_ACTOR, "mallory".into());
        assert_eq!(read(&tampered, Some(&vk)).trust, Trust::BadSignature);
        assert!(!read(&tampered, Some(&vk)).record().verified);

        let mut unsigned = signed_env();
        unsigned.remove(slipway_provenance::ENV_SIGNATURE);
        let run = read(&unsigned, Some(&vk));
        assert_eq!(run.trust, Trust::Unsigned);
        assert_eq!(run.record().actor, "octocat");

        let other = SigningKey::from_bytes(&[4u8; 32]).verifying_key();
        assert_eq!(read(&signed_env(), Some(&other)).trust, Trust::BadSignature);
        assert_eq!(read(&signed_env(), None).trust, Trust::NoKey);

        let mut partial = BTreeMap::new();
        partial.insert(slipway_provenance::ENV_COMMIT_SHA, "abc".to_owned());
        let run = read(&partial, Some(&vk));
        assert!(matches!(run.trust, Trust::Invalid(_)), "{:?}", run.trust);
        assert_eq!(run.record().commit_sha, "abc");
    }

    /// A genuine record, kept and replayed months later, is not this run's.
    #[test]
    fn an_old_signed_record_is_not_trusted() {
        let old = Provenance {
            commit_sha: "0123456789abcdef0123456789abcdef01234567".into(),
            repository: "acme/infra".into(),
            pull_request: None,
            actor: "octocat".into(),
            trigger: Trigger::Webhook,
            job_id: "42".into(),
            timestamp: "2026-01-02T03:04:05.000Z".into(),
        }
        .sign(&key())
        .to_env_map();
        let run = read(&old, Some(&key().verifying_key()));
        assert!(matches!(run.trust, Trust::Stale(_)), "{:?}", run.trust);
        assert!(!run.record().verified);
        let err = production_gate(
            &gate_on(),
            &run,
            Mode::Production,
            "environment \"prod\"",
            None,
        )
        .unwrap_err();
        assert!(err.detail.contains("replayed record"), "{}", err.detail);
    }

    #[test]
    fn the_gate_lets_signed_production_changes_through() {
        let vk = key().verifying_key();
        let run = read(&signed_env(), Some(&vk));
        assert!(production_gate(
            &gate_on(),
            &run,
            Mode::Production,
            "environment \"prod\"",
            None
        )
        .is_ok());
    }

    #[test]
    fn the_gate_refuses_unsigned_or_tampered_production_changes() {
        let vk = key().verifying_key();
        let mut tampered = signed_env();
        tampered.insert(slipway_provenance::ENV_COMMIT_SHA, "ffff".into());
        let mut unsigned = signed_env();
        unsigned.remove(slipway_provenance::ENV_SIGNATURE);
        for (run, why) in [
            (read(&BTreeMap::new(), Some(&vk)), "manual"),
            (read(&unsigned, Some(&vk)), "not signed"),
            (read(&tampered, Some(&vk)), "does not verify"),
        ] {
            let err = production_gate(
                &gate_on(),
                &run,
                Mode::Production,
                "environment \"prod\"",
                Some(AttributePath::root("mode")),
            )
            .unwrap_err();
            assert_eq!(err.summary, "Production changes come through a merge");
            assert!(
                err.detail.contains("come through a merge"),
                "{}",
                err.detail
            );
            assert!(err.detail.contains(why), "{why}: {}", err.detail);
            assert_eq!(err.attribute, Some(AttributePath::root("mode")));
        }
    }

    #[test]
    fn the_gate_ignores_other_modes_and_a_disabled_policy() {
        let run = read(&BTreeMap::new(), None);
        for mode in [Mode::Development, Mode::Preview, Mode::Staging] {
            assert!(production_gate(&gate_on(), &run, mode, "x", None).is_ok());
        }
        assert!(production_gate(&Policy::default(), &run, Mode::Production, "x", None).is_ok());
    }
}
