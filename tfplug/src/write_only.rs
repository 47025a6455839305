//! Write-only attributes ([`Attribute::write_only`](crate::schema::Attribute::write_only)):
//! Terraform 1.11 and later keep them out of plans and state, and say so in each
//! request's client capabilities. tfplug hides the difference from resources: a
//! resource plans, applies and reads as if the value were an ordinary attribute, and
//! tfplug nulls it in what Terraform keeps, and hands the configured value to `create`
//! and `update`, where Terraform's planned state holds null.

use crate::schema::Block;
use crate::value::Value;

/// The top-level write-only attributes of `block`.
fn names(block: &Block) -> impl Iterator<Item = &str> {
    block
        .attributes
        .iter()
        .filter(|a| a.write_only)
        .map(|a| a.name.as_str())
}

/// Whether `a` and `b` are the same but for write-only attributes, whose planned and
/// prior values say nothing (Terraform 1.11 sends the configured value in a proposal
/// and null in the prior state).
pub fn same_but_write_only(block: &Block, a: &Value, b: &Value) -> bool {
    match (a.as_object(), b.as_object()) {
        (Some(x), Some(y)) => {
            let skip = |name: &String| {
                block
                    .attributes
                    .iter()
                    .any(|at| at.write_only && at.name == *name)
            };
            x.keys()
                .filter(|k| !skip(k))
                .eq(y.keys().filter(|k| !skip(k)))
                && x.iter()
                    .filter(|(k, _)| !skip(k))
                    .all(|(k, v)| y.get(k).is_some_and(|w| v.same_as(w)))
        }
        _ => a.same_as(b),
    }
}

/// Nulls every write-only attribute of `value` (a plan or a state), as Terraform
/// requires of a client that understands them.
pub fn hide(block: &Block, value: &mut Value) {
    if let Some(attributes) = value.as_object_mut() {
        for name in names(block) {
            if let Some(slot) = attributes.get_mut(name) {
                *slot = Value::Null;
            }
        }
    }
}

/// Puts the configured value of each write-only attribute that Terraform's `planned`
/// state holds as null back into it, for `create` and `update`, and returns the names
/// of those attributes: they must be null again in the new state ([`Unplanned::hide`]),
/// since Terraform either keeps them out of state (1.11+) or planned them null (the
/// configuration left them unset). Older Terraform plans a set value itself.
pub fn reveal(block: &Block, config: &Value, planned: &mut Value) -> Unplanned {
    let mut unplanned = Vec::new();
    if let Some(attributes) = planned.as_object_mut() {
        for name in names(block) {
            if let Some(slot) = attributes.get_mut(name).filter(|slot| slot.is_null()) {
                *slot = config.get(name).clone();
                unplanned.push(name.to_owned());
            }
        }
    }
    Unplanned(unplanned)
}

/// The write-only attributes Terraform planned as null.
#[must_use]
pub struct Unplanned(Vec<String>);

impl Unplanned {
    /// Nulls them in the new state.
    pub fn hide(&self, state: &mut Value) {
        if let Some(attributes) = state.as_object_mut() {
            for name in &self.0 {
                if let Some(slot) = attributes.get_mut(name) {
                    *slot = Value::Null;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::Attribute;

    fn block() -> Block {
        Block::new()
            .attribute(Attribute::string("name").required())
            .attribute(
                Attribute::string_map("secrets")
                    .optional()
                    .sensitive()
                    .write_only(),
            )
    }

    #[test]
    fn hidden_from_terraform_and_given_to_the_resource() {
        let secrets = Value::Map([("K".to_owned(), Value::from("v"))].into());
        let config = Value::object([("name", Value::from("a")), ("secrets", secrets.clone())]);
        // Terraform 1.11 plans null; the resource gets the configured value.
        let mut planned = Value::object([("name", Value::from("a")), ("secrets", Value::Null)]);
        let unplanned = reveal(&block(), &config, &mut planned);
        assert_eq!(planned.get("secrets"), &secrets);
        let mut state = planned.clone();
        unplanned.hide(&mut state);
        assert!(state.get("secrets").is_null());
        assert_eq!(state.get("name").as_str(), Some("a"));
        hide(&block(), &mut planned);
        assert!(planned.get("secrets").is_null());
        assert!(same_but_write_only(&block(), &config, &state));
        assert!(!same_but_write_only(
            &block(),
            &config,
            &Value::object([("name", Value::from("b")), ("secrets", Value::Null)])
        ));
        // Older Terraform plans the value as usual: it stays in the state.
        let mut planned = config.clone();
        let unplanned = reveal(&block(), &config, &mut planned);
        assert_eq!(planned, config);
        let mut state = planned.clone();
        unplanned.hide(&mut state);
        assert_eq!(state, config);
    }
}
