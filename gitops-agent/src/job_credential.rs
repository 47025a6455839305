//! Each job's credential: minted for the job, handed to its provider alone, ended
//! with the job.
//!
//! The platform decides what a Terraform run may change from the credential it
//! presents, not from anything in the repository: the claims bind the repository, the
//! root, the commit, the modes and environments the root's configuration allows, an
//! expiry (the job's deadline) and a job id the platform refuses once the job ended.
//! The credential goes into a file only the agent's user can read, whose path Terraform
//! passes on to the provider (`SLIPWAY_JOB_CREDENTIAL_FILE`); it is never the value of
//! a variable that every process Terraform starts would inherit. When the job ends the
//! file is removed and the platform is told, so a copy is worthless from then on.

use std::path::{Path, PathBuf};
use std::time::Duration;

use slipway_platform::job_ending::JobEnding;

use ed25519_dalek::SigningKey;
use slipway_platform::credential::{self, JobCredential};
use slipway_platform::JobClaims;
use slipway_proto::runtime::local_runtime_client::LocalRuntimeClient;
use slipway_proto::runtime::EndJobRequest;

use crate::config::{Repository, Root};
use crate::queue::Job;

/// The variable naming the file (the provider reads it).
pub const ENV_FILE: &str = "SLIPWAY_JOB_CREDENTIAL_FILE";

/// A minted credential, written to its file.
pub struct Issued {
    pub claims: JobClaims,
    pub credential: JobCredential,
    pub file: PathBuf,
}

/// The claims of `job` (of `root`, at the job's commit), valid for `lifetime`, by the
/// job's kind: a merge may change the root's `modes` and `environments`; a
/// pull-request plan or a drift check changes nothing (it names the merge's modes only so that the
/// plan-time check answers as it will after the merge); a preview, or its teardown,
/// may change PREVIEW environments and nothing else, whatever the root's Terraform
/// code asks for.
pub fn claims(
    repo: &Repository,
    root: &Root,
    job: &Job,
    actor: &str,
    now_ms: i64,
    lifetime: Duration,
) -> Result<JobClaims, getrandom::Error> {
    let mut nonce = [0u8; 6];
    getrandom::fill(&mut nonce)?;
    let nonce: String = nonce.iter().map(|b| format!("{b:02x}")).collect();
    let lifetime_ms = i64::try_from(lifetime.as_millis()).unwrap_or(i64::MAX);
    let (modes, environments, merge_modes) = match job.kind {
        crate::job_kind::JobKind::Merge => (root.modes.clone(), root.environments.clone(), vec![]),
        // A drift check plans what the merge applied: read-only, answered at plan
        // time as the merge was (so a drifted PRODUCTION root plans its repair).
        crate::job_kind::JobKind::PullRequestPlan | crate::job_kind::JobKind::Drift => {
            (vec![], root.environments.clone(), root.modes.clone())
        }
        crate::job_kind::JobKind::Preview
        | crate::job_kind::JobKind::PreviewDestroy
        | crate::job_kind::JobKind::BranchPreview
        | crate::job_kind::JobKind::BranchPreviewDestroy => {
            (vec![slipway_platform::Mode::Preview], vec![], vec![])
        }
    };
    // Asked for over MCP: the platform records the changes under the asker's name.
    let requested_by = (job.trigger == slipway_provenance::Trigger::Mcp).then(|| {
        slipway_platform::credential::RequestedBy {
            identity: actor.to_owned(),
            how: job.trigger.as_str().to_owned(),
            tool: job.kind.mcp_tool().map(str::to_owned),
        }
    });
    Ok(JobClaims {
        // Unique across attempts and agent databases: the ledger keys on it.
        job_id: format!("{}.{}.{nonce}", job.id, job.attempts),
        kind: job.kind.credential_kind(),
        repository: repo.name.clone(),
        root: root.name.clone(),
        commit: job.commit_sha.clone(),
        branch: Some(repo.branch.clone()),
        actor: actor.to_owned(),
        modes,
        environments,
        merge_modes,
        // Set by the runner for an approved merge (crate::approvals).
        approved_by: None,
        teardown: teardown_of(job),
        drift_remediation: job.kind == crate::job_kind::JobKind::Merge
            && job.trigger == slipway_provenance::Trigger::DriftRemediation,
        issued_at_ms: now_ms,
        expires_at_ms: now_ms.saturating_add(lifetime_ms.min(credential::MAX_LIFETIME_MS)),
        requested_by,
    })
}

/// Why a preview teardown job takes its preview down, for the platform's audit record:
/// a TTL's teardown says `ttl`; the rest (closed, merged, found closed by the sweep)
/// `pr-closed`.
fn teardown_of(job: &Job) -> Option<slipway_platform::credential::Teardown> {
    use slipway_platform::credential::Teardown;
    (job.kind == crate::job_kind::JobKind::PreviewDestroy).then_some(match job.trigger {
        slipway_provenance::Trigger::Ttl => Teardown::Ttl,
        _ => Teardown::PrClosed,
    })
}

/// Signs `claims` and writes the credential to `file`, readable by the agent's user
/// only.
pub fn issue(claims: JobClaims, key: &SigningKey, file: PathBuf) -> Result<Issued, IssueError> {
    let credential = credential::mint(&claims, key)?;
    write_private(&file, credential.expose()).map_err(|source| IssueError::File {
        path: file.clone(),
        source,
    })?;
    Ok(Issued {
        claims,
        credential,
        file,
    })
}

/// Why a credential could not be handed to its job.
#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    #[error("mint the job credential: {0}")]
    Mint(#[from] credential::CredentialError),
    #[error("write the job credential file {path}: {source}")]
    File {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Where credential files live: a directory of the agent's user alone, apart from the
/// work trees (which hold the repository's code).
pub fn credentials_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("credentials")
}

/// Removes the credential files a killed agent left behind (their jobs run again
/// with new ones), and leaves the directory private. Call at start-up.
pub fn clean(data_dir: &Path) -> std::io::Result<()> {
    let dir = credentials_dir(data_dir);
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    slipway_platform::store::create_private_dir(&dir)
}

fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let _ = std::fs::remove_file(path);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(text.as_bytes())
}

/// Ends the job: removes the file, and tells the embedded platform (when one runs)
/// how the job ended ([`JobEnding`], signed with the engine's `key`), which records it
/// in its audit log and refuses the credential from now on.
pub async fn end(
    issued: Issued,
    ending: &JobEnding,
    key: &SigningKey,
    platform_socket: Option<PathBuf>,
) {
    let _ = std::fs::remove_file(&issued.file);
    let Some(socket) = platform_socket.filter(|s| s.exists()) else {
        return;
    };
    let job_id = issued.claims.job_id.clone();
    let ended = async {
        let signed = slipway_platform::job_ending::sign(ending, key).map_err(|e| e.to_string())?;
        let channel = slipway_proto::connect_unix(socket)
            .await
            .map_err(|e| e.to_string())?;
        let mut request = tonic::Request::new(EndJobRequest {
            ending: signed.ending,
            signature: signed.signature,
        });
        let mut bearer: tonic::metadata::AsciiMetadataValue =
            format!("Bearer {}", issued.credential.expose())
                .parse()
                .map_err(|_| "the credential is not ASCII".to_owned())?;
        bearer.set_sensitive(true);
        request.metadata_mut().insert("authorization", bearer);
        LocalRuntimeClient::new(channel)
            .end_job(request)
            .await
            .map_err(|e| e.message().to_owned())?;
        Ok::<(), String>(())
    };
    match tokio::time::timeout(Duration::from_secs(10), ended).await {
        Ok(Ok(())) => tracing::debug!(job = %job_id, "the platform ended the job's credential"),
        Ok(Err(e)) => {
            tracing::warn!(job = %job_id, error = %e, "cannot end the job's credential at the platform; it expires at the job's deadline")
        }
        Err(_) => {
            tracing::warn!(job = %job_id, "the platform did not answer in time; the job's credential expires at its deadline")
        }
    }
}

/// The embedded platform's socket as this process's Terraform runs would find it.
pub fn embedded_platform_socket() -> Option<PathBuf> {
    slipway_platform::embedded::default_home(&|name| std::env::var(name).ok())
        .ok()
        .map(|home| slipway_platform::embedded::socket(&home))
}
