//! What every HTTP handler shares.

use std::sync::Arc;

use crate::config::{Config, Secret};
use crate::db::Db;
use crate::metrics::Metrics;
use crate::queue::IntakeWriter;
use crate::runner::Runner;

/// State shared by the HTTP handlers (and the poller and preview sweeper, which
/// enqueue through the same writer).
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
    /// The platform the MCP server at `/mcp` passes its callers' tokens on to; `None`
    /// when `[mcp] enabled = false`.
    pub mcp: Option<Arc<crate::mcp::Platform>>,
}
