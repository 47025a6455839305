//! The API server's own validation rules for the names and keys that Slipway's specs
//! become, so that `terraform plan` refuses what a cluster would refuse with a 422 at
//! apply, after other objects were already written.
//!
//! Only rules a real API server has: an application name of 63 characters is a valid
//! Service name, so it passes.

use crate::{PlanProblem, Planned, PlannedApplication};

/// A DNS-1035 label (`[a-z]([-a-z0-9]*[a-z0-9])?`, at most 63): what a Service name
/// must be. Stricter than the DNS-1123 label of other names: it starts with a letter.
pub fn is_dns1035_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_lowercase()
        && (b[b.len() - 1].is_ascii_lowercase() || b[b.len() - 1].is_ascii_digit())
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
}

/// A ConfigMap or Secret key: `[-._a-zA-Z0-9]+`, at most 253 characters, neither `.`
/// nor `..` nor starting with `..` (apimachinery's `IsConfigMapKey`).
pub fn is_config_map_key(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
        && s != "."
        && !s.starts_with("..")
}

/// A container's environment variable name as current API servers check it (relaxed
/// validation, on by default since Kubernetes 1.32): printable ASCII other than `=`.
pub fn is_env_var_name(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|c| (b' '..=b'~').contains(&c) && c != b'=')
}

/// What the API server would refuse of a planned application: its name (the Service's),
/// its secret names (keys of its Secret) and variable names (container variables).
pub fn check_application(planned: &PlannedApplication<'_>) -> Vec<PlanProblem> {
    let mut problems = Vec::new();
    if planned.image == Planned::Null {
        problems.push(PlanProblem {
            attribute: "image",
            key: None,
            summary: "The kubernetes runtime needs an image".to_owned(),
            detail: "image: the kubernetes runtime runs a container image; set `image`. `command` alone is used only by the local runtime.".to_owned(),
        });
    }
    if let Some(replicas) = planned.replicas.filter(|r| *r > i64::from(i32::MAX)) {
        problems.push(PlanProblem {
            attribute: "replicas",
            key: None,
            summary: "Too many replicas for Kubernetes".to_owned(),
            detail: format!("replicas: {replicas} does not fit a Deployment's `replicas` (a 32-bit number); use fewer."),
        });
    }
    if let Some(name) = planned.name.filter(|n| !is_dns1035_label(n)) {
        problems.push(PlanProblem {
            attribute: "name",
            key: None,
            summary: "Invalid application name for Kubernetes".to_owned(),
            detail: format!(
                "name: {name:?} cannot be a Kubernetes Service name, which is a DNS-1035 label: 1 to 63 lowercase letters, digits and '-', starting with a letter and ending with a letter or digit. Rename the application (for example {:?}).",
                format!("app-{}", name.trim_start_matches(|c: char| !c.is_ascii_alphanumeric()))
            ),
        });
    }
    for key in planned.secrets.iter().filter(|k| !is_config_map_key(k)) {
        problems.push(PlanProblem {
            attribute: "secrets",
            key: Some((*key).to_owned()),
            summary: "Invalid secret name for Kubernetes".to_owned(),
            detail: format!(
                "secrets: {key:?} cannot be a key of a Kubernetes Secret: use 1 to 253 letters, digits, '-', '_' and '.' (not \".\", and not starting with \"..\"), for example \"MY_VAR\"."
            ),
        });
    }
    for key in planned.variables.iter().filter(|k| !is_env_var_name(k)) {
        problems.push(PlanProblem {
            attribute: "variables",
            key: Some((*key).to_owned()),
            summary: "Invalid variable name for Kubernetes".to_owned(),
            detail: format!(
                "variables: {key:?} cannot be a container's environment variable name: use printable ASCII characters other than '=', for example \"MY_VAR\"."
            ),
        });
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_names_start_with_a_letter_and_may_be_63_long() {
        assert!(is_dns1035_label("web"));
        assert!(is_dns1035_label(&"a".repeat(63)));
        for bad in ["1web", "", "-web", "web-", "Web", "we_b", &"a".repeat(64)] {
            assert!(!is_dns1035_label(bad), "{bad}");
        }
    }

    #[test]
    fn config_map_keys_follow_the_api_servers_rule() {
        for ok in ["MY_VAR", "my-var", "a.b", ".env", "x"] {
            assert!(is_config_map_key(ok), "{ok}");
        }
        for bad in [
            "MY VAR",
            "",
            ".",
            "..",
            "..a",
            "a/b",
            "a=b",
            &"a".repeat(254),
        ] {
            assert!(!is_config_map_key(bad), "{bad}");
        }
    }

    #[test]
    fn problems_name_the_attribute_and_key() {
        let planned = PlannedApplication {
            name: Some("1web"),
            image: Planned::Known("nginx"),
            variables: vec!["OK", "A=B"],
            secrets: vec!["MY VAR", "GOOD"],
            ..Default::default()
        };
        let problems = check_application(&planned);
        let at: Vec<(&str, Option<&str>)> = problems
            .iter()
            .map(|p| (p.attribute, p.key.as_deref()))
            .collect();
        assert_eq!(
            at,
            vec![
                ("name", None),
                ("secrets", Some("MY VAR")),
                ("variables", Some("A=B"))
            ]
        );
        assert!(
            problems[0].detail.contains("DNS-1035"),
            "{}",
            problems[0].detail
        );
        let fine = PlannedApplication {
            name: Some(&"a".repeat(63)),
            image: Planned::Unknown,
            variables: vec!["LOG"],
            secrets: vec!["DB_PASSWORD"],
            ..Default::default()
        };
        assert!(check_application(&fine).is_empty());
        let no_image = PlannedApplication {
            command: Planned::Known("sh"),
            ..Default::default()
        };
        assert_eq!(check_application(&no_image)[0].attribute, "image");
    }
}
