//! Reaps the orphans the daemon inherits as the replicas' child subreaper.
//!
//! The daemon is a subreaper so that whatever a replica starts stays below it in the
//! process tree (the [`super::gate`] tells replicas from the local user by that). The
//! price is that a replica's orphaned children become the daemon's, and their exits
//! must be reaped or they stay zombies. The replicas themselves are the daemon's own
//! children, reaped by tokio: those, and any zombie seen only once (tokio may be about
//! to reap it), are left alone.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use nix::sys::wait::{waitpid, WaitPidFlag};
use nix::unistd::Pid;

use super::daemon::Daemon;

const EVERY: Duration = Duration::from_secs(2);

pub(super) async fn reap_orphans(daemon: Arc<Daemon>) {
    let me = std::process::id();
    let mut seen_before = BTreeSet::new();
    loop {
        tokio::time::sleep(EVERY).await;
        let replicas = daemon.replica_pids();
        let zombies = zombie_children(me);
        for &pid in zombies.difference(&replicas) {
            if seen_before.contains(&pid) {
                if let Ok(raw) = i32::try_from(pid) {
                    let _ = waitpid(Pid::from_raw(raw), Some(WaitPidFlag::WNOHANG));
                }
            }
        }
        seen_before = zombies;
    }
}

/// The children of `parent` that have exited and wait to be reaped.
fn zombie_children(parent: u32) -> BTreeSet<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return BTreeSet::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()))
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|stat| {
                    let (_, rest) = stat.rsplit_once(')')?;
                    let mut fields = rest.split_whitespace();
                    let state = fields.next()?;
                    let ppid: u32 = fields.next()?.parse().ok()?;
                    Some(state == "Z" && ppid == parent)
                })
                .unwrap_or(false)
        })
        .collect()
}
