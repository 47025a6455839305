//! The daemon's desired state, persisted so that a restarted daemon brings every
//! application back as it was, at the same stable ports.
//!
//! The state is one small JSON file, replaced atomically (write a temporary file, fsync,
//! rename over, fsync the directory): a crash leaves either the old or the new state,
//! never half of one. It holds secrets, so it is created readable by the user only.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::{ApplicationSpec, ChangeRecord, Environment};

/// An application as the daemon must keep running it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredApplication {
    pub spec: ApplicationSpec,
    pub change: ChangeRecord,
    /// Bumped by every apply; replica ids are `<generation>-<index>`.
    pub generation: u64,
    /// The stable proxy port of each public port, by port name. Allocated once and kept
    /// for the application's life, so endpoints survive updates and daemon restarts.
    #[serde(default)]
    pub stable_ports: BTreeMap<String, u16>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct State {
    #[serde(default)]
    pub environments: BTreeMap<String, Environment>,
    #[serde(default)]
    pub applications: BTreeMap<String, StoredApplication>,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot read the local runtime's state {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the local runtime's state {path} is not valid ({source}); move it away to start empty, or restore it from a backup")]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("cannot save the local runtime's state to {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The state and the file it lives in.
#[derive(Debug)]
pub struct Store {
    path: PathBuf,
    pub state: State,
}

impl Store {
    /// Loads the state, or starts empty when the file does not exist yet.
    pub fn load(path: &Path) -> Result<Store, StoreError> {
        let state = match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|source| StoreError::Parse {
                path: path.to_path_buf(),
                source,
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => State::default(),
            Err(source) => {
                return Err(StoreError::Read {
                    path: path.to_path_buf(),
                    source,
                })
            }
        };
        Ok(Store {
            path: path.to_path_buf(),
            state,
        })
    }

    /// Writes the state atomically.
    pub fn save(&self) -> Result<(), StoreError> {
        let err = |source| StoreError::Write {
            path: self.path.clone(),
            source,
        };
        let bytes = serde_json::to_vec_pretty(&self.state)
            .map_err(|e| err(std::io::Error::other(e.to_string())))?;
        let tmp = self.path.with_extension("json.tmp");
        {
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)
                .map_err(err)?;
            file.write_all(&bytes).map_err(err)?;
            file.sync_all().map_err(err)?;
        }
        std::fs::rename(&tmp, &self.path).map_err(err)?;
        if let Some(dir) = self.path.parent() {
            // Makes the rename itself durable.
            std::fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(err)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{EnvironmentSpec, Mode};

    #[test]
    fn state_round_trips_through_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        let mut store = Store::load(&path).unwrap();
        assert!(store.state.environments.is_empty());
        store.state.environments.insert(
            "e1".into(),
            Environment {
                spec: EnvironmentSpec {
                    id: "e1".into(),
                    name: "dev".into(),
                    mode: Mode::Development,
                    variables: [("A".to_string(), "1".to_string())].into(),
                    secrets: BTreeMap::new(),
                },
                change: ChangeRecord::default(),
            },
        );
        store.save().unwrap();
        let again = Store::load(&path).unwrap();
        assert_eq!(again.state, store.state);
        assert!(!path.with_extension("json.tmp").exists());
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(
            mode & 0o077,
            0,
            "state holds secrets: no group/other access"
        );
    }

    #[test]
    fn a_corrupt_state_names_the_file_and_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        std::fs::write(&path, b"{not json").unwrap();
        let err = Store::load(&path).unwrap_err().to_string();
        assert!(
            err.contains("state.json") && err.contains("move it away"),
            "{err}"
        );
    }
}
