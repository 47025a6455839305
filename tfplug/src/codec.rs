//! Moving cty values to and from the wire: MessagePack (`DynamicValue.msgpack`) and
//! JSON (`DynamicValue.json` and raw state in `UpgradeResourceState`).
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
//!   file (see `MsgpackEncoder::number`); one that is exactly an `f64` as a float64,
//!   and anything else as its exact decimal text, so nothing is ever rounded.
//! * At a [`Type::Dynamic`] position the concrete type travels with the value:
//!   MessagePack `[type JSON as bin, value]`, JSON `{"value": …, "type": …}`.
//!
//! Every decoder treats its input as hostile: it never panics, caps nesting at
//! [`MAX_DEPTH`], and never allocates more than the input can justify. Errors carry the
//! attribute path where the problem was (`.ports[0].port`) because they can end up in a
//! Terraform diagnostic, where "expected number, found string" alone would not help.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use rmp::Marker;

use crate::value::{Number, Type, Value};

/// How deeply values may nest (each collection, structural value or dynamic wrapper is
/// a level). Terraform schemas nest a handful of levels; the cap exists so that hostile
/// input cannot exhaust the stack through recursion.
pub const MAX_DEPTH: usize = 128;

/// The extension type go-cty writes for a wholly unknown value.
const UNKNOWN_EXT: i8 = 0;
/// The extension type go-cty writes for an unknown value with refinements.
const REFINED_UNKNOWN_EXT: i8 = 12;
/// go-cty rejects refinement payloads larger than this; so do we, to bound work.
const MAX_REFINEMENT_LEN: u32 = 1024;
/// The largest decimal exponent accepted in number text. Decimal text is expanded
/// (exponent removed) to keep numbers exact, so an exponent like `1e-999999999` would
/// otherwise become a gigabyte of zeros. No real Terraform number comes near this.
const MAX_DECIMAL_EXPONENT: u64 = 4096;
/// Upper bound on what a collection's length prefix may make us pre-allocate; beyond it
/// vectors grow as elements actually arrive.
const MAX_PREALLOCATION: usize = 1024;

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
enum Step<'a> {
    Attr(&'a str),
    Index(usize),
    Key(&'a str),
}

/// The path as text: `.ports[0].port`, `.tags["env"]`.
fn render_path(steps: &[Step<'_>]) -> String {
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
fn expected_name(ty: &Type) -> String {
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
fn value_kind(value: &Value) -> &'static str {
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

// ---------------------------------------------------------------------------------
// Numbers
// ---------------------------------------------------------------------------------

/// Checks that `text` is a plain decimal number (`-12.5e3`; what Go's
/// `big.ParseFloat(s, 10, …)` reads, less infinities) with a bounded exponent.
/// Runs before [`Number::parse`] so that hostile text can neither make it expand an
/// enormous exponent nor overflow its arithmetic.
fn is_decimal_text(text: &str) -> bool {
    let bytes = text.as_bytes();
    let mut i = 0;
    if matches!(bytes.first(), Some(b'+' | b'-')) {
        i += 1;
    }
    let mut digits = 0;
    while bytes.get(i).is_some_and(u8::is_ascii_digit) {
        i += 1;
        digits += 1;
    }
    if bytes.get(i) == Some(&b'.') {
        i += 1;
        while bytes.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
            digits += 1;
        }
    }
    if digits == 0 {
        return false;
    }
    if matches!(bytes.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(bytes.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        let mut exponent: u64 = 0;
        let mut exponent_digits = 0;
        while let Some(d) = bytes.get(i).filter(|b| b.is_ascii_digit()) {
            exponent = exponent
                .saturating_mul(10)
                .saturating_add(u64::from(d - b'0'));
            i += 1;
            exponent_digits += 1;
        }
        if exponent_digits == 0 || exponent > MAX_DECIMAL_EXPONENT {
            return false;
        }
    }
    i == bytes.len()
}

/// Whether the f64 `f` is *exactly* the normalised decimal `norm` (`-?digits(.digits)?`).
///
/// [`Number::parse`] keeps a float whenever the float's shortest text matches, so
/// "0.1" becomes the f64 nearest 0.1. Terraform reads "0.1" as the exact decimal,
/// though, and would see the f64 (0.1000000000000000055…) as a different number if we
/// sent it back as a float64, making a provider's result "inconsistent". So text only
/// becomes a float when the float is exactly equal to it, and stays a decimal otherwise.
fn f64_equals_decimal(f: f64, norm: &str) -> bool {
    let unsigned = norm.strip_prefix('-').unwrap_or(norm);
    let (int_part, frac_part) = unsigned.split_once('.').unwrap_or((unsigned, ""));
    let digits = format!("{int_part}{frac_part}");
    let digits = digits.trim_start_matches('0');
    // Too long for the arithmetic below; such numbers simply stay decimal.
    let n: u128 = if digits.is_empty() {
        0
    } else {
        match digits.parse() {
            Ok(n) => n,
            Err(_) => return false,
        }
    };
    let Ok(k) = u32::try_from(frac_part.len()) else {
        return false;
    };
    // |f| = m * 2^e exactly.
    let bits = f.abs().to_bits();
    let exponent_bits = ((bits >> 52) & 0x7ff) as i64;
    let fraction = u128::from(bits & ((1u64 << 52) - 1));
    let (m, e) = if exponent_bits == 0 {
        (fraction, -1074i64)
    } else {
        (fraction | (1u128 << 52), exponent_bits - 1075)
    };
    if m == 0 || n == 0 {
        return m == n;
    }
    // n / 10^k == m * 2^e  <=>  n == m * 5^k * 2^(e + k)
    let Some(rhs) = 5u128.checked_pow(k).and_then(|p| p.checked_mul(m)) else {
        return false;
    };
    let shift = e + i64::from(k);
    if shift >= 0 {
        shl_exact(rhs, shift) == Some(n)
    } else {
        shl_exact(n, -shift) == Some(rhs)
    }
}

/// `x << s` when no bits are lost.
fn shl_exact(x: u128, s: i64) -> Option<u128> {
    let s = u32::try_from(s).ok()?;
    if s >= 128 || (x != 0 && x.leading_zeros() < s) {
        return None;
    }
    Some(x << s)
}

/// Reads decimal number text exactly, as cty's `ParseNumberVal` does.
///
/// Integers that fit become [`Number::Int`], text that is exactly an f64 becomes
/// [`Number::Float`], anything else [`Number::Decimal`] (normalised), so that encoding
/// the number again sends Terraform the same number it sent.
pub fn parse_number_text(text: &str) -> Option<Number> {
    if let Some(number) = parse_integer_text(text) {
        return Some(number);
    }
    if !is_decimal_text(text) {
        return None;
    }
    match Number::parse_checked_text(text) {
        Some(Number::Float(f)) => {
            let norm = Number::Float(f).to_decimal_string();
            if f64_equals_decimal(f, &norm) {
                Some(Number::from(f))
            } else {
                Some(Number::Decimal(norm))
            }
        }
        Some(n) => Some(n),
        // Finite decimal text beyond the f64 range (say 1e400) is still a fine cty
        // number; the exponent bound above keeps its expansion small.
        None => Some(Number::Decimal(crate::value::normalize_decimal(text))),
    }
}

/// The common case of [`parse_number_text`] without its formatting round trips:
/// canonical integer text (`-?[1-9][0-9]*`, at most 38 digits), which is what go-cty
/// sends for an integer too big for an `i64`. Gives exactly what the general path
/// gives, or `None` to leave the text to it.
fn parse_integer_text(text: &str) -> Option<Number> {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    if digits.len() > 38 || !digits.bytes().all(|b| b.is_ascii_digit()) || digits.starts_with('0') {
        return None;
    }
    let magnitude: u128 = digits.parse().ok()?;
    let signed = if negative {
        0i128.checked_sub_unsigned(magnitude)?
    } else {
        i128::try_from(magnitude).ok()?
    };
    if let Ok(i) = i64::try_from(signed) {
        return Some(Number::Int(i));
    }
    let f = magnitude as f64;
    // Exact when converting back gives the same integer. `Number::parse` keeps such a
    // float only when the float's own text matches, which below 1e21 is guaranteed
    // (it prints exact digits there) and above it must be checked.
    let exact = f as u128 == magnitude && (f < 1e21 || format!("{f}") == digits);
    Some(if exact {
        Number::Float(if negative { -f } else { f })
    } else {
        Number::Decimal(text.to_owned())
    })
}

// ---------------------------------------------------------------------------------
// MessagePack decoding
// ---------------------------------------------------------------------------------

/// Decodes MessagePack bytes as a value of `ty`.
///
/// Objects come back with every attribute of their type (absent ones null); an
/// attribute the type lacks is an error naming it. Bytes after the value are an error.
pub fn decode_msgpack(ty: &Type, bytes: &[u8]) -> Result<Value, CodecError> {
    let mut decoder = MsgpackDecoder {
        rd: bytes,
        path: Vec::new(),
    };
    let value = decoder.value(ty, 0)?;
    if !decoder.rd.is_empty() {
        return Err(CodecError::Malformed {
            path: String::new(),
            reason: format!(
                "unexpected data after the value ({} bytes)",
                decoder.rd.len()
            ),
        });
    }
    Ok(value)
}

/// A cursor over the input that decodes one value at a time.
struct MsgpackDecoder<'a> {
    /// The bytes not read yet.
    rd: &'a [u8],
    path: Vec<Step<'a>>,
}

fn is_ext(marker: Marker) -> bool {
    matches!(
        marker,
        Marker::FixExt1
            | Marker::FixExt2
            | Marker::FixExt4
            | Marker::FixExt8
            | Marker::FixExt16
            | Marker::Ext8
            | Marker::Ext16
            | Marker::Ext32
    )
}

/// What a MessagePack marker introduces, for error messages.
fn marker_kind(marker: Marker) -> &'static str {
    match marker {
        Marker::Null => "nil",
        Marker::True | Marker::False => "bool",
        Marker::FixPos(_)
        | Marker::FixNeg(_)
        | Marker::U8
        | Marker::U16
        | Marker::U32
        | Marker::U64
        | Marker::I8
        | Marker::I16
        | Marker::I32
        | Marker::I64 => "integer",
        Marker::F32 | Marker::F64 => "float",
        Marker::FixStr(_) | Marker::Str8 | Marker::Str16 | Marker::Str32 => "string",
        Marker::Bin8 | Marker::Bin16 | Marker::Bin32 => "binary",
        Marker::FixArray(_) | Marker::Array16 | Marker::Array32 => "array",
        Marker::FixMap(_) | Marker::Map16 | Marker::Map32 => "map",
        Marker::FixExt1
        | Marker::FixExt2
        | Marker::FixExt4
        | Marker::FixExt8
        | Marker::FixExt16
        | Marker::Ext8
        | Marker::Ext16
        | Marker::Ext32 => "extension",
        Marker::Reserved => "reserved byte 0xc1",
    }
}

impl<'a> MsgpackDecoder<'a> {
    fn here(&self) -> String {
        render_path(&self.path)
    }

    fn truncated(&self) -> CodecError {
        CodecError::Malformed {
            path: self.here(),
            reason: "unexpected end of input".into(),
        }
    }

    fn mismatch(&self, ty: &Type, marker: Marker) -> CodecError {
        CodecError::Mismatch {
            path: self.here(),
            expected: expected_name(ty),
            found: marker_kind(marker).into(),
        }
    }

    fn malformed(&self, reason: impl Into<String>) -> CodecError {
        CodecError::Malformed {
            path: self.here(),
            reason: reason.into(),
        }
    }

    /// The next marker, without consuming it.
    fn peek(&self) -> Result<Marker, CodecError> {
        self.rd
            .first()
            .map(|b| Marker::from_u8(*b))
            .ok_or_else(|| self.truncated())
    }

    /// Runs one of rmp's readers; after a successful peek its only possible failure is
    /// running out of input.
    fn read<T, E>(
        &mut self,
        f: impl FnOnce(&mut &'a [u8]) -> Result<T, E>,
    ) -> Result<T, CodecError> {
        f(&mut self.rd).map_err(|_| self.truncated())
    }

    /// The next `len` bytes, borrowed from the input.
    fn take(&mut self, len: u32) -> Result<&'a [u8], CodecError> {
        let len = usize::try_from(len).map_err(|_| self.truncated())?;
        let (head, tail) = self
            .rd
            .split_at_checked(len)
            .ok_or_else(|| self.truncated())?;
        self.rd = tail;
        Ok(head)
    }

    /// A string or binary payload (go-cty reads both wherever it wants text).
    fn text_bytes(&mut self, marker: Marker) -> Result<Option<&'a [u8]>, CodecError> {
        let len = match marker {
            Marker::FixStr(_) | Marker::Str8 | Marker::Str16 | Marker::Str32 => {
                self.read(rmp::decode::read_str_len)?
            }
            Marker::Bin8 | Marker::Bin16 | Marker::Bin32 => self.read(rmp::decode::read_bin_len)?,
            _ => return Ok(None),
        };
        self.take(len).map(Some)
    }

    fn text(&mut self, marker: Marker) -> Result<Option<&'a str>, CodecError> {
        match self.text_bytes(marker)? {
            Some(bytes) => std::str::from_utf8(bytes)
                .map(Some)
                .map_err(|_| self.malformed("string is not valid UTF-8")),
            None => Ok(None),
        }
    }

    fn value(&mut self, ty: &Type, depth: usize) -> Result<Value, CodecError> {
        if depth > MAX_DEPTH {
            return Err(CodecError::TooDeep {
                path: self.here(),
                limit: MAX_DEPTH,
            });
        }
        let marker = self.peek()?;
        // Any position, dynamic ones included, may hold an unknown or a null.
        if is_ext(marker) {
            return self.unknown();
        }
        if marker == Marker::Null {
            self.read(rmp::decode::read_nil)?;
            return Ok(Value::Null);
        }
        match ty {
            Type::Dynamic => self.dynamic(marker, depth),
            Type::Bool => match marker {
                Marker::True | Marker::False => Ok(Value::Bool(self.read(rmp::decode::read_bool)?)),
                _ => Err(self.mismatch(ty, marker)),
            },
            Type::Number => self.number(marker).map(Value::Number),
            Type::String => match self.text(marker)? {
                Some(s) => Ok(Value::String(s.to_owned())),
                None => Err(self.mismatch(ty, marker)),
            },
            Type::List(element) => self.elements(ty, element, marker, depth).map(Value::List),
            Type::Set(element) => self.elements(ty, element, marker, depth).map(Value::Set),
            Type::Tuple(types) => {
                let len = self.array_len(ty, marker)?;
                if len as usize != types.len() {
                    return Err(CodecError::Mismatch {
                        path: self.here(),
                        expected: expected_name(ty),
                        found: format!("array of {len} elements"),
                    });
                }
                let mut out = Vec::with_capacity(types.len());
                for (i, element_ty) in types.iter().enumerate() {
                    self.path.push(Step::Index(i));
                    out.push(self.value(element_ty, depth + 1)?);
                    self.path.pop();
                }
                Ok(Value::Tuple(out))
            }
            Type::Map(element) => {
                let len = self.map_len(ty, marker)?;
                let mut entries = Vec::with_capacity(self.preallocation(len));
                let mut in_order = true;
                for _ in 0..len {
                    let key = self.key()?;
                    in_order &= entries.last().is_none_or(|(last, _)| *last < key);
                    self.path.push(Step::Key(key));
                    let value = self.value(element, depth + 1)?;
                    self.path.pop();
                    entries.push((key, value));
                }
                self.sorted_map(entries, in_order, "map key")
                    .map(Value::Map)
            }
            Type::Object(attributes) => {
                let len = self.map_len(ty, marker)?;
                let mut entries = Vec::with_capacity(self.preallocation(len).min(attributes.len()));
                // go-cty writes attributes in the type's (sorted) order, so walking the
                // type alongside the input finds each attribute without a lookup. Keys
                // found that way are strictly increasing, hence free of duplicates.
                let mut in_order = true;
                let mut expected = attributes.iter();
                for _ in 0..len {
                    let key = self.key()?;
                    let mut walk = expected.clone();
                    let attribute_ty = loop {
                        match walk.next().map(|(name, ty)| (name.as_str().cmp(key), ty)) {
                            Some((Ordering::Less, _)) => {}
                            Some((Ordering::Equal, ty)) => {
                                expected = walk;
                                break Some(ty);
                            }
                            Some((Ordering::Greater, _)) | None => {
                                in_order = false;
                                break attributes.get(key);
                            }
                        }
                    };
                    let Some(attribute_ty) = attribute_ty else {
                        return Err(CodecError::UnexpectedAttribute {
                            path: self.here(),
                            name: key.to_owned(),
                        });
                    };
                    self.path.push(Step::Attr(key));
                    let value = self.value(attribute_ty, depth + 1)?;
                    self.path.pop();
                    entries.push((key, value));
                }
                let mut out = self.sorted_map(entries, in_order, "attribute")?;
                fill_missing_attributes(&mut out, attributes);
                Ok(Value::Object(out))
            }
        }
    }

    /// How many elements a length prefix may make us reserve room for: each element
    /// takes at least a byte, so the remaining input bounds any truthful length.
    fn preallocation(&self, len: u32) -> usize {
        (len as usize).min(self.rd.len()).min(MAX_PREALLOCATION)
    }

    /// Builds a map from decoded entries, refusing duplicate keys. Encoders write keys
    /// sorted, and a sorted run of keys builds a `BTreeMap` in one pass with no
    /// duplicate check needed; anything else is sorted and checked first.
    fn sorted_map(
        &self,
        mut entries: Vec<(&'a str, Value)>,
        in_order: bool,
        what: &str,
    ) -> Result<BTreeMap<String, Value>, CodecError> {
        if !in_order {
            entries.sort_by(|a, b| a.0.cmp(b.0));
            if let Some(pair) = entries.windows(2).find(|pair| pair[0].0 == pair[1].0) {
                return Err(self.malformed(format!("duplicate {what} {:?}", pair[0].0)));
            }
        }
        Ok(entries
            .into_iter()
            .map(|(key, value)| (key.to_owned(), value))
            .collect())
    }

    /// Skips an unknown value's extension. Refinements are accepted and dropped: the
    /// value model has nowhere to keep them, and an unrefined unknown is always valid.
    fn unknown(&mut self) -> Result<Value, CodecError> {
        let meta = self.read(rmp::decode::read_ext_meta)?;
        // go-cty: a zero- or one-byte payload is a plain unknown whatever its type code;
        // a longer one must be a refinement map of bounded size.
        if meta.size > 1 && (meta.typeid != REFINED_UNKNOWN_EXT || meta.size > MAX_REFINEMENT_LEN) {
            return Err(self.malformed(format!(
                "unsupported MessagePack extension type {} with {} bytes",
                meta.typeid, meta.size
            )));
        }
        self.take(meta.size)?;
        Ok(Value::Unknown)
    }

    /// A value at a dynamic position: `[type JSON, value]`.
    fn dynamic(&mut self, marker: Marker, depth: usize) -> Result<Value, CodecError> {
        let len = self.array_len(&Type::Dynamic, marker)?;
        if len != 2 {
            return Err(CodecError::Mismatch {
                path: self.here(),
                expected: "a dynamic value as a [type, value] array".into(),
                found: format!("array of {len} elements"),
            });
        }
        let type_marker = self.peek()?;
        let Some(type_json) = self.text_bytes(type_marker)? else {
            return Err(CodecError::Mismatch {
                path: self.here(),
                expected: "the JSON type of a dynamic value".into(),
                found: marker_kind(type_marker).into(),
            });
        };
        let ty = Type::from_json_bytes(type_json)
            .map_err(|e| self.malformed(format!("dynamic value has an {e}")))?;
        self.value(&ty, depth + 1)
    }

    fn number(&mut self, marker: Marker) -> Result<Number, CodecError> {
        use rmp::decode as d;
        let number = match marker {
            Marker::FixPos(_) => Number::Int(i64::from(self.read(d::read_pfix)?)),
            Marker::FixNeg(_) => Number::Int(i64::from(self.read(d::read_nfix)?)),
            Marker::U8 => Number::Int(i64::from(self.read(d::read_u8)?)),
            Marker::U16 => Number::Int(i64::from(self.read(d::read_u16)?)),
            Marker::U32 => Number::Int(i64::from(self.read(d::read_u32)?)),
            Marker::U64 => {
                let u = self.read(d::read_u64)?;
                match i64::try_from(u) {
                    Ok(i) => Number::Int(i),
                    // The decimal text of a u64 is always valid number text.
                    Err(_) => parse_number_text(&u.to_string())
                        .unwrap_or_else(|| Number::Decimal(u.to_string())),
                }
            }
            Marker::I8 => Number::Int(i64::from(self.read(d::read_i8)?)),
            Marker::I16 => Number::Int(i64::from(self.read(d::read_i16)?)),
            Marker::I32 => Number::Int(i64::from(self.read(d::read_i32)?)),
            Marker::I64 => Number::Int(self.read(d::read_i64)?),
            Marker::F32 | Marker::F64 => {
                let f = if marker == Marker::F32 {
                    f64::from(self.read(d::read_f32)?)
                } else {
                    self.read(d::read_f64)?
                };
                if f.is_nan() {
                    return Err(CodecError::Mismatch {
                        path: self.here(),
                        expected: "number".into(),
                        found: "NaN".into(),
                    });
                }
                Number::from(f)
            }
            _ => match self.text(marker)? {
                Some(text) => parse_number_text(text).ok_or_else(|| CodecError::Mismatch {
                    path: self.here(),
                    expected: "number".into(),
                    found: format!("string {:?}", truncate_for_message(text)),
                })?,
                None => return Err(self.mismatch(&Type::Number, marker)),
            },
        };
        Ok(number)
    }

    fn array_len(&mut self, ty: &Type, marker: Marker) -> Result<u32, CodecError> {
        match marker {
            Marker::FixArray(_) | Marker::Array16 | Marker::Array32 => {
                self.read(rmp::decode::read_array_len)
            }
            _ => Err(self.mismatch(ty, marker)),
        }
    }

    fn map_len(&mut self, ty: &Type, marker: Marker) -> Result<u32, CodecError> {
        match marker {
            Marker::FixMap(_) | Marker::Map16 | Marker::Map32 => {
                self.read(rmp::decode::read_map_len)
            }
            _ => Err(self.mismatch(ty, marker)),
        }
    }

    /// A map key or attribute name.
    fn key(&mut self) -> Result<&'a str, CodecError> {
        let marker = self.peek()?;
        self.text(marker)?.ok_or_else(|| CodecError::Mismatch {
            path: self.here(),
            expected: "string key".into(),
            found: marker_kind(marker).into(),
        })
    }

    /// The elements of a list or set.
    fn elements(
        &mut self,
        ty: &Type,
        element: &Type,
        marker: Marker,
        depth: usize,
    ) -> Result<Vec<Value>, CodecError> {
        let len = self.array_len(ty, marker)?;
        let mut out = Vec::with_capacity(self.preallocation(len));
        for i in 0..len as usize {
            self.path.push(Step::Index(i));
            out.push(self.value(element, depth + 1)?);
            self.path.pop();
        }
        Ok(out)
    }
}

/// Gives every attribute the type declares but the data left out a null, so that an
/// object value always has exactly its type's attributes.
fn fill_missing_attributes(out: &mut BTreeMap<String, Value>, attributes: &BTreeMap<String, Type>) {
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
fn truncate_for_message(text: &str) -> String {
    const LIMIT: usize = 64;
    match text.char_indices().nth(LIMIT) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

// ---------------------------------------------------------------------------------
// MessagePack encoding
// ---------------------------------------------------------------------------------

/// Encodes a value of `ty` as MessagePack.
///
/// The value must fit the type. Where a value variant is interchangeable on the wire it
/// is accepted for any of the matching types (a `Value::List`, `Set` or `Tuple` for a
/// list, set or tuple type; a `Value::Map` or `Object` for a map or object type), much
/// as go-cty converts a value to the requested type before encoding. Objects are
/// written with all of their type's attributes, missing ones as nil; set elements are
/// written sorted by their encoding, so equal sets always produce equal bytes.
pub fn encode_msgpack(ty: &Type, value: &Value) -> Result<Vec<u8>, CodecError> {
    let mut encoder = MsgpackEncoder {
        out: Vec::new(),
        path: Vec::new(),
    };
    encoder.value(ty, value, 0)?;
    Ok(encoder.out)
}

struct MsgpackEncoder<'v> {
    out: Vec<u8>,
    path: Vec<Step<'v>>,
}

/// An attribute of an object type, its type, and the value's entry for it, if any.
type PairedAttribute<'t, 'v> = (&'t str, &'t Type, Option<(&'v str, &'v Value)>);

/// Pairs each attribute of an object type with the value's entry for it, walking both
/// (sorted) maps together rather than looking every name up. `Err` names the first
/// entry the type does not declare.
fn pair_attributes<'t, 'v>(
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

/// Writing into a `Vec` cannot fail, but rmp's signatures allow for it.
fn write_failed(e: impl fmt::Display) -> CodecError {
    CodecError::Invalid(format!("could not write MessagePack: {e}"))
}

impl<'v> MsgpackEncoder<'v> {
    fn here(&self) -> String {
        render_path(&self.path)
    }

    fn mismatch(&self, ty: &Type, value: &Value) -> CodecError {
        CodecError::Mismatch {
            path: self.here(),
            expected: expected_name(ty),
            found: value_kind(value).into(),
        }
    }

    fn len_u32(&self, len: usize) -> Result<u32, CodecError> {
        u32::try_from(len).map_err(|_| CodecError::Malformed {
            path: self.here(),
            reason: format!("{len} is too long for MessagePack"),
        })
    }

    fn write_str(&mut self, s: &str) -> Result<(), CodecError> {
        let len = self.len_u32(s.len())?;
        rmp::encode::write_str_len(&mut self.out, len).map_err(write_failed)?;
        self.out.extend_from_slice(s.as_bytes());
        Ok(())
    }

    fn value(&mut self, ty: &Type, value: &'v Value, depth: usize) -> Result<(), CodecError> {
        if depth > MAX_DEPTH {
            return Err(CodecError::TooDeep {
                path: self.here(),
                limit: MAX_DEPTH,
            });
        }
        match value {
            Value::Unknown => {
                rmp::encode::write_ext_meta(&mut self.out, 1, UNKNOWN_EXT).map_err(write_failed)?;
                self.out.push(0);
                return Ok(());
            }
            Value::Null => {
                rmp::encode::write_nil(&mut self.out).map_err(write_failed)?;
                return Ok(());
            }
            _ => {}
        }
        match (ty, value) {
            (Type::Dynamic, _) => {
                let concrete = value.infer_type();
                if concrete == Type::Dynamic {
                    // Only null and unknown infer as dynamic, and they were written above.
                    return Err(self.mismatch(ty, value));
                }
                rmp::encode::write_array_len(&mut self.out, 2).map_err(write_failed)?;
                rmp::encode::write_bin(&mut self.out, &concrete.to_json_bytes())
                    .map_err(write_failed)?;
                self.value(&concrete, value, depth + 1)
            }
            (Type::Bool, Value::Bool(b)) => {
                rmp::encode::write_bool(&mut self.out, *b).map_err(write_failed)
            }
            (Type::Number, Value::Number(n)) => self.number(n),
            (Type::String, Value::String(s)) => self.write_str(s),
            (
                Type::List(element),
                Value::List(elements) | Value::Set(elements) | Value::Tuple(elements),
            ) => {
                let len = self.len_u32(elements.len())?;
                rmp::encode::write_array_len(&mut self.out, len).map_err(write_failed)?;
                for (i, element_value) in elements.iter().enumerate() {
                    self.path.push(Step::Index(i));
                    self.value(element, element_value, depth + 1)?;
                    self.path.pop();
                }
                Ok(())
            }
            (
                Type::Set(element),
                Value::List(elements) | Value::Set(elements) | Value::Tuple(elements),
            ) => self.set(element, elements, depth),
            (
                Type::Tuple(types),
                Value::List(elements) | Value::Set(elements) | Value::Tuple(elements),
            ) => {
                if types.len() != elements.len() {
                    return Err(CodecError::Mismatch {
                        path: self.here(),
                        expected: expected_name(ty),
                        found: format!("{} of {} elements", value_kind(value), elements.len()),
                    });
                }
                let len = self.len_u32(elements.len())?;
                rmp::encode::write_array_len(&mut self.out, len).map_err(write_failed)?;
                for (i, (element_ty, element_value)) in types.iter().zip(elements).enumerate() {
                    self.path.push(Step::Index(i));
                    self.value(element_ty, element_value, depth + 1)?;
                    self.path.pop();
                }
                Ok(())
            }
            (Type::Map(element), Value::Map(entries) | Value::Object(entries)) => {
                let len = self.len_u32(entries.len())?;
                rmp::encode::write_map_len(&mut self.out, len).map_err(write_failed)?;
                for (key, entry) in entries {
                    self.write_str(key)?;
                    self.path.push(Step::Key(key));
                    self.value(element, entry, depth + 1)?;
                    self.path.pop();
                }
                Ok(())
            }
            (Type::Object(attributes), Value::Object(entries) | Value::Map(entries)) => {
                let paired = pair_attributes(attributes, entries).map_err(|extra| {
                    CodecError::UnexpectedAttribute {
                        path: self.here(),
                        name: extra.to_owned(),
                    }
                })?;
                let len = self.len_u32(attributes.len())?;
                rmp::encode::write_map_len(&mut self.out, len).map_err(write_failed)?;
                for (name, attribute_ty, entry) in paired {
                    self.write_str(name)?;
                    match entry {
                        Some((key, attribute)) => {
                            self.path.push(Step::Attr(key));
                            self.value(attribute_ty, attribute, depth + 1)?;
                            self.path.pop();
                        }
                        None => rmp::encode::write_nil(&mut self.out).map_err(write_failed)?,
                    }
                }
                Ok(())
            }
            _ => Err(self.mismatch(ty, value)),
        }
    }

    /// Writes set elements in a canonical order (sorted by their encoded bytes), so the
    /// encoding of a set does not depend on the order its elements were collected in.
    fn set(
        &mut self,
        element: &Type,
        elements: &'v [Value],
        depth: usize,
    ) -> Result<(), CodecError> {
        let len = self.len_u32(elements.len())?;
        rmp::encode::write_array_len(&mut self.out, len).map_err(write_failed)?;
        let base = self.out.len();
        let mut spans = Vec::with_capacity(elements.len());
        for (i, element_value) in elements.iter().enumerate() {
            let start = self.out.len() - base;
            self.path.push(Step::Index(i));
            self.value(element, element_value, depth + 1)?;
            self.path.pop();
            spans.push(start..self.out.len() - base);
        }
        let encoded = self.out.split_off(base);
        let bytes_of = |span: &std::ops::Range<usize>| encoded.get(span.clone()).unwrap_or(&[]);
        spans.sort_by(|a, b| bytes_of(a).cmp(bytes_of(b)));
        for span in &spans {
            self.out.extend_from_slice(bytes_of(span));
        }
        Ok(())
    }

    /// Writes a whole number as its decimal text (a MessagePack string), which go-cty
    /// reads with `ParseNumberVal`: the very function its JSON decoder uses on the
    /// state file. So a whole number Terraform reads back from the state and the same
    /// number from this plugin are one and the same `big.Float`, and Terraform before
    /// 1.15, which compares refreshed and prior state objects structurally (their
    /// cached decoded values included, hashicorp/terraform#36403), sees no change
    /// where there is none. As a MessagePack int (go-cty's own choice) it would decode
    /// with another precision and count as drift in `plan -refresh-only
    /// -detailed-exitcode`. Other numbers go as go-cty writes them: a float64 when
    /// exactly one, else their exact decimal text.
    fn number(&mut self, n: &Number) -> Result<(), CodecError> {
        match n {
            Number::Int(i) => self.write_str(&i.to_string())?,
            Number::Float(f) if f.is_nan() => {
                return Err(CodecError::Mismatch {
                    path: self.here(),
                    expected: "number".into(),
                    found: "NaN".into(),
                });
            }
            // go-cty writes the infinities as float64 too.
            Number::Float(f) if f.is_infinite() => {
                rmp::encode::write_f64(&mut self.out, *f).map_err(write_failed)?;
            }
            Number::Float(f) if f.fract() == 0.0 => {
                // Whole: as text, like an Int (and beyond i64 go-cty sends text too).
                self.write_str(&n.to_decimal_string())?;
            }
            Number::Float(f) => {
                rmp::encode::write_f64(&mut self.out, *f).map_err(write_failed)?;
            }
            Number::Decimal(text) => {
                if !is_decimal_text(text) {
                    return Err(CodecError::Mismatch {
                        path: self.here(),
                        expected: "number".into(),
                        found: format!("decimal text {:?}", truncate_for_message(text)),
                    });
                }
                self.write_str(text)?;
            }
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------
// JSON
// ---------------------------------------------------------------------------------

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_text_grammar() {
        for ok in [
            "0",
            "-1",
            "+1",
            "1.5",
            ".5",
            "5.",
            "1e3",
            "1E-3",
            "-1.25e+10",
            "1e4096",
        ] {
            assert!(is_decimal_text(ok), "{ok}");
        }
        for bad in [
            "",
            "-",
            ".",
            "e5",
            "1e",
            "1e+",
            "1.2.3",
            " 1",
            "1 ",
            "0x10",
            "inf",
            "NaN",
            "1_000",
            "1e4097",
            "0e9223372036854775807",
            "1e-99999999999999999999",
        ] {
            assert!(!is_decimal_text(bad), "{bad}");
        }
    }

    #[test]
    fn exact_floats_are_recognised() {
        assert!(f64_equals_decimal(0.5, "0.5"));
        assert!(f64_equals_decimal(-1.25, "-1.25"));
        assert!(f64_equals_decimal(1e22, "10000000000000000000000"));
        assert!(!f64_equals_decimal(0.1, "0.1"));
        assert!(!f64_equals_decimal(1e23, "100000000000000000000000"));
        assert!(f64_equals_decimal(0.0, "0"));
        // 2^-1074, the smallest subnormal: too many digits for the check, so "not exact".
        assert!(!f64_equals_decimal(f64::from_bits(1), "0.000…"));
    }

    #[test]
    fn number_text_keeps_what_terraform_meant() {
        assert_eq!(parse_number_text("42"), Some(Number::Int(42)));
        assert!(matches!(parse_number_text("0.5"), Some(Number::Float(f)) if f == 0.5));
        assert!(matches!(parse_number_text("0.1"), Some(Number::Decimal(ref s)) if s == "0.1"));
        assert!(matches!(parse_number_text("1.0"), Some(Number::Int(1))));
        assert!(matches!(
            parse_number_text("1e400"),
            Some(Number::Decimal(ref s)) if s.len() == 401 && s.starts_with('1')
        ));
        assert_eq!(parse_number_text("0e4096"), Some(Number::Int(0)));
        assert_eq!(parse_number_text("abc"), None);
        assert_eq!(parse_number_text("1e99999"), None);
    }

    /// The general path of `parse_number_text`, for checking the integer shortcut.
    fn parse_number_text_slowly(text: &str) -> Option<Number> {
        match Number::parse(text)? {
            Number::Float(f) => {
                let norm = Number::Float(f).to_decimal_string();
                Some(if f64_equals_decimal(f, &norm) {
                    Number::from(f)
                } else {
                    Number::Decimal(norm)
                })
            }
            n => Some(n),
        }
    }

    /// Same variant and same text, which is stricter than `Number`'s `==`.
    fn identical(a: &Option<Number>, b: &Option<Number>) -> bool {
        format!("{a:?}") == format!("{b:?}")
    }

    #[test]
    fn integer_shortcut_edges() {
        for text in [
            "9223372036854775807",
            "9223372036854775808",
            "-9223372036854775808",
            "-9223372036854775809",
            "18446744073709551616",
            "1180591620717411303424",
            "10000000000000000000000",
            "100000000000000000000000",
            "99999999999999999999999999999999999999",
            "-170141183460469231731687303715884105728",
            "340282366920938463463374607431768211455",
        ] {
            let fast = parse_integer_text(text);
            if fast.is_some() {
                assert!(identical(&fast, &parse_number_text_slowly(text)), "{text}");
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn integer_shortcut_agrees_with_the_general_path(
            text in "-?[1-9][0-9]{0,38}",
            power in 0u32..127,
        ) {
            for text in [text, (1u128 << power).to_string(), format!("-{}", 1u128 << power)] {
                let fast = parse_integer_text(&text);
                if fast.is_some() {
                    let slow = parse_number_text_slowly(&text);
                    proptest::prop_assert!(identical(&fast, &slow), "{}: {:?} vs {:?}", text, fast, slow);
                }
            }
        }
    }

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
