//! [`SecretStore`] in PostgreSQL.

use std::time::Duration;

use deadpool_postgres::Pool;

use crate::hook_secret::HookSecret;
use crate::secrets::{
    HandshakeVerdict, RegistrationId, SecretStore, StoreError, StoredSecret, TargetKey,
    UNCONFIRMED_KEPT_FOR, UnconfirmedHandshake, UnrecordedSpan,
};

/// Secrets and registrations in PostgreSQL, shared by every receiver
/// instance: a handshake may reach any instance, whichever sent the create.
/// Run [`super::migrate`] first.
#[derive(Clone)]
pub struct PostgresSecretStore {
    pool: Pool,
}

impl std::fmt::Debug for PostgresSecretStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresSecretStore")
            .finish_non_exhaustive()
    }
}

fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

/// Drops expired registrations and the pending secrets no registration
/// covers any more.
const EXPIRE: &str = "
    DELETE FROM asana_webhooks_registrations WHERE expires_at <= now();
    DELETE FROM asana_webhooks_pending p WHERE NOT EXISTS (
        SELECT 1 FROM asana_webhooks_registrations r WHERE r.target = p.target);";

impl PostgresSecretStore {
    /// A store over `pool` (see [`super::connect`]).
    pub fn new(pool: Pool) -> Self {
        Self { pool }
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        self.pool.get().await.map_err(backend)
    }
}

fn record(row: &tokio_postgres::Row) -> StoredSecret {
    StoredSecret {
        target: TargetKey::from_path_and_query(row.get::<_, &str>("target")),
        webhook_gid: row.get("webhook_gid"),
        resource: row.get("resource"),
        secret: HookSecret::new(row.get::<_, String>("secret")),
    }
}

async fn save_in(
    tx: &deadpool_postgres::Transaction<'_>,
    record: &StoredSecret,
) -> Result<(), StoreError> {
    // A saved secret is no longer an unconfirmed handshake.
    tx.execute(
        "DELETE FROM asana_webhooks_unconfirmed WHERE target = $1 AND secret = $2",
        &[&record.target.as_str(), &record.secret.expose()],
    )
    .await
    .map_err(backend)?;
    tx.execute(
        "DELETE FROM asana_webhooks_secrets WHERE (webhook_gid IS NOT NULL AND webhook_gid = $1) OR (target = $2 AND secret = $3)",
        &[&record.webhook_gid, &record.target.as_str(), &record.secret.expose()],
    )
    .await
    .map_err(backend)?;
    tx.execute(
        "INSERT INTO asana_webhooks_secrets (target, webhook_gid, resource, secret) VALUES ($1, $2, $3, $4)",
        &[&record.target.as_str(), &record.webhook_gid, &record.resource, &record.secret.expose()],
    )
    .await
    .map_err(backend)?;
    Ok(())
}

impl SecretStore for PostgresSecretStore {
    async fn open_registration(
        &self,
        target: &TargetKey,
        ttl: Duration,
    ) -> Result<RegistrationId, StoreError> {
        let id = RegistrationId::random();
        let client = self.client().await?;
        client
            .execute(
                "INSERT INTO asana_webhooks_registrations (id, target, expires_at) VALUES ($1, $2, now() + make_interval(secs => $3))",
                &[&id.as_str(), &target.as_str(), &ttl.as_secs_f64()],
            )
            .await
            .map_err(backend)?;
        Ok(id)
    }

    async fn accept_handshake(
        &self,
        target: &TargetKey,
        secret: &HookSecret,
    ) -> Result<HandshakeVerdict, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(backend)?;
        tx.batch_execute(EXPIRE).await.map_err(backend)?;
        let registrations: i64 = tx
            .query_one(
                "SELECT count(*) FROM asana_webhooks_registrations WHERE target = $1",
                &[&target.as_str()],
            )
            .await
            .map_err(backend)?
            .get(0);
        if registrations == 0 {
            tx.commit().await.map_err(backend)?;
            return Ok(HandshakeVerdict::NoRegistration);
        }
        tx.execute(
            "INSERT INTO asana_webhooks_pending (target, secret) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            &[&target.as_str(), &secret.expose()],
        )
        .await
        .map_err(backend)?;
        // The insert into asana_webhooks_pending is written down as an
        // unconfirmed handshake by a trigger (schema version 2), in this
        // transaction, so before the echo: see `super::MIGRATIONS`.
        let pending: i64 = tx
            .query_one(
                "SELECT count(*) FROM asana_webhooks_pending WHERE target = $1",
                &[&target.as_str()],
            )
            .await
            .map_err(backend)?
            .get(0);
        tx.commit().await.map_err(backend)?;
        Ok(HandshakeVerdict::Accepted {
            suspicious: pending > registrations,
        })
    }

    async fn pending_secrets(&self, target: &TargetKey) -> Result<Vec<HookSecret>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT secret FROM asana_webhooks_pending p WHERE p.target = $1 AND EXISTS (
                    SELECT 1 FROM asana_webhooks_registrations r WHERE r.target = $1 AND r.expires_at > now())",
                &[&target.as_str()],
            )
            .await
            .map_err(backend)?;
        Ok(rows
            .iter()
            .map(|r| HookSecret::new(r.get::<_, String>(0)))
            .collect())
    }

    async fn confirm(
        &self,
        _registration: &RegistrationId,
        record: StoredSecret,
    ) -> Result<bool, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(backend)?;
        let taken = tx
            .execute(
                "DELETE FROM asana_webhooks_pending WHERE target = $1 AND secret = $2 AND EXISTS (
                    SELECT 1 FROM asana_webhooks_registrations WHERE target = $1 AND expires_at > now())",
                &[&record.target.as_str(), &record.secret.expose()],
            )
            .await
            .map_err(backend)?;
        if taken == 0 {
            tx.rollback().await.map_err(backend)?;
            return Ok(false);
        }
        save_in(&tx, &record).await?;
        tx.commit().await.map_err(backend)?;
        Ok(true)
    }

    async fn close_registration(
        &self,
        registration: &RegistrationId,
    ) -> Result<Vec<HookSecret>, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(backend)?;
        let Some(closed) = tx
            .query_opt(
                "DELETE FROM asana_webhooks_registrations WHERE id = $1 RETURNING target, opened_at",
                &[&registration.as_str()],
            )
            .await
            .map_err(backend)?
        else {
            tx.commit().await.map_err(backend)?;
            return Ok(Vec::new());
        };
        let target: String = closed.get(0);
        let opened_at: std::time::SystemTime = closed.get(1);
        let candidates = tx
            .query(
                "SELECT secret FROM asana_webhooks_pending WHERE target = $1 AND received_at >= $2",
                &[&target, &opened_at],
            )
            .await
            .map_err(backend)?
            .iter()
            .map(|r| HookSecret::new(r.get::<_, String>(0)))
            .collect();
        tx.batch_execute(EXPIRE).await.map_err(backend)?;
        tx.commit().await.map_err(backend)?;
        Ok(candidates)
    }

    async fn save(&self, record: StoredSecret) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(backend)?;
        save_in(&tx, &record).await?;
        tx.commit().await.map_err(backend)
    }

    async fn secrets_for(&self, target: &TargetKey) -> Result<Vec<StoredSecret>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT target, webhook_gid, resource, secret FROM asana_webhooks_secrets WHERE target = $1 ORDER BY id",
                &[&target.as_str()],
            )
            .await
            .map_err(backend)?;
        Ok(rows.iter().map(record).collect())
    }

    async fn by_gid(&self, gid: &str) -> Result<Option<StoredSecret>, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "SELECT target, webhook_gid, resource, secret FROM asana_webhooks_secrets WHERE webhook_gid = $1",
                &[&gid],
            )
            .await
            .map_err(backend)?;
        Ok(row.as_ref().map(record))
    }

    async fn unconfirmed_handshakes(
        &self,
        target: &TargetKey,
    ) -> Result<Vec<UnconfirmedHandshake>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT secret, received_at FROM asana_webhooks_unconfirmed
                 WHERE target = $1 AND received_at >= now() - make_interval(secs => $2) ORDER BY received_at",
                &[&target.as_str(), &UNCONFIRMED_KEPT_FOR.as_secs_f64()],
            )
            .await
            .map_err(backend)?;
        Ok(rows
            .iter()
            .map(|r| UnconfirmedHandshake {
                target: target.clone(),
                secret: HookSecret::new(r.get::<_, String>(0)),
                received_at: r.get::<_, std::time::SystemTime>(1).into(),
            })
            .collect())
    }

    async fn unrecorded_handshakes(
        &self,
        target: &TargetKey,
    ) -> Result<Option<UnrecordedSpan>, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "SELECT first_at, last_at FROM asana_webhooks_unrecorded
                 WHERE target = $1 AND last_at >= now() - make_interval(secs => $2)",
                &[&target.as_str(), &UNCONFIRMED_KEPT_FOR.as_secs_f64()],
            )
            .await
            .map_err(backend)?;
        Ok(row.map(|r| UnrecordedSpan {
            target: target.clone(),
            first: r.get::<_, std::time::SystemTime>(0).into(),
            last: r.get::<_, std::time::SystemTime>(1).into(),
        }))
    }

    async fn remove_gid(&self, gid: &str) -> Result<Option<StoredSecret>, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "DELETE FROM asana_webhooks_secrets WHERE webhook_gid = $1 RETURNING target, webhook_gid, resource, secret",
                &[&gid],
            )
            .await
            .map_err(backend)?;
        Ok(row.as_ref().map(record))
    }
}
