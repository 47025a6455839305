//! The embedded platform as a team runs it: `terraform-provider-slipway runtime serve`
//! in the foreground, with its own Slipway home, for tests and benchmarks that reach it
//! as a client would (the MCP server, a bare gRPC client).

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::local_harness::wait_for;
use crate::terraform::provider_binary;

/// The platform, stopped (SIGTERM: every replica stops) when dropped.
pub struct ServedPlatform {
    // Stopped before its home is removed (fields drop in order).
    _served: Served,
    pub home: tempfile::TempDir,
}

impl ServedPlatform {
    pub fn start() -> ServedPlatform {
        // The socket lives in the home: keep the path short.
        let home = tempfile::Builder::new()
            .prefix("swm")
            .tempdir_in("/tmp")
            .expect("home");
        let served = serve(home.path());
        ServedPlatform {
            _served: served,
            home,
        }
    }

    /// `terraform-provider-slipway runtime ARGS` as the local user (its admin).
    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        Command::new(provider_binary())
            .arg("runtime")
            .args(args)
            .env("SLIPWAY_HOME", self.home.path())
            .env_remove("SLIPWAY_TOKEN")
            .env_remove("SLIPWAY_ENDPOINT")
            .env_remove("SLIPWAY_JOB_CREDENTIAL_FILE")
            .output()
            .expect("run terraform-provider-slipway runtime")
    }

    /// A new named token (`runtime token create`).
    pub fn token(&self, name: &str, role: &str) -> String {
        let out = self.cli(&["token", "create", "--name", name, "--role", role]);
        assert!(out.status.success(), "token create: {out:?}");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// `runtime audit list --json`: every record, oldest first.
    pub fn audit(&self) -> Vec<serde_json::Value> {
        let out = self.cli(&["audit", "list", "--json"]);
        assert!(out.status.success(), "audit list: {out:?}");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).expect("an audit record is JSON"))
            .collect()
    }

    pub fn socket(&self) -> std::path::PathBuf {
        self.home.path().join("runtime.sock")
    }
}

/// `runtime serve` in a Slipway home someone else owns (its `platform.toml` written
/// first: the engine's key, say), stopped (SIGTERM) when dropped.
pub struct Served {
    child: Child,
}

/// Starts the platform in `home` and waits until it answers.
pub fn serve(home: &std::path::Path) -> Served {
    let child = Command::new(provider_binary())
        .args(["runtime", "--home"])
        .arg(home)
        .arg("serve")
        .env_remove("SLIPWAY_TOKEN")
        .env_remove("SLIPWAY_ENDPOINT")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start runtime serve");
    let served = Served { child };
    wait_for("the platform to answer", Duration::from_secs(30), || {
        let out = Command::new(provider_binary())
            .args(["runtime", "status"])
            .env("SLIPWAY_HOME", home)
            .env_remove("SLIPWAY_TOKEN")
            .env_remove("SLIPWAY_ENDPOINT")
            .output()
            .expect("run runtime status");
        String::from_utf8_lossy(&out.stdout).contains("Local runtime daemon pid")
    });
    served
}

impl Drop for Served {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let _ = self.child.wait();
    }
}
