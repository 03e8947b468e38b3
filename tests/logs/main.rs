//! No secret reaches a log (issue #8 §4): everything logged at TRACE while
//! users are created, updated and read — the crate's own spans and events
//! and tokio-postgres's `log` records, which include the `Debug` form of
//! every bind parameter — holds neither a password hash nor the database
//! password.
//!
//! Also: failed calls and slow statements are visible in the logs (issue
//! #10 §5).
//!
//! A test binary of its own: it installs a process-wide subscriber, which
//! would also record (and slow down) every other test of a shared binary.

use std::io;
use std::sync::{Arc, Mutex};

use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::fmt::format::FmtSpan;
use voidrunner_db::testing::TestDatabase;
use voidrunner_db::{
    NewUser, PageRequest, PasswordHash, PgUserRepository, UserRepository, UserUpdate,
};

/// Distinctive hashes and password, so a hit can only be a leak. Their
/// `Debug` escapes nothing, so a `{:?}`-printed copy would match too.
const HASH_AT_CREATE: &str = "$argon2id$v=19$m=19456,t=2,p=1$Y3JlYXRlc2FsdA$canaryCreateHash7Qx";
const HASH_AT_UPDATE: &str = "$argon2id$v=19$m=19456,t=2,p=1$dXBkYXRlc2FsdA$canaryUpdateHash3Kz";
const HASH_IN_TX: &str = "$argon2id$v=19$m=19456,t=2,p=1$dHhzYWx0c2FsdA$canaryTxHash9Wm";
const DB_PASSWORD: &str = "canary-db-password-5Rj";
/// Not a secret: its presence proves tokio-postgres's parameter lines were
/// captured.
const EMAIL: &str = "log.capture@example.com";

/// Everything written, shared by all the writers the fmt layer makes.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Capture {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Capture {
    type Writer = Capture;

    fn make_writer(&'a self) -> Capture {
        self.clone()
    }
}

/// The process-wide capture of everything logged at TRACE, installed by
/// the first test that asks. Process-wide, so tracing's per-callsite
/// interest cache cannot hide events from it, as it can from a scoped
/// default while other tests of the process run; each test looks for its own
/// markers in it.
fn capture() -> Capture {
    static CAPTURE: std::sync::OnceLock<Capture> = std::sync::OnceLock::new();
    CAPTURE
        .get_or_init(|| {
            // tokio-postgres logs through `log`; LogTracer hands its records
            // to tracing.
            let _ = tracing_log::LogTracer::init();
            let capture = Capture::default();
            let subscriber = tracing_subscriber::fmt()
                .with_max_level(tracing::Level::TRACE)
                .with_span_events(FmtSpan::FULL)
                .with_ansi(false)
                .with_writer(capture.clone())
                .finish();
            tracing::subscriber::set_global_default(subscriber).expect("the only subscriber");
            capture
        })
        .clone()
}

#[tokio::test]
async fn no_password_hash_or_database_password_reaches_the_logs() {
    let capture = capture();

    // The local server trusts and never asks for the password; the
    // connection still carries it, so anything that prints the
    // configuration would show it.
    let db = TestDatabase::with_config(|c| {
        c.pg_config_mut().password(DB_PASSWORD);
    })
    .await
    .expect("test database");
    assert_eq!(
        db.db().config().pg_config().get_password(),
        Some(DB_PASSWORD.as_bytes()),
        "the pool's configuration holds the password"
    );
    // What an application might log about its handle.
    tracing::info!(config = ?db.db().config(), database = ?*db, "database handle");

    let users = PgUserRepository::new(db.db().clone());
    let created = users
        .create(NewUser::new(EMAIL, PasswordHash::new(HASH_AT_CREATE)))
        .await
        .unwrap();
    let updated = users
        .update(
            created.id,
            UserUpdate {
                password_hash: Some(PasswordHash::new(HASH_AT_UPDATE)),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(updated.password_hash.expose(), HASH_AT_UPDATE);
    let read = users.get(created.id).await.unwrap();
    assert_eq!(
        read.password_hash.expose(),
        HASH_AT_UPDATE,
        "the redacted parameter still stores the hash"
    );
    let by_email = users.get_by_email(EMAIL).await.unwrap();
    assert_eq!(by_email.id, created.id);
    // Through a transaction's repository too: same statements, other path.
    let in_tx = db
        .transaction(|tx| async move {
            tx.users()
                .create(NewUser::new(
                    "second.user@example.com",
                    PasswordHash::new(HASH_IN_TX),
                ))
                .await
        })
        .await
        .unwrap();
    let listed = users.list(PageRequest::default()).await.unwrap();
    assert_eq!(listed.items.len(), 2);
    assert!(listed.items.iter().any(|u| u.id == in_tx.id));
    assert_eq!(users.count().await.unwrap(), 2);
    // Rows the server returns are read back with the hashes in them.
    assert_eq!(
        users.get(in_tx.id).await.unwrap().password_hash.expose(),
        HASH_IN_TX
    );

    let logs = capture.text();

    // The capture works: the crate's own spans and tokio-postgres's DEBUG
    // lines with their bind parameters are in it.
    assert!(!logs.is_empty(), "nothing was captured");
    assert!(
        logs.contains("voidrunner_db.connect") && logs.contains("voidrunner_db.repo"),
        "the crate's spans, from the connection with the password on, are captured:\n{logs}"
    );
    assert!(
        logs.contains("with parameters:"),
        "tokio-postgres's parameter lines are captured:\n{logs}"
    );
    assert!(
        logs.contains(EMAIL),
        "a non-secret bind value (the email) is in the captured parameters:\n{logs}"
    );
    assert!(
        logs.contains(&format!("\"{EMAIL}\", <redacted>, \"")),
        "the hash parameter of the insert is shown redacted:\n{logs}"
    );

    for (what, secret) in [
        ("password hash given at create", HASH_AT_CREATE),
        ("password hash given at update", HASH_AT_UPDATE),
        ("password hash created in a transaction", HASH_IN_TX),
        ("database password", DB_PASSWORD),
    ] {
        // The whole value and its distinctive last segment, in case a log
        // line cut or escaped it.
        let tail = secret.rsplit('$').next().unwrap();
        for needle in [secret, tail] {
            let hits: Vec<&str> = logs.lines().filter(|l| l.contains(needle)).collect();
            assert!(
                hits.is_empty(),
                "the {what} reached the logs in {} line(s):\n{}",
                hits.len(),
                hits.join("\n")
            );
        }
    }
}

#[tokio::test]
async fn failed_calls_and_slow_statements_are_reported() {
    let capture = capture();
    let db = TestDatabase::with_config(|c| {
        c.slow_statement = Some(std::time::Duration::from_millis(1));
    })
    .await
    .expect("test database");
    let users = PgUserRepository::new(db.db().clone());
    let missing = voidrunner_db::UserId::new();
    let err = users.get(missing).await.unwrap_err();
    assert!(err.is_not_found());
    users
        .create(NewUser::new("slow@example.com", PasswordHash::new("h")))
        .await
        .unwrap();
    let dup = users
        .create(NewUser::new("slow@example.com", PasswordHash::new("h")))
        .await
        .unwrap_err();
    assert!(dup.is_conflict());
    // A statement slow on purpose: it waits for a lock held for a while.
    let holder = db.client().await.unwrap();
    holder
        .batch_execute("BEGIN; LOCK TABLE users IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    let counting = tokio::spawn({
        let users = users.clone();
        async move { users.count().await }
    });
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    holder.batch_execute("COMMIT").await.unwrap();
    counting.await.unwrap().unwrap();
    let logs = capture.text();
    // The failed calls' spans carry their error, SQLSTATE included.
    assert!(
        logs.lines().any(|l| l.contains("voidrunner_db.repo")
            && l.contains(&format!("user not found: {missing}"))),
        "{logs}"
    );
    assert!(
        logs.lines()
            .any(|l| l.contains("voidrunner_db.repo") && l.contains("23505")),
        "{logs}"
    );
    // And as structured fields, in the failed call's span.
    assert!(
        logs.lines().any(|l| l.contains("voidrunner_db.repo")
            && l.contains("error.kind=\"conflict\"")
            && l.contains("error.sqlstate=\"23505\"")),
        "{logs}"
    );
    assert!(
        logs.lines()
            .any(|l| l.contains("slow statement") && l.contains("SELECT count(*) FROM users")),
        "{logs}"
    );
    // Every statement runs in a span named by its registered name, and the
    // slow-statement event names it too.
    assert!(
        logs.lines().any(|l| l.contains("slow statement")
            && l.contains("voidrunner_db.statement")
            && l.contains("statement=\"lists.users_count\"")),
        "{logs}"
    );
    assert!(
        logs.lines()
            .any(|l| l.contains("voidrunner_db.statement") && l.contains("users.create")),
        "{logs}"
    );
}

/// A user's delete cancelled while its transaction is open (the call's
/// own, through the transaction engine) is the caller's cancel, not a
/// transaction the caller forgot to end: it is logged at DEBUG, never as
/// the WARN that a dropped `Database::transaction` earns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_call_inside_its_own_transaction_is_no_warning() {
    let capture = capture();
    let db = TestDatabase::new().await.expect("test database");
    let users = PgUserRepository::new(db.db().clone());
    let user = users
        .create(NewUser::new(
            "cancelled.delete@example.com",
            PasswordHash::new("h"),
        ))
        .await
        .unwrap();
    // The delete waits on this row lock, inside its transaction, until it
    // is dropped.
    let holder = db.raw_client().await.unwrap();
    holder.batch_execute("BEGIN").await.unwrap();
    holder
        .execute("SELECT 1 FROM users WHERE id = $1 FOR UPDATE", &[&user.id])
        .await
        .unwrap();
    // Another connection watches (one in a transaction sees the activity
    // as it was when it first looked).
    let observer = db.raw_client().await.unwrap();
    let waiting = async {
        loop {
            let waiters: i64 = observer
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity \
                     WHERE datname = current_database() AND wait_event_type = 'Lock'",
                    &[],
                )
                .await
                .unwrap()
                .get(0);
            if waiters > 0 {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    };
    tokio::select! {
        result = users.delete(user.id) => panic!("the delete ran past the lock: {result:?}"),
        _ = waiting => {}
    }
    holder.batch_execute("ROLLBACK").await.unwrap();
    assert!(
        users.get(user.id).await.is_ok(),
        "the cancelled delete went through"
    );
    let logs = capture.text();
    assert!(
        logs.lines()
            .any(|l| l.contains("op=\"delete\"")
                && l.contains("call cancelled inside its transaction")),
        "{logs}"
    );
    assert!(
        !logs
            .lines()
            .any(|l| l.contains("op=\"delete\"") && l.contains("transaction dropped before commit")),
        "{logs}"
    );
}

/// A call's span names its entity and operation, and a batch's size; the
/// statements it runs nest inside, named by the registry.
#[tokio::test]
async fn a_calls_span_carries_its_operation_and_batch_size() {
    use voidrunner_db::{NewTask, PgTaskRepository, TaskRepository};
    let capture = capture();
    let db = TestDatabase::new().await.expect("test database");
    let users = PgUserRepository::new(db.db().clone());
    let tasks = PgTaskRepository::new(db.db().clone());
    let owner = users
        .create(NewUser::new(
            "span.count@example.com",
            PasswordHash::new("h"),
        ))
        .await
        .unwrap();
    let batch = (0..3)
        .map(|i| NewTask::new(owner.id, format!("span-count-{i}"), "print(1)"))
        .collect();
    assert_eq!(tasks.create_many(batch).await.unwrap().len(), 3);
    let logs = capture.text();
    assert!(
        logs.lines().any(|l| l.contains(
            "voidrunner_db.repo{entity=\"task\" op=\"create_many\" count=3}:voidrunner_db.statement{statement=\"tasks.create_many\"}"
        )),
        "{logs}"
    );
}
