//! A PgBouncer in transaction mode in front of each node: the token check
//! and the read it guards go out as separate statements that may reach
//! different server connections of the replica's pooler, which stays
//! correct because they are all on the one replica.

use voidrunner_db::testing::PgBouncer;
use voidrunner_db::{
    Consistency, Database, NewUser, PasswordHash, PgUserRepository, PoolerMode, UserRepository,
};

use crate::harness::{Cluster, all_up, pause_replay, raw, reads_of, resume_replay};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_and_tokens_work_through_a_pooler_in_front_of_each_node() {
    let cluster = Cluster::start(1).await;
    let primary_bouncer = PgBouncer::start(&cluster.primary.config()).await.unwrap();
    let replica_bouncer = PgBouncer::start(&cluster.replicas[0].config())
        .await
        .unwrap();
    let mut config = primary_bouncer.route(&cluster.config());
    config.clear_replicas();
    config
        .add_replica(&format!(
            "postgres://postgres@127.0.0.1:{}/postgres",
            replica_bouncer.port()
        ))
        .unwrap();
    assert_eq!(config.pooler, PoolerMode::Transaction);
    let db = Database::connect(config).await.unwrap();
    all_up(&db).await;
    let any = db.reads(Consistency::AnyReplica);
    assert!(any.read_in_recovery().await.unwrap());
    assert!(!db.read_in_recovery().await.unwrap());

    // Read-your-writes through both poolers: never stale.
    let mut stale = 0;
    for i in 0..200 {
        let request = db.read_your_writes(None);
        let users = PgUserRepository::new(request.clone());
        let user = users
            .create(NewUser::new(
                format!("pooled{i}@example.com"),
                PasswordHash::new("h"),
            ))
            .await
            .unwrap();
        match users.get(user.id).await {
            Ok(found) => assert_eq!(found, user),
            Err(err) if err.is_not_found() => stale += 1,
            Err(err) => panic!("{err}"),
        }
        assert!(request.token().is_some());
    }
    assert_eq!(stale, 0);
    assert!(reads_of(&db, 1) > 0, "{:?}", db.nodes());

    // With replay paused, a fresh row is missed by a plain replica read
    // (so those reads did reach the replica) and found with a token.
    let session = raw(&cluster.replicas[0]).await;
    pause_replay(&session).await;
    let request = db.read_your_writes(None);
    let user = PgUserRepository::new(request.clone())
        .create(NewUser::new("paused@example.com", PasswordHash::new("h")))
        .await
        .unwrap();
    let missed = PgUserRepository::new(any.clone())
        .get(user.id)
        .await
        .unwrap_err();
    assert!(missed.is_not_found(), "{missed}");
    assert_eq!(
        PgUserRepository::new(request).get(user.id).await.unwrap(),
        user
    );
    resume_replay(&session).await;
}
