//! `scripts/quickstart` end to end, as a user runs it: the script sets up a bare origin,
//! a clone, the agent and the local runtime in a fresh directory, deploys main, merges
//! a change (web_version v1 -> v2) and pushes it; then `scripts/quickstart down` must
//! leave no process, no listening port and no directory behind.
//!
//! The script is given this build's binaries (`SLIPWAY_BIN_DIR`), so it does not run
//! cargo inside `cargo test`, and each Terraform that
//! `slipway_tests::terraform::required()` finds (`SLIPWAY_TERRAFORM`). The quickstart
//! needs no `terraform_data`, so unlike the agent's own end-to-end tests it runs on
//! Terraform 1.0.3 as well as on newer versions.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;
use slipway_tests::agent_support::agent_binary;
use slipway_tests::local_harness::alive;
use slipway_tests::terraform::{self, TerraformBinary};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .expect("repository root")
}

/// The directory holding terraform-provider-slipway, slipway-agent and
/// slipway-demo-app from this build. `cargo test -p slipway-tests` builds only this
/// package's binaries, so the provider and the agent are built here when needed.
fn bin_dir() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let bin = terraform::binaries_dir();
            assert_eq!(terraform::provider_binary().parent(), Some(bin.as_path()));
            assert_eq!(agent_binary().parent(), Some(bin.as_path()));
            assert_eq!(
                Path::new(env!("CARGO_BIN_EXE_slipway-demo-app")).parent(),
                Some(bin.as_path())
            );
            for name in [
                "terraform-provider-slipway",
                "slipway-agent",
                "slipway-demo-app",
            ] {
                assert!(
                    bin.join(name).exists(),
                    "{name} missing in {}",
                    bin.display()
                );
            }
            bin
        })
        .clone()
}

/// One quickstart directory and how to run the script against it.
struct Quickstart {
    /// Holds `dir`; short, in /tmp, because the runtime's socket lives under it.
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    terraform: TerraformBinary,
}

impl Quickstart {
    fn new(terraform: &TerraformBinary) -> Quickstart {
        let tmp = tempfile::Builder::new()
            .prefix("sqs")
            .tempdir_in("/tmp")
            .expect("temp dir");
        let dir = tmp.path().join("qs");
        Quickstart {
            _tmp: tmp,
            dir,
            terraform: terraform.clone(),
        }
    }

    fn script(&self, args: &[&str]) -> Output {
        Command::new(repo_root().join("scripts/quickstart"))
            .args(args)
            .current_dir(repo_root())
            .env("SLIPWAY_QUICKSTART_DIR", &self.dir)
            .env("SLIPWAY_BIN_DIR", bin_dir())
            .env("SLIPWAY_TERRAFORM", &self.terraform.path)
            .env("SLIPWAY_QUICKSTART_TIMEOUT", "240")
            .env_remove("SLIPWAY_HOME")
            .env_remove("SLIPWAY_CONFIG")
            .env_remove("TF_CLI_CONFIG_FILE")
            .output()
            .expect("run scripts/quickstart")
    }

    fn agent_cli(&self, args: &[&str]) -> Output {
        Command::new(agent_binary())
            .arg("--config")
            .arg(self.dir.join("agent/slipway-agent.toml"))
            .args(args)
            .output()
            .expect("run slipway-agent")
    }

    /// `terraform output -json` of the state the agent's runs keep.
    fn outputs(&self) -> Value {
        let state = self.dir.join("state/terraform.tfstate");
        let out = Command::new(&self.terraform.path)
            .args(["output", "-json", "-no-color"])
            .arg(format!("-state={}", state.display()))
            .current_dir(state.parent().unwrap())
            .env("CHECKPOINT_DISABLE", "1")
            .output()
            .expect("run terraform output");
        assert!(out.status.success(), "terraform output: {}", text(&out));
        serde_json::from_slice(&out.stdout).expect("terraform output -json prints JSON")
    }

    /// Every live process that belongs to this quickstart: the agent (its pid file),
    /// every process whose environment names this quickstart's runtime home (the agent
    /// and the runtime daemon inherit it), and their children (the replicas, which
    /// get a clean environment).
    fn processes(&self) -> Vec<u32> {
        let home = format!("SLIPWAY_HOME={}", self.dir.join("rt").display());
        let mut pids: Vec<u32> = std::fs::read_to_string(self.dir.join("agent/agent.pid"))
            .ok()
            .and_then(|p| p.trim().parse().ok())
            .into_iter()
            .filter(|pid| alive(*pid))
            .collect();
        let all: Vec<(u32, u32)> = std::fs::read_dir("/proc")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let pid = e.file_name().to_string_lossy().parse::<u32>().ok()?;
                Some((pid, parent(pid)?))
            })
            .collect();
        for (pid, _) in &all {
            let Ok(environ) = std::fs::read(format!("/proc/{pid}/environ")) else {
                continue;
            };
            if environ.split(|b| *b == 0).any(|v| v == home.as_bytes())
                && alive(*pid)
                && !pids.contains(pid)
            {
                pids.push(*pid);
            }
        }
        let owners = pids.clone();
        for (pid, ppid) in all {
            if owners.contains(&ppid) && alive(pid) && !pids.contains(&pid) {
                pids.push(pid);
            }
        }
        pids
    }
}

impl Drop for Quickstart {
    fn drop(&mut self) {
        // A failed assertion must not leave an agent or applications running.
        if self.dir.exists() {
            let out = self.script(&["down"]);
            if !out.status.success() {
                eprintln!("scripts/quickstart down (cleanup): {}", text(&out));
            }
            for pid in self.processes() {
                let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            }
        }
    }
}

fn text(out: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A process's parent pid (field 4 of /proc/PID/stat).
fn parent(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(") ")?
        .1
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<String> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = String::new();
    stream.read_to_string(&mut raw)?;
    Ok(raw
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default())
}

fn addr_of(url: &str) -> SocketAddr {
    url.trim_start_matches("http://")
        .trim_end_matches('/')
        .parse()
        .unwrap_or_else(|_| panic!("not an http://host:port URL: {url}"))
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run git");
    assert!(out.status.success(), "git {args:?}: {}", text(&out));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// The value after `label` on a line of the script's output.
fn printed(stdout: &str, label: &str) -> String {
    stdout
        .lines()
        .find_map(|l| l.split_once(label).map(|(_, v)| v.trim().to_owned()))
        .unwrap_or_else(|| panic!("the script did not print `{label}`:\n{stdout}"))
}

fn run_quickstart(tf: &TerraformBinary) {
    let qs = Quickstart::new(tf);
    let started = Instant::now();
    let out = qs.script(&[]);
    assert!(
        out.status.success(),
        "scripts/quickstart (terraform {}): {}",
        tf.version,
        text(&out)
    );
    eprintln!(
        "scripts/quickstart with terraform {} took {:?}",
        tf.version,
        started.elapsed()
    );
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let context = format!("terraform {}\n{}", tf.version, text(&out));

    // The merge commit: what the script printed, origin's main, and a real merge.
    let origin = qs.dir.join("origin.git");
    let main = git(&origin, &["rev-parse", "main"]);
    let merge = printed(&stdout, "merge commit ")
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned();
    assert_eq!(merge, main, "{context}");
    let parents = git(&origin, &["rev-list", "--parents", "-n", "1", &main]);
    assert_eq!(
        parents.split_whitespace().count(),
        3,
        "main's tip is not a merge commit: {parents}"
    );
    assert!(git(&origin, &["show", "main:demo/main.tf"]).contains("\"v2\""));
    let recorded = printed(&stdout, "commit_sha: ");
    assert_eq!(recorded, main, "{context}");

    // The audit log itself: the merge applied, by the poller, with its SHA, verified.
    let export = qs.agent_cli(&["audit", "export", "--json"]);
    assert!(export.status.success(), "{}", text(&export));
    let audit: Vec<Value> = serde_json::from_slice(&export.stdout).unwrap();
    let last = audit.last().expect("audit records");
    assert_eq!(last["commit_sha"], main.as_str(), "{audit:#?}");
    assert_eq!(last["outcome"], "succeeded");
    assert_eq!(last["trigger"], "poll");
    assert_eq!(last["repository"], "quickstart");
    assert_eq!(last["root"], "demo");
    assert_eq!(last["terraform_version"], tf.version.as_str());
    assert!(
        audit
            .iter()
            .any(|r| r["outcome"] == "succeeded" && r["commit_sha"] != main.as_str()),
        "the initial commit was not deployed first: {audit:#?}"
    );
    let verify = qs.agent_cli(&["audit", "verify"]);
    assert!(verify.status.success(), "{}", text(&verify));
    assert!(String::from_utf8_lossy(&verify.stdout).contains("signatures valid"));

    // The application answers with the merged version, and carries the merge's
    // provenance, verified with the agent's key.
    let outputs = qs.outputs();
    let web = outputs["web_endpoint"]["value"]
        .as_str()
        .unwrap()
        .to_owned();
    let api = outputs["api_endpoint"]["value"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        http_get(addr_of(&web), "/").unwrap(),
        "v2",
        "{web}: {context}"
    );
    assert!(stdout.contains(&format!("$ curl {web}/")), "{context}");
    let provenance = &outputs["web_provenance"]["value"];
    assert_eq!(provenance["commit_sha"], main.as_str(), "{provenance}");
    assert_eq!(provenance["verified"], true, "{provenance}");

    // What must be gone after `down`.
    let agent_addr = addr_of(
        std::fs::read_to_string(qs.dir.join("agent/data/agent.addr"))
            .unwrap()
            .trim(),
    );
    let ports = [addr_of(&web), addr_of(&api), agent_addr];
    let pids = qs.processes();
    assert!(
        pids.len() >= 5,
        "expected the agent, the runtime daemon and three replicas, found pids {pids:?}"
    );

    // Running it again while it runs reuses it.
    let again = qs.script(&[]);
    assert!(again.status.success(), "second run: {}", text(&again));
    assert!(String::from_utf8_lossy(&again.stdout).contains("already running"));

    let down = qs.script(&["down"]);
    assert!(
        down.status.success(),
        "scripts/quickstart down: {}",
        text(&down)
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left: Vec<u32> = pids.iter().copied().filter(|p| alive(*p)).collect();
        if left.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "processes left after down: {left:?}\n{}",
            text(&down)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    for port in ports {
        assert!(
            TcpStream::connect_timeout(&port, Duration::from_secs(2)).is_err(),
            "{port} still accepts connections after down"
        );
    }
    assert!(!qs.dir.exists(), "{} still exists", qs.dir.display());
    assert!(
        qs.processes().is_empty(),
        "quickstart processes after down: {:?}",
        qs.processes()
    );
}

#[test]
fn quickstart_runs_the_gitops_loop_and_down_leaves_nothing() {
    for tf in terraform::required() {
        run_quickstart(&tf);
    }
}
