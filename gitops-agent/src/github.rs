//! The GitHub client: octocrab against a configurable API URL (github.com, GitHub
//! Enterprise Server, or a test server), authenticated with a token or as a GitHub App.
//!
//! As an App, octocrab signs a short-lived JWT with the App's private key, trades it
//! for an installation token and renews that token before it expires; the same token
//! serves git fetches over HTTPS ([`GitHub::git_token`]). Every call sorts its failure
//! into [`GithubError::Retryable`] (network, 5xx, rate limits) or
//! [`GithubError::Permanent`] (any other 4xx: retrying cannot help), which is what the
//! reporter's backoff acts on.

use std::time::Duration;

use octocrab::models::{AppId, InstallationId};
use octocrab::Octocrab;
use secrecy::ExposeSecret as _;
use serde_json::Value;

use crate::config::{GithubAuth, GithubConfig, Secret};

/// Why a call to GitHub failed. The message never holds a token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GithubError {
    /// Worth trying again later.
    #[error("{0}")]
    Retryable(String),
    /// GitHub refused the request for good (bad credentials, no such repository, …).
    #[error("{0}")]
    Permanent(String),
}

impl GithubError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, GithubError::Retryable(_))
    }
}

/// A connected GitHub client.
#[derive(Clone)]
pub struct GitHub {
    crab: Octocrab,
    /// Authenticated as an App installation (so [`GitHub::git_token`] has a token to give).
    app: bool,
}

impl std::fmt::Debug for GitHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GitHub").field("app", &self.app).finish()
    }
}

impl GitHub {
    /// Builds the client; reads the token or App key (errors name the key, never the
    /// value). Must be called inside a Tokio runtime.
    pub fn connect(config: &GithubConfig) -> anyhow::Result<GitHub> {
        let builder = Octocrab::builder()
            .base_uri(config.api_url.as_str())
            .map_err(|e| anyhow::anyhow!("configuration key `github.api_url`: {e}"))?
            .set_connect_timeout(Some(Duration::from_secs(10)))
            .set_read_timeout(Some(Duration::from_secs(30)))
            .set_write_timeout(Some(Duration::from_secs(30)));
        match &config.auth {
            GithubAuth::Token(source) => {
                let token = source.resolve("github.token")?;
                let crab = builder
                    .personal_token(token.expose().to_owned())
                    .build()
                    .map_err(|e| anyhow::anyhow!("GitHub client: {e}"))?;
                Ok(GitHub { crab, app: false })
            }
            GithubAuth::App {
                app_id,
                private_key,
                installation_id,
            } => {
                let pem = private_key.resolve("github.app_key")?;
                let key = jsonwebtoken::EncodingKey::from_rsa_pem(pem.expose().as_bytes())
                    .map_err(|_| {
                        anyhow::anyhow!(
                            "configuration key `github.app_key`: not an RSA private key in PEM form; download a new private key from the GitHub App's settings page"
                        )
                    })?;
                let app = builder
                    .app(AppId(*app_id), key)
                    .build()
                    .map_err(|e| anyhow::anyhow!("GitHub client: {e}"))?;
                let crab = app
                    .installation(InstallationId(*installation_id))
                    .map_err(|e| anyhow::anyhow!("GitHub App installation: {e}"))?;
                Ok(GitHub { crab, app: true })
            }
        }
    }

    /// An installation token valid for at least five more minutes, for git over HTTPS;
    /// `None` when authenticated with a plain token (the `secrets.git_token` serves).
    pub async fn git_token(&self) -> Result<Option<Secret>, GithubError> {
        if !self.app {
            return Ok(None);
        }
        let token = self
            .crab
            .installation_token_with_buffer(chrono::Duration::minutes(5))
            .await
            .map_err(|e| classify("get an installation token", e))?;
        Ok(Some(Secret::new(token.expose_secret())))
    }

    /// `POST {route}` with a JSON body; the response's JSON.
    pub async fn post(&self, what: &str, route: &str, body: &Value) -> Result<Value, GithubError> {
        self.crab
            .post::<_, Value>(route, Some(body))
            .await
            .map_err(|e| classify(what, e))
    }
}

/// Sorts an octocrab error; `what` says what was being done.
fn classify(what: &str, error: octocrab::Error) -> GithubError {
    match error {
        octocrab::Error::GitHub { source, .. } => {
            let status = source.status_code;
            let rate_limited = source
                .headers
                .as_ref()
                .and_then(|h| h.get("x-ratelimit-remaining"))
                .is_some_and(|v| v.as_bytes() == b"0")
                || source.message.to_ascii_lowercase().contains("rate limit");
            let message = format!("{what}: GitHub answered {status}: {}", source.message);
            if status.is_server_error()
                || status.as_u16() == 429
                || status.as_u16() == 408
                || (status.as_u16() == 403 && rate_limited)
            {
                GithubError::Retryable(message)
            } else {
                GithubError::Permanent(message)
            }
        }
        octocrab::Error::Serde { source, .. } => {
            GithubError::Permanent(format!("{what}: unexpected answer from GitHub: {source}"))
        }
        octocrab::Error::Json { source, .. } => {
            GithubError::Permanent(format!("{what}: unexpected answer from GitHub: {source}"))
        }
        other => GithubError::Retryable(format!("{what}: {}", one_line(&other))),
    }
}

/// An error and its causes on one line.
fn one_line(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let more = cause.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = cause.source();
    }
    text
}
