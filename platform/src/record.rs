//! One audit record, as the log hashes it and the store keeps it. Apart from
//! [`crate::audit`], which chains, signs and verifies records through a
//! [`crate::Store`], so that the store can name the record without importing the log.

use serde::{Deserialize, Serialize};

/// Whether the change was made or refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Applied,
    Refused,
    Failed,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Applied => "applied",
            Outcome::Refused => "refused",
            Outcome::Failed => "failed",
        }
    }
}

/// One audit record. Field order is part of the hash: append new fields at the end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub seq: i64,
    /// UTC, milliseconds since the Unix epoch.
    pub at_ms: i64,
    /// The identity's name, or `job:<id>` for a job credential.
    pub who: String,
    /// `git-merge`, `pr-preview`, `pr-closed`, `ttl`, `terraform-apply`, `api`, `cli`, `mcp`, ...
    pub how: String,
    /// `create`, `update`, `delete`, `import`, `change-mode`, ...
    pub action: String,
    /// What was changed: `environment prod`, `application prod/web`.
    pub object: String,
    pub environment: String,
    pub mode: String,
    /// The fields that changed (names only, never values).
    pub fields: Vec<String>,
    pub outcome: Outcome,
    /// For a refusal or a failure: its stable code and its message.
    pub reason: Option<String>,
    pub repository: Option<String>,
    pub commit: Option<String>,
    pub job_id: Option<String>,
    /// Who merged or pushed, for a job's change.
    pub actor: Option<String>,
    /// The MCP tool the change came through (`deploy_application`), when it came over
    /// MCP. Like `how`, it describes the call and decides nothing. Absent from older
    /// records (and left out when empty), so their hashes are unchanged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool: Option<String>,
    /// Who approved the job's change, when its credential carries an approval (a
    /// STAGING merge). Absent from older records and from unapproved changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approved_by: Option<String>,
}

/// A record as stored, with its chain fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stored {
    #[serde(flatten)]
    pub entry: Entry,
    pub prev_hash: String,
    pub hash: String,
    pub signature: String,
}
