//! The fair claim (#22, migration V15) as its users see it: a noisy
//! neighbour's backlog does not hold up everyone else (and under the FIFO
//! claim it does), claims rotate between users, and the concurrency caps
//! hold across expired leases, rescue, cancel, cap changes and isolation
//! levels. The races of fair claims with caps are in `fairness_races.rs`.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use uuid::Uuid;
use voidrunner_db::{
    ClaimOrder, ClaimedExecution, Completion, ConcurrencyLimit, ConcurrencyLimits, ExecutionQueue,
    IsolationLevel, NewTask, NewUser, Outcome, PasswordHash, PgExecutionQueue, RescuePolicy,
    TaskExecution, TaskRepository, TransactionOptions, UserId, UserRepository,
};

use crate::{Fixture, LEASE, fixture};

/// Long enough for any condition here on a busy 2-core machine.
pub const DEADLINE: Duration = Duration::from_secs(120);

/// A queue handle of the test database claiming fairly. Handles of one
/// `Database` share the rotation.
pub fn fair(f: &Fixture) -> PgExecutionQueue {
    PgExecutionQueue::new(f.db.db().clone()).with_claim_order(ClaimOrder::Fair)
}

/// A new user.
pub async fn user(f: &Fixture, name: &str) -> UserId {
    f.users
        .create(NewUser::new(
            format!("{name}@example.com"),
            PasswordHash::new("h"),
        ))
        .await
        .unwrap()
        .id
}

/// `n` tasks of `user`, queued with one `enqueue_many`.
pub async fn submit(f: &Fixture, user: UserId, n: usize) -> Vec<TaskExecution> {
    let tasks = (0..n)
        .map(|i| NewTask::new(user, format!("u{i}"), "print(1)"))
        .collect();
    let created = f.tasks.create_many(tasks).await.unwrap();
    f.queue
        .enqueue_many(created.iter().map(|t| t.id).collect(), None)
        .await
        .unwrap()
}

/// `n` pending executions of `user` written with SQL: the noisy
/// neighbour's backlog, in seconds rather than the minutes the crate's
/// batches would take for 100,000.
async fn backlog(f: &Fixture, user: UserId, n: i32) {
    // One transaction without the statement timeout (a busy machine may
    // take longer than a request's timeout) and without event
    // notifications, which nobody listens to here. Rows in id order (names
    // too): each of the tasks' many indexes grows at its end rather than
    // splitting pages all over, which halves the time.
    f.db.raw_client()
        .await
        .unwrap()
        .batch_execute(&format!(
            "BEGIN; \
             SET LOCAL statement_timeout = 0; \
             SET LOCAL voidrunner.notify_events = off; \
             INSERT INTO tasks (id, user_id, name, script_content) \
             SELECT id, '{user}', 'a-' || lpad((row_number() OVER (ORDER BY id))::text, 6, '0'), \
                    'print(1)' \
             FROM (SELECT gen_random_uuid() AS id FROM generate_series(1, {n})) g ORDER BY id; \
             INSERT INTO task_executions (id, task_id, user_id, priority, run_after) \
             SELECT id, id, user_id, 0, now() - interval '1 minute' FROM tasks \
             WHERE user_id = '{user}' ORDER BY id; \
             COMMIT; \
             ANALYZE tasks; ANALYZE task_executions;"
        ))
        .await
        .unwrap();
}

/// The claim log, in the test database: a row per execution going from
/// pending to running, numbered in the order the claims wrote them, by a
/// trigger of the server (what every worker's claim did, whoever made it).
pub async fn install_claim_log(f: &Fixture) {
    f.db.raw_client()
        .await
        .unwrap()
        .batch_execute(
            "CREATE SEQUENCE claim_seq; \
             CREATE TABLE claim_log ( \
               seq bigint PRIMARY KEY DEFAULT nextval('claim_seq'), \
               execution_id uuid NOT NULL, user_id uuid NOT NULL, worker_id text, \
               attempt integer, at timestamptz NOT NULL DEFAULT clock_timestamp()); \
             CREATE FUNCTION log_claim() RETURNS trigger LANGUAGE plpgsql AS $$ \
             BEGIN \
               INSERT INTO claim_log (execution_id, user_id, worker_id, attempt) \
               VALUES (NEW.id, NEW.user_id, NEW.worker_id, NEW.attempt); \
               RETURN NULL; \
             END $$; \
             CREATE TRIGGER log_claim AFTER UPDATE ON task_executions FOR EACH ROW \
               WHEN (OLD.status = 'pending' AND NEW.status = 'running') \
               EXECUTE FUNCTION log_claim();",
        )
        .await
        .unwrap();
}

/// The owners of `claimed`, in the claim's order.
pub async fn owners(f: &Fixture, claimed: &[ClaimedExecution]) -> Vec<Uuid> {
    let ids: Vec<Uuid> = claimed.iter().map(|c| c.execution.id.into()).collect();
    f.db.raw_client()
        .await
        .unwrap()
        .query(
            "SELECT e.user_id FROM unnest($1::uuid[]) WITH ORDINALITY AS c(id, ord) \
             JOIN task_executions e ON e.id = c.id ORDER BY c.ord",
            &[&ids],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// How many of `user`'s executions run, read from the database.
pub async fn running(f: &Fixture, user: UserId) -> i64 {
    f.scalar(
        "SELECT count(*) FROM task_executions WHERE user_id = $1 AND status = 'running'",
        &[&user],
    )
    .await
}

/// Polls `sql` (one bigint) until it reaches `at_least`, failing after
/// [`DEADLINE`].
pub async fn until_count(f: &Fixture, sql: &str, at_least: i64) -> i64 {
    let client = f.db.raw_client().await.unwrap();
    let start = Instant::now();
    loop {
        let n: i64 = client.query_one(sql, &[]).await.unwrap().get(0);
        if n >= at_least {
            return n;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "still {n} < {at_least} after {DEADLINE:?}: {sql}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Eight workers claiming `limit` at a time in `order` and completing what
/// they claim, until `stop`.
fn workers(
    f: &Fixture,
    order: ClaimOrder,
    limit: u32,
    stop: &Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..8)
        .map(|w| {
            let queue = PgExecutionQueue::new(f.db.db().clone()).with_claim_order(order);
            let stop = Arc::clone(stop);
            tokio::spawn(async move {
                let name = format!("w{w}");
                while !stop.load(Ordering::Relaxed) {
                    let claimed = queue.claim(&name, limit, LEASE).await.unwrap();
                    let done = claimed
                        .iter()
                        .map(|c| Completion::new(c.execution.id, &name, Outcome::completed(0)))
                        .collect::<Vec<_>>();
                    if !done.is_empty() {
                        for r in queue.complete_many(done).await.unwrap() {
                            r.unwrap();
                        }
                    }
                }
            })
        })
        .collect()
}

async fn stop_workers(stop: &AtomicBool, workers: Vec<tokio::task::JoinHandle<()>>) {
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.unwrap();
    }
}

/// Eight workers claiming in `order`, `limit` at a time, from A's backlog;
/// once they took 50 more, four new users B–E submit 10 tasks each through
/// `enqueue_many`. Returns the workers and, for each of B–E's executions,
/// the claim log's last number right after its enqueue returned (A's
/// claims numbered after it came after the submission).
async fn noisy_phase(
    f: &Fixture,
    order: ClaimOrder,
    limit: u32,
    phase: &str,
) -> (
    Arc<AtomicBool>,
    Vec<tokio::task::JoinHandle<()>>,
    HashMap<Uuid, i64>,
) {
    let mut others = Vec::new();
    for name in ["b", "c", "d", "e"] {
        others.push(user(f, &format!("{name}-{phase}")).await);
    }
    let client = f.db.raw_client().await.unwrap();
    let claims_so_far: i64 = client
        .query_one("SELECT count(*) FROM claim_log", &[])
        .await
        .unwrap()
        .get(0);
    let stop = Arc::new(AtomicBool::new(false));
    let running = workers(f, order, limit, &stop);
    until_count(f, "SELECT count(*) FROM claim_log", claims_so_far + 50).await;
    let mut submitted = HashMap::new();
    for u in others {
        let queued = submit(f, u, 10).await;
        let mark: i64 = client
            .query_one("SELECT last_value FROM claim_seq", &[])
            .await
            .unwrap()
            .get(0);
        for execution in queued {
            submitted.insert(Uuid::from(execution.id), mark);
        }
    }
    (stop, running, submitted)
}

/// For each of B–E's executions, how many of A's executions were claimed
/// after its submission and before it; the largest.
async fn most_of_a_claimed_before(f: &Fixture, submitted: &HashMap<Uuid, i64>) -> i64 {
    let (ids, marks): (Vec<Uuid>, Vec<i64>) = submitted.iter().map(|(k, v)| (*k, *v)).unzip();
    f.scalar(
        "SELECT max(( \
           SELECT count(*) FROM claim_log a \
           WHERE a.user_id = $3 AND a.seq > s.mark AND a.seq < l.seq)) \
         FROM unnest($1::uuid[], $2::bigint[]) AS s(id, mark) \
         JOIN claim_log l ON l.execution_id = s.id",
        &[&ids, &marks, &f.user.id],
    )
    .await
}

/// How many of `ids` the claim log holds.
async fn claimed_of(f: &Fixture, submitted: &HashMap<Uuid, i64>) -> i64 {
    let ids: Vec<Uuid> = submitted.keys().copied().collect();
    f.scalar(
        "SELECT count(*) FROM claim_log WHERE execution_id = ANY($1)",
        &[&ids],
    )
    .await
}

/// A fair phase of the noisy neighbour, each worker claiming `limit` at a
/// time: every task of B–E is claimed before A's 100th claim after its
/// submission.
///
/// The bound the design guarantees: with 5 users with pending work, a fair
/// claim's first round takes one execution from each user before a second
/// from any, and its later rounds give each the same share, so a claim of
/// 10 takes 2 of each user's and a claim of 1 serves the next user of the
/// rotation. B–E's 10 tasks each are then claimed within 5 claims of 10
/// (A gets 2 in each: 10), or 10 turns of each user in the rotation of
/// claims of 1 (A gets one turn in each: 10). Eight concurrent claimers add
/// at most the 8 batches in flight when the work arrived, and claims that
/// read the rotation's position together serve the same user: up to 8 × 10
/// of A's claims for batches of 10, 8 per turn of A for batches of 1; under
/// 100 either way.
async fn fair_phase(f: &Fixture, limit: u32, phase: &str) -> i64 {
    let (stop, running, submitted) = noisy_phase(f, ClaimOrder::Fair, limit, phase).await;
    let ids: Vec<String> = submitted.keys().map(|id| format!("'{id}'")).collect();
    until_count(
        f,
        &format!(
            "SELECT count(*) FROM claim_log WHERE execution_id IN ({})",
            ids.join(", ")
        ),
        40,
    )
    .await;
    stop_workers(&stop, running).await;
    let worst = most_of_a_claimed_before(f, &submitted).await;
    assert!(
        worst < 100,
        "batches of {limit}: a task of B–E waited for {worst} of A's claims after its submission"
    );
    worst
}

/// The noisy neighbour: user A (the fixture's) has 100,000 pending
/// executions, then B–E submit 10 tasks each while eight workers claim and
/// complete. Fair claims of 10, then of 1, serve B–E within the bound of
/// [`fair_phase`]; then the same under the FIFO claim, where B–E wait
/// behind A's older backlog: once 200 of A's executions were claimed after
/// the last of B–E's submissions (twice the fair bound), none of B–E's was.
/// One backlog for the three phases: loading it is the test's cost.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_noisy_neighbour_does_not_hold_up_others() {
    let f = fixture().await;
    f.db.db()
        .concurrency_limits()
        .set_default_limit(None)
        .await
        .unwrap();
    backlog(&f, f.user.id, 100_000).await;
    install_claim_log(&f).await;

    let worst_of_10 = fair_phase(&f, 10, "fair10").await;
    let worst_of_1 = fair_phase(&f, 1, "fair1").await;

    let (stop, running, submitted) = noisy_phase(&f, ClaimOrder::Fifo, 10, "fifo").await;
    let last = submitted.values().max().copied().unwrap();
    until_count(
        &f,
        &format!(
            "SELECT count(*) FROM claim_log WHERE user_id = '{}' AND seq > {last}",
            f.user.id
        ),
        200,
    )
    .await;
    stop_workers(&stop, running).await;
    assert_eq!(
        claimed_of(&f, &submitted).await,
        0,
        "the FIFO claim served B–E before A's backlog \
         (the fair claim's worst: {worst_of_10} and {worst_of_1} of A's claims)"
    );

    // Each execution was claimed once and everything claimed ended; A's
    // backlog is still there (the bound is not a drained queue).
    let client = f.db.raw_client().await.unwrap();
    let row = client
        .query_one(
            "SELECT count(*) - count(DISTINCT execution_id) FROM claim_log",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 0);
    let running: i64 = f
        .scalar(
            "SELECT count(*) FROM task_executions WHERE status = 'running'",
            &[],
        )
        .await;
    assert_eq!(running, 0);
    let a_pending: i64 = f
        .scalar(
            "SELECT count(*) FROM task_executions WHERE user_id = $1 AND status = 'pending'",
            &[&f.user.id],
        )
        .await;
    assert!(a_pending > 90_000, "{a_pending}");
}

/// Two users with pending work, `capped` with a cap of `cap`, `free`
/// uncapped; no default cap.
async fn capped_and_free(f: &Fixture, cap: u32, each: usize) -> (UserId, UserId) {
    let limits = f.db.db().concurrency_limits();
    limits.set_default_limit(None).await.unwrap();
    let capped = f.user.id;
    let free = user(f, "free").await;
    limits
        .set_user_limit(capped, ConcurrencyLimit::Max(cap))
        .await
        .unwrap();
    submit(f, capped, each).await;
    submit(f, free, each).await;
    (capped, free)
}

/// An execution whose lease expired still runs until the rescuer ends it,
/// so it holds its user's slot: a claim passes the user by. Once rescued
/// (and its retry queued), the slots are free and the next claim takes up
/// to the cap again.
#[tokio::test]
async fn an_expired_lease_holds_its_slot_until_rescued() {
    let f = fixture().await;
    let (capped, free) = capped_and_free(&f, 2, 5).await;
    let queue = fair(&f);
    let first = queue
        // Four: two of each user, wherever the rotation starts.
        .claim("crashed", 4, Duration::from_millis(1))
        .await
        .unwrap();
    let first_owners = owners(&f, &first).await;
    assert_eq!(
        first_owners
            .iter()
            .filter(|u| **u == Uuid::from(capped))
            .count(),
        2
    );
    until_count(
        &f,
        "SELECT count(*) FROM task_executions \
         WHERE status = 'running' AND lease_expires_at < now() AND worker_id = 'crashed'",
        4,
    )
    .await;
    let meanwhile = queue.claim("w", 10, LEASE).await.unwrap();
    let meanwhile_owners = owners(&f, &meanwhile).await;
    assert_eq!(meanwhile.len(), 3, "the free user's other three");
    assert!(meanwhile_owners.iter().all(|u| *u == Uuid::from(free)));
    assert_eq!(running(&f, capped).await, 2);

    let report = queue
        .rescue_expired(RescuePolicy {
            max_attempts: 2,
            ..RescuePolicy::default()
        })
        .await
        .unwrap();
    assert_eq!(report.timed_out.len(), 4);
    assert_eq!(report.retried.len(), 4);
    assert_eq!(running(&f, capped).await, 0);
    let next = queue.claim("w", 10, LEASE).await.unwrap();
    let next_owners = owners(&f, &next).await;
    assert_eq!(
        next_owners
            .iter()
            .filter(|u| **u == Uuid::from(capped))
            .count(),
        2,
        "up to the cap again"
    );
    assert_eq!(running(&f, capped).await, 2);
}

/// Cancelling a running execution frees its slot for the next claim.
#[tokio::test]
async fn a_cancel_frees_a_slot() {
    let f = fixture().await;
    let (capped, free) = capped_and_free(&f, 1, 3).await;
    f.db.db()
        .concurrency_limits()
        .set_user_limit(free, ConcurrencyLimit::Max(0))
        .await
        .unwrap();
    let queue = fair(&f);
    let first = queue.claim("w", 10, LEASE).await.unwrap();
    assert_eq!(first.len(), 1);
    assert!(queue.claim("w", 10, LEASE).await.unwrap().is_empty());
    queue.cancel(first[0].execution.id).await.unwrap();
    let next = queue.claim("w", 10, LEASE).await.unwrap();
    assert_eq!(next.len(), 1);
    assert_ne!(next[0].execution.id, first[0].execution.id);
    assert_eq!(running(&f, capped).await, 1);
}

/// How many of `claimed` each user owns.
async fn per_user(f: &Fixture, claimed: &[ClaimedExecution]) -> HashMap<Uuid, usize> {
    let mut counts = HashMap::new();
    for u in owners(f, claimed).await {
        *counts.entry(u).or_default() += 1;
    }
    counts
}

/// A cap of 0 pauses a user; `Unlimited` exempts a user from the default
/// cap; the default applies to a user without an override; a change of the
/// default or of an override counts from the next claim.
#[tokio::test]
async fn default_caps_overrides_and_changes() {
    let f = fixture().await;
    let limits = f.db.db().concurrency_limits();
    limits.set_default_limit(Some(1)).await.unwrap();
    let paused = f.user.id;
    let exempt = user(&f, "exempt").await;
    let plain = user(&f, "plain").await;
    limits
        .set_user_limit(paused, ConcurrencyLimit::Max(0))
        .await
        .unwrap();
    limits
        .set_user_limit(exempt, ConcurrencyLimit::Unlimited)
        .await
        .unwrap();
    for u in [paused, exempt, plain] {
        submit(&f, u, 5).await;
    }
    let queue = fair(&f);
    let first = per_user(&f, &queue.claim("w", 20, LEASE).await.unwrap()).await;
    assert_eq!(first.get(&exempt.into()), Some(&5));
    assert_eq!(first.get(&plain.into()), Some(&1));
    assert_eq!(first.get(&paused.into()), None);
    assert!(queue.claim("w", 20, LEASE).await.unwrap().is_empty());

    limits.set_default_limit(Some(3)).await.unwrap();
    let raised = per_user(&f, &queue.claim("w", 20, LEASE).await.unwrap()).await;
    assert_eq!(raised, HashMap::from([(plain.into(), 2)]));

    limits
        .set_user_limit(paused, ConcurrencyLimit::Default)
        .await
        .unwrap();
    let resumed = per_user(&f, &queue.claim("w", 20, LEASE).await.unwrap()).await;
    assert_eq!(resumed, HashMap::from([(paused.into(), 3)]));

    // Lowering caps below what runs ends nothing; no claim takes more.
    limits.set_default_limit(Some(1)).await.unwrap();
    assert!(queue.claim("w", 20, LEASE).await.unwrap().is_empty());
    assert_eq!(running(&f, paused).await, 3);
    assert_eq!(running(&f, plain).await, 3);
    assert_eq!(running(&f, exempt).await, 5);
}

/// A capped user's work is not claimed under REPEATABLE READ (the cap's
/// count would be the transaction's older snapshot): the claim fails with
/// the server's 55000 and its message, and changes nothing. A user without
/// a cap is claimed there as anywhere.
#[tokio::test]
async fn a_capped_user_is_not_claimed_under_repeatable_read() {
    let f = fixture().await;
    let (capped, free) = capped_and_free(&f, 2, 3).await;
    let rr = || TransactionOptions::default().isolation(IsolationLevel::RepeatableRead);
    let claim_in_rr = || {
        f.db.db().transaction_with(rr(), |tx| async move {
            tx.queue()
                .with_claim_order(ClaimOrder::Fair)
                .claim("rr", 10, LEASE)
                .await
        })
    };
    let err = claim_in_rr().await.unwrap_err();
    assert_eq!(err.sqlstate().map(|s| s.code()), Some("55000"), "{err:?}");
    assert!(
        err.to_string()
            .contains("a capped user's work is claimed under READ COMMITTED only"),
        "{err}"
    );
    let running_now: i64 = f
        .scalar(
            "SELECT count(*) FROM task_executions WHERE status <> 'pending'",
            &[],
        )
        .await;
    assert_eq!(running_now, 0, "the refused claim changed nothing");

    // The capped user's work gone, the walk meets uncapped users only.
    let pending: Vec<Uuid> =
        f.db.raw_client()
            .await
            .unwrap()
            .query(
                "SELECT id FROM task_executions WHERE user_id = $1 AND status = 'pending'",
                &[&capped],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
    for id in pending {
        f.queue.cancel(id.into()).await.unwrap();
    }
    let claimed = claim_in_rr().await.unwrap();
    assert_eq!(claimed.len(), 3);
    assert!(
        owners(&f, &claimed)
            .await
            .iter()
            .all(|u| *u == Uuid::from(free))
    );
    assert_eq!(running(&f, free).await, 3);
}

/// Successive fair claims of 2 from one `Database` serve the users in
/// rotation (user id order, one each per round, from a random user), and two queue handles of
/// that `Database` continue the same rotation.
#[tokio::test]
async fn claims_rotate_between_users_across_handles() {
    let f = fixture().await;
    let mut users = Vec::new();
    for i in 1..=5 {
        let u = user(&f, &format!("rot{i}")).await;
        submit(&f, u, 20).await;
        users.push(Uuid::from(u));
    }
    users.sort();
    let one = fair(&f);
    let (two, three) = (fair(&f), fair(&f));
    let mut served = Vec::new();
    for _ in 0..10 {
        served.extend(owners(&f, &one.claim("w", 2, LEASE).await.unwrap()).await);
    }
    for i in 0..10 {
        let queue = if i % 2 == 0 { &two } else { &three };
        served.extend(owners(&f, &queue.claim("w", 2, LEASE).await.unwrap()).await);
    }
    // In user id order from wherever the first claim started (a random
    // user: the process had no position yet).
    let start = users.iter().position(|u| *u == served[0]).unwrap();
    let expected: Vec<Uuid> = users.iter().cycle().skip(start).take(40).copied().collect();
    assert_eq!(served, expected);
    // Every 5 claims of 2 serve each user twice.
    for window in served.chunks(10) {
        for u in &users {
            assert_eq!(window.iter().filter(|s| *s == u).count(), 2);
        }
    }
}

/// Regression: a claim whose rotation starts after the highest user id
/// wraps around before its first round begins; that wrap once counted as
/// the round's, which ended the round after its first user and gave the
/// second user the rest of the batch (1 and 9 of 10 here, not 2 of each).
#[tokio::test]
async fn a_claim_starting_past_the_highest_user_shares_its_batch() {
    let f = fixture().await;
    let mut users = Vec::new();
    for i in 1..=5 {
        let u = user(&f, &format!("wrap{i}")).await;
        submit(&f, u, 20).await;
        users.push(Uuid::from(u));
    }
    let queue = fair(&f);
    // One each: the rotation now stands at the highest user.
    let first = per_user(&f, &queue.claim("w", 5, LEASE).await.unwrap()).await;
    assert_eq!(first.len(), 5);
    let next = per_user(&f, &queue.claim("w", 10, LEASE).await.unwrap()).await;
    for u in &users {
        assert_eq!(next.get(u), Some(&2), "{next:?}");
    }
}

/// A pending execution without a user (another writer's, past a dropped
/// NOT NULL) is passed by: the claim answers (nothing to take) instead of
/// walking until the statement timeout, as it once did (no round could end
/// at a NULL user).
#[tokio::test]
async fn a_pending_row_without_a_user_does_not_loop_the_claim() {
    let f = crate::fixture_with(|c| c.statement_timeout = Some(Duration::from_secs(5))).await;
    f.queued(1, |_| 0).await;
    f.db.raw_client()
        .await
        .unwrap()
        .batch_execute(
            "ALTER TABLE task_executions ALTER COLUMN user_id DROP NOT NULL; \
             UPDATE task_executions SET user_id = NULL WHERE status = 'pending';",
        )
        .await
        .unwrap();
    let claimed = fair(&f).claim("w", 10, LEASE).await.unwrap();
    assert!(claimed.is_empty(), "{claimed:?}");
}
