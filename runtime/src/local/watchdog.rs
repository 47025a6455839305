//! The watchdog: the process the provider starts for a home, which runs the daemon as
//! its child and starts it again at once when it dies.
//!
//! A daemon killed hard (`kill -9`, the OOM killer, a crash) leaves its replicas
//! running. The watchdog is their subreaper, so they (and whatever they started) become
//! its children and stay below it in the process tree, where the gate
//! ([`super::gate`]) still tells them from the local user. It keeps the daemon's
//! listening sockets and the replicas' output pipes ([`super::kept`]), so connections
//! wait instead of being refused and replicas keep writing while no daemon runs. It
//! restarts the daemon at once (then with backoff, 0.5 s doubling to 30 s, while it keeps
//! dying within 30 s of its start); the new daemon adopts the live replicas and replaces
//! only the dead or unhealthy ones.
//!
//! A provider of another build hands the runtime over ([`EXIT_HANDED_OVER`]): the
//! daemon tells the watchdog which program to start next and exits leaving the replicas
//! running; the watchdog starts that program at once, and the new daemon adopts them.
//!
//! The watchdog exits when the daemon exits by itself: 0 after a clean stop (the
//! Shutdown call, SIGTERM), or when another daemon already serves the home;
//! [`EXIT_CANNOT_RUN`] when it cannot run at all (say, a bad `platform.toml`: a restart
//! would not help). SIGTERM or SIGINT to the watchdog is passed to the daemon, which
//! stops every replica. One watchdog serves a home (`watchdog.lock`). It does little
//! else so that it has little reason to die itself; if it does, the daemon goes on
//! serving, unwatched, until it is stopped.

use std::collections::BTreeMap;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::fcntl::{Flock, FlockArg};
use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal};
use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::Pid;

use super::home::Home;
use super::kept::{self, FORGET, GIVE, KEEP, PROGRAM, READY};

/// The daemon's argument naming its end of the watchdog's socket.
pub const WATCHDOG_FD_ARG: &str = "--watchdog-fd";

/// The daemon's exit status when it cannot run at all: the watchdog gives up.
pub const EXIT_CANNOT_RUN: u8 = 78;

/// The daemon's exit status after it handed over to another program (which it named
/// first): the watchdog starts that one at once.
pub const EXIT_HANDED_OVER: u8 = 75;

const BACKOFF_BASE: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// A daemon that lived this long is restarted at once again.
const STABLE_AFTER: Duration = Duration::from_secs(30);

/// The daemon's pid while it runs (0: none), for the signal handler.
static DAEMON: AtomicI32 = AtomicI32::new(0);
static STOPPING: AtomicBool = AtomicBool::new(false);

extern "C" fn pass_on(_: nix::libc::c_int) {
    STOPPING.store(true, Ordering::SeqCst);
    let pid = DAEMON.load(Ordering::SeqCst);
    if pid > 0 {
        // kill(2) is async-signal-safe.
        let _ = nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGTERM);
    }
}

type Store = Arc<Mutex<BTreeMap<String, OwnedFd>>>;
/// The program to start as the daemon: this one, until a hand-over names another.
type Program = Arc<Mutex<PathBuf>>;

/// Runs the watchdog for `home` until its daemon exits by itself.
pub fn run(home: Home) -> ExitCode {
    match watch(&home) {
        Ok(code) => code,
        Err(e) => {
            tracing::error!(error = %e, "the local runtime's watchdog cannot run");
            ExitCode::FAILURE
        }
    }
}

fn watch(home: &Home) -> Result<ExitCode, String> {
    home.create()
        .map_err(|e| format!("cannot create {}: {e}", home.root().display()))?;
    let lock_file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(home.watchdog_lock_file())
        .map_err(|e| format!("cannot open the watchdog lock file: {e}"))?;
    let Ok(_lock) = Flock::lock(lock_file, FlockArg::LockExclusiveNonblock) else {
        tracing::info!(home = %home.root().display(), "another watchdog already serves this home; exiting");
        return Ok(ExitCode::SUCCESS);
    };
    std::fs::write(
        home.watchdog_pid_file(),
        format!("{}\n", std::process::id()),
    )
    .map_err(|e| format!("cannot write the watchdog's pid file: {e}"))?;
    nix::sys::prctl::set_child_subreaper(true)
        .map_err(|e| format!("cannot become the replicas' subreaper: {e}"))?;
    let action = SigAction::new(
        SigHandler::Handler(pass_on),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    for signal in [Signal::SIGTERM, Signal::SIGINT] {
        // SAFETY: the handler only stores to atomics and calls kill(2).
        unsafe { nix::sys::signal::sigaction(signal, &action) }
            .map_err(|e| format!("cannot handle {signal}: {e}"))?;
    }
    let store: Store = Arc::default();
    let program: Program = Arc::new(Mutex::new(PathBuf::from("/proc/self/exe")));
    let mut quick_deaths: u32 = 0;
    let code = loop {
        let started = Instant::now();
        let (pid, serving) = start_daemon(home.root(), &store, &program)?;
        let status = wait_for(pid);
        DAEMON.store(0, Ordering::SeqCst);
        // Whatever the dead daemon said last is kept before the next one is handed it.
        let _ = serving.recv_timeout(Duration::from_secs(2));
        match status {
            WaitStatus::Exited(_, 0) => break ExitCode::SUCCESS,
            WaitStatus::Exited(_, code) if code == i32::from(EXIT_CANNOT_RUN) => {
                break ExitCode::FAILURE
            }
            WaitStatus::Exited(_, code) if code == i32::from(EXIT_HANDED_OVER) => {
                let next = program.lock().unwrap_or_else(|p| p.into_inner()).clone();
                tracing::info!(program = %next.display(), "the daemon handed over; starting the next one");
            }
            _ if STOPPING.load(Ordering::SeqCst) => break ExitCode::SUCCESS,
            other => {
                if started.elapsed() >= STABLE_AFTER {
                    quick_deaths = 0;
                }
                let delay = match quick_deaths {
                    0 => Duration::ZERO,
                    n => BACKOFF_BASE
                        .saturating_mul(2u32.saturating_pow(n - 1))
                        .min(BACKOFF_MAX),
                };
                quick_deaths = quick_deaths.saturating_add(1).min(16);
                tracing::warn!(status = ?other, restart_in = ?delay,
                    "the local runtime daemon died; starting it again (its replicas keep running)");
                std::thread::sleep(delay);
                if STOPPING.load(Ordering::SeqCst) {
                    break ExitCode::SUCCESS;
                }
            }
        }
    };
    let _ = std::fs::remove_file(home.watchdog_pid_file());
    Ok(code)
}

/// Starts the daemon with its end of a fresh socket pair, and a thread that hands it the
/// kept descriptors and then keeps what it sends. The receiver hears when that thread
/// ends (the daemon closed its end: it died or exited).
fn start_daemon(
    root: &Path,
    store: &Store,
    program: &Program,
) -> Result<(i32, std::sync::mpsc::Receiver<()>), String> {
    let (ours, theirs) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .map_err(|e| format!("cannot make the daemon's socket: {e}"))?;
    let theirs_raw = theirs.as_raw_fd();
    let path = program.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let mut command = std::process::Command::new(&path);
    // `ps` shows the program's name, not /proc/self/exe.
    let name = match std::env::current_exe() {
        Ok(exe) if path == Path::new("/proc/self/exe") => exe,
        _ => path.clone(),
    };
    command
        .arg0(name)
        .arg(super::DAEMON_ARG)
        .arg("--home")
        .arg(root)
        .arg(WATCHDOG_FD_ARG)
        .arg(theirs_raw.to_string());
    // SAFETY: fcntl is async-signal-safe and touches no memory of the parent.
    unsafe {
        command.pre_exec(move || {
            nix::fcntl::fcntl(
                std::os::fd::BorrowedFd::borrow_raw(theirs_raw),
                nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()),
            )
            .map(drop)
            .map_err(std::io::Error::from)
        });
    }
    let child = command
        .spawn()
        .map_err(|e| format!("cannot start the local runtime daemon: {e}"))?;
    drop(theirs);
    let pid = i32::try_from(child.id()).map_err(|e| format!("the daemon's pid: {e}"))?;
    DAEMON.store(pid, Ordering::SeqCst);
    if STOPPING.load(Ordering::SeqCst) {
        let _ = nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGTERM);
    }
    // The child is reaped by `wait_for` (waitpid(-1) reaps every child), not by std.
    drop(child);
    let (done, serving) = std::sync::mpsc::channel();
    let (store, program) = (store.clone(), program.clone());
    std::thread::spawn(move || {
        serve(&ours, &store, &program);
        let _ = done.send(());
    });
    Ok((pid, serving))
}

/// Hands the daemon what was kept, then keeps and forgets as it says, until it is gone.
fn serve(sock: &OwnedFd, store: &Store, program: &Program) {
    let lock = || store.lock().unwrap_or_else(|p| p.into_inner());
    for (key, fd) in lock().iter() {
        if kept::send(sock.as_fd(), GIVE, key, Some(fd.as_fd())).is_err() {
            return;
        }
    }
    if kept::send(sock.as_fd(), READY, "", None).is_err() {
        return;
    }
    loop {
        match kept::recv(sock.as_fd()) {
            Ok(None) => return,
            Ok(Some(m)) => match (m.verb.as_str(), m.fd) {
                (KEEP, Some(fd)) => {
                    lock().insert(m.key, fd);
                }
                (FORGET, _) => {
                    lock().remove(&m.key);
                }
                (PROGRAM, _) => {
                    *program.lock().unwrap_or_else(|p| p.into_inner()) = PathBuf::from(m.key);
                }
                (verb, _) => tracing::warn!(%verb, "unexpected message from the daemon"),
            },
            Err(e) => {
                tracing::warn!(error = %e, "the daemon's socket failed");
                return;
            }
        }
    }
}

/// Reaps children until `daemon` exits: the others are replicas a dead daemon left to
/// this subreaper (a restarted daemon watches them by pid and start time).
fn wait_for(daemon: i32) -> WaitStatus {
    loop {
        match waitpid(Pid::from_raw(-1), None) {
            Ok(status @ (WaitStatus::Exited(pid, _) | WaitStatus::Signaled(pid, _, _)))
                if pid.as_raw() == daemon =>
            {
                return status
            }
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => {
                // No child at all: the daemon is gone without a status.
                tracing::warn!(error = %e, "cannot wait for the daemon");
                return WaitStatus::StillAlive;
            }
        }
    }
}
