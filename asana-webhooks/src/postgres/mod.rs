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
//! together do not race; [`schema`] prints them for a DBA to apply. They
//! need PostgreSQL 12 or later.
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
//! # Connections
//!
//! Every connection the crate makes keeps what the URL says, its
//! `options` included (`?options=-c%20search_path%3Dtenant` puts the schema,
//! the store and the inbox in `tenant`). Sessions run READ COMMITTED
//! transactions, and commits that an answer depends on (a 200, an echoed
//! handshake, a confirm) are durable: `synchronous_commit = off` from the
//! role or the database is overridden on those sessions. Every pool has a
//! wait and a create timeout ([`PoolOptions`], [`connect_with`]): an
//! exhausted pool is an error, answered 503, never a request that hangs.
//!
//! Requests anyone can send must not take the connections a genuine
//! delivery's commit needs. So the inbox commits on a small pool of its own
//! (made from the URL), its leases and acknowledgements use another, and
//! the secret store lets requests (lookups for deliveries, handshakes) hold
//! at most half of its pool at a time; the rest of a pool shared with the
//! inbox stays free for the inbox. With secrets kept in memory (see
//! [`PostgresSecretStore`]) a genuine delivery reads nothing from the
//! database before its commit.
//!
//! Connections are made without TLS: keep the database on a private
//! network, or put a TLS-terminating proxy in front of it.

mod inbox;
mod recovery;
mod secrets;

pub use deadpool_postgres::Pool;
pub use inbox::{DEFAULT_MAX_EVENTS, PostgresInbox};
pub use secrets::PostgresSecretStore;

use std::sync::Mutex;
use std::time::Duration;

use crate::secrets::{
    MAX_PENDING_DIGESTS_PER_TARGET, MAX_PENDING_PER_TARGET, MAX_UNCONFIRMED_PER_TARGET,
    UNCONFIRMED_KEPT_FOR, UNRECORDED_SPAN_STEP,
};

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

/// Version 3: handshake secrets found by a digest, never compared as text;
/// the pending handshakes of a target bounded as in the in-process stores;
/// every count-then-insert under a per-target lock; each change of a stored
/// secret announced (`NOTIFY`) in the transaction that makes it.
macro_rules! migration_3 {
    () => {
        r#"
-- The digest by which a handshake's secret is found: sha256() of its bytes
-- (backslashes doubled so that the cast to bytea takes every text as is).
-- Looking secrets up by digest compares digests, which tells a prober
-- nothing about the secrets themselves.
CREATE FUNCTION asana_webhooks_digest(secret text) RETURNS bytea
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
AS $$ SELECT sha256(replace(secret, E'\\', E'\\\\')::bytea) $$;
ALTER TABLE asana_webhooks_pending
    ADD COLUMN digest bytea GENERATED ALWAYS AS (asana_webhooks_digest(secret)) STORED;
ALTER TABLE asana_webhooks_pending DROP CONSTRAINT asana_webhooks_pending_pkey;
ALTER TABLE asana_webhooks_pending ADD PRIMARY KEY (target, digest);
ALTER TABLE asana_webhooks_unconfirmed
    ADD COLUMN digest bytea GENERATED ALWAYS AS (asana_webhooks_digest(secret)) STORED;
ALTER TABLE asana_webhooks_unconfirmed DROP CONSTRAINT asana_webhooks_unconfirmed_pkey;
ALTER TABLE asana_webhooks_unconfirmed ADD PRIMARY KEY (target, digest);
CREATE INDEX asana_webhooks_unconfirmed_received_at ON asana_webhooks_unconfirmed (received_at);
-- Past the pending handshakes kept whole, only their digests, and how many.
CREATE TABLE asana_webhooks_pending_digests (
    target text NOT NULL,
    digest bytea NOT NULL,
    PRIMARY KEY (target, digest)
);
CREATE TABLE asana_webhooks_pending_overflow (
    target text PRIMARY KEY,
    digests integer NOT NULL
);

-- Serialises everything that counts a target's rows and then inserts, until
-- the transaction ends. Taken first, before any row lock.
CREATE FUNCTION asana_webhooks_lock_target(p_target text) RETURNS void
LANGUAGE sql AS $$ SELECT pg_advisory_xact_lock(1634956136, hashtext(p_target)) $$;

-- What every changing entry point requires of its transaction: counts under
-- the lock see what the previous holder committed (READ COMMITTED), and the
-- commit is on disk before the answer that depends on it.
CREATE FUNCTION asana_webhooks_durable_transaction() RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION 'asana-webhooks needs READ COMMITTED transactions, not %',
            current_setting('transaction_isolation');
    END IF;
    IF current_setting('synchronous_commit') = 'off' THEN
        PERFORM set_config('synchronous_commit', 'on', true);
    END IF;
END
$$;

-- Forgets a target's registration window: its pending handshakes.
CREATE FUNCTION asana_webhooks_drop_window(p_target text) RETURNS void
LANGUAGE sql AS $$
    DELETE FROM asana_webhooks_pending WHERE target = p_target;
    DELETE FROM asana_webhooks_pending_digests WHERE target = p_target;
    DELETE FROM asana_webhooks_pending_overflow WHERE target = p_target;
$$;

-- Drops expired registrations and the windows no live registration covers,
-- skipping rows another transaction holds (it is changing them anyway).
CREATE FUNCTION asana_webhooks_forget_closed_windows() RETURNS void
LANGUAGE sql AS $$
    DELETE FROM asana_webhooks_registrations WHERE ctid IN (
        SELECT ctid FROM asana_webhooks_registrations WHERE expires_at <= now()
        FOR UPDATE SKIP LOCKED);
    DELETE FROM asana_webhooks_pending WHERE ctid IN (
        SELECT ctid FROM asana_webhooks_pending p WHERE NOT EXISTS (
            SELECT 1 FROM asana_webhooks_registrations r
            WHERE r.target = p.target AND r.expires_at > now())
        FOR UPDATE SKIP LOCKED);
    DELETE FROM asana_webhooks_pending_digests WHERE ctid IN (
        SELECT ctid FROM asana_webhooks_pending_digests p WHERE NOT EXISTS (
            SELECT 1 FROM asana_webhooks_registrations r
            WHERE r.target = p.target AND r.expires_at > now())
        FOR UPDATE SKIP LOCKED);
    DELETE FROM asana_webhooks_pending_overflow WHERE ctid IN (
        SELECT ctid FROM asana_webhooks_pending_overflow p WHERE NOT EXISTS (
            SELECT 1 FROM asana_webhooks_registrations r
            WHERE r.target = p.target AND r.expires_at > now())
        FOR UPDATE SKIP LOCKED);
$$;

-- Writes down one echoed handshake for a create whose process may die
-- before Asana's answer: under the target's lock, so that the count and
-- the insert are one step whoever inserts at the same time. Past the
-- limit only the span is kept, its end moved a step at a time.
CREATE FUNCTION asana_webhooks_write_down(p_target text, p_secret text, p_at timestamptz)
RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    most bigint;
    kept_for interval;
    step interval;
BEGIN
    SELECT value INTO STRICT most FROM asana_webhooks_settings
        WHERE name = 'max_unconfirmed_per_target';
    SELECT make_interval(secs => value) INTO STRICT kept_for FROM asana_webhooks_settings
        WHERE name = 'unconfirmed_kept_for_seconds';
    SELECT make_interval(secs => value) INTO STRICT step FROM asana_webhooks_settings
        WHERE name = 'unrecorded_span_step_seconds';
    PERFORM asana_webhooks_lock_target(p_target);
    DELETE FROM asana_webhooks_unconfirmed WHERE ctid IN (
        SELECT ctid FROM asana_webhooks_unconfirmed WHERE received_at < now() - kept_for
        FOR UPDATE SKIP LOCKED);
    DELETE FROM asana_webhooks_unrecorded WHERE ctid IN (
        SELECT ctid FROM asana_webhooks_unrecorded WHERE last_at < now() - kept_for
        FOR UPDATE SKIP LOCKED);
    IF EXISTS (
        SELECT 1 FROM asana_webhooks_unconfirmed
        WHERE target = p_target AND digest = asana_webhooks_digest(p_secret)
    ) THEN
        RETURN;
    END IF;
    IF (SELECT count(*) FROM asana_webhooks_unconfirmed
        WHERE target = p_target AND received_at >= now() - kept_for) < most THEN
        INSERT INTO asana_webhooks_unconfirmed (target, secret, received_at)
        VALUES (p_target, p_secret, p_at) ON CONFLICT DO NOTHING;
    ELSE
        INSERT INTO asana_webhooks_unrecorded AS u (target, first_at, last_at)
        VALUES (p_target, p_at, p_at)
        ON CONFLICT (target) DO UPDATE SET last_at = excluded.last_at
        WHERE excluded.last_at >= u.last_at + step;
    END IF;
END
$$;

-- The trigger of version 2, now through the locked write-down: a pending
-- handshake inserted by any build is written down.
CREATE OR REPLACE FUNCTION asana_webhooks_write_down_handshake() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM asana_webhooks_write_down(NEW.target, NEW.secret, NEW.received_at);
    RETURN NEW;
END
$$;

CREATE FUNCTION asana_webhooks_open_registration(p_id text, p_target text, p_ttl double precision)
RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM asana_webhooks_durable_transaction();
    PERFORM asana_webhooks_lock_target(p_target);
    DELETE FROM asana_webhooks_registrations WHERE target = p_target AND expires_at <= now();
    IF NOT EXISTS (SELECT 1 FROM asana_webhooks_registrations WHERE target = p_target) THEN
        PERFORM asana_webhooks_drop_window(p_target);
    END IF;
    INSERT INTO asana_webhooks_registrations (id, target, expires_at)
    VALUES (p_id, p_target, now() + make_interval(secs => p_ttl));
    PERFORM asana_webhooks_forget_closed_windows();
END
$$;

-- A handshake for a target: 'no_registration', 'flooded', 'accepted' or
-- 'suspicious' (more handshakes than registrations). The first ones are
-- kept whole (they may verify a heartbeat), the next ones as a digest only
-- (enough for Asana's 201 to confirm), and past those a new one is a flood.
-- Every accepted one is written down.
CREATE FUNCTION asana_webhooks_accept_handshake(p_target text, p_secret text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    d bytea := asana_webhooks_digest(p_secret);
    registrations bigint;
    whole bigint;
    overflow bigint;
    most_whole bigint;
    most_digests bigint;
    written_down boolean := false;
BEGIN
    PERFORM asana_webhooks_durable_transaction();
    SELECT value INTO STRICT most_whole FROM asana_webhooks_settings
        WHERE name = 'max_pending_per_target';
    SELECT value INTO STRICT most_digests FROM asana_webhooks_settings
        WHERE name = 'max_pending_digests_per_target';
    PERFORM asana_webhooks_lock_target(p_target);
    DELETE FROM asana_webhooks_registrations WHERE target = p_target AND expires_at <= now();
    SELECT count(*) INTO registrations FROM asana_webhooks_registrations WHERE target = p_target;
    IF registrations = 0 THEN
        PERFORM asana_webhooks_drop_window(p_target);
        RETURN 'no_registration';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM asana_webhooks_pending WHERE target = p_target AND digest = d)
       AND NOT EXISTS (
           SELECT 1 FROM asana_webhooks_pending_digests WHERE target = p_target AND digest = d)
    THEN
        SELECT count(*) INTO whole FROM asana_webhooks_pending WHERE target = p_target;
        IF whole < most_whole THEN
            -- Written down by the trigger.
            INSERT INTO asana_webhooks_pending (target, secret) VALUES (p_target, p_secret)
            ON CONFLICT DO NOTHING;
            written_down := FOUND;
        ELSE
            SELECT coalesce(max(digests), 0) INTO overflow
                FROM asana_webhooks_pending_overflow WHERE target = p_target;
            IF overflow >= most_digests THEN
                RETURN 'flooded';
            END IF;
            INSERT INTO asana_webhooks_pending_digests (target, digest) VALUES (p_target, d);
            INSERT INTO asana_webhooks_pending_overflow AS o (target, digests) VALUES (p_target, 1)
            ON CONFLICT (target) DO UPDATE SET digests = o.digests + 1;
        END IF;
    END IF;
    IF NOT written_down THEN
        PERFORM asana_webhooks_write_down(p_target, p_secret, clock_timestamp());
    END IF;
    SELECT count(*) INTO whole FROM asana_webhooks_pending WHERE target = p_target;
    SELECT coalesce(max(digests), 0) INTO overflow
        FROM asana_webhooks_pending_overflow WHERE target = p_target;
    RETURN CASE WHEN whole + overflow > registrations THEN 'suspicious' ELSE 'accepted' END;
END
$$;

-- Saves a webhook's secret: it replaces the record of the same gid (or the
-- same target and secret) and is no longer an unconfirmed handshake.
CREATE FUNCTION asana_webhooks_save(p_target text, p_gid text, p_resource text, p_secret text)
RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM asana_webhooks_durable_transaction();
    PERFORM asana_webhooks_lock_target(p_target);
    DELETE FROM asana_webhooks_unconfirmed
        WHERE target = p_target AND digest = asana_webhooks_digest(p_secret);
    DELETE FROM asana_webhooks_secrets
        WHERE (p_gid IS NOT NULL AND webhook_gid = p_gid)
           OR (target = p_target AND secret = p_secret);
    INSERT INTO asana_webhooks_secrets (target, webhook_gid, resource, secret)
    VALUES (p_target, p_gid, p_resource, p_secret);
END
$$;

-- Confirms the secret of Asana's 201: taken out of the live window (whole
-- or as a digest), or written down as an echoed handshake of the target
-- (its registration may have expired meanwhile), it is saved. False, and
-- nothing changes, when no handshake brought it.
CREATE FUNCTION asana_webhooks_confirm(p_target text, p_gid text, p_resource text, p_secret text)
RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    d bytea := asana_webhooks_digest(p_secret);
    kept_for interval;
    taken boolean := false;
BEGIN
    PERFORM asana_webhooks_durable_transaction();
    SELECT make_interval(secs => value) INTO STRICT kept_for FROM asana_webhooks_settings
        WHERE name = 'unconfirmed_kept_for_seconds';
    PERFORM asana_webhooks_lock_target(p_target);
    IF EXISTS (
        SELECT 1 FROM asana_webhooks_registrations
        WHERE target = p_target AND expires_at > now()
    ) THEN
        DELETE FROM asana_webhooks_pending WHERE target = p_target AND digest = d;
        taken := FOUND;
        IF NOT taken THEN
            DELETE FROM asana_webhooks_pending_digests WHERE target = p_target AND digest = d;
            taken := FOUND;
            IF taken THEN
                UPDATE asana_webhooks_pending_overflow SET digests = digests - 1
                WHERE target = p_target;
            END IF;
        END IF;
    END IF;
    IF NOT taken AND NOT EXISTS (
        SELECT 1 FROM asana_webhooks_unconfirmed
        WHERE target = p_target AND digest = d AND received_at >= now() - kept_for
    ) THEN
        RETURN false;
    END IF;
    PERFORM asana_webhooks_save(p_target, p_gid, p_resource, p_secret);
    RETURN true;
END
$$;

-- Ends a registration; returns the secrets handshakes brought since it
-- opened (whole ones). The last registration of a target takes its window
-- along.
CREATE FUNCTION asana_webhooks_close_registration(p_id text) RETURNS SETOF text
LANGUAGE plpgsql AS $$
DECLARE
    t text;
    opened timestamptz;
BEGIN
    PERFORM asana_webhooks_durable_transaction();
    SELECT target INTO t FROM asana_webhooks_registrations WHERE id = p_id;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    PERFORM asana_webhooks_lock_target(t);
    DELETE FROM asana_webhooks_registrations WHERE id = p_id RETURNING opened_at INTO opened;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    RETURN QUERY SELECT secret FROM asana_webhooks_pending
        WHERE target = t AND received_at >= opened ORDER BY received_at;
    DELETE FROM asana_webhooks_registrations WHERE target = t AND expires_at <= now();
    IF NOT EXISTS (SELECT 1 FROM asana_webhooks_registrations WHERE target = t) THEN
        PERFORM asana_webhooks_drop_window(t);
    END IF;
    PERFORM asana_webhooks_forget_closed_windows();
END
$$;

-- Every change of a stored secret is announced to the instances that keep
-- secrets in memory, in the transaction that makes it (so whoever changes
-- it, even by hand). The payload is the target, or empty for "all" (a
-- TRUNCATE, or a target too long for a notification).
CREATE FUNCTION asana_webhooks_notify_secrets(p_target text) RETURNS void
LANGUAGE sql AS $$
    SELECT pg_notify('asana_webhooks_secrets',
        CASE WHEN octet_length(p_target) <= 7000 THEN p_target ELSE '' END)
$$;
CREATE FUNCTION asana_webhooks_secrets_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_LEVEL = 'STATEMENT' THEN
        PERFORM pg_notify('asana_webhooks_secrets', '');
        RETURN NULL;
    END IF;
    IF TG_OP <> 'INSERT' THEN
        PERFORM asana_webhooks_notify_secrets(OLD.target);
    END IF;
    IF TG_OP <> 'DELETE' THEN
        PERFORM asana_webhooks_notify_secrets(NEW.target);
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER asana_webhooks_secrets_changed
    AFTER INSERT OR UPDATE OR DELETE ON asana_webhooks_secrets
    FOR EACH ROW EXECUTE FUNCTION asana_webhooks_secrets_changed();
CREATE TRIGGER asana_webhooks_secrets_truncated
    AFTER TRUNCATE ON asana_webhooks_secrets
    FOR EACH STATEMENT EXECUTE FUNCTION asana_webhooks_secrets_changed();
"#
    };
}

/// Version 4: each written-down handshake is tied to the registrations open
/// for its target when it arrived, so that a registration that ended with
/// Asana's answer releases the handshakes only it could have received
/// (`SecretStore::release_handshakes`): an honest failure never makes
/// recovery refuse a later create. Rows from before keep an empty list and
/// are only ever dropped by age or a confirm.
macro_rules! migration_4 {
    () => {
        r#"
ALTER TABLE asana_webhooks_unconfirmed ADD COLUMN registrations text[] NOT NULL DEFAULT '{}';
CREATE FUNCTION asana_webhooks_tie_unconfirmed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.registrations := ARRAY(
        SELECT id FROM asana_webhooks_registrations
        WHERE target = NEW.target AND expires_at > clock_timestamp()
        ORDER BY id);
    RETURN NEW;
END
$$;
CREATE TRIGGER asana_webhooks_unconfirmed_tied
    BEFORE INSERT ON asana_webhooks_unconfirmed
    FOR EACH ROW EXECUTE FUNCTION asana_webhooks_tie_unconfirmed();
CREATE FUNCTION asana_webhooks_release_handshakes(registration text) RETURNS void
LANGUAGE sql AS $$
    DELETE FROM asana_webhooks_unconfirmed WHERE registrations = ARRAY[registration];
    UPDATE asana_webhooks_unconfirmed
        SET registrations = array_remove(registrations, registration)
        WHERE registration = ANY(registrations);
$$;
"#
    };
}

/// Version 5: the inbox's lease tokens (an acknowledgement or release must
/// bring back the token of the current lease), each event's last failed
/// attempt, and the dead letters: events that failed on every attempt,
/// kept out of the way until re-driven or purged.
macro_rules! migration_5 {
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

/// Version 6: what re-creates a webhook (its target URL and filters, with
/// its secret), the gaps, the leases that let one instance repair alone,
/// and the Events API sync tokens (see [`crate::secrets::RecoveryStore`]).
macro_rules! migration_6 {
    () => {
        r#"
ALTER TABLE asana_webhooks_secrets ADD COLUMN target_url text;
ALTER TABLE asana_webhooks_secrets ADD COLUMN filters text;
CREATE TABLE asana_webhooks_gaps (
    id text PRIMARY KEY,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    gap text NOT NULL,
    status text NOT NULL
);
CREATE TABLE asana_webhooks_leases (
    name text PRIMARY KEY,
    holder text NOT NULL,
    expires_at timestamptz NOT NULL
);
CREATE TABLE asana_webhooks_sync_tokens (
    resource text PRIMARY KEY,
    token text NOT NULL,
    saved_at timestamptz NOT NULL DEFAULT now(),
    stream_since timestamptz NOT NULL
);
"#
    };
}

/// Version 7: where each inbox event came from (`webhook` or
/// `events_api`, see [`crate::inbox::EventSource`]) and the watched
/// resource it belongs to, kept with the dead letters too. Events from
/// before count as a webhook's, of no known resource.
macro_rules! migration_7 {
    () => {
        r#"
ALTER TABLE asana_webhooks_inbox
    ADD COLUMN source text NOT NULL DEFAULT 'webhook',
    ADD COLUMN resource text;
ALTER TABLE asana_webhooks_dead_letters
    ADD COLUMN source text NOT NULL DEFAULT 'webhook',
    ADD COLUMN resource text;
"#
    };
}

/// The schema version this build migrates to (what [`migrate`] returns).
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

/// The migrations, in order: version `i + 1` is `MIGRATIONS[i]`.
const MIGRATIONS: &[&str] = &[
    migration_1!(),
    migration_2!(),
    migration_3!(),
    migration_4!(),
    migration_5!(),
    migration_6!(),
    migration_7!(),
];

/// The channel on which every change of a stored secret is announced
/// (version 3), its payload the target.
pub(crate) const SECRETS_CHANNEL: &str = "asana_webhooks_secrets";

/// The rules the database applies by itself (the trigger of version 2 and
/// the functions of version 3), by name in `asana_webhooks_settings`, each
/// from its Rust constant: one source for each rule.
///
/// They are data, not schema: the migrations stay fixed text (what a
/// version means never depends on the build that applied it), and every
/// [`migrate`] writes these rows again, in its transaction and under its
/// lock, so a database always applies the rules of the build that last
/// migrated it, with no new migration when a constant changes. Writing
/// them is idempotent (a row already right is not touched).
const SETTINGS: [(&str, i64); 5] = [
    (
        "max_unconfirmed_per_target",
        MAX_UNCONFIRMED_PER_TARGET as i64,
    ),
    (
        "unconfirmed_kept_for_seconds",
        UNCONFIRMED_KEPT_FOR.as_secs() as i64,
    ),
    ("max_pending_per_target", MAX_PENDING_PER_TARGET as i64),
    (
        "max_pending_digests_per_target",
        MAX_PENDING_DIGESTS_PER_TARGET as i64,
    ),
    (
        "unrecorded_span_step_seconds",
        UNRECORDED_SPAN_STEP.as_secs() as i64,
    ),
];

const _: () = assert!(
    UNCONFIRMED_KEPT_FOR.subsec_nanos() == 0 && UNRECORDED_SPAN_STEP.subsec_nanos() == 0,
    "the database keeps UNCONFIRMED_KEPT_FOR and UNRECORDED_SPAN_STEP in whole seconds"
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

/// How big a pool is and how long it waits.
///
/// Every pool the crate makes has a wait and a create timeout: when every
/// connection is taken (a slow database, a flood), an operation fails
/// after the wait timeout with an error, which the receiver answers 503
/// (Asana retries), rather than hanging the request.
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub struct PoolOptions {
    /// The most connections of the pool. Default 16.
    pub max_size: usize,
    /// How long an operation waits for a free connection. Default 5 s.
    pub wait_timeout: Duration,
    /// How long making a new connection may take. Default 5 s.
    pub create_timeout: Duration,
}

impl Default for PoolOptions {
    fn default() -> Self {
        Self {
            max_size: 16,
            wait_timeout: Duration::from_secs(5),
            create_timeout: Duration::from_secs(5),
        }
    }
}

impl PoolOptions {
    /// Sets [`max_size`](Self::max_size) (at least 1).
    pub fn max_size(mut self, max_size: usize) -> Self {
        self.max_size = max_size.max(1);
        self
    }

    /// Sets [`wait_timeout`](Self::wait_timeout).
    pub fn wait_timeout(mut self, wait: Duration) -> Self {
        self.wait_timeout = wait;
        self
    }

    /// Sets [`create_timeout`](Self::create_timeout).
    pub fn create_timeout(mut self, create: Duration) -> Self {
        self.create_timeout = create;
        self
    }
}

/// The settings of a session the crate opens for `url`: everything the URL
/// says (its `options` included, such as `-c search_path=…`), with a
/// connect timeout when the URL sets none.
pub(crate) fn session_config(
    url: &str,
    connect_timeout: Duration,
) -> Result<tokio_postgres::Config, PostgresError> {
    let mut config: tokio_postgres::Config = url
        .parse()
        .map_err(|e| PostgresError::Url(format!("{e}")))?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(connect_timeout);
    }
    Ok(config)
}

/// Whether a pool's commits wait for the disk.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Commits {
    /// Every commit is durable before it returns: a session whose role or
    /// database says `synchronous_commit = off` is set to `on` (stronger
    /// settings such as `remote_apply` are kept).
    Durable,
    /// Commits do not wait for the disk (`synchronous_commit = off`): for
    /// what a crash may only undo into a redelivery (leases, acks).
    Relaxed,
}

/// Run once on each new connection: transactions are READ COMMITTED (the
/// counts under a target's lock rely on it), and commits are durable unless
/// the pool is [`Commits::Relaxed`].
const DURABLE_SESSION: &str =
    "SELECT set_config('default_transaction_isolation', 'read committed', false),
    CASE WHEN current_setting('synchronous_commit') = 'off'
         THEN set_config('synchronous_commit', 'on', false) END";
const RELAXED_SESSION: &str =
    "SELECT set_config('default_transaction_isolation', 'read committed', false)";

/// A pool for `config` with the user's connection options kept (the
/// relaxed pool adds its own after them), `options`' size and timeouts,
/// and the session settings of `commits`.
pub(crate) fn build_pool(
    config: &tokio_postgres::Config,
    options: PoolOptions,
    commits: Commits,
) -> Result<Pool, PostgresError> {
    let mut config = config.clone();
    if commits == Commits::Relaxed {
        let user = config.get_options().unwrap_or("").trim().to_string();
        config.options(format!("{user} -c synchronous_commit=off").trim_start());
    }
    let manager = deadpool_postgres::Manager::from_config(
        config,
        tokio_postgres::NoTls,
        deadpool_postgres::ManagerConfig {
            recycling_method: deadpool_postgres::RecyclingMethod::Fast,
        },
    );
    let session = match commits {
        Commits::Durable => DURABLE_SESSION,
        Commits::Relaxed => RELAXED_SESSION,
    };
    Pool::builder(manager)
        .max_size(options.max_size.max(1))
        .wait_timeout(Some(options.wait_timeout))
        .create_timeout(Some(options.create_timeout))
        .recycle_timeout(Some(options.create_timeout))
        .post_create(deadpool_postgres::Hook::async_fn(move |client, _| {
            Box::pin(async move {
                client
                    .batch_execute(session)
                    .await
                    .map_err(deadpool_postgres::HookError::Backend)
            })
        }))
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .build()
        .map_err(|e| PostgresError::Database(e.to_string()))
}

/// The timeouts of `pool` as [`PoolOptions`] of `max_size`.
pub(crate) fn options_like(pool: &Pool, max_size: usize) -> PoolOptions {
    let defaults = PoolOptions::default();
    let timeouts = pool.timeouts();
    PoolOptions {
        max_size,
        wait_timeout: timeouts.wait.unwrap_or(defaults.wait_timeout),
        create_timeout: timeouts.create.unwrap_or(defaults.create_timeout),
    }
}

/// The inbox's commits: its own pool (two connections: one group commit
/// at a time), so that nothing else can take the connections a 200 waits
/// for; durable commits, the user's options kept.
pub(crate) fn commit_pool(url: &str, like: &Pool) -> Result<Pool, PostgresError> {
    let options = options_like(like, 2);
    build_pool(
        &session_config(url, options.create_timeout)?,
        options,
        Commits::Durable,
    )
}

/// The inbox's leases and acknowledgements: commits that do not wait for
/// the disk, the user's options kept.
pub(crate) fn relaxed_pool(url: &str, like: &Pool) -> Result<Pool, PostgresError> {
    let options = options_like(like, 8);
    build_pool(
        &session_config(url, options.create_timeout)?,
        options,
        Commits::Relaxed,
    )
}

/// The settings of the pools [`connect_with`] made, so that a store over
/// one can open its own notification connection with the same settings.
/// Entries of dropped pools are pruned on each insert.
static POOL_SETTINGS: Mutex<Vec<(deadpool_postgres::WeakPool, tokio_postgres::Config)>> =
    Mutex::new(Vec::new());

fn remember_settings(pool: &Pool, config: tokio_postgres::Config) {
    let mut known = POOL_SETTINGS.lock().unwrap_or_else(|p| p.into_inner());
    known.retain(|(weak, _)| weak.upgrade().is_some());
    known.push((pool.weak(), config));
}

/// The session settings `pool` was made with, when [`connect_with`] made it.
pub(crate) fn settings_of(pool: &Pool) -> Option<tokio_postgres::Config> {
    let known = POOL_SETTINGS.lock().unwrap_or_else(|p| p.into_inner());
    known.iter().find_map(|(weak, config)| {
        let other = weak.upgrade()?;
        std::ptr::eq(other.manager(), pool.manager()).then(|| config.clone())
    })
}

/// A connection pool for `url` (`postgres://user:password@host:port/db`,
/// with `?options=-c%20search_path%3Dschema` and the like kept on every
/// connection the crate makes) with the default [`PoolOptions`].
pub async fn connect(url: &str) -> Result<Pool, PostgresError> {
    connect_with(url, PoolOptions::default()).await
}

/// Like [`connect`], with the pool's size and timeouts.
///
/// Sessions of the pool run READ COMMITTED transactions and commit
/// durably: a role or database configured with `synchronous_commit = off`
/// is overridden (to `on`) on them, since a 200 or an echoed handshake
/// promises what is committed.
pub async fn connect_with(url: &str, options: PoolOptions) -> Result<Pool, PostgresError> {
    let config = session_config(url, options.create_timeout)?;
    let pool = build_pool(&config, options, Commits::Durable)?;
    // Fail now, with a clear message, rather than at the first delivery.
    let _connection = pool
        .get()
        .await
        .map_err(|e| PostgresError::Database(format!("cannot connect: {e}")))?;
    remember_settings(&pool, config);
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

    /// Whether `number` stands alone in `text` (not inside a name such as
    /// `sha256` or a longer number).
    fn contains_number(text: &str, number: &str) -> bool {
        let part_of_a_word = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
        text.match_indices(number).any(|(at, _)| {
            !part_of_a_word(text[..at].chars().next_back())
                && !part_of_a_word(text[at + number.len()..].chars().next())
        })
    }

    #[test]
    fn the_database_reads_every_setting_and_restates_none() {
        let migrations = MIGRATIONS.concat();
        for (name, value) in SETTINGS {
            assert!(migrations.contains(&format!("'{name}'")), "{name} unread");
            assert!(
                !contains_number(&migrations, &value.to_string()),
                "{name} = {value} written into a migration"
            );
        }
        assert!(!migrations.contains("interval '"), "a literal interval");
        assert!(contains_number("a 256 b", "256"));
        assert!(!contains_number("sha256(x) 2560", "256"));
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
