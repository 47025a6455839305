//! The embedded local runtime: the default runtime, which needs nothing installed; and
//! the platform's server, whose backend is this runtime or one it owns ([`backend`]).
//!
//! A daemon ([`daemon`]) runs the applications of every Terraform run on this machine
//! for one home directory. The provider ([`client::LocalRuntime`]) talks to it over a
//! Unix socket in the home directory and starts it when none answers, by running its own
//! binary with a hidden argument ([`run_from_args`]). The daemon supervises each replica
//! as a process group ([`supervisor`]), checks its health ([`health`]), gives each public
//! port a stable address ([`proxy`]), updates by rolling ([`rollout`]), writes replica
//! output to rotated log files ([`logs`]) and persists the desired state ([`store`]) so
//! that a restarted daemon brings everything back. What the provider starts is the
//! daemon's watchdog ([`watchdog`]): it starts a daemon that died again at once, keeping
//! its sockets and pipes meanwhile ([`kept`]), and the new daemon adopts the replicas
//! that still run; a provider of another build hands over to itself ([`version`]).
//!
//! ## What a replica gets
//!
//! - `PORT`: a free port the runtime chose for the application's first port, and
//!   `PORT_<NAME>` for every port (name upper-cased, other characters as `_`). The spec's
//!   `ports[].port` is not used to listen (replicas share the machine); health checks
//!   that name it are mapped to the replica's own port. Each public port gets a stable
//!   `127.0.0.1` proxy port, allocated once and kept in the state, as its endpoint.
//!   `$PORT` and `$PORT_<NAME>` in `args` become the same numbers
//!   ([`rollout::expand_ports`]).
//! - The environment's variables and secrets, then the application's (which win), and
//!   `SLIPWAY_ENVIRONMENT`, `SLIPWAY_APPLICATION`, `SLIPWAY_REPLICA`.
//! - From the daemon only `PATH`, `HOME`, `USER`, `LOGNAME`, `SHELL`, `LANG`, `LC_ALL`,
//!   `TZ` and `TMPDIR`.
//! - Its working directory: `working_dir` (absolute), else a directory of its own
//!   (`apps/<id>` in the home, 0700, removed with the application), never the home itself.
//!
//! Secret values are redacted (`[REDACTED]`) from replica logs and from every message
//! the runtime returns. They are stored in `state.json`, which only the user can read.
//! `resources` (cpu, memory) are kept but not enforced by the local runtime.
//!
//! ## Daemon settings (environment of the process that starts the daemon)
//!
//! `SLIPWAY_RUNTIME_GRACE_SECONDS` (SIGTERM to SIGKILL, default 10),
//! `SLIPWAY_RUNTIME_DRAIN_SECONDS` (connection drain in rollouts, default 10),
//! `SLIPWAY_RUNTIME_LOG_MAX_BYTES` (rotate replica logs past this size, default 10 MiB;
//! 3 rotated files kept), `SLIPWAY_LOG` (daemon log filter, default `info`),
//! `SLIPWAY_RUNTIME_SANDBOX=off` (replicas without the Landlock sandbox that keeps them
//! out of the home, [`sandbox`]).

pub mod backend;
pub mod cli;
pub mod client;
pub mod convert;
pub mod daemon;
pub mod gate;
pub mod health;
pub mod home;
pub mod kept;
pub mod logs;
pub mod peer;
pub mod proxy;
mod reaper;
pub mod rollout;
pub mod rules;
pub mod sandbox;
mod service;
pub mod store;
pub mod supervisor;
pub mod version;
pub mod watchdog;

/// The daemon's gRPC API, generated from `proto/slipway_runtime.proto`.
pub use slipway_proto::runtime as proto;

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

pub use client::LocalRuntime;
pub use home::Home;

/// The hidden first argument that makes the provider binary run as the daemon.
pub const DAEMON_ARG: &str = "__slipway-runtime-daemon";

/// The first argument of the people's CLI: `terraform-provider-slipway runtime …`.
pub const CLI_ARG: &str = "runtime";

/// Runs the daemon or the CLI when the command line asks for one, and returns the exit
/// code; returns `None` (having done nothing) otherwise, so that the binary goes on to
/// serve Terraform. Call it first thing in `main`: it runs on a thread of its own with
/// its own tokio runtime, so it works whether or not `main` is already async.
pub fn run_from_args() -> Option<ExitCode> {
    let mut args = std::env::args_os().skip(1);
    let first = args.next()?;
    let rest: Vec<OsString> = args.collect();
    if first == DAEMON_ARG {
        Some(run_daemon(rest))
    } else if first == CLI_ARG {
        Some(on_own_runtime(move || cli::run(rest)))
    } else {
        None
    }
}

fn on_own_runtime<F, Fut>(f: F) -> ExitCode
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ExitCode>,
{
    let thread = std::thread::Builder::new()
        .name("slipway-runtime".into())
        .spawn(move || {
            // Two workers are plenty: the daemon mostly waits on pipes, probes and
            // sockets, and each worker costs memory.
            match tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime.block_on(f()),
                Err(e) => {
                    eprintln!("error: cannot start the async runtime: {e}");
                    ExitCode::FAILURE
                }
            }
        });
    match thread.map(|t| t.join()) {
        Ok(Ok(code)) => code,
        _ => ExitCode::FAILURE,
    }
}

/// Reads a daemon setting from the environment (for tests and tuning).
fn env_secs(name: &str) -> Option<Duration> {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|v| v.is_finite() && *v >= 0.0)
        .map(Duration::from_secs_f64)
}

/// The provider starts `DAEMON_ARG --home DIR`: the watchdog ([`watchdog`]), which runs
/// `DAEMON_ARG --home DIR --watchdog-fd N`: the daemon.
fn run_daemon(args: Vec<OsString>) -> ExitCode {
    let mut home = None;
    let mut watchdog_fd = None;
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        if arg == "--home" {
            home = args.next().map(PathBuf::from);
        } else if arg == watchdog::WATCHDOG_FD_ARG {
            watchdog_fd = args.next().and_then(|fd| fd.to_str()?.parse::<i32>().ok());
        }
    }
    init_logging();
    let root = match home.map(Ok).unwrap_or_else(Home::default_root) {
        Ok(root) => root,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let Some(fd) = watchdog_fd else {
        return watchdog::run(Home::new(root));
    };
    // SAFETY: the watchdog passed this descriptor (its socket's other end) for this
    // process alone; nothing else here refers to it.
    let sock = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    let kept = match kept::Kept::from_watchdog(sock) {
        Ok(kept) => kept,
        Err(e) => {
            tracing::error!(error = %e, "cannot read what the watchdog kept");
            return ExitCode::from(watchdog::EXIT_CANNOT_RUN);
        }
    };
    // Started on demand by a provider: a daemon already there is what it wanted.
    on_own_runtime(move || serve_with(Home::new(root), false, kept))
}

fn init_logging() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SLIPWAY_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_ansi(false)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Runs the daemon (the embedded platform) for `home` in this process until SIGTERM,
/// SIGINT or the Shutdown call. `exclusive`: another daemon already serving the home
/// is an error (`runtime serve` under a supervisor), not a reason to exit quietly.
pub(crate) async fn serve(home: Home, exclusive: bool) -> ExitCode {
    init_logging();
    serve_with(home, exclusive, kept::Kept::none()).await
}

/// Runs a platform for `home` whose backend is `runtime`, a runtime only this platform
/// reaches (`runtime serve --backend kubernetes`), in the foreground until SIGTERM,
/// SIGINT or the Shutdown call.
pub(crate) async fn serve_owning(
    home: Home,
    runtime: std::sync::Arc<dyn crate::Runtime>,
) -> ExitCode {
    init_logging();
    match service::run_owning(home, runtime).await {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "the platform cannot run");
            ExitCode::from(watchdog::EXIT_CANNOT_RUN)
        }
    }
}

async fn serve_with(home: Home, exclusive: bool, kept: std::sync::Arc<kept::Kept>) -> ExitCode {
    let mut settings = rollout::Settings::default();
    if let Some(grace) = env_secs("SLIPWAY_RUNTIME_GRACE_SECONDS") {
        settings.grace = grace;
    }
    if let Some(drain) = env_secs("SLIPWAY_RUNTIME_DRAIN_SECONDS") {
        settings.drain = drain;
    }
    if let Some(bytes) = std::env::var("SLIPWAY_RUNTIME_LOG_MAX_BYTES")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        settings.rotation.max_bytes = bytes;
    }
    if std::env::var("SLIPWAY_RUNTIME_SANDBOX").is_ok_and(|v| v == "off") {
        tracing::warn!("SLIPWAY_RUNTIME_SANDBOX=off: replicas can read the runtime's home (its state and keys)");
        settings.sandbox = false;
    }
    match daemon::run(home, settings, kept).await {
        Ok(daemon::Ended::Stopped) => ExitCode::SUCCESS,
        Ok(daemon::Ended::HandedOver) => ExitCode::from(watchdog::EXIT_HANDED_OVER),
        Err(daemon::DaemonError::AlreadyRunning(home)) if !exclusive => {
            tracing::info!(%home, "another daemon already serves this home; exiting");
            ExitCode::SUCCESS
        }
        Err(e) => {
            tracing::error!(error = %e, "the local runtime daemon cannot run");
            ExitCode::from(watchdog::EXIT_CANNOT_RUN)
        }
    }
}
