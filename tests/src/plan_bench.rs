//! Shared by the plan/refresh benchmarks: one environment with many applications on a
//! Slipway runtime, against the same number of `terraform_data` resources planned and
//! refreshed by the same Terraform in the same run, so the figure is a ratio ("how much
//! slower than Terraform's cheapest resource is Slipway's read path") that holds on a
//! busy machine too.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::terraform::{self, TerraformBinary, Workspace};

/// How many applications (and `terraform_data` resources) are compared.
pub const APPS: usize = 200;
/// Timed runs per measurement; the median is reported.
pub const RUNS: usize = 3;
/// The provider's source address.
pub const SOURCE: &str = "registry.terraform.io/slipway/slipway";

/// The newest Terraform that has `terraform_data` (1.4 or later), if any.
pub fn terraform_with_terraform_data() -> Option<TerraformBinary> {
    terraform::available().into_iter().find(|t| {
        !["1.0.", "1.1.", "1.2.", "1.3."]
            .iter()
            .any(|old| t.version.starts_with(old))
    })
}

/// Builds the provider (and the demo app) in the profile the benchmark runs in, and
/// returns the directory holding them: release under `cargo bench`, debug under
/// `cargo test --bench`.
pub fn build_binaries() -> PathBuf {
    let dir = terraform::binaries_dir();
    let target_dir = dir.parent().expect("target dir").to_path_buf();
    let mut args = vec![
        "build",
        "-p",
        "terraform-provider-slipway",
        "-p",
        "slipway-tests",
        "--bins",
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
    assert!(status.success(), "cargo build of the provider failed");
    dir
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

/// The median time of `RUNS` runs of `terraform ARGS`, each of which must succeed.
pub fn time(ws: &Workspace, args: &[&str]) -> Duration {
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

/// What one comparison measured.
pub struct Comparison {
    /// How many resources each side had.
    pub count: usize,
    pub slipway_apply: Duration,
    pub baseline_apply: Duration,
    pub slipway_plan: Duration,
    pub baseline_plan: Duration,
    pub slipway_refresh: Duration,
    pub baseline_refresh: Duration,
}

pub const PLAN: [&str; 3] = ["plan", "-no-color", "-detailed-exitcode"];
pub const REFRESH: [&str; 4] = ["apply", "-refresh-only", "-auto-approve", "-no-color"];

/// Applies `slipway` (already configured) once, then times its plan and refresh
/// against `APPS` `terraform_data` resources. `mark` is called just before and just
/// after Slipway's timed plans (with `true`, then `false`), for counting requests.
pub fn compare(tf: &TerraformBinary, slipway: &Workspace, mark: impl FnMut(bool)) -> Comparison {
    compare_count(tf, slipway, APPS, mark)
}

/// [`compare`] against `count` `terraform_data` resources (`slipway` must be
/// configured with as many of its own).
pub fn compare_count(
    tf: &TerraformBinary,
    slipway: &Workspace,
    count: usize,
    mut mark: impl FnMut(bool),
) -> Comparison {
    let start = Instant::now();
    let run = slipway.apply();
    assert!(run.code == 0, "apply failed:\n{}", run.all_output());
    let slipway_apply = start.elapsed();

    let baseline = Workspace::new(tf, &[]);
    baseline.write_config(&format!(
        r#"
resource "terraform_data" "item" {{
  count = {count}
  input = {{ name = "app-${{count.index}}", replicas = 1 }}
}}
"#
    ));
    let init = baseline.run(&["init", "-no-color"]);
    assert!(init.code == 0, "init failed:\n{}", init.all_output());
    let start = Instant::now();
    let run = baseline.apply();
    assert!(run.code == 0, "apply failed:\n{}", run.all_output());
    let baseline_apply = start.elapsed();

    mark(true);
    let slipway_plan = time(slipway, &PLAN);
    mark(false);
    let slipway_refresh = time(slipway, &REFRESH);
    Comparison {
        count,
        slipway_apply,
        baseline_apply,
        slipway_plan,
        baseline_plan: time(&baseline, &PLAN),
        slipway_refresh,
        baseline_refresh: time(&baseline, &REFRESH),
    }
}

impl Comparison {
    /// Prints the figures, with a heading naming the runtime.
    pub fn print(&self, tf: &TerraformBinary, runtime: &str) {
        let s = |d: Duration| d.as_secs_f64();
        let n = self.count;
        println!(
            "terraform {}: {n} resources ({runtime}) vs {n} terraform_data; median of {RUNS}",
            tf.version
        );
        println!(
            "  apply (once):   slipway {:>7.2} s   terraform_data {:>7.2} s",
            s(self.slipway_apply),
            s(self.baseline_apply)
        );
        println!(
            "  plan:           slipway {:>7.2} s   terraform_data {:>7.2} s   ratio {:>5.1}x",
            s(self.slipway_plan),
            s(self.baseline_plan),
            s(self.slipway_plan) / s(self.baseline_plan)
        );
        println!(
            "  refresh:        slipway {:>7.2} s   terraform_data {:>7.2} s   ratio {:>5.1}x",
            s(self.slipway_refresh),
            s(self.baseline_refresh),
            s(self.slipway_refresh) / s(self.baseline_refresh)
        );
    }
}

/// Plan time per resource at each of `counts`, against as many `terraform_data`
/// resources: the cost must stay flat as the count grows. `workspace(n)` returns a
/// workspace configured with `n` resources (not applied yet); each is applied, planned
/// and then destroyed.
pub fn scaling(
    tf: &TerraformBinary,
    counts: &[usize],
    mut workspace: impl FnMut(usize) -> Workspace,
) {
    println!("scaling: plan time per resource (median of {RUNS}), against terraform_data");
    for &n in counts {
        let slipway = workspace(n);
        let c = compare_count(tf, &slipway, n, |_| {});
        let per = |d: Duration| d.as_secs_f64() * 1000.0 / n as f64;
        println!(
            "  {n:>5}: {:>6.2} ms per resource   terraform_data {:>6.2} ms   ratio {:>5.1}x",
            per(c.slipway_plan),
            per(c.baseline_plan),
            c.slipway_plan.as_secs_f64() / c.baseline_plan.as_secs_f64()
        );
        let destroy = slipway.destroy();
        assert!(
            destroy.code == 0,
            "destroy failed:\n{}",
            destroy.all_output()
        );
    }
}
