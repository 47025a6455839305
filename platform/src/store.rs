//! What the authority keeps: identities and the job-credential ledger, behind one
//! trait so that the embedded SQLite store and a shared PostgreSQL one are
//! interchangeable.

use std::fs::OpenOptions;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use rusqlite::{params, Connection, OptionalExtension as _};

use crate::identity::{Identity, Role, TokenDigest};
use crate::record::{Entry, Stored};

/// Why the store could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("an identity named `{0}` already exists: revoke it first, or choose another name")]
    NameTaken(String),
    #[error("no identity is named `{0}`")]
    NoSuchIdentity(String),
    #[error("the platform database holds a role this build does not know: `{0}`")]
    UnknownRole(String),
    #[error("audit record {0} was written by another writer first")]
    AuditSeqTaken(i64),
    #[error("the platform database holds a record this build cannot read: {0}")]
    Corrupt(String),
    #[error("platform database: {0}")]
    Database(#[from] rusqlite::Error),
    #[error("platform database file {path}: {source}")]
    File {
        path: String,
        source: std::io::Error,
    },
}

/// One identity as listed: never its token, which is not kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityRecord {
    pub identity: Identity,
    pub created_at_ms: i64,
    pub revoked_at_ms: Option<i64>,
}

/// Where a job stands in the ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobStanding {
    /// Seen before or just now, and not ended: its credential is accepted.
    Running,
    /// The engine said it ended: its credential is refused from now on.
    Ended,
}

/// The platform's state. Implementations must be safe to share between threads.
pub trait Store: Send + Sync {
    /// Adds an identity whose token has `digest`. Names are unique among identities
    /// that are not revoked.
    fn create_identity(
        &self,
        identity: &Identity,
        digest: &TokenDigest,
        now_ms: i64,
    ) -> Result<(), StoreError>;

    /// The identity whose token has this digest, unless it was revoked.
    fn identity_by_digest(&self, digest: &TokenDigest) -> Result<Option<Identity>, StoreError>;

    /// Every identity, revoked ones too, oldest first.
    fn list_identities(&self) -> Result<Vec<IdentityRecord>, StoreError>;

    /// Revokes the live identity called `name`: its token stops working at once.
    fn revoke_identity(&self, name: &str, now_ms: i64) -> Result<(), StoreError>;

    /// Records that a credential of `job_id` was presented, and says whether the job
    /// is still running.
    fn job_presented(&self, job_id: &str, now_ms: i64) -> Result<JobStanding, StoreError>;

    /// Marks a job ended: its credential is refused from now on, even before expiry.
    fn end_job(&self, job_id: &str, now_ms: i64) -> Result<(), StoreError>;

    /// The newest audit record's sequence number and hash.
    fn audit_head(&self) -> Result<Option<(i64, String)>, StoreError>;

    /// Adds an audit record; [`StoreError::AuditSeqTaken`] when its sequence number is
    /// already used (another writer won the race: read the head again).
    fn insert_audit(&self, record: &Stored) -> Result<(), StoreError>;

    /// Every audit record, oldest first.
    fn audit_records(&self) -> Result<Vec<Stored>, StoreError>;
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS identities (
    id            INTEGER PRIMARY KEY,
    name          TEXT NOT NULL,
    role          TEXT NOT NULL,
    token_sha256  BLOB NOT NULL UNIQUE,
    created_at_ms INTEGER NOT NULL,
    revoked_at_ms INTEGER
);
CREATE UNIQUE INDEX IF NOT EXISTS identities_live_name
    ON identities(name) WHERE revoked_at_ms IS NULL;
CREATE TABLE IF NOT EXISTS job_ledger (
    job_id        TEXT PRIMARY KEY,
    first_seen_ms INTEGER NOT NULL,
    ended_at_ms   INTEGER
);
CREATE TABLE IF NOT EXISTS audit (
    seq       INTEGER PRIMARY KEY,
    record    TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash      TEXT NOT NULL,
    signature TEXT NOT NULL
);
";

/// Creates `path` (when missing) readable and writable by its owner only, and makes
/// an existing one so. Databases are created through this before SQLite opens them, so
/// that they are never, even for a moment, readable by others; SQLite gives its -wal
/// and -shm files the same mode.
///
/// An existing file is never opened here: closing any descriptor of a file releases
/// every POSIX lock this process holds on it, which would pull the locks out from
/// under SQLite connections already open on it (SQLite's "disk I/O error").
pub fn create_private_file(path: &Path) -> std::io::Result<()> {
    match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        }
        Err(e) => Err(e),
    }
}

/// Creates `dir` and its missing parents, and makes `dir` itself owner-only (0700):
/// it holds databases, job logs and work trees.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt as _;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}

/// The embedded store: one SQLite file, readable by its owner only.
pub struct SqliteStore {
    connection: Mutex<Connection>,
}

impl SqliteStore {
    /// Opens (creating when missing) the database at `path`, mode 0600.
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        let file_error = |source| StoreError::File {
            path: path.display().to_string(),
            source,
        };
        // Create the file ourselves so that it is never, even for a moment, readable by
        // others; SQLite gives its -wal and -shm files the same mode.
        OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path)
            .map_err(file_error)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .map_err(file_error)?;
        let connection = Connection::open(path)?;
        connection.busy_timeout(std::time::Duration::from_secs(5))?;
        connection.pragma_update(None, "journal_mode", "WAL")?;
        connection.pragma_update(None, "synchronous", "FULL")?;
        connection.execute_batch(SCHEMA)?;
        Ok(SqliteStore {
            connection: Mutex::new(connection),
        })
    }

    /// An in-memory store, for tests and for a platform that keeps nothing.
    pub fn in_memory() -> Result<SqliteStore, StoreError> {
        let connection = Connection::open_in_memory()?;
        connection.execute_batch(SCHEMA)?;
        Ok(SqliteStore {
            connection: Mutex::new(connection),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves SQLite consistent (each call is one
        // statement or transaction), so the poison carries no meaning here.
        self.connection.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn parse_role(text: String) -> Result<Role, StoreError> {
    text.parse().map_err(|_| StoreError::UnknownRole(text))
}

impl Store for SqliteStore {
    fn create_identity(
        &self,
        identity: &Identity,
        digest: &TokenDigest,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let result = self.lock().execute(
            "INSERT INTO identities (name, role, token_sha256, created_at_ms) VALUES (?1, ?2, ?3, ?4)",
            params![identity.name, identity.role.as_str(), &digest.0[..], now_ms],
        );
        match result {
            Ok(_) => Ok(()),
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                Err(StoreError::NameTaken(identity.name.clone()))
            }
            Err(e) => Err(e.into()),
        }
    }

    fn identity_by_digest(&self, digest: &TokenDigest) -> Result<Option<Identity>, StoreError> {
        let row = self
            .lock()
            .query_row(
                "SELECT name, role FROM identities WHERE token_sha256 = ?1 AND revoked_at_ms IS NULL",
                params![&digest.0[..]],
                |row| Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?)),
            )
            .optional()?;
        row.map(|(name, role)| {
            Ok(Identity {
                name,
                role: parse_role(role)?,
            })
        })
        .transpose()
    }

    fn list_identities(&self) -> Result<Vec<IdentityRecord>, StoreError> {
        let connection = self.lock();
        let mut statement = connection.prepare(
            "SELECT name, role, created_at_ms, revoked_at_ms FROM identities ORDER BY id",
        )?;
        let rows = statement.query_map([], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, i64>(2)?,
                row.get::<_, Option<i64>>(3)?,
            ))
        })?;
        let mut records = Vec::new();
        for row in rows {
            let (name, role, created_at_ms, revoked_at_ms) = row?;
            records.push(IdentityRecord {
                identity: Identity {
                    name,
                    role: parse_role(role)?,
                },
                created_at_ms,
                revoked_at_ms,
            });
        }
        Ok(records)
    }

    fn revoke_identity(&self, name: &str, now_ms: i64) -> Result<(), StoreError> {
        let changed = self.lock().execute(
            "UPDATE identities SET revoked_at_ms = ?2 WHERE name = ?1 AND revoked_at_ms IS NULL",
            params![name, now_ms],
        )?;
        if changed == 0 {
            return Err(StoreError::NoSuchIdentity(name.to_owned()));
        }
        Ok(())
    }

    fn job_presented(&self, job_id: &str, now_ms: i64) -> Result<JobStanding, StoreError> {
        let connection = self.lock();
        // A job presents its credential on every call: after the first, this is one
        // indexed read and no write (no fsync on the hot path).
        let read = |connection: &Connection| {
            connection
                .query_row(
                    "SELECT ended_at_ms FROM job_ledger WHERE job_id = ?1",
                    params![job_id],
                    |row| row.get::<_, Option<i64>>(0),
                )
                .optional()
        };
        let ended = match read(&connection)? {
            Some(ended) => ended,
            None => {
                // INSERT OR IGNORE: another process sharing the database may have
                // recorded (or ended) the job since the read; read what is there now.
                connection.execute(
                    "INSERT OR IGNORE INTO job_ledger (job_id, first_seen_ms) VALUES (?1, ?2)",
                    params![job_id, now_ms],
                )?;
                read(&connection)?.flatten()
            }
        };
        Ok(match ended {
            Some(_) => JobStanding::Ended,
            None => JobStanding::Running,
        })
    }

    fn end_job(&self, job_id: &str, now_ms: i64) -> Result<(), StoreError> {
        self.lock().execute(
            "INSERT INTO job_ledger (job_id, first_seen_ms, ended_at_ms) VALUES (?1, ?2, ?2)
             ON CONFLICT(job_id) DO UPDATE SET ended_at_ms = COALESCE(ended_at_ms, excluded.ended_at_ms)",
            params![job_id, now_ms],
        )?;
        Ok(())
    }

    fn audit_head(&self) -> Result<Option<(i64, String)>, StoreError> {
        Ok(self
            .lock()
            .query_row(
                "SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1",
                [],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .optional()?)
    }

    fn insert_audit(&self, record: &Stored) -> Result<(), StoreError> {
        let json =
            serde_json::to_string(&record.entry).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let result = self.lock().execute(
            "INSERT INTO audit (seq, record, prev_hash, hash, signature) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                record.entry.seq,
                json,
                record.prev_hash,
                record.hash,
                record.signature
            ],
        );
        match result {
            Ok(_) => Ok(()),
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                Err(StoreError::AuditSeqTaken(record.entry.seq))
            }
            Err(e) => Err(e.into()),
        }
    }

    fn audit_records(&self) -> Result<Vec<Stored>, StoreError> {
        let connection = self.lock();
        let mut statement = connection
            .prepare("SELECT record, prev_hash, hash, signature FROM audit ORDER BY seq")?;
        let rows = statement.query_map([], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, String>(2)?,
                row.get::<_, String>(3)?,
            ))
        })?;
        let mut records = Vec::new();
        for row in rows {
            let (json, prev_hash, hash, signature) = row?;
            let entry: Entry =
                serde_json::from_str(&json).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            records.push(Stored {
                entry,
                prev_hash,
                hash,
                signature,
            });
        }
        Ok(records)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Token;

    fn alice() -> Identity {
        Identity {
            name: "alice".into(),
            role: Role::Developer,
        }
    }

    #[test]
    fn the_file_is_private_and_holds_no_token() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("platform.db");
        let store = SqliteStore::open(&path).unwrap();
        let token = Token::generate().unwrap();
        store.create_identity(&alice(), &token.digest(), 1).unwrap();
        drop(store);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let mut bytes = std::fs::read(&path).unwrap();
        for suffix in ["-wal", "-shm"] {
            if let Ok(more) = std::fs::read(dir.path().join(format!("platform.db{suffix}"))) {
                bytes.extend(more);
            }
        }
        let needle = token.expose().as_bytes();
        assert!(!bytes.windows(needle.len()).any(|w| w == needle));
        // And it is still there after reopening.
        let store = SqliteStore::open(&path).unwrap();
        assert_eq!(
            store.identity_by_digest(&token.digest()).unwrap(),
            Some(alice())
        );
    }

    #[test]
    fn revoked_tokens_stop_working_and_names_are_unique_among_live_ones() {
        let store = SqliteStore::in_memory().unwrap();
        let first = Token::generate().unwrap();
        store.create_identity(&alice(), &first.digest(), 1).unwrap();
        let second = Token::generate().unwrap();
        assert!(matches!(
            store.create_identity(&alice(), &second.digest(), 2),
            Err(StoreError::NameTaken(name)) if name == "alice"
        ));
        store.revoke_identity("alice", 3).unwrap();
        assert_eq!(store.identity_by_digest(&first.digest()).unwrap(), None);
        assert!(matches!(
            store.revoke_identity("alice", 4),
            Err(StoreError::NoSuchIdentity(_))
        ));
        store
            .create_identity(&alice(), &second.digest(), 5)
            .unwrap();
        let listed = store.list_identities().unwrap();
        assert_eq!(listed.len(), 2);
        assert_eq!(listed[0].revoked_at_ms, Some(3));
        assert_eq!(listed[1].revoked_at_ms, None);
    }

    #[test]
    fn a_job_is_running_until_it_ends_and_ended_for_good() {
        let store = SqliteStore::in_memory().unwrap();
        assert_eq!(store.job_presented("7", 1).unwrap(), JobStanding::Running);
        assert_eq!(store.job_presented("7", 2).unwrap(), JobStanding::Running);
        store.end_job("7", 3).unwrap();
        assert_eq!(store.job_presented("7", 4).unwrap(), JobStanding::Ended);
        store.end_job("7", 5).unwrap();
        // Ending a job nobody presented still closes it.
        store.end_job("8", 6).unwrap();
        assert_eq!(store.job_presented("8", 7).unwrap(), JobStanding::Ended);
    }
}
