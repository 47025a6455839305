//! What outlives a daemon crash: the file descriptors its watchdog keeps for it.
//!
//! A daemon killed hard takes its open files with it. Two of them must not go: each
//! public port's listening socket (else the endpoint refuses connections until a new
//! daemon binds again) and each replica's stdout and stderr pipe (else the replica's
//! next log line fails with EPIPE, and a program such as `python3 -m http.server` can no
//! longer answer). So the daemon hands a copy of each to the watchdog
//! ([`super::watchdog`]) as it opens it (`keep`), and says when it closed it for good
//! (`forget`). The watchdog never reads them; while no daemon runs, connections wait in
//! the listening socket's backlog and output in the pipe. A restarted daemon gets every
//! kept descriptor back (`give` … `ready`) and goes on from there, as systemd's file
//! descriptor store does for a service.
//!
//! The channel is a `SOCK_SEQPACKET` socket pair: one message is one verb, a key (no
//! spaces) and at most one descriptor, passed with `SCM_RIGHTS`.

use std::collections::BTreeMap;
use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::sync::{Arc, Mutex};

use nix::errno::Errno;
use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags};

/// Longer than any key (`listen/<application id>/<port name>`).
const MAX_MESSAGE: usize = 4096;

/// Daemon to watchdog: keep this descriptor under this key (replacing any before).
pub(super) const KEEP: &str = "keep";
/// Daemon to watchdog: the descriptor under this key is closed for good.
pub(super) const FORGET: &str = "forget";
/// Watchdog to a starting daemon: a descriptor kept for an earlier daemon.
pub(super) const GIVE: &str = "give";
/// Watchdog to a starting daemon: that was every kept descriptor.
pub(super) const READY: &str = "ready";
/// Daemon to watchdog, before it exits handing over: start this program (the key) as
/// the next daemon, from now on.
pub(super) const PROGRAM: &str = "program";

/// Sends one message, with `fd` attached when given.
pub(super) fn send(
    sock: BorrowedFd<'_>,
    verb: &str,
    key: &str,
    fd: Option<BorrowedFd<'_>>,
) -> nix::Result<()> {
    let text = format!("{verb} {key}");
    let iov = [IoSlice::new(text.as_bytes())];
    let raw = fd.map(|fd| [fd.as_raw_fd()]);
    let cmsg = raw.as_ref().map(|raw| ControlMessage::ScmRights(raw));
    loop {
        match sendmsg::<()>(
            sock.as_raw_fd(),
            &iov,
            cmsg.as_slice(),
            MsgFlags::MSG_NOSIGNAL,
            None,
        ) {
            Err(Errno::EINTR) => continue,
            other => return other.map(drop),
        }
    }
}

/// One received message: verb, key, and the descriptor it carried.
pub(super) struct Message {
    pub verb: String,
    pub key: String,
    pub fd: Option<OwnedFd>,
}

/// Receives one message; `None` when the other side closed its end.
pub(super) fn recv(sock: BorrowedFd<'_>) -> nix::Result<Option<Message>> {
    let mut buf = [0u8; MAX_MESSAGE];
    let mut space = nix::cmsg_space!([RawFd; 1]);
    let (bytes, raw) = loop {
        let mut iov = [IoSliceMut::new(&mut buf)];
        match recvmsg::<()>(
            sock.as_raw_fd(),
            &mut iov,
            Some(space.as_mut_slice()),
            MsgFlags::MSG_CMSG_CLOEXEC,
        ) {
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e),
            Ok(msg) => {
                let mut raw = Vec::new();
                for cmsg in msg.cmsgs()? {
                    if let ControlMessageOwned::ScmRights(fds) = cmsg {
                        raw.extend(fds);
                    }
                }
                break (msg.bytes, raw);
            }
        }
    };
    // SAFETY: the kernel has just installed these descriptors in this process for this
    // message; nothing else refers to them.
    let mut fds: Vec<OwnedFd> = raw
        .into_iter()
        .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) })
        .collect();
    if bytes == 0 && fds.is_empty() {
        return Ok(None);
    }
    let text = String::from_utf8_lossy(&buf[..bytes]);
    let (verb, key) = text.split_once(' ').unwrap_or((&text, ""));
    Ok(Some(Message {
        verb: verb.to_owned(),
        key: key.to_owned(),
        fd: fds.pop(),
    }))
}

/// The daemon's side: hands descriptors to the watchdog, and holds those it got back.
/// Without a watchdog (`runtime serve`, under a supervisor of its own) every call is a
/// no-op and nothing is handed back.
#[derive(Debug, Default)]
pub struct Kept {
    /// The socket to the watchdog (the lock serialises sends); `None` once handed over.
    sock: Mutex<Option<OwnedFd>>,
    watched: bool,
    /// What the watchdog gave this daemon at start, until taken.
    handed: Mutex<BTreeMap<String, OwnedFd>>,
}

impl Kept {
    /// No watchdog: nothing outlives this daemon.
    pub fn none() -> Arc<Kept> {
        Arc::new(Kept::default())
    }

    /// Takes over the watchdog's end `sock` and reads what it kept for earlier daemons.
    pub fn from_watchdog(sock: OwnedFd) -> std::io::Result<Arc<Kept>> {
        // Replicas must not inherit it: the watchdog sees the daemon's end of life by it.
        nix::fcntl::fcntl(
            &sock,
            nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
        )?;
        let mut handed = BTreeMap::new();
        loop {
            match recv(sock.as_fd())? {
                None => break,
                Some(m) if m.verb == READY => break,
                Some(Message {
                    verb,
                    key,
                    fd: Some(fd),
                }) if verb == GIVE => {
                    handed.insert(key, fd);
                }
                Some(m) => tracing::warn!(verb = %m.verb, "unexpected message from the watchdog"),
            }
        }
        Ok(Arc::new(Kept {
            sock: Mutex::new(Some(sock)),
            watched: true,
            handed: Mutex::new(handed),
        }))
    }

    /// Whether a watchdog keeps descriptors for this daemon (so replicas can be adopted
    /// after a crash).
    pub fn watched(&self) -> bool {
        self.watched
    }

    fn send(&self, verb: &str, key: &str, fd: Option<BorrowedFd<'_>>) -> bool {
        let sock = self.sock.lock().unwrap_or_else(|p| p.into_inner());
        let Some(sock) = sock.as_ref() else {
            return false;
        };
        match send(sock.as_fd(), verb, key, fd) {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(%key, error = %e, "the watchdog cannot keep a descriptor; it will not survive a crash");
                false
            }
        }
    }

    /// Tells the watchdog to start `program` as the next daemon, and stops talking to
    /// it: whatever this daemon closes from now on (as it exits) stays kept for the next.
    /// False without a watchdog.
    pub fn hand_over(&self, program: &std::path::Path) -> bool {
        let sent = self.send(PROGRAM, &program.display().to_string(), None);
        if sent {
            self.sock.lock().unwrap_or_else(|p| p.into_inner()).take();
        }
        sent
    }

    /// Has the watchdog keep a copy of `fd` under `key`; the returned guard forgets it
    /// when dropped (the daemon closed it for good).
    pub fn keep(self: &Arc<Self>, key: String, fd: BorrowedFd<'_>) -> KeptFd {
        let _ = self.send(KEEP, &key, Some(fd));
        KeptFd {
            key,
            kept: self.clone(),
        }
    }

    /// The descriptor an earlier daemon kept under `key`, with the guard that forgets it.
    pub fn take(self: &Arc<Self>, key: &str) -> Option<(OwnedFd, KeptFd)> {
        let fd = self
            .handed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key)?;
        Some((
            fd,
            KeptFd {
                key: key.to_owned(),
                kept: self.clone(),
            },
        ))
    }

    /// Forgets every handed-back descriptor nobody took (a replica that died while no
    /// daemon ran, a port no longer public).
    pub fn forget_untaken(&self) {
        let untaken = std::mem::take(&mut *self.handed.lock().unwrap_or_else(|p| p.into_inner()));
        for key in untaken.keys() {
            let _ = self.send(FORGET, key, None);
        }
    }
}

/// A descriptor the watchdog keeps; dropping this tells it to let go.
#[derive(Debug)]
pub struct KeptFd {
    key: String,
    kept: Arc<Kept>,
}

impl Drop for KeptFd {
    fn drop(&mut self) {
        let _ = self.kept.send(FORGET, &self.key, None);
    }
}

/// The key of a public port's listening socket.
pub fn listener_key(app_id: &str, port: &str) -> String {
    format!(
        "listen/{}/{}",
        super::home::sanitize(app_id),
        super::home::sanitize(port)
    )
}

/// The key of a replica's output pipe (`stream`: `stdout` or `stderr`).
pub fn output_key(app_id: &str, replica_id: &str, stream: &str) -> String {
    format!(
        "{stream}/{}/{}",
        super::home::sanitize(app_id),
        super::home::sanitize(replica_id)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
    use std::io::{Read as _, Write as _};

    #[test]
    fn a_descriptor_passes_with_its_key_and_end_of_file_is_none() {
        let (a, b) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .unwrap();
        let (reader, writer) = std::io::pipe().unwrap();
        send(a.as_fd(), KEEP, "stdout/app/1-0", Some(reader.as_fd())).unwrap();
        drop(reader);
        let m = recv(b.as_fd()).unwrap().unwrap();
        assert_eq!((m.verb.as_str(), m.key.as_str()), (KEEP, "stdout/app/1-0"));
        // The copy that crossed reads what is written to the pipe.
        let mut writer = writer;
        writer.write_all(b"hello").unwrap();
        drop(writer);
        let mut text = String::new();
        std::fs::File::from(m.fd.unwrap())
            .read_to_string(&mut text)
            .unwrap();
        assert_eq!(text, "hello");
        send(a.as_fd(), FORGET, "stdout/app/1-0", None).unwrap();
        let m = recv(b.as_fd()).unwrap().unwrap();
        assert!(m.verb == FORGET && m.fd.is_none());
        drop(a);
        assert!(recv(b.as_fd()).unwrap().is_none());
    }
}
