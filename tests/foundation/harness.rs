use voidrunner_db::Database;
use voidrunner_db::testing::{self, PrivateCluster, Server, TestDatabase};

/// A session of its own on the server's maintenance database.
async fn server_session() -> tokio_postgres::Client {
    let config = testing::server_config().await.unwrap();
    let (client, conn) = config
        .pg_config()
        .connect(tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    client
}

/// Sweeps leftovers until `name` is gone (a dropped session's locks take a
/// moment to go); whether it went is for the caller to assert.
async fn sweep_until_gone(name: &str) {
    for _ in 0..50 {
        testing::remove_leftover_databases().await.unwrap();
        if !database_exists(name).await {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

async fn database_exists(name: &str) -> bool {
    server_session()
        .await
        .query_one(
            "SELECT count(*) FROM pg_database WHERE datname = $1",
            &[&name],
        )
        .await
        .unwrap()
        .get::<_, i64>(0)
        == 1
}

/// Running, not merely a zombie waiting for a parent that never reaps it.
fn process_alive(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // The state follows the parenthesised command name.
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().next());
    !matches!(state, Some("Z" | "X") | None)
}

#[tokio::test]
async fn each_test_database_is_a_migrated_clone_dropped_afterwards() {
    let first = TestDatabase::new().await.unwrap();
    let second = TestDatabase::new().await.unwrap();
    assert_ne!(first.name(), second.name());
    let tables: i64 = first
        .client()
        .await
        .unwrap()
        .query_one("SELECT count(*) FROM pg_tables WHERE schemaname = 'public' AND tablename IN ('users', 'tasks', 'task_executions')", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(tables, 3);
    let template = testing::template_database().await.unwrap();
    assert!(database_exists(&template).await);

    let name = first.name().to_owned();
    drop(first);
    assert!(!database_exists(&name).await, "{name} was not dropped");
    assert!(database_exists(second.name()).await);
}

#[tokio::test]
async fn leftovers_of_dead_runs_are_removed_and_live_ones_kept() {
    let admin = server_session().await;
    // Tokens of two fake test processes: one dead, one alive (its lock held
    // by a session of this test).
    let dead = "vrdb_test_0badf00d_0";
    let alive = "vrdb_test_0a11fe00_0";
    for name in [dead, alive] {
        admin
            .batch_execute(&format!("DROP DATABASE IF EXISTS {name}"))
            .await
            .unwrap();
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap();
    }
    let holder = server_session().await;
    holder
        .execute(
            "SELECT pg_advisory_lock($1, $2)",
            &[&0x7672_6462i32, &0x0a11_fe00i32],
        )
        .await
        .unwrap();

    // Another test of this binary may sweep at the same moment, so what
    // counts is what is left, not which call removed it.
    testing::remove_leftover_databases().await.unwrap();
    assert!(!database_exists(dead).await);
    assert!(
        database_exists(alive).await,
        "a live run's database was dropped"
    );

    drop(holder);
    sweep_until_gone(alive).await;
    assert!(
        !database_exists(alive).await,
        "removed once its owner is gone"
    );
}

#[tokio::test]
async fn the_private_cluster_fallback_works_and_leaves_nothing_behind() {
    // Nothing listens on this port, so discovery must fall back to a
    // private cluster even on a machine that runs a server.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let server = testing::discover(
        None,
        &format!("postgres://postgres@127.0.0.1:{port}/postgres"),
    )
    .await
    .unwrap();
    let Server::Private(cluster) = server else {
        panic!("expected a private cluster, got {server:?}");
    };
    let root = cluster.root_dir().to_owned();
    let pid = cluster.postmaster_pid().expect("running");
    assert!(process_alive(pid));
    assert!(root.exists());

    let mut config = cluster.config();
    config.min_connections = 1;
    let db = Database::connect(config).await.unwrap();
    assert_eq!(
        db.migrate().await.unwrap(),
        voidrunner_db::migrate::embedded()
            .iter()
            .map(|m| m.version)
            .collect::<Vec<_>>()
    );
    let report = db.health_check().await.unwrap();
    assert!(!report.server_version.is_empty());
    db.close(std::time::Duration::from_secs(5)).await;

    cluster.destroy().await.unwrap();
    assert!(!root.exists(), "{} left behind", root.display());
    assert!(!process_alive(pid), "postmaster {pid} still running");
}

#[tokio::test]
async fn dropping_a_private_cluster_stops_and_removes_it() {
    let cluster = PrivateCluster::start().await.unwrap();
    let root = cluster.root_dir().to_owned();
    let pid = cluster.postmaster_pid().expect("running");
    drop(cluster);
    assert!(!root.exists());
    assert!(!process_alive(pid));
}

#[tokio::test]
async fn discover_prefers_database_url_and_reports_a_dead_one() {
    let config = testing::server_config().await.unwrap();
    let port = config
        .pg_config()
        .get_ports()
        .first()
        .copied()
        .unwrap_or(5432);
    let url = format!("postgres://postgres@127.0.0.1:{port}/postgres");
    match testing::discover(Some(&url), "postgres://nobody@127.0.0.1:1/none")
        .await
        .unwrap()
    {
        Server::Url(found) => assert_eq!(found.pg_config().get_ports(), &[port]),
        other => panic!("{other:?}"),
    }
    let dead_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let err = testing::discover(
        Some(&format!("postgres://u:hunter2@127.0.0.1:{dead_port}/x")),
        &url,
    )
    .await
    .unwrap_err();
    assert!(err.is_unavailable(), "{err:?}");
    assert!(err.to_string().contains("DATABASE_URL"), "{err}");
    assert!(!err.to_string().contains("hunter2"), "{err}");
}

#[tokio::test]
async fn templates_of_other_migrations_are_dropped_unless_in_use() {
    let admin = server_session().await;
    let ours = testing::template_database().await.unwrap();
    // Two templates of "older migrations": one a running test process of
    // another checkout still uses (its shared lock held here), one unused.
    let stale = "vrdb_tpl_0000dead0000beef";
    let used = "vrdb_tpl_0000feed00000000";
    for name in [stale, used] {
        admin
            .batch_execute(&format!("ALTER DATABASE {name} WITH IS_TEMPLATE false"))
            .await
            .ok();
        admin
            .batch_execute(&format!("DROP DATABASE IF EXISTS {name}"))
            .await
            .unwrap();
        admin
            .batch_execute(&format!("CREATE DATABASE {name} IS_TEMPLATE true"))
            .await
            .unwrap();
    }
    let holder = server_session().await;
    holder
        .execute(
            "SELECT pg_advisory_lock_shared($1, $2)",
            &[&0x7672_6463i32, &0x0000_feedi32],
        )
        .await
        .unwrap();

    // Another test of this binary may sweep at the same moment, so what
    // counts is what is left, not which call removed it.
    testing::remove_leftover_databases().await.unwrap();
    assert!(!database_exists(stale).await);
    assert!(database_exists(used).await, "a template in use was dropped");
    assert!(
        database_exists(&ours).await,
        "this run's own template was dropped"
    );

    drop(holder);
    sweep_until_gone(used).await;
    assert!(!database_exists(used).await, "dropped once nobody uses it");
    assert!(database_exists(&ours).await);
}

#[tokio::test]
async fn a_prefix_of_the_caller_names_the_database_and_combines_with_the_rest() {
    let prefix = "svc_seam_test_";
    let test_db = TestDatabase::builder()
        .prefix(prefix)
        .config(|c| c.max_connections = 2)
        .build()
        .await
        .unwrap();
    let name = test_db.name().to_owned();
    let suffix = name.strip_prefix(prefix).expect("named with the prefix");
    assert!(
        suffix.split_once('_').is_some_and(|(hex, n)| hex.len() == 8
            && u32::from_str_radix(hex, 16).is_ok()
            && n.parse::<u64>().is_ok()),
        "{name}"
    );
    assert_eq!(test_db.db().config().max_connections, 2);
    let tables: i64 = test_db
        .client()
        .await
        .unwrap()
        .query_one(
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'public' AND tablename = 'tasks'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(tables, 1, "a clone of the migrated template");
    drop(test_db);
    assert!(!database_exists(&name).await, "{name} was not dropped");

    // With a service's migrations, and empty.
    let notes = refinery::Migration::unapplied("V1__notes", "CREATE TABLE notes (id int)").unwrap();
    let service = TestDatabase::builder()
        .prefix(prefix)
        .migrations(&[notes], "seam_history")
        .build()
        .await
        .unwrap();
    assert!(service.name().starts_with(prefix));
    service
        .client()
        .await
        .unwrap()
        .batch_execute("SELECT id FROM notes; SELECT 1 FROM tasks LIMIT 0")
        .await
        .unwrap();
    let empty = TestDatabase::builder()
        .prefix(prefix)
        .empty()
        .build()
        .await
        .unwrap();
    assert!(empty.name().starts_with(prefix) && empty.template().is_none());
    // The default is unchanged.
    let default = TestDatabase::builder().build().await.unwrap();
    assert!(default.name().starts_with(testing::DEFAULT_DATABASE_PREFIX));
}

#[tokio::test]
async fn a_prefix_postgres_would_not_take_is_refused_before_anything_is_made() {
    let too_long = "p".repeat(testing::MAX_DATABASE_PREFIX_BYTES + 1);
    for bad in [
        "",
        "Svc_",
        "svc-test_",
        "1svc_",
        "svc test_",
        "vrdb_tpl_x_",
        &too_long,
    ] {
        let err = TestDatabase::builder()
            .prefix(bad)
            .build()
            .await
            .unwrap_err();
        assert!(
            err.is_validation() && err.field() == Some("prefix"),
            "{bad:?}: {err:?}"
        );
        assert!(err.to_string().contains(&format!("{bad:?}")), "{err}");
    }
    let err = TestDatabase::builder()
        .prefix(too_long.as_str())
        .build()
        .await
        .unwrap_err();
    assert!(err.to_string().contains("63"), "{err}");
    // And a bad history table, as with_migrations refuses it.
    let err = TestDatabase::builder()
        .migrations(&[], "pg_notes")
        .build()
        .await
        .unwrap_err();
    assert_eq!(err.field(), Some("history_table"), "{err}");
}

#[tokio::test]
async fn leftovers_of_a_prefix_are_removed_when_a_process_first_uses_it() {
    let admin = server_session().await;
    let prefix = "svc_left_test_";
    // A dead run's database, and one that only starts alike (not the
    // harness's: never dropped).
    let dead = format!("{prefix}0badf00d_3");
    let lookalike = format!("{prefix}notours");
    for name in [&dead, &lookalike] {
        admin
            .batch_execute(&format!("DROP DATABASE IF EXISTS {name}"))
            .await
            .unwrap();
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap();
    }
    let test_db = TestDatabase::builder()
        .prefix(prefix)
        .build()
        .await
        .unwrap();
    assert!(
        !database_exists(&dead).await,
        "the dead run's database stayed"
    );
    assert!(
        database_exists(&lookalike).await,
        "a look-alike was dropped"
    );
    assert!(database_exists(test_db.name()).await);
    // The prefix is swept again with the others.
    testing::remove_leftover_databases().await.unwrap();
    assert!(
        database_exists(test_db.name()).await,
        "a live one was dropped"
    );
    admin
        .batch_execute(&format!("DROP DATABASE {lookalike}"))
        .await
        .unwrap();
}
