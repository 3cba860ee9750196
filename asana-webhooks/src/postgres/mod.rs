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
//! together do not race; [`schema`] prints them for a DBA to apply.
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

use crate::secrets::{MAX_UNCONFIRMED_PER_TARGET, UNCONFIRMED_KEPT_FOR};

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
-- The rules the database applies by itself, by name; `migrate` writes
-- them from the Rust constants of the build that runs it.
CREATE TABLE asana_webhooks_settings (
    name text PRIMARY KEY,
    value bigint NOT NULL
);
-- Every handshake accepted as pending is written down here by the database
-- itself, so that an instance of any build on this schema records it.
CREATE FUNCTION asana_webhooks_write_down_handshake() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    most bigint;
    kept_for interval;
BEGIN
    -- STRICT: without its settings the trigger fails loudly rather than
    -- writing down nothing.
    SELECT value INTO STRICT most FROM asana_webhooks_settings
        WHERE name = 'max_unconfirmed_per_target';
    SELECT make_interval(secs => value) INTO STRICT kept_for FROM asana_webhooks_settings
        WHERE name = 'unconfirmed_kept_for_seconds';
    DELETE FROM asana_webhooks_unconfirmed WHERE received_at < now() - kept_for;
    DELETE FROM asana_webhooks_unrecorded WHERE last_at < now() - kept_for;
    IF (SELECT count(*) FROM asana_webhooks_unconfirmed WHERE target = NEW.target) < most THEN
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

/// Version 3: the inbox's lease tokens (an acknowledgement or release must
/// bring back the token of the current lease), each event's last failed
/// attempt, and the dead letters: events that failed on every attempt,
/// kept out of the way until re-driven or purged.
macro_rules! migration_3 {
    () => {
        r#"
ALTER TABLE asana_webhooks_inbox ADD COLUMN lease_token bigint;
ALTER TABLE asana_webhooks_inbox ADD COLUMN last_error text;
CREATE TABLE asana_webhooks_dead_letters (
    id bigint PRIMARY KEY,
    target text NOT NULL,
    webhook_gid text,
    received_at timestamptz NOT NULL,
    event text NOT NULL,
    attempts integer NOT NULL,
    last_error text,
    dead_at timestamptz NOT NULL DEFAULT now()
);
"#
    };
}

/// The migrations, in order: version `i + 1` is `MIGRATIONS[i]`.
const MIGRATIONS: &[&str] = &[migration_1!(), migration_2!(), migration_3!()];

/// The rules the trigger of version 2 applies, by name in
/// `asana_webhooks_settings`, each from its Rust constant: one source for
/// each rule.
///
/// They are data, not schema: the migrations stay fixed text (what
/// version 2 means never depends on the build that applied it), and every
/// [`migrate`] writes these rows again, in its transaction and under its
/// lock, so a database always applies the rules of the build that last
/// migrated it, with no new migration when a constant changes. Writing
/// them is idempotent (a row already right is not touched).
const SETTINGS: [(&str, i64); 2] = [
    (
        "max_unconfirmed_per_target",
        MAX_UNCONFIRMED_PER_TARGET as i64,
    ),
    (
        "unconfirmed_kept_for_seconds",
        UNCONFIRMED_KEPT_FOR.as_secs() as i64,
    ),
];

const _: () = assert!(
    UNCONFIRMED_KEPT_FOR.subsec_nanos() == 0,
    "the database keeps UNCONFIRMED_KEPT_FOR in whole seconds"
);

/// Writes one of [`SETTINGS`]; `$1` is its name, `$2` its value.
const WRITE_SETTING: &str = "INSERT INTO asana_webhooks_settings (name, value) VALUES ($1, $2)
    ON CONFLICT (name) DO UPDATE SET value = excluded.value
    WHERE asana_webhooks_settings.value IS DISTINCT FROM excluded.value";

/// Every migration as one script, followed by the settings they read
/// (written from this build's constants), for applying by hand.
///
/// ```
/// print!("{}", asana_webhooks::postgres::schema());
/// ```
pub fn schema() -> String {
    let mut script = MIGRATIONS.concat();
    for (name, value) in SETTINGS {
        script.push_str(
            &WRITE_SETTING
                .replace("$1", &format!("'{name}'"))
                .replace("$2", &value.to_string()),
        );
        script.push_str(";\n");
    }
    script
}

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
    // Every run, not only the one that creates the table: see `SETTINGS`.
    for (name, value) in SETTINGS {
        tx.execute(WRITE_SETTING, &[&name, &value])
            .await
            .map_err(|e| db(&e))?;
    }
    tx.commit().await.map_err(|e| db(&e))?;
    Ok(MIGRATIONS.len() as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_trigger_reads_every_setting_and_restates_none() {
        let migrations = MIGRATIONS.concat();
        for (name, value) in SETTINGS {
            assert!(migrations.contains(&format!("'{name}'")), "{name} unread");
            assert!(
                !migrations.contains(&value.to_string()),
                "{name} = {value} written into a migration"
            );
        }
        assert!(!migrations.contains("interval '"), "a literal interval");
    }

    #[test]
    fn the_printed_schema_writes_the_rules_of_this_build() {
        let schema = schema();
        assert!(schema.starts_with(&MIGRATIONS.concat()));
        assert!(schema.contains(&format!(
            "VALUES ('max_unconfirmed_per_target', {MAX_UNCONFIRMED_PER_TARGET})"
        )));
        assert!(schema.contains(&format!(
            "VALUES ('unconfirmed_kept_for_seconds', {})",
            UNCONFIRMED_KEPT_FOR.as_secs()
        )));
        assert!(
            !schema.contains("$1") && !schema.contains("$2"),
            "no placeholder left"
        );
    }
}
