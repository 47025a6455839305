//! `slipway_application`: a program (local runtime) or container image (Kubernetes)
//! run as replicas in an environment, with ports, variables, secrets, a health check
//! and resource limits.
//!
//! Plans stay empty when nothing changed: `status` is the steady outcome of a rollout
//! (`running`, or `stopped` at zero replicas) rather than a moment of it, `endpoints`
//! keep their prior value while the ports do not change, and "unset" is planned as
//! what the runtime will hold (empty, or the default), so that an import, which sees
//! only the runtime, matches either spelling. Reads report what really runs, so
//! replicas scaled or applications deleted outside Terraform show up in the next plan.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tfplug::schema::{Attribute, Block, Nesting, Schema};
use tfplug::{
    async_trait, validator, AttributePath, Context, Diagnostic, Diagnostics, PlannedChange,
    Resource, Value,
};

use super::{duration_text, duration_validator, error_at, new_id, parse_duration, runtime_error};
use crate::provenance::production_gate;
use crate::provider::SlipwayClient;
use crate::runtime::variables::names_validator;
use crate::runtime::{
    Application, ApplicationSpec, HealthCheck, HealthProbe, Phase, PlannedApplication, PortSpec,
    Protocol, ResourceLimits, Runtime, RuntimeError,
};
use slipway_platform::{Action, Target};

const DEFAULT_CREATE_TIMEOUT: Duration = Duration::from_secs(600);
const DEFAULT_UPDATE_TIMEOUT: Duration = Duration::from_secs(600);
const DEFAULT_DELETE_TIMEOUT: Duration = Duration::from_secs(300);
const MAX_REPLICAS: i64 = 100;

/// The resource's state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApplicationState {
    pub id: Option<String>,
    pub environment_id: String,
    pub name: String,
    pub image: Option<String>,
    pub command: Option<String>,
    pub args: Option<Vec<String>>,
    pub working_dir: Option<String>,
    pub replicas: Option<i64>,
    pub ports: Option<Vec<PortState>>,
    pub variables: Option<BTreeMap<String, String>>,
    pub secrets: Option<BTreeMap<String, String>>,
    pub healthcheck: Option<HealthcheckState>,
    pub resources: Option<ResourcesState>,
    pub timeouts: Option<TimeoutsState>,
    pub endpoints: Option<BTreeMap<String, String>>,
    pub status: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PortState {
    pub name: String,
    pub port: i64,
    pub protocol: Option<String>,
    pub public: Option<bool>,
}

/// The health check, flat rather than one nested object per kind: Terraform 1.0
/// crashes planning a nested attribute inside a nested attribute.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HealthcheckState {
    /// `http`, `tcp` or `exec`.
    #[serde(rename = "type")]
    pub kind: String,
    /// http: the path to GET (`/` when unset).
    pub path: Option<String>,
    /// http and tcp: the port to check.
    pub port: Option<i64>,
    /// exec: the command to run.
    pub command: Option<Vec<String>>,
    pub interval: Option<String>,
    pub timeout: Option<String>,
    pub healthy_threshold: Option<i64>,
    pub unhealthy_threshold: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResourcesState {
    pub cpu: Option<String>,
    pub memory: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimeoutsState {
    pub create: Option<String>,
    pub update: Option<String>,
    pub delete: Option<String>,
}

fn root(name: &str) -> AttributePath {
    AttributePath::root(name)
}

fn port_number(value: i64, path: AttributePath) -> Result<u16, Diagnostics> {
    u16::try_from(value).ok().filter(|p| *p > 0).ok_or_else(|| {
        error_at(
            path.clone(),
            "Value out of range",
            format!("{path}: {value} is not a port; use a whole number from 1 to 65535."),
        )
    })
}

fn threshold(value: Option<i64>, default: u32, path: AttributePath) -> Result<u32, Diagnostics> {
    match value {
        None => Ok(default),
        Some(v) => u32::try_from(v).ok().filter(|v| *v >= 1).ok_or_else(|| {
            error_at(
                path.clone(),
                "Value out of range",
                format!("{path}: {v} is not allowed; use a whole number of at least 1."),
            )
        }),
    }
}

fn duration_at(
    text: Option<&str>,
    default: Duration,
    path: AttributePath,
) -> Result<Duration, Diagnostics> {
    match text {
        None => Ok(default),
        Some(t) => parse_duration(t)
            .map_err(|e| error_at(path.clone(), "Invalid duration", format!("{path}: {e}"))),
    }
}

impl HealthcheckState {
    fn to_runtime(&self) -> Result<HealthCheck, Diagnostics> {
        let at = root("healthcheck");
        if let Some(problem) = probe_problem(
            Some(self.kind.as_str()),
            self.path.is_some(),
            self.port.is_some(),
            self.command.as_ref().map(Vec::len),
        ) {
            return Err(error_at(at, "Invalid health check", problem));
        }
        let port = || port_number(self.port.unwrap_or_default(), at.attribute("port"));
        let probe = match self.kind.as_str() {
            "http" => HealthProbe::Http {
                path: self.path.clone().unwrap_or_else(|| "/".to_owned()),
                port: port()?,
            },
            "tcp" => HealthProbe::Tcp { port: port()? },
            _ => HealthProbe::Exec {
                command: self.command.clone().unwrap_or_default(),
            },
        };
        Ok(HealthCheck {
            probe,
            interval: duration_at(
                self.interval.as_deref(),
                Duration::from_secs(10),
                at.attribute("interval"),
            )?,
            timeout: duration_at(
                self.timeout.as_deref(),
                Duration::from_secs(5),
                at.attribute("timeout"),
            )?,
            healthy_threshold: threshold(
                self.healthy_threshold,
                1,
                at.attribute("healthy_threshold"),
            )?,
            unhealthy_threshold: threshold(
                self.unhealthy_threshold,
                3,
                at.attribute("unhealthy_threshold"),
            )?,
        })
    }

    fn from_runtime(check: HealthCheck, had: Option<&HealthcheckState>) -> HealthcheckState {
        let (kind, path, port, command) = match check.probe {
            // The path is computed ("/" when unset), so whether the configuration wrote
            // "/" or nothing, the state and an import say "/".
            HealthProbe::Http { path, port } => ("http", Some(path), Some(port.into()), None),
            HealthProbe::Tcp { port } => ("tcp", None, Some(port.into()), None),
            HealthProbe::Exec { command } => ("exec", None, None, Some(command)),
        };
        HealthcheckState {
            kind: kind.to_owned(),
            path,
            port,
            command,
            interval: Some(duration_text(
                had.and_then(|h| h.interval.as_deref()),
                check.interval,
            )),
            timeout: Some(duration_text(
                had.and_then(|h| h.timeout.as_deref()),
                check.timeout,
            )),
            healthy_threshold: Some(check.healthy_threshold.into()),
            unhealthy_threshold: Some(check.unhealthy_threshold.into()),
        }
    }
}

/// What is wrong with a health check's kind and the attributes set for it, if
/// anything. `kind` is `None` while unknown; `command` is the command's length.
fn probe_problem(
    kind: Option<&str>,
    path: bool,
    port: bool,
    command: Option<usize>,
) -> Option<String> {
    let problem = match kind? {
        "http" | "tcp" if !port => "healthcheck.port: an http or tcp check needs `port`.",
        "http" | "tcp" if command.is_some() => {
            "healthcheck.command: only an exec check runs a command; remove `command` or use type = \"exec\"."
        }
        "tcp" if path => "healthcheck.path: only an http check has a path; remove `path` or use type = \"http\".",
        "exec" if command.unwrap_or(0) == 0 => {
            "healthcheck.command: an exec check needs a non-empty `command`, like [\"/bin/check\", \"--quick\"]."
        }
        "exec" if port || path => {
            "healthcheck: an exec check takes no `port` or `path`; remove them or use type = \"http\" or \"tcp\"."
        }
        "http" | "tcp" | "exec" => return None,
        _ => "healthcheck.type: use one of http, tcp or exec.",
    };
    Some(problem.to_owned())
}

/// The `status` a successful rollout of `replicas` leaves: what plans predict.
fn steady_status(replicas: i64) -> &'static str {
    if replicas == 0 {
        "stopped"
    } else {
        "running"
    }
}

fn phase_status(phase: Phase) -> &'static str {
    match phase {
        Phase::Running => "running",
        Phase::Progressing => "progressing",
        Phase::Stopped => "stopped",
        Phase::Failed => "failed",
    }
}

impl ApplicationState {
    fn id(&self) -> Result<&str, Diagnostics> {
        self.id.as_deref().ok_or_else(|| {
            Diagnostic::error(
                "Application has no id",
                "The state of this slipway_application has no id. Remove it from the state (terraform state rm) and import it by id.",
            )
            .into()
        })
    }

    fn replicas(&self) -> i64 {
        self.replicas.unwrap_or(1)
    }

    fn timeout(
        &self,
        pick: fn(&TimeoutsState) -> Option<&str>,
        name: &str,
        default: Duration,
    ) -> Result<Duration, Diagnostics> {
        duration_at(
            self.timeouts.as_ref().and_then(pick),
            default,
            root("timeouts").attribute(name),
        )
    }

    /// The runtime spec for this state, checking what the schema could not (values that
    /// were unknown at validation).
    fn to_spec(&self, id: String) -> Result<ApplicationSpec, Diagnostics> {
        let replicas = u32::try_from(self.replicas())
            .ok()
            .filter(|r| i64::from(*r) <= MAX_REPLICAS)
            .ok_or_else(|| {
                error_at(
                    root("replicas"),
                    "Value out of range",
                    format!(
                        "replicas is {}; use 0 (stopped) to {MAX_REPLICAS}.",
                        self.replicas()
                    ),
                )
            })?;
        let mut ports = Vec::new();
        for (i, p) in self.ports.iter().flatten().enumerate() {
            let at = root("ports").index(i);
            let protocol = match p.protocol.as_deref().unwrap_or("tcp") {
                "tcp" => Protocol::Tcp,
                "udp" => Protocol::Udp,
                other => {
                    return Err(error_at(
                        at,
                        "Invalid value",
                        format!(
                        "ports[{i}].protocol: {other:?} is not allowed here; use one of: tcp, udp."
                    ),
                    ))
                }
            };
            ports.push(PortSpec {
                name: p.name.clone(),
                port: port_number(p.port, at.clone())?,
                protocol,
                public: p.public.unwrap_or(false),
            });
        }
        let healthcheck = match &self.healthcheck {
            Some(h) => Some(h.to_runtime()?),
            None => None,
        };
        Ok(ApplicationSpec {
            id,
            environment_id: self.environment_id.clone(),
            name: self.name.clone(),
            image: self.image.clone(),
            command: self.command.clone(),
            args: self.args.clone().unwrap_or_default(),
            working_dir: self.working_dir.clone(),
            replicas,
            ports,
            variables: self.variables.clone().unwrap_or_default(),
            secrets: self.secrets.clone().unwrap_or_default(),
            healthcheck,
            resources: ResourceLimits {
                cpu: self.resources.as_ref().and_then(|r| r.cpu.clone()),
                memory: self.resources.as_ref().and_then(|r| r.memory.clone()),
            },
        })
    }

    /// The state for what the runtime has. `had` is the state Terraform holds (the
    /// configuration's shape: unset stays unset, durations keep their spelling);
    /// `status` overrides the one derived from the phase.
    fn from_runtime(
        app: Application,
        had: Option<&ApplicationState>,
        status: Option<&str>,
    ) -> ApplicationState {
        let spec = app.spec;
        let ports: Vec<PortState> = spec
            .ports
            .into_iter()
            .map(|p| PortState {
                name: p.name,
                port: p.port.into(),
                protocol: Some(
                    match p.protocol {
                        Protocol::Tcp => "tcp",
                        Protocol::Udp => "udp",
                    }
                    .to_owned(),
                ),
                public: Some(p.public),
            })
            .collect();
        let resources = Some(ResourcesState {
            cpu: spec.resources.cpu,
            memory: spec.resources.memory,
        });
        // The runtime gives digests, not values: keep the values the state knows.
        let secrets = crate::runtime::secrets::reconcile(
            &spec.id,
            had.and_then(|h| h.secrets.as_ref())
                .unwrap_or(&BTreeMap::new()),
            &spec.secrets,
        );
        ApplicationState {
            id: Some(spec.id),
            environment_id: spec.environment_id,
            name: spec.name,
            image: spec.image,
            command: spec.command,
            args: Some(spec.args),
            working_dir: spec.working_dir,
            replicas: Some(spec.replicas.into()),
            ports: Some(ports),
            variables: Some(spec.variables),
            secrets: Some(secrets),
            healthcheck: spec.healthcheck.map(|c| {
                HealthcheckState::from_runtime(c, had.and_then(|h| h.healthcheck.as_ref()))
            }),
            resources,
            timeouts: had.and_then(|h| h.timeouts.clone()),
            endpoints: Some(app.endpoints),
            status: Some(status.unwrap_or(phase_status(app.phase)).to_owned()),
        }
    }
}

/// A configured string: not known yet, unset, or a value.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Field<'a> {
    Unknown,
    Null,
    Known(&'a str),
}

impl<'a> Field<'a> {
    fn of(value: &'a Value) -> Field<'a> {
        match value {
            Value::Unknown => Field::Unknown,
            Value::Null => Field::Null,
            other => other.as_str().map(Field::Known).unwrap_or(Field::Unknown),
        }
    }

    fn of_option(value: &'a Option<String>) -> Field<'a> {
        value.as_deref().map(Field::Known).unwrap_or(Field::Null)
    }
}

/// Checks that depend on the configured runtime: the local runtime runs a program that
/// must exist on this machine; Kubernetes runs an image.
fn runtime_checks(kind: &str, image: Field, command: Field, working_dir: Field) -> Diagnostics {
    let mut diags = Diagnostics::new();
    match kind {
        "local" => {
            if command == Field::Null {
                diags.push(
                    Diagnostic::error(
                        "The local runtime needs a command",
                        if image == Field::Null {
                            "command: the local runtime runs a program on this machine; set `command` (and `args`).".to_owned()
                        } else {
                            "command: the local runtime runs a program on this machine, not a container image; set `command` (and `args`). `image` is used only by the kubernetes runtime.".to_owned()
                        },
                    )
                    .at(root("command")),
                );
            }
            let dir = match working_dir {
                Field::Known(dir) => {
                    if !Path::new(dir).is_dir() {
                        diags.push(
                            Diagnostic::error(
                                "Working directory does not exist",
                                format!("working_dir: {dir:?} is not a directory on this machine; create it or fix the path."),
                            )
                            .at(root("working_dir")),
                        );
                    }
                    Some(dir)
                }
                _ => None,
            };
            if let Field::Known(command) = command {
                if working_dir != Field::Unknown {
                    if let Err(why) = find_command(command, dir) {
                        diags.push(
                            Diagnostic::error("Command not found", format!("command: {why}"))
                                .at(root("command")),
                        );
                    }
                }
            }
        }
        "kubernetes" if image == Field::Null => {
            diags.push(
                    Diagnostic::error(
                        "The kubernetes runtime needs an image",
                        "image: the kubernetes runtime runs a container image; set `image`. `command` alone is used only by the local runtime.",
                    )
                    .at(root("image")),
                );
        }
        _ => {}
    }
    diags
}

/// The runtime's own plan-time rules ([`Runtime::check_application`]), as errors at the
/// attribute and key to fix.
fn runtime_rules(runtime: &dyn Runtime, planned: &Value) -> Diagnostics {
    let keys = |a: &str| {
        planned
            .get(a)
            .as_object()
            .map(|m| m.keys().map(String::as_str).collect())
            .unwrap_or_default()
    };
    let application = PlannedApplication {
        name: planned.get("name").as_str(),
        variables: keys("variables"),
        secrets: keys("secrets"),
    };
    let mut diags = Diagnostics::new();
    for problem in runtime.check_application(&application) {
        let path = match problem.key {
            Some(key) => root(problem.attribute).key(key),
            None => root(problem.attribute),
        };
        diags.push(Diagnostic::error(problem.summary, problem.detail).at(path));
    }
    diags
}

/// Where the local runtime will find `command`: a path (absolute, or relative to the
/// working directory) to an executable file, or a name on `PATH`.
pub fn find_command(command: &str, working_dir: Option<&str>) -> Result<PathBuf, String> {
    if command.is_empty() {
        return Err("the command is empty; set the program to run.".to_owned());
    }
    if command.contains('/') {
        let path = match working_dir {
            Some(dir) if !Path::new(command).is_absolute() => Path::new(dir).join(command),
            _ => PathBuf::from(command),
        };
        return if is_executable(&path) {
            Ok(path)
        } else if path.exists() {
            Err(format!(
                "{} exists but is not an executable file; check its permissions (chmod +x).",
                path.display()
            ))
        } else {
            Err(format!(
                "{} does not exist; build the program or fix the path.",
                path.display()
            ))
        };
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join(command))
        .find(|candidate| is_executable(candidate))
        .ok_or_else(|| {
            format!(
                "{command:?} is not an executable on PATH; give its absolute path, or install it."
            )
        })
}

fn is_executable(path: &Path) -> bool {
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_file() => {
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                meta.permissions().mode() & 0o111 != 0
            }
            #[cfg(not(unix))]
            {
                true
            }
        }
        _ => false,
    }
}

/// A rollout failure as a diagnostic at the attribute most likely responsible: the
/// health check when the message is about health, else the command. The runtime's
/// message names the failing check and redacts secrets.
fn rollout_failed(
    action: &str,
    error: RuntimeError,
    has_healthcheck: bool,
    note: &str,
) -> Diagnostics {
    let is_rollout = matches!(error, RuntimeError::RolloutFailed(_));
    let mut d = runtime_error(action, error);
    if !note.is_empty() {
        d.detail = format!("{} {note}", d.detail);
    }
    if is_rollout {
        // A replica that exits or cannot start is the command's fault even when the
        // message goes on to say it never became healthy.
        let text = d.detail.to_lowercase();
        let about_command = [
            "exited",
            "exit status",
            "exit code",
            "no such file",
            "not found",
            "could not start",
            "failed to start",
            "spawn",
            "killed by signal",
        ]
        .iter()
        .any(|w| text.contains(w));
        let about_health = text.contains("health");
        d = d.at(root(if has_healthcheck && about_health && !about_command {
            "healthcheck"
        } else {
            "command"
        }));
    }
    d.into()
}

/// `slipway_application`.
pub struct ApplicationResource;

/// Plans what the runtime will hold for attributes the configuration leaves unset:
/// empty lists and maps, no resource limits, the `/` of an http check. The state then
/// says the same whether the configuration wrote `args = []` (or `path = "/"`) or
/// nothing, and so does an import, which knows only what the runtime has: the first
/// plan after `terraform import` is empty. These attributes are optional *and
/// computed* for this.
fn unset_as_empty(config: &Value, attributes: &mut BTreeMap<String, Value>) {
    let unset = |name: &str| config.get(name).is_null();
    for name in ["args", "ports"] {
        if unset(name) {
            attributes.insert(name.into(), Value::List(Vec::new()));
        }
    }
    for name in ["variables", "secrets"] {
        if unset(name) {
            attributes.insert(name.into(), Value::Map(BTreeMap::new()));
        }
    }
    if unset("resources") {
        attributes.insert(
            "resources".into(),
            Value::object([("cpu", Value::Null), ("memory", Value::Null)]),
        );
    }
    let check = config.get("healthcheck");
    if let Some(planned) = attributes
        .get_mut("healthcheck")
        .and_then(Value::as_object_mut)
    {
        if check.get("path").is_null() {
            let path = match check.get("type") {
                Value::Unknown => Value::Unknown,
                kind if kind.as_str() == Some("http") => Value::from("/"),
                _ => Value::Null,
            };
            planned.insert("path".into(), path);
        }
    }
}

/// The nested attributes; see `modify_plan` for why they are marked computed.
const NESTED: [&str; 4] = ["ports", "healthcheck", "resources", "timeouts"];

fn cpu_validator() -> impl validator::Validator {
    validator::from_fn("Invalid CPU quantity", |value| {
        let s = value.as_str().unwrap_or_default();
        let number = s.strip_suffix('m').unwrap_or(s);
        let ok = !number.is_empty()
            && number.chars().all(|c| c.is_ascii_digit() || c == '.')
            && number.parse::<f64>().is_ok_and(|n| n > 0.0);
        if ok {
            Ok(())
        } else {
            Err(format!("{s:?} is not a CPU quantity; use cores like \"0.5\" or \"2\", or millicores like \"500m\"."))
        }
    })
}

fn memory_validator() -> impl validator::Validator {
    validator::from_fn("Invalid memory quantity", |value| {
        let s = value.as_str().unwrap_or_default();
        let digits = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let unit = &s[digits..];
        let ok = digits > 0
            && ["", "K", "M", "G", "T", "Ki", "Mi", "Gi", "Ti"].contains(&unit)
            && s[..digits].parse::<u64>().is_ok_and(|n| n > 0);
        if ok {
            Ok(())
        } else {
            Err(format!(
                "{s:?} is not a memory quantity; use bytes with a unit, like \"256Mi\" or \"1Gi\"."
            ))
        }
    })
}

fn port_attribute(name: &str) -> Attribute {
    Attribute::number(name)
        .required()
        .validator(validator::int_between(1, 65535))
}

impl ApplicationResource {
    /// The production gate, and at plan (`asking` names the change) the platform's
    /// decision, so that a refusal shows before anything is written.
    async fn environment_gate(
        &self,
        client: &SlipwayClient,
        environment_id: &str,
        name: &str,
        asking: Option<Action>,
    ) -> Result<(), Diagnostics> {
        let environment = client
            .runtime
            .get_environment(environment_id)
            .await
            .map_err(|e| runtime_error("read the application's environment", e))?;
        if let Some(environment) = environment {
            production_gate(
                &client.policy,
                &client.provenance,
                environment.spec.mode,
                &format!(
                    "application {name:?} is in environment {:?}, which",
                    environment.spec.name
                ),
                Some(root("environment_id")),
            )?;
            if let Some(action) = asking {
                let target = Target {
                    environment: environment.spec.name.clone(),
                    mode: environment.spec.mode,
                };
                let object = format!("application {}/{name}", environment.spec.name);
                client
                    .runtime
                    .authorize(action, &target, &object)
                    .await
                    .map_err(|e| runtime_error("plan this change", e).at(root("environment_id")))?;
            }
        }
        Ok(())
    }
}

/// The runtime's own checks (image or command, working directory), again at apply:
/// a saved plan may be applied with another runtime configured.
fn apply_time_checks(
    client: &SlipwayClient,
    planned: &ApplicationState,
) -> Result<(), Diagnostics> {
    let checks = runtime_checks(
        client.runtime.kind(),
        Field::of_option(&planned.image),
        Field::of_option(&planned.command),
        Field::of_option(&planned.working_dir),
    );
    if checks.has_errors() {
        return Err(checks);
    }
    Ok(())
}

#[async_trait]
impl Resource for ApplicationResource {
    type Client = SlipwayClient;
    type State = ApplicationState;

    fn type_name(&self) -> &str {
        "slipway_application"
    }

    fn schema(&self) -> Schema {
        Schema::new(
            Block::new()
                .description("An application: replicas of a program (local runtime) or container image (Kubernetes) in an environment.")
                .attribute(Attribute::string("id").computed().use_state_for_unknown().description("The application's id; import with it."))
                .attribute(Attribute::string("environment_id").required().requires_replace().description("The id of the slipway_environment it runs in. Changing it replaces the application."))
                .attribute(Attribute::string("name").required().validator(validator::dns_label()).description("A DNS label, unique within the environment."))
                .attribute(Attribute::string("image").optional().description("The container image, for the kubernetes runtime."))
                .attribute(Attribute::string("command").optional().description("The program to run, for the local runtime: an absolute path, a path relative to working_dir, or a name on PATH."))
                .attribute(Attribute::string_list("args").optional().computed().description("The command's arguments."))
                .attribute(Attribute::string("working_dir").optional().description("The directory the command runs in."))
                .attribute(
                    Attribute::number("replicas")
                        .default(1)
                        .validator(validator::int_between(0, MAX_REPLICAS))
                        .description("How many copies run; 0 means stopped. Defaults to 1."),
                )
                .attribute(
                    Attribute::nested(
                        "ports",
                        Nesting::List,
                        vec![
                            Attribute::string("name").required().validator(validator::dns_label()),
                            port_attribute("port").description("The port the application listens on. The local runtime gives each replica a free port in PORT and PORT_<NAME> instead, and sends health checks naming this number there."),
                            Attribute::string("protocol").default("tcp").validator(validator::one_of(&["tcp", "udp"])),
                            Attribute::bool("public").default(false).description("Public ports get an endpoint, balanced over healthy replicas."),
                        ],
                    )
                    .optional()
                    .computed()
                    .description("The ports the application listens on."),
                )
                .attribute(Attribute::string_map("variables").optional().computed().validator(names_validator()).description("Environment variables, on top of the environment's."))
                .attribute(Attribute::string_map("secrets").optional().computed().sensitive().validator(names_validator()).description("Secret environment variables; never shown or logged."))
                .attribute(
                    Attribute::nested(
                        "healthcheck",
                        Nesting::Single,
                        vec![
                            Attribute::string("type")
                                .required()
                                .validator(validator::one_of(&["http", "tcp", "exec"]))
                                .description("http: GET path on port answers 2xx or 3xx; tcp: port accepts a connection; exec: command exits 0."),
                            Attribute::string("path").optional().computed().description("http: the path to GET; defaults to /."),
                            Attribute::number("port")
                                .optional()
                                .validator(validator::int_between(1, 65535))
                                .description("http and tcp: the port to check."),
                            Attribute::string_list("command").optional().description("exec: the command to run."),
                            Attribute::string("interval").default("10s").validator(duration_validator()),
                            Attribute::string("timeout").default("5s").validator(duration_validator()),
                            Attribute::number("healthy_threshold").default(1).validator(validator::int_between(1, 100)),
                            Attribute::number("unhealthy_threshold").default(3).validator(validator::int_between(1, 100)),
                        ],
                    )
                    .optional()
                    .computed()
                    .description("How to tell that a replica is healthy: an http, tcp or exec check."),
                )
                .attribute(
                    Attribute::nested(
                        "resources",
                        Nesting::Single,
                        vec![
                            Attribute::string("cpu").optional().validator(cpu_validator()),
                            Attribute::string("memory").optional().validator(memory_validator()),
                        ],
                    )
                    .optional()
                    .computed()
                    .description("Resource limits per replica."),
                )
                .attribute(
                    Attribute::nested(
                        "timeouts",
                        Nesting::Single,
                        vec![
                            Attribute::string("create").optional().validator(duration_validator()),
                            Attribute::string("update").optional().validator(duration_validator()),
                            Attribute::string("delete").optional().validator(duration_validator()),
                        ],
                    )
                    .optional()
                    .computed()
                    .description("How long a rollout may take: create and update default to 10m, delete to 5m."),
                )
                .attribute(Attribute::string_map("endpoints").computed().description("The URL of each public port, by port name."))
                .attribute(Attribute::string("status").computed().description("running, stopped (0 replicas), progressing or failed.")),
        )
    }

    async fn validate(&self, config: &Value) -> Diagnostics {
        let mut diags = Diagnostics::new();
        if config.get("image").is_null() && config.get("command").is_null() {
            diags.push(
                Diagnostic::error(
                    "Nothing to run",
                    "command: set `command` (the program the local runtime runs) or `image` (the container image the kubernetes runtime runs).",
                )
                .at(root("command")),
            );
        }
        for attribute in ["args", "working_dir"] {
            if !config.get(attribute).is_null() && config.get("command").is_null() {
                diags.push(
                    Diagnostic::error(
                        "Missing command",
                        format!("{attribute}: `{attribute}` applies to `command`; set `command` too, or remove `{attribute}`."),
                    )
                    .at(root(attribute)),
                );
            }
        }
        let healthcheck = config.get("healthcheck");
        if healthcheck.as_object().is_some() {
            let set = |name: &str| !healthcheck.get(name).is_null();
            let command = healthcheck.get("command");
            let command_len = match command {
                Value::Null => None,
                // An unknown command might be non-empty; do not complain yet.
                Value::Unknown => Some(1),
                other => Some(other.as_elements().map_or(1, <[Value]>::len)),
            };
            if let Some(problem) = probe_problem(
                healthcheck.get("type").as_str(),
                set("path"),
                set("port"),
                command_len,
            ) {
                diags.push(
                    Diagnostic::error("Invalid health check", problem).at(root("healthcheck")),
                );
            }
        }
        if let Some(ports) = config.get("ports").as_elements() {
            let mut names = BTreeMap::new();
            let mut numbers = BTreeMap::new();
            for (i, port) in ports.iter().enumerate() {
                if let Some(name) = port.get("name").as_str() {
                    if let Some(first) = names.insert(name.to_owned(), i) {
                        diags.push(
                            Diagnostic::error(
                                "Duplicate port name",
                                format!("ports[{i}].name: {name:?} is also the name of ports[{first}]; port names must be unique."),
                            )
                            .at(root("ports").index(i)),
                        );
                    }
                }
                let protocol = port.get("protocol").as_str().unwrap_or("tcp").to_owned();
                if let Some(number) = port.get("port").as_i64() {
                    if let Some(first) = numbers.insert((number, protocol), i) {
                        diags.push(
                            Diagnostic::error(
                                "Duplicate port",
                                format!("ports[{i}].port: {number} is also used by ports[{first}]; each port may appear once."),
                            )
                            .at(root("ports").index(i)),
                        );
                    }
                }
            }
        }
        diags
    }

    async fn modify_plan(
        &self,
        _ctx: &Context,
        client: Option<&SlipwayClient>,
        change: &mut PlannedChange,
    ) -> Diagnostics {
        if change.planned.is_null() {
            // A destroy (Terraform 1.3 and later plan it): refused at plan when the
            // application is in a gated PRODUCTION environment.
            let prior = &change.prior;
            if let (Some(client), Some(environment_id), Some(name)) = (
                client,
                prior.get("environment_id").as_str(),
                prior.get("name").as_str(),
            ) {
                if let Err(d) = self
                    .environment_gate(client, environment_id, name, Some(Action::Delete))
                    .await
                {
                    return d;
                }
            }
            return Diagnostics::new();
        }
        // Nested attributes are optional *and computed* only to keep Terraform 1.0 from
        // crashing on a null nested attribute (its planner dereferences the null
        // configuration unless the attribute is computed). They are never really
        // computed: unset in the configuration means unset.
        if let Some(attributes) = change.planned.as_object_mut() {
            for name in NESTED {
                if change.config.get(name).is_null() {
                    attributes.insert(name.into(), Value::Null);
                }
            }
            unset_as_empty(&change.config, attributes);
        }
        let planned = &change.planned;
        let changing = change.prior.is_null()
            || !planned.same_as(&change.prior)
            || !change.requires_replace.is_empty();
        if !changing {
            return Diagnostics::new();
        }
        let mut diags = Diagnostics::new();
        if let Some(client) = client {
            diags.extend(runtime_checks(
                client.runtime.kind(),
                Field::of(planned.get("image")),
                Field::of(planned.get("command")),
                Field::of(planned.get("working_dir")),
            ));
            diags.extend(runtime_rules(client.runtime.as_ref(), planned));
            if let (Some(environment_id), Some(name)) = (
                planned.get("environment_id").as_str(),
                planned.get("name").as_str(),
            ) {
                let action = if change.prior.is_null() {
                    Action::Create
                } else {
                    Action::Update
                };
                if let Err(d) = self
                    .environment_gate(client, environment_id, name, Some(action))
                    .await
                {
                    diags.extend(d);
                }
            }
        }
        if diags.has_errors() {
            return diags;
        }
        let Some(attributes) = change.planned.as_object_mut() else {
            return diags;
        };
        // A rollout that succeeds leaves the application running (or stopped at zero
        // replicas), so say so now instead of "known after apply".
        if let Some(replicas) = attributes.get("replicas").and_then(Value::as_i64) {
            attributes.insert("status".into(), Value::from(steady_status(replicas)));
        }
        // Endpoints follow the ports: while those stay, the endpoints do too.
        let prior_endpoints = change.prior.get("endpoints");
        if change.requires_replace.is_empty()
            && !change.prior.is_null()
            && prior_endpoints.is_wholly_known()
            && !prior_endpoints.is_null()
            && attributes
                .get("ports")
                .is_some_and(|p| p.is_wholly_known() && p.same_as(change.prior.get("ports")))
        {
            attributes.insert("endpoints".into(), prior_endpoints.clone());
        }
        diags
    }

    async fn create(
        &self,
        _ctx: &Context,
        client: &SlipwayClient,
        planned: ApplicationState,
    ) -> Result<ApplicationState, Diagnostics> {
        let runtime = &client.runtime;
        apply_time_checks(client, &planned)?;
        if runtime
            .get_environment(&planned.environment_id)
            .await
            .map_err(|e| runtime_error("read the application's environment", e))?
            .is_none()
        {
            return Err(error_at(
                root("environment_id"),
                "No such environment",
                format!("environment_id: no environment has the id {:?}; it may have been deleted outside Terraform. Use the id of a slipway_environment.", planned.environment_id),
            ));
        }
        self.environment_gate(client, &planned.environment_id, &planned.name, None)
            .await?;
        if let Some(existing) = runtime
            .find_application(&planned.environment_id, &planned.name)
            .await
            .map_err(|e| runtime_error("look up the application", e))?
        {
            return Err(error_at(
                root("name"),
                "Application already exists",
                format!(
                    "An application named {:?} already exists in this environment (id {}). Choose another name, or bring it under Terraform with `terraform import slipway_application.<name> {}`.",
                    planned.name, existing.spec.id, existing.spec.id
                ),
            ));
        }
        let timeout = planned.timeout(|t| t.create.as_deref(), "create", DEFAULT_CREATE_TIMEOUT)?;
        let id = new_id(&planned.name);
        let spec = planned.to_spec(id.clone())?;
        let record = client.provenance.record();
        match runtime
            .apply_application(spec, record.clone(), timeout)
            .await
        {
            Ok(app) if app.phase != Phase::Failed => {
                tracing::info!(id = %id, name = %planned.name, "created application");
                let status = steady_status(planned.replicas());
                Ok(ApplicationState::from_runtime(
                    app,
                    Some(&planned),
                    Some(status),
                ))
            }
            outcome => {
                let error = match outcome {
                    Err(e) => e,
                    Ok(app) => RuntimeError::RolloutFailed(
                        app.message
                            .unwrap_or_else(|| "the rollout failed".to_owned()),
                    ),
                };
                // Terraform does not record a failed create, so leave nothing behind
                // that would make the next attempt conflict with it.
                let cleaned = match runtime
                    .delete_application(&id, record, DEFAULT_DELETE_TIMEOUT)
                    .await
                {
                    Ok(()) | Err(RuntimeError::NotFound(_)) => {
                        "The application was removed again; fix the problem and apply once more."
                    }
                    Err(_) => "",
                };
                Err(rollout_failed(
                    "create the application",
                    error,
                    planned.healthcheck.is_some(),
                    cleaned,
                ))
            }
        }
    }

    async fn read(
        &self,
        _ctx: &Context,
        client: &SlipwayClient,
        current: ApplicationState,
    ) -> Result<Option<ApplicationState>, Diagnostics> {
        let app = client
            .runtime
            .get_application(current.id()?)
            .await
            .map_err(|e| runtime_error("read the application", e))?;
        Ok(app.map(|app| ApplicationState::from_runtime(app, Some(&current), None)))
    }

    async fn update(
        &self,
        _ctx: &Context,
        client: &SlipwayClient,
        prior: ApplicationState,
        planned: ApplicationState,
    ) -> Result<ApplicationState, Diagnostics> {
        let runtime = &client.runtime;
        apply_time_checks(client, &planned)?;
        self.environment_gate(client, &planned.environment_id, &planned.name, None)
            .await?;
        let id = prior.id()?.to_owned();
        let timeout = planned.timeout(|t| t.update.as_deref(), "update", DEFAULT_UPDATE_TIMEOUT)?;
        let spec = planned.to_spec(id.clone())?;
        let record = client.provenance.record();
        let error = match runtime
            .apply_application(spec, record.clone(), timeout)
            .await
        {
            Ok(app) if app.phase != Phase::Failed => {
                tracing::info!(id = %id, name = %planned.name, "updated application");
                let status = steady_status(planned.replicas());
                return Ok(ApplicationState::from_runtime(
                    app,
                    Some(&planned),
                    Some(status),
                ));
            }
            Ok(app) => RuntimeError::RolloutFailed(
                app.message
                    .unwrap_or_else(|| "the rollout failed".to_owned()),
            ),
            Err(e) => e,
        };
        // Terraform keeps the prior state after a failed update; put the runtime back
        // to that too, so the next plan shows the change again instead of a spec that
        // never became healthy.
        let mut note = "";
        if matches!(error, RuntimeError::RolloutFailed(_)) {
            if let Ok(previous) = prior.to_spec(id.clone()) {
                let restore_timeout = prior
                    .timeout(|t| t.update.as_deref(), "update", DEFAULT_UPDATE_TIMEOUT)
                    .unwrap_or(DEFAULT_UPDATE_TIMEOUT);
                if runtime
                    .apply_application(previous, record, restore_timeout)
                    .await
                    .is_ok()
                {
                    note = "The previous version was restored and keeps running.";
                }
            }
        }
        Err(rollout_failed(
            "update the application",
            error,
            planned.healthcheck.is_some(),
            note,
        ))
    }

    async fn delete(
        &self,
        _ctx: &Context,
        client: &SlipwayClient,
        prior: ApplicationState,
    ) -> Result<(), Diagnostics> {
        self.environment_gate(client, &prior.environment_id, &prior.name, None)
            .await?;
        let timeout = prior.timeout(|t| t.delete.as_deref(), "delete", DEFAULT_DELETE_TIMEOUT)?;
        match client
            .runtime
            .delete_application(prior.id()?, client.provenance.record(), timeout)
            .await
        {
            Ok(()) | Err(RuntimeError::NotFound(_)) => Ok(()),
            Err(e) => Err(runtime_error("delete the application", e).into()),
        }
    }

    async fn import(
        &self,
        _ctx: &Context,
        client: &SlipwayClient,
        id: &str,
    ) -> Result<ApplicationState, Diagnostics> {
        let runtime = &client.runtime;
        let fail = |e| runtime_error("import the application", e);
        let mut found = runtime.get_application(id).await.map_err(fail)?;
        // Accept `ENVIRONMENT_NAME/APPLICATION_NAME` too: it is what people know.
        if found.is_none() {
            if let Some((environment, name)) = id.split_once('/') {
                if let Some(env) = runtime.find_environment(environment).await.map_err(fail)? {
                    found = runtime
                        .find_application(&env.spec.id, name)
                        .await
                        .map_err(fail)?;
                }
            }
        }
        if let Some(app) = &found {
            // Importing brings the application under this caller's state: the policy
            // treats it as a change of its environment's mode.
            self.environment_gate(
                client,
                &app.spec.environment_id,
                &app.spec.name,
                Some(Action::Import),
            )
            .await?;
        }
        found
            .map(|app| ApplicationState::from_runtime(app, None, None))
            .ok_or_else(|| {
                Diagnostic::error(
                    "Cannot import: no such application",
                    format!("No application has the id {id:?} on the {} runtime (an `environment/application` pair of names works too). The data source slipway_application shows an application's id.", runtime.kind()),
                )
                .into()
            })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::json;
    use slipway_provenance::{Provenance, SigningKey, Trigger};
    use tfplug::{AnyResource, Context};

    use super::*;
    use crate::provenance::{Policy, RunProvenance};
    use crate::resources::environment::EnvironmentResource;
    use crate::resources::leaked_secrets;
    use crate::resources::testing::{
        apply, assert_consistent, client, plan, plan_destroy, plan_is_empty, value,
    };
    use crate::runtime::memory::MemoryRuntime;
    use crate::runtime::Runtime;

    fn resource() -> Arc<dyn AnyResource<SlipwayClient>> {
        tfplug::resource(ApplicationResource)
    }

    fn config(json: serde_json::Value) -> Value {
        value(&ApplicationResource.schema(), json)
    }

    async fn environment(client: &SlipwayClient, name: &str, mode: &str) -> String {
        let r = tfplug::resource(EnvironmentResource);
        let cfg = value(
            &EnvironmentResource.schema(),
            json!({"name": name, "mode": mode}),
        );
        let state = apply(&*r, client, &cfg, &Value::Null).await.unwrap();
        state.get("id").as_str().unwrap().to_owned()
    }

    /// `sh` is on PATH wherever these tests run.
    fn web(env: &str) -> serde_json::Value {
        json!({
            "environment_id": env,
            "name": "web",
            "command": "sh",
            "args": ["-c", "exec sleep 1000"],
            "replicas": 2,
            "ports": [{"name": "http", "port": 8080, "public": true}, {"name": "metrics", "port": 9090}],
            "variables": {"GREETING": "hello"},
            "secrets": {"API_KEY": "very-secret-value"},
            "healthcheck": {"type": "http", "port": 8080, "interval": "1m"},
            "resources": {"memory": "256Mi"},
        })
    }

    #[tokio::test]
    async fn lifecycle_create_read_update_import_delete() {
        let runtime = Arc::new(MemoryRuntime::with_kind("local"));
        let client = client(runtime.clone());
        let env = environment(&client, "dev", "DEVELOPMENT").await;
        let r = resource();
        let ctx = Context::background();

        let cfg = config(web(&env));
        let change = plan(&*r, &client, &cfg, &Value::Null).await.unwrap();
        assert!(change.planned.get("id").is_unknown());
        assert!(change.planned.get("endpoints").is_unknown());
        assert_eq!(change.planned.get("status"), &Value::from("running"));
        let hc = change.planned.get("healthcheck");
        assert_eq!(
            hc.get("path"),
            &Value::from("/"),
            "the default, known at plan"
        );
        assert_eq!(hc.get("timeout"), &Value::from("5s"));
        assert_eq!(
            change.planned.get("ports").as_elements().unwrap()[1].get("protocol"),
            &Value::from("tcp")
        );

        let state = apply(&*r, &client, &cfg, &Value::Null).await.unwrap();
        let id = state.get("id").as_str().unwrap().to_owned();
        assert_eq!(
            state.get("endpoints").get("http"),
            &Value::from("http://127.0.0.1:8080")
        );
        assert!(state.get("endpoints").get("metrics").is_null());
        assert_eq!(state.get("healthcheck").get("interval"), &Value::from("1m"));
        let app = runtime.get_application(&id).await.unwrap().unwrap();
        assert_eq!(app.spec.replicas, 2);
        assert_eq!(app.spec.secrets["API_KEY"], "very-secret-value");
        assert_eq!(
            app.spec.healthcheck.as_ref().unwrap().interval,
            Duration::from_secs(60)
        );
        assert_eq!(app.change.trigger, "terraform-apply");

        // Steady: read changes nothing, the plan is empty.
        let read = r.read(&ctx, &client, &state).await.unwrap();
        assert_eq!(read, state);
        assert!(plan_is_empty(&*r, &client, &cfg, &read).await);

        // Changing a variable updates in place and keeps id, status and endpoints
        // known in the plan.
        let mut json2 = web(&env);
        json2["variables"]["GREETING"] = json!("bonjour");
        let cfg2 = config(json2);
        let change = plan(&*r, &client, &cfg2, &state).await.unwrap();
        assert!(change.requires_replace.is_empty());
        assert_eq!(change.planned.get("id"), state.get("id"));
        assert_eq!(change.planned.get("endpoints"), state.get("endpoints"));
        assert_eq!(change.planned.get("status"), &Value::from("running"));
        let state2 = apply(&*r, &client, &cfg2, &state).await.unwrap();
        let app = runtime.get_application(&id).await.unwrap().unwrap();
        assert_eq!(app.spec.variables["GREETING"], "bonjour");
        assert!(plan_is_empty(&*r, &client, &cfg2, &state2).await);

        // Changing the ports lets the endpoints be recomputed.
        let mut json3 = web(&env);
        json3["ports"] = json!([{"name": "http", "port": 8081, "public": true}]);
        let change = plan(&*r, &client, &config(json3.clone()), &state2)
            .await
            .unwrap();
        assert!(change.planned.get("endpoints").is_unknown());
        let state3 = apply(&*r, &client, &config(json3.clone()), &state2)
            .await
            .unwrap();
        assert_eq!(
            state3.get("endpoints").get("http"),
            &Value::from("http://127.0.0.1:8081")
        );

        // Scaling to zero stops it.
        let mut json4 = json3.clone();
        json4["replicas"] = json!(0);
        let state4 = apply(&*r, &client, &config(json4.clone()), &state3)
            .await
            .unwrap();
        assert_eq!(state4.get("status"), &Value::from("stopped"));

        // Nested attributes are computed only for Terraform 1.0's sake: removing one
        // from the configuration still removes it.
        let mut without = json4.clone();
        without.as_object_mut().unwrap().remove("healthcheck");
        without.as_object_mut().unwrap().remove("resources");
        let change = plan(&*r, &client, &config(without), &state4).await.unwrap();
        assert!(change.planned.get("healthcheck").is_null());
        assert!(change.planned.get("resources").get("memory").is_null());
        assert!(change.planned.get("timeouts").is_null());

        // Moving to another environment replaces.
        let other = environment(&client, "other", "DEVELOPMENT").await;
        let mut json5 = json4.clone();
        json5["environment_id"] = json!(other);
        let change = plan(&*r, &client, &config(json5), &state4).await.unwrap();
        assert_eq!(change.requires_replace, vec![root("environment_id")]);

        // Import by id, and by names, gives the same state (timeouts aside, which
        // live only in the configuration).
        let imported = r.import(&ctx, &client, &id).await.unwrap();
        let imported = r.read(&ctx, &client, &imported).await.unwrap();
        assert_eq!(imported, state4);
        let by_names = r.import(&ctx, &client, "dev/web").await.unwrap();
        assert_eq!(by_names.get("id"), state4.get("id"));
        assert!(plan_is_empty(&*r, &client, &config(json4.clone()), &imported).await);

        r.delete(&ctx, &client, &state4).await.unwrap();
        assert!(runtime.get_application(&id).await.unwrap().is_none());
        r.delete(&ctx, &client, &state4).await.unwrap();
    }

    /// Import knows only what the runtime has; whether the configuration spells out a
    /// default (`path = "/"`, `args = []`, empty maps and lists) or leaves it out, the
    /// first plan after import is empty.
    #[tokio::test]
    async fn import_round_trips_defaults_written_or_not() {
        let runtime = Arc::new(MemoryRuntime::with_kind("local"));
        let client = client(runtime.clone());
        let env = environment(&client, "dev", "DEVELOPMENT").await;
        let r = resource();
        let ctx = Context::background();
        let bare = json!({
            "environment_id": env,
            "name": "web",
            "command": "sh",
            "healthcheck": {"type": "http", "port": 8080},
        });
        let mut explicit = bare.clone();
        explicit["args"] = json!([]);
        explicit["ports"] = json!([]);
        explicit["variables"] = json!({});
        explicit["secrets"] = json!({});
        explicit["resources"] = json!({});
        explicit["healthcheck"]["path"] = json!("/");
        for json in [bare, explicit] {
            let cfg = config(json.clone());
            let state = apply(&*r, &client, &cfg, &Value::Null).await.unwrap();
            assert!(plan_is_empty(&*r, &client, &cfg, &state).await, "{json}");
            let id = state.get("id").as_str().unwrap().to_owned();
            let imported = r.import(&ctx, &client, &id).await.unwrap();
            let imported = r.read(&ctx, &client, &imported).await.unwrap();
            assert_eq!(imported, state, "{json}");
            assert!(plan_is_empty(&*r, &client, &cfg, &imported).await, "{json}");
            r.delete(&ctx, &client, &state).await.unwrap();
        }
    }

    #[tokio::test]
    async fn read_reflects_reality() {
        let runtime = Arc::new(MemoryRuntime::with_kind("local"));
        let client = client(runtime.clone());
        let env = environment(&client, "dev", "DEVELOPMENT").await;
        let r = resource();
        let ctx = Context::background();
        let cfg = config(web(&env));
        let state = apply(&*r, &client, &cfg, &Value::Null).await.unwrap();
        let id = state.get("id").as_str().unwrap().to_owned();

        // Scaled outside Terraform: read shows it, the plan changes it back.
        assert!(runtime.scale(&id, 5));
        let read = r.read(&ctx, &client, &state).await.unwrap();
        assert_eq!(read.get("replicas"), &Value::from(5));
        let change = plan(&*r, &client, &cfg, &read).await.unwrap();
        assert_eq!(change.planned.get("replicas"), &Value::from(2));
        let fixed = apply(&*r, &client, &cfg, &read).await.unwrap();
        assert_eq!(fixed.get("replicas"), &Value::from(2));
        assert!(plan_is_empty(&*r, &client, &cfg, &fixed).await);

        // Deleted outside Terraform: read drops it, and it is planned again.
        assert!(runtime.forget_application(&id));
        assert!(r.read(&ctx, &client, &fixed).await.unwrap().is_null());
        let again = apply(&*r, &client, &cfg, &Value::Null).await.unwrap();
        assert_ne!(again.get("id"), fixed.get("id"));
    }

    #[tokio::test]
    async fn bad_input_names_the_attribute() {
        let runtime = Arc::new(MemoryRuntime::with_kind("local"));
        let client = client(runtime.clone());
        let env = environment(&client, "dev", "DEVELOPMENT").await;
        let r = resource();

        let cases: Vec<(serde_json::Value, &str, &str)> = vec![
            (json!({"name": "Bad_Name"}), "name", "not a valid name"),
            (
                json!({"ports": [{"name": "http", "port": 70000}]}),
                "ports[0]",
                "ports[0].port: 70000 is out of range",
            ),
            (
                json!({"ports": [{"name": "a", "port": 80}, {"name": "a", "port": 81}]}),
                "ports[1]",
                "unique",
            ),
            (json!({"replicas": -1}), "replicas", "out of range"),
            (
                json!({"command": "/definitely/not/here"}),
                "command",
                "/definitely/not/here does not exist",
            ),
            (
                json!({"command": "no-such-program-xyz"}),
                "command",
                "not an executable on PATH",
            ),
            (
                json!({"working_dir": "/definitely/not/a/dir"}),
                "working_dir",
                "not a directory",
            ),
            (
                json!({"healthcheck": {"type": "tcp", "interval": "10s"}}),
                "healthcheck",
                "needs `port`",
            ),
            (
                json!({"healthcheck": {"type": "exec", "port": 80, "command": ["true"]}}),
                "healthcheck",
                "takes no `port`",
            ),
            (
                json!({"healthcheck": {"type": "tcp", "port": 80, "interval": "often"}}),
                "healthcheck",
                "healthcheck.interval: \"often\" is not a duration",
            ),
            (
                json!({"healthcheck": {"type": "exec", "command": []}}),
                "healthcheck",
                "non-empty `command`",
            ),
            (
                json!({"healthcheck": {"type": "http", "port": 80, "command": ["true"]}}),
                "healthcheck",
                "only an exec check runs a command",
            ),
            (
                json!({"timeouts": {"create": "10 minutes"}}),
                "timeouts",
                "is not a duration",
            ),
            (
                json!({"resources": {"memory": "lots"}}),
                "resources",
                "not a memory quantity",
            ),
            (
                json!({"resources": {"cpu": "fast"}}),
                "resources",
                "not a CPU quantity",
            ),
            (
                json!({"variables": {"A=B": "1"}}),
                "variables[\"A=B\"]",
                "\"A=B\" is not a variable name",
            ),
            (
                json!({"variables": {"": "1"}}),
                "variables[\"\"]",
                "cannot be empty",
            ),
            (
                json!({"variables": {"PORT": "80"}}),
                "variables[\"PORT\"]",
                "set by the runtime itself",
            ),
            (
                json!({"secrets": {"1ABC": "never-shown"}}),
                "secrets[\"1ABC\"]",
                "not starting with a digit",
            ),
        ];
        for (overrides, at, text) in cases {
            let mut json = json!({"environment_id": env, "name": "web", "command": "sh", "secrets": {"S": "never-shown"}});
            for (k, v) in overrides.as_object().unwrap() {
                json[k] = v.clone();
            }
            let err = plan(&*r, &client, &config(json), &Value::Null)
                .await
                .unwrap_err();
            let d = &err.0[0];
            assert_eq!(
                d.attribute.as_ref().map(|p| p.to_string()).as_deref(),
                Some(at),
                "{err}"
            );
            assert!(
                err.to_string().contains(text),
                "expected {text:?} in: {err}"
            );
            let secrets = [("S".to_owned(), "never-shown".to_owned())].into();
            assert!(leaked_secrets(&secrets, &err).is_empty());
        }

        // Neither command nor image.
        let err = plan(
            &*r,
            &client,
            &config(json!({"environment_id": env, "name": "x"})),
            &Value::Null,
        )
        .await
        .unwrap_err();
        assert_eq!(err.0[0].attribute, Some(root("command")));
        // An image alone is not enough for the local runtime, and says why.
        let err = plan(
            &*r,
            &client,
            &config(json!({"environment_id": env, "name": "x", "image": "nginx"})),
            &Value::Null,
        )
        .await
        .unwrap_err();
        assert_eq!(err.0[0].attribute, Some(root("command")));
        assert!(
            err.to_string().contains("only by the kubernetes runtime"),
            "{err}"
        );
        // Kubernetes needs the image.
        let kube = super::super::testing::client(Arc::new(MemoryRuntime::with_kind("kubernetes")));
        let kenv = environment(&kube, "dev", "DEVELOPMENT").await;
        let err = plan(
            &*r,
            &kube,
            &config(json!({"environment_id": kenv, "name": "x", "command": "sh"})),
            &Value::Null,
        )
        .await
        .unwrap_err();
        assert_eq!(err.0[0].attribute, Some(root("image")));
        // A command relative to working_dir, executable or not.
        let dir = crate::resources::testing::ScratchDir::new();
        let script = dir.path().join("run.sh");
        std::fs::write(&script, "#!/bin/sh\n").unwrap();
        let cfg = config(
            json!({"environment_id": env, "name": "x", "command": "./run.sh", "working_dir": dir.path()}),
        );
        let err = plan(&*r, &client, &cfg, &Value::Null).await.unwrap_err();
        assert!(err.to_string().contains("not an executable file"), "{err}");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        plan(&*r, &client, &cfg, &Value::Null).await.unwrap();
    }

    #[tokio::test]
    async fn a_health_check_that_never_passes() {
        let runtime = Arc::new(MemoryRuntime::with_kind("local"));
        let client = client(runtime.clone());
        let env = environment(&client, "dev", "DEVELOPMENT").await;
        let r = resource();
        let cfg = config(web(&env));

        runtime.fail_next_rollout("replica 1 never became healthy: GET http://127.0.0.1:8080/ failed 3 times (connection refused)");
        let err = apply(&*r, &client, &cfg, &Value::Null).await.unwrap_err();
        assert_eq!(err.0[0].attribute, Some(root("healthcheck")));
        assert!(err.to_string().contains("never became healthy"), "{err}");
        assert!(err.to_string().contains("removed again"), "{err}");
        assert_eq!(
            runtime.application_count(),
            0,
            "a failed create leaves nothing behind"
        );
        let secrets = [("API_KEY".to_owned(), "very-secret-value".to_owned())].into();
        assert!(leaked_secrets(&secrets, &err).is_empty());

        // A failed update restores the previous version.
        let state = apply(&*r, &client, &cfg, &Value::Null).await.unwrap();
        let id = state.get("id").as_str().unwrap().to_owned();
        let mut json2 = web(&env);
        json2["args"] = json!(["-c", "exit 1"]);
        runtime.fail_next_rollout("replica 1 exited with status 1 before becoming healthy");
        let err = apply(&*r, &client, &config(json2), &state)
            .await
            .unwrap_err();
        assert_eq!(err.0[0].attribute, Some(root("command")));
        assert!(
            err.to_string().contains("previous version was restored"),
            "{err}"
        );
        let app = runtime.get_application(&id).await.unwrap().unwrap();
        assert_eq!(app.spec.args, ["-c", "exec sleep 1000"]);
    }

    fn signing_key() -> SigningKey {
        SigningKey::from_bytes(&[6u8; 32])
    }

    fn run(env: Vec<(&'static str, String)>) -> RunProvenance {
        let env: BTreeMap<&str, String> = env.into_iter().collect();
        RunProvenance::from_lookup(
            |n| env.get(n).cloned(),
            Some(&signing_key().verifying_key()),
        )
    }

    #[tokio::test]
    async fn production_applications_change_only_with_signed_provenance() {
        let runtime = Arc::new(MemoryRuntime::with_kind("local"));
        let policy = Policy {
            production_requires_signed_provenance: true,
            agent_public_key: Some(signing_key().verifying_key()),
        };
        let signed_env = Provenance {
            commit_sha: "c0ffee".into(),
            repository: "acme/infra".into(),
            pull_request: None,
            actor: "release-bot".into(),
            trigger: Trigger::Api,
            job_id: "31".into(),
            timestamp: Provenance::now_timestamp(),
        }
        .sign(&signing_key())
        .to_env();
        let signed = SlipwayClient {
            runtime: runtime.clone(),
            policy: policy.clone(),
            provenance: run(signed_env.clone()),
        };
        let manual = SlipwayClient {
            runtime: runtime.clone(),
            policy: policy.clone(),
            provenance: run(vec![]),
        };
        let mut tampered_env = signed_env.clone();
        tampered_env.retain(|(k, _)| *k != slipway_provenance::ENV_ACTOR);
        tampered_env.push((slipway_provenance::ENV_ACTOR, "someone-else".into()));
        let tampered = SlipwayClient {
            runtime: runtime.clone(),
            policy,
            provenance: run(tampered_env),
        };

        let prod = environment(&signed, "prod", "PRODUCTION").await;
        let dev = environment(&manual, "dev", "DEVELOPMENT").await;
        let r = resource();
        let ctx = Context::background();

        for client in [&manual, &tampered] {
            let err = plan(&*r, client, &config(web(&prod)), &Value::Null)
                .await
                .unwrap_err();
            assert_eq!(err.0[0].summary, "Production changes come through a merge");
            assert_eq!(err.0[0].attribute, Some(root("environment_id")));
            assert!(err.0[0].detail.contains("\"prod\""), "{err}");
        }
        // Development applications are not gated.
        apply(&*r, &manual, &config(web(&dev)), &Value::Null)
            .await
            .unwrap();

        let state = apply(&*r, &signed, &config(web(&prod)), &Value::Null)
            .await
            .unwrap();
        let id = state.get("id").as_str().unwrap().to_owned();
        let app = runtime.get_application(&id).await.unwrap().unwrap();
        assert!(app.change.verified);
        assert_eq!(app.change.trigger, "api");
        assert_eq!(app.change.actor, "release-bot");

        // No change, no gate; any change, or a delete, needs the signature.
        assert!(plan_is_empty(&*r, &manual, &config(web(&prod)), &state).await);
        let mut scaled = web(&prod);
        scaled["replicas"] = json!(3);
        assert!(plan(&*r, &manual, &config(scaled.clone()), &state)
            .await
            .is_err());
        let planned = plan(&*r, &signed, &config(scaled.clone()), &state)
            .await
            .unwrap()
            .planned;
        let err = r.update(&ctx, &manual, &state, &planned).await.unwrap_err();
        assert!(err.to_string().contains("come through a merge"), "{err}");
        let err = plan_destroy(&*r, &manual, &state).await.unwrap_err();
        assert!(err.to_string().contains("come through a merge"), "{err}");
        assert!(plan_destroy(&*r, &signed, &state).await.is_ok());
        let err = r.delete(&ctx, &tampered, &state).await.unwrap_err();
        assert!(err.to_string().contains("come through a merge"), "{err}");
        let updated = r.update(&ctx, &signed, &state, &planned).await.unwrap();
        assert_consistent(&planned, &updated);
        r.delete(&ctx, &signed, &updated).await.unwrap();
        let history = runtime.history();
        let (_, op, last) = history.last().unwrap();
        assert_eq!(*op, "delete");
        assert!(last.verified);
    }
}
