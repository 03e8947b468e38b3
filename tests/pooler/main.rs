//! The crate behind PgBouncer 1.18 in transaction mode: a PgBouncer of its
//! own (started once per test process by `voidrunner_db::testing::PgBouncer`
//! on a free loopback port, in front of the harness's server, four server
//! connections per database, round robin) carries every pool here, so
//! consecutive statements of one client run on different server
//! connections and clients share them. One binary keeps link time down.
//!
//! Needs the `pgbouncer` binary (Debian/Ubuntu: `apt-get install
//! pgbouncer`).

mod concurrency;
mod copy;
mod events;
mod logs;
mod lost_batch;
mod migrations;
mod regressions;
mod startup;
mod worker;

use std::collections::BTreeMap;

use tokio::sync::OnceCell;
use voidrunner_db::testing::{PgBouncer, TestDatabase, server_config};
use voidrunner_db::{DbConfig, Error};

/// The PgBouncer of this test process, stopped when it exits.
pub async fn bouncer() -> &'static PgBouncer {
    static BOUNCER: OnceCell<PgBouncer> = OnceCell::const_new();
    BOUNCER
        .get_or_init(|| async {
            let mut bouncer = PgBouncer::start(&server().await)
                .await
                .expect("starting pgbouncer (Debian/Ubuntu: apt-get install pgbouncer)");
            bouncer.stop_at_exit().expect("pgbouncer watchdog");
            bouncer
        })
        .await
}

/// The harness's server itself (its direct URL, should the harness route
/// its own pools through a pooler too).
pub async fn server() -> DbConfig {
    let config = server_config().await.expect("test server");
    config.direct_config().unwrap_or(config)
}

/// `config` (of the harness's server) through this process's PgBouncer.
pub fn through(bouncer: &PgBouncer, config: &DbConfig) -> DbConfig {
    bouncer.route(&config.direct_config().unwrap_or_else(|| config.clone()))
}

/// A migrated database of its own whose pool (of `max_connections`) goes
/// through the PgBouncer in transaction mode, with the server as its direct
/// URL.
pub async fn pooled_database(max_connections: usize) -> TestDatabase {
    let bouncer = bouncer().await;
    TestDatabase::with_config(|c| {
        *c = through(bouncer, c);
        c.max_connections = max_connections;
        c.min_connections = 1;
    })
    .await
    .expect("test database through pgbouncer")
}

/// Errors by SQLSTATE (or by message, for errors without one), for
/// assertions that print what went wrong.
pub fn by_state(errors: &[Error]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for e in errors {
        let key = match e.sqlstate() {
            Some(state) => format!("{}: {e}", state.code()),
            None => format!("-: {e}"),
        };
        *counts.entry(key).or_insert(0) += 1;
    }
    counts
}

/// The SQLSTATEs that betray a named statement behind a transaction
/// pooler: 26000 (statement missing on this server connection), 42P05
/// (another client's statement of that name is there), 08P01 (its
/// parameters do not match).
pub fn is_named_statement_symptom(e: &Error) -> bool {
    e.sqlstate()
        .is_some_and(|s| matches!(s.code(), "26000" | "42P05" | "08P01"))
}
