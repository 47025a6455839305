//! The GitHub client: octocrab against a configurable API URL (github.com, GitHub
//! Enterprise Server, or a test server), authenticated with a token or as a GitHub App.
//!
//! Every request says `Accept: application/vnd.github+json` and the
//! `X-GitHub-Api-Version` it was written against, as GitHub's REST documentation asks,
//! the App's installation-token requests included: those are made here (with the App's
//! JWT, through the same octocrab request path) rather than inside octocrab, whose own
//! token request carries neither header. The installation token is renewed before it
//! expires and also serves git fetches over HTTPS ([`GitHub::git_token`]).
//!
//! Every call sorts its failure into a [`GithubError`]: rate limited (with how long
//! GitHub asks to wait: `retry-after`, or until `x-ratelimit-reset` when
//! `x-ratelimit-remaining` is 0; [`rate_limit_wait`]), retryable (network, 5xx) or
//! permanent (any other 4xx: retrying cannot help), which is what the reporter acts on.

use std::time::Duration;

use octocrab::models::AppId;
use octocrab::Octocrab;
use serde_json::Value;

use crate::config::{GithubAuth, GithubConfig, Secret};

/// The REST API version the requests are written against.
pub const API_VERSION: &str = "2022-11-28";

/// Why a call to GitHub failed. The message never holds a token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GithubError {
    /// GitHub's rate limit (primary or secondary): no request should be sent for
    /// `wait`, which GitHub named.
    #[error("{message}")]
    RateLimited { message: String, wait: Duration },
    /// Worth trying again later, with backoff.
    #[error("{0}")]
    Retryable(String),
    /// GitHub refused the request for good (bad credentials, no such repository, …).
    #[error("{0}")]
    Permanent(String),
}

impl GithubError {
    pub fn is_retryable(&self) -> bool {
        !matches!(self, GithubError::Permanent(_))
    }
}

/// How long GitHub asks to wait before the next request, from an error answer's
/// status and headers (`now` in Unix seconds), per GitHub's REST documentation:
/// `retry-after` seconds when present (secondary rate limits); else, when
/// `x-ratelimit-remaining` is 0, until `x-ratelimit-reset`; else, for a 429, a minute.
/// `None`: not a rate limit (a 403 without these headers is a permission refusal).
pub fn rate_limit_wait(status: u16, headers: &axum::http::HeaderMap, now: u64) -> Option<Duration> {
    if status != 403 && status != 429 {
        return None;
    }
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    if let Some(secs) = header("retry-after").and_then(|v| v.parse::<u64>().ok()) {
        return Some(Duration::from_secs(secs));
    }
    if header("x-ratelimit-remaining") == Some("0") {
        if let Some(reset) = header("x-ratelimit-reset").and_then(|v| v.parse::<u64>().ok()) {
            // One second more: the reset time is whole seconds and clocks differ.
            return Some(Duration::from_secs(reset.saturating_sub(now) + 1));
        }
    }
    (status == 429).then(|| Duration::from_secs(60))
}

/// The App's current installation token, and a client that uses it.
struct Installation {
    token: Secret,
    expires_at: chrono::DateTime<chrono::Utc>,
    crab: Octocrab,
}

/// What an App needs to get installation tokens.
struct App {
    /// Authenticated with the App's JWT: only for the token requests.
    crab: Octocrab,
    installation_id: u64,
    api_url: String,
    current: tokio::sync::Mutex<Option<Installation>>,
}

/// How the client authenticates.
#[derive(Clone)]
enum Auth {
    Token(Octocrab),
    App(std::sync::Arc<App>),
}

/// An API client for `api_url`, with the headers every request carries.
fn client(api_url: &str, auth: ClientAuth) -> anyhow::Result<Octocrab> {
    let builder = Octocrab::builder()
        .base_uri(api_url)
        .map_err(|e| anyhow::anyhow!("configuration key `github.api_url`: {e}"))?
        .add_header(
            axum::http::header::ACCEPT,
            "application/vnd.github+json".to_owned(),
        )
        .set_connect_timeout(Some(Duration::from_secs(10)))
        .set_read_timeout(Some(Duration::from_secs(30)))
        .set_write_timeout(Some(Duration::from_secs(30)));
    let built = match auth {
        ClientAuth::Token(token) => builder.personal_token(token).build(),
        ClientAuth::App(app_id, key) => builder.app(app_id, key).build(),
    };
    built.map_err(|e| anyhow::anyhow!("GitHub client: {e}"))
}

enum ClientAuth {
    Token(String),
    App(AppId, jsonwebtoken::EncodingKey),
}

/// Renew an installation token this long before it expires (API calls).
const RENEW_MARGIN: chrono::TimeDelta = chrono::TimeDelta::seconds(30);
/// A token handed to git must last a whole fetch.
const GIT_MARGIN: chrono::TimeDelta = chrono::TimeDelta::minutes(5);

/// A connected GitHub client.
#[derive(Clone)]
pub struct GitHub {
    auth: Auth,
}

impl std::fmt::Debug for GitHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GitHub")
            .field("app", &matches!(self.auth, Auth::App(_)))
            .finish()
    }
}

impl GitHub {
    /// Builds the client; reads the token or App key (errors name the key, never the
    /// value). Must be called inside a Tokio runtime.
    pub fn connect(config: &GithubConfig) -> anyhow::Result<GitHub> {
        match &config.auth {
            GithubAuth::Token(source) => {
                let token = source.resolve("github.token")?;
                let crab = client(
                    config.api_url.as_str(),
                    ClientAuth::Token(token.expose().to_owned()),
                )?;
                Ok(GitHub {
                    auth: Auth::Token(crab),
                })
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
                let crab = client(
                    config.api_url.as_str(),
                    ClientAuth::App(AppId(*app_id), key),
                )?;
                Ok(GitHub {
                    auth: Auth::App(std::sync::Arc::new(App {
                        crab,
                        installation_id: *installation_id,
                        api_url: config.api_url.to_string(),
                        current: tokio::sync::Mutex::new(None),
                    })),
                })
            }
        }
    }

    /// The client for API calls, and as an App the token it uses, valid for at least
    /// `margin` more.
    async fn api(
        &self,
        margin: chrono::TimeDelta,
    ) -> Result<(Octocrab, Option<Secret>), GithubError> {
        let app = match &self.auth {
            Auth::Token(crab) => return Ok((crab.clone(), None)),
            Auth::App(app) => app,
        };
        let mut current = app.current.lock().await;
        if let Some(i) = current.as_ref() {
            if i.expires_at - chrono::Utc::now() > margin {
                return Ok((i.crab.clone(), Some(i.token.clone())));
            }
        }
        let what = "get an installation token";
        let answer: Value = app
            .crab
            .post(
                format!("/app/installations/{}/access_tokens", app.installation_id),
                None::<&()>,
            )
            .await
            .map_err(|e| classify(what, e))?;
        let unexpected = || {
            GithubError::Permanent(format!(
                "{what}: GitHub's answer has no token or expires_at"
            ))
        };
        let token = answer["token"].as_str().ok_or_else(unexpected)?;
        let expires_at = answer["expires_at"]
            .as_str()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .ok_or_else(unexpected)?
            .with_timezone(&chrono::Utc);
        let crab = client(&app.api_url, ClientAuth::Token(token.to_owned()))
            .map_err(|e| GithubError::Permanent(format!("{what}: {e}")))?;
        let token = Secret::new(token);
        *current = Some(Installation {
            token: token.clone(),
            expires_at,
            crab: crab.clone(),
        });
        Ok((crab, Some(token)))
    }

    /// An installation token valid for at least five more minutes, for git over HTTPS;
    /// `None` when authenticated with a plain token (the `secrets.git_token` serves).
    pub async fn git_token(&self) -> Result<Option<Secret>, GithubError> {
        if matches!(self.auth, Auth::Token(_)) {
            return Ok(None);
        }
        Ok(self.api(GIT_MARGIN).await?.1)
    }

    /// `POST {route}` with a JSON body; the response's JSON.
    pub async fn post(&self, what: &str, route: &str, body: &Value) -> Result<Value, GithubError> {
        let (crab, _) = self.api(RENEW_MARGIN).await?;
        crab.post::<_, Value>(route, Some(body))
            .await
            .map_err(|e| classify(what, e))
    }

    /// `PATCH {route}` with a JSON body (a comment edited in place); the response's JSON.
    pub async fn patch(&self, what: &str, route: &str, body: &Value) -> Result<Value, GithubError> {
        let (crab, _) = self.api(RENEW_MARGIN).await?;
        crab.patch::<Value, _, _>(route, Some(body))
            .await
            .map_err(|e| classify(what, e))
    }

    /// `GET {route}` (query included); the response's JSON.
    pub async fn get(&self, what: &str, route: &str) -> Result<Value, GithubError> {
        let (crab, _) = self.api(RENEW_MARGIN).await?;
        crab.get::<Value, _, ()>(route, None)
            .await
            .map_err(|e| classify(what, e))
    }
}

/// Sorts an octocrab error; `what` says what was being done.
fn classify(what: &str, error: octocrab::Error) -> GithubError {
    match error {
        octocrab::Error::GitHub { source, .. } => {
            let status = source.status_code;
            let message = format!("{what}: GitHub answered {status}: {}", source.message);
            let now = u64::try_from(chrono::Utc::now().timestamp()).unwrap_or(0);
            let wait = source
                .headers
                .as_ref()
                .and_then(|h| rate_limit_wait(status.as_u16(), h, now));
            if let Some(wait) = wait {
                GithubError::RateLimited { message, wait }
            } else if status.is_server_error() || status.as_u16() == 408 {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> axum::http::HeaderMap {
        let mut h = axum::http::HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn rate_limits_are_waited_out_as_github_asks() {
        let now = 1_800_000_000;
        // A secondary rate limit: retry-after wins.
        assert_eq!(
            rate_limit_wait(429, &headers(&[("retry-after", "3")]), now),
            Some(Duration::from_secs(3))
        );
        assert_eq!(
            rate_limit_wait(403, &headers(&[("retry-after", "7")]), now),
            Some(Duration::from_secs(7))
        );
        // The primary limit: until the reset time.
        let primary = headers(&[
            ("x-ratelimit-remaining", "0"),
            ("x-ratelimit-reset", "1800000040"),
        ]);
        assert_eq!(
            rate_limit_wait(403, &primary, now),
            Some(Duration::from_secs(41))
        );
        // A reset already past still waits a second.
        assert_eq!(
            rate_limit_wait(403, &primary, now + 100),
            Some(Duration::from_secs(1))
        );
        // A 429 that says nothing: at least a minute.
        assert_eq!(
            rate_limit_wait(429, &headers(&[]), now),
            Some(Duration::from_secs(60))
        );
        // A 403 with quota left is a permission refusal, not a rate limit.
        let refused = headers(&[("x-ratelimit-remaining", "4999")]);
        assert_eq!(rate_limit_wait(403, &refused, now), None);
        assert_eq!(rate_limit_wait(500, &primary, now), None);
    }
}
