//! A fake GitHub REST API for the agent's reporting tests: it records every request,
//! keeps the state GitHub would (deployments and their statuses, commit statuses,
//! issue comments, installation tokens), and fails on demand.
//!
//! It answers as GitHub does where the agent could notice: `201` with the created
//! object, `404` for a deployment that does not exist, `422` for a commit status on
//! something that is not a full SHA or with an unknown state, `401 Bad credentials`
//! for a missing, unknown or expired token. A GitHub App's JWT is checked for shape,
//! issuer and lifetime (not its RSA signature) before an installation token is issued.
//!
//! Faults on demand, as GitHub produces them: an error status ([`FakeGitHub::fail_next`]),
//! a rate limit that lasts ([`FakeGitHub::rate_limit_next`]: a secondary limit with
//! `retry-after`, or the primary one with `x-ratelimit-remaining: 0` until
//! `x-ratelimit-reset`; every request in the window is refused again), and a lost answer
//! ([`FakeGitHub::drop_answer_next`]: the request takes effect, then the connection
//! breaks before the body). Deployments can be listed (`GET .../deployments?sha=&environment=`).
//! Issue comments are kept, listed and edited (`PATCH .../issues/comments/ID`), and a
//! pull request's `state` is what the test set ([`FakeGitHub::set_pull_request_state`]).
//!
//! Like github.com it can also serve git over HTTP ([`FakeGitHub::serve_git`], through
//! `git http-backend`), to callers whose password is a valid token.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde_json::{json, Value};

/// One request as the fake received it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub authorization: Option<String>,
    pub body: Value,
    /// The status the fake answered.
    pub status: u16,
    /// The query string, if any.
    pub query: Option<String>,
    /// The `Accept` and `X-GitHub-Api-Version` headers.
    pub accept: Option<String>,
    pub api_version: Option<String>,
    /// When it arrived.
    pub at: Instant,
    /// The request took effect but its answer was broken off ([`FakeGitHub::drop_answer_next`]).
    pub answer_dropped: bool,
}

/// A rate limit for [`FakeGitHub::rate_limit_next`].
#[derive(Debug, Clone, Copy)]
pub enum RateLimit {
    /// A secondary rate limit: `429` with `retry-after: secs`.
    Secondary { retry_after_secs: u64 },
    /// The primary rate limit: `403` with `x-ratelimit-remaining: 0` and
    /// `x-ratelimit-reset` `reset_in_secs` from now.
    Primary { reset_in_secs: u64 },
}

#[derive(Debug)]
struct Window {
    path_contains: String,
    limit: RateLimit,
    /// Set when the first matching request opens the window.
    until: Option<SystemTime>,
}

/// Who may call the fake.
#[derive(Debug, Clone)]
pub enum Auth {
    /// A personal access token.
    Token(String),
    /// A GitHub App with one installation; tokens live `token_ttl`.
    App {
        app_id: u64,
        installation_id: u64,
        token_ttl: Duration,
    },
}

#[derive(Debug)]
struct Failure {
    path_contains: String,
    remaining: u32,
    status: u16,
}

#[derive(Default)]
struct Inner {
    requests: Vec<Recorded>,
    failures: Vec<Failure>,
    rate_limits: Vec<Window>,
    /// Path fragment → how many more answers to break off.
    drops: Vec<(String, u32)>,
    /// Deployment id → the payload it was created with.
    payloads: HashMap<u64, Value>,
    /// Deployment id → (environment, sha, statuses).
    deployments: HashMap<u64, (String, String, Vec<String>)>,
    next_id: u64,
    /// Installation token → when it expires.
    tokens: HashMap<String, SystemTime>,
    /// The JWT claims of every token request.
    jwt_claims: Vec<Value>,
    /// Bare repositories served at `/git/<name>.git`.
    git_root: Option<std::path::PathBuf>,
    /// Issue comment id → (issue number, body), as created and edited.
    comments: std::collections::BTreeMap<u64, (u64, String)>,
    /// Pull request number → `open` or `closed` (`GET .../pulls/N`); unknown: 404.
    pull_states: HashMap<u64, String>,
}

struct Shared {
    auth: Auth,
    inner: Mutex<Inner>,
}

impl Shared {
    /// The state; a panic in another handler does not make it unusable.
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A running fake; stops when dropped.
pub struct FakeGitHub {
    /// The base URL to give the agent as `github.api_url`, with a GitHub Enterprise
    /// style path (`/api/v3`), which the client must keep.
    pub api_url: String,
    shared: Arc<Shared>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl FakeGitHub {
    pub fn start(auth: Auth) -> FakeGitHub {
        let shared = Arc::new(Shared {
            auth,
            inner: Mutex::new(Inner {
                next_id: 1000,
                ..Inner::default()
            }),
        });
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (addr_tx, addr_rx) = std::sync::mpsc::channel::<SocketAddr>();
        let state = shared.clone();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                    .await
                    .expect("bind");
                addr_tx.send(listener.local_addr().expect("addr")).ok();
                let app = axum::Router::new().fallback(handle).with_state(state);
                axum::serve(listener, app)
                    .with_graceful_shutdown(async move {
                        let _ = stopped.await;
                    })
                    .await
                    .ok();
            });
        });
        let addr = addr_rx.recv().expect("fake GitHub started");
        FakeGitHub {
            api_url: format!("http://{addr}/api/v3"),
            shared,
            _stop: stop,
        }
    }

    /// Every request so far, oldest first.
    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.lock().requests.clone()
    }

    /// Requests other than installation token requests and git traffic.
    pub fn api_requests(&self) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| !r.path.contains("/access_tokens") && !r.path.starts_with("/git/"))
            .collect()
    }

    /// Serves the bare repositories in `root` over git's smart HTTP protocol at
    /// `{base}/git/<name>.git`, as github.com does: only to a caller whose password is
    /// a valid token (an installation token for an App).
    pub fn serve_git(&self, root: &std::path::Path) -> String {
        self.shared.lock().git_root = Some(root.to_owned());
        self.api_url.replace("/api/v3", "/git")
    }

    /// The next `times` requests whose path contains `path_contains` fail with `status`.
    pub fn fail_next(&self, path_contains: &str, times: u32, status: u16) {
        self.shared.lock().failures.push(Failure {
            path_contains: path_contains.to_owned(),
            remaining: times,
            status,
        });
    }

    /// The next request whose path contains `path_contains` is refused with `limit`,
    /// and so is every API request until the limit's time has passed.
    pub fn rate_limit_next(&self, path_contains: &str, limit: RateLimit) {
        self.shared.lock().rate_limits.push(Window {
            path_contains: path_contains.to_owned(),
            limit,
            until: None,
        });
    }

    /// The next `times` requests whose path contains `path_contains` take effect (a
    /// deployment is created, say) but their answer is broken off: the connection
    /// closes before the body arrives.
    pub fn drop_answer_next(&self, path_contains: &str, times: u32) {
        self.shared
            .lock()
            .drops
            .push((path_contains.to_owned(), times));
    }

    /// The states posted to each deployment, by id.
    pub fn deployments(&self) -> HashMap<u64, (String, String, Vec<String>)> {
        self.shared.lock().deployments.clone()
    }

    /// The comments on issue (pull request) `number` as they stand, oldest first:
    /// (id, body).
    pub fn comments(&self, number: u64) -> Vec<(u64, String)> {
        self.shared
            .lock()
            .comments
            .iter()
            .filter(|(_, (n, _))| *n == number)
            .map(|(id, (_, body))| (*id, body.clone()))
            .collect()
    }

    /// What `GET /repos/{owner}/{repo}/pulls/{number}` answers as the pull request's
    /// `state` (`open` or `closed`).
    pub fn set_pull_request_state(&self, number: u64, state: &str) {
        self.shared
            .lock()
            .pull_states
            .insert(number, state.to_owned());
    }

    /// The claims of each App JWT presented.
    pub fn jwt_claims(&self) -> Vec<Value> {
        self.shared.lock().jwt_claims.clone()
    }

    /// Waits until `pred` holds for the recorded requests.
    pub fn wait_for(&self, what: &str, timeout: Duration, pred: impl Fn(&[Recorded]) -> bool) {
        let deadline = Instant::now() + timeout;
        loop {
            let requests = self.requests();
            if pred(&requests) {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "timed out waiting for {what}; GitHub received:\n{}",
                    requests
                        .iter()
                        .map(|r| format!("{} {} -> {} {}", r.method, r.path, r.status, r.body))
                        .collect::<Vec<_>>()
                        .join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn error(status: StatusCode, message: &str) -> (StatusCode, Value) {
    (
        status,
        json!({"message": message, "documentation_url": "https://docs.github.com/rest"}),
    )
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn rfc3339(t: SystemTime) -> String {
    // GitHub's form: 2026-11-22T05:00:00Z. Computed by hand to avoid a date dependency.
    let secs = unix(t);
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (h, m, s) = (rem / 3600, (rem % 3600) / 60, rem % 60);
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let mo = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if mo <= 2 { y + 1 } else { y };
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{m:02}:{s:02}Z")
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_owned();
    let authorization = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let record = |body: Value, status: u16, answer_dropped: bool| Recorded {
        method: method.to_string(),
        path: path.clone(),
        authorization: authorization.clone(),
        body,
        status,
        query: uri.query().map(str::to_owned),
        accept: header("accept"),
        api_version: header("x-github-api-version"),
        at: Instant::now(),
        answer_dropped,
    };
    if path.starts_with("/git/") {
        let response = git_http(&shared, &method, &uri, &headers, body.clone()).await;
        let recorded = record(Value::Null, response.status().as_u16(), false);
        shared.lock().requests.push(recorded);
        return response;
    }
    let body_json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let mut inner = shared.lock();
    if let Some((status, extra, answer)) = rate_limited(&mut inner, &path) {
        inner
            .requests
            .push(record(body_json, status.as_u16(), false));
        let mut response = (status, axum::Json(answer)).into_response();
        for (name, value) in extra {
            if let Ok(value) = axum::http::HeaderValue::from_str(&value) {
                response.headers_mut().insert(name, value);
            }
        }
        return response;
    }
    let (status, answer) = answer(
        &shared.auth,
        &mut inner,
        &method,
        &path,
        uri.query().unwrap_or(""),
        authorization.as_deref(),
        &body_json,
    );
    let dropped = status.is_success()
        && inner
            .drops
            .iter_mut()
            .find(|(fragment, left)| *left > 0 && path.contains(fragment.as_str()))
            .map(|(_, left)| *left -= 1)
            .is_some();
    inner
        .requests
        .push(record(body_json, status.as_u16(), dropped));
    if dropped {
        // The head goes out, then the body fails: the client sees the connection
        // break before the answer is complete.
        let broken = futures::stream::once(async {
            Err::<Bytes, std::io::Error>(std::io::Error::other("answer dropped by the test"))
        });
        return Response::builder()
            .status(status)
            .header("content-type", "application/json")
            .body(axum::body::Body::from_stream(broken))
            .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response());
    }
    (status, axum::Json(answer)).into_response()
}

/// The rate limit answer for a request to `path`, when a window is (or becomes) open.
#[allow(clippy::type_complexity)]
fn rate_limited(
    inner: &mut Inner,
    path: &str,
) -> Option<(StatusCode, Vec<(&'static str, String)>, Value)> {
    let now = SystemTime::now();
    let window = match inner
        .rate_limits
        .iter_mut()
        .find(|w| w.until.is_some_and(|until| now < until))
    {
        Some(open) => open,
        None => {
            let next = inner
                .rate_limits
                .iter_mut()
                .find(|w| w.until.is_none() && path.contains(&w.path_contains))?;
            let secs = match next.limit {
                RateLimit::Secondary { retry_after_secs } => retry_after_secs,
                RateLimit::Primary { reset_in_secs } => reset_in_secs,
            };
            next.until = Some(now + Duration::from_secs(secs));
            next
        }
    };
    let until = window.until.unwrap_or(now);
    let left = until.duration_since(now).unwrap_or_default();
    Some(match window.limit {
        RateLimit::Secondary { .. } => (
            StatusCode::TOO_MANY_REQUESTS,
            vec![(
                "retry-after",
                (left.as_secs_f64().ceil() as u64).to_string(),
            )],
            json!({"message": "You have exceeded a secondary rate limit. Please wait a few minutes before you try again.", "documentation_url": "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api#about-secondary-rate-limits"}),
        ),
        RateLimit::Primary { .. } => (
            StatusCode::FORBIDDEN,
            vec![
                ("x-ratelimit-limit", "5000".to_owned()),
                ("x-ratelimit-remaining", "0".to_owned()),
                ("x-ratelimit-used", "5000".to_owned()),
                ("x-ratelimit-reset", (unix(until) + 1).to_string()),
            ],
            json!({"message": "API rate limit exceeded for installation ID 77.", "documentation_url": "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api"}),
        ),
    })
}

fn answer(
    auth: &Auth,
    inner: &mut Inner,
    method: &Method,
    path: &str,
    query: &str,
    authorization: Option<&str>,
    body: &Value,
) -> (StatusCode, Value) {
    if let Some(failure) = inner
        .failures
        .iter_mut()
        .find(|f| f.remaining > 0 && path.contains(&f.path_contains))
    {
        failure.remaining -= 1;
        let status = StatusCode::from_u16(failure.status).unwrap_or(StatusCode::BAD_GATEWAY);
        return error(status, "failure injected by the test");
    }
    let Some(rest) = path.strip_prefix("/api/v3") else {
        return error(StatusCode::NOT_FOUND, "Not Found");
    };
    let segments: Vec<&str> = rest.trim_matches('/').split('/').collect();
    let bearer = authorization.and_then(|a| {
        a.strip_prefix("Bearer ")
            .or_else(|| a.strip_prefix("token "))
    });

    // POST /app/installations/{id}/access_tokens, with the App's JWT.
    if let (["app", "installations", id, "access_tokens"], &Method::POST) =
        (segments.as_slice(), method)
    {
        let Auth::App {
            app_id,
            installation_id,
            token_ttl,
        } = auth
        else {
            return error(StatusCode::NOT_FOUND, "Not Found");
        };
        if id.parse::<u64>().ok() != Some(*installation_id) {
            return error(StatusCode::NOT_FOUND, "Not Found");
        }
        let Some(claims) = bearer.and_then(jwt_claims) else {
            return error(
                StatusCode::UNAUTHORIZED,
                "A JSON web token could not be decoded",
            );
        };
        inner.jwt_claims.push(claims.clone());
        let now = unix(SystemTime::now());
        let (iss, iat, exp) = (
            claims["iss"]
                .as_u64()
                .or_else(|| claims["iss"].as_str().and_then(|s| s.parse().ok())),
            claims["iat"].as_u64().unwrap_or(0),
            claims["exp"].as_u64().unwrap_or(0),
        );
        if iss != Some(*app_id) || iat > now + 60 || exp <= now || exp - iat > 600 {
            return error(
                StatusCode::UNAUTHORIZED,
                "'Issued at' claim (iat) or 'Expiration time' claim (exp) is invalid, or the issuer is wrong",
            );
        }
        inner.next_id += 1;
        let token = format!("ghs_fake{:06}", inner.next_id);
        let expires = SystemTime::now() + *token_ttl;
        inner.tokens.insert(token.clone(), expires);
        return (
            StatusCode::CREATED,
            json!({
                "token": token,
                "expires_at": rfc3339(expires),
                "permissions": {"deployments": "write", "statuses": "write", "contents": "read", "issues": "write"},
                "repository_selection": "selected"
            }),
        );
    }

    // Everything else needs the token.
    let authorized = bearer.is_some_and(|given| token_is_valid(auth, inner, given));
    if !authorized {
        return error(StatusCode::UNAUTHORIZED, "Bad credentials");
    }
    if method == Method::PATCH {
        // PATCH /repos/{owner}/{repo}/issues/comments/{id}: edit a comment.
        let ["repos", _, _, "issues", "comments", id] = segments.as_slice() else {
            return error(StatusCode::NOT_FOUND, "Not Found");
        };
        let (Some(id), Some(text)) = (id.parse::<u64>().ok(), body["body"].as_str()) else {
            return error(StatusCode::UNPROCESSABLE_ENTITY, "Validation Failed");
        };
        let Some(comment) = inner.comments.get_mut(&id) else {
            return error(StatusCode::NOT_FOUND, "Not Found");
        };
        comment.1 = text.to_owned();
        return (StatusCode::OK, json!({"id": id, "body": text}));
    }
    if method == Method::GET {
        match segments.as_slice() {
            // GET /repos/{owner}/{repo}/issues/{number}/comments, oldest first.
            ["repos", _, _, "issues", number, "comments"] => {
                let number = number.parse::<u64>().unwrap_or(0);
                let list: Vec<Value> = inner
                    .comments
                    .iter()
                    .filter(|(_, (n, _))| *n == number)
                    .map(|(id, (_, body))| json!({"id": id, "body": body}))
                    .collect();
                return (StatusCode::OK, Value::Array(list));
            }
            // GET /repos/{owner}/{repo}/pulls/{number}.
            ["repos", _, _, "pulls", number] => {
                let number = number.parse::<u64>().unwrap_or(0);
                return match inner.pull_states.get(&number) {
                    Some(state) => (StatusCode::OK, json!({"number": number, "state": state})),
                    None => error(StatusCode::NOT_FOUND, "Not Found"),
                };
            }
            _ => {}
        }
        // GET /repos/{owner}/{repo}/deployments?sha=&environment=, newest first.
        let ["repos", owner, repo, "deployments"] = segments.as_slice() else {
            return error(StatusCode::NOT_FOUND, "Not Found");
        };
        let param = |name: &str| {
            query
                .split('&')
                .filter_map(|kv| kv.split_once('='))
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_owned())
        };
        let (sha, environment) = (param("sha"), param("environment"));
        let mut ids: Vec<&u64> = inner
            .deployments
            .iter()
            .filter(|(_, (env, r#ref, _))| {
                sha.as_deref().is_none_or(|s| s == r#ref)
                    && environment.as_deref().is_none_or(|e| e == env)
            })
            .map(|(id, _)| id)
            .collect();
        ids.sort_by(|a, b| b.cmp(a));
        let list: Vec<Value> = ids
            .into_iter()
            .map(|id| {
                let (env, r#ref, _) = &inner.deployments[id];
                json!({
                    "url": format!("https://api.github.com/repos/{owner}/{repo}/deployments/{id}"),
                    "id": id,
                    "sha": r#ref,
                    "ref": r#ref,
                    "environment": env,
                    "payload": inner.payloads.get(id).cloned().unwrap_or(json!({})),
                })
            })
            .collect();
        return (StatusCode::OK, Value::Array(list));
    }
    if method != Method::POST {
        return error(StatusCode::NOT_FOUND, "Not Found");
    }
    match segments.as_slice() {
        ["repos", owner, repo, "deployments"] => {
            let (Some(r#ref), Some(environment)) =
                (body["ref"].as_str(), body["environment"].as_str())
            else {
                return error(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "Invalid request: ref and environment are required",
                );
            };
            inner.next_id += 1;
            let id = inner.next_id;
            inner
                .deployments
                .insert(id, (environment.to_owned(), r#ref.to_owned(), Vec::new()));
            inner.payloads.insert(id, body["payload"].clone());
            (
                StatusCode::CREATED,
                json!({
                    "url": format!("https://api.github.com/repos/{owner}/{repo}/deployments/{id}"),
                    "id": id,
                    "node_id": format!("DE_{id}"),
                    "sha": r#ref,
                    "ref": r#ref,
                    "task": body["task"].as_str().unwrap_or("deploy"),
                    "payload": body["payload"],
                    "environment": environment,
                    "description": body["description"],
                    "created_at": rfc3339(SystemTime::now()),
                    "updated_at": rfc3339(SystemTime::now()),
                    "statuses_url": format!("https://api.github.com/repos/{owner}/{repo}/deployments/{id}/statuses"),
                    "repository_url": format!("https://api.github.com/repos/{owner}/{repo}"),
                }),
            )
        }
        ["repos", _, _, "deployments", id, "statuses"] => {
            const STATES: [&str; 7] = [
                "error",
                "failure",
                "inactive",
                "in_progress",
                "queued",
                "pending",
                "success",
            ];
            let Some(deployment) = id
                .parse::<u64>()
                .ok()
                .and_then(|id| inner.deployments.get_mut(&id))
            else {
                return error(StatusCode::NOT_FOUND, "Not Found");
            };
            let Some(state) = body["state"].as_str().filter(|s| STATES.contains(s)) else {
                return error(StatusCode::UNPROCESSABLE_ENTITY, "Invalid request: state");
            };
            deployment.2.push(state.to_owned());
            (
                StatusCode::CREATED,
                json!({"id": deployment.2.len(), "state": state}),
            )
        }
        ["repos", _, _, "statuses", sha] => {
            let full_sha = sha.len() == 40 && sha.bytes().all(|b| b.is_ascii_hexdigit());
            let state_ok = body["state"]
                .as_str()
                .is_some_and(|s| ["error", "failure", "pending", "success"].contains(&s));
            let description_ok = body["description"]
                .as_str()
                .is_none_or(|d| d.chars().count() <= 140);
            if !full_sha {
                return error(StatusCode::UNPROCESSABLE_ENTITY, "No commit found for SHA");
            }
            if !state_ok || !description_ok {
                return error(StatusCode::UNPROCESSABLE_ENTITY, "Validation Failed");
            }
            inner.next_id += 1;
            (
                StatusCode::CREATED,
                json!({"id": inner.next_id, "state": body["state"], "context": body["context"]}),
            )
        }
        ["repos", _, _, "issues", number, "comments"] => {
            let (Ok(number), Some(text)) = (number.parse::<u64>(), body["body"].as_str()) else {
                return error(StatusCode::UNPROCESSABLE_ENTITY, "Validation Failed");
            };
            inner.next_id += 1;
            let id = inner.next_id;
            inner.comments.insert(id, (number, text.to_owned()));
            (StatusCode::CREATED, json!({"id": id, "body": text}))
        }
        _ => error(StatusCode::NOT_FOUND, "Not Found"),
    }
}

/// Whether `token` may be used now.
fn token_is_valid(auth: &Auth, inner: &Inner, token: &str) -> bool {
    match auth {
        Auth::Token(expected) => token == expected,
        Auth::App { .. } => inner
            .tokens
            .get(token)
            .is_some_and(|expires| *expires > SystemTime::now()),
    }
}

/// Git's smart HTTP protocol through `git http-backend` (CGI), behind basic auth with
/// the token as password, as github.com asks of `x-access-token`.
async fn git_http(
    shared: &Shared,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: Bytes,
) -> Response {
    let (root, authorized) = {
        let inner = shared.lock();
        let password = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Basic "))
            .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
            .and_then(|b| String::from_utf8(b).ok())
            .and_then(|up| {
                up.split_once(':')
                    .filter(|(user, _)| *user == "x-access-token")
                    .map(|(_, password)| password.to_owned())
            });
        let authorized = password.is_some_and(|p| token_is_valid(&shared.auth, &inner, &p));
        (inner.git_root.clone(), authorized)
    };
    let Some(root) = root else {
        return (StatusCode::NOT_FOUND, "Not Found").into_response();
    };
    if !authorized {
        return (
            StatusCode::UNAUTHORIZED,
            [("www-authenticate", "Basic realm=\"GitHub\"")],
            "Authentication required",
        )
            .into_response();
    }
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    let mut cmd = tokio::process::Command::new("git");
    cmd.arg("http-backend")
        .env("GIT_PROJECT_ROOT", &root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("REQUEST_METHOD", method.as_str())
        .env("PATH_INFO", uri.path().trim_start_matches("/git"))
        .env("QUERY_STRING", uri.query().unwrap_or(""))
        .env("CONTENT_TYPE", header("content-type"))
        .env("CONTENT_LENGTH", body.len().to_string())
        .env("HTTP_CONTENT_ENCODING", header("content-encoding"))
        .env("GIT_PROTOCOL", header("git-protocol"))
        .env("REMOTE_USER", "x-access-token")
        .env("REMOTE_ADDR", "127.0.0.1")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let Ok(mut child) = cmd.spawn() else {
        return (StatusCode::INTERNAL_SERVER_ERROR, "git http-backend").into_response();
    };
    if let Some(mut stdin) = child.stdin.take() {
        use tokio::io::AsyncWriteExt as _;
        let _ = stdin.write_all(&body).await;
    }
    let Ok(out) = child.wait_with_output().await else {
        return (StatusCode::INTERNAL_SERVER_ERROR, "git http-backend").into_response();
    };
    // CGI output: headers, a blank line, the body.
    let split = out
        .stdout
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, 4))
        .or_else(|| {
            out.stdout
                .windows(2)
                .position(|w| w == b"\n\n")
                .map(|i| (i, 2))
        });
    let Some((at, gap)) = split else {
        return (StatusCode::INTERNAL_SERVER_ERROR, out.stderr).into_response();
    };
    let head = String::from_utf8_lossy(&out.stdout[..at]).into_owned();
    let mut response = axum::http::Response::builder().status(StatusCode::OK);
    for line in head.lines() {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("status") {
            let code = value
                .split_whitespace()
                .next()
                .and_then(|c| c.parse().ok())
                .unwrap_or(500);
            response = response.status(code);
        } else {
            response = response.header(name, value);
        }
    }
    response
        .body(axum::body::Body::from(out.stdout[at + gap..].to_vec()))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

/// The claims of a JWT (header.payload.signature), if it has that shape and says RS256.
fn jwt_claims(token: &str) -> Option<Value> {
    let parts: Vec<&str> = token.split('.').collect();
    if parts.len() != 3 || parts[2].is_empty() {
        return None;
    }
    let decode = |part: &str| -> Option<Value> {
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(part)
            .ok()?;
        serde_json::from_slice(&bytes).ok()
    };
    let header = decode(parts[0])?;
    if header["alg"] != "RS256" {
        return None;
    }
    decode(parts[1])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_github_shaped() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_secs(1_795_000_000)),
            "2026-11-18T11:06:40Z"
        );
    }
}
