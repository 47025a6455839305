//! Helpers for the `slipway-agent` end-to-end tests: real git repositories made with
//! the `git` CLI (a bare origin and a clone that merges and pushes), GitHub webhook
//! deliveries built from GitHub's own payloads and signed here, and the real agent
//! binary started, killed and restarted as an operator would.
//!
//! Nothing here sleeps for a fixed time and then asserts: [`wait_for`] polls a
//! condition with a generous deadline.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::terraform::TerraformBinary;

/// The secret the tests' agents use for webhooks.
pub const WEBHOOK_SECRET: &str = "e2e-webhook-secret-5f0c";
/// The API token the tests' agents use.
pub const API_TOKEN: &str = "e2e-api-token-9a1d";
/// The GitHub repository name used in the fixtures.
pub const GITHUB_REPO: &str = "Codertocat/Hello-World";

/// Terraform binaries that have the built-in `terraform_data` resource (1.4 and
/// later): the agent tests' configurations use it, so Terraform 1.0.3 cannot run them.
pub fn terraform_with_terraform_data() -> TerraformBinary {
    let all = crate::terraform::required();
    all.into_iter()
        .find(|t| version_at_least(&t.version, 1, 4))
        .expect("the agent end-to-end tests need terraform >= 1.4 (for terraform_data); none found")
}

fn version_at_least(version: &str, major: u64, minor: u64) -> bool {
    let mut parts = version.split('.').map(|p| p.parse::<u64>().unwrap_or(0));
    let (ma, mi) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    (ma, mi) >= (major, minor)
}

static BUILD: Mutex<bool> = Mutex::new(false);

/// The `slipway-agent` binary beside the test executable, built once per test process
/// by `cargo build -p slipway-agent` (a no-op when it is up to date). Cargo decides,
/// not a guess from modification times: the agent is built from several crates.
pub fn agent_binary() -> PathBuf {
    let path = crate::terraform::binaries_dir().join("slipway-agent");
    let mut checked = BUILD.lock().unwrap_or_else(|p| p.into_inner());
    if !*checked {
        let target_dir = crate::terraform::binaries_dir()
            .parent()
            .expect("target dir")
            .to_path_buf();
        let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args(["build", "-p", "slipway-agent", "--bin", "slipway-agent"])
            .env("CARGO_TARGET_DIR", &target_dir)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .expect("run cargo build -p slipway-agent");
        assert!(status.success(), "cargo build -p slipway-agent failed");
        *checked = true;
    }
    assert!(path.exists(), "{} missing after build", path.display());
    path
}

/// Runs `git` in `dir`, panicking with its output on failure; returns stdout.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let output = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "Mona Lisa")
        .env("GIT_AUTHOR_EMAIL", "mona@example.com")
        .env("GIT_COMMITTER_NAME", "Mona Lisa")
        .env("GIT_COMMITTER_EMAIL", "mona@example.com")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", dir)
        .output()
        .expect("run git");
    assert!(
        output.status.success(),
        "git {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// A bare origin and a clone in which pull requests are merged and pushed.
pub struct Origin {
    pub origin: PathBuf,
    pub clone: PathBuf,
    /// The local backend's state file, outside the repository (each job gets a fresh
    /// work tree, so state must live elsewhere, as it does with any real backend).
    pub state: PathBuf,
}

impl Origin {
    /// A repository whose `infra/` root holds one `terraform_data` resource.
    pub fn new(dir: &Path) -> Origin {
        let origin = dir.join("origin.git");
        let clone = dir.join("clone");
        let state = dir.join("state").join("terraform.tfstate");
        std::fs::create_dir_all(state.parent().unwrap()).unwrap();
        git(
            dir,
            &[
                "init",
                "--bare",
                "--initial-branch=main",
                origin.to_str().unwrap(),
            ],
        );
        git(
            dir,
            &["clone", origin.to_str().unwrap(), clone.to_str().unwrap()],
        );
        git(&clone, &["checkout", "-B", "main"]);
        let o = Origin {
            origin,
            clone,
            state,
        };
        o.write("README.md", "infra\n");
        o.write("infra/main.tf", &o.main_tf("initial"));
        git(&o.clone, &["add", "-A"]);
        git(&o.clone, &["commit", "-m", "initial"]);
        git(&o.clone, &["push", "origin", "main"]);
        o
    }

    /// The root's configuration, with `release` as the resource's input.
    pub fn main_tf(&self, release: &str) -> String {
        format!(
            r#"terraform {{
  backend "local" {{
    path = "{}"
  }}
}}

resource "terraform_data" "release" {{
  input = "{release}"
}}

output "release" {{
  value = terraform_data.release.output
}}
"#,
            self.state.display()
        )
    }

    pub fn write(&self, path: &str, content: &str) {
        let full = self.clone.join(path);
        std::fs::create_dir_all(full.parent().unwrap()).unwrap();
        std::fs::write(full, content).unwrap();
    }

    /// Makes branch `name` with `files` changed, merges it into main with a merge
    /// commit (as GitHub's merge button does) and pushes. Returns the merge commit.
    pub fn merge(&self, name: &str, files: &[(&str, String)]) -> String {
        git(&self.clone, &["checkout", "-q", "-B", name, "main"]);
        for (path, content) in files {
            self.write(path, content);
        }
        self.commit_all(name);
        self.merge_branch(name)
    }

    /// Pushes `files` changed on branch `name` (made from main the first time) to the
    /// origin's `refs/heads/{name}`, as a developer pushes a feature branch. Returns
    /// the branch's new tip.
    pub fn push_branch(&self, name: &str, files: &[(&str, String)]) -> String {
        let exists = Command::new("git")
            .args(["rev-parse", "--verify", "-q", &format!("refs/heads/{name}")])
            .current_dir(&self.clone)
            .env("HOME", &self.clone)
            .output()
            .is_ok_and(|o| o.status.success());
        let start = if exists { name } else { "main" };
        git(&self.clone, &["checkout", "-q", "-B", name, start]);
        for (path, content) in files {
            self.write(path, content);
        }
        let tip = self.commit_all(name);
        git(
            &self.clone,
            &[
                "push",
                "-q",
                "-f",
                "origin",
                &format!("{name}:refs/heads/{name}"),
            ],
        );
        git(&self.clone, &["checkout", "-q", "main"]);
        tip
    }

    /// Commits every change in the clone as `change on {name}`; the new commit.
    fn commit_all(&self, name: &str) -> String {
        git(&self.clone, &["add", "-A"]);
        git(
            &self.clone,
            &["commit", "-q", "-m", &format!("change on {name}")],
        );
        git(&self.clone, &["rev-parse", "HEAD"])
    }

    /// Pushes `files` changed on branch `name` (made from main the first time) as pull
    /// request `number`, the way GitHub publishes one on the base repository:
    /// `refs/pull/N/head`, and the test merge onto main as `refs/pull/N/merge`.
    /// Returns (head, merge, base): the commits to put in the webhook's payload.
    pub fn push_pull_request(
        &self,
        number: u64,
        name: &str,
        files: &[(&str, String)],
    ) -> (String, String, String) {
        let exists = Command::new("git")
            .args(["rev-parse", "--verify", "-q", &format!("refs/heads/{name}")])
            .current_dir(&self.clone)
            .env("HOME", &self.clone)
            .output()
            .is_ok_and(|o| o.status.success());
        if exists {
            git(&self.clone, &["checkout", "-q", name]);
        } else {
            git(&self.clone, &["checkout", "-q", "-B", name, "main"]);
        }
        for (path, content) in files {
            self.write(path, content);
        }
        let head = self.commit_all(name);
        git(
            &self.clone,
            &[
                "push",
                "-q",
                "-f",
                "origin",
                &format!("{name}:refs/pull/{number}/head"),
            ],
        );
        let base = git(&self.clone, &["rev-parse", "main"]);
        git(&self.clone, &["checkout", "-q", "--detach", "main"]);
        git(
            &self.clone,
            &[
                "merge",
                "-q",
                "--no-ff",
                "-m",
                &format!("Merge {head} into {base}"),
                name,
            ],
        );
        let merge = git(&self.clone, &["rev-parse", "HEAD"]);
        git(
            &self.clone,
            &[
                "push",
                "-q",
                "-f",
                "origin",
                &format!("HEAD:refs/pull/{number}/merge"),
            ],
        );
        git(&self.clone, &["checkout", "-q", "main"]);
        (head, merge, base)
    }

    /// Merges the existing branch `name` into main with a merge commit and pushes, as
    /// GitHub's merge button does. Returns the merge commit.
    pub fn merge_branch(&self, name: &str) -> String {
        git(&self.clone, &["checkout", "-q", "main"]);
        git(
            &self.clone,
            &[
                "merge",
                "-q",
                "--no-ff",
                "-m",
                &format!("Merge pull request from {name}"),
                name,
            ],
        );
        git(&self.clone, &["push", "-q", "origin", "main"]);
        git(&self.clone, &["rev-parse", "HEAD"])
    }

    /// A merge that changes the resource's input to `release`.
    pub fn merge_release(&self, name: &str, release: &str) -> String {
        self.merge(name, &[("infra/main.tf", self.main_tf(release))])
    }

    /// Moves main back to `sha` and force-pushes it, the usual way to undo a bad
    /// merge (`git reset --hard main~1 && git push -f`).
    pub fn force_push(&self, sha: &str) {
        git(&self.clone, &["checkout", "-q", "main"]);
        git(&self.clone, &["reset", "-q", "--hard", sha]);
        git(&self.clone, &["push", "-q", "-f", "origin", "main"]);
    }

    /// Whether `a` is an ancestor of (or equal to) `b`.
    pub fn is_ancestor(&self, a: &str, b: &str) -> bool {
        Command::new("git")
            .args(["merge-base", "--is-ancestor", a, b])
            .current_dir(&self.clone)
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    }

    /// The `terraform_data.release` resource's attributes in the state file.
    pub fn release_state(&self) -> Option<serde_json::Value> {
        let text = std::fs::read_to_string(&self.state).ok()?;
        let state: serde_json::Value = serde_json::from_str(&text).ok()?;
        state["resources"]
            .as_array()?
            .iter()
            .find(|r| r["type"] == "terraform_data" && r["name"] == "release")
            .map(|r| r["instances"][0]["attributes"].clone())
    }
}

/// Where the real GitHub payloads are: octokit's published examples, vendored in
/// `tests/fixtures/github-webhooks` (its README names the source and the licence).
pub fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/github-webhooks")
}

/// A fixture payload, parsed.
pub fn fixture(path: &str) -> serde_json::Value {
    let full = fixtures_dir().join(path);
    let text = std::fs::read_to_string(&full)
        .unwrap_or_else(|e| panic!("read fixture {}: {e}", full.display()));
    serde_json::from_str(&text).expect("fixture is JSON")
}

/// GitHub's `pull_request` `closed` payload turned into a merge into main.
pub fn merged_pull_request(number: u64, merge_commit_sha: &str, merged_by: &str) -> Vec<u8> {
    let mut p = fixture("pull_request/closed.payload.json");
    p["number"] = number.into();
    p["pull_request"]["number"] = number.into();
    p["pull_request"]["merged"] = true.into();
    p["pull_request"]["merge_commit_sha"] = merge_commit_sha.into();
    p["pull_request"]["base"]["ref"] = "main".into();
    p["pull_request"]["merged_by"] =
        serde_json::json!({"login": merged_by, "id": 1, "type": "User"});
    serde_json::to_vec(&p).unwrap()
}

/// GitHub's `pull_request` payload for `action` (`opened`, `synchronize`, `closed`,
/// ...) of pull request `number` from branch `head_ref` into main, at these commits.
pub fn pull_request_event(
    action: &str,
    number: u64,
    head_ref: &str,
    (head, merge, base): (&str, &str, &str),
) -> serde_json::Value {
    let file = match action {
        "synchronize" => "pull_request/synchronize.payload.json",
        "closed" => "pull_request/closed.payload.json",
        _ => "pull_request/opened.payload.json",
    };
    let mut p = fixture(file);
    p["action"] = action.into();
    p["number"] = number.into();
    let pr = &mut p["pull_request"];
    pr["number"] = number.into();
    pr["state"] = if action == "closed" { "closed" } else { "open" }.into();
    pr["head"]["sha"] = head.into();
    pr["head"]["ref"] = head_ref.into();
    pr["base"]["ref"] = "main".into();
    pr["base"]["sha"] = base.into();
    pr["merge_commit_sha"] = merge.into();
    pr["merged"] = false.into();
    p
}

/// A `pull_request` `closed` payload of pull request `number` (by `Codertocat`, as in
/// the fixtures) merged into main by `merged_by`, at these commits.
pub fn merged_pull_request_at(
    number: u64,
    head_ref: &str,
    (head, merge, base): (&str, &str, &str),
    merged_by: &str,
) -> Vec<u8> {
    let mut p = pull_request_event("closed", number, head_ref, (head, merge, base));
    p["pull_request"]["merged"] = true.into();
    p["pull_request"]["merged_by"] =
        serde_json::json!({"login": merged_by, "id": 1, "type": "User"});
    serde_json::to_vec(&p).unwrap()
}

/// The `pull_request_review` fixture: review `review_id` by `reviewer` of pull request
/// `number` at `commit`, in `state` (`approved`, `commented`, ...).
pub fn pull_request_review(
    number: u64,
    review_id: u64,
    reviewer: &str,
    commit: &str,
    state: &str,
) -> Vec<u8> {
    let mut p = fixture("pull_request_review/submitted-approved.payload.json");
    p["review"]["id"] = review_id.into();
    p["review"]["user"]["login"] = reviewer.into();
    p["review"]["commit_id"] = commit.into();
    p["review"]["state"] = state.into();
    p["pull_request"]["number"] = number.into();
    p["pull_request"]["head"]["sha"] = commit.into();
    p["pull_request"]["base"]["ref"] = "main".into();
    serde_json::to_vec(&p).unwrap()
}

/// GitHub's `push` payload turned into a push of `after` to main by `pusher`.
pub fn push_to_main(after: &str, pusher: &str) -> Vec<u8> {
    let mut p = fixture("push/payload.json");
    p["ref"] = "refs/heads/main".into();
    p["after"] = after.into();
    p["deleted"] = false.into();
    p["created"] = false.into();
    p["pusher"] = serde_json::json!({"name": pusher, "email": "mona@example.com"});
    serde_json::to_vec(&p).unwrap()
}

/// A `[github]` table for the agent's configuration: GitHub at `api_url`, with
/// `token` stored in a file under `dir`, quick retries, and `extra` keys.
pub fn github_token_config(dir: &Path, api_url: &str, token: &str, extra: &str) -> String {
    let token_file = dir.join("github-token");
    std::fs::write(&token_file, token).unwrap();
    format!(
        "[github]\napi_url = \"{api_url}\"\ntoken = {{ file = \"{}\" }}\nretry_initial_ms = 200\nretry_max_secs = 1\n{extra}\n",
        token_file.display()
    )
}

/// `X-Hub-Signature-256` for `body` under `secret`.
pub fn signature(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// A minimal HTTP/1.1 response.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub body: String,
}

/// One HTTP request over a fresh connection (`Connection: close`).
pub fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Response {
    let mut stream = TcpStream::connect(addr).expect("connect to the agent");
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).expect("read response");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {text}"));
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Response { status, body }
}

/// Waits up to `timeout` for `check` to return `Some`, polling.
pub fn wait_for<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// One agent installation: its directory, key, configuration and (when running) process.
pub struct Agent {
    pub dir: PathBuf,
    pub config: PathBuf,
    pub data_dir: PathBuf,
    pub public_key: PathBuf,
    /// Terraform's environment as the wrapper saw it at each apply.
    pub provenance_log: PathBuf,
    /// While this file exists, the wrapper holds `apply` after it finishes (only in a
    /// directory whose path ends with the file's text, when it has any).
    pub hold_file: PathBuf,
    pub applied_marker: PathBuf,
    pub wrapper_pid: PathBuf,
    child: Option<Child>,
    log: PathBuf,
    starts: u32,
    json_logs: bool,
    max_open_files: Option<u64>,
    env: Vec<(String, String)>,
    /// The state is in a shared database, not in `data_dir`.
    shared_database: bool,
}

/// Options for [`Agent::new`].
pub struct AgentOptions {
    pub poller: bool,
    pub job_timeout_secs: u64,
    pub shutdown_grace_secs: u64,
    /// `server.public_url`.
    pub public_url: Option<String>,
    /// After a successful apply, the wrapper waits this long before exiting (a slow
    /// apply that finishes by itself).
    pub slow_apply_secs: u64,
    /// TOML appended to the configuration (a `[github]` table, say).
    pub extra_config: String,
    /// `SLIPWAY_LOG_FORMAT=json`.
    pub json_logs: bool,
    /// The repository's `url` instead of the origin's path (an HTTP remote, say).
    pub repository_url: Option<String>,
    /// The agent's file descriptor limit (soft and hard), as `LimitNOFILE=` sets it.
    pub max_open_files: Option<u64>,
    /// Variables added to the agent's environment (and so its Terraform runs'), such
    /// as `SLIPWAY_HOME`.
    pub env: Vec<(String, String)>,
    /// `[database] postgres`: the agent's state in that PostgreSQL database.
    pub postgres: Option<String>,
}

impl Default for AgentOptions {
    fn default() -> Self {
        AgentOptions {
            poller: false,
            job_timeout_secs: 600,
            shutdown_grace_secs: 90,
            public_url: None,
            slow_apply_secs: 0,
            extra_config: String::new(),
            json_logs: false,
            repository_url: None,
            max_open_files: None,
            env: Vec::new(),
            postgres: None,
        }
    }
}

impl Agent {
    /// Writes a key pair (with `slipway-agent keygen`), a `terraform` wrapper and a
    /// configuration for `origin`'s `infra` root.
    pub fn new(
        dir: &Path,
        origin: &Origin,
        terraform: &TerraformBinary,
        options: AgentOptions,
    ) -> Agent {
        let keys = dir.join("keys");
        let out = Command::new(agent_binary())
            .args(["keygen", "--out", keys.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "keygen: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let data_dir = dir.join("data");
        let provenance_log = dir.join("provenance.log");
        let hold_file = dir.join("hold-apply");
        let applied_marker = dir.join("applied");
        let wrapper_pid = dir.join("wrapper.pid");
        // The wrapper records what Terraform is given, and can hold an apply open after
        // it completed so a test can kill the agent at that moment. It then `exec`s
        // the real terraform, so everything else is Terraform's own behaviour.
        let wrapper = dir.join("terraform-wrapper.sh");
        std::fs::write(
            &wrapper,
            format!(
                r#"#!/bin/sh
if [ "$1" = apply ]; then
  {{ echo "--- apply"; env | grep '^SLIPWAY_' | sort; env | grep -c E2E_WEBHOOK_SECRET || true; }} >> "{prov}"
  if [ -e "{hold}" ] && case "$PWD" in *"$(cat "{hold}")") true ;; *) false ;; esac; then
    "{real}" "$@"
    echo $$ > "{pid}"
    touch "{applied}"
    exec sleep 600
  fi
  if [ {slow} -gt 0 ]; then
    "{real}" "$@"
    rc=$?
    touch "{applied}"
    sleep {slow}
    exit $rc
  fi
fi
exec "{real}" "$@"
"#,
                slow = options.slow_apply_secs,
                prov = provenance_log.display(),
                hold = hold_file.display(),
                real = terraform.path.display(),
                pid = wrapper_pid.display(),
                applied = applied_marker.display(),
            ),
        )
        .unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let config = dir.join("slipway-agent.toml");
        std::fs::write(
            &config,
            format!(
                r#"data_dir = "{data}"
terraform = "{wrapper}"
max_parallel = 2
job_timeout_secs = {timeout}
shutdown_grace_secs = {grace}

[server]
listen = "127.0.0.1:0"
{public_url}

[poller]
enabled = {poller}
interval_secs = 1

[secrets]
webhook_secret = {{ env = "E2E_WEBHOOK_SECRET" }}
api_token = {{ env = "E2E_API_TOKEN" }}
signing_key = {{ file = "{key}" }}

{database}
[[repository]]
name = "hello"
github = "{GITHUB_REPO}"
url = "{origin}"

[[repository.root]]
name = "infra"
path = "infra"

{extra}
"#,
                grace = options.shutdown_grace_secs,
                public_url = options
                    .public_url
                    .as_ref()
                    .map(|u| format!("public_url = \"{u}\""))
                    .unwrap_or_default(),
                extra = options.extra_config,
                database = options
                    .postgres
                    .as_ref()
                    .map(|s| format!("[database]\npostgres = \"{s}\"\n"))
                    .unwrap_or_default(),
                data = data_dir.display(),
                wrapper = wrapper.display(),
                poller = options.poller,
                timeout = options.job_timeout_secs,
                key = keys.join("slipway-agent.key").display(),
                origin = options
                    .repository_url
                    .clone()
                    .unwrap_or_else(|| origin.origin.display().to_string()),
            ),
        )
        .unwrap();
        Agent {
            dir: dir.to_owned(),
            config,
            data_dir,
            public_key: keys.join("slipway-agent.pub"),
            provenance_log,
            hold_file,
            applied_marker,
            wrapper_pid,
            child: None,
            log: dir.join("agent.log"),
            starts: 0,
            json_logs: options.json_logs,
            max_open_files: options.max_open_files,
            env: options.env,
            shared_database: options.postgres.is_some(),
        }
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new(agent_binary());
        cmd.arg("--config")
            .arg(&self.config)
            .env("E2E_WEBHOOK_SECRET", WEBHOOK_SECRET)
            .env("E2E_API_TOKEN", API_TOKEN)
            .env("SLIPWAY_LOG", "info")
            .env(
                "SLIPWAY_LOG_FORMAT",
                if self.json_logs { "json" } else { "text" },
            )
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd
    }

    /// Starts `slipway-agent run` and waits until it answers `/healthz`.
    pub fn start(&mut self) -> SocketAddr {
        assert!(self.child.is_none(), "agent already running");
        let _ = std::fs::remove_file(self.data_dir.join("agent.addr"));
        self.starts += 1;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        // Its own process group, as under a shell's job control or a supervisor, so
        // [`Agent::kill9_group`] can kill the group as they would.
        let mut command = self.command();
        command.arg("run").stdout(Stdio::null()).stderr(log);
        if let Some(limit) = self.max_open_files {
            // SAFETY: setrlimit is async-signal-safe and touches no memory of the parent.
            unsafe {
                std::os::unix::process::CommandExt::pre_exec(&mut command, move || {
                    nix::sys::resource::setrlimit(
                        nix::sys::resource::Resource::RLIMIT_NOFILE,
                        limit,
                        limit,
                    )
                    .map_err(std::io::Error::from)
                });
            }
        }
        let child = std::os::unix::process::CommandExt::process_group(&mut command, 0)
            .spawn()
            .expect("spawn slipway-agent run");
        self.child = Some(child);
        let addr_file = self.data_dir.join("agent.addr");
        let addr: SocketAddr = wait_for("the agent to listen", Duration::from_secs(60), || {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!("agent exited with {status}: {}", self.log_text());
                }
            }
            std::fs::read_to_string(&addr_file)
                .ok()?
                .trim()
                .parse()
                .ok()
        });
        wait_for("/healthz", Duration::from_secs(30), || {
            let ok = TcpStream::connect(addr).is_ok()
                && http(addr, "GET", "/healthz", &[], b"").status == 200;
            ok.then_some(())
        });
        addr
    }

    /// SIGKILL, as an OOM killer or a power cut would.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    /// SIGKILL to the agent's whole process group, as a shell or supervisor killing
    /// "the agent" would: any child still in that group dies with it.
    pub fn kill9_group(&mut self) {
        if let Some(mut child) = self.child.take() {
            let status = Command::new("kill")
                .args(["-9", "--", &format!("-{}", child.id())])
                .status()
                .unwrap();
            assert!(status.success());
            child.wait().unwrap();
        }
    }

    /// SIGTERM, as systemd or Kubernetes would send; returns the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        self.send_sigterm();
        self.wait_exit(Duration::from_secs(120))
    }

    /// Sends SIGTERM and returns at once.
    pub fn send_sigterm(&self) {
        let child = self.child.as_ref().expect("agent running");
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Whether the agent process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().unwrap().is_none())
    }

    /// Waits for the agent to exit; panics after `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("agent running");
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("agent did not exit within {timeout:?}: {}", self.log_text());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Everything the agent logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Runs a CLI subcommand against this agent's configuration.
    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        self.cli_env(args, &[])
    }

    /// [`Agent::cli`] with variables added to its environment (`SLIPWAY_TOKEN`, say).
    pub fn cli_env(&self, args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
        self.command()
            .args(args)
            .envs(env.iter().copied())
            .output()
            .expect("run slipway-agent")
    }

    /// `slipway-agent token create`: the new identity's token.
    pub fn create_token(&self, name: &str, role: &str) -> String {
        let out = self.cli(&["token", "create", "--name", name, "--role", role]);
        assert!(out.status.success(), "token create: {out:?}");
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    }

    /// The audit log, via `slipway-agent audit export --json`.
    pub fn audit(&self) -> Vec<serde_json::Value> {
        if !self.shared_database && !self.data_dir.join("slipway.db").exists() {
            return Vec::new();
        }
        let out = self.cli(&["audit", "export", "--json"]);
        assert!(
            out.status.success(),
            "audit export: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("audit export is JSON")
    }

    /// Waits until the audit log has a record matching `pred`, and returns it.
    pub fn wait_for_record(
        &self,
        what: &str,
        pred: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(240);
        loop {
            let log = self.audit();
            if let Some(r) = log.iter().find(|r| pred(r)) {
                return r.clone();
            }
            if Instant::now() > deadline {
                panic!(
                    "timed out waiting for {what}\n--- audit\n{}\n--- agent log\n{}",
                    serde_json::to_string_pretty(&log).unwrap(),
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// `GET /healthz` counts: (queued, running, done).
    pub fn counts(&self, addr: SocketAddr) -> (i64, i64, i64) {
        let r = http(addr, "GET", "/healthz", &[], b"");
        let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        (
            v["queued"].as_i64().unwrap(),
            v["running"].as_i64().unwrap(),
            v["done"].as_i64().unwrap(),
        )
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.kill9();
        if let Ok(pid) = std::fs::read_to_string(&self.wrapper_pid) {
            let _ = Command::new("kill")
                .args(["-9", pid.trim()])
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// `payload=<url-encoded json>`, the body of a `form` webhook delivery.
pub fn deliver_form_body(json: &[u8]) -> Vec<u8> {
    let mut body = b"payload=".to_vec();
    for &b in json {
        if b.is_ascii_alphanumeric() || b"-_.*".contains(&b) {
            body.push(b);
        } else if b == b' ' {
            body.push(b'+');
        } else {
            body.extend(format!("%{b:02X}").bytes());
        }
    }
    body
}

/// Sends `json` as a webhook with content type `form` (the GitHub API's default when a
/// hook is created): `payload=<url-encoded JSON>`, signed over that raw body.
pub fn deliver_form(
    addr: SocketAddr,
    event: &str,
    delivery: &str,
    json: &[u8],
    secret: &str,
) -> Response {
    let body = deliver_form_body(json);
    let sig = signature(secret, &body);
    let headers = [
        ("X-GitHub-Event", event),
        ("X-GitHub-Delivery", delivery),
        ("Content-Type", "application/x-www-form-urlencoded"),
        ("User-Agent", "GitHub-Hookshot/e2e"),
        ("X-Hub-Signature-256", sig.as_str()),
    ];
    http(addr, "POST", "/webhooks/github", &headers, &body)
}

/// Sends a webhook delivery signed with `secret` (no signature header when `None`).
pub fn deliver(
    addr: SocketAddr,
    event: &str,
    delivery: &str,
    body: &[u8],
    secret: Option<&str>,
) -> Response {
    let sig = secret.map(|s| signature(s, body));
    let mut headers = vec![
        ("X-GitHub-Event", event),
        ("X-GitHub-Delivery", delivery),
        ("Content-Type", "application/json"),
        ("User-Agent", "GitHub-Hookshot/e2e"),
    ];
    if let Some(sig) = sig.as_deref() {
        headers.push(("X-Hub-Signature-256", sig));
    }
    http(addr, "POST", "/webhooks/github", &headers, body)
}
