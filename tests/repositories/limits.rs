//! `ConcurrencyLimits` over `PgConcurrencyLimits` (V15): the default and
//! each user's override round-trip and are what a fair claim keeps;
//! refusals write nothing; rows another writer left are refused or read
//! safely, never a panic nor a claim that fails for everyone.

use voidrunner_db::{
    ClaimOrder, ConcurrencyLimit, ConcurrencyLimits, ExecutionQueue, PgConcurrencyLimits,
    PgExecutionQueue, TaskRepository, User, UserId, UserRepository,
};

use crate::{LEASE, Repos, repos, repos_with_pool};

impl Repos {
    fn limits(&self) -> PgConcurrencyLimits {
        self.db.db().concurrency_limits()
    }

    fn fair(&self) -> PgExecutionQueue {
        PgExecutionQueue::new(self.db.db().clone()).with_claim_order(ClaimOrder::Fair)
    }

    /// `n` tasks of `user`, each queued.
    async fn pending(&self, user: &User, n: usize) {
        for i in 0..n {
            let task = self.task(user, &format!("t{i}")).await;
            self.queue.enqueue(task.id, None).await.unwrap();
        }
    }

    /// The users of what a fair claim of up to `limit` takes, in claim
    /// order.
    async fn claim_fair(&self, limit: u32) -> Vec<UserId> {
        let claimed = self
            .fair()
            .claim("fair", limit, LEASE)
            .await
            .expect("fair claim");
        let mut users = Vec::new();
        for c in claimed {
            users.push(self.tasks.get(c.execution.task_id).await.unwrap().user_id);
        }
        users
    }

    /// The stored default (`None` when the settings' row is gone too) and
    /// `user`'s stored override, read with SQL.
    async fn stored(&self, user: UserId) -> (Option<Option<i32>>, Option<Option<i32>>) {
        let client = self.db.raw_client().await.unwrap();
        let default = client
            .query_opt("SELECT default_max_running FROM queue_settings", &[])
            .await
            .unwrap()
            .map(|r| r.get(0));
        let own = client
            .query_opt(
                "SELECT max_running FROM user_concurrency_limits WHERE user_id = $1",
                &[&user],
            )
            .await
            .unwrap()
            .map(|r| r.get(0));
        (default, own)
    }
}

#[tokio::test]
async fn the_default_and_overrides_round_trip_and_bound_the_fair_claim() {
    let r = repos().await;
    let limits = r.limits();
    assert_eq!(
        limits.default_limit().await.unwrap(),
        None,
        "a fresh database"
    );
    let user = r.user("capped@example.com").await;
    let fresh = limits.user_limit(user.id).await.unwrap();
    assert_eq!(
        (fresh.user_id, fresh.limit, fresh.effective, fresh.running),
        (user.id, ConcurrencyLimit::Default, None, 0)
    );

    limits.set_default_limit(Some(3)).await.unwrap();
    assert_eq!(limits.default_limit().await.unwrap(), Some(3));
    assert_eq!(r.stored(user.id).await, (Some(Some(3)), None));
    r.pending(&user, 6).await;

    // An override of 1: one claimed, however many asked for.
    limits
        .set_user_limit(user.id, ConcurrencyLimit::Max(1))
        .await
        .unwrap();
    assert_eq!(r.stored(user.id).await, (Some(Some(3)), Some(Some(1))));
    assert_eq!(r.claim_fair(10).await, [user.id]);
    let one = limits.user_limit(user.id).await.unwrap();
    assert_eq!(
        (one.limit, one.effective, one.running),
        (ConcurrencyLimit::Max(1), Some(1), 1)
    );
    assert!(r.claim_fair(10).await.is_empty(), "at the cap");

    // Back to the default (3): two more.
    limits
        .set_user_limit(user.id, ConcurrencyLimit::Default)
        .await
        .unwrap();
    assert_eq!(r.stored(user.id).await, (Some(Some(3)), None));
    assert_eq!(r.claim_fair(10).await, [user.id, user.id]);
    let default = limits.user_limit(user.id).await.unwrap();
    assert_eq!(
        (default.limit, default.effective, default.running),
        (ConcurrencyLimit::Default, Some(3), 3)
    );

    // Unlimited, whatever the default: the rest.
    limits
        .set_user_limit(user.id, ConcurrencyLimit::Unlimited)
        .await
        .unwrap();
    assert_eq!(r.stored(user.id).await, (Some(Some(3)), Some(None)));
    assert_eq!(r.claim_fair(10).await.len(), 3);
    let unlimited = limits.user_limit(user.id).await.unwrap();
    assert_eq!(
        (unlimited.limit, unlimited.effective, unlimited.running),
        (ConcurrencyLimit::Unlimited, None, 6)
    );

    // A cap of 0, and the highest one stored; the default removed.
    for cap in [0, ConcurrencyLimit::MAX] {
        limits
            .set_user_limit(user.id, ConcurrencyLimit::Max(cap))
            .await
            .unwrap();
        let got = limits.user_limit(user.id).await.unwrap();
        assert_eq!(
            (got.limit, got.effective),
            (ConcurrencyLimit::Max(cap), Some(cap))
        );
    }
    limits.set_default_limit(None).await.unwrap();
    assert_eq!(limits.default_limit().await.unwrap(), None);
    assert_eq!(r.stored(user.id).await.0, Some(None));
}

#[tokio::test]
async fn a_missing_user_is_not_found_and_nothing_is_written() {
    let r = repos().await;
    let limits = r.limits();
    let missing = UserId::new();
    let err = limits.user_limit(missing).await.unwrap_err();
    assert!(err.is_not_found(), "{err:?}");
    for limit in [
        ConcurrencyLimit::Default,
        ConcurrencyLimit::Unlimited,
        ConcurrencyLimit::Max(2),
    ] {
        let err = limits.set_user_limit(missing, limit).await.unwrap_err();
        assert!(err.is_not_found(), "{limit:?}: {err:?}");
    }
    assert_eq!(r.count_rows("user_concurrency_limits").await, 0);
}

#[tokio::test]
async fn a_cap_past_the_maximum_is_refused_and_changes_nothing() {
    let r = repos().await;
    let limits = r.limits();
    let user = r.user("bounded@example.com").await;
    limits.set_default_limit(Some(5)).await.unwrap();
    limits
        .set_user_limit(user.id, ConcurrencyLimit::Max(7))
        .await
        .unwrap();
    let err = limits
        .set_user_limit(user.id, ConcurrencyLimit::Max(ConcurrencyLimit::MAX + 1))
        .await
        .unwrap_err();
    assert!(err.is_validation(), "{err:?}");
    for cap in [ConcurrencyLimit::MAX + 1, u32::MAX] {
        let err = limits.set_default_limit(Some(cap)).await.unwrap_err();
        assert!(err.is_validation(), "{cap}: {err:?}");
    }
    assert_eq!(r.stored(user.id).await, (Some(Some(5)), Some(Some(7))));
}

#[tokio::test]
async fn a_deleted_users_override_goes_with_them() {
    let r = repos().await;
    let limits = r.limits();
    let gone = r.user("gone@example.com").await;
    let kept = r.user("kept@example.com").await;
    for user in [&gone, &kept] {
        limits
            .set_user_limit(user.id, ConcurrencyLimit::Max(2))
            .await
            .unwrap();
    }
    r.users.delete(gone.id).await.unwrap();
    assert_eq!(r.stored(gone.id).await.1, None);
    assert_eq!(r.stored(kept.id).await.1, Some(Some(2)));
    assert!(limits.user_limit(gone.id).await.unwrap_err().is_not_found());
}

/// The settings' row deleted by another writer: no default, and setting
/// one makes the row again.
#[tokio::test]
async fn a_deleted_settings_row_is_no_default_until_set_again() {
    let r = repos().await;
    let limits = r.limits();
    let user = r.user("settings@example.com").await;
    limits.set_default_limit(Some(2)).await.unwrap();
    assert_eq!(r.count_rows("queue_settings").await, 1);
    r.db.raw_client()
        .await
        .unwrap()
        .batch_execute("DELETE FROM queue_settings")
        .await
        .unwrap();
    assert_eq!(limits.default_limit().await.unwrap(), None);
    assert_eq!(limits.user_limit(user.id).await.unwrap().effective, None);
    // No default cap for the fair claim either.
    r.pending(&user, 3).await;
    assert_eq!(r.claim_fair(10).await.len(), 3);
    limits.set_default_limit(Some(4)).await.unwrap();
    assert_eq!(r.stored(user.id).await.0, Some(Some(4)));
    assert_eq!(limits.default_limit().await.unwrap(), Some(4));
}

/// A negative cap, written by another writer after dropping the CHECK:
/// the repository refuses to read it (`Decode`), and the fair claim reads
/// it as 0 (the user paused) instead of failing every claim on `LIMIT`.
#[tokio::test]
async fn a_negative_cap_is_a_decode_error_and_pauses_the_user() {
    let r = repos().await;
    let limits = r.limits();
    let odd = r.user("negative@example.com").await;
    let other = r.user("other@example.com").await;
    limits
        .set_user_limit(odd.id, ConcurrencyLimit::Max(1))
        .await
        .unwrap();
    r.pending(&odd, 2).await;
    r.pending(&other, 2).await;
    r.db.raw_client()
        .await
        .unwrap()
        .batch_execute(
            "ALTER TABLE user_concurrency_limits \
               DROP CONSTRAINT user_concurrency_limits_max_running_check; \
             UPDATE user_concurrency_limits SET max_running = -1;",
        )
        .await
        .unwrap();
    let err = limits.user_limit(odd.id).await.unwrap_err();
    assert!(err.is_decode(), "{err:?}");
    assert_eq!(r.claim_fair(10).await, [other.id, other.id]);
    assert!(r.claim_fair(10).await.is_empty());

    // The default likewise, for the users without an override.
    r.pending(&other, 1).await;
    r.db.raw_client()
        .await
        .unwrap()
        .batch_execute(
            "ALTER TABLE queue_settings DROP CONSTRAINT queue_settings_default_max_running_check; \
             UPDATE queue_settings SET default_max_running = -3;",
        )
        .await
        .unwrap();
    let err = limits.default_limit().await.unwrap_err();
    assert!(err.is_decode(), "{err:?}");
    let err = limits.user_limit(other.id).await.unwrap_err();
    assert!(err.is_decode(), "{err:?}");
    assert!(
        r.claim_fair(10).await.is_empty(),
        "a default below 0 pauses"
    );
    limits
        .set_user_limit(other.id, ConcurrencyLimit::Unlimited)
        .await
        .unwrap();
    assert_eq!(r.claim_fair(10).await, [other.id]);
}

/// A cap set while the user is deleted: `Ok` (written before the delete,
/// then gone with the user) or `NotFound`, never the foreign key's raw
/// error, and no override outlives its user.
#[tokio::test]
async fn setting_a_cap_while_the_user_is_deleted_is_ok_or_not_found() {
    let r = repos_with_pool(4).await;
    let limits = r.limits();
    for i in 0..30 {
        let user = r.user(&format!("racer{i}@example.com")).await;
        let (set, deleted) = tokio::join!(
            limits.set_user_limit(user.id, ConcurrencyLimit::Max(3)),
            r.users.delete(user.id)
        );
        deleted.unwrap();
        if let Err(e) = set {
            assert!(e.is_not_found(), "race {i}: {e:?}");
        }
        assert_eq!(r.stored(user.id).await.1, None, "race {i}");
    }
}
