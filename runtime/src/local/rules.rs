//! The local runtime's own rules for an application: it runs a program of this machine,
//! in a directory of this machine, at most [`MAX_REPLICAS`] times.
//!
//! One set of rules for both places that check them: [`check_application`] at
//! `terraform plan` (through [`Runtime::check_application`](crate::Runtime)),
//! where values may still be unknown, and [`validate`] in the daemon, where a spec comes
//! from any client, planned or not.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::variables::first_bad_name;
use crate::{
    ApplicationSpec, HealthProbe, PlanProblem, Planned, PlannedApplication, Protocol, RuntimeError,
};

/// The most replicas of one application the local runtime runs: each is a process
/// group with its own port on this machine.
pub const MAX_REPLICAS: u32 = 256;

/// How much of the rules to check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checks {
    /// The spec, and what the replicas' machine has: the command, the working
    /// directory. For a plan on that machine.
    SpecAndMachine,
    /// The spec only: for a provider that reaches a team's platform on another machine,
    /// and for the daemon itself, whose start of a replica reports a missing program
    /// with the system's own error.
    SpecOnly,
}

/// What the local runtime would refuse of a planned application.
pub fn check_application(planned: &PlannedApplication<'_>, checks: Checks) -> Vec<PlanProblem> {
    let mut problems = Vec::new();
    let mut problem = |attribute: &'static str, summary: &str, detail: String| {
        problems.push(PlanProblem {
            attribute,
            key: None,
            summary: summary.to_owned(),
            detail,
        })
    };
    match planned.command {
        Planned::Null => problem(
            "command",
            "The local runtime needs a command",
            if planned.image == Planned::Null {
                "command: the local runtime runs a program on this machine; set `command` (and `args`).".to_owned()
            } else {
                "command: the local runtime runs a program on this machine, not a container image; set `command` (and `args`). `image` is used only by the kubernetes runtime.".to_owned()
            },
        ),
        Planned::Known(command) if command.trim().is_empty() => problem(
            "command",
            "The local runtime needs a command",
            "command: the command is empty; set the program to run.".to_owned(),
        ),
        _ => {}
    }
    let mut dir_ok = true;
    if let Planned::Known(dir) = planned.working_dir {
        if !Path::new(dir).is_absolute() {
            dir_ok = false;
            problem(
                "working_dir",
                "Working directory is not absolute",
                format!("working_dir: {dir:?} must be an absolute path: the runtime daemon does not run in Terraform's directory. Write it with path.module, like \"${{abspath(path.module)}}/{dir}\"."),
            );
        } else if checks == Checks::SpecAndMachine && !Path::new(dir).is_dir() {
            dir_ok = false;
            problem(
                "working_dir",
                "Working directory does not exist",
                format!(
                    "working_dir: {dir:?} is not a directory on this machine; create it or fix the path."
                ),
            );
        }
    }
    if let Planned::Known(command) = planned.command {
        if checks == Checks::SpecAndMachine
            && dir_ok
            && planned.working_dir != Planned::Unknown
            && !command.trim().is_empty()
        {
            if let Err(why) = find_command(command, planned.working_dir.known()) {
                problem("command", "Command not found", format!("command: {why}"));
            }
        }
    }
    if let Some(replicas) = planned.replicas.filter(|r| *r > i64::from(MAX_REPLICAS)) {
        problem(
            "replicas",
            "Too many replicas for the local runtime",
            format!("replicas: {replicas} is more than the local runtime runs of one application ({MAX_REPLICAS}); use at most {MAX_REPLICAS}, or the kubernetes runtime."),
        );
    }
    problems
}

/// Checks what the local runtime needs of a spec, in the daemon: the plan-time rules
/// of the spec (a client need not have planned), then what only a whole spec shows. Messages name
/// the application, the field and the fix.
pub fn validate(spec: &ApplicationSpec) -> Result<(), RuntimeError> {
    let invalid = |m: String| Err(RuntimeError::Invalid(m));
    if let Some(problem) = check_application(&PlannedApplication::of(spec), Checks::SpecOnly)
        .into_iter()
        .next()
    {
        return invalid(format!("application `{}`: {}", spec.name, problem.detail));
    }
    let mut names = BTreeSet::new();
    for port in &spec.ports {
        if port.name.is_empty() || !names.insert(port.name.as_str()) {
            return invalid(format!(
                "application `{}`: each entry of `ports` needs a unique, non-empty `name` (got {:?})",
                spec.name, port.name
            ));
        }
        if port.public && port.protocol == Protocol::Udp {
            return invalid(format!(
                "application `{}`: port `{}` is public UDP, which the local runtime cannot proxy; make it TCP or not public",
                spec.name, port.name
            ));
        }
    }
    if let Some((kind, why)) = first_bad_name(&spec.variables, &spec.secrets) {
        return invalid(format!("application `{}`: `{kind}`: {why}", spec.name));
    }
    for (kind, map) in [("variables", &spec.variables), ("secrets", &spec.secrets)] {
        for (name, value) in map {
            if value.contains('\0') {
                return invalid(format!(
                    "application `{}`: `{kind}.{name}` contains a NUL byte, which cannot be passed in an environment",
                    spec.name
                ));
            }
        }
    }
    if let Some(check) = &spec.healthcheck {
        if let HealthProbe::Exec { command } = &check.probe {
            if command.is_empty() {
                return invalid(format!(
                    "application `{}`: the exec health check needs a `command`",
                    spec.name
                ));
            }
        }
    }
    Ok(())
}

/// Where the local runtime will find `command`: a path (absolute, or relative to the
/// working directory) to an executable file, or a name on `PATH`.
pub fn find_command(command: &str, working_dir: Option<&str>) -> Result<PathBuf, String> {
    if command.is_empty() {
        return Err("the command is empty; set the program to run.".to_owned());
    }
    if command.contains('/') {
        let path = match working_dir {
            Some(dir) if !Path::new(command).is_absolute() => Path::new(dir).join(command),
            _ => PathBuf::from(command),
        };
        return if is_executable(&path) {
            Ok(path)
        } else if path.exists() {
            Err(format!(
                "{} exists but is not an executable file; check its permissions (chmod +x).",
                path.display()
            ))
        } else {
            Err(format!(
                "{} does not exist; build the program or fix the path.",
                path.display()
            ))
        };
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join(command))
        .find(|candidate| is_executable(candidate))
        .ok_or_else(|| {
            format!(
                "{command:?} is not an executable on PATH; give its absolute path, or install it."
            )
        })
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_file() => meta.permissions().mode() & 0o111 != 0,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attributes(planned: &PlannedApplication<'_>) -> Vec<&'static str> {
        check_application(planned, Checks::SpecAndMachine)
            .into_iter()
            .map(|p| p.attribute)
            .collect()
    }

    #[test]
    fn a_program_on_this_machine_passes() {
        let planned = PlannedApplication {
            command: Planned::Known("sh"),
            replicas: Some(i64::from(MAX_REPLICAS)),
            ..Default::default()
        };
        assert!(check_application(&planned, Checks::SpecAndMachine).is_empty());
    }

    #[test]
    fn each_rule_names_its_attribute() {
        let image_only = PlannedApplication {
            image: Planned::Known("nginx"),
            ..Default::default()
        };
        let problems = check_application(&image_only, Checks::SpecAndMachine);
        assert_eq!(problems.len(), 1);
        assert!(problems[0].detail.contains("not a container image"));
        let relative = PlannedApplication {
            command: Planned::Known("./run"),
            working_dir: Planned::Known("app"),
            ..Default::default()
        };
        assert_eq!(attributes(&relative), ["working_dir"]);
        let missing = PlannedApplication {
            command: Planned::Known("definitely-not-a-slipway-program"),
            replicas: Some(257),
            ..Default::default()
        };
        assert_eq!(attributes(&missing), ["command", "replicas"]);
        let elsewhere = check_application(&missing, Checks::SpecOnly);
        assert_eq!(elsewhere.len(), 1, "{elsewhere:?}");
        assert_eq!(elsewhere[0].attribute, "replicas");
    }

    #[test]
    fn unknown_values_are_not_judged_yet() {
        let planned = PlannedApplication {
            command: Planned::Known("./relative-to-an-unknown-dir"),
            working_dir: Planned::Unknown,
            ..Default::default()
        };
        assert!(check_application(&planned, Checks::SpecAndMachine).is_empty());
        let unknown_command = PlannedApplication {
            command: Planned::Unknown,
            ..Default::default()
        };
        assert!(check_application(&unknown_command, Checks::SpecAndMachine).is_empty());
    }

    #[test]
    fn the_daemon_applies_the_same_rules() {
        let spec = ApplicationSpec {
            id: "app-1".into(),
            environment_id: "env-1".into(),
            name: "web".into(),
            image: None,
            command: Some("sh".into()),
            args: Vec::new(),
            working_dir: None,
            replicas: MAX_REPLICAS + 1,
            ports: Vec::new(),
            variables: Default::default(),
            secrets: Default::default(),
            healthcheck: None,
            resources: Default::default(),
        };
        let err = validate(&spec).unwrap_err().to_string();
        assert!(err.starts_with("application `web`: replicas: 257"), "{err}");
    }
}
