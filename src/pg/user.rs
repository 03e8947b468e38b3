//! [`UserRepository`] on PostgreSQL.

use std::error::Error as StdError;
use std::fmt;

use async_trait::async_trait;
use postgres_types::private::BytesMut;
use postgres_types::{IsNull, ToSql, Type, to_sql_checked};
use tokio_postgres::Row;

use super::{Columns, Conn, CursorKind, Keyset, ListSql, PageSpec, RowReader, Source, Table};
use super::{repo_span, traced};
use std::sync::Arc;

use crate::db::Database;
use crate::error::{Error, Result};
use crate::model::{NewUser, Page, PageRequest, PasswordHash, User, UserId, UserUpdate};
use crate::queries;
use crate::repo::UserRepository;
use crate::tx::TxInner;
use crate::validate;

/// A user's columns, in `read_user`'s order.
static COLUMN_NAMES: Columns = Columns {
    entity: "user",
    names: &queries::columns::USER,
};

pub(super) const TABLE: Table = Table {
    read: &COLUMN_NAMES,
    cursor: CursorKind::User,
    by_priority: false,
    get: queries::users::GET,
};

pub(super) const LIST: ListSql = ListSql {
    first: queries::lists::USERS_FIRST,
    after: queries::lists::USERS_AFTER,
};

/// Reads a user, its fields in [`COLUMN_NAMES`]' order.
fn read_user(r: &mut RowReader<'_>) -> Result<User> {
    Ok(User {
        id: r.next()?,
        email: r.next()?,
        display_name: r.next()?,
        password_hash: PasswordHash::new(r.next::<String>()?),
        created_at: r.next()?,
        updated_at: r.next()?,
    })
}

fn user_from_row(row: &Row) -> Result<User> {
    COLUMN_NAMES.read_one(row, read_user)
}

/// A secret bound as a `text` / `varchar` parameter whose `Debug` form is
/// redacted.
///
/// tokio-postgres logs every statement it executes at DEBUG with the `Debug`
/// form of its parameters (`executing statement … with parameters: [...]`),
/// so a secret bound as a plain `&str` reaches the application's logs as
/// soon as DEBUG is on. Bound through this wrapper, the server receives the
/// very same bytes and the log shows `<redacted>`. Every secret the crate
/// binds goes through it: today only the password hash (the database
/// password is never a bind parameter, and `DbConfig`'s `Debug` redacts it).
#[derive(Clone, Copy)]
struct SecretText<'a>(&'a str);

impl<'a> SecretText<'a> {
    fn hash(hash: &'a PasswordHash) -> Self {
        SecretText(hash.expose())
    }
}

impl fmt::Debug for SecretText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl ToSql for SecretText<'_> {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> std::result::Result<IsNull, Box<dyn StdError + Sync + Send>> {
        self.0.to_sql(ty, out)
    }

    // The columns holding secrets are text or varchar; anything else is a
    // type error, not a silent conversion.
    fn accepts(ty: &Type) -> bool {
        matches!(*ty, Type::TEXT | Type::VARCHAR)
    }

    to_sql_checked!();
}

impl super::param::SqlType for SecretText<'_> {
    const TYPE: Type = Type::TEXT;
}

fn keyset(user: &User) -> Keyset {
    Keyset {
        priority: 0,
        created_at: user.created_at,
        id: user.id.as_uuid(),
    }
}

/// [`UserRepository`] over the pool of a [`Database`].
#[derive(Debug, Clone)]
pub struct PgUserRepository {
    source: Source,
}

impl PgUserRepository {
    /// A repository over `db`'s pool.
    pub fn new(db: Database) -> Self {
        PgUserRepository {
            source: Source::Pool(db),
        }
    }

    pub(crate) fn in_transaction(tx: Arc<TxInner>) -> Self {
        PgUserRepository {
            source: Source::Tx(tx),
        }
    }
}

/// The queries, over a pooled connection or a transaction. Emails passed in
/// are already normalised.
pub(crate) mod sql {
    use super::*;

    pub(crate) async fn create(
        c: &Conn<'_>,
        email: &str,
        password_hash: &PasswordHash,
        display_name: &str,
    ) -> Result<User> {
        let row = c
            .query_one(
                &queries::users::CREATE,
                &[
                    &UserId::new(),
                    &email,
                    &SecretText::hash(password_hash),
                    &display_name,
                ],
            )
            .await?;
        user_from_row(&row)
    }

    pub(crate) async fn get(c: &Conn<'_>, id: UserId) -> Result<User> {
        user_from_row(&TABLE.get_row(c, id).await?)
    }

    pub(crate) async fn get_by_email(c: &Conn<'_>, email: &str) -> Result<User> {
        c.query_opt(&queries::users::GET_BY_EMAIL, &[&email])
            .await?
            .map(|row| user_from_row(&row))
            .transpose()?
            .ok_or_else(|| Error::not_found("user", email))
    }

    pub(crate) async fn update(
        c: &Conn<'_>,
        id: UserId,
        email: Option<&str>,
        password_hash: Option<&PasswordHash>,
        display_name: Option<&str>,
    ) -> Result<User> {
        if email.is_none() && password_hash.is_none() && display_name.is_none() {
            return get(c, id).await;
        }
        c.query_opt(
            &queries::users::UPDATE,
            &[
                &id,
                &email,
                &password_hash.map(SecretText::hash),
                &display_name,
            ],
        )
        .await?
        .map(|row| user_from_row(&row))
        .transpose()?
        .ok_or_else(|| Error::not_found("user", id))
    }

    pub(crate) async fn delete(c: &Conn<'_>, id: UserId) -> Result<()> {
        // The crate's lock order: the user, then its tasks in id order, then
        // their executions (the cascade). The cascade alone would lock the
        // tasks in whatever order it scans them, and would also meet tasks
        // created after one statement's snapshot, so the locks are taken
        // statement by statement: once the user row is locked no task can be
        // added for it, and the next statement's snapshot sees them all.
        // Run inside a transaction (`Source::transaction`).
        c.query_opt(&queries::users::LOCK, &[&id])
            .await?
            .ok_or_else(|| Error::not_found("user", id))?;
        c.execute(&queries::users::LOCK_TASKS, &[&id]).await?;
        c.execute(&queries::users::DELETE, &[&id]).await?;
        Ok(())
    }

    pub(crate) async fn list(c: &Conn<'_>, page: &PageSpec) -> Result<Page<User>> {
        TABLE.page(c, &LIST, &[], page, read_user, keyset).await
    }

    pub(crate) async fn count(c: &Conn<'_>) -> Result<i64> {
        TABLE.count(c, &queries::lists::USERS_COUNT, &[]).await
    }
}

#[async_trait]
impl UserRepository for PgUserRepository {
    async fn create(&self, user: NewUser) -> Result<User> {
        traced(repo_span("user", "create"), async move {
            let email = validate::email(&user.email)?;
            validate::password_hash(&user.password_hash)?;
            let display_name = match &user.display_name {
                Some(name) => validate::display_name(name)?,
                None => validate::default_display_name(&email),
            };
            sql::create(
                &self.source.conn().await?,
                &email,
                &user.password_hash,
                &display_name,
            )
            .await
        })
        .await
    }

    async fn get(&self, id: UserId) -> Result<User> {
        traced(repo_span("user", "get"), async move {
            sql::get(&self.source.read_conn().await?, id).await
        })
        .await
    }

    async fn get_by_email(&self, email: &str) -> Result<User> {
        traced(repo_span("user", "get_by_email"), async move {
            let email = validate::email(email)?;
            sql::get_by_email(&self.source.read_conn().await?, &email).await
        })
        .await
    }

    async fn update(&self, id: UserId, update: UserUpdate) -> Result<User> {
        traced(repo_span("user", "update"), async move {
            let email = update.email.as_deref().map(validate::email).transpose()?;
            if let Some(hash) = &update.password_hash {
                validate::password_hash(hash)?;
            }
            let display_name = update
                .display_name
                .as_deref()
                .map(validate::display_name)
                .transpose()?;
            sql::update(
                &self.source.conn().await?,
                id,
                email.as_deref(),
                update.password_hash.as_ref(),
                display_name.as_deref(),
            )
            .await
        })
        .await
    }

    async fn delete(&self, id: UserId) -> Result<()> {
        traced(repo_span("user", "delete"), async move {
            self.source
                .transaction(|source| async move { sql::delete(&source.conn().await?, id).await })
                .await
        })
        .await
    }

    async fn list(&self, page: PageRequest) -> Result<Page<User>> {
        traced(repo_span("user", "list"), async move {
            let page = PageSpec::parse(TABLE.scope("list", &[]), &page)?;
            sql::list(&self.source.read_conn().await?, &page).await
        })
        .await
    }

    async fn count(&self) -> Result<i64> {
        traced(repo_span("user", "count"), async move {
            sql::count(&self.source.read_conn().await?).await
        })
        .await
    }

    async fn estimated_count(&self) -> Result<i64> {
        traced(repo_span("user", "estimated_count"), async move {
            let conn = self.source.read_conn().await?;
            TABLE
                .count(&conn, &queries::counts::USERS_ESTIMATE, &[])
                .await
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_text_is_sent_as_is_and_never_shown() {
        let hash = PasswordHash::new("$argon2id$v=19$secret");
        let param = SecretText::hash(&hash);
        assert_eq!(format!("{param:?}"), "<redacted>");
        assert_eq!(format!("{:?}", Some(param)), "Some(<redacted>)");

        let mut sent = BytesMut::new();
        param.to_sql_checked(&Type::VARCHAR, &mut sent).unwrap();
        let mut plain = BytesMut::new();
        hash.expose().to_sql(&Type::VARCHAR, &mut plain).unwrap();
        assert_eq!(sent, plain, "the server gets the very bytes of the hash");

        assert!(<SecretText<'_> as ToSql>::accepts(&Type::TEXT));
        assert!(<SecretText<'_> as ToSql>::accepts(&Type::VARCHAR));
        let Err(err) = param.to_sql_checked(&Type::INT4, &mut BytesMut::new()) else {
            panic!("a secret is only ever sent as text or varchar");
        };
        assert!(!err.to_string().contains("secret"), "{err}");
    }
}
