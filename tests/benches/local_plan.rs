//! Plan and refresh of one environment with 200 applications on the embedded local
//! runtime (200 running `slipway-demo-app` processes), as a ratio to 200
//! `terraform_data` resources in the same run (see `slipway_tests::plan_bench`); then
//! plan time per application at 50, 200 and 1,000 applications.
//!
//! Between them, the same configuration on `tfplugdemo_environment_shape` and
//! `tfplugdemo_application_shape` (Slipway's schemas with nothing behind them): what
//! Terraform and tfplug alone spend on it, so the figure splits into Terraform's part
//! and the part Slipway's provider and runtime add.
//!
//! Run with `cargo bench -p slipway-tests --bench local_plan` (`-- --no-scaling` to
//! leave out the scaling). Needs a Terraform of 1.4 or later (for `terraform_data`);
//! the newest on the machine is used.
//!
//! With `SLIPWAY_BASELINE_PROVIDER` naming another build's `terraform-provider-slipway`
//! (`scripts/bench-against <rev>` builds one), it measures this build against that one
//! instead: the same 200 applications planned and refreshed by each (each on a daemon
//! of its own build, in a home of its own), and the time of one read through each
//! daemon's socket, as ratios in the same run.

use std::path::{Path, PathBuf};
use std::process::Command;
#[path = "support/reads.rs"]
mod reads;

use slipway_tests::plan_bench::{self, APPS, SOURCE};
use slipway_tests::terraform::{TerraformBinary, Workspace};

const DEMO_SOURCE: &str = "registry.terraform.io/slipway/tfplugdemo";

/// The resources the benchmark's configuration is written with: Slipway's own, or the
/// demo provider's shapes of them.
struct Resources {
    provider: &'static str,
    environment: &'static str,
    application: &'static str,
}

const SLIPWAY: Resources = Resources {
    provider: "slipway",
    environment: "slipway_environment",
    application: "slipway_application",
};

const SHAPES: Resources = Resources {
    provider: "tfplugdemo",
    environment: "tfplugdemo_environment_shape",
    application: "tfplugdemo_application_shape",
};

/// One environment and `count` applications of `replicas` each, written with `r`.
fn configuration(r: &Resources, bin: &Path, count: usize, replicas: u32) -> String {
    let Resources {
        provider,
        environment,
        application,
    } = r;
    format!(
        r#"
terraform {{
  required_providers {{
    {provider} = {{ source = "slipway/{provider}" }}
  }}
}}

resource "{environment}" "bench" {{
  name = "bench"
}}

resource "{application}" "app" {{
  count          = {count}
  environment_id = {environment}.bench.id
  name           = "app-${{count.index}}"
  command        = "{demo_app}"
  replicas       = {replicas}
  ports          = [{{ name = "http", port = 8080, public = true }}]
  variables      = {{ APP_VERSION = "v${{count.index}}" }}
  secrets        = {{ TOKEN = "bench-secret" }}
}}
"#,
        demo_app = bin.join("slipway-demo-app").display()
    )
}

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
    slipway.write_config(&configuration(&SLIPWAY, bin, count, replicas));
    slipway
}

fn main() {
    let Some(tf) = plan_bench::terraform_with_terraform_data() else {
        eprintln!("local_plan: no Terraform 1.4 or later on this machine; nothing measured");
        return;
    };
    let bin = plan_bench::build_binaries();
    let scratch = tempfile::tempdir().expect("temp dir");
    if let Some(baseline) = baseline_provider() {
        against_baseline(&tf, &bin, &baseline, scratch.path());
        return;
    }
    let home = scratch.path().join("slipway-home");
    let slipway = workspace(&tf, &bin, &home, APPS, 1);
    // The daemon's own CPU across Slipway's timed plans (the gate, the lookups): the
    // plan's CPU figure counts Terraform and the provider only.
    let mut daemon_cpu = None;
    let mut started = None;
    let comparison = plan_bench::compare(&tf, &slipway, |before| {
        let now = reads::daemon_pid(&home).and_then(reads::cpu_time);
        if before {
            started = now;
        } else {
            daemon_cpu = started.zip(now).map(|(a, b)| b.saturating_sub(a));
        }
    });
    comparison.print(&tf, "local runtime, one replica each");
    if let Some(cpu) = daemon_cpu {
        println!(
            "  the daemon's CPU per plan: {:.1} ms",
            cpu.as_secs_f64() * 1000.0 / plan_bench::RUNS as f64
        );
    }
    println!(
        "  one read through the daemon's socket ({APPS} applications; FindApplication as the local user, median of {} x {}): {}",
        reads::READ_BATCHES,
        reads::READS_PER_BATCH,
        reads::read_time(&home, "bench", "app-0").describe()
    );
    floor_of_the_schema(&tf, &bin, &slipway, &comparison);
    let destroy = slipway.destroy();
    assert!(
        destroy.code == 0,
        "destroy failed:\n{}",
        destroy.all_output()
    );
    // The scaling runs with no replicas: the read path (one lookup per application) is
    // the same, and 1,000 running processes would measure the machine instead.
    // `cargo bench ... -- --no-scaling` leaves it out (it takes most of the time).
    if !std::env::args().any(|a| a == "--no-scaling") {
        plan_bench::scaling(&tf, &[50, 200, 1000], |n| workspace(&tf, &bin, &home, n, 0));
    }
    stop_daemon(&bin, &home);
}

/// The same configuration on `tfplugdemo_environment_shape` and
/// `tfplugdemo_application_shape`: Slipway's schemas served by tfplug with nothing
/// behind them (no runtime, no checks, no plan changes). Its plan is what Terraform and
/// tfplug spend on this configuration (200 applications of this schema, each referring
/// to the environment); the rest of Slipway's plan is the provider's own work and the
/// runtime's.
fn floor_of_the_schema(
    tf: &TerraformBinary,
    bin: &Path,
    slipway: &Workspace,
    comparison: &plan_bench::Comparison,
) {
    let mut shape = Workspace::new(tf, &[(DEMO_SOURCE, bin)]);
    let store = shape.path().join("store");
    shape.set_env("TFPLUGDEMO_DIR", &store.display().to_string());
    shape.write_config(&configuration(&SHAPES, bin, APPS, 1));
    let run = shape.apply();
    assert!(run.code == 0, "apply failed:\n{}", run.all_output());
    // Alternated with Slipway's own plans, so that both see the same machine.
    let mut rounds = Vec::new();
    for _ in 0..3 {
        let floor = plan_bench::time_and_cpu(&shape, &plan_bench::PLAN);
        let ours = plan_bench::time_and_cpu(slipway, &plan_bench::PLAN);
        rounds.push((floor, ours));
    }
    let s = |d: std::time::Duration| d.as_secs_f64();
    let mut wall: Vec<f64> = rounds
        .iter()
        .map(|((f, _), (o, _))| s(*o) / s(*f))
        .collect();
    let mut cpu: Vec<f64> = rounds
        .iter()
        .map(|((_, f), (_, o))| s(*o) / s(*f))
        .collect();
    let mut floors: Vec<f64> = rounds.iter().map(|((f, _), _)| s(*f)).collect();
    let mut floor_cpus: Vec<f64> = rounds.iter().map(|((_, f), _)| s(*f)).collect();
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (floor, floor_cpu) = (median(&mut floors), median(&mut floor_cpus));
    let refresh = plan_bench::time(&shape, &plan_bench::REFRESH);
    println!(
        "  the same configuration with nothing behind it (Slipway's schemas served by tfplugdemo: Terraform and tfplug only):"
    );
    println!(
        "    plan {floor:.2} s, {:.1}x terraform_data (CPU {:.1}x)",
        floor / s(comparison.baseline_plan),
        floor_cpu / s(comparison.baseline_plan_cpu),
    );
    println!(
        "    slipway's plan over it, alternated 3 x 3 plans each: {:.2}x (CPU {:.2}x)",
        median(&mut wall),
        median(&mut cpu)
    );
    println!(
        "    refresh {:.2} s, {:.1}x terraform_data; slipway's refresh over it: {:.2}x",
        s(refresh),
        s(refresh) / s(comparison.baseline_refresh),
        s(comparison.slipway_refresh) / s(refresh)
    );
    let destroy = shape.destroy();
    assert!(
        destroy.code == 0,
        "destroy failed:\n{}",
        destroy.all_output()
    );
}

fn stop_daemon(bin: &Path, home: &Path) {
    let stop = Command::new(bin.join("terraform-provider-slipway"))
        .args(["runtime", "--home"])
        .arg(home)
        .arg("stop")
        .status();
    assert!(
        stop.is_ok_and(|s| s.success()),
        "stopping the runtime daemon in {} failed",
        home.display()
    );
}

/// The directory of the baseline build named by `SLIPWAY_BASELINE_PROVIDER`, if set.
fn baseline_provider() -> Option<PathBuf> {
    let path = PathBuf::from(std::env::var_os("SLIPWAY_BASELINE_PROVIDER")?);
    assert!(
        path.file_name() == Some("terraform-provider-slipway".as_ref()) && path.is_file(),
        "SLIPWAY_BASELINE_PROVIDER must name a built terraform-provider-slipway binary, not {}",
        path.display()
    );
    Some(path.parent().expect("a file has a parent").to_path_buf())
}

/// This build against the baseline build in `baseline` (a directory holding its
/// `terraform-provider-slipway`): plan and refresh, then reads through each daemon.
fn against_baseline(tf: &TerraformBinary, bin: &Path, baseline: &Path, scratch: &Path) {
    let current_home = scratch.join("current-home");
    let baseline_home = scratch.join("baseline-home");
    let current = workspace(tf, bin, &current_home, APPS, 1);
    let previous = workspace(tf, baseline, &baseline_home, APPS, 1);
    let comparison = plan_bench::compare_builds(tf, &current, &previous, APPS);
    comparison.print(tf, "local runtime, one replica each");

    let current_read = reads::read_time(&current_home, "bench", "app-0");
    let baseline_read = reads::read_time(&baseline_home, "bench", "app-0");
    println!(
        "  one read through the daemon's socket (FindApplication as the local user, median of {} x {}): this {}  baseline {}  ratio {:.2}x",
        reads::READ_BATCHES,
        reads::READS_PER_BATCH,
        current_read.describe(),
        baseline_read.describe(),
        current_read.wall.as_secs_f64() / baseline_read.wall.as_secs_f64()
    );
    if let (Some(this), Some(base)) = (current_read.daemon_cpu, baseline_read.daemon_cpu) {
        println!(
            "  the daemon's CPU per read: ratio {:.2}x ({:+.1} us)",
            this.as_secs_f64() / base.as_secs_f64(),
            reads::micros(this) - reads::micros(base)
        );
    }
    for (ws, dir, home) in [
        (&current, bin, &current_home),
        (&previous, baseline, &baseline_home),
    ] {
        let destroy = ws.destroy();
        assert!(
            destroy.code == 0,
            "destroy failed:\n{}",
            destroy.all_output()
        );
        stop_daemon(dir, home);
    }
}
