//! One suite, every connection mode: each contract runs on the pool,
//! inside `Database::transaction`, and through a PgBouncer in transaction
//! mode (as River runs its driver tests on an executor inside a
//! transaction). A repository behaves the same whichever way its
//! statements go out.
//!
//! A contract is an `async fn(&Set) -> Result<()>` in the module of its
//! entity; the [`contracts!`] table at the top of that module names it and
//! says how it ends, and becomes one test per contract that runs it all
//! three ways, one after the other on a fresh database of its own, emptied
//! before each mode (so a contract may count, list and claim everything it
//! sees). A failure names the contract and every mode it failed in. A new
//! feature adds its contracts to a table here (or a module and table of its
//! own).
//!
//! Refusals: the server's (a unique or foreign-key violation) abort a
//! transaction, so a contract that goes on after one makes it through
//! [`Set::refused`], which in a transaction puts it behind a savepoint, as
//! a caller who carries on would; a contract whose last call is a bare
//! server refusal says so ([`Ending::OnARefusal`]), and the driver checks
//! that the transaction's commit then answers `TransactionAborted` rather
//! than `Ok`. The crate's own refusals (validation, not found, an invalid
//! transition, a lost lease) abort nothing: contracts make them bare, and
//! in a transaction the calls after them show it.
//!
//! One PgBouncer serves the whole test process (started by the first
//! contract that needs it, stopped when the process exits).

mod executions;
mod logs;
mod paging;
mod queue;
pub mod sorted;
mod tasks;
mod users;

use std::any::Any;
use std::fmt::Debug;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::OnceCell;
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;
use voidrunner_db::testing::{PgBouncer, TestDatabase, server_config};
use voidrunner_db::{
    Database, Error, ExecutionQueue, ExecutionRepository, NewExecution, NewTask, NewUser,
    PasswordHash, PgExecutionQueue, PgExecutionRepository, PgLogRepository, PgTaskRepository,
    PgUserRepository, Result, ScopedRepositories, Task, TaskExecution, TaskId, TaskRepository,
    Timestamp, Transaction, User, UserId, UserRepository,
};

use crate::LEASE;

/// How a contract's statements go out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Each call on a connection of the pool, in a transaction of its own.
    Pooled,
    /// Every call inside one `Database::transaction`, committed at the end.
    InTransaction,
    /// On the pool, through a PgBouncer in transaction mode.
    ThroughPgBouncer,
}

impl Mode {
    pub const ALL: [Mode; 3] = [Mode::Pooled, Mode::InTransaction, Mode::ThroughPgBouncer];

    pub fn name(self) -> &'static str {
        match self {
            Mode::Pooled => "pooled",
            Mode::InTransaction => "in a transaction",
            Mode::ThroughPgBouncer => "through pgbouncer",
        }
    }
}

/// How a contract ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// Every call succeeded, or was refused by the crate itself, or by the
    /// server behind [`Set::refused`].
    Clean,
    /// Its last call was a write the server refused (and the contract
    /// checked the error): a transaction it ran in is aborted.
    OnARefusal,
}

/// A contract's run on the [`Set`] it borrows.
pub type Run<'a> = Pin<Box<dyn Future<Output = Result<()>> + Send + 'a>>;

/// One row of a [`contracts!`] table.
pub struct Contract {
    /// The module that holds it (`…::conformance::users`).
    pub module: &'static str,
    pub name: &'static str,
    pub run: for<'a> fn(&'a Set) -> Run<'a>,
    pub ending: Ending,
}

impl Contract {
    /// `users::create_and_get`.
    fn label(&self) -> String {
        let entity = self.module.rsplit("::").next().unwrap_or(self.module);
        format!("{entity}::{}", self.name)
    }
}

/// A table of contracts: `name => ending` for each `async fn name(s: &Set)
/// -> Result<()>` of the module it is written in. Each row becomes a test,
/// `<module>::in_every_mode::<name>`, that runs the contract pooled, in a
/// transaction and through PgBouncer.
macro_rules! contracts {
    ($($name:ident => $ending:expr),+ $(,)?) => {
        const MODULE: &str = module_path!();

        mod in_every_mode {
            #[allow(unused_imports)]
            use $crate::conformance::Ending;
            $(
                #[tokio::test]
                async fn $name() {
                    $crate::conformance::run_in_every_mode($crate::conformance::Contract {
                        module: super::MODULE,
                        name: stringify!($name),
                        run: |s| Box::pin(super::$name(s)),
                        ending: $ending,
                    })
                    .await;
                }
            )+
        }
    };
}
pub(crate) use contracts;

/// The repositories of one mode, and a connection for a contract's own SQL
/// (its [`query`](Set::query)): in a transaction, the transaction's; else
/// one of the test database's own, straight to the server.
pub struct Set {
    pub mode: Mode,
    pub users: PgUserRepository,
    pub tasks: PgTaskRepository,
    pub executions: PgExecutionRepository,
    pub queue: PgExecutionQueue,
    pub logs: PgLogRepository,
    /// What the scoped views are made from, pooled (in a transaction: the
    /// transaction's, in [`Sql::Transaction`]).
    db: Option<Database>,
    sql: Sql,
}

enum Sql {
    Database(Arc<TestDatabase>),
    Transaction(Transaction),
}

impl Set {
    /// The repositories on `db`, the contract's own SQL on a session of
    /// `test_db`.
    fn pooled(mode: Mode, db: &Database, test_db: Arc<TestDatabase>) -> Set {
        Set {
            mode,
            users: PgUserRepository::new(db.clone()),
            tasks: PgTaskRepository::new(db.clone()),
            executions: PgExecutionRepository::new(db.clone()),
            queue: PgExecutionQueue::new(db.clone()),
            logs: PgLogRepository::new(db.clone()),
            db: Some(db.clone()),
            sql: Sql::Database(test_db),
        }
    }

    fn in_transaction(tx: Transaction) -> Set {
        Set {
            mode: Mode::InTransaction,
            users: tx.users(),
            tasks: tx.tasks(),
            executions: tx.executions(),
            queue: tx.queue(),
            logs: tx.logs(),
            db: None,
            sql: Sql::Transaction(tx),
        }
    }

    pub async fn user(&self, email: &str) -> User {
        self.users
            .create(NewUser::new(
                email,
                PasswordHash::new("$argon2id$v=19$hash"),
            ))
            .await
            .expect("create user")
    }

    pub async fn task(&self, user: &User, name: &str) -> Task {
        self.tasks
            .create(NewTask::new(user.id, name, "print('hi')"))
            .await
            .expect("create task")
    }

    /// What worker `worker` gets from one claim of up to `limit` executions:
    /// the executions, now running under its lease.
    pub async fn claim(&self, worker: &str, limit: u32) -> Vec<TaskExecution> {
        self.queue
            .claim(worker, limit, LEASE)
            .await
            .expect("claim")
            .into_iter()
            .map(|claimed| claimed.execution)
            .collect()
    }

    /// Queues `task` and claims its execution as `worker` (the only one
    /// queued): the task is running.
    pub async fn start(&self, task: TaskId, worker: &str) -> TaskExecution {
        let queued = self
            .executions
            .create(NewExecution::new(task))
            .await
            .unwrap();
        let claimed = self.claim(worker, 1).await;
        assert_eq!(claimed.len(), 1, "{claimed:?}");
        assert_eq!(claimed[0].id, queued.id);
        claimed.into_iter().next().unwrap()
    }

    /// `user`'s scoped view, in this mode.
    pub fn scoped(&self, user: UserId) -> ScopedRepositories {
        match (&self.sql, &self.db) {
            (Sql::Transaction(tx), _) => tx.scoped(user),
            (_, Some(db)) => db.scoped(user),
            (Sql::Database(_), None) => unreachable!("a pooled set has its database"),
        }
    }

    /// A contract's own SQL, on the connection of its mode.
    pub async fn query(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Vec<Row> {
        let rows = match &self.sql {
            Sql::Database(db) => {
                db.raw_client()
                    .await
                    .expect("a session")
                    .query(sql, params)
                    .await
            }
            Sql::Transaction(tx) => {
                tx.client()
                    .expect("the transaction")
                    .query(sql, params)
                    .await
            }
        };
        rows.unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    pub async fn query_one(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Row {
        let mut rows = self.query(sql, params).await;
        assert_eq!(rows.len(), 1, "{sql}: one row");
        rows.pop().unwrap()
    }

    /// A contract's own statement, on the connection of its mode: the rows
    /// it changed.
    pub async fn execute(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> u64 {
        let changed = match &self.sql {
            Sql::Database(db) => {
                db.raw_client()
                    .await
                    .expect("a session")
                    .execute(sql, params)
                    .await
            }
            Sql::Transaction(tx) => {
                tx.client()
                    .expect("the transaction")
                    .execute(sql, params)
                    .await
            }
        };
        changed.unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// Rows in `table`, read with raw SQL.
    pub async fn count_rows(&self, table: &str) -> i64 {
        self.query_one(&format!("SELECT count(*) FROM {table}"), &[])
            .await
            .get(0)
    }

    /// The error of `call`, which the server is to refuse (a unique or
    /// foreign-key violation). In a transaction it runs behind a savepoint,
    /// rolled back to after the refusal, so that the transaction goes on.
    pub async fn refused<T: Debug + Send>(
        &self,
        call: impl Future<Output = Result<T>> + Send,
    ) -> Error {
        let Sql::Transaction(tx) = &self.sql else {
            return call.await.expect_err("refused");
        };
        let savepoint = |sql: &'static str| async move {
            tx.client()
                .expect("the transaction")
                .batch_execute(sql)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
        };
        savepoint("SAVEPOINT refused").await;
        let result = call.await;
        savepoint(if result.is_err() {
            "ROLLBACK TO SAVEPOINT refused"
        } else {
            "RELEASE SAVEPOINT refused"
        })
        .await;
        result.expect_err("refused")
    }

    /// `later` was written by a call made after the one that wrote
    /// `earlier`: a later time, except in a transaction, whose `now()` is
    /// its start, the same for every call in it.
    pub fn assert_written_later(&self, later: Timestamp, earlier: Timestamp, what: &str) {
        if self.mode == Mode::InTransaction {
            assert_eq!(later, earlier, "{what}: the transaction's time");
        } else {
            assert!(later > earlier, "{what}: {later:?} after {earlier:?}");
        }
    }
}

/// Runs `contract` in every mode, one after the other on one fresh
/// database, emptied between them, and fails naming each mode it failed in.
pub async fn run_in_every_mode(contract: Contract) {
    let test_db = Arc::new(TestDatabase::new().await.expect("test database"));
    let mut report = Vec::new();
    let mut failed = false;
    for (i, mode) in Mode::ALL.into_iter().enumerate() {
        if i > 0 {
            empty(&test_db).await;
        }
        let outcome = run_in(mode, &contract, &test_db).await;
        failed |= outcome.is_err();
        report.push(match outcome {
            Ok(()) => format!("  {}: ok", mode.name()),
            Err(why) => format!("  {}: FAILED: {why}", mode.name()),
        });
    }
    assert!(
        !failed,
        "contract {} failed:\n{}",
        contract.label(),
        report.join("\n")
    );
}

async fn run_in(
    mode: Mode,
    contract: &Contract,
    test_db: &Arc<TestDatabase>,
) -> std::result::Result<(), String> {
    let run = contract.run;
    match mode {
        Mode::Pooled => {
            let set = Set::pooled(mode, test_db.db(), test_db.clone());
            spawned(run, set).await
        }
        Mode::ThroughPgBouncer => {
            // The database's own server, not a pooler the harness may
            // already have put in front of it.
            let config = test_db.config().await.expect("config");
            let server = config.direct_config().unwrap_or(config);
            let mut routed = bouncer().await.route(&server);
            routed.max_connections = 5;
            let behind = Database::connect(routed)
                .await
                .map_err(|e| format!("connecting through pgbouncer: {e}"))?;
            let set = Set::pooled(mode, &behind, test_db.clone());
            let outcome = spawned(run, set).await;
            let closed = behind.close(Duration::from_secs(30)).await;
            outcome.and(if closed {
                Ok(())
            } else {
                Err("its pool did not close within 30 s".to_owned())
            })
        }
        Mode::InTransaction => {
            let panic = Arc::new(Mutex::new(None));
            let committed = test_db
                .db()
                .transaction(|tx| {
                    let panic = panic.clone();
                    async move {
                        let set = Set::in_transaction(tx);
                        match tokio::spawn(async move { run(&set).await }).await {
                            Ok(result) => {
                                result.map_err(|e| Error::config(format!("returned {e:?}")))
                            }
                            Err(join) => {
                                *panic.lock().unwrap() = Some(panicked(join));
                                Err(Error::config("panicked"))
                            }
                        }
                    }
                })
                .await;
            if let Some(why) = panic.lock().unwrap().take() {
                return Err(why);
            }
            match (contract.ending, committed) {
                (Ending::Clean, Ok(())) => Ok(()),
                (Ending::OnARefusal, Err(Error::TransactionAborted)) => Ok(()),
                (ending, answer) => Err(format!(
                    "the table says it ends {ending:?}, and the commit answered {answer:?}"
                )),
            }
        }
    }
}

/// Runs the contract on a task of its own, so that a panic is caught and
/// reported with its mode.
async fn spawned(run: for<'a> fn(&'a Set) -> Run<'a>, set: Set) -> std::result::Result<(), String> {
    match tokio::spawn(async move { run(&set).await }).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!("returned {e:?}")),
        Err(join) => Err(panicked(join)),
    }
}

/// Empties every table but the migration history, for the next mode.
async fn empty(test_db: &TestDatabase) {
    test_db
        .raw_client()
        .await
        .expect("a session")
        .batch_execute(&format!(
            "DO $$ BEGIN EXECUTE (SELECT 'TRUNCATE ' || string_agg(format('%I', tablename), ', ') \
             FROM pg_tables WHERE schemaname = current_schema() AND tablename <> '{}'); END $$",
            voidrunner_db::migrate::HISTORY_TABLE
        ))
        .await
        .expect("emptying the tables");
}

fn panicked(join: tokio::task::JoinError) -> String {
    match join.try_into_panic() {
        Ok(payload) => format!("panicked: {}", panic_message(payload.as_ref())),
        Err(join) => format!("{join}"),
    }
}

fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        (*text).to_owned()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "a panic without a message".to_owned()
    }
}

/// The PgBouncer of this test process, in transaction mode in front of the
/// harness's server, stopped when the process exits.
async fn bouncer() -> &'static PgBouncer {
    static BOUNCER: OnceCell<PgBouncer> = OnceCell::const_new();
    BOUNCER
        .get_or_init(|| async {
            let config = server_config().await.expect("test server");
            // The server itself, not a pooler the harness may already have
            // put in front of it.
            let server = config.direct_config().unwrap_or(config);
            let mut bouncer = PgBouncer::start(&server)
                .await
                .expect("starting pgbouncer (Debian/Ubuntu: apt-get install pgbouncer)");
            bouncer.stop_at_exit().expect("pgbouncer watchdog");
            bouncer
        })
        .await
}
