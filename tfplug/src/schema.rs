//! Schemas: what a provider, resource or data source accepts and produces.
//!
//! A schema is a [`Block`] of attributes and nested blocks, plus a version for state
//! upgrades. Beyond what Terraform itself needs (types and required/optional/computed
//! flags), each attribute here also carries what the plugin enforces for it: a default,
//! validators and plan modifiers. Builders keep declarations short:
//!
//! ```
//! use tfplug::schema::{Attribute, Block, PlanModifier, Schema};
//! use tfplug::validator;
//!
//! let schema = Schema::new(Block::new()
//!     .attribute(Attribute::string("id").computed().use_state_for_unknown())
//!     .attribute(Attribute::string("name").required().requires_replace()
//!         .validator(validator::string_length(1, 63)))
//!     .attribute(Attribute::number("replicas").optional().default(1)));
//! assert!(schema.block.attribute_named("replicas").unwrap().computed);
//! ```

use std::sync::Arc;

use crate::validator::Validator;
use crate::value::{Type, Value};

/// A versioned schema. Bump the version when the stored state's shape changes, and
/// provide a state upgrader for the older versions.
#[derive(Clone, Default)]
pub struct Schema {
    pub version: i64,
    pub block: Block,
}

impl Schema {
    pub fn new(block: Block) -> Schema {
        Schema { version: 0, block }
    }

    pub fn version(mut self, version: i64) -> Schema {
        self.version = version;
        self
    }

    /// The object type of values that follow this schema.
    pub fn value_type(&self) -> Type {
        self.block.value_type()
    }
}

/// Whether a description is plain text or Markdown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DescriptionKind {
    #[default]
    Plain,
    Markdown,
}

/// Text for people: shown by `terraform providers schema` and used for documentation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Description {
    pub text: String,
    pub kind: DescriptionKind,
}

/// A block of attributes and nested blocks.
#[derive(Clone, Default)]
pub struct Block {
    pub attributes: Vec<Attribute>,
    pub blocks: Vec<NestedBlock>,
    pub description: Description,
    pub deprecated: bool,
}

impl Block {
    pub fn new() -> Block {
        Block::default()
    }

    pub fn attribute(mut self, attribute: Attribute) -> Block {
        self.attributes.push(attribute);
        self
    }

    pub fn block(mut self, block: NestedBlock) -> Block {
        self.blocks.push(block);
        self
    }

    pub fn description(mut self, text: impl Into<String>) -> Block {
        self.description = Description {
            text: text.into(),
            kind: DescriptionKind::Plain,
        };
        self
    }

    pub fn markdown_description(mut self, text: impl Into<String>) -> Block {
        self.description = Description {
            text: text.into(),
            kind: DescriptionKind::Markdown,
        };
        self
    }

    pub fn attribute_named(&self, name: &str) -> Option<&Attribute> {
        self.attributes.iter().find(|a| a.name == name)
    }

    /// The object type of values of this block: one attribute per attribute and per
    /// nested block.
    pub fn value_type(&self) -> Type {
        let mut attrs = std::collections::BTreeMap::new();
        for attribute in &self.attributes {
            attrs.insert(attribute.name.clone(), attribute.value_type());
        }
        for block in &self.blocks {
            attrs.insert(block.name.clone(), block.value_type());
        }
        Type::Object(attrs)
    }
}

/// How a nested block or nested attribute repeats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nesting {
    /// Exactly one object (or null).
    ///
    /// Terraform 1.0 crashes while planning a resource whose single-nested
    /// *attribute* is left null in the configuration (later versions are fine). For
    /// an optional object that must work on 1.0, use a nested block instead.
    Single,
    /// An ordered list of objects.
    List,
    /// An unordered set of objects.
    Set,
    /// Objects by string key.
    Map,
    /// Like `Single`, but never null: absent means all attributes null.
    Group,
}

impl Nesting {
    fn wrap(self, object: Type) -> Type {
        match self {
            Nesting::Single | Nesting::Group => object,
            Nesting::List => Type::list(object),
            Nesting::Set => Type::set(object),
            Nesting::Map => Type::map(object),
        }
    }
}

/// A nested block, written in HCL as `name { ... }`.
#[derive(Clone)]
pub struct NestedBlock {
    pub name: String,
    pub nesting: Nesting,
    pub block: Block,
    pub min_items: i64,
    pub max_items: i64,
}

impl NestedBlock {
    pub fn new(name: impl Into<String>, nesting: Nesting, block: Block) -> NestedBlock {
        NestedBlock {
            name: name.into(),
            nesting,
            block,
            min_items: 0,
            max_items: 0,
        }
    }

    pub fn value_type(&self) -> Type {
        self.nesting.wrap(self.block.value_type())
    }
}

/// What an attribute holds: a value of a plain type, or nested attributes (written in
/// HCL as `name = { ... }` or `name = [{ ... }]`).
#[derive(Clone)]
pub enum AttributeKind {
    Typed(Type),
    Nested {
        nesting: Nesting,
        attributes: Vec<Attribute>,
    },
}

/// Plan modifiers that the plugin applies while planning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlanModifier {
    /// A change to this attribute replaces the resource (destroy, then create).
    RequiresReplace,
    /// A computed attribute keeps its prior value in a plan instead of becoming
    /// unknown: for values (like an id) that never change after create.
    UseStateForUnknown,
}

/// One attribute of a block.
#[derive(Clone)]
pub struct Attribute {
    pub name: String,
    pub kind: AttributeKind,
    pub description: Description,
    pub required: bool,
    pub optional: bool,
    pub computed: bool,
    pub sensitive: bool,
    /// See [`Attribute::write_only`].
    pub write_only: bool,
    pub deprecated: bool,
    /// Used when the configuration leaves the attribute unset. An attribute with a
    /// default is optional and computed, so Terraform accepts the planned value.
    pub default: Option<Value>,
    pub validators: Vec<Arc<dyn Validator>>,
    pub plan_modifiers: Vec<PlanModifier>,
}

impl Attribute {
    /// An attribute of any type; see also the typed shorthands.
    pub fn new(name: impl Into<String>, ty: Type) -> Attribute {
        Attribute::with_kind(name, AttributeKind::Typed(ty))
    }

    fn with_kind(name: impl Into<String>, kind: AttributeKind) -> Attribute {
        Attribute {
            name: name.into(),
            kind,
            description: Description::default(),
            required: false,
            optional: false,
            computed: false,
            sensitive: false,
            write_only: false,
            deprecated: false,
            default: None,
            validators: Vec::new(),
            plan_modifiers: Vec::new(),
        }
    }

    pub fn string(name: impl Into<String>) -> Attribute {
        Attribute::new(name, Type::String)
    }
    pub fn number(name: impl Into<String>) -> Attribute {
        Attribute::new(name, Type::Number)
    }
    pub fn bool(name: impl Into<String>) -> Attribute {
        Attribute::new(name, Type::Bool)
    }
    pub fn string_map(name: impl Into<String>) -> Attribute {
        Attribute::new(name, Type::map(Type::String))
    }
    pub fn string_list(name: impl Into<String>) -> Attribute {
        Attribute::new(name, Type::list(Type::String))
    }

    /// Nested attributes: `name = { ... }` for [`Nesting::Single`], `name = [{...}]`
    /// for lists and sets, `name = { key = {...} }` for maps.
    pub fn nested(
        name: impl Into<String>,
        nesting: Nesting,
        attributes: Vec<Attribute>,
    ) -> Attribute {
        Attribute::with_kind(
            name,
            AttributeKind::Nested {
                nesting,
                attributes,
            },
        )
    }

    pub fn required(mut self) -> Attribute {
        self.required = true;
        self.optional = false;
        self
    }
    pub fn optional(mut self) -> Attribute {
        self.optional = true;
        self.required = false;
        self
    }
    pub fn computed(mut self) -> Attribute {
        self.computed = true;
        self
    }
    pub fn sensitive(mut self) -> Attribute {
        self.sensitive = true;
        self
    }
    /// A value Terraform never keeps (Terraform 1.11 and later): plans and state hold
    /// null, and the resource still sees the configured value at apply (tfplug takes it
    /// from the configuration). Older Terraform ignores the flag and stores the value
    /// like any other. It cannot be computed, and only top-level attributes are.
    pub fn write_only(mut self) -> Attribute {
        self.write_only = true;
        self
    }
    pub fn deprecated(mut self) -> Attribute {
        self.deprecated = true;
        self
    }
    pub fn description(mut self, text: impl Into<String>) -> Attribute {
        self.description = Description {
            text: text.into(),
            kind: DescriptionKind::Plain,
        };
        self
    }
    pub fn markdown_description(mut self, text: impl Into<String>) -> Attribute {
        self.description = Description {
            text: text.into(),
            kind: DescriptionKind::Markdown,
        };
        self
    }
    /// Sets a default; makes the attribute optional and computed.
    pub fn default(mut self, value: impl Into<Value>) -> Attribute {
        self.default = Some(value.into());
        self.optional = true;
        self.required = false;
        self.computed = true;
        self
    }
    pub fn validator(mut self, validator: impl Validator + 'static) -> Attribute {
        self.validators.push(Arc::new(validator));
        self
    }
    pub fn requires_replace(mut self) -> Attribute {
        self.plan_modifiers.push(PlanModifier::RequiresReplace);
        self
    }
    pub fn use_state_for_unknown(mut self) -> Attribute {
        self.plan_modifiers.push(PlanModifier::UseStateForUnknown);
        self
    }

    pub fn has_modifier(&self, modifier: PlanModifier) -> bool {
        self.plan_modifiers.contains(&modifier)
    }

    /// The nested attributes, for a nested attribute.
    pub fn nested_attributes(&self) -> Option<(Nesting, &[Attribute])> {
        match &self.kind {
            AttributeKind::Nested {
                nesting,
                attributes,
            } => Some((*nesting, attributes)),
            AttributeKind::Typed(_) => None,
        }
    }

    /// The type of this attribute's values.
    pub fn value_type(&self) -> Type {
        match &self.kind {
            AttributeKind::Typed(ty) => ty.clone(),
            AttributeKind::Nested {
                nesting,
                attributes,
            } => nesting.wrap(Type::Object(
                attributes
                    .iter()
                    .map(|a| (a.name.clone(), a.value_type()))
                    .collect(),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_type_covers_attributes_and_blocks() {
        let block = Block::new()
            .attribute(Attribute::string("name").required())
            .attribute(Attribute::nested(
                "ports",
                Nesting::List,
                vec![Attribute::number("port").required()],
            ))
            .block(NestedBlock::new(
                "timeouts",
                Nesting::Single,
                Block::new().attribute(Attribute::string("create").optional()),
            ));
        assert_eq!(
            block.value_type(),
            Type::object([
                ("name", Type::String),
                ("ports", Type::list(Type::object([("port", Type::Number)]))),
                ("timeouts", Type::object([("create", Type::String)])),
            ])
        );
    }

    #[test]
    fn default_makes_optional_computed() {
        let a = Attribute::number("replicas").required().default(1);
        assert!(a.optional && a.computed && !a.required);
        assert_eq!(a.default, Some(Value::from(1)));
    }
}
