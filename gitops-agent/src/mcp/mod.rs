//! The prompt path: an MCP (Model Context Protocol) server through which AI coding
//! agents deploy to PREVIEW and DEVELOPMENT environments, over the same platform,
//! policy and audit log as the git path.
//!
//! - [`server`]: the rmcp server and its transports (streamable HTTP at `/mcp` on the
//!   agent's server; stdio for `slipway-agent mcp`), and who the caller is;
//! - [`tools`]: each tool's input schema, structured output, and the platform calls it
//!   makes;
//! - [`platform`]: the gRPC client of the platform, which carries the caller's own
//!   token on every call.
//!
//! The trust boundary is the platform, not this server: the platform authenticates
//! the token, applies its policy per mode, and records every change and refusal (how
//! `mcp`, with the tool's name). Nothing this server sends can loosen the policy.
//! See docs/mcp.md.

pub mod jobs;
pub mod platform;
pub mod server;
pub mod tools;

pub use platform::{Platform, Target};
pub use server::{http_service, serve_stdio};
