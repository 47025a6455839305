//! cty's JSON type notation (`"string"`, `["list","number"]`, `["object",{...}]`): how
//! a schema attribute names its type, and how a dynamic value carries its own type on
//! the wire in either encoding.

use std::collections::BTreeMap;

use super::CodecError;
use crate::value::Type;

impl Type {
    /// The type in cty's JSON type notation, as Terraform expects it in a schema.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match self {
            Type::Bool => J::from("bool"),
            Type::Number => J::from("number"),
            Type::String => J::from("string"),
            Type::Dynamic => J::from("dynamic"),
            Type::List(e) => J::Array(vec![J::from("list"), e.to_json()]),
            Type::Set(e) => J::Array(vec![J::from("set"), e.to_json()]),
            Type::Map(e) => J::Array(vec![J::from("map"), e.to_json()]),
            Type::Object(attrs) => J::Array(vec![
                J::from("object"),
                J::Object(
                    attrs
                        .iter()
                        .map(|(k, t)| (k.clone(), t.to_json()))
                        .collect(),
                ),
            ]),
            Type::Tuple(elems) => J::Array(vec![
                J::from("tuple"),
                J::Array(elems.iter().map(Type::to_json).collect()),
            ]),
        }
    }

    /// The JSON type notation as bytes, the form a schema attribute carries.
    pub fn to_json_bytes(&self) -> Vec<u8> {
        // Serialising a `serde_json::Value` cannot fail.
        serde_json::to_vec(&self.to_json()).unwrap_or_default()
    }

    /// Parses cty's JSON type notation (as used for dynamic values).
    pub fn from_json(json: &serde_json::Value) -> Result<Type, CodecError> {
        use serde_json::Value as J;
        let bad = || CodecError::InvalidType(json.to_string());
        match json {
            J::String(s) => match s.as_str() {
                "bool" => Ok(Type::Bool),
                "number" => Ok(Type::Number),
                "string" => Ok(Type::String),
                "dynamic" => Ok(Type::Dynamic),
                _ => Err(bad()),
            },
            J::Array(parts) => {
                let kind = parts.first().and_then(J::as_str).ok_or_else(bad)?;
                let arg = parts.get(1).ok_or_else(bad)?;
                match kind {
                    "list" => Ok(Type::list(Type::from_json(arg)?)),
                    "set" => Ok(Type::set(Type::from_json(arg)?)),
                    "map" => Ok(Type::map(Type::from_json(arg)?)),
                    "object" => {
                        let attrs = arg.as_object().ok_or_else(bad)?;
                        let mut out = BTreeMap::new();
                        for (k, v) in attrs {
                            out.insert(k.clone(), Type::from_json(v)?);
                        }
                        Ok(Type::Object(out))
                    }
                    "tuple" => {
                        let elems = arg.as_array().ok_or_else(bad)?;
                        Ok(Type::Tuple(
                            elems
                                .iter()
                                .map(Type::from_json)
                                .collect::<Result<_, _>>()?,
                        ))
                    }
                    _ => Err(bad()),
                }
            }
            _ => Err(bad()),
        }
    }

    /// Parses the JSON type notation from bytes.
    pub fn from_json_bytes(bytes: &[u8]) -> Result<Type, CodecError> {
        let json: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| CodecError::InvalidType(e.to_string()))?;
        Type::from_json(&json)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_json_round_trips() {
        let ty = Type::object([
            ("name", Type::String),
            ("ports", Type::list(Type::object([("port", Type::Number)]))),
            ("tags", Type::map(Type::String)),
            ("ids", Type::set(Type::String)),
            ("pair", Type::Tuple(vec![Type::Bool, Type::Dynamic])),
        ]);
        let json = ty.to_json();
        assert_eq!(Type::from_json(&json).unwrap(), ty);
        assert_eq!(
            serde_json::to_string(&Type::list(Type::String).to_json()).unwrap(),
            r#"["list","string"]"#
        );
    }

    #[test]
    fn rejects_unknown_type_names() {
        assert!(Type::from_json(&serde_json::json!("int")).is_err());
        assert!(Type::from_json(&serde_json::json!(["list"])).is_err());
    }
}
