//! `slipway-agent`: Slipway's GitOps agent.
//!
//! It learns of merges to a repository's tracked branch (GitHub webhooks, a poller,
//! the CLI or an authenticated API), stores each as a durable job before acknowledging
//! it, and runs `terraform plan` and `apply` on the exact commit, one job at a time per
//! Terraform root. Every outcome lands in a hash-chained, signed audit log, and the
//! job's credential, minted for that job alone and checked by the Slipway platform,
//! travels to the provider in a 0600 file.
//!
//! The guarantees, and where they are kept:
//! - nothing accepted is lost: a job is committed to SQLite (WAL, `synchronous=FULL`)
//!   before any acknowledgement ([`queue`], [`webhook`]);
//! - what the branch says is what runs: a job's commit must be on the branch as just
//!   fetched, and an older commit than the deployed one runs only when the branch was
//!   moved back to it ([`selection`]);
//! - nothing is applied twice: deliveries are de-duplicated by id, and a commit already
//!   deployed (or an ancestor of it, while the branch is elsewhere) is skipped
//!   ([`queue`], [`selection`]);
//! - nothing is applied out of order: one worker per root, and waiting jobs collapse
//!   into the newest commit ([`runner`]);
//! - a crash is visible: a job left running is recorded as interrupted and runs again
//!   ([`queue::recover_interrupted`]);
//! - GitHub hears of every job (deployments, commit statuses, a comment), but a GitHub
//!   failure never touches a deployment: reports are retried from the database
//!   ([`report`], [`github`]).
//!
//! Operating it: `/healthz`, `/readyz`, `/metrics` ([`http::metrics`]), the job log over the
//! authenticated API ([`http::api`]), and an orderly SIGTERM ([`agent::shut_down`]).

pub mod agent;
pub mod approvals;
pub mod audit;
pub mod cli;
pub mod config;
pub mod db;
pub mod deploy;
pub mod detached;
pub mod drift;
pub mod git;
pub mod github;
pub mod http;
pub mod identities;
pub mod job_credential;
pub mod job_error;
pub mod job_kind;
pub mod kept_init;
pub mod mcp;
pub mod metrics;
pub mod plan_stream;
pub mod poller;
pub mod preview_sweep;
pub mod previews;
pub mod pull_requests;
pub mod queue;
pub mod records;
pub mod report;
pub mod runner;
pub mod selection;
pub mod state;
pub mod store;
#[cfg(any(test, feature = "conformance"))]
#[doc(hidden)]
pub mod store_conformance;
pub mod terraform;
pub mod webhook;
pub mod work_dirs;
