//! The platform's audit log: one record per change and per refusal, from every path.
//!
//! Each record's `hash` is SHA-256 over the previous record's hash and the record's
//! JSON (which includes its sequence number), and the hash is signed with the
//! platform's Ed25519 key. Editing a record breaks its hash; deleting or reordering
//! records breaks the sequence and the links; rewriting the chain needs the key.
//! Deleting the *newest* records leaves a shorter chain that is still valid, so every
//! append also writes a signed [`Checkpoint`] of the head to a file kept apart from
//! the database: [`verify`] compares the chain against it.
//!
//! Records name fields, never their values: a changed secret shows as
//! `secrets.API_KEY`, not as what it became.

use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use ed25519_dalek::{Signature, Signer as _, SigningKey, Verifier as _, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

pub use crate::record::{Entry, Outcome, Stored};
use crate::store::{Store, StoreError};

/// The `prev_hash` of the first record.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The signed head of the chain, kept apart from the database.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub seq: i64,
    pub hash: String,
    pub signature: String,
}

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("could not encode an audit record: {0}")]
    Encode(String),
    #[error("audit checkpoint {path}: {source}")]
    Checkpoint {
        path: String,
        source: std::io::Error,
    },
}

fn chain_hash(prev_hash: &str, entry: &Entry) -> Result<String, AuditError> {
    let json = serde_json::to_vec(entry).map_err(|e| AuditError::Encode(e.to_string()))?;
    let mut hasher = Sha256::new();
    hasher.update(prev_hash.as_bytes());
    hasher.update(b"\n");
    hasher.update(&json);
    Ok(hex(&hasher.finalize()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn sign(key: &SigningKey, what: &[u8]) -> String {
    BASE64.encode(key.sign(what).to_bytes())
}

fn signature_ok(key: &VerifyingKey, what: &[u8], signature: &str) -> bool {
    BASE64
        .decode(signature)
        .ok()
        .and_then(|bytes| <[u8; 64]>::try_from(bytes).ok())
        .is_some_and(|bytes| key.verify(what, &Signature::from_bytes(&bytes)).is_ok())
}

fn checkpoint_bytes(seq: i64, hash: &str) -> Vec<u8> {
    format!("slipway-audit-checkpoint\n{seq}\n{hash}").into_bytes()
}

/// The platform's audit log over a [`Store`], signing with the platform's key.
pub struct AuditLog {
    key: SigningKey,
    checkpoint: Option<PathBuf>,
}

impl AuditLog {
    /// `checkpoint` is where the signed head is written after every append (keep it
    /// off the database's disk where you can); `None` writes none.
    pub fn new(key: SigningKey, checkpoint: Option<PathBuf>) -> AuditLog {
        AuditLog { key, checkpoint }
    }

    pub fn verifying_key(&self) -> VerifyingKey {
        self.key.verifying_key()
    }

    /// Where the signed head is written.
    pub fn checkpoint_path(&self) -> Option<&Path> {
        self.checkpoint.as_deref()
    }

    /// Appends `entry` (its `seq` is assigned here). Writers in other processes
    /// sharing the store may append at the same time: a lost race is retried.
    pub fn append(&self, store: &dyn Store, mut entry: Entry) -> Result<Stored, AuditError> {
        let mut attempts = 0;
        loop {
            let (seq, prev_hash) = match store.audit_head()? {
                Some((seq, hash)) => (seq + 1, hash),
                None => (1, GENESIS.to_owned()),
            };
            entry.seq = seq;
            let hash = chain_hash(&prev_hash, &entry)?;
            let stored = Stored {
                signature: sign(&self.key, hash.as_bytes()),
                entry: entry.clone(),
                prev_hash,
                hash,
            };
            match store.insert_audit(&stored) {
                Ok(()) => {
                    self.write_checkpoint(&stored)?;
                    return Ok(stored);
                }
                Err(StoreError::AuditSeqTaken(_)) if attempts < 10 => attempts += 1,
                Err(e) => return Err(e.into()),
            }
        }
    }

    fn write_checkpoint(&self, head: &Stored) -> Result<(), AuditError> {
        let Some(path) = &self.checkpoint else {
            return Ok(());
        };
        let checkpoint = Checkpoint {
            seq: head.entry.seq,
            hash: head.hash.clone(),
            signature: sign(&self.key, &checkpoint_bytes(head.entry.seq, &head.hash)),
        };
        let error = |source| AuditError::Checkpoint {
            path: path.display().to_string(),
            source,
        };
        let json =
            serde_json::to_vec(&checkpoint).map_err(|e| AuditError::Encode(e.to_string()))?;
        // Written whole and renamed, so a crash never leaves half a checkpoint.
        let tmp = path.with_extension("tmp");
        crate::store::create_private_file(&tmp).map_err(error)?;
        std::fs::write(&tmp, json).map_err(error)?;
        std::fs::rename(&tmp, path).map_err(error)
    }
}

/// Reads a checkpoint file; `Ok(None)` when there is none yet.
pub fn read_checkpoint(path: &Path) -> Result<Option<Checkpoint>, AuditError> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| AuditError::Encode(format!("{}: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(AuditError::Checkpoint {
            path: path.display().to_string(),
            source,
        }),
    }
}

/// What [`verify`] found: every problem, by record.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Verification {
    pub records: usize,
    pub problems: Vec<String>,
    /// What the chain's end was checked against, for people.
    pub head_checked_against: String,
}

impl Verification {
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Checks every record's hash, link, sequence and signature, and the head against the
/// checkpoint when one is given.
pub fn verify(
    records: &[Stored],
    key: &VerifyingKey,
    checkpoint: Option<&Checkpoint>,
) -> Verification {
    let mut v = Verification {
        records: records.len(),
        ..Verification::default()
    };
    let mut prev = GENESIS.to_owned();
    for (i, r) in records.iter().enumerate() {
        let expected_seq = i as i64 + 1;
        let seq = r.entry.seq;
        if seq != expected_seq {
            v.problems.push(format!(
                "record {seq}: expected sequence number {expected_seq} (a record was deleted or moved)"
            ));
        }
        if r.prev_hash != prev {
            v.problems.push(format!(
                "record {seq}: does not link to the record before it"
            ));
        }
        match chain_hash(&r.prev_hash, &r.entry) {
            Ok(hash) if hash == r.hash => {}
            _ => v.problems.push(format!(
                "record {seq}: its contents do not match its hash (edited)"
            )),
        }
        if !signature_ok(key, r.hash.as_bytes(), &r.signature) {
            v.problems
                .push(format!("record {seq}: the signature is not the platform's"));
        }
        prev = r.hash.clone();
    }
    match checkpoint {
        None => {
            v.head_checked_against =
                "nothing: no checkpoint was given, so deleted newest records would go unnoticed"
                    .into()
        }
        Some(c) => {
            v.head_checked_against = format!("the signed checkpoint of record {}", c.seq);
            if !signature_ok(key, &checkpoint_bytes(c.seq, &c.hash), &c.signature) {
                v.problems
                    .push("the checkpoint's signature is not the platform's".into());
            }
            match records.iter().find(|r| r.entry.seq == c.seq) {
                Some(r) if r.hash == c.hash => {}
                Some(_) => v.problems.push(format!(
                    "record {}: differs from the checkpoint (the log was rewritten)",
                    c.seq
                )),
                None => v.problems.push(format!(
                    "the log ends at record {} but the checkpoint names record {}: newest records were deleted",
                    records.len(),
                    c.seq
                )),
            }
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::SqliteStore;

    fn entry(who: &str) -> Entry {
        Entry {
            seq: 0,
            at_ms: 1_764_000_000_000,
            who: who.into(),
            how: "terraform-apply".into(),
            action: "update".into(),
            object: "application prod/web".into(),
            environment: "prod".into(),
            mode: "PRODUCTION".into(),
            fields: vec!["secrets.API_KEY".into()],
            outcome: Outcome::Refused,
            reason: Some("mode-closed-to-role: ...".into()),
            repository: None,
            commit: None,
            job_id: None,
            actor: None,
            tool: None,
            approved_by: None,
        }
    }

    fn log(dir: &Path) -> AuditLog {
        AuditLog::new(
            SigningKey::from_bytes(&[9u8; 32]),
            Some(dir.join("audit.checkpoint")),
        )
    }

    #[test]
    fn a_chain_verifies_and_an_edit_a_deletion_or_a_truncation_is_caught() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::in_memory().unwrap();
        let audit = log(dir.path());
        for who in ["alice", "bob", "job:7", "carol"] {
            audit.append(&store, entry(who)).unwrap();
        }
        let key = audit.verifying_key();
        let records = store.audit_records().unwrap();
        let checkpoint = read_checkpoint(&dir.path().join("audit.checkpoint"))
            .unwrap()
            .unwrap();
        assert_eq!(checkpoint.seq, 4);
        let ok = verify(&records, &key, Some(&checkpoint));
        assert!(ok.ok(), "{:?}", ok.problems);
        assert_eq!(ok.records, 4);

        let mut edited = records.clone();
        edited[1].entry.who = "mallory".into();
        assert!(verify(&edited, &key, Some(&checkpoint)).problems[0].contains("record 2"));

        let mut deleted = records.clone();
        deleted.remove(1);
        assert!(!verify(&deleted, &key, Some(&checkpoint)).ok());

        // The newest record gone: the chain alone still verifies, the checkpoint not.
        let truncated = records[..3].to_vec();
        assert!(verify(&truncated, &key, None).ok());
        let v = verify(&truncated, &key, Some(&checkpoint));
        assert!(
            v.problems
                .iter()
                .any(|p| p.contains("newest records were deleted")),
            "{:?}",
            v.problems
        );

        let other = SigningKey::from_bytes(&[8u8; 32]).verifying_key();
        assert!(!verify(&records, &other, None).ok());
    }
}
