//! The plugin binary as a process: what a person sees running it by hand, debug mode
//! with `TF_REATTACH_PROVIDERS`, and a clean exit when Terraform is done with it.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use slipway_tests::terraform::{self, Workspace};

fn demo_binary() -> std::path::PathBuf {
    terraform::binaries_dir().join("terraform-provider-tfplugdemo")
}

const CONFIG: &str = r#"
terraform {
  required_providers {
    tfplugdemo = { source = "slipway/tfplugdemo" }
  }
}
provider "tfplugdemo" {
  directory = "./store"
}
resource "tfplugdemo_server" "one" {
  name = "one"
  # Terraform 1.0 crashes on a null single-nested attribute (fixed in later
  # versions), so the test sets it.
  settings = {}
}
"#;

#[test]
fn running_by_hand_explains_itself() {
    let output = Command::new(demo_binary())
        .env_remove("TF_PLUGIN_MAGIC_COOKIE")
        .output()
        .expect("run the provider");
    assert!(!output.status.success());
    assert!(
        output.stdout.is_empty(),
        "nothing on stdout: Terraform reads it"
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("started by Terraform"), "{stderr}");
    assert!(stderr.contains("--debug"), "{stderr}");
}

#[test]
fn debug_mode_attaches_terraform() {
    let mut provider = KillOnDrop(
        Command::new(demo_binary())
            .arg("--debug")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start in debug mode"),
    );
    let stdout = provider.0.stdout.take().expect("stdout");
    let reattach = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .find_map(|line| {
            line.trim()
                .strip_prefix("TF_REATTACH_PROVIDERS='")
                .map(|rest| rest.trim_end_matches('\'').to_owned())
        })
        .expect("debug mode prints TF_REATTACH_PROVIDERS");
    let parsed: serde_json::Value = serde_json::from_str(&reattach).expect("JSON");
    assert!(parsed["registry.terraform.io/slipway/tfplugdemo"]["Addr"]["String"].is_string());

    for tf in terraform::required() {
        // No dev_overrides: Terraform must reach the provider through the reattach
        // address alone.
        let mut ws = Workspace::new(&tf, &[]);
        ws.set_env("TF_REATTACH_PROVIDERS", &reattach);
        ws.write_config(CONFIG);
        ws.run(&["init", "-no-color"]).success();
        ws.apply().success();
        assert_eq!(ws.resources()["tfplugdemo_server.one"]["name"], "one");
        ws.destroy().success();
    }
    // The provider served several Terraform runs and is still up until we stop it.
    assert!(provider.0.try_wait().expect("status").is_none());
}

/// A debug-mode provider runs until killed; kill it even when the test fails.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn exits_cleanly_when_terraform_is_done() {
    for tf in terraform::required() {
        let bin = terraform::binaries_dir();
        let mut ws = Workspace::new(&tf, &[("slipway/tfplugdemo", &bin)]);
        ws.set_env("TF_LOG", "DEBUG");
        ws.write_config(CONFIG);
        let run = ws.apply().success();
        // go-plugin logs each plugin's exit, and warns when it had to kill one that
        // did not exit after Shutdown.
        assert!(
            run.stderr.contains("plugin exited"),
            "terraform {}",
            tf.version
        );
        assert!(
            !run.stderr.contains("failed to exit gracefully"),
            "terraform {}: {}",
            tf.version,
            run.stderr
                .lines()
                .filter(|l| l.contains("plugin"))
                .collect::<Vec<_>>()
                .join("\n")
        );
        assert!(!run.stderr.contains("panic"), "terraform {}", tf.version);
        ws.destroy().success();
    }
}

#[test]
fn exits_when_terraform_dies_without_shutdown() {
    // A shell stands in for a Terraform that starts the plugin, reads its handshake and
    // then dies: it starts the provider in the background, waits for the handshake
    // line, prints the provider's pid and exits.
    let client_cert = {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P521_SHA512).unwrap();
        let params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        params.self_signed(&key).unwrap().pem()
    };
    let dir = tempfile::tempdir().unwrap();
    let handshake_file = dir.path().join("handshake");
    let output = Command::new("sh")
        .arg("-c")
        .arg(r#""$0" > "$1" 2>/dev/null & while [ ! -s "$1" ]; do sleep 0.1; done; echo $!"#)
        .arg(demo_binary())
        .arg(&handshake_file)
        .env(
            "TF_PLUGIN_MAGIC_COOKIE",
            tfplug::handshake::MAGIC_COOKIE_VALUE,
        )
        .env("PLUGIN_PROTOCOL_VERSIONS", "6")
        .env("PLUGIN_CLIENT_CERT", client_cert)
        .output()
        .expect("run the stand-in parent");
    let pid = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    let handshake = std::fs::read_to_string(&handshake_file).unwrap();
    assert!(handshake.starts_with("1|6|tcp|127.0.0.1:"), "{handshake}");
    // Orphaned, the provider notices its parent is gone and exits.
    let proc_dir = std::path::PathBuf::from(format!("/proc/{pid}"));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while proc_dir.exists() && !is_zombie(&proc_dir) {
        assert!(
            std::time::Instant::now() < deadline,
            "the orphaned provider (pid {pid}) is still running"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// An exited process whose new parent has not reaped it yet.
fn is_zombie(proc_dir: &std::path::Path) -> bool {
    std::fs::read_to_string(proc_dir.join("stat"))
        .map(|stat| {
            stat.rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
        .unwrap_or(true)
}
