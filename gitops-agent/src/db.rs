//! The agent's database as its tasks hold it: a shared handle on the [`AgentStore`]
//! (jobs, deliveries, deployed commits, the audit log, previews, approvals, GitHub
//! reports; see [`crate::store`]), with the way async code reaches it.
//!
//! Keeping all of it in one store lets a job's state change and its audit record commit
//! in one transaction, so a crash can never leave a job finished without its record or
//! recorded twice.

use std::path::Path;
use std::sync::Arc;

use crate::config::DatabaseLocation;
use crate::store::postgres::PostgresStore;
use crate::store::sqlite::SqliteStore;
pub use crate::store::DbError;
use crate::store::{AgentStore, AgentTx};

/// The agent's database: cheap to clone, shared by every task.
#[derive(Debug, Clone)]
pub struct Db {
    store: Arc<dyn AgentStore>,
}

impl Db {
    /// The embedded store: opens (creating if needed) the SQLite database at `path` and
    /// brings its schema up to date.
    pub fn open(path: &Path) -> Result<Db, DbError> {
        Ok(Db::new(Arc::new(SqliteStore::open(path)?)))
    }

    /// Opens an existing database without creating one: for the read-only CLI
    /// commands, where a wrong path should be an error rather than a fresh empty log.
    pub fn open_existing(path: &Path) -> Result<Db, DbError> {
        if !path.exists() {
            return Err(DbError::Missing {
                path: path.display().to_string(),
            });
        }
        Db::open(path)
    }

    /// The store `location` names, creating what is missing.
    pub fn open_at(location: &DatabaseLocation) -> Result<Db, DbError> {
        match location {
            DatabaseLocation::Sqlite(path) => Db::open(path),
            DatabaseLocation::Postgres(settings) => {
                Ok(Db::new(Arc::new(PostgresStore::open(settings)?)))
            }
        }
    }

    /// [`Db::open_at`] for commands that only read: an embedded database must exist.
    pub fn open_existing_at(location: &DatabaseLocation) -> Result<Db, DbError> {
        match location {
            DatabaseLocation::Sqlite(path) => Db::open_existing(path),
            DatabaseLocation::Postgres(_) => Db::open_at(location),
        }
    }

    /// A handle on any store.
    pub fn new(store: Arc<dyn AgentStore>) -> Db {
        Db { store }
    }

    /// The store, for code that already runs where it may block.
    pub fn store(&self) -> &dyn AgentStore {
        &*self.store
    }

    /// Runs `f` with the store on a blocking thread (every store call may block).
    pub async fn run<T, E>(
        &self,
        f: impl FnOnce(&dyn AgentStore) -> Result<T, E> + Send + 'static,
    ) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<DbError> + Send + 'static,
    {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || f(&*store))
            .await
            .unwrap_or_else(|e| Err(DbError::Task(e.to_string()).into()))
    }

    /// Runs `f` in one read transaction on a blocking thread.
    pub async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&dyn AgentTx) -> Result<T, DbError> + Send + 'static,
    ) -> Result<T, DbError> {
        self.run(move |store| store.read(f)).await
    }

    /// Runs `f` in one write transaction on a blocking thread, committed when `f`
    /// returns `Ok`.
    pub async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&dyn AgentTx) -> Result<T, DbError> + Send + 'static,
    ) -> Result<T, DbError> {
        self.run(move |store| store.write(f)).await
    }
}

/// Milliseconds since the Unix epoch, as the platform's records keep time.
pub fn now_ms() -> i64 {
    slipway_platform::now_ms()
}

/// The current UTC time with milliseconds, the one format every timestamp uses.
pub fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}
