//! One read through a local runtime daemon's socket as the local user, the path every
//! call of a plan takes: its wall time, and the daemon's own CPU per call (what the
//! daemon spends on a call, whatever else runs on the machine). Shared by the
//! `local_plan` and `daemon_read` benches (`#[path]`: benches have no library).

use std::path::Path;
use std::time::{Duration, Instant};

pub const READ_BATCHES: usize = 5;
pub const READS_PER_BATCH: usize = 400;

/// What [`read_time`] measured.
pub struct ReadTime {
    /// The median batch's time per read.
    pub wall: Duration,
    /// The daemon's CPU time (all its threads, from `/proc/PID/task/*/schedstat`) per
    /// read, over every batch; `None` when `daemon.pid` or `/proc` cannot be read.
    pub daemon_cpu: Option<Duration>,
}

pub fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

impl ReadTime {
    /// `12.3 us wall, 4.5 us daemon CPU`.
    pub fn describe(&self) -> String {
        match self.daemon_cpu {
            Some(cpu) => format!(
                "{:.1} us wall, {:.1} us daemon CPU",
                micros(self.wall),
                micros(cpu)
            ),
            None => format!("{:.1} us wall", micros(self.wall)),
        }
    }
}

/// The daemon serving `home` (its `daemon.pid`).
pub fn daemon_pid(home: &Path) -> Option<u32> {
    std::fs::read_to_string(home.join("daemon.pid"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// The CPU time `pid` has used so far, every thread's (live threads only: a thread
/// that ended meanwhile drops out, so measure across a stretch where none do).
pub fn cpu_time(pid: u32) -> Option<Duration> {
    let mut total = 0u64;
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))
        .ok()?
        .flatten()
    {
        let text = std::fs::read_to_string(task.path().join("schedstat")).unwrap_or_default();
        total += text
            .split_whitespace()
            .next()
            .and_then(|ns| ns.parse::<u64>().ok())
            .unwrap_or(0);
    }
    Some(Duration::from_nanos(total))
}

/// The time of one `FindApplication` of `app` in environment `environment` through the
/// daemon serving `home`, on one connection as the local user (no token: the daemon
/// names the caller from the socket's peer), median of [`READ_BATCHES`] batches. Every
/// call of a plan pays this path, the platform's identity and policy checks included
/// where the build has them.
pub fn read_time(home: &Path, environment: &str, app: &str) -> ReadTime {
    use slipway_proto::runtime::local_runtime_client::LocalRuntimeClient;
    use slipway_proto::runtime::{FindApplicationRequest, FindEnvironmentRequest};
    let socket = home.join("runtime.sock");
    let pid = daemon_pid(home);
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
                name: environment.into(),
            })
            .await
            .expect("FindEnvironment")
            .into_inner()
            .environment
            .and_then(|e| e.spec)
            .expect("the environment exists");
        let request = FindApplicationRequest {
            environment_id: environment.id,
            name: app.into(),
        };
        let mut batches = Vec::new();
        let cpu_before = pid.and_then(cpu_time);
        for _ in 0..READ_BATCHES {
            let start = Instant::now();
            for _ in 0..READS_PER_BATCH {
                let found = client
                    .find_application(request.clone())
                    .await
                    .expect("FindApplication")
                    .into_inner();
                assert!(found.application.is_some(), "{app} exists");
            }
            batches.push(start.elapsed() / READS_PER_BATCH as u32);
        }
        let cpu_after = pid.and_then(cpu_time);
        batches.sort();
        let reads = (READ_BATCHES * READS_PER_BATCH) as u32;
        ReadTime {
            wall: batches[batches.len() / 2],
            daemon_cpu: cpu_before
                .zip(cpu_after)
                .map(|(before, after)| after.saturating_sub(before) / reads),
        }
    })
}
