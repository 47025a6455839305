//! Whether the daemon that answers is the one this provider wants.
//!
//! The daemon outlives the Terraform run that started it, and so provider upgrades: a
//! provider that finds a daemon of an older version, or another build of its own version
//! (a developer's rebuild), hands the runtime over to its own binary
//! ([`super::client`], [`super::watchdog`]): the replicas are adopted, not restarted. A
//! newer daemon is left alone (its API only grows), so two versions in use on one
//! machine do not take turns.

use std::cmp::Ordering;
use std::path::Path;

/// This build's version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// What tells builds of one version apart: the executable's size and modification time
/// (`/proc/self/exe` in the daemon, so a binary replaced on disk does not count).
pub fn build_id(executable: &Path) -> String {
    use std::os::unix::fs::MetadataExt as _;
    match std::fs::metadata(executable) {
        Ok(m) => format!("{}-{}.{:09}", m.len(), m.mtime(), m.mtime_nsec()),
        Err(_) => String::new(),
    }
}

/// What to do with the daemon that answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fit {
    /// Use it.
    Keep,
    /// Hand the runtime over to this provider's binary.
    Replace,
}

/// The decision for a daemon of `version` and `build` (empty from daemons that predate
/// builds), for a provider of `own_version` and `own_build`.
pub fn fit(version: &str, build: &str, own_version: &str, own_build: &str) -> Fit {
    match compare(version, own_version) {
        Ordering::Greater => Fit::Keep,
        Ordering::Less => Fit::Replace,
        Ordering::Equal if build == own_build && !build.is_empty() => Fit::Keep,
        Ordering::Equal => Fit::Replace,
    }
}

/// Compares `1.2.10` with `1.2.9` as versions (numbers, then any pre-release text,
/// which sorts before the release).
fn compare(a: &str, b: &str) -> Ordering {
    let parts = |v: &str| {
        let (core, pre) = v.split_once('-').unwrap_or((v, ""));
        let numbers: Vec<u64> = core.split('.').map(|n| n.parse().unwrap_or(0)).collect();
        (numbers, pre.to_owned())
    };
    let ((na, pa), (nb, pb)) = (parts(a), parts(b));
    na.cmp(&nb)
        .then_with(|| match (pa.is_empty(), pb.is_empty()) {
            (true, true) => Ordering::Equal,
            (true, false) => Ordering::Greater,
            (false, true) => Ordering::Less,
            (false, false) => pa.cmp(&pb),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_older_or_other_build_is_replaced_and_a_newer_one_kept() {
        assert_eq!(fit("0.1.0", "b1", "0.1.0", "b1"), Fit::Keep);
        assert_eq!(fit("0.1.0", "b0", "0.1.0", "b1"), Fit::Replace);
        assert_eq!(fit("0.1.0", "", "0.1.0", "b1"), Fit::Replace);
        assert_eq!(fit("0.1.9", "b1", "0.1.10", "b2"), Fit::Replace);
        assert_eq!(fit("0.2.0", "b1", "0.1.10", "b2"), Fit::Keep);
        assert_eq!(fit("1.0.0-rc.1", "b1", "1.0.0", "b2"), Fit::Replace);
        assert_eq!(fit("1.0.0", "b1", "1.0.0-rc.1", "b2"), Fit::Keep);
    }

    #[test]
    fn a_build_changes_with_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bin");
        std::fs::write(&path, b"one").unwrap();
        let first = build_id(&path);
        std::fs::write(&path, b"other").unwrap();
        assert_ne!(build_id(&path), first);
        assert_eq!(build_id(&dir.path().join("missing")), "");
    }
}
