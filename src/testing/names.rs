//! The names of the harness's databases: a test database is its prefix,
//! the 8 hex digits of its process's token, `_` and a counter; a template
//! is `vrdb_tpl_` and a hash of its migrations.

use crate::error::{Error, Result};

/// The prefix of a test database's name unless the caller chooses another
/// ([`TestDatabaseBuilder::prefix`](super::TestDatabaseBuilder::prefix)).
pub const DEFAULT_DATABASE_PREFIX: &str = "vrdb_test_";

/// The longest prefix a test database's name may have, in bytes: the
/// suffix takes up to 29 more (8 hex digits of the process's token, `_`,
/// a counter of up to 20 digits), and PostgreSQL cuts names at 63 bytes.
pub const MAX_DATABASE_PREFIX_BYTES: usize = 63 - SUFFIX_MAX_BYTES;

/// `{token:08x}_{counter}` at its longest.
const SUFFIX_MAX_BYTES: usize = 8 + 1 + 20;

pub(super) const TEMPLATE_PREFIX: &str = "vrdb_tpl_";

/// Checks that `prefix` can begin the name of a test database: a lowercase
/// identifier (`[a-z_][a-z0-9_]*`, so that the names can be typed in psql
/// without quotes, as PostgreSQL folds unquoted names to lower case), at
/// most [`MAX_DATABASE_PREFIX_BYTES`] bytes, and not the templates'
/// `vrdb_tpl_`. Refused with an [`Error::Validation`] of field `prefix`
/// that says why; nothing is sent to the server.
///
/// ```
/// use voidrunner_db::testing::check_database_prefix;
///
/// check_database_prefix("billing_test_")?;
/// let err = check_database_prefix("Billing-Test").unwrap_err();
/// assert!(err.is_validation() && err.field() == Some("prefix"), "{err}");
/// # Ok::<(), voidrunner_db::Error>(())
/// ```
pub fn check_database_prefix(prefix: &str) -> Result<()> {
    let refused = |why: String| {
        Err(Error::validation(
            "prefix",
            format!("{prefix:?} cannot begin a test database's name: {why}"),
        ))
    };
    if prefix.is_empty() {
        // The prefix is how the next run finds what a crashed run left.
        return refused("it is empty".into());
    }
    let mut chars = prefix.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_');
    if !first_ok || !chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_') {
        return refused(
            "it must be a lowercase identifier ([a-z_][a-z0-9_]*), which PostgreSQL takes \
             unquoted"
                .into(),
        );
    }
    if prefix.len() > MAX_DATABASE_PREFIX_BYTES {
        return refused(format!(
            "it is {} bytes, and at most {MAX_DATABASE_PREFIX_BYTES} leave room for the \
             suffix ({SUFFIX_MAX_BYTES} bytes at most) within PostgreSQL's 63",
            prefix.len()
        ));
    }
    if prefix.starts_with(TEMPLATE_PREFIX) {
        return refused(format!(
            "{TEMPLATE_PREFIX} begins the harness's templates, which are swept by other rules"
        ));
    }
    Ok(())
}

/// The name of test database `n` of the process holding `token`.
pub(super) fn database_name(prefix: &str, token: u32, n: u64) -> String {
    format!("{prefix}{token:08x}_{n}")
}

/// The token in `name` if it is exactly a name [`database_name`] makes with
/// `prefix`; anything else (another application's database that merely
/// starts alike) is not the harness's to drop.
pub(super) fn token_of(name: &str, prefix: &str) -> Option<u32> {
    let rest = name.strip_prefix(prefix)?;
    let (hex, counter) = rest.split_once('_')?;
    let is_hex = hex.len() == 8 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    let is_counter = !counter.is_empty() && counter.bytes().all(|b| b.is_ascii_digit());
    if !(is_hex && is_counter) {
        return None;
    }
    u32::from_str_radix(hex, 16).ok()
}

/// `vrdb_tpl_` + a hash of every embedded migration and of the service's
/// migrations and history table if any, so a changed migration gets a fresh
/// template.
pub(super) fn template_name(service: Option<(&[refinery::Migration], &str)>) -> String {
    // FNV-1a: stable across Rust versions, unlike std's DefaultHasher.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut feed = |part: &[u8]| {
        for byte in part.iter().chain(&[0xff]) {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    };
    for m in crate::migrate::embedded() {
        feed(&m.version.to_le_bytes());
        feed(m.name.as_bytes());
        feed(m.up.as_bytes());
        feed(m.down.as_bytes());
    }
    if let Some((migrations, history_table)) = service {
        feed(b"service");
        feed(history_table.as_bytes());
        let mut sorted: Vec<&refinery::Migration> = migrations.iter().collect();
        sorted.sort_by_key(|m| m.version());
        for m in sorted {
            feed(&m.version().to_le_bytes());
            feed(m.name().as_bytes());
            feed(m.sql().unwrap_or_default().as_bytes());
        }
    }
    format!("{TEMPLATE_PREFIX}{hash:016x}")
}

/// The in-use lock key of a template: the first 32 bits of its hash. A
/// collision only keeps a stale template around longer.
pub(super) fn template_key(name: &str) -> i32 {
    let hex = name.strip_prefix(TEMPLATE_PREFIX).unwrap_or(name);
    hex.get(..8)
        .and_then(|h| u32::from_str_radix(h, 16).ok())
        .unwrap_or(0) as i32
}

/// Identifiers here are generated by the harness (a checked prefix + hex
/// digits), never free user input; quoting is belt and braces.
pub(super) fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_name_is_stable_and_short() {
        let a = template_name(None);
        assert_eq!(a, template_name(None));
        assert!(a.starts_with(TEMPLATE_PREFIX));
        assert!(a.len() < 63, "PostgreSQL truncates identifiers at 63 bytes");
    }

    #[test]
    fn service_migrations_name_their_own_template() {
        let m = |name: &str, sql: &str| refinery::Migration::unapplied(name, sql).unwrap();
        let one = [m("V1__notes", "CREATE TABLE notes (id int)")];
        let base = template_name(None);
        let a = template_name(Some((&one, "svc_history")));
        assert_ne!(a, base);
        assert_eq!(a, template_name(Some((&one, "svc_history"))));
        assert!(a.starts_with(TEMPLATE_PREFIX) && a.len() == base.len());
        // Another history table, an edited script or another set: another template.
        assert_ne!(a, template_name(Some((&one, "other_history"))));
        let edited = [m("V1__notes", "CREATE TABLE notes (id bigint)")];
        assert_ne!(a, template_name(Some((&edited, "svc_history"))));
        let two = [one[0].clone(), m("V2__more", "SELECT 1")];
        assert_ne!(a, template_name(Some((&two, "svc_history"))));
        // The order they are given in does not matter.
        let reversed = [two[1].clone(), two[0].clone()];
        assert_eq!(
            template_name(Some((&two, "svc_history"))),
            template_name(Some((&reversed, "svc_history")))
        );
    }

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
    }

    #[test]
    fn prefixes_are_lowercase_identifiers_that_leave_room_for_the_suffix() {
        for ok in [
            DEFAULT_DATABASE_PREFIX,
            "billing_test_",
            "_",
            "a",
            "svc2_",
            "vrdb_tpl",
            &"a".repeat(MAX_DATABASE_PREFIX_BYTES),
        ] {
            check_database_prefix(ok).unwrap_or_else(|e| panic!("{ok:?}: {e}"));
        }
        for (bad, says) in [
            ("", "empty"),
            ("Billing_", "lowercase identifier"),
            ("billing-test", "lowercase identifier"),
            ("2fast_", "lowercase identifier"),
            ("svc test", "lowercase identifier"),
            ("svc\"_", "lowercase identifier"),
            ("svc\0_", "lowercase identifier"),
            ("caf\u{e9}_", "lowercase identifier"),
            ("$svc", "lowercase identifier"),
            (&"a".repeat(MAX_DATABASE_PREFIX_BYTES + 1), "35 bytes"),
            ("vrdb_tpl_", "templates"),
            ("vrdb_tpl_x_", "templates"),
        ] {
            let err = check_database_prefix(bad).unwrap_err();
            assert!(
                err.is_validation() && err.field() == Some("prefix"),
                "{err:?}"
            );
            assert!(err.to_string().contains(says), "{bad:?}: {err}");
        }
    }

    #[test]
    fn the_longest_name_fits_postgres_limit() {
        let prefix = "p".repeat(MAX_DATABASE_PREFIX_BYTES);
        let longest = database_name(&prefix, u32::MAX, u64::MAX);
        assert_eq!(longest.len(), 63);
        assert_eq!(token_of(&longest, &prefix), Some(u32::MAX));
    }

    #[test]
    fn only_exact_names_give_a_token() {
        let p = DEFAULT_DATABASE_PREFIX;
        assert_eq!(
            token_of(&database_name(p, 0xdead_beef, 7), p),
            Some(0xdead_beef)
        );
        assert_eq!(token_of(&database_name(p, 1, 0), p), Some(1));
        for other in [
            "vrdb_test_deadbeef",
            "vrdb_test_deadbeef_",
            "vrdb_test_deadbeef_1x",
            "vrdb_test_deadbee_1",
            "vrdb_test_DEADBEEF_1",
            "vrdb_test_deadbeef0_1",
            "vrdb_test_x_deadbeef_1",
            "vrdb_test_deadbeef_1_2",
            "other_deadbeef_1",
        ] {
            assert_eq!(token_of(other, p), None, "{other}");
        }
        // A custom prefix and the default one never claim each other's
        // databases.
        let custom = "vrdb_test_x_";
        assert_eq!(token_of(&database_name(custom, 5, 1), p), None);
        assert_eq!(token_of(&database_name(p, 5, 1), custom), None);
        assert_eq!(token_of(&database_name(p, 5, 1), "vrdb_"), None);
    }
}
