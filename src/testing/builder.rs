//! [`TestDatabaseBuilder`]: a test database with the settings the plain
//! constructors of [`TestDatabase`] do not combine.

use std::fmt;

use super::{DEFAULT_DATABASE_PREFIX, TestDatabase, check_database_prefix, harness, template_with};
use crate::config::DbConfig;
use crate::error::Result;

/// How [`TestDatabase::builder`] makes a test database: its name's prefix
/// ([`prefix`](Self::prefix)), the pool's settings
/// ([`config`](Self::config)), and what it holds: the crate's migrations
/// (the default), a service's own after them
/// ([`migrations`](Self::migrations)), or nothing ([`empty`](Self::empty)).
/// [`build`](Self::build) makes it.
///
/// ```no_run
/// # async fn example() -> voidrunner_db::Result<()> {
/// use voidrunner_db::testing::TestDatabase;
///
/// let test_db = TestDatabase::builder()
///     .prefix("billing_test_") // billing_test_<token>_<n>, not vrdb_test_…
///     .config(|c| c.max_connections = 10)
///     .build()
///     .await?;
/// assert!(test_db.name().starts_with("billing_test_"));
/// # Ok(()) }
/// ```
///
/// `'a` is the lifetime of the [`config`](Self::config) closure's borrows.
#[must_use = "a builder does nothing until `build()`"]
pub struct TestDatabaseBuilder<'a> {
    prefix: String,
    adjust: Option<Adjust<'a>>,
    contents: Contents,
}

/// The pool settings' adjustment of [`TestDatabaseBuilder::config`].
type Adjust<'a> = Box<dyn FnOnce(&mut DbConfig) + Send + 'a>;

/// What the database starts with.
#[derive(Debug)]
enum Contents {
    /// The crate's migrations.
    Crate,
    /// A service's migrations after the crate's, recorded in the history
    /// table.
    Service(Vec<refinery::Migration>, String),
    Empty,
}

impl TestDatabaseBuilder<'static> {
    pub(super) fn new() -> Self {
        TestDatabaseBuilder {
            prefix: DEFAULT_DATABASE_PREFIX.to_owned(),
            adjust: None,
            contents: Contents::Crate,
        }
    }
}

impl<'a> TestDatabaseBuilder<'a> {
    /// Names the database `{prefix}{token}_{n}` instead of
    /// `vrdb_test_{token}_{n}` ([`DEFAULT_DATABASE_PREFIX`]), e.g. to tell a
    /// service's test databases from others on a shared server. The prefix
    /// must pass [`check_database_prefix`] (a lowercase identifier of at
    /// most [`MAX_DATABASE_PREFIX_BYTES`](super::MAX_DATABASE_PREFIX_BYTES)
    /// bytes); [`build`](Self::build) refuses another before it contacts
    /// the server.
    ///
    /// Leftovers of a crashed run with this prefix are dropped when a
    /// process first uses it, as those of the default prefix are when the
    /// harness starts.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Adjusts the pool's settings before connecting, as
    /// [`TestDatabase::with_config`] does; closures given by several calls
    /// run in order.
    pub fn config<'b>(
        self,
        adjust: impl FnOnce(&mut DbConfig) + Send + 'b,
    ) -> TestDatabaseBuilder<'b>
    where
        'a: 'b,
    {
        let adjust: Adjust<'b> = match self.adjust {
            None => Box::new(adjust),
            Some(earlier) => Box::new(move |config: &mut DbConfig| {
                earlier(config);
                adjust(config);
            }),
        };
        TestDatabaseBuilder {
            prefix: self.prefix,
            adjust: Some(adjust),
            contents: self.contents,
        }
    }

    /// A clone of a template with the crate's migrations and then a
    /// service's `migrations`, recorded in `history_table`, as
    /// [`TestDatabase::with_migrations`] makes; replaces an earlier
    /// [`empty`](Self::empty).
    pub fn migrations(mut self, migrations: &[refinery::Migration], history_table: &str) -> Self {
        self.contents = Contents::Service(migrations.to_vec(), history_table.to_owned());
        self
    }

    /// An empty database with no migration applied, as
    /// [`TestDatabase::empty`] makes; replaces earlier
    /// [`migrations`](Self::migrations).
    pub fn empty(mut self) -> Self {
        self.contents = Contents::Empty;
        self
    }

    /// Makes the database. The prefix and a service's history table are
    /// checked first, with an [`Error::Validation`](crate::Error::Validation)
    /// naming what is wrong and nothing sent to the server.
    pub async fn build(self) -> Result<TestDatabase> {
        check_database_prefix(&self.prefix)?;
        if let Contents::Service(_, history_table) = &self.contents {
            crate::migrate::validate_history_table(history_table)?;
        }
        let template = match self.contents {
            Contents::Crate => Some(harness().await?.template.clone()),
            Contents::Service(migrations, history_table) => {
                Some(template_with(migrations, history_table).await?)
            }
            Contents::Empty => None,
        };
        let adjust = self.adjust;
        TestDatabase::create(template, &self.prefix, move |config| {
            if let Some(adjust) = adjust {
                adjust(config);
            }
        })
        .await
    }
}

impl fmt::Debug for TestDatabaseBuilder<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let contents = match &self.contents {
            Contents::Crate => "the crate's migrations".to_owned(),
            Contents::Service(migrations, history_table) => format!(
                "the crate's migrations and {} of a service ({history_table})",
                migrations.len()
            ),
            Contents::Empty => "nothing".to_owned(),
        };
        f.debug_struct("TestDatabaseBuilder")
            .field("prefix", &self.prefix)
            .field("config", &self.adjust.as_ref().map(|_| "adjusted"))
            .field("contents", &contents)
            .finish()
    }
}
