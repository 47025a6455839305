//! Runtimes: where Slipway's environments and applications actually run.
//!
//! The resources speak only to the [`Runtime`] trait, so the same `slipway_environment`
//! and `slipway_application` work on the embedded local runtime (the default) and on
//! Kubernetes. A runtime owns the real objects; the provider turns Terraform's plans into
//! desired specs and reads back what is really running, so drift shows in a plan.
//!
//! Every write carries the [`ChangeRecord`] of who made it (the provenance), which the
//! runtime stores on the object: that is what the data sources and `kubectl` show.

use std::collections::BTreeMap;
use std::time::Duration;

pub mod kubernetes;
pub mod local;
pub mod memory;
pub mod secrets;
pub mod sensitive;
pub mod variables;

use serde::{Deserialize, Serialize};

pub use sensitive::Sensitive;

/// An environment's mode: the platform's, so that the provider, the runtimes and the
/// policy share one definition.
pub use slipway_platform::Mode;

/// Who made a change, from which commit, and how. Recorded on every object a runtime
/// writes; through the platform, what the caller's identity or job credential proves
/// replaces what the caller sent. Without the agent's labels, the trigger is a manual
/// `terraform apply` by the local user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ChangeRecord {
    /// The commit SHA the change came from; empty for a manual apply outside git.
    pub commit_sha: String,
    pub repository: String,
    pub pull_request: Option<u64>,
    pub actor: String,
    /// `webhook`, `poll`, `manual`, `api` (the agent) or `terraform-apply`.
    pub trigger: String,
    pub job_id: String,
    /// RFC 3339 UTC time of the change.
    pub changed_at: String,
    /// True when the platform stamped this record from a job credential the GitOps
    /// engine signed (`local::gate::Gate::stamp`): never the caller's to say.
    pub verified: bool,
}

/// What an environment should be.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnvironmentSpec {
    /// Stable id chosen by the provider at create time.
    pub id: String,
    /// A DNS label, unique per runtime.
    pub name: String,
    pub mode: Mode,
    /// Shared with every application in the environment.
    pub variables: BTreeMap<String, String>,
    /// Shared secrets; never logged.
    pub secrets: BTreeMap<String, String>,
}

/// An environment as the runtime has it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Environment {
    pub spec: EnvironmentSpec,
    pub change: ChangeRecord,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    #[default]
    Tcp,
    Udp,
}

/// A port an application listens on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortSpec {
    pub name: String,
    /// The port the application listens on (the local runtime hands it in `PORT`).
    pub port: u16,
    pub protocol: Protocol,
    /// Public ports get a stable endpoint that balances over healthy replicas.
    pub public: bool,
}

/// How to tell that a replica is healthy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum HealthProbe {
    Http { path: String, port: u16 },
    Tcp { port: u16 },
    Exec { command: Vec<String> },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthCheck {
    pub probe: HealthProbe,
    pub interval: Duration,
    pub timeout: Duration,
    /// Consecutive successes before a replica counts as healthy.
    pub healthy_threshold: u32,
    /// Consecutive failures before a replica counts as unhealthy.
    pub unhealthy_threshold: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ResourceLimits {
    /// Kubernetes quantity, e.g. `500m`.
    pub cpu: Option<String>,
    /// Kubernetes quantity, e.g. `256Mi`.
    pub memory: Option<String>,
}

/// What an application should be.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApplicationSpec {
    /// Stable id chosen by the provider at create time.
    pub id: String,
    pub environment_id: String,
    /// A DNS label, unique within the environment.
    pub name: String,
    /// Container image (Kubernetes).
    pub image: Option<String>,
    /// Program to run (local runtime), with its arguments and working directory.
    pub command: Option<String>,
    pub args: Vec<String>,
    pub working_dir: Option<String>,
    /// 0 means stopped.
    pub replicas: u32,
    pub ports: Vec<PortSpec>,
    pub variables: BTreeMap<String, String>,
    pub secrets: BTreeMap<String, String>,
    pub healthcheck: Option<HealthCheck>,
    pub resources: ResourceLimits,
}

/// Where a rollout stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// Every desired replica runs the current spec and is healthy.
    Running,
    /// A rollout is in progress.
    Progressing,
    /// Scaled to zero.
    Stopped,
    /// The rollout failed (health check never passed, command missing, ...).
    Failed,
}

/// An application as the runtime has it: the spec it runs, and how that is going.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Application {
    pub spec: ApplicationSpec,
    pub change: ChangeRecord,
    pub phase: Phase,
    /// Replicas running the current spec and healthy.
    pub ready_replicas: u32,
    /// The URL of each public port, by port name.
    pub endpoints: BTreeMap<String, String>,
    /// Why the rollout failed, naming the failing check, with the replica's last log
    /// lines; secrets redacted.
    pub message: Option<String>,
}

/// A planned string attribute: not known until apply, unset, or a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Planned<'a> {
    Unknown,
    #[default]
    Null,
    Known(&'a str),
}

impl<'a> Planned<'a> {
    pub fn of_option(value: &'a Option<String>) -> Planned<'a> {
        value
            .as_deref()
            .map(Planned::Known)
            .unwrap_or(Planned::Null)
    }

    pub fn known(self) -> Option<&'a str> {
        match self {
            Planned::Known(s) => Some(s),
            _ => None,
        }
    }
}

/// What `terraform plan` knows of an application, for a runtime's own checks
/// ([`Runtime::check_application`]): the values that are known yet (unknown keys and
/// numbers are left out). At apply every value is known ([`PlannedApplication::of`]).
#[derive(Debug, Clone, Default)]
pub struct PlannedApplication<'a> {
    pub name: Option<&'a str>,
    pub image: Planned<'a>,
    pub command: Planned<'a>,
    pub working_dir: Planned<'a>,
    pub replicas: Option<i64>,
    pub variables: Vec<&'a str>,
    pub secrets: Vec<&'a str>,
}

impl<'a> PlannedApplication<'a> {
    /// A spec about to be applied, where everything is known.
    pub fn of(spec: &'a ApplicationSpec) -> PlannedApplication<'a> {
        PlannedApplication {
            name: Some(&spec.name),
            image: Planned::of_option(&spec.image),
            command: Planned::of_option(&spec.command),
            working_dir: Planned::of_option(&spec.working_dir),
            replicas: Some(spec.replicas.into()),
            variables: spec.variables.keys().map(String::as_str).collect(),
            secrets: spec.secrets.keys().map(String::as_str).collect(),
        }
    }
}

/// A planned value the runtime would refuse, at the attribute (and map key) to fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanProblem {
    pub attribute: &'static str,
    pub key: Option<String>,
    pub summary: String,
    pub detail: String,
}

/// Which runtime a provider talks to: for messages, and for the few defaults that
/// differ (never for rules, which each runtime checks itself).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuntimeKind {
    Local,
    Kubernetes,
    /// The in-memory runtime of the unit tests.
    Memory,
}

impl RuntimeKind {
    pub fn name(self) -> &'static str {
        match self {
            RuntimeKind::Local => "local",
            RuntimeKind::Kubernetes => "kubernetes",
            RuntimeKind::Memory => "memory",
        }
    }
}

impl std::fmt::Display for RuntimeKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a rollout failed, as far as the runtime can tell: it decides which attribute a
/// diagnostic points at, so that never depends on the wording of the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RolloutCause {
    /// The program could not start, or exited (local), or its container crashed
    /// (Kubernetes): `command` and `args`.
    Program,
    /// Replicas ran but never passed the health check in time.
    Health,
    /// The container image could not be pulled.
    Image,
    /// The cluster refused to create the pods (admission, quota).
    Admission,
    /// Anything else: the deadline passed without a decided cause, the object vanished.
    Other,
}

impl RolloutCause {
    /// The `slipway_application` attribute to fix; `None` means the resource as a
    /// whole. A health failure is the `healthcheck`'s only when one is configured: the
    /// default check is a connection to the first port, which only the program opens.
    pub fn attribute(self, has_healthcheck: bool) -> Option<&'static str> {
        match self {
            RolloutCause::Program => Some("command"),
            RolloutCause::Health if has_healthcheck => Some("healthcheck"),
            RolloutCause::Health => Some("command"),
            RolloutCause::Image => Some("image"),
            RolloutCause::Admission | RolloutCause::Other => None,
        }
    }

    /// The name this cause travels under between the daemon and its clients.
    pub fn code(self) -> &'static str {
        match self {
            RolloutCause::Program => "program",
            RolloutCause::Health => "health",
            RolloutCause::Image => "image",
            RolloutCause::Admission => "admission",
            RolloutCause::Other => "other",
        }
    }

    pub fn from_code(code: &str) -> RolloutCause {
        match code {
            "program" => RolloutCause::Program,
            "health" => RolloutCause::Health,
            "image" => RolloutCause::Image,
            "admission" => RolloutCause::Admission,
            _ => RolloutCause::Other,
        }
    }
}

/// Why a runtime call failed. Messages are shown to users: they say what to do, and
/// never contain a secret value.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("{0}")]
    NotFound(String),
    /// The object exists but is not Slipway's (or not this environment's) to change.
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Invalid(String),
    /// The rollout did not become healthy in time, or failed, for `cause`.
    #[error("{message}")]
    RolloutFailed {
        cause: RolloutCause,
        message: String,
    },
    /// The platform's policy refused the change; the message says why and what to do.
    #[error("{0}")]
    Refused(String),
    /// The platform could not tell who is calling.
    #[error("{0}")]
    Unauthenticated(String),
    #[error("the runtime is unreachable: {0}")]
    Unavailable(String),
    #[error("{0}")]
    Other(String),
}

impl RuntimeError {
    pub fn rollout(cause: RolloutCause, message: impl Into<String>) -> RuntimeError {
        RuntimeError::RolloutFailed {
            cause,
            message: message.into(),
        }
    }
}

/// A place where environments and applications run.
#[async_trait::async_trait]
pub trait Runtime: Send + Sync {
    /// Which runtime this is, for messages.
    fn kind(&self) -> RuntimeKind;

    /// The runtime's own rules for an application (what it runs, how many, the names it
    /// accepts), checked at plan so that what the runtime would refuse at apply fails
    /// before anything is written, and again at apply, where a saved plan may meet
    /// another runtime. Each runtime owns its rules; none by default.
    fn check_application(&self, _planned: &PlannedApplication<'_>) -> Vec<PlanProblem> {
        Vec::new()
    }

    /// Whether the caller may make this change, asked at plan so that a refusal shows
    /// before anything is written. A client of the platform asks it (and it decides
    /// again at apply); a runtime the provider owns directly (the memory runtime of the
    /// unit tests) answers yes.
    async fn authorize(
        &self,
        _action: slipway_platform::Action,
        _target: &slipway_platform::Target,
        _object: &str,
    ) -> Result<(), RuntimeError> {
        Ok(())
    }

    /// A client starts a round of reads: the platform calls it at each client's
    /// greeting, and a client is one Terraform run's provider (its refresh and plan). A
    /// runtime that answers many reads from one shared read (the Kubernetes snapshot)
    /// must answer none of this round's from a read taken before now, so that a change
    /// made between two runs shows at the next one. Nothing to do by default.
    async fn begin_reads(&self) {}

    /// Creates or updates an environment.
    async fn apply_environment(
        &self,
        spec: EnvironmentSpec,
        change: ChangeRecord,
    ) -> Result<Environment, RuntimeError>;

    async fn get_environment(&self, id: &str) -> Result<Option<Environment>, RuntimeError>;

    async fn find_environment(&self, name: &str) -> Result<Option<Environment>, RuntimeError>;

    /// Every environment (the platform's `ListEnvironments`, which the MCP server's
    /// `list_environments` calls).
    async fn list_environments(&self) -> Result<Vec<Environment>, RuntimeError>;

    /// Deletes an environment and waits until it is gone. Fails while it still has
    /// applications the provider did not delete first.
    async fn delete_environment(
        &self,
        id: &str,
        change: ChangeRecord,
        timeout: Duration,
    ) -> Result<(), RuntimeError>;

    /// Creates or updates an application and waits until the rollout is healthy (or
    /// fails, or `timeout` passes) — a rolling update: new replicas are healthy before
    /// old ones stop.
    async fn apply_application(
        &self,
        spec: ApplicationSpec,
        change: ChangeRecord,
        timeout: Duration,
    ) -> Result<Application, RuntimeError>;

    async fn get_application(&self, id: &str) -> Result<Option<Application>, RuntimeError>;

    async fn find_application(
        &self,
        environment_id: &str,
        name: &str,
    ) -> Result<Option<Application>, RuntimeError>;

    /// Stops every replica gracefully and removes the application.
    async fn delete_application(
        &self,
        id: &str,
        change: ChangeRecord,
        timeout: Duration,
    ) -> Result<(), RuntimeError>;
}
