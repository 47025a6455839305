//! The runtime's rule for variable and secret names (`runtime::variables`), as a schema
//! validator: the rule is the runtime's, the validator is the plugin protocol's.

use crate::runtime::variables::check_name;

/// A schema validator for a map of variables or secrets: each bad name is an error at
/// its own key, raised by `terraform validate` and `terraform plan`.
pub(crate) fn names_validator() -> impl tfplug::validator::Validator {
    tfplug::validator::map_keys("Invalid variable name", |name| {
        check_name(name).map_err(|e| e.to_string())
    })
}
