//! Fair claims with concurrency caps under races (#22): sixteen claimers
//! that complete, fail and abandon what they claim, a rescuer and a
//! canceller, all at once. The caps are checked three ways: by a sampler
//! counting running executions in the database throughout, by a deferred
//! constraint trigger of the test database that refuses any commit leaving
//! a capped user over their cap, and by the claimers themselves (a claim
//! failing on that trigger fails the test). Every execution still ends
//! exactly once.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use uuid::Uuid;
use voidrunner_db::{
    Completion, ConcurrencyLimit, ConcurrencyLimits, ExecutionQueue, Outcome, RescuePolicy, UserId,
};

use crate::fairness::{DEADLINE, fair, install_claim_log, submit, user};
use crate::{Fixture, LEASE, fixture};

/// A deferred constraint trigger of the test database: at the commit of any
/// transaction that set an execution running, its user's running
/// executions are counted and the commit refused if they exceed the user's
/// cap (override, else default), as `voidrunner_claim_fair` reads it.
async fn install_cap_check(f: &Fixture) {
    f.db.raw_client()
        .await
        .unwrap()
        .batch_execute(
            "CREATE FUNCTION check_cap() RETURNS trigger LANGUAGE plpgsql AS $$ \
             DECLARE cap integer; n bigint; \
             BEGIN \
               SELECT l.max_running INTO cap FROM user_concurrency_limits l \
               WHERE l.user_id = NEW.user_id; \
               IF NOT FOUND THEN \
                 SELECT s.default_max_running INTO cap FROM queue_settings s; \
               END IF; \
               IF cap IS NOT NULL THEN \
                 SELECT count(*) INTO n FROM task_executions e \
                 WHERE e.user_id = NEW.user_id AND e.status = 'running'; \
                 IF n > cap THEN \
                   RAISE EXCEPTION 'cap check: user % has % running, cap %', \
                     NEW.user_id, n, cap; \
                 END IF; \
               END IF; \
               RETURN NULL; \
             END $$; \
             CREATE CONSTRAINT TRIGGER check_cap AFTER UPDATE ON task_executions \
               DEFERRABLE INITIALLY DEFERRED FOR EACH ROW \
               WHEN (NEW.status = 'running' AND OLD.status <> 'running') \
               EXECUTE FUNCTION check_cap();",
        )
        .await
        .unwrap();
}

/// The end log: a row per execution leaving pending or running for an end
/// state, and a row in `reopened` for any change of an ended execution's
/// status (which must never happen).
async fn install_end_log(f: &Fixture) {
    f.db.raw_client()
        .await
        .unwrap()
        .batch_execute(
            "CREATE TABLE end_log (execution_id uuid NOT NULL, status text NOT NULL); \
             CREATE TABLE reopened (execution_id uuid NOT NULL, was text, now text); \
             CREATE FUNCTION log_end() RETURNS trigger LANGUAGE plpgsql AS $$ \
             BEGIN \
               IF OLD.status IN ('pending', 'running') THEN \
                 INSERT INTO end_log VALUES (NEW.id, NEW.status::text); \
               ELSE \
                 INSERT INTO reopened VALUES (NEW.id, OLD.status::text, NEW.status::text); \
               END IF; \
               RETURN NULL; \
             END $$; \
             CREATE TRIGGER log_end AFTER UPDATE ON task_executions FOR EACH ROW \
               WHEN (OLD.status IS DISTINCT FROM NEW.status \
                     AND NEW.status NOT IN ('pending', 'running')) \
               EXECUTE FUNCTION log_end();",
        )
        .await
        .unwrap();
}

/// xorshift64: the races' choices, reproducible per worker.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// What the claimers saw.
#[derive(Default)]
struct Seen {
    /// Every execution each claim handed out.
    claimed: Vec<Uuid>,
    /// The executions whose completion (completed or failed) was accepted.
    ended: Vec<Uuid>,
}

/// The storm: 16 fair claimers taking 1–4 at a time; one claim in eight
/// abandons what it took with a 100 ms lease (a crashed worker), the
/// others complete or fail each execution. A rescuer times the abandoned
/// out (a retry queued up to `max_attempts`), a canceller cancels a running
/// or pending execution now and then, and a sampler counts every user's
/// running executions in the database, checking them against `caps`
/// (`None`: no cap). Runs until nothing is pending or running; returns
/// what the claimers saw and the largest running count sampled per user.
async fn storm(
    f: &Fixture,
    caps: &HashMap<Uuid, Option<i64>>,
    max_attempts: i32,
) -> (Seen, HashMap<Uuid, i64>) {
    let stop = Arc::new(AtomicBool::new(false));
    let claimers: Vec<_> = (0..16u64)
        .map(|w| {
            let queue = fair(f);
            let stop = Arc::clone(&stop);
            tokio::spawn(async move {
                let name = format!("claimer-{w}");
                let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (w + 1));
                let mut seen = Seen::default();
                while !stop.load(Ordering::Relaxed) {
                    let crash = rng.below(8) == 0;
                    let lease = if crash {
                        Duration::from_millis(100)
                    } else {
                        LEASE
                    };
                    let limit = 1 + rng.below(4) as u32;
                    let claimed = queue.claim(&name, limit, lease).await.unwrap();
                    if claimed.is_empty() {
                        // Everything left is capped, paused or held: let the
                        // others end theirs.
                        tokio::time::sleep(Duration::from_millis(2)).await;
                        continue;
                    }
                    seen.claimed
                        .extend(claimed.iter().map(|c| Uuid::from(c.execution.id)));
                    if crash {
                        continue;
                    }
                    let done: Vec<_> = claimed
                        .iter()
                        .map(|c| {
                            let outcome = if rng.below(4) == 0 {
                                Outcome::failed(1)
                            } else {
                                Outcome::completed(0)
                            };
                            Completion::new(c.execution.id, &name, outcome)
                        })
                        .collect();
                    let ids: Vec<Uuid> = done.iter().map(|c| c.execution_id.into()).collect();
                    for (id, result) in ids
                        .into_iter()
                        .zip(queue.complete_many(done).await.unwrap())
                    {
                        match result {
                            Ok(_) => seen.ended.push(id),
                            // The canceller got there first.
                            Err(voidrunner_db::Error::LeaseLost { .. }) => {}
                            Err(err) => panic!("completion of {id}: {err:?}"),
                        }
                    }
                }
                seen
            })
        })
        .collect();

    let rescuer = {
        let queue = fair(f);
        let stop = Arc::clone(&stop);
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let report = queue
                    .rescue_expired(RescuePolicy {
                        max_attempts,
                        batch_size: 50,
                        ..RescuePolicy::default()
                    })
                    .await
                    .unwrap();
                if report.timed_out.is_empty() {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        })
    };

    let canceller = {
        let queue = fair(f);
        let client = f.db.raw_client().await.unwrap();
        let stop = Arc::clone(&stop);
        tokio::spawn(async move {
            let mut cancelled = 0;
            let mut rng = Rng(0xdead_beef);
            while !stop.load(Ordering::Relaxed) && cancelled < 40 {
                let status = if rng.below(2) == 0 {
                    "running"
                } else {
                    "pending"
                };
                let row = client
                    .query_opt(
                        "SELECT id FROM task_executions WHERE status::text = $1 \
                         ORDER BY random() LIMIT 1",
                        &[&status],
                    )
                    .await
                    .unwrap();
                if let Some(row) = row {
                    let id: Uuid = row.get(0);
                    // It may have ended since: then there is nothing to cancel.
                    if queue.cancel(id.into()).await.is_ok() {
                        cancelled += 1;
                    }
                }
                tokio::time::sleep(Duration::from_millis(15)).await;
            }
            cancelled
        })
    };

    let sampler = {
        let client = f.db.raw_client().await.unwrap();
        let caps = caps.clone();
        let stop = Arc::clone(&stop);
        tokio::spawn(async move {
            let mut most: HashMap<Uuid, i64> = HashMap::new();
            while !stop.load(Ordering::Relaxed) {
                for row in client
                    .query(
                        "SELECT user_id, count(*) FROM task_executions \
                         WHERE status = 'running' GROUP BY user_id",
                        &[],
                    )
                    .await
                    .unwrap()
                {
                    let (u, n): (Uuid, i64) = (row.get(0), row.get(1));
                    if let Some(Some(cap)) = caps.get(&u) {
                        assert!(n <= *cap, "user {u}: {n} running, cap {cap}");
                    }
                    let m = most.entry(u).or_default();
                    *m = (*m).max(n);
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            most
        })
    };

    let client = f.db.raw_client().await.unwrap();
    let start = Instant::now();
    loop {
        let left: i64 = client
            .query_one(
                "SELECT count(*) FROM task_executions WHERE status IN ('pending', 'running')",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        // Claimers and the sampler run until told to stop: one that ended
        // failed (a claim the cap check refused, a sample over a cap).
        if left == 0 || claimers.iter().any(|c| c.is_finished()) || sampler.is_finished() {
            break;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "{left} executions still pending or running after {DEADLINE:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let mut seen = Seen::default();
    for c in claimers {
        let s = c.await.unwrap();
        seen.claimed.extend(s.claimed);
        seen.ended.extend(s.ended);
    }
    rescuer.await.unwrap();
    let cancelled = canceller.await.unwrap();
    assert!(cancelled > 0, "the canceller cancelled nothing");
    let most = sampler.await.unwrap();
    (seen, most)
}

/// Users with caps 1, 3 and 10 and one exempt from the default cap of 2,
/// 100 tasks each, under the storm: no sample and no commit ever had a
/// capped user over their cap, the caps were reached, and freed slots were
/// claimed again (far more claims per user than their cap).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn caps_hold_under_sixteen_fair_claimers() {
    let f = fixture().await;
    let limits = f.db.db().concurrency_limits();
    limits.set_default_limit(Some(2)).await.unwrap();
    let mut caps = HashMap::new();
    let mut users = Vec::new();
    for (name, cap) in [
        ("cap1", ConcurrencyLimit::Max(1)),
        ("cap3", ConcurrencyLimit::Max(3)),
        ("cap10", ConcurrencyLimit::Max(10)),
        ("uncapped", ConcurrencyLimit::Unlimited),
    ] {
        let u = user(&f, name).await;
        limits.set_user_limit(u, cap).await.unwrap();
        submit(&f, u, 100).await;
        caps.insert(
            Uuid::from(u),
            match cap {
                ConcurrencyLimit::Max(n) => Some(i64::from(n)),
                _ => None,
            },
        );
        users.push((u, cap));
    }
    install_cap_check(&f).await;
    install_claim_log(&f).await;
    let (_, most) = storm(&f, &caps, 2).await;

    let cap3 = Uuid::from(users[1].0);
    assert_eq!(most.get(&cap3), Some(&3), "the cap of 3 was reached");
    for (u, cap) in &users {
        let ConcurrencyLimit::Max(cap) = cap else {
            continue;
        };
        let claims: i64 = f
            .scalar("SELECT count(*) FROM claim_log WHERE user_id = $1", &[u])
            .await;
        assert!(
            claims > i64::from(*cap) * 3,
            "user with cap {cap}: {claims} claims, slots not reused"
        );
    }
    // The uncapped user ran more at once than any cap allows the others.
    let uncapped = Uuid::from(users[3].0);
    assert!(most.get(&uncapped).copied().unwrap_or(0) > 1);
}

/// Fair claims with caps, a rescuer retrying expired work and a canceller:
/// every execution was claimed at most once, ended exactly once, and never
/// changed after it ended; every task ended, with its last execution's
/// status; every completion a worker was told succeeded is in the
/// database as that worker's, and no execution was lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fair_claims_with_caps_end_every_execution_exactly_once() {
    let f = fixture().await;
    let limits = f.db.db().concurrency_limits();
    limits.set_default_limit(Some(2)).await.unwrap();
    let mut caps = HashMap::new();
    // Own caps, one exempt from the default, two under the default.
    for (name, limit, cap) in [
        ("once1", ConcurrencyLimit::Max(1), Some(1)),
        ("once4", ConcurrencyLimit::Max(4), Some(4)),
        ("exempt", ConcurrencyLimit::Unlimited, None),
        ("plain1", ConcurrencyLimit::Default, Some(2)),
        ("plain2", ConcurrencyLimit::Default, Some(2)),
    ] {
        let u: UserId = user(&f, name).await;
        limits.set_user_limit(u, limit).await.unwrap();
        submit(&f, u, 60).await;
        caps.insert(Uuid::from(u), cap);
    }
    install_cap_check(&f).await;
    install_claim_log(&f).await;
    install_end_log(&f).await;
    let (seen, _) = storm(&f, &caps, 3).await;

    let client = f.db.raw_client().await.unwrap();
    let one = |sql: &'static str| {
        let client = &client;
        async move { client.query_one(sql, &[]).await.unwrap().get::<_, i64>(0) }
    };
    // Claimed at most once, by one claim: the server's log and the workers'.
    assert_eq!(
        one("SELECT count(*) - count(DISTINCT execution_id) FROM claim_log").await,
        0
    );
    let claimed: HashSet<Uuid> = seen.claimed.iter().copied().collect();
    assert_eq!(
        claimed.len(),
        seen.claimed.len(),
        "a claim handed one out twice"
    );
    let logged: HashSet<Uuid> = client
        .query("SELECT execution_id FROM claim_log", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(claimed, logged);
    // Ended exactly once, never reopened; nothing left pending or running.
    assert_eq!(one("SELECT count(*) FROM reopened").await, 0);
    assert_eq!(
        one("SELECT count(*) FROM task_executions e \
             WHERE (SELECT count(*) FROM end_log l WHERE l.execution_id = e.id) <> 1")
        .await,
        0
    );
    assert_eq!(
        one("SELECT count(*) FROM task_executions WHERE status IN ('pending', 'running')").await,
        0
    );
    // Each accepted completion is the worker's, once; completed and failed
    // executions are exactly those.
    let ended: HashSet<Uuid> = seen.ended.iter().copied().collect();
    assert_eq!(ended.len(), seen.ended.len());
    let finished: HashSet<Uuid> = client
        .query(
            "SELECT id FROM task_executions WHERE status IN ('completed', 'failed')",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(ended, finished);
    // No task lost: each ended with its last execution's status, and the
    // retries are the rescued ones below the attempt limit.
    assert_eq!(
        one(
            "SELECT count(*) FROM tasks t WHERE t.status::text IS DISTINCT FROM ( \
               SELECT e.status::text FROM task_executions e WHERE e.task_id = t.id \
               ORDER BY e.created_at DESC, e.attempt DESC LIMIT 1)"
        )
        .await,
        0
    );
    assert_eq!(
        one("SELECT count(*) FROM tasks t \
             WHERE NOT EXISTS (SELECT 1 FROM task_executions e WHERE e.task_id = t.id)")
        .await,
        0
    );
    assert!(one("SELECT count(*) FROM task_executions WHERE status = 'timeout'").await > 0);
}
