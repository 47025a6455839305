//! How Slipway's specs become Kubernetes objects, and how objects read back into specs.
//!
//! Pure functions only: no I/O, so every rule here is unit-tested without a cluster.
//!
//! # The id ↔ object scheme
//!
//! - An environment is the Namespace named after the environment (`spec.name`, a DNS
//!   label). Its variables live in the ConfigMap [`ENVIRONMENT_OBJECT`] and its secrets in
//!   the Secret of the same name, both inside the namespace.
//! - An application is the Deployment, Service and Secret `<name>-secrets` (and the
//!   Ingress, for public ports when an ingress class is configured) named after the
//!   application, in its environment's namespace.
//! - Every object carries `app.kubernetes.io/managed-by=slipway` and the label
//!   [`LABEL_ENVIRONMENT_ID`]; application objects also [`LABEL_APPLICATION_ID`]. These
//!   are how an id finds its object (a label-selected list), and the only labels in a
//!   Deployment's selector, because a selector is immutable and names may be reused.
//! - Label values are limited to 63 characters, and ids (`name-xxxxxxxx`) can be longer,
//!   so the label holds [`id_label`] of the id and the annotation of the same key holds
//!   the id itself; a lookup checks the annotation.
//! - The provenance of the last change is in `slipway.dev/*` annotations on every object.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment,
};
use k8s_openapi::api::core::v1::{
    ConfigMap, ConfigMapEnvSource, Container, ContainerPort, EnvFromSource, EnvVar, ExecAction,
    HTTPGetAction, Namespace, PodSpec, PodTemplateSpec, Probe, ResourceRequirements, Secret,
    SecretEnvSource, Service, ServicePort, ServiceSpec, TCPSocketAction,
};
use k8s_openapi::api::networking::v1::{
    HTTPIngressPath, HTTPIngressRuleValue, Ingress, IngressBackend, IngressRule,
    IngressServiceBackend, IngressSpec, ServiceBackendPort,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::ByteString;

use super::pod_security::PodSecurity;
use sha2::{Digest, Sha256};

use super::rollout::{rollout_status, RolloutStatus};
use crate::{
    Application, ApplicationSpec, ChangeRecord, Environment, EnvironmentSpec, HealthCheck,
    HealthProbe, Mode, Phase, PortSpec, Protocol, ResourceLimits, RuntimeError,
};

/// The standard label that says which tool manages an object.
pub const LABEL_MANAGED_BY: &str = "app.kubernetes.io/managed-by";
/// Its value on everything Slipway writes.
pub const MANAGED_BY: &str = "slipway";
/// The standard label with the application's name (for people and dashboards).
pub const LABEL_NAME: &str = "app.kubernetes.io/name";
/// The standard label for this instance of the application: its id (as [`id_label`]).
pub const LABEL_INSTANCE: &str = "app.kubernetes.io/instance";
/// The standard label for what the application is part of: its environment's namespace.
pub const LABEL_PART_OF: &str = "app.kubernetes.io/part-of";
/// Label (of [`id_label`]) and annotation (of the id) with the environment id.
pub const LABEL_ENVIRONMENT_ID: &str = "slipway.dev/environment-id";
/// Label (of [`id_label`]) and annotation (of the id) with the application id.
pub const LABEL_APPLICATION_ID: &str = "slipway.dev/application-id";
/// The environment's mode, on its Namespace.
pub const LABEL_MODE: &str = "slipway.dev/mode";
/// On a Deployment: the names of its public ports, comma-separated (Kubernetes has no
/// field for "public").
pub const ANNOTATION_PUBLIC_PORTS: &str = "slipway.dev/public-ports";
/// On a pod template: a keyed digest of the application's secrets, so that changing a
/// secret rolls the pods (environment variables from a Secret are read at start only).
pub const ANNOTATION_SECRETS_DIGEST: &str = "slipway.dev/secrets-digest";
/// On a pod template: a digest of the rest of the template, see [`keep_pod_commit`].
pub const ANNOTATION_TEMPLATE_DIGEST: &str = "slipway.dev/template-digest";

/// The ConfigMap (variables) and Secret (secrets) shared by an environment's applications.
pub const ENVIRONMENT_OBJECT: &str = "slipway-environment";

pub const ANNOTATION_COMMIT_SHA: &str = "slipway.dev/commit-sha";
pub const ANNOTATION_REPOSITORY: &str = "slipway.dev/repository";
pub const ANNOTATION_PULL_REQUEST: &str = "slipway.dev/pull-request";
pub const ANNOTATION_ACTOR: &str = "slipway.dev/actor";
pub const ANNOTATION_TRIGGER: &str = "slipway.dev/trigger";
pub const ANNOTATION_JOB_ID: &str = "slipway.dev/job-id";
pub const ANNOTATION_CHANGED_AT: &str = "slipway.dev/changed-at";
pub const ANNOTATION_VERIFIED: &str = "slipway.dev/verified";

/// How public ports are exposed outside the cluster: an Ingress of `class`, with one host
/// per public port, `<port>.<application>.<environment>.<domain>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngressSettings {
    pub class: String,
    pub domain: String,
}

/// The name of an application's Secret.
pub fn application_secret_name(application: &str) -> String {
    format!("{application}-secrets")
}

/// The label value for an id: the id itself when it is a valid label value, otherwise a
/// digest of it (`sha256.` and 56 hex digits, 63 characters), which is stable.
pub fn id_label(id: &str) -> String {
    if is_label_value(id) {
        return id.to_owned();
    }
    let digest = Sha256::digest(id.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256.{}", &hex[..56])
}

fn is_label_value(s: &str) -> bool {
    let bytes = s.as_bytes();
    if s.is_empty() {
        return true;
    }
    s.len() <= 63
        && bytes[0].is_ascii_alphanumeric()
        && bytes[bytes.len() - 1].is_ascii_alphanumeric()
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// A label selector (the query-string form) for Slipway's objects with this id.
pub fn selector(label: &str, id: &str) -> String {
    format!("{LABEL_MANAGED_BY}={MANAGED_BY},{label}={}", id_label(id))
}

/// The provenance annotations for a change.
pub fn provenance_annotations(change: &ChangeRecord) -> BTreeMap<String, String> {
    let mut a = BTreeMap::new();
    let mut put = |k: &str, v: &str| {
        a.insert(k.to_owned(), v.to_owned());
    };
    put(ANNOTATION_COMMIT_SHA, &change.commit_sha);
    put(ANNOTATION_REPOSITORY, &change.repository);
    put(ANNOTATION_ACTOR, &change.actor);
    put(ANNOTATION_TRIGGER, &change.trigger);
    put(ANNOTATION_JOB_ID, &change.job_id);
    put(ANNOTATION_CHANGED_AT, &change.changed_at);
    put(
        ANNOTATION_VERIFIED,
        if change.verified { "true" } else { "false" },
    );
    if let Some(pr) = change.pull_request {
        put(ANNOTATION_PULL_REQUEST, &pr.to_string());
    }
    a
}

/// The change record stored in an object's annotations.
pub fn change_from(meta: &ObjectMeta) -> ChangeRecord {
    let empty = BTreeMap::new();
    let a = meta.annotations.as_ref().unwrap_or(&empty);
    let get = |k: &str| a.get(k).cloned().unwrap_or_default();
    ChangeRecord {
        commit_sha: get(ANNOTATION_COMMIT_SHA),
        repository: get(ANNOTATION_REPOSITORY),
        pull_request: a.get(ANNOTATION_PULL_REQUEST).and_then(|v| v.parse().ok()),
        actor: get(ANNOTATION_ACTOR),
        trigger: get(ANNOTATION_TRIGGER),
        job_id: get(ANNOTATION_JOB_ID),
        changed_at: get(ANNOTATION_CHANGED_AT),
        verified: a.get(ANNOTATION_VERIFIED).map(String::as_str) == Some("true"),
    }
}

/// The full id in an object's annotation `key`, if any.
pub fn annotated_id<'a>(meta: &'a ObjectMeta, key: &str) -> Option<&'a str> {
    meta.annotations.as_ref()?.get(key).map(String::as_str)
}

fn environment_labels(spec: &EnvironmentSpec) -> BTreeMap<String, String> {
    BTreeMap::from([
        (LABEL_MANAGED_BY.to_owned(), MANAGED_BY.to_owned()),
        (LABEL_ENVIRONMENT_ID.to_owned(), id_label(&spec.id)),
    ])
}

fn environment_meta(
    spec: &EnvironmentSpec,
    name: &str,
    namespace: Option<&str>,
    change: &ChangeRecord,
) -> ObjectMeta {
    let mut annotations = provenance_annotations(change);
    annotations.insert(LABEL_ENVIRONMENT_ID.to_owned(), spec.id.clone());
    ObjectMeta {
        name: Some(name.to_owned()),
        namespace: namespace.map(str::to_owned),
        labels: Some(environment_labels(spec)),
        annotations: Some(annotations),
        ..ObjectMeta::default()
    }
}

/// The Namespace of an environment, labelled for the Pod Security level it enforces.
pub fn namespace(
    spec: &EnvironmentSpec,
    change: &ChangeRecord,
    pod_security: PodSecurity,
) -> Namespace {
    let mut meta = environment_meta(spec, &spec.name, None, change);
    if let Some(labels) = meta.labels.as_mut() {
        labels.insert(
            LABEL_MODE.to_owned(),
            spec.mode.as_str().to_ascii_lowercase(),
        );
    }
    let mut ns = Namespace {
        metadata: meta,
        ..Namespace::default()
    };
    pod_security.label(&mut ns);
    ns
}

/// The ConfigMap with an environment's shared variables.
pub fn environment_config_map(spec: &EnvironmentSpec, change: &ChangeRecord) -> ConfigMap {
    ConfigMap {
        metadata: environment_meta(spec, ENVIRONMENT_OBJECT, Some(&spec.name), change),
        // An empty map, not None: applying without `data` would leave the old keys
        // owned by nobody instead of removing them.
        data: Some(spec.variables.clone()),
        ..ConfigMap::default()
    }
}

/// The Secret with an environment's shared secrets.
pub fn environment_secret(spec: &EnvironmentSpec, change: &ChangeRecord) -> Secret {
    Secret {
        metadata: environment_meta(spec, ENVIRONMENT_OBJECT, Some(&spec.name), change),
        data: Some(secret_data(&spec.secrets)),
        type_: Some("Opaque".to_owned()),
        ..Secret::default()
    }
}

fn secret_data(secrets: &BTreeMap<String, String>) -> BTreeMap<String, ByteString> {
    secrets
        .iter()
        .map(|(k, v)| (k.clone(), ByteString(v.as_bytes().to_vec())))
        .collect()
}

fn secrets_from(secret: Option<&Secret>) -> Result<BTreeMap<String, String>, RuntimeError> {
    let Some(data) = secret.and_then(|s| s.data.as_ref()) else {
        return Ok(BTreeMap::new());
    };
    data.iter()
        .map(|(k, v)| {
            String::from_utf8(v.0.clone()).map(|v| (k.clone(), v)).map_err(|_| {
                // The value itself is never shown.
                RuntimeError::Invalid(format!(
                    "the secret key {k:?} does not hold UTF-8 text; Slipway secrets are text. Replace its value in Terraform."
                ))
            })
        })
        .collect()
}

/// An environment as read from its Namespace, ConfigMap and Secret.
pub fn environment_from(
    ns: &Namespace,
    config_map: Option<&ConfigMap>,
    secret: Option<&Secret>,
) -> Result<Environment, RuntimeError> {
    let meta = &ns.metadata;
    let name = meta.name.clone().unwrap_or_default();
    let id = annotated_id(meta, LABEL_ENVIRONMENT_ID)
        .unwrap_or_default()
        .to_owned();
    let mode = meta
        .labels
        .as_ref()
        .and_then(|l| l.get(LABEL_MODE))
        .and_then(|m| m.to_ascii_uppercase().parse::<Mode>().ok())
        .unwrap_or_default();
    Ok(Environment {
        spec: EnvironmentSpec {
            id,
            name,
            mode,
            variables: config_map.and_then(|c| c.data.clone()).unwrap_or_default(),
            secrets: secrets_from(secret)?,
        },
        change: change_from(meta),
    })
}

/// Slipway's id labels and Kubernetes' recommended labels, which dashboards and
/// `kubectl get -l` understand: the application's name, this instance of it (its id),
/// the environment it is part of, and the tool that manages it.
fn application_labels(spec: &ApplicationSpec, namespace: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (LABEL_MANAGED_BY.to_owned(), MANAGED_BY.to_owned()),
        (
            LABEL_ENVIRONMENT_ID.to_owned(),
            id_label(&spec.environment_id),
        ),
        (LABEL_APPLICATION_ID.to_owned(), id_label(&spec.id)),
        (LABEL_NAME.to_owned(), spec.name.clone()),
        (LABEL_INSTANCE.to_owned(), id_label(&spec.id)),
        (LABEL_PART_OF.to_owned(), namespace.to_owned()),
    ])
}

/// The labels in a Deployment's selector and Service's selector: stable ids only.
pub fn selector_labels(spec: &ApplicationSpec) -> BTreeMap<String, String> {
    BTreeMap::from([
        (LABEL_MANAGED_BY.to_owned(), MANAGED_BY.to_owned()),
        (LABEL_APPLICATION_ID.to_owned(), id_label(&spec.id)),
    ])
}

fn application_meta(
    spec: &ApplicationSpec,
    name: &str,
    namespace: &str,
    change: &ChangeRecord,
) -> ObjectMeta {
    let mut annotations = provenance_annotations(change);
    annotations.insert(LABEL_ENVIRONMENT_ID.to_owned(), spec.environment_id.clone());
    annotations.insert(LABEL_APPLICATION_ID.to_owned(), spec.id.clone());
    ObjectMeta {
        name: Some(name.to_owned()),
        namespace: Some(namespace.to_owned()),
        labels: Some(application_labels(spec, namespace)),
        annotations: Some(annotations),
        ..ObjectMeta::default()
    }
}

/// The Secret with an application's own secrets.
pub fn application_secret(
    spec: &ApplicationSpec,
    namespace: &str,
    change: &ChangeRecord,
) -> Secret {
    Secret {
        metadata: application_meta(
            spec,
            &application_secret_name(&spec.name),
            namespace,
            change,
        ),
        data: Some(secret_data(&spec.secrets)),
        type_: Some("Opaque".to_owned()),
        ..Secret::default()
    }
}

/// A digest of an application's secrets keyed with `key` (the Secret's uid), for the
/// pod template: it changes when a secret does, and without the key it cannot be used
/// to test guesses of a secret's value.
pub fn secrets_digest(key: &str, secrets: &BTreeMap<String, String>) -> String {
    // HMAC-SHA256 (RFC 2104), written out: sha2 is already a dependency.
    const BLOCK: usize = 64;
    let mut k = key.as_bytes().to_vec();
    if k.len() > BLOCK {
        k = Sha256::digest(&k).to_vec();
    }
    k.resize(BLOCK, 0);
    let mut inner = Sha256::new();
    inner.update(k.iter().map(|b| b ^ 0x36).collect::<Vec<u8>>());
    for (name, value) in secrets {
        for part in [name.as_bytes(), value.as_bytes()] {
            inner.update((part.len() as u64).to_be_bytes());
            inner.update(part);
        }
    }
    let mut outer = Sha256::new();
    outer.update(k.iter().map(|b| b ^ 0x5c).collect::<Vec<u8>>());
    outer.update(inner.finalize());
    outer
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn whole_seconds(what: &str, d: Duration) -> Result<i32, RuntimeError> {
    if d.subsec_nanos() != 0 || d.is_zero() {
        return Err(RuntimeError::Invalid(format!(
            "healthcheck.{what} is {d:?}: Kubernetes probes count whole seconds; set it to a whole number of seconds, at least \"1s\""
        )));
    }
    i32::try_from(d.as_secs()).map_err(|_| {
        RuntimeError::Invalid(format!(
            "healthcheck.{what} is {d:?}, too long for a probe; use at most {} seconds",
            i32::MAX
        ))
    })
}

fn threshold(what: &str, n: u32) -> Result<i32, RuntimeError> {
    match i32::try_from(n) {
        Ok(v) if v >= 1 => Ok(v),
        _ => Err(RuntimeError::Invalid(format!(
            "healthcheck.{what} is {n}: use a whole number of at least 1"
        ))),
    }
}

fn probes(check: &HealthCheck) -> Result<Probes, RuntimeError> {
    let mut probe = Probe {
        period_seconds: Some(whole_seconds("interval", check.interval)?),
        timeout_seconds: Some(whole_seconds("timeout", check.timeout)?),
        failure_threshold: Some(threshold("unhealthy_threshold", check.unhealthy_threshold)?),
        ..Probe::default()
    };
    match &check.probe {
        HealthProbe::Http { path, port } => {
            probe.http_get = Some(HTTPGetAction {
                path: Some(path.clone()),
                port: IntOrString::Int(i32::from(*port)),
                ..HTTPGetAction::default()
            })
        }
        HealthProbe::Tcp { port } => {
            probe.tcp_socket = Some(TCPSocketAction {
                port: IntOrString::Int(i32::from(*port)),
                ..TCPSocketAction::default()
            })
        }
        HealthProbe::Exec { command } => {
            probe.exec = Some(ExecAction {
                command: Some(command.clone()),
            })
        }
    }
    // Readiness carries the configured thresholds: a failing replica leaves the
    // Service quickly. Liveness restarts it only after failing LIVENESS_PATIENCE times
    // as long, and not at all during the start-up allowance, when the startup probe
    // runs instead. Liveness and startup must have successThreshold 1 (the API server
    // rejects anything else).
    let period = probe.period_seconds.unwrap_or(10).max(1);
    let startup = Probe {
        success_threshold: Some(1),
        failure_threshold: Some(
            i32::try_from(
                STARTUP_ALLOWANCE
                    .as_secs()
                    .div_ceil(u64::from(period.unsigned_abs())),
            )
            .unwrap_or(i32::MAX)
            .max(1),
        ),
        ..probe.clone()
    };
    let liveness = Probe {
        success_threshold: Some(1),
        failure_threshold: probe
            .failure_threshold
            .map(|f| f.saturating_mul(LIVENESS_PATIENCE)),
        ..probe.clone()
    };
    let readiness = Probe {
        success_threshold: Some(threshold("healthy_threshold", check.healthy_threshold)?),
        ..probe
    };
    Ok(Probes {
        readiness,
        liveness,
        startup,
    })
}

/// How long a new replica may take to pass its health check once before liveness
/// failures restart it.
pub const STARTUP_ALLOWANCE: Duration = Duration::from_secs(300);
/// How many times the readiness failure threshold liveness waits before a restart.
pub const LIVENESS_PATIENCE: i32 = 3;

/// The three probes made of one health check.
struct Probes {
    readiness: Probe,
    liveness: Probe,
    startup: Probe,
}

fn health_from(probe: &Probe) -> Option<HealthCheck> {
    let port_of = |p: &IntOrString| match p {
        IntOrString::Int(n) => u16::try_from(*n).ok(),
        IntOrString::String(s) => s.parse().ok(),
    };
    let kind = if let Some(h) = &probe.http_get {
        HealthProbe::Http {
            path: h.path.clone().unwrap_or_else(|| "/".to_owned()),
            port: port_of(&h.port)?,
        }
    } else if let Some(t) = &probe.tcp_socket {
        HealthProbe::Tcp {
            port: port_of(&t.port)?,
        }
    } else if let Some(e) = &probe.exec {
        HealthProbe::Exec {
            command: e.command.clone().unwrap_or_default(),
        }
    } else {
        return None;
    };
    let secs = |v: Option<i32>, default: u64| {
        Duration::from_secs(v.and_then(|v| u64::try_from(v).ok()).unwrap_or(default))
    };
    let count =
        |v: Option<i32>, default: u32| v.and_then(|v| u32::try_from(v).ok()).unwrap_or(default);
    // The defaults are the API server's, for probes written by someone else.
    Some(HealthCheck {
        probe: kind,
        interval: secs(probe.period_seconds, 10),
        timeout: secs(probe.timeout_seconds, 1),
        healthy_threshold: count(probe.success_threshold, 1),
        unhealthy_threshold: count(probe.failure_threshold, 3),
    })
}

fn protocol_name(p: Protocol) -> &'static str {
    match p {
        Protocol::Tcp => "TCP",
        Protocol::Udp => "UDP",
    }
}

fn check_port_name(name: &str) -> Result<(), RuntimeError> {
    let ok = !name.is_empty()
        && name.len() <= 15
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && name.bytes().any(|b| b.is_ascii_lowercase())
        && !name.starts_with('-')
        && !name.ends_with('-')
        && !name.contains("--");
    if ok {
        Ok(())
    } else {
        Err(RuntimeError::Invalid(format!(
            "port name {name:?} is not valid on Kubernetes: a port name is 1 to 15 lowercase letters, digits and single '-' (not at either end), with at least one letter; rename the port"
        )))
    }
}

fn quantities(limits: &ResourceLimits) -> Option<BTreeMap<String, Quantity>> {
    let mut q = BTreeMap::new();
    if let Some(cpu) = &limits.cpu {
        q.insert("cpu".to_owned(), Quantity(cpu.clone()));
    }
    if let Some(memory) = &limits.memory {
        q.insert("memory".to_owned(), Quantity(memory.clone()));
    }
    (!q.is_empty()).then_some(q)
}

/// The Deployment of an application, its pods secured for `pod_security`.
/// `secrets_digest` comes from [`secrets_digest`].
pub fn deployment(
    spec: &ApplicationSpec,
    namespace: &str,
    change: &ChangeRecord,
    secrets_digest: &str,
    pod_security: PodSecurity,
) -> Result<Deployment, RuntimeError> {
    let Some(image) = spec.image.clone().filter(|i| !i.trim().is_empty()) else {
        return Err(RuntimeError::Invalid(format!(
            "application {:?} has no image: the kubernetes runtime runs containers; set `image` (`command` alone is for the local runtime)",
            spec.name
        )));
    };
    let replicas = i32::try_from(spec.replicas)
        .map_err(|_| RuntimeError::Invalid(format!("replicas is {}, too many", spec.replicas)))?;
    for port in &spec.ports {
        check_port_name(&port.name)?;
    }
    let probes = spec.healthcheck.as_ref().map(probes).transpose()?;
    let (readiness, liveness, startup) = match probes {
        Some(p) => (Some(p.readiness), Some(p.liveness), Some(p.startup)),
        None => (None, None, None),
    };
    let mut meta = application_meta(spec, &spec.name, namespace, change);
    let public: Vec<&str> = spec
        .ports
        .iter()
        .filter(|p| p.public)
        .map(|p| p.name.as_str())
        .collect();
    if let Some(a) = meta.annotations.as_mut() {
        a.insert(ANNOTATION_PUBLIC_PORTS.to_owned(), public.join(","));
    }
    let resources = quantities(&spec.resources).map(|q| ResourceRequirements {
        limits: Some(q.clone()),
        requests: Some(q),
        ..ResourceRequirements::default()
    });
    let env_from = vec![
        EnvFromSource {
            config_map_ref: Some(ConfigMapEnvSource {
                name: ENVIRONMENT_OBJECT.to_owned(),
                optional: Some(true),
            }),
            ..EnvFromSource::default()
        },
        EnvFromSource {
            secret_ref: Some(SecretEnvSource {
                name: ENVIRONMENT_OBJECT.to_owned(),
                optional: Some(true),
            }),
            ..EnvFromSource::default()
        },
        EnvFromSource {
            secret_ref: Some(SecretEnvSource {
                name: application_secret_name(&spec.name),
                optional: Some(false),
            }),
            ..EnvFromSource::default()
        },
    ];
    let container = Container {
        name: spec.name.clone(),
        image: Some(image),
        command: spec.command.clone().map(|c| vec![c]),
        args: (!spec.args.is_empty()).then(|| spec.args.clone()),
        working_dir: spec.working_dir.clone(),
        ports: (!spec.ports.is_empty()).then(|| {
            spec.ports
                .iter()
                .map(|p| ContainerPort {
                    name: Some(p.name.clone()),
                    container_port: i32::from(p.port),
                    protocol: Some(protocol_name(p.protocol).to_owned()),
                    ..ContainerPort::default()
                })
                .collect()
        }),
        // Explicit `env` wins over `envFrom`: the application's own variables override
        // the environment's.
        env: (!spec.variables.is_empty()).then(|| {
            spec.variables
                .iter()
                .map(|(k, v)| EnvVar {
                    name: k.clone(),
                    value: Some(v.clone()),
                    ..EnvVar::default()
                })
                .collect()
        }),
        env_from: Some(env_from),
        readiness_probe: readiness,
        liveness_probe: liveness,
        startup_probe: startup,
        resources,
        ..Container::default()
    };
    let mut pod_labels = application_labels(spec, namespace);
    pod_labels.extend(selector_labels(spec));
    let mut d = Deployment {
        metadata: meta,
        spec: Some(DeploymentSpec {
            replicas: Some(replicas),
            selector: LabelSelector {
                match_labels: Some(selector_labels(spec)),
                ..LabelSelector::default()
            },
            // New replicas are healthy before old ones stop.
            strategy: Some(DeploymentStrategy {
                type_: Some("RollingUpdate".to_owned()),
                rolling_update: Some(RollingUpdateDeployment {
                    max_surge: Some(IntOrString::Int(1)),
                    max_unavailable: Some(IntOrString::Int(0)),
                }),
            }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(pod_labels),
                    annotations: Some(BTreeMap::from([(
                        ANNOTATION_SECRETS_DIGEST.to_owned(),
                        secrets_digest.to_owned(),
                    )])),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![container],
                    ..PodSpec::default()
                }),
            },
            ..DeploymentSpec::default()
        }),
        status: None,
    };
    if let Some(pod) = d.spec.as_mut().and_then(|s| s.template.spec.as_mut()) {
        pod_security.secure(pod);
    }
    annotate_pod_commit(&mut d, &change.commit_sha);
    Ok(d)
}

/// Puts the commit that deployed the pods on the pod template (`kubectl describe pod`
/// shows it), with a digest of the rest of the template: [`keep_pod_commit`] keeps the
/// older commit when nothing else in the template changed, so that a new commit alone
/// rolls no pods.
fn annotate_pod_commit(d: &mut Deployment, commit: &str) {
    let Some(template) = d.spec.as_mut().map(|s| &mut s.template) else {
        return;
    };
    let json = serde_json::to_vec(&*template).unwrap_or_default();
    let digest: String = Sha256::digest(&json)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let annotations = template
        .metadata
        .get_or_insert_with(ObjectMeta::default)
        .annotations
        .get_or_insert_with(BTreeMap::new);
    annotations.insert(ANNOTATION_TEMPLATE_DIGEST.to_owned(), digest);
    annotations.insert(ANNOTATION_COMMIT_SHA.to_owned(), commit.to_owned());
}

fn template_annotation<'a>(d: &'a Deployment, key: &str) -> Option<&'a String> {
    d.spec
        .as_ref()?
        .template
        .metadata
        .as_ref()?
        .annotations
        .as_ref()?
        .get(key)
}

/// When `existing` runs the same pod template as `new` but for the commit, `new` keeps
/// `existing`'s commit: the pods still run what that commit deployed.
pub fn keep_pod_commit(new: &mut Deployment, existing: &Deployment) {
    let digest = template_annotation(new, ANNOTATION_TEMPLATE_DIGEST);
    if digest.is_none() || digest != template_annotation(existing, ANNOTATION_TEMPLATE_DIGEST) {
        return;
    }
    let Some(old_commit) = template_annotation(existing, ANNOTATION_COMMIT_SHA).cloned() else {
        return;
    };
    if let Some(a) = new
        .spec
        .as_mut()
        .and_then(|s| s.template.metadata.as_mut())
        .and_then(|m| m.annotations.as_mut())
    {
        a.insert(ANNOTATION_COMMIT_SHA.to_owned(), old_commit);
    }
}

/// The Service in front of an application's replicas (every port, public or not).
pub fn service(spec: &ApplicationSpec, namespace: &str, change: &ChangeRecord) -> Service {
    Service {
        metadata: application_meta(spec, &spec.name, namespace, change),
        spec: Some(ServiceSpec {
            selector: Some(selector_labels(spec)),
            ports: Some(
                spec.ports
                    .iter()
                    .map(|p| ServicePort {
                        name: Some(p.name.clone()),
                        port: i32::from(p.port),
                        target_port: Some(IntOrString::Int(i32::from(p.port))),
                        protocol: Some(protocol_name(p.protocol).to_owned()),
                        ..ServicePort::default()
                    })
                    .collect(),
            ),
            ..ServiceSpec::default()
        }),
        status: None,
    }
}

fn ingress_host(
    port: &str,
    spec: &ApplicationSpec,
    namespace: &str,
    ingress: &IngressSettings,
) -> String {
    format!("{port}.{}.{namespace}.{}", spec.name, ingress.domain)
}

/// The Ingress for an application's public TCP ports, or `None` when it has none.
pub fn ingress(
    spec: &ApplicationSpec,
    namespace: &str,
    change: &ChangeRecord,
    settings: &IngressSettings,
) -> Option<Ingress> {
    let rules: Vec<IngressRule> = spec
        .ports
        .iter()
        .filter(|p| p.public && p.protocol == Protocol::Tcp)
        .map(|p| IngressRule {
            host: Some(ingress_host(&p.name, spec, namespace, settings)),
            http: Some(HTTPIngressRuleValue {
                paths: vec![HTTPIngressPath {
                    path: Some("/".to_owned()),
                    path_type: "Prefix".to_owned(),
                    backend: IngressBackend {
                        service: Some(IngressServiceBackend {
                            name: spec.name.clone(),
                            port: Some(ServiceBackendPort {
                                number: Some(i32::from(p.port)),
                                ..ServiceBackendPort::default()
                            }),
                        }),
                        ..IngressBackend::default()
                    },
                }],
            }),
        })
        .collect();
    if rules.is_empty() {
        return None;
    }
    Some(Ingress {
        metadata: application_meta(spec, &spec.name, namespace, change),
        spec: Some(IngressSpec {
            ingress_class_name: Some(settings.class.clone()),
            rules: Some(rules),
            ..IngressSpec::default()
        }),
        status: None,
    })
}

/// The URL of each public port: its Ingress host when ingress is configured (TCP), and
/// the Service's cluster DNS name otherwise.
pub fn endpoints(
    spec: &ApplicationSpec,
    namespace: &str,
    ingress: Option<&IngressSettings>,
) -> BTreeMap<String, String> {
    spec.ports
        .iter()
        .filter(|p| p.public)
        .map(|p| {
            let url = match (ingress, p.protocol) {
                (Some(settings), Protocol::Tcp) => {
                    format!(
                        "http://{}/",
                        ingress_host(&p.name, spec, namespace, settings)
                    )
                }
                (_, Protocol::Tcp) => {
                    format!(
                        "http://{}.{namespace}.svc.cluster.local:{}",
                        spec.name, p.port
                    )
                }
                (_, Protocol::Udp) => {
                    format!(
                        "udp://{}.{namespace}.svc.cluster.local:{}",
                        spec.name, p.port
                    )
                }
            };
            (p.name.clone(), url)
        })
        .collect()
}

/// An application as read from its Deployment and Secret, with the rollout's phase.
pub fn application_from(
    deployment: &Deployment,
    secret: Option<&Secret>,
    ingress: Option<&IngressSettings>,
) -> Result<Application, RuntimeError> {
    let meta = &deployment.metadata;
    let namespace = meta.namespace.clone().unwrap_or_default();
    let name = meta.name.clone().unwrap_or_default();
    let dspec = deployment.spec.clone().unwrap_or_default();
    let pod = dspec.template.spec.clone().unwrap_or_default();
    // Slipway writes one container named after the application; prefer it by name.
    let container = pod
        .containers
        .iter()
        .find(|c| c.name == name)
        .or_else(|| pod.containers.first())
        .cloned()
        .unwrap_or_default();
    let public: Vec<String> = meta
        .annotations
        .as_ref()
        .and_then(|a| a.get(ANNOTATION_PUBLIC_PORTS))
        .map(|v| {
            v.split(',')
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    let ports = container
        .ports
        .clone()
        .unwrap_or_default()
        .into_iter()
        .filter_map(|p| {
            let port_name = p.name.clone().unwrap_or_default();
            Some(PortSpec {
                public: public.contains(&port_name),
                name: port_name,
                port: u16::try_from(p.container_port).ok()?,
                protocol: match p.protocol.as_deref() {
                    Some("UDP") => Protocol::Udp,
                    _ => Protocol::Tcp,
                },
            })
        })
        .collect();
    let mut command = container.command.clone().unwrap_or_default();
    let mut args = container.args.clone().unwrap_or_default();
    let first = if command.is_empty() {
        None
    } else {
        Some(command.remove(0))
    };
    // A multi-word command (written by someone else) reads back as command + args.
    command.append(&mut args);
    let limits = container
        .resources
        .as_ref()
        .and_then(|r| r.limits.clone().or_else(|| r.requests.clone()))
        .unwrap_or_default();
    let spec = ApplicationSpec {
        id: annotated_id(meta, LABEL_APPLICATION_ID)
            .unwrap_or_default()
            .to_owned(),
        environment_id: annotated_id(meta, LABEL_ENVIRONMENT_ID)
            .unwrap_or_default()
            .to_owned(),
        name,
        image: container.image.clone(),
        command: first,
        args: command,
        working_dir: container.working_dir.clone(),
        replicas: dspec
            .replicas
            .map_or(1, |r| u32::try_from(r).unwrap_or_default()),
        ports,
        variables: container
            .env
            .clone()
            .unwrap_or_default()
            .into_iter()
            .filter_map(|e| Some((e.name, e.value?)))
            .collect(),
        secrets: secrets_from(secret)?,
        healthcheck: container.readiness_probe.as_ref().and_then(health_from),
        resources: ResourceLimits {
            cpu: limits.get("cpu").map(|q| q.0.clone()),
            memory: limits.get("memory").map(|q| q.0.clone()),
        },
    };
    let status = deployment.status.clone().unwrap_or_default();
    // A read looks at the Deployment only (its conditions include a ReplicaFailure);
    // pods are read while an apply waits.
    let rollout = rollout_status(deployment, &[]);
    let (phase, message) = match &rollout {
        RolloutStatus::Failed(f) => (Phase::Failed, Some(f.to_string())),
        RolloutStatus::Waiting(m) => (Phase::Progressing, Some(m.clone())),
        RolloutStatus::Complete if spec.replicas == 0 => (Phase::Stopped, None),
        RolloutStatus::Complete => (Phase::Running, None),
    };
    // Kubernetes counts available replicas across old and new ReplicaSets; old ones
    // are the last to go, so the available ones beyond the old count are new.
    let updated = status.updated_replicas.unwrap_or_default();
    let old = status.replicas.unwrap_or_default() - updated;
    let available = status.available_replicas.unwrap_or_default();
    let ready = (available - old.max(0)).clamp(0, updated);
    Ok(Application {
        endpoints: endpoints(&spec, &namespace, ingress),
        spec,
        change: change_from(meta),
        phase,
        ready_replicas: u32::try_from(ready).unwrap_or_default(),
        message,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::{DeploymentCondition, DeploymentStatus};

    fn env_spec() -> EnvironmentSpec {
        EnvironmentSpec {
            id: "dev-0a1b2c3d".into(),
            name: "dev".into(),
            mode: Mode::Staging,
            variables: BTreeMap::from([("REGION".into(), "eu".into())]),
            secrets: BTreeMap::from([("TOKEN".into(), "s3cret".into())]),
        }
    }

    fn app_spec() -> ApplicationSpec {
        ApplicationSpec {
            id: "web-12345678".into(),
            environment_id: "dev-0a1b2c3d".into(),
            name: "web".into(),
            image: Some("nginx:1.27".into()),
            command: Some("/bin/server".into()),
            args: vec!["--port".into(), "8080".into()],
            working_dir: Some("/srv".into()),
            replicas: 3,
            ports: vec![
                PortSpec {
                    name: "http".into(),
                    port: 8080,
                    protocol: Protocol::Tcp,
                    public: true,
                },
                PortSpec {
                    name: "metrics".into(),
                    port: 9090,
                    protocol: Protocol::Tcp,
                    public: false,
                },
            ],
            variables: BTreeMap::from([("LOG".into(), "debug".into())]),
            secrets: BTreeMap::from([("DB_PASSWORD".into(), "hunter2".into())]),
            healthcheck: Some(HealthCheck {
                probe: HealthProbe::Http {
                    path: "/healthz".into(),
                    port: 8080,
                },
                interval: Duration::from_secs(5),
                timeout: Duration::from_secs(2),
                healthy_threshold: 2,
                unhealthy_threshold: 4,
            }),
            resources: ResourceLimits {
                cpu: Some("500m".into()),
                memory: Some("256Mi".into()),
            },
        }
    }

    fn change() -> ChangeRecord {
        ChangeRecord {
            commit_sha: "abc123".into(),
            repository: "acme/infra".into(),
            pull_request: Some(42),
            actor: "alice".into(),
            trigger: "webhook".into(),
            job_id: "job-7".into(),
            changed_at: "2025-01-01T00:00:00Z".into(),
            verified: true,
        }
    }

    fn completed(mut d: Deployment) -> Deployment {
        let replicas = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
        d.metadata.generation = Some(1);
        d.status = Some(DeploymentStatus {
            observed_generation: Some(1),
            replicas: Some(replicas),
            updated_replicas: Some(replicas),
            ready_replicas: Some(replicas),
            available_replicas: Some(replicas),
            ..DeploymentStatus::default()
        });
        d
    }

    #[test]
    fn short_ids_are_their_own_label_and_long_ones_a_stable_digest() {
        assert_eq!(id_label("web-12345678"), "web-12345678");
        let long = format!("{}-0a1b2c3d", "a".repeat(63));
        let label = id_label(&long);
        assert_eq!(label.len(), 63);
        assert!(label.starts_with("sha256."));
        assert_eq!(label, id_label(&long));
        assert_ne!(label, id_label(&format!("{}-0a1b2c3e", "a".repeat(63))));
        assert!(is_label_value(&label));
    }

    #[test]
    fn namespace_carries_managed_by_id_and_mode_labels_and_provenance() {
        let ns = namespace(&env_spec(), &change(), PodSecurity::default());
        let labels = ns.metadata.labels.clone().unwrap();
        assert_eq!(labels[LABEL_MANAGED_BY], "slipway");
        assert_eq!(labels[LABEL_ENVIRONMENT_ID], "dev-0a1b2c3d");
        assert_eq!(labels[LABEL_MODE], "staging");
        let annotations = ns.metadata.annotations.clone().unwrap();
        assert_eq!(annotations[ANNOTATION_COMMIT_SHA], "abc123");
        assert_eq!(annotations[ANNOTATION_PULL_REQUEST], "42");
        assert_eq!(ns.metadata.name.as_deref(), Some("dev"));
    }

    #[test]
    fn environment_round_trips_through_its_objects() {
        let spec = env_spec();
        let ns = namespace(&spec, &change(), PodSecurity::default());
        let cm = environment_config_map(&spec, &change());
        let secret = environment_secret(&spec, &change());
        let env = environment_from(&ns, Some(&cm), Some(&secret)).unwrap();
        assert_eq!(env.spec, spec);
        assert_eq!(env.change, change());
    }

    #[test]
    fn deployment_maps_every_field_and_selects_by_stable_ids_only() {
        let spec = app_spec();
        let d = deployment(&spec, "dev", &change(), "digest", PodSecurity::default()).unwrap();
        let ds = d.spec.as_ref().unwrap();
        let selector = ds.selector.match_labels.clone().unwrap();
        assert_eq!(
            selector.keys().collect::<Vec<_>>(),
            vec![LABEL_MANAGED_BY, LABEL_APPLICATION_ID]
        );
        let template_labels = ds
            .template
            .metadata
            .as_ref()
            .unwrap()
            .labels
            .clone()
            .unwrap();
        for (k, v) in &selector {
            assert_eq!(
                template_labels.get(k),
                Some(v),
                "template must match selector"
            );
        }
        let c = &ds.template.spec.as_ref().unwrap().containers[0];
        assert_eq!(c.image.as_deref(), Some("nginx:1.27"));
        assert_eq!(c.command, Some(vec!["/bin/server".to_owned()]));
        let readiness = c.readiness_probe.as_ref().unwrap();
        assert_eq!(readiness.success_threshold, Some(2));
        assert_eq!(readiness.failure_threshold, Some(4));
        // Liveness is more patient than readiness, and waits out the start-up allowance.
        let liveness = c.liveness_probe.as_ref().unwrap();
        assert_eq!(liveness.success_threshold, Some(1));
        assert_eq!(liveness.failure_threshold, Some(4 * LIVENESS_PATIENCE));
        let startup = c.startup_probe.as_ref().unwrap();
        assert_eq!(startup.success_threshold, Some(1));
        assert_eq!(startup.period_seconds, Some(5));
        assert_eq!(startup.failure_threshold, Some(60), "300 s at 5 s");
        assert_eq!(startup.http_get, readiness.http_get);
        // Recommended labels, and the deployed commit on the pods.
        for (key, value) in [
            (LABEL_NAME, "web"),
            (LABEL_INSTANCE, "web-12345678"),
            (LABEL_PART_OF, "dev"),
            (LABEL_MANAGED_BY, "slipway"),
        ] {
            assert_eq!(template_labels[key], value, "{key}");
            assert_eq!(d.metadata.labels.as_ref().unwrap()[key], value, "{key}");
        }
        let template_annotations = ds
            .template
            .metadata
            .as_ref()
            .unwrap()
            .annotations
            .clone()
            .unwrap();
        assert_eq!(template_annotations[ANNOTATION_COMMIT_SHA], "abc123");
        let resources = c.resources.as_ref().unwrap();
        assert_eq!(resources.limits, resources.requests);
        assert_eq!(
            resources.limits.as_ref().unwrap()["cpu"],
            Quantity("500m".into())
        );
        // Secrets reach the pods through the Secret, never inline.
        let json = serde_json::to_string(&d).unwrap();
        assert!(!json.contains("hunter2"));
        let refs: Vec<_> = c
            .env_from
            .as_ref()
            .unwrap()
            .iter()
            .filter_map(|e| e.secret_ref.as_ref().map(|s| s.name.clone()))
            .collect();
        assert!(refs.contains(&"web-secrets".to_owned()));
        let strategy = ds
            .strategy
            .as_ref()
            .unwrap()
            .rolling_update
            .as_ref()
            .unwrap();
        assert_eq!(strategy.max_unavailable, Some(IntOrString::Int(0)));
        assert_eq!(ds.replicas, Some(3));
    }

    #[test]
    fn a_new_commit_alone_keeps_the_pods_commit_and_rolls_nothing() {
        let spec = app_spec();
        let old = deployment(&spec, "dev", &change(), "d", PodSecurity::default()).unwrap();
        let mut later = change();
        later.commit_sha = "def456".into();
        let mut same = deployment(&spec, "dev", &later, "d", PodSecurity::default()).unwrap();
        keep_pod_commit(&mut same, &old);
        assert_eq!(
            same.spec.as_ref().unwrap().template,
            old.spec.as_ref().unwrap().template
        );
        let mut changed_spec = spec.clone();
        changed_spec.image = Some("nginx:1.28".into());
        let mut changed =
            deployment(&changed_spec, "dev", &later, "d", PodSecurity::default()).unwrap();
        keep_pod_commit(&mut changed, &old);
        assert_eq!(
            template_annotation(&changed, ANNOTATION_COMMIT_SHA).map(String::as_str),
            Some("def456")
        );
    }

    #[test]
    fn application_round_trips_through_its_objects() {
        let spec = app_spec();
        let d = completed(
            deployment(&spec, "dev", &change(), "digest", PodSecurity::default()).unwrap(),
        );
        let secret = application_secret(&spec, "dev", &change());
        let app = application_from(&d, Some(&secret), None).unwrap();
        assert_eq!(app.spec, spec);
        assert_eq!(app.change, change());
        assert_eq!(app.phase, Phase::Running);
        assert_eq!(app.ready_replicas, 3);
        assert_eq!(
            app.endpoints["http"],
            "http://web.dev.svc.cluster.local:8080"
        );
        assert!(!app.endpoints.contains_key("metrics"));
    }

    #[test]
    fn stopped_and_failed_phases() {
        let mut spec = app_spec();
        spec.replicas = 0;
        let d =
            completed(deployment(&spec, "dev", &change(), "d", PodSecurity::default()).unwrap());
        assert_eq!(
            application_from(&d, None, None).unwrap().phase,
            Phase::Stopped
        );

        let mut d = completed(
            deployment(&app_spec(), "dev", &change(), "d", PodSecurity::default()).unwrap(),
        );
        if let Some(s) = d.status.as_mut() {
            s.available_replicas = Some(0);
            s.conditions = Some(vec![DeploymentCondition {
                type_: "Progressing".into(),
                status: "False".into(),
                reason: Some("ProgressDeadlineExceeded".into()),
                message: Some("ReplicaSet \"web-1\" has timed out progressing.".into()),
                ..DeploymentCondition::default()
            }]);
        }
        let app = application_from(&d, None, None).unwrap();
        assert_eq!(app.phase, Phase::Failed);
        assert!(app.message.unwrap().contains("ProgressDeadlineExceeded"));
    }

    #[test]
    fn ingress_only_for_public_tcp_ports_with_a_host_each() {
        let settings = IngressSettings {
            class: "nginx".into(),
            domain: "apps.example.com".into(),
        };
        let spec = app_spec();
        let ing = ingress(&spec, "dev", &change(), &settings).unwrap();
        let ispec = ing.spec.unwrap();
        assert_eq!(ispec.ingress_class_name.as_deref(), Some("nginx"));
        let rules = ispec.rules.unwrap();
        assert_eq!(rules.len(), 1);
        assert_eq!(
            rules[0].host.as_deref(),
            Some("http.web.dev.apps.example.com")
        );
        assert_eq!(
            endpoints(&spec, "dev", Some(&settings))["http"],
            "http://http.web.dev.apps.example.com/"
        );
        let mut private = app_spec();
        private.ports.iter_mut().for_each(|p| p.public = false);
        assert!(ingress(&private, "dev", &change(), &settings).is_none());
    }

    #[test]
    fn service_selects_the_pods_and_exposes_every_port() {
        let s = service(&app_spec(), "dev", &change());
        let spec = s.spec.unwrap();
        assert_eq!(spec.selector, Some(selector_labels(&app_spec())));
        assert_eq!(spec.ports.unwrap().len(), 2);
    }

    #[test]
    fn invalid_specs_name_the_field_and_the_fix() {
        let mut spec = app_spec();
        spec.image = None;
        let e = deployment(&spec, "dev", &change(), "d", PodSecurity::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("image"), "{e}");

        let mut spec = app_spec();
        if let Some(h) = spec.healthcheck.as_mut() {
            h.interval = Duration::from_millis(1500);
        }
        let e = deployment(&spec, "dev", &change(), "d", PodSecurity::default())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("healthcheck.interval is 1.5s") && e.contains("whole number of seconds"),
            "{e}"
        );

        let mut spec = app_spec();
        spec.ports[0].name = "a-very-long-port-name".into();
        let e = deployment(&spec, "dev", &change(), "d", PodSecurity::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("port name"), "{e}");
    }

    #[test]
    fn secrets_digest_changes_with_any_secret_and_key() {
        let a = BTreeMap::from([("A".to_owned(), "1".to_owned())]);
        let b = BTreeMap::from([("A".to_owned(), "2".to_owned())]);
        assert_eq!(secrets_digest("uid", &a), secrets_digest("uid", &a));
        assert_ne!(secrets_digest("uid", &a), secrets_digest("uid", &b));
        assert_ne!(secrets_digest("uid", &a), secrets_digest("uid2", &a));
        assert_eq!(secrets_digest("k", &a).len(), 64);
    }
}
