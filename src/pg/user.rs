//! [`UserRepository`] on PostgreSQL.

use async_trait::async_trait;
use deadpool_postgres::GenericClient;
use tokio_postgres::Row;

use super::{CursorKind, Keyset, PageSpec, Source, Table};
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

fn user_from_row(row: &Row) -> User {
    User {
        id: row.get("id"),
        email: row.get("email"),
        password_hash: PasswordHash::new(row.get::<_, String>("password_hash")),
        created_at: row.get("created_at"),
        updated_at: row.get("updated_at"),
    }
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
        client: &impl GenericClient,
        email: &str,
        password_hash: &PasswordHash,
    ) -> Result<User> {
        let stmt = client
            .prepare_cached(&format!(
                "INSERT INTO users (id, email, password_hash) VALUES ($1, $2, $3) RETURNING {COLUMNS}"
            ))
            .await?;
        let row = client
            .query_one(&stmt, &[&UserId::new(), &email, &password_hash.expose()])
            .await?;
        Ok(user_from_row(&row))
    }

    pub(crate) async fn get(client: &impl GenericClient, id: UserId) -> Result<User> {
        Ok(user_from_row(&TABLE.get_row(client, id).await?))
    }

    pub(crate) async fn get_by_email(client: &impl GenericClient, email: &str) -> Result<User> {
        // Served by the index of the users_email_key constraint.
        let stmt = client
            .prepare_cached(&format!("SELECT {COLUMNS} FROM users WHERE email = $1"))
            .await?;
        client
            .query_opt(&stmt, &[&email])
            .await?
            .map(|row| user_from_row(&row))
            .ok_or_else(|| Error::not_found("user", email))
    }

    pub(crate) async fn update(
        client: &impl GenericClient,
        id: UserId,
        email: Option<&str>,
        password_hash: Option<&PasswordHash>,
    ) -> Result<User> {
        if email.is_none() && password_hash.is_none() {
            return get(client, id).await;
        }
        let stmt = client
            .prepare_cached(&format!(
                "UPDATE users SET email = COALESCE($2, email), \
                 password_hash = COALESCE($3, password_hash) \
                 WHERE id = $1 RETURNING {COLUMNS}"
            ))
            .await?;
        client
            .query_opt(
                &stmt,
                &[&id, &email, &password_hash.map(PasswordHash::expose)],
            )
            .await?
            .map(|row| user_from_row(&row))
            .ok_or_else(|| Error::not_found("user", id))
    }

    pub(crate) async fn delete(client: &impl GenericClient, id: UserId) -> Result<()> {
        TABLE.delete(client, id).await
    }

    pub(crate) async fn list(client: &impl GenericClient, page: &PageSpec) -> Result<Page<User>> {
        TABLE
            .page(client, "TRUE", None, page, user_from_row, keyset)
            .await
    }

    pub(crate) async fn count(client: &impl GenericClient) -> Result<i64> {
        TABLE.count(client, "TRUE", None).await
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
        sql::create(&*self.source.conn().await?, &email, &user.password_hash).await
    }

    #[tracing::instrument(
        name = "voidrunner_db.repo",
        skip_all,
        fields(entity = "user", op = "get")
    )]
    async fn get(&self, id: UserId) -> Result<User> {
        sql::get(&*self.source.conn().await?, id).await
    }

    #[tracing::instrument(
        name = "voidrunner_db.repo",
        skip_all,
        fields(entity = "user", op = "get_by_email")
    )]
    async fn get_by_email(&self, email: &str) -> Result<User> {
        let email = validate::email(email)?;
        sql::get_by_email(&*self.source.conn().await?, &email).await
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
            &*self.source.conn().await?,
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
        sql::delete(&*self.source.conn().await?, id).await
    }

    #[tracing::instrument(
        name = "voidrunner_db.repo",
        skip_all,
        fields(entity = "user", op = "list")
    )]
    async fn list(&self, page: PageRequest) -> Result<Page<User>> {
        let page = PageSpec::parse(CursorKind::User, &page)?;
        sql::list(&*self.source.conn().await?, &page).await
    }

    #[tracing::instrument(
        name = "voidrunner_db.repo",
        skip_all,
        fields(entity = "user", op = "count")
    )]
    async fn count(&self) -> Result<i64> {
        sql::count(&*self.source.conn().await?).await
    }
}
