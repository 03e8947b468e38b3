//! The fair claim's plan (V15) on statistics taken while the tables were
//! empty, then 1,000 users loaded, one of them with a backlog of 100,000:
//! a claim reads what the users it visits and the rows it takes need,
//! never the backlog, whoever holds it and whatever the caps.

use uuid::Uuid;
use voidrunner_db::testing::StatementProfile;

use crate::plans::{profile, stale_load};
use crate::{Fixture, fixture};

/// Users with a little pending work each, besides the fixture's user.
const USERS: i64 = 1000;

/// The fixture's user's pending executions: the backlog no claim reads.
const BACKLOG: i64 = 100_000;

/// Users at their cap (override of 2, 2 running) with 1,000 pending each.
const CAPPED: i64 = 10;

/// Statistics on the empty tables, autovacuum off, then [`USERS`] users
/// with 3 pending executions each and the fixture's user with [`BACKLOG`].
/// Who is at their cap: with `all_capped` every user (the fixture's too)
/// runs one execution under a default cap of 1; else the [`CAPPED`] users
/// run 2 under overrides of 2, with 1,000 more pending each.
async fn fair_queue(f: &Fixture, all_capped: bool) -> voidrunner_db::PooledClient {
    let running = if all_capped {
        "INSERT INTO tasks (user_id, name, script_content, status) \
           SELECT id, 'r', 'print(1)', 'running' FROM users; \
         UPDATE queue_settings SET default_max_running = 1;"
            .to_owned()
    } else {
        format!(
            "WITH capped AS (SELECT id FROM users WHERE email LIKE 'fair%' ORDER BY email \
                             LIMIT {CAPPED}) \
             INSERT INTO user_concurrency_limits (user_id, max_running) \
               SELECT id, 2 FROM capped; \
             INSERT INTO tasks (user_id, name, script_content, status) \
               SELECT user_id, 'r' || g, 'print(1)', 'running' \
               FROM user_concurrency_limits, generate_series(1, 2) g; \
             INSERT INTO tasks (user_id, name, script_content, priority) \
               SELECT user_id, 'c' || g, 'print(1)', g % 11 \
               FROM user_concurrency_limits, generate_series(1, 1000) g;"
        )
    };
    stale_load(
        f,
        &format!(
            "ALTER TABLE users SET (autovacuum_enabled = off); \
             ALTER TABLE user_concurrency_limits SET (autovacuum_enabled = off); \
             ANALYZE users; ANALYZE user_concurrency_limits; ANALYZE queue_settings; \
             INSERT INTO users (email, password_hash) \
               SELECT 'fair' || g || '@example.com', 'h' FROM generate_series(1, {USERS}) g; \
             INSERT INTO tasks (user_id, name, script_content, priority) \
               SELECT u.id, 't' || g, 'print(1)', g % 11 \
               FROM users u, generate_series(1, 3) g WHERE u.id <> '{user}'; \
             INSERT INTO tasks (user_id, name, script_content, priority) \
               SELECT '{user}', 'b' || g, 'print(1)', g % 11 FROM generate_series(1, {BACKLOG}) g; \
             {running} \
             INSERT INTO task_executions (task_id, status, worker_id, started_at, \
                                          lease_expires_at, attempt) \
               SELECT id, 'running', 'w', now(), now() + interval '1 hour', 1 \
               FROM tasks WHERE status = 'running'; \
             INSERT INTO task_executions (task_id, priority) \
               SELECT id, priority FROM tasks WHERE status = 'pending';",
            user = f.user.id
        ),
    )
    .await
}

/// No table scanned, the per-user claim index walked, and at most what
/// visiting `visited` users and taking `rows` rows needs: a few index
/// entries a user (the descent to the next one, their override, their
/// running executions up to the cap, a priority's probe) and a few dozen
/// buffers a row taken (its task, the new row versions' index entries; see
/// `plans::assert_bounded`). Reading the backlog would be 100,000 entries.
fn assert_fair_bounded(label: &str, p: &StatementProfile, visited: i64, rows: i64) {
    assert!(
        p.seq_scans.is_empty(),
        "{label}: sequential scans {:?}\n{}",
        p.seq_scans,
        p.plan
    );
    assert!(
        p.scanned("task_executions_user_claim_idx"),
        "{label}: {:?}\n{}",
        p.index_scans,
        p.plan
    );
    assert!(
        p.entries_read() <= 8 * visited + 20 * rows + 60,
        "{label}: {} index entries {:?}",
        p.entries_read(),
        p.index_entries_read
    );
    assert!(
        p.buffers <= 15 * visited as u64 + 130 * rows as u64 + 400,
        "{label}: {} buffers",
        p.buffers
    );
}

async fn some_user(client: &tokio_postgres::Client, sql: &str) -> Uuid {
    client.query_one(sql, &[]).await.unwrap().get(0)
}

#[tokio::test]
async fn a_fair_claim_reads_the_users_it_visits_not_the_backlog() {
    let f = fixture().await;
    let client = fair_queue(&f, false).await;
    // From the lowest user, from the middle of the id order, and from just
    // before the user with the backlog (whom the claim then serves first).
    let middle = some_user(
        &client,
        "SELECT id FROM users ORDER BY id OFFSET 500 LIMIT 1",
    )
    .await;
    let before_backlog = some_user(
        &client,
        &format!(
            "SELECT coalesce((SELECT id FROM users WHERE id < '{0}' ORDER BY id DESC LIMIT 1), '{0}')",
            f.user.id
        ),
    )
    .await;
    for after in [None, Some(middle), Some(before_backlog)] {
        for n in [1i64, 10, 100] {
            let p = profile(
                &client,
                "queue.claim_fair",
                &[&"w2", &n, &30.0f64, &after, &false],
            )
            .await;
            // The first round takes one a user: at most `n` users served,
            // and the capped ones it passes on the way.
            assert_fair_bounded(
                &format!("fair claim of {n} after {after:?}"),
                &p,
                n + CAPPED,
                n,
            );
        }
    }
    // What those claims would have taken (each run was rolled back): a
    // batch of 100 is 100 users, none of them past their cap.
    let taken = client
        .query(
            voidrunner_db::__statement("queue.claim_fair").unwrap(),
            &[&"w2", &100i64, &30.0f64, &None::<Uuid>, &false],
        )
        .await
        .unwrap();
    let users: std::collections::BTreeSet<Uuid> =
        taken.iter().map(|r| r.get("claimed_user")).collect();
    assert_eq!((taken.len(), users.len()), (100, 100));
    let capped: i64 = client
        .query_one(
            "SELECT count(*) FROM task_executions e JOIN user_concurrency_limits l USING (user_id) \
             WHERE e.status = 'running' AND e.worker_id = 'w2'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(capped, 0, "a capped user's work was claimed");
}

/// Every user at their cap (the default, 1) with work pending: a claim
/// visits each user once, takes nothing, and reads O(users) entries, not
/// the 100,000 of the backlog nor the 3,000 of the rest. Measured for
/// these 1,001 users, whatever the batch asked for: 2,004 entries (an
/// entry of the claim index to find each user, their running execution,
/// the settings' row) and about 9,000 buffers.
#[tokio::test]
async fn a_fair_claim_with_every_user_capped_out_visits_each_once() {
    let f = fixture().await;
    let client = fair_queue(&f, true).await;
    let users = USERS + 1;
    for n in [1i64, 10, 100] {
        let p = profile(
            &client,
            "queue.claim_fair",
            &[&"w2", &n, &30.0f64, &None::<Uuid>, &false],
        )
        .await;
        assert!(
            p.seq_scans.is_empty(),
            "capped out, {n}: {:?}\n{}",
            p.seq_scans,
            p.plan
        );
        assert!(
            p.entries_read() <= 3 * users + 60,
            "capped out, {n}: {} index entries {:?}",
            p.entries_read(),
            p.index_entries_read
        );
        assert!(
            p.buffers <= 15 * users as u64 + 400,
            "capped out, {n}: {} buffers",
            p.buffers
        );
    }
    let taken = client
        .query(
            voidrunner_db::__statement("queue.claim_fair").unwrap(),
            &[&"w2", &100i64, &30.0f64, &None::<Uuid>, &false],
        )
        .await
        .unwrap();
    assert!(taken.is_empty(), "{} claimed past their cap", taken.len());
}

/// Runs the fair claim of `n` (from the lowest user) in a transaction of
/// its own and returns the rows it claimed, the users it claimed from and
/// the users' lock rows (V15's `queue_user_locks`) it held before it
/// committed: the rows whose xmax is its transaction (a lock, or its own
/// insert then a lock).
async fn claim_counting_locks(client: &tokio_postgres::Client, n: i64) -> (usize, usize, i64) {
    client.batch_execute("BEGIN").await.unwrap();
    let rows = client
        .query(
            voidrunner_db::__statement("queue.claim_fair").unwrap(),
            &[&"locks", &n, &30.0f64, &None::<Uuid>, &false],
        )
        .await
        .unwrap();
    let locks: i64 = client
        .query_one(
            "SELECT count(*) FROM queue_user_locks \
             WHERE xmax::text = (pg_current_xact_id()::text::bigint % 4294967296)::text",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    client.batch_execute("COMMIT").await.unwrap();
    let users: std::collections::BTreeSet<Uuid> =
        rows.iter().map(|r| r.get("claimed_user")).collect();
    (rows.len(), users.len(), locks)
}

/// A claim holds each capped user's lock until it commits (an advisory
/// lock of each user it met once ran the server's shared lock table out:
/// "out of shared memory" in other tests; row locks now, still bounded):
/// at most 64 per claim, and none for a user already at the cap. The
/// capped users past the 64th wait for the next claim, which takes them.
#[tokio::test]
async fn a_fair_claim_holds_at_most_64_cap_locks_and_none_at_the_cap() {
    let f = fixture().await;
    let client = f.db.raw_client().await.unwrap();
    client
        .batch_execute(
            "INSERT INTO users (email, password_hash) \
               SELECT 'lock' || g || '@example.com', 'h' FROM generate_series(1, 200) g; \
             INSERT INTO tasks (user_id, name, script_content) \
               SELECT u.id, 't' || g, 'print(1)' \
               FROM users u, generate_series(1, 4) g WHERE u.email LIKE 'lock%'; \
             INSERT INTO task_executions (task_id, priority) SELECT id, priority FROM tasks; \
             UPDATE queue_settings SET default_max_running = 3;",
        )
        .await
        .unwrap();
    // 200 users with 4 pending each and room for 3: the first 64 met
    // (lowest ids first) are taken to their cap, no more.
    assert_eq!(claim_counting_locks(&client, 1000).await, (192, 64, 64));
    // Those 64 come first again, at their cap with work pending: they cost
    // no lock, so the next 64 are reached; and so on.
    assert_eq!(claim_counting_locks(&client, 1000).await, (192, 64, 64));
    assert_eq!(claim_counting_locks(&client, 1000).await, (192, 64, 64));
    assert_eq!(claim_counting_locks(&client, 1000).await, (24, 8, 8));
    assert_eq!(claim_counting_locks(&client, 1000).await, (0, 0, 0));
}

/// Many users with nothing runnable (each one execution for tomorrow):
/// a claim stops its walk after 2,000 users (and twice its batch), returns
/// where it stopped as a row without an execution, and the next claim,
/// starting there, reaches the user with runnable work past them. A claim
/// once walked every user, and took seconds with 100,000 of them.
#[tokio::test]
async fn a_fair_claim_walks_at_most_2000_users_and_says_where_it_stopped() {
    let f = fixture().await;
    let client = f.db.raw_client().await.unwrap();
    // The runnable user has the highest id.
    client
        .batch_execute(
            "INSERT INTO users (email, password_hash) \
               SELECT 'later' || g || '@example.com', 'h' FROM generate_series(1, 2100) g; \
             INSERT INTO tasks (user_id, name, script_content) \
               SELECT id, 't', 'print(1)' FROM users WHERE email LIKE 'later%'; \
             INSERT INTO task_executions (task_id, priority, run_after) \
               SELECT id, priority, now() + interval '1 day' FROM tasks; \
             INSERT INTO users (id, email, password_hash) \
               VALUES ('ffffffff-ffff-4fff-bfff-ffffffffffff', 'ready@example.com', 'h'); \
             INSERT INTO tasks (user_id, name, script_content) \
               SELECT id, 'r', 'print(1)' FROM users WHERE email = 'ready@example.com'; \
             INSERT INTO task_executions (task_id, priority) \
               SELECT id, priority FROM tasks WHERE name = 'r';",
        )
        .await
        .unwrap();
    let ready: Uuid = client
        .query_one(
            "SELECT id FROM users WHERE email = 'ready@example.com'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let claim = voidrunner_db::__statement("queue.claim_fair").unwrap();
    let first = client
        .query(claim, &[&"w", &1i64, &30.0f64, &None::<Uuid>, &false])
        .await
        .unwrap();
    assert_eq!(first.len(), 1, "only where it stopped");
    assert_eq!(first[0].get::<_, Option<Uuid>>("id"), None);
    let stopped: Uuid = first[0].get("claimed_user");
    let next = client
        .query(claim, &[&"w", &1i64, &30.0f64, &Some(stopped), &false])
        .await
        .unwrap();
    assert_eq!(next.len(), 1);
    assert!(next[0].get::<_, Option<Uuid>>("id").is_some());
    assert_eq!(next[0].get::<_, Uuid>("claimed_user"), ready);
}
