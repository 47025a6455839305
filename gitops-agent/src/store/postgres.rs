//! A shared store: the agent's state in a PostgreSQL database, so that the state
//! outlives one machine's disk and several agents can read one queue and one audit log.
//!
//! The tables are SQLite's ([`super::sqlite`]) in PostgreSQL's types, and each
//! [`AgentTx`] operation is the same statement in PostgreSQL's dialect: the
//! conformance tests (`store_conformance.rs`) run against both. Write transactions
//! keep SQLite's one-writer-at-a-time meaning: each takes one transaction-scoped
//! advisory lock first, so what a writer read stays true until it commits, across
//! every agent on the database. Reads run at `REPEATABLE READ`, one snapshot each.
//!
//! The connection settings are libpq's (`host=/run/postgresql dbname=slipway
//! user=slipway`, or a `postgres://` URL); a password is taken from
//! `SLIPWAY_DATABASE_PASSWORD` rather than the configuration file, and no error or
//! log line carries the settings beyond the host and database name.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use postgres::types::ToSql;
use postgres::{Client, NoTls, Row, Statement};

use super::rows::{self, json, to_i64, Columns, JOB_COLUMNS};
use super::{
    Access, AgentStore, AgentTx, AuditRow, DbError, DeployedRoot, DriftCheck, DueReport, EndRecord,
    JobCounts, JobQuery, JobStatus, KeptReview, MergeOfCommit, ReportProgress, RootActivity,
};
use crate::job_kind::{JobKind, JobState};
use crate::records::{
    Delivery, Job, NewJobs, PlanSummary, Preview, PreviewKey, Review, StoredRecord,
};

/// Connections kept for reuse.
const KEPT_CONNECTIONS: usize = 8;

/// The advisory lock every write transaction takes (any constant; this one spells
/// "slipway" in ASCII).
const WRITER_LOCK: i64 = 0x0073_6c69_7077_6179;

/// The environment variable a password is read from.
pub const PASSWORD_ENV: &str = "SLIPWAY_DATABASE_PASSWORD";

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS deliveries (
    delivery_id TEXT PRIMARY KEY,
    event       TEXT NOT NULL,
    received_at TEXT NOT NULL,
    outcome     TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS jobs (
    id            BIGSERIAL PRIMARY KEY,
    repository    TEXT NOT NULL,
    root          TEXT NOT NULL,
    branch        TEXT NOT NULL,
    commit_sha    TEXT NOT NULL,
    trigger       TEXT NOT NULL,
    delivery_id   TEXT,
    pull_request  BIGINT,
    actor         TEXT,
    enqueued_at   TEXT NOT NULL,
    state         TEXT NOT NULL CHECK (state IN ('queued', 'running', 'awaiting_approval', 'done')),
    covered       TEXT NOT NULL DEFAULT '[]',
    superseded_by BIGINT,
    started_at    TEXT,
    attempts      BIGINT NOT NULL DEFAULT 0,
    interrupted   BOOLEAN NOT NULL DEFAULT FALSE,
    outcome       TEXT,
    kind          TEXT NOT NULL DEFAULT 'merge',
    head_sha      TEXT,
    base_sha      TEXT,
    authors       TEXT NOT NULL DEFAULT '[]'
);
CREATE INDEX IF NOT EXISTS jobs_by_root ON jobs (repository, root, state);
CREATE INDEX IF NOT EXISTS jobs_by_commit ON jobs (repository, commit_sha);
CREATE INDEX IF NOT EXISTS jobs_by_pull_request ON jobs (repository, pull_request, kind);
CREATE TABLE IF NOT EXISTS roots (
    repository    TEXT NOT NULL,
    root          TEXT NOT NULL,
    last_deployed TEXT NOT NULL,
    PRIMARY KEY (repository, root)
);
CREATE TABLE IF NOT EXISTS audit (
    stored_order      BIGSERIAL UNIQUE,
    seq               BIGINT PRIMARY KEY,
    job_id            BIGINT,
    trigger           TEXT NOT NULL,
    delivery_id       TEXT,
    repository        TEXT NOT NULL,
    root              TEXT NOT NULL,
    branch            TEXT NOT NULL,
    commit_sha        TEXT NOT NULL,
    covered_commits   TEXT NOT NULL,
    pull_request      BIGINT,
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
    signature         TEXT NOT NULL,
    kind              TEXT,
    tool              TEXT,
    approved_by       TEXT
);
CREATE INDEX IF NOT EXISTS audit_by_job ON audit (job_id);
CREATE INDEX IF NOT EXISTS audit_by_kind ON audit (kind, outcome, repository, root);
CREATE TABLE IF NOT EXISTS github_reports (
    job_id          BIGINT PRIMARY KEY,
    steps_done      BIGINT NOT NULL DEFAULT 0,
    deployment_id   BIGINT,
    failures        BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL DEFAULT 0,
    last_error      TEXT,
    complete        BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE TABLE IF NOT EXISTS github_deployment_attempts (
    job_id BIGINT PRIMARY KEY
);
CREATE TABLE IF NOT EXISTS previews (
    repository    TEXT NOT NULL,
    root          TEXT NOT NULL,
    pull_request  BIGINT NOT NULL,
    state         TEXT NOT NULL CHECK (state IN ('active', 'destroyed')),
    commit_sha    TEXT NOT NULL,
    urls          TEXT NOT NULL DEFAULT '{}',
    updated_at_ms BIGINT NOT NULL,
    expires_at_ms BIGINT NOT NULL,
    PRIMARY KEY (repository, root, pull_request)
);
CREATE TABLE IF NOT EXISTS branch_previews (
    repository    TEXT NOT NULL,
    root          TEXT NOT NULL,
    branch        TEXT NOT NULL,
    state         TEXT NOT NULL CHECK (state IN ('active', 'destroyed')),
    commit_sha    TEXT NOT NULL,
    urls          TEXT NOT NULL DEFAULT '{}',
    updated_at_ms BIGINT NOT NULL,
    expires_at_ms BIGINT NOT NULL,
    requested_by  TEXT,
    PRIMARY KEY (repository, root, branch)
);
CREATE TABLE IF NOT EXISTS pr_comments (
    repository   TEXT NOT NULL,
    pull_request BIGINT NOT NULL,
    root         TEXT NOT NULL,
    purpose      TEXT NOT NULL,
    comment_id   BIGINT NOT NULL,
    PRIMARY KEY (repository, pull_request, root, purpose)
);
CREATE TABLE IF NOT EXISTS approvals (
    job_id      BIGINT PRIMARY KEY,
    approver    TEXT NOT NULL,
    via         TEXT NOT NULL,
    approved_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS pull_request_reviews (
    review_id    BIGINT PRIMARY KEY,
    repository   TEXT NOT NULL,
    pull_request BIGINT NOT NULL,
    login        TEXT NOT NULL,
    commit_sha   TEXT NOT NULL,
    submitted_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"#;

/// Where the database is, for messages: host and database name, never the rest.
fn describe(config: &postgres::Config) -> String {
    let host = config
        .get_hosts()
        .first()
        .map(|h| match h {
            postgres::config::Host::Tcp(name) => name.clone(),
            postgres::config::Host::Unix(path) => path.display().to_string(),
        })
        .unwrap_or_else(|| "localhost".to_owned());
    format!(
        "postgres database {} on {host}",
        config.get_dbname().unwrap_or("(default)")
    )
}

fn pg(e: postgres::Error) -> DbError {
    DbError::Postgres(e)
}

/// A connection and the statements prepared on it.
struct Pooled {
    client: Client,
    statements: HashMap<String, Statement>,
}

impl Pooled {
    fn statement(&mut self, sql: &str) -> Result<Statement, DbError> {
        if let Some(s) = self.statements.get(sql) {
            return Ok(s.clone());
        }
        let s = self.client.prepare(sql).map_err(pg)?;
        self.statements.insert(sql.to_owned(), s.clone());
        Ok(s)
    }
}

/// The agent's state in PostgreSQL.
pub struct PostgresStore {
    config: postgres::Config,
    location: String,
    idle: Mutex<Vec<Pooled>>,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("location", &self.location)
            .finish_non_exhaustive()
    }
}

impl PostgresStore {
    /// Connects with libpq-style `settings` (the password, when needed, from
    /// [`PASSWORD_ENV`]) and creates the tables that are missing.
    pub fn open(settings: &str) -> Result<PostgresStore, DbError> {
        let mut config: postgres::Config = settings.parse().map_err(|_| {
            DbError::Settings(
                "the database settings do not parse: use libpq's form (`host=/run/postgresql dbname=slipway user=slipway`) or a postgres:// URL".into(),
            )
        })?;
        if let Ok(password) = std::env::var(PASSWORD_ENV) {
            config.password(password);
        }
        let store = PostgresStore {
            location: describe(&config),
            config,
            idle: Mutex::new(Vec::new()),
        };
        let mut conn = store.connect()?;
        // Two agents starting at once must not both create the tables.
        let mut tx = conn.client.transaction().map_err(pg)?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&WRITER_LOCK])
            .map_err(pg)?;
        tx.batch_execute(SCHEMA).map_err(pg)?;
        tx.commit().map_err(pg)?;
        store.give_back(conn);
        Ok(store)
    }

    fn connect(&self) -> Result<Pooled, DbError> {
        let client = self
            .config
            .connect(NoTls)
            .map_err(|source| DbError::Connect {
                location: self.location.clone(),
                source,
            })?;
        Ok(Pooled {
            client,
            statements: HashMap::new(),
        })
    }

    fn take(&self) -> Result<Pooled, DbError> {
        let kept = self
            .idle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .pop();
        match kept {
            Some(conn) if !conn.client.is_closed() => Ok(conn),
            _ => self.connect(),
        }
    }

    fn give_back(&self, conn: Pooled) {
        let mut idle = self
            .idle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if idle.len() < KEPT_CONNECTIONS && !conn.client.is_closed() {
            idle.push(conn);
        }
    }
}

impl AgentStore for PostgresStore {
    fn begin(&self, access: Access) -> Result<Box<dyn AgentTx + '_>, DbError> {
        let mut conn = self.take()?;
        match access {
            Access::Read => conn
                .client
                .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
                .map_err(pg)?,
            Access::Write => {
                conn.client
                    .batch_execute("BEGIN ISOLATION LEVEL READ COMMITTED")
                    .map_err(pg)?;
                conn.client
                    .execute("SELECT pg_advisory_xact_lock($1)", &[&WRITER_LOCK])
                    .map_err(pg)?;
            }
        }
        Ok(Box::new(PgTx {
            store: self,
            conn: RefCell::new(Some(conn)),
        }))
    }
}

/// One open transaction on a connection of the store.
struct PgTx<'s> {
    store: &'s PostgresStore,
    /// `None` once committed.
    conn: RefCell<Option<Pooled>>,
}

impl Drop for PgTx<'_> {
    fn drop(&mut self) {
        if let Some(mut conn) = self.conn.get_mut().take() {
            if conn.client.batch_execute("ROLLBACK").is_ok() {
                self.store.give_back(conn);
            }
        }
    }
}

type Params<'a> = [&'a (dyn ToSql + Sync)];

impl PgTx<'_> {
    fn with<T>(&self, f: impl FnOnce(&mut Pooled) -> Result<T, DbError>) -> Result<T, DbError> {
        let mut slot = self.conn.borrow_mut();
        let conn = slot
            .as_mut()
            .ok_or_else(|| DbError::Corrupt("transaction used after it ended".into()))?;
        f(conn)
    }

    fn query(&self, sql: &str, params: &Params<'_>) -> Result<Vec<Row>, DbError> {
        self.with(|c| {
            let s = c.statement(sql)?;
            c.client.query(&s, params).map_err(pg)
        })
    }

    fn query_opt(&self, sql: &str, params: &Params<'_>) -> Result<Option<Row>, DbError> {
        self.with(|c| {
            let s = c.statement(sql)?;
            c.client.query_opt(&s, params).map_err(pg)
        })
    }

    fn execute(&self, sql: &str, params: &Params<'_>) -> Result<u64, DbError> {
        self.with(|c| {
            let s = c.statement(sql)?;
            c.client.execute(&s, params).map_err(pg)
        })
    }
}

fn get<'a, T: postgres::types::FromSql<'a>>(r: &'a Row, i: usize) -> Result<T, DbError> {
    r.try_get(i).map_err(pg)
}

impl Columns for Row {
    fn text(&self, i: usize) -> Result<Option<String>, DbError> {
        get(self, i)
    }

    fn int(&self, i: usize) -> Result<Option<i64>, DbError> {
        get(self, i)
    }

    fn flag(&self, i: usize) -> Result<bool, DbError> {
        get(self, i)
    }
}

const PREVIEW_COLUMNS: &str = "repository, root, pull_request, state, commit_sha, urls, updated_at_ms, expires_at_ms, NULL::TEXT";
const BRANCH_PREVIEW_COLUMNS: &str =
    "repository, root, branch, state, commit_sha, urls, updated_at_ms, expires_at_ms, requested_by";

/// The table and key column of `key`'s row.
fn preview_table(key: &PreviewKey) -> (&'static str, &'static str) {
    match key {
        PreviewKey::PullRequest(_) => ("previews", "pull_request"),
        PreviewKey::Branch(_) => ("branch_previews", "branch"),
    }
}

/// A preview key as a statement parameter (its column's type).
enum KeyValue {
    Number(i64),
    Name(String),
}

impl KeyValue {
    fn of(key: &PreviewKey) -> KeyValue {
        match key {
            PreviewKey::PullRequest(n) => KeyValue::Number(to_i64(*n)),
            PreviewKey::Branch(b) => KeyValue::Name(b.clone()),
        }
    }

    fn param(&self) -> &(dyn ToSql + Sync) {
        match self {
            KeyValue::Number(n) => n,
            KeyValue::Name(s) => s,
        }
    }
}

impl AgentTx for PgTx<'_> {
    fn commit(self: Box<Self>) -> Result<(), DbError> {
        let mut conn = self
            .conn
            .borrow_mut()
            .take()
            .ok_or_else(|| DbError::Corrupt("transaction committed twice".into()))?;
        match conn.client.batch_execute("COMMIT") {
            Ok(()) => {
                self.store.give_back(conn);
                Ok(())
            }
            Err(e) => Err(pg(e)),
        }
    }

    fn ping(&self) -> Result<(), DbError> {
        self.query("SELECT 1", &[])?;
        Ok(())
    }

    fn record_delivery(
        &self,
        delivery: &Delivery,
        outcome: &str,
        at: &str,
    ) -> Result<bool, DbError> {
        let inserted = self.execute(
            "INSERT INTO deliveries (delivery_id, event, received_at, outcome) VALUES ($1, $2, $3, $4)
             ON CONFLICT (delivery_id) DO NOTHING",
            &[&delivery.id, &delivery.event, &at, &outcome],
        )?;
        Ok(inserted == 1)
    }

    fn insert_job(
        &self,
        jobs: &NewJobs,
        root: &str,
        delivery_id: Option<&str>,
        at: &str,
    ) -> Result<i64, DbError> {
        let row = self.query_opt(
            "INSERT INTO jobs (repository, root, branch, commit_sha, trigger, delivery_id, pull_request, actor, enqueued_at, state, kind, head_sha, base_sha, authors)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'queued', $10, $11, $12, $13) RETURNING id",
            &[
                &jobs.repository,
                &root,
                &jobs.branch,
                &jobs.commit_sha,
                &jobs.trigger.as_str(),
                &delivery_id,
                &jobs.pull_request.map(to_i64),
                &jobs.actor,
                &at,
                &jobs.kind.as_str(),
                &jobs.head_sha,
                &jobs.base_sha,
                &json(&jobs.authors)?,
            ],
        )?;
        let row = row.ok_or_else(|| DbError::Corrupt("INSERT returned no id".into()))?;
        get(&row, 0)
    }

    fn job(&self, id: i64) -> Result<Option<Job>, DbError> {
        self.query_opt(
            &format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1"),
            &[&id],
        )?
        .map(|r| rows::job(&r))
        .transpose()
    }

    fn job_status(&self, id: i64) -> Result<Option<JobStatus>, DbError> {
        self.query_opt(
            "SELECT state, outcome, superseded_by, commit_sha FROM jobs WHERE id = $1",
            &[&id],
        )?
        .map(|r| {
            Ok(JobStatus {
                state: rows::parsed(&r, 0)?,
                outcome: rows::parsed_optional(&r, 1)?,
                superseded_by: get(&r, 2)?,
                commit_sha: get(&r, 3)?,
            })
        })
        .transpose()
    }

    fn jobs(&self, query: &JobQuery<'_>) -> Result<Vec<Job>, DbError> {
        let mut sql = format!("SELECT {JOB_COLUMNS} FROM jobs WHERE state = $1");
        let mut values: Vec<String> = vec![query.state.as_str().to_owned()];
        for (column, value) in [
            ("repository", query.repository),
            ("root", query.root),
            ("kind", query.kind.map(JobKind::as_str)),
        ] {
            if let Some(value) = value {
                values.push(value.to_owned());
                sql.push_str(&format!(" AND {column} = ${}", values.len()));
            }
        }
        sql.push_str(" ORDER BY id");
        let params: Vec<&(dyn ToSql + Sync)> =
            values.iter().map(|v| v as &(dyn ToSql + Sync)).collect();
        self.query(&sql, &params)?.iter().map(rows::job).collect()
    }

    fn job_counts(&self) -> Result<JobCounts, DbError> {
        let rows = self.query(
            "SELECT COUNT(*) FILTER (WHERE state = 'queued'), COUNT(*) FILTER (WHERE state = 'running'),
                    COUNT(*) FILTER (WHERE state = 'awaiting_approval'), COUNT(*) FILTER (WHERE state = 'done')
             FROM jobs",
            &[],
        )?;
        let r = rows
            .first()
            .ok_or_else(|| DbError::Corrupt("COUNT returned no row".into()))?;
        Ok(JobCounts {
            queued: get(r, 0)?,
            running: get(r, 1)?,
            awaiting_approval: get(r, 2)?,
            done: get(r, 3)?,
        })
    }

    fn set_job_state(&self, id: i64, from: &[JobState], to: JobState) -> Result<bool, DbError> {
        let from: Vec<String> = from.iter().map(|s| s.as_str().to_owned()).collect();
        let changed = self.execute(
            "UPDATE jobs SET state = $1 WHERE id = $2 AND state = ANY($3)",
            &[&to.as_str(), &id, &from],
        )?;
        Ok(changed == 1)
    }

    fn supersede_job(&self, id: i64, by: i64) -> Result<bool, DbError> {
        let changed = self.execute(
            "UPDATE jobs SET state = 'done', outcome = 'superseded', superseded_by = $1 WHERE id = $2 AND state IN ('queued', 'awaiting_approval')",
            &[&by, &id],
        )?;
        Ok(changed == 1)
    }

    fn start_job(&self, id: i64, at: &str, covered: &[String]) -> Result<(), DbError> {
        self.execute(
            "UPDATE jobs SET state = 'running', started_at = $1, attempts = attempts + 1, covered = $2 WHERE id = $3",
            &[&at, &json(&covered)?, &id],
        )?;
        Ok(())
    }

    fn cover_commits(&self, id: i64, covered: &[String]) -> Result<(), DbError> {
        self.execute(
            "UPDATE jobs SET covered = $1 WHERE id = $2",
            &[&json(&covered)?, &id],
        )?;
        Ok(())
    }

    fn end_job(&self, id: i64, outcome: &str) -> Result<(), DbError> {
        self.execute(
            "UPDATE jobs SET state = 'done', outcome = $1 WHERE id = $2",
            &[&outcome, &id],
        )?;
        Ok(())
    }

    fn requeue_interrupted(&self, id: i64) -> Result<(), DbError> {
        self.execute(
            "UPDATE jobs SET state = 'queued', interrupted = TRUE WHERE id = $1",
            &[&id],
        )?;
        Ok(())
    }

    fn newest_merge_commit(&self, repository: &str, root: &str) -> Result<Option<String>, DbError> {
        self.query_opt(
            "SELECT commit_sha FROM jobs WHERE repository = $1 AND root = $2 AND kind = 'merge' AND trigger != 'drift-remediation' ORDER BY id DESC LIMIT 1",
            &[&repository, &root],
        )?
        .map(|r| get(&r, 0))
        .transpose()
    }

    fn root_activity(
        &self,
        repository: &str,
        root: &str,
        kinds: &[JobKind],
        pending: &[JobState],
    ) -> Result<RootActivity, DbError> {
        let kinds: Vec<String> = kinds.iter().map(|k| k.as_str().to_owned()).collect();
        let pending: Vec<String> = pending.iter().map(|s| s.as_str().to_owned()).collect();
        let rows = self.query(
            "SELECT COUNT(*) FILTER (WHERE state = ANY($3)), MAX(enqueued_at) FROM jobs
             WHERE repository = $1 AND root = $2 AND kind = ANY($4)",
            &[&repository, &root, &pending, &kinds],
        )?;
        let r = rows
            .first()
            .ok_or_else(|| DbError::Corrupt("COUNT returned no row".into()))?;
        Ok(RootActivity {
            pending: usize::try_from(get::<i64>(r, 0)?).unwrap_or(0),
            last_enqueued_at: get(r, 1)?,
        })
    }

    fn preview_job_pending(
        &self,
        repository: &str,
        root: &str,
        key: &PreviewKey,
        kind: JobKind,
    ) -> Result<bool, DbError> {
        let (_, column) = preview_table(key);
        let value = KeyValue::of(key);
        Ok(self
            .query_opt(
                &format!(
                    "SELECT 1 FROM jobs WHERE repository = $1 AND root = $2 AND {column} = $3
                       AND kind = $4 AND state != 'done' LIMIT 1"
                ),
                &[&repository, &root, value.param(), &kind.as_str()],
            )?
            .is_some())
    }

    fn merges_of_commit(
        &self,
        repository: &str,
        commit: &str,
    ) -> Result<Vec<MergeOfCommit>, DbError> {
        self.query(
            "SELECT pull_request, head_sha, authors FROM jobs
             WHERE repository = $1 AND commit_sha = $2 AND kind = 'merge' ORDER BY id",
            &[&repository, &commit],
        )?
        .iter()
        .map(|r| {
            let authors: String = get(r, 2)?;
            Ok(MergeOfCommit {
                pull_request: get::<Option<i64>>(r, 0)?.and_then(|n| u64::try_from(n).ok()),
                head_sha: get(r, 1)?,
                authors: serde_json::from_str(&authors)
                    .map_err(|e| DbError::Corrupt(format!("a job's authors: {e}")))?,
            })
        })
        .collect()
    }

    fn last_deployed(&self, repository: &str, root: &str) -> Result<Option<String>, DbError> {
        self.query_opt(
            "SELECT last_deployed FROM roots WHERE repository = $1 AND root = $2",
            &[&repository, &root],
        )?
        .map(|r| get(&r, 0))
        .transpose()
    }

    fn set_last_deployed(&self, repository: &str, root: &str, commit: &str) -> Result<(), DbError> {
        self.execute(
            "INSERT INTO roots (repository, root, last_deployed) VALUES ($1, $2, $3)
             ON CONFLICT (repository, root) DO UPDATE SET last_deployed = excluded.last_deployed",
            &[&repository, &root, &commit],
        )?;
        Ok(())
    }

    fn deployed_roots(&self) -> Result<Vec<DeployedRoot>, DbError> {
        self.query(
            "SELECT r.repository, r.root, r.last_deployed,
                    (SELECT a.ended_at FROM audit a WHERE a.repository = r.repository AND a.root = r.root
                       AND a.commit_sha = r.last_deployed AND a.outcome = 'succeeded'
                     ORDER BY a.seq DESC LIMIT 1)
             FROM roots r ORDER BY r.repository, r.root",
            &[],
        )?
        .iter()
        .map(|r| {
            Ok(DeployedRoot {
                repository: get(r, 0)?,
                root: get(r, 1)?,
                commit_sha: get(r, 2)?,
                deployed_at: get(r, 3)?,
            })
        })
        .collect()
    }

    fn audit_head(&self) -> Result<Option<(i64, String)>, DbError> {
        self.query_opt("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1", &[])?
            .map(|r| Ok((get(&r, 0)?, get(&r, 1)?)))
            .transpose()
    }

    fn insert_audit(&self, stored: &StoredRecord) -> Result<(), DbError> {
        let record = &stored.record;
        let plan = record.plan_summary.as_ref().map(json).transpose()?;
        self.execute(
            "INSERT INTO audit (seq, job_id, trigger, delivery_id, repository, root, branch, commit_sha,
                covered_commits, pull_request, merged_by, author, started_at, ended_at, outcome,
                plan_summary, error, terraform_version, prev_hash, hash, signature, kind, tool, approved_by)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24)",
            &[
                &record.seq,
                &record.job_id,
                &record.trigger,
                &record.delivery_id,
                &record.repository,
                &record.root,
                &record.branch,
                &record.commit_sha,
                &json(&record.covered_commits)?,
                &record.pull_request.map(to_i64),
                &record.merged_by,
                &record.author,
                &record.started_at,
                &record.ended_at,
                &record.outcome,
                &plan,
                &record.error,
                &record.terraform_version,
                &stored.prev_hash,
                &stored.hash,
                &stored.signature,
                &record.kind,
                &record.tool,
                &record.approved_by,
            ],
        )?;
        Ok(())
    }

    fn audit_rows(&self) -> Result<Vec<AuditRow>, DbError> {
        self.query(
            &format!(
                "SELECT {} FROM audit ORDER BY stored_order",
                rows::AUDIT_COLUMNS
            ),
            &[],
        )?
        .iter()
        .map(rows::audit_row)
        .collect()
    }

    fn end_record(&self, job_id: i64, outcome: Option<&str>) -> Result<Option<EndRecord>, DbError> {
        self.query_opt(
            "SELECT ended_at, plan_summary, error FROM audit
             WHERE job_id = $1 AND ($2::TEXT IS NULL OR outcome = $2) ORDER BY seq DESC LIMIT 1",
            &[&job_id, &outcome],
        )?
        .map(|r| {
            Ok(EndRecord {
                ended_at: get(&r, 0)?,
                plan_summary: rows::plan_of(get(&r, 1)?),
                error: get(&r, 2)?,
            })
        })
        .transpose()
    }

    fn last_pull_request_plan(
        &self,
        repository: &str,
        root: &str,
        pull_request: u64,
    ) -> Result<Option<(i64, Option<PlanSummary>)>, DbError> {
        self.query_opt(
            "SELECT a.job_id, a.plan_summary FROM audit a JOIN jobs j ON j.id = a.job_id
             WHERE j.repository = $1 AND j.root = $2 AND j.pull_request = $3
               AND j.kind = 'pr-plan' AND a.outcome = 'succeeded'
             ORDER BY a.seq DESC LIMIT 1",
            &[&repository, &root, &to_i64(pull_request)],
        )?
        .map(|r| Ok((get(&r, 0)?, rows::plan_of(get(&r, 1)?))))
        .transpose()
    }

    fn last_drift_checks(&self) -> Result<Vec<DriftCheck>, DbError> {
        self.query(
            "SELECT a.repository, a.root, a.plan_summary FROM audit a
             WHERE a.seq IN (SELECT MAX(seq) FROM audit WHERE kind = 'drift' AND outcome = 'succeeded'
                             GROUP BY repository, root)
             ORDER BY a.repository, a.root",
            &[],
        )?
        .iter()
        .map(|r| {
            Ok(DriftCheck {
                repository: get(r, 0)?,
                root: get(r, 1)?,
                plan_summary: rows::plan_of(get(r, 2)?),
            })
        })
        .collect()
    }

    fn approver_of(&self, job_id: i64) -> Result<Option<String>, DbError> {
        self.query_opt(
            "SELECT approver FROM approvals WHERE job_id = $1",
            &[&job_id],
        )?
        .map(|r| get(&r, 0))
        .transpose()
    }

    fn insert_approval(
        &self,
        job_id: i64,
        approver: &str,
        via: &str,
        at: &str,
    ) -> Result<(), DbError> {
        self.execute(
            "INSERT INTO approvals (job_id, approver, via, approved_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (job_id) DO UPDATE SET approver = excluded.approver, via = excluded.via,
               approved_at = excluded.approved_at",
            &[&job_id, &approver, &via, &at],
        )?;
        Ok(())
    }

    fn insert_review(&self, review: &Review, at: &str) -> Result<(), DbError> {
        self.execute(
            "INSERT INTO pull_request_reviews (review_id, repository, pull_request, login, commit_sha, submitted_at)
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (review_id) DO NOTHING",
            &[
                &review.review_id,
                &review.repository,
                &to_i64(review.pull_request),
                &review.login,
                &review.commit_sha,
                &at,
            ],
        )?;
        Ok(())
    }

    fn reviews_of(&self, repository: &str, pull_request: u64) -> Result<Vec<KeptReview>, DbError> {
        self.query(
            "SELECT review_id, login, commit_sha FROM pull_request_reviews
             WHERE repository = $1 AND pull_request = $2 ORDER BY review_id",
            &[&repository, &to_i64(pull_request)],
        )?
        .iter()
        .map(|r| {
            Ok(KeptReview {
                review_id: get(r, 0)?,
                login: get(r, 1)?,
                commit_sha: get(r, 2)?,
            })
        })
        .collect()
    }

    fn preview(
        &self,
        repository: &str,
        root: &str,
        key: &PreviewKey,
    ) -> Result<Option<Preview>, DbError> {
        match key {
            PreviewKey::PullRequest(n) => self
                .query_opt(
                    &format!("SELECT {PREVIEW_COLUMNS} FROM previews WHERE repository = $1 AND root = $2 AND pull_request = $3"),
                    &[&repository, &root, &to_i64(*n)],
                )?
                .map(|r| rows::pull_request_preview(&r))
                .transpose(),
            PreviewKey::Branch(b) => self
                .query_opt(
                    &format!("SELECT {BRANCH_PREVIEW_COLUMNS} FROM branch_previews WHERE repository = $1 AND root = $2 AND branch = $3"),
                    &[&repository, &root, b],
                )?
                .map(|r| rows::branch_preview(&r))
                .transpose(),
        }
    }

    fn other_active_previews(&self, repository: &str, own: &PreviewKey) -> Result<usize, DbError> {
        let (own_pr, own_branch) = match own {
            PreviewKey::PullRequest(n) => (Some(to_i64(*n)), None),
            PreviewKey::Branch(b) => (None, Some(b.clone())),
        };
        let rows = self.query(
            "SELECT (SELECT COUNT(DISTINCT pull_request) FROM previews
                     WHERE repository = $1 AND state = 'active' AND pull_request IS DISTINCT FROM $2)
                  + (SELECT COUNT(DISTINCT branch) FROM branch_previews
                     WHERE repository = $1 AND state = 'active' AND branch IS DISTINCT FROM $3)",
            &[&repository, &own_pr, &own_branch],
        )?;
        let r = rows
            .first()
            .ok_or_else(|| DbError::Corrupt("COUNT returned no row".into()))?;
        Ok(usize::try_from(get::<i64>(r, 0)?).unwrap_or(0))
    }

    fn active_previews(&self) -> Result<Vec<Preview>, DbError> {
        let mut all = self
            .query(
                &format!("SELECT {PREVIEW_COLUMNS} FROM previews WHERE state = 'active' ORDER BY repository, pull_request, root"),
                &[],
            )?
            .iter()
            .map(rows::pull_request_preview)
            .collect::<Result<Vec<_>, _>>()?;
        for r in self.query(
            &format!("SELECT {BRANCH_PREVIEW_COLUMNS} FROM branch_previews WHERE state = 'active' ORDER BY repository, branch, root"),
            &[],
        )? {
            all.push(rows::branch_preview(&r)?);
        }
        Ok(all)
    }

    fn mark_preview_active(
        &self,
        repository: &str,
        root: &str,
        key: &PreviewKey,
        commit: &str,
        now_ms: i64,
        expires_at_ms: i64,
        requested_by: Option<&str>,
    ) -> Result<(), DbError> {
        match key {
            PreviewKey::PullRequest(n) => self.execute(
                "INSERT INTO previews (repository, root, pull_request, state, commit_sha, updated_at_ms, expires_at_ms)
                 VALUES ($1, $2, $3, 'active', $4, $5, $6)
                 ON CONFLICT (repository, root, pull_request) DO UPDATE SET state = 'active',
                   commit_sha = excluded.commit_sha, updated_at_ms = excluded.updated_at_ms,
                   expires_at_ms = excluded.expires_at_ms",
                &[&repository, &root, &to_i64(*n), &commit, &now_ms, &expires_at_ms],
            )?,
            PreviewKey::Branch(b) => self.execute(
                "INSERT INTO branch_previews (repository, root, branch, state, commit_sha, updated_at_ms, expires_at_ms, requested_by)
                 VALUES ($1, $2, $3, 'active', $4, $5, $6, $7)
                 ON CONFLICT (repository, root, branch) DO UPDATE SET state = 'active',
                   commit_sha = excluded.commit_sha, updated_at_ms = excluded.updated_at_ms,
                   expires_at_ms = excluded.expires_at_ms,
                   requested_by = COALESCE(excluded.requested_by, branch_previews.requested_by)",
                &[&repository, &root, b, &commit, &now_ms, &expires_at_ms, &requested_by],
            )?,
        };
        Ok(())
    }

    fn preview_applied(
        &self,
        repository: &str,
        root: &str,
        key: &PreviewKey,
        urls: &BTreeMap<String, String>,
        now_ms: i64,
        expires_at_ms: i64,
    ) -> Result<(), DbError> {
        let (table, column) = preview_table(key);
        let value = KeyValue::of(key);
        self.execute(
            &format!(
                "UPDATE {table} SET urls = $4, updated_at_ms = $5, expires_at_ms = $6
                 WHERE repository = $1 AND root = $2 AND {column} = $3"
            ),
            &[
                &repository,
                &root,
                value.param(),
                &json(urls)?,
                &now_ms,
                &expires_at_ms,
            ],
        )?;
        Ok(())
    }

    fn preview_destroyed(
        &self,
        repository: &str,
        root: &str,
        key: &PreviewKey,
        now_ms: i64,
    ) -> Result<(), DbError> {
        let (table, column) = preview_table(key);
        let value = KeyValue::of(key);
        self.execute(
            &format!(
                "UPDATE {table} SET state = 'destroyed', urls = '{{}}', updated_at_ms = $4
                 WHERE repository = $1 AND root = $2 AND {column} = $3"
            ),
            &[&repository, &root, value.param(), &now_ms],
        )?;
        Ok(())
    }

    fn report_start_point(&self) -> Result<i64, DbError> {
        self.execute(
            "INSERT INTO meta (key, value) VALUES ('github_report_from',
               (SELECT COALESCE(MIN(id), (SELECT COALESCE(MAX(id), 0) + 1 FROM jobs))::TEXT
                  FROM jobs WHERE state != 'done'))
             ON CONFLICT (key) DO NOTHING",
            &[],
        )?;
        let value: String = self
            .query_opt(
                "SELECT value FROM meta WHERE key = 'github_report_from'",
                &[],
            )?
            .map(|r| get(&r, 0))
            .transpose()?
            .ok_or_else(|| DbError::Corrupt("meta github_report_from is missing".into()))?;
        value
            .parse()
            .map_err(|_| DbError::Corrupt(format!("meta github_report_from = {value:?}")))
    }

    fn due_reports(&self, from: i64, now_ms: i64, limit: usize) -> Result<Vec<DueReport>, DbError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.query(
            &format!(
                "SELECT {cols}
                 FROM jobs j LEFT JOIN github_reports r ON r.job_id = j.id
                 WHERE j.id >= $1 AND NOT COALESCE(r.complete, FALSE) AND COALESCE(r.next_attempt_at, 0) <= $2
                 ORDER BY j.id LIMIT $3",
                cols = rows::due_report_columns(),
            ),
            &[&from, &now_ms, &limit],
        )?
        .iter()
        .map(rows::due_report)
        .collect()
    }

    fn save_report(&self, p: &ReportProgress) -> Result<(), DbError> {
        self.execute(
            "INSERT INTO github_reports (job_id, steps_done, deployment_id, failures, next_attempt_at, last_error, complete)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (job_id) DO UPDATE SET steps_done = excluded.steps_done,
               deployment_id = excluded.deployment_id, failures = excluded.failures,
               next_attempt_at = excluded.next_attempt_at, last_error = excluded.last_error,
               complete = excluded.complete",
            &[
                &p.job_id,
                &i64::try_from(p.steps_done).unwrap_or(i64::MAX),
                &p.deployment_id.map(to_i64),
                &i64::from(p.failures),
                &p.next_attempt_at,
                &p.last_error,
                &p.complete,
            ],
        )?;
        Ok(())
    }

    fn note_deployment_attempt(&self, job_id: i64) -> Result<bool, DbError> {
        let inserted = self.execute(
            "INSERT INTO github_deployment_attempts (job_id) VALUES ($1) ON CONFLICT (job_id) DO NOTHING",
            &[&job_id],
        )?;
        Ok(inserted == 0)
    }

    fn preview_deployment(
        &self,
        repository: &str,
        root: &str,
        pull_request: Option<u64>,
    ) -> Result<Option<u64>, DbError> {
        let id: Option<i64> = self
            .query_opt(
                "SELECT r.deployment_id FROM github_reports r JOIN jobs j ON j.id = r.job_id
                 WHERE j.repository = $1 AND j.root = $2 AND j.pull_request = $3
                   AND j.kind = 'preview' AND r.deployment_id IS NOT NULL
                 ORDER BY j.id DESC LIMIT 1",
                &[&repository, &root, &pull_request.map(to_i64)],
            )?
            .map(|r| get(&r, 0))
            .transpose()?;
        Ok(id.and_then(|d| u64::try_from(d).ok()))
    }

    fn pull_request_comment(
        &self,
        repository: &str,
        pull_request: Option<u64>,
        root: &str,
        purpose: &str,
    ) -> Result<Option<u64>, DbError> {
        let id: Option<i64> = self
            .query_opt(
                "SELECT comment_id FROM pr_comments WHERE repository = $1 AND pull_request = $2 AND root = $3 AND purpose = $4",
                &[&repository, &pull_request.map(to_i64), &root, &purpose],
            )?
            .map(|r| get(&r, 0))
            .transpose()?;
        Ok(id.and_then(|d| u64::try_from(d).ok()))
    }

    fn set_pull_request_comment(
        &self,
        repository: &str,
        pull_request: Option<u64>,
        root: &str,
        purpose: &str,
        comment_id: u64,
    ) -> Result<(), DbError> {
        self.execute(
            "INSERT INTO pr_comments (repository, pull_request, root, purpose, comment_id) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (repository, pull_request, root, purpose) DO UPDATE SET comment_id = excluded.comment_id",
            &[
                &repository,
                &pull_request.map(to_i64),
                &root,
                &purpose,
                &to_i64(comment_id),
            ],
        )?;
        Ok(())
    }
}
