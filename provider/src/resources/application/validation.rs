//! What the configuration alone shows is wrong, at `terraform validate`: nothing to run,
//! a health check whose attributes do not fit its type, duplicate ports, and the
//! validators of single attributes.

use std::collections::BTreeMap;

use tfplug::schema::Attribute;
use tfplug::{validator, Diagnostic, Diagnostics, Value};

use super::root;

/// Checks across attributes of one configuration.
pub(super) fn validate(config: &Value) -> Diagnostics {
    let mut diags = Diagnostics::new();
    if config.get("image").is_null() && config.get("command").is_null() {
        diags.push(
            Diagnostic::error(
                "Nothing to run",
                "command: set `command` (the program the local runtime runs) or `image` (the container image the kubernetes runtime runs).",
            )
            .at(root("command")),
        );
    }
    for attribute in ["args", "working_dir"] {
        if !config.get(attribute).is_null() && config.get("command").is_null() {
            diags.push(
                Diagnostic::error(
                    "Missing command",
                    format!("{attribute}: `{attribute}` applies to `command`; set `command` too, or remove `{attribute}`."),
                )
                .at(root(attribute)),
            );
        }
    }
    let healthcheck = config.get("healthcheck");
    if healthcheck.as_object().is_some() {
        let set = |name: &str| !healthcheck.get(name).is_null();
        let command = healthcheck.get("command");
        let command_len = match command {
            Value::Null => None,
            // An unknown command might be non-empty; do not complain yet.
            Value::Unknown => Some(1),
            other => Some(other.as_elements().map_or(1, <[Value]>::len)),
        };
        if let Some(problem) = probe_problem(
            healthcheck.get("type").as_str(),
            set("path"),
            set("port"),
            command_len,
        ) {
            diags.push(Diagnostic::error("Invalid health check", problem).at(root("healthcheck")));
        }
    }
    if let Some(ports) = config.get("ports").as_elements() {
        let mut names = BTreeMap::new();
        let mut numbers = BTreeMap::new();
        for (i, port) in ports.iter().enumerate() {
            if let Some(name) = port.get("name").as_str() {
                if let Some(first) = names.insert(name.to_owned(), i) {
                    diags.push(
                        Diagnostic::error(
                            "Duplicate port name",
                            format!("ports[{i}].name: {name:?} is also the name of ports[{first}]; port names must be unique."),
                        )
                        .at(root("ports").index(i)),
                    );
                }
            }
            let protocol = port.get("protocol").as_str().unwrap_or("tcp").to_owned();
            if let Some(number) = port.get("port").as_i64() {
                if let Some(first) = numbers.insert((number, protocol), i) {
                    diags.push(
                        Diagnostic::error(
                            "Duplicate port",
                            format!("ports[{i}].port: {number} is also used by ports[{first}]; each port may appear once."),
                        )
                        .at(root("ports").index(i)),
                    );
                }
            }
        }
    }
    diags
}

/// What is wrong with a health check's kind and the attributes set for it, if
/// anything. `kind` is `None` while unknown; `command` is the command's length.
pub(super) fn probe_problem(
    kind: Option<&str>,
    path: bool,
    port: bool,
    command: Option<usize>,
) -> Option<String> {
    let problem = match kind? {
        "http" | "tcp" if !port => "healthcheck.port: an http or tcp check needs `port`.",
        "http" | "tcp" if command.is_some() => {
            "healthcheck.command: only an exec check runs a command; remove `command` or use type = \"exec\"."
        }
        "tcp" if path => "healthcheck.path: only an http check has a path; remove `path` or use type = \"http\".",
        "exec" if command.unwrap_or(0) == 0 => {
            "healthcheck.command: an exec check needs a non-empty `command`, like [\"/bin/check\", \"--quick\"]."
        }
        "exec" if port || path => {
            "healthcheck: an exec check takes no `port` or `path`; remove them or use type = \"http\" or \"tcp\"."
        }
        "http" | "tcp" | "exec" => return None,
        _ => "healthcheck.type: use one of http, tcp or exec.",
    };
    Some(problem.to_owned())
}

pub(super) fn cpu_validator() -> impl validator::Validator {
    validator::from_fn("Invalid CPU quantity", |value| {
        let s = value.as_str().unwrap_or_default();
        let number = s.strip_suffix('m').unwrap_or(s);
        let ok = !number.is_empty()
            && number.chars().all(|c| c.is_ascii_digit() || c == '.')
            && number.parse::<f64>().is_ok_and(|n| n > 0.0);
        if ok {
            Ok(())
        } else {
            Err(format!("{s:?} is not a CPU quantity; use cores like \"0.5\" or \"2\", or millicores like \"500m\"."))
        }
    })
}

pub(super) fn memory_validator() -> impl validator::Validator {
    validator::from_fn("Invalid memory quantity", |value| {
        let s = value.as_str().unwrap_or_default();
        let digits = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let unit = &s[digits..];
        let ok = digits > 0
            && ["", "K", "M", "G", "T", "Ki", "Mi", "Gi", "Ti"].contains(&unit)
            && s[..digits].parse::<u64>().is_ok_and(|n| n > 0);
        if ok {
            Ok(())
        } else {
            Err(format!(
                "{s:?} is not a memory quantity; use bytes with a unit, like \"256Mi\" or \"1Gi\"."
            ))
        }
    })
}

pub(super) fn port_attribute(name: &str) -> Attribute {
    Attribute::number(name)
        .required()
        .validator(validator::int_between(1, 65535))
}
