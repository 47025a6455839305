//! Provenance of a Terraform run: the commit, repository, pull request, actor and
//! trigger that caused it, signed with the Slipway agent's Ed25519 key.
//!
//! The agent (`slipway-agent`) builds a [`Provenance`] for every job, signs it, and
//! passes it to `terraform` as environment variables ([`Provenance::to_env`]); the
//! Slipway provider reads it back ([`Provenance::from_env`]) and checks the signature
//! against the agent's public key ([`Provenance::verify`]). Because both sides link this
//! crate, the variable names and the exact bytes that are signed cannot drift apart.
//!
//! # Canonical encoding (what is signed)
//!
//! [`Provenance::canonical_bytes`] is a versioned line format, UTF-8:
//!
//! ```text
//! slipway-provenance/v1
//! commit_sha=<value>
//! repository=<value>
//! pull_request=<decimal, or empty when none>
//! actor=<value>
//! trigger=<webhook|poll|manual|api|terraform-apply>
//! job_id=<value>
//! timestamp=<RFC 3339 UTC>
//! ```
//!
//! Every line ends with `\n`; fields always appear, in this order. Inside a value,
//! `\` is written `\\`, a line feed `\n` and a carriage return `\r`, so no value can
//! forge a line of its own and any two different records encode differently.
//!
//! # Keys
//!
//! A signing key is stored as the **base64 (standard alphabet, padded) of its raw
//! 32-byte Ed25519 seed**; a verifying (public) key as the base64 of its 32 bytes.
//! Surrounding whitespace is ignored, so a file written by `slipway-agent keygen` or an
//! environment variable holding the same text both load. See [`load_signing_key`] and
//! [`load_verifying_key`].

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::str::FromStr;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use ed25519_dalek::{Signature, Signer as _, Verifier as _};
pub use ed25519_dalek::{SigningKey, VerifyingKey};

/// Environment variable holding the full commit SHA that was applied.
pub const ENV_COMMIT_SHA: &str = "SLIPWAY_COMMIT_SHA";
/// Environment variable holding the repository (e.g. `acme/infra` or a URL).
pub const ENV_REPOSITORY: &str = "SLIPWAY_REPOSITORY";
/// Environment variable holding the pull request number; empty or absent when none.
pub const ENV_PULL_REQUEST: &str = "SLIPWAY_PULL_REQUEST";
/// Environment variable holding who caused the run (who merged, pushed or triggered).
pub const ENV_ACTOR: &str = "SLIPWAY_ACTOR";
/// Environment variable holding the [`Trigger`] name.
pub const ENV_TRIGGER: &str = "SLIPWAY_TRIGGER";
/// Environment variable holding the agent's job id.
pub const ENV_JOB_ID: &str = "SLIPWAY_JOB_ID";
/// Environment variable holding the RFC 3339 UTC time the provenance was made.
pub const ENV_TIMESTAMP: &str = "SLIPWAY_PROVENANCE_TIMESTAMP";
/// Environment variable holding the base64 Ed25519 signature over
/// [`Provenance::canonical_bytes`].
pub const ENV_SIGNATURE: &str = "SLIPWAY_PROVENANCE_SIGNATURE";

/// Every variable name this crate reads or writes, in canonical order.
pub const ENV_VARS: [&str; 8] = [
    ENV_COMMIT_SHA,
    ENV_REPOSITORY,
    ENV_PULL_REQUEST,
    ENV_ACTOR,
    ENV_TRIGGER,
    ENV_JOB_ID,
    ENV_TIMESTAMP,
    ENV_SIGNATURE,
];

const HEADER: &str = "slipway-provenance/v1";

/// Why a provenance record could not be read, signed or trusted.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProvenanceError {
    /// A required environment variable is absent.
    #[error("environment variable {0} is not set")]
    Missing(&'static str),
    /// A variable or field holds something that cannot be parsed.
    #[error("{field} is invalid: {reason}")]
    Invalid { field: &'static str, reason: String },
    /// No signature was present where one is required.
    #[error("provenance is not signed ({ENV_SIGNATURE} is not set)")]
    Unsigned,
    /// The signature does not match the record and key.
    #[error(
        "provenance signature does not verify: the record was altered or signed by another key"
    )]
    BadSignature,
    /// A key could not be read or decoded. The message never contains key material.
    #[error("{0}")]
    Key(String),
}

/// What caused a Terraform run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Trigger {
    /// A GitHub webhook delivery (merged pull request or push).
    Webhook,
    /// The agent's poller saw the tracked branch move.
    Poll,
    /// `slipway-agent deploy` on the command line.
    Manual,
    /// The agent's authenticated HTTP deploy endpoint.
    Api,
    /// A person ran `terraform apply` directly, outside the agent.
    TerraformApply,
    /// A pull request was opened, reopened or pushed to: its plan, or its preview.
    PullRequest,
    /// A pull request was closed or merged (or the agent's sweep found it closed):
    /// its preview is destroyed.
    PrClosed,
    /// A preview was idle past its time to live and is destroyed.
    Ttl,
    /// An MCP tool call (an AI coding agent, with a named platform token) asked for
    /// it: a preview of a pushed branch, or its teardown.
    Mcp,
    /// The agent's drift schedule: a read-only plan of a root's deployed commit.
    Drift,
    /// The drift schedule found drift in a root with `remediate = true`: its deployed
    /// commit is applied again, as a merge job.
    DriftRemediation,
}

impl Trigger {
    /// The stable wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Webhook => "webhook",
            Trigger::Poll => "poll",
            Trigger::Manual => "manual",
            Trigger::Api => "api",
            Trigger::TerraformApply => "terraform-apply",
            Trigger::PullRequest => "pull-request",
            Trigger::PrClosed => "pr-closed",
            Trigger::Ttl => "ttl",
            Trigger::Mcp => "mcp",
            Trigger::Drift => "drift",
            Trigger::DriftRemediation => "drift-remediation",
        }
    }

    /// Every trigger, for help texts and tests.
    pub const ALL: [Trigger; 11] = [
        Trigger::Webhook,
        Trigger::Poll,
        Trigger::Manual,
        Trigger::Api,
        Trigger::TerraformApply,
        Trigger::PullRequest,
        Trigger::PrClosed,
        Trigger::Ttl,
        Trigger::Mcp,
        Trigger::Drift,
        Trigger::DriftRemediation,
    ];
}

impl fmt::Display for Trigger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Trigger {
    type Err = ProvenanceError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Trigger::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| ProvenanceError::Invalid {
                field: "trigger",
                reason: format!(
                    "`{s}` is not one of {}",
                    Trigger::ALL.map(Trigger::as_str).join(", ")
                ),
            })
    }
}

/// Who changed what, from which commit, and how: the record the agent signs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provenance {
    pub commit_sha: String,
    pub repository: String,
    pub pull_request: Option<u64>,
    pub actor: String,
    pub trigger: Trigger,
    pub job_id: String,
    /// RFC 3339 in UTC, e.g. `2026-11-22T10:15:30.123Z`.
    pub timestamp: String,
}

/// A [`Provenance`] together with its signature, as carried in the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedProvenance {
    pub provenance: Provenance,
    /// Base64 of the 64-byte Ed25519 signature.
    pub signature: String,
}

fn escape(value: &str, out: &mut String) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            other => out.push(other),
        }
    }
}

/// A signed record older than this is not trusted: the agent signs one per job, when
/// the job starts, and no job runs for a day. A record kept and replayed later (from a
/// log, a state file, another job's environment) stops working.
pub const MAX_AGE: chrono::Duration = chrono::Duration::hours(24);

/// Clocks of the agent and the machine running the provider may differ this much.
pub const MAX_CLOCK_SKEW: chrono::Duration = chrono::Duration::minutes(5);

/// Why a record's time is not acceptable now.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Staleness {
    #[error("it was signed {hours} h ago, longer than any job runs (at most 24 h): it is a replayed record")]
    TooOld { hours: i64 },
    #[error("it claims to be signed in the future ({timestamp})")]
    InTheFuture { timestamp: String },
    #[error("its timestamp is not RFC 3339")]
    Unreadable,
}

impl Provenance {
    /// Whether the record's time is acceptable at `now`: not older than [`MAX_AGE`],
    /// not later than `now` plus [`MAX_CLOCK_SKEW`].
    pub fn check_age(&self, now: chrono::DateTime<chrono::Utc>) -> Result<(), Staleness> {
        let signed = chrono::DateTime::parse_from_rfc3339(&self.timestamp)
            .map_err(|_| Staleness::Unreadable)?
            .with_timezone(&chrono::Utc);
        if signed > now + MAX_CLOCK_SKEW {
            return Err(Staleness::InTheFuture {
                timestamp: self.timestamp.clone(),
            });
        }
        let age = now - signed;
        if age > MAX_AGE {
            return Err(Staleness::TooOld {
                hours: age.num_hours(),
            });
        }
        Ok(())
    }

    /// [`Provenance::check_age`] at the current time.
    pub fn check_age_now(&self) -> Result<(), Staleness> {
        self.check_age(chrono::Utc::now())
    }

    /// The current time in the format [`Provenance::timestamp`] uses.
    pub fn now_timestamp() -> String {
        chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    }

    /// The exact bytes that are signed; see the crate docs for the format.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let pr = self.pull_request.map(|n| n.to_string()).unwrap_or_default();
        let fields: [(&str, &str); 7] = [
            ("commit_sha", &self.commit_sha),
            ("repository", &self.repository),
            ("pull_request", &pr),
            ("actor", &self.actor),
            ("trigger", self.trigger.as_str()),
            ("job_id", &self.job_id),
            ("timestamp", &self.timestamp),
        ];
        let mut out = String::with_capacity(256);
        out.push_str(HEADER);
        out.push('\n');
        for (name, value) in fields {
            out.push_str(name);
            out.push('=');
            escape(value, &mut out);
            out.push('\n');
        }
        out.into_bytes()
    }

    /// Signs the canonical bytes.
    pub fn sign(&self, key: &SigningKey) -> SignedProvenance {
        let signature = key.sign(&self.canonical_bytes());
        SignedProvenance {
            provenance: self.clone(),
            signature: BASE64.encode(signature.to_bytes()),
        }
    }

    /// The unsigned variables (no [`ENV_SIGNATURE`]).
    pub fn to_env(&self) -> Vec<(&'static str, String)> {
        vec![
            (ENV_COMMIT_SHA, self.commit_sha.clone()),
            (ENV_REPOSITORY, self.repository.clone()),
            (
                ENV_PULL_REQUEST,
                self.pull_request.map(|n| n.to_string()).unwrap_or_default(),
            ),
            (ENV_ACTOR, self.actor.clone()),
            (ENV_TRIGGER, self.trigger.as_str().to_owned()),
            (ENV_JOB_ID, self.job_id.clone()),
            (ENV_TIMESTAMP, self.timestamp.clone()),
        ]
    }

    /// Reads the unsigned fields through `lookup` (a variable name to its value).
    pub fn from_lookup(
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Provenance, ProvenanceError> {
        let required = |name: &'static str| lookup(name).ok_or(ProvenanceError::Missing(name));
        let pull_request = match lookup(ENV_PULL_REQUEST) {
            None => None,
            Some(s) if s.is_empty() => None,
            Some(s) => Some(s.parse::<u64>().map_err(|_| ProvenanceError::Invalid {
                field: ENV_PULL_REQUEST,
                reason: format!("`{s}` is not a pull request number"),
            })?),
        };
        let timestamp = required(ENV_TIMESTAMP)?;
        chrono::DateTime::parse_from_rfc3339(&timestamp).map_err(|e| ProvenanceError::Invalid {
            field: ENV_TIMESTAMP,
            reason: format!("not RFC 3339: {e}"),
        })?;
        Ok(Provenance {
            commit_sha: required(ENV_COMMIT_SHA)?,
            repository: required(ENV_REPOSITORY)?,
            pull_request,
            actor: required(ENV_ACTOR)?,
            trigger: required(ENV_TRIGGER)?.parse()?,
            job_id: required(ENV_JOB_ID)?,
            timestamp,
        })
    }

    /// Reads a signed record from the process environment. Returns
    /// [`ProvenanceError::Unsigned`] when every field is present but the signature.
    pub fn from_env() -> Result<SignedProvenance, ProvenanceError> {
        SignedProvenance::from_lookup(|name| std::env::var(name).ok())
    }

    /// Checks a base64 signature over this record.
    pub fn verify(&self, signature_b64: &str, key: &VerifyingKey) -> Result<(), ProvenanceError> {
        let bytes = BASE64
            .decode(signature_b64.trim())
            .map_err(|_| ProvenanceError::BadSignature)?;
        let signature = Signature::from_slice(&bytes).map_err(|_| ProvenanceError::BadSignature)?;
        key.verify(&self.canonical_bytes(), &signature)
            .map_err(|_| ProvenanceError::BadSignature)
    }
}

impl SignedProvenance {
    /// All variables, signature included, ready for `Command::envs`.
    pub fn to_env(&self) -> Vec<(&'static str, String)> {
        let mut env = self.provenance.to_env();
        env.push((ENV_SIGNATURE, self.signature.clone()));
        env
    }

    /// Reads a signed record through `lookup`.
    pub fn from_lookup(
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<SignedProvenance, ProvenanceError> {
        let provenance = Provenance::from_lookup(&lookup)?;
        let signature = lookup(ENV_SIGNATURE)
            .filter(|s| !s.is_empty())
            .ok_or(ProvenanceError::Unsigned)?;
        Ok(SignedProvenance {
            provenance,
            signature,
        })
    }

    /// Checks the signature against `key`.
    pub fn verify(&self, key: &VerifyingKey) -> Result<(), ProvenanceError> {
        self.provenance.verify(&self.signature, key)
    }

    /// The variables as a map, for display and tests.
    pub fn to_env_map(&self) -> BTreeMap<&'static str, String> {
        self.to_env().into_iter().collect()
    }
}

/// Decodes a signing key from its text form: base64 of the 32-byte seed.
pub fn parse_signing_key(text: &str) -> Result<SigningKey, ProvenanceError> {
    let bytes = decode_32(text, "signing key")?;
    Ok(SigningKey::from_bytes(&bytes))
}

/// Decodes a verifying key from its text form: base64 of the 32-byte public key.
pub fn parse_verifying_key(text: &str) -> Result<VerifyingKey, ProvenanceError> {
    let bytes = decode_32(text, "verifying key")?;
    VerifyingKey::from_bytes(&bytes)
        .map_err(|_| ProvenanceError::Key("verifying key is not a valid Ed25519 point".into()))
}

fn decode_32(text: &str, what: &str) -> Result<[u8; 32], ProvenanceError> {
    let bytes = BASE64.decode(text.trim()).map_err(|_| {
        ProvenanceError::Key(format!(
            "{what} is not base64: expected the base64 of 32 raw bytes (as `slipway-agent keygen` writes)"
        ))
    })?;
    <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| {
        ProvenanceError::Key(format!(
            "{what} decodes to {} bytes; an Ed25519 key is 32 bytes",
            bytes.len()
        ))
    })
}

/// Loads a signing key from a file (see [`parse_signing_key`]).
pub fn load_signing_key(path: &Path) -> Result<SigningKey, ProvenanceError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ProvenanceError::Key(format!("cannot read {}: {e}", path.display())))?;
    parse_signing_key(&text)
}

/// Loads a verifying key from a file (see [`parse_verifying_key`]).
pub fn load_verifying_key(path: &Path) -> Result<VerifyingKey, ProvenanceError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ProvenanceError::Key(format!("cannot read {}: {e}", path.display())))?;
    parse_verifying_key(&text)
}

/// Loads a signing key from the environment variable `name`.
pub fn signing_key_from_env(name: &'static str) -> Result<SigningKey, ProvenanceError> {
    let text = std::env::var(name).map_err(|_| ProvenanceError::Missing(name))?;
    parse_signing_key(&text)
}

/// A fresh key from the operating system's random source.
pub fn generate_signing_key() -> Result<SigningKey, ProvenanceError> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed)
        .map_err(|e| ProvenanceError::Key(format!("no randomness available: {e}")))?;
    Ok(SigningKey::from_bytes(&seed))
}

/// The text form of a signing key (base64 of the seed), as written to key files.
pub fn encode_signing_key(key: &SigningKey) -> String {
    BASE64.encode(key.to_bytes())
}

/// The text form of a verifying key (base64 of its 32 bytes).
pub fn encode_verifying_key(key: &VerifyingKey) -> String {
    BASE64.encode(key.to_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Provenance {
        Provenance {
            commit_sha: "4f1c2b0e9a7d6c5b4a39281706f5e4d3c2b1a098".into(),
            repository: "acme/infra".into(),
            pull_request: Some(42),
            actor: "octocat".into(),
            trigger: Trigger::Webhook,
            job_id: "17".into(),
            timestamp: "2026-11-22T10:15:30.123Z".into(),
        }
    }

    fn key() -> SigningKey {
        SigningKey::from_bytes(&[7u8; 32])
    }

    #[test]
    fn sign_then_verify_round_trips_through_the_environment() {
        let signed = sample().sign(&key());
        let env = signed.to_env_map();
        assert_eq!(env.len(), ENV_VARS.len());
        let back = SignedProvenance::from_lookup(|k| env.get(k).cloned()).unwrap();
        assert_eq!(back, signed);
        back.verify(&key().verifying_key()).unwrap();
    }

    #[test]
    fn every_tampered_field_breaks_the_signature() {
        let signed = sample().sign(&key());
        let vk = key().verifying_key();
        for name in &ENV_VARS[..7] {
            let mut env = signed.to_env_map();
            let value = env.get_mut(name).unwrap();
            *value = match *name {
                ENV_PULL_REQUEST => "43".into(),
                ENV_TRIGGER => "manual".into(),
                ENV_TIMESTAMP => "2026-11-22T10:15:31.123Z".into(),
                _ => format!("{value}x"),
            };
            let back = SignedProvenance::from_lookup(|k| env.get(k).cloned()).unwrap();
            assert_eq!(
                back.verify(&vk),
                Err(ProvenanceError::BadSignature),
                "{name}"
            );
        }
    }

    #[test]
    fn another_key_or_a_garbled_signature_is_refused() {
        let signed = sample().sign(&key());
        let other = SigningKey::from_bytes(&[8u8; 32]).verifying_key();
        assert_eq!(signed.verify(&other), Err(ProvenanceError::BadSignature));
        let mut garbled = signed.clone();
        garbled.signature = "not base64!".into();
        assert_eq!(
            garbled.verify(&key().verifying_key()),
            Err(ProvenanceError::BadSignature)
        );
    }

    #[test]
    fn removing_the_pull_request_is_detected() {
        let signed = sample().sign(&key());
        let mut p = signed.provenance.clone();
        p.pull_request = None;
        assert!(p.verify(&signed.signature, &key().verifying_key()).is_err());
    }

    #[test]
    fn canonical_encoding_is_unambiguous() {
        let mut a = sample();
        a.actor = "eve\ntrigger=manual".into();
        let mut b = sample();
        b.actor = "eve".into();
        assert_ne!(a.canonical_bytes(), b.canonical_bytes());
        let text = String::from_utf8(a.canonical_bytes()).unwrap();
        assert_eq!(text.lines().count(), 8);
        assert!(text.starts_with("slipway-provenance/v1\ncommit_sha=4f1c"));
        assert!(text.contains("actor=eve\\ntrigger=manual\n"));
    }

    #[test]
    fn unsigned_and_missing_are_distinct_errors() {
        let env = sample().to_env().into_iter().collect::<BTreeMap<_, _>>();
        assert_eq!(
            SignedProvenance::from_lookup(|k| env.get(k).cloned()),
            Err(ProvenanceError::Unsigned)
        );
        assert_eq!(
            Provenance::from_lookup(|_| None),
            Err(ProvenanceError::Missing(ENV_TIMESTAMP))
        );
        let mut bad = env.clone();
        bad.insert(ENV_TRIGGER, "cron".into());
        assert!(matches!(
            Provenance::from_lookup(|k| bad.get(k).cloned()),
            Err(ProvenanceError::Invalid {
                field: "trigger",
                ..
            })
        ));
    }

    #[test]
    fn keys_round_trip_through_their_text_form() {
        let k = generate_signing_key().unwrap();
        let text = encode_signing_key(&k);
        let back = parse_signing_key(&format!("  {text}\n")).unwrap();
        assert_eq!(back.to_bytes(), k.to_bytes());
        let vk = parse_verifying_key(&encode_verifying_key(&k.verifying_key())).unwrap();
        assert_eq!(vk, k.verifying_key());
        let err = parse_signing_key("AAAA").unwrap_err().to_string();
        assert!(err.contains("3 bytes"), "{err}");
        assert!(!err.contains("AAAA"));
    }

    #[test]
    fn trigger_names_are_stable() {
        let names: Vec<_> = Trigger::ALL.iter().map(|t| t.as_str()).collect();
        assert_eq!(
            names,
            [
                "webhook",
                "poll",
                "manual",
                "api",
                "terraform-apply",
                "pull-request",
                "pr-closed",
                "ttl",
                "mcp",
                "drift",
                "drift-remediation"
            ]
        );
        for t in Trigger::ALL {
            assert_eq!(t.as_str().parse::<Trigger>().unwrap(), t);
        }
    }

    #[test]
    fn records_older_than_a_day_or_from_the_future_are_stale() {
        let mut p = sample();
        let signed = chrono::DateTime::parse_from_rfc3339(&p.timestamp)
            .unwrap()
            .with_timezone(&chrono::Utc);
        p.check_age(signed + chrono::Duration::hours(23)).unwrap();
        // The 11-month-old record of the attack.
        assert_eq!(
            p.check_age(signed + chrono::Duration::days(330)),
            Err(Staleness::TooOld { hours: 330 * 24 })
        );
        assert!(matches!(
            p.check_age(signed - chrono::Duration::hours(1)),
            Err(Staleness::InTheFuture { .. })
        ));
        p.check_age(signed - chrono::Duration::minutes(4)).unwrap();
        p.timestamp = "yesterday".into();
        assert_eq!(p.check_age(signed), Err(Staleness::Unreadable));
    }
}
