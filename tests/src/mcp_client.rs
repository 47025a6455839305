//! A real MCP client for the end-to-end tests: the official Python SDK (PyPI `mcp`),
//! driven by `mcp_client.py` beside this file.
//!
//! The SDK is installed with `pip install --target` into a folder of its own under the
//! cargo target directory (`slipway-tools/python-mcp-<version>`, or
//! `$SLIPWAY_TOOLS_DIR`), the way scripts/lib/terraform.sh installs Terraform 1.0.3:
//! never into the user's Python (`pip list` does not change), and `cargo clean`
//! removes it. `scripts/test` installs it first; a test run alone installs it itself.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;

use serde_json::{json, Value};

use crate::agent_support::{Agent, AgentOptions, Origin};
use crate::served_platform::ServedPlatform;

/// The SDK's version, pinned as the Rust server's `rmcp` is.
pub const SDK_VERSION: &str = "2.3.0";

static INSTALL: Mutex<()> = Mutex::new(());

/// The folder holding the SDK (for `PYTHONPATH`), installed when missing.
pub fn sdk_dir() -> PathBuf {
    let tools = std::env::var_os("SLIPWAY_TOOLS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            crate::terraform::binaries_dir()
                .parent()
                .expect("target dir")
                .join("slipway-tools")
        });
    let dir = tools.join(format!("python-mcp-{SDK_VERSION}"));
    let _once = INSTALL.lock().unwrap_or_else(|p| p.into_inner());
    if dir.join("mcp").join("__init__.py").exists() {
        return dir;
    }
    std::fs::create_dir_all(&tools).expect("create the tools folder");
    // Into a temporary folder first, so an interrupted install is never taken for a
    // finished one.
    let partial = tools.join(format!("python-mcp-{SDK_VERSION}.partial"));
    let _ = std::fs::remove_dir_all(&partial);
    let out = Command::new("python3")
        .args([
            "-m",
            "pip",
            "install",
            "--disable-pip-version-check",
            "--no-cache-dir",
            "--no-warn-script-location",
            "--target",
        ])
        .arg(&partial)
        .arg(format!("mcp=={SDK_VERSION}"))
        .env("PIP_REQUIRE_VIRTUALENV", "0")
        .output()
        .expect("run python3 -m pip (the MCP tests need python3 with pip)");
    assert!(
        out.status.success(),
        "pip install mcp=={SDK_VERSION} --target {}: {}",
        partial.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::rename(&partial, &dir).expect("move the installed SDK in place");
    dir
}

/// Runs `program` (see mcp_client.py) and returns its `results`, one per step.
pub fn run(program: &serde_json::Value) -> Vec<serde_json::Value> {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src/mcp_client.py");
    let mut child = Command::new("python3")
        .arg(&script)
        .env("PYTHONPATH", sdk_dir())
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run python3 mcp_client.py");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(program.to_string().as_bytes())
        .expect("write the program");
    let out = child.wait_with_output().expect("wait for the MCP client");
    assert!(
        out.status.success(),
        "the MCP client failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    let answer: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("the MCP client prints JSON");
    answer["results"].as_array().expect("results").clone()
}

/// slipway-agent with its MCP server on `/mcp`, reaching `platform`; and its address.
pub fn agent(dir: &Path, platform: &ServedPlatform) -> (Agent, SocketAddr) {
    let origin = Origin::new(&dir.join("origin"));
    // No job runs here: any Terraform found will do for the configuration.
    let tf = crate::terraform::required().remove(0);
    let mut agent = Agent::new(
        &dir.join("agent"),
        &origin,
        &tf,
        AgentOptions {
            env: vec![(
                "SLIPWAY_HOME".into(),
                platform.home.path().display().to_string(),
            )],
            ..AgentOptions::default()
        },
    );
    let addr = agent.start();
    (agent, addr)
}

/// A program for [`run`] over streamable HTTP with `token`.
pub fn http_program(addr: SocketAddr, token: &str, steps: Value) -> Value {
    json!({
        "transport": "http",
        "url": format!("http://{addr}/mcp"),
        "token": token,
        "steps": steps,
    })
}

/// The demo application (answers `GET /` with `$APP_VERSION`, `/healthz` with 200).
pub fn demo_app() -> PathBuf {
    crate::terraform::binaries_dir().join("slipway-demo-app")
}

/// A `deploy_application` step: the demo application with one public port, healthy
/// once `/healthz` answers; `create` names the mode to create the environment with.
pub fn deploy_step(environment: &str, name: &str, create: Option<&str>) -> Value {
    let mut args = json!({
        "environment": environment,
        "name": name,
        "command": demo_app().display().to_string(),
        "ports": [{"name": "http", "port": 8080}],
        "variables": {"APP_VERSION": "from-mcp"},
        "health_check_path": "/healthz",
    });
    if let Some(mode) = create {
        args["create_environment"] = json!(mode);
    }
    json!({"op": "call", "tool": "deploy_application", "args": args})
}
