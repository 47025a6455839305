//! [`ApiCaller`]: who is calling the HTTP API, extracted from `Authorization: Bearer`.
//!
//! A named identity of the platform (`slipway-agent token create`), or the configured
//! `secrets.api_token` (the identity `api-token`, an admin). The audit's "who" is that
//! name, never a field of the request. The configured token is compared by hashing
//! both sides and comparing the digests in constant time, so neither the token's
//! content nor its length leaks through timing; identities are looked up by digest.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use sha2::{Digest, Sha256};
use slipway_platform::authority::{bearer, AuthError};
use slipway_platform::{Caller, Role};
use subtle::ConstantTimeEq;

use super::ApiError;
use crate::config::Secret;
use crate::state::AppState;

/// The name the configured `secrets.api_token` acts under in the audit log.
pub const API_TOKEN_IDENTITY: &str = "api-token";

/// Whether `Authorization: Bearer <token>` matches.
pub fn token_is_valid(expected: &Secret, header: Option<&str>) -> bool {
    let Some(given) = header.and_then(|h| h.strip_prefix("Bearer ")) else {
        return false;
    };
    let a = Sha256::digest(given.trim().as_bytes());
    let b = Sha256::digest(expected.expose().as_bytes());
    a.ct_eq(&b).into()
}

/// Who is calling the HTTP API. Handlers that take one are reached only with a valid
/// token; the rejection says what was wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiCaller {
    pub name: String,
    pub role: Role,
}

impl FromRequestParts<Arc<AppState>> for ApiCaller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<ApiCaller, ApiError> {
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
        .await?;
        match found {
            Ok(Caller::Identity(identity)) => Ok(ApiCaller {
                name: identity.name,
                role: identity.role,
            }),
            Ok(Caller::Job(_)) => Err(ApiError::Forbidden(
                "a job credential works only for the job it was minted for, not on the agent's API"
                    .into(),
            )),
            Err(AuthError::Store(e)) => {
                tracing::error!(error = %e, "identity lookup failed");
                Err(ApiError::Unavailable(
                    "the platform database is unavailable; try again".into(),
                ))
            }
            Err(e) => Err(ApiError::Unauthorized(e.to_string())),
        }
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
