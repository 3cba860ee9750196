//! Support for this crate's own integration tests, declared by each with
//! `mod support;`.
//!
//! `postgres.rs` is self-contained on purpose: the `receive` bench of this
//! crate includes it by path. The workspace's `tests` crate keeps its own
//! copy of the same server (`asana_webhooks_tests::postgres`): it cannot
//! share this one without including a file of another crate, and this
//! crate's tests cannot depend on it (it depends on this crate).

mod postgres;

pub use postgres::Postgres;
