//! Many clients, in one process and in two, sharing PgBouncer's server
//! connections: no statement of one may meet another's.

use std::process::Stdio;
use std::time::Duration;

use voidrunner_db::{
    Database, DbConfig, Error, ExecutionQueue, NewTask, NewUser, Outcome, PageRequest,
    PasswordHash, PgExecutionQueue, PgTaskRepository, PgUserRepository, PoolerMode, TaskRepository,
    TaskUpdate, UserRepository,
};

use crate::{bouncer, by_state, is_named_statement_symptom, pooled_database, through};

/// Environment of the child process of [`two_processes_at_once`]: set, the
/// ignored test [`child_workload`] runs the workload against
/// `DATABASE_URL` (and the `VOIDRUNNER_DB_*` settings) and fails on any
/// error.
const CHILD_ENV: &str = "VOIDRUNNER_POOLER_TEST_CHILD";

const LEASE: Duration = Duration::from_secs(30);

/// `tasks` concurrent clients of `db`, each `rounds` times through every
/// kind of call: users, tasks (create, get, update, list, count), the
/// queue (enqueue, claim, heartbeat, complete) and a transaction across
/// repositories. Returns every error met.
pub async fn workload(db: &Database, tag: &str, tasks: usize, rounds: usize) -> Vec<Error> {
    let mut clients = tokio::task::JoinSet::new();
    for t in 0..tasks {
        let db = db.clone();
        let tag = format!("{tag}-{t}");
        clients.spawn(async move {
            let mut errors = Vec::new();
            for round in 0..rounds {
                if let Err(e) = one_round(&db, &tag, round).await {
                    errors.push(e);
                }
            }
            errors
        });
    }
    let mut errors = Vec::new();
    while let Some(joined) = clients.join_next().await {
        errors.extend(joined.expect("client task"));
    }
    errors
}

async fn one_round(db: &Database, tag: &str, round: usize) -> voidrunner_db::Result<()> {
    let users = PgUserRepository::new(db.clone());
    let tasks = PgTaskRepository::new(db.clone());
    let queue = PgExecutionQueue::new(db.clone());
    let user = users
        .create(NewUser::new(
            format!("{tag}-{round}@example.com"),
            PasswordHash::new("$argon2id$v=19$hash"),
        ))
        .await?;
    users.get_by_email(&user.email).await?;
    let task = tasks
        .create(NewTask::new(user.id, "job", "print(1)").priority((round % 10) as i32))
        .await?;
    tasks.get(task.id).await?;
    tasks
        .update(
            task.id,
            TaskUpdate {
                name: Some("renamed".to_owned()),
                description: Some(Some(format!("round {round}"))),
                metadata: Some(serde_json::json!({"round": round})),
                ..TaskUpdate::default()
            },
        )
        .await?;
    tasks
        .search_by_metadata(serde_json::json!({"round": round}), PageRequest::first(5))
        .await?;
    tasks.list_by_user(user.id, PageRequest::first(10)).await?;
    tasks.count_by_user(user.id).await?;
    queue.enqueue(task.id, None).await?;
    let worker = format!("{tag}-worker");
    for job in queue.claim(&worker, 2, LEASE).await? {
        queue.heartbeat(job.execution.id, &worker, LEASE).await?;
        queue
            .complete(
                job.execution.id,
                &worker,
                Outcome::completed(0).output("ok", ""),
            )
            .await?;
    }
    db.transaction(|tx| {
        let user = user.id;
        async move {
            let task = tx
                .tasks()
                .create(NewTask::new(user, "in a transaction", "print(2)"))
                .await?;
            tx.queue().enqueue(task.id, None).await?;
            tx.tasks().get(task.id).await
        }
    })
    .await?;
    Ok(())
}

#[tokio::test]
async fn sixteen_clients_share_four_server_connections_without_protocol_errors() {
    let test_db = pooled_database(16).await;
    let errors = workload(test_db.db(), "sixteen", 16, 12).await;
    let symptoms = errors
        .iter()
        .filter(|e| is_named_statement_symptom(e))
        .count();
    assert_eq!(
        symptoms,
        0,
        "named-statement errors: {:?}",
        by_state(&errors)
    );
    assert!(errors.is_empty(), "errors: {:?}", by_state(&errors));
}

/// The negative control: the same workload with named statements
/// ([`PoolerMode::Direct`], without startup options so PgBouncer accepts
/// the connections) fails through the same PgBouncer, so the test above
/// would notice if the crate named its statements.
#[tokio::test]
async fn named_statements_through_the_same_pooler_fail() {
    let bouncer = bouncer().await;
    let test_db = pooled_database(8).await;
    let mut config = test_db.db().config().clone();
    config.pooler = PoolerMode::Direct;
    config.statement_timeout = None;
    config.idle_in_transaction_timeout = None;
    let named = Database::connect(config).await.unwrap();
    let errors = workload(&named, "named", 8, 3).await;
    assert!(
        errors.iter().any(is_named_statement_symptom),
        "named statements through pgbouncer (port {}) went unnoticed: {:?}",
        bouncer.port(),
        by_state(&errors)
    );
    named.close(Duration::from_secs(5)).await;
}

/// `key=value` connection string of `pg`, for a child's `DATABASE_URL`.
fn conninfo(pg: &voidrunner_db::tokio_postgres::Config) -> String {
    use voidrunner_db::tokio_postgres::config::Host;
    let quote = |v: &str| format!("'{}'", v.replace('\\', "\\\\").replace('\'', "\\'"));
    let mut parts = Vec::new();
    if let Some(Host::Tcp(host)) = pg.get_hosts().first() {
        parts.push(format!("host={}", quote(host)));
    }
    if let Some(port) = pg.get_ports().first() {
        parts.push(format!("port={port}"));
    }
    if let Some(user) = pg.get_user() {
        parts.push(format!("user={}", quote(user)));
    }
    if let Some(password) = pg.get_password() {
        parts.push(format!(
            "password={}",
            quote(&String::from_utf8_lossy(password))
        ));
    }
    if let Some(dbname) = pg.get_dbname() {
        parts.push(format!("dbname={}", quote(dbname)));
    }
    parts.join(" ")
}

/// Two processes (this test binary, run twice with [`CHILD_ENV`]) at once
/// against one database through one PgBouncer: their server connections
/// are shared, so a statement name one process prepared could meet the
/// other's (tokio-postgres numbers statements per process, `s1`, `s2`, …).
#[tokio::test]
async fn two_processes_at_once() {
    let bouncer = bouncer().await;
    let test_db = pooled_database(2).await;
    let config = through(bouncer, &test_db.config().await.unwrap());
    let direct = config.direct_pg_config().expect("direct URL").clone();
    let exe = std::env::current_exe().unwrap();
    let child = |n: usize| {
        tokio::process::Command::new(&exe)
            .args([
                "--exact",
                "concurrency::child_workload",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, format!("p{n}"))
            .env("DATABASE_URL", conninfo(config.pg_config()))
            .env("VOIDRUNNER_DB_POOLER", "transaction")
            .env("VOIDRUNNER_DB_DIRECT_URL", conninfo(&direct))
            .env("VOIDRUNNER_DB_MAX_CONNECTIONS", "8")
            .env("VOIDRUNNER_DB_MIN_CONNECTIONS", "1")
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output()
    };
    let (first, second) = tokio::time::timeout(Duration::from_secs(300), async {
        tokio::join!(child(0), child(1))
    })
    .await
    .expect("the two processes did not finish within 300 s");
    for (n, output) in [first, second].into_iter().enumerate() {
        let output = output.unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success() && stdout.contains("child workload: 0 errors"),
            "process {n} ({}):\n{stdout}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

/// The child side of [`two_processes_at_once`]; does nothing unless
/// [`CHILD_ENV`] is set.
#[tokio::test]
#[ignore = "run by two_processes_at_once in a process of its own"]
async fn child_workload() {
    let Ok(tag) = std::env::var(CHILD_ENV) else {
        return;
    };
    let config = DbConfig::from_env().expect("the parent's settings");
    assert_eq!(config.pooler, PoolerMode::Transaction);
    let db = Database::connect(config)
        .await
        .expect("connect through pgbouncer");
    let errors = workload(&db, &tag, 8, 10).await;
    println!("child workload: {} errors", errors.len());
    assert!(errors.is_empty(), "errors: {:?}", by_state(&errors));
    db.close(Duration::from_secs(5)).await;
}
