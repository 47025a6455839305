//! The agent's HTTP side: one router over one shared [`AppState`].
//!
//! - [`webhook`]: `POST /webhooks/github` (the decision itself is
//!   [`crate::webhook::classify`], a pure function; this is the thin handler);
//! - [`api`]: the authenticated API (`/api/v1/...`) and `/healthz`, `/readyz`;
//! - [`approve`]: `POST /api/v1/jobs/{id}/approve`;
//! - [`metrics`]: `GET /metrics` (the counters live in [`crate::metrics`]);
//! - `/mcp`: the MCP server ([`crate::mcp`]), when it is on;
//! - [`server`]: the connection limits that keep hostile clients from starving the rest.
//!
//! Handlers take a [`caller::ApiCaller`] to require a token and return [`ApiError`] for
//! every refusal, so each answer's status and body come from one place.

pub mod api;
pub mod approve;
pub mod caller;
pub mod error;
pub mod job_id;
pub mod metrics;
pub mod server;
pub mod webhook;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::Router;

use crate::config::Config;
use crate::state::AppState;
pub use caller::ApiCaller;
pub use error::ApiError;
pub use job_id::JobId;

/// The HTTP routes; `/mcp` passes its callers' tokens on to `mcp` (`None` when
/// `[mcp] enabled = false`).
pub fn router(state: Arc<AppState>, mcp: Option<Arc<crate::mcp::Platform>>) -> Router {
    let mut router = Router::new();
    if let Some(platform) = mcp {
        router = router.nest_service(
            "/mcp",
            crate::mcp::http_service(
                platform,
                mcp_allowed_hosts(&state.config),
                Some(state.clone()),
            ),
        );
    }
    router
        .route("/webhooks/github", post(webhook::receive))
        .route("/api/v1/deploy", post(api::deploy))
        .route("/api/v1/jobs/{id}/log", get(api::job_log))
        .route("/api/v1/jobs/{id}/approve", post(approve::approve))
        .route("/healthz", get(api::health))
        .route("/readyz", get(api::ready))
        .route("/metrics", get(metrics::scrape))
        .layer(DefaultBodyLimit::max(state.config.max_body_bytes))
        .with_state(state)
}

/// The `Host` values `/mcp` answers (DNS rebinding protection): loopback, and the
/// host of `server.public_url`.
fn mcp_allowed_hosts(config: &Config) -> Vec<String> {
    let mut hosts: Vec<String> = ["localhost", "127.0.0.1", "::1"].map(String::from).into();
    if let Some(url) = &config.public_url {
        let rest = url.split_once("://").map_or(url.as_str(), |(_, rest)| rest);
        let authority = rest.split('/').next().unwrap_or_default();
        if !authority.is_empty() {
            hosts.push(authority.to_owned());
        }
    }
    hosts
}
