//! The MCP tools: what each one takes (a JSON schema generated from its input type),
//! what it returns (structured output, with its schema), and how it maps onto the
//! platform's API.
//!
//! Tools translate; they do not decide. Every write goes to the platform with the
//! caller's token, and the platform's policy says yes or no (and records it). Which
//! tools a caller *sees* follows what the platform says it may change
//! ([`super::platform::WhoAmI::may_change`]), but that only spares an AI agent tools it
//! cannot use: a write tool called by name anyway still reaches the platform, which
//! refuses it and records the refusal.
//!
//! A preview deployed from a pushed branch (a preview job of the GitOps engine) is a
//! separate tool to add next to [`DEPLOY`]; nothing here assumes direct deploys are the
//! only kind.

use std::collections::BTreeMap;

use rmcp::handler::server::common::{schema_for_output, schema_for_type};
use rmcp::model::{JsonObject, Tool, ToolAnnotations};
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use slipway_platform::Mode;
use slipway_proto::runtime as pb;

use super::platform::{Caller, PlatformError};

pub const LIST: &str = "list_environments";
pub const SHOW: &str = "get_application";
pub const LOGS: &str = "get_logs";
pub const AUDIT: &str = "get_audit_trail";
pub const DEPLOY: &str = "deploy_application";
pub const SCALE: &str = "scale_application";
pub const RESTART: &str = "restart_application";
pub const DESTROY_APP: &str = "destroy_application";
pub const DESTROY_ENV: &str = "destroy_environment";

/// The write tools: shown only to callers the platform lets change some mode.
pub const WRITE_TOOLS: [&str; 5] = [DEPLOY, SCALE, RESTART, DESTROY_APP, DESTROY_ENV];

/// Why a tool call did not succeed. The MCP server turns bad input into a JSON-RPC
/// error naming the field, and the platform's refusals into a tool error the agent
/// reads (it says why and what to do instead).
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    #[error("`{field}`: {message}")]
    Input { field: String, message: String },
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    UnknownTool(String),
    #[error(transparent)]
    Platform(#[from] PlatformError),
}

pub(super) fn input(field: &str, message: impl Into<String>) -> ToolError {
    ToolError::Input {
        field: field.into(),
        message: message.into(),
    }
}

/// Every tool, for `tools/list`.
pub fn catalogue() -> Vec<Tool> {
    let read = ToolAnnotations::new().read_only(true).open_world(false);
    vec![
        tool::<ListInput, ListOutput>(
            LIST,
            "List the environments on the Slipway platform with their applications: each \
             environment's mode (DEVELOPMENT, PREVIEW, STAGING, PRODUCTION), and each \
             application's status, replicas, endpoints (URLs) and the commit and identity \
             that last changed it. Also says which modes your token may change.",
            read.clone().idempotent(true),
        ),
        tool::<AppInput, ShowOutput>(
            SHOW,
            "Show one application: its spec (command or image, ports, variable names), its \
             replicas with their health, its endpoints, and its recent changes from the \
             platform's audit log.",
            read.clone().idempotent(true),
        ),
        tool::<LogsInput, LogsOutput>(
            LOGS,
            "The last lines of an application's replica logs (at most 500 per replica and \
             256 KiB in all), with secret values redacted.",
            read.clone().idempotent(true),
        ),
        tool::<AuditInput, AuditOutput>(
            AUDIT,
            "The platform's audit trail of an environment, newest first: who changed what, \
             when, how (mcp, terraform-apply, git-merge, ...), through which tool, and every \
             refusal with its reason.",
            read.idempotent(true),
        ),
        tool::<DeployInput, AppOutput>(
            DEPLOY,
            "Deploy or update an application directly in a PREVIEW or DEVELOPMENT \
             environment from a spec (a command with arguments, or an image; ports; \
             variables), creating the environment when `create_environment` names its mode. \
             Waits until the application is healthy and returns its endpoint URLs. The \
             platform's policy decides: STAGING and PRODUCTION change only through a merge \
             (push a branch and open a pull request). An application created here belongs to \
             the platform, not to any Terraform state.",
            ToolAnnotations::new()
                .read_only(false)
                .destructive(false)
                .idempotent(true)
                .open_world(false),
        ),
        tool::<ScaleInput, AppOutput>(
            SCALE,
            "Set the number of replicas of an application (0 stops it and keeps it). \
             Running replicas are kept; the platform's policy decides.",
            ToolAnnotations::new()
                .read_only(false)
                .destructive(false)
                .idempotent(true)
                .open_world(false),
        ),
        tool::<AppInput, AppOutput>(
            RESTART,
            "Restart an application: a rolling restart, each new replica healthy before an \
             old one stops.",
            ToolAnnotations::new()
                .read_only(false)
                .destructive(false)
                .idempotent(false)
                .open_world(false),
        ),
        tool::<AppInput, DestroyOutput>(
            DESTROY_APP,
            "Destroy an application: stops every replica and removes it and its logs. \
             Cannot be undone.",
            ToolAnnotations::new()
                .read_only(false)
                .destructive(true)
                .idempotent(true)
                .open_world(false),
        ),
        tool::<EnvironmentInput, DestroyOutput>(
            DESTROY_ENV,
            "Destroy an environment and every application in it. Cannot be undone.",
            ToolAnnotations::new()
                .read_only(false)
                .destructive(true)
                .idempotent(true)
                .open_world(false),
        ),
    ]
}

pub(super) fn tool<I: JsonSchema + 'static, O: JsonSchema + 'static>(
    name: &'static str,
    description: &'static str,
    annotations: ToolAnnotations,
) -> Tool {
    Tool::new(name, description, schema_for_type::<I>())
        .with_raw_output_schema(schema_for_output::<O>())
        .with_annotations(annotations)
}

/// Runs tool `name` with `arguments` as `caller`; the structured result.
pub async fn call(
    name: &str,
    arguments: Option<JsonObject>,
    caller: &mut Caller,
) -> Result<serde_json::Value, ToolError> {
    let arguments = serde_json::Value::Object(arguments.unwrap_or_default());
    match name {
        LIST => out(list(caller, parse(arguments)?).await?),
        SHOW => out(show(caller, parse(arguments)?).await?),
        LOGS => out(logs(caller, parse(arguments)?).await?),
        AUDIT => out(audit(caller, parse(arguments)?).await?),
        DEPLOY => out(deploy(caller, parse(arguments)?).await?),
        SCALE => out(scale(caller, parse(arguments)?).await?),
        RESTART => out(restart(caller, parse(arguments)?).await?),
        DESTROY_APP => out(destroy_application(caller, parse(arguments)?).await?),
        DESTROY_ENV => out(destroy_environment(caller, parse(arguments)?).await?),
        other => Err(ToolError::UnknownTool(format!(
            "no tool `{other}`; `tools/list` shows the tools your token may use"
        ))),
    }
}

/// The arguments as `T`; serde's message names the field at fault.
pub(super) fn parse<T: DeserializeOwned>(arguments: serde_json::Value) -> Result<T, ToolError> {
    serde_path_to_error::deserialize(arguments).map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." {
            "arguments".into()
        } else {
            path
        };
        input(&field, e.into_inner().to_string())
    })
}

pub(super) fn out<T: Serialize>(value: T) -> Result<serde_json::Value, ToolError> {
    serde_json::to_value(value)
        .map_err(|e| ToolError::Platform(PlatformError::Invalid(format!("encode the result: {e}"))))
}

// ---------------------------------------------------------------------------------
// Inputs

/// Names of environments and applications: DNS labels, as the platform stores them.
fn check_name(field: &str, value: &str) -> Result<(), ToolError> {
    let ok = !value.is_empty()
        && value.len() <= 63
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !value.starts_with('-')
        && !value.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(input(
            field,
            format!(
                "{value:?} is not a name: use 1 to 63 lowercase letters, digits and `-` (for example `pr-42` or `web`)"
            ),
        ))
    }
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListInput {
    /// Only this environment.
    #[serde(default)]
    pub environment: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EnvironmentInput {
    /// The environment's name.
    pub environment: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AppInput {
    /// The environment's name.
    pub environment: String,
    /// The application's name within it.
    pub name: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LogsInput {
    pub environment: String,
    pub name: String,
    /// How many lines per replica, 1 to 500 (100 by default).
    #[serde(default)]
    #[schemars(range(min = 1, max = 500))]
    pub lines: Option<u32>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AuditInput {
    pub environment: String,
    /// How many records, newest first, 1 to 500 (50 by default).
    #[serde(default)]
    #[schemars(range(min = 1, max = 500))]
    pub limit: Option<u32>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ScaleInput {
    pub environment: String,
    pub name: String,
    /// How many replicas, 0 to 20.
    #[schemars(range(min = 0, max = 20))]
    pub replicas: u32,
}

/// An environment mode, as Terraform configurations write it.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
pub enum ModeName {
    #[serde(rename = "DEVELOPMENT")]
    Development,
    #[serde(rename = "PREVIEW")]
    Preview,
    #[serde(rename = "STAGING")]
    Staging,
    #[serde(rename = "PRODUCTION")]
    Production,
}

impl From<ModeName> for Mode {
    fn from(m: ModeName) -> Mode {
        match m {
            ModeName::Development => Mode::Development,
            ModeName::Preview => Mode::Preview,
            ModeName::Staging => Mode::Staging,
            ModeName::Production => Mode::Production,
        }
    }
}

impl From<Mode> for ModeName {
    fn from(m: Mode) -> ModeName {
        match m {
            Mode::Development => ModeName::Development,
            Mode::Preview => ModeName::Preview,
            Mode::Staging => ModeName::Staging,
            Mode::Production => ModeName::Production,
        }
    }
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PortInput {
    /// The port's name (`http`); the replica finds its port number in `PORT_<NAME>`
    /// (and the first port's in `PORT`), and `$PORT` in `args` is replaced by it.
    pub name: String,
    /// The port the application listens on in a container (Kubernetes); the local
    /// runtime hands each replica its own.
    #[serde(default)]
    #[schemars(range(min = 1, max = 65535))]
    pub port: Option<u16>,
    /// Whether it gets an endpoint URL (true by default).
    #[serde(default = "yes")]
    pub public: bool,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DeployInput {
    /// The environment to deploy into (PREVIEW or DEVELOPMENT).
    pub environment: String,
    /// The application's name within the environment.
    pub name: String,
    /// The program to run (the local runtime), e.g. `python3`.
    #[serde(default)]
    pub command: Option<String>,
    /// Its arguments, e.g. `["-m", "http.server", "$PORT"]`.
    #[serde(default)]
    pub args: Vec<String>,
    /// A container image (the Kubernetes runtime).
    #[serde(default)]
    pub image: Option<String>,
    /// An absolute working directory for the command.
    #[serde(default)]
    pub working_dir: Option<String>,
    /// The ports it listens on; public ones get endpoint URLs.
    #[serde(default)]
    pub ports: Vec<PortInput>,
    /// Environment variables (not secrets: they show in the spec).
    #[serde(default)]
    pub variables: BTreeMap<String, String>,
    /// How many replicas, 0 to 20 (1 by default).
    #[serde(default)]
    #[schemars(range(min = 0, max = 20))]
    pub replicas: Option<u32>,
    /// An HTTP path that answers 2xx when a replica is healthy, on the first port; by
    /// default a replica is healthy once its first port accepts connections.
    #[serde(default)]
    pub health_check_path: Option<String>,
    /// When the environment does not exist: create it with this mode (PREVIEW or
    /// DEVELOPMENT; the platform refuses the others).
    #[serde(default)]
    pub create_environment: Option<ModeName>,
}

/// Bounds on what one tool call may send: an AI agent's mistake must not become a
/// 10 MB spec.
const MAX_TEXT: usize = 4096;
const MAX_ARGS: usize = 64;
const MAX_PORTS: usize = 16;
const MAX_VARIABLES: usize = 128;
const MAX_VALUE: usize = 32 * 1024;
const MAX_REPLICAS: u32 = 20;

impl DeployInput {
    fn check(&self) -> Result<(), ToolError> {
        check_name("environment", &self.environment)?;
        check_name("name", &self.name)?;
        let text = |field: &str, value: &str| {
            if value.len() > MAX_TEXT {
                Err(input(field, format!("longer than {MAX_TEXT} bytes")))
            } else {
                Ok(())
            }
        };
        match (&self.command, &self.image) {
            (None, None) => {
                return Err(input(
                    "command",
                    "give the program to run (`command`, with `args`), or an `image` on Kubernetes",
                ))
            }
            (Some(command), _) if command.trim().is_empty() => {
                return Err(input("command", "is empty; name the program to run"))
            }
            _ => {}
        }
        if let Some(command) = &self.command {
            text("command", command)?;
        }
        if let Some(image) = &self.image {
            text("image", image)?;
        }
        if let Some(dir) = &self.working_dir {
            text("working_dir", dir)?;
        }
        if self.args.len() > MAX_ARGS {
            return Err(input("args", format!("more than {MAX_ARGS} arguments")));
        }
        for (i, arg) in self.args.iter().enumerate() {
            text(&format!("args[{i}]"), arg)?;
        }
        if self.ports.len() > MAX_PORTS {
            return Err(input("ports", format!("more than {MAX_PORTS} ports")));
        }
        let mut names = std::collections::BTreeSet::new();
        for (i, port) in self.ports.iter().enumerate() {
            check_name(&format!("ports[{i}].name"), &port.name)?;
            if !names.insert(port.name.as_str()) {
                return Err(input(
                    &format!("ports[{i}].name"),
                    format!("`{}` is used twice; give each port its own name", port.name),
                ));
            }
        }
        if self.variables.len() > MAX_VARIABLES {
            return Err(input(
                "variables",
                format!("more than {MAX_VARIABLES} variables"),
            ));
        }
        for (key, value) in &self.variables {
            if value.len() > MAX_VALUE {
                return Err(input(
                    &format!("variables.{key}"),
                    format!("longer than {MAX_VALUE} bytes"),
                ));
            }
        }
        if self.replicas.unwrap_or(1) > MAX_REPLICAS {
            return Err(input(
                "replicas",
                format!("at most {MAX_REPLICAS} replicas through MCP"),
            ));
        }
        if let Some(path) = &self.health_check_path {
            if !path.starts_with('/') || path.len() > 1024 {
                return Err(input(
                    "health_check_path",
                    "must be a path starting with `/`, e.g. `/healthz`",
                ));
            }
            if self.ports.is_empty() {
                return Err(input(
                    "health_check_path",
                    "needs a port to probe: add one to `ports`",
                ));
            }
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------
// Outputs

#[derive(Debug, Serialize, JsonSchema)]
pub struct ListOutput {
    /// Who the platform takes you for.
    pub caller: String,
    /// The modes whose environments you may change.
    pub you_may_change: Vec<ModeName>,
    pub environments: Vec<EnvironmentView>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct EnvironmentView {
    pub name: String,
    pub mode: ModeName,
    pub applications: Vec<AppSummary>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct AppSummary {
    pub name: String,
    /// `running`, `progressing`, `stopped` or `failed`.
    pub status: String,
    pub desired_replicas: u32,
    pub ready_replicas: u32,
    /// Endpoint URL per public port.
    pub endpoints: BTreeMap<String, String>,
    /// Why it is not running, when it is not.
    pub message: Option<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct Change {
    /// Who made the last change (an identity, or the person who merged).
    pub changed_by: String,
    /// `mcp`, `terraform-apply`, `merge`, ...
    pub how: String,
    pub changed_at: String,
    /// The deployed commit, for a change that came from git.
    pub commit: Option<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct AppOutput {
    pub environment: String,
    pub mode: ModeName,
    pub name: String,
    pub status: String,
    pub desired_replicas: u32,
    pub ready_replicas: u32,
    /// Endpoint URL per public port: where the application answers.
    pub endpoints: BTreeMap<String, String>,
    pub message: Option<String>,
    pub last_change: Change,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct ReplicaView {
    pub id: String,
    /// `starting`, `healthy`, `unhealthy`, `backoff`, `stopping` or `failed`.
    pub state: String,
    pub restarts: u32,
    pub last_error: Option<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct SpecView {
    pub command: Option<String>,
    pub args: Vec<String>,
    pub image: Option<String>,
    pub ports: Vec<String>,
    /// Variable names (values are in the spec; secrets never leave the platform).
    pub variables: Vec<String>,
    pub secrets: Vec<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct ShowOutput {
    pub application: AppOutput,
    pub spec: SpecView,
    pub replicas: Vec<ReplicaView>,
    /// The newest audit records about this application, newest first.
    pub recent_changes: Vec<AuditRecord>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct LogLine {
    pub replica: String,
    pub line: String,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct LogsOutput {
    pub lines: Vec<LogLine>,
    /// Whether older lines were left out to stay within the size bound.
    pub truncated: bool,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct AuditRecord {
    pub seq: i64,
    /// UTC, milliseconds since the Unix epoch.
    pub at_ms: i64,
    pub who: String,
    pub how: String,
    pub tool: Option<String>,
    pub action: String,
    pub object: String,
    pub mode: String,
    pub outcome: String,
    pub reason: Option<String>,
    pub commit: Option<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct AuditOutput {
    pub environment: String,
    pub records: Vec<AuditRecord>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct DestroyOutput {
    /// What was destroyed (`application pr-42/web`); empty when nothing existed.
    pub destroyed: Vec<String>,
}

// ---------------------------------------------------------------------------------
// The tools

pub fn mode_from_pb(m: i32) -> Option<Mode> {
    match pb::Mode::try_from(m).ok()? {
        pb::Mode::Development => Some(Mode::Development),
        pb::Mode::Preview => Some(Mode::Preview),
        pb::Mode::Staging => Some(Mode::Staging),
        pb::Mode::Production => Some(Mode::Production),
        pb::Mode::Unspecified => None,
    }
}

pub(crate) fn mode_to_pb(m: Mode) -> pb::Mode {
    match m {
        Mode::Development => pb::Mode::Development,
        Mode::Preview => pb::Mode::Preview,
        Mode::Staging => pb::Mode::Staging,
        Mode::Production => pb::Mode::Production,
    }
}

fn env_mode(env: &pb::Environment) -> ModeName {
    env.spec
        .as_ref()
        .and_then(|s| mode_from_pb(s.mode))
        .unwrap_or_default()
        .into()
}

fn phase_name(phase: i32) -> String {
    match pb::Phase::try_from(phase) {
        Ok(pb::Phase::Running) => "running",
        Ok(pb::Phase::Progressing) => "progressing",
        Ok(pb::Phase::Stopped) => "stopped",
        Ok(pb::Phase::Failed) => "failed",
        Err(_) => "unknown",
    }
    .into()
}

async fn list(caller: &mut Caller, input: ListInput) -> Result<ListOutput, ToolError> {
    let who = caller.who_am_i().await?;
    let status = caller.status().await?;
    let mut environments = Vec::new();
    for env in caller.environments().await? {
        let Some(spec) = &env.spec else { continue };
        if input.environment.as_ref().is_some_and(|e| *e != spec.name) {
            continue;
        }
        let applications = status
            .applications
            .iter()
            .filter(|a| a.environment == spec.name)
            .map(|a| AppSummary {
                name: a.name.clone(),
                status: phase_name(a.phase),
                desired_replicas: a.desired_replicas,
                ready_replicas: a.ready_replicas,
                endpoints: a.endpoints.clone().into_iter().collect(),
                message: a.message.clone(),
            })
            .collect();
        environments.push(EnvironmentView {
            name: spec.name.clone(),
            mode: env_mode(&env),
            applications,
        });
    }
    if let Some(name) = &input.environment {
        if environments.is_empty() {
            return Err(ToolError::NotFound(format!(
                "`environment`: no environment `{name}`; `{LIST}` without arguments lists them"
            )));
        }
    }
    Ok(ListOutput {
        caller: who.name,
        you_may_change: who.may_change.into_iter().map(ModeName::from).collect(),
        environments,
    })
}

/// The environment named `name`, or an error naming the field.
async fn environment(caller: &mut Caller, name: &str) -> Result<pb::Environment, ToolError> {
    check_name("environment", name)?;
    caller.find_environment(name).await?.ok_or_else(|| {
        ToolError::NotFound(format!(
            "`environment`: no environment `{name}`; `{LIST}` lists them"
        ))
    })
}

fn env_id(env: &pb::Environment) -> String {
    env.spec.as_ref().map(|s| s.id.clone()).unwrap_or_default()
}

async fn application(
    caller: &mut Caller,
    environment_name: &str,
    name: &str,
) -> Result<(pb::Environment, pb::Application), ToolError> {
    let env = environment(caller, environment_name).await?;
    check_name("name", name)?;
    let app = caller
        .find_application(&env_id(&env), name)
        .await?
        .ok_or_else(|| {
            ToolError::NotFound(format!(
                "`name`: no application `{name}` in environment `{environment_name}`; `{LIST}` lists them"
            ))
        })?;
    Ok((env, app))
}

fn app_output(env: &pb::Environment, app: pb::Application) -> AppOutput {
    let spec = app.spec.unwrap_or_default();
    let change = app.change.unwrap_or_default();
    AppOutput {
        environment: env
            .spec
            .as_ref()
            .map(|s| s.name.clone())
            .unwrap_or_default(),
        mode: env_mode(env),
        name: spec.name,
        status: phase_name(app.phase),
        desired_replicas: spec.replicas,
        ready_replicas: app.ready_replicas,
        endpoints: app.endpoints.into_iter().collect(),
        message: app.message,
        last_change: Change {
            changed_by: change.actor,
            how: change.trigger,
            changed_at: change.changed_at,
            commit: Some(change.commit_sha).filter(|c| !c.is_empty()),
        },
    }
}

async fn show(caller: &mut Caller, input: AppInput) -> Result<ShowOutput, ToolError> {
    let (env, app) = application(caller, &input.environment, &input.name).await?;
    let spec = app.spec.clone().unwrap_or_default();
    let status = caller.status().await?;
    let replicas = status
        .applications
        .into_iter()
        .find(|a| a.id == spec.id)
        .map(|a| {
            a.replicas
                .into_iter()
                .map(|r| ReplicaView {
                    id: r.id,
                    state: r.state,
                    restarts: r.restarts,
                    last_error: r.last_error,
                })
                .collect()
        })
        .unwrap_or_default();
    let object = format!("application {}/{}", input.environment, input.name);
    let recent_changes = audit_records(caller, |r| r["object"] == object.as_str(), 10).await?;
    Ok(ShowOutput {
        spec: SpecView {
            command: spec.command.clone(),
            args: spec.args.clone(),
            image: spec.image.clone(),
            ports: spec.ports.iter().map(|p| p.name.clone()).collect(),
            variables: spec.variables.keys().cloned().collect(),
            secrets: spec.secrets.keys().cloned().collect(),
        },
        application: app_output(&env, app),
        replicas,
        recent_changes,
    })
}

/// The most lines a log answer carries, in bytes.
const MAX_LOG_BYTES: usize = 256 * 1024;

async fn logs(caller: &mut Caller, input: LogsInput) -> Result<LogsOutput, ToolError> {
    let lines = input.lines.unwrap_or(100);
    if !(1..=500).contains(&lines) {
        return Err(input_error_lines());
    }
    let (_, app) = application(caller, &input.environment, &input.name).await?;
    let id = app.spec.map(|s| s.id).unwrap_or_default();
    // The platform redacts secret values line by line before they leave it.
    let all = caller.logs(&id, lines).await?;
    // Keep the newest lines within the byte bound.
    let mut kept = Vec::new();
    let mut bytes = 0;
    let mut truncated = false;
    for line in all.into_iter().rev() {
        bytes += line.line.len() + line.replica.len();
        if bytes > MAX_LOG_BYTES {
            truncated = true;
            break;
        }
        kept.push(LogLine {
            replica: line.replica,
            line: line.line,
        });
    }
    kept.reverse();
    Ok(LogsOutput {
        lines: kept,
        truncated,
    })
}

fn input_error_lines() -> ToolError {
    input("lines", "must be between 1 and 500")
}

async fn audit(caller: &mut Caller, input: AuditInput) -> Result<AuditOutput, ToolError> {
    let limit = input.limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(self::input("limit", "must be between 1 and 500"));
    }
    check_name("environment", &input.environment)?;
    let environment = input.environment.clone();
    let records = audit_records(
        caller,
        |r| r["environment"] == environment.as_str(),
        limit as usize,
    )
    .await?;
    Ok(AuditOutput {
        environment: input.environment,
        records,
    })
}

/// The newest `limit` audit records that `keep` selects, newest first.
async fn audit_records(
    caller: &mut Caller,
    keep: impl Fn(&serde_json::Value) -> bool,
    limit: usize,
) -> Result<Vec<AuditRecord>, ToolError> {
    let records = caller.audit().await?;
    let text = |r: &serde_json::Value, k: &str| r[k].as_str().unwrap_or_default().to_owned();
    let optional = |r: &serde_json::Value, k: &str| r[k].as_str().map(str::to_owned);
    Ok(records
        .iter()
        .rev()
        .filter_map(|json| serde_json::from_str::<serde_json::Value>(json).ok())
        .filter(|r| keep(r))
        .take(limit)
        .map(|r| AuditRecord {
            seq: r["seq"].as_i64().unwrap_or_default(),
            at_ms: r["at_ms"].as_i64().unwrap_or_default(),
            who: text(&r, "who"),
            how: text(&r, "how"),
            tool: optional(&r, "tool"),
            action: text(&r, "action"),
            object: text(&r, "object"),
            mode: text(&r, "mode"),
            outcome: text(&r, "outcome"),
            reason: optional(&r, "reason"),
            commit: optional(&r, "commit"),
        })
        .collect())
}

/// A fresh id for an object created over MCP.
fn new_id(kind: &str) -> Result<String, ToolError> {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes)
        .map_err(|e| ToolError::Platform(PlatformError::Invalid(format!("random id: {e}"))))?;
    Ok(format!("mcp-{kind}-{}", hex::encode(bytes)))
}

async fn deploy(caller: &mut Caller, input: DeployInput) -> Result<AppOutput, ToolError> {
    input.check()?;
    let env = match caller.find_environment(&input.environment).await? {
        Some(env) => env,
        None => {
            let Some(mode) = input.create_environment else {
                return Err(ToolError::NotFound(format!(
                    "`environment`: no environment `{}`; set `create_environment` to PREVIEW or DEVELOPMENT to create it",
                    input.environment
                )));
            };
            caller
                .apply_environment(pb::EnvironmentSpec {
                    id: new_id("env")?,
                    name: input.environment.clone(),
                    mode: mode_to_pb(mode.into()) as i32,
                    variables: Default::default(),
                    secrets: Default::default(),
                })
                .await?
        }
    };
    let prior = caller
        .find_application(&env_id(&env), &input.name)
        .await?
        .and_then(|a| a.spec);
    let ports: Vec<pb::PortSpec> = input
        .ports
        .iter()
        .enumerate()
        .map(|(i, p)| pb::PortSpec {
            name: p.name.clone(),
            port: u32::from(p.port.unwrap_or(8000 + i as u16)),
            protocol: pb::Protocol::Tcp as i32,
            public: p.public,
        })
        .collect();
    let probe_port = ports.first().map(|p| p.port);
    let healthcheck = match (&input.health_check_path, probe_port) {
        (Some(path), Some(port)) => Some(pb::health_check::Probe::Http(pb::HttpProbe {
            path: path.clone(),
            port,
        })),
        (None, Some(port)) => Some(pb::health_check::Probe::Tcp(pb::TcpProbe { port })),
        _ => None,
    }
    .map(|probe| pb::HealthCheck {
        probe: Some(probe),
        interval_ms: 200,
        timeout_ms: 1000,
        healthy_threshold: 1,
        unhealthy_threshold: 3,
    });
    let spec = pb::ApplicationSpec {
        id: match &prior {
            Some(p) => p.id.clone(),
            None => new_id("app")?,
        },
        environment_id: env_id(&env),
        name: input.name.clone(),
        image: input.image.clone(),
        command: input.command.clone(),
        args: input.args.clone(),
        working_dir: input.working_dir.clone(),
        replicas: input.replicas.unwrap_or(1),
        ports,
        variables: input.variables.clone().into_iter().collect(),
        // An update keeps the secrets a Terraform configuration gave it: the platform
        // reads their digests back as "unchanged".
        secrets: prior
            .as_ref()
            .map(|p| p.secrets.clone())
            .unwrap_or_default(),
        healthcheck,
        resources: prior.and_then(|p| p.resources),
    };
    let app = caller.apply_application(spec).await?;
    Ok(app_output(&env, app))
}

/// Re-applies an application's spec as the platform gave it back, changed by `edit`
/// (secrets come back as digests, which the platform keeps as they are).
async fn reapply(
    caller: &mut Caller,
    input: &AppInput,
    edit: impl FnOnce(&mut pb::ApplicationSpec),
) -> Result<AppOutput, ToolError> {
    let (env, app) = application(caller, &input.environment, &input.name).await?;
    let mut spec = app.spec.unwrap_or_default();
    edit(&mut spec);
    let app = caller.apply_application(spec).await?;
    Ok(app_output(&env, app))
}

async fn scale(caller: &mut Caller, input: ScaleInput) -> Result<AppOutput, ToolError> {
    if input.replicas > MAX_REPLICAS {
        return Err(self::input(
            "replicas",
            format!("at most {MAX_REPLICAS} replicas through MCP"),
        ));
    }
    let replicas = input.replicas;
    let app = AppInput {
        environment: input.environment,
        name: input.name,
    };
    reapply(caller, &app, |spec| spec.replicas = replicas).await
}

/// Every apply rolls the replicas, each new one healthy before an old one stops: the
/// same spec again is a rolling restart.
async fn restart(caller: &mut Caller, input: AppInput) -> Result<AppOutput, ToolError> {
    reapply(caller, &input, |_| {}).await
}

async fn destroy_application(
    caller: &mut Caller,
    input: AppInput,
) -> Result<DestroyOutput, ToolError> {
    let (_, app) = application(caller, &input.environment, &input.name).await?;
    let id = app.spec.map(|s| s.id).unwrap_or_default();
    caller.delete_application(&id).await?;
    Ok(DestroyOutput {
        destroyed: vec![format!("application {}/{}", input.environment, input.name)],
    })
}

async fn destroy_environment(
    caller: &mut Caller,
    input: EnvironmentInput,
) -> Result<DestroyOutput, ToolError> {
    let env = environment(caller, &input.environment).await?;
    let id = env_id(&env);
    let mut destroyed = Vec::new();
    let status = caller.status().await?;
    for app in status
        .applications
        .iter()
        .filter(|a| a.environment == input.environment)
    {
        caller.delete_application(&app.id).await?;
        destroyed.push(format!("application {}/{}", input.environment, app.name));
    }
    caller.delete_environment(&id).await?;
    destroyed.push(format!("environment {}", input.environment));
    Ok(DestroyOutput { destroyed })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deploy(args: serde_json::Value) -> Result<DeployInput, ToolError> {
        let input: DeployInput = parse(args)?;
        input.check()?;
        Ok(input)
    }

    fn field_of(e: ToolError) -> String {
        match e {
            ToolError::Input { field, .. } => field,
            other => panic!("not an input error: {other}"),
        }
    }

    #[test]
    fn bad_input_names_the_field() {
        let base = serde_json::json!({"environment": "pr-1", "name": "web", "command": "app"});
        deploy(base.clone()).unwrap();
        let with = |key: &str, value: serde_json::Value| {
            let mut args = base.clone();
            args[key] = value;
            field_of(deploy(args).unwrap_err())
        };
        assert_eq!(with("environment", "PR 1".into()), "environment");
        assert_eq!(with("replicas", 21.into()), "replicas");
        assert_eq!(with("replicas", (-1).into()), "replicas");
        assert_eq!(
            with("args", serde_json::json!(["x".repeat(5000)])),
            "args[0]"
        );
        assert_eq!(
            with(
                "ports",
                serde_json::json!([{"name": "http", "port": 70000}])
            ),
            "ports[0].port"
        );
        assert_eq!(
            with("ports", serde_json::json!([{"name": "a"}, {"name": "a"}])),
            "ports[1].name"
        );
        assert_eq!(
            with("create_environment", "QA".into()),
            "create_environment"
        );
        assert_eq!(
            with("health_check_path", "healthz".into()),
            "health_check_path"
        );
        let mut unknown = base.clone();
        unknown["colour"] = "blue".into();
        let e = deploy(unknown).unwrap_err();
        assert!(e.to_string().contains("colour"), "{e}");
        let e = deploy(serde_json::json!({"environment": "pr-1", "name": "web"})).unwrap_err();
        assert_eq!(field_of(e), "command");
    }

    #[test]
    fn every_tool_has_an_object_schema_and_only_destroys_are_destructive() {
        let tools = catalogue();
        assert_eq!(tools.len(), 9);
        for tool in &tools {
            assert_eq!(tool.input_schema["type"], "object", "{}", tool.name);
            let output = tool.output_schema.as_ref().expect("structured output");
            assert_eq!(output["type"], "object", "{}", tool.name);
            let annotations = tool.annotations.as_ref().expect("annotations");
            let writes = WRITE_TOOLS.contains(&tool.name.as_ref());
            assert_eq!(annotations.read_only_hint, Some(!writes), "{}", tool.name);
            let destructive = tool.name.starts_with("destroy_");
            if writes {
                assert_eq!(
                    annotations.destructive_hint,
                    Some(destructive),
                    "{}",
                    tool.name
                );
            }
        }
    }
}
