//! The guides behind the README: the depth of each topic, written once. These
//! modules hold no items; they exist to be read, here or as the markdown
//! files in `src/docs/` of the repository.
//!
//! | module | what |
//! |---|---|
//! | [`repositories`] | users, tasks and executions over the pool; ids, timestamps; tasks in bulk |
//! | [`transactions`] | `Database::transaction`, drops and aborts, retries; the unit of work |
//! | [`tenants`] | the scoped view of one user's rows, row-level security, the roles |
//! | [`queue`] | the execution queue's operations, a worker, batched completions and heartbeats |
//! | [`events`] | LISTEN/NOTIFY streams, polling, lag, the cost of NOTIFY |
//! | [`errors`] | `Error`, its constructors and predicates, what is retryable |
//! | [`testing`] | mocks, fixtures, a migrated database per test |
//! | [`configuration`] | every `DbConfig` setting with its variable, default and range |
//! | [`deploying`] | failover, roles and upgrades, TLS, PgBouncer and other poolers |
//! | [`scaling`] | streaming replicas, consistency, read-your-writes tokens, when one primary is not enough |
//! | [`migrations`] | applying and reverting, lock timeouts, migrations outside a transaction, a service's own |
//! | [`semver`] | the public dependencies and what each kind of release may change |
//! | [`development`] | the repository's layout, the downstream compile test, required features |
//!
//! The schema, validation limits, state machines, the queue's life cycle,
//! invariants, lock order and pool defaults are the
//! [domain reference](crate::domain).

// Each guide is markdown (src/docs/*.md) included as the docs of an empty
// module. Its examples use the mocks and the test harness: like the
// README's (see src/lib.rs), they run as doctests only with both features on.

#[cfg_attr(
    any(not(doctest), all(feature = "mock", feature = "test-support")),
    doc = include_str!("repositories.md")
)]
pub mod repositories {}

#[cfg_attr(
    any(not(doctest), all(feature = "mock", feature = "test-support")),
    doc = include_str!("transactions.md")
)]
pub mod transactions {}

#[cfg_attr(
    any(not(doctest), all(feature = "mock", feature = "test-support")),
    doc = include_str!("tenants.md")
)]
pub mod tenants {}

#[cfg_attr(
    any(not(doctest), all(feature = "mock", feature = "test-support")),
    doc = include_str!("queue.md")
)]
pub mod queue {}

#[cfg_attr(
    any(not(doctest), all(feature = "mock", feature = "test-support")),
    doc = include_str!("events.md")
)]
pub mod events {}

#[cfg_attr(
    any(not(doctest), all(feature = "mock", feature = "test-support")),
    doc = include_str!("errors.md")
)]
pub mod errors {}

#[cfg_attr(
    any(not(doctest), all(feature = "mock", feature = "test-support")),
    doc = include_str!("testing.md")
)]
pub mod testing {}

#[cfg_attr(
    any(not(doctest), all(feature = "mock", feature = "test-support")),
    doc = include_str!("configuration.md")
)]
pub mod configuration {}

#[cfg_attr(
    any(not(doctest), all(feature = "mock", feature = "test-support")),
    doc = include_str!("deploying.md")
)]
pub mod deploying {}

#[cfg_attr(
    any(not(doctest), all(feature = "mock", feature = "test-support")),
    doc = include_str!("migrations.md")
)]
pub mod migrations {}

#[cfg_attr(
    any(not(doctest), all(feature = "mock", feature = "test-support")),
    doc = include_str!("semver.md")
)]
pub mod semver {}

#[cfg_attr(
    any(not(doctest), all(feature = "mock", feature = "test-support")),
    doc = include_str!("development.md")
)]
pub mod development {}

#[cfg_attr(
    any(not(doctest), all(feature = "mock", feature = "test-support")),
    doc = include_str!("scaling.md")
)]
pub mod scaling {}
