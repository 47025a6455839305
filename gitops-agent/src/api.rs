//! The HTTP API: `POST /api/v1/deploy` (the manual trigger over HTTP) and
//! `GET /api/v1/jobs/{id}/log` (a job's Terraform output), both behind a bearer token;
//! `GET /healthz` (alive, with queue counts) and `GET /readyz` (taking work).
//!
//! Who calls is an [`ApiCaller`], extracted from `Authorization: Bearer`: a named
//! identity of the platform (`slipway-agent token create`), or the configured
//! `secrets.api_token` (the identity `api-token`, an admin). The audit's "who" is that
//! name, never a field of the request. The configured token is compared by hashing
//! both sides and comparing the digests in constant time, so neither the token's
//! content nor its length leaks through timing; identities are looked up by digest.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};
use slipway_platform::authority::{bearer, AuthError};
use slipway_platform::{Caller, Role};
use slipway_provenance::Trigger;
use subtle::ConstantTimeEq;

use crate::agent::AppState;
use crate::config::{Config, Secret};
use crate::queue::{IntakeOutcome, NewJobs};

/// Whether `Authorization: Bearer <token>` matches.
pub fn token_is_valid(expected: &Secret, header: Option<&str>) -> bool {
    let Some(given) = header.and_then(|h| h.strip_prefix("Bearer ")) else {
        return false;
    };
    let a = Sha256::digest(given.trim().as_bytes());
    let b = Sha256::digest(expected.expose().as_bytes());
    a.ct_eq(&b).into()
}

/// A deploy request, from the API or the CLI.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeployRequest {
    /// The configured repository name.
    pub repository: String,
    /// Roots to deploy; all of the repository's when empty.
    #[serde(default)]
    pub roots: Vec<String>,
    /// The full commit SHA; the tracked branch's current tip when absent.
    pub commit: Option<String>,
    /// Who asked, for the audit log. Set by the CLI (the local user); over HTTP it
    /// is refused, because there who asked is the token's identity.
    pub actor: Option<String>,
}

/// Checks a deploy request against the configuration and resolves the commit, giving
/// jobs ready to store. Blocks (it may contact the git remote).
pub fn resolve(
    config: &Config,
    request: &DeployRequest,
    trigger: Trigger,
    git_token: Option<&Secret>,
) -> Result<NewJobs, String> {
    let repo = config.repository(&request.repository).ok_or_else(|| {
        format!(
            "repository: `{}` is not configured (configured: {})",
            request.repository,
            config
                .repositories
                .iter()
                .map(|r| r.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )
    })?;
    let roots = if request.roots.is_empty() {
        repo.roots.iter().map(|r| r.name.clone()).collect()
    } else {
        for name in &request.roots {
            if !repo.roots.iter().any(|r| &r.name == name) {
                return Err(format!(
                    "roots: `{name}` is not a root of {} (roots: {})",
                    repo.name,
                    repo.roots
                        .iter()
                        .map(|r| r.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
        }
        request.roots.clone()
    };
    let commit = match &request.commit {
        Some(c) => {
            if c.len() != 40 || !c.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(format!(
                    "commit: `{c}` is not a full 40-character commit SHA"
                ));
            }
            c.to_ascii_lowercase()
        }
        None => {
            crate::git::remote_tip(&repo.url, &repo.branch, git_token).map_err(|e| e.to_string())?
        }
    };
    let mut jobs = NewJobs::merge(
        None,
        repo.name.clone(),
        repo.branch.clone(),
        commit,
        trigger,
        None,
        request.actor.clone(),
        roots,
    );
    // Who asks for a deploy may not approve it.
    jobs.authors = request.actor.iter().cloned().collect();
    Ok(jobs)
}

/// The name the configured `secrets.api_token` acts under in the audit log.
pub const API_TOKEN_IDENTITY: &str = "api-token";

/// Who is calling the HTTP API. Handlers that take one are reached only with a valid
/// token; the rejection is the response that says what was wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiCaller {
    pub name: String,
    pub role: Role,
}

fn refusal(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({"error": message.into()}))).into_response()
}

impl FromRequestParts<Arc<AppState>> for ApiCaller {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<ApiCaller, Response> {
        let header = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        if let Some(token) = state.api_token.as_ref() {
            if token_is_valid(token, header) {
                return Ok(ApiCaller {
                    name: API_TOKEN_IDENTITY.to_owned(),
                    role: Role::Admin,
                });
            }
        }
        let presented = bearer(header).map(str::to_owned);
        let authority = state.authority.clone();
        let found = tokio::task::spawn_blocking(move || {
            authority.authenticate(presented.as_deref(), crate::db::now_ms())
        })
        .await;
        match found {
            Ok(Ok(Caller::Identity(identity))) => Ok(ApiCaller {
                name: identity.name,
                role: identity.role,
            }),
            Ok(Ok(Caller::Job(_))) => Err(refusal(
                StatusCode::FORBIDDEN,
                "a job credential works only for the job it was minted for, not on the agent's API",
            )),
            Ok(Err(AuthError::Store(e))) => {
                tracing::error!(error = %e, "identity lookup failed");
                Err(refusal(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the platform database is unavailable; try again",
                ))
            }
            Ok(Err(e)) => Err(refusal(StatusCode::UNAUTHORIZED, e.to_string())),
            Err(e) => Err(refusal(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())),
        }
    }
}

/// `POST /api/v1/deploy`.
///
/// A deploy re-applies the tracked branch to every root it names, production
/// included, so only admins may ask for one; everyone else changes things through a
/// pull request.
pub async fn deploy(
    State(state): State<Arc<AppState>>,
    caller: ApiCaller,
    body: axum::body::Bytes,
) -> Response {
    if caller.role != Role::Admin {
        return refusal(
            StatusCode::FORBIDDEN,
            format!(
                "{} ({}) may not deploy: a deploy re-applies the tracked branch, production \
                 included, so it needs an admin token. Changes come through a merge: open a \
                 pull request",
                caller.name, caller.role
            ),
        );
    }
    let mut request: DeployRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                Json(json!({"error": format!("request body: {e}; expected {{\"repository\": \"...\", \"commit\": \"<sha>\"?, \"roots\": [..]?}}")})),
            )
                .into_response()
        }
    };
    if request.actor.is_some() {
        return refusal(
            StatusCode::BAD_REQUEST,
            format!(
                "actor: not accepted over the API: the audit log names the token's identity \
                 (here `{}`); remove the field",
                caller.name
            ),
        );
    }
    request.actor = Some(caller.name.clone());
    let config = state.config.clone();
    let git_token = match state.config.repository(&request.repository) {
        Some(repo) => state.runner.git_credentials(&repo.url).await,
        None => None,
    };
    let resolved = tokio::task::spawn_blocking(move || {
        resolve(&config, &request, Trigger::Api, git_token.as_ref())
    })
    .await;
    let jobs = match resolved {
        Ok(Ok(jobs)) => jobs,
        Ok(Err(e)) => return (StatusCode::BAD_REQUEST, Json(json!({"error": e}))).into_response(),
        Err(e) => {
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                Json(json!({"error": e.to_string()})),
            )
                .into_response()
        }
    };
    let commit = jobs.commit_sha.clone();
    match state.writer.submit(crate::queue::Intake::Jobs(jobs)).await {
        Ok(IntakeOutcome::Enqueued(ids)) => {
            tracing::info!(?ids, commit = %commit, who = %caller.name, "deploy requested through the API");
            (
                StatusCode::ACCEPTED,
                Json(json!({"jobs": ids, "commit": commit})),
            )
                .into_response()
        }
        Ok(other) => (
            StatusCode::OK,
            Json(json!({"result": format!("{other:?}")})),
        )
            .into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"error": e}))).into_response(),
    }
}

/// `GET /api/v1/jobs/{id}/log`: the job's Terraform output (secrets already redacted
/// when it was written), as plain text.
pub async fn job_log(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    _caller: ApiCaller,
) -> Response {
    let Ok(id) = id.parse::<i64>() else {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": format!("job id `{id}` is not a number; job ids are in `slipway-agent audit list`")})),
        )
            .into_response();
    };
    let path = crate::runner::output_log(&state.config, id);
    match tokio::fs::read(&path).await {
        Ok(bytes) => (
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            bytes,
        )
            .into_response(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => (
            StatusCode::NOT_FOUND,
            Json(json!({"error": format!("job {id} has no log: it does not exist, or it has not run Terraform yet")})),
        )
            .into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(json!({"error": format!("cannot read the log of job {id}: {e}")})),
        )
            .into_response(),
    }
}

/// `GET /readyz`: 200 while the agent takes new work; 503 once it is shutting down or
/// when its database cannot be opened.
pub async fn ready(State(state): State<Arc<AppState>>) -> Response {
    if state.runner.stopping.load(Ordering::SeqCst) {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"ready": false, "reason": "shutting down"})),
        )
            .into_response();
    }
    let path = state.config.database_path();
    match tokio::task::spawn_blocking(move || crate::db::open(&path)).await {
        Ok(Ok(_)) => Json(json!({"ready": true})).into_response(),
        _ => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"ready": false, "reason": "database unavailable"})),
        )
            .into_response(),
    }
}

/// `GET /healthz`: queue counts, so operators and tests can see progress.
pub async fn health(State(state): State<Arc<AppState>>) -> Response {
    let path = state.config.database_path();
    let counts = tokio::task::spawn_blocking(move || {
        let conn = crate::db::open(&path)?;
        crate::queue::counts(&conn)
    })
    .await;
    match counts {
        Ok(Ok((queued, running, done))) => Json(json!({
            "status": "ok", "queued": queued, "running": running, "done": done
        }))
        .into_response(),
        _ => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "database unavailable"})),
        )
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_tokens_are_compared_exactly() {
        let t = Secret::new("s3cret-token");
        assert!(token_is_valid(&t, Some("Bearer s3cret-token")));
        assert!(!token_is_valid(&t, Some("Bearer s3cret-toke")));
        assert!(!token_is_valid(&t, Some("s3cret-token")));
        assert!(!token_is_valid(&t, None));
    }
}
