//! A root's `terraform init`, kept from one merge job to the next.
//!
//! Every job runs in a fresh work tree, so every job used to start with a fresh
//! `terraform init`: a Terraform process of its own (and, for real roots, provider
//! downloads). After a merge job succeeds, its `.terraform` directory is moved aside
//! for the root; the root's next merge job moves it into its own work tree and plans
//! without `init`. That is safe because Terraform refuses to plan with an
//! initialisation that does not fit the configuration (a changed backend, a provider
//! the lock file or the installed plugins do not have, a module that is not installed
//! or whose source changed): such a plan fails, and the job then removes the kept
//! directory, runs `init` and plans again ([`crate::runner`]). So a plan never depends
//! on the kept directory beyond what a fresh `init` would have made.
//!
//! Nothing is kept where a fresh `init` could make something else: remote modules
//! (`init` fetches the newest that matches), providers chosen without the commit's own
//! lock file (`init` picks the newest that matches), another Terraform binary (by path,
//! size and modification time). The selected workspace (`.terraform/environment`) is
//! never carried over: each job selects its own.
//!
//! One job at a time runs per root (its worker), so one job at a time uses the kept
//! directory. Pull request jobs (other workspaces, other commits) neither use nor keep it.

use std::path::{Path, PathBuf};

use crate::config::{Config, Root};

const TERRAFORM_DIR: &str = ".terraform";
const LOCK_FILE: &str = ".terraform.lock.hcl";
/// What the kept directory was made with: the Terraform binary's identity.
const STAMP: &str = "made-with";

/// The kept initialisation of one root.
pub struct KeptInit {
    dir: PathBuf,
    stamp: Option<String>,
}

impl KeptInit {
    /// The kept initialisation of `root` of `repository` (under the data directory's
    /// `init/`).
    pub fn for_root(config: &Config, repository: &str, root: &Root) -> KeptInit {
        KeptInit {
            dir: config
                .data_dir
                .join("init")
                .join(repository)
                .join(&root.name),
            stamp: binary_stamp(&config.terraform),
        }
    }

    /// Moves the kept initialisation into `root_dir` when it can stand for a fresh
    /// `init` there (see the module's documentation); whether it did. What is kept is
    /// used once: a job that fails keeps nothing.
    pub fn restore(&self, root_dir: &Path) -> bool {
        let kept = self.dir.join(TERRAFORM_DIR);
        let fits = self.stamp.is_some()
            && std::fs::read_to_string(self.dir.join(STAMP)).ok() == self.stamp
            && kept.is_dir()
            && !root_dir.join(TERRAFORM_DIR).exists()
            && (has_lock_file(root_dir) || !needs_lock_file(&kept))
            && only_local_modules(&kept);
        let restored = fits && std::fs::rename(&kept, root_dir.join(TERRAFORM_DIR)).is_ok();
        if restored {
            let _ = std::fs::remove_file(root_dir.join(TERRAFORM_DIR).join("environment"));
        }
        self.discard();
        restored
    }

    /// Keeps `root_dir`'s initialisation for the root's next merge job, after a job
    /// that succeeded. `commit_has_lock`: whether the commit brought its own lock file
    /// (without one, only an initialisation that installed no provider is kept).
    pub fn keep(&self, root_dir: &Path, commit_has_lock: bool) {
        self.discard();
        let Some(stamp) = &self.stamp else {
            return;
        };
        let from = root_dir.join(TERRAFORM_DIR);
        let fits = from.is_dir()
            && (commit_has_lock || !has_lock_file(root_dir))
            && only_local_modules(&from);
        if !fits || crate::work_dirs::private_dir(&self.dir).is_err() {
            return;
        }
        let _ = std::fs::remove_file(from.join("environment"));
        let kept = std::fs::rename(&from, self.dir.join(TERRAFORM_DIR)).is_ok()
            && std::fs::write(self.dir.join(STAMP), stamp).is_ok();
        if !kept {
            self.discard();
        }
    }

    /// Forgets what is kept.
    pub fn discard(&self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Removes the initialisation in `root_dir`, for a fresh `init`.
pub fn remove_from(root_dir: &Path) {
    let _ = std::fs::remove_dir_all(root_dir.join(TERRAFORM_DIR));
}

/// Whether `root_dir` holds a lock file (the commit's own, before any `init`).
pub fn has_lock_file(root_dir: &Path) -> bool {
    root_dir.join(LOCK_FILE).is_file()
}

/// Whether a `.terraform` directory holds installed providers, which a plan checks
/// against a lock file.
fn needs_lock_file(terraform_dir: &Path) -> bool {
    std::fs::read_dir(terraform_dir.join("providers"))
        .map(|mut entries| entries.next().is_some())
        .unwrap_or(false)
}

/// The binary's path, size and modification time: a new or replaced Terraform gets a
/// fresh `init`.
fn binary_stamp(terraform: &Path) -> Option<String> {
    let path = if terraform.components().count() > 1 {
        terraform.to_owned()
    } else {
        let search = std::env::var_os("PATH")?;
        std::env::split_paths(&search)
            .map(|dir| dir.join(terraform))
            .find(|candidate| candidate.is_file())?
    };
    let meta = std::fs::metadata(&path).ok()?;
    let modified = meta
        .modified()
        .ok()?
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?;
    Some(format!(
        "{}\n{}\n{}.{:09}\n",
        path.display(),
        meta.len(),
        modified.as_secs(),
        modified.subsec_nanos()
    ))
}

#[derive(serde::Deserialize)]
struct ModulesManifest {
    #[serde(rename = "Modules", default)]
    modules: Vec<ModuleEntry>,
}

#[derive(serde::Deserialize)]
struct ModuleEntry {
    #[serde(rename = "Source", default)]
    source: String,
}

/// Whether every module `init` recorded is a local directory of the commit (`./`,
/// `../`), which each plan reads in place; a remote one could resolve differently now.
fn only_local_modules(terraform_dir: &Path) -> bool {
    let manifest = terraform_dir.join("modules").join("modules.json");
    let Ok(text) = std::fs::read_to_string(&manifest) else {
        // No manifest: the configuration calls no module.
        return !manifest.exists();
    };
    serde_json::from_str::<ModulesManifest>(&text).is_ok_and(|m| {
        m.modules.iter().all(|module| {
            module.source.is_empty()
                || module.source.starts_with("./")
                || module.source.starts_with("../")
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_local_modules_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let tf = dir.path().join(".terraform");
        std::fs::create_dir_all(tf.join("modules")).unwrap();
        assert!(only_local_modules(&tf), "no manifest: no module");
        let manifest = tf.join("modules/modules.json");
        std::fs::write(
            &manifest,
            r#"{"Modules":[{"Key":"","Source":"","Dir":"."},{"Key":"app","Source":"./modules/app","Dir":"modules/app"},{"Key":"up","Source":"../shared","Dir":"../shared"}]}"#,
        )
        .unwrap();
        assert!(only_local_modules(&tf));
        std::fs::write(
            &manifest,
            r#"{"Modules":[{"Key":"","Source":"","Dir":"."},{"Key":"vpc","Source":"registry.terraform.io/terraform-aws-modules/vpc/aws","Version":"5.0.0","Dir":".terraform/modules/vpc"}]}"#,
        )
        .unwrap();
        assert!(!only_local_modules(&tf));
        std::fs::write(&manifest, "not json").unwrap();
        assert!(!only_local_modules(&tf));
    }

    #[test]
    fn installed_providers_need_the_commits_lock_file() {
        let dir = tempfile::tempdir().unwrap();
        let tf = dir.path().join(".terraform");
        std::fs::create_dir_all(&tf).unwrap();
        assert!(!needs_lock_file(&tf));
        std::fs::create_dir_all(tf.join("providers/registry.terraform.io")).unwrap();
        assert!(needs_lock_file(&tf));
    }
}
