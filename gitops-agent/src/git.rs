//! Git through libgit2: a bare cache per repository under the data directory, fetched
//! before each job, and a clean work tree per job checked out from it.
//!
//! Using a cache plus fresh work trees means no job can see files another job left,
//! and the exact commit that was asked for is what Terraform runs on. All functions
//! here block; callers run them on the blocking pool, one repository at a time.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use git2::{build::CheckoutBuilder, FetchOptions, Oid, RemoteCallbacks, Repository};

use crate::config::{self, Secret};
use crate::github::GitHub;

/// A git operation that failed, with what it was doing.
#[derive(Debug, thiserror::Error)]
#[error("git: {action}: {message}")]
pub struct GitError {
    pub action: String,
    pub message: String,
}

/// Whether `url` is fetched over HTTP(S), the only transport that takes a token.
pub fn is_http(url: &str) -> bool {
    url.starts_with("https://") || url.starts_with("http://")
}

/// A local remote that does not exist: libgit2 would only say "unsupported URL
/// protocol", which misleads.
fn check_local(url: &str) -> Result<(), GitError> {
    let local = !url.contains("://") && !url.contains('@');
    if local && !Path::new(url).exists() {
        return Err(GitError {
            action: format!("open {url}"),
            message: "no repository there; the repository's `url` must be an https or ssh URL, or the path of an existing local repository".into(),
        });
    }
    Ok(())
}

fn err(action: impl Into<String>) -> impl FnOnce(git2::Error) -> GitError {
    let action = action.into();
    move |e| GitError {
        action,
        message: e.message().to_owned(),
    }
}

/// The agent's way to a repository: its bare [`Cache`] under `<data_dir>/git`, one
/// lock per repository (libgit2 must not fetch into the same bare repository from two
/// threads at once), and the token for fetches over HTTP(S).
pub struct GitAccess {
    dir: PathBuf,
    locks: Mutex<HashMap<String, Arc<Mutex<()>>>>,
    git_token: Option<Secret>,
    /// When the agent is a GitHub App, fetches over HTTPS use its installation token
    /// (unless `secrets.git_token` is set).
    github: Option<GitHub>,
}

impl GitAccess {
    pub fn new(data_dir: &Path, git_token: Option<Secret>, github: Option<GitHub>) -> GitAccess {
        GitAccess {
            dir: data_dir.join("git"),
            locks: Mutex::default(),
            git_token,
            github,
        }
    }

    fn lock_for(&self, name: &str) -> Arc<Mutex<()>> {
        let mut map = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(name.to_owned()).or_default().clone()
    }

    /// Runs `f` with the repository's cache opened and locked. Blocks.
    pub fn with_cache<T, E: From<GitError>>(
        &self,
        repo: &config::Repository,
        f: impl FnOnce(&Cache) -> Result<T, E>,
    ) -> Result<T, E> {
        let lock = self.lock_for(&repo.name);
        let _guard = lock.lock().unwrap_or_else(|p| p.into_inner());
        let cache = Cache::open(&self.dir, &repo.name, &repo.url, &repo.branch)?;
        f(&cache)
    }

    /// The token for git over HTTP(S) from `url`: `secrets.git_token`, else the
    /// GitHub App's installation token (renewed before it expires), else none. ssh and
    /// local remotes take no token, so none is fetched for them.
    pub async fn credentials(&self, url: &str) -> Option<Secret> {
        if !is_http(url) {
            return None;
        }
        if let Some(token) = &self.git_token {
            return Some(token.clone());
        }
        let github = self.github.as_ref()?;
        match github.git_token().await {
            Ok(token) => token,
            Err(e) => {
                tracing::warn!(error = %e, "no GitHub App installation token for git; fetching without one");
                None
            }
        }
    }
}

/// What the audit log says about a commit.
#[derive(Debug, Clone)]
pub struct CommitInfo {
    pub sha: String,
    /// `Name <email>`.
    pub author: String,
}

/// A repository's bare cache.
pub struct Cache {
    repo: Repository,
    url: String,
    branch: String,
}

fn remote_callbacks(token: Option<&Secret>) -> RemoteCallbacks<'_> {
    let mut callbacks = RemoteCallbacks::new();
    callbacks.credentials(move |_url, username, allowed| {
        if allowed.contains(git2::CredentialType::USER_PASS_PLAINTEXT) {
            if let Some(token) = token {
                return git2::Cred::userpass_plaintext("x-access-token", token.expose());
            }
        }
        if allowed.contains(git2::CredentialType::SSH_KEY) {
            return git2::Cred::ssh_key_from_agent(username.unwrap_or("git"));
        }
        git2::Cred::default()
    });
    callbacks
}

fn cache_dir_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect::<String>()
        + ".git"
}

impl Cache {
    /// Opens (creating if needed) the cache for repository `name` under `dir`.
    pub fn open(dir: &Path, name: &str, url: &str, branch: &str) -> Result<Cache, GitError> {
        let path = dir.join(cache_dir_name(name));
        let repo = if path.exists() {
            Repository::open_bare(&path).map_err(err(format!("open cache {}", path.display())))?
        } else {
            std::fs::create_dir_all(dir).map_err(|e| GitError {
                action: format!("create {}", dir.display()),
                message: e.to_string(),
            })?;
            Repository::init_bare(&path).map_err(err(format!("create cache {}", path.display())))?
        };
        Ok(Cache {
            repo,
            url: url.to_owned(),
            branch: branch.to_owned(),
        })
    }

    fn tracking_ref(&self) -> String {
        format!("refs/remotes/origin/{}", self.branch)
    }

    /// Fetches the tracked branch; returns its tip.
    pub fn fetch(&self, token: Option<&Secret>) -> Result<String, GitError> {
        let refspec = format!("+refs/heads/{}:{}", self.branch, self.tracking_ref());
        self.fetch_refspecs(&[refspec], token, format!("fetch branch {}", self.branch))?;
        self.tip()
    }

    fn fetch_refspecs(
        &self,
        refspecs: &[String],
        token: Option<&Secret>,
        action: String,
    ) -> Result<(), GitError> {
        check_local(&self.url)?;
        let mut remote = self
            .repo
            .remote_anonymous(&self.url)
            .map_err(err("set up remote"))?;
        let mut options = FetchOptions::new();
        options.remote_callbacks(remote_callbacks(token));
        options.download_tags(git2::AutotagOption::None);
        remote
            .fetch(refspecs, Some(&mut options), None)
            .map_err(err(action))
    }

    /// Fetches pull request `number`'s refs as GitHub publishes them on the base
    /// repository (`refs/pull/N/head`, and `refs/pull/N/merge` while it merges
    /// cleanly), also when the head lives in a fork. A ref the remote does not have
    /// is simply not fetched: the caller checks for the commit it needs.
    pub fn fetch_pull_request(&self, number: u64, token: Option<&Secret>) -> Result<(), GitError> {
        let refspecs = [
            format!("+refs/pull/{number}/head:refs/slipway/pull/{number}/head"),
            format!("+refs/pull/{number}/merge:refs/slipway/pull/{number}/merge"),
        ];
        self.fetch_refspecs(&refspecs, token, format!("fetch pull request #{number}"))
    }

    /// Fetches branch `name` (any pushed branch, not only the tracked one) into
    /// `refs/slipway/branches/<name>`: its tip, or `None` when the remote has no such
    /// branch (an earlier fetch of a branch deleted since does not count).
    pub fn fetch_branch(
        &self,
        name: &str,
        token: Option<&Secret>,
    ) -> Result<Option<String>, GitError> {
        let local = format!("refs/slipway/branches/{name}");
        if let Ok(mut stale) = self.repo.find_reference(&local) {
            stale
                .delete()
                .map_err(err(format!("forget the last fetch of branch {name}")))?;
        }
        let refspec = format!("+refs/heads/{name}:{local}");
        self.fetch_refspecs(&[refspec], token, format!("fetch branch {name}"))?;
        match self.repo.find_reference(&local) {
            Ok(reference) => Ok(Some(
                reference
                    .peel_to_commit()
                    .map_err(err(format!("resolve branch {name}")))?
                    .id()
                    .to_string(),
            )),
            Err(e) if e.code() == git2::ErrorCode::NotFound => Ok(None),
            Err(e) => Err(err(format!("find branch {name}"))(e)),
        }
    }

    /// The newest common ancestor of `a` and `b`, if they have one.
    pub fn merge_base(&self, a: &str, b: &str) -> Result<Option<String>, GitError> {
        match self.repo.merge_base(Self::oid(a)?, Self::oid(b)?) {
            Ok(oid) => Ok(Some(oid.to_string())),
            Err(e) if e.code() == git2::ErrorCode::NotFound => Ok(None),
            Err(e) => Err(err(format!("merge base of {a} and {b}"))(e)),
        }
    }

    /// The tracked branch's tip as last fetched.
    pub fn tip(&self) -> Result<String, GitError> {
        let reference = self
            .repo
            .find_reference(&self.tracking_ref())
            .map_err(err(format!("find branch {}", self.branch)))?;
        let oid = reference
            .peel_to_commit()
            .map_err(err(format!("resolve branch {}", self.branch)))?
            .id();
        Ok(oid.to_string())
    }

    fn oid(sha: &str) -> Result<Oid, GitError> {
        Oid::from_str(sha).map_err(err(format!("parse commit id `{sha}`")))
    }

    /// Whether the cache holds `sha` as a commit.
    pub fn has_commit(&self, sha: &str) -> bool {
        Self::oid(sha)
            .ok()
            .and_then(|oid| self.repo.find_commit(oid).ok())
            .is_some()
    }

    /// Author and full id of a commit.
    pub fn commit_info(&self, sha: &str) -> Result<CommitInfo, GitError> {
        let commit = self
            .repo
            .find_commit(Self::oid(sha)?)
            .map_err(err(format!("find commit {sha}")))?;
        let author = commit.author();
        Ok(CommitInfo {
            sha: commit.id().to_string(),
            author: format!(
                "{} <{}>",
                author.name().unwrap_or("?"),
                author.email().unwrap_or("?")
            ),
        })
    }

    /// Whether `ancestor` is `descendant` or one of its ancestors.
    pub fn is_ancestor_or_same(&self, ancestor: &str, descendant: &str) -> Result<bool, GitError> {
        let a = Self::oid(ancestor)?;
        let d = Self::oid(descendant)?;
        if a == d {
            return Ok(true);
        }
        self.repo
            .graph_descendant_of(d, a)
            .map_err(err(format!("compare {ancestor} with {descendant}")))
    }

    /// Repository-relative paths (`/`-separated) that differ between `base` and
    /// `target`; with no base, those the target's first parent does not have the same
    /// (for a root commit: every file).
    pub fn changed_paths(&self, base: Option<&str>, target: &str) -> Result<Vec<String>, GitError> {
        let target_commit = self
            .repo
            .find_commit(Self::oid(target)?)
            .map_err(err(format!("find commit {target}")))?;
        let base_tree = match base {
            Some(b) => Some(
                self.repo
                    .find_commit(Self::oid(b)?)
                    .and_then(|c| c.tree())
                    .map_err(err(format!("read commit {b}")))?,
            ),
            None => match target_commit.parent(0) {
                Ok(parent) => Some(parent.tree().map_err(err("read parent tree"))?),
                Err(_) => None,
            },
        };
        let target_tree = target_commit.tree().map_err(err("read tree"))?;
        let diff = self
            .repo
            .diff_tree_to_tree(base_tree.as_ref(), Some(&target_tree), None)
            .map_err(err("diff trees"))?;
        let mut paths = Vec::new();
        for delta in diff.deltas() {
            for file in [delta.old_file(), delta.new_file()] {
                if let Some(p) = file.path().and_then(|p| p.to_str()) {
                    let p = p.replace('\\', "/");
                    if !paths.contains(&p) {
                        paths.push(p);
                    }
                }
            }
        }
        Ok(paths)
    }

    /// Writes the files of commit `sha` into the empty directory `dir`.
    pub fn checkout(&self, sha: &str, dir: &Path) -> Result<PathBuf, GitError> {
        let commit = self
            .repo
            .find_commit(Self::oid(sha)?)
            .map_err(err(format!("find commit {sha}")))?;
        std::fs::create_dir_all(dir).map_err(|e| GitError {
            action: format!("create work tree {}", dir.display()),
            message: e.to_string(),
        })?;
        let dir = std::path::absolute(dir).map_err(|e| GitError {
            action: format!("resolve {}", dir.display()),
            message: e.to_string(),
        })?;
        let mut builder = CheckoutBuilder::new();
        builder
            .target_dir(&dir)
            .force()
            .recreate_missing(true)
            .update_index(false);
        self.repo
            .checkout_tree(commit.as_object(), Some(&mut builder))
            .map_err(err(format!("check out {sha}")))?;
        Ok(dir)
    }
}

impl crate::selection::Graph for Cache {
    type Error = GitError;
    fn has_commit(&self, sha: &str) -> bool {
        Cache::has_commit(self, sha)
    }
    fn is_ancestor_or_same(&self, ancestor: &str, descendant: &str) -> Result<bool, GitError> {
        Cache::is_ancestor_or_same(self, ancestor, descendant)
    }
}

/// The tip of `branch` at `url` without fetching objects (like `git ls-remote`), for
/// the manual and API triggers when no commit is given.
pub fn remote_tip(url: &str, branch: &str, token: Option<&Secret>) -> Result<String, GitError> {
    check_local(url)?;
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let scratch =
        std::env::temp_dir().join(format!("slipway-ls-remote-{}-{n}", std::process::id()));
    let repo = Repository::init_bare(&scratch).map_err(err("create scratch repository"))?;
    let result = (|| {
        let mut remote = repo.remote_anonymous(url).map_err(err("set up remote"))?;
        let connection = remote
            .connect_auth(git2::Direction::Fetch, Some(remote_callbacks(token)), None)
            .map_err(err(format!("connect to {}", redact_url(url))))?;
        let wanted = format!("refs/heads/{branch}");
        let heads = connection.list().map_err(err("list remote branches"))?;
        heads
            .iter()
            .find(|h| h.name() == wanted)
            .map(|h| h.oid().to_string())
            .ok_or_else(|| GitError {
                action: format!("find branch {branch}"),
                message: "the remote has no such branch".into(),
            })
    })();
    drop(repo);
    let _ = std::fs::remove_dir_all(&scratch);
    result
}

/// A URL with any `user:password@` removed, for messages.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}://{}", &url[..scheme], &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_their_credentials() {
        assert_eq!(
            redact_url("https://user:pw@github.com/a/b"),
            "https://github.com/a/b"
        );
        assert_eq!(redact_url("/srv/git/x"), "/srv/git/x");
    }
}
