//! A handle's view of the pool: where its reads go (the primary, any
//! replica, one that has replayed a token), the read-your-writes session
//! it belongs to, and the tokens and node statuses it hands out.

use std::sync::Arc;

use super::replicas::{NodeRole, NodeState, NodeStatus, ReplicaSet, Session};
use super::{Database, PooledClient, discard};
use crate::error::{Error, Result};
use crate::queries::Query;
use crate::token::{Consistency, ReadToken};

/// Where a handle's reads go; the default is the primary.
#[derive(Debug, Clone, Default)]
pub(super) struct View {
    consistency: Consistency,
    session: Option<Arc<Session>>,
}

impl Database {
    /// A handle on the same pool whose reads go as `consistency` says; its
    /// writes, claims, transactions, migrations and LISTEN still go to the
    /// primary. Cheap: it shares the pools.
    ///
    /// Reads are the repositories' get, list, search and count calls, the
    /// scoped views' too ([`scoped`](Self::scoped) on the returned
    /// handle). Without replicas configured
    /// ([`DbConfig::set_replicas`](crate::DbConfig::set_replicas),
    /// `VOIDRUNNER_DB_REPLICAS`) every read goes to the primary. A read
    /// never fails because of a replica: one that is down, lagging beyond
    /// [`replica_max_lag`](crate::DbConfig::replica_max_lag), promoted, or
    /// goes away during the read is taken out of rotation and the read is
    /// answered by another replica or the primary. See
    /// [Scaling out](crate::docs::scaling).
    ///
    /// ```no_run
    /// # async fn f(db: voidrunner_db::Database, id: voidrunner_db::TaskId) -> voidrunner_db::Result<()> {
    /// use voidrunner_db::{Consistency, PgTaskRepository, TaskRepository};
    ///
    /// // A dashboard that may be a second behind:
    /// let tasks = PgTaskRepository::new(db.reads(Consistency::AnyReplica));
    /// let task = tasks.get(id).await?;
    /// # Ok(()) }
    /// ```
    pub fn reads(&self, consistency: Consistency) -> Database {
        Database {
            inner: Arc::clone(&self.inner),
            view: View {
                consistency,
                session: None,
            },
        }
    }

    /// A handle for one request (or one client) that reads its own
    /// writes: its reads see `since` (the token the client brought back
    /// from its previous request, if any) and every write made through the
    /// handle (and its clones), and may go to any replica that has
    /// replayed that far; [`token`](Self::token) then gives the token to
    /// hand back to the client.
    ///
    /// Each write through the handle learns its position in the same round
    /// trip: the primary's WAL insert position is read right after the
    /// statement (after `COMMIT` for a transaction, a unit of work, or a
    /// call that needs several statements). A bulk `import` takes one more
    /// round trip after its COPY.
    ///
    /// ```no_run
    /// # async fn f(db: voidrunner_db::Database, user: voidrunner_db::UserId, cookie: Option<&str>) -> voidrunner_db::Result<()> {
    /// use voidrunner_db::{NewTask, PgTaskRepository, ReadToken, TaskRepository};
    ///
    /// let since = cookie.map(str::parse::<ReadToken>).transpose()?;
    /// let request = db.read_your_writes(since);
    /// let tasks = PgTaskRepository::new(request.clone());
    /// let task = tasks.create(NewTask::new(user, "report", "print(1)")).await?;
    /// // On a replica that has the new task, or on the primary:
    /// let again = tasks.get(task.id).await?;
    /// let token = request.token(); // Some(..): set it as the cookie
    /// # Ok(()) }
    /// ```
    pub fn read_your_writes(&self, since: Option<ReadToken>) -> Database {
        Database {
            inner: Arc::clone(&self.inner),
            view: View {
                consistency: Consistency::AnyReplica,
                session: Some(Session::new(since)),
            },
        }
    }

    /// The token covering the writes of this
    /// [`read_your_writes`](Self::read_your_writes) handle and the token it
    /// started from: `None` when there is neither, or on a handle of
    /// another kind.
    ///
    /// Should the position of a write not be learnt (the connection
    /// failed right after the statement succeeded), the handle hands out the highest possible
    /// token, `FFFFFFFF/FFFFFFFF`, from then on: reads given it wait
    /// [`replica_wait`](crate::DbConfig::replica_wait) and go to the
    /// primary. Slower, never stale.
    pub fn token(&self) -> Option<ReadToken> {
        self.view.session.as_ref().and_then(|s| s.token())
    }

    /// The primary's WAL insert position now, as a token covering every
    /// write committed before this call, in one round trip. For a write
    /// made through another handle; a
    /// [`read_your_writes`](Self::read_your_writes) handle notes it too.
    pub async fn current_token(&self) -> Result<ReadToken> {
        let row = self
            .server_row(&crate::queries::server::INSERT_POSITION)
            .await?;
        let position: Option<postgres_types::PgLsn> = row.try_get(0)?;
        let position = position
            .map(u64::from)
            .ok_or_else(|| Error::unavailable("the primary returned no WAL position", None))?;
        if let Some(session) = &self.view.session {
            session.wrote(position);
        }
        Ok(ReadToken::from_lsn(position))
    }

    /// Where this handle's reads go now: its consistency, or for a
    /// read-your-writes handle, its token.
    pub fn consistency(&self) -> Consistency {
        match self.view.session.as_ref().and_then(|s| s.token()) {
            Some(token) => Consistency::AtLeast(token),
            None => self.view.consistency,
        }
    }

    /// Every node: the primary first (always [`NodeState::Up`] here), then
    /// each replica with its state, replay lag and position as its last
    /// probe found them, the reads it answered and its pool.
    pub fn nodes(&self) -> Vec<NodeStatus> {
        let mut nodes = vec![NodeStatus {
            target: self.inner.config.display_target(),
            role: NodeRole::Primary,
            state: NodeState::Up,
            lag: None,
            replayed: None,
            since_probe: None,
            error: None,
            reads: self.replica_set().map_or(0, ReplicaSet::primary_reads),
            pool: self.pool_status(),
        }];
        if let Some(set) = self.replica_set() {
            nodes.extend(set.statuses());
        }
        nodes
    }

    /// The replicas, if any are configured.
    pub(crate) fn replica_set(&self) -> Option<&ReplicaSet> {
        self.inner.replicas.as_ref()
    }

    /// The read-your-writes session of this handle, if it is one.
    pub(crate) fn session(&self) -> Option<&Session> {
        self.view.session.as_deref()
    }

    /// [`session`](Self::session), shared, for a transaction to hold.
    pub(crate) fn shared_session(&self) -> Option<Arc<Session>> {
        self.view.session.clone()
    }

    /// Runs one of the server statements (no parameters, one row) on a
    /// pooled connection: unnamed behind a transaction-mode pooler, where
    /// a named statement's execution could reach another server connection
    /// than its preparation. A failed or dropped call closes the
    /// connection rather than pooling it.
    pub(crate) async fn server_row(&self, query: &Query) -> Result<tokio_postgres::Row> {
        self.server_row_on(self.client().await?, query).await
    }

    /// [`server_row`](Self::server_row) without waiting for a busy pool:
    /// `None` when every connection is in use (a replica busy serving
    /// reads is not a replica that is down).
    pub(crate) async fn server_row_if_free(
        &self,
        query: &Query,
    ) -> Result<Option<tokio_postgres::Row>> {
        let timeouts = deadpool_postgres::Timeouts {
            wait: Some(std::time::Duration::ZERO),
            ..self.inner.pool.timeouts()
        };
        let client = match self.inner.pool.timeout_get(&timeouts).await {
            Ok(client) => client,
            Err(deadpool_postgres::PoolError::Timeout(deadpool_postgres::TimeoutType::Wait)) => {
                return Ok(None);
            }
            Err(err) => return Err(self.opening_failed(Error::from(err))),
        };
        self.server_row_on(client, query).await.map(Some)
    }

    async fn server_row_on(
        &self,
        client: PooledClient,
        query: &Query,
    ) -> Result<tokio_postgres::Row> {
        let mut held = Held(Some(client), self);
        let Some(client) = held.0.as_ref() else {
            return Err(Error::unavailable(
                "the probe's connection was released",
                None,
            ));
        };
        let row = if self.inner.config.pooler.named_statements() {
            let stmt = client.prepare_cached(query.text).await?;
            client.query_one(&stmt, &[]).await?
        } else {
            client.query_typed_one(query.text, &[]).await?
        };
        // Answered: back to the pool.
        held.0.take();
        Ok(row)
    }
}

/// A connection in use by [`Database::server_row`]: closed, never pooled,
/// unless the statement's answer arrived.
struct Held<'a>(Option<PooledClient>, &'a Database);

impl Drop for Held<'_> {
    fn drop(&mut self) {
        if let Some(client) = self.0.take() {
            discard(client, self.1.cancel_route());
        }
    }
}
