//! The prompt path's cost: a real MCP client (the official Python SDK) against
//! slipway-agent's `/mcp` (and `slipway-agent mcp` on stdio), each figure next to the
//! same operation through the platform's gRPC API directly, in the same run, with the
//! same agent token:
//!
//! - deploy: a tool call with a spec (a new PREVIEW environment and the demo application,
//!   healthy once `/healthz` answers) until it returns with the URL, which then answers;
//!   the baseline is ApplyEnvironment + ApplyApplication. Both include the application's
//!   own start, so the difference is what MCP adds.
//! - list: `list_environments` with 200 applications (stopped, so that 200 processes do
//!   not measure the machine); the baseline is ListEnvironments + Status + WhoAmI.
//! - branch preview: `deploy_branch_preview` of a pushed branch (waiting for the job)
//!   until the preview's URL answers, through the real agent, git and Terraform; the
//!   baseline is the same root applied by hand (`terraform init`, `workspace new`,
//!   `apply`) on the same runtime.
//!
//! Median of several runs each. Run: `cargo bench -p slipway-tests --bench mcp`.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use slipway_proto::runtime as pb;
use slipway_proto::runtime::local_runtime_client::LocalRuntimeClient;
use slipway_tests::local_harness::body;
use slipway_tests::mcp_client::{self, demo_app, deploy_step, http_program};
use slipway_tests::served_platform::ServedPlatform;

const DEPLOYS: usize = 5;
const LISTS: usize = 20;
const APPLICATIONS: usize = 200;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

struct Grpc {
    client: LocalRuntimeClient<tonic::transport::Channel>,
    bearer: tonic::metadata::AsciiMetadataValue,
}

impl Grpc {
    async fn connect(platform: &ServedPlatform, token: &str) -> Grpc {
        let channel = slipway_proto::connect_unix(platform.socket())
            .await
            .unwrap();
        Grpc {
            client: LocalRuntimeClient::new(channel),
            bearer: format!("Bearer {token}").parse().unwrap(),
        }
    }

    fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        request
            .metadata_mut()
            .insert("authorization", self.bearer.clone());
        request
    }

    async fn environment(&mut self, name: &str) -> String {
        let id = format!("bench-env-{name}");
        let r = self.request(pb::ApplyEnvironmentRequest {
            spec: Some(pb::EnvironmentSpec {
                id: id.clone(),
                name: name.into(),
                mode: pb::Mode::Preview as i32,
                ..Default::default()
            }),
            change: Some(pb::ChangeRecord {
                trigger: "bench".into(),
                ..Default::default()
            }),
        });
        self.client.apply_environment(r).await.unwrap();
        id
    }

    async fn application(&mut self, env: &str, name: &str, replicas: u32) -> pb::Application {
        let r = self.request(pb::ApplyApplicationRequest {
            spec: Some(pb::ApplicationSpec {
                id: format!("bench-app-{env}-{name}"),
                environment_id: env.into(),
                name: name.into(),
                command: Some(demo_app().display().to_string()),
                replicas,
                ports: vec![pb::PortSpec {
                    name: "http".into(),
                    port: 8080,
                    protocol: pb::Protocol::Tcp as i32,
                    public: true,
                }],
                variables: [("APP_VERSION".to_owned(), "from-mcp".to_owned())].into(),
                healthcheck: Some(pb::HealthCheck {
                    probe: Some(pb::health_check::Probe::Http(pb::HttpProbe {
                        path: "/healthz".into(),
                        port: 8080,
                    })),
                    interval_ms: 200,
                    timeout_ms: 1000,
                    healthy_threshold: 1,
                    unhealthy_threshold: 3,
                }),
                ..Default::default()
            }),
            change: Some(pb::ChangeRecord {
                trigger: "bench".into(),
                ..Default::default()
            }),
            timeout_ms: 60_000,
        });
        self.client.apply_application(r).await.unwrap().into_inner()
    }

    async fn list(&mut self) {
        let r = self.request(pb::WhoAmIRequest {});
        self.client.who_am_i(r).await.unwrap();
        let r = self.request(pb::ListEnvironmentsRequest {});
        self.client.list_environments(r).await.unwrap();
        let r = self.request(pb::StatusRequest {});
        self.client.status(r).await.unwrap();
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let platform = ServedPlatform::start();
    let token = platform.token("bench@mcp", "agent");
    let (_agent, addr) = mcp_client::agent(dir.path(), &platform);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut grpc = rt.block_on(Grpc::connect(&platform, &token));

    // Deploy: gRPC baseline.
    let mut baseline = Vec::new();
    for i in 0..DEPLOYS {
        let start = Instant::now();
        let app = rt.block_on(async {
            let env = grpc.environment(&format!("grpc-{i}")).await;
            grpc.application(&env, "web", 1).await
        });
        let url = app.endpoints["http"].clone();
        assert_eq!(body(&url), "from-mcp");
        baseline.push(ms(start.elapsed()));
    }
    // Deploy: MCP over HTTP, one session, a new environment each time.
    let steps: Vec<Value> = (0..DEPLOYS)
        .map(|i| deploy_step(&format!("mcp-{i}"), "web", Some("PREVIEW")))
        .collect();
    let results = mcp_client::run(&http_program(addr, &token, json!(steps)));
    let mut over_http = Vec::new();
    for r in &results {
        let url = r["structured"]["endpoints"]["http"]
            .as_str()
            .unwrap_or_else(|| panic!("{r}"));
        assert_eq!(body(url), "from-mcp");
        over_http.push(r["ms"].as_f64().unwrap());
    }
    // Deploy: MCP over stdio.
    let steps: Vec<Value> = (0..DEPLOYS)
        .map(|i| deploy_step(&format!("stdio-{i}"), "web", Some("PREVIEW")))
        .collect();
    let results = mcp_client::run(&json!({
        "transport": "stdio",
        "command": slipway_tests::agent_support::agent_binary().display().to_string(),
        "args": ["mcp"],
        "env": {
            "SLIPWAY_HOME": platform.home.path().display().to_string(),
            "SLIPWAY_TOKEN": token,
            "SLIPWAY_LOG": "warn",
        },
        "steps": steps,
    }));
    let over_stdio: Vec<f64> = results.iter().map(|r| r["ms"].as_f64().unwrap()).collect();
    let (b, h, s) = (median(baseline), median(over_http), median(over_stdio));
    println!("deploy a spec -> URL answering (median of {DEPLOYS}, the app's own start included in both):");
    println!("  gRPC ApplyEnvironment + ApplyApplication: {b:8.1} ms");
    println!(
        "  MCP deploy_application over HTTP:          {h:8.1} ms  ({:.2}x)",
        h / b
    );
    println!(
        "  MCP deploy_application over stdio:         {s:8.1} ms  ({:.2}x)",
        s / b
    );

    // List with 200 applications (stopped: the listing is measured, not 200 processes).
    rt.block_on(async {
        let env = grpc.environment("many").await;
        for i in 0..APPLICATIONS {
            grpc.application(&env, &format!("app-{i}"), 0).await;
        }
    });
    let mut baseline = Vec::new();
    for _ in 0..LISTS {
        let start = Instant::now();
        rt.block_on(grpc.list());
        baseline.push(ms(start.elapsed()));
    }
    let steps: Vec<Value> = (0..LISTS)
        .map(|_| json!({"op": "call", "tool": "list_environments", "args": {}}))
        .collect();
    let results = mcp_client::run(&http_program(addr, &token, json!(steps)));
    let count: usize = results[0]["structured"]["environments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["applications"].as_array().unwrap().len())
        .sum();
    assert!(count > APPLICATIONS, "{count} applications listed");
    let listed: Vec<f64> = results.iter().map(|r| r["ms"].as_f64().unwrap()).collect();
    let (b, h) = (median(baseline), median(listed));
    println!("list with {count} applications (median of {LISTS}):");
    println!("  gRPC WhoAmI + ListEnvironments + Status: {b:8.1} ms");
    println!(
        "  MCP list_environments over HTTP:          {h:8.1} ms  ({:.2}x)",
        h / b
    );
    drop(_agent);
    drop(platform);
    branch_preview();
}

/// Tool call -> branch preview URL answering, against the same root by hand.
fn branch_preview() {
    use slipway_tests::preview_support::{answers, preview_root, preview_setup};
    const RUNS: usize = 3;
    let mut s = preview_setup("true", "", "");
    let _platform = slipway_tests::served_platform::serve(s.home.path());
    let addr = s.agent.start();
    let out = s
        .home
        .cli(&["token", "create", "--name", "bench@mcp", "--role", "agent"]);
    assert!(out.status.success(), "{out:?}");
    let token = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let state = s.tmp.path().join("preview-state");
    let mut over_mcp = Vec::new();
    for i in 0..RUNS {
        let branch = format!("bench/{i}");
        s.origin.push_branch(
            &branch,
            &[("infra/main.tf", preview_root(&state, "PREVIEW", &branch))],
        );
        let clock = Instant::now();
        let results = mcp_client::run(&http_program(
            addr,
            &token,
            json!([{"op": "call", "tool": "deploy_branch_preview",
                    "args": {"branch": branch, "wait_secs": 50}}]),
        ));
        let done = &results[0]["structured"];
        assert_eq!(done["outcome"], "succeeded", "{done}");
        let url = done["urls"]["url"].as_str().unwrap().to_owned();
        while answers(&url).as_deref() != Some(branch.as_str()) {
            std::thread::sleep(Duration::from_millis(20));
        }
        // The whole of it, the Python client's start included: what an agent waits.
        over_mcp.push(ms(clock.elapsed()));
        let destroyed = mcp_client::run(&http_program(
            addr,
            &token,
            json!([{"op": "call", "tool": "destroy_preview",
                    "args": {"branch": branch, "wait_secs": 50}}]),
        ));
        assert_eq!(
            destroyed[0]["structured"]["outcome"], "succeeded",
            "{}",
            destroyed[0]
        );
    }
    let tf = slipway_tests::agent_support::terraform_with_terraform_data();
    let by_hand: Vec<f64> = (0..RUNS)
        .map(|i| ms(s.apply_by_hand(&tf, &format!("hand-{i}"))))
        .collect();
    let (m, b) = (median(over_mcp.clone()), median(by_hand.clone()));
    println!(
        "branch preview: tool call -> URL answering (median of {RUNS}; runs {over_mcp:.0?} ms):"
    );
    println!("  terraform init + workspace new + apply by hand: {b:8.1} ms  (runs {by_hand:.0?})");
    println!(
        "  MCP deploy_branch_preview over HTTP:            {m:8.1} ms  ({:.2}x)",
        m / b
    );
    drop(s);
}
