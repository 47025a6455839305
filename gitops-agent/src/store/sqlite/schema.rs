//! The SQLite schema of the agent's database, and how a database made by an older
//! build is brought up to date.

use rusqlite::Connection;

use crate::store::DbError;

pub(super) const SCHEMA: &str = r#"
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
    state         TEXT NOT NULL CHECK (state IN ('queued', 'running', 'awaiting_approval', 'done')),
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
-- Each pull request's preview of a root: `active` from the moment its first job starts
-- (so that a crash mid-apply still leaves something to clean up) until its destroy
-- succeeded. `expires_at_ms` moves on with every update (the time to live is idle time).
CREATE TABLE IF NOT EXISTS previews (
    repository    TEXT NOT NULL,
    root          TEXT NOT NULL,
    pull_request  INTEGER NOT NULL,
    state         TEXT NOT NULL CHECK (state IN ('active', 'destroyed')),
    commit_sha    TEXT NOT NULL,
    urls          TEXT NOT NULL DEFAULT '{}',
    updated_at_ms INTEGER NOT NULL,
    expires_at_ms INTEGER NOT NULL,
    PRIMARY KEY (repository, root, pull_request)
);
-- Each pushed branch's preview of a root, asked for over MCP (workspace `br-<branch>`):
-- kept like `previews`, with who asked.
CREATE TABLE IF NOT EXISTS branch_previews (
    repository    TEXT NOT NULL,
    root          TEXT NOT NULL,
    branch        TEXT NOT NULL,
    state         TEXT NOT NULL CHECK (state IN ('active', 'destroyed')),
    commit_sha    TEXT NOT NULL,
    urls          TEXT NOT NULL DEFAULT '{}',
    updated_at_ms INTEGER NOT NULL,
    expires_at_ms INTEGER NOT NULL,
    requested_by  TEXT,
    PRIMARY KEY (repository, root, branch)
);
-- The pull request comment the agent keeps up to date, per root and purpose (`plan`,
-- `preview`): edited in place on every push, found again after a restart.
CREATE TABLE IF NOT EXISTS pr_comments (
    repository   TEXT NOT NULL,
    pull_request INTEGER NOT NULL,
    root         TEXT NOT NULL,
    purpose      TEXT NOT NULL,
    comment_id   INTEGER NOT NULL,
    PRIMARY KEY (repository, pull_request, root, purpose)
);
-- Approvals of jobs held as `awaiting_approval` (src/approvals.rs): who approved,
-- how (cli, api, github-review), when. A job runs only with its row here.
CREATE TABLE IF NOT EXISTS approvals (
    job_id      INTEGER PRIMARY KEY,
    approver    TEXT NOT NULL,
    via         TEXT NOT NULL,
    approved_at TEXT NOT NULL
);
-- GitHub pull request reviews in state `approved`, kept until the pull request's merge
-- job reaches its approval (a review usually comes before the merge).
CREATE TABLE IF NOT EXISTS pull_request_reviews (
    review_id    INTEGER PRIMARY KEY,
    repository   TEXT NOT NULL,
    pull_request INTEGER NOT NULL,
    login        TEXT NOT NULL,
    commit_sha   TEXT NOT NULL,
    submitted_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"#;

/// Indexes for the lookups that run once per job or per scrape (a job's newest audit
/// record, each root's newest drift check): without them each is a scan of the whole
/// log, which grows without end.
pub(super) const INDEXES: &str = "
CREATE INDEX IF NOT EXISTS audit_by_job ON audit (job_id);
CREATE INDEX IF NOT EXISTS audit_by_kind ON audit (kind, outcome, repository, root);
";

/// Columns added after the first release, for databases made before them: a job's
/// kind (every older job is a merge), a pull request job's head and base commits, the
/// kind of the job an audit record is about (none for merges, as before), the MCP
/// tool that asked for it, a job's authors and its approver.
const ADDED_COLUMNS: [(&str, &str, &str); 7] = [
    ("jobs", "kind", "TEXT NOT NULL DEFAULT 'merge'"),
    ("jobs", "head_sha", "TEXT"),
    ("jobs", "base_sha", "TEXT"),
    ("audit", "kind", "TEXT"),
    ("audit", "tool", "TEXT"),
    ("jobs", "authors", "TEXT NOT NULL DEFAULT '[]'"),
    ("audit", "approved_by", "TEXT"),
];

/// The jobs table with every column and the `awaiting_approval` state, for
/// databases made before that state existed: SQLite cannot change a CHECK constraint
/// in place, so [`allow_awaiting_approval`] copies the table into this one.
const JOBS_WITH_APPROVALS: &str = "CREATE TABLE jobs_with_approvals (
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
    state         TEXT NOT NULL CHECK (state IN ('queued', 'running', 'awaiting_approval', 'done')),
    covered       TEXT NOT NULL DEFAULT '[]',
    superseded_by INTEGER,
    started_at    TEXT,
    attempts      INTEGER NOT NULL DEFAULT 0,
    interrupted   INTEGER NOT NULL DEFAULT 0,
    outcome       TEXT,
    kind          TEXT NOT NULL DEFAULT 'merge',
    head_sha      TEXT,
    base_sha      TEXT,
    authors       TEXT NOT NULL DEFAULT '[]'
)";

const JOBS_COLUMNS_ALL: &str = "id, repository, root, branch, commit_sha, trigger, delivery_id, pull_request, actor, enqueued_at, state, covered, superseded_by, started_at, attempts, interrupted, outcome, kind, head_sha, base_sha, authors";

/// Gives a jobs table made before approvals the `awaiting_approval` state: copies it
/// into [`JOBS_WITH_APPROVALS`], inside the caller's write lock.
fn allow_awaiting_approval(conn: &Connection) -> Result<(), DbError> {
    if jobs_allow_approvals(conn)? {
        return Ok(());
    }
    conn.execute_batch(&format!(
        "{JOBS_WITH_APPROVALS};
         INSERT INTO jobs_with_approvals ({JOBS_COLUMNS_ALL}) SELECT {JOBS_COLUMNS_ALL} FROM jobs;
         DROP TABLE jobs;
         ALTER TABLE jobs_with_approvals RENAME TO jobs;
         CREATE INDEX IF NOT EXISTS jobs_by_root ON jobs (repository, root, state);
         CREATE INDEX IF NOT EXISTS jobs_by_commit ON jobs (repository, commit_sha);"
    ))?;
    Ok(())
}

/// Whether the jobs table knows the `awaiting_approval` state.
fn jobs_allow_approvals(conn: &Connection) -> Result<bool, DbError> {
    let sql: String = conn.query_row(
        "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'jobs'",
        [],
        |r| r.get(0),
    )?;
    Ok(sql.contains("'awaiting_approval'"))
}

pub(super) fn migrate(conn: &Connection) -> Result<(), DbError> {
    let columns = |conn: &Connection| -> Result<Vec<(String, String)>, DbError> {
        Ok(conn
            .prepare(
                "SELECT 'jobs', name FROM pragma_table_info('jobs')
                 UNION ALL SELECT 'audit', name FROM pragma_table_info('audit')",
            )?
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?)
    };
    let has = |have: &[(String, String)], table: &str, column: &str| {
        have.iter().any(|(t, c)| t == table && c == column)
    };
    let have = columns(conn)?;
    if ADDED_COLUMNS.iter().all(|(t, c, _)| has(&have, t, c)) && jobs_allow_approvals(conn)? {
        return Ok(());
    }
    // Another process may be migrating too: look again inside the write lock.
    conn.execute_batch("BEGIN IMMEDIATE")?;
    let result = (|| {
        let existing = columns(conn)?;
        for (table, column, decl) in ADDED_COLUMNS {
            if !has(&existing, table, column) {
                conn.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN {column} {decl}"))?;
            }
        }
        allow_awaiting_approval(conn)?;
        conn.execute_batch(
            "CREATE INDEX IF NOT EXISTS jobs_by_pull_request ON jobs (repository, pull_request, kind)",
        )?;
        Ok::<(), DbError>(())
    })();
    match result {
        Ok(()) => conn.execute_batch("COMMIT")?,
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            return Err(e);
        }
    }
    Ok(())
}
