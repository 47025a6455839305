//! What slipway-agent and the platform share about a job, and the keys that sign for
//! them.
//!
//! - [`Trigger`]: what caused a job (its stable wire names are in the agent's database,
//!   its reports and the records it stores);
//! - [`RunLabels`]: the job's unsigned labels, which the agent hands to Terraform as
//!   environment variables ([`RunLabels::to_env`]) and the provider sends with each
//!   change as what the run says about itself. They decide nothing and prove nothing:
//!   the platform decides from the job credential alone (`platform::credential`), and
//!   stores the credential's commit, repository, actor and job id in place of the
//!   labels' (`verified` is the platform's to set). Because both sides link this crate,
//!   the variable names cannot drift apart;
//! - Ed25519 keys in their text form: the agent's (it signs job credentials and their
//!   endings) and the platform's (it signs its audit log).
//!
//! # Keys
//!
//! A signing key is stored as the **base64 (standard alphabet, padded) of its raw
//! 32-byte Ed25519 seed**; a verifying (public) key as the base64 of its 32 bytes.
//! Surrounding whitespace is ignored, so a file written by `slipway-agent keygen` or an
//! environment variable holding the same text both load. See [`load_signing_key`] and
//! [`load_verifying_key`].

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
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
/// Every label variable, in order.
pub const ENV_VARS: [&str; 6] = [
    ENV_COMMIT_SHA,
    ENV_REPOSITORY,
    ENV_PULL_REQUEST,
    ENV_ACTOR,
    ENV_TRIGGER,
    ENV_JOB_ID,
];

/// Why a trigger name or a key could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProvenanceError {
    /// A field holds something that cannot be parsed.
    #[error("{field} is invalid: {reason}")]
    Invalid { field: &'static str, reason: String },
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

/// A job's labels, as the agent hands them to Terraform: who caused it, from which
/// commit, and how. Unsigned, so that nothing can take them for a proof.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunLabels {
    pub commit_sha: String,
    pub repository: String,
    pub pull_request: Option<u64>,
    pub actor: String,
    pub trigger: Trigger,
    pub job_id: String,
}

impl RunLabels {
    /// The variables, ready for `Command::envs`; a missing pull request is empty.
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
        ]
    }
}

/// The current time as records carry it: RFC 3339 in UTC with milliseconds, e.g.
/// `2026-11-22T10:15:30.123Z`.
pub fn now_timestamp() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
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

    #[test]
    fn labels_become_their_variables() {
        let labels = RunLabels {
            commit_sha: "4f1c2b0e".into(),
            repository: "acme/infra".into(),
            pull_request: None,
            actor: "octocat".into(),
            trigger: Trigger::Webhook,
            job_id: "17".into(),
        };
        let env: std::collections::BTreeMap<_, _> = labels.to_env().into_iter().collect();
        assert_eq!(env.len(), ENV_VARS.len());
        assert_eq!(env[ENV_COMMIT_SHA], "4f1c2b0e");
        assert_eq!(env[ENV_PULL_REQUEST], "");
        assert_eq!(env[ENV_TRIGGER], "webhook");
        assert!(ENV_VARS.iter().all(|name| env.contains_key(name)));
        let stamp = now_timestamp();
        assert!(stamp.ends_with('Z') && stamp.len() == 24, "{stamp}");
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
}
