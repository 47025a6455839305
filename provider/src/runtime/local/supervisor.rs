//! Replica supervision: each replica is a process group that the daemon starts, probes,
//! restarts with exponential backoff when it crashes or turns unhealthy, and stops
//! gracefully (SIGTERM to the group, a grace period, then SIGKILL).
//!
//! A replica is a tokio task that owns its process; the rest of the daemon sees it
//! through [`Replica`]: a status channel, a `healthy` flag the proxies read on every
//! connection, and `stop`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::process::{Child, Command};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::health::{self, CheckPolicy, Probe};
use super::logs::{LogSink, Redactor, Rotation, SharedSink};

/// The first restart waits this long; each further one twice as long, up to
/// [`BACKOFF_MAX`]. A replica that became healthy starts over from the first step.
const BACKOFF_BASE: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// Variables a replica inherits from the daemon. Everything else comes from the
/// environment and application specs, so a replica does not see the daemon's (or the
/// first Terraform run's) environment by accident.
const INHERITED: &[&str] = &[
    "PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LC_ALL", "TZ", "TMPDIR",
];

/// Everything needed to run one replica.
#[derive(Debug, Clone)]
pub struct ReplicaConfig {
    /// `<generation>-<index>`, unique within the application.
    pub id: String,
    pub app_id: String,
    pub generation: u64,
    /// Identifies the spec the replica runs: replicas with the same template survive a
    /// scale-only apply.
    pub template: u64,
    pub program: String,
    pub args: Vec<String>,
    pub working_dir: PathBuf,
    /// Variables and secrets (values never leave the daemon except into the process).
    pub env: BTreeMap<String, String>,
    /// This replica's own port for each of the application's ports, by name.
    pub ports: BTreeMap<String, u16>,
    pub check: CheckPolicy,
    pub grace: Duration,
    pub log_path: PathBuf,
    pub rotation: Rotation,
    pub redactor: Arc<Redactor>,
    /// Where the pid file of the running process goes.
    pub run_dir: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplicaState {
    Starting,
    Healthy,
    Unhealthy,
    Backoff,
    Stopping,
    Stopped,
}

impl ReplicaState {
    pub fn as_str(self) -> &'static str {
        match self {
            ReplicaState::Starting => "starting",
            ReplicaState::Healthy => "healthy",
            ReplicaState::Unhealthy => "unhealthy",
            ReplicaState::Backoff => "backoff",
            ReplicaState::Stopping => "stopping",
            ReplicaState::Stopped => "stopped",
        }
    }
}

/// What a replica is doing; published on every change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaStatus {
    pub state: ReplicaState,
    pub pid: Option<u32>,
    pub restarts: u32,
    /// Times the program could not be started at all (missing, not executable).
    pub spawn_failures: u32,
    /// Times the process exited before it was ever healthy.
    pub exits_before_healthy: u32,
    pub ever_healthy: bool,
    /// Why the replica is not healthy: the failing check or how the process ended.
    pub last_error: Option<String>,
}

/// The part of a replica the proxies look at on every connection.
#[derive(Debug, Default)]
pub struct ReplicaHealth {
    healthy: AtomicBool,
}

impl ReplicaHealth {
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Acquire)
    }

    pub(crate) fn set(&self, healthy: bool) {
        self.healthy.store(healthy, Ordering::Release);
    }
}

/// A supervised replica.
#[derive(Debug)]
pub struct Replica {
    pub config: Arc<ReplicaConfig>,
    pub health: Arc<ReplicaHealth>,
    status: watch::Receiver<ReplicaStatus>,
    stop: watch::Sender<bool>,
    task: Mutex<Option<JoinHandle<()>>>,
    logs: SharedSink,
}

impl Replica {
    /// Starts the replica's process and its supervision.
    pub fn start(config: ReplicaConfig) -> Arc<Replica> {
        let config = Arc::new(config);
        let health = Arc::new(ReplicaHealth::default());
        let (status_tx, status) = watch::channel(ReplicaStatus {
            state: ReplicaState::Starting,
            pid: None,
            restarts: 0,
            spawn_failures: 0,
            exits_before_healthy: 0,
            ever_healthy: false,
            last_error: None,
        });
        let (stop, stop_rx) = watch::channel(false);
        let logs = Arc::new(Mutex::new(LogSink::open(
            config.log_path.clone(),
            config.rotation,
            config.redactor.clone(),
        )));
        let task = tokio::spawn(supervise(
            config.clone(),
            health.clone(),
            status_tx,
            stop_rx,
            logs.clone(),
        ));
        Arc::new(Replica {
            config,
            health,
            status,
            stop,
            task: Mutex::new(Some(task)),
            logs,
        })
    }

    pub fn status(&self) -> ReplicaStatus {
        self.status.borrow().clone()
    }

    pub fn subscribe(&self) -> watch::Receiver<ReplicaStatus> {
        self.status.clone()
    }

    /// The replica's last log lines (already redacted).
    pub fn recent_logs(&self, n: usize) -> Vec<String> {
        self.logs.lock().map(|l| l.recent(n)).unwrap_or_default()
    }

    /// Stops the replica gracefully and waits until its process group is gone.
    /// Idempotent: a second caller waits for nothing.
    pub async fn stop(&self) {
        let _ = self.stop.send(true);
        let task = self.task.lock().ok().and_then(|mut t| t.take());
        if let Some(task) = task {
            let _ = task.await;
        }
    }
}

/// How one run of the process ended.
enum Ended {
    Exited(String),
    Unhealthy(String),
    StopRequested,
}

async fn supervise(
    config: Arc<ReplicaConfig>,
    health: Arc<ReplicaHealth>,
    status: watch::Sender<ReplicaStatus>,
    mut stop: watch::Receiver<bool>,
    logs: SharedSink,
) {
    let mut step: u32 = 0;
    loop {
        if *stop.borrow() {
            break;
        }
        status.send_modify(|s| {
            s.state = ReplicaState::Starting;
            s.pid = None;
        });
        match spawn(&config, &logs) {
            Err(message) => {
                note(&logs, &message);
                status.send_modify(|s| {
                    s.spawn_failures += 1;
                    s.last_error = Some(message);
                });
            }
            Ok(mut child) => {
                let pid = child.id().unwrap_or(0);
                let pid_file = write_pid_file(&config, pid);
                status.send_modify(|s| s.pid = Some(pid));
                let (ended, became_healthy) =
                    monitor(&config, &health, &status, &mut child, &mut stop).await;
                health.set(false);
                match ended {
                    Ended::StopRequested => {
                        status.send_modify(|s| s.state = ReplicaState::Stopping);
                        terminate(pid, &mut child, config.grace).await;
                        remove_pid_file(pid_file);
                        break;
                    }
                    Ended::Exited(how) => {
                        // The leader is gone; whatever it left in its group goes too.
                        signal_group(pid, Signal::SIGKILL);
                        let message = format!("the process {how}");
                        note(&logs, &message);
                        status.send_modify(|s| {
                            if !became_healthy {
                                s.exits_before_healthy += 1;
                            }
                            s.last_error = Some(message);
                        });
                    }
                    Ended::Unhealthy(why) => {
                        note(&logs, &format!("{why}; restarting the replica"));
                        terminate(pid, &mut child, config.grace).await;
                        status.send_modify(|s| s.last_error = Some(why));
                    }
                }
                remove_pid_file(pid_file);
                if became_healthy {
                    step = 0;
                }
            }
        }
        let delay = BACKOFF_BASE
            .saturating_mul(2u32.saturating_pow(step))
            .min(BACKOFF_MAX);
        step = step.saturating_add(1).min(16);
        status.send_modify(|s| {
            s.state = ReplicaState::Backoff;
            s.pid = None;
        });
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = stop.changed() => break,
        }
        status.send_modify(|s| s.restarts += 1);
    }
    health.set(false);
    status.send_modify(|s| {
        s.state = ReplicaState::Stopped;
        s.pid = None;
    });
}

/// Notes an event of the runtime's in the replica's own log, where a person reads it.
fn note(logs: &SharedSink, message: &str) {
    if let Ok(mut logs) = logs.lock() {
        logs.write_line("slipway", message);
    }
}

fn spawn(config: &ReplicaConfig, logs: &SharedSink) -> Result<Child, String> {
    if !config.working_dir.is_dir() {
        return Err(format!(
            "cannot start `{}`: the working directory {} does not exist; set `working_dir` to an existing directory",
            config.program,
            config.working_dir.display()
        ));
    }
    let mut command = Command::new(&config.program);
    command
        .args(&config.args)
        .current_dir(&config.working_dir)
        .env_clear()
        .envs(
            INHERITED
                .iter()
                .filter_map(|name| std::env::var_os(name).map(|value| (name.to_string(), value))),
        )
        .envs(&config.env)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group, so that stopping reaches everything it started.
        .process_group(0)
        .kill_on_drop(false);
    let mut child = command.spawn().map_err(|e| {
        let hint = match e.kind() {
            std::io::ErrorKind::NotFound => {
                "; check that `command` is an absolute path or a program on the PATH"
            }
            std::io::ErrorKind::PermissionDenied => "; check that `command` is executable",
            _ => "",
        };
        format!("cannot start `{}`: {e}{hint}", config.program)
    })?;
    if let Some(out) = child.stdout.take() {
        tokio::spawn(super::logs::pump(out, "stdout", logs.clone()));
    }
    if let Some(err) = child.stderr.take() {
        tokio::spawn(super::logs::pump(err, "stderr", logs.clone()));
    }
    Ok(child)
}

/// Probes the running process until it exits, turns unhealthy, or is asked to stop.
/// Returns how it ended and whether it was healthy at some point.
async fn monitor(
    config: &ReplicaConfig,
    health: &ReplicaHealth,
    status: &watch::Sender<ReplicaStatus>,
    child: &mut Child,
    stop: &mut watch::Receiver<bool>,
) -> (Ended, bool) {
    let policy = &config.check;
    let mut successes = 0u32;
    let mut failures = 0u32;
    let mut healthy = false;
    let mut became_healthy = false;
    // Until the first success, probe often so that rollouts do not wait a whole
    // interval for a replica that is already up.
    let eager = Duration::from_millis(150).min(policy.interval);
    let mut next = eager;
    loop {
        tokio::select! {
            exit = child.wait() => {
                let how = match exit {
                    Ok(status) => describe_exit(status),
                    Err(e) => format!("could not be waited for: {e}"),
                };
                return (Ended::Exited(how), became_healthy);
            }
            _ = stop.changed() => return (Ended::StopRequested, became_healthy),
            _ = tokio::time::sleep(next) => {}
        }
        let result = match policy.probe {
            Probe::Running => Ok(()),
            _ => {
                health::check(
                    &policy.probe,
                    policy.timeout,
                    &config.env,
                    &config.working_dir,
                )
                .await
            }
        };
        match result {
            Ok(()) => {
                failures = 0;
                successes = successes.saturating_add(1);
                if !healthy && successes >= policy.healthy_threshold {
                    healthy = true;
                    became_healthy = true;
                    health.set(true);
                    status.send_modify(|s| {
                        s.state = ReplicaState::Healthy;
                        s.ever_healthy = true;
                        s.last_error = None;
                    });
                }
            }
            Err(why) => {
                successes = 0;
                failures = failures.saturating_add(1);
                let message = config
                    .redactor
                    .redact(&format!(
                        "health check {} failed: {why} ({failures} in a row)",
                        policy.probe
                    ))
                    .into_owned();
                if healthy && failures >= policy.unhealthy_threshold {
                    health.set(false);
                    status.send_modify(|s| {
                        s.state = ReplicaState::Unhealthy;
                        s.last_error = Some(message.clone());
                    });
                    return (Ended::Unhealthy(message), became_healthy);
                }
                status.send_if_modified(|s| {
                    if s.last_error.as_deref() == Some(message.as_str()) {
                        false
                    } else {
                        s.last_error = Some(message);
                        true
                    }
                });
            }
        }
        // A replica that keeps failing before it was ever healthy is probed at the
        // configured interval after a while, not eagerly for ever.
        next = if healthy || failures > 40 {
            policy.interval
        } else {
            eager
        };
    }
}

fn describe_exit(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    if let Some(code) = status.code() {
        format!("exited with status {code}")
    } else if let Some(signal) = status.signal() {
        let name = Signal::try_from(signal)
            .map(|s| s.as_str().to_string())
            .unwrap_or_else(|_| signal.to_string());
        format!("was killed by signal {name}")
    } else {
        format!("ended ({status})")
    }
}

fn signal_group(pgid: u32, signal: Signal) {
    if pgid > 1 {
        if let Ok(pgid) = i32::try_from(pgid) {
            let _ = killpg(Pid::from_raw(pgid), signal);
        }
    }
}

/// SIGTERM to the group, up to `grace` for the leader to exit, then SIGKILL to the group.
async fn terminate(pgid: u32, child: &mut Child, grace: Duration) {
    signal_group(pgid, Signal::SIGTERM);
    if tokio::time::timeout(grace, child.wait()).await.is_err() {
        signal_group(pgid, Signal::SIGKILL);
        let _ = child.wait().await;
    }
    // Children the leader left behind do not outlive the replica.
    signal_group(pgid, Signal::SIGKILL);
}

fn write_pid_file(config: &ReplicaConfig, pid: u32) -> Option<PathBuf> {
    let start = process_start_time(pid)?;
    let path = config.run_dir.join(format!(
        "{}--{}.pid",
        super::home::sanitize(&config.app_id),
        super::home::sanitize(&config.id)
    ));
    std::fs::write(&path, format!("{pid} {start}\n")).ok()?;
    Some(path)
}

fn remove_pid_file(path: Option<PathBuf>) {
    if let Some(path) = path {
        let _ = std::fs::remove_file(path);
    }
}

/// The process's start time in clock ticks since boot (field 22 of /proc/PID/stat),
/// which tells a live replica from a later process that reused its pid.
fn process_start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may contain spaces.
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(19)?.parse().ok()
}

/// Stops replica process groups that a daemon which died without stopping them left
/// behind (their pid files are still in `run_dir`), so that a new daemon starts clean.
/// Returns how many groups it stopped.
pub async fn reap_orphans(run_dir: &Path, grace: Duration) -> usize {
    let Ok(entries) = std::fs::read_dir(run_dir) else {
        return 0;
    };
    let mut pgids = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        let parsed = std::fs::read_to_string(&path).ok().and_then(|text| {
            let mut parts = text.split_whitespace();
            let pid: u32 = parts.next()?.parse().ok()?;
            let start: u64 = parts.next()?.parse().ok()?;
            Some((pid, start))
        });
        if let Some((pid, start)) = parsed {
            if process_start_time(pid) == Some(start) {
                signal_group(pid, Signal::SIGTERM);
                pgids.push(pid);
            }
        }
        let _ = std::fs::remove_file(&path);
    }
    let deadline = tokio::time::Instant::now() + grace;
    while tokio::time::Instant::now() < deadline && pgids.iter().any(|pid| group_alive(*pid)) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for pid in &pgids {
        signal_group(*pid, Signal::SIGKILL);
    }
    pgids.len()
}

fn group_alive(pgid: u32) -> bool {
    i32::try_from(pgid)
        .ok()
        .is_some_and(|p| killpg(Pid::from_raw(p), None).is_ok())
}
