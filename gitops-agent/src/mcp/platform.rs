//! The platform as the MCP server reaches it: a gRPC client of its API
//! (`proto/slipway_runtime.proto`) that carries the MCP caller's own bearer token on
//! every call.
//!
//! The MCP server decides nothing: the platform authenticates the token, applies its
//! policy per mode and writes the audit record. So a [`Platform`] can only be used
//! through a [`Caller`], which holds a token: on the embedded platform's socket a call
//! without one would be taken for the local user (its admin), and that must never
//! happen on behalf of an AI agent.

use std::path::PathBuf;
use std::time::Duration;

use slipway_proto::runtime as pb;
use slipway_proto::runtime::local_runtime_client::LocalRuntimeClient;
use tokio::sync::Mutex;
use tonic::metadata::AsciiMetadataValue;
use tonic::transport::Channel;

/// Where the platform is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// The embedded platform: the local runtime daemon's socket in a Slipway home.
    Socket(PathBuf),
    /// A team's platform over TLS (`https://host:port`), with the CA that signed its
    /// certificate when the system does not trust it.
    Endpoint {
        url: String,
        ca_file: Option<PathBuf>,
    },
}

impl Target {
    /// `endpoint` when given, else the embedded platform of this machine's Slipway
    /// home (`SLIPWAY_HOME`, else the user's data directory), as the provider finds it.
    pub fn resolve(
        endpoint: Option<String>,
        ca_file: Option<PathBuf>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Target, PlatformError> {
        if let Some(url) = endpoint.filter(|e| !e.is_empty()) {
            if !url.starts_with("https://") {
                return Err(PlatformError::Invalid(format!(
                    "the platform endpoint is {url:?}: the platform is reached over TLS only; write it as https://host:port"
                )));
            }
            return Ok(Target::Endpoint { url, ca_file });
        }
        let home = slipway_platform::embedded::default_home(env)
            .map_err(|e| PlatformError::Invalid(e.to_string()))?;
        Ok(Target::Socket(slipway_platform::embedded::socket(&home)))
    }

    fn describe(&self) -> String {
        match self {
            Target::Socket(path) => format!("the embedded platform at {}", path.display()),
            Target::Endpoint { url, .. } => format!("the platform at {url}"),
        }
    }
}

/// Why a call to the platform did not give an answer. The platform's own refusals
/// keep their gRPC code, so the MCP server can tell a refusal from bad input.
#[derive(Debug, thiserror::Error)]
pub enum PlatformError {
    #[error("{0}")]
    Invalid(String),
    #[error(
        "cannot reach {target}: {message}. Start it (`terraform-provider-slipway runtime serve`, or any `terraform apply` with the Slipway provider) or point the MCP server at a running platform"
    )]
    Unreachable { target: String, message: String },
    /// The platform answered with an error status (UNAUTHENTICATED, PERMISSION_DENIED,
    /// NOT_FOUND, INVALID_ARGUMENT, ...); its message says why and what to do.
    #[error("{}", .0.message())]
    Status(tonic::Status),
}

impl PlatformError {
    /// The platform's gRPC code, when it answered.
    pub fn code(&self) -> Option<tonic::Code> {
        match self {
            PlatformError::Status(status) => Some(status.code()),
            _ => None,
        }
    }
}

impl From<tonic::Status> for PlatformError {
    fn from(status: tonic::Status) -> PlatformError {
        PlatformError::Status(status)
    }
}

/// One connection to the platform, shared by every caller (gRPC multiplexes calls on
/// it); made when first needed, so the agent starts whether or not the platform runs.
pub struct Platform {
    target: Target,
    channel: Mutex<Option<Channel>>,
}

/// How long a call may wait for a platform that does not answer.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

impl Platform {
    pub fn new(target: Target) -> Platform {
        Platform {
            target,
            channel: Mutex::new(None),
        }
    }

    pub fn target(&self) -> &Target {
        &self.target
    }

    /// The platform as the holder of `token` (a `slw_...` named token) sees it, for
    /// a call made through the MCP tool `tool` (recorded in the audit log, deciding
    /// nothing).
    pub async fn caller(
        &self,
        token: &BearerToken,
        tool: Option<&str>,
    ) -> Result<Caller, PlatformError> {
        let channel = self.channel().await?;
        let tool = tool
            .map(|t| {
                t.parse::<AsciiMetadataValue>()
                    .map_err(|_| PlatformError::Invalid(format!("tool name {t:?}")))
            })
            .transpose()?;
        Ok(Caller {
            client: LocalRuntimeClient::new(channel).max_decoding_message_size(64 * 1024 * 1024),
            bearer: token.header.clone(),
            tool,
        })
    }

    async fn channel(&self) -> Result<Channel, PlatformError> {
        let mut cached = self.channel.lock().await;
        if let Some(channel) = cached.as_ref() {
            return Ok(channel.clone());
        }
        let unreachable = |message: String| PlatformError::Unreachable {
            target: self.target.describe(),
            message,
        };
        let channel = match &self.target {
            Target::Socket(path) => {
                tokio::time::timeout(CONNECT_TIMEOUT, slipway_proto::connect_unix(path.clone()))
                    .await
                    .map_err(|_| unreachable("no answer in time".into()))?
                    .map_err(|e| unreachable(error_chain(&e)))?
            }
            Target::Endpoint { url, ca_file } => {
                let mut tls = tonic::transport::ClientTlsConfig::new().with_enabled_roots();
                if let Some(ca) = ca_file {
                    let pem = std::fs::read(ca).map_err(|e| {
                        PlatformError::Invalid(format!(
                            "cannot read the platform's CA file {}: {e}",
                            ca.display()
                        ))
                    })?;
                    tls = tls.ca_certificate(tonic::transport::Certificate::from_pem(pem));
                }
                tonic::transport::Endpoint::from_shared(url.clone())
                    .map_err(|e| PlatformError::Invalid(format!("endpoint {url:?}: {e}")))?
                    .connect_timeout(CONNECT_TIMEOUT)
                    .tls_config(tls)
                    .map_err(|e| unreachable(error_chain(&e)))?
                    .connect()
                    .await
                    .map_err(|e| unreachable(error_chain(&e)))?
            }
        };
        *cached = Some(channel.clone());
        Ok(channel)
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// A caller's bearer token as it goes on the wire; never printed.
#[derive(Clone)]
pub struct BearerToken {
    header: AsciiMetadataValue,
}

impl BearerToken {
    /// `token` as presented (`slw_...`); `None` when it cannot be a token at all.
    pub fn new(token: &str) -> Option<BearerToken> {
        let token = token.trim();
        if token.is_empty() {
            return None;
        }
        let mut header: AsciiMetadataValue = format!("Bearer {token}").parse().ok()?;
        header.set_sensitive(true);
        Some(BearerToken { header })
    }
}

impl std::fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BearerToken(<redacted>)")
    }
}

/// Who the platform says a token belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WhoAmI {
    pub name: String,
    pub role: String,
    /// The modes the platform's policy lets this caller change.
    pub may_change: Vec<slipway_platform::Mode>,
}

/// The platform's API for one caller: every request carries the caller's token.
pub struct Caller {
    client: LocalRuntimeClient<Channel>,
    bearer: AsciiMetadataValue,
    tool: Option<AsciiMetadataValue>,
}

impl Caller {
    fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        request
            .metadata_mut()
            .insert("authorization", self.bearer.clone());
        if let Some(tool) = &self.tool {
            request.metadata_mut().insert("slipway-tool", tool.clone());
        }
        request
    }

    pub async fn who_am_i(&mut self) -> Result<WhoAmI, PlatformError> {
        let request = self.request(pb::WhoAmIRequest {});
        let answer = self.client.who_am_i(request).await?.into_inner();
        Ok(WhoAmI {
            name: answer.name,
            role: answer.role,
            may_change: answer
                .may_change
                .into_iter()
                .filter_map(super::tools::mode_from_pb)
                .collect(),
        })
    }

    pub async fn environments(&mut self) -> Result<Vec<pb::Environment>, PlatformError> {
        let request = self.request(pb::ListEnvironmentsRequest {});
        Ok(self
            .client
            .list_environments(request)
            .await?
            .into_inner()
            .environments)
    }

    pub async fn status(&mut self) -> Result<pb::StatusResponse, PlatformError> {
        let request = self.request(pb::StatusRequest {});
        Ok(self.client.status(request).await?.into_inner())
    }

    pub async fn find_environment(
        &mut self,
        name: &str,
    ) -> Result<Option<pb::Environment>, PlatformError> {
        let request = self.request(pb::FindEnvironmentRequest { name: name.into() });
        Ok(self
            .client
            .find_environment(request)
            .await?
            .into_inner()
            .environment)
    }

    pub async fn apply_environment(
        &mut self,
        spec: pb::EnvironmentSpec,
    ) -> Result<pb::Environment, PlatformError> {
        let request = self.request(pb::ApplyEnvironmentRequest {
            spec: Some(spec),
            change: Some(change()),
        });
        Ok(self.client.apply_environment(request).await?.into_inner())
    }

    pub async fn delete_environment(&mut self, id: &str) -> Result<(), PlatformError> {
        let request = self.request(pb::DeleteEnvironmentRequest {
            id: id.into(),
            change: Some(change()),
            timeout_ms: APPLY_TIMEOUT_MS,
        });
        self.client.delete_environment(request).await?;
        Ok(())
    }

    pub async fn find_application(
        &mut self,
        environment_id: &str,
        name: &str,
    ) -> Result<Option<pb::Application>, PlatformError> {
        let request = self.request(pb::FindApplicationRequest {
            environment_id: environment_id.into(),
            name: name.into(),
        });
        Ok(self
            .client
            .find_application(request)
            .await?
            .into_inner()
            .application)
    }

    /// Creates or updates an application and waits for its rollout (the platform
    /// answers when it is healthy, failed, or the timeout passed).
    pub async fn apply_application(
        &mut self,
        spec: pb::ApplicationSpec,
    ) -> Result<pb::Application, PlatformError> {
        let request = self.request(pb::ApplyApplicationRequest {
            spec: Some(spec),
            change: Some(change()),
            timeout_ms: APPLY_TIMEOUT_MS,
        });
        Ok(self.client.apply_application(request).await?.into_inner())
    }

    pub async fn delete_application(&mut self, id: &str) -> Result<(), PlatformError> {
        let request = self.request(pb::DeleteApplicationRequest {
            id: id.into(),
            change: Some(change()),
            timeout_ms: APPLY_TIMEOUT_MS,
        });
        self.client.delete_application(request).await?;
        Ok(())
    }

    pub async fn logs(&mut self, id: &str, lines: u32) -> Result<Vec<pb::LogLine>, PlatformError> {
        let request = self.request(pb::LogsRequest {
            application: id.into(),
            lines,
        });
        Ok(self.client.logs(request).await?.into_inner().lines)
    }

    /// Whether the policy lets this caller make a change, without making it (a
    /// refusal is PERMISSION_DENIED, recorded in the audit log with how `mcp` and the
    /// tool): asked before the agent queues a job on the caller's behalf.
    pub async fn authorize(
        &mut self,
        environment: &str,
        mode: slipway_platform::Mode,
        action: pb::ChangeAction,
        object: String,
    ) -> Result<(), PlatformError> {
        let request = self.request(pb::AuthorizeRequest {
            environment: environment.into(),
            mode: super::tools::mode_to_pb(mode) as i32,
            action: action as i32,
            to_mode: pb::Mode::Unspecified as i32,
            object,
            how: "mcp".into(),
        });
        self.client.authorize(request).await?;
        Ok(())
    }

    /// The audit log's records (JSON), oldest first.
    pub async fn audit(&mut self) -> Result<Vec<String>, PlatformError> {
        let request = self.request(pb::AuditRequest {});
        Ok(self.client.audit(request).await?.into_inner().records)
    }
}

/// How long the platform may take to roll an application out before it answers: less
/// than the agent's HTTP request timeout (60 s), so an MCP client hears the platform's
/// "timed out" (the rollout goes on in the platform) rather than a cut connection.
pub const APPLY_TIMEOUT_MS: u64 = 50_000;

/// What a change says about where it came from: only the trigger, `mcp` (the audit
/// log's "how"); the platform stamps who from the token, whatever else is sent.
fn change() -> pb::ChangeRecord {
    pb::ChangeRecord {
        trigger: "mcp".into(),
        ..pb::ChangeRecord::default()
    }
}
