//! Which names an environment variable may have, on every runtime.
//!
//! Variables and secrets become a process's environment (local runtime) or a
//! container's `env` and `envFrom` (Kubernetes). A name that is not a POSIX name
//! (`[A-Za-z_][A-Za-z0-9_]*`) either corrupts the environment (`A=B` arrives as
//! `A=B=1`), is silently dropped by shells and `envFrom`, or is refused by the API
//! server; and the names a runtime sets itself would be overwritten. One rule for all
//! runtimes keeps a configuration portable, and lets the check run at `terraform plan`
//! from the schema, before the runtime is known.

use std::collections::BTreeMap;

/// Why a name cannot be a variable's. The message says what to do instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VariableNameError {
    #[error("a variable name cannot be empty; use letters, digits and `_`, like \"LOG_LEVEL\".")]
    Empty,
    #[error("{0:?} is not a variable name: use only letters, digits and `_`, not starting with a digit (like \"LOG_LEVEL\").")]
    NotPosix(String),
    #[error("{name:?} is set by the runtime itself ({why}); choose another name.")]
    Reserved { name: String, why: &'static str },
}

/// The names the runtimes set in every replica, and why.
const RESERVED: [(&str, &str); 3] = [
    (
        "SLIPWAY_ENVIRONMENT",
        "every replica gets its environment's name in it",
    ),
    (
        "SLIPWAY_APPLICATION",
        "every replica gets its application's name in it",
    ),
    ("SLIPWAY_REPLICA", "every replica gets its own id in it"),
];

const PORT_WHY: &str = "the local runtime hands each replica its ports in PORT and PORT_<NAME>";

/// Checks that `name` may be the name of a variable or secret.
pub fn check_name(name: &str) -> Result<(), VariableNameError> {
    let mut bytes = name.bytes();
    let Some(first) = bytes.next() else {
        return Err(VariableNameError::Empty);
    };
    let posix = (first.is_ascii_alphabetic() || first == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if !posix {
        return Err(VariableNameError::NotPosix(name.to_owned()));
    }
    if name == "PORT" || name.starts_with("PORT_") {
        return Err(VariableNameError::Reserved {
            name: name.to_owned(),
            why: PORT_WHY,
        });
    }
    if let Some((_, why)) = RESERVED.iter().find(|(reserved, _)| *reserved == name) {
        return Err(VariableNameError::Reserved {
            name: name.to_owned(),
            why,
        });
    }
    Ok(())
}

/// The first bad name among `variables` and `secrets`, with the attribute it is in:
/// for runtimes, which check again what may not have come through a plan.
pub fn first_bad_name(
    variables: &BTreeMap<String, String>,
    secrets: &BTreeMap<String, String>,
) -> Option<(&'static str, VariableNameError)> {
    [("variables", variables), ("secrets", secrets)]
        .into_iter()
        .flat_map(|(attribute, map)| map.keys().map(move |name| (attribute, name)))
        .find_map(|(attribute, name)| check_name(name).err().map(|e| (attribute, e)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn posix_names_pass_and_others_say_why() {
        for good in ["A", "_", "LOG_LEVEL", "a1", "_X9", "PORTS", "SLIPWAY_OTHER"] {
            assert_eq!(check_name(good), Ok(()), "{good}");
        }
        assert_eq!(check_name(""), Err(VariableNameError::Empty));
        for bad in ["A=B", "BAD NAME", "1ABC", "A-B", "É", "A\0"] {
            assert_eq!(
                check_name(bad),
                Err(VariableNameError::NotPosix(bad.to_owned())),
                "{bad}"
            );
        }
        for reserved in [
            "PORT",
            "PORT_HTTP",
            "SLIPWAY_ENVIRONMENT",
            "SLIPWAY_APPLICATION",
            "SLIPWAY_REPLICA",
        ] {
            let err = check_name(reserved).unwrap_err();
            assert!(
                matches!(&err, VariableNameError::Reserved { name, .. } if name == reserved),
                "{err:?}"
            );
            assert!(err.to_string().contains("set by the runtime"), "{err}");
        }
    }
}
