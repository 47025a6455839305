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
    let mut provider = Command::new(demo_binary())
        .arg("--debug")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start in debug mode");
    let stdout = provider.stdout.take().expect("stdout");
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
    assert!(provider.try_wait().expect("status").is_none());
    provider.kill().expect("kill");
    let _ = provider.wait();
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
