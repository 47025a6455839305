//! `[approvals]`: which roots' merge jobs wait for an approver, and which GitHub
//! logins act as which platform identities. The decisions that use these settings
//! are in [`crate::approvals`].

use std::collections::BTreeMap;

use serde::Deserialize;
use slipway_platform::Mode;

use super::{invalid, ConfigError};

/// `[approvals]` as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawApprovals {
    modes: Option<Vec<String>>,
    #[serde(default)]
    github_logins: BTreeMap<String, String>,
}

/// Which roots wait for approval besides those with `require_approval`, and who the
/// GitHub reviewers are on the platform.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApprovalSettings {
    /// A root whose `modes` include one of these requires approval.
    pub modes: Vec<Mode>,
    /// GitHub login (lower case: GitHub compares logins without case) → the
    /// platform identity it acts as.
    pub github_logins: BTreeMap<String, String>,
}

impl ApprovalSettings {
    pub(crate) fn parse(raw: &RawApprovals) -> Result<ApprovalSettings, ConfigError> {
        let modes = raw
            .modes
            .iter()
            .flatten()
            .enumerate()
            .map(|(i, m)| {
                m.parse::<Mode>()
                    .map_err(|e| invalid(format!("approvals.modes[{i}]"), e.to_string()))
            })
            .collect::<Result<_, _>>()?;
        let mut github_logins = BTreeMap::new();
        for (login, identity) in &raw.github_logins {
            let key = format!("approvals.github_logins.{login}");
            if login.is_empty()
                || !login
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                return Err(invalid(key, "is not a GitHub login (letters, digits, `-`)"));
            }
            slipway_platform::identity::check_name(identity)
                .map_err(|e| invalid(key.clone(), e.to_string()))?;
            if github_logins
                .insert(login.to_ascii_lowercase(), identity.clone())
                .is_some()
            {
                return Err(invalid(key, "is given twice (logins ignore case)"));
            }
        }
        Ok(ApprovalSettings {
            modes,
            github_logins,
        })
    }

    /// Whether a root that may change `modes` requires approval by mode.
    pub fn holds(&self, modes: &[Mode]) -> bool {
        modes.iter().any(|m| self.modes.contains(m))
    }

    /// The identity a GitHub login acts as.
    pub fn identity_of_login(&self, login: &str) -> Option<&str> {
        self.github_logins
            .get(&login.to_ascii_lowercase())
            .map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logins_are_kept_in_lower_case_and_modes_parsed() {
        let s = ApprovalSettings::parse(&RawApprovals {
            modes: Some(vec!["STAGING".into()]),
            github_logins: BTreeMap::from([("Bob-GH".into(), "bob".into())]),
        })
        .unwrap();
        assert_eq!(s.modes, vec![Mode::Staging]);
        assert_eq!(s.identity_of_login("bob-gh"), Some("bob"));
    }

    #[test]
    fn bad_settings_are_named() {
        let bad = |modes: Vec<&str>, logins: Vec<(&str, &str)>| {
            ApprovalSettings::parse(&RawApprovals {
                modes: Some(modes.into_iter().map(String::from).collect()),
                github_logins: logins
                    .into_iter()
                    .map(|(a, b)| (a.to_owned(), b.to_owned()))
                    .collect(),
            })
            .unwrap_err()
            .to_string()
        };
        assert!(bad(vec!["staging"], vec![]).contains("approvals.modes[0]"));
        assert!(bad(vec![], vec![("a b", "bob")]).contains("approvals.github_logins.a b"));
        assert!(bad(vec![], vec![("bob", "bob smith")]).contains("approvals.github_logins.bob"));
        assert!(bad(vec![], vec![("Bob", "b"), ("bob", "c")]).contains("twice"));
    }
}
