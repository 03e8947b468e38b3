//! The concurrency caps of the fair claim (migration V15).

use async_trait::async_trait;

use crate::error::Result;
use crate::model::{ConcurrencyLimit, UserConcurrency, UserId};

/// How many executions of each user a fair claim
/// ([`ClaimOrder::Fair`](crate::ClaimOrder::Fair)) lets run at once: the
/// deployment's default, and each user's override, stored in the database
/// so every worker of the deployment keeps the same caps. See the
/// [domain reference](crate::domain#fair-claims-and-concurrency-caps-v14-v15).
///
/// An operator's repository: it reads and sets every user's cap, so it
/// belongs to administration, not to a user-facing path (the roles script
/// grants its tables to no role of the application).
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait ConcurrencyLimits: Send + Sync {
    /// The default cap of a user without an override; `None` for no cap
    /// (the default of a new database).
    async fn default_limit(&self) -> Result<Option<u32>>;

    /// Sets the default cap (`None`: no cap). `Validation` for a cap above
    /// [`ConcurrencyLimit::MAX`]. A claim that started before the change
    /// commits keeps the caps it read.
    async fn set_default_limit(&self, limit: Option<u32>) -> Result<()>;

    /// The user's stored cap, the cap that applies to them and how many of
    /// their executions run. `NotFound` for a missing user.
    async fn user_limit(&self, user_id: UserId) -> Result<UserConcurrency>;

    /// Stores the user's cap: [`ConcurrencyLimit::Default`] removes their
    /// override, [`ConcurrencyLimit::Unlimited`] exempts them from the
    /// default, [`ConcurrencyLimit::Max`] gives them a cap of their own
    /// (0 pauses them). Lowering a cap below what runs now ends nothing:
    /// claims wait until enough have ended. `NotFound` for a missing user;
    /// `Validation` for a cap above [`ConcurrencyLimit::MAX`]; then nothing
    /// is written.
    async fn set_user_limit(&self, user_id: UserId, limit: ConcurrencyLimit) -> Result<()>;
}
