//! The platform's own configuration: the one place its policy and the GitOps engine's
//! key come from.
//!
//! It is a TOML file that the operator writes (for the embedded platform,
//! `platform.toml` in the Slipway home directory). Nothing a Terraform configuration,
//! a pull request or a request carries reaches it.
//!
//! ```toml
//! # slipway-agent's public key (the contents of slipway-agent.pub), or a file with it.
//! engine_public_key_file = "/etc/slipway/slipway-agent.pub"
//! # Where the signed head of the audit log is written after every record.
//! audit_checkpoint = "/var/lib/slipway-checkpoints/audit.json"
//!
//! # A TCP endpoint with TLS for a team, beside the Unix socket. Optional.
//! [listen]
//! address = "0.0.0.0:7443"
//! tls_certificate = "/etc/slipway/platform.crt"
//! tls_key = "/etc/slipway/platform.key.pem"
//!
//! # Replace a mode's rule (defaults: see `policy`). `approval`: a job's credential
//! # must carry an approval (default: true for STAGING only).
//! [policy.STAGING]
//! roles = ["admin"]
//! jobs = ["merge"]
//! approval = true
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use slipway_provenance::VerifyingKey;

use crate::credential::JobKind;
use crate::identity::Role;
use crate::mode::Mode;
use crate::policy::{ModeRule, Policy};

/// A mistake in the configuration, naming the key and the fix.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
}

/// What the platform runs with.
#[derive(Debug, Clone, Default)]
pub struct PlatformConfig {
    pub policy: Policy,
    /// The GitOps engine's key; without one, no job credential is accepted.
    pub engine_key: Option<VerifyingKey>,
    /// Overrides the default checkpoint location.
    pub audit_checkpoint: Option<PathBuf>,
    /// A TCP address (with TLS) where a team reaches the platform, beside its socket.
    pub listen: Option<Listen>,
}

/// The platform's TCP endpoint: callers there must bring a token or a credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listen {
    pub address: std::net::SocketAddr,
    /// PEM files: the server's certificate (chain) and its private key.
    pub certificate: PathBuf,
    pub key: PathBuf,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    engine_public_key: Option<String>,
    engine_public_key_file: Option<PathBuf>,
    audit_checkpoint: Option<PathBuf>,
    listen: Option<RawListen>,
    #[serde(default)]
    policy: BTreeMap<String, RawRule>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawListen {
    address: String,
    tls_certificate: PathBuf,
    tls_key: PathBuf,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    #[serde(default)]
    roles: Vec<String>,
    #[serde(default)]
    jobs: Vec<String>,
    approval: Option<bool>,
}

impl PlatformConfig {
    /// Reads `path`; a missing file is the default configuration.
    pub fn load(path: &Path) -> Result<PlatformConfig, ConfigError> {
        match std::fs::read_to_string(path) {
            Ok(text) => PlatformConfig::parse(&text, path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(PlatformConfig::default()),
            Err(source) => Err(ConfigError::Read {
                path: path.display().to_string(),
                source,
            }),
        }
    }

    /// Parses the text of the file at `path` (named in errors).
    pub fn parse(text: &str, path: &Path) -> Result<PlatformConfig, ConfigError> {
        let invalid = |message: String| ConfigError::Invalid {
            path: path.display().to_string(),
            message,
        };
        let raw: Raw = toml::from_str(text).map_err(|e| invalid(e.to_string()))?;
        let engine_key = match (raw.engine_public_key, raw.engine_public_key_file) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "set `engine_public_key` or `engine_public_key_file`, not both".into(),
                ))
            }
            (Some(text), None) => {
                Some(slipway_provenance::parse_verifying_key(&text).map_err(|e| {
                    invalid(format!(
                        "`engine_public_key`: {e}; use the contents of slipway-agent.pub"
                    ))
                })?)
            }
            (None, Some(file)) => {
                Some(slipway_provenance::load_verifying_key(&file).map_err(|e| {
                    invalid(format!(
                        "`engine_public_key_file` ({}): {e}; name the slipway-agent.pub file",
                        file.display()
                    ))
                })?)
            }
            (None, None) => None,
        };
        let mut policy = Policy::default();
        for (mode_name, rule) in raw.policy {
            let mode: Mode = mode_name
                .parse()
                .map_err(|e| invalid(format!("[policy.{mode_name}]: {e}")))?;
            let roles = rule
                .roles
                .iter()
                .map(|r| r.parse::<Role>())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| invalid(format!("[policy.{mode_name}] roles: {e}")))?;
            let job_kinds = rule
                .jobs
                .iter()
                .map(|j| parse_job_kind(j))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| invalid(format!("[policy.{mode_name}] jobs: {e}")))?;
            // Left out, a rule keeps the mode's default approval requirement: replacing
            // STAGING's roles must not quietly drop its approvals.
            let approval = rule
                .approval
                .unwrap_or(Policy::default().rule(mode).approval);
            policy = policy.with_rule(
                mode,
                ModeRule {
                    roles,
                    job_kinds,
                    approval,
                },
            );
        }
        let listen = raw
            .listen
            .map(|l| {
                let address = l.address.parse().map_err(|e| {
                    invalid(format!(
                        "[listen] address: `{}` is not an address and port ({e}); write one like \"0.0.0.0:7443\"",
                        l.address
                    ))
                })?;
                Ok::<_, ConfigError>(Listen {
                    address,
                    certificate: l.tls_certificate,
                    key: l.tls_key,
                })
            })
            .transpose()?;
        Ok(PlatformConfig {
            policy,
            engine_key,
            audit_checkpoint: raw.audit_checkpoint,
            listen,
        })
    }
}

fn parse_job_kind(text: &str) -> Result<JobKind, String> {
    [
        JobKind::Merge,
        JobKind::Preview,
        JobKind::PullRequestPlan,
        JobKind::Drift,
    ]
    .into_iter()
    .find(|k| k.as_str() == text)
    .ok_or_else(|| {
        format!("`{text}` is not a job kind: use merge, preview, pull-request-plan or drift")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<PlatformConfig, ConfigError> {
        PlatformConfig::parse(text, Path::new("platform.toml"))
    }

    #[test]
    fn an_empty_file_is_the_default_policy() {
        let config = parse("").unwrap();
        assert_eq!(config.policy, Policy::default());
        assert!(config.engine_key.is_none());
    }

    #[test]
    fn rules_and_keys_are_read_and_mistakes_named() {
        let key = slipway_provenance::encode_verifying_key(
            &slipway_provenance::SigningKey::from_bytes(&[5u8; 32]).verifying_key(),
        );
        let config = parse(&format!(
            "engine_public_key = \"{key}\"\n[policy.STAGING]\nroles = [\"admin\"]\njobs = [\"merge\"]\n"
        ))
        .unwrap();
        assert!(config.engine_key.is_some());
        assert_eq!(config.policy.rule(Mode::Staging).roles, vec![Role::Admin]);
        assert!(
            config.policy.rule(Mode::Staging).approval,
            "kept by default"
        );
        let open = parse("[policy.STAGING]\njobs = [\"merge\"]\napproval = false\n").unwrap();
        assert!(!open.policy.rule(Mode::Staging).approval);
        for (text, names) in [
            ("[policy.production]\n", "policy.production"),
            ("[policy.STAGING]\nroles = [\"root\"]\n", "roles"),
            ("[policy.STAGING]\njobs = [\"deploy\"]\n", "jobs"),
            ("engine_public_key = \"nope\"\n", "engine_public_key"),
            ("gate = false\n", "gate"),
            (
                "[listen]\naddress = \"nowhere\"\ntls_certificate = \"c\"\ntls_key = \"k\"\n",
                "[listen] address",
            ),
        ] {
            let err = parse(text).unwrap_err().to_string();
            assert!(err.contains(names), "{text}: {err}");
        }
    }
}
