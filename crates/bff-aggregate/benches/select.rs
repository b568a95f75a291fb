//! JSONPath selection and merge on typical payloads: the work a declarative route does per backend.
//!
//! Run with: `cargo bench -p bff-aggregate --bench select`

use bff_aggregate::Selector;
use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::{Map, Value, json};
use std::hint::black_box;

fn user() -> Value {
    json!({
        "id": "42",
        "profile": {
            "name": "Alan Turing", "email": "alan@example.com",
            "avatar": {"small": "https://cdn.example.com/a/42-64.png", "large": "https://cdn.example.com/a/42-512.png"},
            "favoriteCategory": "books"
        },
        "createdAt": "2024-03-01T10:00:00Z"
    })
}

fn orders() -> Value {
    Value::Array(
        (0..20)
            .map(|n| json!({"id": format!("o-{n}"), "total": {"amount": n * 100, "currency": "EUR"}, "status": "shipped", "items": n}))
            .collect(),
    )
}

fn bench(c: &mut Criterion) {
    let user_bytes = serde_json::to_vec(&user()).unwrap();
    let orders_bytes = serde_json::to_vec(&orders()).unwrap();
    let profile = Selector::parse("$.profile").unwrap();
    let avatar = Selector::parse("$.profile.avatar.small").unwrap();
    let ids = Selector::parse("$[*].id").unwrap();
    let filtered = Selector::parse("$[?@.items > 10].id").unwrap();

    let mut g = c.benchmark_group("select");
    let u = user();
    let o = orders();
    g.bench_function("singular_$.profile.avatar.small", |b| {
        b.iter(|| avatar.apply(black_box(&u)))
    });
    g.bench_function("singular_owned_$.profile", |b| {
        b.iter(|| profile.apply_owned(black_box(u.clone())))
    });
    g.bench_function("query_$[*].id_20_items", |b| {
        b.iter(|| ids.apply(black_box(&o)))
    });
    g.bench_function("query_filter_20_items", |b| {
        b.iter(|| filtered.apply(black_box(&o)))
    });
    g.bench_function("jsonpath_parse_each_time_$[*].id", |b| {
        b.iter(|| {
            Selector::parse(black_box("$[*].id"))
                .unwrap()
                .apply(black_box(&o))
        })
    });
    g.finish();

    // Parse three bodies, select, merge and serialize: a 3-backend route's CPU, without the network.
    c.bench_function("merge_3_backends_parse_select_serialize", |b| {
        b.iter(|| {
            let user: Value = serde_json::from_slice(black_box(&user_bytes)).unwrap();
            let orders: Value = serde_json::from_slice(black_box(&orders_bytes)).unwrap();
            let recs: Value = serde_json::from_slice(black_box(&orders_bytes)).unwrap();
            let mut out = Map::new();
            out.insert("user".into(), profile.apply_owned(user));
            out.insert("orders".into(), ids.apply(&orders));
            out.insert("recommendations".into(), recs);
            serde_json::to_vec(&Value::Object(out)).unwrap()
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
