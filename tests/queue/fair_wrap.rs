//! Regression (review of V15): a fair claim whose rotation starts past the
//! highest user with pending work wraps around before its round has a
//! first user. It counted that wrap for the round, so the round ended at
//! the second user it met: the first user's share went to the second
//! (1 and 5 of a batch of 6 over three users), and when the first took
//! nothing (paused) the claim returned nothing at all.

use std::collections::BTreeMap;

use uuid::Uuid;
use voidrunner_db::{
    ClaimOrder, ConcurrencyLimit, ConcurrencyLimits, ExecutionQueue, NewTask, NewUser,
    PasswordHash, TaskRepository, UserRepository,
};

use crate::{Fixture, LEASE, fixture};

/// Three users in id order, `per_user` executions queued for each.
async fn three_users(f: &Fixture, per_user: usize) -> Vec<Uuid> {
    let mut users = vec![f.user.id];
    for email in ["second@example.com", "third@example.com"] {
        let user = f
            .users
            .create(NewUser::new(email, PasswordHash::new("h")))
            .await
            .unwrap();
        users.push(user.id);
    }
    for user in &users {
        let tasks = (0..per_user)
            .map(|i| NewTask::new(*user, format!("t{i}"), "print(1)"))
            .collect();
        let created = f.tasks.create_many(tasks).await.unwrap();
        f.queue
            .enqueue_many(created.iter().map(|t| t.id).collect(), None)
            .await
            .unwrap();
    }
    let mut ids: Vec<Uuid> = users.iter().map(|u| u.as_uuid()).collect();
    ids.sort();
    ids
}

/// How many of a fair claim of `n`, after `after`, went to each user.
async fn shares(f: &Fixture, n: i64, after: Uuid) -> BTreeMap<Uuid, usize> {
    let rows =
        f.db.raw_client()
            .await
            .unwrap()
            .query(
                "SELECT user_id FROM voidrunner_claim_fair('w', $1, 30, $2)",
                &[&n, &after],
            )
            .await
            .unwrap();
    let mut shares = BTreeMap::new();
    for row in rows {
        *shares.entry(row.get::<_, Uuid>(0)).or_insert(0) += 1;
    }
    shares
}

#[tokio::test]
async fn a_claim_that_starts_past_the_highest_user_shares_equally() {
    let f = fixture().await;
    let users = three_users(&f, 5).await;
    let got = shares(&f, 6, users[2]).await;
    let expected: BTreeMap<Uuid, usize> = users.iter().map(|u| (*u, 2)).collect();
    assert_eq!(got, expected);
}

#[tokio::test]
async fn a_paused_lowest_user_does_not_stop_a_claim_that_wrapped() {
    let f = fixture().await;
    let users = three_users(&f, 2).await;
    f.db.db()
        .concurrency_limits()
        .set_user_limit(users[0].into(), ConcurrencyLimit::Max(0))
        .await
        .unwrap();
    let got = shares(&f, 4, users[2]).await;
    assert_eq!(got, BTreeMap::from([(users[1], 2), (users[2], 2)]));
    // Through the crate: its rotation starts after the last user it served.
    // The highest served last, the next claim wraps around the same way.
    let fair = f.queue.clone().with_claim_order(ClaimOrder::Fair);
    for (user, name) in [(users[2], "last"), (users[1], "next")] {
        let task = f
            .tasks
            .create(NewTask::new(user.into(), name, "print(1)"))
            .await
            .unwrap();
        f.queue.enqueue(task.id, None).await.unwrap();
        let claimed = fair.claim("w2", 10, LEASE).await.unwrap();
        assert_eq!(claimed.len(), 1, "{name}: {claimed:?}");
        assert_eq!(claimed[0].execution.task_id, task.id, "{name}");
    }
}
