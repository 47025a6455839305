//! Plan and refresh of one environment with 200 applications on the embedded local
//! runtime (200 running `slipway-demo-app` processes), as a ratio to 200
//! `terraform_data` resources in the same run (see `slipway_tests::plan_bench`); then
//! plan time per application at 50, 200 and 1,000 applications.
//!
//! Run with `cargo bench -p slipway-tests --bench local_plan`. Needs a Terraform of 1.4
//! or later (for `terraform_data`); the newest on the machine is used.

use std::path::Path;
use std::process::Command;

use slipway_tests::plan_bench::{self, APPS, SOURCE};
use slipway_tests::terraform::{TerraformBinary, Workspace};

/// A workspace with one environment and `count` applications of `replicas` each, on the
/// daemon serving `home`.
fn workspace(
    tf: &TerraformBinary,
    bin: &Path,
    home: &Path,
    count: usize,
    replicas: u32,
) -> Workspace {
    let mut slipway = Workspace::new(tf, &[(SOURCE, bin)]);
    slipway.set_env("SLIPWAY_HOME", &home.display().to_string());
    slipway.write_config(&format!(
        r#"
terraform {{
  required_providers {{
    slipway = {{ source = "slipway/slipway" }}
  }}
}}

resource "slipway_environment" "bench" {{
  name = "bench"
}}

resource "slipway_application" "app" {{
  count          = {count}
  environment_id = slipway_environment.bench.id
  name           = "app-${{count.index}}"
  command        = "{demo_app}"
  replicas       = {replicas}
  ports          = [{{ name = "http", port = 8080, public = true }}]
  variables      = {{ APP_VERSION = "v${{count.index}}" }}
  secrets        = {{ TOKEN = "bench-secret" }}
}}
"#,
        demo_app = bin.join("slipway-demo-app").display()
    ));
    slipway
}

fn main() {
    let Some(tf) = plan_bench::terraform_with_terraform_data() else {
        eprintln!("local_plan: no Terraform 1.4 or later on this machine; nothing measured");
        return;
    };
    let bin = plan_bench::build_binaries();
    let scratch = tempfile::tempdir().expect("temp dir");
    let home = scratch.path().join("slipway-home");
    let slipway = workspace(&tf, &bin, &home, APPS, 1);
    let comparison = plan_bench::compare(&tf, &slipway, |_| {});
    comparison.print(&tf, "local runtime, one replica each");
    let destroy = slipway.destroy();
    assert!(
        destroy.code == 0,
        "destroy failed:\n{}",
        destroy.all_output()
    );
    // The scaling runs with no replicas: the read path (one lookup per application) is
    // the same, and 1,000 running processes would measure the machine instead.
    plan_bench::scaling(&tf, &[50, 200, 1000], |n| workspace(&tf, &bin, &home, n, 0));
    let stop = Command::new(bin.join("terraform-provider-slipway"))
        .args(["runtime", "--home"])
        .arg(&home)
        .arg("stop")
        .status();
    assert!(
        stop.is_ok_and(|s| s.success()),
        "stopping the runtime daemon failed"
    );
}
