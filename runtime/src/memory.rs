//! An in-memory [`Runtime`]: a real, working store of environments and applications
//! that runs nothing. The provider's unit tests drive the resources through it, and it
//! is a reference for what the trait promises (ids, conflicts, phases, endpoints,
//! change records), without processes or a cluster.
//!
//! It also lets tests change things "outside Terraform" ([`MemoryRuntime::scale`],
//! [`MemoryRuntime::forget_application`]) and make the next rollout fail
//! ([`MemoryRuntime::fail_next_rollout`]), to exercise drift and error paths, and
//! answer the plan-time question as a platform that refuses a mode would
//! ([`MemoryRuntime::refuse_at_plan`]).

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use super::{
    Application, ApplicationSpec, ChangeRecord, Environment, EnvironmentSpec, Mode, Phase,
    PlanProblem, PlannedApplication, Protocol, RolloutCause, Runtime, RuntimeError, RuntimeKind,
};

/// A runtime's plan-time rules, which a memory runtime can borrow from a real one.
pub type Rules = fn(&PlannedApplication<'_>) -> Vec<PlanProblem>;

#[derive(Default)]
struct Store {
    environments: BTreeMap<String, Environment>,
    applications: BTreeMap<String, Application>,
    /// Every change record written, in order: (object id, operation, record).
    history: Vec<(String, &'static str, ChangeRecord)>,
    fail_next_rollout: Option<(RolloutCause, String)>,
    /// Modes whose changes `authorize` refuses.
    refused_modes: Vec<Mode>,
    /// Every plan-time question asked: (action, environment name).
    asked: Vec<(slipway_platform::Action, String)>,
}

/// See the module documentation.
pub struct MemoryRuntime {
    store: Mutex<Store>,
    rules: Option<Rules>,
}

impl Default for MemoryRuntime {
    fn default() -> Self {
        MemoryRuntime::new()
    }
}

impl MemoryRuntime {
    pub fn new() -> MemoryRuntime {
        MemoryRuntime {
            store: Mutex::default(),
            rules: None,
        }
    }

    /// A memory runtime that checks plans with a real runtime's rules, such as
    /// `local::rules::check_application`, so the resources' tests see its diagnostics.
    pub fn with_rules(rules: Rules) -> MemoryRuntime {
        MemoryRuntime {
            store: Mutex::default(),
            rules: Some(rules),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Store> {
        // A panicking test thread cannot leave the maps half-updated: every write is a
        // single insert or remove.
        self.store.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Changes an application's replica count behind Terraform's back.
    pub fn scale(&self, id: &str, replicas: u32) -> bool {
        let mut store = self.lock();
        match store.applications.get_mut(id) {
            Some(app) => {
                app.spec.replicas = replicas;
                app.ready_replicas = replicas;
                app.phase = phase_for(replicas);
                true
            }
            None => false,
        }
    }

    /// Removes an application behind Terraform's back.
    pub fn forget_application(&self, id: &str) -> bool {
        self.lock().applications.remove(id).is_some()
    }

    /// Makes the next `apply_application` fail its rollout for `cause` with `message`,
    /// leaving the application as it was before.
    pub fn fail_next_rollout(&self, cause: RolloutCause, message: impl Into<String>) {
        self.lock().fail_next_rollout = Some((cause, message.into()));
    }

    /// Makes `authorize` refuse every change in a `mode` environment from now on, as
    /// the platform refuses PRODUCTION to anyone but a merge job. (The writes
    /// themselves still go through: only a platform decides again at apply.)
    pub fn refuse_at_plan(&self, mode: Mode) {
        self.lock().refused_modes.push(mode);
    }

    /// Every plan-time question asked so far: (action, environment name).
    pub fn asked(&self) -> Vec<(slipway_platform::Action, String)> {
        self.lock().asked.clone()
    }

    /// Every change record written so far: (object id, operation, record).
    pub fn history(&self) -> Vec<(String, &'static str, ChangeRecord)> {
        self.lock().history.clone()
    }

    pub fn application_count(&self) -> usize {
        self.lock().applications.len()
    }
}

fn phase_for(replicas: u32) -> Phase {
    if replicas == 0 {
        Phase::Stopped
    } else {
        Phase::Running
    }
}

fn endpoints(spec: &ApplicationSpec) -> BTreeMap<String, String> {
    spec.ports
        .iter()
        .filter(|p| p.public)
        .map(|p| {
            let scheme = match p.protocol {
                Protocol::Tcp => "http",
                Protocol::Udp => "udp",
            };
            (p.name.clone(), format!("{scheme}://127.0.0.1:{}", p.port))
        })
        .collect()
}

#[async_trait::async_trait]
impl Runtime for MemoryRuntime {
    fn kind(&self) -> RuntimeKind {
        RuntimeKind::Memory
    }

    async fn authorize(
        &self,
        action: slipway_platform::Action,
        target: &slipway_platform::Target,
        object: &str,
    ) -> Result<(), RuntimeError> {
        let mut store = self.lock();
        store.asked.push((action, target.environment.clone()));
        if store.refused_modes.contains(&target.mode) {
            return Err(RuntimeError::Refused(format!(
                "{object}: {} environments are closed to this caller",
                target.mode
            )));
        }
        Ok(())
    }

    fn check_application(&self, planned: &PlannedApplication<'_>) -> Vec<PlanProblem> {
        self.rules.map(|rules| rules(planned)).unwrap_or_default()
    }

    async fn apply_environment(
        &self,
        spec: EnvironmentSpec,
        change: ChangeRecord,
    ) -> Result<Environment, RuntimeError> {
        let mut store = self.lock();
        if let Some(other) = store
            .environments
            .values()
            .find(|e| e.spec.name == spec.name && e.spec.id != spec.id)
        {
            return Err(RuntimeError::Conflict(format!(
                "an environment named {:?} already exists (id {})",
                spec.name, other.spec.id
            )));
        }
        let environment = Environment {
            spec: spec.clone(),
            change: change.clone(),
        };
        store
            .environments
            .insert(spec.id.clone(), environment.clone());
        store.history.push((spec.id, "apply", change));
        Ok(environment)
    }

    async fn get_environment(&self, id: &str) -> Result<Option<Environment>, RuntimeError> {
        Ok(self.lock().environments.get(id).cloned())
    }

    async fn list_environments(&self) -> Result<Vec<Environment>, RuntimeError> {
        Ok(self.lock().environments.values().cloned().collect())
    }

    async fn find_environment(&self, name: &str) -> Result<Option<Environment>, RuntimeError> {
        Ok(self
            .lock()
            .environments
            .values()
            .find(|e| e.spec.name == name)
            .cloned())
    }

    async fn delete_environment(
        &self,
        id: &str,
        change: ChangeRecord,
        _timeout: Duration,
    ) -> Result<(), RuntimeError> {
        let mut store = self.lock();
        if !store.environments.contains_key(id) {
            return Err(RuntimeError::NotFound(format!(
                "no environment has id {id:?}"
            )));
        }
        let remaining: Vec<String> = store
            .applications
            .values()
            .filter(|a| a.spec.environment_id == id)
            .map(|a| a.spec.name.clone())
            .collect();
        if !remaining.is_empty() {
            return Err(RuntimeError::Conflict(format!(
                "the environment still has applications: {}; delete them first",
                remaining.join(", ")
            )));
        }
        store.environments.remove(id);
        store.history.push((id.to_owned(), "delete", change));
        Ok(())
    }

    async fn apply_application(
        &self,
        spec: ApplicationSpec,
        change: ChangeRecord,
        _timeout: Duration,
    ) -> Result<Application, RuntimeError> {
        let mut store = self.lock();
        if !store.environments.contains_key(&spec.environment_id) {
            return Err(RuntimeError::NotFound(format!(
                "no environment has id {:?}",
                spec.environment_id
            )));
        }
        if let Some(other) = store.applications.values().find(|a| {
            a.spec.environment_id == spec.environment_id
                && a.spec.name == spec.name
                && a.spec.id != spec.id
        }) {
            return Err(RuntimeError::Conflict(format!(
                "an application named {:?} already exists in this environment (id {})",
                spec.name, other.spec.id
            )));
        }
        if spec.command.is_none() && spec.image.is_none() {
            return Err(RuntimeError::Invalid(
                "an application needs a command or an image".to_owned(),
            ));
        }
        if let Some((cause, message)) = store.fail_next_rollout.take() {
            return Err(RuntimeError::rollout(cause, message));
        }
        let application = Application {
            phase: phase_for(spec.replicas),
            ready_replicas: spec.replicas,
            endpoints: endpoints(&spec),
            message: None,
            change: change.clone(),
            spec: spec.clone(),
        };
        store
            .applications
            .insert(spec.id.clone(), application.clone());
        store.history.push((spec.id, "apply", change));
        Ok(application)
    }

    async fn get_application(&self, id: &str) -> Result<Option<Application>, RuntimeError> {
        Ok(self.lock().applications.get(id).cloned())
    }

    async fn find_application(
        &self,
        environment_id: &str,
        name: &str,
    ) -> Result<Option<Application>, RuntimeError> {
        Ok(self
            .lock()
            .applications
            .values()
            .find(|a| a.spec.environment_id == environment_id && a.spec.name == name)
            .cloned())
    }

    async fn delete_application(
        &self,
        id: &str,
        change: ChangeRecord,
        _timeout: Duration,
    ) -> Result<(), RuntimeError> {
        let mut store = self.lock();
        if store.applications.remove(id).is_none() {
            return Err(RuntimeError::NotFound(format!(
                "no application has id {id:?}"
            )));
        }
        store.history.push((id.to_owned(), "delete", change));
        Ok(())
    }
}
