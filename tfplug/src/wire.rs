//! Conversions between this crate's types and the protocol's generated messages.
//!
//! Kept in one place so that the server reads as protocol logic, and so that the
//! generated types never leak into the provider-facing API.

use crate::codec;
use crate::diagnostics::{AttributePath, Diagnostic, Diagnostics, PathStep, Severity};
use crate::proto::tfplugin6 as pb;
use crate::schema::{
    Attribute, AttributeKind, Block, Description, DescriptionKind, Nesting, Schema,
};
use crate::value::{Type, Value};

/// Decodes a `DynamicValue` of type `ty`. An absent value is null.
pub fn decode_dynamic(
    ty: &Type,
    value: Option<&pb::DynamicValue>,
    what: &str,
) -> Result<Value, Diagnostic> {
    let Some(value) = value else {
        return Ok(Value::Null);
    };
    let decoded = if !value.msgpack.is_empty() {
        codec::decode_msgpack(ty, &value.msgpack)
    } else if !value.json.is_empty() {
        codec::decode_json(ty, &value.json)
    } else {
        Ok(Value::Null)
    };
    decoded.map_err(|e| {
        Diagnostic::error(
            format!("Invalid {what} from Terraform"),
            format!("The provider could not decode the {what}: {e}. This is a bug in the provider or a Terraform version it does not support."),
        )
    })
}

/// Encodes a value of type `ty` as a MessagePack `DynamicValue`.
pub fn encode_dynamic(ty: &Type, value: &Value) -> Result<pb::DynamicValue, Diagnostic> {
    let msgpack = codec::encode_msgpack(ty, value).map_err(|e| {
        Diagnostic::error(
            "Provider produced an invalid value",
            format!("The value does not match the schema: {e}. This is a bug in the provider."),
        )
    })?;
    Ok(pb::DynamicValue {
        msgpack,
        json: Vec::new(),
    })
}

pub fn diagnostics(diags: &Diagnostics) -> Vec<pb::Diagnostic> {
    diags.iter().map(diagnostic).collect()
}

pub fn diagnostic(d: &Diagnostic) -> pb::Diagnostic {
    pb::Diagnostic {
        severity: match d.severity {
            Severity::Error => pb::diagnostic::Severity::Error as i32,
            Severity::Warning => pb::diagnostic::Severity::Warning as i32,
        },
        summary: d.summary.clone(),
        detail: d.detail.clone(),
        attribute: d.attribute.as_ref().map(attribute_path),
    }
}

pub fn attribute_path(path: &AttributePath) -> pb::AttributePath {
    use pb::attribute_path::step::Selector;
    pb::AttributePath {
        steps: path
            .steps
            .iter()
            .map(|step| pb::attribute_path::Step {
                selector: Some(match step {
                    PathStep::Attribute(name) => Selector::AttributeName(name.clone()),
                    PathStep::Key(key) => Selector::ElementKeyString(key.clone()),
                    PathStep::Index(index) => Selector::ElementKeyInt(*index),
                }),
            })
            .collect(),
    }
}

pub fn schema(schema: &Schema) -> pb::Schema {
    pb::Schema {
        version: schema.version,
        block: Some(block(&schema.block, schema.version)),
    }
}

fn string_kind(description: &Description) -> i32 {
    match description.kind {
        DescriptionKind::Plain => pb::StringKind::Plain as i32,
        DescriptionKind::Markdown => pb::StringKind::Markdown as i32,
    }
}

fn block(b: &Block, version: i64) -> pb::schema::Block {
    use pb::schema::nested_block::NestingMode;
    pb::schema::Block {
        version,
        attributes: b.attributes.iter().map(attribute).collect(),
        block_types: b
            .blocks
            .iter()
            .map(|nested| pb::schema::NestedBlock {
                type_name: nested.name.clone(),
                block: Some(block(&nested.block, 0)),
                nesting: match nested.nesting {
                    Nesting::Single => NestingMode::Single,
                    Nesting::List => NestingMode::List,
                    Nesting::Set => NestingMode::Set,
                    Nesting::Map => NestingMode::Map,
                    Nesting::Group => NestingMode::Group,
                } as i32,
                min_items: nested.min_items,
                max_items: nested.max_items,
            })
            .collect(),
        description: b.description.text.clone(),
        description_kind: string_kind(&b.description),
        deprecated: b.deprecated,
    }
}

fn attribute(a: &Attribute) -> pb::schema::Attribute {
    use pb::schema::object::NestingMode;
    let (ty, nested_type) = match &a.kind {
        AttributeKind::Typed(ty) => (ty.to_json_bytes(), None),
        AttributeKind::Nested {
            nesting,
            attributes,
        } => (
            Vec::new(),
            Some(pb::schema::Object {
                attributes: attributes.iter().map(attribute).collect(),
                nesting: match nesting {
                    // Protocol 6 has no group nesting for attributes: a group is a
                    // single object that is never null, which SINGLE also carries.
                    Nesting::Single | Nesting::Group => NestingMode::Single,
                    Nesting::List => NestingMode::List,
                    Nesting::Set => NestingMode::Set,
                    Nesting::Map => NestingMode::Map,
                } as i32,
                ..Default::default()
            }),
        ),
    };
    pb::schema::Attribute {
        name: a.name.clone(),
        r#type: ty,
        nested_type,
        description: a.description.text.clone(),
        description_kind: string_kind(&a.description),
        required: a.required,
        optional: a.optional,
        computed: a.computed,
        sensitive: a.sensitive,
        write_only: a.write_only,
        deprecated: a.deprecated,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diagnostics_carry_paths_and_severity() {
        let d = Diagnostic::error("bad", "fix it")
            .at(AttributePath::root("ports").index(1).attribute("port"));
        let p = diagnostic(&d);
        assert_eq!(p.severity, pb::diagnostic::Severity::Error as i32);
        let steps = &p.attribute.unwrap().steps;
        assert_eq!(steps.len(), 3);
        assert_eq!(
            steps[1].selector,
            Some(pb::attribute_path::step::Selector::ElementKeyInt(1))
        );
    }

    #[test]
    fn nested_attributes_have_no_type_bytes() {
        let s = Schema::new(Block::new().attribute(Attribute::nested(
            "ports",
            Nesting::List,
            vec![Attribute::number("port").required()],
        )));
        let p = schema(&s);
        let attr = &p.block.unwrap().attributes[0];
        assert!(attr.r#type.is_empty());
        let nested = attr.nested_type.as_ref().unwrap();
        assert_eq!(nested.nesting, pb::schema::object::NestingMode::List as i32);
        assert_eq!(nested.attributes[0].r#type, b"\"number\"");
    }
}
