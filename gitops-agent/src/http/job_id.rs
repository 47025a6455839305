//! [`JobId`]: the `{id}` of `/api/v1/jobs/{id}/...`, parsed once for every handler, so
//! a bad id gets the same answer everywhere.

use axum::extract::{FromRequestParts, Path};
use axum::http::request::Parts;

use super::ApiError;

/// A job id from the path. Take it after [`super::ApiCaller`], so a caller without a
/// token hears 401 before anything about the id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobId(pub i64);

impl<S: Send + Sync> FromRequestParts<S> for JobId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<JobId, ApiError> {
        let Path(id) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::BadRequest(format!("the job id in the path: {e}")))?;
        id.parse::<i64>().map(JobId).map_err(|_| {
            ApiError::BadRequest(format!(
                "job id `{id}` is not a number; job ids are in `slipway-agent audit list`"
            ))
        })
    }
}
