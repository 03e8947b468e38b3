//! Streaming replicas, on private clusters: a primary and its
//! `pg_basebackup -R` replicas, started and removed by the tests.
//!
//! `cargo test --test replicas` runs them.

mod attack;
mod harness;
mod health;
mod hostile;
mod pooler;
mod review;
mod routing;
mod smoke;
mod suite;
mod tokens;
