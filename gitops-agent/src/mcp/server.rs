//! The MCP server (rmcp's [`ServerHandler`]) and its two transports: streamable HTTP
//! at `/mcp` on the agent's own server, and stdio for `slipway-agent mcp`.
//!
//! Who is calling is always a platform token: over HTTP the request's
//! `Authorization: Bearer`, which [`authenticate`] checks with the platform (WhoAmI)
//! before anything else (no token, or one the platform does not know: 401); over
//! stdio the process's `SLIPWAY_TOKEN`, checked at start. The token goes on to the
//! platform with every call, so the platform decides and records; this server only
//! hides the write tools from a caller the platform lets change nothing.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, ErrorData,
    Implementation, ListToolsResult, PaginatedRequestParams, ServerCapabilities, ServerConfig,
};
use rmcp::service::RequestContext;
use rmcp::transport::streamable_http_server::session::never::NeverSessionManager;
use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{RoleServer, ServerHandler, ServiceExt as _};

use super::jobs;
use super::platform::{BearerToken, Platform, PlatformError, WhoAmI};
use super::tools::{self, ToolError};
use crate::state::AppState;

/// What the server tells an MCP client about itself.
const INSTRUCTIONS: &str = "Slipway deploys applications into environments (DEVELOPMENT, PREVIEW, \
STAGING, PRODUCTION). With these tools you may deploy, scale, restart and destroy applications \
in the modes the platform's policy opens to your token (list_environments says which). \
Production and staging change only through a merge: push a branch and open a pull request. \
Every change is recorded in the platform's audit log under your token's name.";

/// The MCP server for one transport.
#[derive(Clone)]
pub struct McpServer {
    platform: Arc<Platform>,
    /// stdio: the process's one token. HTTP: `None`, each request brings its own.
    token: Option<BearerToken>,
    /// The GitOps engine, for the job tools ([`jobs`]): at `/mcp` on `slipway-agent
    /// run`; `None` on stdio.
    engine: Option<Arc<AppState>>,
}

/// The caller of an HTTP request, as [`authenticate`] established it with the platform.
#[derive(Clone, Debug)]
pub struct HttpCaller {
    pub token: BearerToken,
    pub who: WhoAmI,
}

impl McpServer {
    /// The caller's token and, over HTTP, who the platform said it is.
    fn caller(
        &self,
        context: &RequestContext<RoleServer>,
    ) -> Result<(BearerToken, Option<WhoAmI>), ErrorData> {
        if let Some(token) = &self.token {
            return Ok((token.clone(), None));
        }
        context
            .extensions
            .get::<axum::http::request::Parts>()
            .and_then(|parts| parts.extensions.get::<HttpCaller>())
            .map(|c| (c.token.clone(), Some(c.who.clone())))
            .ok_or_else(|| {
                ErrorData::invalid_request("send `Authorization: Bearer <platform token>`", None)
            })
    }
}

impl McpServer {
    /// Who the platform says the caller is: as the HTTP middleware found, or asked now.
    async fn who(&self, token: &BearerToken, known: Option<WhoAmI>) -> Result<WhoAmI, ErrorData> {
        match known {
            Some(who) => Ok(who),
            None => self
                .platform
                .caller(token, None)
                .await
                .map_err(platform_error)?
                .who_am_i()
                .await
                .map_err(platform_error),
        }
    }

    /// The tools this transport serves: the platform's, and the engine's job tools
    /// where the engine is.
    fn catalogue(&self) -> Vec<rmcp::model::Tool> {
        let mut all = tools::catalogue();
        if self.engine.is_some() {
            all.extend(jobs::catalogue());
        }
        all
    }
}

fn platform_error(e: PlatformError) -> ErrorData {
    match e.code() {
        Some(tonic::Code::InvalidArgument) | Some(tonic::Code::NotFound) => {
            ErrorData::invalid_params(e.to_string(), None)
        }
        Some(tonic::Code::Unauthenticated) => ErrorData::invalid_request(
            format!("the platform does not accept this token: {e}"),
            None,
        ),
        _ => ErrorData::internal_error(e.to_string(), None),
    }
}

impl ServerHandler for McpServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("slipway", env!("CARGO_PKG_VERSION")))
            .with_instructions(INSTRUCTIONS)
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let (token, who) = self.caller(&context)?;
        let who = self.who(&token, who).await?;
        let writes = !who.may_change.is_empty();
        let tools = self
            .catalogue()
            .into_iter()
            .filter(|t| {
                let name = t.name.as_ref();
                writes || !(tools::WRITE_TOOLS.contains(&name) || jobs::WRITE_TOOLS.contains(&name))
            })
            .collect();
        Ok(ListToolsResult::with_all_items(tools))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let (token, who) = self.caller(&context)?;
        let known = self.catalogue().into_iter().any(|t| t.name == request.name);
        if !known {
            return Err(ErrorData::invalid_params(
                format!(
                    "`name`: no tool `{}`; `tools/list` shows the tools your token may use",
                    request.name
                ),
                None,
            ));
        }
        let mut caller = self
            .platform
            .caller(&token, Some(&request.name))
            .await
            .map_err(platform_error)?;
        if let Some(engine) = &self.engine {
            let who = self.who(&token, who).await?;
            let arguments =
                serde_json::Value::Object(request.arguments.clone().unwrap_or_default());
            if let Some(result) =
                jobs::call(&request.name, arguments, &mut caller, &who.name, engine).await
            {
                return match result {
                    Ok(value) => Ok(CallToolResult::structured(value).into()),
                    Err(e) => tool_failure(e).map(Into::into),
                };
            }
        }
        match tools::call(&request.name, request.arguments, &mut caller).await {
            Ok(value) => Ok(CallToolResult::structured(value).into()),
            Err(e) => tool_failure(e).map(Into::into),
        }
    }
}

/// A failed tool call: bad input is a JSON-RPC error naming the field (nothing was
/// changed); what the platform refused or could not do is a tool error the agent reads.
fn tool_failure(e: ToolError) -> Result<CallToolResult, ErrorData> {
    match e {
        ToolError::Input { .. } | ToolError::NotFound(_) | ToolError::UnknownTool(_) => {
            Err(ErrorData::invalid_params(e.to_string(), None))
        }
        ToolError::Platform(e) => match e.code() {
            Some(tonic::Code::PermissionDenied)
            | Some(tonic::Code::FailedPrecondition)
            | Some(tonic::Code::Aborted)
            | Some(tonic::Code::DeadlineExceeded) => {
                Ok(CallToolResult::error(vec![ContentBlock::text(format!(
                    "refused or failed by the platform: {e}"
                ))]))
            }
            _ => Err(platform_error(e)),
        },
    }
}

/// `/mcp`: rmcp's streamable HTTP service behind [`authenticate`]. Stateless, with
/// plain JSON answers: every request carries its caller, and no stream outlives it
/// (the agent's server caps how long a request may take).
pub fn http_service(
    platform: Arc<Platform>,
    allowed_hosts: Vec<String>,
    engine: Option<Arc<AppState>>,
) -> axum::Router {
    let service_platform = platform.clone();
    let service = StreamableHttpService::new(
        move || {
            Ok(McpServer {
                platform: service_platform.clone(),
                token: None,
                engine: engine.clone(),
            })
        },
        Arc::new(NeverSessionManager::default()),
        StreamableHttpServerConfig::default()
            .with_legacy_session_mode(false)
            .with_json_response(true)
            .with_sse_keep_alive(None)
            .with_allowed_hosts(allowed_hosts)
            .with_max_request_body_bytes(MAX_REQUEST_BYTES),
    );
    axum::Router::new()
        .fallback_service(service)
        .layer(axum::middleware::from_fn_with_state(platform, authenticate))
}

/// The largest MCP request accepted over HTTP. A deploy spec is a few KiB, but an
/// oversized argument should reach the tools' own bounds, which name the field; past
/// this the answer is 413.
const MAX_REQUEST_BYTES: usize = 16 * 1024 * 1024;

/// Lets a request through only with a token the platform knows; 401 otherwise.
async fn authenticate(
    State(platform): State<Arc<Platform>>,
    mut request: Request,
    next: Next,
) -> Response {
    let header = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let Some(token) = slipway_platform::authority::bearer(header).and_then(BearerToken::new) else {
        return unauthorized(
            "send `Authorization: Bearer <token>` with a platform token (`terraform-provider-slipway runtime token create --name NAME --role agent`)",
        );
    };
    let who = match platform.caller(&token, None).await {
        Ok(mut caller) => caller.who_am_i().await,
        Err(e) => Err(e),
    };
    match who {
        Ok(who) => {
            request.extensions_mut().insert(HttpCaller { token, who });
            next.run(request).await
        }
        Err(e) if e.code() == Some(tonic::Code::Unauthenticated) => {
            unauthorized(&format!("the platform refused the token: {e}"))
        }
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response(),
    }
}

fn unauthorized(message: &str) -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Bearer realm=\"slipway\"")],
        message.to_owned(),
    )
        .into_response()
}

/// Why `slipway-agent mcp` could not serve.
#[derive(Debug, thiserror::Error)]
pub enum StdioError {
    #[error("set SLIPWAY_TOKEN to a platform token (`terraform-provider-slipway runtime token create --name NAME --role agent` prints one): the MCP server acts only as a named identity, never as the local user")]
    NoToken,
    #[error("{0}")]
    Platform(#[from] PlatformError),
    #[error("the MCP session failed: {0}")]
    Session(String),
}

/// Serves MCP on stdin/stdout for the holder of `token` until the client hangs up.
pub async fn serve_stdio(platform: Arc<Platform>, token: Option<&str>) -> Result<(), StdioError> {
    let token = token
        .and_then(BearerToken::new)
        .ok_or(StdioError::NoToken)?;
    // Fails now, with the platform's words, rather than at the first tool call.
    let who = platform.caller(&token, None).await?.who_am_i().await?;
    tracing::info!(caller = %who.name, role = %who.role, "serving MCP on stdio");
    let server = McpServer {
        platform,
        token: Some(token),
        engine: None,
    };
    let running = server
        .serve(rmcp::transport::stdio())
        .await
        .map_err(|e| StdioError::Session(e.to_string()))?;
    running
        .waiting()
        .await
        .map_err(|e| StdioError::Session(e.to_string()))?;
    Ok(())
}
