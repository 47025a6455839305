//! One read through the local runtime daemon's socket as the local user, with the
//! daemon holding one environment and `SLIPWAY_BENCH_APPS` applications (default 200,
//! `SLIPWAY_BENCH_REPLICAS` replicas each, default 1, like `local_plan`): the wall time
//! and the daemon's own CPU per call. No Terraform: the applications are made through
//! the socket, so the daemon can run under a profiler.
//!
//! Run with `cargo bench -p slipway-tests --bench daemon_read`. To profile the daemon,
//! name the wrapper that starts it in `SLIPWAY_BENCH_DAEMON_WRAPPER` (split at spaces):
//!
//!   SLIPWAY_BENCH_DAEMON_WRAPPER="valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.out" \
//!     cargo bench -p slipway-tests --bench daemon_read
//!
//! The daemon is `runtime serve` (no watchdog), stopped through the socket at the end,
//! so the profiler writes its output then. `SLIPWAY_BENCH_READ_ROUNDS` repeats the
//! measurement (default 1), for a profile with more calls in it. With
//! `SLIPWAY_BASELINE_PROVIDER` naming another build's `terraform-provider-slipway` (as
//! for `local_plan`), that build's daemon is measured instead.

#[path = "support/reads.rs"]
mod reads;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use slipway_proto::runtime as pb;
use slipway_proto::runtime::local_runtime_client::LocalRuntimeClient;
use slipway_tests::plan_bench;

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .map(|v| {
            v.parse()
                .unwrap_or_else(|_| panic!("{name} must be a number"))
        })
        .unwrap_or(default)
}

fn main() {
    let apps = env_number("SLIPWAY_BENCH_APPS", plan_bench::APPS);
    let replicas = env_number("SLIPWAY_BENCH_REPLICAS", 1) as u32;
    let rounds = env_number("SLIPWAY_BENCH_READ_ROUNDS", 1);
    let bin = match std::env::var_os("SLIPWAY_BASELINE_PROVIDER") {
        Some(provider) => std::path::PathBuf::from(provider)
            .parent()
            .expect("SLIPWAY_BASELINE_PROVIDER names a file")
            .to_path_buf(),
        None => plan_bench::build_binaries(),
    };
    let scratch = tempfile::tempdir().expect("temp dir");
    let home = scratch.path().join("home");
    let wrapper = std::env::var("SLIPWAY_BENCH_DAEMON_WRAPPER").unwrap_or_default();
    let mut words = wrapper
        .split_whitespace()
        .map(str::to_owned)
        .collect::<Vec<_>>();
    words.push(bin.join("terraform-provider-slipway").display().to_string());
    let log = std::fs::File::create(scratch.path().join("daemon.log")).expect("daemon log");
    let mut daemon = Command::new(&words[0])
        .args(&words[1..])
        .arg("runtime")
        .arg("--home")
        .arg(&home)
        .arg("serve")
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("daemon log"))
        .stderr(log)
        .spawn()
        .expect("start the daemon");

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let socket = home.join("runtime.sock");
    let setup = Instant::now();
    runtime.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(120);
        let channel = loop {
            match slipway_proto::connect_unix(socket.clone()).await {
                Ok(channel) => break channel,
                Err(_) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await
                }
                Err(e) => panic!("the daemon does not answer on {}: {e}", socket.display()),
            }
        };
        let mut client = LocalRuntimeClient::new(channel);
        let environment = pb::EnvironmentSpec {
            id: "env-bench".into(),
            name: "bench".into(),
            mode: pb::Mode::Development as i32,
            ..Default::default()
        };
        client
            .apply_environment(pb::ApplyEnvironmentRequest {
                spec: Some(environment),
                change: None,
            })
            .await
            .expect("ApplyEnvironment");
        for i in 0..apps {
            let spec = pb::ApplicationSpec {
                id: format!("app-{i}-bench"),
                environment_id: "env-bench".into(),
                name: format!("app-{i}"),
                command: Some(bin.join("slipway-demo-app").display().to_string()),
                replicas,
                ports: vec![pb::PortSpec {
                    name: "http".into(),
                    port: 8080,
                    public: true,
                    ..Default::default()
                }],
                variables: [("APP_VERSION".to_owned(), format!("v{i}"))].into(),
                secrets: [("TOKEN".to_owned(), "bench-secret".to_owned())].into(),
                ..Default::default()
            };
            client
                .apply_application(pb::ApplyApplicationRequest {
                    spec: Some(spec),
                    change: None,
                    timeout_ms: 120_000,
                })
                .await
                .expect("ApplyApplication");
        }
    });
    println!(
        "daemon_read: 1 environment + {apps} applications of {replicas} replica(s), set up in {:.1} s{}",
        setup.elapsed().as_secs_f64(),
        if wrapper.is_empty() {
            String::new()
        } else {
            format!(", the daemon under `{wrapper}`")
        }
    );
    // The first application made and the last: a lookup by name that walked the
    // applications would cost more for one than for the other.
    let last = format!("app-{}", apps.saturating_sub(1));
    for _ in 0..rounds {
        for name in ["app-0", last.as_str()] {
            let read = reads::read_time(&home, "bench", name);
            println!(
                "  one read of {name} through the daemon's socket (FindApplication as the local user, median of {} x {}): {}",
                reads::READ_BATCHES,
                reads::READS_PER_BATCH,
                read.describe()
            );
        }
    }

    let stop = Command::new(bin.join("terraform-provider-slipway"))
        .args(["runtime", "--home"])
        .arg(&home)
        .arg("stop")
        .status();
    assert!(
        stop.is_ok_and(|s| s.success()),
        "stopping the daemon failed"
    );
    let _ = daemon.wait();
}
