//! A second reviewer's attacks on streaming replicas and read-your-writes
//! tokens (#19). One private primary and one replica for all of them (a
//! cluster start is expensive on a shared 2-core machine): each scenario
//! runs on its own `Database` and records what it found; the test fails
//! listing every defect, each named by its scenario.
//!
//! Every wait polls a condition under a deadline; nothing relies on a
//! fixed sleep.

use std::time::{Duration, Instant};

use voidrunner_db::tokio_postgres;
use voidrunner_db::{
    Consistency, Database, DbConfig, NewTask, NewUser, NodeState, PasswordHash, PgTaskRepository,
    PgUserRepository, ReadToken, TaskRepository, UserId, UserRepository,
};

use crate::harness::{Cluster, all_up, raw, until};

fn new_user(email: &str) -> NewUser {
    NewUser::new(email.to_owned(), PasswordHash::new("h"))
}

const MAX: ReadToken = ReadToken::from_lsn(u64::MAX);

/// The replica has replayed everything `db`'s primary had when this was
/// called, as `db`'s prober sees it.
async fn replica_caught_up(db: &Database) {
    let floor = db.current_token().await.unwrap();
    assert!(
        until(Duration::from_secs(20), || async {
            db.nodes()[1].replayed.is_some_and(|r| r >= floor)
        })
        .await,
        "the replica never replayed {floor}: {:?}",
        db.nodes()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn review2_defects() {
    let cluster = Cluster::start(1).await;
    let primary = raw(&cluster.primary).await;
    let standby = raw(&cluster.replicas[0]).await;
    let mut defects: Vec<String> = Vec::new();

    let base = Database::connect(cluster.config()).await.unwrap();
    all_up(&base).await;
    let owner = PgUserRepository::new(base.clone())
        .create(new_user("review2-owner@example.com"))
        .await
        .unwrap();

    label_of_a_replica_pool_follows_the_primary_urls_application_name(
        &cluster,
        &standby,
        &mut defects,
    )
    .await;
    a_commit_that_definitely_failed_does_not_poison_the_token(&cluster, &primary, &mut defects)
        .await;
    an_import_on_a_read_your_writes_handle_needs_no_second_connection(
        &cluster,
        owner.id,
        &mut defects,
    )
    .await;
    a_forged_token_does_not_starve_other_callers_of_the_replica(&cluster, owner.id, &mut defects)
        .await;
    an_import_dropped_after_its_copy_is_still_read_by_its_handle(
        &cluster,
        &primary,
        &standby,
        &mut defects,
    )
    .await;
    // Replay is still paused here (resumed at the end of this one).
    the_replay_lag_reported_grows_with_the_pause(&cluster, &standby, &mut defects).await;

    assert!(
        defects.is_empty(),
        "{} defect(s):\n- {}",
        defects.len(),
        defects.join("\n- ")
    );
}

/// metrics.rs: a replica's pool label (and its sessions' name) is "the
/// primary's with `.replica<N>` appended", and the primary's is the URL's
/// `application_name` when it sets one.
async fn label_of_a_replica_pool_follows_the_primary_urls_application_name(
    cluster: &Cluster,
    standby: &tokio_postgres::Client,
    defects: &mut Vec<String>,
) {
    let mut config = DbConfig::from_url(&format!(
        "{}?application_name=review2-worker",
        cluster.primary.url()
    ))
    .unwrap();
    config.max_connections = 2;
    config.min_connections = 1;
    config.replica_probe_interval = Duration::from_millis(100);
    config.add_replica(&cluster.replicas[0].url()).unwrap();
    let db = Database::connect(config).await.unwrap();
    all_up(&db).await;
    assert!(
        db.reads(Consistency::AnyReplica)
            .read_in_recovery()
            .await
            .unwrap()
    );
    let names = || async {
        standby
            .query(
                "SELECT DISTINCT application_name FROM pg_stat_activity \
                 WHERE application_name LIKE '%.replica%' ORDER BY 1",
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| r.get::<_, String>(0))
            .collect::<Vec<_>>()
    };
    let found = until(Duration::from_secs(10), || async {
        names().await.iter().any(|n| n == "review2-worker.replica1")
    })
    .await;
    if !found {
        defects.push(format!(
            "label: with the primary URL's application_name=review2-worker, the replica's \
             sessions (and its metrics `pool` label) are not `review2-worker.replica1` as \
             metrics.rs documents; the replica server shows {:?}",
            names().await
        ));
    }
    db.close(Duration::from_secs(5)).await;
}

/// A COMMIT the server refused (an error response: the transaction rolled
/// back, nothing written) has a known outcome; it must not turn the
/// handle's token into the highest one, which pins the handle, and every
/// later request that carries its token back, to the primary for good.
async fn a_commit_that_definitely_failed_does_not_poison_the_token(
    cluster: &Cluster,
    primary: &tokio_postgres::Client,
    defects: &mut Vec<String>,
) {
    primary
        .batch_execute(
            "CREATE FUNCTION review2_refuse() RETURNS trigger LANGUAGE plpgsql AS \
               $$BEGIN RAISE EXCEPTION 'refused at commit'; END$$; \
             CREATE CONSTRAINT TRIGGER review2_refuse AFTER INSERT ON users \
               DEFERRABLE INITIALLY DEFERRED FOR EACH ROW \
               WHEN (NEW.email LIKE 'review2-refused%') EXECUTE FUNCTION review2_refuse();",
        )
        .await
        .unwrap();
    let db = Database::connect(cluster.config()).await.unwrap();
    let request = db.read_your_writes(None);
    let users = PgUserRepository::new(request.clone());
    users
        .create(new_user("review2-before@example.com"))
        .await
        .unwrap();
    let before = request.token().unwrap();

    // The same refusal outside a transaction: the token stays.
    let plain = users
        .create(new_user("review2-refused-1@example.com"))
        .await;
    assert!(plain.is_err(), "the trigger did not refuse: {plain:?}");
    let after_plain = request.token();

    let refused = request
        .transaction(|tx| async move {
            tx.users()
                .create(new_user("review2-refused-2@example.com"))
                .await
        })
        .await;
    assert!(refused.is_err(), "the trigger did not refuse: {refused:?}");
    let after_tx = request.token();
    primary
        .batch_execute("DROP TRIGGER review2_refuse ON users; DROP FUNCTION review2_refuse();")
        .await
        .unwrap();
    if after_plain != Some(before) {
        defects.push(format!(
            "poison: a refused autocommit write moved the token from {before} to {after_plain:?}"
        ));
    }
    if after_tx == Some(MAX) {
        // And it sticks: the next request, given that token back, can
        // never read a replica again, whatever it writes.
        let next = db.read_your_writes(after_tx);
        PgUserRepository::new(next.clone())
            .create(new_user("review2-next@example.com"))
            .await
            .unwrap();
        let in_recovery = next.read_in_recovery().await.unwrap();
        defects.push(format!(
            "poison: a COMMIT the server refused with an error (known outcome: rolled back) made \
             the read-your-writes token {MAX} (token before: {before}); a later request given \
             that token back still has token {:?} after a write of its own and reads a replica: \
             {in_recovery}",
            next.token()
        ));
    }
    db.close(Duration::from_secs(5)).await;
}

/// A bulk import on a read-your-writes handle learns its position with
/// `current_token()`, which checks a second connection out of the primary's
/// pool while the import's own is still held. With every connection busy
/// that waits `wait_timeout`, then the handle loses its position.
async fn an_import_on_a_read_your_writes_handle_needs_no_second_connection(
    cluster: &Cluster,
    owner: UserId,
    defects: &mut Vec<String>,
) {
    let mut config = cluster.config();
    config.max_connections = 1;
    config.wait_timeout = Duration::from_secs(2);
    let db = Database::connect(config).await.unwrap();
    let request = db.read_your_writes(None);
    let tasks = PgTaskRepository::new(request.clone());
    let started = Instant::now();
    let imported = tasks
        .import(vec![NewTask::new(owner, "review2-import", "print(1)")])
        .await;
    let took = started.elapsed();
    if imported.is_err() || took > Duration::from_millis(1500) || request.token() == Some(MAX) {
        defects.push(format!(
            "import: with max_connections = 1 an import of one task on a read-your-writes handle \
             took {took:?} (wait_timeout 2 s) and left token {:?} ({imported:?}): the position \
             is read on a second checkout while the COPY's connection is held",
            request.token()
        ));
    }
    db.close(Duration::from_secs(5)).await;
}

/// A forged far-future token (not the highest one, which goes straight to
/// the primary) makes its read hold a replica connection for the whole
/// `replica_wait`, polling: at most half the replica's pool may be held so
/// (none of a pool of one), so other callers' replica reads never queue
/// behind it, a second forged read goes to the primary at once, and the
/// prober keeps the replica in rotation meanwhile.
async fn a_forged_token_does_not_starve_other_callers_of_the_replica(
    cluster: &Cluster,
    owner: UserId,
    defects: &mut Vec<String>,
) {
    let mut config = cluster.config();
    config.max_connections = 2;
    config.wait_timeout = Duration::from_secs(2);
    config.replica_wait = Duration::from_secs(4);
    config.replica_max_lag = Duration::from_secs(60);
    // The prober's limit is connect_timeout: shorter than the pool's wait.
    config.connect_timeout = Duration::from_secs(1);
    let db = Database::connect(config).await.unwrap();
    all_up(&db).await;
    let forged = db.reads(Consistency::AtLeast(ReadToken::from_lsn(u64::MAX - 1)));
    let second_forged = forged.clone();
    let hostile = tokio::spawn(async move {
        let started = Instant::now();
        let got = PgUserRepository::new(forged).get(owner).await;
        (started.elapsed(), got.map(|u| u.id))
    });
    let holding = until(Duration::from_secs(10), || async {
        db.nodes()[1].pool.in_use == 1
    })
    .await;
    assert!(
        holding,
        "the forged read never held the replica: {:?}",
        db.nodes()
    );
    // Meanwhile, what the prober makes of a healthy replica whose pool is
    // busy: its probe checks a connection out of that same pool.
    let watcher = {
        let db = db.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            while started.elapsed() < Duration::from_secs(3) {
                let node = db.nodes().swap_remove(1);
                if node.state == NodeState::Down {
                    return Some(node.error);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            None
        })
    };
    let started = Instant::now();
    let honest = PgUserRepository::new(db.reads(Consistency::AnyReplica))
        .get(owner)
        .await;
    let took = started.elapsed();
    // The second waiter finds the replica's half already waiting: the
    // primary answers it at once.
    let started = Instant::now();
    let second = PgUserRepository::new(second_forged).get(owner).await;
    let second_took = started.elapsed();
    if second.map(|u| u.id).ok() != Some(owner) || second_took > Duration::from_millis(1000) {
        defects.push(format!(
            "forged token: a second forged-token read, with half the replica's pool already \
             waiting, took {second_took:?} instead of going to the primary at once"
        ));
    }
    let (hostile_took, hostile_got) = hostile.await.unwrap();
    assert_eq!(hostile_got.unwrap(), owner);
    if let Some(error) = watcher.await.unwrap() {
        defects.push(format!(
            "busy pool is Down: a healthy, fully replayed replica whose one pooled connection \
             was busy was marked Down by the prober (its idle connections closed, out of \
             rotation), because the probe waits on the replica's own pool: {error:?}"
        ));
    }
    if took > Duration::from_millis(1000) {
        defects.push(format!(
            "forged token: while one forged-token read ({hostile_took:?}) waited replica_wait \
             holding the replica's connection, an honest AnyReplica read of another handle took \
             {took:?} ({:?}), queueing for the replica's pool (wait_timeout 2 s) before falling \
             back",
            honest.map(|u| u.id)
        ));
    }
    db.close(Duration::from_secs(5)).await;
}

/// The import's position is learnt after its COPY committed, in an await
/// where the connection is no longer armed: dropping the call there (a
/// request timeout) leaves the handle without the write, not "lost", so
/// its next read goes to a replica that does not have it.
async fn an_import_dropped_after_its_copy_is_still_read_by_its_handle(
    cluster: &Cluster,
    primary: &tokio_postgres::Client,
    standby: &tokio_postgres::Client,
    defects: &mut Vec<String>,
) {
    let mut config = cluster.config();
    // One connection: the position's checkout waits, deterministically,
    // after the COPY committed.
    config.max_connections = 1;
    config.wait_timeout = Duration::from_secs(30);
    config.replica_max_lag = Duration::from_secs(60);
    let db = Database::connect(config).await.unwrap();
    all_up(&db).await;
    let owner = PgUserRepository::new(db.clone())
        .create(new_user("review2-dropped-import@example.com"))
        .await
        .unwrap();
    replica_caught_up(&db).await;
    standby
        .execute("SELECT pg_wal_replay_pause()", &[])
        .await
        .unwrap();

    let request = db.read_your_writes(None);
    let tasks = PgTaskRepository::new(request.clone());
    let outcome = tokio::time::timeout(
        Duration::from_secs(3),
        tasks.import(vec![NewTask::new(owner.id, "review2-dropped", "print(1)")]),
    )
    .await;
    let committed: i64 = primary
        .query_one(
            "SELECT count(*) FROM tasks WHERE name = 'review2-dropped'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    match outcome {
        // The position is read on the import's own connection: no second
        // checkout to wait for, and the handle sees its import.
        Ok(Ok(1)) if committed == 1 => {
            let seen = tasks.count_by_user(owner.id).await.unwrap();
            if seen != 1 {
                defects.push(format!(
                    "dropped import: an import (1 row on the primary) is not seen by its own \
                     read-your-writes handle: count_by_user = {seen}, token {:?}",
                    request.token()
                ));
            }
        }
        other => defects.push(format!(
            "dropped import: an import on a one-connection pool did not end within 3 s with \
             its row committed: {other:?}, {committed} rows committed"
        )),
    }
    db.close(Duration::from_secs(5)).await;
}

/// `NodeStatus::lag` and `voidrunner_db_replica_lag_seconds`: "how long it
/// has been missing WAL the primary had, to within one probe interval".
/// The primary's samples older than `replica_max_lag` + 2 probe intervals
/// are forgotten, so a replica stuck for minutes reports a fraction of a
/// second, and an alert on the lag never fires.
async fn the_replay_lag_reported_grows_with_the_pause(
    cluster: &Cluster,
    standby: &tokio_postgres::Client,
    defects: &mut Vec<String>,
) {
    let mut config = cluster.config();
    config.replica_max_lag = Duration::from_millis(200);
    config.replica_probe_interval = Duration::from_millis(100);
    let db = Database::connect(config).await.unwrap();
    // Replay is paused: WAL written from now on is missing on the replica.
    let paused = Instant::now();
    PgUserRepository::new(db.clone())
        .create(new_user("review2-lag@example.com"))
        .await
        .unwrap();
    let seen = std::cell::Cell::new(Duration::ZERO);
    let grew = until(Duration::from_secs(8), || async {
        seen.set(seen.get().max(db.nodes()[1].lag.unwrap_or_default()));
        seen.get() >= Duration::from_secs(3)
    })
    .await;
    let seen = seen.get();
    let paused_for = paused.elapsed();
    standby
        .execute("SELECT pg_wal_replay_resume()", &[])
        .await
        .unwrap();
    if !grew {
        defects.push(format!(
            "lag: replay paused for {paused_for:?} with WAL written right after the pause, the \
             largest lag reported was {seen:?} (replica_max_lag 200 ms, probe 100 ms): the lag \
             saturates at about max_lag + 3 probe intervals"
        ));
    }
    db.close(Duration::from_secs(5)).await;
}
