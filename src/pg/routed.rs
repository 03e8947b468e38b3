//! Reads that may go to a replica: which node answers each statement, the
//! replay check a read-your-writes token needs (in the same round trip as
//! the read), the bounded wait for a replica to catch up, and falling back
//! to another replica or the primary when one fails. Also the position a
//! read-your-writes handle learns after each write.

use postgres_types::PgLsn;

use super::*;
use crate::Consistency;
use crate::db::{NodeState, Pick, ReplicaSet, Session};
use crate::queries::server::{INSERT_POSITION, REPLAY_POSITION};

/// What a pooled connection learns about the server's WAL with each
/// statement, in the same round trip.
pub(super) enum Probe<'a> {
    None,
    /// A replica's connection: when `check` is set, the statement is
    /// preceded by the replay-position query, whose answer lands in
    /// `replayed` (`NOT_STANDBY` when the server is no longer one).
    Replay {
        check: AtomicBool,
        replayed: std::sync::atomic::AtomicU64,
    },
    /// A write of a read-your-writes handle: the statement is followed by
    /// the primary's insert position, noted in the session.
    Track(&'a Session),
}

/// What a replay check found on a server that is not a standby.
const NOT_STANDBY: u64 = u64::MAX;

impl Probe<'_> {
    /// Runs `statement` (its requests not sent yet) with this probe's
    /// query before or after it, all sent before any answer is awaited:
    /// one round trip (`biased` polls in order, and the driver sends a
    /// request when its future is first polled). The probe's own statement
    /// is prepared first, which costs a round trip only the first time on
    /// a connection.
    pub(super) async fn around<T>(
        &self,
        client: &PooledClient,
        unnamed: bool,
        statement: impl Future<Output = std::result::Result<T, tokio_postgres::Error>>,
    ) -> std::result::Result<T, tokio_postgres::Error> {
        match self {
            Probe::Replay { check, replayed } if check.load(Ordering::Acquire) => {
                let position = position_of(client, unnamed, &REPLAY_POSITION).await?;
                let (position, value) = tokio::join!(biased; position, statement);
                let row = position?;
                let standby: bool = row.try_get(0)?;
                let at: Option<PgLsn> = row.try_get(1)?;
                let found = match at {
                    Some(at) if standby => u64::from(at),
                    _ => NOT_STANDBY,
                };
                replayed.store(found, Ordering::Release);
                value
            }
            Probe::Track(session) => {
                let position = position_of(client, unnamed, &INSERT_POSITION).await?;
                let (value, position) = tokio::join!(biased; statement, position);
                let value = value?;
                // The write happened: a position that cannot be read makes
                // the handle read from the primary, never lose the write.
                match position.and_then(|row| row.try_get::<_, Option<PgLsn>>(0)) {
                    Ok(Some(at)) => session.wrote(u64::from(at)),
                    _ => session.lost(),
                }
                Ok(value)
            }
            _ => statement.await,
        }
    }
}

/// The future of `query` (no parameters, one row), prepared (or unnamed)
/// but not sent yet.
async fn position_of<'c>(
    client: &'c PooledClient,
    unnamed: bool,
    query: &'static Query,
) -> std::result::Result<
    impl Future<Output = std::result::Result<Row, tokio_postgres::Error>> + 'c,
    tokio_postgres::Error,
> {
    let stmt = if unnamed {
        None
    } else {
        Some(client.prepare_cached(query.text).await?)
    };
    Ok(async move {
        match stmt {
            Some(stmt) => client.query_one(&stmt, &[]).await,
            None => client.query_typed_one(query.text, &[]).await,
        }
    })
}

/// A read over the pool that may go to a replica.
///
/// Each statement picks its node when it runs ([`ReplicaSet::pick`]):
/// for [`Consistency::AnyReplica`] a replica in rotation; for
/// [`Consistency::AtLeast`] one known to have replayed the token, or the
/// one furthest along with its replay position checked in the same round
/// trip. A check that finds the replica behind is repeated (backing off
/// from 1 ms) until it has caught up or
/// [`replica_wait`](crate::DbConfig::replica_wait) has passed, and the read
/// then goes to the primary. A replica that fails the read because it is
/// unreachable, shutting down, no longer a standby, or cancelled the read
/// in a conflict with recovery, is taken out of rotation (when it is
/// gone) and the read runs on the next node: reads are idempotent. Any
/// other error is the read's own and is returned.
///
/// Each node's connection is checked out once per call and kept for its
/// other statements; each is armed by its own statements, as any pooled
/// connection is.
pub(super) struct RoutedConn<'a> {
    db: &'a Database,
    set: &'a ReplicaSet,
    scope: Option<UserId>,
    floor: Option<u64>,
    /// One slot per replica, then the primary's: filled on first use.
    conns: Box<[OnceLock<Conn<'a>>]>,
    /// The replicas that failed during this call.
    skip: Box<[AtomicBool]>,
    /// The replica that answered this call's last statement: its next
    /// ones go there too, so a call that reads twice reads one server.
    last: std::sync::atomic::AtomicUsize,
}

impl<'a> RoutedConn<'a> {
    /// A routed read of `db`, or `None` when its reads all go to the
    /// primary (no replicas, or a handle that reads from the primary).
    pub(super) fn new(db: &'a Database, scope: Option<UserId>) -> Option<Self> {
        let set = db.replica_set()?;
        let floor = match db.consistency() {
            Consistency::Primary => return None,
            // The highest position: a lost write's, or a forged token. No
            // replica has it; the primary does.
            Consistency::AtLeast(token) if token.lsn() == u64::MAX => return None,
            Consistency::AnyReplica => None,
            Consistency::AtLeast(token) => Some(token.lsn()),
        };
        Some(RoutedConn {
            db,
            set,
            scope,
            floor,
            conns: (0..=set.len()).map(|_| OnceLock::new()).collect(),
            skip: (0..set.len()).map(|_| AtomicBool::new(false)).collect(),
            last: std::sync::atomic::AtomicUsize::new(usize::MAX),
        })
    }

    pub(super) fn config(&self) -> &crate::DbConfig {
        self.db.config()
    }

    /// Runs one statement where the handle's consistency allows (see the
    /// type's docs).
    pub(super) async fn run<'s, T, F, Fut>(&'s self, query: &Query, run: F) -> Result<T>
    where
        F: Fn(&'s PooledClient, Option<Statement>) -> Fut,
        Fut: Future<Output = std::result::Result<T, tokio_postgres::Error>> + 's,
    {
        let started = Instant::now();
        loop {
            let skip: Vec<bool> = self
                .skip
                .iter()
                .map(|s| s.load(Ordering::Acquire))
                .collect();
            let last = self.last.load(Ordering::Acquire);
            let (index, check) = if skip.get(last) == Some(&false) {
                (last, self.floor.is_some())
            } else {
                match self.set.pick(self.floor, &skip) {
                    Pick::Primary => return self.on_primary(query, &run).await,
                    Pick::Replica { index, check } => (index, check),
                }
            };
            self.last.store(index, Ordering::Release);
            let node = self.set.node(index);
            let conn = match self.replica_conn(index).await {
                Ok(conn) => conn,
                Err(err) => {
                    self.failed(index, &err);
                    continue;
                }
            };
            set_check(conn, check);
            let value = match conn.run_statement(query, &run).await {
                Ok(value) => value,
                Err(err) if replica_failure(&err) => {
                    self.failed(index, &err);
                    continue;
                }
                Err(err) => return Err(err),
            };
            let floor = match (check, self.floor) {
                (true, Some(floor)) => floor,
                _ => {
                    node.served();
                    return Ok(value);
                }
            };
            match replayed(conn) {
                NOT_STANDBY => {
                    node.failed(
                        NodeState::Promoted,
                        &Error::unavailable("the replica is no longer a standby", None),
                    );
                    self.skip[index].store(true, Ordering::Release);
                }
                at if at >= floor => {
                    node.saw_replayed(at);
                    node.served();
                    return Ok(value);
                }
                at => {
                    node.saw_replayed(at);
                    // Behind: wait for it, bounded, then read again there
                    // (its replay only moves forward), or on the primary.
                    // Bounded: half the replica's pool at most waits so.
                    let Some(_permit) = node.wait_permit() else {
                        return self.on_primary(query, &run).await;
                    };
                    match self.caught_up(conn, index, floor, started).await {
                        Ok(true) => {
                            set_check(conn, false);
                            match conn.run_statement(query, &run).await {
                                Ok(value) => {
                                    node.served();
                                    return Ok(value);
                                }
                                Err(err) if replica_failure(&err) => {
                                    self.failed(index, &err);
                                }
                                Err(err) => return Err(err),
                            }
                        }
                        Ok(false) => return self.on_primary(query, &run).await,
                        Err(err) => self.failed(index, &err),
                    }
                }
            }
        }
    }

    /// Polls the replica's replay position until it reaches `floor` (true)
    /// or the wait ends (false).
    async fn caught_up(
        &self,
        conn: &Conn<'a>,
        index: usize,
        floor: u64,
        started: Instant,
    ) -> Result<bool> {
        let mut pause = Duration::from_millis(1);
        loop {
            let left = self.set.wait.saturating_sub(started.elapsed());
            if left.is_zero() {
                return Ok(false);
            }
            tokio::time::sleep(pause.min(left)).await;
            pause = (pause * 2).min(Duration::from_millis(16));
            set_check(conn, false);
            let row = conn.query_one(&REPLAY_POSITION, &[]).await?;
            let standby: bool = row.try_get(0)?;
            let at: Option<PgLsn> = row.try_get(1)?;
            let Some(at) = at.filter(|_| standby).map(u64::from) else {
                return Err(Error::unavailable(
                    "the replica is no longer a standby",
                    None,
                ));
            };
            self.set.node(index).saw_replayed(at);
            if at >= floor {
                return Ok(true);
            }
        }
    }

    /// The statement on the primary, counted as a routed read it answered.
    async fn on_primary<'s, T, F, Fut>(&'s self, query: &Query, run: &F) -> Result<T>
    where
        F: Fn(&'s PooledClient, Option<Statement>) -> Fut,
        Fut: Future<Output = std::result::Result<T, tokio_postgres::Error>> + 's,
    {
        let slot = &self.conns[self.set.len()];
        if slot.get().is_none() {
            let conn = PoolConn::checkout(self.db, self.scope, Probe::None).await?;
            let _ = slot.set(Conn::Pooled(conn));
        }
        let conn = slot
            .get()
            .ok_or_else(|| Error::unavailable("the primary's connection was released", None))?;
        let value = conn.run_statement(query, run).await?;
        self.set.served_by_primary();
        Ok(value)
    }

    /// Replica `index`'s connection for this call, checked out on first
    /// use.
    async fn replica_conn(&self, index: usize) -> Result<&Conn<'a>> {
        let slot = &self.conns[index];
        if slot.get().is_none() {
            let probe = Probe::Replay {
                check: AtomicBool::new(false),
                replayed: std::sync::atomic::AtomicU64::new(0),
            };
            let conn = PoolConn::checkout(&self.set.node(index).db, self.scope, probe).await?;
            let _ = slot.set(Conn::Pooled(conn));
        }
        slot.get()
            .ok_or_else(|| Error::unavailable("the replica's connection was released", None))
    }

    /// Replica `index` failed this call with `err`: skipped for the rest
    /// of the call, and out of rotation when it is gone.
    fn failed(&self, index: usize, err: &Error) {
        self.skip[index].store(true, Ordering::Release);
        let node = self.set.node(index);
        if err.is_unavailable() || is_server_gone(err) {
            node.failed(NodeState::Down, err);
        } else {
            tracing::debug!(error = %err, "read on a replica failed; trying the next node");
        }
    }
}

fn set_check(conn: &Conn<'_>, on: bool) {
    if let Conn::Pooled(PoolConn {
        probe: Probe::Replay { check, .. },
        ..
    }) = conn
    {
        check.store(on, Ordering::Release);
    }
}

fn replayed(conn: &Conn<'_>) -> u64 {
    match conn {
        Conn::Pooled(PoolConn {
            probe: Probe::Replay { replayed, .. },
            ..
        }) => replayed.load(Ordering::Acquire),
        _ => NOT_STANDBY,
    }
}

/// Whether `err`, met reading on a replica, is the replica's failure
/// rather than the read's, so the read may run elsewhere: the server is
/// unreachable or went away, refuses connections (57P03, 53300), shuts
/// down (57P01, 57P02), cancelled the read in a conflict with recovery
/// (40001 on a standby), no answer came within the deadline, or every
/// connection of its pool is busy, or it has not replayed the schema the
/// read needs yet (a table, column or function the primary's migration
/// added: 42P01, 42703, 42883, 42704, met before any check could run). Not
/// a statement timeout (57014): the read would be as slow on the primary.
fn replica_failure(err: &Error) -> bool {
    err.is_unavailable()
        || is_server_gone(err)
        || matches!(
            err.timeout_kind(),
            Some(crate::TimeoutKind::PoolWait | crate::TimeoutKind::NoAnswer)
        )
        || err.sqlstate().is_some_and(|code| {
            *code == SqlState::T_R_SERIALIZATION_FAILURE
                || *code == SqlState::TOO_MANY_CONNECTIONS
                || *code == SqlState::UNDEFINED_TABLE
                || *code == SqlState::UNDEFINED_COLUMN
                || *code == SqlState::UNDEFINED_FUNCTION
                || *code == SqlState::UNDEFINED_OBJECT
        })
}

/// The server is shutting down, crashed, or not accepting connections yet.
fn is_server_gone(err: &Error) -> bool {
    err.sqlstate().is_some_and(|code| {
        *code == SqlState::ADMIN_SHUTDOWN
            || *code == SqlState::CRASH_SHUTDOWN
            || *code == SqlState::CANNOT_CONNECT_NOW
    })
}

impl Database {
    /// Runs `SELECT pg_is_in_recovery()` as a read of this handle, routed
    /// as its repositories' reads are: `true` when a replica answered it.
    /// For an operator's check of where reads go now, and for tests that
    /// verify routing on the serving server rather than by counting calls.
    pub async fn read_in_recovery(&self) -> Result<bool> {
        let source = Source::Pool(self.clone());
        let conn = source.read_conn().await?;
        let row = conn.query_one(&REPLAY_POSITION, &[]).await?;
        Ok(row.try_get(0)?)
    }
}
