//! [`UserRepository`] on PostgreSQL.

use async_trait::async_trait;
use tokio_postgres::Row;

use super::{Conn, CursorKind, Keyset, PageSpec, RowReader, Source, Table};
use std::sync::Arc;

use crate::db::Database;
use crate::error::{Error, Result};
use crate::model::{NewUser, Page, PageRequest, PasswordHash, User, UserId, UserUpdate};
use crate::repo::UserRepository;
use crate::tx::TxInner;
use crate::validate;

const COLUMNS: &str = "id, email, password_hash, created_at, updated_at";

pub(super) const TABLE: Table = Table {
    table: "users",
    entity: "user",
    columns: COLUMNS,
    cursor: CursorKind::User,
    by_priority: false,
};

fn user_from_row(row: &Row) -> Result<User> {
    let r = RowReader::new(row, "user");
    Ok(User {
        id: r.get("id")?,
        email: r.get("email")?,
        password_hash: PasswordHash::new(r.get::<String>("password_hash")?),
        created_at: r.get("created_at")?,
        updated_at: r.get("updated_at")?,
    })
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
    ) -> Result<User> {
        let row = c
            .query_one(
                &format!(
                    "INSERT INTO users (id, email, password_hash) VALUES ($1, $2, $3) RETURNING {COLUMNS}"
                ),
                &[&UserId::new(), &email, &password_hash.expose()],
            )
            .await?;
        user_from_row(&row)
    }

    pub(crate) async fn get(c: &Conn<'_>, id: UserId) -> Result<User> {
        user_from_row(&TABLE.get_row(c, id).await?)
    }

    pub(crate) async fn get_by_email(c: &Conn<'_>, email: &str) -> Result<User> {
        // Served by the index of the users_email_key constraint.
        c.query_opt(
            &format!("SELECT {COLUMNS} FROM users WHERE email = $1"),
            &[&email],
        )
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
    ) -> Result<User> {
        if email.is_none() && password_hash.is_none() {
            return get(c, id).await;
        }
        c.query_opt(
            &format!(
                "UPDATE users SET email = COALESCE($2, email), \
                 password_hash = COALESCE($3, password_hash) \
                 WHERE id = $1 RETURNING {COLUMNS}"
            ),
            &[&id, &email, &password_hash.map(PasswordHash::expose)],
        )
        .await?
        .map(|row| user_from_row(&row))
        .transpose()?
        .ok_or_else(|| Error::not_found("user", id))
    }

    pub(crate) async fn delete(c: &Conn<'_>, id: UserId) -> Result<()> {
        // The cascade would lock the user's tasks in whatever order it
        // scans them; locking them first in id order keeps the crate's one
        // lock order (tasks by id, then their executions), so this cannot
        // deadlock with a batch enqueue or a queue operation.
        let deleted = c
            .execute(
                "WITH doomed AS MATERIALIZED ( \
                   SELECT id FROM tasks WHERE user_id = $1 ORDER BY id FOR UPDATE \
                 ) \
                 DELETE FROM users WHERE id = $1 AND (SELECT count(*) FROM doomed) >= 0",
                &[&id],
            )
            .await?;
        match deleted {
            0 => Err(Error::not_found("user", id)),
            _ => Ok(()),
        }
    }

    pub(crate) async fn list(c: &Conn<'_>, page: &PageSpec) -> Result<Page<User>> {
        TABLE
            .page(c, "TRUE", None, page, user_from_row, keyset)
            .await
    }

    pub(crate) async fn count(c: &Conn<'_>) -> Result<i64> {
        TABLE.count(c, "TRUE", None).await
    }
}

#[async_trait]
impl UserRepository for PgUserRepository {
    #[tracing::instrument(
        name = "voidrunner_db.repo",
        skip_all,
        fields(entity = "user", op = "create")
    )]
    async fn create(&self, user: NewUser) -> Result<User> {
        let email = validate::email(&user.email)?;
        validate::password_hash(&user.password_hash)?;
        sql::create(&self.source.conn().await?, &email, &user.password_hash).await
    }

    #[tracing::instrument(
        name = "voidrunner_db.repo",
        skip_all,
        fields(entity = "user", op = "get")
    )]
    async fn get(&self, id: UserId) -> Result<User> {
        sql::get(&self.source.conn().await?, id).await
    }

    #[tracing::instrument(
        name = "voidrunner_db.repo",
        skip_all,
        fields(entity = "user", op = "get_by_email")
    )]
    async fn get_by_email(&self, email: &str) -> Result<User> {
        let email = validate::email(email)?;
        sql::get_by_email(&self.source.conn().await?, &email).await
    }

    #[tracing::instrument(
        name = "voidrunner_db.repo",
        skip_all,
        fields(entity = "user", op = "update")
    )]
    async fn update(&self, id: UserId, update: UserUpdate) -> Result<User> {
        let email = update.email.as_deref().map(validate::email).transpose()?;
        if let Some(hash) = &update.password_hash {
            validate::password_hash(hash)?;
        }
        sql::update(
            &self.source.conn().await?,
            id,
            email.as_deref(),
            update.password_hash.as_ref(),
        )
        .await
    }

    #[tracing::instrument(
        name = "voidrunner_db.repo",
        skip_all,
        fields(entity = "user", op = "delete")
    )]
    async fn delete(&self, id: UserId) -> Result<()> {
        sql::delete(&self.source.conn().await?, id).await
    }

    #[tracing::instrument(
        name = "voidrunner_db.repo",
        skip_all,
        fields(entity = "user", op = "list")
    )]
    async fn list(&self, page: PageRequest) -> Result<Page<User>> {
        let page = PageSpec::parse(CursorKind::User, &page)?;
        sql::list(&self.source.conn().await?, &page).await
    }

    #[tracing::instrument(
        name = "voidrunner_db.repo",
        skip_all,
        fields(entity = "user", op = "count")
    )]
    async fn count(&self) -> Result<i64> {
        sql::count(&self.source.conn().await?).await
    }
}
