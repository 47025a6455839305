//! The append-only, tamper-evident audit log: one record per job outcome.
//!
//! Each record's `hash` is SHA-256 over the previous record's hash and the record's
//! canonical JSON (which includes its sequence number), and is signed with the agent's
//! Ed25519 key. So editing a row breaks its own hash; deleting or reordering rows breaks
//! the sequence and the `prev_hash` links; and rewriting the whole chain to hide an edit
//! needs the agent's private key. [`verify`] checks all three and names every row at
//! fault. (Removing records from the *end* of the log is only detectable against a
//! copy of an earlier head, e.g. one taken with `audit export`.)

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use ed25519_dalek::{Signature, Signer as _, SigningKey, Verifier as _, VerifyingKey};
use rusqlite::{params, Connection, OptionalExtension, Row};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::db::DbError;

/// The `prev_hash` of the first record.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// How a job ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Succeeded,
    Failed,
    Skipped,
    Superseded,
    Interrupted,
    /// An approver approved the job's change (it runs next; its own record follows).
    Approved,
    /// An approval was refused (the author's own, or not an approver's); the job
    /// still waits.
    ApprovalRefused,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Succeeded => "succeeded",
            Outcome::Failed => "failed",
            Outcome::Skipped => "skipped",
            Outcome::Superseded => "superseded",
            Outcome::Interrupted => "interrupted",
            Outcome::Approved => "approved",
            Outcome::ApprovalRefused => "approval-refused",
        }
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Outcome {
    type Err = crate::job_kind::UnknownValue;
    fn from_str(s: &str) -> Result<Outcome, Self::Err> {
        [
            Outcome::Succeeded,
            Outcome::Failed,
            Outcome::Skipped,
            Outcome::Superseded,
            Outcome::Interrupted,
        ]
        .into_iter()
        .find(|o| o.as_str() == s)
        .ok_or_else(|| crate::job_kind::UnknownValue {
            what: "outcome",
            value: s.to_owned(),
        })
    }
}

/// What a plan would do: counts as Terraform reports them (a replacement counts as
/// one add and one destroy) and the resource addresses.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanSummary {
    pub add: u64,
    pub change: u64,
    pub destroy: u64,
    pub to_add: Vec<String>,
    pub to_change: Vec<String>,
    pub to_destroy: Vec<String>,
    /// The destroyed addresses that are in a PRODUCTION environment (an environment
    /// whose `mode` is PRODUCTION, or what lives in one), called out on pull requests.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub production_destroys: Vec<String>,
}

impl PlanSummary {
    /// Whether the plan changes anything (for a drift check: drift).
    pub fn has_changes(&self) -> bool {
        self.add + self.change + self.destroy > 0
    }

    /// `2 to add, 0 to change, 1 to destroy`, or `no changes`.
    pub fn counts(&self) -> String {
        if !self.has_changes() {
            "no changes".to_owned()
        } else {
            format!(
                "{} to add, {} to change, {} to destroy",
                self.add, self.change, self.destroy
            )
        }
    }
}

/// One audit record. Field order is part of the hash: do not reorder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    pub seq: i64,
    pub job_id: Option<i64>,
    /// webhook, poll, manual or api.
    pub trigger: String,
    pub delivery_id: Option<String>,
    pub repository: String,
    pub root: String,
    pub branch: String,
    pub commit_sha: String,
    /// Every commit this record stands for, its own included, oldest job first.
    pub covered_commits: Vec<String>,
    pub pull_request: Option<u64>,
    /// Who merged the pull request, pushed, or triggered the deploy.
    pub merged_by: Option<String>,
    /// The commit's author, `Name <email>`.
    pub author: Option<String>,
    pub started_at: String,
    pub ended_at: String,
    /// succeeded, failed, skipped, superseded or interrupted.
    pub outcome: String,
    pub plan_summary: Option<PlanSummary>,
    pub error: Option<String>,
    pub terraform_version: Option<String>,
    /// The job's kind (`pr-plan`, `preview`, `preview-destroy`); absent for a merge,
    /// so records made before kinds existed hash as they did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// The MCP tool the job was asked for through (`deploy_branch_preview`); then
    /// `merged_by` is the asking identity and `trigger` is `mcp`. Absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool: Option<String>,
    /// Who approved the job's change (an approver's identity), for a root that
    /// requires approval; absent otherwise, so older records hash as they did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approved_by: Option<String>,
}

/// A record as stored, with its chain fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredRecord {
    #[serde(flatten)]
    pub record: AuditRecord,
    pub prev_hash: String,
    pub hash: String,
    pub signature: String,
}

fn chain_hash(prev_hash: &str, record: &AuditRecord) -> Result<String, DbError> {
    let json = serde_json::to_vec(record).map_err(|e| DbError::Corrupt(e.to_string()))?;
    let mut hasher = Sha256::new();
    hasher.update(prev_hash.as_bytes());
    hasher.update(b"\n");
    hasher.update(&json);
    Ok(hex::encode(hasher.finalize()))
}

/// Appends `record` (its `seq` is assigned here) inside the caller's transaction, so
/// the record commits together with the job state it describes.
pub fn append(
    tx: &Connection,
    key: &SigningKey,
    mut record: AuditRecord,
) -> Result<StoredRecord, DbError> {
    let last: Option<(i64, String)> = tx
        .query_row(
            "SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    let (seq, prev_hash) = match last {
        Some((seq, hash)) => (seq + 1, hash),
        None => (1, GENESIS.to_owned()),
    };
    record.seq = seq;
    let hash = chain_hash(&prev_hash, &record)?;
    let signature = BASE64.encode(key.sign(hash.as_bytes()).to_bytes());
    let covered = serde_json::to_string(&record.covered_commits)
        .map_err(|e| DbError::Corrupt(e.to_string()))?;
    let plan = record
        .plan_summary
        .as_ref()
        .map(serde_json::to_string)
        .transpose()
        .map_err(|e| DbError::Corrupt(e.to_string()))?;
    tx.execute(
        "INSERT INTO audit (seq, job_id, trigger, delivery_id, repository, root, branch, commit_sha,
            covered_commits, pull_request, merged_by, author, started_at, ended_at, outcome,
            plan_summary, error, terraform_version, prev_hash, hash, signature, kind, tool, approved_by)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24)",
        params![
            record.seq,
            record.job_id,
            record.trigger,
            record.delivery_id,
            record.repository,
            record.root,
            record.branch,
            record.commit_sha,
            covered,
            record.pull_request.map(|n| n as i64),
            record.merged_by,
            record.author,
            record.started_at,
            record.ended_at,
            record.outcome,
            plan,
            record.error,
            record.terraform_version,
            prev_hash,
            hash,
            signature,
            record.kind,
            record.tool,
            record.approved_by,
        ],
    )?;
    Ok(StoredRecord {
        record,
        prev_hash,
        hash,
        signature,
    })
}

const SELECT: &str =
    "SELECT seq, job_id, trigger, delivery_id, repository, root, branch, commit_sha,
    covered_commits, pull_request, merged_by, author, started_at, ended_at, outcome,
    plan_summary, error, terraform_version, prev_hash, hash, signature, kind, tool, approved_by FROM audit";

/// A row read without trusting it: JSON columns that no longer parse are reported by
/// [`verify`] rather than aborting the read.
struct RawRow {
    seq: i64,
    record: Result<AuditRecord, String>,
    prev_hash: String,
    hash: String,
    signature: String,
}

fn raw_row(r: &Row<'_>) -> rusqlite::Result<RawRow> {
    let covered: String = r.get(8)?;
    let plan: Option<String> = r.get(15)?;
    let pull_request: Option<i64> = r.get(9)?;
    let parsed = (|| -> Result<AuditRecord, String> {
        let covered_commits: Vec<String> =
            serde_json::from_str(&covered).map_err(|e| format!("covered_commits: {e}"))?;
        let plan_summary = plan
            .as_deref()
            .map(serde_json::from_str::<PlanSummary>)
            .transpose()
            .map_err(|e| format!("plan_summary: {e}"))?;
        let pull_request = pull_request
            .map(u64::try_from)
            .transpose()
            .map_err(|e| format!("pull_request: {e}"))?;
        Ok(AuditRecord {
            seq: r.get(0).map_err(|e| e.to_string())?,
            job_id: r.get(1).map_err(|e| e.to_string())?,
            trigger: r.get(2).map_err(|e| e.to_string())?,
            delivery_id: r.get(3).map_err(|e| e.to_string())?,
            repository: r.get(4).map_err(|e| e.to_string())?,
            root: r.get(5).map_err(|e| e.to_string())?,
            branch: r.get(6).map_err(|e| e.to_string())?,
            commit_sha: r.get(7).map_err(|e| e.to_string())?,
            covered_commits,
            pull_request,
            merged_by: r.get(10).map_err(|e| e.to_string())?,
            author: r.get(11).map_err(|e| e.to_string())?,
            started_at: r.get(12).map_err(|e| e.to_string())?,
            ended_at: r.get(13).map_err(|e| e.to_string())?,
            outcome: r.get(14).map_err(|e| e.to_string())?,
            plan_summary,
            error: r.get(16).map_err(|e| e.to_string())?,
            terraform_version: r.get(17).map_err(|e| e.to_string())?,
            kind: r.get(21).map_err(|e| e.to_string())?,
            tool: r.get(22).map_err(|e| e.to_string())?,
            approved_by: r.get(23).map_err(|e| e.to_string())?,
        })
    })();
    Ok(RawRow {
        seq: r.get(0)?,
        record: parsed,
        prev_hash: r.get(18)?,
        hash: r.get(19)?,
        signature: r.get(20)?,
    })
}

/// Every record, oldest first. Fails on a row whose JSON columns were damaged; use
/// [`verify`] to find such rows.
pub fn list(conn: &Connection) -> Result<Vec<StoredRecord>, DbError> {
    let mut stmt = conn.prepare(&format!("{SELECT} ORDER BY seq"))?;
    let rows = stmt.query_map([], raw_row)?;
    let mut out = Vec::new();
    for row in rows {
        let row = row?;
        let record = row
            .record
            .map_err(|e| DbError::Corrupt(format!("audit record {}: {e}", row.seq)))?;
        out.push(StoredRecord {
            record,
            prev_hash: row.prev_hash,
            hash: row.hash,
            signature: row.signature,
        });
    }
    Ok(out)
}

/// One record by sequence number.
pub fn get(conn: &Connection, seq: i64) -> Result<Option<StoredRecord>, DbError> {
    Ok(list(conn)?.into_iter().find(|r| r.record.seq == seq))
}

/// One thing wrong with the log, naming the record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub seq: i64,
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "record {}: {}", self.seq, self.message)
    }
}

/// The result of [`verify`].
#[derive(Debug, Clone)]
pub struct Verification {
    pub records: usize,
    pub head: Option<String>,
    pub signatures_checked: bool,
    pub problems: Vec<Problem>,
}

/// Checks the whole chain: sequence numbers without gaps, each `prev_hash` equal to
/// the hash before it, each hash matching its content, and — when `key` is given —
/// each signature.
pub fn verify(conn: &Connection, key: Option<&VerifyingKey>) -> Result<Verification, DbError> {
    let mut stmt = conn.prepare(&format!("{SELECT} ORDER BY rowid"))?;
    let rows = stmt.query_map([], raw_row)?;
    let mut problems = Vec::new();
    let mut expected_seq = 1i64;
    let mut prev_hash = GENESIS.to_owned();
    let mut count = 0usize;
    for row in rows {
        let row = row?;
        count += 1;
        let seq = row.seq;
        let mut push = |message: String| problems.push(Problem { seq, message });
        if seq != expected_seq {
            if seq > expected_seq {
                push(format!(
                    "expected record {expected_seq} here: record(s) {expected_seq}..{} were deleted",
                    seq - 1
                ));
            } else {
                push(format!(
                    "out of order: came after record {}",
                    expected_seq - 1
                ));
            }
        }
        if row.prev_hash != prev_hash {
            push("prev_hash does not match the hash of the record before it: a record before it was deleted, reordered or rewritten".into());
        }
        match &row.record {
            Err(e) => push(format!("content edited: {e}")),
            Ok(record) => match chain_hash(&row.prev_hash, record) {
                Ok(h) if h == row.hash => {}
                _ => push("content edited: its fields no longer match its hash".into()),
            },
        }
        if let Some(key) = key {
            let valid = BASE64
                .decode(&row.signature)
                .ok()
                .and_then(|b| Signature::from_slice(&b).ok())
                .is_some_and(|sig| key.verify(row.hash.as_bytes(), &sig).is_ok());
            if !valid {
                push(
                    "signature does not verify with the agent's key: the hash was rewritten".into(),
                );
            }
        }
        prev_hash = row.hash.clone();
        expected_seq = seq.max(expected_seq) + 1;
    }
    Ok(Verification {
        records: count,
        head: (count > 0).then_some(prev_hash),
        signatures_checked: key.is_some(),
        problems,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(commit: &str) -> AuditRecord {
        AuditRecord {
            seq: 0,
            job_id: Some(1),
            trigger: "webhook".into(),
            delivery_id: Some("d-1".into()),
            repository: "acme/infra".into(),
            root: "prod".into(),
            branch: "main".into(),
            commit_sha: commit.into(),
            covered_commits: vec![commit.into()],
            pull_request: Some(7),
            merged_by: Some("octocat".into()),
            author: Some("Mona <mona@example.com>".into()),
            started_at: "2026-11-22T10:00:00.000Z".into(),
            ended_at: "2026-11-22T10:00:01.500Z".into(),
            outcome: Outcome::Succeeded.as_str().into(),
            plan_summary: Some(PlanSummary {
                add: 1,
                to_add: vec!["terraform_data.x".into()],
                ..Default::default()
            }),
            error: None,
            terraform_version: Some("1.11.4".into()),
            kind: None,
            tool: None,
            approved_by: None,
        }
    }

    fn log_of(n: usize) -> (tempfile::TempDir, Connection, SigningKey) {
        let dir = tempfile::tempdir().unwrap();
        let conn = crate::db::open(&dir.path().join("a.db")).unwrap();
        let key = SigningKey::from_bytes(&[3u8; 32]);
        for i in 0..n {
            append(&conn, &key, record(&format!("{i:040}"))).unwrap();
        }
        (dir, conn, key)
    }

    #[test]
    fn an_intact_chain_verifies() {
        let (_d, conn, key) = log_of(4);
        let v = verify(&conn, Some(&key.verifying_key())).unwrap();
        assert_eq!(v.records, 4);
        assert!(v.problems.is_empty(), "{:?}", v.problems);
        let all = list(&conn).unwrap();
        assert_eq!(all[2].prev_hash, all[1].hash);
        assert_eq!(all[3].record.seq, 4);
    }

    #[test]
    fn an_edited_row_is_named() {
        let (_d, conn, key) = log_of(4);
        conn.execute("UPDATE audit SET outcome = 'failed' WHERE seq = 3", [])
            .unwrap();
        let v = verify(&conn, Some(&key.verifying_key())).unwrap();
        assert_eq!(v.problems.len(), 1, "{:?}", v.problems);
        assert_eq!(v.problems[0].seq, 3);
        assert!(v.problems[0].message.contains("content edited"));
    }

    #[test]
    fn a_deleted_row_is_found() {
        let (_d, conn, key) = log_of(4);
        conn.execute("DELETE FROM audit WHERE seq = 2", []).unwrap();
        let v = verify(&conn, Some(&key.verifying_key())).unwrap();
        assert!(v
            .problems
            .iter()
            .any(|p| p.seq == 3 && p.message.contains("deleted")));
    }

    #[test]
    fn reordered_rows_are_found() {
        let (_d, conn, key) = log_of(3);
        conn.execute_batch(
            "UPDATE audit SET seq = 100 WHERE seq = 1; UPDATE audit SET seq = 1 WHERE seq = 2; UPDATE audit SET seq = 2 WHERE seq = 100;",
        )
        .unwrap();
        let v = verify(&conn, Some(&key.verifying_key())).unwrap();
        assert!(!v.problems.is_empty());
        let seqs: Vec<_> = v.problems.iter().map(|p| p.seq).collect();
        assert!(seqs.contains(&1) && seqs.contains(&2), "{:?}", v.problems);
    }

    #[test]
    fn a_rewritten_chain_fails_the_signature_check() {
        let (_d, conn, key) = log_of(2);
        // Re-hash record 2 after editing it, as someone without the key could.
        let mut rec = list(&conn).unwrap()[1].clone();
        rec.record.outcome = "failed".into();
        let h = chain_hash(&rec.prev_hash, &rec.record).unwrap();
        conn.execute(
            "UPDATE audit SET outcome = 'failed', hash = ?1 WHERE seq = 2",
            [h],
        )
        .unwrap();
        let v = verify(&conn, Some(&key.verifying_key())).unwrap();
        assert_eq!(v.problems.len(), 1);
        assert!(v.problems[0].message.contains("signature"));
        assert!(verify(&conn, None).unwrap().problems.is_empty());
    }
}
