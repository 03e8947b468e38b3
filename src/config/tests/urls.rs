//! Connection strings: their forms, what is kept of them, and that a
//! password never shows.

use super::*;

#[test]
fn display_target_names_every_host() {
    let one = DbConfig::from_url("postgres://u:secret@db.internal:6432/app").unwrap();
    assert_eq!(one.display_target(), "db.internal:6432/app");
    let many = DbConfig::from_url(
        "host=a,b,c port=5432,5433,5434 dbname=app user=u password=secret \
         target_session_attrs=read-write",
    )
    .unwrap();
    assert_eq!(many.display_target(), "a:5432,b:5433,c:5434/app");
    let shared_port = DbConfig::from_url("host=a,b port=6000 user=u").unwrap();
    assert_eq!(shared_port.display_target(), "a:6000,b:6000/u");
    let url = DbConfig::from_url("postgres://u:secret@a:1,b:2/app").unwrap();
    assert_eq!(url.display_target(), "a:1,b:2/app");
    let text = format!("{:?}", many);
    assert!(text.contains("a:5432,b:5433,c:5434/app"), "{text}");
    assert!(!text.contains("secret"), "{text}");
}

#[test]
fn an_unencoded_at_in_the_password_is_refused_without_echoing_it() {
    for url in [
        "postgres://u:p4@ss@host/db",
        "postgres://app:P@ssw0rd@db:5432/app",
        "host=ss@host user=u password=p4",
    ] {
        let err = DbConfig::from_url(url).unwrap_err();
        let text = format!("{err} {err:?}");
        assert!(text.contains("%40"), "{text}");
        assert!(
            !text.contains("ss@host") && !text.contains("ssw0rd"),
            "{text}"
        );
    }
    let encoded = DbConfig::from_url("postgres://u:p4%40ss@host/db").unwrap();
    assert_eq!(encoded.display_target(), "host:5432/db");
    let mut forced = encoded.clone();
    forced.pg_config_mut().host("secret@host");
    assert!(!forced.display_target().contains("secret"));
}

#[test]
fn debug_never_shows_the_password() {
    for url in [
        "postgres://app:s3cr3t-pw@db.example:5433/vr",
        "host=db.example user=app password=s3cr3t-pw dbname=vr",
        "postgres://app@db.example/vr?password=s3cr3t-pw",
    ] {
        let c = DbConfig::from_url(url).unwrap();
        let shown = format!("{c:?}");
        assert!(!shown.contains("s3cr3t-pw"), "{shown}");
        assert!(shown.contains("<redacted>"), "{shown}");
        assert!(shown.contains("db.example"), "{shown}");
    }
}

#[test]
fn bad_url_is_a_config_error_without_the_secret() {
    let err = DbConfig::from_url("postgres://app:s3cr3t@host:notaport/db").unwrap_err();
    assert!(matches!(err, Error::Config { .. }), "{err:?}");
    assert!(!err.to_string().contains("s3cr3t"), "{err}");
}

#[test]
fn session_settings_join_url_options() {
    let c = DbConfig::from_url("postgres://u@h/db?options=-c%20search_path%3Dapp").unwrap();
    assert_eq!(
        c.pooled_pg_config().get_options(),
        Some(
            "-c search_path=app -c statement_timeout=30000 -c idle_in_transaction_session_timeout=60000"
        )
    );
    // Dedicated connections never get the statement timeout.
    assert_eq!(
        c.dedicated_pg_config().get_options(),
        Some("-c search_path=app")
    );
}
