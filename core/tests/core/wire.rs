//! The view wire format ([`parse_batch`]): whole batches or none, every refusal naming its element.

use proptest::prelude::*;
use topk_core::domain::{VideoId, ViewCount};
use topk_core::wire::parse_batch;

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
