//! Serde conversion between a resource's own Rust structs and cty values, so that a
//! resource author works with plain structs and never with MessagePack or [`Value`].
//!
//! The bridge is JSON: a value becomes a `serde_json::Value` (numbers keep their exact
//! decimal text), which serde turns into the struct, and back. Values not yet known
//! (computed attributes during a plan or create) arrive as `null`, so such fields are
//! `Option`s in the struct.

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::codec;
use crate::diagnostics::Diagnostic;
use crate::value::{Type, Value};

/// Turns a value into a Rust struct; unknown values become `None`.
pub fn from_value<T: DeserializeOwned>(value: &Value) -> Result<T, Diagnostic> {
    let json = codec::value_to_json(&without_unknowns(value))
        .map_err(|e| Diagnostic::error("Provider could not read a value", e.to_string()))?;
    serde_json::from_value(json).map_err(|e| {
        Diagnostic::error(
            "Provider could not read a value",
            format!("the value does not fit {}: {e}", std::any::type_name::<T>()),
        )
    })
}

/// Turns a Rust struct into a value of type `ty`; fields missing from the struct are
/// null, fields the type does not have are an error (a mismatch between the struct and
/// the schema is a provider bug worth reporting clearly).
pub fn to_value<T: Serialize>(data: &T, ty: &Type) -> Result<Value, Diagnostic> {
    let json = serde_json::to_value(data)
        .map_err(|e| Diagnostic::error("Provider could not write a value", e.to_string()))?;
    codec::value_from_json(ty, &json).map_err(|e| {
        Diagnostic::error(
            "Provider could not write a value",
            format!(
                "{} does not match the schema: {e}",
                std::any::type_name::<T>()
            ),
        )
    })
}

/// A copy of `value` with every unknown replaced by null.
pub fn without_unknowns(value: &Value) -> Value {
    match value {
        Value::Unknown => Value::Null,
        Value::List(v) => Value::List(v.iter().map(without_unknowns).collect()),
        Value::Set(v) => Value::Set(v.iter().map(without_unknowns).collect()),
        Value::Tuple(v) => Value::Tuple(v.iter().map(without_unknowns).collect()),
        Value::Map(m) => Value::Map(
            m.iter()
                .map(|(k, v)| (k.clone(), without_unknowns(v)))
                .collect(),
        ),
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| (k.clone(), without_unknowns(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use std::collections::BTreeMap;

    #[derive(Debug, Serialize, Deserialize, PartialEq)]
    struct Thing {
        id: Option<String>,
        name: String,
        size: i64,
        big: Option<serde_json::Number>,
        tags: Option<BTreeMap<String, String>>,
    }

    fn ty() -> Type {
        Type::object([
            ("id", Type::String),
            ("name", Type::String),
            ("size", Type::Number),
            ("big", Type::Number),
            ("tags", Type::map(Type::String)),
        ])
    }

    #[test]
    fn round_trips_through_structs() {
        let value = Value::object([
            ("id", Value::Unknown),
            ("name", "web".into()),
            ("size", 3.into()),
            (
                "big",
                Value::Number(crate::Number::parse("123456789012345678901234567890").unwrap()),
            ),
            ("tags", Value::Null),
        ]);
        let thing: Thing = from_value(&value).unwrap();
        assert_eq!(thing.id, None);
        assert_eq!(thing.name, "web");
        assert_eq!(
            thing.big.as_ref().unwrap().to_string(),
            "123456789012345678901234567890"
        );
        let back = to_value(&thing, &ty()).unwrap();
        assert_eq!(back.get("id"), &Value::Null);
        assert_eq!(back.get("big"), value.get("big"));
        assert_eq!(back.get("size"), &Value::from(3));
    }

    #[test]
    fn a_struct_that_does_not_fit_is_a_clear_error() {
        let err = from_value::<Thing>(&Value::object([("name", Value::from(1))])).unwrap_err();
        assert!(err.detail.contains("Thing"), "{}", err.detail);
    }
}
