//! The agent's TOML configuration: which repositories and Terraform roots it owns, how
//! it listens, and where its secrets come from.
//!
//! Secrets are never written in the file itself: each one names an environment variable
//! (`{ env = "NAME" }`) or a file (`{ file = "/path" }`, relative to the configuration
//! file), so the configuration can be committed and reviewed. Everything is checked at start, and every error names the
//! key at fault (`repository[0].root[1].path`) and says how to fix it, because an agent
//! that starts with a typo would silently skip merges.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

mod approvals;
pub use approvals::ApprovalSettings;

/// Where a configuration error is and what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read configuration file {path}: {error}; give its path with --config or SLIPWAY_CONFIG")]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("configuration file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("configuration key `{key}`: {message}")]
    Invalid { key: String, message: String },
}

pub(crate) fn invalid(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        message: message.into(),
    }
}

/// A secret's source. Exactly one of `env` or `file` must be given.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SecretSource {
    pub env: Option<String>,
    pub file: Option<PathBuf>,
}

/// A secret value. Its `Debug` never prints the value, so it cannot leak into a log.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }
    /// The value; callers must not log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

impl SecretSource {
    pub(crate) fn check(&self, key: &str) -> Result<(), ConfigError> {
        match (&self.env, &self.file) {
            (Some(_), Some(_)) => Err(invalid(key, "give either `env` or `file`, not both")),
            (None, None) => Err(invalid(
                key,
                "give `env = \"VARIABLE\"` or `file = \"/path\"` to say where the secret comes from",
            )),
            (Some(name), None) if name.trim().is_empty() => {
                Err(invalid(format!("{key}.env"), "must name an environment variable"))
            }
            _ => Ok(()),
        }
    }

    /// Reads the secret. The error names the key and the variable or file, never the value.
    pub fn resolve(&self, key: &str) -> Result<Secret, ConfigError> {
        let value = match (&self.env, &self.file) {
            (Some(name), _) => std::env::var(name).map_err(|_| {
                invalid(
                    format!("{key}.env"),
                    format!("environment variable {name} is not set; export it or use `file`"),
                )
            })?,
            (None, Some(path)) if path.extension().is_some_and(|e| e == "pub") => {
                return Err(invalid(
                    format!("{key}.file"),
                    format!(
                        "{} is a public key; give the private key (`slipway-agent keygen` writes slipway-agent.key)",
                        path.display()
                    ),
                ))
            }
            (None, Some(path)) => std::fs::read_to_string(path).map_err(|e| {
                invalid(
                    format!("{key}.file"),
                    format!("cannot read {}: {e}", path.display()),
                )
            })?,
            (None, None) => return Err(invalid(key, "no source given")),
        };
        let value = value.trim().to_owned();
        if value.is_empty() {
            return Err(invalid(key, "the secret is empty"));
        }
        Ok(Secret(value))
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    data_dir: Option<PathBuf>,
    terraform: Option<PathBuf>,
    max_parallel: Option<usize>,
    job_timeout_secs: Option<u64>,
    shutdown_grace_secs: Option<u64>,
    #[serde(default)]
    server: RawServer,
    github: Option<RawGithub>,
    #[serde(default)]
    poller: RawPoller,
    #[serde(default)]
    secrets: RawSecrets,
    #[serde(default)]
    previews: RawPreviews,
    #[serde(default, rename = "repository")]
    repositories: Vec<RawRepository>,
    #[serde(default)]
    mcp: RawMcp,
    #[serde(default)]
    approvals: approvals::RawApprovals,
    #[serde(default)]
    drift: RawDrift,
    #[serde(default)]
    database: RawDatabase,
}

/// `[database]`: where the agent's state is kept ([`crate::store`]).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDatabase {
    /// libpq connection settings of a shared PostgreSQL database.
    postgres: Option<String>,
}

/// Where the agent keeps its state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseLocation {
    /// The embedded default: `slipway.db` in the data directory.
    Sqlite(PathBuf),
    /// A shared PostgreSQL database, by its libpq settings (never a password: that
    /// comes from `SLIPWAY_DATABASE_PASSWORD`).
    Postgres(String),
}

fn parse_database(raw: &RawDatabase, data_dir: &Path) -> Result<DatabaseLocation, ConfigError> {
    let Some(settings) = &raw.postgres else {
        return Ok(DatabaseLocation::Sqlite(data_dir.join("slipway.db")));
    };
    let parsed: postgres::Config = settings.parse().map_err(|_| {
        invalid(
            "database.postgres",
            "does not parse: use libpq's form (`host=/run/postgresql dbname=slipway user=slipway`) or a postgres:// URL",
        )
    })?;
    if parsed.get_password().is_some() {
        return Err(invalid(
            "database.postgres",
            format!(
                "holds a password: remove it and set {} in the agent's environment instead",
                crate::store::postgres::PASSWORD_ENV
            ),
        ));
    }
    Ok(DatabaseLocation::Postgres(settings.clone()))
}

/// `[drift]`: the defaults of every root's drift checks ([`crate::drift`]).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDrift {
    interval_secs: Option<u64>,
    remediate: Option<bool>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMcp {
    enabled: Option<bool>,
    platform_endpoint: Option<String>,
    platform_ca_file: Option<PathBuf>,
}

/// The MCP server at `/mcp` (src/mcp/): on unless turned off, and the platform it
/// passes its callers' tokens on to.
#[derive(Debug, Clone)]
pub struct McpConfig {
    pub enabled: bool,
    /// A team's platform (`https://host:port`); `None`: `SLIPWAY_ENDPOINT`, else the
    /// embedded platform of this machine's Slipway home.
    pub platform_endpoint: Option<String>,
    pub platform_ca_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPreviews {
    default_ttl_secs: Option<u64>,
    max_ttl_secs: Option<u64>,
    check_interval_secs: Option<u64>,
    sweep_interval_secs: Option<u64>,
}

/// A root's `preview`: `true`, or a table with its own settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum RawPreview {
    On(bool),
    Settings(RawPreviewSettings),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPreviewSettings {
    ttl_secs: Option<u64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServer {
    listen: Option<String>,
    max_body_bytes: Option<usize>,
    public_url: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGithub {
    api_url: Option<String>,
    token: Option<SecretSource>,
    app_id: Option<u64>,
    app_key: Option<SecretSource>,
    installation_id: Option<u64>,
    comment_on_pull_request: Option<bool>,
    retry_initial_ms: Option<u64>,
    retry_max_secs: Option<u64>,
    max_attempts: Option<u32>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPoller {
    enabled: Option<bool>,
    interval_secs: Option<u64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSecrets {
    webhook_secret: Option<SecretSource>,
    api_token: Option<SecretSource>,
    signing_key: Option<SecretSource>,
    git_token: Option<SecretSource>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRepository {
    name: Option<String>,
    url: Option<String>,
    github: Option<String>,
    branch: Option<String>,
    plan_pull_requests_from_forks: Option<bool>,
    max_previews: Option<usize>,
    #[serde(default, rename = "root")]
    roots: Vec<RawRoot>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoot {
    name: Option<String>,
    path: Option<String>,
    workspace: Option<String>,
    #[serde(default)]
    variables: BTreeMap<String, toml::Value>,
    paths: Option<Vec<String>>,
    modes: Option<Vec<String>>,
    environments: Option<Vec<String>>,
    plan_pull_requests: Option<bool>,
    preview: Option<RawPreview>,
    require_approval: Option<bool>,
    drift_interval_secs: Option<u64>,
    remediate: Option<bool>,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where the queue, audit log, git cache and job work trees live.
    pub data_dir: PathBuf,
    /// Where the queue, the audit log and the rest of the agent's state are kept
    /// (`[database]`; by default SQLite in `data_dir`).
    pub database: DatabaseLocation,
    /// The `terraform` executable (a path, or a name looked up on `PATH`).
    pub terraform: PathBuf,
    /// How many roots may run at once.
    pub max_parallel: usize,
    /// A job running longer than this is stopped and recorded as failed.
    pub job_timeout: Duration,
    /// On SIGTERM, how long a running job may go on before the agent stops it (it is
    /// then re-run after the restart).
    pub shutdown_grace: Duration,
    pub listen: SocketAddr,
    /// The agent's address as users reach it (`https://slipway.example.com`), for the
    /// job log links reported to GitHub; no links without it.
    pub public_url: Option<String>,
    /// Reporting to GitHub; off when the `[github]` table is absent.
    pub github: Option<GithubConfig>,
    pub max_body_bytes: usize,
    pub poller_enabled: bool,
    pub poll_interval: Duration,
    pub secrets: Secrets,
    pub previews: PreviewSettings,
    pub repositories: Vec<Repository>,
    pub mcp: McpConfig,
    /// Who approves held merges, and which modes hold them (`[approvals]`).
    pub approvals: ApprovalSettings,
}

/// How previews live and are cleaned up (`[previews]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PreviewSettings {
    /// A root's preview is destroyed when idle (no push) this long, unless the root
    /// sets its own `ttl_secs`.
    pub default_ttl: Duration,
    /// No root's time to live may exceed this.
    pub max_ttl: Duration,
    /// How often previews past their time to live are looked for.
    pub check_interval: Duration,
    /// How often GitHub is asked whether the pull requests of live previews are still
    /// open (for a close whose webhook was lost).
    pub sweep_interval: Duration,
}

/// Where each secret comes from; resolved on demand so that commands which need none
/// (such as `audit list`) run without them.
#[derive(Debug, Clone, Default)]
pub struct Secrets {
    pub webhook_secret: Option<SecretSource>,
    pub api_token: Option<SecretSource>,
    pub signing_key: Option<SecretSource>,
    pub git_token: Option<SecretSource>,
}

/// How the agent reports to GitHub (commit statuses, deployments, comments).
#[derive(Debug, Clone)]
pub struct GithubConfig {
    /// `https://api.github.com`, or `https://HOST/api/v3` for GitHub Enterprise Server.
    pub api_url: String,
    pub auth: GithubAuth,
    /// Comment on the merged pull request with the plan summary.
    pub comment_on_pull_request: bool,
    pub retry: RetryPolicy,
}

/// How the agent authenticates to GitHub.
#[derive(Debug, Clone)]
pub enum GithubAuth {
    /// A personal access token or fine-grained token.
    Token(SecretSource),
    /// A GitHub App: a JWT signed with the App's private key buys an installation
    /// token, renewed before it expires; the token also serves git fetches over HTTPS.
    App {
        app_id: u64,
        private_key: SecretSource,
        installation_id: u64,
    },
}

/// Backoff for a GitHub report that failed: `initial`, doubling, at most `max`, for
/// `max_attempts` attempts; then the report is given up and logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub initial: Duration,
    pub max: Duration,
    pub max_attempts: u32,
}

impl RetryPolicy {
    /// The wait after the `attempt`-th failure (1-based).
    pub fn delay(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.saturating_sub(1).min(30));
        self.initial.saturating_mul(factor).min(self.max)
    }
}

/// A git repository the agent deploys from.
#[derive(Debug, Clone)]
pub struct Repository {
    /// The name used in the audit log and on the command line.
    pub name: String,
    /// https, ssh (`ssh://` or `user@host:path`) or a local path.
    pub url: String,
    /// The GitHub `owner/name` whose webhooks belong to this repository.
    pub github: Option<String>,
    pub branch: String,
    pub roots: Vec<Root>,
    /// Whether pull requests from forks get plans. Off by default: Terraform runs
    /// providers and data sources at plan time, so a fork's code would run on the
    /// agent's machine.
    pub plan_pull_requests_from_forks: bool,
    /// How many previews of this repository may be up at once.
    pub max_previews: usize,
}

/// A Terraform root module inside a repository.
#[derive(Debug, Clone)]
pub struct Root {
    pub name: String,
    /// Relative to the repository; `.` for the top.
    pub path: String,
    pub workspace: Option<String>,
    /// Passed to `terraform plan` in a `-var-file`, as JSON.
    pub variables: BTreeMap<String, serde_json::Value>,
    /// Repository-relative paths whose changes trigger this root.
    pub paths: Vec<String>,
    /// The environment modes this root's merge jobs may change (every mode unless the
    /// configuration narrows it): bound into each job's credential, so that a job of a
    /// STAGING root cannot reach PRODUCTION whatever its Terraform code says.
    pub modes: Vec<slipway_platform::Mode>,
    /// The environments (by name) this root may change; empty means any of its modes.
    pub environments: Vec<String>,
    /// Whether pull requests that touch the root get a plan (on by default).
    pub plan_pull_requests: bool,
    /// Set when the root opts in to a preview per pull request.
    pub preview: Option<RootPreview>,
    /// Whether the root's merge jobs wait for an approver (`require_approval`, or a
    /// mode in `[approvals] modes` among the root's `modes`). Only the agent's
    /// configuration says so, never the repository.
    pub require_approval: bool,
    /// Set when the root's deployed commit is planned on a schedule
    /// (`drift_interval_secs`, or `[drift] interval_secs`): off by default.
    pub drift: Option<RootDrift>,
}

/// A root's drift checks ([`crate::drift`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RootDrift {
    /// How often the deployed commit is planned.
    pub interval: Duration,
    /// Whether drift found is repaired by applying the deployed commit again (a merge
    /// job, so every policy of merges holds). Off by default.
    pub remediate: bool,
}

/// The shortest drift interval: every check runs `terraform plan` (with a refresh of
/// every resource), so a smaller one would keep the root's worker busy.
pub const MIN_DRIFT_INTERVAL: Duration = Duration::from_secs(10);

/// A root's previews.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RootPreview {
    /// Destroyed when idle this long.
    pub ttl: Duration,
}

impl Root {
    /// Whether a changed file (repository-relative, `/`-separated) triggers this root.
    pub fn is_triggered_by(&self, changed: &str) -> bool {
        self.paths.iter().any(|p| {
            p == "."
                || changed == p
                || changed.starts_with(&format!("{}/", p.trim_end_matches('/')))
        })
    }
}

fn clean_relative(key: &str, value: &str) -> Result<String, ConfigError> {
    let path = Path::new(value);
    if path.is_absolute() {
        return Err(invalid(
            key,
            format!("`{value}` is absolute; give a path relative to the repository's top"),
        ));
    }
    let mut parts = Vec::new();
    for component in path.components() {
        match component {
            Component::Normal(p) => parts.push(p.to_string_lossy().into_owned()),
            Component::CurDir => {}
            _ => {
                return Err(invalid(
                    key,
                    format!("`{value}` leaves the repository; `..` is not allowed"),
                ))
            }
        }
    }
    Ok(if parts.is_empty() {
        ".".to_owned()
    } else {
        parts.join("/")
    })
}

fn valid_name(key: &str, value: &str) -> Result<(), ConfigError> {
    if value.is_empty()
        || !value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
    {
        return Err(invalid(
            key,
            format!(
                "`{value}` must be non-empty and use only letters, digits, `-`, `_`, `.` and `/`"
            ),
        ));
    }
    Ok(())
}

fn json_of(key: &str, value: &toml::Value) -> Result<serde_json::Value, ConfigError> {
    serde_json::to_value(value)
        .map_err(|e| invalid(key, format!("cannot be passed to Terraform: {e}")))
}

impl Config {
    /// Reads and validates a configuration file. Relative `data_dir` and local
    /// repository paths are taken relative to the file's directory.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
            path: path.to_owned(),
            error,
        })?;
        // Absolute, so that the data directory and local repository paths mean the same
        // thing to every component (libgit2 resolves relative paths differently).
        let parent = path.parent().filter(|p| !p.as_os_str().is_empty());
        let base = std::path::absolute(parent.unwrap_or(Path::new("."))).map_err(|error| {
            ConfigError::Read {
                path: path.to_owned(),
                error,
            }
        })?;
        Config::parse(&text, &base).map_err(|e| match e {
            ConfigError::Parse { message, .. } => ConfigError::Parse {
                path: path.to_owned(),
                message,
            },
            other => other,
        })
    }

    /// Parses and validates configuration text; `base` resolves relative paths.
    pub fn parse(text: &str, base: &Path) -> Result<Config, ConfigError> {
        let mut raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: PathBuf::from("<config>"),
            message: e.to_string(),
        })?;
        // A relative secret file is next to the configuration, wherever the agent runs.
        for source in [
            &mut raw.secrets.webhook_secret,
            &mut raw.secrets.api_token,
            &mut raw.secrets.signing_key,
            &mut raw.secrets.git_token,
        ]
        .into_iter()
        .flatten()
        .chain(
            raw.github
                .iter_mut()
                .flat_map(|g| [&mut g.token, &mut g.app_key].into_iter().flatten()),
        ) {
            if let Some(file) = &source.file {
                source.file = Some(base.join(file));
            }
        }
        let data_dir = match raw.data_dir {
            Some(d) if d.as_os_str().is_empty() => {
                return Err(invalid("data_dir", "must not be empty"))
            }
            Some(d) => base.join(d),
            None => base.join("slipway-data"),
        };
        let max_parallel = raw.max_parallel.unwrap_or(2);
        if max_parallel == 0 {
            return Err(invalid("max_parallel", "must be at least 1"));
        }
        let job_timeout_secs = raw.job_timeout_secs.unwrap_or(1800);
        if job_timeout_secs == 0 {
            return Err(invalid("job_timeout_secs", "must be at least 1 second"));
        }
        let listen_text = raw.server.listen.unwrap_or_else(|| "127.0.0.1:8080".into());
        let listen: SocketAddr = listen_text.parse().map_err(|_| {
            invalid(
                "server.listen",
                format!("`{listen_text}` is not an address:port such as 127.0.0.1:8080"),
            )
        })?;
        let max_body_bytes = raw.server.max_body_bytes.unwrap_or(26 * 1024 * 1024);
        if max_body_bytes < 1024 {
            return Err(invalid(
                "server.max_body_bytes",
                "must be at least 1024; GitHub sends bodies up to 25 MB",
            ));
        }
        let poll_interval_secs = raw.poller.interval_secs.unwrap_or(60);
        if poll_interval_secs == 0 {
            return Err(invalid("poller.interval_secs", "must be at least 1 second"));
        }
        let shutdown_grace_secs = raw.shutdown_grace_secs.unwrap_or(90);
        let public_url = match raw.server.public_url {
            None => None,
            Some(url) => Some(http_url("server.public_url", &url)?),
        };
        let github = raw.github.map(parse_github).transpose()?;
        let previews = parse_previews(&raw.previews)?;
        let approvals = ApprovalSettings::parse(&raw.approvals)?;
        if let Some(secs) = raw.drift.interval_secs {
            drift_interval("drift.interval_secs", secs)?;
        }
        for (key, source) in [
            ("secrets.webhook_secret", &raw.secrets.webhook_secret),
            ("secrets.api_token", &raw.secrets.api_token),
            ("secrets.signing_key", &raw.secrets.signing_key),
            ("secrets.git_token", &raw.secrets.git_token),
        ] {
            if let Some(source) = source {
                source.check(key)?;
            }
        }
        if raw.secrets.signing_key.is_none() {
            return Err(invalid(
                "secrets.signing_key",
                "is required: every run's provenance is signed; create a key with `slipway-agent keygen` and set `signing_key = { file = \"...\" }`",
            ));
        }
        if raw.repositories.is_empty() {
            return Err(invalid(
                "repository",
                "no repositories: add at least one [[repository]] table with `name`, `url` and a [[repository.root]]",
            ));
        }
        let mut repositories = Vec::new();
        for (i, repo) in raw.repositories.into_iter().enumerate() {
            let key = format!("repository[{i}]");
            let name = repo.name.ok_or_else(|| {
                invalid(format!("{key}.name"), "is required, e.g. \"acme/infra\"")
            })?;
            valid_name(&format!("{key}.name"), &name)?;
            if repositories.iter().any(|r: &Repository| r.name == name) {
                return Err(invalid(
                    format!("{key}.name"),
                    format!("`{name}` is used twice"),
                ));
            }
            let url = repo.url.ok_or_else(|| {
                invalid(
                    format!("{key}.url"),
                    "is required: an https or ssh git URL, or a local path",
                )
            })?;
            let url = if url.contains("://") || url.contains('@') {
                url
            } else if url.is_empty() {
                return Err(invalid(format!("{key}.url"), "must not be empty"));
            } else {
                base.join(&url).to_string_lossy().into_owned()
            };
            let branch = repo.branch.unwrap_or_else(|| "main".into());
            if branch.is_empty() || branch.contains("..") || branch.starts_with('-') {
                return Err(invalid(
                    format!("{key}.branch"),
                    format!("`{branch}` is not a branch name"),
                ));
            }
            let github = repo.github.or_else(|| github_full_name(&url));
            if repo.roots.is_empty() {
                return Err(invalid(
                    format!("{key}.root"),
                    "no Terraform roots: add a [[repository.root]] with `name` and `path`",
                ));
            }
            let mut roots: Vec<Root> = Vec::new();
            for (j, root) in repo.roots.into_iter().enumerate() {
                let rkey = format!("{key}.root[{j}]");
                let path = root.path.ok_or_else(|| {
                    invalid(
                        format!("{rkey}.path"),
                        "is required: the root module's directory, e.g. \"infra/prod\"",
                    )
                })?;
                let path = clean_relative(&format!("{rkey}.path"), &path)?;
                let name = root.name.unwrap_or_else(|| path.clone());
                valid_name(&format!("{rkey}.name"), &name)?;
                if roots.iter().any(|r| r.name == name) {
                    return Err(invalid(
                        format!("{rkey}.name"),
                        format!("`{name}` is used twice in this repository"),
                    ));
                }
                let paths = match root.paths {
                    None => vec![path.clone()],
                    Some(list) if list.is_empty() => {
                        return Err(invalid(
                            format!("{rkey}.paths"),
                            "is empty: leave it out to use the root's own directory",
                        ))
                    }
                    Some(list) => list
                        .iter()
                        .enumerate()
                        .map(|(k, p)| clean_relative(&format!("{rkey}.paths[{k}]"), p))
                        .collect::<Result<_, _>>()?,
                };
                if let Some(ws) = &root.workspace {
                    valid_name(&format!("{rkey}.workspace"), ws)?;
                }
                let mut variables = BTreeMap::new();
                for (k, v) in &root.variables {
                    variables.insert(k.clone(), json_of(&format!("{rkey}.variables.{k}"), v)?);
                }
                let modes = match root.modes {
                    None => slipway_platform::Mode::ALL.to_vec(),
                    Some(list) if list.is_empty() => {
                        return Err(invalid(
                            format!("{rkey}.modes"),
                            "is empty: leave it out to let the root change every mode",
                        ))
                    }
                    Some(list) => list
                        .iter()
                        .enumerate()
                        .map(|(k, m)| {
                            m.parse::<slipway_platform::Mode>()
                                .map_err(|e| invalid(format!("{rkey}.modes[{k}]"), e.to_string()))
                        })
                        .collect::<Result<_, _>>()?,
                };
                let environments = root.environments.unwrap_or_default();
                for (k, e) in environments.iter().enumerate() {
                    valid_name(&format!("{rkey}.environments[{k}]"), e)?;
                }
                let preview = parse_root_preview(&rkey, root.preview.as_ref(), &previews)?;
                let require_approval =
                    root.require_approval.unwrap_or(false) || approvals.holds(&modes);
                let drift =
                    parse_root_drift(&rkey, root.drift_interval_secs, root.remediate, &raw.drift)?;
                roots.push(Root {
                    name,
                    path,
                    workspace: root.workspace,
                    variables,
                    paths,
                    modes,
                    environments,
                    plan_pull_requests: root.plan_pull_requests.unwrap_or(true),
                    preview,
                    require_approval,
                    drift,
                });
            }
            let max_previews = repo.max_previews.unwrap_or(10);
            if max_previews == 0 && roots.iter().any(|r| r.preview.is_some()) {
                return Err(invalid(
                    format!("{key}.max_previews"),
                    "is 0 while a root has `preview`: allow at least 1, or remove the roots' `preview`",
                ));
            }
            repositories.push(Repository {
                name,
                url,
                github,
                branch,
                roots,
                plan_pull_requests_from_forks: repo.plan_pull_requests_from_forks.unwrap_or(false),
                max_previews,
            });
        }
        Ok(Config {
            database: parse_database(&raw.database, &data_dir)?,
            data_dir,
            terraform: raw.terraform.unwrap_or_else(|| PathBuf::from("terraform")),
            max_parallel,
            job_timeout: Duration::from_secs(job_timeout_secs),
            shutdown_grace: Duration::from_secs(shutdown_grace_secs),
            listen,
            public_url,
            github,
            max_body_bytes,
            poller_enabled: raw.poller.enabled.unwrap_or(true),
            poll_interval: Duration::from_secs(poll_interval_secs),
            secrets: Secrets {
                webhook_secret: raw.secrets.webhook_secret,
                api_token: raw.secrets.api_token,
                signing_key: raw.secrets.signing_key,
                git_token: raw.secrets.git_token,
            },
            previews,
            repositories,
            approvals,
            mcp: McpConfig {
                enabled: raw.mcp.enabled.unwrap_or(true),
                platform_endpoint: match raw.mcp.platform_endpoint {
                    Some(url) if !url.starts_with("https://") => {
                        return Err(invalid(
                            "mcp.platform_endpoint",
                            format!("{url:?}: the platform is reached over TLS only; write it as https://host:port"),
                        ))
                    }
                    other => other,
                },
                platform_ca_file: raw.mcp.platform_ca_file.map(|p| base.join(p)),
            },
        })
    }

    /// The repository configured under `name`.
    pub fn repository(&self, name: &str) -> Option<&Repository> {
        self.repositories.iter().find(|r| r.name == name)
    }

    /// The repository whose GitHub `owner/name` is `full_name` (case-insensitive, as
    /// GitHub treats it).
    pub fn repository_for_github(&self, full_name: &str) -> Option<&Repository> {
        self.repositories.iter().find(|r| {
            r.github
                .as_deref()
                .unwrap_or(&r.name)
                .eq_ignore_ascii_case(full_name)
        })
    }

    /// Every configured secret source, with its key: the agent keeps these variables
    /// out of Terraform's environment.
    pub fn secret_sources(&self) -> Vec<(&'static str, &SecretSource)> {
        let s = &self.secrets;
        let mut all: Vec<(&'static str, &SecretSource)> = [
            ("secrets.webhook_secret", &s.webhook_secret),
            ("secrets.api_token", &s.api_token),
            ("secrets.signing_key", &s.signing_key),
            ("secrets.git_token", &s.git_token),
        ]
        .into_iter()
        .filter_map(|(k, src)| src.as_ref().map(|src| (k, src)))
        .collect();
        match self.github.as_ref().map(|g| &g.auth) {
            Some(GithubAuth::Token(src)) => all.push(("github.token", src)),
            Some(GithubAuth::App { private_key, .. }) => all.push(("github.app_key", private_key)),
            None => {}
        }
        all
    }

    /// The platform's identities and job-credential ledger (`slipway-agent token`).
    pub fn platform_database_path(&self) -> PathBuf {
        self.data_dir.join("platform.db")
    }
}

fn parse_previews(raw: &RawPreviews) -> Result<PreviewSettings, ConfigError> {
    let secs = |key: &str, value: Option<u64>, default: u64| match value {
        Some(0) => Err(invalid(
            format!("previews.{key}"),
            "must be at least 1 second",
        )),
        v => Ok(Duration::from_secs(v.unwrap_or(default))),
    };
    let settings = PreviewSettings {
        default_ttl: secs("default_ttl_secs", raw.default_ttl_secs, 72 * 3600)?,
        max_ttl: secs("max_ttl_secs", raw.max_ttl_secs, 14 * 24 * 3600)?,
        check_interval: secs("check_interval_secs", raw.check_interval_secs, 30)?,
        sweep_interval: secs("sweep_interval_secs", raw.sweep_interval_secs, 600)?,
    };
    if settings.default_ttl > settings.max_ttl {
        return Err(invalid(
            "previews.default_ttl_secs",
            format!(
                "{} s is over previews.max_ttl_secs ({} s); lower it or raise the maximum",
                settings.default_ttl.as_secs(),
                settings.max_ttl.as_secs()
            ),
        ));
    }
    Ok(settings)
}

/// A drift interval of `secs`, at least [`MIN_DRIFT_INTERVAL`].
fn drift_interval(key: &str, secs: u64) -> Result<Duration, ConfigError> {
    let interval = Duration::from_secs(secs);
    if interval < MIN_DRIFT_INTERVAL {
        return Err(invalid(
            key,
            format!(
                "{secs} s is under the minimum of {min} s: every drift check runs `terraform plan`; give at least {min}, or leave it out for no drift checks",
                min = MIN_DRIFT_INTERVAL.as_secs(),
            ),
        ));
    }
    Ok(interval)
}

/// A root's drift checks: its own `drift_interval_secs` (0 turns them off for the
/// root) or `[drift] interval_secs`; its own `remediate`, or `[drift] remediate`.
fn parse_root_drift(
    rkey: &str,
    interval_secs: Option<u64>,
    remediate: Option<bool>,
    defaults: &RawDrift,
) -> Result<Option<RootDrift>, ConfigError> {
    let interval = match interval_secs {
        Some(0) => None,
        Some(secs) => Some(drift_interval(
            &format!("{rkey}.drift_interval_secs"),
            secs,
        )?),
        None => defaults.interval_secs.map(Duration::from_secs),
    };
    match interval {
        Some(interval) => Ok(Some(RootDrift {
            interval,
            remediate: remediate.or(defaults.remediate).unwrap_or(false),
        })),
        None if remediate == Some(true) => Err(invalid(
            format!("{rkey}.remediate"),
            "repairs the drift that drift checks find, and this root has none: set `drift_interval_secs` on the root or `interval_secs` in [drift]",
        )),
        None => Ok(None),
    }
}

fn parse_root_preview(
    rkey: &str,
    raw: Option<&RawPreview>,
    settings: &PreviewSettings,
) -> Result<Option<RootPreview>, ConfigError> {
    let ttl = match raw {
        None | Some(RawPreview::On(false)) => return Ok(None),
        Some(RawPreview::On(true)) => settings.default_ttl,
        Some(RawPreview::Settings(s)) => match s.ttl_secs {
            None => settings.default_ttl,
            Some(0) => {
                return Err(invalid(
                    format!("{rkey}.preview.ttl_secs"),
                    "must be at least 1 second",
                ))
            }
            Some(secs) => Duration::from_secs(secs),
        },
    };
    if ttl > settings.max_ttl {
        return Err(invalid(
            format!("{rkey}.preview.ttl_secs"),
            format!(
                "{} s is over previews.max_ttl_secs ({} s): a preview may not live longer than the maximum",
                ttl.as_secs(),
                settings.max_ttl.as_secs()
            ),
        ));
    }
    Ok(Some(RootPreview { ttl }))
}

/// An `http(s)://` URL without a trailing slash.
fn http_url(key: &str, value: &str) -> Result<String, ConfigError> {
    let trimmed = value.trim().trim_end_matches('/');
    let rest = trimmed
        .strip_prefix("https://")
        .or_else(|| trimmed.strip_prefix("http://"));
    match rest {
        Some(host) if !host.is_empty() && !host.contains(char::is_whitespace) => {
            Ok(trimmed.to_owned())
        }
        _ => Err(invalid(
            key,
            format!(
                "`{value}` is not an http:// or https:// URL such as https://slipway.example.com"
            ),
        )),
    }
}

fn parse_github(raw: RawGithub) -> Result<GithubConfig, ConfigError> {
    let api_url = http_url(
        "github.api_url",
        raw.api_url.as_deref().unwrap_or("https://api.github.com"),
    )?;
    let auth = match (raw.token, raw.app_id, raw.app_key, raw.installation_id) {
        (Some(token), None, None, None) => {
            token.check("github.token")?;
            GithubAuth::Token(token)
        }
        (None, Some(app_id), Some(private_key), Some(installation_id)) => {
            private_key.check("github.app_key")?;
            GithubAuth::App {
                app_id,
                private_key,
                installation_id,
            }
        }
        (Some(_), _, _, _) => {
            return Err(invalid(
                "github.token",
                "give either `token` or the GitHub App's `app_id`, `app_key` and `installation_id`, not both",
            ))
        }
        (None, None, None, None) => {
            return Err(invalid(
                "github",
                "needs credentials: `token = { env = \"GITHUB_TOKEN\" }`, or a GitHub App's `app_id`, `app_key = { file = \"app.pem\" }` and `installation_id`",
            ))
        }
        (None, app_id, app_key, installation_id) => {
            let missing: Vec<&str> = [
                ("app_id", app_id.is_none()),
                ("app_key", app_key.is_none()),
                ("installation_id", installation_id.is_none()),
            ]
            .into_iter()
            .filter_map(|(k, absent)| absent.then_some(k))
            .collect();
            return Err(invalid(
                format!("github.{}", missing[0]),
                format!(
                    "is required to authenticate as a GitHub App (missing: {}); find the ids on the App's settings page",
                    missing.join(", ")
                ),
            ));
        }
    };
    let max_attempts = raw.max_attempts.unwrap_or(10);
    if max_attempts == 0 {
        return Err(invalid("github.max_attempts", "must be at least 1"));
    }
    let initial = Duration::from_millis(raw.retry_initial_ms.unwrap_or(1000).max(1));
    let max = Duration::from_secs(raw.retry_max_secs.unwrap_or(600)).max(initial);
    Ok(GithubConfig {
        api_url,
        auth,
        comment_on_pull_request: raw.comment_on_pull_request.unwrap_or(false),
        retry: RetryPolicy {
            initial,
            max,
            max_attempts,
        },
    })
}

/// `owner/name` from a github.com URL, for matching webhooks without extra config.
fn github_full_name(url: &str) -> Option<String> {
    let rest = url
        .strip_prefix("https://github.com/")
        .or_else(|| url.strip_prefix("ssh://git@github.com/"))
        .or_else(|| url.strip_prefix("git@github.com:"))?;
    let rest = rest.trim_end_matches('/').trim_end_matches(".git");
    (rest.split('/').count() == 2).then(|| rest.to_owned())
}

/// Every secret the agent resolved, with their values, so output can be redacted.
/// Each line of a multi-line secret (a PEM key) is redacted too.
pub fn redact(text: &str, secrets: &[&Secret]) -> String {
    slipway_platform::redact::Redactor::new(secrets.iter().map(|s| s.expose()), 4)
        .redact(text)
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
[secrets]
signing_key = { file = "agent.key" }

[[repository]]
name = "acme/infra"
url = "/srv/git/infra.git"

[[repository.root]]
path = "envs/prod"
"#;

    fn err(text: &str) -> String {
        Config::parse(text, Path::new("/etc/slipway"))
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn the_mcp_platform_is_reached_over_tls_only() {
        let c = Config::parse(MINIMAL, Path::new("/etc/slipway")).unwrap();
        assert!(c.mcp.enabled);
        assert_eq!(c.mcp.platform_endpoint, None);
        let e = err(&format!(
            "{MINIMAL}\n[mcp]\nplatform_endpoint = \"http://platform:7443\""
        ));
        assert!(e.contains("`mcp.platform_endpoint`"), "{e}");
        let c = Config::parse(
            &format!("[mcp]\nenabled = false\nplatform_endpoint = \"https://p:7443\"\nplatform_ca_file = \"ca.pem\"\n{MINIMAL}"),
            Path::new("/etc/slipway"),
        )
        .unwrap();
        assert!(!c.mcp.enabled);
        assert_eq!(
            c.mcp.platform_ca_file,
            Some(PathBuf::from("/etc/slipway/ca.pem"))
        );
    }

    #[test]
    fn defaults_are_applied() {
        let c = Config::parse(MINIMAL, Path::new("/etc/slipway")).unwrap();
        let repo = &c.repositories[0];
        assert_eq!(repo.branch, "main");
        assert_eq!(repo.roots[0].name, "envs/prod");
        assert_eq!(repo.roots[0].paths, vec!["envs/prod"]);
        assert_eq!(c.data_dir, Path::new("/etc/slipway/slipway-data"));
        assert_eq!(c.max_body_bytes, 26 * 1024 * 1024);
        assert!(c.poller_enabled);
    }

    #[test]
    fn errors_name_the_key() {
        assert!(
            err(&MINIMAL.replace("path = \"envs/prod\"", "path = \"../x\""))
                .contains("`repository[0].root[0].path`")
        );
        assert!(err(&MINIMAL.replace("url = \"/srv/git/infra.git\"", ""))
            .contains("`repository[0].url`"));
        assert!(err(&format!("max_parallel = 0\n{MINIMAL}")).contains("`max_parallel`"));
        assert!(err(&format!("bogus = 1\n{MINIMAL}")).contains("bogus"));
        assert!(err(&MINIMAL.replace("{ file = \"agent.key\" }", "{ }"))
            .contains("`secrets.signing_key`"));
        assert!(err(&format!("[server]\nlisten = \"nope\"\n{MINIMAL}")).contains("`server.listen`"));
    }

    /// What a root's jobs may change is bound into their credentials: every mode by
    /// default, narrowed by `modes` and `environments`, with mistakes named.
    #[test]
    fn a_roots_modes_and_environments_are_read_and_checked() {
        let c = Config::parse(MINIMAL, Path::new("/")).unwrap();
        assert_eq!(
            c.repositories[0].roots[0].modes,
            slipway_platform::Mode::ALL
        );
        assert!(c.repositories[0].roots[0].environments.is_empty());
        let narrowed = format!("{MINIMAL}modes = [\"STAGING\"]\nenvironments = [\"staging\"]\n");
        let c = Config::parse(&narrowed, Path::new("/")).unwrap();
        assert_eq!(
            c.repositories[0].roots[0].modes,
            vec![slipway_platform::Mode::Staging]
        );
        assert_eq!(c.repositories[0].roots[0].environments, vec!["staging"]);
        assert!(err(&format!("{MINIMAL}modes = [\"staging\"]\n"))
            .contains("`repository[0].root[0].modes[0]`"));
        assert!(err(&format!("{MINIMAL}modes = []\n")).contains("`repository[0].root[0].modes`"));
    }

    /// Previews are opt-in per root, live for a time to live capped by a maximum, and
    /// plans of forks' pull requests are off unless the repository allows them.
    #[test]
    fn previews_are_opt_in_with_a_capped_time_to_live() {
        let c = Config::parse(MINIMAL, Path::new("/")).unwrap();
        let (repo, root) = (&c.repositories[0], &c.repositories[0].roots[0]);
        assert!(root.plan_pull_requests && root.preview.is_none());
        assert!(!repo.plan_pull_requests_from_forks);
        assert_eq!(repo.max_previews, 10);
        let on = Config::parse(
            &format!(
                "{MINIMAL}preview = true
"
            ),
            Path::new("/"),
        )
        .unwrap();
        assert_eq!(
            on.repositories[0].roots[0].preview,
            Some(RootPreview {
                ttl: Duration::from_secs(72 * 3600)
            })
        );
        let own = format!(
            "{MINIMAL}preview = {{ ttl_secs = 600 }}
"
        );
        let own = Config::parse(&own, Path::new("/")).unwrap();
        assert_eq!(
            own.repositories[0].roots[0].preview.map(|p| p.ttl),
            Some(Duration::from_secs(600))
        );
        let too_long = format!("[previews]\nmax_ttl_secs = 3600\ndefault_ttl_secs = 600\n{MINIMAL}preview = {{ ttl_secs = 7200 }}\n");
        assert!(err(&too_long).contains("`repository[0].root[0].preview.ttl_secs`"));
        assert!(err(&format!("[previews]\ndefault_ttl_secs = 0\n{MINIMAL}"))
            .contains("`previews.default_ttl_secs`"));
        let none = MINIMAL.replace(
            "url = \"/srv/git/infra.git\"",
            "url = \"/srv/git/infra.git\"\nmax_previews = 0",
        );
        assert!(err(&format!("{none}preview = true\n")).contains("`repository[0].max_previews`"));
    }

    /// Drift checks are off unless an interval is set (per root, or a default for
    /// all), remediation is off unless asked for, and mistakes name their key.
    #[test]
    fn the_database_is_embedded_unless_a_postgres_one_is_named_without_its_password() {
        let c = Config::parse(MINIMAL, Path::new("/srv")).unwrap();
        assert_eq!(
            c.database,
            DatabaseLocation::Sqlite(Path::new("/srv/slipway-data/slipway.db").into())
        );
        let shared = "host=/run/postgresql dbname=slipway user=agent";
        let c = Config::parse(
            &format!("[database]\npostgres = \"{shared}\"\n{MINIMAL}"),
            Path::new("/srv"),
        )
        .unwrap();
        assert_eq!(c.database, DatabaseLocation::Postgres(shared.into()));
        for with_password in [
            "host=db dbname=slipway user=agent password=hunter2",
            "postgres://agent:hunter2@db/slipway",
        ] {
            let e = err(&format!(
                "[database]\npostgres = \"{with_password}\"\n{MINIMAL}"
            ));
            assert!(
                e.contains("`database.postgres`") && e.contains("SLIPWAY_DATABASE_PASSWORD"),
                "{e}"
            );
            assert!(!e.contains("hunter2"), "the password is not repeated: {e}");
        }
        let e = err(&format!(
            "[database]\npostgres = \"host='unclosed\"\n{MINIMAL}"
        ));
        assert!(
            e.contains("`database.postgres`") && e.contains("libpq"),
            "{e}"
        );
    }

    #[test]
    fn drift_checks_are_opt_in_with_a_minimum_interval() {
        let c = Config::parse(MINIMAL, Path::new("/")).unwrap();
        assert_eq!(c.repositories[0].roots[0].drift, None);
        let c = Config::parse(
            &format!("[drift]\ninterval_secs = 600\n{MINIMAL}"),
            Path::new("/"),
        )
        .unwrap();
        assert_eq!(
            c.repositories[0].roots[0].drift,
            Some(RootDrift {
                interval: Duration::from_secs(600),
                remediate: false
            })
        );
        let own = format!(
            "[drift]\ninterval_secs = 600\nremediate = true\n{MINIMAL}drift_interval_secs = 60\n"
        );
        let c = Config::parse(&own, Path::new("/")).unwrap();
        assert_eq!(
            c.repositories[0].roots[0].drift,
            Some(RootDrift {
                interval: Duration::from_secs(60),
                remediate: true
            })
        );
        let off = format!("[drift]\ninterval_secs = 600\n{MINIMAL}drift_interval_secs = 0\n");
        assert_eq!(
            Config::parse(&off, Path::new("/")).unwrap().repositories[0].roots[0].drift,
            None
        );
        let e = err(&format!("{MINIMAL}drift_interval_secs = 5\n"));
        assert!(
            e.contains("`repository[0].root[0].drift_interval_secs`") && e.contains("at least 10"),
            "{e}"
        );
        let e = err(&format!("[drift]\ninterval_secs = 1\n{MINIMAL}"));
        assert!(e.contains("`drift.interval_secs`"), "{e}");
        let e = err(&format!("{MINIMAL}remediate = true\n"));
        assert!(e.contains("`repository[0].root[0].remediate`"), "{e}");
        assert!(err(&format!("[drift]\nevery = 1\n{MINIMAL}")).contains("every"));
    }

    #[test]
    fn trigger_paths_match_by_directory() {
        let c = Config::parse(MINIMAL, Path::new("/")).unwrap();
        let root = &c.repositories[0].roots[0];
        assert!(root.is_triggered_by("envs/prod/main.tf"));
        assert!(!root.is_triggered_by("envs/production/main.tf"));
        assert!(!root.is_triggered_by("README.md"));
    }

    #[test]
    fn missing_secret_names_variable_not_value() {
        let source = SecretSource {
            env: Some("SLIPWAY_TEST_SURELY_UNSET_VAR".into()),
            file: None,
        };
        let e = source
            .resolve("secrets.webhook_secret")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("secrets.webhook_secret.env") && e.contains("SLIPWAY_TEST_SURELY_UNSET_VAR")
        );
        assert_eq!(
            format!("{:?}", Secret::new("hunter22")),
            "Secret([redacted])"
        );
        assert_eq!(
            redact("token=hunter22!", &[&Secret::new("hunter22")]),
            "token=[REDACTED]!"
        );
    }

    #[test]
    fn load_makes_relative_paths_absolute() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("agent.toml"),
            MINIMAL.replace("/srv/git/infra.git", "repos/infra"),
        )
        .unwrap();
        let c = Config::load(&dir.path().join("agent.toml")).unwrap();
        assert!(c.data_dir.is_absolute(), "{}", c.data_dir.display());
        assert_eq!(c.data_dir, dir.path().join("slipway-data"));
        assert_eq!(
            c.repositories[0].url,
            dir.path().join("repos/infra").to_string_lossy()
        );
    }

    #[test]
    fn github_names_come_from_urls() {
        assert_eq!(
            github_full_name("https://github.com/acme/infra.git").as_deref(),
            Some("acme/infra")
        );
        assert_eq!(
            github_full_name("git@github.com:acme/infra.git").as_deref(),
            Some("acme/infra")
        );
        assert_eq!(github_full_name("/srv/git/infra"), None);
    }

    #[test]
    fn github_reporting_is_checked() {
        let with = |table: &str| format!("{MINIMAL}\n[github]\n{table}\n");
        let c = Config::parse(
            &with("api_url = \"https://ghe.example.com/api/v3/\"\ntoken = { env = \"GH\" }"),
            Path::new("/etc/slipway"),
        )
        .unwrap();
        let gh = c.github.unwrap();
        assert_eq!(gh.api_url, "https://ghe.example.com/api/v3");
        assert!(matches!(gh.auth, GithubAuth::Token(_)));
        assert_eq!(gh.retry.delay(1), Duration::from_secs(1));
        assert_eq!(gh.retry.delay(3), Duration::from_secs(4));
        assert_eq!(gh.retry.delay(40), Duration::from_secs(600));

        let app = Config::parse(
            &with("app_id = 1\napp_key = { file = \"app.pem\" }\ninstallation_id = 2"),
            Path::new("/etc/slipway"),
        )
        .unwrap();
        assert!(matches!(
            app.github.unwrap().auth,
            GithubAuth::App {
                app_id: 1,
                installation_id: 2,
                ..
            }
        ));

        assert!(err(&with("")).contains("`github`: needs credentials"));
        let e = err(&with("app_id = 1\napp_key = { env = \"K\" }"));
        assert!(e.contains("`github.installation_id`"), "{e}");
        let e = err(&with("token = { env = \"GH\" }\napp_id = 1"));
        assert!(e.contains("not both"), "{e}");
        let e = err(&with(
            "token = { env = \"GH\" }\napi_url = \"ghe.example.com\"",
        ));
        assert!(e.contains("`github.api_url`"), "{e}");
        let e = err(&format!("{MINIMAL}\n[server]\npublic_url = \"x\""));
        assert!(e.contains("`server.public_url`"), "{e}");
    }
}
