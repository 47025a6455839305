//! Terraform as a process that outlives the agent.
//!
//! If Terraform's output ran through a pipe to the agent, a `kill -9` of the agent would
//! make Terraform die of SIGPIPE at its next line of output: after it created a
//! resource but before it saved the state, so the re-run would create it again. So
//! each Terraform runs in its own session and process group (no signal aimed at the
//! agent's group reaches it), writes its output to files in the job's private work
//! tree (read when it exits), and leaves its pid in `terraform.pid` there. A restarted
//! agent finds that pid ([`running_in`]) and waits for the process to end before the
//! interrupted job runs again; the re-run's plan then starts from the state that
//! Terraform saved (plans refresh, and `-lock-timeout` waits for a state lock).

use std::path::{Path, PathBuf};
use std::process::Stdio;

/// The name of the pid file in a work tree.
const PID_FILE: &str = "terraform.pid";

/// A started Terraform process.
pub struct Detached {
    pub child: tokio::process::Child,
    pub stdout: PathBuf,
    pub stderr: PathBuf,
    pid_file: PathBuf,
}

/// Output files for the `n`th command of a job, under its work tree.
fn output_paths(work: &Path, n: u32) -> (PathBuf, PathBuf) {
    let dir = work.join(".slipway");
    (
        dir.join(format!("{n}.stdout")),
        dir.join(format!("{n}.stderr")),
    )
}

/// Starts `cmd` (stdin closed) in a new session, output to files under `work`, and
/// records its pid in `work`.
pub fn spawn(mut cmd: tokio::process::Command, work: &Path, n: u32) -> std::io::Result<Detached> {
    let (stdout, stderr) = output_paths(work, n);
    if let Some(dir) = stdout.parent() {
        std::fs::create_dir_all(dir)?;
    }
    cmd.stdin(Stdio::null())
        .stdout(std::fs::File::create(&stdout)?)
        .stderr(std::fs::File::create(&stderr)?)
        .kill_on_drop(false);
    // SAFETY: `setsid` is async-signal-safe and touches no memory of the parent; it
    // is the only thing run between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            nix::unistd::setsid()
                .map(|_| ())
                .map_err(std::io::Error::from)
        });
    }
    let child = cmd.spawn()?;
    let pid_file = work.join(PID_FILE);
    if let Some(pid) = child.id() {
        std::fs::write(&pid_file, pid.to_string())?;
    }
    Ok(Detached {
        child,
        stdout,
        stderr,
        pid_file,
    })
}

impl Detached {
    /// Sends `signal` to the process's group (Terraform and its providers).
    pub fn signal_group(&self, signal: nix::sys::signal::Signal) {
        if let Some(pid) = self.child.id().and_then(|p| i32::try_from(p).ok()) {
            let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pid), signal);
        }
    }

    /// Sends `signal` to Terraform itself.
    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        if let Some(pid) = self.child.id().and_then(|p| i32::try_from(p).ok()) {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal);
        }
    }

    /// The exit status and what it wrote, once it has exited; the pid file goes.
    pub async fn finish(
        self,
        status: std::process::ExitStatus,
    ) -> std::io::Result<std::process::Output> {
        let _ = std::fs::remove_file(&self.pid_file);
        let stdout = tokio::fs::read(&self.stdout).await?;
        let stderr = tokio::fs::read(&self.stderr).await?;
        let _ = tokio::fs::remove_file(&self.stdout).await;
        let _ = tokio::fs::remove_file(&self.stderr).await;
        Ok(std::process::Output {
            status,
            stdout,
            stderr,
        })
    }
}

/// The pid of a Terraform that a previous agent process started in `work` and that is
/// still running: the pid file names a live process (not a zombie) whose working
/// directory is inside `work`, so a reused pid is not mistaken for it.
pub fn running_in(work: &Path) -> Option<u32> {
    let pid: u32 = std::fs::read_to_string(work.join(PID_FILE))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let proc_dir = PathBuf::from(format!("/proc/{pid}"));
    let stat = std::fs::read_to_string(proc_dir.join("stat")).ok()?;
    // `pid (comm) S ...`: the state follows the last `)`.
    let state = stat.rsplit(')').next()?.split_whitespace().next()?;
    if state == "Z" || state == "X" {
        return None;
    }
    let cwd = std::fs::read_link(proc_dir.join("cwd")).ok()?;
    let work = std::fs::canonicalize(work).ok()?;
    cwd.starts_with(&work).then_some(pid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_detached_process_is_found_while_it_runs_and_its_output_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let work = dir.path().join("job-1");
        std::fs::create_dir_all(&work).unwrap();
        let mut cmd = tokio::process::Command::new("sh");
        cmd.args(["-c", "echo out; echo err >&2; read -r _ < ./gate; exit 3"])
            .current_dir(&work);
        nix::unistd::mkfifo(&work.join("gate"), nix::sys::stat::Mode::S_IRWXU).unwrap();
        let mut started = spawn(cmd, &work, 1).unwrap();
        let pid = started.child.id().unwrap();
        // Its own session: not the test's.
        let sid = nix::unistd::getsid(Some(nix::unistd::Pid::from_raw(pid as i32))).unwrap();
        assert_eq!(sid.as_raw(), pid as i32);
        assert_eq!(running_in(&work), Some(pid));
        assert_eq!(running_in(dir.path().join("elsewhere").as_path()), None);
        std::fs::write(work.join("gate"), "go\n").unwrap();
        let status = started.child.wait().await.unwrap();
        let output = started.finish(status).await.unwrap();
        assert_eq!(output.status.code(), Some(3));
        assert_eq!(output.stdout, b"out\n");
        assert_eq!(output.stderr, b"err\n");
        assert_eq!(running_in(&work), None);
    }
}
