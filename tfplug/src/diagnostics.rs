//! Diagnostics: the errors and warnings Terraform shows the user.
//!
//! A diagnostic that points at an attribute (an [`AttributePath`]) is shown by
//! Terraform under the exact line of configuration that caused it, which is what makes
//! an error easy to fix; so every validation error here should carry one.

use std::fmt;

/// How bad a diagnostic is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Error,
    Warning,
}

/// One step into a value: an attribute, a map key, or a list index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathStep {
    Attribute(String),
    Key(String),
    Index(i64),
}

/// Where in a configuration or state a diagnostic points.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AttributePath {
    pub steps: Vec<PathStep>,
}

impl AttributePath {
    /// The path to a top-level attribute.
    pub fn root(attribute: impl Into<String>) -> AttributePath {
        AttributePath {
            steps: vec![PathStep::Attribute(attribute.into())],
        }
    }

    /// This path, one attribute further down.
    pub fn attribute(&self, name: impl Into<String>) -> AttributePath {
        self.with(PathStep::Attribute(name.into()))
    }

    /// This path, into a map entry.
    pub fn key(&self, key: impl Into<String>) -> AttributePath {
        self.with(PathStep::Key(key.into()))
    }

    /// This path, into a list element.
    pub fn index(&self, index: usize) -> AttributePath {
        self.with(PathStep::Index(index as i64))
    }

    fn with(&self, step: PathStep) -> AttributePath {
        let mut steps = self.steps.clone();
        steps.push(step);
        AttributePath { steps }
    }
}

impl fmt::Display for AttributePath {
    /// Renders the path the way it reads in HCL: `ports[0].port`, `variables["A"]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, step) in self.steps.iter().enumerate() {
            match step {
                PathStep::Attribute(name) if i == 0 => f.write_str(name)?,
                PathStep::Attribute(name) => write!(f, ".{name}")?,
                PathStep::Key(key) => write!(f, "[{key:?}]")?,
                PathStep::Index(index) => write!(f, "[{index}]")?,
            }
        }
        Ok(())
    }
}

/// An error or warning for Terraform to show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub severity: Severity,
    pub summary: String,
    pub detail: String,
    pub attribute: Option<AttributePath>,
}

impl Diagnostic {
    pub fn error(summary: impl Into<String>, detail: impl Into<String>) -> Diagnostic {
        Diagnostic {
            severity: Severity::Error,
            summary: summary.into(),
            detail: detail.into(),
            attribute: None,
        }
    }

    pub fn warning(summary: impl Into<String>, detail: impl Into<String>) -> Diagnostic {
        Diagnostic {
            severity: Severity::Warning,
            summary: summary.into(),
            detail: detail.into(),
            attribute: None,
        }
    }

    /// Points the diagnostic at an attribute.
    pub fn at(mut self, path: AttributePath) -> Diagnostic {
        self.attribute = Some(path);
        self
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(path) = &self.attribute {
            write!(f, "{path}: ")?;
        }
        write!(f, "{}", self.summary)?;
        if !self.detail.is_empty() {
            write!(f, ": {}", self.detail)?;
        }
        Ok(())
    }
}

/// A list of diagnostics; a call failed when any of them is an error.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    pub fn new() -> Diagnostics {
        Diagnostics(Vec::new())
    }

    pub fn push(&mut self, diagnostic: Diagnostic) {
        self.0.push(diagnostic);
    }

    pub fn extend(&mut self, other: Diagnostics) {
        self.0.extend(other.0);
    }

    pub fn has_errors(&self) -> bool {
        self.0.iter().any(|d| d.severity == Severity::Error)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Diagnostic> {
        self.0.iter()
    }
}

impl From<Diagnostic> for Diagnostics {
    fn from(d: Diagnostic) -> Self {
        Diagnostics(vec![d])
    }
}

impl From<Vec<Diagnostic>> for Diagnostics {
    fn from(v: Vec<Diagnostic>) -> Self {
        Diagnostics(v)
    }
}

impl IntoIterator for Diagnostics {
    type Item = Diagnostic;
    type IntoIter = std::vec::IntoIter<Diagnostic>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostics {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_read_like_hcl() {
        let path = AttributePath::root("ports").index(0).attribute("port");
        assert_eq!(path.to_string(), "ports[0].port");
        assert_eq!(
            AttributePath::root("variables").key("A").to_string(),
            "variables[\"A\"]"
        );
    }

    #[test]
    fn errors_are_detected() {
        let mut diags = Diagnostics::new();
        diags.push(Diagnostic::warning("w", ""));
        assert!(!diags.has_errors());
        diags.push(Diagnostic::error("e", "detail").at(AttributePath::root("name")));
        assert!(diags.has_errors());
        assert_eq!(diags.to_string(), "w; name: e: detail");
    }
}
