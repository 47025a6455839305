//! A Terraform workspace on the provider's local runtime, for the end-to-end tests:
//! its own Slipway home (so its daemon is its own), its own copy of the demo
//! application (so its replicas can be told apart from other tests'), and small HTTP
//! and polling helpers.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::terraform::{provider_binary, TerraformBinary, Workspace};

pub const SOURCE: &str = "slipway/slipway";

/// The start of the configurations below: the provider, and the demo app's path.
pub const HEADER: &str = r#"
terraform {
  required_providers {
    slipway = { source = "slipway/slipway" }
  }
}

variable "demo_app" {
  type = string
}
"#;

/// A Terraform workspace with its own local-runtime home, and its own copy of the demo
/// application so that its processes can be told apart from other tests'.
pub struct Harness {
    pub ws: Workspace,
    pub home: tempfile::TempDir,
    pub demo_app: PathBuf,
}

impl Harness {
    pub fn new(tf: &TerraformBinary) -> Harness {
        let provider = provider_binary();
        let bin = provider.parent().expect("bin dir").to_path_buf();
        let mut ws = Workspace::new(tf, &[(SOURCE, &bin)]);
        // The daemon's socket lives in the home: keep the path short.
        let home = tempfile::Builder::new()
            .prefix("swh")
            .tempdir_in("/tmp")
            .expect("home");
        let demo_app = ws.path().join("demo-app");
        std::fs::copy(bin.join("slipway-demo-app"), &demo_app).expect("copy slipway-demo-app");
        ws.set_env("SLIPWAY_HOME", &home.path().display().to_string());
        ws.set_env("TF_VAR_demo_app", &demo_app.display().to_string());
        Harness { ws, home, demo_app }
    }

    /// A harness whose configuration is [`HEADER`] and `body`.
    pub fn with_config(tf: &TerraformBinary, body: &str) -> Harness {
        let h = Harness::new(tf);
        h.ws.write_config(&format!("{HEADER}{body}"));
        h
    }

    pub fn outputs(&self) -> serde_json::Value {
        let run = self.ws.run(&["output", "-json", "-no-color"]).success();
        serde_json::from_str(&run.stdout).expect("terraform output -json prints JSON")
    }

    pub fn output(&self, name: &str) -> String {
        self.outputs()[name]["value"]
            .as_str()
            .unwrap_or_else(|| panic!("output {name} is not a string"))
            .to_owned()
    }

    pub fn assert_plan_empty(&self, after: &str) {
        let run = self.ws.plan_exit_code();
        assert_eq!(
            run.code,
            0,
            "terraform {}: plan after {after} must be empty\n{}",
            self.ws.terraform.version,
            run.all_output()
        );
    }

    /// `terraform-provider-slipway runtime stop`: stops every replica and the daemon.
    pub fn stop_daemon(&self) {
        let status = Command::new(provider_binary())
            .args(["runtime", "stop"])
            .env("SLIPWAY_HOME", self.home.path())
            .status()
            .expect("run terraform-provider-slipway runtime stop");
        assert!(status.success(), "runtime stop failed");
    }

    /// The local runtime's `Status` (applications, replicas and their pids), asked over
    /// the daemon's socket as the local user.
    pub fn status(&self) -> Result<slipway_proto::runtime::StatusResponse, String> {
        status_of(self.home.path())
    }

    /// The pid in one of the home's pid files (`daemon.pid`, `watchdog.pid`).
    pub fn pid_in(&self, file: &str) -> Option<u32> {
        std::fs::read_to_string(self.home.path().join(file))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// Pids of processes running this harness's copy of the demo application.
    pub fn demo_processes(&self) -> Vec<u32> {
        processes_of(&self.demo_app)
    }
}

type Client =
    slipway_proto::runtime::local_runtime_client::LocalRuntimeClient<tonic::transport::Channel>;

/// Runs `call` with a client of the daemon of Slipway home `home`, as the local user
/// (the socket's peer: an admin to the platform).
fn with_client<T, F>(home: &std::path::Path, call: impl FnOnce(Client) -> F) -> Result<T, String>
where
    F: std::future::Future<Output = Result<T, tonic::Status>>,
{
    let socket = home.join("runtime.sock");
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?
        .block_on(async move {
            let channel = slipway_proto::connect_unix(socket)
                .await
                .map_err(|e| e.to_string())?;
            call(Client::new(channel))
                .await
                .map_err(|e| e.message().to_owned())
        })
}

/// The local runtime's `Status` of the daemon of Slipway home `home`.
pub fn status_of(home: &std::path::Path) -> Result<slipway_proto::runtime::StatusResponse, String> {
    with_client(home, |mut client| async move {
        Ok(client
            .status(slipway_proto::runtime::StatusRequest {})
            .await?
            .into_inner())
    })
}

/// Sets variable `name` of application `id` to `value` through the platform's API, as
/// an admin on the machine would by hand (outside Git and Terraform): drift.
pub fn set_variable_by_hand(
    home: &std::path::Path,
    id: &str,
    name: &str,
    value: &str,
) -> Result<(), String> {
    use slipway_proto::runtime::{ApplyApplicationRequest, ChangeRecord, GetApplicationRequest};
    with_client(home, |mut client| async move {
        let found = client
            .get_application(GetApplicationRequest { id: id.to_owned() })
            .await?
            .into_inner();
        let mut spec = found
            .application
            .and_then(|a| a.spec)
            .ok_or_else(|| tonic::Status::not_found(format!("no application {id}")))?;
        spec.variables.insert(name.to_owned(), value.to_owned());
        client
            .apply_application(ApplyApplicationRequest {
                spec: Some(spec),
                change: Some(ChangeRecord {
                    actor: "on-call admin".into(),
                    trigger: "terraform-apply".into(),
                    ..ChangeRecord::default()
                }),
                timeout_ms: 60_000,
            })
            .await?;
        Ok(())
    })
}

/// Pids of the processes whose executable is `exe`.
pub fn processes_of(exe: &std::path::Path) -> Vec<u32> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if std::fs::read_link(entry.path().join("exe")).is_ok_and(|e| e == exe) {
            pids.push(pid);
        }
    }
    pids
}

/// A Slipway home of its own (a short path: the daemon's socket lives in it) whose
/// daemon and replicas are stopped when it is dropped.
pub struct RuntimeHome {
    pub dir: tempfile::TempDir,
}

impl RuntimeHome {
    pub fn new() -> RuntimeHome {
        RuntimeHome {
            dir: tempfile::Builder::new()
                .prefix("swh")
                .tempdir_in("/tmp")
                .expect("home"),
        }
    }

    pub fn path(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// `terraform-provider-slipway runtime ARGS` against this home, with no token.
    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        Command::new(provider_binary())
            .arg("runtime")
            .args(args)
            .env("SLIPWAY_HOME", self.path())
            .env_remove("SLIPWAY_TOKEN")
            .env_remove("SLIPWAY_JOB_CREDENTIAL_FILE")
            .output()
            .expect("run terraform-provider-slipway runtime")
    }

    /// The platform's audit log (`runtime audit list --json`).
    pub fn audit(&self) -> Vec<serde_json::Value> {
        let out = self.cli(&["audit", "list", "--json"]);
        assert!(out.status.success(), "audit list: {out:?}");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }
}

impl Default for RuntimeHome {
    fn default() -> Self {
        RuntimeHome::new()
    }
}

impl Drop for RuntimeHome {
    fn drop(&mut self) {
        let _ = self.cli(&["stop"]);
    }
}

/// A Terraform CLI configuration under `dir` that installs `slipway/slipway` from a
/// local filesystem mirror holding the built provider (`terraform init` looks
/// providers up even under `dev_overrides`, as the agent's jobs run it), every other
/// provider from its registry. Returns its path, for `TF_CLI_CONFIG_FILE`.
pub fn mirror_cli_config(dir: &std::path::Path) -> PathBuf {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    let mirror = dir.join("providers");
    let version = env!("CARGO_PKG_VERSION");
    let platform_dir = mirror
        .join("registry.terraform.io/slipway/slipway")
        .join(version)
        .join(format!("linux_{arch}"));
    std::fs::create_dir_all(&platform_dir).expect("mirror dir");
    std::os::unix::fs::symlink(
        provider_binary(),
        platform_dir.join("terraform-provider-slipway"),
    )
    .expect("link the provider into the mirror");
    let rc = dir.join("terraform.rc");
    std::fs::write(
        &rc,
        format!(
            "provider_installation {{\n  filesystem_mirror {{\n    path    = \"{}\"\n    include = [\"registry.terraform.io/slipway/slipway\"]\n  }}\n  direct {{\n    exclude = [\"registry.terraform.io/slipway/slipway\"]\n  }}\n}}\n",
            mirror.display()
        ),
    )
    .expect("write terraform.rc");
    rc
}

impl Drop for Harness {
    fn drop(&mut self) {
        // Whatever happened, leave no daemon or replica behind.
        let _ = Command::new(provider_binary())
            .args(["runtime", "stop"])
            .env("SLIPWAY_HOME", self.home.path())
            .output();
    }
}

/// `GET url` (plain HTTP, one request per connection); the status and body.
pub fn get(url: &str) -> std::io::Result<(u16, String)> {
    let rest = url.strip_prefix("http://").unwrap_or(url);
    let (host, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let mut stream = TcpStream::connect(host)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not an HTTP response: {response:?}")))?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.trim().to_owned())
        .unwrap_or_default();
    Ok((status, body))
}

pub fn body(url: &str) -> String {
    match get(url) {
        Ok((200, body)) => body,
        other => panic!("GET {url}: {other:?}"),
    }
}

pub fn wait_for(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < timeout, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub fn refuses(url: &str) -> bool {
    let host = url
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap_or_default();
    TcpStream::connect(host).is_err()
}

/// Whether `pid` is a live process (not a zombie waiting for its parent).
pub fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X")
    })
}

/// Whitespace collapsed, so that a wrapped diagnostic matches one line of text.
pub fn collapse(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The python3 program itself (not a shim that needs the caller's environment, which a
/// replica does not have).
pub fn real_python() -> String {
    let out = Command::new("python3")
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
        .expect("python3 is needed for this test");
    assert!(out.status.success(), "python3: {out:?}");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}
