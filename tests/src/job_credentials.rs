//! Job credentials as slipway-agent mints them, for tests that play the GitOps engine
//! against a platform (`platform_e2e`, `kubernetes_platform_e2e`).

use std::path::{Path, PathBuf};

use slipway_platform::{JobClaims, JobKind, Mode};
use slipway_provenance::SigningKey;

/// The commit every test job deploys.
pub const COMMIT: &str = "4f2c1d9e8b7a6f5e4d3c2b1a09f8e7d6c5b4a392";

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_millis() as i64
}

/// Claims of job `job` of `kind` on root `acme/infra` `infra` at [`COMMIT`], for
/// `modes`, valid for ten minutes.
pub fn claims(job: &str, kind: JobKind, modes: &[Mode]) -> JobClaims {
    JobClaims {
        job_id: job.into(),
        kind,
        repository: "acme/infra".into(),
        root: "infra".into(),
        commit: COMMIT.into(),
        branch: Some("main".into()),
        actor: "octocat".into(),
        modes: modes.to_vec(),
        environments: vec![],
        merge_modes: vec![],
        approved_by: None,
        teardown: None,
        drift_remediation: false,
        issued_at_ms: now_ms(),
        expires_at_ms: now_ms() + 10 * 60 * 1000,
        requested_by: None,
    }
}

/// Writes a credential file (mode 0600) in `dir` as slipway-agent does; returns its
/// path and the credential.
pub fn credential_file(dir: &Path, claims: &JobClaims, key: &SigningKey) -> (PathBuf, String) {
    use std::os::unix::fs::PermissionsExt as _;
    let credential = slipway_platform::credential::mint(claims, key).expect("mint");
    let path = dir.join(format!("credential-{}", claims.job_id));
    std::fs::write(&path, credential.expose()).expect("write the credential");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
        .expect("restrict the credential");
    (path, credential.expose().to_owned())
}
