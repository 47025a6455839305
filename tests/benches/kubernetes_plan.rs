//! Plan and refresh of one environment with 200 applications on the kubernetes runtime
//! (against the fake API server), as a ratio to 200 `terraform_data` resources planned
//! and refreshed by the same Terraform in the same run: the figure is "how much slower
//! than Terraform's own cheapest resource Slipway's read path is".
//!
//! Run with `cargo bench -p slipway-tests --bench kubernetes_plan`. Needs a Terraform of
//! 1.4 or later (for `terraform_data`); the newest on the machine is used.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use slipway_tests::fake_kube::{FakeKube, Options, Timing};
use slipway_tests::terraform::{self, Workspace};

const APPS: usize = 200;
const RUNS: usize = 3;
const SOURCE: &str = "registry.terraform.io/slipway/slipway";

fn provider_dir() -> PathBuf {
    // Built in the profile this runs in: release under `cargo bench`, debug under
    // `cargo test --bench` (quicker, for a first look).
    let dir = terraform::binaries_dir();
    let target_dir = dir.parent().expect("target dir").to_path_buf();
    let mut args = vec![
        "build",
        "-p",
        "terraform-provider-slipway",
        "--bin",
        "terraform-provider-slipway",
    ];
    if dir.ends_with("release") {
        args.push("--release");
    }
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(&args)
        .env("CARGO_TARGET_DIR", &target_dir)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .expect("run cargo build");
    assert!(
        status.success(),
        "cargo build -p terraform-provider-slipway failed"
    );
    dir
}

fn slipway_config(kubeconfig: &Path) -> String {
    format!(
        r#"
terraform {{
  required_providers {{
    slipway = {{ source = "slipway/slipway" }}
  }}
}}

provider "slipway" {{
  runtime    = "kubernetes"
  kubeconfig = "{}"
}}

resource "slipway_environment" "bench" {{
  name = "bench"
}}

resource "slipway_application" "app" {{
  count          = {APPS}
  environment_id = slipway_environment.bench.id
  name           = "app-${{count.index}}"
  image          = "nginx:1.27"
  replicas       = 2
  ports          = [{{ name = "http", port = 8080, public = true }}]
  variables      = {{ INDEX = "${{count.index}}" }}
  secrets        = {{ TOKEN = "bench-secret" }}
}}
"#,
        kubeconfig.display()
    )
}

fn baseline_config() -> String {
    format!(
        r#"
resource "terraform_data" "item" {{
  count = {APPS}
  input = {{ name = "app-${{count.index}}", replicas = 2 }}
}}
"#
    )
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn time(ws: &Workspace, args: &[&str]) -> Duration {
    let samples = (0..RUNS)
        .map(|_| {
            let start = Instant::now();
            let run = ws.run(args);
            let took = start.elapsed();
            assert!(
                run.code == 0,
                "terraform {args:?} failed:\n{}",
                run.all_output()
            );
            took
        })
        .collect();
    median(samples)
}

fn main() {
    let Some(tf) = terraform::available().into_iter().find(|t| {
        !t.version.starts_with("1.0.")
            && !t.version.starts_with("1.1.")
            && !t.version.starts_with("1.2.")
            && !t.version.starts_with("1.3.")
    }) else {
        eprintln!("kubernetes_plan: no Terraform 1.4 or later on this machine; nothing measured");
        return;
    };
    let provider = provider_dir();
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

    let slipway = Workspace::new(&tf, &[(SOURCE, &provider)]);
    let kubeconfig = slipway.path().join("kubeconfig");
    fake.write_kubeconfig(&kubeconfig)
        .expect("write kubeconfig");
    slipway.write_config(&slipway_config(&kubeconfig));
    let start = Instant::now();
    let run = slipway.apply();
    assert!(run.code == 0, "apply failed:\n{}", run.all_output());
    let slipway_apply = start.elapsed();

    let baseline = Workspace::new(&tf, &[]);
    baseline.write_config(&baseline_config());
    let init = baseline.run(&["init", "-no-color"]);
    assert!(init.code == 0, "init failed:\n{}", init.all_output());
    let start = Instant::now();
    let run = baseline.apply();
    assert!(run.code == 0, "apply failed:\n{}", run.all_output());
    let baseline_apply = start.elapsed();

    let before = fake.requests();
    let plan_args = ["plan", "-no-color", "-detailed-exitcode"];
    let refresh_args = ["apply", "-refresh-only", "-auto-approve", "-no-color"];
    let slipway_plan = time(&slipway, &plan_args);
    let after_plans = fake.requests();
    let slipway_refresh = time(&slipway, &refresh_args);
    let baseline_plan = time(&baseline, &plan_args);
    let baseline_refresh = time(&baseline, &refresh_args);

    let per_plan: Vec<String> = after_plans
        .iter()
        .map(|(verb, n)| {
            let delta = n - before.get(verb).copied().unwrap_or(0);
            format!("{verb} {:.1}", delta as f64 / RUNS as f64 / APPS as f64)
        })
        .collect();
    let s = |d: Duration| d.as_secs_f64();
    println!(
        "terraform {}: one environment with {APPS} applications (kubernetes runtime, fake API server) vs {APPS} terraform_data; median of {RUNS}",
        tf.version
    );
    println!(
        "  apply (once):   slipway {:>7.2} s   terraform_data {:>7.2} s",
        s(slipway_apply),
        s(baseline_apply)
    );
    println!(
        "  plan:           slipway {:>7.2} s   terraform_data {:>7.2} s   ratio {:>5.1}x",
        s(slipway_plan),
        s(baseline_plan),
        s(slipway_plan) / s(baseline_plan)
    );
    println!(
        "  refresh:        slipway {:>7.2} s   terraform_data {:>7.2} s   ratio {:>5.1}x",
        s(slipway_refresh),
        s(baseline_refresh),
        s(slipway_refresh) / s(baseline_refresh)
    );
    println!(
        "  API requests per application per plan: {}",
        per_plan.join(", ")
    );
    let destroy = slipway.destroy();
    assert!(
        destroy.code == 0,
        "destroy failed:\n{}",
        destroy.all_output()
    );
}
