//! One application in the daemon: its replicas, its proxies, and the rolling update that
//! moves it from one spec to the next.
//!
//! A rollout starts a new replica, waits until it is healthy (it joins the proxies by
//! itself then), takes an old replica out of the proxies, lets its connections drain and
//! stops it; then the next. So the endpoint always has a healthy replica behind it and
//! clients see no failed request. A first deploy (nothing to replace) starts every
//! replica at once. A change of `replicas` alone keeps the running replicas.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use super::health::CheckPolicy;
use super::home::{sanitize, Home};
use super::kept::{listener_key, output_key, Kept};
use super::logs::{Redactor, Rotation};
use super::proxy::{self, Backend, Proxy};
use super::store::{Store, StoredApplication};
use super::supervisor::{Adoptee, Replica, ReplicaConfig, ReplicaState, RunRecord};
use crate::{
    Application, ApplicationSpec, Environment, Phase, Protocol, RolloutCause, RuntimeError,
};

/// Tunables of the daemon that apply to every application.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Between SIGTERM and SIGKILL.
    pub grace: Duration,
    /// How long a replica taken out of the proxies may keep open connections.
    pub drain: Duration,
    pub rotation: Rotation,
    /// Replicas start in a Landlock sandbox that keeps them out of the home
    /// (`sandbox.rs`).
    pub sandbox: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            grace: Duration::from_secs(10),
            drain: Duration::from_secs(10),
            rotation: Rotation::default(),
            sandbox: true,
        }
    }
}

/// What every application shares: where things go, and the persisted state.
#[derive(Debug)]
pub struct Ctx {
    pub home: Home,
    pub settings: Settings,
    pub store: tokio::sync::Mutex<Store>,
    /// What the watchdog keeps across a daemon crash (nothing without a watchdog).
    pub kept: Arc<Kept>,
}

/// A replica that crashes this many times before it was ever healthy fails the rollout
/// at once, instead of at the deadline.
const CRASHES_BEFORE_FAILING: u32 = 3;

/// How many log files of replicas that stopped (replaced by rollouts) stay on disk.
const OLD_LOGS_KEPT: usize = 10;

/// How many last log lines an error message carries.
const LOG_LINES_IN_ERRORS: usize = 15;

#[derive(Debug)]
pub struct AppRuntime {
    pub id: String,
    /// Serialises applies and deletes of this application; held for a whole rollout.
    op: tokio::sync::Mutex<()>,
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    stored: StoredApplication,
    environment_name: String,
    replicas: Vec<Arc<Replica>>,
    proxies: BTreeMap<String, Arc<Proxy>>,
    rolling: bool,
    /// Why the last rollout failed (redacted), until the next apply.
    failure: Option<String>,
    next_index: u32,
    /// Set by [`AppRuntime::shut_down`]: no replica starts any more (a rollout still
    /// running then fails instead of leaving processes behind).
    closed: bool,
}

fn lock(inner: &Mutex<Inner>) -> std::sync::MutexGuard<'_, Inner> {
    // A panic while holding this lock would be a bug; the data stays usable.
    inner
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The variables and secrets of a replica, before its ports: the environment's, then
/// the application's (which win).
fn base_env(env: &Environment, spec: &ApplicationSpec) -> BTreeMap<String, String> {
    let mut vars = BTreeMap::new();
    vars.extend(env.spec.variables.clone());
    vars.extend(env.spec.secrets.clone());
    vars.extend(spec.variables.clone());
    vars.extend(spec.secrets.clone());
    vars.insert("SLIPWAY_ENVIRONMENT".into(), env.spec.name.clone());
    vars.insert("SLIPWAY_APPLICATION".into(), spec.name.clone());
    vars
}

fn redactor(env: &Environment, spec: &ApplicationSpec) -> Redactor {
    Redactor::new(
        env.spec
            .secrets
            .values()
            .chain(spec.secrets.values())
            .map(String::as_str),
        1,
    )
}

/// Identifies what a replica runs, so a scale-only change keeps running replicas, and a
/// daemon restarted after a crash (or a newer one) adopts only replicas that run what
/// the spec says: a SHA-256 of it, the same in every build.
fn template(env: &Environment, spec: &ApplicationSpec) -> u64 {
    use sha2::Digest as _;
    let what = serde_json::to_string(&(
        &spec.command,
        &spec.args,
        &spec.working_dir,
        base_env(env, spec),
        &spec.ports,
        &spec.healthcheck,
    ))
    .unwrap_or_default();
    let digest = sha2::Sha256::digest(what.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first)
}

/// The name of a port's variable: `PORT_` and the name in upper case, other characters
/// than letters and digits as `_`.
pub fn port_variable(name: &str) -> String {
    let upper: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    format!("PORT_{upper}")
}

/// `arg` with `$PORT`, `${PORT}`, `$PORT_<NAME>` and `${PORT_<NAME>}` replaced by the
/// replica's ports (`ports`: variable name to number), so a program that takes its port
/// as an argument needs no shell. Nothing else is expanded: any other `$` stays as
/// written, so arguments meant for a shell (`sh -c 'echo $$'`) keep working.
pub fn expand_ports(arg: &str, ports: &BTreeMap<String, String>) -> String {
    let is_name = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut out = String::with_capacity(arg.len());
    let mut rest = arg;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        let (name, len) = match after.strip_prefix('{') {
            Some(braced) => match braced.find('}') {
                Some(end) => (&braced[..end], end + 2),
                None => ("", 0),
            },
            None => {
                let end = after.find(|c| !is_name(c)).unwrap_or(after.len());
                (&after[..end], end)
            }
        };
        match ports.get(name) {
            Some(value) if len > 0 => {
                out.push_str(value);
                rest = &after[len..];
            }
            _ => {
                out.push('$');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

fn free_port(protocol: Protocol) -> Result<u16, RuntimeError> {
    let port = match protocol {
        Protocol::Tcp => {
            std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).and_then(|l| l.local_addr())
        }
        Protocol::Udp => {
            std::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).and_then(|s| s.local_addr())
        }
    };
    port.map(|a| a.port())
        .map_err(|e| RuntimeError::Other(format!("cannot allocate a port for a replica: {e}")))
}

impl AppRuntime {
    pub fn new(stored: StoredApplication, environment_name: String) -> Arc<AppRuntime> {
        Arc::new(AppRuntime {
            id: stored.spec.id.clone(),
            op: tokio::sync::Mutex::new(()),
            inner: Mutex::new(Inner {
                stored,
                environment_name,
                replicas: Vec::new(),
                proxies: BTreeMap::new(),
                rolling: false,
                failure: None,
                next_index: 0,
                closed: false,
            }),
        })
    }

    pub fn stored(&self) -> StoredApplication {
        lock(&self.inner).stored.clone()
    }

    /// Reads the stored spec in place. Lookups by name walk every application, and
    /// cloning each one's spec (variables, secret digests, ports) on the way made a
    /// lookup among 200 applications cost 0.1 ms more for the last one than the first.
    pub fn with_spec<T>(&self, read: impl FnOnce(&crate::ApplicationSpec) -> T) -> T {
        read(&lock(&self.inner).stored.spec)
    }

    pub fn set_environment_name(&self, name: &str) {
        lock(&self.inner).environment_name = name.to_string();
    }

    pub fn environment_name(&self) -> String {
        lock(&self.inner).environment_name.clone()
    }

    /// Brings the application back after a daemon start: proxies on the stored stable
    /// ports (the very sockets, when the watchdog kept them), the live replicas an
    /// earlier daemon left (`found`: this application's records) adopted when they run
    /// the current spec and their output was kept, and the missing replicas started (in
    /// the background: nobody waits for them). Returns the records it did not adopt,
    /// whose processes the caller stops.
    pub async fn restore(
        &self,
        ctx: &Ctx,
        env: &Environment,
        found: Vec<RunRecord>,
    ) -> Result<Vec<RunRecord>, RuntimeError> {
        let _op = self.op.lock().await;
        self.ensure_proxies(ctx).await?;
        let (spec, desired) = {
            let inner = lock(&self.inner);
            (
                inner.stored.spec.clone(),
                inner.stored.spec.replicas as usize,
            )
        };
        let template = template(env, &spec);
        let mut leftovers = Vec::new();
        let mut adopted = 0;
        for record in found {
            let same_ports = record.ports.len() == spec.ports.len()
                && spec
                    .ports
                    .iter()
                    .all(|p| record.ports.contains_key(&p.name));
            if adopted >= desired || record.template != template || !same_ports {
                leftovers.push(record);
                continue;
            }
            let out = ctx
                .kept
                .take(&output_key(&self.id, &record.replica_id, "stdout"));
            let err = ctx
                .kept
                .take(&output_key(&self.id, &record.replica_id, "stderr"));
            let (Some(stdout), Some(stderr)) = (out, err) else {
                leftovers.push(record);
                continue;
            };
            tracing::info!(app = %self.id, replica = %record.replica_id, pid = record.pid,
                "adopting a replica that outlived the previous daemon");
            self.start_replica(
                ctx,
                env,
                template,
                Some(Adoptee {
                    record,
                    stdout,
                    stderr,
                }),
            )?;
            adopted += 1;
        }
        for _ in adopted..desired {
            self.start_replica(ctx, env, template, None)?;
        }
        Ok(leftovers)
    }

    /// Moves the application to `spec` (already validated) by a rolling update, and
    /// waits until every replica of it is healthy, or the rollout fails, or `deadline`.
    pub async fn apply(
        &self,
        ctx: &Ctx,
        spec: ApplicationSpec,
        change: crate::ChangeRecord,
        env: &Environment,
        deadline: Instant,
    ) -> Result<(), RuntimeError> {
        let _op = self.op.lock().await;
        {
            let mut inner = lock(&self.inner);
            if inner.closed {
                return Err(RuntimeError::Unavailable(format!(
                    "application `{}` was deleted or the daemon is stopping",
                    spec.name
                )));
            }
            inner.stored.spec = spec;
            inner.stored.change = change;
            inner.stored.generation += 1;
            inner.next_index = 0;
            inner.environment_name = env.spec.name.clone();
            inner.rolling = true;
            inner.failure = None;
        }
        let result = match self.ensure_proxies(ctx).await {
            Ok(()) => self.roll(ctx, env, deadline).await,
            Err(e) => Err(e),
        };
        let mut inner = lock(&self.inner);
        inner.rolling = false;
        if let Err(e) = &result {
            inner.failure = Some(e.to_string());
        }
        result
    }

    /// Binds a proxy for every public port (at its stable port, allocated once), closes
    /// proxies of ports that are no longer public, and saves the stable ports.
    async fn ensure_proxies(&self, ctx: &Ctx) -> Result<(), RuntimeError> {
        let (spec, mut stable, existing) = {
            let inner = lock(&self.inner);
            (
                inner.stored.spec.clone(),
                inner.stored.stable_ports.clone(),
                inner.proxies.keys().cloned().collect::<Vec<_>>(),
            )
        };
        let public: Vec<&str> = spec
            .ports
            .iter()
            .filter(|p| p.public)
            .map(|p| p.name.as_str())
            .collect();
        let mut bound = BTreeMap::new();
        for name in &public {
            if existing.iter().any(|e| e == name) {
                continue;
            }
            let wanted = stable.get(*name).copied().unwrap_or(0);
            let key = listener_key(&self.id, name);
            let proxy = match kept_listener(ctx, &key, wanted) {
                Some(proxy) => proxy,
                None => {
                    let listener = match Proxy::listen(wanted).await {
                        Ok(l) => l,
                        Err(e) if wanted != 0 => {
                            tracing::warn!(app = %self.id, port = wanted, error = %e,
                                "the stable port is taken; allocating a new one");
                            Proxy::listen(0).await.map_err(|e| {
                                RuntimeError::Other(format!("cannot listen for port `{name}`: {e}"))
                            })?
                        }
                        Err(e) => {
                            return Err(RuntimeError::Other(format!(
                                "cannot listen for port `{name}` of application `{}`: {e}",
                                spec.name
                            )))
                        }
                    };
                    let kept = ctx.kept.keep(key, listener.as_fd());
                    Proxy::serve(listener, Some(kept)).map_err(|e| {
                        RuntimeError::Other(format!("cannot listen for port `{name}`: {e}"))
                    })?
                }
            };
            stable.insert(name.to_string(), proxy.port());
            bound.insert(name.to_string(), Arc::new(proxy));
        }
        stable.retain(|name, _| public.contains(&name.as_str()));
        let stored = {
            let mut inner = lock(&self.inner);
            // Existing replicas serve a newly public port too, if they have it.
            for (name, proxy) in &bound {
                for replica in &inner.replicas {
                    if let Some(port) = replica.config.ports.get(name) {
                        proxy.add(Backend::new(
                            replica.config.id.clone(),
                            SocketAddr::from((Ipv4Addr::LOCALHOST, *port)),
                            replica.health.clone(),
                        ));
                    }
                }
            }
            inner.proxies.extend(bound);
            inner
                .proxies
                .retain(|name, _| public.contains(&name.as_str()));
            inner.stored.stable_ports = stable;
            inner.stored.clone()
        };
        persist(ctx, stored).await
    }

    /// Starts a replica of the current spec, or adopts `adoptee` as one (its id,
    /// generation and ports are the adoptee's).
    fn start_replica(
        &self,
        ctx: &Ctx,
        env: &Environment,
        template: u64,
        adoptee: Option<Adoptee>,
    ) -> Result<Arc<Replica>, RuntimeError> {
        let mut inner = lock(&self.inner);
        if inner.closed {
            return Err(RuntimeError::Unavailable(
                "the application was deleted or the daemon is stopping".into(),
            ));
        }
        let spec = inner.stored.spec.clone();
        let (id, generation) = match &adoptee {
            Some(a) => {
                let index = a.record.replica_id.rsplit_once('-').and_then(|(g, i)| {
                    (g == inner.stored.generation.to_string()).then(|| i.parse::<u32>().ok())?
                });
                if let Some(index) = index {
                    inner.next_index = inner.next_index.max(index + 1);
                }
                (a.record.replica_id.clone(), a.record.generation)
            }
            None => {
                let id = format!("{}-{}", inner.stored.generation, inner.next_index);
                inner.next_index += 1;
                (id, inner.stored.generation)
            }
        };
        let mut ports = BTreeMap::new();
        let mut declared = Vec::new();
        let mut port_vars = BTreeMap::new();
        for (i, port) in spec.ports.iter().enumerate() {
            let actual = match adoptee
                .as_ref()
                .and_then(|a| a.record.ports.get(&port.name))
            {
                Some(adopted) => *adopted,
                None => free_port(port.protocol)?,
            };
            ports.insert(port.name.clone(), actual);
            declared.push((port.port, actual));
            port_vars.insert(port_variable(&port.name), actual.to_string());
            if i == 0 {
                port_vars.insert("PORT".into(), actual.to_string());
            }
        }
        let args = spec
            .args
            .iter()
            .map(|a| expand_ports(a, &port_vars))
            .collect();
        let mut vars = base_env(env, &spec);
        vars.extend(port_vars);
        vars.insert("SLIPWAY_REPLICA".into(), id.clone());
        let first = spec.ports.first().and_then(|p| ports.get(&p.name)).copied();
        let check = CheckPolicy::resolve(spec.healthcheck.as_ref(), &declared, first);
        // Never the platform's home: a directory of the application's own.
        let working_dir = match &spec.working_dir {
            Some(dir) => PathBuf::from(dir),
            None => {
                let dir = ctx.home.app_work_dir(&self.id);
                slipway_platform::store::create_private_dir(&dir).map_err(|e| {
                    RuntimeError::Other(format!(
                        "cannot create the application's working directory {}: {e}",
                        dir.display()
                    ))
                })?;
                dir
            }
        };
        let config = ReplicaConfig {
            id: id.clone(),
            app_id: self.id.clone(),
            generation,
            template,
            program: spec.command.clone().unwrap_or_default(),
            args,
            working_dir,
            env: vars,
            ports: ports.clone(),
            check,
            grace: ctx.settings.grace,
            log_path: ctx
                .home
                .app_logs_dir(&self.id)
                .join(format!("{}.log", sanitize(&id))),
            rotation: ctx.settings.rotation,
            redactor: Arc::new(redactor(env, &spec)),
            run_dir: ctx.home.run_dir(),
            kept: ctx.kept.clone(),
            sandbox_home: ctx.settings.sandbox.then(|| ctx.home.root().to_path_buf()),
        };
        let replica = match adoptee {
            Some(adoptee) => Replica::adopt(config, adoptee),
            None => Replica::start(config),
        };
        for (name, proxy) in &inner.proxies {
            if let Some(port) = ports.get(name) {
                proxy.add(Backend::new(
                    id.clone(),
                    SocketAddr::from((Ipv4Addr::LOCALHOST, *port)),
                    replica.health.clone(),
                ));
            }
        }
        inner.replicas.push(replica.clone());
        Ok(replica)
    }

    async fn roll(
        &self,
        ctx: &Ctx,
        env: &Environment,
        deadline: Instant,
    ) -> Result<(), RuntimeError> {
        let (spec, current) = {
            let inner = lock(&self.inner);
            (inner.stored.spec.clone(), inner.replicas.clone())
        };
        let template = template(env, &spec);
        let desired = spec.replicas as usize;
        let (mut keep, mut old): (Vec<_>, Vec<_>) = current
            .into_iter()
            .partition(|r| r.config.template == template);
        // Surplus replicas of the current template go first, unhealthy ones before
        // healthy ones.
        keep.sort_by_key(|r| !r.health.is_healthy());
        while keep.len() > desired {
            if let Some(r) = keep.pop() {
                old.push(r);
            }
        }
        // Old replicas are replaced unhealthy first, so a healthy one serves longest.
        old.sort_by_key(|r| r.health.is_healthy());
        old.reverse();
        let missing = desired - keep.len();
        let batch = if old.is_empty() { missing.max(1) } else { 1 };
        let mut started = 0;
        while started < missing {
            let n = batch.min(missing - started);
            let mut fresh = Vec::with_capacity(n);
            for _ in 0..n {
                fresh.push(self.start_replica(ctx, env, template, None)?);
            }
            let mut failure = None;
            for replica in &fresh {
                if let Err(e) = wait_healthy(replica, deadline).await {
                    failure = Some(RuntimeError::rollout(
                        e.cause,
                        self.rollout_error(env, &spec, replica, &e.why),
                    ));
                    break;
                }
            }
            if let Some(error) = failure {
                // The replicas that did not make it stop; the old ones keep serving.
                for replica in fresh
                    .iter()
                    .filter(|r| r.status().state != ReplicaState::Healthy)
                {
                    self.retire(ctx, replica).await;
                }
                return Err(error);
            }
            started += n;
            for _ in 0..n {
                if let Some(replica) = old.pop() {
                    self.retire(ctx, &replica).await;
                }
            }
        }
        while let Some(replica) = old.pop() {
            self.retire(ctx, &replica).await;
        }
        let running: Vec<PathBuf> = self
            .replicas()
            .iter()
            .map(|r| r.config.log_path.clone())
            .collect();
        super::logs::prune(&ctx.home.app_logs_dir(&self.id), &running, OLD_LOGS_KEPT);
        Ok(())
    }

    fn rollout_error(
        &self,
        env: &Environment,
        spec: &ApplicationSpec,
        replica: &Replica,
        why: &str,
    ) -> String {
        let mut message = format!(
            "application `{}` in environment `{}`: replica {} did not become healthy: {why}",
            spec.name, env.spec.name, replica.config.id
        );
        let lines = replica.recent_logs(LOG_LINES_IN_ERRORS);
        if lines.is_empty() {
            message.push_str("\nThe replica wrote no log lines.");
        } else {
            message.push_str(&format!(
                "\nLast log lines of replica {} ({}):",
                replica.config.id,
                replica.config.log_path.display()
            ));
            for line in lines {
                message.push_str("\n  ");
                message.push_str(&line);
            }
        }
        replica.config.redactor.redact(&message).into_owned()
    }

    /// Takes a replica out of the proxies, lets its connections drain, stops it.
    async fn retire(&self, ctx: &Ctx, replica: &Arc<Replica>) {
        let proxies: Vec<Arc<Proxy>> = lock(&self.inner).proxies.values().cloned().collect();
        let mut removed = Vec::new();
        for proxy in &proxies {
            if let Some(backend) = proxy.remove(&replica.config.id) {
                removed.push(backend);
            }
        }
        for backend in &removed {
            proxy::drain(backend, ctx.settings.drain).await;
        }
        replica.stop().await;
        lock(&self.inner)
            .replicas
            .retain(|r| !Arc::ptr_eq(r, replica));
    }

    /// Closes the proxies and stops every replica (gracefully, all at once); no replica
    /// starts after this, so a rollout still running fails at once. A delete
    /// (`wait_for_rollout`) then waits for that rollout to end, so nothing it did is
    /// left behind; the daemon's shutdown does not wait.
    pub async fn shut_down(&self, wait_for_rollout: bool) {
        self.stop_everything().await;
        if wait_for_rollout {
            let _op = self.op.lock().await;
            self.stop_everything().await;
        }
    }

    async fn stop_everything(&self) {
        let replicas = {
            let mut inner = lock(&self.inner);
            inner.proxies.clear();
            inner.closed = true;
            std::mem::take(&mut inner.replicas)
        };
        let mut stops = tokio::task::JoinSet::new();
        for replica in replicas {
            stops.spawn(async move { replica.stop().await });
        }
        while stops.join_next().await.is_some() {}
    }

    /// The application as the runtime has it.
    pub fn application(&self, env: &Environment) -> Application {
        let inner = lock(&self.inner);
        let spec = inner.stored.spec.clone();
        let template = template(env, &spec);
        let ready = inner
            .replicas
            .iter()
            .filter(|r| r.config.template == template && r.health.is_healthy())
            .count() as u32;
        let phase = if inner.rolling {
            Phase::Progressing
        } else if inner.failure.is_some() {
            Phase::Failed
        } else if spec.replicas == 0 {
            Phase::Stopped
        } else if ready >= spec.replicas {
            Phase::Running
        } else {
            Phase::Progressing
        };
        let endpoints = inner
            .proxies
            .iter()
            .map(|(name, p)| (name.clone(), format!("http://127.0.0.1:{}", p.port())))
            .collect();
        Application {
            spec,
            change: inner.stored.change.clone(),
            phase,
            ready_replicas: ready,
            endpoints,
            message: inner.failure.clone(),
        }
    }

    pub fn generation(&self) -> u64 {
        lock(&self.inner).stored.generation
    }

    pub fn replicas(&self) -> Vec<Arc<Replica>> {
        lock(&self.inner).replicas.clone()
    }
}

/// The listening socket the watchdog kept for `key`, serving again, when it is still on
/// the stable port `wanted`.
fn kept_listener(ctx: &Ctx, key: &str, wanted: u16) -> Option<Proxy> {
    let (fd, kept) = ctx.kept.take(key)?;
    let listener = std::net::TcpListener::from(fd);
    let port = listener.local_addr().ok()?.port();
    if port != wanted {
        return None;
    }
    listener.set_nonblocking(true).ok()?;
    let listener = tokio::net::TcpListener::from_std(listener).ok()?;
    Proxy::serve(listener, Some(kept)).ok()
}

async fn persist(ctx: &Ctx, stored: StoredApplication) -> Result<(), RuntimeError> {
    let mut store = ctx.store.lock().await;
    store
        .state
        .applications
        .insert(stored.spec.id.clone(), stored);
    store.save().map_err(|e| RuntimeError::Other(e.to_string()))
}

/// Waits until a replica is healthy. `Err` says why not, in a sentence.
/// Why a replica did not become healthy: what to tell the user, and whose fault it is.
struct NotHealthy {
    cause: RolloutCause,
    why: String,
}

impl NotHealthy {
    fn of(cause: RolloutCause, why: impl Into<String>) -> NotHealthy {
        NotHealthy {
            cause,
            why: why.into(),
        }
    }
}

async fn wait_healthy(replica: &Replica, deadline: Instant) -> Result<(), NotHealthy> {
    let mut status = replica.subscribe();
    let started = Instant::now();
    loop {
        {
            let s = status.borrow_and_update();
            if s.state == ReplicaState::Healthy {
                return Ok(());
            }
            if s.spawn_failures > 0 {
                return Err(NotHealthy::of(
                    RolloutCause::Program,
                    s.last_error
                        .clone()
                        .unwrap_or_else(|| "it could not be started".into()),
                ));
            }
            if s.exits_before_healthy >= CRASHES_BEFORE_FAILING {
                return Err(NotHealthy::of(
                    RolloutCause::Program,
                    format!(
                        "it exited {} times before it was ever healthy; the last time {}",
                        s.exits_before_healthy,
                        s.last_error
                            .as_deref()
                            .map(|e| e.trim_start_matches("the process "))
                            .unwrap_or("without a reason")
                    ),
                ));
            }
            if s.state == ReplicaState::Stopped {
                return Err(NotHealthy::of(RolloutCause::Other, "it was stopped"));
            }
        }
        match tokio::time::timeout_at(deadline, status.changed()).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return Err(NotHealthy::of(RolloutCause::Other, "it was stopped")),
            Err(_) => {
                let s = status.borrow();
                let waited = started.elapsed().as_secs();
                return Err(NotHealthy::of(
                    RolloutCause::Health,
                    match &s.last_error {
                        Some(e) => format!("not healthy within {waited}s: {e}"),
                        None => format!("not healthy within {waited}s: no health check passed yet"),
                    },
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_variables_are_upper_case_identifiers() {
        assert_eq!(port_variable("http"), "PORT_HTTP");
        assert_eq!(port_variable("admin-api"), "PORT_ADMIN_API");
    }

    #[test]
    fn port_references_in_args_are_replaced_and_nothing_else() {
        let ports: BTreeMap<String, String> = [
            ("PORT".to_owned(), "4100".to_owned()),
            ("PORT_HTTP".to_owned(), "4100".to_owned()),
            ("PORT_ADMIN".to_owned(), "4200".to_owned()),
        ]
        .into();
        for (arg, expanded) in [
            ("$PORT", "4100"),
            ("--port=${PORT}", "--port=4100"),
            ("-listen=:$PORT_ADMIN", "-listen=:4200"),
            ("${PORT_HTTP}0", "41000"),
            ("$PORT/x $PORT_HTTP", "4100/x 4100"),
            (
                "$PORTS $PORT_OTHER ${HOME} $$ $",
                "$PORTS $PORT_OTHER ${HOME} $$ $",
            ),
            ("${PORT", "${PORT"),
            ("no dollar", "no dollar"),
        ] {
            assert_eq!(expand_ports(arg, &ports), expanded, "{arg}");
        }
        assert_eq!(expand_ports("$PORT", &BTreeMap::new()), "$PORT");
    }
}
