//! Plan and refresh of one environment with 200 applications on the embedded local
//! runtime (200 running `slipway-demo-app` processes), as a ratio to 200
//! `terraform_data` resources in the same run (see `slipway_tests::plan_bench`); then
//! plan time per application at 50, 200 and 1,000 applications.
//!
//! Run with `cargo bench -p slipway-tests --bench local_plan`. Needs a Terraform of 1.4
//! or later (for `terraform_data`); the newest on the machine is used.
//!
//! With `SLIPWAY_BASELINE_PROVIDER` naming another build's `terraform-provider-slipway`
//! (`scripts/bench-against <rev>` builds one), it measures this build against that one
//! instead: the same 200 applications planned and refreshed by each (each on a daemon
//! of its own build, in a home of its own), and the time of one read through each
//! daemon's socket, as ratios in the same run.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

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
    if let Some(baseline) = baseline_provider() {
        against_baseline(&tf, &bin, &baseline, scratch.path());
        return;
    }
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
    stop_daemon(&bin, &home);
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

    let current_read = read_time(&current_home);
    let baseline_read = read_time(&baseline_home);
    println!(
        "  one read through the daemon's socket (FindApplication as the local user, median of {READ_BATCHES} x {READS_PER_BATCH}): this {:.1} us  baseline {:.1} us  ratio {:.2}x",
        micros(current_read),
        micros(baseline_read),
        current_read.as_secs_f64() / baseline_read.as_secs_f64()
    );
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

const READ_BATCHES: usize = 5;
const READS_PER_BATCH: usize = 400;

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// The time of one `FindApplication` through the daemon serving `home`, on one
/// connection as the local user (no token: the daemon names the caller from the
/// socket's peer), median of [`READ_BATCHES`] batches. Every call of a plan pays this
/// path, the platform's identity and policy checks included where the build has them.
fn read_time(home: &Path) -> Duration {
    use slipway_proto::runtime::local_runtime_client::LocalRuntimeClient;
    use slipway_proto::runtime::{FindApplicationRequest, FindEnvironmentRequest};
    let socket = home.join("runtime.sock");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async move {
        let channel = slipway_proto::connect_unix(socket)
            .await
            .expect("connect to the daemon");
        let mut client = LocalRuntimeClient::new(channel);
        let environment = client
            .find_environment(FindEnvironmentRequest {
                name: "bench".into(),
            })
            .await
            .expect("FindEnvironment")
            .into_inner()
            .environment
            .and_then(|e| e.spec)
            .expect("the bench environment exists");
        let request = FindApplicationRequest {
            environment_id: environment.id,
            name: "app-0".into(),
        };
        let mut batches = Vec::new();
        for _ in 0..READ_BATCHES {
            let start = Instant::now();
            for _ in 0..READS_PER_BATCH {
                let found = client
                    .find_application(request.clone())
                    .await
                    .expect("FindApplication")
                    .into_inner();
                assert!(found.application.is_some(), "app-0 exists");
            }
            batches.push(start.elapsed() / READS_PER_BATCH as u32);
        }
        batches.sort();
        batches[batches.len() / 2]
    })
}
