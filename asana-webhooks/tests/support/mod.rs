//! Support for this crate's own integration tests, declared by each with
//! `mod support;`.
//!
//! `postgres.rs` is self-contained on purpose: the `receive` bench of this
//! crate and the workspace's `tests` crate (`asana_webhooks_tests::postgres`)
//! include it by path, since this crate's tests cannot depend on that crate
//! (it depends on this one).

mod postgres;

pub use postgres::Postgres;
