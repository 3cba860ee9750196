//! PostgreSQL backends: secrets, registrations and the inbox in one
//! database shared by every receiver instance behind a load balancer.
//!
//! - [`PostgresSecretStore`]: secrets per webhook, and the registrations
//!   in flight with the handshake secrets they collect, each operation one
//!   transaction, so that whichever instance receives Asana's handshake
//!   answers it and the instance that sent the create confirms it.
//! - [`PostgresInbox`]: deliveries committed before the 200; consumers on
//!   any instance claim events with `FOR UPDATE SKIP LOCKED` and a lease;
//!   `LISTEN/NOTIFY` wakes waiting consumers; a unique key drops repeats.
//!
//! The schema is created by versioned, idempotent migrations
//! ([`migrate`]), run under an advisory lock so that instances starting
//! together do not race; [`SCHEMA`] prints them for a DBA to apply.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use asana_webhooks::postgres::{self, PostgresInbox, PostgresSecretStore};
//! use asana_webhooks::receiver::Receiver;
//!
//! let pool = postgres::connect("postgres://app@db.internal/asana").await?;
//! postgres::migrate(&pool).await?;
//! let store = PostgresSecretStore::new(pool.clone());
//! let inbox = PostgresInbox::new(pool, "postgres://app@db.internal/asana")?;
//! let receiver = Receiver::builder(store).build_with_inbox(inbox);
//! # Ok(()) }
//! ```
//!
//! Connections are made without TLS: keep the database on a private
//! network, or put a TLS-terminating proxy in front of it.

mod inbox;
mod secrets;

pub use deadpool_postgres::Pool;
pub use inbox::{DEFAULT_MAX_EVENTS, PostgresInbox};
pub use secrets::PostgresSecretStore;

/// Version 1: secrets, registrations, the inbox.
macro_rules! migration_1 {
    () => {
        r#"
CREATE TABLE asana_webhooks_secrets (
    id bigserial PRIMARY KEY,
    target text NOT NULL,
    webhook_gid text UNIQUE,
    resource text,
    secret text NOT NULL,
    stored_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (target, secret)
);
CREATE TABLE asana_webhooks_registrations (
    id text PRIMARY KEY,
    target text NOT NULL,
    opened_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    expires_at timestamptz NOT NULL
);
CREATE INDEX asana_webhooks_registrations_target ON asana_webhooks_registrations (target);
CREATE TABLE asana_webhooks_pending (
    target text NOT NULL,
    secret text NOT NULL,
    received_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (target, secret)
);
CREATE TABLE asana_webhooks_inbox (
    id bigserial PRIMARY KEY,
    target text NOT NULL,
    webhook_gid text,
    received_at timestamptz NOT NULL DEFAULT now(),
    event text NOT NULL,
    leased_until timestamptz,
    attempts integer NOT NULL DEFAULT 0
);
CREATE TABLE asana_webhooks_seen (
    key bytea PRIMARY KEY,
    seen_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX asana_webhooks_seen_at ON asana_webhooks_seen (seen_at);
CREATE TABLE asana_webhooks_heartbeats (
    webhook text PRIMARY KEY,
    at timestamptz NOT NULL
);
CREATE TABLE asana_webhooks_counters (
    name text PRIMARY KEY,
    value bigint NOT NULL
);
"#
    };
}

/// Version 2: echoed handshakes kept until a 201 confirms them, for a
/// create whose process died before Asana's answer.
macro_rules! migration_2 {
    () => {
        r#"
CREATE TABLE asana_webhooks_unconfirmed (
    target text NOT NULL,
    secret text NOT NULL,
    received_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (target, secret)
);
CREATE TABLE asana_webhooks_unrecorded (
    target text PRIMARY KEY,
    first_at timestamptz NOT NULL,
    last_at timestamptz NOT NULL
);
-- Every handshake accepted as pending is written down here by the database
-- itself, so that an instance of any build on this schema records it.
-- 256 and 25 hours are MAX_UNCONFIRMED_PER_TARGET and UNCONFIRMED_KEPT_FOR.
CREATE FUNCTION asana_webhooks_write_down_handshake() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM asana_webhooks_unconfirmed WHERE received_at < now() - interval '25 hours';
    DELETE FROM asana_webhooks_unrecorded WHERE last_at < now() - interval '25 hours';
    IF (SELECT count(*) FROM asana_webhooks_unconfirmed WHERE target = NEW.target) < 256 THEN
        INSERT INTO asana_webhooks_unconfirmed (target, secret, received_at)
        VALUES (NEW.target, NEW.secret, NEW.received_at) ON CONFLICT DO NOTHING;
    ELSIF NOT EXISTS (
        SELECT 1 FROM asana_webhooks_unconfirmed WHERE target = NEW.target AND secret = NEW.secret
    ) THEN
        INSERT INTO asana_webhooks_unrecorded (target, first_at, last_at)
        VALUES (NEW.target, NEW.received_at, NEW.received_at)
        ON CONFLICT (target) DO UPDATE SET last_at = excluded.last_at;
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER asana_webhooks_write_down_handshake
    AFTER INSERT ON asana_webhooks_pending
    FOR EACH ROW EXECUTE FUNCTION asana_webhooks_write_down_handshake();
"#
    };
}

/// The migrations, in order: version `i + 1` is `MIGRATIONS[i]`.
const MIGRATIONS: &[&str] = &[migration_1!(), migration_2!()];

/// Every migration as one script, for applying by hand.
pub const SCHEMA: &str = concat!(migration_1!(), migration_2!());

/// Identifies this crate's advisory lock.
const MIGRATION_LOCK: i64 = 0x6173_616e_6177_6831;

/// Why a PostgreSQL operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PostgresError {
    /// The URL does not parse.
    #[error("database URL: {0}")]
    Url(String),
    /// The pool or a query failed.
    #[error("database: {0}")]
    Database(String),
}

/// A connection pool for `url` (`postgres://user:password@host:port/db`).
pub async fn connect(url: &str) -> Result<Pool, PostgresError> {
    let config: tokio_postgres::Config = url
        .parse()
        .map_err(|e| PostgresError::Url(format!("{e}")))?;
    let manager = deadpool_postgres::Manager::from_config(
        config,
        tokio_postgres::NoTls,
        deadpool_postgres::ManagerConfig {
            recycling_method: deadpool_postgres::RecyclingMethod::Fast,
        },
    );
    let pool = Pool::builder(manager)
        .max_size(16)
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .build()
        .map_err(|e| PostgresError::Database(e.to_string()))?;
    // Fail now, with a clear message, rather than at the first delivery.
    let _connection = pool
        .get()
        .await
        .map_err(|e| PostgresError::Database(format!("cannot connect: {e}")))?;
    Ok(pool)
}

/// Brings the schema up to date; safe to run from every instance at start.
pub async fn migrate(pool: &Pool) -> Result<u32, PostgresError> {
    let db = |e: &dyn std::fmt::Display| PostgresError::Database(e.to_string());
    let mut client = pool.get().await.map_err(|e| db(&e))?;
    let tx = client.transaction().await.map_err(|e| db(&e))?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(|e| db(&e))?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS asana_webhooks_schema (version integer NOT NULL)")
        .await
        .map_err(|e| db(&e))?;
    let current: i32 = tx
        .query_one(
            "SELECT coalesce(max(version), 0) FROM asana_webhooks_schema",
            &[],
        )
        .await
        .map_err(|e| db(&e))?
        .get(0);
    if current as usize > MIGRATIONS.len() {
        // A newer build migrated this database; running beside it with an
        // older idea of the schema could skip what the newer one relies on.
        return Err(PostgresError::Database(format!(
            "the database schema is at version {current}, newer than the {} this build knows; upgrade this build",
            MIGRATIONS.len()
        )));
    }
    for (index, migration) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        tx.batch_execute(migration).await.map_err(|e| db(&e))?;
        let version = index as i32 + 1;
        tx.execute(
            "INSERT INTO asana_webhooks_schema (version) VALUES ($1)",
            &[&version],
        )
        .await
        .map_err(|e| db(&e))?;
    }
    tx.commit().await.map_err(|e| db(&e))?;
    Ok(MIGRATIONS.len() as u32)
}
