//! A configuration value that is never printed.

use serde::Deserialize;

/// A configuration value that is never printed (a token): its `Debug` is
/// `<sensitive>`, so it can sit in a `Debug` struct, a log line or a panic message.
#[derive(Default, Deserialize, Clone, PartialEq, Eq)]
#[serde(transparent)]
pub struct Sensitive(pub String);

impl std::fmt::Debug for Sensitive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<sensitive>")
    }
}
