//! Non-superuser roles on a private cluster: migrations run by an owner
//! role, an app role with table privileges only, a hardened deployment
//! that revoked EXECUTE from PUBLIC, and its grants across V8 down and up.

use std::time::Duration;

use voidrunner_db::testing::PrivateCluster;
use voidrunner_db::{Database, DownTarget, Error};

use crate::operators::round;

/// Non-superuser roles on a private cluster: (a) an owner role that runs
/// the migrations itself; (b) an app role with table privileges (and
/// EXECUTE on functions, which PUBLIC has by default); (c) after a
/// hardening `REVOKE EXECUTE ON ALL FUNCTIONS ... FROM PUBLIC`, the app
/// role cannot connect (an `Error::Config` naming the functions) and a
/// lazy pool's statements are refused with a clear permission error,
/// until EXECUTE is granted to it, as the deploying guide says; (d) V8 down and up keeps
/// those grants, and no more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_superuser_roles() {
    let cluster = PrivateCluster::start().await.unwrap();
    let admin = cluster.config();
    let (su, conn) = admin
        .pg_config()
        .connect(tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    su.batch_execute(
        "CREATE ROLE owner LOGIN NOSUPERUSER NOCREATEROLE NOCREATEDB; \
         CREATE ROLE app LOGIN NOSUPERUSER;",
    )
    .await
    .unwrap();
    su.batch_execute("CREATE DATABASE vrdb OWNER owner")
        .await
        .unwrap();
    let as_role = |role: &str| {
        let mut c = admin.with_dbname("vrdb");
        c.pg_config_mut().user(role);
        c.max_connections = 2;
        c.min_connections = 1;
        c
    };
    let owner = Database::connect(as_role("owner")).await.unwrap();
    // PostgreSQL 15: public schema is owned by pg_database_owner = owner.
    owner.migrate().await.unwrap();
    round(&owner, "owner").await.unwrap();
    let oc = owner.client().await.unwrap();
    oc.batch_execute(
        "GRANT USAGE ON SCHEMA public TO app; \
         GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO app;",
    )
    .await
    .unwrap();
    drop(oc);
    let app = Database::connect(as_role("app")).await.unwrap();
    round(&app, "app").await.unwrap();
    // Hardening, as the owner of the functions.
    owner
        .client()
        .await
        .unwrap()
        .batch_execute("REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA public FROM PUBLIC")
        .await
        .unwrap();
    // Without EXECUTE on the crate's functions (V7, V8), connecting as the
    // app role fails, naming the list pages it cannot call (the deploying
    // guide: grant it); a lazy pool, which checks nothing, is refused by
    // the first statement that calls one.
    let err = Database::connect(as_role("app")).await.unwrap_err();
    assert!(matches!(err, Error::Config { .. }), "{err:?}");
    assert!(
        err.to_string()
            .contains("role \"app\" lacks what every pool of voidrunner-db needs: EXECUTE on function voidrunner_"),
        "{err}"
    );
    let app2 = Database::connect_lazy(as_role("app")).unwrap();
    let hardened = round(&app2, "app-hardened").await;
    let refused = hardened.expect_err("the app role ran the crate's functions without EXECUTE");
    assert!(
        refused.contains("permission denied for function voidrunner_"),
        "{refused}"
    );
    owner
        .client()
        .await
        .unwrap()
        .batch_execute(
            "GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA public TO app; \
             GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO app;",
        )
        .await
        .unwrap();
    let app3 = Database::connect(as_role("app")).await.unwrap();
    let granted = round(&app3, "app-granted").await;
    // V8 down and up again: the page functions it replaces (and the claim
    // function it adds beside V7's) keep the grants of the ones they
    // replace, so the hardened deployment stays as it was: the app role
    // runs, and PUBLIC (a role with no grant) is still refused.
    let (su_db, conn) = admin
        .with_dbname("vrdb")
        .pg_config()
        .connect(tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let acls = || async {
        let rows = su_db
            .query(
                "SELECT p.proname::text, coalesce(p.proacl::text, 'default') FROM pg_proc p \
                 WHERE p.proname LIKE 'voidrunner\\_%' ORDER BY 1",
                &[],
            )
            .await
            .unwrap();
        rows.iter()
            .map(|r| (r.get::<_, String>(0), r.get::<_, String>(1)))
            .collect::<std::collections::BTreeMap<_, _>>()
    };
    // V9 and every later migration go down and up too; their functions
    // are new ones, created with the default privileges like any new
    // function (an operator who hardened them set those), so only the
    // functions of V1 to V8 are compared.
    const V1_TO_V8: [&str; 13] = [
        "voidrunner_claim",
        "voidrunner_claim_next",
        "voidrunner_executions_by_status_page",
        "voidrunner_executions_by_task_page",
        "voidrunner_executions_page",
        "voidrunner_expired_leases",
        "voidrunner_notify_execution",
        "voidrunner_prunable",
        "voidrunner_set_updated_at",
        "voidrunner_tasks_by_status_page",
        "voidrunner_tasks_by_user_page",
        "voidrunner_tasks_page",
        "voidrunner_users_page",
    ];
    let before_v9 = |mut acls: std::collections::BTreeMap<String, String>| {
        acls.retain(|name, _| V1_TO_V8.contains(&name.as_str()));
        assert_eq!(acls.len(), V1_TO_V8.len(), "{acls:?}");
        acls
    };
    let before = before_v9(acls().await);
    owner.migrate_down(DownTarget::ToVersion(7)).await.unwrap();
    owner.migrate().await.unwrap();
    let after = before_v9(acls().await);
    assert_eq!(before, after, "grants after V8 down and up");
    assert_eq!(
        after.get("voidrunner_claim"),
        after.get("voidrunner_claim_next"),
        "the claim function has the grants of the one it replaces"
    );
    assert!(
        after["voidrunner_users_page"].contains("app=X"),
        "{after:?}"
    );
    su.batch_execute("CREATE ROLE stranger LOGIN NOSUPERUSER")
        .await
        .unwrap();
    owner
        .client()
        .await
        .unwrap()
        .batch_execute(
            "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO stranger",
        )
        .await
        .unwrap();
    let app4 = Database::connect(as_role("app")).await.unwrap();
    let after_v8 = round(&app4, "app-after-v8").await;
    let err = Database::connect(as_role("stranger")).await.unwrap_err();
    assert!(matches!(err, Error::Config { .. }), "{err:?}");
    let stranger = Database::connect_lazy(as_role("stranger")).unwrap();
    let refused_again = round(&stranger, "stranger").await;
    app4.close(Duration::from_secs(5)).await;
    stranger.close(Duration::from_secs(5)).await;
    app.close(Duration::from_secs(5)).await;
    app2.close(Duration::from_secs(5)).await;
    app3.close(Duration::from_secs(5)).await;
    owner.close(Duration::from_secs(5)).await;
    cluster.destroy().await.unwrap();
    granted.unwrap();
    after_v8.unwrap();
    let refused_again = refused_again.expect_err("PUBLIC ran the functions after V8 down and up");
    assert!(
        refused_again.contains("permission denied for function voidrunner_"),
        "{refused_again}"
    );
}
