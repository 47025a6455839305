//! The HTTP API: `POST /api/v1/deploy` (the manual trigger over HTTP) and
//! `GET /api/v1/jobs/{id}/log` (a job's Terraform output), both behind a bearer token
//! ([`ApiCaller`]); `GET /healthz` (alive, with queue counts) and `GET /readyz`
//! (taking work).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;
use slipway_platform::Role;
use slipway_provenance::Trigger;

use super::{ApiCaller, ApiError, JobId};
use crate::deploy::{DeployError, DeployRequest};
use crate::queue::IntakeOutcome;
use crate::state::AppState;

/// `POST /api/v1/deploy`.
///
/// A deploy re-applies the tracked branch to every root it names, production
/// included, so only admins may ask for one; everyone else changes things through a
/// pull request.
pub async fn deploy(
    State(state): State<Arc<AppState>>,
    caller: ApiCaller,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    if caller.role != Role::Admin {
        return Err(ApiError::Forbidden(format!(
            "{} ({}) may not deploy: a deploy re-applies the tracked branch, production \
             included, so it needs an admin token. Changes come through a merge: open a \
             pull request",
            caller.name, caller.role
        )));
    }
    let mut request: DeployRequest = serde_json::from_slice(&body).map_err(|e| {
        ApiError::BadRequest(format!(
            "request body: {e}; expected {{\"repository\": \"...\", \"commit\": \"<sha>\"?, \"roots\": [..]?}}"
        ))
    })?;
    if request.actor.is_some() {
        return Err(ApiError::BadRequest(format!(
            "actor: not accepted over the API: the audit log names the token's identity \
             (here `{}`); remove the field",
            caller.name
        )));
    }
    request.actor = Some(caller.name.clone());
    let config = state.config.clone();
    let git_token = match state.config.repository(&request.repository) {
        Some(repo) => state.runner.git_credentials(&repo.url).await,
        None => None,
    };
    let jobs = tokio::task::spawn_blocking(move || {
        crate::deploy::resolve(&config, &request, Trigger::Api, git_token.as_ref())
    })
    .await?
    .map_err(|e| match e {
        DeployError::Invalid(message) => ApiError::BadRequest(message),
        // The remote is the configuration's, not the caller's: still the request
        // cannot go on, and the message says which remote and why.
        DeployError::Remote(e) => ApiError::BadRequest(e.to_string()),
    })?;
    let commit = jobs.commit_sha.clone();
    match state.writer.submit(crate::queue::Intake::Jobs(jobs)).await {
        Ok(IntakeOutcome::Enqueued(ids)) => {
            tracing::info!(?ids, commit = %commit, who = %caller.name, "deploy requested through the API");
            Ok((
                StatusCode::ACCEPTED,
                Json(json!({"jobs": ids, "commit": commit})),
            )
                .into_response())
        }
        Ok(other) => Ok((
            StatusCode::OK,
            Json(json!({"result": format!("{other:?}")})),
        )
            .into_response()),
        Err(e) => Err(ApiError::Unavailable(e.to_string())),
    }
}

/// `GET /api/v1/jobs/{id}/log`: the job's Terraform output (secrets already redacted
/// when it was written), as plain text.
pub async fn job_log(
    State(state): State<Arc<AppState>>,
    _caller: ApiCaller,
    JobId(id): JobId,
) -> Result<Response, ApiError> {
    let path = crate::work_dirs::output_log(&state.config, id);
    match tokio::fs::read(&path).await {
        Ok(bytes) => {
            Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], bytes).into_response())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(ApiError::NotFound(format!(
            "job {id} has no log: it does not exist, or it has not run Terraform yet"
        ))),
        Err(e) => Err(ApiError::Internal(format!(
            "cannot read the log of job {id}: {e}"
        ))),
    }
}

/// `GET /readyz`: 200 while the agent takes new work; 503 once it is shutting down or
/// when its database cannot be used.
pub async fn ready(State(state): State<Arc<AppState>>) -> Response {
    if state.runner.stopping.load(Ordering::SeqCst) {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"ready": false, "reason": "shutting down"})),
        )
            .into_response();
    }
    let checked = state.db.read(|tx| tx.ping()).await;
    match checked {
        Ok(()) => Json(json!({"ready": true})).into_response(),
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"ready": false, "reason": "database unavailable"})),
        )
            .into_response(),
    }
}

/// `GET /healthz`: queue counts, so operators and tests can see progress.
pub async fn health(State(state): State<Arc<AppState>>) -> Response {
    match state.db.read(|tx| tx.job_counts()).await {
        Ok(counts) => Json(json!({
            "status": "ok", "queued": counts.queued, "running": counts.running,
            "awaiting_approval": counts.awaiting_approval, "done": counts.done
        }))
        .into_response(),
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "database unavailable"})),
        )
            .into_response(),
    }
}
