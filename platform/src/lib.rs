//! The Slipway platform's core: who is calling, and may they do this.
//!
//! Every deployment path (a merge job of `slipway-agent`, a person's `terraform apply`,
//! the API, an AI coding agent over MCP) reaches the runtime through one authority. It
//! answers two questions, in this order:
//!
//! 1. **Who is calling?** ([`Authority::authenticate`]) A bearer value is either a named
//!    token ([`identity`]: a person, an AI agent, CI; stored only as a SHA-256 digest)
//!    or a job credential ([`credential`]) that the GitOps engine minted for one job,
//!    bound to its repository, root, commit, the modes and environments it may change,
//!    an expiry, and the job id (accepted for that job only, never after it ended).
//! 2. **May they do this here?** ([`Authority::authorize`]) [`policy`] decides from the
//!    caller, the action and the environment's [`Mode`], using the platform's own
//!    [`Policy`]: nothing a Terraform configuration or a request carries can loosen it.
//!    A refusal says why and what to do instead.
//!
//! What the authority keeps (identities, the job-credential ledger) sits behind the
//! [`store::Store`] trait, with SQLite as the embedded default, so a PostgreSQL backend
//! is an implementation of the same trait and not a rewrite.

pub mod audit;
pub mod authority;
pub mod caller;
pub mod config;
pub mod credential;
pub mod embedded;
pub mod identity;
pub mod job_ending;
pub mod mode;
pub mod policy;
pub mod record;
pub mod redact;
mod signed;
pub mod store;
pub mod tokens;

pub use audit::AuditLog;
pub use authority::{AuthError, Authority};
pub use caller::Caller;
pub use config::PlatformConfig;
pub use credential::{CredentialError, JobClaims, JobKind};
pub use identity::{Identity, Role, Token, TokenDigest};
pub use mode::Mode;
pub use policy::{Action, Decision, Policy, Refusal, RefusalReason, Target};
pub use store::{SqliteStore, Store, StoreError};

/// Milliseconds since the Unix epoch (UTC): how the platform's records and credentials
/// keep time.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
