use super::*;
use serde_json::json;

fn nested(depth: usize) -> serde_json::Value {
    let mut v = json!(1);
    for _ in 1..depth {
        v = json!({ "a": v });
    }
    v
}

#[test]
fn the_deepest_allowed_metadata_decodes() {
    // What the reader of a jsonb column does with the server's text.
    let deepest = nested(METADATA_DEPTH_LIMIT);
    let text = serde_json::to_vec(&deepest).unwrap();
    let back: serde_json::Value = serde_json::from_slice(&text).unwrap();
    assert_eq!(back, deepest);
    let policy = MetadataPolicy {
        max_depth: METADATA_DEPTH_LIMIT,
        max_bytes: usize::MAX,
    };
    metadata(&deepest, &policy).unwrap();
    // A policy looser than the reader is refused, not obeyed.
    let loose = MetadataPolicy {
        max_depth: METADATA_DEPTH_LIMIT + 1,
        ..policy
    };
    assert!(matches!(
        metadata(&json!({}), &loose),
        Err(Error::Config { .. })
    ));
}

#[test]
fn every_finite_float_reads_back_unchanged() {
    // With serde_json's float_roundtrip (Cargo.toml), the full decimal
    // expansion the server prints parses back to the same float, even at
    // the extremes, so no finite float is refused.
    let policy = MetadataPolicy::default();
    for value in [
        0.0,
        -0.5,
        0.1,
        0.30000000000000004,
        123456789.12345679,
        1e-7,
        1.5e20,
        1e308,
        f64::MAX,
        f64::MIN,
        f64::MIN_POSITIVE,
        5e-324,
    ] {
        metadata(&json!({ "a": value }), &policy).unwrap_or_else(|e| panic!("{value:e}: {e}"));
    }
    metadata(&json!({ "a": i64::MIN, "b": u64::MAX }), &policy).unwrap();
}

/// What `script_content` matched before the deny-list was prepared
/// once: both sides lower-cased per task and pattern.
fn denied_by_lowercasing<'p>(script: &str, policy: &'p ScriptPolicy) -> Option<&'p str> {
    let lowered = script.to_lowercase();
    policy
        .deny_patterns
        .iter()
        .find(|p| !p.is_empty() && lowered.contains(&p.to_lowercase()))
        .map(String::as_str)
}

/// A deny-list that could not be compiled refuses every script with a
/// configuration error: it never lets them all through.
#[test]
fn a_deny_list_that_cannot_be_compiled_fails_closed() {
    let broken = DenyList {
        patterns: vec!["rm -rf".to_owned()],
        automaton: Err("too many patterns".to_owned()),
    };
    for script in ["echo ok", "rm -rf /"] {
        let err = script_content_with(script, &broken).unwrap_err();
        assert!(
            matches!(&err, Error::Config { message } if message.contains("too many patterns")),
            "{err:?}"
        );
    }
}

#[test]
fn deny_list_decides_as_lowercasing_both_sides() {
    let policy = ScriptPolicy {
        deny_patterns: [
            "",
            "RM -RF",
            "mkfs.",
            "Straße",
            "\u{212a}ill",
            "İx",
            "ΣΑΣ",
            "é",
            "a\u{0}b",
        ]
        .iter()
        .map(|p| p.to_string())
        .collect(),
    };
    let scripts = [
        "",
        "echo ok",
        "rm -rf /",
        "sudo RM -Rf /",
        "rm  -rf",
        "r",
        "MKFS.ext4 /dev/sda",
        "mkfs",
        "STRASSE",
        "straße",
        "STRAẞE",
        "kill -9 1",
        "KILL",
        "\u{212a}ILL",
        "i\u{307}x",
        "İX",
        "σας",
        "ΣΑΣ",
        "É",
        "e\u{301}",
        "a\u{0}B",
        "ab",
    ];
    let deny = DenyList::new(&policy);
    for script in scripts {
        assert_eq!(
            deny.find(script).unwrap(),
            denied_by_lowercasing(script, &policy),
            "{script:?}"
        );
    }
    // Patterns earlier in the list win, as before.
    assert_eq!(deny.find("mkfs. rm -rf").unwrap(), Some("RM -RF"));
    // No pattern, or only an empty one: everything passes.
    assert_eq!(
        DenyList::new(&ScriptPolicy::allow_all())
            .find("rm -rf")
            .unwrap(),
        None
    );
    let empty = ScriptPolicy {
        deny_patterns: vec![String::new()],
    };
    assert_eq!(DenyList::new(&empty).find("rm -rf").unwrap(), None);
    // The default list, through the public function.
    let default = ScriptPolicy::default();
    assert!(script_content("RM -Rf /tmp/x", &default).is_err());
    assert!(script_content("echo Mkfs.EXT4", &default).is_err());
    assert!(script_content("echo fine", &default).is_ok());
}

/// The length the walk adds up, taken with a limit of zero bytes from
/// the error message ("is N bytes, more than 0").
fn measured_len(value: &serde_json::Value) -> usize {
    let policy = MetadataPolicy {
        max_bytes: 0,
        max_depth: METADATA_DEPTH_LIMIT,
    };
    let Err(Error::Validation { message, .. }) = metadata(value, &policy) else {
        panic!("every object is more than 0 bytes: {value}");
    };
    message
        .strip_prefix("is ")
        .and_then(|m| m.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("unexpected message {message:?}"))
}

#[test]
fn metadata_size_is_the_serialised_length() {
    use serde_json::{Map, Number, Value};

    let float = |f: f64| Value::Number(Number::from_f64(f).expect("finite"));
    let mut values = vec![
        serde_json::json!({}),
        serde_json::json!({"a": null, "b": true, "c": false}),
        serde_json::json!({"": "", "k": [], "o": {}}),
        serde_json::json!({"q": "\"quoted\" and \\ back\\slash"}),
        serde_json::json!({"ctl": "\u{1}\u{8}\t\n\u{b}\u{c}\r\u{1f}\u{7f} end"}),
        serde_json::json!({"uni": "é ß 漢字 🦀 \u{2028}\u{2029}", "é🦀": 1}),
        serde_json::json!({"ints": [0, -1, 1, i64::MIN, i64::MAX, u64::MAX, 1234567]}),
        serde_json::json!({"edges": [9, 10, 99, 100, -9, -10, -99, -100, 999_999, 1_000_000]}),
        serde_json::json!({"deep": {"a": [1, [2, [3, {"b": [null, {"c": "d"}]}]]]}}),
        serde_json::json!({"mixed": [1, "two", 3.5, {"four": [true]}, [], {}]}),
    ];
    let mut floats = Map::new();
    for (i, f) in [
        0.0,
        -0.0,
        0.1,
        -2.5,
        1e21,
        1e-7,
        123456789.125,
        f64::MIN_POSITIVE,
        f64::MAX,
        1.0 / 3.0,
        5e-324,
    ]
    .into_iter()
    .enumerate()
    {
        floats.insert(format!("f{i}"), float(f));
    }
    values.push(Value::Object(floats));
    for value in &values {
        let written = serde_json::to_vec(value).expect("serialises").len();
        assert_eq!(measured_len(value), written, "{value}");
    }
    // The limit is inclusive, as before: exactly max_bytes passes.
    let value = serde_json::json!({"team": "a\"b", "n": [1.5, 2]});
    let len = serde_json::to_vec(&value).expect("serialises").len();
    let at = |max_bytes| MetadataPolicy {
        max_bytes,
        max_depth: 16,
    };
    assert!(metadata(&value, &at(len)).is_ok());
    assert!(metadata(&value, &at(len - 1)).is_err());
}
