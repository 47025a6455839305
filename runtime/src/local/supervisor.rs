//! Replica supervision: each replica is a process group that the daemon starts, probes,
//! restarts with exponential backoff when it crashes or turns unhealthy, and stops
//! gracefully (SIGTERM to the group, a grace period, then SIGKILL).
//!
//! A replica is a tokio task that owns its process; the rest of the daemon sees it
//! through [`Replica`]: a status channel, a `healthy` flag the proxies read on every
//! connection, and `stop`.
//!
//! Each running replica has a record in the home's `run/` directory ([`RunRecord`]:
//! pid, start time, process group, application, ports). A daemon that starts after
//! another died hard reads them: a replica whose pid still has the recorded start time
//! (so not a later process that reused the pid) and whose output pipes the watchdog kept
//! is adopted ([`Replica::adopt`]): watched by polling its pid and start time (it is not
//! this daemon's child), probed, and replaced only when it dies or turns unhealthy.

use std::collections::BTreeMap;
use std::os::fd::{AsFd, OwnedFd};
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
use super::kept::{output_key, Kept, KeptFd};
use super::logs::{LogSink, Redactor, Rotation, SharedSink};
use super::sandbox::Sandbox;

/// How often an adopted replica (not this daemon's child) is checked for having ended.
const ADOPTED_POLL: Duration = Duration::from_millis(200);

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
    /// Where the record of the running process goes.
    pub run_dir: PathBuf,
    /// The watchdog, which keeps the output pipes for a daemon restarted after a crash.
    pub kept: Arc<Kept>,
    /// The platform's home, which the replica may not touch (`sandbox.rs`); `None`
    /// runs it unsandboxed (`SLIPWAY_RUNTIME_SANDBOX=off`).
    pub sandbox_home: Option<PathBuf>,
}

/// What `run/` holds of a running replica, so that a daemon restarted after a crash can
/// adopt it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RunRecord {
    pub pid: u32,
    /// Clock ticks since boot when it started (field 22 of /proc/PID/stat): with the
    /// pid, the process's identity; a later process that reuses the pid has another.
    pub start_time: u64,
    /// Its process group, which it leads (stopping it signals the whole group).
    pub pgid: u32,
    pub app_id: String,
    pub replica_id: String,
    pub generation: u64,
    pub template: u64,
    pub ports: BTreeMap<String, u16>,
    /// The file it was read from.
    #[serde(skip)]
    pub file: PathBuf,
}

/// A live process an earlier daemon started, with its output pipes, to adopt.
#[derive(Debug)]
pub struct Adoptee {
    pub record: RunRecord,
    pub stdout: (OwnedFd, KeptFd),
    pub stderr: (OwnedFd, KeptFd),
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
        Self::supervised(config, None)
    }

    /// Supervises `adoptee`, a live process of this replica's that an earlier daemon
    /// started (`config` carries its id and ports); when it ends it is replaced as any.
    pub fn adopt(config: ReplicaConfig, adoptee: Adoptee) -> Arc<Replica> {
        Self::supervised(config, Some(adoptee))
    }

    fn supervised(config: ReplicaConfig, adoptee: Option<Adoptee>) -> Arc<Replica> {
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
            adoptee,
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

/// The process of one run of a replica.
enum Process {
    Spawned(Child),
    /// Started by an earlier daemon: not this one's child, so watched by pid and start
    /// time, and its exit status is not known.
    Adopted {
        pid: u32,
        start_time: u64,
    },
}

impl Process {
    /// Waits until the process has ended; says how. Cancel-safe.
    async fn wait(&mut self) -> String {
        match self {
            Process::Spawned(child) => match child.wait().await {
                Ok(status) => describe_exit(status),
                Err(e) => format!("could not be waited for: {e}"),
            },
            Process::Adopted { pid, start_time } => {
                while is_running(*pid, *start_time) {
                    tokio::time::sleep(ADOPTED_POLL).await;
                }
                "ended (it was adopted after a daemon restart, so its exit status is unknown)"
                    .into()
            }
        }
    }
}

/// One run: the process, its record in `run/`, and its pipes in the watchdog's keeping.
struct Run {
    process: Process,
    pid: u32,
    record: Option<PathBuf>,
    _kept: Vec<KeptFd>,
}

async fn supervise(
    config: Arc<ReplicaConfig>,
    health: Arc<ReplicaHealth>,
    status: watch::Sender<ReplicaStatus>,
    mut stop: watch::Receiver<bool>,
    logs: SharedSink,
    mut adoptee: Option<Adoptee>,
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
        let run = match adoptee.take() {
            Some(adoptee) => Ok(adopted(&config, adoptee, &logs)),
            None => spawn(&config, &logs),
        };
        match run {
            Err(message) => {
                note(&logs, &message);
                status.send_modify(|s| {
                    s.spawn_failures += 1;
                    s.last_error = Some(message);
                });
            }
            Ok(mut run) => {
                let pid = run.pid;
                status.send_modify(|s| s.pid = Some(pid));
                let (ended, became_healthy) =
                    monitor(&config, &health, &status, &mut run.process, &mut stop).await;
                health.set(false);
                match ended {
                    Ended::StopRequested => {
                        status.send_modify(|s| s.state = ReplicaState::Stopping);
                        terminate(pid, &mut run.process, config.grace).await;
                        remove_record(run.record.take());
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
                        terminate(pid, &mut run.process, config.grace).await;
                        status.send_modify(|s| s.last_error = Some(why));
                    }
                }
                remove_record(run.record.take());
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

/// Takes over an adoptee's pipes (pumped into the replica's log as before the crash).
fn adopted(config: &ReplicaConfig, adoptee: Adoptee, logs: &SharedSink) -> Run {
    let Adoptee {
        record,
        stdout: (out, out_kept),
        stderr: (err, err_kept),
    } = adoptee;
    for (fd, stream) in [(out, "stdout"), (err, "stderr")] {
        match tokio::net::unix::pipe::Receiver::from_owned_fd(fd) {
            Ok(pipe) => {
                tokio::spawn(super::logs::pump(pipe, stream, logs.clone()));
            }
            Err(e) => {
                tracing::warn!(replica = %config.id, error = %e, "cannot read an adopted replica's output")
            }
        }
    }
    note(
        logs,
        &format!(
            "adopted after a daemon restart (pid {}, still running)",
            record.pid
        ),
    );
    Run {
        process: Process::Adopted {
            pid: record.pid,
            start_time: record.start_time,
        },
        pid: record.pid,
        record: Some(record.file),
        _kept: vec![out_kept, err_kept],
    }
}

/// Notes an event of the runtime's in the replica's own log, where a person reads it.
fn note(logs: &SharedSink, message: &str) {
    if let Ok(mut logs) = logs.lock() {
        logs.write_line("slipway", message);
    }
}

/// The sandbox a replica starts in: none on a kernel without Landlock (said once in
/// the daemon's log); a replica is not started when one cannot be built.
fn sandbox_for(home: &Path, working_dir: &Path) -> Result<Option<Sandbox>, String> {
    static UNSUPPORTED: std::sync::Once = std::sync::Once::new();
    match Sandbox::prepare(home, &[working_dir]) {
        Ok(Some(sandbox)) => Ok(Some(sandbox)),
        Ok(None) => {
            UNSUPPORTED.call_once(|| {
                tracing::warn!("this kernel has no Landlock: replicas can read the runtime's home (its state and keys)");
            });
            Ok(None)
        }
        Err(e) => Err(format!(
            "cannot keep the replica out of the runtime's home {} ({e}); the runtime daemon starts no replica it cannot sandbox (SLIPWAY_RUNTIME_SANDBOX=off in its environment turns that off)",
            home.display()
        )),
    }
}

/// A `TMPDIR` of the replica's own, when the sandbox keeps it from creating files in
/// the system's temporary directory (a home under it).
fn private_tmp(home: &Path, working_dir: &Path) -> Option<PathBuf> {
    if !super::sandbox::private_tmp(home) {
        return None;
    }
    let tmp = working_dir.join(".tmp");
    std::fs::create_dir_all(&tmp).ok()?;
    Some(tmp)
}

fn spawn(config: &ReplicaConfig, logs: &SharedSink) -> Result<Run, String> {
    if !config.working_dir.is_dir() {
        return Err(format!(
            "cannot start `{}`: the working directory {} does not exist; set `working_dir` to an existing directory",
            config.program,
            config.working_dir.display()
        ));
    }
    let sandbox = match &config.sandbox_home {
        Some(home) => sandbox_for(home, &config.working_dir)?,
        None => None,
    };
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
    if let Some(tmp) = sandbox
        .as_ref()
        .and_then(|_| private_tmp(config.sandbox_home.as_deref()?, &config.working_dir))
    {
        command.env("TMPDIR", tmp);
    }
    if let Some(sandbox) = sandbox {
        // SAFETY: `enter` makes two system calls and allocates nothing, which is what
        // may run between fork and exec.
        unsafe {
            command.pre_exec(move || sandbox.enter());
        }
    }
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
    let mut kept = Vec::new();
    if let Some(out) = child.stdout.take() {
        let key = output_key(&config.app_id, &config.id, "stdout");
        kept.push(config.kept.keep(key, out.as_fd()));
        tokio::spawn(super::logs::pump(out, "stdout", logs.clone()));
    }
    if let Some(err) = child.stderr.take() {
        let key = output_key(&config.app_id, &config.id, "stderr");
        kept.push(config.kept.keep(key, err.as_fd()));
        tokio::spawn(super::logs::pump(err, "stderr", logs.clone()));
    }
    let pid = child.id().unwrap_or(0);
    Ok(Run {
        record: write_record(config, pid),
        process: Process::Spawned(child),
        pid,
        _kept: kept,
    })
}

/// Probes the running process until it exits, turns unhealthy, or is asked to stop.
/// Returns how it ended and whether it was healthy at some point.
async fn monitor(
    config: &ReplicaConfig,
    health: &ReplicaHealth,
    status: &watch::Sender<ReplicaStatus>,
    process: &mut Process,
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
            how = process.wait() => return (Ended::Exited(how), became_healthy),
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
                // An adopted process was serving before the crash: failing its checks
                // now is turning unhealthy, and it is replaced (a fresh one that never
                // became healthy is the rollout's to fail instead).
                let adopted = matches!(process, Process::Adopted { .. });
                if (healthy || adopted) && failures >= policy.unhealthy_threshold {
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
async fn terminate(pgid: u32, process: &mut Process, grace: Duration) {
    signal_group(pgid, Signal::SIGTERM);
    if tokio::time::timeout(grace, process.wait()).await.is_err() {
        signal_group(pgid, Signal::SIGKILL);
        let _ = process.wait().await;
    }
    // Children the leader left behind do not outlive the replica.
    signal_group(pgid, Signal::SIGKILL);
}

fn record_path(config: &ReplicaConfig) -> PathBuf {
    config.run_dir.join(format!(
        "{}--{}.pid",
        super::home::sanitize(&config.app_id),
        super::home::sanitize(&config.id)
    ))
}

/// Writes the replica's [`RunRecord`] (atomically: a crash leaves the whole record or
/// none).
fn write_record(config: &ReplicaConfig, pid: u32) -> Option<PathBuf> {
    let record = RunRecord {
        pid,
        start_time: process_start_time(pid)?,
        pgid: pid,
        app_id: config.app_id.clone(),
        replica_id: config.id.clone(),
        generation: config.generation,
        template: config.template,
        ports: config.ports.clone(),
        file: PathBuf::new(),
    };
    let path = record_path(config);
    let tmp = path.with_extension("tmp");
    let text = serde_json::to_string(&record).ok()?;
    std::fs::write(&tmp, text).ok()?;
    std::fs::rename(&tmp, &path).ok()?;
    Some(path)
}

fn remove_record(path: Option<PathBuf>) {
    if let Some(path) = path {
        let _ = std::fs::remove_file(path);
    }
}

/// The process's state letter and start time in clock ticks since boot (fields 3 and
/// 22 of /proc/PID/stat).
fn process_identity(pid: u32) -> Option<(char, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may contain spaces.
    let after = &stat[stat.rfind(')')? + 1..];
    let mut fields = after.split_whitespace();
    let state = fields.next()?.chars().next()?;
    Some((state, fields.nth(18)?.parse().ok()?))
}

/// The process's start time (which tells a live replica from a later process that reused
/// its pid).
fn process_start_time(pid: u32) -> Option<u64> {
    process_identity(pid).map(|(_, start)| start)
}

/// Whether `pid` is still the process that started at `start_time`, and has not exited.
pub fn is_running(pid: u32, start_time: u64) -> bool {
    process_identity(pid)
        .is_some_and(|(state, start)| start == start_time && state != 'Z' && state != 'X')
}

/// The records in `run_dir` of replica processes that still run (a record whose pid
/// is gone, or now another process, is removed). A record in the format of older
/// daemons (`pid start`) is returned with nothing but its pid, so it is never adopted.
pub fn live_records(run_dir: &Path) -> Vec<RunRecord> {
    let Ok(entries) = std::fs::read_dir(run_dir) else {
        return Vec::new();
    };
    let mut live = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        let record = serde_json::from_str::<RunRecord>(&text).ok().or_else(|| {
            let mut parts = text.split_whitespace();
            let pid: u32 = parts.next()?.parse().ok()?;
            let start_time: u64 = parts.next()?.parse().ok()?;
            Some(RunRecord {
                pid,
                start_time,
                pgid: pid,
                app_id: String::new(),
                replica_id: String::new(),
                generation: 0,
                template: 0,
                ports: BTreeMap::new(),
                file: PathBuf::new(),
            })
        });
        match record {
            Some(mut record) if is_running(record.pid, record.start_time) => {
                record.file = path;
                live.push(record);
            }
            _ => {
                let _ = std::fs::remove_file(&path);
            }
        }
    }
    live
}

/// Stops the process groups of replicas a dead daemon left behind that no application
/// adopts (SIGTERM, up to `grace`, SIGKILL), and removes their records.
pub async fn stop_leftovers(leftovers: &[RunRecord], grace: Duration) {
    for record in leftovers {
        if is_running(record.pid, record.start_time) {
            signal_group(record.pgid, Signal::SIGTERM);
        }
    }
    let deadline = tokio::time::Instant::now() + grace;
    while tokio::time::Instant::now() < deadline && leftovers.iter().any(|r| group_alive(r.pgid)) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for record in leftovers {
        signal_group(record.pgid, Signal::SIGKILL);
    }
    for record in leftovers {
        let _ = std::fs::remove_file(&record.file);
    }
}

fn group_alive(pgid: u32) -> bool {
    i32::try_from(pgid)
        .ok()
        .is_some_and(|p| killpg(Pid::from_raw(p), None).is_ok())
}
