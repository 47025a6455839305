//! Shared harness for Slipway's end-to-end tests: finding every Terraform on the
//! machine, pointing it at locally built providers with `dev_overrides`, and running it
//! as a user would.

pub mod agent_support;
pub mod fake_github;
pub mod fake_kube;
pub mod job_credentials;
pub mod local_harness;
pub mod local_postgres;
pub mod mcp_client;
pub mod plan_bench;
pub mod preview_support;
pub mod runner;
pub mod served_platform;
pub mod terraform;
