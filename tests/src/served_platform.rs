//! The embedded platform as a team runs it: `terraform-provider-slipway runtime serve`
//! in the foreground, with its own Slipway home, for tests and benchmarks that reach it
//! as a client would (the MCP server, a bare gRPC client, Terraform on Kubernetes).

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
    /// The platform on the local runtime.
    pub fn start() -> ServedPlatform {
        ServedPlatform::start_with(&[], None)
    }

    /// The platform on the cluster of `kubeconfig` (`--backend kubernetes`), with
    /// `platform_toml` as its configuration.
    pub fn kubernetes(kubeconfig: &std::path::Path, platform_toml: &str) -> ServedPlatform {
        let kubeconfig = kubeconfig.display().to_string();
        ServedPlatform::start_with(
            &["--backend", "kubernetes", "--kubeconfig", &kubeconfig],
            Some(platform_toml),
        )
    }

    /// `runtime serve SERVE_ARGS` with `platform_toml`, when given, as its configuration.
    fn start_with(serve_args: &[&str], platform_toml: Option<&str>) -> ServedPlatform {
        // The socket lives in the home: keep the path short.
        let home = tempfile::Builder::new()
            .prefix("swm")
            .tempdir_in("/tmp")
            .expect("home");
        if let Some(toml) = platform_toml {
            std::fs::write(home.path().join("platform.toml"), toml).expect("platform.toml");
        }
        let served = serve_with(home.path(), serve_args);
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

/// Starts the platform on the local runtime in `home` and waits until it answers.
pub fn serve(home: &std::path::Path) -> Served {
    serve_with(home, &[])
}

/// `runtime serve SERVE_ARGS` in `home`, once it answers.
fn serve_with(home: &std::path::Path, serve_args: &[&str]) -> Served {
    let child = Command::new(provider_binary())
        .args(["runtime", "--home"])
        .arg(home)
        .arg("serve")
        .args(serve_args)
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
        String::from_utf8_lossy(&out.stdout).contains(" pid ")
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
