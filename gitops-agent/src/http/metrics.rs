//! `GET /metrics`: the agent's metrics ([`crate::metrics`]) in the format the client
//! asks for with `Accept`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};

use super::ApiError;
use crate::metrics::{text_format, wants_openmetrics};
use crate::state::AppState;

/// `GET /metrics`.
pub async fn scrape(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let openmetrics = wants_openmetrics(headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()));
    let metrics = state.metrics.clone();
    let text = state
        .db
        .read(move |tx| metrics.render(tx))
        .await
        .map_err(|e| ApiError::Unavailable(format!("metrics: {e}")))?;
    Ok(if openmetrics {
        (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response()
    } else {
        (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            text_format(&text),
        )
            .into_response()
    })
}
