//! [`ConcurrencyLimits`] on PostgreSQL (migration V15; SQL in
//! `src/queries/limits.sql`).

use async_trait::async_trait;

use super::{Source, repo_span, traced};
use crate::db::Database;
use crate::error::{Error, Result};
use crate::model::{ConcurrencyLimit, UserConcurrency, UserId};
use crate::queries;
use crate::repo::ConcurrencyLimits;
use crate::validate;

/// [`ConcurrencyLimits`] over the pool of a [`Database`].
#[derive(Debug, Clone)]
pub struct PgConcurrencyLimits {
    source: Source,
}

impl PgConcurrencyLimits {
    /// The caps, over `db`'s pool.
    pub fn new(db: Database) -> Self {
        PgConcurrencyLimits {
            source: Source::Pool(db),
        }
    }
}

impl Database {
    /// The concurrency caps of the fair claim, over this database's pool.
    pub fn concurrency_limits(&self) -> PgConcurrencyLimits {
        PgConcurrencyLimits::new(self.clone())
    }
}

/// A cap read back from `column`: an `integer` the database keeps at 0 or
/// more (its CHECK); anything else is another writer's, refused as `Decode`.
fn cap(column: &'static str, value: Option<i32>) -> Result<Option<u32>> {
    value
        .map(|v| {
            u32::try_from(v).map_err(|_| {
                Error::decode(
                    "concurrency limit",
                    column,
                    None,
                    format!("{v} is negative"),
                )
            })
        })
        .transpose()
}

/// A cap as the database stores it.
fn stored(limit: Option<u32>) -> Result<Option<i32>> {
    limit
        .map(|n| {
            validate::concurrency_limit(n)?;
            // In range: checked just above.
            i32::try_from(n).map_err(|_| Error::validation("max_running", "is too large"))
        })
        .transpose()
}

#[async_trait]
impl ConcurrencyLimits for PgConcurrencyLimits {
    async fn default_limit(&self) -> Result<Option<u32>> {
        traced(
            repo_span("concurrency_limit", "default_limit"),
            async move {
                let row = self
                    .source
                    .conn()
                    .await?
                    .query_opt(&queries::limits::DEFAULT_GET, &[])
                    .await?;
                match row {
                    Some(row) => cap("default_max_running", row.try_get("default_max_running")?),
                    None => Ok(None),
                }
            },
        )
        .await
    }

    async fn set_default_limit(&self, limit: Option<u32>) -> Result<()> {
        traced(
            repo_span("concurrency_limit", "set_default_limit"),
            async move {
                let value = stored(limit)?;
                self.source
                    .conn()
                    .await?
                    .execute(&queries::limits::DEFAULT_SET, &[&value])
                    .await?;
                Ok(())
            },
        )
        .await
    }

    async fn user_limit(&self, user_id: UserId) -> Result<UserConcurrency> {
        traced(repo_span("concurrency_limit", "user_limit"), async move {
            let row = self
                .source
                .conn()
                .await?
                .query_opt(&queries::limits::USER_GET, &[&user_id])
                .await?
                .ok_or_else(|| Error::not_found("user", user_id))?;
            let own = cap("max_running", row.try_get("max_running")?)?;
            let default = cap("default_max_running", row.try_get("default_max_running")?)?;
            let limit = match (row.try_get::<_, bool>("overridden")?, own) {
                (false, _) => ConcurrencyLimit::Default,
                (true, None) => ConcurrencyLimit::Unlimited,
                (true, Some(n)) => ConcurrencyLimit::Max(n),
            };
            let effective = match limit {
                ConcurrencyLimit::Default => default,
                _ => own,
            };
            let running: i64 = row.try_get("running")?;
            Ok(UserConcurrency {
                user_id,
                limit,
                effective,
                // A count: never negative.
                running: u64::try_from(running).unwrap_or(0),
            })
        })
        .await
    }

    async fn set_user_limit(&self, user_id: UserId, limit: ConcurrencyLimit) -> Result<()> {
        traced(
            repo_span("concurrency_limit", "set_user_limit"),
            async move {
                if let ConcurrencyLimit::Max(n) = limit {
                    validate::concurrency_limit(n)?;
                }
                let c = self.source.conn().await?;
                let row = match limit {
                    ConcurrencyLimit::Default => {
                        c.query_one(&queries::limits::USER_CLEAR, &[&user_id])
                            .await?
                    }
                    ConcurrencyLimit::Unlimited => {
                        c.query_one(&queries::limits::USER_SET, &[&user_id, &None::<i32>])
                            .await?
                    }
                    ConcurrencyLimit::Max(n) => {
                        let value = stored(Some(n))?;
                        c.query_one(&queries::limits::USER_SET, &[&user_id, &value])
                            .await?
                    }
                };
                if row.try_get::<_, bool>("found")? {
                    Ok(())
                } else {
                    Err(Error::not_found("user", user_id))
                }
            },
        )
        .await
    }
}
