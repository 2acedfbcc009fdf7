//! The view wire format ([`parse_batch`], and [`parse_dated_batch`] with `"at"`): whole batches or none,
//! every refusal naming its element; dated views grouped by slice exactly as a brute-force sum.

use chrono::{DateTime, SecondsFormat};
use proptest::prelude::*;
use std::collections::BTreeMap;
use topk_core::domain::{VideoId, ViewCount};
use topk_core::wire::{parse_batch, parse_dated_batch, DatedBatch, EventTimeRule};

/// 2026-12-07T10:15:00Z, in ms.
const NOW: i64 = 1_796_638_500_000;
const RULE: EventTimeRule = EventTimeRule {
    now_ms: NOW,
    max_skew_ms: 5_000,
};

fn dated(body: &str) -> Result<DatedBatch, String> {
    parse_dated_batch(body.as_bytes(), 10, RULE).map_err(|e| e.to_string())
}

fn rfc3339(ms: i64) -> String {
    DateTime::from_timestamp_millis(ms)
        .unwrap()
        .to_rfc3339_opts(SecondsFormat::Millis, true)
}

#[test]
fn at_is_checked_and_grouped_by_slice() {
    let batch = dated(
        r#"[{"videoId":"a","at":"2026-12-07T10:14:58.999Z"},{"videoId":"b","count":2},
            {"videoId":"a","count":3,"at":"2026-12-07T11:14:55+01:00"},
            {"videoId":"c","at":"2026-12-07T10:15:04.999Z"}]"#,
    )
    .unwrap();
    assert_eq!(batch.views(), 7);
    assert_eq!(batch.undated, [(VideoId::parse("b").unwrap(), 2)]);
    let slices: Vec<(i64, usize)> = batch
        .dated
        .iter()
        .map(|d| (d.event_ms, d.views.len()))
        .collect();
    // 10:14:55 holds both of a's elements (one given at +01:00); c's is 4.999 s ahead (within the skew).
    assert_eq!(slices, [(NOW - 5_000, 2), (NOW, 1)]);

    let refused = |body: &str| dated(body).unwrap_err();
    assert!(
        refused(r#"[{"videoId":"a"},{"videoId":"b","at":"2026-12-07"}]"#)
            .starts_with("element 1: at \"2026-12-07\" is not an RFC 3339 time")
    );
    assert!(refused(r#"[{"videoId":"a","at":"2026-12-07T10:15:05.001Z"}]"#)
        .contains("is in the future: more than 5000 ms after this server's time, 2026-12-07T10:15:00.000Z"));
    assert!(
        refused(r#"[{"videoId":"a","at":"1969-12-31T23:59:59.999Z"}]"#).contains("before 1970")
    );
    assert!(refused(r#"[{"videoId":"a","at":12}]"#).contains("element 0: at must be a string"));
    assert!(refused(r#"[{"videoId":"a","when":"x"}]"#)
        .contains("only videoId, count and at are allowed"));
    // A Kafka record's views happened at its timestamp: an element may not say otherwise.
    let e = parse_batch(br#"[{"videoId":"a","at":"2026-12-07T10:15:00Z"}]"#, 10).unwrap_err();
    assert!(
        e.to_string().starts_with("element 0: at is not taken here"),
        "{e}"
    );
}

fn err(body: &str) -> String {
    match parse_batch(body.as_bytes(), 3) {
        Err(e) => format!("{e:?}"),
        Ok(v) => panic!("accepted {v:?}"),
    }
}

#[test]
fn names_the_first_bad_element() {
    assert!(err(r#"[{"videoId":"a"},{"videoId":"b c"}]"#).contains("element 1: videoId"));
    assert!(err(r#"[{"videoId":"a","count":0}]"#).contains("element 0: count"));
    assert!(err(r#"[{"videoId":"a","count":1.5}]"#).contains("element 0: count"));
    assert!(err(r#"[{"videoId":"a","count":"2"}]"#).contains("element 0: count"));
    assert!(err(r#"[{"videoId":"a","count":-1}]"#).contains("element 0: count"));
    assert!(err(r#"[{"videoId":"a","extra":1}]"#).contains("unknown field"));
    assert!(err(r#"[{"count":1}]"#).contains("videoId is required"));
    assert!(err(r#"[{"videoId":7}]"#).contains("videoId is required"));
    assert!(err(r#"[1]"#).contains("must be an object"));
    assert!(err(r#"{"videoId":"a"}"#).contains("JSON array"));
    assert!(err(r#"[{"videoId":"a"}"#).contains("not valid JSON"));
    assert!(err("[]").contains("empty"));
    assert!(
        err(r#"[{"videoId":"a"},{"videoId":"a"},{"videoId":"a"},{"videoId":"a"}]"#)
            .contains("at most 3")
    );
}

#[test]
fn accepts_defaults_and_counts() {
    let v = parse_batch(br#"[{"videoId":"a"},{"videoId":"b","count":1000000}]"#, 10).unwrap();
    assert_eq!(v.iter().map(|(_, n)| n).sum::<u64>(), 1_000_001);
}

/// A valid id: 1 to 64 characters of the alphabet, not `.` or `..`.
fn valid_id() -> impl Strategy<Value = String> {
    "[A-Za-z0-9_.:-]{1,64}".prop_filter("not . or ..", |v| v != "." && v != "..")
}

proptest! {
    /// A batch of dated and undated views is taken whole, every view in the slice of its time (or undated),
    /// exactly as a brute-force sum; one element past the skew refuses it whole, naming it.
    #[test]
    fn dated_views_sum_per_slice_as_sent(
        items in proptest::collection::vec(
            ("[a-c]", 1u64..5, proptest::option::of(-5_000i64..3_000_000)), 1..30),
        late in proptest::option::of(any::<proptest::sample::Index>()),
    ) {
        let mut elements: Vec<serde_json::Value> = items
            .iter()
            .map(|(id, n, ago)| match ago {
                None => serde_json::json!({"videoId": id, "count": n}),
                Some(d) => serde_json::json!({"videoId": id, "count": n, "at": rfc3339(NOW - d)}),
            })
            .collect();
        let late = late.map(|i| i.index(elements.len()));
        if let Some(i) = late {
            elements[i]["at"] = serde_json::json!(rfc3339(NOW + 5_001));
        }
        let body = serde_json::Value::Array(elements).to_string();
        let parsed = parse_dated_batch(body.as_bytes(), 100, RULE);
        match late {
            Some(i) => {
                let e = parsed.unwrap_err().to_string();
                prop_assert!(e.starts_with(&format!("element {i}: at")), "{}", e);
            }
            None => {
                let parsed = parsed.unwrap();
                let mut want: BTreeMap<(Option<i64>, String), u64> = BTreeMap::new();
                for (id, n, ago) in &items {
                    let slice = ago.map(|d| (NOW - d).div_euclid(5_000) * 5_000);
                    *want.entry((slice, id.clone())).or_default() += n;
                }
                let mut got: BTreeMap<(Option<i64>, String), u64> = BTreeMap::new();
                for (v, n) in &parsed.undated {
                    *got.entry((None, v.as_str().to_owned())).or_default() += n;
                }
                for d in &parsed.dated {
                    for (v, n) in &d.views {
                        *got.entry((Some(d.event_ms), v.as_str().to_owned())).or_default() += n;
                    }
                }
                prop_assert_eq!(got, want);
                let slices: Vec<i64> = parsed.dated.iter().map(|d| d.event_ms).collect();
                prop_assert!(slices.windows(2).all(|w| w[0] < w[1]), "one group per slice, oldest first");
            }
        }
    }

    /// Arbitrary bytes never panic the decoder: they are accepted or refused with a message.
    #[test]
    fn decoder_never_panics(body in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = parse_batch(&body, 100);
    }

    /// Near-valid JSON (random ids and counts) is accepted exactly when every element is valid.
    #[test]
    fn accepts_exactly_valid_batches(items in proptest::collection::vec(("[ -~]{0,70}", 0u64..1_100_000), 1..6)) {
        let body = serde_json::to_vec(&items.iter().map(|(v, n)| serde_json::json!({"videoId": v, "count": n})).collect::<Vec<_>>()).unwrap();
        let valid = items.iter().all(|(v, n)| VideoId::parse(v).is_ok() && ViewCount::parse(*n).is_ok());
        prop_assert_eq!(parse_batch(&body, 100).is_ok(), valid);
    }

    /// Whole or nothing: a batch with one bad element anywhere is refused naming that element; a valid
    /// batch comes back complete, in order, with its counts (default 1).
    #[test]
    fn a_batch_is_taken_whole_or_refused_whole(
        items in proptest::collection::vec((valid_id(), proptest::option::of(1u64..=1_000_000)), 1..40),
        bad_at in any::<proptest::sample::Index>(),
        bad in prop_oneof![
            Just(serde_json::json!({"videoId": ""})),
            Just(serde_json::json!({"videoId": "a b"})),
            Just(serde_json::json!({"videoId": "a", "count": 0})),
            Just(serde_json::json!({"videoId": "a", "count": 1_000_001})),
            Just(serde_json::json!({"videoId": "a", "count": -1})),
            Just(serde_json::json!({"videoId": "a", "count": null, "x": 1})),
            Just(serde_json::json!({"videoId": "a".repeat(65)})),
            Just(serde_json::json!({"videoId": ".."})),
            Just(serde_json::json!(["a"])),
            Just(serde_json::json!(null)),
        ],
        with_bad in any::<bool>(),
    ) {
        let mut elements: Vec<serde_json::Value> = items.iter().map(|(v, n)| match n {
            Some(n) => serde_json::json!({"videoId": v, "count": n}),
            None => serde_json::json!({"videoId": v}),
        }).collect();
        let bad_index = bad_at.index(elements.len() + 1);
        if with_bad {
            elements.insert(bad_index, bad);
        }
        let body = serde_json::to_vec(&elements).unwrap();
        match parse_batch(&body, 100) {
            Ok(views) => {
                prop_assert!(!with_bad);
                let want: Vec<(String, u64)> = items.iter().map(|(v, n)| (v.clone(), n.unwrap_or(1))).collect();
                let got: Vec<(String, u64)> = views.into_iter().map(|(v, n)| (v.into_string(), n)).collect();
                prop_assert_eq!(got, want);
            }
            Err(e) => {
                prop_assert!(with_bad, "{:?}", e);
                let msg = format!("{e:?}");
                let element = format!("element {bad_index}:");
                prop_assert!(msg.contains(&element), "{}", msg);
            }
        }
    }

    /// Arbitrary JSON documents (nested arrays, objects, numbers, strings) never panic the decoder; one it
    /// takes is an array of 1 to 100 objects, and a refusal says why in a bounded message.
    #[test]
    fn arbitrary_json_never_panics(doc in json_value()) {
        let body = serde_json::to_vec(&doc).unwrap();
        match parse_batch(&body, 100) {
            Ok(views) => {
                let items = doc.as_array().expect("a batch is an array");
                prop_assert_eq!(views.len(), items.len());
                prop_assert!(items.iter().all(serde_json::Value::is_object));
            }
            Err(e) => {
                let msg = e.to_string();
                prop_assert!(!msg.is_empty() && msg.len() < 600, "{}", msg);
            }
        }
    }

    /// The length limit counts elements exactly.
    #[test]
    fn the_length_limit_is_exact(len in 1usize..30, max in 1usize..30) {
        let body = serde_json::to_vec(&vec![serde_json::json!({"videoId": "a"}); len]).unwrap();
        prop_assert_eq!(parse_batch(&body, max).is_ok(), len <= max);
    }
}

/// Any JSON value, a few levels deep, biased toward things that look like views.
fn json_value() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::Value;
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("JSON has no NaN or infinity", |f| f.is_finite())
            .prop_map(Value::from),
        "\\PC{0,20}".prop_map(Value::String),
        "[a-z]{1,3}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..8).prop_map(serde_json::Value::Array),
            proptest::collection::btree_map(
                prop_oneof![
                    Just("videoId".to_owned()),
                    Just("count".to_owned()),
                    "[a-zA-Z]{0,8}"
                ],
                inner,
                0..4,
            )
            .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}
