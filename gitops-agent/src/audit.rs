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
use sha2::{Digest, Sha256};

use crate::db::DbError;
pub use crate::records::{AuditRecord, Outcome, PlanSummary, StoredRecord};
use crate::store::AgentTx;

/// The `prev_hash` of the first record.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

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
    tx: &dyn AgentTx,
    key: &SigningKey,
    mut record: AuditRecord,
) -> Result<StoredRecord, DbError> {
    let (seq, prev_hash) = match tx.audit_head()? {
        Some((seq, hash)) => (seq + 1, hash),
        None => (1, GENESIS.to_owned()),
    };
    record.seq = seq;
    let hash = chain_hash(&prev_hash, &record)?;
    let signature = BASE64.encode(key.sign(hash.as_bytes()).to_bytes());
    let stored = StoredRecord {
        record,
        prev_hash,
        hash,
        signature,
    };
    tx.insert_audit(&stored)?;
    Ok(stored)
}

/// Every record, oldest first. Fails on a row whose stored fields were damaged; use
/// [`verify`] to find such rows.
pub fn list(tx: &dyn AgentTx) -> Result<Vec<StoredRecord>, DbError> {
    let mut out = tx
        .audit_rows()?
        .into_iter()
        .map(|row| {
            let record = row
                .record
                .map_err(|e| DbError::Corrupt(format!("audit record {}: {e}", row.seq)))?;
            Ok(StoredRecord {
                record,
                prev_hash: row.prev_hash,
                hash: row.hash,
                signature: row.signature,
            })
        })
        .collect::<Result<Vec<_>, DbError>>()?;
    out.sort_by_key(|r| r.record.seq);
    Ok(out)
}

/// One record by sequence number.
pub fn get(tx: &dyn AgentTx, seq: i64) -> Result<Option<StoredRecord>, DbError> {
    Ok(list(tx)?.into_iter().find(|r| r.record.seq == seq))
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
pub fn verify(tx: &dyn AgentTx, key: Option<&VerifyingKey>) -> Result<Verification, DbError> {
    let mut problems = Vec::new();
    let mut expected_seq = 1i64;
    let mut prev_hash = GENESIS.to_owned();
    let mut count = 0usize;
    for row in tx.audit_rows()? {
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

    /// A log of `n` records, and a raw connection to its file to tamper with.
    struct Log {
        _dir: tempfile::TempDir,
        db: crate::db::Db,
        raw: rusqlite::Connection,
    }

    impl Log {
        fn verify(&self, key: Option<&VerifyingKey>) -> Verification {
            self.db.store().read(|tx| verify(tx, key)).unwrap()
        }

        fn list(&self) -> Vec<StoredRecord> {
            self.db.store().read(list).unwrap()
        }
    }

    fn log_of(n: usize) -> (Log, SigningKey) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.db");
        let db = crate::db::Db::open(&path).unwrap();
        let key = SigningKey::from_bytes(&[3u8; 32]);
        for i in 0..n {
            db.store()
                .write(|tx| append(tx, &key, record(&format!("{i:040}"))))
                .unwrap();
        }
        let raw = rusqlite::Connection::open(&path).unwrap();
        (Log { _dir: dir, db, raw }, key)
    }

    #[test]
    fn an_intact_chain_verifies() {
        let (log, key) = log_of(4);
        let v = log.verify(Some(&key.verifying_key()));
        assert_eq!(v.records, 4);
        assert!(v.problems.is_empty(), "{:?}", v.problems);
        let all = log.list();
        assert_eq!(all[2].prev_hash, all[1].hash);
        assert_eq!(all[3].record.seq, 4);
    }

    #[test]
    fn an_edited_row_is_named() {
        let (log, key) = log_of(4);
        log.raw
            .execute("UPDATE audit SET outcome = 'failed' WHERE seq = 3", [])
            .unwrap();
        let v = log.verify(Some(&key.verifying_key()));
        assert_eq!(v.problems.len(), 1, "{:?}", v.problems);
        assert_eq!(v.problems[0].seq, 3);
        assert!(v.problems[0].message.contains("content edited"));
    }

    #[test]
    fn a_deleted_row_is_found() {
        let (log, key) = log_of(4);
        log.raw
            .execute("DELETE FROM audit WHERE seq = 2", [])
            .unwrap();
        let v = log.verify(Some(&key.verifying_key()));
        assert!(v
            .problems
            .iter()
            .any(|p| p.seq == 3 && p.message.contains("deleted")));
    }

    #[test]
    fn reordered_rows_are_found() {
        let (log, key) = log_of(3);
        log.raw.execute_batch(
            "UPDATE audit SET seq = 100 WHERE seq = 1; UPDATE audit SET seq = 1 WHERE seq = 2; UPDATE audit SET seq = 2 WHERE seq = 100;",
        )
        .unwrap();
        let v = log.verify(Some(&key.verifying_key()));
        assert!(!v.problems.is_empty());
        let seqs: Vec<_> = v.problems.iter().map(|p| p.seq).collect();
        assert!(seqs.contains(&1) && seqs.contains(&2), "{:?}", v.problems);
    }

    #[test]
    fn a_rewritten_chain_fails_the_signature_check() {
        let (log, key) = log_of(2);
        // Re-hash record 2 after editing it, as someone without the key could.
        let mut rec = log.list()[1].clone();
        rec.record.outcome = "failed".into();
        let h = chain_hash(&rec.prev_hash, &rec.record).unwrap();
        log.raw
            .execute(
                "UPDATE audit SET outcome = 'failed', hash = ?1 WHERE seq = 2",
                [h],
            )
            .unwrap();
        let v = log.verify(Some(&key.verifying_key()));
        assert_eq!(v.problems.len(), 1);
        assert!(v.problems[0].message.contains("signature"));
        assert!(log.verify(None).problems.is_empty());
    }
}
