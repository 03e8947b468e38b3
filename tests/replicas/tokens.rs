//! Read-your-writes tokens under load: a thousand requests that write and
//! read back at once never miss their write, mostly on the replica; the
//! same requests without tokens do miss; a token survives its text form
//! between two requests; a transaction's commit is covered too.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use voidrunner_db::{
    Consistency, Database, NewTask, NewUser, PageRequest, PasswordHash, PgTaskRepository,
    PgUserRepository, ReadToken, TaskRepository, UserId, UserRepository,
};

use crate::harness::{Cluster, all_up, eventually, pause_replay, raw, reads_of, resume_replay};

const ROUNDS: usize = 1000;
/// Rounds of the run without tokens, the first PAUSED of them with replay
/// paused on the replica.
const UNTOKENED_ROUNDS: usize = 300;
const PAUSED: usize = 50;

/// What one request's reads found of what it had just written.
#[derive(Debug, Default)]
struct Misses {
    tasks: usize,
    lists: usize,
    users: usize,
    first: Option<String>,
}

impl Misses {
    fn total(&self) -> usize {
        self.tasks + self.lists + self.users
    }
}

/// One request: a user and a task written through `request`, then read
/// back through it (the task, the user's list, the user): 3 routed reads.
async fn round(request: &Database, i: usize, tag: &str, misses: &mut Misses) {
    let users = PgUserRepository::new(request.clone());
    let tasks = PgTaskRepository::new(request.clone());
    let user = users
        .create(NewUser::new(
            format!("{tag}{i}@example.com"),
            PasswordHash::new("h"),
        ))
        .await
        .unwrap();
    let task = tasks
        .create(NewTask::new(user.id, format!("{tag}-{i}"), "print(1)"))
        .await
        .unwrap();
    let mut note = |what: &str| {
        if misses.first.is_none() {
            misses.first = Some(format!("round {i}: {what}"));
        }
    };
    match tasks.get(task.id).await {
        Ok(found) => assert_eq!(found, task),
        Err(e) if e.is_not_found() => {
            note("task");
            misses.tasks += 1;
        }
        Err(e) => panic!("round {i}: get: {e:?}"),
    }
    let listed = tasks
        .list_by_user(user.id, PageRequest::first(10))
        .await
        .unwrap();
    if listed.items != [task.clone()] {
        note("list");
        misses.lists += 1;
    }
    match users.get(user.id).await {
        Ok(found) => assert_eq!(found, user),
        Err(e) if e.is_not_found() => {
            note("user");
            misses.users += 1;
        }
        Err(e) => panic!("round {i}: get user: {e:?}"),
    }
}

/// Inserts tasks through `db` (the primary) until `stop`; counts them.
fn hammer(db: &Database, owner: UserId, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<u64> {
    let tasks = PgTaskRepository::new(db.clone());
    tokio::spawn(async move {
        let mut written = 0u64;
        while !stop.load(Ordering::Relaxed) {
            tasks
                .create(NewTask::new(owner, format!("load-{written}"), "print(0)"))
                .await
                .unwrap();
            written += 1;
        }
        written
    })
}

/// One cluster for both parts (clusters are expensive).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_your_writes() {
    let cluster = Cluster::start(1).await;
    let mut config = cluster.config();
    // Out of rotation only by a lag far beyond this test's: reads without
    // tokens keep going to the (paused) replica.
    config.replica_max_lag = Duration::from_secs(3600);
    let db = Database::connect(config).await.unwrap();
    all_up(&db).await;
    // Under load, a replica may be behind by more than the default wait
    // on a busy machine: this part asserts where reads went, so it waits
    // longer before falling back (same pools otherwise: a second handle on
    // the same cluster).
    let mut patient = cluster.config();
    patient.replica_max_lag = Duration::from_secs(3600);
    patient.replica_wait = Duration::from_secs(5);
    let patient = Database::connect(patient).await.unwrap();
    all_up(&patient).await;
    under_load(&patient, &cluster).await;
    a_token_crosses_requests_as_text_and_covers_a_transaction(&db, &cluster).await;
}

async fn under_load(db: &Database, cluster: &Cluster) {
    let db = db.clone();
    let loader = PgUserRepository::new(db.clone())
        .create(NewUser::new("load@example.com", PasswordHash::new("h")))
        .await
        .unwrap();

    // With tokens: never stale.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = hammer(&db, loader.id, stop.clone());
    let (primary_before, replica_before) = (reads_of(&db, 0), reads_of(&db, 1));
    let started = Instant::now();
    let mut misses = Misses::default();
    for i in 0..ROUNDS {
        let request = db.read_your_writes(None);
        round(&request, i, "ryw", &mut misses).await;
        assert!(
            request.token().is_some(),
            "round {i}: no token after writes"
        );
    }
    let took = started.elapsed();
    let (primary, replica) = (
        reads_of(&db, 0) - primary_before,
        reads_of(&db, 1) - replica_before,
    );
    stop.store(true, Ordering::Relaxed);
    let load = writer.await.unwrap();
    println!(
        "with tokens: {ROUNDS} rounds in {took:?}, {load} concurrent inserts; reads answered by \
         the replica {replica}, by the primary {primary}; misses {misses:?}"
    );
    assert_eq!(misses.total(), 0, "stale reads with tokens: {misses:?}");
    assert_eq!(primary + replica, 3 * ROUNDS as u64, "{:?}", db.nodes());
    assert!(
        replica > primary,
        "most token reads should be answered by the replica: replica {replica}, primary {primary}"
    );
    assert!(load > 0);

    // Without tokens, under the same load: stale reads exist. Replay is
    // paused for the first rounds, so that some are certain.
    let replica_session = raw(&cluster.replicas[0]).await;
    let stop = Arc::new(AtomicBool::new(false));
    let writer = hammer(&db, loader.id, stop.clone());
    let mut paused = Misses::default();
    let mut running = Misses::default();
    let any = db.reads(Consistency::AnyReplica);
    pause_replay(&replica_session).await;
    for i in 0..UNTOKENED_ROUNDS {
        if i == PAUSED {
            resume_replay(&replica_session).await;
        }
        let misses = if i < PAUSED {
            &mut paused
        } else {
            &mut running
        };
        round(&any, i, "any", misses).await;
        assert_eq!(any.token(), None);
    }
    stop.store(true, Ordering::Relaxed);
    writer.await.unwrap();
    println!(
        "without tokens: {PAUSED} rounds with replay paused: {paused:?}; {} rounds replaying: \
         {running:?}",
        UNTOKENED_ROUNDS - PAUSED
    );
    // Every read of a paused round missed its write.
    assert_eq!(
        (paused.tasks, paused.lists, paused.users),
        (PAUSED, PAUSED, PAUSED)
    );
}

async fn a_token_crosses_requests_as_text_and_covers_a_transaction(
    db: &Database,
    cluster: &Cluster,
) {
    let db = db.clone();
    let owner = PgUserRepository::new(db.clone())
        .create(NewUser::new("owner@example.com", PasswordHash::new("h")))
        .await
        .unwrap()
        .id;
    let replica = raw(&cluster.replicas[0]).await;
    let probe = PgUserRepository::new(db.reads(Consistency::AnyReplica));
    eventually(
        "the replica has the owner",
        || async { probe.get(owner).await.is_ok() },
        || format!("{:?}", db.nodes()),
    )
    .await;
    // Replay paused: only the primary has what is written from now on, so
    // a read that sees it either went there or waited for nothing.
    pause_replay(&replica).await;

    // Request 1 writes and hands its token out as a cookie.
    let request1 = db.read_your_writes(None);
    assert_eq!(request1.token(), None);
    let task = PgTaskRepository::new(request1.clone())
        .create(NewTask::new(owner, "cookie", "print(1)"))
        .await
        .unwrap();
    let token = request1.token().expect("a token after a write");
    let cookie = format!("rt={token}");
    let json = serde_json::to_string(&token).unwrap();

    // Request 2, built from the cookie.
    let text = cookie.strip_prefix("rt=").unwrap();
    let parsed: ReadToken = text.parse().unwrap();
    assert_eq!(parsed, token);
    assert_eq!(parsed.to_string(), text);
    assert_eq!(serde_json::from_str::<ReadToken>(&json).unwrap(), token);
    let request2 = db.read_your_writes(Some(parsed));
    assert_eq!(request2.token(), Some(token));
    assert_eq!(request2.consistency(), Consistency::AtLeast(token));
    // Without the cookie the (paused) replica misses the write...
    let without = PgTaskRepository::new(db.read_your_writes(None));
    assert!(without.get(task.id).await.unwrap_err().is_not_found());
    // ...and with it, request 2 sees it.
    assert_eq!(
        PgTaskRepository::new(request2.clone())
            .get(task.id)
            .await
            .unwrap(),
        task
    );
    assert!(!request2.read_in_recovery().await.unwrap());

    // A transaction of a read-your-writes handle: its commit moves the
    // handle's token, and its reads see the transaction's rows.
    let request = db.read_your_writes(Some(token));
    let created = request
        .transaction(|tx| async move {
            let first = tx
                .tasks()
                .create(NewTask::new(owner, "tx-1", "print(1)"))
                .await?;
            let second = tx
                .tasks()
                .create(NewTask::new(owner, "tx-2", "print(2)"))
                .await?;
            Ok((first, second))
        })
        .await
        .unwrap();
    let after = request.token().expect("a token after the commit");
    assert!(after > token, "{after} after {token}");
    let tasks = PgTaskRepository::new(request.clone());
    assert_eq!(tasks.get(created.0.id).await.unwrap(), created.0);
    assert_eq!(tasks.get(created.1.id).await.unwrap(), created.1);
    assert_eq!(tasks.count_by_user(owner).await.unwrap(), 3);
    // The (paused) replica has none of them: a read without a token
    // answered there counts none.
    let any = PgTaskRepository::new(db.reads(Consistency::AnyReplica));
    assert_eq!(any.count_by_user(owner).await.unwrap(), 0);

    // Replay resumed: the same token is then answered by the replica.
    resume_replay(&replica).await;
    let before = reads_of(&db, 1);
    eventually(
        "the transaction's token read on the replica",
        || async { request.read_in_recovery().await.unwrap() },
        || format!("{:?}", db.nodes()),
    )
    .await;
    assert!(reads_of(&db, 1) > before);
    assert_eq!(tasks.get(created.1.id).await.unwrap(), created.1);
}
