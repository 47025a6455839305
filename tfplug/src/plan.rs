//! Schema-driven planning and validation: the work every resource needs in
//! `ValidateResourceConfig` and `PlanResourceChange`, done once here from the schema.
//!
//! Terraform sends a *proposed* new state: the configuration merged with the prior state
//! (computed attributes the configuration leaves unset keep their prior value). From it
//! the plugin plans: defaults fill unset attributes; computed attributes become unknown
//! when the resource changes (their new value is only known after apply), unless marked
//! `UseStateForUnknown`; and a change to a `RequiresReplace` attribute asks Terraform to
//! replace the resource.

use crate::diagnostics::{AttributePath, Diagnostics};
use crate::schema::{Attribute, Block, NestedBlock, Nesting, PlanModifier};
use crate::value::Value;

/// What the walks below visit: a block's attributes and nested blocks, or a nested
/// attribute's attributes (no blocks), borrowed from the schema so nothing is copied
/// on every plan.
#[derive(Clone, Copy)]
struct Fields<'a> {
    attributes: &'a [Attribute],
    blocks: &'a [NestedBlock],
}

impl<'a> Fields<'a> {
    fn of(block: &'a Block) -> Fields<'a> {
        Fields {
            attributes: &block.attributes,
            blocks: &block.blocks,
        }
    }

    fn nested(attributes: &'a [Attribute]) -> Fields<'a> {
        Fields {
            attributes,
            blocks: &[],
        }
    }
}

/// Runs every attribute validator on the known, non-null values of `config`.
pub fn validate(
    block: &Block,
    config: &Value,
    path: &AttributePath,
    diagnostics: &mut Diagnostics,
) {
    validate_fields(Fields::of(block), config, path, diagnostics);
}

fn validate_fields(
    fields: Fields<'_>,
    config: &Value,
    path: &AttributePath,
    diagnostics: &mut Diagnostics,
) {
    for attribute in fields.attributes {
        let value = config.get(&attribute.name);
        let here = child_path(path, &attribute.name);
        if value.is_null() || value.is_unknown() {
            continue;
        }
        let known = value.is_wholly_known();
        for validator in &attribute.validators {
            if known || validator.accepts_unknown_elements() {
                validator.validate(value, &here, diagnostics);
            }
        }
        if let Some((nesting, attributes)) = attribute.nested_attributes() {
            for_each_element(nesting, value, &here, |element, element_path| {
                let mut inner = Diagnostics::new();
                validate_fields(
                    Fields::nested(attributes),
                    element,
                    element_path,
                    &mut inner,
                );
                diagnostics.extend(locatable(inner, element_path));
            });
        }
    }
    for nested in fields.blocks {
        let value = config.get(&nested.name);
        let here = child_path(path, &nested.name);
        for_each_element(nested.nesting, value, &here, |element, element_path| {
            validate_fields(
                Fields::of(&nested.block),
                element,
                element_path,
                diagnostics,
            )
        });
    }
}

/// Plans a create or update from Terraform's proposed new state. Returns the planned
/// state; a null proposal (destroy) is returned unchanged.
pub fn plan(block: &Block, config: &Value, prior: &Value, proposed: &Value) -> Value {
    if proposed.is_null() {
        return Value::Null;
    }
    let mut planned = proposed.clone();
    apply_defaults(Fields::of(block), config, &mut planned);
    let changing =
        prior.is_null() || !crate::write_only::same_but_write_only(block, &planned, prior);
    if changing {
        mark_computed_unknown(Fields::of(block), config, prior, &mut planned);
    }
    planned
}

/// The attributes marked `RequiresReplace` whose planned value differs from the prior
/// one. Empty on create and destroy.
pub fn requires_replace(block: &Block, prior: &Value, planned: &Value) -> Vec<AttributePath> {
    let mut paths = Vec::new();
    if prior.is_null() || planned.is_null() {
        return paths;
    }
    collect_replacements(
        Fields::of(block),
        prior,
        planned,
        &AttributePath::default(),
        &mut paths,
    );
    paths
}

fn collect_replacements(
    fields: Fields<'_>,
    prior: &Value,
    planned: &Value,
    path: &AttributePath,
    paths: &mut Vec<AttributePath>,
) {
    for attribute in fields.attributes {
        let here = child_path(path, &attribute.name);
        let (old, new) = (prior.get(&attribute.name), planned.get(&attribute.name));
        if attribute.has_modifier(PlanModifier::RequiresReplace) && !old.same_as(new) {
            paths.push(here);
        } else if let Some((Nesting::Single | Nesting::Group, attributes)) =
            attribute.nested_attributes()
        {
            if !old.is_null() && !new.is_null() {
                collect_replacements(Fields::nested(attributes), old, new, &here, paths);
            }
        }
    }
}

fn apply_defaults(fields: Fields<'_>, config: &Value, planned: &mut Value) {
    let Some(planned_attrs) = planned.as_object_mut() else {
        return;
    };
    for attribute in fields.attributes {
        let configured = config.get(&attribute.name);
        if configured.is_null() {
            if let Some(default) = &attribute.default {
                planned_attrs.insert(attribute.name.clone(), default.clone());
            }
        }
        if let Some((nesting, attributes)) = attribute.nested_attributes() {
            if let Some(value) = planned_attrs.get_mut(&attribute.name) {
                zip_elements(nesting, configured, value, |c, p| {
                    apply_defaults(Fields::nested(attributes), c, p)
                });
            }
        }
    }
    for nested in fields.blocks {
        let configured = config.get(&nested.name);
        if let Some(value) = planned_attrs.get_mut(&nested.name) {
            zip_elements(nested.nesting, configured, value, |c, p| {
                apply_defaults(Fields::of(&nested.block), c, p)
            });
        }
    }
}

fn mark_computed_unknown(fields: Fields<'_>, config: &Value, prior: &Value, planned: &mut Value) {
    let Some(planned_attrs) = planned.as_object_mut() else {
        return;
    };
    for attribute in fields.attributes {
        let configured = config.get(&attribute.name);
        if attribute.computed && configured.is_null() && attribute.default.is_none() {
            let previous = prior.get(&attribute.name);
            let keep = attribute.has_modifier(PlanModifier::UseStateForUnknown)
                && !previous.is_null()
                && previous.is_wholly_known();
            let value = if keep {
                previous.clone()
            } else {
                Value::Unknown
            };
            planned_attrs.insert(attribute.name.clone(), value);
            continue;
        }
        if let Some((nesting @ (Nesting::Single | Nesting::Group), attributes)) =
            attribute.nested_attributes()
        {
            if let Some(value) = planned_attrs.get_mut(&attribute.name) {
                let previous = prior.get(&attribute.name);
                zip_elements(nesting, configured, value, |c, p| {
                    mark_computed_unknown(Fields::nested(attributes), c, previous, p)
                });
            }
        }
    }
}

/// Terraform finds the source line of a diagnostic only down to a nested attribute's
/// element (`ports[0]`), not to an attribute inside it, and falls back to the whole
/// resource block otherwise. So diagnostics from inside an element point at the
/// element, and their detail names the exact attribute.
fn locatable(diagnostics: Diagnostics, element: &AttributePath) -> Diagnostics {
    diagnostics
        .into_iter()
        .map(|mut d| {
            if let Some(path) = d.attribute.take() {
                if path.steps.len() > element.steps.len() {
                    d.detail = format!("{path}: {}", d.detail);
                }
                d.attribute = Some(element.clone());
            }
            d
        })
        .collect::<Vec<_>>()
        .into()
}

fn child_path(path: &AttributePath, name: &str) -> AttributePath {
    if path.steps.is_empty() {
        AttributePath::root(name)
    } else {
        path.attribute(name)
    }
}

/// Calls `f` for each object inside a nested value, with its path.
fn for_each_element(
    nesting: Nesting,
    value: &Value,
    path: &AttributePath,
    mut f: impl FnMut(&Value, &AttributePath),
) {
    match (nesting, value) {
        (_, Value::Null | Value::Unknown) => {}
        (Nesting::Single | Nesting::Group, v) => f(v, path),
        (Nesting::List | Nesting::Set, v) => {
            for (i, element) in v.as_elements().unwrap_or_default().iter().enumerate() {
                f(element, &path.index(i));
            }
        }
        (Nesting::Map, v) => {
            if let Some(entries) = v.as_object() {
                for (key, element) in entries {
                    f(element, &path.key(key.clone()));
                }
            }
        }
    }
}

/// Calls `f` with each configured object and its planned counterpart. List elements
/// pair by index and map entries by key; set elements are their own configuration,
/// since a set has no stable position to pair by.
fn zip_elements(
    nesting: Nesting,
    config: &Value,
    planned: &mut Value,
    mut f: impl FnMut(&Value, &mut Value),
) {
    match nesting {
        Nesting::Single | Nesting::Group => {
            if !planned.is_null() && !planned.is_unknown() {
                f(config, planned)
            }
        }
        Nesting::List => {
            if let Value::List(elements) = planned {
                for (i, element) in elements.iter_mut().enumerate() {
                    let configured = config
                        .as_elements()
                        .and_then(|c| c.get(i))
                        .unwrap_or(&Value::Null);
                    f(configured, element);
                }
            }
        }
        Nesting::Set => {
            if let Value::Set(elements) = planned {
                for element in elements.iter_mut() {
                    let configured = element.clone();
                    f(&configured, element);
                }
            }
        }
        Nesting::Map => {
            if let Value::Map(entries) = planned {
                for (key, element) in entries.iter_mut() {
                    let configured = config
                        .as_object()
                        .and_then(|c| c.get(key))
                        .unwrap_or(&Value::Null);
                    f(configured, element);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::Attribute;
    use crate::validator;

    fn block() -> Block {
        Block::new()
            .attribute(Attribute::string("id").computed().use_state_for_unknown())
            .attribute(Attribute::string("status").computed())
            .attribute(Attribute::string("name").required().requires_replace())
            .attribute(Attribute::number("replicas").default(1))
            .attribute(Attribute::nested(
                "ports",
                Nesting::List,
                vec![
                    Attribute::number("port")
                        .required()
                        .validator(validator::int_between(1, 65535)),
                    Attribute::string("protocol").default("tcp"),
                ],
            ))
    }

    fn obj(pairs: Vec<(&str, Value)>) -> Value {
        Value::object(pairs)
    }

    #[test]
    fn create_fills_defaults_and_unknowns() {
        let config = obj(vec![
            ("name", "a".into()),
            ("ports", Value::List(vec![obj(vec![("port", 80.into())])])),
        ]);
        let proposed = obj(vec![
            ("id", Value::Null),
            ("status", Value::Null),
            ("name", "a".into()),
            ("replicas", Value::Null),
            (
                "ports",
                Value::List(vec![obj(vec![
                    ("port", 80.into()),
                    ("protocol", Value::Null),
                ])]),
            ),
        ]);
        let planned = plan(&block(), &config, &Value::Null, &proposed);
        assert_eq!(planned.get("id"), &Value::Unknown);
        assert_eq!(planned.get("status"), &Value::Unknown);
        assert_eq!(planned.get("replicas"), &Value::from(1));
        assert_eq!(
            planned.get("ports").as_elements().unwrap()[0].get("protocol"),
            &Value::from("tcp")
        );
    }

    #[test]
    fn unchanged_update_keeps_prior() {
        let prior = obj(vec![
            ("id", "x".into()),
            ("status", "running".into()),
            ("name", "a".into()),
            ("replicas", 1.into()),
            ("ports", Value::Null),
        ]);
        let config = obj(vec![("name", "a".into())]);
        let planned = plan(&block(), &config, &prior, &prior);
        assert_eq!(planned, prior);
        assert!(requires_replace(&block(), &prior, &planned).is_empty());
    }

    #[test]
    fn changed_update_marks_computed_unknown_but_keeps_ids() {
        let prior = obj(vec![
            ("id", "x".into()),
            ("status", "running".into()),
            ("name", "a".into()),
            ("replicas", 1.into()),
            ("ports", Value::Null),
        ]);
        let config = obj(vec![("name", "b".into()), ("replicas", 3.into())]);
        let mut proposed = prior.clone();
        proposed
            .as_object_mut()
            .unwrap()
            .insert("name".into(), "b".into());
        proposed
            .as_object_mut()
            .unwrap()
            .insert("replicas".into(), 3.into());
        let planned = plan(&block(), &config, &prior, &proposed);
        assert_eq!(planned.get("id"), &Value::from("x"));
        assert_eq!(planned.get("status"), &Value::Unknown);
        assert_eq!(
            requires_replace(&block(), &prior, &planned),
            vec![AttributePath::root("name")]
        );
    }

    #[test]
    fn validators_point_into_nested_lists() {
        let config = obj(vec![(
            "ports",
            Value::List(vec![
                obj(vec![("port", 80.into())]),
                obj(vec![("port", 70000.into())]),
            ]),
        )]);
        let mut diags = Diagnostics::new();
        validate(&block(), &config, &AttributePath::default(), &mut diags);
        assert_eq!(diags.0.len(), 1);
        assert_eq!(
            diags.0[0].attribute.as_ref().unwrap().to_string(),
            "ports[1]"
        );
        assert!(
            diags.0[0].detail.starts_with("ports[1].port: 70000"),
            "{}",
            diags.0[0].detail
        );
    }

    #[test]
    fn validators_skip_unknowns() {
        let config = obj(vec![("ports", Value::Unknown)]);
        let mut diags = Diagnostics::new();
        validate(&block(), &config, &AttributePath::default(), &mut diags);
        assert!(diags.is_empty());
    }
}
