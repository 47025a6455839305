//! The local runtime daemon's memory with 50 replicas running.
//!
//! Starts a daemon (this binary re-executed, as the provider binary is), deploys 10
//! applications of 5 `slipway-demo-app` replicas each behind their proxies, and prints
//! the daemon's resident set size (VmRSS from /proc) idle and with everything running,
//! plus after a rolling update of every application.
//!
//! Needs `slipway-demo-app`: `cargo build --release -p slipway-tests --bin slipway-demo-app`
//! (or a debug build, which is used when no release build exists), then
//! `cargo bench -p slipway-runtime --bench local_runtime_memory`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use slipway_runtime::local::{Home, LocalRuntime};
use slipway_runtime::{
    ApplicationSpec, ChangeRecord, EnvironmentSpec, HealthCheck, HealthProbe, Mode, PortSpec,
    Protocol, ResourceLimits, Runtime,
};

const APPS: usize = 10;
const REPLICAS: u32 = 5;

fn demo_app() -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let target = exe
        .parent()
        .and_then(|d| d.parent())
        .and_then(|p| p.parent())
        .ok_or("cannot find the target directory")?;
    ["release", "debug"]
        .iter()
        .map(|profile| target.join(profile).join("slipway-demo-app"))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            "slipway-demo-app is missing: cargo build --release -p slipway-tests --bin slipway-demo-app"
                .to_string()
        })
}

fn rss_kib(pid: u32) -> Result<u64, String> {
    let status =
        std::fs::read_to_string(format!("/proc/{pid}/status")).map_err(|e| e.to_string())?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| "no VmRSS in /proc/PID/status".to_string())
}

fn spec(i: usize, program: &str, version: &str) -> ApplicationSpec {
    ApplicationSpec {
        id: format!("app-{i}"),
        environment_id: "bench".into(),
        name: format!("app{i}"),
        image: None,
        command: Some(program.to_string()),
        args: vec![],
        working_dir: None,
        replicas: REPLICAS,
        ports: vec![PortSpec {
            name: "http".into(),
            port: 8080,
            protocol: Protocol::Tcp,
            public: true,
        }],
        variables: [("APP_VERSION".to_string(), version.to_string())].into(),
        secrets: BTreeMap::new(),
        healthcheck: Some(HealthCheck {
            probe: HealthProbe::Http {
                path: "/healthz".into(),
                port: 8080,
            },
            interval: Duration::from_secs(2),
            timeout: Duration::from_secs(2),
            healthy_threshold: 1,
            unhealthy_threshold: 3,
        }),
        resources: ResourceLimits::default(),
    }
}

async fn bench() -> Result<(), String> {
    let program = demo_app()?.display().to_string();
    let dir = tempfile::Builder::new()
        .prefix("slwbench")
        .tempdir_in("/tmp")
        .map_err(|e| e.to_string())?;
    let runtime = LocalRuntime::connect_or_spawn(&Home::new(dir.path()))
        .await
        .map_err(|e| e.to_string())?;
    let pid = runtime.info().await.map_err(|e| e.to_string())?.pid;
    let idle = rss_kib(pid)?;
    runtime
        .apply_environment(
            EnvironmentSpec {
                id: "bench".into(),
                name: "bench".into(),
                mode: Mode::Development,
                variables: BTreeMap::new(),
                secrets: BTreeMap::new(),
            },
            ChangeRecord::default(),
        )
        .await
        .map_err(|e| e.to_string())?;
    let started = Instant::now();
    let mut applies = tokio::task::JoinSet::new();
    for i in 0..APPS {
        let (runtime, program) = (runtime.clone(), program.clone());
        applies.spawn(async move {
            runtime
                .apply_application(
                    spec(i, &program, "v1"),
                    ChangeRecord::default(),
                    Duration::from_secs(300),
                )
                .await
        });
    }
    while let Some(result) = applies.join_next().await {
        result
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
    }
    let deployed_in = started.elapsed();
    // Let health checks and proxies settle into their steady state.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let running = rss_kib(pid)?;
    let started = Instant::now();
    let mut applies = tokio::task::JoinSet::new();
    for i in 0..APPS {
        let (runtime, program) = (runtime.clone(), program.clone());
        applies.spawn(async move {
            runtime
                .apply_application(
                    spec(i, &program, "v2"),
                    ChangeRecord::default(),
                    Duration::from_secs(300),
                )
                .await
        });
    }
    while let Some(result) = applies.join_next().await {
        result
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
    }
    let rolled_in = started.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after_update = rss_kib(pid)?;
    let replicas = runtime
        .status()
        .await
        .map_err(|e| e.to_string())?
        .applications
        .iter()
        .map(|a| a.ready_replicas)
        .sum::<u32>();
    println!("local runtime daemon memory (VmRSS of pid {pid}):");
    println!("  {:<40} {:>6.1} MiB", "idle:", idle as f64 / 1024.0);
    println!(
        "  {:<40} {:>6.1} MiB  (deployed in {:.1}s)",
        format!("{replicas} replicas running ({APPS} apps x {REPLICAS}):"),
        running as f64 / 1024.0,
        deployed_in.as_secs_f64()
    );
    println!(
        "  {:<40} {:>6.1} MiB  (rolled in {:.1}s)",
        "after a rolling update of every app:",
        after_update as f64 / 1024.0,
        rolled_in.as_secs_f64()
    );
    runtime
        .shutdown(Duration::from_secs(120))
        .await
        .map_err(|e| e.to_string())?;
    Ok(())
}

fn main() -> ExitCode {
    if let Some(code) = slipway_runtime::local::run_from_args() {
        return code;
    }
    // `cargo test --benches` runs this too; measuring needs `cargo bench`.
    if !std::env::args().any(|a| a == "--bench") {
        println!("local_runtime_memory: run with `cargo bench` to measure");
        return ExitCode::SUCCESS;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(bench()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
