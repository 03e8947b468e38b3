//! `parse_duration`, the reader of every duration setting, on the inputs a
//! service's own settings may hold: well-formed, extreme and hostile. None
//! may panic; every refusal is an `Error::Config`.

use super::*;

fn refused(text: &str) -> String {
    match parse_duration(text) {
        Err(Error::Config { message }) => message,
        other => panic!("{text:?}: {other:?}"),
    }
}

#[test]
fn units_compounds_fractions_and_whitespace() {
    let ok = |text: &str| parse_duration(text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
    assert_eq!(ok("250ms"), Duration::from_millis(250));
    assert_eq!(ok("30s"), Duration::from_secs(30));
    assert_eq!(ok("5m"), Duration::from_secs(300));
    assert_eq!(ok("1h"), Duration::from_secs(3600));
    assert_eq!(ok("1m30s"), Duration::from_secs(90));
    assert_eq!(ok("2h 15m"), Duration::from_secs(8100));
    assert_eq!(ok("1.5s"), Duration::from_millis(1500));
    assert_eq!(ok("  7s\t\n"), Duration::from_secs(7));
    assert_eq!(ok("0s"), Duration::ZERO);
    assert_eq!(ok("1ns"), Duration::from_nanos(1));
    // The largest a Duration holds is still a duration.
    assert_eq!(ok(&format!("{}s", u64::MAX)), Duration::from_secs(u64::MAX));
}

#[test]
fn empty_and_blank_are_refused() {
    for text in ["", " ", "\t\n"] {
        assert!(refused(text).contains("empty"), "{text:?}");
    }
}

#[test]
fn negative_values_are_refused_as_negative() {
    for text in ["-5s", " -1ms", "-0s", "-"] {
        assert!(refused(text).contains("negative"), "{text:?}");
    }
}

#[test]
fn overflow_is_refused_not_wrapped() {
    for text in [
        "99999999999999999999s",
        "18446744073709551616s",
        &format!("{}h", u64::MAX),
        "600000000000y",
        &format!("{}s 1s", u64::MAX),
        // A fraction with more digits than any integer holds.
        &format!("1.{}s", "9".repeat(100)),
        &format!("{}s", "9".repeat(10_000)),
    ] {
        let message = refused(text);
        assert!(message.contains("not a duration"), "{text:?}: {message}");
    }
}

#[test]
fn missing_or_unknown_units_are_refused() {
    for (text, said) in [
        ("5", "unit"),
        ("5parsecs", "unknown time unit"),
        ("ms", "expected number"),
        ("1e9s", "not a duration"),
        ("off", "not a duration"),
        ("+5s", "not a duration"),
        ("5 s s", "not a duration"),
        ("1.s", "not a duration"),
        ("５s", "not a duration"),
        ("5\u{0}s", "not a duration"),
        ("é", "not a duration"),
    ] {
        let message = refused(text);
        assert!(message.contains(said), "{text:?}: {message}");
    }
}

#[test]
fn the_quoted_text_is_cut_short() {
    let junk = format!("{}x", "ä".repeat(5_000));
    let message = refused(&junk);
    assert!(message.len() < 400, "{} bytes", message.len());
    assert!(
        message.contains(&format!("`{}…`", "ä".repeat(40))),
        "{message}"
    );
}

#[test]
fn settings_read_durations_through_it() {
    let err = DbConfig::from_lookup(lookup(&[
        ("DATABASE_URL", "postgres://u@h/db"),
        ("VOIDRUNNER_DB_WAIT_TIMEOUT", "-5s"),
    ]))
    .unwrap_err();
    assert!(err.to_string().contains("negative"), "{err}");
}
