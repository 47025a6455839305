//! Pull requests through the real agent, for the tests and the benchmark: signed
//! `pull_request` deliveries, the agent's comments on the fake GitHub, and an agent
//! whose roots have previews on a local runtime of their own.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use crate::agent_support::*;
use crate::fake_github::{Auth, FakeGitHub};
use crate::local_harness::RuntimeHome;

pub const GITHUB_TOKEN: &str = "ghp_e2eTokenForTheFakeGitHub0002";
pub const PUBLIC_URL: &str = "https://slipway.example.com";

/// Sends `event` as a signed `pull_request` delivery.
pub fn send(addr: SocketAddr, event: &Value, delivery: &str) -> Response {
    let body = serde_json::to_vec(event).unwrap();
    deliver(addr, "pull_request", delivery, &body, Some(WEBHOOK_SECRET))
}

/// The comments on pull request `number` that carry `marker`.
pub fn marked(fake: &FakeGitHub, number: u64, marker: &str) -> Vec<(u64, String)> {
    fake.comments(number)
        .into_iter()
        .filter(|(_, body)| body.contains(marker))
        .collect()
}

/// Waits for the one comment with `marker` on `number` to contain `text`.
pub fn wait_for_comment(
    fake: &FakeGitHub,
    agent: &Agent,
    number: u64,
    marker: &str,
    text: &str,
) -> (u64, String) {
    let deadline = std::time::Instant::now() + Duration::from_secs(180);
    loop {
        let found = marked(fake, number, marker);
        if let Some(c) = found.iter().find(|(_, b)| b.contains(text)) {
            return c.clone();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no comment {marker} containing {text:?} on #{number}: {found:?}\n--- agent log\n{}",
            agent.log_text()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A root on the local runtime: an environment named after the preview (with `-prod`
/// for a PRODUCTION one) and the demo application with a public port answering
/// `version`, whose URL is the root's output `url`.
pub fn preview_root(state: &Path, mode: &str, version: &str) -> String {
    let suffix = if mode == "PRODUCTION" { "-prod" } else { "" };
    format!(
        r#"terraform {{
  required_providers {{
    slipway = {{ source = "slipway/slipway" }}
  }}
  backend "local" {{
    path          = "{state}/default.tfstate"
    workspace_dir = "{state}/workspaces"
  }}
}}

variable "preview_name" {{
  type = string
}}

variable "demo_app" {{
  type = string
}}

resource "slipway_environment" "this" {{
  name = "${{var.preview_name}}{suffix}"
  mode = "{mode}"
}}

resource "slipway_application" "web" {{
  environment_id = slipway_environment.this.id
  name           = "web"
  command        = var.demo_app
  replicas       = 1
  ports          = [{{ name = "http", port = 8080, public = true }}]
  variables      = {{ APP_VERSION = "{version}" }}
  healthcheck    = {{ type = "http", path = "/healthz", port = 8080, interval = "1s" }}
}}

output "url" {{
  value = slipway_application.web.endpoints["http"]
}}
"#,
        state = state.display()
    )
}

/// An agent whose `infra` root (and the roots in `extra_roots`) has previews on the
/// local runtime of `home`, whose platform trusts the agent's key.
pub struct PreviewSetup {
    pub tmp: tempfile::TempDir,
    pub fake: FakeGitHub,
    pub origin: Origin,
    pub agent: Agent,
    pub home: RuntimeHome,
    pub demo_app: PathBuf,
}

pub fn preview_setup(root_preview: &str, extra_roots: &str, previews_table: &str) -> PreviewSetup {
    let tf = terraform_with_terraform_data();
    let tmp = tempfile::tempdir().unwrap();
    let fake = FakeGitHub::start(Auth::Token(GITHUB_TOKEN.into()));
    let origin = Origin::new(tmp.path());
    let home = RuntimeHome::new();
    let demo_app = tmp.path().join("preview-demo-app");
    std::fs::copy(
        crate::terraform::binaries_dir().join("slipway-demo-app"),
        &demo_app,
    )
    .unwrap();
    let rc = crate::local_harness::mirror_cli_config(tmp.path());
    // The infra root becomes a preview root on main (not deployed: no merge job runs).
    let state = tmp.path().join("preview-state");
    let attack_state = tmp.path().join("attack-state");
    origin.merge(
        "previews",
        &[
            ("infra/main.tf", preview_root(&state, "PREVIEW", "main")),
            // What an attacker's root asks for: a PRODUCTION environment.
            (
                "attack/main.tf",
                preview_root(&attack_state, "PRODUCTION", "main"),
            ),
        ],
    );
    let extra = format!(
        "plan_pull_requests = false\npreview = {root_preview}\nvariables = {{ demo_app = \"{app}\" }}\n\n{extra_roots}\n{previews_table}\n{}",
        github_token_config(tmp.path(), &fake.api_url, GITHUB_TOKEN, ""),
        app = demo_app.display()
    )
    .replace("DEMO_APP", &demo_app.display().to_string());
    let options = AgentOptions {
        public_url: Some(PUBLIC_URL.into()),
        extra_config: extra,
        job_timeout_secs: 300,
        env: vec![
            ("SLIPWAY_HOME".into(), home.path().display().to_string()),
            ("TF_CLI_CONFIG_FILE".into(), rc.display().to_string()),
        ],
        ..AgentOptions::default()
    };
    let agent = Agent::new(tmp.path(), &origin, &tf, options);
    // The platform trusts the agent's key for job credentials (and nothing else).
    let public = std::fs::read_to_string(&agent.public_key).unwrap();
    std::fs::write(
        home.path().join("platform.toml"),
        format!("engine_public_key = \"{}\"\n", public.trim()),
    )
    .unwrap();
    PreviewSetup {
        tmp,
        fake,
        origin,
        agent,
        home,
        demo_app,
    }
}

impl PreviewSetup {
    /// Pushes pull request `number` with the infra app answering `version`.
    pub fn push(&self, number: u64, version: &str) -> (String, String, String) {
        let state = self.tmp.path().join("preview-state");
        self.origin.push_pull_request(
            number,
            &format!("feature-{number}"),
            &[("infra/main.tf", preview_root(&state, "PREVIEW", version))],
        )
    }

    /// The URL posted for pull request `number`, once its preview comment says the
    /// preview is up at `commit`.
    pub fn posted_url(&self, number: u64, commit: &str) -> String {
        let (_, body) = wait_for_comment(
            &self.fake,
            &self.agent,
            number,
            "<!-- slipway:preview:infra -->",
            &format!("`{}`", &commit[..7]),
        );
        body.lines()
            .find_map(|l| l.strip_prefix("- url: "))
            .unwrap_or_else(|| panic!("no URL in {body}"))
            .trim()
            .to_owned()
    }

    pub fn demo_processes(&self) -> Vec<u32> {
        crate::local_harness::processes_of(&self.demo_app)
    }

    /// The baseline of the preview benchmarks: the preview root applied by hand
    /// (`terraform init`, `workspace new`, `apply`) in a fresh directory, on this
    /// setup's runtime, as workspace `workspace`; how long that took. Destroyed after.
    pub fn apply_by_hand(
        &self,
        tf: &crate::terraform::TerraformBinary,
        workspace: &str,
    ) -> Duration {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        std::fs::write(
            dir.path().join("main.tf"),
            preview_root(&state, "PREVIEW", "by-hand"),
        )
        .unwrap();
        let rc = crate::local_harness::mirror_cli_config(dir.path());
        let run = |args: &[&str]| {
            let out = std::process::Command::new(&tf.path)
                .args(args)
                .current_dir(dir.path())
                .env("TF_CLI_CONFIG_FILE", &rc)
                .env("SLIPWAY_HOME", self.home.path())
                .env("CHECKPOINT_DISABLE", "1")
                .env("TF_IN_AUTOMATION", "1")
                .env("TF_VAR_demo_app", &self.demo_app)
                .env("TF_VAR_preview_name", workspace)
                .output()
                .unwrap();
            assert!(out.status.success(), "terraform {args:?}: {out:?}");
        };
        let clock = std::time::Instant::now();
        run(&["init", "-input=false", "-no-color"]);
        run(&["workspace", "new", "-no-color", workspace]);
        run(&["apply", "-auto-approve", "-input=false", "-no-color"]);
        let took = clock.elapsed();
        run(&[
            "apply",
            "-destroy",
            "-auto-approve",
            "-input=false",
            "-no-color",
        ]);
        took
    }
}

/// The body of `GET url` when it answers 200.
pub fn answers(url: &str) -> Option<String> {
    match crate::local_harness::get(url) {
        Ok((200, body)) => Some(body),
        _ => None,
    }
}
