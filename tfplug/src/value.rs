//! The cty value model: the types and values that Terraform exchanges with a provider.
//!
//! Terraform's type system (cty) has primitive types, collections (list, set, map),
//! structural types (object, tuple) and the `dynamic` pseudo-type, whose concrete type is
//! only known together with a value. Every value may also be null or unknown (not known
//! until apply). [`Type`] and [`Value`] model exactly that, and [`crate::codec`] moves
//! them to and from the wire.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt;

pub use crate::number::Number;

/// A cty type.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Type {
    Bool,
    Number,
    String,
    /// The pseudo-type whose concrete type travels with each value.
    Dynamic,
    List(Box<Type>),
    Set(Box<Type>),
    Map(Box<Type>),
    Object(BTreeMap<String, Type>),
    Tuple(Vec<Type>),
}

impl Type {
    pub fn list(element: Type) -> Type {
        Type::List(Box::new(element))
    }
    pub fn set(element: Type) -> Type {
        Type::Set(Box::new(element))
    }
    pub fn map(element: Type) -> Type {
        Type::Map(Box::new(element))
    }
    pub fn object<K: Into<String>>(attributes: impl IntoIterator<Item = (K, Type)>) -> Type {
        Type::Object(attributes.into_iter().map(|(k, t)| (k.into(), t)).collect())
    }
}

impl fmt::Display for Type {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Type::Bool => f.write_str("bool"),
            Type::Number => f.write_str("number"),
            Type::String => f.write_str("string"),
            Type::Dynamic => f.write_str("dynamic"),
            Type::List(e) => write!(f, "list({e})"),
            Type::Set(e) => write!(f, "set({e})"),
            Type::Map(e) => write!(f, "map({e})"),
            Type::Object(attrs) => {
                f.write_str("object({")?;
                for (i, (k, t)) in attrs.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{k}={t}")?;
                }
                f.write_str("})")
            }
            Type::Tuple(elems) => {
                f.write_str("tuple([")?;
                for (i, t) in elems.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{t}")?;
                }
                f.write_str("])")
            }
        }
    }
}

/// A cty value.
///
/// `Null` and `Unknown` may stand in for a value of any type. A value's type is not
/// stored in it: it comes from the schema, or, under [`Type::Dynamic`], travels with the
/// value on the wire.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Value {
    #[default]
    Null,
    /// Not known until apply.
    Unknown,
    Bool(bool),
    Number(Number),
    String(String),
    List(Vec<Value>),
    /// Elements of a set, in no particular order; equality ignores order.
    Set(Vec<Value>),
    Map(BTreeMap<String, Value>),
    Object(BTreeMap<String, Value>),
    Tuple(Vec<Value>),
}

impl Value {
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    pub fn is_unknown(&self) -> bool {
        matches!(self, Value::Unknown)
    }

    /// True when neither this value nor anything inside it is unknown.
    pub fn is_wholly_known(&self) -> bool {
        match self {
            Value::Unknown => false,
            Value::List(v) | Value::Set(v) | Value::Tuple(v) => {
                v.iter().all(Value::is_wholly_known)
            }
            Value::Map(m) | Value::Object(m) => m.values().all(Value::is_wholly_known),
            _ => true,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }

    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Number(n) => n.as_i64(),
            _ => None,
        }
    }

    /// The attributes of an object, or the entries of a map.
    pub fn as_object(&self) -> Option<&BTreeMap<String, Value>> {
        match self {
            Value::Object(m) | Value::Map(m) => Some(m),
            _ => None,
        }
    }

    pub fn as_object_mut(&mut self) -> Option<&mut BTreeMap<String, Value>> {
        match self {
            Value::Object(m) | Value::Map(m) => Some(m),
            _ => None,
        }
    }

    /// The elements of a list, set or tuple.
    pub fn as_elements(&self) -> Option<&[Value]> {
        match self {
            Value::List(v) | Value::Set(v) | Value::Tuple(v) => Some(v),
            _ => None,
        }
    }

    /// An attribute of an object value; `Null` when absent or when this is not an object.
    pub fn get(&self, attribute: &str) -> &Value {
        static NULL: Value = Value::Null;
        self.as_object()
            .and_then(|m| m.get(attribute))
            .unwrap_or(&NULL)
    }

    /// Semantic equality: like `==`, but set elements compare without regard to order.
    pub fn same_as(&self, other: &Value) -> bool {
        match (self, other) {
            (Value::Set(a), Value::Set(b)) => {
                a.len() == b.len()
                    && a.iter().all(|x| b.iter().any(|y| x.same_as(y)))
                    && b.iter().all(|y| a.iter().any(|x| x.same_as(y)))
            }
            (Value::List(a), Value::List(b)) | (Value::Tuple(a), Value::Tuple(b)) => {
                a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.same_as(y))
            }
            (Value::Map(a), Value::Map(b)) | (Value::Object(a), Value::Object(b)) => {
                a.len() == b.len()
                    && a.iter()
                        .zip(b)
                        .all(|((ka, va), (kb, vb))| ka == kb && va.same_as(vb))
            }
            _ => self == other,
        }
    }

    /// A best guess at the concrete type of a value, for encoding it under `dynamic`.
    /// Nulls, and the elements of empty collections, have type `dynamic`; a collection's
    /// element type merges what its elements infer.
    pub fn infer_type(&self) -> Type {
        match self {
            Value::Null | Value::Unknown => Type::Dynamic,
            Value::Bool(_) => Type::Bool,
            Value::Number(_) => Type::Number,
            Value::String(_) => Type::String,
            Value::List(v) => Type::list(common_element_type(v)),
            Value::Set(v) => Type::set(common_element_type(v)),
            Value::Map(m) => Type::map(common_element_type_iter(m.values())),
            Value::Object(m) => {
                Type::Object(m.iter().map(|(k, v)| (k.clone(), v.infer_type())).collect())
            }
            Value::Tuple(v) => Type::Tuple(v.iter().map(Value::infer_type).collect()),
        }
    }

    /// Convenience constructor for a string value.
    pub fn string(s: impl Into<String>) -> Value {
        Value::String(s.into())
    }

    /// Convenience constructor for an object value.
    pub fn object<K: Into<String>>(attributes: impl IntoIterator<Item = (K, Value)>) -> Value {
        Value::Object(attributes.into_iter().map(|(k, v)| (k.into(), v)).collect())
    }
}

fn common_element_type(values: &[Value]) -> Type {
    common_element_type_iter(values.iter())
}

/// The one type all elements of a collection can have.
///
/// Elements' own types are merged rather than the first one taken, because a null or an
/// empty collection infers `dynamic` parts: `[[], ["x"]]` must be `list(list(string))`,
/// not `list(list(dynamic))`, or Terraform would receive list elements of different
/// types, which cty rejects. When the elements really disagree (`["a", 1]`) the first
/// concrete type is kept and encoding reports the element that does not fit.
fn common_element_type_iter<'a>(values: impl Iterator<Item = &'a Value>) -> Type {
    let types: Vec<Type> = values.map(Value::infer_type).collect();
    let mut merged = Some(Type::Dynamic);
    for ty in &types {
        merged = merged.and_then(|m| unify(&m, ty));
    }
    merged.unwrap_or_else(|| {
        types
            .into_iter()
            .find(|t| *t != Type::Dynamic)
            .unwrap_or(Type::Dynamic)
    })
}

/// The most specific type that both inferred types describe: `dynamic` gives way to
/// anything, collections and tuples merge element-wise, and objects merge their
/// attributes (an attribute one object lacks is written as null). `None` when the
/// types conflict.
fn unify(a: &Type, b: &Type) -> Option<Type> {
    match (a, b) {
        (Type::Dynamic, t) | (t, Type::Dynamic) => Some(t.clone()),
        (Type::List(x), Type::List(y)) => Some(Type::list(unify(x, y)?)),
        (Type::Set(x), Type::Set(y)) => Some(Type::set(unify(x, y)?)),
        (Type::Map(x), Type::Map(y)) => Some(Type::map(unify(x, y)?)),
        (Type::Object(x), Type::Object(y)) => {
            let mut out = x.clone();
            for (name, ty) in y {
                let merged = match x.get(name) {
                    Some(other) => unify(other, ty)?,
                    None => ty.clone(),
                };
                out.insert(name.clone(), merged);
            }
            Some(Type::Object(out))
        }
        (Type::Tuple(x), Type::Tuple(y)) if x.len() == y.len() => Some(Type::Tuple(
            x.iter()
                .zip(y)
                .map(|(s, t)| unify(s, t))
                .collect::<Option<_>>()?,
        )),
        _ if a == b => Some(a.clone()),
        _ => None,
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::String(s.to_owned())
    }
}
impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::String(s)
    }
}
impl From<bool> for Value {
    fn from(b: bool) -> Self {
        Value::Bool(b)
    }
}
impl From<i64> for Value {
    fn from(i: i64) -> Self {
        Value::Number(Number::Int(i))
    }
}
impl From<i32> for Value {
    fn from(i: i32) -> Self {
        Value::Number(Number::Int(i64::from(i)))
    }
}
impl From<f64> for Value {
    fn from(f: f64) -> Self {
        Value::Number(Number::from(f))
    }
}

/// Orders map keys the way cty does (plain byte order), which `BTreeMap<String, _>`
/// already gives; exposed for codecs that must sort set elements deterministically.
pub fn compare_keys(a: &str, b: &str) -> Ordering {
    a.as_bytes().cmp(b.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sets_compare_without_order() {
        let a = Value::Set(vec!["x".into(), "y".into()]);
        let b = Value::Set(vec!["y".into(), "x".into()]);
        assert!(a.same_as(&b));
        assert!(!a.same_as(&Value::Set(vec!["x".into()])));
    }
}
