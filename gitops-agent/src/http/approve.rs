//! `POST /api/v1/jobs/{id}/approve`: an approver's token approves a job waiting as
//! `awaiting_approval`. The decision (who may approve what) is [`crate::approvals`].

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse as _, Response};
use axum::Json;
use serde_json::json;

use super::{ApiCaller, ApiError, JobId};
use crate::approvals::{self, ApproveError, Approver, Via};
use crate::state::AppState;

/// `POST /api/v1/jobs/{id}/approve`: the caller's token names the approver.
pub async fn approve(
    State(state): State<Arc<AppState>>,
    caller: ApiCaller,
    JobId(id): JobId,
) -> Result<Response, ApiError> {
    let approver = Approver {
        name: caller.name,
        role: caller.role,
        login: None,
        via: Via::Api,
    };
    let (config, key, who) = (
        state.config.clone(),
        state.runner.key.clone(),
        approver.clone(),
    );
    let job = state
        .db
        .run(move |store| approvals::approve(store, &key, &config.approvals, id, &who))
        .await
        .map_err(|e| match e {
            ApproveError::NoSuchJob(_) => ApiError::NotFound(e.to_string()),
            ApproveError::NotWaiting { .. } => ApiError::Conflict(e.to_string()),
            ApproveError::Refused { .. } => ApiError::Forbidden(e.to_string()),
            ApproveError::Db(_) | ApproveError::Identities(_) => {
                ApiError::Unavailable(e.to_string())
            }
        })?;
    state.runner.notify.notify_waiters();
    tracing::info!(job = id, approver = %approver.name, "job approved through the API");
    Ok(Json(json!({
        "approved": id,
        "approver": approver.name,
        "commit": job.commit_sha,
    }))
    .into_response())
}
