//! tfplug's own cost: plan and refresh of 200 `tfplugdemo_server` resources (the demo
//! provider keeps each in a small JSON file, so nearly all the time is the plugin
//! protocol: process start, handshake, AutoMTLS, the codec, and the RPCs), as a ratio
//! to 200 `terraform_data` resources, which Terraform serves itself, in the same run.
//! Then the scaling: plan time per resource at 50, 200 and 1,000 resources.
//!
//! Run with `cargo bench -p slipway-tests --bench tfplug_plan`. Needs a Terraform of
//! 1.4 or later (for `terraform_data`); the newest on the machine is used.

use slipway_tests::plan_bench::{self, APPS};
use slipway_tests::terraform::{TerraformBinary, Workspace};

const DEMO_SOURCE: &str = "registry.terraform.io/slipway/tfplugdemo";

fn demo_workspace(tf: &TerraformBinary, bin: &std::path::Path, count: usize) -> Workspace {
    let mut ws = Workspace::new(tf, &[(DEMO_SOURCE, bin)]);
    let store = ws.path().join("store");
    ws.set_env("TFPLUGDEMO_DIR", &store.display().to_string());
    ws.write_config(&format!(
        r#"
terraform {{
  required_providers {{
    tfplugdemo = {{ source = "slipway/tfplugdemo" }}
  }}
}}

resource "tfplugdemo_server" "item" {{
  count = {count}
  name  = "server-${{count.index}}"
  size  = 1
  tags  = {{ index = "${{count.index}}" }}
}}
"#
    ));
    ws
}

fn main() {
    let Some(tf) = plan_bench::terraform_with_terraform_data() else {
        eprintln!("tfplug_plan: no Terraform 1.4 or later on this machine; nothing measured");
        return;
    };
    let bin = plan_bench::build_binaries();
    let demo = demo_workspace(&tf, &bin, APPS);
    let comparison = plan_bench::compare(&tf, &demo, |_| {});
    comparison.print(&tf, "tfplugdemo_server, tfplug alone");
    let destroy = demo.destroy();
    assert!(
        destroy.code == 0,
        "destroy failed:\n{}",
        destroy.all_output()
    );
    plan_bench::scaling(&tf, &[50, 200, 1000], |n| demo_workspace(&tf, &bin, n));
}
