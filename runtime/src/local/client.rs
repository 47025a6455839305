//! [`LocalRuntime`]: the provider's side of the platform, a gRPC client of the local
//! runtime's daemon over its Unix socket (which it starts when none answers), or of a
//! platform at an endpoint, or of one whose backend is Kubernetes; `Info` says which
//! runtime the platform runs, and so whose rules a plan checks.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use super::convert;
use super::home::Home;
use super::proto as pb;
use super::proto::local_runtime_client::LocalRuntimeClient;
use super::version;
use crate::{
    Application, ApplicationSpec, ChangeRecord, Environment, EnvironmentSpec, PlanProblem,
    PlannedApplication, Runtime, RuntimeError, RuntimeKind,
};

/// How long a freshly started daemon may take to answer.
const SPAWN_WAIT: Duration = Duration::from_secs(20);

/// The longest Unix socket path the kernel takes (`sun_path` is 108 bytes with its NUL).
const MAX_SOCKET_PATH: usize = 107;

/// A named token for the platform (`slw_...`), when the caller has one.
pub const ENV_TOKEN: &str = "SLIPWAY_TOKEN";

/// A file holding this job's credential, which slipway-agent writes (mode 0600) for
/// the job's Terraform runs; the credential itself is never in an environment
/// variable that every process Terraform starts would inherit.
pub const ENV_JOB_CREDENTIAL_FILE: &str = "SLIPWAY_JOB_CREDENTIAL_FILE";

/// The platform's TCP endpoint (`https://host:port`), for a team's shared platform:
/// when set, the provider and the CLI call it instead of a local daemon.
pub const ENV_ENDPOINT: &str = "SLIPWAY_ENDPOINT";

/// A PEM file with the CA that signed the endpoint's certificate, when it is not one
/// the system trusts.
pub const ENV_CA_FILE: &str = "SLIPWAY_CA_FILE";

/// What the daemon must never inherit from the process that starts it: it would keep
/// them for its whole life.
const NOT_FOR_THE_DAEMON: [&str; 2] = [ENV_TOKEN, ENV_JOB_CREDENTIAL_FILE];

/// How to reach the platform, and who this process is to it: from the provider block
/// or the environment ([`PlatformAccess::from_env`] for the CLI).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlatformAccess {
    /// A team's platform over TLS; `None`: the local daemon of the home.
    pub endpoint: Option<String>,
    pub ca_file: Option<PathBuf>,
    /// slipway-agent's job credential, which wins over a token.
    pub job_credential_file: Option<PathBuf>,
    pub token: Option<crate::Sensitive>,
}

impl PlatformAccess {
    pub fn from_env() -> PlatformAccess {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        PlatformAccess {
            endpoint: var(ENV_ENDPOINT),
            ca_file: var(ENV_CA_FILE).map(PathBuf::from),
            job_credential_file: var(ENV_JOB_CREDENTIAL_FILE).map(PathBuf::from),
            token: var(ENV_TOKEN).map(crate::Sensitive),
        }
    }
}

/// Adds the caller's bearer value to every call.
#[derive(Clone)]
pub struct Bearer(Option<tonic::metadata::AsciiMetadataValue>);

impl Bearer {
    /// The job credential (from its file) or the named token `access` names; none
    /// means "the local user" to the embedded platform.
    pub fn of(access: &PlatformAccess) -> Result<Bearer, RuntimeError> {
        let value = match (&access.job_credential_file, &access.token) {
            (Some(file), _) => Some(std::fs::read_to_string(file).map_err(|e| {
                RuntimeError::Unauthenticated(format!(
                    "cannot read the job credential file {} ({ENV_JOB_CREDENTIAL_FILE}): {e}",
                    file.display()
                ))
            })?),
            (None, Some(token)) => Some(token.0.clone()),
            (None, None) => None,
        };
        let value = value
            .map(|v| {
                let mut header: tonic::metadata::AsciiMetadataValue =
                    format!("Bearer {}", v.trim()).parse().map_err(|_| {
                        RuntimeError::Unauthenticated(format!(
                            "the token ({ENV_TOKEN} or {ENV_JOB_CREDENTIAL_FILE}) holds characters a token never has"
                        ))
                    })?;
                header.set_sensitive(true);
                Ok::<_, RuntimeError>(header)
            })
            .transpose()?;
        Ok(Bearer(value))
    }
}

impl std::fmt::Debug for Bearer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Bearer(<redacted>)")
    }
}

impl tonic::service::Interceptor for Bearer {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

type Client = LocalRuntimeClient<InterceptedService<Channel, Bearer>>;

/// The local runtime, as the provider's resources see it.
#[derive(Debug, Clone)]
pub struct LocalRuntime {
    client: Client,
    home: Home,
    /// The platform runs on another machine (reached at an endpoint): the rules that
    /// look at this machine (does the command exist here?) are its to check, at apply.
    remote: bool,
    /// The runtime behind the platform (its `Info`).
    backend: RuntimeKind,
}

fn unavailable(home: &Home, e: impl std::fmt::Display) -> RuntimeError {
    RuntimeError::Unavailable(format!(
        "cannot reach the local runtime daemon at {}: {e}",
        home.socket().display()
    ))
}

impl LocalRuntime {
    /// Connects as the environment says ([`PlatformAccess::from_env`]): for the CLI.
    pub async fn connect(home: &Home) -> Result<LocalRuntime, RuntimeError> {
        Self::connect_as(home, &PlatformAccess::from_env()).await
    }

    /// Connects to the platform at `access.endpoint` when there is one, else to the
    /// daemon serving `home`, if one answers. Does not start one.
    pub async fn connect_as(
        home: &Home,
        access: &PlatformAccess,
    ) -> Result<LocalRuntime, RuntimeError> {
        if let Some(endpoint) = &access.endpoint {
            return Self::connect_endpoint(home, endpoint, access).await;
        }
        let socket = home.socket();
        if socket.as_os_str().len() > MAX_SOCKET_PATH {
            return Err(RuntimeError::Invalid(format!(
                "the local runtime's socket path {} is longer than {MAX_SOCKET_PATH} bytes; set a shorter home directory (SLIPWAY_HOME or the provider's `home`)",
                socket.display()
            )));
        }
        let channel = slipway_proto::connect_unix(socket.clone())
            .await
            .map_err(|e| unavailable(home, error_chain(&e)))?;
        Self::greet(home, channel, access, |m| unavailable(home, m)).await
    }

    /// The client over `channel`, once the platform answered `Info` for this caller.
    /// A refusal (no or a bad token) is the platform's answer, not "unreachable".
    async fn greet(
        home: &Home,
        channel: Channel,
        access: &PlatformAccess,
        unreachable: impl FnOnce(&str) -> RuntimeError,
    ) -> Result<LocalRuntime, RuntimeError> {
        let mut client = LocalRuntimeClient::with_interceptor(channel, Bearer::of(access)?)
            .max_decoding_message_size(64 * 1024 * 1024);
        let info = client
            .info(pb::InfoRequest {})
            .await
            .map_err(|e| match e.code() {
                tonic::Code::Unauthenticated | tonic::Code::PermissionDenied => {
                    convert::error_from_status(e)
                }
                _ => unreachable(e.message()),
            })?
            .into_inner();
        Ok(LocalRuntime {
            client,
            home: home.clone(),
            remote: false,
            backend: backend_of(&info),
        })
    }

    /// Connects to a platform over TCP with TLS. There is no socket peer to vouch for
    /// the caller there: a token (`SLIPWAY_TOKEN`) or a job credential is needed.
    async fn connect_endpoint(
        home: &Home,
        endpoint: &str,
        access: &PlatformAccess,
    ) -> Result<LocalRuntime, RuntimeError> {
        let unreachable = |e: &dyn std::fmt::Display| {
            RuntimeError::Unavailable(format!(
                "cannot reach the platform at {endpoint} ({ENV_ENDPOINT}): {e}"
            ))
        };
        if !endpoint.starts_with("https://") {
            return Err(RuntimeError::Invalid(format!(
                "{ENV_ENDPOINT} is {endpoint:?}: the platform is reached over TLS only; write it as https://host:port"
            )));
        }
        let mut tls = tonic::transport::ClientTlsConfig::new().with_enabled_roots();
        if let Some(ca) = &access.ca_file {
            let pem = std::fs::read(ca).map_err(|e| {
                RuntimeError::Invalid(format!(
                    "cannot read the CA file {} ({ENV_CA_FILE}): {e}",
                    ca.display()
                ))
            })?;
            tls = tls.ca_certificate(tonic::transport::Certificate::from_pem(pem));
        }
        let channel = tonic::transport::Endpoint::from_shared(endpoint.to_owned())
            .map_err(|e| RuntimeError::Invalid(format!("{ENV_ENDPOINT} is {endpoint:?}: {e}")))?
            .tls_config(tls)
            .map_err(|e| unreachable(&error_chain(&e)))?
            .connect()
            .await
            .map_err(|e| unreachable(&error_chain(&e)))?;
        let runtime = Self::greet(home, channel, access, |m| unreachable(&m)).await?;
        Ok(LocalRuntime {
            remote: true,
            ..runtime
        })
    }

    /// Connects to the daemon, starting it from this very program when none answers:
    /// the provider binary doubles as the daemon (see [`super::run_from_args`]).
    pub async fn connect_or_spawn(home: &Home) -> Result<LocalRuntime, RuntimeError> {
        Self::connect_or_spawn_as(home, &PlatformAccess::from_env()).await
    }

    /// Like [`LocalRuntime::connect_or_spawn`], reaching the platform as `access` says.
    pub async fn connect_or_spawn_as(
        home: &Home,
        access: &PlatformAccess,
    ) -> Result<LocalRuntime, RuntimeError> {
        let program = std::env::current_exe().map_err(|e| {
            RuntimeError::Other(format!(
                "cannot find this program to start the local runtime daemon: {e}"
            ))
        })?;
        Self::spawn_as(home, &program, access).await
    }

    /// Like [`LocalRuntime::connect_or_spawn`], starting `program` (a binary that calls
    /// [`super::run_from_args`] first thing) as the daemon.
    pub async fn connect_or_spawn_with(
        home: &Home,
        program: &Path,
    ) -> Result<LocalRuntime, RuntimeError> {
        Self::spawn_as(home, program, &PlatformAccess::from_env()).await
    }

    async fn spawn_as(
        home: &Home,
        program: &Path,
        access: &PlatformAccess,
    ) -> Result<LocalRuntime, RuntimeError> {
        if access.endpoint.is_some() {
            // A team's platform: never start a local one instead.
            return Self::connect_as(home, access).await;
        }
        if let Ok(runtime) = Self::connect_as(home, access).await {
            match runtime.replaced_by(program).await? {
                None => return Ok(runtime),
                // Handed over: the watchdog starts `program`; wait for it below.
                Some(old) => wait_until_gone(old).await,
            }
        }
        home.create().map_err(|e| {
            RuntimeError::Other(format!(
                "cannot create the local runtime's home directory {}: {e}",
                home.root().display()
            ))
        })?;
        spawn_daemon(home, program)?;
        let deadline = tokio::time::Instant::now() + SPAWN_WAIT;
        let mut last;
        loop {
            // Two Terraform runs may start a daemon at once: one wins the lock and the
            // other exits; both clients end up on the winner's socket.
            match Self::connect_as(home, access).await {
                Ok(runtime) => return Ok(runtime),
                Err(e @ RuntimeError::Invalid(_)) => return Err(e),
                Err(e) => last = e.to_string(),
            }
            if tokio::time::Instant::now() >= deadline {
                let log = super::logs::tail_file(&home.daemon_log(), 10).join("\n  ");
                return Err(RuntimeError::Unavailable(format!(
                    "the local runtime daemon did not answer within {}s ({last}). Last lines of {}:\n  {log}",
                    SPAWN_WAIT.as_secs(),
                    home.daemon_log().display()
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn home(&self) -> &Home {
        &self.home
    }

    /// Hands the runtime over to `program` when the daemon is older than this provider,
    /// or another build of its version ([`version::fit`]): the daemon exits leaving its
    /// replicas running and its watchdog starts `program`, whose daemon adopts them.
    /// Returns the old daemon's pid when it handed over, `None` when it is kept.
    async fn replaced_by(&self, program: &Path) -> Result<Option<u32>, RuntimeError> {
        let info = self.info().await?;
        let own = version::build_id(program);
        if version::fit(&info.version, &info.build, version::VERSION, &own) == version::Fit::Keep {
            return Ok(None);
        }
        tracing::info!(pid = info.pid, version = %info.version, build = %info.build,
            "the local runtime daemon is another build; handing it over to this one");
        let handed = self
            .client
            .clone()
            .shutdown(pb::ShutdownRequest {
                hand_over_to: program.display().to_string(),
            })
            .await;
        match handed {
            Ok(_) => Ok(Some(info.pid)),
            Err(status) if status.code() == tonic::Code::FailedPrecondition => {
                Err(RuntimeError::Unavailable(format!(
                    "the local runtime daemon (pid {}, home {}) is version {} (build {}) and this provider {} (build {own}), and it runs without a watchdog (`runtime serve`): {}",
                    info.pid,
                    self.home.root().display(),
                    info.version,
                    info.build,
                    version::VERSION,
                    status.message()
                )))
            }
            Err(status) => Err(convert::error_from_status(status)),
        }
    }

    /// Every application with its replicas.
    pub async fn status(&self) -> Result<pb::StatusResponse, RuntimeError> {
        Ok(self
            .client
            .clone()
            .status(pb::StatusRequest {})
            .await
            .map_err(convert::error_from_status)?
            .into_inner())
    }

    /// The last `lines` lines of each replica log of an application (by id,
    /// `environment/name`, or unique name).
    pub async fn logs(
        &self,
        application: &str,
        lines: u32,
    ) -> Result<Vec<pb::LogLine>, RuntimeError> {
        Ok(self
            .client
            .clone()
            .logs(pb::LogsRequest {
                application: application.to_string(),
                lines,
            })
            .await
            .map_err(convert::error_from_status)?
            .into_inner()
            .lines)
    }

    /// The platform's audit log and what verifying it found.
    pub async fn audit(&self) -> Result<pb::AuditResponse, RuntimeError> {
        Ok(self
            .client
            .clone()
            .audit(pb::AuditRequest {})
            .await
            .map_err(convert::error_from_status)?
            .into_inner())
    }

    pub async fn info(&self) -> Result<pb::InfoResponse, RuntimeError> {
        Ok(self
            .client
            .clone()
            .info(pb::InfoRequest {})
            .await
            .map_err(convert::error_from_status)?
            .into_inner())
    }

    /// Asks the daemon to stop every replica and exit, and waits until it has (and its
    /// watchdog, which exits with it).
    pub async fn shutdown(&self, timeout: Duration) -> Result<(), RuntimeError> {
        let info = self.info().await?;
        let pid = info.pid;
        // The watchdog is the daemon's parent (a pid file alone could be stale).
        let watchdog = std::fs::read_to_string(self.home.watchdog_pid_file())
            .ok()
            .and_then(|text| text.trim().parse::<u32>().ok())
            .filter(|w| super::peer::parent_of(pid) == Some(*w));
        self.client
            .clone()
            .shutdown(pb::ShutdownRequest::default())
            .await
            .map_err(convert::error_from_status)?;
        let deadline = tokio::time::Instant::now() + timeout;
        while process_alive(pid) || watchdog.is_some_and(process_alive) {
            if tokio::time::Instant::now() >= deadline {
                return Err(RuntimeError::Other(format!(
                    "the local runtime daemon (pid {pid}) did not exit within {}s; see {}",
                    timeout.as_secs(),
                    self.home.daemon_log().display()
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(())
    }
}

/// The runtime a platform's `Info` names; a daemon of a build from before platforms
/// had other backends names none, and runs the local runtime.
pub fn backend_of(info: &pb::InfoResponse) -> RuntimeKind {
    match info.backend.as_str() {
        "kubernetes" => RuntimeKind::Kubernetes,
        "memory" => RuntimeKind::Memory,
        _ => RuntimeKind::Local,
    }
}

/// Waits (up to [`SPAWN_WAIT`]) until a daemon that is handing over has exited.
async fn wait_until_gone(pid: u32) {
    let deadline = tokio::time::Instant::now() + SPAWN_WAIT;
    while process_alive(pid) && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn process_alive(pid: u32) -> bool {
    // A zombie (exited, not yet reaped by a parent such as a test harness) is gone for
    // our purposes; /proc tells them apart where kill(0) cannot.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => i32::try_from(pid)
            .is_ok_and(|p| nix::sys::signal::kill(nix::unistd::Pid::from_raw(p), None).is_ok()),
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// Starts `program` as the daemon, detached: its own session (so neither Terraform's
/// exit nor a closed terminal stops it), stdin from /dev/null, output to `daemon.log`.
fn spawn_daemon(home: &Home, program: &Path) -> Result<(), RuntimeError> {
    use std::os::unix::process::CommandExt;
    let log_path: PathBuf = home.daemon_log();
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(|e| RuntimeError::Other(format!("cannot open {}: {e}", log_path.display())))?;
    let log2 = log
        .try_clone()
        .map_err(|e| RuntimeError::Other(format!("cannot open {}: {e}", log_path.display())))?;
    let mut command = std::process::Command::new(program);
    command
        .arg(super::DAEMON_ARG)
        .arg("--home")
        .arg(home.root())
        .current_dir(home.root())
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log2);
    for name in NOT_FOR_THE_DAEMON
        .iter()
        .chain(slipway_provenance::ENV_VARS.iter())
    {
        command.env_remove(name);
    }
    // SAFETY: setsid is async-signal-safe and touches no memory of the parent.
    unsafe {
        command.pre_exec(|| {
            nix::unistd::setsid()
                .map(drop)
                .map_err(std::io::Error::from)
        });
    }
    let mut child = command.spawn().map_err(|e| {
        RuntimeError::Other(format!(
            "cannot start the local runtime daemon `{} {}`: {e}",
            program.display(),
            super::DAEMON_ARG
        ))
    })?;
    // Reaps the daemon if it exits while this process lives (say, it lost the race
    // for the lock to another Terraform run's daemon).
    std::thread::spawn(move || {
        let _ = child.wait();
    });
    Ok(())
}

#[async_trait::async_trait]
impl Runtime for LocalRuntime {
    fn kind(&self) -> RuntimeKind {
        self.backend
    }

    /// The rules of the runtime behind the platform, which checks them again at apply.
    fn check_application(&self, planned: &PlannedApplication<'_>) -> Vec<PlanProblem> {
        use super::rules::{check_application, Checks};
        match self.backend {
            RuntimeKind::Kubernetes => crate::kubernetes::rules::check_application(planned),
            RuntimeKind::Memory => Vec::new(),
            // A remote platform checks the rest on its own machine when it applies.
            RuntimeKind::Local => check_application(
                planned,
                if self.remote {
                    Checks::SpecOnly
                } else {
                    Checks::SpecAndMachine
                },
            ),
        }
    }

    async fn authorize(
        &self,
        action: slipway_platform::Action,
        target: &slipway_platform::Target,
        object: &str,
    ) -> Result<(), RuntimeError> {
        use slipway_platform::Action;
        let (action, to_mode) = match action {
            Action::Read => return Ok(()),
            Action::Create => (pb::ChangeAction::Create, None),
            Action::Update => (pb::ChangeAction::Update, None),
            Action::Delete => (pb::ChangeAction::Delete, None),
            Action::Import => (pb::ChangeAction::Import, None),
            Action::ChangeMode { to } => (pb::ChangeAction::Update, Some(to)),
        };
        self.client
            .clone()
            .authorize(pb::AuthorizeRequest {
                environment: target.environment.clone(),
                mode: convert::mode_to_pb(target.mode) as i32,
                action: action as i32,
                to_mode: to_mode.map_or(pb::Mode::Unspecified as i32, |m| {
                    convert::mode_to_pb(m) as i32
                }),
                object: object.to_owned(),
                how: "terraform-plan".to_owned(),
            })
            .await
            .map_err(convert::error_from_status)?;
        Ok(())
    }

    async fn apply_environment(
        &self,
        spec: EnvironmentSpec,
        change: ChangeRecord,
    ) -> Result<Environment, RuntimeError> {
        let env = self
            .client
            .clone()
            .apply_environment(pb::ApplyEnvironmentRequest {
                spec: Some(convert::env_spec_to_pb(spec)),
                change: Some(convert::change_to_pb(change)),
            })
            .await
            .map_err(convert::error_from_status)?
            .into_inner();
        convert::env_from_pb(env)
    }

    async fn get_environment(&self, id: &str) -> Result<Option<Environment>, RuntimeError> {
        self.client
            .clone()
            .get_environment(pb::GetEnvironmentRequest { id: id.to_string() })
            .await
            .map_err(convert::error_from_status)?
            .into_inner()
            .environment
            .map(convert::env_from_pb)
            .transpose()
    }

    async fn list_environments(&self) -> Result<Vec<Environment>, RuntimeError> {
        self.client
            .clone()
            .list_environments(pb::ListEnvironmentsRequest {})
            .await
            .map_err(convert::error_from_status)?
            .into_inner()
            .environments
            .into_iter()
            .map(convert::env_from_pb)
            .collect()
    }

    async fn find_environment(&self, name: &str) -> Result<Option<Environment>, RuntimeError> {
        self.client
            .clone()
            .find_environment(pb::FindEnvironmentRequest {
                name: name.to_string(),
            })
            .await
            .map_err(convert::error_from_status)?
            .into_inner()
            .environment
            .map(convert::env_from_pb)
            .transpose()
    }

    async fn delete_environment(
        &self,
        id: &str,
        change: ChangeRecord,
        timeout: Duration,
    ) -> Result<(), RuntimeError> {
        self.client
            .clone()
            .delete_environment(pb::DeleteEnvironmentRequest {
                id: id.to_string(),
                change: Some(convert::change_to_pb(change)),
                timeout_ms: timeout.as_millis() as u64,
            })
            .await
            .map_err(convert::error_from_status)?;
        Ok(())
    }

    async fn apply_application(
        &self,
        spec: ApplicationSpec,
        change: ChangeRecord,
        timeout: Duration,
    ) -> Result<Application, RuntimeError> {
        let app = self
            .client
            .clone()
            .apply_application(pb::ApplyApplicationRequest {
                spec: Some(convert::app_spec_to_pb(spec)),
                change: Some(convert::change_to_pb(change)),
                timeout_ms: timeout.as_millis() as u64,
            })
            .await
            .map_err(convert::error_from_status)?
            .into_inner();
        convert::app_from_pb(app)
    }

    async fn get_application(&self, id: &str) -> Result<Option<Application>, RuntimeError> {
        self.client
            .clone()
            .get_application(pb::GetApplicationRequest { id: id.to_string() })
            .await
            .map_err(convert::error_from_status)?
            .into_inner()
            .application
            .map(convert::app_from_pb)
            .transpose()
    }

    async fn find_application(
        &self,
        environment_id: &str,
        name: &str,
    ) -> Result<Option<Application>, RuntimeError> {
        self.client
            .clone()
            .find_application(pb::FindApplicationRequest {
                environment_id: environment_id.to_string(),
                name: name.to_string(),
            })
            .await
            .map_err(convert::error_from_status)?
            .into_inner()
            .application
            .map(convert::app_from_pb)
            .transpose()
    }

    async fn delete_application(
        &self,
        id: &str,
        change: ChangeRecord,
        timeout: Duration,
    ) -> Result<(), RuntimeError> {
        self.client
            .clone()
            .delete_application(pb::DeleteApplicationRequest {
                id: id.to_string(),
                change: Some(convert::change_to_pb(change)),
                timeout_ms: timeout.as_millis() as u64,
            })
            .await
            .map_err(convert::error_from_status)?;
        Ok(())
    }
}
