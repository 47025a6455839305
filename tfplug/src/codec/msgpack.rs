//! go-cty's MessagePack encoding (`DynamicValue.msgpack`): what Terraform sends and
//! expects in every call. Unknown values are extensions; whole numbers travel as their
//! decimal text (see `MsgpackEncoder::number`); a dynamic value is `[type JSON, value]`.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt;

use rmp::Marker;

use super::{
    expected_name, fill_missing_attributes, pair_attributes, render_path, truncate_for_message,
    value_kind, CodecError, Step, MAX_DEPTH,
};
use crate::number::{is_decimal_text, parse_number_text};
use crate::value::{Number, Type, Value};

/// The extension type go-cty writes for a wholly unknown value.
const UNKNOWN_EXT: i8 = 0;
/// The extension type go-cty writes for an unknown value with refinements.
const REFINED_UNKNOWN_EXT: i8 = 12;
/// go-cty rejects refinement payloads larger than this; so do we, to bound work.
const MAX_REFINEMENT_LEN: u32 = 1024;
/// Upper bound on what a collection's length prefix may make us pre-allocate; beyond it
/// vectors grow as elements actually arrive.
const MAX_PREALLOCATION: usize = 1024;

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
