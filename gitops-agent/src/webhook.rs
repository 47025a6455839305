//! GitHub deliveries in, durable jobs out: what a delivery of `POST /webhooks/github`
//! means (the handler is [`crate::http::webhook`]).
//!
//! Order of checks: the body size (axum's limit, GitHub sends at most 25 MB), then the
//! `X-Hub-Signature-256` HMAC over the raw body in constant time (401 without a valid
//! one, and nothing else is read), then the delivery id, then the payload. Both of
//! GitHub's content types are accepted ([`payload_json`]): `json`, and `form` (the
//! API's default when creating a hook), whose body is `payload=<url-encoded JSON>`. Payloads are parsed with
//! minimal serde structs that ignore unknown fields, so a new GitHub event or action is
//! acknowledged and ignored instead of failing. The response is sent only after the
//! job (or the fact that the delivery was ignored) is committed to the database; a
//! redelivery carries the same `X-GitHub-Delivery` id and is answered without storing
//! anything.

use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;
use slipway_provenance::Trigger;

use crate::config::{Config, Secret};
use crate::job_kind::JobKind;
use crate::queue::NewJobs;

/// Checks `X-Hub-Signature-256` (`sha256=<hex>`) against the body in constant time.
pub fn signature_is_valid(secret: &Secret, body: &[u8], header: Option<&str>) -> bool {
    let Some(hex_sig) = header.and_then(|h| h.strip_prefix("sha256=")) else {
        return false;
    };
    let Ok(expected) = hex::decode(hex_sig.trim()) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.expose().as_bytes()) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&expected).is_ok()
}

/// The signature header value for `body`, as GitHub computes it (used by tests and
/// benchmarks to sign their own deliveries).
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret) {
        Ok(mac) => mac,
        Err(_) => return String::new(),
    };
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Why a delivery's body holds no payload to read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    #[error("a form-encoded delivery without a `payload` field; set the webhook's content type to application/json")]
    NoFormPayload,
    #[error("content type `{0}` is not one GitHub sends; set the webhook's content type to application/json")]
    UnsupportedContentType(String),
}

/// The JSON payload of a delivery, by its `Content-Type`: the body itself for
/// `application/json` (or no type), the `payload` field for
/// `application/x-www-form-urlencoded`.
pub fn payload_json<'a>(
    content_type: Option<&str>,
    body: &'a [u8],
) -> Result<std::borrow::Cow<'a, [u8]>, PayloadError> {
    let media = content_type
        .and_then(|t| t.split(';').next())
        .map(|t| t.trim().to_ascii_lowercase())
        .unwrap_or_default();
    match media.as_str() {
        "" | "application/json" => Ok(std::borrow::Cow::Borrowed(body)),
        "application/x-www-form-urlencoded" => form_urlencoded::parse(body)
            .find(|(k, _)| k == "payload")
            .map(|(_, v)| std::borrow::Cow::Owned(v.into_owned().into_bytes()))
            .ok_or(PayloadError::NoFormPayload),
        _ => Err(PayloadError::UnsupportedContentType(media)),
    }
}

#[derive(Debug, Deserialize, Default)]
struct User {
    login: Option<String>,
    name: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
struct RepositoryRef {
    full_name: Option<String>,
}

#[derive(Debug, Deserialize)]
struct PushEvent {
    #[serde(rename = "ref")]
    git_ref: Option<String>,
    after: Option<String>,
    #[serde(default)]
    deleted: bool,
    repository: Option<RepositoryRef>,
    pusher: Option<User>,
    sender: Option<User>,
    head_commit: Option<HeadCommit>,
}

#[derive(Debug, Deserialize)]
struct HeadCommit {
    author: Option<GitUser>,
}

/// A commit's author as GitHub knows it: `username` is the GitHub login, when GitHub
/// matched the commit's email to an account.
#[derive(Debug, Deserialize)]
struct GitUser {
    username: Option<String>,
}

#[derive(Debug, Deserialize)]
struct BaseRef {
    #[serde(rename = "ref")]
    git_ref: Option<String>,
    sha: Option<String>,
    /// `null` when a fork's repository was deleted.
    repo: Option<RepositoryRef>,
}

#[derive(Debug, Deserialize)]
struct PullRequest {
    number: Option<u64>,
    #[serde(default)]
    merged: bool,
    merge_commit_sha: Option<String>,
    base: Option<BaseRef>,
    head: Option<BaseRef>,
    merged_by: Option<User>,
    /// Who opened the pull request: its author, who may not approve its merge.
    user: Option<User>,
}

#[derive(Debug, Deserialize)]
struct PullRequestEvent {
    action: Option<String>,
    number: Option<u64>,
    pull_request: Option<PullRequest>,
    repository: Option<RepositoryRef>,
    sender: Option<User>,
}

#[derive(Debug, Deserialize)]
struct ReviewBody {
    id: Option<i64>,
    user: Option<User>,
    commit_id: Option<String>,
    state: Option<String>,
}

#[derive(Debug, Deserialize)]
struct PullRequestReviewEvent {
    action: Option<String>,
    review: Option<ReviewBody>,
    pull_request: Option<PullRequest>,
    repository: Option<RepositoryRef>,
}

/// What a delivery asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Ping,
    Deploy {
        repository: String,
        branch: String,
        commit_sha: String,
        pull_request: Option<u64>,
        actor: Option<String>,
        roots: Vec<String>,
        /// Who authored the change ([`crate::approvals`]).
        authors: Vec<String>,
        /// The merged pull request's head.
        head_sha: Option<String>,
    },
    /// An approving pull request review ([`crate::approvals`]).
    Review(crate::approvals::Review),
    /// Jobs of the pull request kinds (plans, previews, teardowns), with the merge
    /// job when a pull request with previews was merged.
    PullRequest(Vec<NewJobs>),
    Ignore(String),
}

fn is_sha(s: &str) -> bool {
    s.len() == 40 && s.bytes().all(|b| b.is_ascii_hexdigit()) && s.bytes().any(|b| b != b'0')
}

/// A body that does not parse as the event it claims to be.
#[derive(Debug, thiserror::Error)]
#[error("{event} payload: {source}")]
pub struct MalformedPayload {
    pub event: &'static str,
    pub source: serde_json::Error,
}

/// Decides what a delivery means for this configuration.
pub fn classify(config: &Config, event: &str, body: &[u8]) -> Result<Decision, MalformedPayload> {
    let ignore = |reason: String| Ok(Decision::Ignore(reason));
    match event {
        "ping" => Ok(Decision::Ping),
        "push" => {
            let push: PushEvent =
                serde_json::from_slice(body).map_err(|source| MalformedPayload {
                    event: "push",
                    source,
                })?;
            let full_name = push
                .repository
                .and_then(|r| r.full_name)
                .unwrap_or_default();
            let Some(repo) = config.repository_for_github(&full_name) else {
                return ignore(format!("repository `{full_name}` is not configured"));
            };
            let wanted = format!("refs/heads/{}", repo.branch);
            let git_ref = push.git_ref.unwrap_or_default();
            if git_ref != wanted {
                return ignore(format!("push to `{git_ref}`, not the tracked `{wanted}`"));
            }
            let after = push.after.unwrap_or_default();
            if push.deleted || !is_sha(&after) {
                return ignore(format!("push deletes `{git_ref}` or has no new commit"));
            }
            Ok(Decision::Deploy {
                repository: repo.name.clone(),
                branch: repo.branch.clone(),
                commit_sha: after.to_ascii_lowercase(),
                pull_request: None,
                actor: push
                    .pusher
                    .and_then(|p| p.name.or(p.login))
                    .or_else(|| push.sender.and_then(|s| s.login)),
                roots: repo.roots.iter().map(|r| r.name.clone()).collect(),
                authors: push
                    .head_commit
                    .and_then(|c| c.author)
                    .and_then(|a| a.username)
                    .into_iter()
                    .collect(),
                head_sha: None,
            })
        }
        "pull_request_review" => {
            let event: PullRequestReviewEvent =
                serde_json::from_slice(body).map_err(|source| MalformedPayload {
                    event: "pull_request_review",
                    source,
                })?;
            Ok(classify_review(config, event))
        }
        "pull_request" => {
            let pr: PullRequestEvent =
                serde_json::from_slice(body).map_err(|source| MalformedPayload {
                    event: "pull_request",
                    source,
                })?;
            Ok(classify_pull_request(config, pr))
        }
        other => ignore(format!("event `{other}` is not handled")),
    }
}

/// A `pull_request_review` delivery: a review `submitted` in state `approved` is kept
/// for the pull request's merge ([`crate::approvals::receive_review`]); nothing else
/// is acted on.
fn classify_review(config: &Config, event: PullRequestReviewEvent) -> Decision {
    let full_name = event
        .repository
        .and_then(|r| r.full_name)
        .unwrap_or_default();
    let Some(repo) = config.repository_for_github(&full_name) else {
        return Decision::Ignore(format!("repository `{full_name}` is not configured"));
    };
    let action = event.action.unwrap_or_default();
    let (Some(review), Some(pull)) = (event.review, event.pull_request) else {
        return Decision::Ignore("pull_request_review without a review".into());
    };
    let state = review.state.unwrap_or_default();
    if action != "submitted" || !state.eq_ignore_ascii_case("approved") {
        return Decision::Ignore(format!(
            "review `{action}` in state `{state}`: only a submitted approval approves"
        ));
    }
    let (Some(review_id), Some(login), Some(commit), Some(number)) = (
        review.id,
        review.user.and_then(|u| u.login),
        review.commit_id.filter(|c| is_sha(c)),
        pull.number,
    ) else {
        return Decision::Ignore(
            "review without an id, a reviewer, a commit or a pull request".into(),
        );
    };
    Decision::Review(crate::approvals::Review {
        repository: repo.name.clone(),
        pull_request: number,
        review_id,
        login,
        commit_sha: commit.to_ascii_lowercase(),
        pull_request_author: pull.user.and_then(|u| u.login),
    })
}

/// A `pull_request` delivery: `opened`, `reopened` and `synchronize` plan the roots
/// (the worker skips those the change does not touch) and bring up the previews;
/// `closed` tears the previews down and, when merged, deploys the merge commit.
fn classify_pull_request(config: &Config, pr: PullRequestEvent) -> Decision {
    let action = pr.action.unwrap_or_default();
    let Some(pull) = pr.pull_request else {
        return Decision::Ignore("pull_request event without a pull_request".into());
    };
    let full_name = pr.repository.and_then(|r| r.full_name).unwrap_or_default();
    let Some(repo) = config.repository_for_github(&full_name) else {
        return Decision::Ignore(format!("repository `{full_name}` is not configured"));
    };
    let Some(number) = pull.number.or(pr.number) else {
        return Decision::Ignore("pull request without a number".into());
    };
    let (base_ref, base_sha) = pull
        .base
        .map(|b| (b.git_ref.unwrap_or_default(), b.sha))
        .unwrap_or_default();
    let sender = pr.sender.and_then(|s| s.login);
    let previews: Vec<String> = repo
        .roots
        .iter()
        .filter(|r| r.preview.is_some())
        .map(|r| r.name.clone())
        .collect();
    let head = pull.head;
    let head_sha = head
        .as_ref()
        .and_then(|h| h.sha.clone())
        .filter(|s| is_sha(s))
        .map(|s| s.to_ascii_lowercase());
    let pull_request_jobs = |kind: JobKind, commit: String, roots: Vec<String>| NewJobs {
        delivery: None,
        repository: repo.name.clone(),
        branch: repo.branch.clone(),
        commit_sha: commit,
        trigger: match kind {
            JobKind::PreviewDestroy => Trigger::PrClosed,
            _ => Trigger::PullRequest,
        },
        pull_request: Some(number),
        actor: sender.clone(),
        roots,
        kind,
        head_sha: head_sha.clone(),
        base_sha: base_sha.clone().filter(|s| is_sha(s)),
        authors: Vec::new(),
    };
    match action.as_str() {
        "opened" | "reopened" | "synchronize" => {
            if base_ref != repo.branch {
                return Decision::Ignore(format!(
                    "pull request into `{base_ref}`, not the tracked `{}`",
                    repo.branch
                ));
            }
            let Some(head_sha) = head_sha.clone() else {
                return Decision::Ignore("pull request without a head sha".into());
            };
            // A fork's code would run on this machine: Terraform runs providers and
            // data sources at plan time. Previews never come from forks.
            let head_repo = head.and_then(|h| h.repo).and_then(|r| r.full_name);
            let from_fork = !head_repo
                .as_deref()
                .is_some_and(|h| h.eq_ignore_ascii_case(&full_name));
            if from_fork && !repo.plan_pull_requests_from_forks {
                return Decision::Ignore(format!(
                    "pull request #{number} comes from a fork ({}); set plan_pull_requests_from_forks = true on the repository to plan forks' pull requests",
                    head_repo.as_deref().unwrap_or("deleted")
                ));
            }
            let planned = pull
                .merge_commit_sha
                .filter(|s| is_sha(s))
                .map(|s| s.to_ascii_lowercase())
                .unwrap_or_else(|| head_sha.clone());
            let plans: Vec<String> = repo
                .roots
                .iter()
                .filter(|r| r.plan_pull_requests)
                .map(|r| r.name.clone())
                .collect();
            let mut jobs = Vec::new();
            if !plans.is_empty() {
                jobs.push(pull_request_jobs(JobKind::PullRequestPlan, planned, plans));
            }
            if !previews.is_empty() && !from_fork {
                jobs.push(pull_request_jobs(JobKind::Preview, head_sha, previews));
            }
            if jobs.is_empty() {
                return Decision::Ignore("no root plans pull requests or has previews".into());
            }
            Decision::PullRequest(jobs)
        }
        "closed" => {
            let teardown = (!previews.is_empty()).then(|| {
                let commit = head_sha.clone().unwrap_or_default();
                pull_request_jobs(JobKind::PreviewDestroy, commit, previews)
            });
            let merge_sha = pull.merge_commit_sha.filter(|s| is_sha(s));
            let deploy = if !pull.merged {
                Err("pull request was closed without being merged".to_owned())
            } else if base_ref != repo.branch {
                Err(format!(
                    "pull request merged into `{base_ref}`, not the tracked `{}`",
                    repo.branch
                ))
            } else if let Some(sha) = merge_sha {
                let mut merge = NewJobs::merge(
                    None,
                    repo.name.clone(),
                    repo.branch.clone(),
                    sha.to_ascii_lowercase(),
                    Trigger::Webhook,
                    Some(number),
                    pull.merged_by.and_then(|u| u.login).or(sender.clone()),
                    repo.roots.iter().map(|r| r.name.clone()).collect(),
                );
                // Its author may not approve it; a review approves the head merged.
                merge.authors = pull.user.and_then(|u| u.login).into_iter().collect();
                merge.head_sha = head_sha.clone();
                Ok(merge)
            } else {
                Err("merged pull request has no merge_commit_sha".to_owned())
            };
            match (deploy, teardown) {
                (Ok(merge), None) => Decision::Deploy {
                    repository: merge.repository,
                    branch: merge.branch,
                    commit_sha: merge.commit_sha,
                    pull_request: merge.pull_request,
                    actor: merge.actor,
                    roots: merge.roots,
                    authors: merge.authors,
                    head_sha: merge.head_sha,
                },
                (Ok(merge), Some(teardown)) => Decision::PullRequest(vec![merge, teardown]),
                (Err(_), Some(teardown)) => Decision::PullRequest(vec![teardown]),
                (Err(reason), None) => Decision::Ignore(reason),
            }
        }
        other => Decision::Ignore(format!(
            "pull_request action `{other}` is not one the agent acts on"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    /// GitHub's published example payloads, vendored with the test fixtures
    /// (`tests/fixtures/github-webhooks`, see its README for source and licence).
    const FIXTURES: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/fixtures/github-webhooks"
    );

    /// A fixture payload, parsed; a missing or broken fixture fails the test.
    fn fixture(path: &str) -> serde_json::Value {
        let full = Path::new(FIXTURES).join(path);
        let text = std::fs::read_to_string(&full)
            .unwrap_or_else(|e| panic!("read fixture {}: {e}", full.display()));
        serde_json::from_str(&text).expect("fixture is JSON")
    }

    /// One repository with one root, `app`; tests append to it.
    const CONFIG: &str = r#"
[secrets]
signing_key = { env = "X" }
[[repository]]
name = "hello"
github = "Codertocat/Hello-World"
url = "/srv/git/hello"
[[repository.root]]
name = "app"
path = "app"
"#;

    fn config() -> Config {
        Config::parse(CONFIG, Path::new("/")).unwrap()
    }

    #[test]
    fn signatures_are_checked() {
        let secret = Secret::new("It's a Secret to Everybody");
        let body = b"Hello, World!";
        // GitHub's documented example for this secret and body.
        let good = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        assert_eq!(sign(secret.expose().as_bytes(), body), good);
        assert!(signature_is_valid(&secret, body, Some(good)));
        assert!(!signature_is_valid(&secret, b"Hello, World?", Some(good)));
        assert!(!signature_is_valid(&secret, body, None));
        assert!(!signature_is_valid(&secret, body, Some("sha1=abc")));
        assert!(!signature_is_valid(
            &Secret::new("old secret"),
            body,
            Some(good)
        ));
    }

    #[test]
    fn form_bodies_carry_the_json_in_their_payload_field() {
        let json = br#"{"zen":"Keep it logically awesome.","hook_id":1}"#;
        let form = format!(
            "payload={}",
            form_urlencoded::byte_serialize(json).collect::<String>()
        );
        let form_type = Some("application/x-www-form-urlencoded");
        assert_eq!(
            payload_json(form_type, form.as_bytes()).unwrap().as_ref(),
            json
        );
        assert_eq!(
            payload_json(Some("application/json; charset=utf-8"), json)
                .unwrap()
                .as_ref(),
            json
        );
        assert_eq!(payload_json(None, json).unwrap().as_ref(), json);
        assert_eq!(
            payload_json(form_type, b"other=1"),
            Err(PayloadError::NoFormPayload)
        );
        assert!(matches!(
            payload_json(Some("text/xml"), json),
            Err(PayloadError::UnsupportedContentType(t)) if t == "text/xml"
        ));
    }

    #[test]
    fn pull_requests_are_planned_previewed_and_torn_down() {
        let c = Config::parse(
            &format!(
                "{CONFIG}preview = true\n[[repository.root]]\nname = \"docs\"\npath = \"docs\"\nplan_pull_requests = false\n"
            ),
            Path::new("/"),
        )
        .unwrap();
        let decide = |v: &serde_json::Value| {
            classify(&c, "pull_request", &serde_json::to_vec(v).unwrap()).unwrap()
        };
        let mut opened = fixture("pull_request/opened.payload.json");
        opened["pull_request"]["base"]["ref"] = "main".into();
        let head = "ec26c3e57ca3a959ca5aad62de7213c562f8c821";
        let Decision::PullRequest(jobs) = decide(&opened) else {
            panic!("{:?}", decide(&opened));
        };
        let kinds: Vec<_> = jobs.iter().map(|j| (j.kind, j.roots.clone())).collect();
        assert_eq!(
            kinds,
            [
                (JobKind::PullRequestPlan, vec!["app".to_owned()]),
                (JobKind::Preview, vec!["app".to_owned()]),
            ]
        );
        // No test merge yet: the head is planned.
        assert_eq!(jobs[0].commit_sha, head);
        assert_eq!(jobs[0].head_sha.as_deref(), Some(head));
        assert_eq!(jobs[0].trigger, Trigger::PullRequest);
        assert_eq!(jobs[0].pull_request, Some(2));
        opened["pull_request"]["merge_commit_sha"] = "c".repeat(40).into();
        let Decision::PullRequest(jobs) = decide(&opened) else {
            panic!("not planned");
        };
        assert_eq!(jobs[0].commit_sha, "c".repeat(40));
        assert_eq!(jobs[1].commit_sha, head, "a preview is of the head");

        let mut fork = opened.clone();
        fork["pull_request"]["head"]["repo"]["full_name"] = "mallory/Hello-World".into();
        assert!(matches!(decide(&fork), Decision::Ignore(r) if r.contains("fork")));

        let mut closed = fixture("pull_request/closed.payload.json");
        closed["pull_request"]["base"]["ref"] = "main".into();
        let Decision::PullRequest(jobs) = decide(&closed) else {
            panic!("no teardown");
        };
        assert_eq!(jobs.len(), 1);
        assert_eq!(jobs[0].kind, JobKind::PreviewDestroy);
        assert_eq!(jobs[0].trigger, Trigger::PrClosed);
        closed["pull_request"]["merged"] = true.into();
        closed["pull_request"]["merge_commit_sha"] = "a".repeat(40).into();
        let Decision::PullRequest(jobs) = decide(&closed) else {
            panic!("no merge");
        };
        assert_eq!(
            jobs.iter().map(|j| j.kind).collect::<Vec<_>>(),
            [JobKind::Merge, JobKind::PreviewDestroy]
        );
        assert_eq!(jobs[0].roots, ["app", "docs"]);
    }

    #[test]
    fn an_approving_review_is_kept_and_other_reviews_are_ignored() {
        let c = config();
        let review = fixture("pull_request_review/submitted-approved.payload.json");
        let decide = |v: &serde_json::Value| {
            classify(&c, "pull_request_review", &serde_json::to_vec(v).unwrap()).unwrap()
        };
        assert_eq!(
            decide(&review),
            Decision::Review(crate::approvals::Review {
                repository: "hello".into(),
                pull_request: 2,
                review_id: 237895671,
                login: "octocat".into(),
                commit_sha: "ec26c3e57ca3a959ca5aad62de7213c562f8c821".into(),
                pull_request_author: Some("Codertocat".into()),
            })
        );
        for (field, value) in [("state", "commented"), ("state", "changes_requested")] {
            let mut other = review.clone();
            other["review"][field] = value.into();
            assert!(matches!(decide(&other), Decision::Ignore(_)), "{value}");
        }
        let mut dismissed = review.clone();
        dismissed["action"] = "dismissed".into();
        assert!(matches!(decide(&dismissed), Decision::Ignore(_)));
        let mut elsewhere = review;
        elsewhere["repository"]["full_name"] = "mallory/other".into();
        assert!(matches!(decide(&elsewhere), Decision::Ignore(r) if r.contains("not configured")));
    }

    #[test]
    fn real_payloads_are_classified() {
        let mut closed = fixture("pull_request/closed.payload.json");
        let c = config();
        let decide = |event: &str, v: &serde_json::Value| {
            classify(&c, event, &serde_json::to_vec(v).unwrap()).unwrap()
        };
        assert!(
            matches!(decide("pull_request", &closed), Decision::Ignore(r) if r.contains("without being merged"))
        );
        closed["pull_request"]["merged"] = true.into();
        assert!(
            matches!(decide("pull_request", &closed), Decision::Ignore(r) if r.contains("`master`"))
        );
        closed["pull_request"]["base"]["ref"] = "main".into();
        closed["pull_request"]["merge_commit_sha"] = "a".repeat(40).into();
        closed["pull_request"]["merged_by"] = serde_json::json!({"login": "mona"});
        assert_eq!(
            decide("pull_request", &closed),
            Decision::Deploy {
                repository: "hello".into(),
                branch: "main".into(),
                commit_sha: "a".repeat(40),
                pull_request: Some(2),
                actor: Some("mona".into()),
                roots: vec!["app".into()],
                authors: vec!["Codertocat".into()],
                head_sha: Some("ec26c3e57ca3a959ca5aad62de7213c562f8c821".into()),
            }
        );
        let opened = fixture("pull_request/opened.payload.json");
        assert!(matches!(
            decide("pull_request", &opened),
            Decision::Ignore(_)
        ));
        let mut push = fixture("push/payload.json");
        assert!(matches!(decide("push", &push), Decision::Ignore(r) if r.contains("refs/tags")));
        push["ref"] = "refs/heads/main".into();
        push["deleted"] = false.into();
        push["after"] = "b".repeat(40).into();
        assert!(
            matches!(decide("push", &push), Decision::Deploy { commit_sha, .. } if commit_sha == "b".repeat(40))
        );
        let ping = fixture("ping/payload.json");
        assert_eq!(decide("ping", &ping), Decision::Ping);
        assert!(
            matches!(decide("workflow_job", &ping), Decision::Ignore(r) if r.contains("not handled"))
        );
        assert!(matches!(
            decide(
                "pull_request",
                &serde_json::json!({"action": "some_future_action"})
            ),
            Decision::Ignore(_)
        ));
    }
}
