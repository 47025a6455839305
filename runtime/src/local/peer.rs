//! Who is at the other end of a connection to the daemon's socket: decided once, when
//! the connection is accepted, and carried with it ([`PeerStream`]) to every call.
//!
//! The kernel records the connecting process in the socket at `connect()`
//! (`SO_PEERCRED`: its pid and uid; `SO_PEERPIDFD`, Linux 6.5 and later: a handle on
//! that very process), and that record never changes. So a connection is its
//! connecting process's for life: one a replica opened stays a replica's, even when
//! the replica hands it to another process or exits. Deciding per connection is
//! therefore not weaker than deciding per call, and it is stronger where per call was
//! weakest: after the connecting process exits, its pid names nothing, or (pids are
//! reused, as soon as 32,768 processes later) a stranger, perhaps the local user's.
//!
//! A peer is the local user unless it is a process the runtime started: the daemon,
//! its watchdog, a replica, anything below one of them in the process tree (the daemon
//! and the watchdog are subreapers, so double-forking does not escape: an orphan's new
//! parent is the subreaper above it), or anything in a replica's process group (each
//! replica leads its own). The walk up `/proc/PID/stat` fails closed:
//!
//! - a connecting process that is gone (or no longer the one the handle holds) is
//!   refused: nobody can tell whose it was;
//! - an ancestor that exits during the walk, or whose pid a newer process has taken
//!   (a parent never starts after its child), sends the walk round again, from the
//!   connecting process, whose parent is then the subreaper above;
//! - a walk that does not end is refused.

use std::collections::BTreeSet;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::UnixStream;

/// What a connection's peer is, the same for every call on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Peer {
    /// A process of the local user that the runtime did not start: the admin.
    LocalUser,
    /// Not let in without a token.
    Refused(Refusal),
}

/// Why a peer is not the local user.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The kernel did not name the connecting process (no credentials, a pid outside
    /// this pid namespace), or its ancestry could not be followed to the end.
    Unknown,
    /// Another user's process (the socket is 0600: root, or a changed mode).
    OtherUser,
    /// The daemon, the watchdog, a replica, or a process below or in the group of one.
    StartedByRuntime,
    /// The connecting process exited before it could be looked at, or its ancestry
    /// kept changing while it was.
    Gone,
}

impl Refusal {
    /// The refusal's message: what happened, and what to send instead.
    pub fn message(self) -> &'static str {
        match self {
            Refusal::Unknown => {
                "no token, and the connection's peer is unknown: send `authorization: Bearer <token>`"
            }
            Refusal::OtherUser => "the local runtime serves its own user only: send a token",
            Refusal::StartedByRuntime => {
                "a process the runtime started (an application's replica) cannot call the platform without a token"
            }
            Refusal::Gone => {
                "the process that opened this connection has exited: the local runtime cannot tell whose the connection is; call from the process that connects, or send a token"
            }
        }
    }
}

/// The runtime's own processes when a connection is accepted.
pub struct RuntimeProcesses<'a> {
    /// The daemon (its replicas are its children).
    pub daemon: u32,
    /// The watchdog, while it is still the daemon's parent (the replicas an earlier
    /// daemon started are its children).
    pub watchdog: Option<u32>,
    /// The running replicas, each the leader of its process group.
    pub replicas: &'a BTreeSet<u32>,
}

impl RuntimeProcesses<'_> {
    fn started(&self, pid: u32) -> bool {
        pid == self.daemon || Some(pid) == self.watchdog || self.replicas.contains(&pid)
    }
}

/// The verdict on `stream`'s peer, for a daemon run by user `uid`.
pub fn identify(stream: &UnixStream, uid: u32, runtime: &RuntimeProcesses<'_>) -> Peer {
    let Ok(credentials) = stream.peer_cred() else {
        return Peer::Refused(Refusal::Unknown);
    };
    if credentials.uid() != uid {
        return Peer::Refused(Refusal::OtherUser);
    }
    let Some(pid) = credentials
        .pid()
        .and_then(|pid| u32::try_from(pid).ok())
        .filter(|&pid| pid > 0)
    else {
        return Peer::Refused(Refusal::Unknown);
    };
    // A handle on the connecting process itself: while it lives, its pid is its own.
    let handle = match nix::sys::socket::getsockopt(stream, nix::sys::socket::sockopt::PeerPidfd) {
        Ok(pidfd) => Some(pidfd),
        // A kernel before 6.5: the pid alone, looked at right after the accept.
        Err(nix::errno::Errno::ENOPROTOOPT) => None,
        // The process is gone (reaped), or the kernel would not say.
        Err(_) => return Peer::Refused(Refusal::Gone),
    };
    verdict(pid, runtime, &stat, &|| handle.as_ref().is_none_or(alive))
}

/// Whether the process `pidfd` holds has not exited (a pidfd polls readable once it has).
fn alive(pidfd: &OwnedFd) -> bool {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let mut fds = [PollFd::new(pidfd.as_fd(), PollFlags::POLLIN)];
    match poll(&mut fds, PollTimeout::ZERO) {
        Ok(0) => true,
        Ok(_) | Err(_) => false,
    }
}

/// How often the walk is tried again when an ancestor changes under it.
const ATTEMPTS: usize = 4;
/// Deeper than any real process tree; a walk this long is refused.
const MAX_DEPTH: usize = 256;

/// The verdict on the process `pid` (the connecting one). `stat_of` reads a process's
/// `/proc/PID/stat`; `still_the_connector` says, after the walk, whether `pid` still
/// names the process that connected (so what was read of `pid` was about it).
fn verdict(
    pid: u32,
    runtime: &RuntimeProcesses<'_>,
    stat_of: &dyn Fn(u32) -> Option<Stat>,
    still_the_connector: &dyn Fn() -> bool,
) -> Peer {
    for _ in 0..ATTEMPTS {
        match lineage(pid, runtime, stat_of) {
            Lineage::StartedByRuntime => return Peer::Refused(Refusal::StartedByRuntime),
            Lineage::Gone => return Peer::Refused(Refusal::Gone),
            Lineage::TooDeep => return Peer::Refused(Refusal::Unknown),
            Lineage::Changed => continue,
            Lineage::Outside if still_the_connector() => return Peer::LocalUser,
            Lineage::Outside => return Peer::Refused(Refusal::Gone),
        }
    }
    Peer::Refused(Refusal::Gone)
}

/// What one walk up from a process found.
#[derive(Debug, PartialEq, Eq)]
enum Lineage {
    /// A process the runtime started is the process, an ancestor, or its group's leader.
    StartedByRuntime,
    /// The walk reached the top of the tree without meeting one.
    Outside,
    /// The process itself is gone.
    Gone,
    /// An ancestor exited, or its pid is a newer process's: walk again.
    Changed,
    TooDeep,
}

fn lineage(
    pid: u32,
    runtime: &RuntimeProcesses<'_>,
    stat_of: &dyn Fn(u32) -> Option<Stat>,
) -> Lineage {
    let Some(first) = stat_of(pid) else {
        return Lineage::Gone;
    };
    if runtime.replicas.contains(&first.group) {
        return Lineage::StartedByRuntime;
    }
    let (mut pid, mut stat) = (pid, first);
    for _ in 0..MAX_DEPTH {
        if runtime.started(pid) {
            return Lineage::StartedByRuntime;
        }
        if pid <= 1 || stat.parent == 0 {
            return Lineage::Outside;
        }
        let Some(parent) = stat_of(stat.parent) else {
            // The parent exited: its child has been given to the subreaper above.
            return Lineage::Changed;
        };
        if parent.start > stat.start {
            // A parent never starts after its child: that pid is another process now.
            return Lineage::Changed;
        }
        (pid, stat) = (stat.parent, parent);
    }
    Lineage::TooDeep
}

/// What the walk reads of a process (`/proc/PID/stat`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stat {
    parent: u32,
    group: u32,
    /// When it started, in clock ticks since boot.
    start: u64,
}

fn stat(pid: u32) -> Option<Stat> {
    parse_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// `pid (comm) state ppid pgrp ... starttime ...` (`proc_pid_stat(5)`); `comm` may hold
/// spaces and parentheses, so the fields are counted from its last `)`.
fn parse_stat(text: &str) -> Option<Stat> {
    let (_, rest) = text.rsplit_once(')')?;
    let mut fields = rest.split_whitespace();
    let parent = fields.nth(1)?.parse().ok()?;
    let group = fields.next()?.parse().ok()?;
    // Field 22 (starttime) is the 17th after pgrp (field 5).
    let start = fields.nth(16)?.parse().ok()?;
    Some(Stat {
        parent,
        group,
        start,
    })
}

/// The parent of `pid` (field 4 of /proc/PID/stat).
pub(super) fn parent_of(pid: u32) -> Option<u32> {
    stat(pid).map(|s| s.parent)
}

/// An accepted connection with the verdict on its peer, which tonic hands to every
/// request on it (as a request extension: [`Peer`]).
pub struct PeerStream {
    stream: UnixStream,
    peer: Peer,
}

impl PeerStream {
    pub fn new(stream: UnixStream, peer: Peer) -> PeerStream {
        PeerStream { stream, peer }
    }
}

impl tonic::transport::server::Connected for PeerStream {
    type ConnectInfo = Peer;

    fn connect_info(&self) -> Peer {
        self.peer
    }
}

impl AsyncRead for PeerStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for PeerStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::collections::BTreeMap;

    /// A process table: pid → (parent, group, start).
    fn table(rows: &[(u32, u32, u32, u64)]) -> BTreeMap<u32, Stat> {
        rows.iter()
            .map(|&(pid, parent, group, start)| {
                (
                    pid,
                    Stat {
                        parent,
                        group,
                        start,
                    },
                )
            })
            .collect()
    }

    const DAEMON: u32 = 100;
    const WATCHDOG: u32 = 90;
    const REPLICA: u32 = 200;

    fn judge(rows: &BTreeMap<u32, Stat>, pid: u32, connector_alive: bool) -> Peer {
        let replicas = BTreeSet::from([REPLICA]);
        let runtime = RuntimeProcesses {
            daemon: DAEMON,
            watchdog: Some(WATCHDOG),
            replicas: &replicas,
        };
        verdict(pid, &runtime, &|p| rows.get(&p).copied(), &|| {
            connector_alive
        })
    }

    /// init 1 ← shell 10 ← terraform 11 ← provider 12;
    /// init 1 ← watchdog 90 ← daemon 100 ← replica 200 (its own group) ← child 201.
    fn machine() -> BTreeMap<u32, Stat> {
        table(&[
            (1, 0, 1, 0),
            (10, 1, 10, 5),
            (11, 10, 11, 50),
            (12, 11, 11, 51),
            (WATCHDOG, 1, WATCHDOG, 20),
            (DAEMON, WATCHDOG, WATCHDOG, 21),
            (REPLICA, DAEMON, REPLICA, 30),
            (201, REPLICA, REPLICA, 31),
        ])
    }

    #[test]
    fn the_local_users_process_is_the_local_user_and_the_runtimes_are_not() {
        let rows = machine();
        assert_eq!(judge(&rows, 12, true), Peer::LocalUser);
        for pid in [DAEMON, WATCHDOG, REPLICA, 201] {
            assert_eq!(
                judge(&rows, pid, true),
                Peer::Refused(Refusal::StartedByRuntime),
                "{pid}"
            );
        }
    }

    #[test]
    fn a_double_forked_replica_child_is_below_the_subreaper_or_in_the_replicas_group() {
        let mut rows = machine();
        // Its parent exited: the subreaper (the daemon) is its parent now.
        rows.insert(
            202,
            Stat {
                parent: DAEMON,
                group: REPLICA,
                start: 32,
            },
        );
        assert_eq!(
            judge(&rows, 202, true),
            Peer::Refused(Refusal::StartedByRuntime)
        );
        // Given to init (no subreaper left above it), still in the replica's group.
        rows.insert(
            203,
            Stat {
                parent: 1,
                group: REPLICA,
                start: 33,
            },
        );
        assert_eq!(
            judge(&rows, 203, true),
            Peer::Refused(Refusal::StartedByRuntime)
        );
    }

    #[test]
    fn a_connecting_process_that_is_gone_is_refused() {
        let rows = machine();
        // No such process any more (before, a pid that named nothing passed).
        assert_eq!(judge(&rows, 999, true), Peer::Refused(Refusal::Gone));
        // The pid names a local user's process now, but not the one that connected.
        assert_eq!(judge(&rows, 12, false), Peer::Refused(Refusal::Gone));
    }

    #[test]
    fn an_ancestor_whose_pid_a_newer_process_took_sends_the_walk_round_again() {
        // The replica's child 201 connected; its parent, the replica, exited, and a
        // local user's process (started later, below the shell) now has pid 200. The
        // first read still shows 201's old parent; the next, the subreaper.
        let mut rows = machine();
        rows.insert(
            REPLICA,
            Stat {
                parent: 10,
                group: REPLICA + 1,
                start: 60,
            },
        );
        let replicas = BTreeSet::new();
        let runtime = RuntimeProcesses {
            daemon: DAEMON,
            watchdog: Some(WATCHDOG),
            replicas: &replicas,
        };
        let reads = Cell::new(0);
        let stat_of = |p: u32| {
            if p == 201 {
                reads.set(reads.get() + 1);
                let parent = if reads.get() == 1 { REPLICA } else { DAEMON };
                return Some(Stat {
                    parent,
                    group: REPLICA,
                    start: 31,
                });
            }
            rows.get(&p).copied()
        };
        assert_eq!(
            verdict(201, &runtime, &stat_of, &|| true),
            Peer::Refused(Refusal::StartedByRuntime)
        );
        assert_eq!(reads.get(), 2, "walked again after the newer parent");
        // A tree that keeps changing is refused, not let in.
        let always_newer = |p: u32| {
            Some(Stat {
                parent: p + 1,
                group: p,
                start: u64::from(p),
            })
        };
        assert_eq!(
            verdict(300, &runtime, &always_newer, &|| true),
            Peer::Refused(Refusal::Gone)
        );
    }

    #[test]
    fn a_parent_that_exits_during_the_walk_sends_it_round_again() {
        let rows = machine();
        let replicas = BTreeSet::from([REPLICA]);
        let runtime = RuntimeProcesses {
            daemon: DAEMON,
            watchdog: None,
            replicas: &replicas,
        };
        let walks = Cell::new(0);
        // 205's parent 204 is gone by the time it is read; then 205 shows the daemon.
        let stat_of = |p: u32| match p {
            205 => {
                walks.set(walks.get() + 1);
                let parent = if walks.get() == 1 { 204 } else { DAEMON };
                Some(Stat {
                    parent,
                    group: 205,
                    start: 40,
                })
            }
            204 => None,
            _ => rows.get(&p).copied(),
        };
        assert_eq!(
            verdict(205, &runtime, &stat_of, &|| true),
            Peer::Refused(Refusal::StartedByRuntime)
        );
    }

    /// Not a test of its own: the helper process of the test below, which runs this
    /// test binary again to connect to `SLIPWAY_TEST_PEER_SOCKET` (and to stay
    /// connected for a while when `SLIPWAY_TEST_PEER_STAY` is set).
    #[test]
    fn peer_helper_connects() {
        let Some(path) = std::env::var_os("SLIPWAY_TEST_PEER_SOCKET") else {
            return;
        };
        let _stream = std::os::unix::net::UnixStream::connect(path).unwrap();
        if std::env::var_os("SLIPWAY_TEST_PEER_STAY").is_some() {
            std::thread::sleep(std::time::Duration::from_secs(30));
        }
    }

    fn helper(socket: &std::path::Path, stay: bool) -> std::process::Child {
        let mut command = std::process::Command::new(std::env::current_exe().unwrap());
        command
            .args([
                "--exact",
                "local::peer::tests::peer_helper_connects",
                "--quiet",
            ])
            .env("SLIPWAY_TEST_PEER_SOCKET", socket)
            .stdout(std::process::Stdio::null());
        if stay {
            command.env("SLIPWAY_TEST_PEER_STAY", "1");
        }
        command.spawn().unwrap()
    }

    #[tokio::test]
    async fn a_real_connection_is_its_connecting_processs_even_after_it_exits() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("peer.sock");
        let listener = tokio::net::UnixListener::bind(&socket).unwrap();
        let uid = nix::unistd::getuid().as_raw();
        let no_replicas = BTreeSet::new();
        let me = std::process::id();

        // This process's own connection, with no runtime above it: the local user.
        let _mine = tokio::net::UnixStream::connect(&socket).await.unwrap();
        let (accepted, _) = listener.accept().await.unwrap();
        let elsewhere = RuntimeProcesses {
            daemon: u32::MAX,
            watchdog: None,
            replicas: &no_replicas,
        };
        assert_eq!(identify(&accepted, uid, &elsewhere), Peer::LocalUser);

        // A child of this process, standing in for the daemon: started by the runtime.
        let as_daemon = RuntimeProcesses {
            daemon: me,
            watchdog: None,
            replicas: &no_replicas,
        };
        let mut child = helper(&socket, true);
        let (accepted, _) = listener.accept().await.unwrap();
        assert_eq!(
            identify(&accepted, uid, &as_daemon),
            Peer::Refused(Refusal::StartedByRuntime)
        );
        child.kill().unwrap();
        child.wait().unwrap();

        // A process that connected and exited (and was reaped) before the accept: its
        // pid names nothing, or whoever gets it next, so nobody's connection.
        let status = helper(&socket, false).wait().unwrap();
        assert!(status.success());
        let (accepted, _) = listener.accept().await.unwrap();
        assert_eq!(
            identify(&accepted, uid, &elsewhere),
            Peer::Refused(Refusal::Gone)
        );
    }

    #[test]
    fn a_stat_line_is_read_past_a_command_with_spaces_and_parentheses() {
        let line =
            "4242 (a (b) c) S 17 4242 4242 0 -1 4194560 100 0 0 0 5 3 0 0 20 0 1 0 987654 1000 200";
        assert_eq!(
            parse_stat(line),
            Some(Stat {
                parent: 17,
                group: 4242,
                start: 987654
            })
        );
    }

    #[test]
    fn this_process_is_read_from_proc_below_its_parent() {
        let me = stat(std::process::id()).unwrap();
        let parent = stat(me.parent).unwrap();
        assert!(parent.start <= me.start);
        assert_eq!(parent_of(std::process::id()), Some(me.parent));
    }
}
