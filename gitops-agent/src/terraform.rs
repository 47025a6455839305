//! Terraform as a job runs it: started detached from the agent ([`crate::detached`]),
//! never through a shell, without the agent's secrets in its environment, logged with
//! secrets redacted, stopped at the job's deadline or the agent's shutdown; and what
//! the agent reads from its output (the first error, the plan's summary, the version).
//!
//! It knows nothing of jobs or queues: the runner and the pull request jobs build one
//! [`Terraform`] per run and say which commands to run.

use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::audit::PlanSummary;
use crate::config::{redact, Secret};
use crate::job_error::{JobError, RunOutcome};

/// Terraform, as one job runs it: in one directory, with one environment, until one
/// deadline, stopped by the agent's shutdown.
pub(crate) struct Terraform<'a> {
    /// The `terraform` binary.
    pub(crate) binary: &'a Path,
    /// The root's directory, where Terraform runs.
    pub(crate) dir: &'a Path,
    /// The job's work tree: Terraform's output files and pid file.
    pub(crate) work: &'a Path,
    pub(crate) env: &'a [(String, String)],
    /// Variables of the agent's own environment Terraform must not inherit (they hold
    /// the agent's secrets).
    pub(crate) remove_env: &'a [String],
    /// Values removed from everything logged.
    pub(crate) secrets: &'a [Secret],
    pub(crate) deadline: Instant,
    /// The job's whole time, for the message when it runs out.
    pub(crate) timeout: Duration,
    /// Set when the shutdown's grace period is over: Terraform gets SIGINT.
    pub(crate) abort: &'a watch::Sender<bool>,
    /// Commands run so far, to name their output files.
    pub(crate) commands: AtomicU32,
}

impl Terraform<'_> {
    /// Runs Terraform detached from the agent ([`crate::detached`]): its own session,
    /// output to files in the work tree, read when it exits.
    pub(crate) async fn output(&self, args: &[&str]) -> Result<std::process::Output, JobError> {
        let mut cmd = tokio::process::Command::new(self.binary);
        cmd.args(args)
            .current_dir(self.dir)
            .env_remove("TF_WORKSPACE");
        for name in self.remove_env {
            cmd.env_remove(name);
        }
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        let mut abort = self.abort.subscribe();
        if *abort.borrow() {
            return Err(JobError::Interrupted);
        }
        let n = self.commands.fetch_add(1, Ordering::Relaxed) + 1;
        let mut started = crate::detached::spawn(cmd, self.work, n)
            .map_err(|e| format!("cannot start terraform `{}`: {e}", self.binary.display()))?;
        let waited = {
            let finished = tokio::time::timeout_at(self.deadline, started.child.wait());
            tokio::pin!(finished);
            tokio::select! {
                result = &mut finished => match result {
                    Ok(status) => Ok(status),
                    Err(_) => Err(false),
                },
                _ = async { abort.wait_for(|stop| *stop).await.map(|_| ()) } => Err(true),
            }
        };
        let status = match waited {
            Ok(status) => status.map_err(|e| format!("terraform {}: {e}", args.join(" ")))?,
            Err(interrupted) => {
                if interrupted {
                    // Terraform treats SIGINT as a request to stop safely: it finishes
                    // the resource operations in flight and writes its state.
                    started.signal(nix::sys::signal::Signal::SIGINT);
                    let grace = tokio::time::timeout(Duration::from_secs(20), started.child.wait());
                    if grace.await.is_ok() {
                        return Err(JobError::Interrupted);
                    }
                }
                // Past its time (or 20 s after SIGINT): Terraform and its providers go.
                started.signal_group(nix::sys::signal::Signal::SIGKILL);
                let _ = started.child.wait().await;
                return Err(if interrupted {
                    JobError::Interrupted
                } else {
                    format!(
                        "job timed out after {} s during `terraform {}`; terraform was stopped",
                        self.timeout.as_secs(),
                        args.join(" ")
                    )
                    .into()
                });
            }
        };
        Ok(started
            .finish(status)
            .await
            .map_err(|e| format!("terraform {}: read its output: {e}", args.join(" ")))?)
    }

    /// Runs and logs (redacted); fails with the tail of stderr on a non-zero exit.
    pub(crate) async fn run(
        &self,
        log: &mut tokio::fs::File,
        args: &[&str],
    ) -> Result<String, JobError> {
        let output = self.output(args).await?;
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        self.log(log, args, &stdout, &stderr, output.status).await;
        if !output.status.success() {
            return Err(failure(args[0], &stderr).into());
        }
        Ok(stdout)
    }

    /// Appends one command's output to the job's log, redacted.
    async fn log(
        &self,
        log: &mut tokio::fs::File,
        args: &[&str],
        stdout: &str,
        stderr: &str,
        status: std::process::ExitStatus,
    ) {
        let text = format!(
            "$ terraform {}\n{stdout}{stderr}[exit {}]\n",
            args.join(" "),
            status.code().map_or("signal".to_owned(), |c| c.to_string())
        );
        let refs: Vec<&Secret> = self.secrets.iter().collect();
        let _ = log.write_all(redact(&text, &refs).as_bytes()).await;
        let _ = log.flush().await;
    }

    /// Runs without logging stdout (plan JSON can hold sensitive values).
    pub(crate) async fn run_quiet(&self, args: &[&str]) -> Result<String, JobError> {
        let output = self.output(args).await?;
        if !output.status.success() {
            return Err(failure(&args.join(" "), &String::from_utf8_lossy(&output.stderr)).into());
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }
}

/// What a plan leaves in the job's log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PlanLog {
    /// Terraform's whole plan, every attribute's change: what a reviewer opens behind
    /// a pull request's plan comment. It costs one more Terraform process
    /// (`show -json`, for the summary).
    Full,
    /// The planned actions, from `plan -json`'s stream: for merge jobs and previews,
    /// whose plan was shown on the pull request already.
    Actions,
}

impl From<PlanJsonError> for JobError {
    fn from(e: PlanJsonError) -> JobError {
        JobError::Failed(e.to_string())
    }
}

impl Terraform<'_> {
    /// Runs `args` (owned strings) and logs, as [`Terraform::run`].
    pub(crate) async fn run_args(
        &self,
        log: &mut tokio::fs::File,
        args: &[String],
    ) -> Result<String, JobError> {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        self.run(log, &refs).await
    }

    /// `terraform plan -out=slipway.tfplan` in `workspace` (created when missing) with
    /// `extra` arguments; the plan's summary and the Terraform version into `out`.
    /// With [`PlanLog::Actions`] both come from `plan -json`'s own stream
    /// ([`crate::plan_stream`]), and only a plan that destroys something is read again
    /// with `show -json`, for the destroyed objects' prior values (which of them are in
    /// production); with [`PlanLog::Full`] the log keeps Terraform's whole plan and the
    /// summary comes from `show -json`.
    pub(crate) async fn plan(
        &self,
        log: &mut tokio::fs::File,
        workspace: Option<&str>,
        extra: &[String],
        detail: PlanLog,
        out: &mut RunOutcome,
    ) -> Result<(), JobError> {
        if let Some(ws) = workspace {
            self.run(
                &mut *log,
                &["workspace", "select", "-or-create=true", "-no-color", ws],
            )
            .await?;
        }
        let mut args: Vec<&str> = vec!["plan", "-input=false", "-no-color"];
        if detail == PlanLog::Actions {
            args.push("-json");
        }
        args.push("-out=slipway.tfplan");
        args.extend(extra.iter().map(String::as_str));
        if detail == PlanLog::Full {
            self.run(&mut *log, &args).await?;
            let shown = self.run_quiet(&["show", "-json", "slipway.tfplan"]).await?;
            out.terraform_version = version_of(&shown);
            out.plan = Some(summarize_plan(&shown)?);
            return Ok(());
        }
        let output = self.output(&args).await?;
        let stream = crate::plan_stream::read(&String::from_utf8_lossy(&output.stdout));
        let stderr = String::from_utf8_lossy(&output.stderr);
        self.log(&mut *log, &args, &stream.log, &stderr, output.status)
            .await;
        if !output.status.success() {
            return Err(failure("plan", &format!("{}{stderr}", stream.log)).into());
        }
        out.terraform_version = stream.terraform_version.clone();
        out.plan = Some(if stream.needs_prior_values() {
            let shown = self.run_quiet(&["show", "-json", "slipway.tfplan"]).await?;
            summarize_plan(&shown)?
        } else {
            stream.summary
        });
        Ok(())
    }

    /// `terraform apply` of exactly the plan [`Terraform::plan`] saved.
    pub(crate) async fn apply_saved_plan(&self, log: &mut tokio::fs::File) -> Result<(), JobError> {
        self.run(
            log,
            &[
                "apply",
                "-input=false",
                "-no-color",
                "-lock-timeout=300s",
                "slipway.tfplan",
            ],
        )
        .await
        .map(drop)
    }

    /// Fills in the Terraform version when the run ended before a plan gave it (one
    /// process less on every run that gets that far).
    pub(crate) async fn fill_in_version(&self, out: &mut RunOutcome) {
        if out.terraform_version.is_none() {
            if let Ok(text) = self.run_quiet(&["version", "-json"]).await {
                out.terraform_version = version_of(&text);
            }
        }
    }
}

/// The environment every job's Terraform gets: no checkpoint calls, no prompts, and
/// the path of the job's credential file (never the credential itself).
pub(crate) fn automation_env(credential_file: &Path) -> Vec<(String, String)> {
    vec![
        ("CHECKPOINT_DISABLE".to_owned(), "1".to_owned()),
        ("TF_IN_AUTOMATION".to_owned(), "1".to_owned()),
        ("TF_INPUT".to_owned(), "0".to_owned()),
        (
            crate::job_credential::ENV_FILE.to_owned(),
            credential_file.display().to_string(),
        ),
    ]
}

/// Writes `variables` as the root's `-var-file` in `dir`; `None` when there are none.
pub(crate) async fn write_var_file(
    dir: &Path,
    variables: &std::collections::BTreeMap<String, serde_json::Value>,
) -> Result<Option<String>, JobError> {
    if variables.is_empty() {
        return Ok(None);
    }
    let text = serde_json::to_vec_pretty(variables)
        .map_err(|e| JobError::Failed(format!("encode variables: {e}")))?;
    let file = dir.join("slipway-agent.tfvars.json");
    tokio::fs::write(&file, text)
        .await
        .map_err(|e| JobError::Failed(format!("write variables: {e}")))?;
    Ok(Some(format!("-var-file={}", file.display())))
}

/// Terraform's summary of its first error (`Error: Unsupported argument`), wherever it
/// is in `stderr`: after warnings, inside the `╷ │ ╵` box Terraform draws around each
/// diagnostic.
pub fn error_summary(stderr: &str) -> Option<&str> {
    stderr.lines().find_map(|line| {
        let text = line
            .trim_start_matches(['│', '╷', '╵', ' ', '\t'])
            .trim_end();
        text.starts_with("Error: ").then_some(text)
    })
}

/// A failed command's error: its first line says what failed with Terraform's error
/// summary (what a commit status shows), then the end of stderr.
fn failure(command: &str, stderr: &str) -> String {
    let lines: Vec<&str> = stderr.lines().collect();
    let tail = lines[lines.len().saturating_sub(15)..].join("\n");
    let summary = error_summary(stderr).or_else(|| {
        lines
            .iter()
            .map(|l| l.trim_start_matches(['│', '╷', '╵', ' ', '\t']).trim())
            .find(|l| !l.is_empty())
    });
    match summary {
        Some(summary) => format!("terraform {command} failed: {summary}\n{}", tail.trim()),
        None => format!("terraform {command} failed with no message"),
    }
}

/// `terraform show -json` printed something that is not JSON.
#[derive(Debug, thiserror::Error)]
#[error("terraform show -json output: {0}")]
pub struct PlanJsonError(#[from] serde_json::Error);

/// Counts and addresses from `terraform show -json` of a saved plan.
pub fn summarize_plan(json: &str) -> Result<PlanSummary, PlanJsonError> {
    let plan: serde_json::Value = serde_json::from_str(json)?;
    let mut s = PlanSummary::default();
    let production = production_environment_ids(&plan);
    for change in plan["resource_changes"].as_array().into_iter().flatten() {
        let address = change["address"].as_str().unwrap_or("?").to_owned();
        let actions: Vec<&str> = change["change"]["actions"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|a| a.as_str())
            .collect();
        if actions.contains(&"create") {
            s.add += 1;
            s.to_add.push(address.clone());
        }
        if actions.contains(&"update") {
            s.change += 1;
            s.to_change.push(address.clone());
        }
        if actions.contains(&"delete") {
            s.destroy += 1;
            let before = &change["change"]["before"];
            let in_production = before["mode"] == "PRODUCTION"
                || before["environment_id"]
                    .as_str()
                    .is_some_and(|id| production.iter().any(|p| p == id));
            if in_production {
                s.production_destroys.push(address.clone());
            }
            s.to_destroy.push(address);
        }
    }
    s.production_destroys.sort();
    s.to_add.sort();
    s.to_change.sort();
    s.to_destroy.sort();
    Ok(s)
}

/// The ids of the PRODUCTION environments in a plan's prior state (`slipway_environment`
/// resources, at any module depth), to tell what a destroy takes out of production.
fn production_environment_ids(plan: &serde_json::Value) -> Vec<String> {
    fn walk(module: &serde_json::Value, out: &mut Vec<String>) {
        for r in module["resources"].as_array().into_iter().flatten() {
            if r["values"]["mode"] == "PRODUCTION" {
                if let Some(id) = r["values"]["id"].as_str() {
                    out.push(id.to_owned());
                }
            }
        }
        for child in module["child_modules"].as_array().into_iter().flatten() {
            walk(child, out);
        }
    }
    let mut out = Vec::new();
    walk(&plan["prior_state"]["values"]["root_module"], &mut out);
    out
}

/// `terraform_version` from `terraform version -json` or `show -json` output.
pub(crate) fn version_of(json: &str) -> Option<String> {
    serde_json::from_str::<serde_json::Value>(json)
        .ok()
        .and_then(|v| v["terraform_version"].as_str().map(str::to_owned))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_quotes_terraforms_error_summary_not_the_warning_box() {
        let stderr = "╷\n│ Warning: Value for undeclared variable\n│ \n│ The root module does not declare a variable named \"extra\".\n╵\n╷\n│ Error: Reference to undeclared input variable\n│ \n│   on main.tf line 8, in resource \"terraform_data\" \"release\":\n╵\n";
        assert_eq!(
            error_summary(stderr),
            Some("Error: Reference to undeclared input variable")
        );
        let text = failure("plan", stderr);
        assert_eq!(
            text.lines().next(),
            Some("terraform plan failed: Error: Reference to undeclared input variable")
        );
        assert!(text.contains("on main.tf line 8"), "{text}");
        // No diagnostic: the first line with words.
        assert_eq!(
            failure("init", "\n  boom\nmore\n").lines().next(),
            Some("terraform init failed: boom")
        );
        assert_eq!(error_summary("Error: x"), Some("Error: x"));
        assert_eq!(
            failure("apply", ""),
            "terraform apply failed with no message"
        );
    }

    #[test]
    fn plan_summary_counts_like_terraform() {
        let json = r#"{"resource_changes":[
            {"address":"terraform_data.a","change":{"actions":["create"]}},
            {"address":"terraform_data.b","change":{"actions":["update"]}},
            {"address":"terraform_data.c","change":{"actions":["delete","create"]}},
            {"address":"terraform_data.d","change":{"actions":["no-op"]}},
            {"address":"terraform_data.e","change":{"actions":["delete"]}}]}"#;
        let s = summarize_plan(json).unwrap();
        assert_eq!((s.add, s.change, s.destroy), (2, 1, 2));
        assert_eq!(s.to_add, ["terraform_data.a", "terraform_data.c"]);
        assert_eq!(s.to_destroy, ["terraform_data.c", "terraform_data.e"]);
        assert_eq!(summarize_plan("{}").unwrap(), PlanSummary::default());
        assert!(s.production_destroys.is_empty());
    }

    #[test]
    fn destroys_in_production_are_named() {
        let json = r#"{
          "prior_state": {"values": {"root_module": {"resources": [
            {"address": "slipway_environment.prod", "values": {"id": "env-1", "mode": "PRODUCTION"}},
            {"address": "slipway_environment.dev", "values": {"id": "env-2", "mode": "DEVELOPMENT"}}]}}},
          "resource_changes": [
            {"address": "slipway_environment.prod", "change": {"actions": ["delete"], "before": {"id": "env-1", "mode": "PRODUCTION"}}},
            {"address": "slipway_application.web", "change": {"actions": ["delete"], "before": {"environment_id": "env-1"}}},
            {"address": "slipway_application.dev", "change": {"actions": ["delete"], "before": {"environment_id": "env-2"}}}]}"#;
        let s = summarize_plan(json).unwrap();
        assert_eq!(s.destroy, 3);
        assert_eq!(
            s.production_destroys,
            ["slipway_application.web", "slipway_environment.prod"]
        );
    }
}
