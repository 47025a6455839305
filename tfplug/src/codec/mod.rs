//! Moving cty values to and from the wire: MessagePack (`DynamicValue.msgpack`, in
//! [`msgpack`]) and JSON (`DynamicValue.json` and raw state in `UpgradeResourceState`,
//! in [`json`]), one module per encoding as in go-cty and terraform-plugin-go's
//! `tftypes`. This module holds what both share: errors, attribute paths, the depth
//! limit. Number text (exact decimals) lives with [`Number`](crate::Number).
//!
//! Both encodings follow go-cty's `msgpack` and `json` packages, which is what Terraform
//! itself uses on the other end of the connection:
//!
//! * The *type* drives everything: the bytes say nothing about whether an array is a
//!   list, a set or a tuple, so every function takes the expected [`Type`].
//! * Null is MessagePack nil / JSON `null` at any position.
//! * Unknown is a MessagePack extension value (JSON cannot carry it). go-cty writes
//!   `d4 00 00` (fixext1, type 0) for a plain unknown and an extension of type 12 with a
//!   map of "refinements" (not null, string prefix, number bounds, length bounds) for a
//!   refined one. This model has no refinements, so both decode as [`Value::Unknown`]
//!   and every unknown is written in the plain form, which Terraform accepts anywhere.
//! * Numbers are arbitrary-precision decimals, read in any of go-cty's forms (integer,
//!   float64, decimal text). A whole number is written as its decimal text in a
//!   MessagePack string, so that Terraform decodes it exactly as it decodes the state
//!   file (see `msgpack::MsgpackEncoder::number`); one that is exactly an `f64` as a float64,
//!   and anything else as its exact decimal text, so nothing is ever rounded.
//! * At a [`Type::Dynamic`] position the concrete type travels with the value:
//!   MessagePack `[type JSON as bin, value]`, JSON `{"value": …, "type": …}`.
//!
//! Every decoder treats its input as hostile: it never panics, caps nesting at
//! [`MAX_DEPTH`], and never allocates more than the input can justify. Errors carry the
//! attribute path where the problem was (`.ports[0].port`) because they can end up in a
//! Terraform diagnostic, where "expected number, found string" alone would not help.

use std::collections::BTreeMap;
use std::fmt;

use crate::value::{Type, Value};

pub mod json;
pub mod msgpack;
mod type_notation;

pub use crate::number::parse_number_text;
pub use json::{
    decode_json, decode_json_with, encode_json, value_from_json, value_from_json_with,
    value_to_json, value_to_typed_json,
};
pub use msgpack::{decode_msgpack, encode_msgpack};

/// How deeply values may nest (each collection, structural value or dynamic wrapper is
/// a level). Terraform schemas nest a handful of levels; the cap exists so that hostile
/// input cannot exhaust the stack through recursion.
pub const MAX_DEPTH: usize = 128;

/// Why bytes could not be decoded as (or a value encoded to) the expected type.
///
/// Variants with a `path` say where in the value the problem is, in HCL-like notation
/// (`.ports[0].port`, `.tags["env"]`); an empty path means the value as a whole.
#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum CodecError {
    /// A type in cty's JSON type notation that could not be understood.
    #[error("invalid type description: {0}")]
    InvalidType(String),
    /// A problem that has no particular location.
    #[error("{0}")]
    Invalid(String),
    /// The data at `path` is not of the expected kind.
    #[error("{}: expected {expected}, found {found}", location(.path))]
    Mismatch {
        path: String,
        expected: String,
        found: String,
    },
    /// An object at `path` has an attribute its type does not declare.
    #[error("{}: unsupported attribute {name:?}", location(.path))]
    UnexpectedAttribute { path: String, name: String },
    /// The bytes at `path` are not well-formed (truncated, invalid UTF-8, a bad type
    /// description inside a dynamic value, …).
    #[error("{}: {reason}", location(.path))]
    Malformed { path: String, reason: String },
    /// JSON has no way to say "not known yet".
    #[error("{}: value is unknown, which JSON cannot represent", location(.path))]
    UnknownValue { path: String },
    /// The value nests deeper than [`MAX_DEPTH`].
    #[error("{}: value nests more than {limit} levels deep", location(.path))]
    TooDeep { path: String, limit: usize },
}

impl CodecError {
    /// The attribute path the error points at, when it has one (`""` is the whole value).
    pub fn path(&self) -> Option<&str> {
        match self {
            CodecError::InvalidType(_) | CodecError::Invalid(_) => None,
            CodecError::Mismatch { path, .. }
            | CodecError::UnexpectedAttribute { path, .. }
            | CodecError::Malformed { path, .. }
            | CodecError::UnknownValue { path }
            | CodecError::TooDeep { path, .. } => Some(path),
        }
    }
}

/// "at .a.b", or a phrase for the root, for error messages.
fn location(path: &str) -> String {
    if path.is_empty() {
        "at the top level".to_owned()
    } else {
        format!("at {path}")
    }
}

/// Options for the JSON decoders.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JsonOptions {
    /// Drop object attributes the type does not declare instead of failing. Raw state
    /// handed to `UpgradeResourceState` may still hold attributes that a newer schema
    /// removed without bumping the schema version; terraform-plugin-go offers the same
    /// switch for that case.
    pub ignore_undefined_attributes: bool,
}

// ---------------------------------------------------------------------------------
// Paths
// ---------------------------------------------------------------------------------

/// One step of the path to the part of a value being worked on. Steps borrow their
/// names from the input (or the value), so tracking the path costs nothing until an
/// error actually needs it rendered.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Step<'a> {
    Attr(&'a str),
    Index(usize),
    Key(&'a str),
}

/// The path as text: `.ports[0].port`, `.tags["env"]`.
pub(crate) fn render_path(steps: &[Step<'_>]) -> String {
    use fmt::Write as _;
    let mut out = String::new();
    for step in steps {
        // Writing to a String cannot fail.
        let _ = match step {
            Step::Attr(name) => write!(out, ".{name}"),
            Step::Index(i) => write!(out, "[{i}]"),
            Step::Key(key) => write!(out, "[{key:?}]"),
        };
    }
    out
}

/// A short name for what a type expects, for error messages. Object and tuple types
/// can be huge, so their attributes are not spelled out.
pub(crate) fn expected_name(ty: &Type) -> String {
    match ty {
        Type::Bool => "bool".into(),
        Type::Number => "number".into(),
        Type::String => "string".into(),
        Type::Dynamic => "a dynamic value".into(),
        Type::List(e) => format!("list of {}", expected_name(e)),
        Type::Set(e) => format!("set of {}", expected_name(e)),
        Type::Map(e) => format!("map of {}", expected_name(e)),
        Type::Object(_) => "object".into(),
        Type::Tuple(elems) => format!("tuple of {} elements", elems.len()),
    }
}

/// What kind of value a [`Value`] is, for error messages.
pub(crate) fn value_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Unknown => "unknown",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::List(_) => "list",
        Value::Set(_) => "set",
        Value::Map(_) => "map",
        Value::Object(_) => "object",
        Value::Tuple(_) => "tuple",
    }
}

/// Gives every attribute the type declares but the data left out a null, so that an
/// object value always has exactly its type's attributes.
pub(crate) fn fill_missing_attributes(
    out: &mut BTreeMap<String, Value>,
    attributes: &BTreeMap<String, Type>,
) {
    if out.len() == attributes.len() {
        return;
    }
    for name in attributes.keys() {
        if !out.contains_key(name) {
            out.insert(name.clone(), Value::Null);
        }
    }
}

/// Hostile input can put megabytes into a string; error messages quote only the start.
pub(crate) fn truncate_for_message(text: &str) -> String {
    const LIMIT: usize = 64;
    match text.char_indices().nth(LIMIT) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

/// An attribute of an object type, its type, and the value's entry for it, if any.
pub(crate) type PairedAttribute<'t, 'v> = (&'t str, &'t Type, Option<(&'v str, &'v Value)>);

/// Pairs each attribute of an object type with the value's entry for it, walking both
/// (sorted) maps together rather than looking every name up. `Err` names the first
/// entry the type does not declare.
pub(crate) fn pair_attributes<'t, 'v>(
    attributes: &'t BTreeMap<String, Type>,
    entries: &'v BTreeMap<String, Value>,
) -> Result<Vec<PairedAttribute<'t, 'v>>, &'v str> {
    let mut paired = Vec::with_capacity(attributes.len());
    let mut values = entries.iter().peekable();
    for (name, ty) in attributes {
        // An entry sorting before the next attribute matches no attribute at all.
        if let Some((extra, _)) = values.next_if(|(key, _)| *key < name) {
            return Err(extra);
        }
        let entry = values
            .next_if(|(key, _)| *key == name)
            .map(|(key, value)| (key.as_str(), value));
        paired.push((name.as_str(), ty, entry));
    }
    match values.next() {
        Some((extra, _)) => Err(extra),
        None => Ok(paired),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_render_like_hcl() {
        let steps = [
            Step::Attr("ports"),
            Step::Index(0),
            Step::Attr("port"),
            Step::Key("a\"b"),
        ];
        assert_eq!(render_path(&steps), r#".ports[0].port["a\"b"]"#);
        let err = CodecError::Mismatch {
            path: String::new(),
            expected: "number".into(),
            found: "string".into(),
        };
        assert_eq!(
            err.to_string(),
            "at the top level: expected number, found string"
        );
    }

    #[test]
    fn long_text_is_shortened_in_messages() {
        let long = "é".repeat(1000);
        let short = truncate_for_message(&long);
        assert_eq!(short.chars().count(), 65);
    }
}
