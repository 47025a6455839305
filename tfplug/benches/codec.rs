//! Throughput of the cty codec on a resource-sized object: 100 attributes of mixed
//! kinds, about what a large Terraform resource carries in every plan and apply call.
//!
//! Run with `cargo bench -p tfplug --bench codec`; criterion reports objects per second,
//! then each operation is printed as a ratio to baselines measured in the same run:
//! cloning the value (the allocations any decoder must make to build it) and serde_json
//! parsing the same JSON into its own tree (what any JSON reader must do).

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, Criterion, Throughput};
use tfplug::codec::{decode_json, decode_msgpack, encode_json, encode_msgpack};
use tfplug::{Number, Type, Value};

/// A 100-attribute object type and a value for it: 40 strings, 30 numbers (ints,
/// floats and a big decimal), 20 bools, 5 lists of strings and 5 maps of strings.
fn sample() -> (Type, Value) {
    let mut types = BTreeMap::new();
    let mut values = BTreeMap::new();
    for i in 0..40 {
        let name = format!("string_attribute_{i:02}");
        types.insert(name.clone(), Type::String);
        values.insert(
            name,
            Value::string(format!("value number {i} of the resource")),
        );
    }
    for i in 0..30 {
        let name = format!("number_attribute_{i:02}");
        let number = match i % 3 {
            0 => Number::Int(i * 1_000_003),
            1 => Number::Float(i as f64 + 0.25),
            _ => Number::parse("123456789012345678901234567890").unwrap_or(Number::Int(0)),
        };
        types.insert(name.clone(), Type::Number);
        values.insert(name, Value::Number(number));
    }
    for i in 0..20 {
        let name = format!("bool_attribute_{i:02}");
        types.insert(name.clone(), Type::Bool);
        values.insert(name, Value::Bool(i % 2 == 0));
    }
    for i in 0..5 {
        let name = format!("list_attribute_{i}");
        types.insert(name.clone(), Type::list(Type::String));
        values.insert(
            name,
            Value::List((0..8).map(|j| Value::string(format!("item-{j}"))).collect()),
        );
    }
    for i in 0..5 {
        let name = format!("map_attribute_{i}");
        types.insert(name.clone(), Type::map(Type::String));
        values.insert(
            name,
            Value::Map(
                (0..8)
                    .map(|j| (format!("key-{j}"), Value::string(format!("tag value {j}"))))
                    .collect(),
            ),
        );
    }
    (Type::Object(types), Value::Object(values))
}

fn codec(c: &mut Criterion) {
    let (ty, value) = sample();
    let msgpack = encode_msgpack(&ty, &value).expect("sample encodes");
    let json = encode_json(&ty, &value).expect("sample encodes as JSON");

    let mut group = c.benchmark_group("object_100_attributes");
    group.throughput(Throughput::Elements(1));
    group.bench_function("encode_msgpack", |b| {
        b.iter(|| encode_msgpack(black_box(&ty), black_box(&value)))
    });
    group.bench_function("decode_msgpack", |b| {
        b.iter(|| decode_msgpack(black_box(&ty), black_box(&msgpack)))
    });
    group.bench_function("encode_json", |b| {
        b.iter(|| encode_json(black_box(&ty), black_box(&value)))
    });
    group.bench_function("decode_json", |b| {
        b.iter(|| decode_json(black_box(&ty), black_box(&json)))
    });
    group.bench_function("baseline_clone_value", |b| {
        b.iter(|| black_box(&value).clone())
    });
    group.bench_function("baseline_serde_json_parse", |b| {
        b.iter(|| serde_json::from_slice::<serde_json::Value>(black_box(&json)))
    });
    group.finish();
}

/// The median time per call of `op`, over 15 rounds of 2,000 calls.
fn per_call<T>(mut op: impl FnMut() -> T) -> Duration {
    const CALLS: u32 = 2_000;
    let mut rounds: Vec<Duration> = (0..15)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..CALLS {
                black_box(op());
            }
            start.elapsed() / CALLS
        })
        .collect();
    rounds.sort();
    rounds[rounds.len() / 2]
}

/// Each operation against the same-run baselines, as ratios (criterion's own report
/// above has the absolute times and their spread).
fn print_ratios() {
    let (ty, value) = sample();
    let msgpack = encode_msgpack(&ty, &value).expect("sample encodes");
    let json = encode_json(&ty, &value).expect("sample encodes as JSON");
    let clone = per_call(|| value.clone());
    let parse = per_call(|| serde_json::from_slice::<serde_json::Value>(&json));
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    println!("\ncodec, one 100-attribute object (median per call):");
    println!("  baseline clone of the value:      {:>7.2} µs", us(clone));
    println!("  baseline serde_json parse:        {:>7.2} µs", us(parse));
    for (name, took) in [
        ("encode_msgpack", per_call(|| encode_msgpack(&ty, &value))),
        ("decode_msgpack", per_call(|| decode_msgpack(&ty, &msgpack))),
        ("encode_json", per_call(|| encode_json(&ty, &value))),
        ("decode_json", per_call(|| decode_json(&ty, &json))),
    ] {
        println!(
            "  {name:<15} {:>7.2} µs   {:>5.2}x the clone   {:>5.2}x the serde_json parse",
            us(took),
            took.as_secs_f64() / clone.as_secs_f64(),
            took.as_secs_f64() / parse.as_secs_f64()
        );
    }
}

criterion_group!(benches, codec);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    print_ratios();
}
