//! What the agent's front doors share: the HTTP handlers, the MCP job tools, the
//! poller and the preview sweeper all enqueue and read through one [`AppState`].
//!
//! It sits below all of them (it names the queue, runner and database, never a
//! handler), so `http` and `mcp` can both take it without importing each other.

use std::sync::Arc;

use crate::config::{Config, Secret};
use crate::db::Db;
use crate::metrics::Metrics;
use crate::queue::IntakeWriter;
use crate::runner::Runner;

/// State shared by the HTTP handlers, the MCP job tools, the poller and the preview
/// sweeper, which all enqueue through the same writer.
pub struct AppState {
    pub config: Arc<Config>,
    /// The agent's database; handlers that read take a connection from it.
    pub db: Db,
    pub writer: IntakeWriter,
    pub webhook_secret: Option<Secret>,
    pub api_token: Option<Secret>,
    /// Identities and policy: who a bearer token belongs to.
    pub authority: Arc<crate::identities::PlatformAuthority>,
    /// The job runner: its git credentials serve the poller and the API too, and its
    /// `stopping` flag makes `/readyz` answer 503 during a shutdown.
    pub runner: Arc<Runner>,
    pub metrics: Arc<Metrics>,
}
