//! Environment modes, and which of two is the stricter.

use std::fmt;
use std::str::FromStr;

/// The mode of a `slipway_environment`: what it is for, and so who may change it.
///
/// The order of the variants is their strictness: a rule that must hold for two modes
/// at once (moving an environment from one mode to another) holds for the stricter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum Mode {
    /// What an environment is when its configuration names no mode.
    #[default]
    Development,
    Preview,
    Staging,
    Production,
}

impl Mode {
    /// Every mode, least strict first.
    pub const ALL: [Mode; 4] = [
        Mode::Development,
        Mode::Preview,
        Mode::Staging,
        Mode::Production,
    ];

    /// Every mode's name, least strict first (for schema validators and messages).
    pub const NAMES: [&'static str; 4] = ["DEVELOPMENT", "PREVIEW", "STAGING", "PRODUCTION"];

    /// The name as Terraform configurations write it: `PRODUCTION`.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Development => "DEVELOPMENT",
            Mode::Preview => "PREVIEW",
            Mode::Staging => "STAGING",
            Mode::Production => "PRODUCTION",
        }
    }

    /// The stricter of two modes.
    pub fn stricter(self, other: Mode) -> Mode {
        self.max(other)
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A mode name that is not one of the four.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not an environment mode: use DEVELOPMENT, PREVIEW, STAGING or PRODUCTION")]
pub struct UnknownMode(pub String);

impl FromStr for Mode {
    type Err = UnknownMode;

    /// Exactly the upper-case names: a configuration that says `production` is told,
    /// rather than guessed at, because the mode decides who may change what.
    fn from_str(s: &str) -> Result<Mode, UnknownMode> {
        Mode::ALL
            .into_iter()
            .find(|m| m.as_str() == s)
            .ok_or_else(|| UnknownMode(s.to_owned()))
    }
}

/// Serialized by name (`"PRODUCTION"`), as everywhere else.
impl serde::Serialize for Mode {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for Mode {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Mode, D::Error> {
        let name = String::deserialize(deserializer)?;
        name.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_nothing_else_parses() {
        for mode in Mode::ALL {
            assert_eq!(mode.as_str().parse::<Mode>(), Ok(mode));
        }
        for bad in ["production", "Prod", "", " PRODUCTION"] {
            let err = bad.parse::<Mode>().unwrap_err();
            assert!(err
                .to_string()
                .contains("DEVELOPMENT, PREVIEW, STAGING or PRODUCTION"));
        }
    }

    #[test]
    fn production_is_the_strictest() {
        assert_eq!(Mode::Preview.stricter(Mode::Production), Mode::Production);
        assert_eq!(
            Mode::Production.stricter(Mode::Development),
            Mode::Production
        );
        assert_eq!(Mode::Staging.stricter(Mode::Preview), Mode::Staging);
    }
}
