//! `POST /webhooks/github`: the handler. What a delivery means is decided by
//! [`crate::webhook`] (signature, payload, [`classify`]); this checks the headers in
//! order, stores what was decided, and answers only after the store committed.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;
use slipway_provenance::Trigger;

use super::ApiError;
use crate::approvals;
use crate::queue::{Delivery, Intake, IntakeOutcome, NewJobs};
use crate::state::AppState;
use crate::webhook::{classify, payload_json, signature_is_valid, Decision};

pub(crate) fn reply(status: StatusCode, body: serde_json::Value) -> Response {
    (status, Json(body)).into_response()
}

/// The axum handler; its time to answer goes to `slipway_webhook_duration_seconds`.
pub async fn receive(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let clock = std::time::Instant::now();
    let response = answer(&state, &headers, &body).await;
    state.metrics.webhook_answered(clock.elapsed());
    response
}

async fn answer(state: &AppState, headers: &HeaderMap, body: &Bytes) -> Response {
    let Some(secret) = state.webhook_secret.as_ref() else {
        return ApiError::NotFound("webhooks are disabled: set secrets.webhook_secret".into())
            .into_response();
    };
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if !signature_is_valid(secret, body, header("x-hub-signature-256")) {
        tracing::warn!(
            delivery = header("x-github-delivery").unwrap_or("-"),
            "webhook refused: missing or invalid X-Hub-Signature-256"
        );
        return ApiError::Unauthorized("missing or invalid X-Hub-Signature-256".into())
            .into_response();
    }
    let Some(delivery_id) = header("x-github-delivery").filter(|d| !d.is_empty() && d.len() <= 200)
    else {
        return ApiError::BadRequest("X-GitHub-Delivery header is required".into()).into_response();
    };
    let event = header("x-github-event").unwrap_or("").to_owned();
    let delivery = Delivery {
        id: delivery_id.to_owned(),
        event: event.clone(),
    };
    let payload = match payload_json(header("content-type"), body) {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(delivery = %delivery.id, event = %event, error = %e, "webhook body refused");
            return ApiError::UnsupportedMediaType(e.to_string()).into_response();
        }
    };
    let decision = match classify(&state.config, &event, &payload) {
        Ok(d) => d,
        Err(e) => {
            tracing::warn!(delivery = %delivery.id, event = %event, error = %e, "webhook payload does not parse");
            return ApiError::BadRequest(e.to_string()).into_response();
        }
    };
    let intake = match decision {
        Decision::Ping => {
            tracing::info!(delivery = %delivery.id, "webhook ping");
            return reply(StatusCode::OK, json!({"pong": true}));
        }
        Decision::Ignore(reason) => {
            tracing::info!(delivery = %delivery.id, event = %event, reason = %reason, "webhook ignored");
            Intake::Ignored {
                delivery: delivery.clone(),
                reason,
            }
        }
        Decision::Deploy {
            repository,
            branch,
            commit_sha,
            pull_request,
            actor,
            roots,
            authors,
            head_sha,
        } => {
            let mut jobs = NewJobs::merge(
                Some(delivery.clone()),
                repository,
                branch,
                commit_sha,
                Trigger::Webhook,
                pull_request,
                actor,
                roots,
            );
            jobs.authors = authors;
            jobs.head_sha = head_sha;
            Intake::Jobs(jobs)
        }
        Decision::Review(review) => return review_delivered(state, delivery, review).await,
        Decision::PullRequest(jobs) => Intake::Batch {
            delivery: delivery.clone(),
            jobs,
        },
    };
    match state.writer.submit(intake).await {
        Ok(IntakeOutcome::Enqueued(jobs)) => {
            tracing::info!(delivery = %delivery.id, event = %event, ?jobs, "webhook enqueued");
            reply(
                StatusCode::ACCEPTED,
                json!({"delivery": delivery.id, "jobs": jobs}),
            )
        }
        Ok(IntakeOutcome::Duplicate) => {
            tracing::info!(delivery = %delivery.id, "webhook redelivery: already stored, nothing to do");
            reply(
                StatusCode::OK,
                json!({"delivery": delivery.id, "duplicate": true}),
            )
        }
        Ok(IntakeOutcome::Recorded) => reply(
            StatusCode::OK,
            json!({"delivery": delivery.id, "ignored": true}),
        ),
        Err(e) => {
            tracing::error!(delivery = %delivery.id, error = %e, "could not store delivery");
            ApiError::Unavailable("could not store the delivery; GitHub may redeliver it".into())
                .into_response()
        }
    }
}

/// The webhook's answer to an approving review: stored (and applied to the waiting
/// merge jobs of its pull request) before it is acknowledged.
async fn review_delivered(
    state: &AppState,
    delivery: Delivery,
    review: approvals::Review,
) -> axum::response::Response {
    let (config, key, authority) = (
        state.config.clone(),
        state.runner.key.clone(),
        state.authority.clone(),
    );
    let (d, r) = (delivery.clone(), review.clone());
    let stored = state
        .db
        .run(move |store| {
            approvals::receive_review(store, &key, &config.approvals, authority.store(), &d, &r)
        })
        .await;
    match stored {
        Ok(approvals::ReviewOutcome::Duplicate) => reply(
            StatusCode::OK,
            json!({"delivery": delivery.id, "duplicate": true}),
        ),
        Ok(approvals::ReviewOutcome::Stored { approved }) => {
            tracing::info!(delivery = %delivery.id, pull_request = review.pull_request, reviewer = %review.login, ?approved, "approving review stored");
            if !approved.is_empty() {
                state.runner.notify.notify_waiters();
            }
            reply(
                StatusCode::ACCEPTED,
                json!({"delivery": delivery.id, "review": review.review_id, "approved": approved}),
            )
        }
        Err(e) => {
            tracing::error!(delivery = %delivery.id, error = %e, "could not store the review");
            ApiError::Unavailable("could not store the review; GitHub may redeliver it".into())
                .into_response()
        }
    }
}
