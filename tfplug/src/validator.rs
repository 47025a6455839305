//! Attribute validators: checks on a configured value that produce diagnostics pointing
//! at the attribute, so the user sees the error under the line that caused it.
//!
//! Validators only see known, non-null values: Terraform validates configuration before
//! every value is known, and an unset optional attribute is not an error. A validator
//! that needs only part of a value (a map's keys, which are always known) says so with
//! [`Validator::accepts_unknown_elements`], and then also sees maps and lists some of
//! whose elements are still unknown.

use crate::diagnostics::{AttributePath, Diagnostic, Diagnostics};
use crate::value::Value;

/// A check on one attribute's value.
pub trait Validator: Send + Sync {
    /// Adds an error to `diagnostics` when `value` (known and not null) is invalid.
    fn validate(&self, value: &Value, path: &AttributePath, diagnostics: &mut Diagnostics);

    /// True when the validator also wants a value some of whose elements are unknown
    /// (it must then skip those). False by default: most checks need the whole value.
    fn accepts_unknown_elements(&self) -> bool {
        false
    }
}

/// A validator made from a closure that returns the reason a value is invalid.
pub struct FnValidator<F> {
    summary: String,
    check: F,
}

impl<F> Validator for FnValidator<F>
where
    F: Fn(&Value) -> Result<(), String> + Send + Sync,
{
    fn validate(&self, value: &Value, path: &AttributePath, diagnostics: &mut Diagnostics) {
        if let Err(detail) = (self.check)(value) {
            diagnostics.push(Diagnostic::error(self.summary.clone(), detail).at(path.clone()));
        }
    }
}

/// A validator from a closure: `summary` is the diagnostic's headline, the closure's
/// error its detail (say what is wrong and how to fix it).
pub fn from_fn<F>(summary: impl Into<String>, check: F) -> FnValidator<F>
where
    F: Fn(&Value) -> Result<(), String> + Send + Sync,
{
    FnValidator {
        summary: summary.into(),
        check,
    }
}

/// A check on every key of a map, whose error points at that key
/// (`variables["BAD NAME"]`), so Terraform shows it under the very line. Keys are known
/// even while values are not, so this runs on maps with unknown values too.
pub struct MapKeys<F> {
    summary: String,
    check: F,
}

impl<F> Validator for MapKeys<F>
where
    F: Fn(&str) -> Result<(), String> + Send + Sync,
{
    fn validate(&self, value: &Value, path: &AttributePath, diagnostics: &mut Diagnostics) {
        let Value::Map(entries) = value else {
            return;
        };
        for key in entries.keys() {
            if let Err(detail) = (self.check)(key) {
                diagnostics.push(Diagnostic::error(self.summary.clone(), detail).at(path.key(key)));
            }
        }
    }

    fn accepts_unknown_elements(&self) -> bool {
        true
    }
}

/// A validator of a map's keys: `summary` is the headline, the closure's error the
/// detail, at the key's path.
pub fn map_keys<F>(summary: impl Into<String>, check: F) -> MapKeys<F>
where
    F: Fn(&str) -> Result<(), String> + Send + Sync,
{
    MapKeys {
        summary: summary.into(),
        check,
    }
}

/// The value must be one of the given strings.
pub fn one_of(allowed: &[&str]) -> impl Validator {
    let allowed: Vec<String> = allowed.iter().map(|s| (*s).to_owned()).collect();
    from_fn("Invalid value", move |value| match value.as_str() {
        Some(s) if allowed.iter().any(|a| a == s) => Ok(()),
        Some(s) => Err(format!(
            "{s:?} is not allowed here; use one of: {}.",
            allowed.join(", ")
        )),
        None => Err("expected a string".to_owned()),
    })
}

/// The value must be a whole number between `min` and `max`, inclusive.
pub fn int_between(min: i64, max: i64) -> impl Validator {
    from_fn("Value out of range", move |value| match value {
        Value::Number(n) => match n.as_i64() {
            Some(i) if (min..=max).contains(&i) => Ok(()),
            Some(i) => Err(format!(
                "{i} is out of range; use a whole number from {min} to {max}."
            )),
            None => Err(format!(
                "{n} is not a whole number; use a whole number from {min} to {max}."
            )),
        },
        _ => Err("expected a number".to_owned()),
    })
}

/// The string must have between `min` and `max` characters, inclusive.
pub fn string_length(min: usize, max: usize) -> impl Validator {
    from_fn("Invalid length", move |value| match value.as_str() {
        Some(s) => {
            let len = s.chars().count();
            if (min..=max).contains(&len) {
                Ok(())
            } else {
                Err(format!(
                    "the value has {len} characters; it must have between {min} and {max}."
                ))
            }
        }
        None => Err("expected a string".to_owned()),
    })
}

/// The string must be a DNS label (RFC 1123): lowercase letters, digits and `-`,
/// starting and ending with a letter or digit, at most 63 characters. Names that end up
/// in host names, Kubernetes namespaces and file names are safe when they are labels.
pub fn dns_label() -> impl Validator {
    from_fn("Invalid name", |value| match value.as_str() {
        Some(s) => check_dns_label(s),
        None => Err("expected a string".to_owned()),
    })
}

/// The check behind [`dns_label`], for use outside a schema.
pub fn check_dns_label(s: &str) -> Result<(), String> {
    let ok_chars = s
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    let ok_ends = s
        .bytes()
        .next()
        .zip(s.bytes().last())
        .is_some_and(|(first, last)| first.is_ascii_alphanumeric() && last.is_ascii_alphanumeric());
    if !s.is_empty() && s.len() <= 63 && ok_chars && ok_ends {
        Ok(())
    } else {
        Err(format!(
            "{s:?} is not a valid name: use 1 to 63 lowercase letters, digits and '-', starting and ending with a letter or digit (for example \"web-api\")."
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(v: &dyn Validator, value: Value) -> Diagnostics {
        let mut diags = Diagnostics::new();
        v.validate(&value, &AttributePath::root("x"), &mut diags);
        diags
    }

    #[test]
    fn one_of_names_allowed_values() {
        let v = one_of(&["A", "B"]);
        assert!(run(&v, "A".into()).is_empty());
        let diags = run(&v, "C".into());
        assert!(diags.has_errors());
        assert!(diags.to_string().contains("use one of: A, B"));
        assert_eq!(diags.0[0].attribute, Some(AttributePath::root("x")));
    }

    #[test]
    fn int_range() {
        let v = int_between(1, 65535);
        assert!(run(&v, 80.into()).is_empty());
        assert!(run(&v, 0.into()).has_errors());
        assert!(run(&v, 70000.into()).has_errors());
        assert!(run(&v, 1.5.into()).has_errors());
    }

    #[test]
    fn map_keys_point_at_the_key_even_when_values_are_unknown() {
        let v = map_keys("Invalid key", |k| {
            if k.contains(' ') {
                Err(format!("{k:?} has a space"))
            } else {
                Ok(())
            }
        });
        assert!(v.accepts_unknown_elements());
        let map = Value::Map(
            [
                ("GOOD".to_owned(), Value::Unknown),
                ("BAD KEY".to_owned(), Value::from("1")),
            ]
            .into(),
        );
        let diags = run(&v, map);
        assert_eq!(diags.0.len(), 1, "{diags}");
        assert_eq!(
            diags.0[0].attribute,
            Some(AttributePath::root("x").key("BAD KEY"))
        );
        assert!(diags.to_string().contains("has a space"), "{diags}");
    }

    #[test]
    fn dns_labels() {
        assert!(check_dns_label("web-api").is_ok());
        assert!(check_dns_label("a").is_ok());
        for bad in ["", "-a", "a-", "Web", "a_b", &"a".repeat(64)] {
            assert!(check_dns_label(bad).is_err(), "{bad}");
        }
    }
}
