//! The local runtime daemon: one per home directory, serving the gRPC API of
//! `proto/slipway_runtime.proto` on `runtime.sock`, shared by every Terraform run.
//!
//! Only one daemon serves a home: it holds an exclusive `flock` on `daemon.lock` for its
//! whole life (the kernel drops it when the process dies, so a crash never leaves a
//! stale lock). On start it loads the desired state and brings every application back,
//! adopting the live replicas a previous daemon left behind when its watchdog kept
//! their output ([`super::watchdog`], [`super::kept`]) and stopping the others; on stop
//! it stops every replica gracefully and leaves the desired state on disk.
//!
//! The daemon is the platform's local [`Backend`]: the platform's service
//! ([`super::service`]) decides and records every call, then runs it here.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::backend::Backend;
use super::convert;
use super::gate::Gate;
use super::home::Home;
use super::kept::Kept;
use super::proto as pb;
use super::rollout::{AppRuntime, Ctx, Settings};
use super::service::{self, Platform};
use super::store::{Store, StoredApplication};
use crate::{Application, ChangeRecord, Environment, RuntimeError, RuntimeKind};

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("another local runtime daemon already serves {0}")]
    AlreadyRunning(String),
    #[error("{0}")]
    Setup(String),
}

/// How the daemon ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// Every replica stopped.
    Stopped,
    /// Replicas left running for the next daemon, which the watchdog starts.
    HandedOver,
}

/// How long an apply waits when the caller gave no timeout.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);

/// Runs the daemon until it is told to stop (the Shutdown call, SIGTERM or SIGINT).
/// `kept`: what the watchdog keeps across a crash ([`Kept::none`] without one).
pub async fn run(home: Home, settings: Settings, kept: Arc<Kept>) -> Result<Ended, DaemonError> {
    let setup = |what: &str, e: &dyn std::fmt::Display| DaemonError::Setup(format!("{what}: {e}"));
    let _lock = service::claim(&home)?;
    // Whatever a replica starts stays below the daemon in the process tree, however
    // it forks: the gate tells replicas from the local user by that.
    nix::sys::prctl::set_child_subreaper(true)
        .map_err(|e| setup("cannot become the replicas' subreaper", &e))?;
    // Under a watchdog, the replicas a dead daemon left are the watchdog's children.
    let watchdog = kept
        .watched()
        .then(|| u32::try_from(nix::unistd::getppid().as_raw()).ok())
        .flatten();
    let gate = Gate::open(&home, &|name| std::env::var(name).ok(), watchdog)
        .map_err(|e| setup("cannot open the platform", &e))?;

    let found = super::supervisor::live_records(&home.run_dir());
    let grace = settings.grace;
    let store = Store::load(&home.state_file()).map_err(|e| DaemonError::Setup(e.to_string()))?;
    let daemon = Arc::new(Daemon {
        ctx: Arc::new(Ctx {
            home: home.clone(),
            settings,
            store: tokio::sync::Mutex::new(store),
            kept: kept.clone(),
        }),
        apps: Mutex::new(BTreeMap::new()),
    });
    let leftovers = daemon.restore(found).await;
    // What no application took is closed for good.
    kept.forget_untaken();
    if !leftovers.is_empty() {
        tracing::warn!(
            count = leftovers.len(),
            "stopping replicas a previous daemon left running that cannot be adopted"
        );
        tokio::spawn(async move {
            super::supervisor::stop_leftovers(&leftovers, grace).await;
        });
    }
    tokio::spawn(super::reaper::reap_orphans(daemon.clone()));

    let platform = Arc::new(Platform::new(home, gate, daemon.clone(), kept));
    service::serve(platform, async move { daemon.stop_all().await }).await
}

pub(super) struct Daemon {
    ctx: Arc<Ctx>,
    apps: Mutex<BTreeMap<String, Arc<AppRuntime>>>,
}

impl Daemon {
    fn apps(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Arc<AppRuntime>>> {
        self.apps.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn app(&self, id: &str) -> Option<Arc<AppRuntime>> {
        self.apps().get(id).cloned()
    }

    /// The process ids of every replica: the daemon's own children, which tokio
    /// reaps (the orphan reaper leaves them alone).
    pub(super) fn replica_pids(&self) -> std::collections::BTreeSet<u32> {
        self.apps()
            .values()
            .flat_map(|app| app.replicas())
            .filter_map(|r| r.status().pid)
            .collect()
    }

    /// Brings back every stored application, adopting from `found` (the live replicas
    /// an earlier daemon left); returns the records nothing adopted.
    async fn restore(
        &self,
        found: Vec<super::supervisor::RunRecord>,
    ) -> Vec<super::supervisor::RunRecord> {
        let state = self.ctx.store.lock().await.state.clone();
        let mut by_app: BTreeMap<String, Vec<_>> = BTreeMap::new();
        for record in found {
            by_app
                .entry(record.app_id.clone())
                .or_default()
                .push(record);
        }
        for (id, stored) in state.applications {
            let found = by_app.remove(&id).unwrap_or_default();
            let Some(env) = state.environments.get(&stored.spec.environment_id) else {
                tracing::warn!(app = %id, "application without environment in the state; skipped");
                by_app.insert(id, found);
                continue;
            };
            let app = AppRuntime::new(stored, env.spec.name.clone());
            self.apps().insert(id.clone(), app.clone());
            // (It fails, if at all, before adopting anything: then nothing was.)
            match app.restore(&self.ctx, env, found.clone()).await {
                Ok(leftovers) => {
                    by_app.insert(id, leftovers);
                }
                Err(e) => {
                    tracing::error!(app = %id, error = %e, "cannot bring the application back");
                    by_app.insert(id, found);
                }
            }
        }
        by_app.into_values().flatten().collect()
    }

    async fn stop_all(&self) {
        let apps: Vec<_> = self.apps().values().cloned().collect();
        let mut stops = tokio::task::JoinSet::new();
        for app in apps {
            stops.spawn(async move { app.shut_down(false).await });
        }
        while stops.join_next().await.is_some() {}
    }

    async fn environment(&self, id: &str) -> Option<Environment> {
        self.ctx
            .store
            .lock()
            .await
            .state
            .environments
            .get(id)
            .cloned()
    }

    async fn apply_environment(
        &self,
        spec: crate::EnvironmentSpec,
        change: crate::ChangeRecord,
    ) -> Result<Environment, RuntimeError> {
        if spec.id.is_empty() || spec.name.is_empty() {
            return Err(RuntimeError::Invalid(
                "an environment needs an `id` and a `name`".into(),
            ));
        }
        if let Some((kind, why)) = crate::variables::first_bad_name(&spec.variables, &spec.secrets)
        {
            return Err(RuntimeError::Invalid(format!(
                "environment `{}`: `{kind}`: {why}",
                spec.name
            )));
        }
        let env = Environment { spec, change };
        let previous = {
            let mut store = self.ctx.store.lock().await;
            if let Some(other) = store
                .state
                .environments
                .values()
                .find(|e| e.spec.name == env.spec.name && e.spec.id != env.spec.id)
            {
                return Err(RuntimeError::Conflict(format!(
                    "an environment named `{}` already exists on the local runtime (id {}); choose another name or import it",
                    env.spec.name, other.spec.id
                )));
            }
            let previous = store
                .state
                .environments
                .insert(env.spec.id.clone(), env.clone());
            store
                .save()
                .map_err(|e| RuntimeError::Other(e.to_string()))?;
            previous
        };
        // The environment's variables reach every replica: roll its applications.
        let changed = previous.is_some_and(|p| {
            p.spec.variables != env.spec.variables
                || p.spec.secrets != env.spec.secrets
                || p.spec.name != env.spec.name
        });
        if changed {
            let apps: Vec<_> = self.apps().values().cloned().collect();
            for app in apps {
                if !app.with_spec(|s| s.environment_id == env.spec.id) {
                    continue;
                }
                let stored = app.stored();
                app.set_environment_name(&env.spec.name);
                let ctx = self.ctx.clone();
                let env = env.clone();
                tokio::spawn(async move {
                    let deadline = tokio::time::Instant::now() + DEFAULT_TIMEOUT;
                    if let Err(e) = app
                        .apply(&ctx, stored.spec, stored.change, &env, deadline)
                        .await
                    {
                        tracing::warn!(app = %app.id, error = %e, "rollout after an environment change failed");
                    }
                });
            }
        }
        Ok(env)
    }

    async fn delete_environment(&self, id: &str) -> Result<(), RuntimeError> {
        let in_use: Vec<String> = self
            .apps()
            .values()
            .filter_map(|a| a.with_spec(|s| (s.environment_id == id).then(|| s.name.clone())))
            .collect();
        let mut store = self.ctx.store.lock().await;
        let Some(env) = store.state.environments.get(id) else {
            return Ok(());
        };
        if !in_use.is_empty() {
            return Err(RuntimeError::Conflict(format!(
                "environment `{}` still has applications: {}; delete them first",
                env.spec.name,
                in_use.join(", ")
            )));
        }
        store.state.environments.remove(id);
        store.save().map_err(|e| RuntimeError::Other(e.to_string()))
    }

    async fn apply_application(
        &self,
        spec: crate::ApplicationSpec,
        change: crate::ChangeRecord,
        timeout: Duration,
    ) -> Result<crate::Application, RuntimeError> {
        super::rules::validate(&spec)?;
        let env = self.environment(&spec.environment_id).await.ok_or_else(|| {
            RuntimeError::NotFound(format!(
                "application `{}`: environment `{}` does not exist on the local runtime; create its slipway_environment first",
                spec.name, spec.environment_id
            ))
        })?;
        let app = {
            let mut apps = self.apps();
            if let Some(other) = apps.iter().find_map(|(id, a)| {
                (*id != spec.id
                    && a.with_spec(|s| {
                        s.environment_id == spec.environment_id && s.name == spec.name
                    }))
                .then_some(id)
            }) {
                return Err(RuntimeError::Conflict(format!(
                    "environment `{}` already has an application named `{}` (id {other}); choose another name or import it",
                    env.spec.name, spec.name
                )));
            }
            apps.entry(spec.id.clone())
                .or_insert_with(|| {
                    AppRuntime::new(
                        StoredApplication {
                            spec: spec.clone(),
                            change: change.clone(),
                            generation: 0,
                            stable_ports: BTreeMap::new(),
                        },
                        env.spec.name.clone(),
                    )
                })
                .clone()
        };
        if app.with_spec(|s| s.environment_id != spec.environment_id) {
            return Err(RuntimeError::Conflict(format!(
                "application `{}` belongs to another environment; an application cannot move between environments, replace it",
                spec.name
            )));
        }
        let timeout = if timeout.is_zero() {
            DEFAULT_TIMEOUT
        } else {
            timeout
        };
        let deadline = tokio::time::Instant::now() + timeout;
        // The rollout runs on its own task: a caller that goes away (Terraform
        // interrupted) does not leave it half done.
        let ctx = self.ctx.clone();
        let task_app = app.clone();
        let rollout = tokio::spawn(async move {
            task_app.apply(&ctx, spec, change, &env, deadline).await?;
            Ok::<_, RuntimeError>(task_app.application(&env))
        });
        rollout
            .await
            .map_err(|e| RuntimeError::Other(format!("the rollout task failed: {e}")))?
    }

    /// The application as it runs now, while its environment exists.
    async fn view(&self, app: &AppRuntime) -> Option<crate::Application> {
        let environment_id = app.with_spec(|s| s.environment_id.clone());
        let env = self.environment(&environment_id).await?;
        Some(app.application(&env))
    }

    async fn delete_application(&self, id: &str) -> Result<(), RuntimeError> {
        let Some(app) = self.app(id) else {
            return Ok(());
        };
        app.shut_down(true).await;
        self.apps().remove(id);
        {
            let mut store = self.ctx.store.lock().await;
            store.state.applications.remove(id);
            store
                .save()
                .map_err(|e| RuntimeError::Other(e.to_string()))?;
        }
        let _ = std::fs::remove_dir_all(self.ctx.home.app_logs_dir(id));
        let _ = std::fs::remove_dir_all(self.ctx.home.app_work_dir(id));
        Ok(())
    }

    /// Every application with its replicas.
    async fn status_now(&self) -> Result<pb::StatusResponse, RuntimeError> {
        let apps: Vec<_> = self.apps().values().cloned().collect();
        let mut out = Vec::with_capacity(apps.len());
        for app in apps {
            let Some(view) = self.view(&app).await else {
                continue;
            };
            let replicas = app
                .replicas()
                .iter()
                .map(|r| {
                    let s = r.status();
                    pb::ReplicaStatus {
                        id: r.config.id.clone(),
                        pid: s.pid.unwrap_or(0),
                        ports: r
                            .config
                            .ports
                            .iter()
                            .map(|(k, v)| (k.clone(), u32::from(*v)))
                            .collect(),
                        state: s.state.as_str().to_string(),
                        restarts: s.restarts,
                        generation: r.config.generation,
                        last_error: s
                            .last_error
                            .map(|e| r.config.redactor.redact(&e).into_owned()),
                    }
                })
                .collect();
            out.push(pb::ApplicationStatus {
                id: app.id.clone(),
                environment: app.environment_name(),
                name: view.spec.name.clone(),
                phase: convert::phase_to_pb(view.phase) as i32,
                desired_replicas: view.spec.replicas,
                ready_replicas: view.ready_replicas,
                endpoints: view.endpoints.into_iter().collect(),
                replicas,
                message: view.message,
                generation: app.generation(),
            });
        }
        let environments = self.ctx.store.lock().await.state.environments.len() as u32;
        Ok(pb::StatusResponse {
            applications: out,
            environments,
        })
    }

    /// The last `lines` lines of each replica log of an application.
    fn logs_now(&self, application: &str, lines: u32) -> Result<Vec<pb::LogLine>, RuntimeError> {
        let app = self.resolve(application)?;
        let n = if lines == 0 { 100 } else { lines as usize };
        let dir = self.ctx.home.app_logs_dir(&app.id);
        let mut files: Vec<(SystemTime, std::path::PathBuf)> = std::fs::read_dir(&dir)
            .map(|entries| {
                entries
                    .flatten()
                    .map(|e| e.path())
                    .filter(|p| p.extension().is_some_and(|x| x == "log"))
                    .map(|p| {
                        let t = std::fs::metadata(&p)
                            .and_then(|m| m.modified())
                            .unwrap_or(UNIX_EPOCH);
                        (t, p)
                    })
                    .collect()
            })
            .unwrap_or_default();
        files.sort();
        let mut lines = Vec::new();
        for (_, path) in files {
            let replica = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            for line in super::logs::tail_file(&path, n) {
                lines.push(pb::LogLine {
                    replica: replica.clone(),
                    line,
                });
            }
        }
        Ok(lines)
    }

    /// Finds an application by id, `environment/name`, or a name unique across
    /// environments.
    fn resolve(&self, selector: &str) -> Result<Arc<AppRuntime>, RuntimeError> {
        let apps = self.apps();
        if let Some(app) = apps.get(selector) {
            return Ok(app.clone());
        }
        let (env, name) = match selector.split_once('/') {
            Some((env, name)) => (Some(env), name),
            None => (None, selector),
        };
        let matches: Vec<_> = apps
            .values()
            .filter(|a| {
                a.with_spec(|s| s.name == name) && env.is_none_or(|e| a.environment_name() == e)
            })
            .cloned()
            .collect();
        match matches.as_slice() {
            [one] => Ok(one.clone()),
            [] => Err(RuntimeError::NotFound(format!(
                "no application `{selector}` on the local runtime; `runtime status` lists them"
            ))),
            _ => Err(RuntimeError::Invalid(format!(
                "`{selector}` names applications in several environments; say `environment/{name}`"
            ))),
        }
    }
}

#[async_trait::async_trait]
impl Backend for Daemon {
    fn kind(&self) -> RuntimeKind {
        RuntimeKind::Local
    }

    fn replica_pids(&self) -> std::collections::BTreeSet<u32> {
        Daemon::replica_pids(self)
    }

    async fn environment(&self, id: &str) -> Result<Option<Environment>, RuntimeError> {
        Ok(Daemon::environment(self, id).await)
    }

    async fn find_environment(&self, name: &str) -> Result<Option<Environment>, RuntimeError> {
        Ok(self
            .ctx
            .store
            .lock()
            .await
            .state
            .environments
            .values()
            .find(|e| e.spec.name == name)
            .cloned())
    }

    async fn list_environments(&self) -> Result<Vec<Environment>, RuntimeError> {
        Ok(self
            .ctx
            .store
            .lock()
            .await
            .state
            .environments
            .values()
            .cloned()
            .collect())
    }

    async fn apply_environment(
        &self,
        spec: crate::EnvironmentSpec,
        change: ChangeRecord,
    ) -> Result<Environment, RuntimeError> {
        Daemon::apply_environment(self, spec, change).await
    }

    async fn delete_environment(
        &self,
        id: &str,
        _change: ChangeRecord,
        _timeout: Duration,
    ) -> Result<(), RuntimeError> {
        Daemon::delete_environment(self, id).await
    }

    async fn application(&self, id: &str) -> Result<Option<Application>, RuntimeError> {
        Ok(match self.app(id) {
            Some(app) => self.view(&app).await,
            None => None,
        })
    }

    async fn find_application(
        &self,
        environment_id: &str,
        name: &str,
    ) -> Result<Option<Application>, RuntimeError> {
        let found = self
            .apps()
            .values()
            .find(|a| a.with_spec(|s| s.environment_id == environment_id && s.name == name))
            .cloned();
        Ok(match found {
            Some(app) => self.view(&app).await,
            None => None,
        })
    }

    async fn apply_application(
        &self,
        spec: crate::ApplicationSpec,
        change: ChangeRecord,
        timeout: Duration,
    ) -> Result<Application, RuntimeError> {
        Daemon::apply_application(self, spec, change, timeout).await
    }

    async fn delete_application(
        &self,
        id: &str,
        _change: ChangeRecord,
        _timeout: Duration,
    ) -> Result<(), RuntimeError> {
        Daemon::delete_application(self, id).await
    }

    async fn status(&self) -> Result<pb::StatusResponse, RuntimeError> {
        self.status_now().await
    }

    async fn logs(&self, application: &str, lines: u32) -> Result<Vec<pb::LogLine>, RuntimeError> {
        self.logs_now(application, lines)
    }
}
