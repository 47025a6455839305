//! The prompt path, end to end: a real MCP client nobody here wrote (the official
//! Python SDK, PyPI `mcp`) talks to slipway-agent's MCP server over streamable HTTP
//! (`/mcp`) and over stdio (`slipway-agent mcp`), which passes each caller's platform
//! token on to the real embedded platform (`terraform-provider-slipway runtime serve`).
//!
//! Proves: no token or an unknown one gets 401; a viewer sees no write tool and a write
//! tool called by name anyway is refused by the platform; an agent token deploys a spec
//! to PREVIEW and gets a URL that answers, scales it, reads its logs, destroys it; the
//! same token is refused STAGING and PRODUCTION with the platform's words; bad input
//! gets an error naming the field and changes nothing; every change and refusal is in
//! the platform's audit log with its identity, how `mcp` and the tool's name.

use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};
use slipway_tests::agent_support::http;
use slipway_tests::local_harness::{body, refuses, wait_for};
use slipway_tests::mcp_client::{self, agent, deploy_step, http_program};
use slipway_tests::served_platform::ServedPlatform as Platform;

fn tool_names(result: &Value) -> Vec<String> {
    result["tools"]
        .as_array()
        .unwrap_or_else(|| panic!("no tools in {result}"))
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_owned())
        .collect()
}

const WRITE_TOOLS: [&str; 5] = [
    "deploy_application",
    "scale_application",
    "restart_application",
    "destroy_application",
    "destroy_environment",
];

fn call(tool: &str, args: Value) -> Value {
    json!({"op": "call", "tool": tool, "args": args})
}

/// A tool result that succeeded; its structured content.
fn ok(result: &Value) -> &Value {
    assert!(
        result.get("error").is_none() && result["is_error"] == json!(false),
        "the tool call failed: {result}"
    );
    &result["structured"]
}

/// A tool result the platform refused; its text.
fn refused(result: &Value) -> String {
    assert_eq!(result["is_error"], json!(true), "not refused: {result}");
    result["text"].as_str().unwrap().to_owned()
}

/// A JSON-RPC error; its message.
fn rpc_error(result: &Value) -> String {
    result["error"]["message"]
        .as_str()
        .unwrap_or_else(|| panic!("not a JSON-RPC error: {result}"))
        .to_owned()
}

#[test]
fn an_ai_agent_deploys_previews_over_http_and_never_reaches_production() {
    let dir = tempfile::tempdir().unwrap();
    let platform = Platform::start();
    let (_agent, addr) = agent(dir.path(), &platform);
    let agent_token = platform.token("claude-code@alice", "agent");
    let viewer_token = platform.token("victor", "viewer");

    // No token, or one the platform does not know: 401 before any MCP.
    let initialize = br#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"curl","version":"1"}}}"#;
    let headers = [
        ("content-type", "application/json"),
        ("accept", "application/json, text/event-stream"),
    ];
    let bare = http(addr, "POST", "/mcp", &headers, initialize);
    assert_eq!(bare.status, 401, "{}", bare.body);
    let unknown = http(
        addr,
        "POST",
        "/mcp",
        &[
            headers[0],
            headers[1],
            ("authorization", "Bearer slw_not-a-token"),
        ],
        initialize,
    );
    assert_eq!(unknown.status, 401, "{}", unknown.body);

    // A viewer sees no write tool; calling one by name anyway is the platform's refusal.
    let viewer = mcp_client::run(&http_program(
        addr,
        &viewer_token,
        json!([
            {"op": "list_tools"},
            deploy_step("pr-7", "web", Some("PREVIEW")),
        ]),
    ));
    let names = tool_names(&viewer[0]);
    assert!(names.contains(&"list_environments".to_owned()), "{names:?}");
    for write in WRITE_TOOLS {
        assert!(!names.contains(&write.to_owned()), "a viewer sees {write}");
    }
    let why = refused(&viewer[1]);
    assert!(why.contains("viewer"), "{why}");

    // The agent sees the write tools, with the destructive ones marked.
    let mut session = mcp_client::run(&http_program(
        addr,
        &agent_token,
        json!([
            {"op": "list_tools"},
            deploy_step("pr-7", "web", Some("PREVIEW")),
            call("list_environments", json!({})),
        ]),
    ));
    let tools = session.remove(0);
    let names = tool_names(&tools);
    for write in WRITE_TOOLS {
        assert!(
            names.contains(&write.to_owned()),
            "the agent misses {write}"
        );
    }
    let annotation = |name: &str, key: &str| {
        tools["tools"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["name"] == name)
            .unwrap()["annotations"][key]
            .clone()
    };
    assert_eq!(
        annotation("destroy_application", "destructiveHint"),
        json!(true)
    );
    assert_eq!(
        annotation("destroy_environment", "destructiveHint"),
        json!(true)
    );
    assert_eq!(
        annotation("deploy_application", "destructiveHint"),
        json!(false)
    );
    assert_eq!(annotation("list_environments", "readOnlyHint"), json!(true));
    assert!(tools["tools"][0]["input_schema"]["type"] == "object");

    // Deployed to PREVIEW: the URL answers.
    let deployed = ok(&session[0]).clone();
    assert_eq!(deployed["mode"], "PREVIEW");
    assert_eq!(deployed["status"], "running", "{deployed}");
    assert_eq!(deployed["last_change"]["changed_by"], "claude-code@alice");
    let url = deployed["endpoints"]["http"].as_str().unwrap().to_owned();
    assert_eq!(body(&url), "from-mcp");
    let listed = ok(&session[1]);
    assert_eq!(listed["caller"], "claude-code@alice");
    assert_eq!(listed["you_may_change"], json!(["DEVELOPMENT", "PREVIEW"]));
    let env = listed["environments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "pr-7")
        .unwrap();
    assert_eq!(env["mode"], "PREVIEW");
    assert_eq!(env["applications"][0]["endpoints"]["http"], url.as_str());

    // Scale, read, logs; then the attacks and the bad input; then destroy.
    let huge = "x".repeat(10 * 1024 * 1024);
    let results = mcp_client::run(&http_program(
        addr,
        &agent_token,
        json!([
            call(
                "scale_application",
                json!({"environment": "pr-7", "name": "web", "replicas": 2})
            ),
            call(
                "get_application",
                json!({"environment": "pr-7", "name": "web"})
            ),
            call(
                "get_logs",
                json!({"environment": "pr-7", "name": "web", "lines": 20})
            ),
            deploy_step("staging", "web", Some("STAGING")),
            deploy_step("prod", "web", Some("PRODUCTION")),
            deploy_step("nowhere", "web", None),
            call(
                "scale_application",
                json!({"environment": "pr-7", "name": "web", "replicas": 1000})
            ),
            call(
                "deploy_application",
                json!({"environment": "pr-7", "name": "web", "command": "x", "colour": "blue"})
            ),
            call(
                "deploy_application",
                json!({"environment": "pr-7", "name": "web", "command": "x", "args": [huge]})
            ),
            call(
                "restart_application",
                json!({"environment": "pr-7", "name": "web"})
            ),
            call("get_audit_trail", json!({"environment": "pr-7"})),
        ]),
    ));
    let scaled = ok(&results[0]);
    assert_eq!(scaled["ready_replicas"], 2, "{scaled}");
    assert_eq!(scaled["endpoints"]["http"], url.as_str());
    let shown = ok(&results[1]);
    assert_eq!(shown["replicas"].as_array().unwrap().len(), 2, "{shown}");
    assert!(shown["replicas"]
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["state"] == "healthy"));
    assert_eq!(shown["spec"]["variables"], json!(["APP_VERSION"]));
    assert!(
        shown["recent_changes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["tool"] == "scale_application"),
        "{shown}"
    );
    let logs = ok(&results[2]);
    assert!(
        logs["lines"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["line"].as_str().unwrap().contains("listening on")),
        "{logs}"
    );
    let staging = refused(&results[3]);
    assert!(
        staging.contains("Staging changes come through a merge"),
        "{staging}"
    );
    let production = refused(&results[4]);
    assert!(
        production.contains("Production changes come through a merge: open a pull request"),
        "{production}"
    );
    assert!(
        rpc_error(&results[5]).contains("`environment`"),
        "{}",
        results[5]
    );
    assert!(
        rpc_error(&results[6]).contains("`replicas`"),
        "{}",
        results[6]
    );
    assert!(rpc_error(&results[7]).contains("colour"), "{}", results[7]);
    assert!(rpc_error(&results[8]).contains("args[0]"), "{}", results[8]);
    ok(&results[9]);
    let trail = ok(&results[10]);
    assert!(trail["records"].as_array().unwrap().len() >= 3, "{trail}");
    assert_eq!(
        body(&url),
        "from-mcp",
        "the refused and bad calls changed the preview"
    );

    // Malformed JSON-RPC is an error, not a change.
    let malformed = http(
        addr,
        "POST",
        "/mcp",
        &[
            headers[0],
            headers[1],
            ("authorization", &format!("Bearer {agent_token}")),
        ],
        b"{\"jsonrpc\":\"2.0\",\"id\":",
    );
    assert!(
        malformed.status >= 400 || malformed.body.contains("error"),
        "{malformed:?}"
    );

    let destroyed = mcp_client::run(&http_program(
        addr,
        &agent_token,
        json!([call("destroy_environment", json!({"environment": "pr-7"}))]),
    ));
    assert_eq!(
        ok(&destroyed[0])["destroyed"],
        json!(["application pr-7/web", "environment pr-7"])
    );
    wait_for(
        "the preview to stop answering",
        Duration::from_secs(10),
        || refuses(&url),
    );

    // Every change and refusal is in the platform's audit log, with who, how and tool.
    let audit = platform.audit();
    let record = |tool: &str, outcome: &str, object: &str| {
        audit
            .iter()
            .find(|r| r["tool"] == tool && r["outcome"] == outcome && r["object"] == object)
    };
    for (tool, outcome, object, who) in [
        (
            "deploy_application",
            "refused",
            "environment pr-7",
            "victor",
        ),
        (
            "deploy_application",
            "applied",
            "environment pr-7",
            "claude-code@alice",
        ),
        (
            "deploy_application",
            "applied",
            "application pr-7/web",
            "claude-code@alice",
        ),
        (
            "scale_application",
            "applied",
            "application pr-7/web",
            "claude-code@alice",
        ),
        (
            "restart_application",
            "applied",
            "application pr-7/web",
            "claude-code@alice",
        ),
        (
            "deploy_application",
            "refused",
            "environment staging",
            "claude-code@alice",
        ),
        (
            "deploy_application",
            "refused",
            "environment prod",
            "claude-code@alice",
        ),
        (
            "destroy_environment",
            "applied",
            "application pr-7/web",
            "claude-code@alice",
        ),
        (
            "destroy_environment",
            "applied",
            "environment pr-7",
            "claude-code@alice",
        ),
    ] {
        let r = record(tool, outcome, object)
            .unwrap_or_else(|| panic!("no {outcome} {tool} record for {object}: {audit:#?}"));
        assert_eq!(r["who"], who, "{r}");
        assert_eq!(r["how"], "mcp", "{r}");
    }
    let prod = record("deploy_application", "refused", "environment prod").unwrap();
    assert_eq!(prod["mode"], "PRODUCTION");
    assert!(prod["reason"]
        .as_str()
        .unwrap()
        .contains("mode-closed-to-role"));
    // Nothing the refused calls asked for exists.
    let status = platform.cli(&["status"]);
    let status = String::from_utf8_lossy(&status.stdout);
    assert!(!status.contains("prod/"), "{status}");
    let verify = platform.cli(&["audit", "verify"]);
    assert!(verify.status.success(), "{verify:?}");
}

#[test]
fn stdio_serves_the_token_in_slipway_token_and_nothing_without_one() {
    let platform = Platform::start();
    let agent_token = platform.token("claude-code@bob", "agent");
    let viewer_token = platform.token("vera", "viewer");
    let stdio = |token: &str, steps: Value| {
        let mut env = json!({
            "SLIPWAY_HOME": platform.home.path().display().to_string(),
            "SLIPWAY_LOG": "warn",
        });
        if !token.is_empty() {
            env["SLIPWAY_TOKEN"] = json!(token);
        }
        json!({
            "transport": "stdio",
            "command": slipway_tests::agent_support::agent_binary().display().to_string(),
            "args": ["mcp"],
            "env": env,
            "steps": steps,
        })
    };

    let viewer = mcp_client::run(&stdio(&viewer_token, json!([{"op": "list_tools"}])));
    let names = tool_names(&viewer[0]);
    assert!(names.contains(&"get_logs".to_owned()));
    assert!(
        !names.contains(&"deploy_application".to_owned()),
        "{names:?}"
    );

    let results = mcp_client::run(&stdio(
        &agent_token,
        json!([
            {"op": "list_tools"},
            deploy_step("dev-bob", "api", Some("DEVELOPMENT")),
            deploy_step("prod", "api", Some("PRODUCTION")),
            call("destroy_application", json!({"environment": "dev-bob", "name": "api"})),
            call("destroy_environment", json!({"environment": "dev-bob"})),
        ]),
    ));
    assert!(tool_names(&results[0]).contains(&"deploy_application".to_owned()));
    let deployed = ok(&results[1]);
    assert_eq!(deployed["mode"], "DEVELOPMENT");
    let url = deployed["endpoints"]["http"].as_str().unwrap();
    // The client's session is over: the application runs on in the platform.
    assert!(refused(&results[2]).contains("Production changes come through a merge"));
    assert_eq!(
        ok(&results[3])["destroyed"],
        json!(["application dev-bob/api"])
    );
    ok(&results[4]);
    assert!(refuses(url));

    // Without a token the server does not start: it never acts as the local user.
    let out = Command::new(slipway_tests::agent_support::agent_binary())
        .arg("mcp")
        .env("SLIPWAY_HOME", platform.home.path())
        .env_remove("SLIPWAY_TOKEN")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("SLIPWAY_TOKEN"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let audit = platform.audit();
    for (tool, outcome, object) in [
        ("deploy_application", "applied", "application dev-bob/api"),
        ("deploy_application", "refused", "environment prod"),
        ("destroy_application", "applied", "application dev-bob/api"),
        ("destroy_environment", "applied", "environment dev-bob"),
    ] {
        let r = audit
            .iter()
            .find(|r| r["tool"] == tool && r["outcome"] == outcome && r["object"] == object)
            .unwrap_or_else(|| panic!("no {outcome} {tool} record for {object}: {audit:#?}"));
        assert_eq!(r["who"], "claude-code@bob", "{r}");
        assert_eq!(r["how"], "mcp", "{r}");
    }
}

/// `job_status` of `job` over MCP, until it is `done`; its structured output.
fn until_done(addr: std::net::SocketAddr, token: &str, job: &Value) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(240);
    loop {
        let status = mcp_client::run(&http_program(
            addr,
            token,
            json!([call("job_status", json!({"job_id": job}))]),
        ));
        let status = ok(&status[0]).clone();
        if status["state"] == "done" {
            return status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "job {job} is not done: {status}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// The preview of a pushed branch, end to end: an AI agent (the official Python SDK
/// over streamable HTTP) names a branch; the agent's configuration picks the root,
/// the PREVIEW-only credential and the time to live; the job comes up on the real
/// local runtime through real git and Terraform; its status, URL and log are read,
/// and it is destroyed. The token's identity is the "who" of every record, in the
/// agent's audit log and in the platform's. A viewer cannot start one, bad input names
/// its field, and a root whose code asks for PRODUCTION fails at the platform.
#[test]
fn an_ai_agent_deploys_a_pushed_branch_as_a_preview_and_destroys_it() {
    use slipway_tests::preview_support::{answers, preview_root, preview_setup};
    let attack = "[[repository.root]]\nname = \"attack\"\npath = \"attack\"\nplan_pull_requests = false\npreview = true\nvariables = { demo_app = \"DEMO_APP\" }\n\n[[repository.root]]\nname = \"plain\"\npath = \"plain\"\n";
    let mut s = preview_setup("true", attack, "");
    let _platform = slipway_tests::served_platform::serve(s.home.path());
    let addr = s.agent.start();
    let token_in = |name: &str, role: &str| {
        let out = s
            .home
            .cli(&["token", "create", "--name", name, "--role", role]);
        assert!(out.status.success(), "token create: {out:?}");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    let agent_token = token_in("claude-code@alice", "agent");
    let viewer_token = token_in("victor", "viewer");
    let state = s.tmp.path().join("preview-state");
    let tip = s.origin.push_branch(
        "feature/login",
        &[(
            "infra/main.tf",
            preview_root(&state, "PREVIEW", "from-branch"),
        )],
    );

    // A viewer sees the read-only job tools but not the write ones, and is refused
    // by the platform when it calls one by name.
    let viewer = mcp_client::run(&http_program(
        addr,
        &viewer_token,
        json!([
            {"op": "list_tools"},
            call("deploy_branch_preview", json!({"branch": "feature/login", "root": "infra"})),
        ]),
    ));
    let names = tool_names(&viewer[0]);
    assert!(names.contains(&"job_status".to_owned()), "{names:?}");
    assert!(names.contains(&"job_log".to_owned()), "{names:?}");
    assert!(!names.contains(&"deploy_branch_preview".to_owned()));
    assert!(!names.contains(&"destroy_preview".to_owned()));
    assert!(refused(&viewer[1]).contains("viewer"), "{}", viewer[1]);

    // Bad input names its field, and queues nothing.
    let long = "x".repeat(300);
    let bad = mcp_client::run(&http_program(
        addr,
        &agent_token,
        json!([
            {"op": "list_tools"},
            call("deploy_branch_preview", json!({"branch": "no-such-branch", "root": "infra"})),
            call("deploy_branch_preview", json!({"branch": long, "root": "infra"})),
            call("deploy_branch_preview", json!({"branch": "feature/login", "root": "nowhere"})),
            call("deploy_branch_preview", json!({"branch": "feature/login", "root": "plain"})),
            call("deploy_branch_preview", json!({"branch": "feature/login"})),
            call("deploy_branch_preview", json!({"branch": "feature/login", "root": "infra", "wait_secs": "soon"})),
            call("deploy_branch_preview", json!({"branch": "feature/login", "root": "infra", "commit": "0".repeat(40)})),
            call("job_status", json!({"job_id": 999_999})),
            call("destroy_preview", json!({"branch": "feature/login", "root": "infra"})),
        ]),
    ));
    let tools = &bad[0]["tools"];
    let deploy = tools
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "deploy_branch_preview")
        .expect("the agent sees deploy_branch_preview");
    assert_eq!(deploy["annotations"]["destructiveHint"], json!(false));
    assert_eq!(deploy["input_schema"]["required"], json!(["branch"]));
    let destroy = tools
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "destroy_preview")
        .unwrap();
    assert_eq!(destroy["annotations"]["destructiveHint"], json!(true));
    for (i, field) in [
        (1, "`branch`"),
        (2, "`branch`"),
        (3, "`root`"),
        (4, "`root`"),
        (5, "`root`"),
        (6, "wait_secs"),
        (7, "`commit`"),
        (8, "`job_id`"),
        (9, "`branch`"),
    ] {
        assert!(rpc_error(&bad[i]).contains(field), "{i}: {}", bad[i]);
    }
    assert!(rpc_error(&bad[1]).contains("push it first"), "{}", bad[1]);
    assert!(
        rpc_error(&bad[4]).contains("does not opt into previews"),
        "{}",
        bad[4]
    );
    assert_eq!(s.agent.counts(addr), (0, 0, 0), "bad input queued a job");

    // Deployed: the job id at once, then its status until it is up, with a URL that
    // answers.
    let started = mcp_client::run(&http_program(
        addr,
        &agent_token,
        json!([call(
            "deploy_branch_preview",
            json!({"branch": "feature/login", "root": "infra"})
        )]),
    ));
    let started = ok(&started[0]).clone();
    let job = started["job_id"].clone();
    assert_eq!(started["commit"], tip.as_str());
    assert_eq!(started["kind"], "branch-preview");
    assert_eq!(started["trigger"], "mcp");
    assert_eq!(started["requested_by"], "claude-code@alice");
    let done = until_done(addr, &agent_token, &job);
    assert_eq!(
        done["outcome"],
        "succeeded",
        "{done}\n{}",
        s.agent.log_text()
    );
    let name = done["preview"]["name"].as_str().unwrap().to_owned();
    assert!(name.starts_with("br-feature-login-"), "{name}");
    let url = done["urls"]["url"].as_str().unwrap().to_owned();
    assert_eq!(answers(&url).as_deref(), Some("from-branch"));

    // Its log, bounded; and the attack root, whose code asks for PRODUCTION.
    let read = mcp_client::run(&http_program(
        addr,
        &agent_token,
        json!([
            call("job_log", json!({"job_id": job, "max_bytes": 2048})),
            call("job_log", json!({"job_id": job, "max_bytes": 10_000_000})),
            call(
                "deploy_branch_preview",
                json!({"branch": "feature/login", "root": "attack", "wait_secs": 50})
            ),
        ]),
    ));
    let log = ok(&read[0]);
    assert!(log["text"].as_str().unwrap().len() <= 2048, "{log}");
    assert!(
        log["text"].as_str().unwrap().contains("Apply complete"),
        "{log}"
    );
    assert!(rpc_error(&read[1]).contains("`max_bytes`"), "{}", read[1]);
    let attack = until_done(addr, &agent_token, &ok(&read[2])["job_id"]);
    assert_eq!(attack["outcome"], "failed", "{attack}");
    let why = slipway_tests::local_harness::collapse(
        &attack["error"].as_str().unwrap().replace('│', " "),
    );
    assert!(
        why.contains("PRODUCTION environments are closed to preview jobs"),
        "{why}"
    );

    // Destroyed: gone from the runtime, and the preview is no longer live.
    let destroyed = mcp_client::run(&http_program(
        addr,
        &agent_token,
        json!([call(
            "destroy_preview",
            json!({"branch": "feature/login", "root": "infra", "wait_secs": 50})
        )]),
    ));
    let teardown = until_done(addr, &agent_token, &ok(&destroyed[0])["job_id"]);
    assert_eq!(teardown["outcome"], "succeeded", "{teardown}");
    assert_eq!(teardown["kind"], "branch-preview-destroy");
    assert_eq!(teardown["preview"]["active"], false);
    wait_for(
        "the branch preview to stop answering",
        Duration::from_secs(10),
        || refuses(&url),
    );
    assert!(s.demo_processes().is_empty(), "a preview process is left");

    // The agent's audit log: who asked, how `mcp`, and the tool.
    let agent_audit = s.agent.audit();
    for (kind, tool, outcome) in [
        ("branch-preview", "deploy_branch_preview", "succeeded"),
        ("branch-preview-destroy", "destroy_preview", "succeeded"),
    ] {
        let r = agent_audit
            .iter()
            .find(|r| r["kind"] == kind && r["root"] == "infra")
            .unwrap_or_else(|| panic!("no {kind} record: {agent_audit:#?}"));
        assert_eq!(r["outcome"], outcome, "{r}");
        assert_eq!(r["trigger"], "mcp", "{r}");
        assert_eq!(r["merged_by"], "claude-code@alice", "{r}");
        assert_eq!(r["tool"], tool, "{r}");
        assert_eq!(r["branch"], "feature/login", "{r}");
    }
    // The platform's: every change the jobs made, under the same name, how and tool;
    // the viewer's refusal; and the attack root's.
    let audit = s.home.audit();
    let object = format!("environment {name}");
    for (tool, action, who) in [
        ("deploy_branch_preview", "create", "claude-code@alice"),
        ("destroy_preview", "delete", "claude-code@alice"),
    ] {
        let r = audit
            .iter()
            .find(|r| r["tool"] == tool && r["action"] == action && r["object"] == object.as_str())
            .unwrap_or_else(|| panic!("no {action} of {object} by {tool}: {audit:#?}"));
        assert_eq!(r["who"], who, "{r}");
        assert_eq!(r["how"], "mcp", "{r}");
        assert_eq!(r["outcome"], "applied", "{r}");
        assert_eq!(r["mode"], "PREVIEW", "{r}");
    }
    assert!(
        audit.iter().any(|r| r["who"] == "victor"
            && r["tool"] == "deploy_branch_preview"
            && r["outcome"] == "refused"),
        "{audit:#?}"
    );
    assert!(
        audit.iter().any(|r| r["who"] == "claude-code@alice"
            && r["mode"] == "PRODUCTION"
            && r["outcome"] == "refused"),
        "{audit:#?}"
    );
    let verify = s.home.cli(&["audit", "verify"]);
    assert!(verify.status.success(), "{verify:?}");
    s.agent.terminate();
}
