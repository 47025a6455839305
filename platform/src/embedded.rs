//! Where the embedded platform lives on this machine: the Slipway home directory that
//! the local runtime daemon serves, and its socket. The provider (which starts the
//! daemon) and slipway-agent (which ends its jobs there) find it the same way.

use std::path::{Path, PathBuf};

/// Names the home directory; wins over the defaults below.
pub const ENV_HOME: &str = "SLIPWAY_HOME";

/// No home directory could be found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot find a home directory for the local runtime: set SLIPWAY_HOME (or the provider's `home` setting) to a directory")]
pub struct NoHome;

/// `$SLIPWAY_HOME`, or `slipway` in the user's data directory (`$XDG_DATA_HOME`, else
/// `~/.local/share`; `~/Library/Application Support` on macOS), read through `env`.
pub fn default_home(env: &dyn Fn(&str) -> Option<String>) -> Result<PathBuf, NoHome> {
    let var = |name: &str| env(name).filter(|v| !v.is_empty());
    if let Some(home) = var(ENV_HOME) {
        return Ok(PathBuf::from(home));
    }
    if cfg!(target_os = "macos") {
        if let Some(home) = var("HOME") {
            return Ok(PathBuf::from(home).join("Library/Application Support/slipway"));
        }
    } else {
        if let Some(data) = var("XDG_DATA_HOME") {
            return Ok(PathBuf::from(data).join("slipway"));
        }
        if let Some(home) = var("HOME") {
            return Ok(PathBuf::from(home).join(".local/share/slipway"));
        }
    }
    Err(NoHome)
}

/// The daemon's gRPC socket in a home directory.
pub fn socket(home: &Path) -> PathBuf {
    home.join("runtime.sock")
}
