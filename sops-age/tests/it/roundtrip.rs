//! Property tests: random documents survive encrypt → decrypt unchanged.

use proptest::prelude::*;
use sops_age::{EncryptOptions, Format, Identities, Item, Map, Recipient, StoreOptions, Value};

fn key() -> impl Strategy<Value = String> {
    "[a-zA-Z_][a-zA-Z0-9_ -]{0,8}"
        .prop_filter("yaml-unfriendly", |k| k.trim() == k && !k.is_empty())
}

fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::Int),
        (-1.0e12f64..1.0e12).prop_map(Value::Float),
        "\\PC{0,20}".prop_map(Value::String),
        "[a-z]{1,5}\n[a-z ]{0,5}\n".prop_map(Value::String),
        Just(Value::Null),
    ]
}

fn value() -> impl Strategy<Value = Value> {
    scalar().prop_recursive(3, 24, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Seq),
            map_of(inner).prop_map(Value::Map),
        ]
    })
}

fn map_of(inner: impl Strategy<Value = Value>) -> impl Strategy<Value = Map> {
    prop::collection::vec((key(), inner, prop::option::of("[a-z ]{0,10}")), 0..5).prop_map(
        |entries| {
            let mut m = Map::new();
            let mut seen = std::collections::HashSet::new();
            for (k, v, c) in entries {
                if seen.insert(k.clone()) {
                    if let Some(c) = c {
                        m.items.push(Item::Comment(format!(" {c}")));
                    }
                    m.push(k, v);
                }
            }
            m
        },
    )
}

fn strip_comments(m: &Map) -> Map {
    fn v(x: &Value) -> Value {
        match x {
            Value::Map(m) => Value::Map(strip_comments(m)),
            Value::Seq(s) => Value::Seq(
                s.iter()
                    .filter(|e| !matches!(e, Value::Comment(_)))
                    .map(v)
                    .collect(),
            ),
            o => o.clone(),
        }
    }
    Map {
        items: m
            .items
            .iter()
            .filter_map(|i| match i {
                Item::Entry(k, x) => Some(Item::Entry(k.clone(), v(x))),
                Item::Comment(_) => None,
            })
            .collect(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn yaml_round_trip(doc in map_of(value())) {
        let mut ids = Identities::new();
        let r = Recipient::parse(&ids.generate()).unwrap();
        let plain = sops_age::emit_plaintext(Format::Yaml, std::slice::from_ref(&doc), &StoreOptions::default()).unwrap();
        let parsed = sops_age::parse_plaintext(Format::Yaml, &plain).unwrap();
        prop_assert_eq!(&parsed[0], &doc, "emit/parse:\n{}", String::from_utf8_lossy(&plain));
        let enc = sops_age::encrypt(&plain, Format::Yaml, &EncryptOptions::new(vec![r])).unwrap();
        let dec = sops_age::decrypt(&enc, Format::Yaml, &ids).unwrap();
        prop_assert_eq!(dec.as_slice(), plain.as_slice());
    }

    #[test]
    fn json_round_trip(doc in map_of(value())) {
        let mut ids = Identities::new();
        let r = Recipient::parse(&ids.generate()).unwrap();
        let plain = sops_age::emit_plaintext(Format::Json, std::slice::from_ref(&doc), &StoreOptions::default()).unwrap();
        let enc = sops_age::encrypt(&plain, Format::Json, &EncryptOptions::new(vec![r])).unwrap();
        let dec = sops_age::decrypt(&enc, Format::Json, &ids).unwrap();
        prop_assert_eq!(dec.as_slice(), plain.as_slice());
        let parsed = sops_age::parse_plaintext(Format::Json, &dec).unwrap();
        let want = strip_comments(&doc);
        // JSON has no comments and writes whole floats as ints; compare through JSON text
        let re = sops_age::emit_plaintext(Format::Json, &[want], &StoreOptions::default()).unwrap();
        prop_assert_eq!(sops_age::emit_plaintext(Format::Json, &parsed, &StoreOptions::default()).unwrap(), re);
    }

    #[test]
    fn binary_round_trip(data in prop::collection::vec(any::<u8>(), 0..300)) {
        let mut ids = Identities::new();
        let r = Recipient::parse(&ids.generate()).unwrap();
        let enc = sops_age::encrypt(&data, Format::Binary, &EncryptOptions::new(vec![r])).unwrap();
        let dec = sops_age::decrypt(&enc, Format::Binary, &ids).unwrap();
        prop_assert_eq!(dec.as_slice(), data.as_slice());
    }

    #[test]
    fn dotenv_round_trip(pairs in prop::collection::vec(("[A-Z_][A-Z0-9_]{0,8}", "[^\n=\\\\]{0,12}"), 1..8)) {
        let mut ids = Identities::new();
        let r = Recipient::parse(&ids.generate()).unwrap();
        let text: String = pairs.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
        let enc = sops_age::encrypt(text.as_bytes(), Format::Dotenv, &EncryptOptions::new(vec![r])).unwrap();
        let dec = sops_age::decrypt(&enc, Format::Dotenv, &ids).unwrap();
        prop_assert_eq!(String::from_utf8_lossy(&dec), text);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// The fuzz targets' bodies on stable: no parser or emitter panics on arbitrary input.
    #[test]
    fn parsers_never_panic(
        bytes in prop::collection::vec(any::<u8>(), 0..300),
        yamlish in "[a-z0-9:#\\-\\[\\]{}'\" \n|>&*!,.=;_]{0,200}",
    ) {
        for format in [Format::Yaml, Format::Json, Format::Dotenv, Format::Ini, Format::Binary] {
            for data in [&bytes[..], yamlish.as_bytes()] {
                sops_age::fuzz::plain_round_trip(format, data);
                sops_age::fuzz::encrypted(format, data);
            }
        }
    }
}
