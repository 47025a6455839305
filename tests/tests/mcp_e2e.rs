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
