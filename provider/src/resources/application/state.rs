//! The resource's state, and how it turns into a runtime spec and back.
//!
//! `to_spec` checks what the schema could not (values unknown at validation);
//! `from_runtime` keeps the configuration's shape (unset stays unset, durations keep
//! their spelling, secret values the runtime gives back only as digests).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tfplug::{AttributePath, Context, Diagnostic, Diagnostics};

use super::root;
use super::validation::probe_problem;
use crate::resources::{duration_text, error_at, parse_duration};
use crate::runtime::{
    Application, ApplicationSpec, HealthCheck, HealthProbe, Phase, PortSpec, Protocol,
    ResourceLimits,
};

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
    pub secrets_version: Option<i64>,
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
    pub(super) fn to_runtime(&self) -> Result<HealthCheck, Diagnostics> {
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

/// The `status` a successful rollout of `replicas` leaves: what plans predict.
pub(super) fn steady_status(replicas: i64) -> &'static str {
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
    pub(super) fn id(&self) -> Result<&str, Diagnostics> {
        self.id.as_deref().ok_or_else(|| {
            Diagnostic::error(
                "Application has no id",
                "The state of this slipway_application has no id. Remove it from the state (terraform state rm) and import it by id.",
            )
            .into()
        })
    }

    pub(super) fn replicas(&self) -> i64 {
        self.replicas.unwrap_or(1)
    }

    pub(super) fn timeout(
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
    pub(super) fn to_spec(&self, id: String) -> Result<ApplicationSpec, Diagnostics> {
        // How many a runtime runs is its own rule (`Runtime::check_application`).
        let replicas = u32::try_from(self.replicas()).map_err(|_| {
            error_at(
                root("replicas"),
                "Value out of range",
                format!("replicas is {}; use 0 (stopped) or more.", self.replicas()),
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
    pub(super) fn from_runtime(
        ctx: &Context,
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
        // The runtime gives digests, not values: keep the values the state knows
        // (Terraform before 1.11; later ones keep none, and tfplug nulls them).
        let known = had.and_then(|h| h.secrets.clone());
        let secrets = crate::runtime::secrets::reconcile(
            &spec.id,
            known.as_ref().unwrap_or(&BTreeMap::new()),
            &spec.secrets,
        );
        crate::resources::secrets::remember(ctx, &spec.id, &spec.secrets);
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
            secrets: crate::resources::map_or_null(&known, secrets),
            secrets_version: had.and_then(|h| h.secrets_version).or(Some(1)),
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
