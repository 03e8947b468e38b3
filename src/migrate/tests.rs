use super::*;

#[test]
fn servers_older_than_13_are_refused_by_name() {
    assert!(check_server_version(130_000).is_ok());
    assert!(check_server_version(150_004).is_ok());
    assert!(check_server_version(i32::MAX).is_ok());
    for (num, shown) in [(120_017, "12.17"), (90_624, "9.6.24"), (0, "0.0.0")] {
        let err = check_server_version(num).unwrap_err();
        assert!(matches!(err, Error::Config { .. }), "{err:?}");
        let text = err.to_string();
        assert!(text.contains("PostgreSQL 13 or newer"), "{text}");
        assert!(text.contains(shown), "{text}");
    }
    assert!(check_server_version(-1).is_err());
}

#[test]
fn embedded_migrations_are_ordered_and_reversible() {
    let all = embedded();
    assert!(!all.is_empty());
    assert_eq!(all[0].version, 1);
    assert!(all.windows(2).all(|w| w[0].version < w[1].version));
    for m in all {
        assert!(!m.up.trim().is_empty(), "V{} up is empty", m.version);
        assert!(!m.down.trim().is_empty(), "V{} down is empty", m.version);
    }
    assert_eq!(latest_version(), all.last().unwrap().version);
}

#[test]
fn history_table_is_not_refinerys_default() {
    assert_ne!(HISTORY_TABLE, "refinery_schema_history");
}

#[test]
fn service_history_tables_are_checked() {
    for ok in ["svc_schema_history", "_x", "a1", "refinery_schema_history"] {
        assert!(validate_history_table(ok).is_ok(), "{ok}");
    }
    let too_long = "a".repeat(64);
    for bad in [
        "",
        HISTORY_TABLE,
        "Svc",
        "1svc",
        "svc-history",
        "public.svc",
        "svc\"; DROP TABLE tasks; --",
        "users",
        "task_executions",
        "pg_class",
        "s\u{e9}",
        too_long.as_str(),
    ] {
        let err = validate_history_table(bad).unwrap_err();
        assert!(err.is_validation(), "{bad}: {err}");
    }
    assert!(validate_history_table(&"a".repeat(63)).is_ok());
}

#[test]
fn only_marked_migrations_run_outside_a_transaction() {
    let v5 = embedded().iter().find(|m| m.version == 5).unwrap();
    assert!(!v5.runs_in_transaction());
    assert!(
        embedded()
            .iter()
            .filter(|m| m.version < 5)
            .all(EmbeddedMigration::runs_in_transaction)
    );
    let marked = |up: &'static str| EmbeddedMigration {
        version: 9,
        name: "x",
        up,
        down: "",
    };
    assert!(!marked("-- voidrunner:no-transaction\r\nSELECT 1;").runs_in_transaction());
    assert!(!marked("-- voidrunner:no-transaction  \n").runs_in_transaction());
    assert!(marked("\n-- voidrunner:no-transaction\n").runs_in_transaction());
    assert!(marked("-- voidrunner:no-transactions\n").runs_in_transaction());
    assert!(marked("").runs_in_transaction());
}

#[test]
fn the_linter_knows_which_migrations_run_outside_a_transaction() {
    // CI lints with `assume_in_transaction`; a migration run outside one
    // must say so to squawk too (and only such a migration).
    for m in embedded() {
        assert_eq!(
            m.up.contains("-- squawk-disable-assume-in-transaction"),
            !m.runs_in_transaction(),
            "{}",
            m.label()
        );
    }
}

#[test]
fn statements_split_at_top_level_semicolons() {
    let sql = "-- a comment; not a statement\n\
               SELECT 1;\n\
               /* block; /* nested; */ still; */ SELECT ';', 'it''s;', E'\\';', \"a;b\";\n\
               CREATE FUNCTION f() RETURNS int LANGUAGE sql AS $body$ SELECT 1; $body$;\n\
               DO $$ BEGIN PERFORM 1; END $$;\n\
               SELECT $1::int, a$b FROM t;;\n\
               SELECT 'trailing, no semicolon'\n\
               -- and a last comment";
    let got = split_statements(sql);
    let texts: Vec<&str> = got.iter().map(|s| s.sql).collect();
    assert_eq!(
        texts,
        [
            "SELECT 1",
            "SELECT ';', 'it''s;', E'\\';', \"a;b\"",
            "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS $body$ SELECT 1; $body$",
            "DO $$ BEGIN PERFORM 1; END $$",
            "SELECT $1::int, a$b FROM t",
            "SELECT 'trailing, no semicolon'\n-- and a last comment",
        ]
    );
    assert_eq!(
        got.iter().map(|s| s.line).collect::<Vec<_>>(),
        [2, 3, 4, 5, 6, 7]
    );
    assert!(split_statements("-- only\n/* comments */ ;\n").is_empty());
}

#[test]
fn v5_runs_as_four_statements() {
    let v5 = embedded().iter().find(|m| m.version == 5).unwrap();
    let statements = split_statements(v5.up);
    let starts: Vec<String> = statements
        .iter()
        .map(|s| {
            s.sql
                .split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    assert_eq!(
        starts,
        [
            "ALTER TABLE task_executions",
            "WITH ranked AS",
            "DROP INDEX CONCURRENTLY",
            "CREATE UNIQUE INDEX",
        ]
    );
}

#[test]
fn retry_backoff_grows_with_jitter_within_bounds() {
    let timeout = Duration::from_millis(200);
    for (retry, full) in [(1, 200), (2, 400), (3, 800), (4, 1600)] {
        for _ in 0..50 {
            let wait = retry_backoff(timeout, retry);
            assert!(
                wait >= Duration::from_millis(full / 2) && wait <= Duration::from_millis(full),
                "retry {retry}: {wait:?}"
            );
        }
    }
    // The base is capped at 1 s and the wait at 10 s.
    assert!(retry_backoff(Duration::from_secs(600), 1) <= Duration::from_secs(1));
    assert!(retry_backoff(Duration::from_secs(600), u32::MAX) <= Duration::from_secs(10));
    assert!(retry_backoff(Duration::from_millis(10), 0) <= Duration::from_millis(10));
}
