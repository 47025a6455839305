//! The local runtime daemon: one per home directory, serving the gRPC API of
//! `proto/slipway_runtime.proto` on `runtime.sock`, shared by every Terraform run.
//!
//! Only one daemon serves a home: it holds an exclusive `flock` on `daemon.lock` for its
//! whole life (the kernel drops it when the process dies, so a crash never leaves a
//! stale lock). On start it loads the desired state and brings every application back,
//! adopting the live replicas a previous daemon left behind when its watchdog kept
//! their output ([`super::watchdog`], [`super::kept`]) and stopping the others; on stop
//! it stops every replica gracefully and leaves the desired state on disk.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use nix::fcntl::{Flock, FlockArg};
use tokio::net::UnixListener;
use tokio::sync::watch;
use tokio_stream::wrappers::UnixListenerStream;
use tonic::{Request, Response, Status};

use slipway_platform::audit::Outcome;
use slipway_platform::job_ending::SignedEnding;
use slipway_platform::{Action, Target};

use super::convert::{self, error_to_status};
use super::gate::{self, environment_action, Attempt, Gate};
use super::home::Home;
use super::kept::Kept;
use super::proto as pb;
use super::proto::local_runtime_server::{LocalRuntime as LocalRuntimeApi, LocalRuntimeServer};
use super::rollout::{AppRuntime, Ctx, Settings};
use super::store::{Store, StoredApplication};
use crate::{ApplicationSpec, Environment, EnvironmentSpec, RuntimeError};

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
    home.create().map_err(|e| {
        setup(
            &format!("cannot create the home directory {}", home.root().display()),
            &e,
        )
    })?;
    let lock_file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(home.lock_file())
        .map_err(|e| setup("cannot open the daemon lock file", &e))?;
    let _lock = Flock::lock(lock_file, FlockArg::LockExclusiveNonblock)
        .map_err(|_| DaemonError::AlreadyRunning(home.root().display().to_string()))?;
    std::fs::write(home.pid_file(), format!("{}\n", std::process::id()))
        .map_err(|e| setup("cannot write the pid file", &e))?;
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
    let (shutdown, mut shutdown_rx) = watch::channel(false);
    let daemon = Arc::new(Daemon {
        ctx: Arc::new(Ctx {
            home: home.clone(),
            settings,
            store: tokio::sync::Mutex::new(store),
            kept: kept.clone(),
        }),
        apps: Mutex::new(BTreeMap::new()),
        gate,
        shutdown,
        handed_over: std::sync::atomic::AtomicBool::new(false),
        build: super::version::build_id(std::path::Path::new("/proc/self/exe")),
        started_at: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
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

    let socket = home.socket();
    let _ = std::fs::remove_file(&socket);
    let listener = UnixListener::bind(&socket)
        .map_err(|e| setup(&format!("cannot listen on {}", socket.display()), &e))?;
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| setup("cannot restrict the socket to the user", &e))?;
    tracing::info!(socket = %socket.display(), pid = std::process::id(), "local runtime daemon ready");

    let mut server_stop = shutdown_rx.clone();
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(LocalRuntimeServer::new(Service(daemon.clone())))
            .serve_with_incoming_shutdown(UnixListenerStream::new(listener), async move {
                let _ = server_stop.wait_for(|stop| *stop).await;
            }),
    );

    // The team's endpoint: TCP with TLS, the same service; every caller there must
    // bring a token or a credential (no socket peer to vouch for it).
    let tcp_server = match daemon.gate.listen.clone() {
        None => None,
        Some(listen) => {
            let read = |path: &std::path::Path| {
                std::fs::read(path)
                    .map_err(|e| setup(&format!("cannot read {}", path.display()), &e))
            };
            let identity = tonic::transport::Identity::from_pem(
                read(&listen.certificate)?,
                read(&listen.key)?,
            );
            let tls = tonic::transport::ServerTlsConfig::new().identity(identity);
            let tcp = tokio::net::TcpListener::bind(listen.address)
                .await
                .map_err(|e| setup(&format!("cannot listen on {}", listen.address), &e))?;
            tracing::info!(address = %listen.address, "platform endpoint ready (TLS)");
            let mut tcp_stop = shutdown_rx.clone();
            let router = tonic::transport::Server::builder()
                .tls_config(tls)
                .map_err(|e| setup("the TLS certificate or key is not usable", &e))?
                .add_service(LocalRuntimeServer::new(Service(daemon.clone())));
            Some(tokio::spawn(router.serve_with_incoming_shutdown(
                tokio_stream::wrappers::TcpListenerStream::new(tcp),
                async move {
                    let _ = tcp_stop.wait_for(|stop| *stop).await;
                },
            )))
        }
    };

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| setup("cannot handle SIGTERM", &e))?;
    let mut int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .map_err(|e| setup("cannot handle SIGINT", &e))?;
    tokio::select! {
        _ = shutdown_rx.wait_for(|stop| *stop) => {}
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    let _ = daemon.shutdown.send(true);
    let ended = if daemon.handed_over.load(std::sync::atomic::Ordering::SeqCst) {
        // The next daemon binds the socket again and adopts the replicas.
        tracing::info!("handed over: the replicas keep running for the next daemon");
        Ended::HandedOver
    } else {
        tracing::info!("stopping every replica");
        daemon.stop_all().await;
        let _ = std::fs::remove_file(&socket);
        let _ = std::fs::remove_file(home.pid_file());
        Ended::Stopped
    };
    // Calls still in flight end now that their replicas are gone; do not wait long.
    let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
    if let Some(tcp_server) = tcp_server {
        let _ = tokio::time::timeout(Duration::from_secs(1), tcp_server).await;
    }
    tracing::info!("local runtime daemon stopped");
    Ok(ended)
}

pub(super) struct Daemon {
    ctx: Arc<Ctx>,
    apps: Mutex<BTreeMap<String, Arc<AppRuntime>>>,
    gate: Gate,
    shutdown: watch::Sender<bool>,
    /// Set by a hand-over: stopping leaves the replicas running.
    handed_over: std::sync::atomic::AtomicBool,
    /// This daemon's build ([`super::version::build_id`]).
    build: String,
    started_at: u64,
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

    /// Who sent `request` (see [`Gate::caller`]): a replica, adopted or not, is refused.
    fn caller<T>(&self, request: &Request<T>) -> Result<slipway_platform::Caller, Status> {
        self.gate.caller(request, &self.replica_pids())
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

    fn check_running(&self) -> Result<(), RuntimeError> {
        if *self.shutdown.borrow() {
            Err(RuntimeError::Unavailable(
                "the local runtime daemon is stopping".into(),
            ))
        } else {
            Ok(())
        }
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
                let stored = app.stored();
                if stored.spec.environment_id != env.spec.id {
                    continue;
                }
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
            .map(|a| a.stored())
            .filter(|s| s.spec.environment_id == id)
            .map(|s| s.spec.name)
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
            if let Some(other) = apps.values().map(|a| a.stored()).find(|s| {
                s.spec.environment_id == spec.environment_id
                    && s.spec.name == spec.name
                    && s.spec.id != spec.id
            }) {
                return Err(RuntimeError::Conflict(format!(
                    "environment `{}` already has an application named `{}` (id {}); choose another name or import it",
                    env.spec.name, spec.name, other.spec.id
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
        if app.stored().spec.environment_id != spec.environment_id {
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

    async fn application(&self, app: &AppRuntime) -> Option<crate::Application> {
        let env = self.environment(&app.stored().spec.environment_id).await?;
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
                a.stored().spec.name == name && env.is_none_or(|e| a.environment_name() == e)
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

#[derive(Clone)]
struct Service(Arc<Daemon>);

type Reply<T> = Result<Response<T>, Status>;

fn ms(ms: u64) -> Duration {
    Duration::from_millis(ms)
}

impl Service {
    /// Decides, runs and records one change.
    async fn change<T>(
        &self,
        attempt: Attempt<'_>,
        run: impl std::future::Future<Output = Result<T, RuntimeError>>,
    ) -> Result<T, Status> {
        self.0.gate.decide(&attempt)?;
        let result = run.await;
        match &result {
            Ok(_) => self.0.gate.record(&attempt, Outcome::Applied, None),
            Err(e) => self
                .0
                .gate
                .record(&attempt, Outcome::Failed, Some(e.to_string())),
        }
        result.map_err(error_to_status)
    }

    async fn environment_target(&self, id: &str) -> Option<(Target, String)> {
        self.0.environment(id).await.map(|env| {
            (
                Target {
                    environment: env.spec.name.clone(),
                    mode: env.spec.mode,
                },
                env.spec.name,
            )
        })
    }
}

/// A secret whose new value is the digest of its current one (what a read gave back)
/// keeps its current value: a client can re-apply a spec it read without the secret.
fn keep_unchanged_secrets(prior: &ApplicationSpec, mut next: ApplicationSpec) -> ApplicationSpec {
    for (key, value) in next.secrets.iter_mut() {
        if let Some(current) = prior.secrets.get(key) {
            if *value == crate::secrets::digest(&prior.id, key, current) {
                value.clone_from(current);
            }
        }
    }
    next
}

/// The fields an environment write changes (names only, never values).
fn environment_fields(prior: Option<&EnvironmentSpec>, next: &EnvironmentSpec) -> Vec<String> {
    let Some(prior) = prior else {
        return Vec::new();
    };
    let mut fields = Vec::new();
    if prior.name != next.name {
        fields.push("name".to_owned());
    }
    if prior.mode != next.mode {
        fields.push("mode".to_owned());
    }
    map_fields("variables", &prior.variables, &next.variables, &mut fields);
    map_fields("secrets", &prior.secrets, &next.secrets, &mut fields);
    fields
}

/// The fields an application write changes (names only, never values).
fn application_fields(prior: Option<&ApplicationSpec>, next: &ApplicationSpec) -> Vec<String> {
    let Some(prior) = prior else {
        return Vec::new();
    };
    let mut fields = Vec::new();
    let mut differs = |name: &str, changed: bool| {
        if changed {
            fields.push(name.to_owned());
        }
    };
    differs("name", prior.name != next.name);
    differs("image", prior.image != next.image);
    differs("command", prior.command != next.command);
    differs("args", prior.args != next.args);
    differs("working_dir", prior.working_dir != next.working_dir);
    differs("replicas", prior.replicas != next.replicas);
    differs("ports", prior.ports != next.ports);
    differs("healthcheck", prior.healthcheck != next.healthcheck);
    differs("resources", prior.resources != next.resources);
    map_fields("variables", &prior.variables, &next.variables, &mut fields);
    map_fields("secrets", &prior.secrets, &next.secrets, &mut fields);
    fields
}

fn map_fields(
    name: &str,
    prior: &BTreeMap<String, String>,
    next: &BTreeMap<String, String>,
    out: &mut Vec<String>,
) {
    let keys: std::collections::BTreeSet<&String> = prior.keys().chain(next.keys()).collect();
    for key in keys {
        if prior.get(key) != next.get(key) {
            out.push(format!("{name}.{key}"));
        }
    }
}

#[tonic::async_trait]
impl LocalRuntimeApi for Service {
    async fn apply_environment(
        &self,
        r: Request<pb::ApplyEnvironmentRequest>,
    ) -> Reply<pb::Environment> {
        let caller = self.0.caller(&r)?;
        let tool = gate::tool_of(&r)?;
        self.0.check_running().map_err(error_to_status)?;
        let r = r.into_inner();
        let spec = convert::env_spec_from_pb(r.spec).map_err(error_to_status)?;
        let requested = convert::change_from_pb(r.change);
        let prior = self.0.environment(&spec.id).await;
        let (action, mode) = environment_action(prior.as_ref().map(|p| p.spec.mode), spec.mode);
        if let Some(prior) = prior.as_ref().filter(|p| p.spec.name != spec.name) {
            // A rename must be allowed under the new name as well as the old one.
            self.0.gate.decide(&Attempt {
                caller: &caller,
                how: &requested.trigger,
                action,
                target: Target {
                    environment: spec.name.clone(),
                    mode,
                },
                object: format!("environment {}", prior.spec.name),
                fields: vec!["name".into()],
                tool: tool.as_deref(),
            })?;
        }
        let attempt = Attempt {
            caller: &caller,
            how: &requested.trigger,
            action,
            target: Target {
                environment: prior
                    .as_ref()
                    .map_or_else(|| spec.name.clone(), |p| p.spec.name.clone()),
                mode,
            },
            object: format!("environment {}", spec.name),
            fields: environment_fields(prior.as_ref().map(|p| &p.spec), &spec),
            tool: tool.as_deref(),
        };
        let change = self.0.gate.stamp(&caller, &requested);
        let env = self
            .change(attempt, self.0.apply_environment(spec, change))
            .await?;
        Ok(Response::new(convert::env_to_pb(
            convert::without_secret_values(env),
        )))
    }

    async fn get_environment(
        &self,
        r: Request<pb::GetEnvironmentRequest>,
    ) -> Reply<pb::EnvironmentLookup> {
        self.0.caller(&r)?;
        let env = self.0.environment(&r.into_inner().id).await;
        Ok(Response::new(pb::EnvironmentLookup {
            environment: env
                .map(convert::without_secret_values)
                .map(convert::env_to_pb),
        }))
    }

    async fn find_environment(
        &self,
        r: Request<pb::FindEnvironmentRequest>,
    ) -> Reply<pb::EnvironmentLookup> {
        self.0.caller(&r)?;
        let name = r.into_inner().name;
        let env = self
            .0
            .ctx
            .store
            .lock()
            .await
            .state
            .environments
            .values()
            .find(|e| e.spec.name == name)
            .cloned();
        Ok(Response::new(pb::EnvironmentLookup {
            environment: env
                .map(convert::without_secret_values)
                .map(convert::env_to_pb),
        }))
    }

    async fn list_environments(
        &self,
        r: Request<pb::ListEnvironmentsRequest>,
    ) -> Reply<pb::ListEnvironmentsResponse> {
        self.0.caller(&r)?;
        let mut environments: Vec<Environment> = self
            .0
            .ctx
            .store
            .lock()
            .await
            .state
            .environments
            .values()
            .cloned()
            .collect();
        environments.sort_by(|a, b| a.spec.name.cmp(&b.spec.name));
        Ok(Response::new(pb::ListEnvironmentsResponse {
            environments: environments
                .into_iter()
                .map(convert::without_secret_values)
                .map(convert::env_to_pb)
                .collect(),
        }))
    }

    async fn delete_environment(
        &self,
        r: Request<pb::DeleteEnvironmentRequest>,
    ) -> Reply<pb::DeleteResponse> {
        let id = r.get_ref().id.clone();
        let caller = self.0.caller(&r)?;
        let tool = gate::tool_of(&r)?;
        self.0.check_running().map_err(error_to_status)?;
        let requested = convert::change_from_pb(r.into_inner().change);
        let Some((target, name)) = self.environment_target(&id).await else {
            return Ok(Response::new(pb::DeleteResponse {}));
        };
        let attempt = Attempt {
            caller: &caller,
            how: &requested.trigger,
            action: Action::Delete,
            target,
            object: format!("environment {name}"),
            fields: Vec::new(),
            tool: tool.as_deref(),
        };
        self.change(attempt, self.0.delete_environment(&id)).await?;
        Ok(Response::new(pb::DeleteResponse {}))
    }

    async fn apply_application(
        &self,
        r: Request<pb::ApplyApplicationRequest>,
    ) -> Reply<pb::Application> {
        let caller = self.0.caller(&r)?;
        let tool = gate::tool_of(&r)?;
        self.0.check_running().map_err(error_to_status)?;
        let r = r.into_inner();
        let spec = convert::app_spec_from_pb(r.spec).map_err(error_to_status)?;
        let requested = convert::change_from_pb(r.change);
        let Some((target, env_name)) = self.environment_target(&spec.environment_id).await else {
            // No environment: nothing to decide on; the daemon says what is missing.
            let change = self.0.gate.stamp(&caller, &requested);
            return Err(error_to_status(
                self.0
                    .apply_application(spec, change, ms(r.timeout_ms))
                    .await
                    .err()
                    .unwrap_or_else(|| RuntimeError::Other("the environment vanished".into())),
            ));
        };
        let prior = self.0.app(&spec.id).map(|a| a.stored().spec);
        let spec = match &prior {
            Some(prior) => keep_unchanged_secrets(prior, spec),
            None => spec,
        };
        let attempt = Attempt {
            caller: &caller,
            how: &requested.trigger,
            action: if prior.is_some() {
                Action::Update
            } else {
                Action::Create
            },
            target,
            object: format!("application {env_name}/{}", spec.name),
            fields: application_fields(prior.as_ref(), &spec),
            tool: tool.as_deref(),
        };
        let change = self.0.gate.stamp(&caller, &requested);
        let app = self
            .change(
                attempt,
                self.0.apply_application(spec, change, ms(r.timeout_ms)),
            )
            .await?;
        Ok(Response::new(convert::app_to_pb(
            convert::app_without_secret_values(app),
        )))
    }

    async fn get_application(
        &self,
        r: Request<pb::GetApplicationRequest>,
    ) -> Reply<pb::ApplicationLookup> {
        self.0.caller(&r)?;
        let app = match self.0.app(&r.into_inner().id) {
            Some(app) => self.0.application(&app).await,
            None => None,
        };
        Ok(Response::new(pb::ApplicationLookup {
            application: app
                .map(convert::app_without_secret_values)
                .map(convert::app_to_pb),
        }))
    }

    async fn find_application(
        &self,
        r: Request<pb::FindApplicationRequest>,
    ) -> Reply<pb::ApplicationLookup> {
        self.0.caller(&r)?;
        let r = r.into_inner();
        let found = self
            .0
            .apps()
            .values()
            .find(|a| {
                let s = a.stored();
                s.spec.environment_id == r.environment_id && s.spec.name == r.name
            })
            .cloned();
        let app = match found {
            Some(app) => self.0.application(&app).await,
            None => None,
        };
        Ok(Response::new(pb::ApplicationLookup {
            application: app
                .map(convert::app_without_secret_values)
                .map(convert::app_to_pb),
        }))
    }

    async fn delete_application(
        &self,
        r: Request<pb::DeleteApplicationRequest>,
    ) -> Reply<pb::DeleteResponse> {
        let id = r.get_ref().id.clone();
        let caller = self.0.caller(&r)?;
        let tool = gate::tool_of(&r)?;
        self.0.check_running().map_err(error_to_status)?;
        let requested = convert::change_from_pb(r.into_inner().change);
        let Some(app) = self.0.app(&id) else {
            return Ok(Response::new(pb::DeleteResponse {}));
        };
        let stored = app.stored();
        let Some((target, env_name)) = self.environment_target(&stored.spec.environment_id).await
        else {
            return Err(Status::failed_precondition(
                "the application's environment is gone from the state; see daemon.log",
            ));
        };
        let attempt = Attempt {
            caller: &caller,
            how: &requested.trigger,
            action: Action::Delete,
            target,
            object: format!("application {env_name}/{}", stored.spec.name),
            fields: Vec::new(),
            tool: tool.as_deref(),
        };
        self.change(attempt, self.0.delete_application(&id)).await?;
        Ok(Response::new(pb::DeleteResponse {}))
    }

    async fn status(&self, r: Request<pb::StatusRequest>) -> Reply<pb::StatusResponse> {
        self.0.caller(&r)?;
        let apps: Vec<_> = self.0.apps().values().cloned().collect();
        let mut out = Vec::with_capacity(apps.len());
        for app in apps {
            let Some(view) = self.0.application(&app).await else {
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
        let environments = self.0.ctx.store.lock().await.state.environments.len() as u32;
        Ok(Response::new(pb::StatusResponse {
            applications: out,
            environments,
        }))
    }

    async fn logs(&self, r: Request<pb::LogsRequest>) -> Reply<pb::LogsResponse> {
        self.0.caller(&r)?;
        let r = r.into_inner();
        let app = self.0.resolve(&r.application).map_err(error_to_status)?;
        let n = if r.lines == 0 { 100 } else { r.lines as usize };
        let dir = self.0.ctx.home.app_logs_dir(&app.id);
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
        Ok(Response::new(pb::LogsResponse { lines }))
    }

    async fn info(&self, r: Request<pb::InfoRequest>) -> Reply<pb::InfoResponse> {
        self.0.caller(&r)?;
        Ok(Response::new(pb::InfoResponse {
            pid: std::process::id(),
            version: super::version::VERSION.to_string(),
            home: self.0.ctx.home.root().display().to_string(),
            started_at_unix: self.0.started_at,
            build: self.0.build.clone(),
        }))
    }

    async fn shutdown(&self, r: Request<pb::ShutdownRequest>) -> Reply<pb::ShutdownResponse> {
        let caller = self.0.caller(&r)?;
        self.0.gate.may_shut_down(&caller)?;
        let local_user = self.0.gate.is_socket_peer(&r);
        let program = std::path::PathBuf::from(r.into_inner().hand_over_to);
        if !program.as_os_str().is_empty() {
            // Starting a program is what the local user can do anyway; a token (even an
            // admin's, over TCP) cannot make the platform run one.
            if !local_user {
                return Err(Status::permission_denied(
                    "only the local user, on the socket without a token, may hand the runtime over to another program",
                ));
            }
            if !program.is_absolute() || !program.is_file() {
                return Err(Status::invalid_argument(format!(
                    "`hand_over_to`: {} is not an absolute path to a program",
                    program.display()
                )));
            }
            if !self.0.ctx.kept.hand_over(&program) {
                return Err(Status::failed_precondition(
                    "this daemon has no watchdog to hand over to (it runs under `runtime serve`): restart that service with the new binary",
                ));
            }
            tracing::info!(program = %program.display(), "handing over to another build");
            self.0
                .handed_over
                .store(true, std::sync::atomic::Ordering::SeqCst);
        }
        let _ = self.0.shutdown.send(true);
        Ok(Response::new(pb::ShutdownResponse {}))
    }

    async fn authorize(&self, r: Request<pb::AuthorizeRequest>) -> Reply<pb::AuthorizeResponse> {
        let caller = self.0.caller(&r)?;
        let tool = gate::tool_of(&r)?;
        let r = r.into_inner();
        let mode = |m: i32| convert::mode_from_pb(m).map_err(error_to_status);
        let target = Target {
            environment: r.environment,
            mode: mode(r.mode)?,
        };
        let action = match pb::ChangeAction::try_from(r.action) {
            Ok(pb::ChangeAction::Create) => Action::Create,
            Ok(pb::ChangeAction::Delete) => Action::Delete,
            Ok(pb::ChangeAction::Import) => Action::Import,
            Ok(pb::ChangeAction::Update) if r.to_mode != pb::Mode::Unspecified as i32 => {
                Action::ChangeMode {
                    to: mode(r.to_mode)?,
                }
            }
            Ok(pb::ChangeAction::Update) => Action::Update,
            _ => {
                return Err(Status::invalid_argument(
                    "`action`: name the change to check",
                ))
            }
        };
        self.0.gate.decide_at_plan(&Attempt {
            caller: &caller,
            how: &r.how,
            action,
            target,
            object: r.object,
            fields: Vec::new(),
            tool: tool.as_deref(),
        })?;
        Ok(Response::new(pb::AuthorizeResponse {
            caller: caller.who(),
        }))
    }

    async fn end_job(&self, r: Request<pb::EndJobRequest>) -> Reply<pb::EndJobResponse> {
        let caller = self.0.caller(&r)?;
        let sent = SignedEnding {
            ending: r.get_ref().ending.clone(),
            signature: r.get_ref().signature.clone(),
        };
        self.0.gate.end_job(&caller, &sent)?;
        Ok(Response::new(pb::EndJobResponse {}))
    }

    async fn who_am_i(&self, r: Request<pb::WhoAmIRequest>) -> Reply<pb::WhoAmIResponse> {
        let caller = self.0.caller(&r)?;
        let (name, role, may_change) = self.0.gate.who_am_i(&caller);
        Ok(Response::new(pb::WhoAmIResponse {
            name,
            role,
            may_change: may_change
                .into_iter()
                .map(|mode| convert::mode_to_pb(mode) as i32)
                .collect(),
        }))
    }

    async fn audit(&self, r: Request<pb::AuditRequest>) -> Reply<pb::AuditResponse> {
        self.0.caller(&r)?;
        let (records, verification) = self.0.gate.audit()?;
        Ok(Response::new(pb::AuditResponse {
            records: records
                .iter()
                .filter_map(|record| serde_json::to_string(record).ok())
                .collect(),
            problems: verification.problems,
            head_checked_against: verification.head_checked_against,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a read gave back (a digest) keeps the value; a new value replaces it.
    #[test]
    fn a_secret_re_applied_as_its_digest_keeps_its_value() {
        let prior = ApplicationSpec {
            id: "app-1".into(),
            environment_id: "env-1".into(),
            name: "web".into(),
            image: None,
            command: Some("web".into()),
            args: Vec::new(),
            working_dir: None,
            replicas: 1,
            ports: Vec::new(),
            variables: BTreeMap::new(),
            secrets: [("A".into(), "one".into()), ("B".into(), "two".into())].into(),
            healthcheck: None,
            resources: Default::default(),
        };
        let mut next = prior.clone();
        next.secrets = crate::secrets::digests("app-1", &prior.secrets);
        next.secrets.insert("B".into(), "changed".into());
        next.secrets
            .insert("C".into(), crate::secrets::digest("app-1", "A", "one"));
        let kept = keep_unchanged_secrets(&prior, next);
        assert_eq!(kept.secrets["A"], "one");
        assert_eq!(kept.secrets["B"], "changed");
        // A digest of another key's value is not that key's: it stays as sent.
        assert!(kept.secrets["C"].starts_with("sha256:"));
    }
}
