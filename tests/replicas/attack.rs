//! A reviewer's attacks on streaming replicas and read-your-writes tokens
//! (#19): hostile callers, operators and cancellations.

use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

use voidrunner_db::testing::PrivateCluster;
use voidrunner_db::tokio_postgres;
use voidrunner_db::{
    Consistency, Database, DbConfig, NewUser, NodeState, PasswordHash, PgUserRepository, ReadToken,
    UserRepository,
};

use crate::harness::{Cluster, all_up, raw, until};

async fn lsn(client: &tokio_postgres::Client, sql: &str) -> u64 {
    let row = client.query_one(sql, &[]).await.unwrap();
    let at: Option<tokio_postgres::types::PgLsn> = row.get(0);
    at.map_or(0, u64::from)
}

fn new_user(email: &str) -> NewUser {
    NewUser::new(email.to_owned(), PasswordHash::new("h"))
}

// ---------------------------------------------------------------------
// (2) a hostile caller: tokens and configurations, no server needed.
// ---------------------------------------------------------------------

#[tokio::test]
async fn hostile_tokens_and_configs_get_typed_errors_and_never_leak_a_password() {
    // Tokens: weird text, serde of non-strings.
    for text in [
        "",
        "\u{0}/0",
        "ff/ff\n",
        "é/1",
        "1/-0",
        "FFFFFFFF/FFFFFFFFF",
        "0/0",
    ] {
        let _ = text.parse::<ReadToken>();
    }
    for json in ["12", "null", "true", "{}", "[\"0/1\"]", "\"0/1", "1e400"] {
        assert!(serde_json::from_str::<ReadToken>(json).is_err(), "{json}");
    }
    let max = ReadToken::from_lsn(u64::MAX);
    assert_eq!(max.to_string().parse::<ReadToken>().unwrap(), max);

    // Durations at and past their bounds: typed config errors, no panic.
    let base = || {
        let mut c = DbConfig::from_url("postgres://u:secret@127.0.0.1:1/db").unwrap();
        c.add_replica("postgres://u:secret@127.0.0.1:2/db").unwrap();
        c
    };
    type Case = (&'static str, Box<dyn Fn(&mut DbConfig)>);
    let cases: Vec<Case> = vec![
        (
            "max_lag 0",
            Box::new(|c| c.replica_max_lag = Duration::ZERO),
        ),
        (
            "max_lag MAX",
            Box::new(|c| c.replica_max_lag = Duration::MAX),
        ),
        (
            "probe 0",
            Box::new(|c| c.replica_probe_interval = Duration::ZERO),
        ),
        (
            "probe MAX",
            Box::new(|c| c.replica_probe_interval = Duration::MAX),
        ),
        ("wait MAX", Box::new(|c| c.replica_wait = Duration::MAX)),
    ];
    for (name, set) in cases {
        let mut c = base();
        set(&mut c);
        let err = Database::connect_lazy(c).unwrap_err();
        assert_eq!(err.kind(), "config", "{name}: {err}");
        assert!(!err.to_string().contains("secret"), "{name}: {err}");
    }
    // Wait 0 is accepted.
    let mut c = base();
    c.replica_wait = Duration::ZERO;
    drop(Database::connect_lazy(c).unwrap());

    // 65 replicas, duplicates, TLS keys of their own.
    let mut c = base();
    let list: Vec<String> = (0..65)
        .map(|i| format!("postgres://u:secret@127.0.0.1:{}/db", 1000 + i))
        .collect();
    c.set_replicas(&list.join(",")).unwrap();
    let err = Database::connect_lazy(c).unwrap_err();
    assert_eq!(err.kind(), "config", "{err}");
    for bad in [
        "postgres://u:secret@h:1/db,postgres://u:secret@h:1/db",
        "postgres://u:secret@h:1/db?sslmode=require",
        "postgres://u:secret@h:1/db?sslrootcert=/etc/passwd",
        "postgres://u:sec,postgres://ret@h:1/db",
        "postgres://u:secret@h:1/db,",
        "host=h password=secret port=1,postgres://x@h:2/db",
        "postgres://u:secret@h:notaport/db",
    ] {
        let err = base().set_replicas(bad).unwrap_err();
        assert_eq!(err.kind(), "config", "{bad}: {err}");
        for secret in ["secret", "sec", "ret@"] {
            assert!(!err.to_string().contains(secret), "{bad}: {err}");
        }
    }

    // VOIDRUNNER_DB_REPLICAS with a password, in Debug and nodes().
    let config = DbConfig::from_lookup(|name| match name {
        "DATABASE_URL" => Some("postgres://u:secret@127.0.0.1:1/db".into()),
        "VOIDRUNNER_DB_REPLICAS" => {
            Some("postgres://u:secret@127.0.0.1:2/db, host=127.0.0.1 port=3 password=secret".into())
        }
        _ => None,
    });
    // The key=value form after a URL is refused, without quoting it.
    let err = config.unwrap_err();
    assert!(!err.to_string().contains("secret"), "{err}");
    let config = DbConfig::from_lookup(|name| match name {
        "DATABASE_URL" => Some("postgres://u:secret@127.0.0.1:1/db".into()),
        "VOIDRUNNER_DB_REPLICAS" => Some("postgres://u:secret@127.0.0.1:2/db".into()),
        "VOIDRUNNER_DB_REPLICA_PROBE_INTERVAL" => Some("20ms".into()),
        _ => None,
    })
    .unwrap();
    assert!(!format!("{config:?}").contains("secret"), "{config:?}");
    let db = Database::connect_lazy(config).unwrap();
    assert!(
        until(Duration::from_secs(10), || async {
            db.nodes()[1].error.is_some()
        })
        .await,
        "{:?}",
        db.nodes()
    );
    let nodes = format!("{:?}", db.nodes());
    assert!(!nodes.contains("secret"), "{nodes}");
    assert_eq!(db.nodes()[1].state, NodeState::Down);
}

// ---------------------------------------------------------------------
// (3) an operator: a replica that restarts behind where it was.
// ---------------------------------------------------------------------

/// A TCP forwarder whose target can be switched, as a load balancer or a
/// DNS name in front of replicas would be, or a node replaced at the same
/// address.
struct Forwarder {
    port: u16,
    target: Arc<AtomicU16>,
    /// Bumped to cut every connection open.
    generation: Arc<tokio::sync::watch::Sender<u64>>,
}

impl Forwarder {
    async fn start(target: u16) -> Forwarder {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let target = Arc::new(AtomicU16::new(target));
        let (tx, _rx) = tokio::sync::watch::channel(0u64);
        let generation = Arc::new(tx);
        let (t, g) = (target.clone(), generation.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    return;
                };
                let to = t.load(Ordering::SeqCst);
                let mut cut = g.subscribe();
                tokio::spawn(async move {
                    let Ok(mut outbound) = tokio::net::TcpStream::connect(("127.0.0.1", to)).await
                    else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = cut.changed() => {}
                    }
                });
            }
        });
        Forwarder {
            port,
            target,
            generation,
        }
    }

    fn switch(&self, to: u16) {
        self.target.store(to, Ordering::SeqCst);
        self.generation.send_modify(|g| *g += 1);
    }
}

/// The pool remembers the highest replay position a node ever reported and
/// skips the replay check for any token below it. A node whose server is
/// replaced by one further behind at the same address (a load balancer or
/// DNS name over several standbys, a rebuilt or restored standby) then
/// serves token reads it has not replayed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_server_is_behind_its_remembered_position_serves_stale_token_reads() {
    let cluster = Cluster::start(2).await;
    let (a, b) = (&cluster.replicas[0], &cluster.replicas[1]);
    let forwarder = Forwarder::start(a.port()).await;
    let mut config = cluster.primary.config();
    config.replica_probe_interval = Duration::from_millis(50);
    config.replica_max_lag = Duration::from_secs(60);
    config
        .add_replica(&format!(
            "postgres://postgres@127.0.0.1:{}/postgres",
            forwarder.port
        ))
        .unwrap();
    let db = Database::connect(config).await.unwrap();
    all_up(&db).await;
    let b_client = raw(b).await;
    // B stops replaying: it is a standby behind A.
    b_client
        .execute("SELECT pg_wal_replay_pause()", &[])
        .await
        .unwrap();

    let request = db.read_your_writes(None);
    let user = PgUserRepository::new(request.clone())
        .create(new_user("behind@example.com"))
        .await
        .unwrap();
    let token = request.token().unwrap();
    assert!(
        until(Duration::from_secs(10), || async {
            db.nodes()[1].replayed.is_some_and(|r| r >= token)
        })
        .await
    );
    assert!(lsn(&b_client, "SELECT pg_last_wal_replay_lsn()").await < token.lsn());

    // The address now reaches B; the node fails over, is probed again.
    forwarder.switch(b.port());
    let _ = PgUserRepository::new(db.reads(Consistency::AnyReplica))
        .count()
        .await;
    assert!(
        until(Duration::from_secs(10), || async {
            let node = &db.nodes()[1];
            matches!(node.state, NodeState::Up | NodeState::Lagging) && node.error.is_none()
        })
        .await,
        "{:?}",
        db.nodes()
    );
    let mut stale = 0;
    for _ in 0..20 {
        match PgUserRepository::new(db.reads(Consistency::AtLeast(token)))
            .get(user.id)
            .await
        {
            Ok(found) => assert_eq!(found.id, user.id),
            Err(err) if err.is_not_found() => stale += 1,
            Err(err) => panic!("{err}"),
        }
    }
    b_client
        .execute("SELECT pg_wal_replay_resume()", &[])
        .await
        .unwrap();
    assert_eq!(
        stale,
        0,
        "token reads that missed the write: {:?}",
        db.nodes()
    );
}

/// A standby crashed (`-m immediate`) restarts from its last restartpoint
/// and opens for reads once consistent, which may be before the position it
/// had replayed: the same remembered position then serves stale reads.
/// (`recovery_min_apply_delay` holds its replay there long enough to see.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_crashed_and_restarted_behind_serves_stale_token_reads() {
    let cluster = Cluster::start(1).await;
    let replica = &cluster.replicas[0];
    let mut config = cluster.config();
    config.replica_max_lag = Duration::from_secs(3600 * 2);
    let db = Database::connect(config).await.unwrap();
    all_up(&db).await;
    let primary = raw(&cluster.primary).await;
    let standby = raw(replica).await;
    primary.batch_execute("CHECKPOINT").await.unwrap();
    let at = lsn(&primary, "SELECT pg_current_wal_lsn()").await;
    assert!(
        until(Duration::from_secs(10), || async {
            lsn(&standby, "SELECT pg_last_wal_replay_lsn()").await >= at
        })
        .await
    );
    // A restartpoint: the next start replays from here.
    standby.batch_execute("CHECKPOINT").await.unwrap();

    let request = db.read_your_writes(None);
    let user = PgUserRepository::new(request.clone())
        .create(new_user("crash@example.com"))
        .await
        .unwrap();
    let token = request.token().unwrap();
    assert!(
        until(Duration::from_secs(10), || async {
            db.nodes()[1].replayed.is_some_and(|r| r >= token)
        })
        .await
    );
    drop(standby);
    {
        use std::io::Write;
        let mut conf = std::fs::OpenOptions::new()
            .append(true)
            .open(replica.data_dir().join("postgresql.auto.conf"))
            .unwrap();
        writeln!(conf, "recovery_min_apply_delay = '1h'").unwrap();
    }
    let pid = replica.postmaster_pid().unwrap();
    let status = std::process::Command::new("kill")
        .args(["-QUIT", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    assert!(
        until(Duration::from_secs(30), || async {
            !std::path::Path::new(&format!("/proc/{pid}")).exists()
        })
        .await
    );
    replica.start_server().await.unwrap();
    let standby = raw(replica).await;
    let replayed = lsn(&standby, "SELECT pg_last_wal_replay_lsn()").await;
    println!("replayed after restart {replayed:X}, token {token}");
    assert!(
        until(Duration::from_secs(10), || async {
            let node = &db.nodes()[1];
            matches!(node.state, NodeState::Up | NodeState::Lagging)
                && node.error.is_none()
                && node
                    .since_probe
                    .is_some_and(|s| s < Duration::from_millis(100))
        })
        .await,
        "{:?}",
        db.nodes()
    );
    let behind = lsn(&standby, "SELECT pg_last_wal_replay_lsn()").await < token.lsn();
    let mut stale = 0;
    for _ in 0..20 {
        match PgUserRepository::new(db.reads(Consistency::AtLeast(token)))
            .get(user.id)
            .await
        {
            Ok(found) => assert_eq!(found.id, user.id),
            Err(err) if err.is_not_found() => stale += 1,
            Err(err) => panic!("{err}"),
        }
    }
    // Let it catch up before the cluster is removed.
    standby
        .batch_execute("ALTER SYSTEM RESET recovery_min_apply_delay; SELECT pg_reload_conf()")
        .await
        .ok();
    assert!(
        behind,
        "the restarted standby was not behind the token: nothing shown"
    );
    assert_eq!(
        stale,
        0,
        "token reads that missed the write: {:?}",
        db.nodes()
    );
}

// ---------------------------------------------------------------------
// A replica that has not replayed a migration yet.
// ---------------------------------------------------------------------

/// Right after a migration (a deploy), a replica within the lag bound that
/// has not replayed it answers a read's statement with 42P01/42703. A token
/// read must then wait or go to the primary, never fail: "never an error
/// just because replicas lag".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_read_on_a_replica_behind_a_migration_fails_instead_of_going_to_the_primary() {
    let primary = PrivateCluster::start().await.unwrap();
    let replica = primary.replica().await.unwrap();
    let standby = raw(&replica).await;
    let mut config = primary.config();
    config.replica_probe_interval = Duration::from_millis(50);
    config.replica_max_lag = Duration::from_secs(60);
    config.add_replica(&replica.url()).unwrap();
    let db = Database::connect(config).await.unwrap();
    all_up(&db).await;
    standby
        .execute("SELECT pg_wal_replay_pause()", &[])
        .await
        .unwrap();
    db.migrate().await.unwrap();

    let request = db.read_your_writes(None);
    let user = PgUserRepository::new(request.clone())
        .create(new_user("deploy@example.com"))
        .await
        .unwrap();
    let token_read = PgUserRepository::new(request.clone()).get(user.id).await;
    let any_read = PgUserRepository::new(db.reads(Consistency::AnyReplica))
        .count()
        .await;
    standby
        .execute("SELECT pg_wal_replay_resume()", &[])
        .await
        .unwrap();
    println!("AnyReplica read during the lag: {any_read:?}");
    let found = token_read.unwrap_or_else(|err| {
        panic!(
            "token read failed on a replica behind the migration: {err} (sqlstate {:?})",
            err.sqlstate()
        )
    });
    assert_eq!(found.id, user.id);
}

// ---------------------------------------------------------------------
// (4) cancellation, failures under load, promotion, leaks.
// ---------------------------------------------------------------------

async fn leftovers(client: &tokio_postgres::Client) -> Vec<String> {
    client
        .query(
            "SELECT application_name || ' ' || state || ' ' || left(query, 60) \
             FROM pg_stat_activity \
             WHERE pid <> pg_backend_pid() AND backend_type = 'client backend' \
               AND application_name <> '' AND state IN ('active', 'idle in transaction', \
               'idle in transaction (aborted)')",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

async fn sessions(client: &tokio_postgres::Client, like: &str) -> i64 {
    client
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE $1",
            &[&like],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancellations_failures_promotion_and_teardown() {
    let cluster = Cluster::start(1).await;
    let replica = &cluster.replicas[0];
    let primary = raw(&cluster.primary).await;
    let standby = raw(replica).await;
    let mut config = cluster.config();
    config.replica_max_lag = Duration::from_secs(60);
    let db = Database::connect(config.clone()).await.unwrap();
    all_up(&db).await;
    let seed = PgUserRepository::new(db.clone())
        .create(new_user("seed@example.com"))
        .await
        .unwrap();

    // Dropped futures at every await: routed reads, token reads, writes and
    // transactions of a read-your-writes handle.
    let request = db.read_your_writes(None);
    for micros in (0..4000).step_by(37) {
        let limit = Duration::from_micros(micros);
        let any = PgUserRepository::new(db.reads(Consistency::AnyReplica));
        let _ = tokio::time::timeout(limit, any.get(seed.id)).await;
        let _ = tokio::time::timeout(limit, any.list(Default::default())).await;
        let mine = PgUserRepository::new(request.clone());
        let _ = tokio::time::timeout(limit, mine.get(seed.id)).await;
        let _ = tokio::time::timeout(
            limit,
            mine.create(new_user(&format!("drop{micros}@example.com"))),
        )
        .await;
        let _ = tokio::time::timeout(
            limit,
            request.transaction(|tx| async move {
                tx.users()
                    .create(new_user(&format!("tx{micros}@example.com")))
                    .await
            }),
        )
        .await;
    }
    for (name, client) in [("primary", &primary), ("replica", &standby)] {
        let started = Instant::now();
        let mut last = leftovers(client).await;
        while !last.is_empty() && started.elapsed() < Duration::from_secs(10) {
            tokio::time::sleep(Duration::from_millis(20)).await;
            last = leftovers(client).await;
        }
        assert!(last.is_empty(), "{name} sessions left in flight: {last:?}");
    }
    // Every call still works.
    let mine = PgUserRepository::new(request.clone());
    let after = mine.create(new_user("after@example.com")).await.unwrap();
    assert_eq!(mine.get(after.id).await.unwrap().id, after.id);

    // A write given up on (its future dropped) may still commit: a read of
    // the same handle must then see it, or the caller who checks "did it
    // happen?" is told no. Replay paused: the replica, still in rotation,
    // has none of it.
    let request = db.read_your_writes(None);
    request.current_token().await.unwrap();
    let floor = request.token().unwrap();
    assert!(
        until(Duration::from_secs(10), || async {
            db.nodes()[1].replayed.is_some_and(|r| r >= floor)
        })
        .await
    );
    standby
        .execute("SELECT pg_wal_replay_pause()", &[])
        .await
        .unwrap();
    let mine = PgUserRepository::new(request.clone());
    let on_primary = PgUserRepository::new(db.clone());
    let mut unseen = Vec::new();
    for micros in (0..3000).step_by(25) {
        let email = format!("gaveup{micros}@example.com");
        let outcome =
            tokio::time::timeout(Duration::from_micros(micros), mine.create(new_user(&email)))
                .await;
        if outcome.is_ok() {
            continue;
        }
        // Given up: did it commit anyway?
        let committed = until(Duration::from_millis(500), || async {
            on_primary.get_by_email(&email).await.is_ok()
        })
        .await;
        if committed
            && mine
                .get_by_email(&email)
                .await
                .is_err_and(|e| e.is_not_found())
        {
            unseen.push(email);
        }
    }
    standby
        .execute("SELECT pg_wal_replay_resume()", &[])
        .await
        .unwrap();
    println!("token after the dropped writes: {:?}", request.token());

    // A replica stopped and started again under read load: no read fails.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut readers = Vec::new();
    for k in 0..4 {
        let (db, stop) = (db.clone(), stop.clone());
        let id = seed.id;
        readers.push(tokio::spawn(async move {
            let (mut ok, mut failed) = (0u64, Vec::new());
            let handle = if k % 2 == 0 {
                db.reads(Consistency::AnyReplica)
            } else {
                db.read_your_writes(None)
            };
            if k % 2 == 1 {
                handle.current_token().await.unwrap();
            }
            while !stop.load(Ordering::Relaxed) {
                match PgUserRepository::new(handle.clone()).get(id).await {
                    Ok(_) => ok += 1,
                    Err(err) => failed.push(err.to_string()),
                }
            }
            (ok, failed)
        }));
    }
    drop(standby);
    replica.stop_server().await.unwrap();
    assert!(
        until(Duration::from_secs(10), || async {
            db.nodes()[1].state == NodeState::Down
        })
        .await
    );
    replica.start_server().await.unwrap();
    assert!(
        until(Duration::from_secs(20), || async {
            db.nodes()[1].state == NodeState::Up
        })
        .await
    );
    let served = db.nodes()[1].reads;
    assert!(
        until(Duration::from_secs(5), || async {
            db.nodes()[1].reads > served + 10
        })
        .await,
        "the restarted replica is not read from again"
    );
    stop.store(true, Ordering::Relaxed);
    let mut failures = Vec::new();
    for reader in readers {
        let (ok, failed) = reader.await.unwrap();
        assert!(ok > 0);
        failures.extend(failed);
    }
    assert!(failures.is_empty(), "reads failed: {failures:?}");

    // Fifty pools with replicas created and dropped: their probers and
    // replica sessions go away.
    let standby = raw(replica).await;
    let name = format!("{}.replica%", config.application_name);
    let before = sessions(&standby, &name).await;
    for _ in 0..50 {
        let extra = Database::connect(config.clone()).await.unwrap();
        let _ = PgUserRepository::new(extra.reads(Consistency::AnyReplica))
            .get(seed.id)
            .await
            .unwrap();
        drop(extra);
    }
    let started = Instant::now();
    let mut now = sessions(&standby, &name).await;
    while now > before && started.elapsed() < Duration::from_secs(15) {
        tokio::time::sleep(Duration::from_millis(20)).await;
        now = sessions(&standby, &name).await;
    }
    let back = now <= before;
    assert!(
        back,
        "replica sessions: {before} before, {now} after dropping 50 pools"
    );

    // close() closes the replica pools too.
    let closing = Database::connect(config.clone()).await.unwrap();
    let _ = PgUserRepository::new(closing.reads(Consistency::AnyReplica))
        .get(seed.id)
        .await
        .unwrap();
    assert!(closing.close(Duration::from_secs(5)).await);
    assert!(
        closing.nodes().iter().all(|n| n.pool.size == 0),
        "{:?}",
        closing.nodes()
    );

    // Promotion: once the prober has noticed, no read goes there.
    replica.promote().await.unwrap();
    assert!(
        until(Duration::from_secs(10), || async {
            db.nodes()[1].state == NodeState::Promoted
        })
        .await
    );
    let served = db.nodes()[1].reads;
    for _ in 0..50 {
        assert!(
            !db.reads(Consistency::AnyReplica)
                .read_in_recovery()
                .await
                .unwrap()
        );
        PgUserRepository::new(db.read_your_writes(None))
            .get(seed.id)
            .await
            .unwrap();
    }
    assert_eq!(
        db.nodes()[1].reads,
        served,
        "reads served by a promoted replica"
    );

    assert!(
        unseen.is_empty(),
        "writes given up on that committed, then missed by the same handle's read: {unseen:?}"
    );
}
