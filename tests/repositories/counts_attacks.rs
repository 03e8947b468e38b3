//! What the attack review of the counters and display names (#20) found,
//! each fixed: the counters' trigger functions are nobody's to attach to
//! another table, a writer never waits for a slot (so no deadlock when all
//! are held), a recount gives up on its lock instead of stalling writes, an
//! unscoped estimate fails closed for the application role, and a user
//! written with triggers off still gets a display name.

use std::time::Duration;

use tokio_postgres::Client;
use voidrunner_db::TaskRepository;

use crate::counts::session;
use crate::repos;

async fn total(c: &Client) -> (i64, i64) {
    let row = c
        .query_one(
            "SELECT (SELECT coalesce(sum(pending+running+completed+failed+timeout+cancelled),0)::bigint FROM task_counts), \
                    (SELECT count(*) FROM tasks)",
            &[],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1))
}

/// A role that may CREATE in the tasks' schema (PUBLIC on `public` in every
/// database created before PostgreSQL 15, kept by pg_upgrade) cannot attach
/// the counters' trigger function to a table of its own to forge them.
#[tokio::test]
async fn a_role_with_create_on_the_schema_forges_the_counters() {
    let r = repos().await;
    let user = r.user("victim@example.com").await;
    r.task(&user, "real").await;
    let admin = r.db.raw_client().await.unwrap();
    let role = format!("vr_attack_{}", uuid::Uuid::new_v4().simple());
    admin
        .batch_execute(&format!(
            "CREATE ROLE {role}; GRANT CREATE, USAGE ON SCHEMA public TO {role};"
        ))
        .await
        .unwrap();
    let result = admin
        .batch_execute(&format!(
            "SET ROLE {role};
             CREATE TABLE public.evil (user_id uuid, status text);
             CREATE TRIGGER evil AFTER INSERT ON public.evil REFERENCING NEW TABLE AS new_rows
                 FOR EACH STATEMENT EXECUTE FUNCTION voidrunner_task_counts_change();
             INSERT INTO public.evil SELECT '{}'::uuid, 'completed' FROM generate_series(1, 1000);
             RESET ROLE;",
            user.id.as_uuid()
        ))
        .await;
    let forged = total(&admin).await;
    admin
        .batch_execute(&format!(
            "RESET ROLE; DROP TABLE IF EXISTS public.evil; REVOKE ALL ON SCHEMA public FROM {role}; DROP ROLE {role};"
        ))
        .await
        .unwrap();
    assert!(
        result.is_err(),
        "the role attached the counters' trigger function to its own table"
    );
    assert_eq!(
        forged.0, forged.1,
        "counters forged by another role: {forged:?}"
    );
}

/// A user inserted with triggers off (session_replication_role = replica:
/// a logical replication apply, a data-only restore with
/// --disable-triggers) without a display name still gets the default.
#[tokio::test]
async fn a_user_written_with_triggers_off_gets_no_display_name() {
    let r = repos().await;
    let admin = r.db.raw_client().await.unwrap();
    let result = admin
        .batch_execute(
            "SET session_replication_role = replica;
             INSERT INTO users (email, password_hash) VALUES ('rep@example.com', 'h');
             RESET session_replication_role;",
        )
        .await;
    assert!(result.is_ok(), "{result:?}");
}

/// Every slot held (64 counting transactions at once) and a transaction
/// that holds a task but no slot yet: its counted write takes a new slot
/// row of its own instead of waiting for the holder of its start slot,
/// who may want its task (a deadlock before the fix). Both follow the
/// crate's lock order (tasks in id order).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_writer_never_waits_for_a_slot_even_when_every_slot_is_held() {
    let r = repos().await;
    let user = r.user("d@example.com").await;
    let c = r.task(&user, "c").await.id;
    let a = r.task(&user, "a").await.id;
    let b = r.task(&user, "b").await.id;
    // 63 of the 64 slots held, as 63 concurrent counting transactions
    // would hold them (one session, to spare the server's connections).
    let holder = session(&r).await;
    holder
        .batch_execute("BEGIN; SELECT slot FROM task_counts ORDER BY slot DESC LIMIT 63 FOR UPDATE")
        .await
        .unwrap();
    let t1 = session(&r).await;
    let t2 = session(&r).await;
    // T2 counts, on task c: it takes the last free slot.
    t2.batch_execute("BEGIN").await.unwrap();
    t2.execute(
        "UPDATE tasks SET status = 'cancelled' WHERE id = $1",
        &[&c.as_uuid()],
    )
    .await
    .unwrap();
    let free: i16 = t2
        .query_one(
            "SELECT slot FROM task_counts_by_user WHERE user_id = $1 AND cancelled = 1",
            &[&user.id.as_uuid()],
        )
        .await
        .unwrap()
        .get(0);
    // T1 starts from that slot (as a backend whose pid is the same modulo
    // 64 would): it holds task a, then counts on task b.
    t1.batch_execute(&format!("BEGIN; SET LOCAL voidrunner.count_slot = {free}"))
        .await
        .unwrap();
    t1.execute(
        "UPDATE tasks SET description = 't1' WHERE id = $1",
        &[&a.as_uuid()],
    )
    .await
    .unwrap();
    let counted = tokio::time::timeout(
        Duration::from_secs(60),
        t1.execute(
            "UPDATE tasks SET status = 'cancelled' WHERE id = $1",
            &[&b.as_uuid()],
        ),
    )
    .await
    .expect("the writer waited for a held slot")
    .unwrap();
    assert_eq!(counted, 1);
    let extra: i16 = t1
        .query_one(
            "SELECT slot FROM task_counts_by_user WHERE user_id = $1 AND slot NOT IN ($2) \
             AND cancelled = 1",
            &[&user.id.as_uuid(), &free],
        )
        .await
        .unwrap()
        .get(0);
    assert!(extra >= 64, "a new slot row: {extra}");
    t1.batch_execute("COMMIT").await.unwrap();
    // T2 may now take task a: nothing waited on anything but a task.
    t2.execute(
        "UPDATE tasks SET description = 't2' WHERE id = $1",
        &[&a.as_uuid()],
    )
    .await
    .unwrap();
    t2.batch_execute("COMMIT").await.unwrap();
    holder.batch_execute("ROLLBACK").await.unwrap();
    let (counted, tasks) = total(&holder).await;
    assert_eq!(counted, tasks);
    let counts = r.tasks.status_counts_by_user(user.id).await.unwrap();
    assert_eq!((counts.cancelled, counts.total()), (2, 3));
}

/// The unscoped repositories fail closed for the application role
/// (count() is 0), and so does estimated_count: not the whole table's size.
#[tokio::test]
async fn estimated_count_does_not_fail_closed_for_the_application_role() {
    use voidrunner_db::{ExecutionQueue, ExecutionRepository, PgExecutionRepository};
    let r = repos().await;
    let user = r.user("e@example.com").await;
    for i in 0..200 {
        let task = r.task(&user, &format!("t{i}")).await;
        r.queue.enqueue(task.id, None).await.unwrap();
    }
    r.db.raw_client()
        .await
        .unwrap()
        .batch_execute("ANALYZE task_executions")
        .await
        .unwrap();
    let role = crate::app_role::AppRole::create(&r.db).await;
    let app = role.database().await;
    let executions = PgExecutionRepository::new(app.db().clone());
    let exact = executions.count().await.unwrap();
    let estimate = executions.estimated_count().await.unwrap();
    assert_eq!(
        (exact, estimate),
        (0, 0),
        "count {exact}, estimate {estimate}"
    );
}

/// A recount behind an open writer of tasks gives up on its lock after
/// 2 s (every write queues behind a waiting lock), with `55P03` and the
/// counters unchanged, instead of stalling writes until its statement
/// timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_recount_behind_an_open_writer_gives_up_on_its_lock() {
    let r = repos().await;
    let user = r.user("o@example.com").await;
    r.task(&user, "counted").await;
    let long = session(&r).await;
    long.batch_execute("BEGIN").await.unwrap();
    long.execute(
        "INSERT INTO tasks (user_id, name, script_content) VALUES ($1, 'long', 'x')",
        &[&user.id.as_uuid()],
    )
    .await
    .unwrap();
    let err = r.db.recount_tasks().await.unwrap_err();
    assert_eq!(err.sqlstate().map(|s| s.code()), Some("55P03"), "{err:?}");
    long.batch_execute("COMMIT").await.unwrap();
    assert_eq!(r.tasks.count_by_user(user.id).await.unwrap(), 2);
    assert_eq!(r.db.recount_tasks().await.unwrap(), 2);
}

/// A role with a schema of its own (no privilege on the crate's schema)
/// can neither attach the counters' SECURITY DEFINER function to a table of
/// its own nor have its own objects run as the function's owner.
#[tokio::test]
async fn any_role_with_a_schema_runs_code_as_the_counters_owner() {
    let r = repos().await;
    let admin = r.db.raw_client().await.unwrap();
    let role = format!("vr_attack_{}", uuid::Uuid::new_v4().simple());
    admin
        .batch_execute(&format!(
            "CREATE ROLE {role}; CREATE SCHEMA {role} AUTHORIZATION {role};"
        ))
        .await
        .unwrap();
    let attack = admin
        .batch_execute(&format!(
            "SET ROLE {role};
             CREATE TABLE {role}.log (who text, superuser boolean);
             CREATE FUNCTION {role}.voidrunner_count_slot() RETURNS smallint LANGUAGE plpgsql AS $$
             BEGIN
               INSERT INTO log SELECT current_user, rolsuper FROM pg_roles WHERE rolname = current_user;
               RETURN 0;
             END $$;
             CREATE TABLE {role}.task_counts (slot smallint PRIMARY KEY, pending bigint, running bigint,
               completed bigint, failed bigint, timeout bigint, cancelled bigint);
             CREATE TABLE {role}.task_counts_by_user (user_id uuid, slot smallint, pending bigint,
               running bigint, completed bigint, failed bigint, timeout bigint, cancelled bigint,
               PRIMARY KEY (user_id, slot));
             CREATE TABLE {role}.t (user_id uuid, status text);
             CREATE TRIGGER t AFTER INSERT ON {role}.t REFERENCING NEW TABLE AS new_rows
               FOR EACH STATEMENT EXECUTE FUNCTION public.voidrunner_task_counts_change();
             INSERT INTO {role}.t VALUES (gen_random_uuid(), 'pending');
             RESET ROLE;"
        ))
        .await;
    let log: Vec<(String, bool)> = match &attack {
        Ok(()) => admin
            .query(&format!("SELECT who, superuser FROM {role}.log"), &[])
            .await
            .unwrap()
            .iter()
            .map(|row| (row.get(0), row.get(1)))
            .collect(),
        Err(_) => Vec::new(),
    };
    admin
        .batch_execute(&format!(
            "RESET ROLE; DROP SCHEMA {role} CASCADE; DROP ROLE {role};"
        ))
        .await
        .unwrap();
    assert!(
        log.iter().all(|(who, _)| *who == role),
        "the attacker's code ran as {log:?} (attach: {attack:?})"
    );
}
