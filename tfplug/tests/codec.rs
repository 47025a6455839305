//! The cty codec against go-cty's encodings: known bytes, round trips, hostile input.

use std::collections::BTreeMap;

use proptest::prelude::*;
use tfplug::codec::{
    decode_json, decode_json_with, decode_msgpack, encode_json, encode_msgpack, value_from_json,
    value_to_json, CodecError, JsonOptions, MAX_DEPTH,
};
use tfplug::{Number, Type, Value};

fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn unhex(text: &str) -> Vec<u8> {
    text.split_whitespace()
        .map(|b| u8::from_str_radix(b, 16).unwrap())
        .collect()
}

fn num(text: &str) -> Value {
    Value::Number(Number::parse(text).unwrap())
}

/// Encodes, checks the decoded value is the same (sets in any order), and returns the bytes.
fn round_trip(ty: &Type, value: &Value) -> Vec<u8> {
    let bytes = encode_msgpack(ty, value).unwrap();
    let back = decode_msgpack(ty, &bytes).unwrap();
    assert!(
        back.same_as(value),
        "{ty}: {value:?} came back as {back:?} ({})",
        hex(&bytes)
    );
    bytes
}

fn everything_type() -> Type {
    Type::object([
        ("name", Type::String),
        ("count", Type::Number),
        ("enabled", Type::Bool),
        (
            "ports",
            Type::list(Type::object([
                ("port", Type::Number),
                ("protocol", Type::String),
            ])),
        ),
        ("tags", Type::map(Type::String)),
        ("ids", Type::set(Type::String)),
        ("pair", Type::Tuple(vec![Type::String, Type::Number])),
        ("extra", Type::Dynamic),
        ("nested_sets", Type::set(Type::set(Type::Number))),
    ])
}

fn everything_value() -> Value {
    Value::object([
        ("name", Value::string("wéb ☃ 𝄞")),
        ("count", num("123456789012345678901234567890")),
        ("enabled", true.into()),
        (
            "ports",
            Value::List(vec![
                Value::object([("port", 80.into()), ("protocol", "tcp".into())]),
                Value::object([("port", Value::Unknown), ("protocol", Value::Null)]),
            ]),
        ),
        (
            "tags",
            Value::Map(BTreeMap::from([
                ("env".to_owned(), "prod".into()),
                ("empty".to_owned(), "".into()),
            ])),
        ),
        (
            "ids",
            Value::Set(vec!["b".into(), "a".into(), Value::Unknown]),
        ),
        ("pair", Value::Tuple(vec!["x".into(), Value::from(0.1)])),
        (
            "extra",
            Value::object([
                ("deep", Value::object([("n", Value::from(-5))])),
                ("list", Value::List(vec!["p".into(), "q".into()])),
                ("nothing", Value::Null),
            ]),
        ),
        (
            "nested_sets",
            Value::Set(vec![
                Value::Set(vec![2.into(), 1.into()]),
                Value::Set(vec![]),
            ]),
        ),
    ])
}

// ---------------------------------------------------------------------------------
// Known bytes (what go-cty writes)
// ---------------------------------------------------------------------------------

#[test]
fn object_bytes_match_go_cty() {
    let ty = Type::object([("a", Type::String), ("b", Type::Number)]);
    let value = Value::object([("a", "x".into()), ("b", 1.into())]);
    let bytes = round_trip(&ty, &value);
    assert_eq!(hex(&bytes), "82 a1 61 a1 78 a1 62 a1 31");
}

#[test]
fn missing_attributes_are_written_as_nil() {
    let ty = Type::object([("a", Type::String), ("b", Type::Number)]);
    let bytes = encode_msgpack(&ty, &Value::object([("b", 1.into())])).unwrap();
    assert_eq!(hex(&bytes), "82 a1 61 c0 a1 62 a1 31");
}

#[test]
fn unknown_and_null_bytes() {
    for ty in [
        Type::String,
        Type::list(Type::Number),
        Type::Dynamic,
        everything_type(),
    ] {
        assert_eq!(hex(&round_trip(&ty, &Value::Unknown)), "d4 00 00", "{ty}");
        assert_eq!(hex(&round_trip(&ty, &Value::Null)), "c0", "{ty}");
    }
}

#[test]
fn dynamic_string_bytes_match_go_cty() {
    // go-cty: EncodeArrayLen(2), EncodeBytes(type JSON) (bin 8), then the value.
    let bytes = round_trip(&Type::Dynamic, &"hi".into());
    assert_eq!(
        hex(&bytes),
        "92 c4 08 22 73 74 72 69 6e 67 22 a2 68 69",
        "[bin \"\\\"string\\\"\", \"hi\"]"
    );
    // Older encoders put the type JSON in a str; both are read.
    let with_str = unhex("92 a8 22 73 74 72 69 6e 67 22 a2 68 69");
    assert_eq!(
        decode_msgpack(&Type::Dynamic, &with_str).unwrap(),
        "hi".into()
    );
}

/// Whole numbers go as decimal text, which go-cty reads with `ParseNumberVal`, the
/// function that also reads the state file: so Terraform holds the same number, with
/// the same precision, whether it came from this plugin or from the state, and before
/// 1.15 compares those structurally (hashicorp/terraform#36403). Other numbers go as
/// go-cty writes them.
#[test]
fn number_bytes() {
    let text = |s: &str| {
        let mut bytes = vec![0xa0 | s.len() as u8];
        bytes.extend_from_slice(s.as_bytes());
        hex(&bytes)
    };
    let cases: Vec<(Value, String)> = vec![
        (0.into(), text("0")),
        (127.into(), text("127")),
        (8080.into(), text("8080")),
        ((-33).into(), text("-33")),
        (i64::MIN.into(), text("-9223372036854775808")),
        (Value::Number(Number::Float(3.0)), text("3")),
        (Value::from(0.5), "cb 3f e0 00 00 00 00 00 00".into()),
        (Value::from(0.1), "cb 3f b9 99 99 99 99 99 9a".into()),
        (
            Value::Number(Number::Float(f64::INFINITY)),
            "cb 7f f0 00 00 00 00 00 00".into(),
        ),
    ];
    for (value, expected) in &cases {
        let bytes = encode_msgpack(&Type::Number, value).unwrap();
        assert_eq!(hex(&bytes), *expected, "{value:?}");
        assert_eq!(decode_msgpack(&Type::Number, &bytes).unwrap(), *value);
    }
    let big = "123456789012345678901234567890";
    let bytes = round_trip(&Type::Number, &num(big));
    let mut expected = vec![0xa0 | big.len() as u8];
    expected.extend_from_slice(big.as_bytes());
    assert_eq!(bytes, expected);
}

#[test]
fn decodes_every_msgpack_number_form() {
    let cases: &[(&str, &str)] = &[
        ("cc ff", "255"),
        ("cd ff ff", "65535"),
        ("ce ff ff ff ff", "4294967295"),
        ("cf ff ff ff ff ff ff ff ff", "18446744073709551615"),
        ("cf 80 00 00 00 00 00 00 00", "9223372036854775808"),
        ("d0 80", "-128"),
        ("d2 80 00 00 00", "-2147483648"),
        ("ca 3f c0 00 00", "1.5"),
        ("cb 40 09 21 fb 54 44 2d 18", "3.141592653589793"),
        // Number text, as go-cty sends a number that is neither i64 nor exact f64.
        ("a3 30 2e 31", "0.1"),
        ("a4 2d 31 65 32", "-100"),
    ];
    for (bytes, text) in cases {
        let value = decode_msgpack(&Type::Number, &unhex(bytes)).unwrap();
        let Value::Number(n) = &value else {
            panic!("{bytes}: {value:?}")
        };
        assert_eq!(n.to_decimal_string(), *text, "{bytes}");
    }
    // u64::MAX stays exact and is written back as exact text.
    let max = decode_msgpack(&Type::Number, &unhex("cf ff ff ff ff ff ff ff ff")).unwrap();
    let again = encode_msgpack(&Type::Number, &max).unwrap();
    assert_eq!(again, b"\xb418446744073709551615");
}

#[test]
fn decimal_text_is_sent_back_as_text() {
    // Terraform sends config "0.1" as text; sending back a float64 would be a different
    // number to Terraform ("Provider produced inconsistent result").
    let value = decode_msgpack(&Type::Number, &unhex("a3 30 2e 31")).unwrap();
    assert_eq!(
        hex(&encode_msgpack(&Type::Number, &value).unwrap()),
        "a3 30 2e 31"
    );
    // A float64 stays a float64.
    let float = unhex("cb 3f b9 99 99 99 99 99 9a");
    let value = decode_msgpack(&Type::Number, &float).unwrap();
    assert_eq!(encode_msgpack(&Type::Number, &value).unwrap(), float);
}

#[test]
fn refined_unknowns_decode_as_unknown() {
    // go-cty's refined unknowns: ext 12 with a map of refinements.
    let cases = [
        // not null: {1: false}
        "c7 03 0c 81 01 c2",
        // not null, string prefix "ab": {1: false, 2: "ab"}
        "c7 07 0c 82 01 c2 02 a2 61 62",
        // one-byte payloads of any type are plain unknowns
        "d4 0c 00",
        "d4 05 07",
        // zero-length ext 8
        "c7 00 00",
    ];
    for case in cases {
        assert_eq!(
            decode_msgpack(&Type::String, &unhex(case)).unwrap(),
            Value::Unknown,
            "{case}"
        );
    }
    // A refined unknown collection inside an object.
    let ty = Type::object([("ids", Type::set(Type::String))]);
    let bytes = unhex("81 a3 69 64 73 c7 05 0c 82 01 c2 05 01");
    assert_eq!(
        decode_msgpack(&ty, &bytes).unwrap(),
        Value::object([("ids", Value::Unknown)])
    );
}

#[test]
fn bad_extensions_are_errors() {
    for case in ["d5 03 00 00", "c7 03 01 81 01 c2"] {
        let err = decode_msgpack(&Type::String, &unhex(case)).unwrap_err();
        assert!(err.to_string().contains("extension type"), "{case}: {err}");
    }
    // Oversized refinements are refused without reading them.
    let mut big = unhex("c9 00 01 00 00 0c");
    big.extend(std::iter::repeat_n(0u8, 65536));
    assert!(decode_msgpack(&Type::String, &big).is_err());
}

#[test]
fn sets_encode_in_a_deterministic_order() {
    let ty = Type::set(Type::String);
    let a = encode_msgpack(&ty, &Value::Set(vec!["b".into(), "a".into()])).unwrap();
    let b = encode_msgpack(&ty, &Value::Set(vec!["a".into(), "b".into()])).unwrap();
    assert_eq!(a, b);
    assert_eq!(hex(&a), "92 a1 61 a1 62");
}

// ---------------------------------------------------------------------------------
// Round trips
// ---------------------------------------------------------------------------------

#[test]
fn round_trips_every_kind() {
    let cases: Vec<(Type, Value)> = vec![
        (Type::String, Value::Null),
        (Type::String, Value::Unknown),
        (Type::String, "".into()),
        (Type::String, "héllo wörld ☃ 𝄞 中文".into()),
        (Type::String, "x".repeat(70_000).into()),
        (Type::Bool, true.into()),
        (Type::Bool, false.into()),
        (Type::Number, num("123456789012345678901234567890")),
        (
            Type::Number,
            num("-123456789012345678901234567890.000000000001"),
        ),
        (Type::Number, (-42).into()),
        (Type::Number, Value::from(0.1)),
        (Type::Number, Value::from(-2.5e-300)),
        (Type::Number, Value::from(1e300)),
        (Type::Number, num("18446744073709551615")),
        (Type::Number, Value::Number(Number::Float(f64::INFINITY))),
        (Type::list(Type::String), Value::List(vec![])),
        (Type::set(Type::String), Value::Set(vec![])),
        (Type::map(Type::String), Value::Map(BTreeMap::new())),
        (
            Type::object(Vec::<(&str, Type)>::new()),
            Value::Object(BTreeMap::new()),
        ),
        (Type::Tuple(vec![]), Value::Tuple(vec![])),
        (
            Type::list(Type::String),
            Value::List(vec!["a".into(), Value::Null, Value::Unknown]),
        ),
        (Type::Dynamic, Value::List(vec![])),
        (Type::Dynamic, 7.into()),
        (
            Type::Dynamic,
            Value::object([
                (
                    "a",
                    Value::object([("b", Value::List(vec![1.into(), 2.into()]))]),
                ),
                (
                    "c",
                    Value::Map(BTreeMap::from([("k".to_owned(), true.into())])),
                ),
                ("d", Value::Tuple(vec!["x".into(), Value::Null])),
            ]),
        ),
        (
            Type::list(Type::Dynamic),
            Value::List(vec!["a".into(), 1.into(), Value::Null]),
        ),
        (everything_type(), everything_value()),
        (
            Type::list(everything_type()),
            Value::List(vec![everything_value(), Value::Null]),
        ),
    ];
    for (ty, value) in cases {
        round_trip(&ty, &value);
    }
}

#[test]
fn negative_zero_is_zero() {
    let minus_zero = Value::Number(Number::Float(-0.0));
    assert_eq!(minus_zero, Value::from(0));
    assert_eq!(hex(&round_trip(&Type::Number, &minus_zero)), "a1 30");
}

#[test]
fn dynamic_sets_encode_the_same_in_any_order() {
    // The element type is merged from all elements (an empty list says nothing about
    // its element type), so the order of a set's elements cannot change the type sent.
    let a = Value::Set(vec![Value::List(vec![]), Value::List(vec![false.into()])]);
    let b = Value::Set(vec![Value::List(vec![false.into()]), Value::List(vec![])]);
    let bytes = encode_msgpack(&Type::Dynamic, &a).unwrap();
    assert_eq!(bytes, encode_msgpack(&Type::Dynamic, &b).unwrap());
    let type_json = br#"["set",["list","bool"]]"#;
    assert_eq!(bytes.get(3..3 + type_json.len()), Some(&type_json[..]));
    assert!(decode_msgpack(&Type::Dynamic, &bytes).unwrap().same_as(&a));
    // Objects with nulls merge too: list(object({a: string})), not {a: dynamic}.
    let list = Value::List(vec![
        Value::object([("a", Value::Null)]),
        Value::object([("a", "x".into())]),
    ]);
    assert_eq!(
        list.infer_type(),
        Type::list(Type::object([("a", Type::String)]))
    );
    round_trip(&Type::Dynamic, &list);
}

#[test]
fn decoded_objects_have_every_attribute() {
    let ty = Type::object([("a", Type::String), ("b", Type::Number)]);
    // {a: "x"} and {} as sent by an encoder that leaves nulls out.
    let value = decode_msgpack(&ty, &unhex("81 a1 61 a1 78")).unwrap();
    assert_eq!(
        value,
        Value::object([("a", "x".into()), ("b", Value::Null)])
    );
    let value = decode_msgpack(&ty, &unhex("80")).unwrap();
    assert_eq!(
        value,
        Value::object([("a", Value::Null), ("b", Value::Null)])
    );
}

#[test]
fn keys_in_any_order_but_never_twice() {
    let ty = Type::object([("a", Type::String), ("b", Type::Number)]);
    let expected = Value::object([("a", "x".into()), ("b", 1.into())]);
    assert_eq!(
        decode_msgpack(&ty, &unhex("82 a1 62 01 a1 61 a1 78")).unwrap(),
        expected
    );
    let err = decode_msgpack(&ty, &unhex("82 a1 61 a1 78 a1 61 a1 79")).unwrap_err();
    assert!(
        err.to_string().contains("duplicate attribute \"a\""),
        "{err}"
    );
    let err = decode_msgpack(&ty, &unhex("83 a1 62 01 a1 61 a1 78 a1 62 02")).unwrap_err();
    assert!(
        err.to_string().contains("duplicate attribute \"b\""),
        "{err}"
    );

    let ty = Type::map(Type::Number);
    let value = decode_msgpack(&ty, &unhex("82 a1 7a 01 a1 79 02")).unwrap();
    assert_eq!(
        value,
        Value::Map(BTreeMap::from([
            ("y".to_owned(), 2.into()),
            ("z".to_owned(), 1.into())
        ]))
    );
    let err = decode_msgpack(&ty, &unhex("82 a1 7a 01 a1 7a 02")).unwrap_err();
    assert!(err.to_string().contains("duplicate map key \"z\""), "{err}");
}

// ---------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------

#[test]
fn errors_say_where_and_what() {
    let ty = everything_type();
    let mut value = everything_value();
    value.as_object_mut().unwrap().insert(
        "ports".into(),
        Value::List(vec![Value::object([("port", "eighty".into())])]),
    );
    let err = encode_msgpack(&ty, &value).unwrap_err();
    assert_eq!(
        err,
        CodecError::Mismatch {
            path: ".ports[0].port".into(),
            expected: "number".into(),
            found: "string".into(),
        }
    );
    assert_eq!(
        err.to_string(),
        "at .ports[0].port: expected number, found string"
    );

    // The same on decoding: {ports: [{port: "x"}]}.
    let ty = Type::object([("ports", Type::list(Type::object([("port", Type::Number)])))]);
    let bytes = unhex("81 a5 70 6f 72 74 73 91 81 a4 70 6f 72 74 a1 78");
    let err = decode_msgpack(&ty, &bytes).unwrap_err();
    assert_eq!(err.path(), Some(".ports[0].port"));
    assert!(err.to_string().contains("expected number"), "{err}");

    // An attribute the type does not have is named.
    let bytes = unhex("81 a5 70 6f 72 74 73 91 81 a4 70 6f 72 78 01");
    let err = decode_msgpack(&ty, &bytes).unwrap_err();
    assert_eq!(
        err,
        CodecError::UnexpectedAttribute {
            path: ".ports[0]".into(),
            name: "porx".into(),
        }
    );
    let err = encode_msgpack(&ty, &Value::object([("nope", Value::Null)])).unwrap_err();
    assert!(err.to_string().contains("\"nope\""), "{err}");

    // Map keys are quoted in paths.
    let ty = Type::map(Type::Bool);
    let err = decode_msgpack(&ty, &unhex("81 a3 65 6e 76 01")).unwrap_err();
    assert_eq!(err.path(), Some(r#"["env"]"#));
}

#[test]
fn malformed_input_is_an_error_not_a_panic() {
    let ty = everything_type();
    let good = encode_msgpack(&ty, &everything_value()).unwrap();
    // Every truncation fails cleanly.
    for len in 0..good.len() {
        assert!(decode_msgpack(&ty, &good[..len]).is_err(), "prefix {len}");
    }
    // Trailing bytes are refused.
    let mut long = good.clone();
    long.push(0);
    assert!(decode_msgpack(&ty, &long).is_err());
    // Lengths that promise more than there is.
    for case in [
        "dd ff ff ff ff",
        "df ff ff ff ff",
        "db ff ff ff ff 61",
        "c6 ff ff ff ff",
        "c9 ff ff ff ff 00",
    ] {
        for ty in [
            Type::list(Type::String),
            Type::map(Type::String),
            Type::String,
            everything_type(),
        ] {
            assert!(decode_msgpack(&ty, &unhex(case)).is_err(), "{case} as {ty}");
        }
    }
    // Invalid UTF-8, NaN, non-number text, reserved byte.
    assert!(decode_msgpack(&Type::String, &unhex("a2 c3 28")).is_err());
    assert!(decode_msgpack(&Type::Number, &unhex("cb 7f f8 00 00 00 00 00 00")).is_err());
    assert!(decode_msgpack(&Type::Number, &unhex("a3 61 62 63")).is_err());
    assert!(decode_msgpack(&Type::Number, &unhex("c1")).is_err());
    // Exponents that would expand to gigabytes of digits.
    let text = b"1e-999999999";
    let mut bytes = vec![0xa0 | text.len() as u8];
    bytes.extend_from_slice(text);
    assert!(decode_msgpack(&Type::Number, &bytes).is_err());
    // Bad dynamic wrappers.
    for case in [
        "91 c4 00",
        "92 c4 03 22 78 22 01",
        "92 01 01",
        "93 a0 a0 a0",
    ] {
        assert!(
            decode_msgpack(&Type::Dynamic, &unhex(case)).is_err(),
            "{case}"
        );
    }
}

#[test]
fn deep_nesting_is_capped() {
    // Dynamic values can nest without the type saying so: ["dynamic", ["dynamic", …]].
    let mut bytes = Vec::new();
    for _ in 0..100_000 {
        bytes.extend_from_slice(&unhex("92 c4 09 22 64 79 6e 61 6d 69 63 22"));
    }
    bytes.push(0x01);
    let err = decode_msgpack(&Type::Dynamic, &bytes).unwrap_err();
    assert!(matches!(err, CodecError::TooDeep { .. }), "{err}");

    // A deep type: fine up to the cap, an error past it.
    let mut ty = Type::String;
    let mut value = Value::string("x");
    for _ in 0..MAX_DEPTH {
        ty = Type::list(ty);
        value = Value::List(vec![value]);
    }
    round_trip(&ty, &value);
    let deeper = Type::list(ty.clone());
    let deeper_value = Value::List(vec![value.clone()]);
    assert!(matches!(
        encode_msgpack(&deeper, &deeper_value),
        Err(CodecError::TooDeep { .. })
    ));
    let mut bytes = vec![0x91];
    bytes.extend(encode_msgpack(&ty, &value).unwrap());
    assert!(matches!(
        decode_msgpack(&deeper, &bytes),
        Err(CodecError::TooDeep { .. })
    ));
    assert!(matches!(
        value_to_json(&deeper_value),
        Err(CodecError::TooDeep { .. })
    ));
}

// ---------------------------------------------------------------------------------
// JSON
// ---------------------------------------------------------------------------------

fn state_type() -> Type {
    Type::object([
        ("id", Type::String),
        ("ami", Type::String),
        ("instance_count", Type::Number),
        ("ratio", Type::Number),
        ("big", Type::Number),
        ("enabled", Type::Bool),
        ("tags", Type::map(Type::String)),
        ("security_groups", Type::set(Type::String)),
        (
            "ebs_block_device",
            Type::list(Type::object([
                ("device_name", Type::String),
                ("volume_size", Type::Number),
                ("encrypted", Type::Bool),
            ])),
        ),
        ("metadata", Type::Dynamic),
        ("timeouts", Type::object([("create", Type::String)])),
    ])
}

#[test]
fn decodes_terraform_state_json() {
    // Shaped like `attributes` in a terraform.tfstate resource instance; "timeouts" is
    // absent, as it is in state written before the attribute existed.
    let state = br#"{
        "id": "i-0123456789abcdef0",
        "ami": "ami-0c55b159cbfafe1f0",
        "instance_count": 3,
        "ratio": 0.1,
        "big": 123456789012345678901234567890,
        "enabled": true,
        "tags": {"Name": "web", "Env": "prod"},
        "security_groups": ["sg-2", "sg-1"],
        "ebs_block_device": [
            {"device_name": "/dev/sdb", "volume_size": 100, "encrypted": false}
        ],
        "metadata": {"value": {"owner": "team-a", "cost": 12.5}, "type": ["object", {"cost": "number", "owner": "string"}]}
    }"#;
    let value = decode_json(&state_type(), state).unwrap();
    assert_eq!(value.get("id").as_str(), Some("i-0123456789abcdef0"));
    assert_eq!(value.get("instance_count"), &Value::from(3));
    assert_eq!(value.get("big"), &num("123456789012345678901234567890"));
    assert_eq!(value.get("timeouts"), &Value::Null);
    assert_eq!(
        value.get("metadata"),
        &Value::object([("owner", "team-a".into()), ("cost", Value::from(12.5))])
    );
    assert!(value
        .get("security_groups")
        .same_as(&Value::Set(vec!["sg-1".into(), "sg-2".into()])));
    assert_eq!(
        value.get("ebs_block_device").as_elements().unwrap()[0].get("volume_size"),
        &Value::from(100)
    );
    // The decimal 0.1 from state goes to Terraform as the text "0.1", not a float64.
    let ratio = encode_msgpack(&Type::Number, value.get("ratio")).unwrap();
    assert_eq!(ratio, b"\xa30.1");
    // And everything survives a trip through MessagePack and typed JSON.
    round_trip(&state_type(), &value);
    let json = encode_json(&state_type(), &value).unwrap();
    assert!(decode_json(&state_type(), &json).unwrap().same_as(&value));
}

#[test]
fn state_json_with_removed_attributes() {
    let state = br#"{"id": "x", "legacy": 1}"#;
    let err = decode_json(&state_type(), state).unwrap_err();
    assert_eq!(
        err,
        CodecError::UnexpectedAttribute {
            path: String::new(),
            name: "legacy".into(),
        }
    );
    let options = JsonOptions {
        ignore_undefined_attributes: true,
    };
    let value = decode_json_with(&state_type(), state, options).unwrap();
    assert_eq!(value.get("id").as_str(), Some("x"));
    assert_eq!(value.as_object().unwrap().len(), 11);
}

#[test]
fn json_numbers_keep_precision() {
    for text in [
        "123456789012345678901234567890",
        "-0.000000000000000000000000000001",
        "18446744073709551615",
        "3.14159265358979323846264338327950288",
        "1e400",
    ] {
        let value = decode_json(&Type::Number, text.as_bytes()).unwrap();
        let expected = Number::parse(text)
            .map(|n| n.to_decimal_string())
            .unwrap_or_else(|| format!("1{}", "0".repeat(400)));
        let Value::Number(n) = &value else {
            panic!("{value:?}")
        };
        assert_eq!(n.to_decimal_string(), expected);
        let json = value_to_json(&value).unwrap();
        assert_eq!(json.to_string(), expected);
    }
    // Numbers in strings, as go-cty accepts.
    assert_eq!(
        decode_json(&Type::Number, br#""42""#).unwrap(),
        Value::from(42)
    );
    assert!(decode_json(&Type::Number, br#""forty""#).is_err());
    assert!(decode_json(&Type::Number, b"1e-999999999").is_err());
}

#[test]
fn json_conversions_like_go_cty() {
    assert_eq!(
        decode_json(&Type::String, b"12.50").unwrap(),
        "12.50".into()
    );
    assert_eq!(decode_json(&Type::String, b"true").unwrap(), "true".into());
    assert_eq!(decode_json(&Type::Bool, br#""1""#).unwrap(), true.into());
    assert_eq!(
        decode_json(&Type::Bool, br#""false""#).unwrap(),
        false.into()
    );
    assert!(decode_json(&Type::Bool, br#""yes""#).is_err());
    assert!(decode_json(&Type::Tuple(vec![Type::String]), b"[]").is_err());
    assert!(decode_json(&Type::String, b"[1]").is_err());
    assert!(decode_json(&Type::String, b"\"x\" trailing").is_err());
}

#[test]
fn json_dynamic_values() {
    let ty = Type::object([("d", Type::Dynamic)]);
    let value = Value::object([(
        "d",
        Value::object([("n", 1.into()), ("l", Value::List(vec!["a".into()]))]),
    )]);
    let json = encode_json(&ty, &value).unwrap();
    assert_eq!(
        String::from_utf8(json.clone()).unwrap(),
        r#"{"d":{"value":{"l":["a"],"n":1},"type":["object",{"l":["list","string"],"n":"number"}]}}"#
    );
    assert_eq!(decode_json(&ty, &json).unwrap(), value);
    // Plain JSON at a dynamic position (from a serde struct) is read with its implied type.
    let plain = serde_json::json!({"d": {"n": 1, "l": ["a", true]}});
    assert_eq!(
        value_from_json(&ty, &plain).unwrap(),
        Value::object([(
            "d",
            Value::object([
                ("n", 1.into()),
                ("l", Value::Tuple(vec!["a".into(), true.into()])),
            ])
        )])
    );
}

#[test]
fn value_to_json_is_plain_json() {
    let value = Value::object([
        ("a", Value::Null),
        ("big", num("123456789012345678901234567890")),
        ("f", Value::from(0.1)),
        ("s", Value::Set(vec![1.into()])),
        (
            "m",
            Value::Map(BTreeMap::from([("k".to_owned(), "v".into())])),
        ),
    ]);
    let json = value_to_json(&value).unwrap();
    assert_eq!(
        json.to_string(),
        r#"{"a":null,"big":123456789012345678901234567890,"f":0.1,"m":{"k":"v"},"s":[1]}"#
    );
    let ty = Type::object([
        ("a", Type::String),
        ("big", Type::Number),
        ("f", Type::Number),
        ("s", Type::set(Type::Number)),
        ("m", Type::map(Type::String)),
    ]);
    assert_eq!(value_from_json(&ty, &json).unwrap(), value);

    let err = value_to_json(&Value::object([(
        "l",
        Value::List(vec![Value::Null, Value::Unknown]),
    )]))
    .unwrap_err();
    assert_eq!(
        err,
        CodecError::UnknownValue {
            path: ".l[1]".into()
        }
    );
    assert!(value_to_json(&Value::Number(Number::Float(f64::NAN))).is_err());
    assert!(value_to_json(&Value::Number(Number::Float(f64::INFINITY))).is_err());
}

// ---------------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------------

fn arb_type() -> impl Strategy<Value = Type> {
    let leaf = prop_oneof![
        Just(Type::Bool),
        Just(Type::Number),
        Just(Type::String),
        Just(Type::Dynamic),
    ];
    leaf.prop_recursive(4, 24, 4, |inner| {
        prop_oneof![
            inner.clone().prop_map(Type::list),
            inner.clone().prop_map(Type::set),
            inner.clone().prop_map(Type::map),
            prop::collection::btree_map("[a-z_]{1,8}", inner.clone(), 0..4).prop_map(Type::Object),
            prop::collection::vec(inner, 0..3).prop_map(Type::Tuple),
        ]
    })
}

/// A type without `dynamic` in it: what a value at a dynamic position can have, since
/// a cty list's elements all share one concrete type.
fn arb_concrete_type() -> impl Strategy<Value = Type> {
    arb_type().prop_filter("no dynamic", |ty| {
        !ty.to_json().to_string().contains("dynamic")
    })
}

fn arb_number(json_safe: bool) -> BoxedStrategy<Number> {
    let decimal = ("-?[0-9]{1,40}", proptest::option::of("[0-9]{1,30}")).prop_map(|(i, f)| {
        let text = match f {
            Some(f) => format!("{i}.{f}"),
            None => i,
        };
        Number::parse(&text).unwrap()
    });
    let finite = any::<f64>().prop_filter("finite", |f| f.is_finite());
    if json_safe {
        prop_oneof![
            any::<i64>().prop_map(Number::Int),
            finite.prop_map(Number::Float),
            decimal,
        ]
        .boxed()
    } else {
        prop_oneof![
            any::<i64>().prop_map(Number::Int),
            finite.prop_map(Number::Float),
            decimal,
            Just(Number::Float(f64::INFINITY)),
            Just(Number::Float(f64::NEG_INFINITY)),
        ]
        .boxed()
    }
}

/// A value of `ty`; `with_unknowns` = false for JSON, which cannot carry them.
fn arb_value(ty: &Type, with_unknowns: bool) -> BoxedStrategy<Value> {
    let known: BoxedStrategy<Value> = match ty {
        Type::Bool => any::<bool>().prop_map(Value::Bool).boxed(),
        Type::Number => arb_number(!with_unknowns).prop_map(Value::Number).boxed(),
        Type::String => any::<String>().prop_map(Value::String).boxed(),
        Type::Dynamic => arb_concrete_type()
            .prop_flat_map(move |t| arb_value(&t, with_unknowns))
            .boxed(),
        Type::List(e) => prop::collection::vec(arb_value(e, with_unknowns), 0..4)
            .prop_map(Value::List)
            .boxed(),
        Type::Set(e) => prop::collection::vec(arb_value(e, with_unknowns), 0..4)
            .prop_map(Value::Set)
            .boxed(),
        Type::Map(e) => {
            prop::collection::btree_map(any::<String>(), arb_value(e, with_unknowns), 0..4)
                .prop_map(Value::Map)
                .boxed()
        }
        Type::Object(attributes) => {
            let names: Vec<String> = attributes.keys().cloned().collect();
            let values: Vec<_> = attributes
                .values()
                .map(|t| arb_value(t, with_unknowns))
                .collect();
            values
                .prop_map(move |vs| Value::Object(names.iter().cloned().zip(vs).collect()))
                .boxed()
        }
        Type::Tuple(types) => {
            let values: Vec<_> = types.iter().map(|t| arb_value(t, with_unknowns)).collect();
            values.prop_map(Value::Tuple).boxed()
        }
    };
    if with_unknowns {
        prop_oneof![1 => Just(Value::Null), 1 => Just(Value::Unknown), 8 => known].boxed()
    } else {
        prop_oneof![1 => Just(Value::Null), 8 => known].boxed()
    }
}

fn typed_value(with_unknowns: bool) -> impl Strategy<Value = (Type, Value)> {
    arb_type().prop_flat_map(move |ty| {
        let value = arb_value(&ty, with_unknowns);
        (Just(ty), value)
    })
}

/// A few types for feeding garbage to the decoders.
fn sample_types() -> Vec<Type> {
    vec![
        Type::String,
        Type::Number,
        Type::Dynamic,
        Type::list(Type::Dynamic),
        Type::set(Type::map(Type::Number)),
        Type::Tuple(vec![Type::Bool, Type::String]),
        everything_type(),
    ]
}

/// Arbitrary JSON trees, including numbers as odd as JSON allows.
fn arb_json() -> impl Strategy<Value = serde_json::Value> {
    let number = prop_oneof![
        any::<i64>().prop_map(|i| i.to_string()),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| f.to_string()),
        "-?[0-9]{1,30}(\\.[0-9]{1,20})?([eE][+-]?[0-9]{1,6})?",
    ]
    .prop_filter_map("JSON number", |text| serde_json::from_str(&text).ok());
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::Bool),
        number.prop_map(serde_json::Value::Number),
        prop_oneof!["true", "1", "0", "12.5", "string", "number", "\\PC{0,8}"]
            .prop_map(serde_json::Value::String),
    ];
    leaf.prop_recursive(4, 32, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::Array),
            prop::collection::vec(
                (prop_oneof!["value", "type", "a", "b", "[a-z]{1,4}"], inner),
                0..4
            )
            .prop_map(|entries| serde_json::Value::Object(entries.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_json_never_panics(json in arb_json()) {
        for ty in sample_types() {
            if let Ok(value) = value_from_json(&ty, &json) {
                // Writing it again may fail (a list(dynamic) whose elements have
                // different types has no single type to infer), but must not panic.
                let _ = encode_msgpack(&ty, &value);
                prop_assert!(value_to_json(&value).is_ok());
            }
        }
    }

    #[test]
    fn msgpack_values_round_trip((ty, value) in typed_value(true)) {
        let bytes = encode_msgpack(&ty, &value).unwrap();
        let back = decode_msgpack(&ty, &bytes).unwrap();
        prop_assert!(back.same_as(&value), "{ty}: {value:?} -> {back:?}");
        // Encoding is deterministic, sets included.
        prop_assert_eq!(encode_msgpack(&ty, &back).unwrap(), bytes);
    }

    #[test]
    fn json_values_round_trip((ty, value) in typed_value(false)) {
        let bytes = encode_json(&ty, &value).unwrap();
        let back = decode_json(&ty, &bytes).unwrap();
        prop_assert!(back.same_as(&value), "{ty}: {value:?} -> {back:?}");
    }

    #[test]
    fn plain_json_round_trips((ty, value) in arb_concrete_type()
        .prop_flat_map(|ty| { let v = arb_value(&ty, false); (Just(ty), v) }))
    {
        let json = value_to_json(&value).unwrap();
        let back = value_from_json(&ty, &json).unwrap();
        prop_assert!(back.same_as(&value), "{ty}: {value:?} -> {back:?}");
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        for ty in sample_types() {
            let _ = decode_msgpack(&ty, &bytes);
            let _ = decode_json(&ty, &bytes);
        }
    }

    #[test]
    fn corrupted_encodings_never_panic(
        (ty, value) in typed_value(true),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
    ) {
        let mut bytes = encode_msgpack(&ty, &value).unwrap();
        for (at, byte) in flips {
            let i = at.index(bytes.len());
            bytes[i] = byte;
        }
        let _ = decode_msgpack(&ty, &bytes);
        let _ = decode_msgpack(&Type::Dynamic, &bytes);
    }
}
