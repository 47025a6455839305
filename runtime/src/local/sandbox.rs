//! Keeps replicas out of the platform's home with Landlock.
//!
//! Replicas run as the daemon's user, so file permissions alone do not keep them from
//! `platform.db`, `platform.key` or `state.json` (which holds every secret). Landlock,
//! the kernel's unprivileged sandbox, can: a replica is restricted, just before it
//! execs, to every path of the machine except the home, and keeps its own working
//! directory when that is inside the home (`apps/<id>`).
//!
//! Landlock rules only grant, and a grant covers everything beneath a directory, so
//! "all but the home" is built as a walk from `/` down to the home: at each level every
//! entry is granted except the one that leads to the home. What that costs a replica:
//! it cannot create new entries directly in the home's ancestors (with the default
//! home under `~/.local/share`, that is `~`, `~/.local` and `~/.local/share`), and
//! entries created there after it started are out of its reach. With a home directly
//! under `/tmp`, that includes `/tmp` itself, so replicas get `TMPDIR` in their own
//! directory instead ([`private_tmp`]).
//!
//! The ruleset is built in the daemon; the child only calls two system calls before
//! exec (`prctl(PR_SET_NO_NEW_PRIVS)` and `landlock_restrict_self`), which is what may
//! safely run between `fork` and `exec` in a multi-threaded program. On a kernel
//! without Landlock, replicas run as before and the daemon says so once in its log.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use nix::libc;

const CREATE_RULESET_VERSION: u32 = 1;
const RULE_PATH_BENEATH: libc::c_int = 1;

// The filesystem rights, by the ABI version that introduced them.
const EXECUTE: u64 = 1 << 0;
const WRITE_FILE: u64 = 1 << 1;
const READ_FILE: u64 = 1 << 2;
const READ_DIR: u64 = 1 << 3;
/// ABI 1: everything up to `MAKE_SYM` (bit 12).
const ABI1: u64 = (1 << 13) - 1;
const REFER: u64 = 1 << 13;
const TRUNCATE: u64 = 1 << 14;
const IOCTL_DEV: u64 = 1 << 15;

#[repr(C)]
struct RulesetAttr {
    handled_access_fs: u64,
}

#[repr(C, packed)]
struct PathBeneathAttr {
    allowed_access: u64,
    parent_fd: i32,
}

/// A prepared ruleset for one replica.
pub struct Sandbox {
    ruleset: OwnedFd,
}

/// The Landlock ABI version of the running kernel, or `None` without Landlock.
fn abi() -> Option<u32> {
    // SAFETY: the documented probe: a null attribute, size 0 and the version flag.
    let version = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<RulesetAttr>(),
            0usize,
            CREATE_RULESET_VERSION,
        )
    };
    u32::try_from(version).ok().filter(|v| *v >= 1)
}

/// Every filesystem right this kernel knows.
fn handled(abi: u32) -> u64 {
    let mut rights = ABI1;
    if abi >= 2 {
        rights |= REFER;
    }
    if abi >= 3 {
        rights |= TRUNCATE;
    }
    if abi >= 5 {
        rights |= IOCTL_DEV;
    }
    rights
}

/// The rights that apply to a file (not a directory).
fn file_rights(all: u64) -> u64 {
    all & (EXECUTE | WRITE_FILE | READ_FILE | TRUNCATE | IOCTL_DEV)
}

impl Sandbox {
    /// A ruleset that grants everything outside `home`, and `inside` (directories in
    /// the home the replica may use). `None` when the kernel has no Landlock.
    pub fn prepare(home: &Path, inside: &[&Path]) -> io::Result<Option<Sandbox>> {
        let Some(abi) = abi() else {
            return Ok(None);
        };
        let all = handled(abi);
        let attr = RulesetAttr {
            handled_access_fs: all,
        };
        // SAFETY: a valid attribute of the size passed; the result is a new fd or -1.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_landlock_create_ruleset,
                &attr as *const RulesetAttr,
                std::mem::size_of::<RulesetAttr>(),
                0u32,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: the kernel just gave us this descriptor, and nothing else owns it.
        let sandbox = Sandbox {
            ruleset: unsafe { OwnedFd::from_raw_fd(fd as RawFd) },
        };
        let home = home.canonicalize()?;
        // Listing a directory on the way is harmless (names, not contents).
        sandbox.grant(Path::new("/"), READ_DIR)?;
        for (ancestor, toward) in ancestors(&home) {
            for entry in std::fs::read_dir(&ancestor)? {
                let entry = entry?;
                if entry.file_name() == toward.as_os_str() {
                    continue;
                }
                let path = entry.path();
                let rights = if path.is_dir() { all } else { file_rights(all) };
                // A dangling link, or an entry gone since the listing: nothing to grant.
                match sandbox.grant(&path, rights) {
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    other => other?,
                }
            }
        }
        for dir in inside {
            sandbox.grant(dir, all)?;
        }
        Ok(Some(sandbox))
    }

    fn grant(&self, path: &Path, rights: u64) -> io::Result<()> {
        let c_path = CString::new(path.as_os_str().as_bytes())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a NUL in a path"))?;
        // SAFETY: a NUL-terminated path; O_PATH opens without reading anything.
        let raw = unsafe { libc::open(c_path.as_ptr(), libc::O_PATH | libc::O_CLOEXEC) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a new descriptor that only this guard owns.
        let parent = unsafe { OwnedFd::from_raw_fd(raw) };
        let rule = PathBeneathAttr {
            allowed_access: rights,
            parent_fd: parent.as_raw_fd(),
        };
        // SAFETY: a valid rule for the ruleset we own.
        let done = unsafe {
            libc::syscall(
                libc::SYS_landlock_add_rule,
                self.ruleset.as_raw_fd(),
                RULE_PATH_BENEATH,
                &rule as *const PathBeneathAttr,
                0u32,
            )
        };
        if done < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Restricts the calling process: for `pre_exec`, between fork and exec. Only
    /// system calls, no allocation.
    pub fn enter(&self) -> io::Result<()> {
        // SAFETY: plain system calls on values we own.
        unsafe {
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
                return Err(io::Error::last_os_error());
            }
            if libc::syscall(
                libc::SYS_landlock_restrict_self,
                self.ruleset.as_raw_fd(),
                0u32,
            ) != 0
            {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(())
    }
}

/// Each directory from `/` down to `home`'s parent, with the name of the next step
/// toward `home`.
fn ancestors(home: &Path) -> Vec<(PathBuf, PathBuf)> {
    let mut out = Vec::new();
    let mut at = PathBuf::from("/");
    for component in home.components() {
        if let Component::Normal(name) = component {
            out.push((at.clone(), PathBuf::from(name)));
            at.push(name);
        }
    }
    out
}

/// Whether a replica needs a `TMPDIR` of its own: when the home's ancestors include the
/// system's temporary directory, the sandbox does not let it create files there.
pub fn private_tmp(home: &Path) -> bool {
    let tmp = std::env::temp_dir();
    let (Ok(home), Ok(tmp)) = (home.canonicalize(), tmp.canonicalize()) else {
        return false;
    };
    home.starts_with(&tmp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_walk_names_each_step_toward_the_home() {
        let steps = ancestors(Path::new("/home/u/.local/share/slipway"));
        let steps: Vec<(&str, &str)> = steps
            .iter()
            .map(|(a, t)| (a.to_str().unwrap(), t.to_str().unwrap()))
            .collect();
        assert_eq!(
            steps,
            [
                ("/", "home"),
                ("/home", "u"),
                ("/home/u", ".local"),
                ("/home/u/.local", "share"),
                ("/home/u/.local/share", "slipway")
            ]
        );
    }

    #[test]
    fn rights_follow_the_abi() {
        assert_eq!(handled(1), ABI1);
        assert_eq!(handled(3), ABI1 | REFER | TRUNCATE);
        assert_eq!(file_rights(handled(5)) & READ_DIR, 0);
    }
}
