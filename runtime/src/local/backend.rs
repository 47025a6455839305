//! What the platform's service ([`super::daemon`]) carries changes out on: the local
//! runtime's own processes ([`super::daemon::Daemon`]), or a [`Runtime`] the platform
//! owns ([`Owned`]: a Kubernetes cluster, reached with the platform's own kubeconfig or
//! service account).
//!
//! The service decides who may do what (the gate) and records it; the backend only
//! does it, and never sees a request. So nothing a client sends picks or configures
//! it: which backend a platform has is its own command line's choice (`runtime serve
//! --backend kubernetes`, [`super::cli`]).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use super::proto as pb;
use crate::{
    Application, ApplicationSpec, ChangeRecord, Environment, EnvironmentSpec, Runtime,
    RuntimeError, RuntimeKind,
};

/// The runtime behind the platform. Reads give secret values (the service turns them
/// into digests before they leave it); writes are already decided and recorded.
#[async_trait::async_trait]
pub trait Backend: Send + Sync {
    /// Which runtime this is: the platform says so in `Info`, so that its clients check
    /// that runtime's rules at plan.
    fn kind(&self) -> RuntimeKind;

    /// The processes this backend started on this machine, which may not call the
    /// platform as the local user (see [`super::gate::Gate::caller`]).
    fn replica_pids(&self) -> BTreeSet<u32> {
        BTreeSet::new()
    }

    /// A client greeted the platform: its reads start a new round ([`Runtime::begin_reads`]).
    async fn begin_reads(&self) {}

    async fn environment(&self, id: &str) -> Result<Option<Environment>, RuntimeError>;

    async fn find_environment(&self, name: &str) -> Result<Option<Environment>, RuntimeError>;

    /// Every environment, by name.
    async fn list_environments(&self) -> Result<Vec<Environment>, RuntimeError>;

    async fn apply_environment(
        &self,
        spec: EnvironmentSpec,
        change: ChangeRecord,
    ) -> Result<Environment, RuntimeError>;

    async fn delete_environment(
        &self,
        id: &str,
        change: ChangeRecord,
        timeout: Duration,
    ) -> Result<(), RuntimeError>;

    async fn application(&self, id: &str) -> Result<Option<Application>, RuntimeError>;

    async fn find_application(
        &self,
        environment_id: &str,
        name: &str,
    ) -> Result<Option<Application>, RuntimeError>;

    async fn apply_application(
        &self,
        spec: ApplicationSpec,
        change: ChangeRecord,
        timeout: Duration,
    ) -> Result<Application, RuntimeError>;

    async fn delete_application(
        &self,
        id: &str,
        change: ChangeRecord,
        timeout: Duration,
    ) -> Result<(), RuntimeError>;

    /// Every application with its replicas (`runtime status`).
    async fn status(&self) -> Result<pb::StatusResponse, RuntimeError>;

    /// The last `lines` lines of each replica log of an application (`runtime logs`).
    async fn logs(&self, application: &str, lines: u32) -> Result<Vec<pb::LogLine>, RuntimeError>;
}

/// A [`Runtime`] the platform owns and serves: the Kubernetes runtime, which only the
/// platform may reach (with the platform's own credentials for the cluster).
pub struct Owned(pub Arc<dyn Runtime>);

/// What `runtime status` and `runtime logs` say on a runtime whose replicas are not
/// this machine's processes.
fn not_here(what: &str, kind: RuntimeKind) -> RuntimeError {
    RuntimeError::Invalid(format!(
        "`runtime {what}` shows the local runtime's processes; this platform runs applications on {kind}: use that runtime's own tools (on Kubernetes, `kubectl get deployments -A -l app.kubernetes.io/managed-by=slipway` and `kubectl logs`)"
    ))
}

#[async_trait::async_trait]
impl Backend for Owned {
    fn kind(&self) -> RuntimeKind {
        self.0.kind()
    }

    async fn begin_reads(&self) {
        self.0.begin_reads().await
    }

    async fn environment(&self, id: &str) -> Result<Option<Environment>, RuntimeError> {
        self.0.get_environment(id).await
    }

    async fn find_environment(&self, name: &str) -> Result<Option<Environment>, RuntimeError> {
        self.0.find_environment(name).await
    }

    async fn list_environments(&self) -> Result<Vec<Environment>, RuntimeError> {
        self.0.list_environments().await
    }

    async fn apply_environment(
        &self,
        spec: EnvironmentSpec,
        change: ChangeRecord,
    ) -> Result<Environment, RuntimeError> {
        self.0.apply_environment(spec, change).await
    }

    async fn delete_environment(
        &self,
        id: &str,
        change: ChangeRecord,
        timeout: Duration,
    ) -> Result<(), RuntimeError> {
        self.0.delete_environment(id, change, timeout).await
    }

    async fn application(&self, id: &str) -> Result<Option<Application>, RuntimeError> {
        self.0.get_application(id).await
    }

    async fn find_application(
        &self,
        environment_id: &str,
        name: &str,
    ) -> Result<Option<Application>, RuntimeError> {
        self.0.find_application(environment_id, name).await
    }

    async fn apply_application(
        &self,
        spec: ApplicationSpec,
        change: ChangeRecord,
        timeout: Duration,
    ) -> Result<Application, RuntimeError> {
        self.0.apply_application(spec, change, timeout).await
    }

    async fn delete_application(
        &self,
        id: &str,
        change: ChangeRecord,
        timeout: Duration,
    ) -> Result<(), RuntimeError> {
        self.0.delete_application(id, change, timeout).await
    }

    async fn status(&self) -> Result<pb::StatusResponse, RuntimeError> {
        Err(not_here("status", self.kind()))
    }

    async fn logs(
        &self,
        _application: &str,
        _lines: u32,
    ) -> Result<Vec<pb::LogLine>, RuntimeError> {
        Err(not_here("logs", self.kind()))
    }
}
