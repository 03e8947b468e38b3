use voidrunner_db::{Consistency, NewUser, PasswordHash, UserRepository};

use crate::harness::{Cluster, all_up};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_go_to_the_replica_and_tokens_see_writes() {
    let cluster = Cluster::start(1).await;
    let db = voidrunner_db::Database::connect(cluster.config())
        .await
        .unwrap();
    all_up(&db).await;
    assert!(!db.read_in_recovery().await.unwrap());
    assert!(
        db.reads(Consistency::AnyReplica)
            .read_in_recovery()
            .await
            .unwrap()
    );
    let request = db.read_your_writes(None);
    for i in 0..200 {
        let user = voidrunner_db::PgUserRepository::new(request.clone())
            .create(NewUser::new(
                format!("u{i}@example.com"),
                PasswordHash::new("h"),
            ))
            .await
            .unwrap();
        let found = voidrunner_db::PgUserRepository::new(request.clone())
            .get(user.id)
            .await
            .unwrap();
        assert_eq!(found.id, user.id);
    }
    println!("{:#?} token {:?}", db.nodes(), request.token());
    assert!(request.token().is_some());
}
