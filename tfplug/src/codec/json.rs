//! go-cty's JSON encoding: `DynamicValue.json`, the raw state Terraform passes to
//! `UpgradeResourceState`, and the plain JSON that moves values into serde structs.
//! JSON cannot carry unknowns; a dynamic value is `{"value": …, "type": …}`.

use std::collections::BTreeMap;
use std::str::FromStr;

use super::{
    expected_name, fill_missing_attributes, pair_attributes, render_path, truncate_for_message,
    value_kind, CodecError, JsonOptions, Step, MAX_DEPTH,
};
use crate::number::parse_number_text;
use crate::value::{Number, Type, Value};

/// Decodes JSON bytes (go-cty's JSON encoding: `DynamicValue.json`, or the raw state
/// Terraform passes to `UpgradeResourceState`) as a value of `ty`.
///
/// Attributes missing from an object are null; attributes the type lacks are an error
/// (see [`decode_json_with`] to drop them instead).
pub fn decode_json(ty: &Type, bytes: &[u8]) -> Result<Value, CodecError> {
    decode_json_with(ty, bytes, JsonOptions::default())
}

/// [`decode_json`] with options.
pub fn decode_json_with(
    ty: &Type,
    bytes: &[u8],
    options: JsonOptions,
) -> Result<Value, CodecError> {
    // serde_json caps nesting at 128 levels itself, so parsing cannot overflow the stack.
    let json: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| CodecError::Malformed {
            path: String::new(),
            reason: format!("invalid JSON: {e}"),
        })?;
    value_from_json_with(ty, &json, options)
}

/// Reads a parsed JSON value as a value of `ty`, with go-cty's JSON rules.
///
/// Beyond the strict encoding it accepts what go-cty's decoder converts: numbers and
/// bools where a string is expected, `"true"`/`"false"`/`"1"`/`"0"` for a bool, and
/// numeric strings for a number. At a dynamic position it takes go-cty's
/// `{"value": …, "type": …}` wrapper, or, for plain JSON (as serde produces from a
/// struct), infers the type the way go-cty's `ImpliedType` does: arrays are tuples and
/// objects are objects.
pub fn value_from_json(ty: &Type, json: &serde_json::Value) -> Result<Value, CodecError> {
    value_from_json_with(ty, json, JsonOptions::default())
}

/// [`value_from_json`] with options.
pub fn value_from_json_with(
    ty: &Type,
    json: &serde_json::Value,
    options: JsonOptions,
) -> Result<Value, CodecError> {
    let mut reader = JsonReader {
        options,
        path: Vec::new(),
    };
    reader.value(ty, json, 0)
}

/// What kind of JSON value this is, for error messages.
fn json_kind(json: &serde_json::Value) -> &'static str {
    use serde_json::Value as J;
    match json {
        J::Null => "null",
        J::Bool(_) => "bool",
        J::Number(_) => "number",
        J::String(_) => "string",
        J::Array(_) => "array",
        J::Object(_) => "object",
    }
}

struct JsonReader<'j> {
    options: JsonOptions,
    path: Vec<Step<'j>>,
}

impl<'j> JsonReader<'j> {
    fn here(&self) -> String {
        render_path(&self.path)
    }

    fn mismatch(&self, ty: &Type, json: &serde_json::Value) -> CodecError {
        CodecError::Mismatch {
            path: self.here(),
            expected: expected_name(ty),
            found: format!("JSON {}", json_kind(json)),
        }
    }

    fn too_deep(&self, depth: usize) -> Result<(), CodecError> {
        if depth > MAX_DEPTH {
            return Err(CodecError::TooDeep {
                path: self.here(),
                limit: MAX_DEPTH,
            });
        }
        Ok(())
    }

    fn value(
        &mut self,
        ty: &Type,
        json: &'j serde_json::Value,
        depth: usize,
    ) -> Result<Value, CodecError> {
        use serde_json::Value as J;
        self.too_deep(depth)?;
        if json.is_null() {
            return Ok(Value::Null);
        }
        match (ty, json) {
            (Type::Dynamic, _) => {
                if let Some((concrete, inner)) = self.dynamic_wrapper(json)? {
                    return self.value(&concrete, inner, depth + 1);
                }
                self.implied(json, depth)
            }
            (Type::Bool, J::Bool(b)) => Ok(Value::Bool(*b)),
            (Type::Bool, J::String(s)) => match s.as_str() {
                "true" | "1" => Ok(Value::Bool(true)),
                "false" | "0" => Ok(Value::Bool(false)),
                _ => Err(CodecError::Mismatch {
                    path: self.here(),
                    expected: "bool".into(),
                    found: format!("string {:?}", truncate_for_message(s)),
                }),
            },
            (Type::Number, J::Number(n)) => self.number(n.as_str(), false),
            (Type::Number, J::String(s)) => self.number(s, true),
            (Type::String, J::String(s)) => Ok(Value::String(s.clone())),
            (Type::String, J::Number(n)) => Ok(Value::String(n.as_str().to_owned())),
            (Type::String, J::Bool(b)) => Ok(Value::String(b.to_string())),
            (Type::List(element), J::Array(items)) => {
                self.elements(element, items, depth).map(Value::List)
            }
            (Type::Set(element), J::Array(items)) => {
                self.elements(element, items, depth).map(Value::Set)
            }
            (Type::Tuple(types), J::Array(items)) => {
                if types.len() != items.len() {
                    return Err(CodecError::Mismatch {
                        path: self.here(),
                        expected: expected_name(ty),
                        found: format!("JSON array of {} elements", items.len()),
                    });
                }
                let mut out = Vec::with_capacity(items.len());
                for (i, (element_ty, item)) in types.iter().zip(items).enumerate() {
                    self.path.push(Step::Index(i));
                    out.push(self.value(element_ty, item, depth + 1)?);
                    self.path.pop();
                }
                Ok(Value::Tuple(out))
            }
            (Type::Map(element), J::Object(entries)) => {
                let mut out = BTreeMap::new();
                for (key, entry) in entries {
                    self.path.push(Step::Key(key));
                    let value = self.value(element, entry, depth + 1)?;
                    self.path.pop();
                    out.insert(key.clone(), value);
                }
                Ok(Value::Map(out))
            }
            (Type::Object(attributes), J::Object(entries)) => {
                let mut out = BTreeMap::new();
                for (key, entry) in entries {
                    let Some(attribute_ty) = attributes.get(key) else {
                        if self.options.ignore_undefined_attributes {
                            continue;
                        }
                        return Err(CodecError::UnexpectedAttribute {
                            path: self.here(),
                            name: key.clone(),
                        });
                    };
                    self.path.push(Step::Attr(key));
                    let value = self.value(attribute_ty, entry, depth + 1)?;
                    self.path.pop();
                    out.insert(key.clone(), value);
                }
                fill_missing_attributes(&mut out, attributes);
                Ok(Value::Object(out))
            }
            _ => Err(self.mismatch(ty, json)),
        }
    }

    /// A number from JSON number text or (as go-cty allows) a JSON string.
    fn number(&self, text: &str, in_string: bool) -> Result<Value, CodecError> {
        parse_number_text(text)
            .map(Value::Number)
            .ok_or_else(|| CodecError::Mismatch {
                path: self.here(),
                expected: "number".into(),
                found: if in_string {
                    format!("string {:?}", truncate_for_message(text))
                } else {
                    format!("{} (exponent out of range)", truncate_for_message(text))
                },
            })
    }

    fn elements(
        &mut self,
        element: &Type,
        items: &'j [serde_json::Value],
        depth: usize,
    ) -> Result<Vec<Value>, CodecError> {
        let mut out = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            self.path.push(Step::Index(i));
            out.push(self.value(element, item, depth + 1)?);
            self.path.pop();
        }
        Ok(out)
    }

    /// go-cty's `{"value": …, "type": …}` wrapper, if `json` is one: an object with
    /// exactly those two keys whose `type` is a valid type.
    fn dynamic_wrapper(
        &self,
        json: &'j serde_json::Value,
    ) -> Result<Option<(Type, &'j serde_json::Value)>, CodecError> {
        let Some(object) = json.as_object() else {
            return Ok(None);
        };
        let (Some(type_json), Some(inner), 2) =
            (object.get("type"), object.get("value"), object.len())
        else {
            return Ok(None);
        };
        Ok(Type::from_json(type_json).ok().map(|ty| (ty, inner)))
    }

    /// A value whose type comes from the JSON itself, as go-cty's `ImpliedType` reads it.
    fn implied(&mut self, json: &'j serde_json::Value, depth: usize) -> Result<Value, CodecError> {
        use serde_json::Value as J;
        self.too_deep(depth)?;
        match json {
            J::Null => Ok(Value::Null),
            J::Bool(b) => Ok(Value::Bool(*b)),
            J::Number(n) => self.number(n.as_str(), false),
            J::String(s) => Ok(Value::String(s.clone())),
            J::Array(items) => {
                let mut out = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    self.path.push(Step::Index(i));
                    out.push(self.implied(item, depth + 1)?);
                    self.path.pop();
                }
                Ok(Value::Tuple(out))
            }
            J::Object(entries) => {
                let mut out = BTreeMap::new();
                for (key, entry) in entries {
                    self.path.push(Step::Attr(key));
                    out.insert(key.clone(), self.implied(entry, depth + 1)?);
                    self.path.pop();
                }
                Ok(Value::Object(out))
            }
        }
    }
}

/// Turns a value into plain JSON, without type information: for moving values into
/// Rust structs with serde.
///
/// Null is JSON `null`; numbers keep their exact decimal text (the crate's serde_json
/// has `arbitrary_precision`); lists, sets and tuples are arrays; maps and objects are
/// objects. An unknown value is an error naming where it is, because JSON cannot
/// represent it (callers that want nulls for unknowns replace them first).
pub fn value_to_json(value: &Value) -> Result<serde_json::Value, CodecError> {
    let mut writer = JsonWriter { path: Vec::new() };
    writer.plain(value, 0)
}

/// Encodes a value of `ty` as go-cty's JSON (the `DynamicValue.json` form): like
/// [`value_to_json`], but checked against the type, with every attribute of an object
/// present and `{"value": …, "type": …}` wrappers at dynamic positions.
pub fn encode_json(ty: &Type, value: &Value) -> Result<Vec<u8>, CodecError> {
    let json = value_to_typed_json(ty, value)?;
    serde_json::to_vec(&json).map_err(|e| CodecError::Invalid(format!("could not write JSON: {e}")))
}

/// The JSON tree [`encode_json`] writes.
pub fn value_to_typed_json(ty: &Type, value: &Value) -> Result<serde_json::Value, CodecError> {
    let mut writer = JsonWriter { path: Vec::new() };
    writer.typed(ty, value, 0)
}

struct JsonWriter<'v> {
    path: Vec<Step<'v>>,
}

impl<'v> JsonWriter<'v> {
    fn here(&self) -> String {
        render_path(&self.path)
    }

    fn too_deep(&self, depth: usize) -> Result<(), CodecError> {
        if depth > MAX_DEPTH {
            return Err(CodecError::TooDeep {
                path: self.here(),
                limit: MAX_DEPTH,
            });
        }
        Ok(())
    }

    fn number(&self, n: &Number) -> Result<serde_json::Value, CodecError> {
        let bad = |what: &str| CodecError::Mismatch {
            path: self.here(),
            expected: "a number JSON can represent".into(),
            found: what.to_owned(),
        };
        if let Number::Float(f) = n {
            if f.is_nan() {
                return Err(bad("NaN"));
            }
            if f.is_infinite() {
                return Err(bad("infinity"));
            }
        }
        let text = n.to_decimal_string();
        serde_json::Number::from_str(&text)
            .map(serde_json::Value::Number)
            .map_err(|_| bad(&format!("decimal text {:?}", truncate_for_message(&text))))
    }

    fn plain(&mut self, value: &'v Value, depth: usize) -> Result<serde_json::Value, CodecError> {
        use serde_json::Value as J;
        self.too_deep(depth)?;
        Ok(match value {
            Value::Null => J::Null,
            Value::Unknown => return Err(CodecError::UnknownValue { path: self.here() }),
            Value::Bool(b) => J::Bool(*b),
            Value::Number(n) => self.number(n)?,
            Value::String(s) => J::String(s.clone()),
            Value::List(items) | Value::Set(items) | Value::Tuple(items) => {
                let mut out = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    self.path.push(Step::Index(i));
                    out.push(self.plain(item, depth + 1)?);
                    self.path.pop();
                }
                J::Array(out)
            }
            Value::Map(entries) | Value::Object(entries) => {
                let is_object = matches!(value, Value::Object(_));
                let mut out = serde_json::Map::with_capacity(entries.len());
                for (key, entry) in entries {
                    self.path.push(if is_object {
                        Step::Attr(key)
                    } else {
                        Step::Key(key)
                    });
                    out.insert(key.clone(), self.plain(entry, depth + 1)?);
                    self.path.pop();
                }
                J::Object(out)
            }
        })
    }

    fn typed(
        &mut self,
        ty: &Type,
        value: &'v Value,
        depth: usize,
    ) -> Result<serde_json::Value, CodecError> {
        use serde_json::Value as J;
        self.too_deep(depth)?;
        let mismatch = |this: &Self| CodecError::Mismatch {
            path: this.here(),
            expected: expected_name(ty),
            found: value_kind(value).into(),
        };
        match value {
            Value::Unknown => return Err(CodecError::UnknownValue { path: self.here() }),
            Value::Null => return Ok(J::Null),
            _ => {}
        }
        Ok(match (ty, value) {
            (Type::Dynamic, _) => {
                let concrete = value.infer_type();
                if concrete == Type::Dynamic {
                    return Err(mismatch(self));
                }
                let inner = self.typed(&concrete, value, depth + 1)?;
                // go-cty writes "value" before "type"; serde_json keeps insertion order.
                let mut wrapper = serde_json::Map::with_capacity(2);
                wrapper.insert("value".into(), inner);
                wrapper.insert("type".into(), concrete.to_json());
                J::Object(wrapper)
            }
            (Type::Bool, Value::Bool(b)) => J::Bool(*b),
            (Type::Number, Value::Number(n)) => self.number(n)?,
            (Type::String, Value::String(s)) => J::String(s.clone()),
            (
                Type::List(element) | Type::Set(element),
                Value::List(items) | Value::Set(items) | Value::Tuple(items),
            ) => {
                let mut out = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    self.path.push(Step::Index(i));
                    out.push(self.typed(element, item, depth + 1)?);
                    self.path.pop();
                }
                J::Array(out)
            }
            (Type::Tuple(types), Value::List(items) | Value::Set(items) | Value::Tuple(items)) => {
                if types.len() != items.len() {
                    return Err(CodecError::Mismatch {
                        path: self.here(),
                        expected: expected_name(ty),
                        found: format!("{} of {} elements", value_kind(value), items.len()),
                    });
                }
                let mut out = Vec::with_capacity(items.len());
                for (i, (element_ty, item)) in types.iter().zip(items).enumerate() {
                    self.path.push(Step::Index(i));
                    out.push(self.typed(element_ty, item, depth + 1)?);
                    self.path.pop();
                }
                J::Array(out)
            }
            (Type::Map(element), Value::Map(entries) | Value::Object(entries)) => {
                let mut out = serde_json::Map::with_capacity(entries.len());
                for (key, entry) in entries {
                    self.path.push(Step::Key(key));
                    out.insert(key.clone(), self.typed(element, entry, depth + 1)?);
                    self.path.pop();
                }
                J::Object(out)
            }
            (Type::Object(attributes), Value::Object(entries) | Value::Map(entries)) => {
                let paired = pair_attributes(attributes, entries).map_err(|extra| {
                    CodecError::UnexpectedAttribute {
                        path: self.here(),
                        name: extra.to_owned(),
                    }
                })?;
                let mut out = serde_json::Map::with_capacity(attributes.len());
                for (name, attribute_ty, entry) in paired {
                    let json = match entry {
                        Some((key, attribute)) => {
                            self.path.push(Step::Attr(key));
                            let json = self.typed(attribute_ty, attribute, depth + 1)?;
                            self.path.pop();
                            json
                        }
                        None => J::Null,
                    };
                    out.insert(name.to_owned(), json);
                }
                J::Object(out)
            }
            _ => return Err(mismatch(self)),
        })
    }
}
