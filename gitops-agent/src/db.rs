//! The agent's SQLite database: one file in the data directory holding the job queue,
//! the delivery ids seen, each root's last deployed commit, the audit log, and how far
//! each job's report to GitHub has got.
//!
//! Keeping them in one database lets a job's state change and its audit record commit
//! in one transaction, so a crash can never leave a job finished without its record or
//! recorded twice. WAL mode with `synchronous = FULL` makes a committed transaction
//! survive the process being killed (and power loss), which is what lets the webhook
//! handler answer GitHub as soon as its transaction commits.

use std::path::Path;
use std::time::Duration;

use rusqlite::Connection;

/// Why the database could not be used.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("database {path}: {source}")]
    Open {
        path: String,
        source: rusqlite::Error,
    },
    #[error("cannot create data directory {path}: {source}")]
    DataDir {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot create the database file {path} (mode 0600): {source}")]
    File {
        path: String,
        source: std::io::Error,
    },
    #[error("no agent database at {path}: the agent has not run with this data_dir yet; check --config and its `data_dir`")]
    Missing { path: String },
    #[error("database: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("database holds an unreadable value: {0}")]
    Corrupt(String),
}

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS deliveries (
    delivery_id TEXT PRIMARY KEY,
    event       TEXT NOT NULL,
    received_at TEXT NOT NULL,
    outcome     TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS jobs (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    repository    TEXT NOT NULL,
    root          TEXT NOT NULL,
    branch        TEXT NOT NULL,
    commit_sha    TEXT NOT NULL,
    trigger       TEXT NOT NULL,
    delivery_id   TEXT,
    pull_request  INTEGER,
    actor         TEXT,
    enqueued_at   TEXT NOT NULL,
    state         TEXT NOT NULL CHECK (state IN ('queued', 'running', 'done')),
    covered       TEXT NOT NULL DEFAULT '[]',
    superseded_by INTEGER,
    started_at    TEXT,
    attempts      INTEGER NOT NULL DEFAULT 0,
    interrupted   INTEGER NOT NULL DEFAULT 0,
    outcome       TEXT
);
CREATE INDEX IF NOT EXISTS jobs_by_root ON jobs (repository, root, state);
CREATE INDEX IF NOT EXISTS jobs_by_commit ON jobs (repository, commit_sha);
CREATE TABLE IF NOT EXISTS roots (
    repository    TEXT NOT NULL,
    root          TEXT NOT NULL,
    last_deployed TEXT NOT NULL,
    PRIMARY KEY (repository, root)
);
CREATE TABLE IF NOT EXISTS audit (
    seq               INTEGER PRIMARY KEY,
    job_id            INTEGER,
    trigger           TEXT NOT NULL,
    delivery_id       TEXT,
    repository        TEXT NOT NULL,
    root              TEXT NOT NULL,
    branch            TEXT NOT NULL,
    commit_sha        TEXT NOT NULL,
    covered_commits   TEXT NOT NULL,
    pull_request      INTEGER,
    merged_by         TEXT,
    author            TEXT,
    started_at        TEXT NOT NULL,
    ended_at          TEXT NOT NULL,
    outcome           TEXT NOT NULL,
    plan_summary      TEXT,
    error             TEXT,
    terraform_version TEXT,
    prev_hash         TEXT NOT NULL,
    hash              TEXT NOT NULL,
    signature         TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS github_reports (
    job_id          INTEGER PRIMARY KEY,
    steps_done      INTEGER NOT NULL DEFAULT 0,
    deployment_id   INTEGER,
    failures        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL DEFAULT 0,
    last_error      TEXT,
    complete        INTEGER NOT NULL DEFAULT 0
);
-- Jobs whose deployment creation was sent at least once: a later attempt looks the
-- deployment up first, in case GitHub created it and the answer was lost.
CREATE TABLE IF NOT EXISTS github_deployment_attempts (
    job_id INTEGER PRIMARY KEY
);
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"#;

/// Opens (creating if needed) the database at `path` and brings its schema up to date.
pub fn open(path: &Path) -> Result<Connection, DbError> {
    if let Some(dir) = path.parent() {
        slipway_platform::store::create_private_dir(dir).map_err(|source| DbError::DataDir {
            path: dir.display().to_string(),
            source,
        })?;
    }
    // Jobs, deliveries and the audit log: the owner's only.
    slipway_platform::store::create_private_file(path).map_err(|source| DbError::File {
        path: path.display().to_string(),
        source,
    })?;
    let conn = Connection::open(path).map_err(|source| DbError::Open {
        path: path.display().to_string(),
        source,
    })?;
    conn.busy_timeout(Duration::from_secs(30))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.execute_batch(SCHEMA)?;
    Ok(conn)
}

/// Opens an existing database without creating one: for the read-only CLI commands,
/// where a wrong path should be an error rather than a fresh empty log.
pub fn open_existing(path: &Path) -> Result<Connection, DbError> {
    if !path.exists() {
        return Err(DbError::Missing {
            path: path.display().to_string(),
        });
    }
    open(path)
}

/// Milliseconds since the Unix epoch, as the platform's records keep time.
pub fn now_ms() -> i64 {
    slipway_platform::now_ms()
}

/// The current UTC time with milliseconds, the one format every timestamp uses.
pub fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}
