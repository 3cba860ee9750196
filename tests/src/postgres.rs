//! A throwaway PostgreSQL server for tests (see the server's own docs), and
//! a migrated pool on it.
//!
//! The server is written once, in `asana-webhooks/tests/support/postgres.rs`:
//! that crate's own tests (the command line's, which need its binary) cannot
//! depend on this library, which depends on that crate, so this library
//! includes the file by path.

#[path = "../../asana-webhooks/tests/support/postgres.rs"]
mod server;

pub use server::Postgres;

use asana_webhooks::postgres::{self, Pool};

impl Postgres {
    /// A new pool on the server (one per receiver instance), its schema
    /// migrated.
    pub async fn pool(&self) -> Pool {
        let pool = postgres::connect(&self.url()).await.unwrap();
        postgres::migrate(&pool).await.unwrap();
        pool
    }
}
