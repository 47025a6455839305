//! Conversions between the provider's runtime types and the daemon's protobuf messages.
//!
//! Decoding is strict where a wrong value would run the wrong thing (unknown enum
//! values, ports out of range, missing specs) and says which field is wrong.

use std::time::Duration;

use super::proto as pb;
use crate::{
    Application, ApplicationSpec, ChangeRecord, Environment, EnvironmentSpec, HealthCheck,
    HealthProbe, Mode, Phase, PortSpec, Protocol, ResourceLimits, RolloutCause, RuntimeError,
};

fn invalid(m: impl Into<String>) -> RuntimeError {
    RuntimeError::Invalid(m.into())
}

fn port(value: u32, field: &str) -> Result<u16, RuntimeError> {
    u16::try_from(value)
        .map_err(|_| invalid(format!("`{field}` {value} is not a port number (0-65535)")))
}

pub fn change_to_pb(c: ChangeRecord) -> pb::ChangeRecord {
    pb::ChangeRecord {
        commit_sha: c.commit_sha,
        repository: c.repository,
        pull_request: c.pull_request,
        actor: c.actor,
        trigger: c.trigger,
        job_id: c.job_id,
        changed_at: c.changed_at,
        verified: c.verified,
    }
}

pub fn change_from_pb(c: Option<pb::ChangeRecord>) -> ChangeRecord {
    let c = c.unwrap_or_default();
    ChangeRecord {
        commit_sha: c.commit_sha,
        repository: c.repository,
        pull_request: c.pull_request,
        actor: c.actor,
        trigger: c.trigger,
        job_id: c.job_id,
        changed_at: c.changed_at,
        verified: c.verified,
    }
}

pub fn mode_to_pb(m: Mode) -> pb::Mode {
    match m {
        Mode::Development => pb::Mode::Development,
        Mode::Preview => pb::Mode::Preview,
        Mode::Staging => pb::Mode::Staging,
        Mode::Production => pb::Mode::Production,
    }
}

pub fn mode_from_pb(m: i32) -> Result<Mode, RuntimeError> {
    match pb::Mode::try_from(m) {
        Ok(pb::Mode::Development) | Ok(pb::Mode::Unspecified) => Ok(Mode::Development),
        Ok(pb::Mode::Preview) => Ok(Mode::Preview),
        Ok(pb::Mode::Staging) => Ok(Mode::Staging),
        Ok(pb::Mode::Production) => Ok(Mode::Production),
        Err(_) => Err(invalid(format!(
            "environment `mode` {m} is not a known mode"
        ))),
    }
}

pub fn env_spec_to_pb(s: EnvironmentSpec) -> pb::EnvironmentSpec {
    pb::EnvironmentSpec {
        id: s.id,
        name: s.name,
        mode: mode_to_pb(s.mode) as i32,
        variables: s.variables.into_iter().collect(),
        secrets: s.secrets.into_iter().collect(),
    }
}

pub fn env_spec_from_pb(s: Option<pb::EnvironmentSpec>) -> Result<EnvironmentSpec, RuntimeError> {
    let s = s.ok_or_else(|| invalid("the request has no environment `spec`"))?;
    Ok(EnvironmentSpec {
        id: s.id,
        name: s.name,
        mode: mode_from_pb(s.mode)?,
        variables: s.variables.into_iter().collect(),
        secrets: s.secrets.into_iter().collect(),
    })
}

pub fn env_to_pb(e: Environment) -> pb::Environment {
    pb::Environment {
        spec: Some(env_spec_to_pb(e.spec)),
        change: Some(change_to_pb(e.change)),
    }
}

pub fn env_from_pb(e: pb::Environment) -> Result<Environment, RuntimeError> {
    Ok(Environment {
        spec: env_spec_from_pb(e.spec)?,
        change: change_from_pb(e.change),
    })
}

fn check_to_pb(c: HealthCheck) -> pb::HealthCheck {
    use pb::health_check::Probe;
    pb::HealthCheck {
        probe: Some(match c.probe {
            HealthProbe::Http { path, port } => Probe::Http(pb::HttpProbe {
                path,
                port: port.into(),
            }),
            HealthProbe::Tcp { port } => Probe::Tcp(pb::TcpProbe { port: port.into() }),
            HealthProbe::Exec { command } => Probe::Exec(pb::ExecProbe { command }),
        }),
        interval_ms: c.interval.as_millis() as u64,
        timeout_ms: c.timeout.as_millis() as u64,
        healthy_threshold: c.healthy_threshold,
        unhealthy_threshold: c.unhealthy_threshold,
    }
}

fn check_from_pb(c: pb::HealthCheck) -> Result<HealthCheck, RuntimeError> {
    use pb::health_check::Probe;
    Ok(HealthCheck {
        probe: match c.probe {
            Some(Probe::Http(h)) => HealthProbe::Http {
                path: h.path,
                port: port(h.port, "healthcheck.http.port")?,
            },
            Some(Probe::Tcp(t)) => HealthProbe::Tcp {
                port: port(t.port, "healthcheck.tcp.port")?,
            },
            Some(Probe::Exec(e)) => HealthProbe::Exec { command: e.command },
            None => {
                return Err(invalid(
                    "`healthcheck` needs one of `http`, `tcp` or `exec`",
                ))
            }
        },
        interval: Duration::from_millis(c.interval_ms),
        timeout: Duration::from_millis(c.timeout_ms),
        healthy_threshold: c.healthy_threshold,
        unhealthy_threshold: c.unhealthy_threshold,
    })
}

pub fn app_spec_to_pb(s: ApplicationSpec) -> pb::ApplicationSpec {
    pb::ApplicationSpec {
        id: s.id,
        environment_id: s.environment_id,
        name: s.name,
        image: s.image,
        command: s.command,
        args: s.args,
        working_dir: s.working_dir,
        replicas: s.replicas,
        ports: s
            .ports
            .into_iter()
            .map(|p| pb::PortSpec {
                name: p.name,
                port: p.port.into(),
                protocol: match p.protocol {
                    Protocol::Tcp => pb::Protocol::Tcp,
                    Protocol::Udp => pb::Protocol::Udp,
                } as i32,
                public: p.public,
            })
            .collect(),
        variables: s.variables.into_iter().collect(),
        secrets: s.secrets.into_iter().collect(),
        healthcheck: s.healthcheck.map(check_to_pb),
        resources: Some(pb::ResourceLimits {
            cpu: s.resources.cpu,
            memory: s.resources.memory,
        }),
    }
}

pub fn app_spec_from_pb(s: Option<pb::ApplicationSpec>) -> Result<ApplicationSpec, RuntimeError> {
    let s = s.ok_or_else(|| invalid("the request has no application `spec`"))?;
    let mut ports = Vec::with_capacity(s.ports.len());
    for p in s.ports {
        let protocol = match pb::Protocol::try_from(p.protocol) {
            Ok(pb::Protocol::Tcp) => Protocol::Tcp,
            Ok(pb::Protocol::Udp) => Protocol::Udp,
            Err(_) => {
                return Err(invalid(format!(
                    "port `{}` has an unknown protocol",
                    p.name
                )))
            }
        };
        ports.push(PortSpec {
            port: port(p.port, "ports.port")?,
            name: p.name,
            protocol,
            public: p.public,
        });
    }
    let resources = s.resources.unwrap_or_default();
    Ok(ApplicationSpec {
        id: s.id,
        environment_id: s.environment_id,
        name: s.name,
        image: s.image,
        command: s.command,
        args: s.args,
        working_dir: s.working_dir,
        replicas: s.replicas,
        ports,
        variables: s.variables.into_iter().collect(),
        secrets: s.secrets.into_iter().collect(),
        healthcheck: s.healthcheck.map(check_from_pb).transpose()?,
        resources: ResourceLimits {
            cpu: resources.cpu,
            memory: resources.memory,
        },
    })
}

pub fn phase_to_pb(p: Phase) -> pb::Phase {
    match p {
        Phase::Running => pb::Phase::Running,
        Phase::Progressing => pb::Phase::Progressing,
        Phase::Stopped => pb::Phase::Stopped,
        Phase::Failed => pb::Phase::Failed,
    }
}

fn phase_from_pb(p: i32) -> Phase {
    match pb::Phase::try_from(p) {
        Ok(pb::Phase::Running) => Phase::Running,
        Ok(pb::Phase::Progressing) => Phase::Progressing,
        Ok(pb::Phase::Stopped) => Phase::Stopped,
        Ok(pb::Phase::Failed) | Err(_) => Phase::Failed,
    }
}

pub fn app_to_pb(a: Application) -> pb::Application {
    pb::Application {
        spec: Some(app_spec_to_pb(a.spec)),
        change: Some(change_to_pb(a.change)),
        phase: phase_to_pb(a.phase) as i32,
        ready_replicas: a.ready_replicas,
        endpoints: a.endpoints.into_iter().collect(),
        message: a.message,
    }
}

pub fn app_from_pb(a: pb::Application) -> Result<Application, RuntimeError> {
    Ok(Application {
        spec: app_spec_from_pb(a.spec)?,
        change: change_from_pb(a.change),
        phase: phase_from_pb(a.phase),
        ready_replicas: a.ready_replicas,
        endpoints: a.endpoints.into_iter().collect(),
        message: a.message,
    })
}

/// The status code a runtime error travels as; [`error_from_status`] undoes it.
/// An environment as a caller may see it: secret values replaced by their digests.
pub fn without_secret_values(mut env: crate::Environment) -> crate::Environment {
    env.spec.secrets = crate::secrets::digests(&env.spec.id, &env.spec.secrets);
    env
}

/// An application as a caller may see it: secret values replaced by their digests.
pub fn app_without_secret_values(mut app: crate::Application) -> crate::Application {
    app.spec.secrets = crate::secrets::digests(&app.spec.id, &app.spec.secrets);
    app
}

/// The metadata key that carries a failed rollout's [`RolloutCause`] with its status.
const ROLLOUT_CAUSE: &str = "slipway-rollout-cause";

pub fn error_to_status(e: RuntimeError) -> tonic::Status {
    match e {
        RuntimeError::NotFound(m) => tonic::Status::not_found(m),
        RuntimeError::Conflict(m) => tonic::Status::failed_precondition(m),
        RuntimeError::Invalid(m) => tonic::Status::invalid_argument(m),
        RuntimeError::RolloutFailed { cause, message } => {
            let mut status = tonic::Status::aborted(message);
            status.metadata_mut().insert(
                ROLLOUT_CAUSE,
                tonic::metadata::MetadataValue::from_static(cause.code()),
            );
            status
        }
        RuntimeError::Unavailable(m) => tonic::Status::unavailable(m),
        RuntimeError::Refused(m) => tonic::Status::permission_denied(m),
        RuntimeError::Unauthenticated(m) => tonic::Status::unauthenticated(m),
        RuntimeError::Other(m) => tonic::Status::internal(m),
    }
}

pub fn error_from_status(s: tonic::Status) -> RuntimeError {
    let m = s.message().to_string();
    match s.code() {
        tonic::Code::NotFound => RuntimeError::NotFound(m),
        tonic::Code::FailedPrecondition => RuntimeError::Conflict(m),
        tonic::Code::InvalidArgument => RuntimeError::Invalid(m),
        tonic::Code::Aborted => RuntimeError::RolloutFailed {
            cause: RolloutCause::from_code(
                s.metadata()
                    .get(ROLLOUT_CAUSE)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default(),
            ),
            message: m,
        },
        tonic::Code::PermissionDenied => RuntimeError::Refused(m),
        tonic::Code::Unauthenticated => RuntimeError::Unauthenticated(m),
        tonic::Code::Unavailable => RuntimeError::Unavailable(format!(
            "the local runtime daemon did not answer ({m}); check its log `daemon.log` in the Slipway home directory"
        )),
        _ => RuntimeError::Other(m),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn application_specs_round_trip() {
        let spec = ApplicationSpec {
            id: "a1".into(),
            environment_id: "e1".into(),
            name: "web".into(),
            image: None,
            command: Some("/bin/app".into()),
            args: vec!["--x".into()],
            working_dir: Some("/tmp".into()),
            replicas: 2,
            ports: vec![PortSpec {
                name: "http".into(),
                port: 8080,
                protocol: Protocol::Tcp,
                public: true,
            }],
            variables: [("A".to_string(), "1".to_string())].into(),
            secrets: [("S".to_string(), "x".to_string())].into(),
            healthcheck: Some(HealthCheck {
                probe: HealthProbe::Http {
                    path: "/healthz".into(),
                    port: 8080,
                },
                interval: Duration::from_millis(500),
                timeout: Duration::from_secs(1),
                healthy_threshold: 1,
                unhealthy_threshold: 3,
            }),
            resources: ResourceLimits {
                cpu: Some("500m".into()),
                memory: None,
            },
        };
        let back = app_spec_from_pb(Some(app_spec_to_pb(spec.clone()))).unwrap();
        assert_eq!(back, spec);
    }

    #[test]
    fn a_rollout_failure_keeps_its_cause_across_the_socket() {
        for cause in [
            RolloutCause::Program,
            RolloutCause::Health,
            RolloutCause::Image,
            RolloutCause::Admission,
            RolloutCause::Other,
        ] {
            let status = error_to_status(RuntimeError::rollout(cause, "it failed"));
            match error_from_status(status) {
                RuntimeError::RolloutFailed {
                    cause: back,
                    message,
                } => {
                    assert_eq!((back, message.as_str()), (cause, "it failed"))
                }
                other => panic!("{other:?}"),
            }
        }
    }
}
