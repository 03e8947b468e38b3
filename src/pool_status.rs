//! The pool's statistics, a leaf that both the pool and its metrics read.

/// Pool statistics, from [`Database::pool_status`](crate::Database::pool_status).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct PoolStatus {
    /// Connections open now (idle + in use).
    pub size: usize,
    /// Open connections not checked out.
    pub idle: usize,
    /// Connections checked out.
    pub in_use: usize,
    /// Checkouts waiting for a connection.
    pub waiting: usize,
    /// The most connections the pool opens.
    pub max: usize,
}

impl From<deadpool_postgres::Status> for PoolStatus {
    fn from(s: deadpool_postgres::Status) -> Self {
        PoolStatus {
            size: s.size,
            idle: s.available,
            in_use: s.size.saturating_sub(s.available),
            waiting: s.waiting,
            max: s.max_size,
        }
    }
}
