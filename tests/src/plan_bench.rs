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
    time_and_cpu(ws, args).0
}

/// The median wall time and the median CPU time (user + system) of `RUNS` runs of
/// `terraform ARGS`. The CPU time is Terraform's and that of the plugins it started
/// and waited for (not of a daemon that outlives them): on a machine shared with
/// other work, it varies less than the wall time, and it shows whose work a plan is.
pub fn time_and_cpu(ws: &Workspace, args: &[&str]) -> (Duration, Duration) {
    let mut walls = Vec::new();
    let mut cpus = Vec::new();
    for _ in 0..RUNS {
        let cpu_before = children_cpu();
        let start = Instant::now();
        let run = ws.run(args);
        walls.push(start.elapsed());
        cpus.push(children_cpu().saturating_sub(cpu_before));
        assert!(
            run.code == 0,
            "terraform {args:?} failed:\n{}",
            run.all_output()
        );
    }
    (median(walls), median(cpus))
}

/// User + system time of this process's children that have ended, their own waited
/// children included.
fn children_cpu() -> Duration {
    use nix::sys::resource::{getrusage, UsageWho};
    let Ok(usage) = getrusage(UsageWho::RUSAGE_CHILDREN) else {
        return Duration::ZERO;
    };
    let of = |t: nix::sys::time::TimeVal| {
        Duration::from_secs(t.tv_sec().max(0) as u64)
            + Duration::from_micros(t.tv_usec().max(0) as u64)
    };
    of(usage.user_time()) + of(usage.system_time())
}

/// What one comparison measured.
pub struct Comparison {
    /// How many resources each side had.
    pub count: usize,
    pub slipway_apply: Duration,
    pub baseline_apply: Duration,
    pub slipway_plan: Duration,
    pub baseline_plan: Duration,
    /// CPU time of the plans (see [`time_and_cpu`]).
    pub slipway_plan_cpu: Duration,
    pub baseline_plan_cpu: Duration,
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

    let baseline = terraform_data_workspace(tf, count);
    let start = Instant::now();
    let run = baseline.apply();
    assert!(run.code == 0, "apply failed:\n{}", run.all_output());
    let baseline_apply = start.elapsed();

    mark(true);
    let (slipway_plan, slipway_plan_cpu) = time_and_cpu(slipway, &PLAN);
    mark(false);
    let slipway_refresh = time(slipway, &REFRESH);
    let (baseline_plan, baseline_plan_cpu) = time_and_cpu(&baseline, &PLAN);
    Comparison {
        count,
        slipway_apply,
        baseline_apply,
        slipway_plan,
        baseline_plan,
        slipway_plan_cpu,
        baseline_plan_cpu,
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
            "  plan CPU:       slipway {:>7.2} s   terraform_data {:>7.2} s   ratio {:>5.1}x   (user+sys of terraform and the plugins it waited for)",
            s(self.slipway_plan_cpu),
            s(self.baseline_plan_cpu),
            s(self.slipway_plan_cpu) / s(self.baseline_plan_cpu)
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

/// What [`compare_builds`] measured: the same configuration planned and refreshed with
/// this checkout's provider and with a baseline build of it (for example the last
/// commit before a change, built by `scripts/bench-against`), and `terraform_data` as
/// the floor, all in the same run.
pub struct BuildComparison {
    pub count: usize,
    pub current_plan: Duration,
    pub baseline_plan: Duration,
    pub floor_plan: Duration,
    pub current_refresh: Duration,
    pub baseline_refresh: Duration,
    pub floor_refresh: Duration,
}

/// Applies `current` and `baseline` (each configured with `count` resources of its own
/// provider build), then times plan and refresh of both and of `count`
/// `terraform_data` resources, interleaved run by run (this build, the baseline, the
/// floor) so that a burst of load on a shared machine falls on all three alike.
pub fn compare_builds(
    tf: &TerraformBinary,
    current: &Workspace,
    baseline: &Workspace,
    count: usize,
) -> BuildComparison {
    for ws in [current, baseline] {
        let run = ws.apply();
        assert!(run.code == 0, "apply failed:\n{}", run.all_output());
    }
    let floor = terraform_data_workspace(tf, count);
    let run = floor.apply();
    assert!(run.code == 0, "apply failed:\n{}", run.all_output());
    let interleaved = |args: &[&str]| {
        let mut samples: [Vec<Duration>; 3] = Default::default();
        for _ in 0..RUNS {
            for (ws, out) in [current, baseline, &floor]
                .into_iter()
                .zip(samples.iter_mut())
            {
                let start = Instant::now();
                let run = ws.run(args);
                out.push(start.elapsed());
                assert!(
                    run.code == 0,
                    "terraform {args:?} failed:\n{}",
                    run.all_output()
                );
            }
        }
        samples.map(median)
    };
    let [current_plan, baseline_plan, floor_plan] = interleaved(&PLAN);
    let [current_refresh, baseline_refresh, floor_refresh] = interleaved(&REFRESH);
    BuildComparison {
        count,
        current_plan,
        baseline_plan,
        floor_plan,
        current_refresh,
        baseline_refresh,
        floor_refresh,
    }
}

/// An initialised workspace of `count` `terraform_data` resources (not applied yet):
/// the floor every plan is compared with.
fn terraform_data_workspace(tf: &TerraformBinary, count: usize) -> Workspace {
    let ws = Workspace::new(tf, &[]);
    ws.write_config(&format!(
        r#"
resource "terraform_data" "item" {{
  count = {count}
  input = {{ name = "app-${{count.index}}", replicas = 1 }}
}}
"#
    ));
    let init = ws.run(&["init", "-no-color"]);
    assert!(init.code == 0, "init failed:\n{}", init.all_output());
    ws
}

impl BuildComparison {
    /// Prints both builds' figures, their ratio, and each against `terraform_data`.
    pub fn print(&self, tf: &TerraformBinary, what: &str) {
        let s = |d: Duration| d.as_secs_f64();
        let n = self.count;
        println!(
            "terraform {}: {n} resources ({what}), this build vs the baseline build vs {n} terraform_data; median of {RUNS}, interleaved",
            tf.version
        );
        for (name, current, baseline, floor) in [
            (
                "plan",
                self.current_plan,
                self.baseline_plan,
                self.floor_plan,
            ),
            (
                "refresh",
                self.current_refresh,
                self.baseline_refresh,
                self.floor_refresh,
            ),
        ] {
            println!(
                "  {name:<8} this {:>6.2} s  baseline {:>6.2} s  ratio {:>5.2}x   terraform_data {:>6.2} s (this {:>4.1}x, baseline {:>4.1}x)",
                s(current),
                s(baseline),
                s(current) / s(baseline),
                s(floor),
                s(current) / s(floor),
                s(baseline) / s(floor),
            );
        }
    }
}
