//! The platform's gRPC service (`proto/slipway_runtime.proto`): who is calling, may
//! they, the record, and then the change, on whichever [`Backend`] this platform owns.
//!
//! The same service fronts the local runtime's processes (the daemon, [`super::daemon`])
//! and a Kubernetes cluster (`runtime serve --backend kubernetes`): every caller and
//! every change goes through one [`Gate`] (identities, policy per mode, job credentials,
//! the audit log), whatever runs the applications. It serves on the home's socket, and
//! over TCP with TLS when `platform.toml` has `[listen]`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::net::UnixListener;
use tokio::sync::watch;
use tokio_stream::wrappers::UnixListenerStream;
use tokio_stream::StreamExt as _;
use tonic::{Request, Response, Status};

use slipway_platform::audit::Outcome;
use slipway_platform::job_ending::SignedEnding;
use slipway_platform::{Action, Target};

use super::backend::{Backend, Owned};
use super::convert::{self, error_to_status};
use super::daemon::{DaemonError, Ended};
use super::gate::{self, environment_action, Attempt, Gate};
use super::home::Home;
use super::kept::Kept;
use super::peer::PeerStream;
use super::proto as pb;
use super::proto::local_runtime_server::{LocalRuntime as LocalRuntimeApi, LocalRuntimeServer};
use crate::{ApplicationSpec, Environment, EnvironmentSpec, Runtime, RuntimeError};

/// A platform: its gate, the backend it owns, and its own life.
pub(super) struct Platform {
    pub(super) home: Home,
    pub(super) gate: Gate,
    pub(super) backend: Arc<dyn Backend>,
    /// What a watchdog keeps, to hand over to another build ([`Kept::none`] without one).
    pub(super) kept: Arc<Kept>,
    shutdown: watch::Sender<bool>,
    /// Set by a hand-over: stopping leaves the replicas running.
    handed_over: std::sync::atomic::AtomicBool,
    /// This platform's build ([`super::version::build_id`]).
    build: String,
    started_at: u64,
}

impl Platform {
    pub(super) fn new(
        home: Home,
        gate: Gate,
        backend: Arc<dyn Backend>,
        kept: Arc<Kept>,
    ) -> Platform {
        Platform {
            home,
            gate,
            backend,
            kept,
            shutdown: watch::channel(false).0,
            handed_over: std::sync::atomic::AtomicBool::new(false),
            build: super::version::build_id(std::path::Path::new("/proc/self/exe")),
            started_at: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
        }
    }

    /// Who sent `request` (see [`Gate::caller`]): a replica, adopted or not, is refused
    /// (its connection was judged when accepted, [`Gate::peer_of`]).
    fn caller<T>(&self, request: &Request<T>) -> Result<slipway_platform::Caller, Status> {
        self.gate.caller(request)
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
}

/// Takes `home` for this process, as the one platform that serves it: creates it, holds
/// an exclusive `flock` on `daemon.lock` for as long as the returned lock lives (the
/// kernel drops it when the process dies, so a crash never leaves a stale lock), and
/// writes the pid file.
pub(super) fn claim(home: &Home) -> Result<nix::fcntl::Flock<std::fs::File>, DaemonError> {
    use nix::fcntl::{Flock, FlockArg};
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
    let lock = Flock::lock(lock_file, FlockArg::LockExclusiveNonblock)
        .map_err(|_| DaemonError::AlreadyRunning(home.root().display().to_string()))?;
    std::fs::write(home.pid_file(), format!("{}\n", std::process::id()))
        .map_err(|e| setup("cannot write the pid file", &e))?;
    Ok(lock)
}

/// Runs a platform for `home` whose backend is `runtime`, a runtime only this platform
/// reaches (`runtime serve --backend kubernetes`: the cluster, with the platform's own
/// credentials), until it is told to stop.
pub async fn run_owning(home: Home, runtime: Arc<dyn Runtime>) -> Result<Ended, DaemonError> {
    let _lock = claim(&home)?;
    let gate = Gate::open(&home, &|name| std::env::var(name).ok(), None)
        .map_err(|e| DaemonError::Setup(format!("cannot open the platform: {e}")))?;
    let platform = Arc::new(Platform::new(
        home,
        gate,
        Arc::new(Owned(runtime)),
        Kept::none(),
    ));
    serve(platform, async {}).await
}

/// Serves `platform` on the home's socket (and its TCP endpoint, with `[listen]`) until
/// the Shutdown call, SIGTERM or SIGINT; then, unless it handed over, runs `stop`
/// (the local runtime stops its replicas) and removes the socket and pid file.
pub(super) async fn serve(
    platform: Arc<Platform>,
    stop: impl std::future::Future<Output = ()>,
) -> Result<Ended, DaemonError> {
    use std::os::unix::fs::PermissionsExt as _;
    let setup = |what: &str, e: &dyn std::fmt::Display| DaemonError::Setup(format!("{what}: {e}"));
    let home = platform.home.clone();
    let socket = home.socket();
    let _ = std::fs::remove_file(&socket);
    let listener = UnixListener::bind(&socket)
        .map_err(|e| setup(&format!("cannot listen on {}", socket.display()), &e))?;
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| setup("cannot restrict the socket to the user", &e))?;
    tracing::info!(socket = %socket.display(), pid = std::process::id(),
        backend = platform.backend.kind().name(), "platform ready");

    let mut shutdown_rx = platform.shutdown.subscribe();
    let mut server_stop = shutdown_rx.clone();
    // Each connection's peer is judged once, as soon as it is accepted (while the
    // connecting process is most likely still there to be looked at; one that is gone
    // is refused), and every call on it uses that verdict.
    let judge = platform.clone();
    let incoming = UnixListenerStream::new(listener).map(move |accepted| {
        accepted.map(|stream| {
            let peer = judge.gate.peer_of(&stream, &judge.backend.replica_pids());
            PeerStream::new(stream, peer)
        })
    });
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(LocalRuntimeServer::new(Service(platform.clone())))
            .serve_with_incoming_shutdown(incoming, async move {
                let _ = server_stop.wait_for(|stop| *stop).await;
            }),
    );

    // The team's endpoint: TCP with TLS, the same service; every caller there must
    // bring a token or a credential (no socket peer to vouch for it).
    let tcp_server = match platform.gate.listen.clone() {
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
                .add_service(LocalRuntimeServer::new(Service(platform.clone())));
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
    let _ = platform.shutdown.send(true);
    let ended = if platform
        .handed_over
        .load(std::sync::atomic::Ordering::SeqCst)
    {
        // The next daemon binds the socket again and adopts the replicas.
        tracing::info!("handed over: the replicas keep running for the next daemon");
        Ended::HandedOver
    } else {
        tracing::info!("stopping every replica");
        stop.await;
        let _ = std::fs::remove_file(&socket);
        let _ = std::fs::remove_file(home.pid_file());
        Ended::Stopped
    };
    // Calls still in flight end now that their replicas are gone; do not wait long.
    let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
    if let Some(tcp_server) = tcp_server {
        let _ = tokio::time::timeout(Duration::from_secs(1), tcp_server).await;
    }
    tracing::info!("platform stopped");
    Ok(ended)
}

#[derive(Clone)]
struct Service(Arc<Platform>);

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

    async fn environment_target(&self, id: &str) -> Result<Option<(Target, String)>, Status> {
        Ok(self.environment(id).await?.map(|env| {
            (
                Target {
                    environment: env.spec.name.clone(),
                    mode: env.spec.mode,
                },
                env.spec.name,
            )
        }))
    }

    async fn environment(&self, id: &str) -> Result<Option<Environment>, Status> {
        self.0
            .backend
            .environment(id)
            .await
            .map_err(error_to_status)
    }

    async fn application(&self, id: &str) -> Result<Option<crate::Application>, Status> {
        self.0
            .backend
            .application(id)
            .await
            .map_err(error_to_status)
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
        let prior = self.environment(&spec.id).await?;
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
            .change(attempt, self.0.backend.apply_environment(spec, change))
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
        let env = self.environment(&r.into_inner().id).await?;
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
            .backend
            .find_environment(&name)
            .await
            .map_err(error_to_status)?;
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
        let mut environments = self
            .0
            .backend
            .list_environments()
            .await
            .map_err(error_to_status)?;
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
        let r = r.into_inner();
        let requested = convert::change_from_pb(r.change);
        let Some((target, name)) = self.environment_target(&id).await? else {
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
        let change = self.0.gate.stamp(&caller, &requested);
        self.change(
            attempt,
            self.0
                .backend
                .delete_environment(&id, change, ms(r.timeout_ms)),
        )
        .await?;
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
        let Some((target, env_name)) = self.environment_target(&spec.environment_id).await? else {
            // No environment: nothing to decide on; the daemon says what is missing.
            let change = self.0.gate.stamp(&caller, &requested);
            return Err(error_to_status(
                self.0
                    .backend
                    .apply_application(spec, change, ms(r.timeout_ms))
                    .await
                    .err()
                    .unwrap_or_else(|| RuntimeError::Other("the environment vanished".into())),
            ));
        };
        let prior = self.application(&spec.id).await?.map(|a| a.spec);
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
                self.0
                    .backend
                    .apply_application(spec, change, ms(r.timeout_ms)),
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
        let app = self.application(&r.into_inner().id).await?;
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
        let app = self
            .0
            .backend
            .find_application(&r.environment_id, &r.name)
            .await
            .map_err(error_to_status)?;
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
        let r = r.into_inner();
        let requested = convert::change_from_pb(r.change);
        let Some(stored) = self.application(&id).await? else {
            return Ok(Response::new(pb::DeleteResponse {}));
        };
        let Some((target, env_name)) = self.environment_target(&stored.spec.environment_id).await?
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
        let change = self.0.gate.stamp(&caller, &requested);
        self.change(
            attempt,
            self.0
                .backend
                .delete_application(&id, change, ms(r.timeout_ms)),
        )
        .await?;
        Ok(Response::new(pb::DeleteResponse {}))
    }

    async fn status(&self, r: Request<pb::StatusRequest>) -> Reply<pb::StatusResponse> {
        self.0.caller(&r)?;
        let status = self.0.backend.status().await.map_err(error_to_status)?;
        Ok(Response::new(status))
    }

    async fn logs(&self, r: Request<pb::LogsRequest>) -> Reply<pb::LogsResponse> {
        self.0.caller(&r)?;
        let r = r.into_inner();
        let lines = self
            .0
            .backend
            .logs(&r.application, r.lines)
            .await
            .map_err(error_to_status)?;
        Ok(Response::new(pb::LogsResponse { lines }))
    }

    /// Every client's first call ([`super::client`]'s greeting), so it is where a
    /// client's round of reads begins ([`Backend::begin_reads`]): a Terraform run never
    /// reads the cluster as it was before the run started.
    async fn info(&self, r: Request<pb::InfoRequest>) -> Reply<pb::InfoResponse> {
        self.0.caller(&r)?;
        self.0.backend.begin_reads().await;
        Ok(Response::new(pb::InfoResponse {
            pid: std::process::id(),
            version: super::version::VERSION.to_string(),
            home: self.0.home.root().display().to_string(),
            started_at_unix: self.0.started_at,
            build: self.0.build.clone(),
            backend: self.0.backend.kind().name().to_owned(),
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
            if !self.0.kept.hand_over(&program) {
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
