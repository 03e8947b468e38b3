//! The fair claim's rotation where it wraps around the highest user id.

use std::collections::BTreeMap;

use voidrunner_db::{
    ClaimOrder, ExecutionQueue, NewTask, NewUser, PasswordHash, TaskRepository, UserId,
    UserRepository,
};

use crate::{Fixture, LEASE, fixture};

/// `users` users, each with `per_user` pending executions (all priority 0).
async fn users_with_work(f: &Fixture, users: usize, per_user: usize) -> Vec<UserId> {
    let mut ids = Vec::with_capacity(users);
    for u in 0..users {
        let user = f
            .users
            .create(NewUser::new(
                format!("rotation-{u}@example.com"),
                PasswordHash::new("h"),
            ))
            .await
            .unwrap();
        let tasks = f
            .tasks
            .create_many(
                (0..per_user)
                    .map(|i| NewTask::new(user.id, format!("t{i}"), "print(1)"))
                    .collect(),
            )
            .await
            .unwrap();
        f.queue
            .enqueue_many(tasks.iter().map(|t| t.id).collect(), None)
            .await
            .unwrap();
        ids.push(user.id);
    }
    ids
}

/// How many executions of each user are running, as the database says.
async fn running_by_user(f: &Fixture) -> BTreeMap<UserId, i64> {
    let client = f.db.raw_client().await.unwrap();
    client
        .query(
            "SELECT user_id, count(*) FROM task_executions WHERE status = 'running' \
             GROUP BY user_id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

/// Every claim of 10 among 5 users with work takes 2 of each, also the
/// claims that start past the highest user id (the rotation's position
/// after a claim that served the highest user last): a wrap before the
/// round's first user once ended the round after one user, and the next
/// round gave the second user the rest of the batch.
#[tokio::test]
async fn claims_that_start_past_the_highest_user_serve_every_user_alike() {
    let f = fixture().await;
    let users = users_with_work(&f, 5, 20).await;
    let queue = f.queue.clone().with_claim_order(ClaimOrder::Fair);
    for claim in 1..=5i64 {
        let claimed = queue.claim("rotation", 10, LEASE).await.unwrap();
        assert_eq!(claimed.len(), 10, "claim {claim}");
        let running = running_by_user(&f).await;
        for user in &users {
            assert_eq!(
                running.get(user).copied(),
                Some(2 * claim),
                "claim {claim}: {running:?}"
            );
        }
    }

    // The function itself, asked to start past every id.
    let client = f.db.raw_client().await.unwrap();
    let rows = client
        .query(
            "SELECT user_id, count(*) FROM voidrunner_claim_fair('raw', 10, 30, \
             'ffffffff-ffff-ffff-ffff-ffffffffffff') GROUP BY user_id",
            &[],
        )
        .await
        .unwrap();
    let counts: Vec<i64> = rows.iter().map(|r| r.get(1)).collect();
    assert_eq!(counts, vec![2; 5], "{counts:?}");
}
