//! A deploy request (`POST /api/v1/deploy`, `slipway-agent deploy`): checked against
//! the configuration and resolved to the jobs it asks for.

use serde::Deserialize;
use slipway_provenance::Trigger;

use crate::config::{Config, Secret};
use crate::queue::NewJobs;

/// A deploy request, from the API or the CLI.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeployRequest {
    /// The configured repository name.
    pub repository: String,
    /// Roots to deploy; all of the repository's when empty.
    #[serde(default)]
    pub roots: Vec<String>,
    /// The full commit SHA; the tracked branch's current tip when absent.
    pub commit: Option<String>,
    /// Who asked, for the audit log. Set by the CLI (the local user); over HTTP it
    /// is refused, because there who asked is the token's identity.
    pub actor: Option<String>,
}

/// Why a deploy request cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    /// The request names something the configuration does not have, or a malformed
    /// commit: the caller's to fix. The message names the field.
    #[error("{0}")]
    Invalid(String),
    /// The tracked branch's tip could not be read from the remote.
    #[error(transparent)]
    Remote(#[from] crate::git::GitError),
}

/// Checks a deploy request against the configuration and resolves the commit, giving
/// jobs ready to store. Blocks (it may contact the git remote).
pub fn resolve(
    config: &Config,
    request: &DeployRequest,
    trigger: Trigger,
    git_token: Option<&Secret>,
) -> Result<NewJobs, DeployError> {
    let repo = config.repository(&request.repository).ok_or_else(|| {
        DeployError::Invalid(format!(
            "repository: `{}` is not configured (configured: {})",
            request.repository,
            config
                .repositories
                .iter()
                .map(|r| r.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))
    })?;
    let roots = if request.roots.is_empty() {
        repo.roots.iter().map(|r| r.name.clone()).collect()
    } else {
        for name in &request.roots {
            if !repo.roots.iter().any(|r| &r.name == name) {
                return Err(DeployError::Invalid(format!(
                    "roots: `{name}` is not a root of {} (roots: {})",
                    repo.name,
                    repo.roots
                        .iter()
                        .map(|r| r.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
        }
        request.roots.clone()
    };
    let commit = match &request.commit {
        Some(c) => {
            if c.len() != 40 || !c.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(DeployError::Invalid(format!(
                    "commit: `{c}` is not a full 40-character commit SHA"
                )));
            }
            c.to_ascii_lowercase()
        }
        None => crate::git::remote_tip(&repo.url, &repo.branch, git_token)?,
    };
    let mut jobs = NewJobs::merge(
        None,
        repo.name.clone(),
        repo.branch.clone(),
        commit,
        trigger,
        None,
        request.actor.clone(),
        roots,
    );
    // Who asks for a deploy may not approve it.
    jobs.authors = request.actor.iter().cloned().collect();
    Ok(jobs)
}
