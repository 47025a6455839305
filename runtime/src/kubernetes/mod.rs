//! The Kubernetes runtime: environments are Namespaces, applications are Deployments
//! with a Service, a Secret and (for public ports, when configured) an Ingress.
//!
//! [`mapping`] says which objects a spec becomes and how ids find them; [`apply`] writes
//! them with server-side apply as the field manager `slipway`; [`rollout`] waits like
//! `kubectl rollout status`; [`ownership`] keeps Slipway's hands off objects it did not
//! create; [`rules`] are the API server's validation rules, checked at plan.
//!
//! # Permissions
//!
//! Slipway's user or service account needs: `get`, `list`, `create`, `patch` and
//! `delete` on `namespaces` and `deployments` (an id is found by a label-selected list,
//! of Deployments across namespaces); `get`, `create`, `patch` and `delete` on
//! `services`, `secrets` and `ingresses`; `get`, `create` and `patch` on `configmaps`
//! (an environment's ConfigMap goes with its Namespace). `create` because a server-side
//! apply that creates is authorized as a create too; never `update` or `watch`.
//! `deploy/kubernetes/slipway-agent.yaml` ships exactly this, and a test derives it from
//! the requests the runtime makes.
//!
//! # Connecting
//!
//! [`KubernetesRuntime::from_kubeconfig`] reads the kubeconfig at once (so a wrong path
//! or context is an error when the provider is configured) and connects on first use, so
//! the constructor is synchronous and needs no async context.

pub mod apply;
pub mod mapping;
pub mod ownership;
pub mod pod_security;
pub mod rollout;
pub mod rules;
mod snapshot;

use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod, Secret, Service};
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, Preconditions};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};
use tokio::sync::OnceCell;

use self::apply::{api_error, FIELD_MANAGER};
use self::mapping::{
    IngressSettings, ENVIRONMENT_OBJECT, LABEL_APPLICATION_ID, LABEL_ENVIRONMENT_ID,
    LABEL_MANAGED_BY, MANAGED_BY,
};
use self::ownership::{check, owner_id, Expected};
use self::pod_security::PodSecurity;
use super::{
    Application, ApplicationSpec, ChangeRecord, Environment, EnvironmentSpec, PlanProblem,
    PlannedApplication, Runtime, RuntimeError, RuntimeKind,
};

/// Sent on every request, so that API server audit logs and metrics name the client
/// (kube-rs sends none of its own).
const USER_AGENT: &str = concat!("terraform-provider-slipway/", env!("CARGO_PKG_VERSION"));

const ENVIRONMENT: &str = "slipway_environment";
const APPLICATION: &str = "slipway_application";

/// Where the client's configuration comes from; the client itself is made on first use.
enum Source {
    Client(Client),
    Kubeconfig {
        kubeconfig: Box<Kubeconfig>,
        options: KubeConfigOptions,
    },
    Config(Box<Config>),
}

/// See the module documentation.
pub struct KubernetesRuntime {
    source: Source,
    client: OnceCell<Client>,
    /// What the reads of one client's round share (`snapshot.rs`).
    snapshots: snapshot::Snapshots,
    ingress: Option<IngressSettings>,
    pod_security: PodSecurity,
}

/// The platform setting a cluster connection is wrong in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionSetting {
    Kubeconfig,
    KubeContext,
}

impl ConnectionSetting {
    /// The `runtime serve --backend kubernetes` flag.
    pub fn flag(self) -> &'static str {
        match self {
            ConnectionSetting::Kubeconfig => "--kubeconfig",
            ConnectionSetting::KubeContext => "--kube-context",
        }
    }
}

/// How the platform reaches its cluster and what it makes there: the platform's own
/// settings (`runtime serve --backend kubernetes`), never a Terraform configuration's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Connection {
    /// `None`: `$KUBECONFIG`, `~/.kube/config`, or the pod's service account inside a
    /// cluster.
    pub kubeconfig: Option<PathBuf>,
    pub context: Option<String>,
    /// Public ports exposed through an Ingress, when set.
    pub ingress: Option<mapping::IngressSettings>,
    pub pod_security: PodSecurity,
}

/// Why the runtime cannot reach a cluster with the settings it was given: the setting
/// to fix, and a message that says how.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ConnectionError {
    pub setting: ConnectionSetting,
    pub message: String,
}

impl ConnectionError {
    fn kubeconfig(message: impl Into<String>) -> ConnectionError {
        ConnectionError {
            setting: ConnectionSetting::Kubeconfig,
            message: message.into(),
        }
    }

    fn context(message: impl Into<String>) -> ConnectionError {
        ConnectionError {
            setting: ConnectionSetting::KubeContext,
            message: message.into(),
        }
    }
}

impl KubernetesRuntime {
    /// A runtime on an existing client.
    pub fn new(client: Client) -> KubernetesRuntime {
        KubernetesRuntime {
            source: Source::Client(client),
            client: OnceCell::new(),
            snapshots: snapshot::Snapshots::default(),
            ingress: None,
            pod_security: PodSecurity::default(),
        }
    }

    /// A runtime for the cluster of a kubeconfig: the file at `path`, or else `$KUBECONFIG`
    /// (a list of files), or else `~/.kube/config`; with `context`, or else the
    /// kubeconfig's current context. Reads and checks the file now; connects on first use.
    pub fn from_kubeconfig(
        path: Option<&Path>,
        context: Option<&str>,
    ) -> Result<KubernetesRuntime, ConnectionError> {
        let kubeconfig = match path {
            Some(path) => Kubeconfig::read_from(path).map_err(|e| {
                ConnectionError::kubeconfig(format!(
                    "cannot read the kubeconfig {}: {e}. Set `--kubeconfig` (SLIPWAY_KUBECONFIG) to a readable kubeconfig file.",
                    path.display()
                ))
            })?,
            None => Kubeconfig::read().map_err(|e| {
                ConnectionError::kubeconfig(format!(
                    "cannot read a kubeconfig from $KUBECONFIG or ~/.kube/config: {e}. Set `--kubeconfig` (SLIPWAY_KUBECONFIG) to a kubeconfig file; inside a cluster, leave `--kubeconfig` and `--kube-context` unset to use the pod's service account."
                ))
            })?,
        };
        let context = context.map(str::to_owned);
        match &context {
            Some(name) if !kubeconfig.contexts.iter().any(|c| &c.name == name) => {
                let known: Vec<&str> = kubeconfig
                    .contexts
                    .iter()
                    .map(|c| c.name.as_str())
                    .collect();
                return Err(ConnectionError::context(format!(
                    "the kubeconfig has no context {name:?} (it has: {}). Set `--kube-context` (SLIPWAY_KUBE_CONTEXT) to one of them.",
                    known.join(", ")
                )));
            }
            None if kubeconfig.current_context.is_none() => {
                return Err(ConnectionError::context(
                    "the kubeconfig has no current-context. Set `--kube-context` (SLIPWAY_KUBE_CONTEXT) to the context to use.",
                ));
            }
            _ => {}
        }
        Ok(KubernetesRuntime {
            source: Source::Kubeconfig {
                kubeconfig: Box::new(kubeconfig),
                options: KubeConfigOptions {
                    context,
                    ..KubeConfigOptions::default()
                },
            },
            client: OnceCell::new(),
            snapshots: snapshot::Snapshots::default(),
            ingress: None,
            pod_security: PodSecurity::default(),
        })
    }

    /// A runtime for the cluster the provider runs in, with its pod's service account.
    pub fn in_cluster() -> Result<KubernetesRuntime, ConnectionError> {
        let config = Config::incluster().map_err(|e| {
            ConnectionError::kubeconfig(format!(
                "cannot use the in-cluster service account: {e}. Outside a cluster, set `--kubeconfig` instead."
            ))
        })?;
        Ok(KubernetesRuntime {
            source: Source::Config(Box::new(config)),
            client: OnceCell::new(),
            snapshots: snapshot::Snapshots::default(),
            ingress: None,
            pod_security: PodSecurity::default(),
        })
    }

    /// The runtime `connection` describes: the pod's service account when it names no
    /// kubeconfig or context, `$KUBECONFIG` is unset and this runs in a cluster; else the
    /// kubeconfig. Connects on first use.
    pub fn connect(connection: &Connection) -> Result<KubernetesRuntime, ConnectionError> {
        let in_cluster = connection.kubeconfig.is_none()
            && connection.context.is_none()
            && std::env::var_os("KUBECONFIG").is_none()
            && std::env::var_os("KUBERNETES_SERVICE_HOST").is_some();
        let runtime = if in_cluster {
            KubernetesRuntime::in_cluster()
        } else {
            KubernetesRuntime::from_kubeconfig(
                connection.kubeconfig.as_deref(),
                connection.context.as_deref(),
            )
        }?;
        let runtime = match &connection.ingress {
            Some(ingress) => runtime.with_ingress(ingress.clone()),
            None => runtime,
        };
        Ok(runtime.with_pod_security(connection.pod_security))
    }

    /// Exposes public TCP ports through an Ingress of this class, one host per port.
    pub fn with_ingress(mut self, settings: IngressSettings) -> KubernetesRuntime {
        self.ingress = Some(settings);
        self
    }

    /// The Pod Security level the namespaces enforce and the pods meet (default
    /// `restricted`).
    pub fn with_pod_security(mut self, level: PodSecurity) -> KubernetesRuntime {
        self.pod_security = level;
        self
    }

    async fn client(&self) -> Result<Client, RuntimeError> {
        let client = self
            .client
            .get_or_try_init(|| async {
                let config = match &self.source {
                    Source::Client(client) => return Ok(client.clone()),
                    Source::Kubeconfig {
                        kubeconfig,
                        options,
                    } => Config::from_custom_kubeconfig((**kubeconfig).clone(), options)
                        .await
                        .map_err(|e| {
                            RuntimeError::Invalid(format!(
                                "cannot use the kubeconfig: {e}. Check its cluster and user entries."
                            ))
                        })?,
                    Source::Config(config) => (**config).clone(),
                };
                let mut config = config;
                config.headers.push((
                    http::header::USER_AGENT,
                    http::HeaderValue::from_static(USER_AGENT),
                ));
                Client::try_from(config).map_err(|e| {
                    RuntimeError::Unavailable(format!("cannot make a Kubernetes client: {e}"))
                })
            })
            .await?;
        Ok(client.clone())
    }

    /// The Namespace of environment `id`, if any.
    async fn environment_namespace(&self, id: &str) -> Result<Option<Namespace>, RuntimeError> {
        let api: Api<Namespace> = Api::all(self.client().await?);
        let list = api
            .list(&ListParams::default().labels(&mapping::selector(LABEL_ENVIRONMENT_ID, id)))
            .await
            .map_err(|e| api_error(e, &format!("list the Namespace of environment {id}")))?;
        Ok(list
            .items
            .into_iter()
            .find(|ns| owner_id(&ns.metadata, LABEL_ENVIRONMENT_ID) == Some(id)))
    }

    async fn read_environment(&self, ns: Namespace) -> Result<Environment, RuntimeError> {
        let name = ns.metadata.name.clone().unwrap_or_default();
        let id = owner_id(&ns.metadata, LABEL_ENVIRONMENT_ID)
            .unwrap_or_default()
            .to_owned();
        let client = self.client().await?;
        let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &name);
        let secrets: Api<Secret> = Api::namespaced(client, &name);
        let what_cm = format!("ConfigMap {name}/{ENVIRONMENT_OBJECT}");
        let what_secret = format!("Secret {name}/{ENVIRONMENT_OBJECT}");
        let (cm, secret) = tokio::join!(
            apply::get(&cms, ENVIRONMENT_OBJECT, &what_cm),
            apply::get(&secrets, ENVIRONMENT_OBJECT, &what_secret)
        );
        // Objects of the same name that are not this environment's are not its data.
        let ours = |m: &ObjectMeta| owner_id(m, LABEL_ENVIRONMENT_ID) == Some(id.as_str());
        let cm = cm?.filter(|c| ours(&c.metadata));
        let secret = secret?.filter(|s| ours(&s.metadata));
        mapping::environment_from(&ns, cm.as_ref(), secret.as_ref())
    }

    /// The Deployment of application `id`, wherever it is.
    async fn locate(&self, id: &str) -> Result<Option<Deployment>, RuntimeError> {
        let api: Api<Deployment> = Api::all(self.client().await?);
        let list = api
            .list(&ListParams::default().labels(&mapping::selector(LABEL_APPLICATION_ID, id)))
            .await
            .map_err(|e| api_error(e, &format!("list the Deployment of application {id}")))?;
        Ok(list
            .items
            .into_iter()
            .find(|d| owner_id(&d.metadata, LABEL_APPLICATION_ID) == Some(id)))
    }

    async fn read_application(&self, deployment: Deployment) -> Result<Application, RuntimeError> {
        let namespace = deployment.metadata.namespace.clone().unwrap_or_default();
        let secrets: Api<Secret> = Api::namespaced(self.client().await?, &namespace);
        let secret_name = mapping::application_secret_name(
            deployment.metadata.name.as_deref().unwrap_or_default(),
        );
        let secret = apply::get(
            &secrets,
            &secret_name,
            &format!("Secret {namespace}/{secret_name}"),
        )
        .await?;
        self.application_of(&deployment, secret.as_ref())
    }

    /// The application a Deployment and its Secret (only if it is that application's)
    /// make.
    fn application_of(
        &self,
        deployment: &Deployment,
        secret: Option<&Secret>,
    ) -> Result<Application, RuntimeError> {
        let id = owner_id(&deployment.metadata, LABEL_APPLICATION_ID);
        let secret =
            secret.filter(|s| id.is_some() && owner_id(&s.metadata, LABEL_APPLICATION_ID) == id);
        mapping::application_from(deployment, secret, self.ingress.as_ref())
    }

    /// Whether `meta` is a leftover of another application of this environment whose
    /// Deployment no longer exists: Slipway's own object (managed-by label, environment
    /// and application ids), which nothing else can use, so `spec` may take it over.
    async fn is_leftover(
        &self,
        meta: &ObjectMeta,
        spec: &ApplicationSpec,
    ) -> Result<bool, RuntimeError> {
        let Some(owner) = owner_id(meta, LABEL_APPLICATION_ID) else {
            return Ok(false);
        };
        if owner == spec.id
            || owner_id(meta, LABEL_ENVIRONMENT_ID) != Some(spec.environment_id.as_str())
        {
            return Ok(false);
        }
        Ok(self.locate(owner).await?.is_none())
    }

    /// Records who is deleting an object on it first, so that `kubectl` shows it while
    /// the object terminates. A merge patch: an apply with only metadata would drop
    /// every other field Slipway owns.
    async fn annotate_change<K>(
        &self,
        api: &Api<K>,
        name: &str,
        change: &ChangeRecord,
        what: &str,
    ) -> Result<(), RuntimeError>
    where
        K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    {
        let patch = serde_json::json!({
            "metadata": { "annotations": mapping::provenance_annotations(change) }
        });
        let params = PatchParams {
            field_manager: Some(FIELD_MANAGER.to_owned()),
            ..PatchParams::default()
        };
        api.patch(name, &params, &Patch::Merge(&patch))
            .await
            .map(|_| ())
            .map_err(|e| api_error(e, &format!("record the change on {what}")))
    }

    /// Deletes `name` only if it is application `id`'s, guarded by its uid so that a
    /// replacement made in between is never deleted.
    async fn delete_owned<K>(
        &self,
        api: &Api<K>,
        name: &str,
        id: &str,
        kind: &str,
        namespace: &str,
    ) -> Result<(), RuntimeError>
    where
        K: Clone + serde::de::DeserializeOwned + std::fmt::Debug + kube::Resource,
    {
        let what = format!("{kind} {namespace}/{name}");
        let Some(object) = apply::get(api, name, &what).await? else {
            return Ok(());
        };
        if owner_id(object.meta(), LABEL_APPLICATION_ID) != Some(id) {
            // Not ours: leave it, as promised.
            return Ok(());
        }
        let params = DeleteParams {
            preconditions: Some(Preconditions {
                uid: object.meta().uid.clone(),
                resource_version: None,
            }),
            ..DeleteParams::foreground()
        };
        match api.delete(name, &params).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            Err(e) => Err(api_error(e, &format!("delete {what}"))),
        }
    }

    /// Polls until `name` is gone or is no longer the object with `uid`.
    async fn wait_gone<K>(
        api: &Api<K>,
        name: &str,
        uid: Option<&str>,
        timeout: Duration,
        what: &str,
    ) -> Result<(), RuntimeError>
    where
        K: Clone + serde::de::DeserializeOwned + std::fmt::Debug + kube::Resource,
    {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut interval = Duration::from_millis(100);
        loop {
            let current = apply::get(api, name, what).await?;
            let Some(object) = current else {
                return Ok(());
            };
            if object.meta().uid.as_deref() != uid {
                return Ok(());
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                let finalizers = object.meta().finalizers.clone().unwrap_or_default();
                return Err(RuntimeError::Other(format!(
                    "{what} is still terminating after {timeout:?} (finalizers: {}). Check it with `kubectl get` and retry the destroy, or raise the resource's delete timeout.",
                    if finalizers.is_empty() { "none".to_owned() } else { finalizers.join(", ") }
                )));
            }
            tokio::time::sleep(interval.min(deadline - now)).await;
            interval = (interval * 2).min(Duration::from_secs(1));
        }
    }
}

fn is_terminating(meta: &ObjectMeta) -> bool {
    meta.deletion_timestamp.is_some()
}

#[async_trait::async_trait]
impl Runtime for KubernetesRuntime {
    fn kind(&self) -> RuntimeKind {
        RuntimeKind::Kubernetes
    }

    fn check_application(&self, planned: &PlannedApplication<'_>) -> Vec<PlanProblem> {
        rules::check_application(planned)
    }

    async fn begin_reads(&self) {
        self.snapshots.invalidate().await;
    }

    async fn apply_environment(
        &self,
        spec: EnvironmentSpec,
        change: ChangeRecord,
    ) -> Result<Environment, RuntimeError> {
        self.snapshots
            .around(self.apply_environment_now(spec, change))
            .await
    }

    async fn get_environment(&self, id: &str) -> Result<Option<Environment>, RuntimeError> {
        match self.environment_namespace(id).await? {
            Some(ns) => Ok(Some(self.read_environment(ns).await?)),
            None => Ok(None),
        }
    }

    async fn list_environments(&self) -> Result<Vec<Environment>, RuntimeError> {
        let api: Api<Namespace> = Api::all(self.client().await?);
        let list = api
            .list(&ListParams::default().labels(LABEL_ENVIRONMENT_ID))
            .await
            .map_err(|e| api_error(e, "list the environments' Namespaces"))?;
        let mut environments = Vec::with_capacity(list.items.len());
        for ns in list.items {
            if owner_id(&ns.metadata, LABEL_ENVIRONMENT_ID).is_some() {
                environments.push(self.read_environment(ns).await?);
            }
        }
        Ok(environments)
    }

    async fn find_environment(&self, name: &str) -> Result<Option<Environment>, RuntimeError> {
        let api: Api<Namespace> = Api::all(self.client().await?);
        match apply::get(&api, name, &format!("Namespace {name}")).await? {
            Some(ns) if owner_id(&ns.metadata, LABEL_ENVIRONMENT_ID).is_some() => {
                Ok(Some(self.read_environment(ns).await?))
            }
            // Someone else's namespace is no Slipway environment; applying one of that
            // name says so.
            _ => Ok(None),
        }
    }

    async fn delete_environment(
        &self,
        id: &str,
        change: ChangeRecord,
        timeout: Duration,
    ) -> Result<(), RuntimeError> {
        self.snapshots
            .around(self.delete_environment_now(id, change, timeout))
            .await
    }

    async fn apply_application(
        &self,
        spec: ApplicationSpec,
        change: ChangeRecord,
        timeout: Duration,
    ) -> Result<Application, RuntimeError> {
        self.snapshots
            .around(self.apply_application_now(spec, change, timeout))
            .await
    }

    async fn get_application(&self, id: &str) -> Result<Option<Application>, RuntimeError> {
        let snapshot = self.snapshots.get(&self.client().await?).await?;
        let Some(deployment) = snapshot.deployment(id) else {
            return Ok(None);
        };
        let namespace = deployment.metadata.namespace.as_deref().unwrap_or_default();
        let secret_name = mapping::application_secret_name(
            deployment.metadata.name.as_deref().unwrap_or_default(),
        );
        let secret = snapshot.secret(namespace, &secret_name);
        self.application_of(deployment, secret).map(Some)
    }

    async fn find_application(
        &self,
        environment_id: &str,
        name: &str,
    ) -> Result<Option<Application>, RuntimeError> {
        let Some(ns) = self.environment_namespace(environment_id).await? else {
            return Ok(None);
        };
        let namespace = ns.metadata.name.unwrap_or_default();
        let api: Api<Deployment> = Api::namespaced(self.client().await?, &namespace);
        match apply::get(&api, name, &format!("Deployment {namespace}/{name}")).await? {
            Some(d) if owner_id(&d.metadata, LABEL_APPLICATION_ID).is_some() => {
                Ok(Some(self.read_application(d).await?))
            }
            _ => Ok(None),
        }
    }

    async fn delete_application(
        &self,
        id: &str,
        change: ChangeRecord,
        timeout: Duration,
    ) -> Result<(), RuntimeError> {
        self.snapshots
            .around(self.delete_application_now(id, change, timeout))
            .await
    }
}

/// The writes, which the trait methods wrap to drop the read snapshot around them.
impl KubernetesRuntime {
    async fn apply_environment_now(
        &self,
        spec: EnvironmentSpec,
        change: ChangeRecord,
    ) -> Result<Environment, RuntimeError> {
        let client = self.client().await?;
        let namespaces: Api<Namespace> = Api::all(client.clone());
        let ns_what = format!("Namespace {}", spec.name);
        let expected = |kind| Expected {
            kind,
            id_key: LABEL_ENVIRONMENT_ID,
            id: &spec.id,
            resource: ENVIRONMENT,
        };
        if let Some(existing) = apply::get(&namespaces, &spec.name, &ns_what).await? {
            check(&existing.metadata, expected("Namespace"))?;
            if is_terminating(&existing.metadata) {
                return Err(RuntimeError::Conflict(format!(
                    "{ns_what} is being deleted; wait until it is gone, then apply again."
                )));
            }
        } else if let Some(other) = self.environment_namespace(&spec.id).await? {
            let old = other.metadata.name.unwrap_or_default();
            return Err(RuntimeError::Conflict(format!(
                "environment {} is Namespace {old}, and a Namespace cannot be renamed. Destroy and re-create the environment to rename it.",
                spec.id
            )));
        }
        let ns = apply::apply(
            &namespaces,
            &spec.name,
            &mapping::namespace(&spec, &change, self.pod_security),
            &ns_what,
        )
        .await?;

        let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &spec.name);
        let secrets: Api<Secret> = Api::namespaced(client, &spec.name);
        let cm_what = format!("ConfigMap {}/{ENVIRONMENT_OBJECT}", spec.name);
        let secret_what = format!("Secret {}/{ENVIRONMENT_OBJECT}", spec.name);
        if let Some(existing) = apply::get(&cms, ENVIRONMENT_OBJECT, &cm_what).await? {
            check(&existing.metadata, expected("ConfigMap"))?;
        }
        if let Some(existing) = apply::get(&secrets, ENVIRONMENT_OBJECT, &secret_what).await? {
            check(&existing.metadata, expected("Secret"))?;
        }
        let cm = apply::apply(
            &cms,
            ENVIRONMENT_OBJECT,
            &mapping::environment_config_map(&spec, &change),
            &cm_what,
        )
        .await?;
        let secret = apply::apply(
            &secrets,
            ENVIRONMENT_OBJECT,
            &mapping::environment_secret(&spec, &change),
            &secret_what,
        )
        .await?;
        tracing::info!(environment = %spec.id, namespace = %spec.name, "applied environment");
        mapping::environment_from(&ns, Some(&cm), Some(&secret))
    }

    async fn delete_environment_now(
        &self,
        id: &str,
        change: ChangeRecord,
        timeout: Duration,
    ) -> Result<(), RuntimeError> {
        let Some(ns) = self.environment_namespace(id).await? else {
            return Err(RuntimeError::NotFound(format!(
                "no Namespace is labelled as environment {id}"
            )));
        };
        let name = ns.metadata.name.clone().unwrap_or_default();
        let uid = ns.metadata.uid.clone();
        let client = self.client().await?;
        let namespaces: Api<Namespace> = Api::all(client.clone());
        let what = format!("Namespace {name}");
        if !is_terminating(&ns.metadata) {
            let deployments: Api<Deployment> = Api::namespaced(client, &name);
            let apps = deployments
                .list(&ListParams::default().labels(&format!("{LABEL_MANAGED_BY}={MANAGED_BY}")))
                .await
                .map_err(|e| api_error(e, &format!("list the applications in {what}")))?;
            if !apps.items.is_empty() {
                let names: Vec<String> = apps
                    .items
                    .iter()
                    .filter_map(|d| d.metadata.name.clone())
                    .collect();
                return Err(RuntimeError::Conflict(format!(
                    "the environment still has applications: {}; delete them first",
                    names.join(", ")
                )));
            }
            self.annotate_change(&namespaces, &name, &change, &what)
                .await?;
            let params = DeleteParams {
                preconditions: Some(Preconditions {
                    uid: uid.clone(),
                    resource_version: None,
                }),
                ..DeleteParams::background()
            };
            match namespaces.delete(&name, &params).await {
                Ok(_) => {}
                // Already gone, or already terminating: either way, wait below.
                Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
                Err(e) => return Err(api_error(e, &format!("delete {what}"))),
            }
        }
        Self::wait_gone(&namespaces, &name, uid.as_deref(), timeout, &what).await?;
        tracing::info!(environment = %id, namespace = %name, "deleted environment");
        Ok(())
    }

    async fn apply_application_now(
        &self,
        spec: ApplicationSpec,
        change: ChangeRecord,
        timeout: Duration,
    ) -> Result<Application, RuntimeError> {
        let Some(ns) = self.environment_namespace(&spec.environment_id).await? else {
            return Err(RuntimeError::NotFound(format!(
                "no environment has id {:?}",
                spec.environment_id
            )));
        };
        let namespace = ns.metadata.name.clone().unwrap_or_default();
        if let Some(existing) = self.locate(&spec.id).await? {
            let (at_ns, at_name) = (
                existing.metadata.namespace.unwrap_or_default(),
                existing.metadata.name.unwrap_or_default(),
            );
            if at_ns != namespace || at_name != spec.name {
                return Err(RuntimeError::Conflict(format!(
                    "application {} is Deployment {at_ns}/{at_name}; Kubernetes objects cannot be renamed or moved. To rename the application, replace it (`terraform apply -replace=` with this slipway_application's address), or set `name` back to {at_name:?}.",
                    spec.id
                )));
            }
        }

        let client = self.client().await?;
        let deployments: Api<Deployment> = Api::namespaced(client.clone(), &namespace);
        let services: Api<Service> = Api::namespaced(client.clone(), &namespace);
        let secrets: Api<Secret> = Api::namespaced(client.clone(), &namespace);
        let ingresses: Api<Ingress> = Api::namespaced(client.clone(), &namespace);
        let pods: Api<Pod> = Api::namespaced(client, &namespace);
        let name = spec.name.clone();
        let secret_name = mapping::application_secret_name(&name);
        let d_what = format!("Deployment {namespace}/{name}");
        let s_what = format!("Service {namespace}/{name}");
        let sec_what = format!("Secret {namespace}/{secret_name}");
        let i_what = format!("Ingress {namespace}/{name}");

        // Check everything before writing anything: no half-adopted applications.
        let (d, s, sec, ing) = tokio::join!(
            apply::get(&deployments, &name, &d_what),
            apply::get(&services, &name, &s_what),
            apply::get(&secrets, &secret_name, &sec_what),
            apply::get(&ingresses, &name, &i_what),
        );
        let expected = |kind| Expected {
            kind,
            id_key: LABEL_APPLICATION_ID,
            id: &spec.id,
            resource: APPLICATION,
        };
        let existing_deployment = d?;
        if let Some(o) = &existing_deployment {
            check(&o.metadata, expected("Deployment"))?;
        }
        // With the Deployment gone (deleted out of band, so Terraform plans a create),
        // the Service, Secret and Ingress it left behind are taken over.
        if let Some(o) = s? {
            if !self.is_leftover(&o.metadata, &spec).await? {
                check(&o.metadata, expected("Service"))?;
            }
        }
        if let Some(o) = sec? {
            if !self.is_leftover(&o.metadata, &spec).await? {
                check(&o.metadata, expected("Secret"))?;
            }
        }
        let existing_ingress = ing?;
        if let Some(o) = &existing_ingress {
            if !self.is_leftover(&o.metadata, &spec).await? {
                check(&o.metadata, expected("Ingress"))?;
            }
        }

        let secret = apply::apply(
            &secrets,
            &secret_name,
            &mapping::application_secret(&spec, &namespace, &change),
            &sec_what,
        )
        .await?;
        let digest = mapping::secrets_digest(
            secret.metadata.uid.as_deref().unwrap_or_default(),
            &spec.secrets,
        );
        let mut deployment =
            mapping::deployment(&spec, &namespace, &change, &digest, self.pod_security)?;
        if let Some(existing) = &existing_deployment {
            mapping::keep_pod_commit(&mut deployment, existing);
        }
        apply::apply(&deployments, &name, &deployment, &d_what).await?;
        apply::apply(
            &services,
            &name,
            &mapping::service(&spec, &namespace, &change),
            &s_what,
        )
        .await?;
        let wanted = self
            .ingress
            .as_ref()
            .and_then(|settings| mapping::ingress(&spec, &namespace, &change, settings));
        match wanted {
            Some(ingress) => {
                apply::apply(&ingresses, &name, &ingress, &i_what).await?;
            }
            None if existing_ingress.is_some() => {
                self.delete_owned(&ingresses, &name, &spec.id, "Ingress", &namespace)
                    .await?;
            }
            None => {}
        }
        tracing::info!(application = %spec.id, deployment = %d_what, "applied; waiting for the rollout");
        let rolled = rollout::wait(&deployments, &pods, &namespace, &name, timeout).await?;
        mapping::application_from(&rolled, Some(&secret), self.ingress.as_ref())
    }

    async fn delete_application_now(
        &self,
        id: &str,
        change: ChangeRecord,
        timeout: Duration,
    ) -> Result<(), RuntimeError> {
        let Some(d) = self.locate(id).await? else {
            return Err(RuntimeError::NotFound(format!(
                "no Deployment is labelled as application {id}"
            )));
        };
        let namespace = d.metadata.namespace.clone().unwrap_or_default();
        let name = d.metadata.name.clone().unwrap_or_default();
        let uid = d.metadata.uid.clone();
        let client = self.client().await?;
        let deployments: Api<Deployment> = Api::namespaced(client.clone(), &namespace);
        let services: Api<Service> = Api::namespaced(client.clone(), &namespace);
        let secrets: Api<Secret> = Api::namespaced(client.clone(), &namespace);
        let ingresses: Api<Ingress> = Api::namespaced(client, &namespace);
        let d_what = format!("Deployment {namespace}/{name}");
        if !is_terminating(&d.metadata) {
            self.annotate_change(&deployments, &name, &change, &d_what)
                .await?;
        }
        // The Ingress and Service first, so traffic stops before the pods do; the
        // Secret last, since terminating pods may still read it.
        self.delete_owned(&ingresses, &name, id, "Ingress", &namespace)
            .await?;
        self.delete_owned(&services, &name, id, "Service", &namespace)
            .await?;
        self.delete_owned(&deployments, &name, id, "Deployment", &namespace)
            .await?;
        Self::wait_gone(&deployments, &name, uid.as_deref(), timeout, &d_what).await?;
        let secret_name = mapping::application_secret_name(&name);
        self.delete_owned(&secrets, &secret_name, id, "Secret", &namespace)
            .await?;
        tracing::info!(application = %id, deployment = %d_what, "deleted application");
        Ok(())
    }
}
