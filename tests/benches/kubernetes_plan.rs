//! Plan and refresh of one environment with 50, then 200 applications on the kubernetes
//! runtime (against the fake API server, through a platform that holds its kubeconfig),
//! as a ratio to as many `terraform_data` resources in the same run (see
//! `slipway_tests::plan_bench`), and the API requests one plan makes at each count,
//! which must not grow with it.
//!
//! Run with `cargo bench -p slipway-tests --bench kubernetes_plan`. Needs a Terraform of
//! 1.4 or later (for `terraform_data`); the newest on the machine is used.

use std::time::Duration;

use slipway_tests::fake_kube::{FakeKube, Options, Timing};
use slipway_tests::plan_bench::{self, RUNS, SOURCE};
use slipway_tests::served_platform::ServedPlatform;
use slipway_tests::terraform::Workspace;

/// The application counts measured.
const COUNTS: [usize; 2] = [50, 200];

fn slipway_config(apps: usize) -> String {
    format!(
        r#"
terraform {{
  required_providers {{
    slipway = {{ source = "slipway/slipway" }}
  }}
}}

provider "slipway" {{
  runtime = "kubernetes"
}}

resource "slipway_environment" "bench" {{
  name = "bench"
}}

resource "slipway_application" "app" {{
  count          = {apps}
  environment_id = slipway_environment.bench.id
  name           = "app-${{count.index}}"
  image          = "nginx:1.27"
  replicas       = 1
  ports          = [{{ name = "http", port = 8080, public = true }}]
  variables      = {{ INDEX = "${{count.index}}" }}
  secrets        = {{ TOKEN = "bench-secret" }}
}}
"#
    )
}

fn main() {
    let Some(tf) = plan_bench::terraform_with_terraform_data() else {
        eprintln!("kubernetes_plan: no Terraform 1.4 or later on this machine; nothing measured");
        return;
    };
    let provider = plan_bench::build_binaries();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let fake = rt
        .block_on(FakeKube::start_with(Options {
            timing: Timing {
                step: Duration::from_millis(10),
                namespace_termination: Duration::from_millis(100),
            },
            ..Options::default()
        }))
        .expect("start the fake API server");

    let dir = tempfile::tempdir().expect("temporary directory");
    let kubeconfig = dir.path().join("kubeconfig");
    fake.write_kubeconfig(&kubeconfig)
        .expect("write kubeconfig");
    let platform = ServedPlatform::kubernetes(&kubeconfig, "");
    for apps in COUNTS {
        let mut slipway = Workspace::new(&tf, &[(SOURCE, &provider)]);
        slipway.set_env("SLIPWAY_HOME", &platform.home.path().display().to_string());
        slipway.write_config(&slipway_config(apps));
        let mut counts = Vec::new();
        let comparison =
            plan_bench::compare_count(&tf, &slipway, apps, |_| counts.push(fake.requests()));
        comparison.print(&tf, "kubernetes runtime, fake API server");
        if let [before, after] = counts.as_slice() {
            let per_plan: Vec<String> = after
                .iter()
                .map(|(verb, n)| {
                    let delta = n - before.get(verb).copied().unwrap_or(0);
                    format!("{verb} {:.1}", delta as f64 / RUNS as f64)
                })
                .collect();
            println!("  API requests per plan: {}", per_plan.join(", "));
        }
        let destroy = slipway.destroy();
        assert!(
            destroy.code == 0,
            "destroy failed:\n{}",
            destroy.all_output()
        );
    }
}
