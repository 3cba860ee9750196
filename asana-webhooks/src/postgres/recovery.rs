//! Gaps, leases and sync tokens in PostgreSQL: shared by every instance,
//! each operation one statement, timed by the database's clock so that
//! instances whose clocks differ still agree on when a lease expires.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::PostgresSecretStore;
use super::secrets::backend;
use crate::secrets::{GAPS_KEPT_FOR, Gap, GapStatus, RecoveryStore, StoreError, SyncToken};

fn json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("recovery records serialise")
}

fn corrupt(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(format!("unreadable {what} in the database: {e}"))
}

fn millis(at: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(at).unwrap_or_default()
}

impl RecoveryStore for PostgresSecretStore {
    async fn record_gap(&self, gap: Gap) -> Result<bool, StoreError> {
        let client = self.client().await?;
        let kept_for = GAPS_KEPT_FOR.as_secs_f64();
        client
            .execute(
                "DELETE FROM asana_webhooks_gaps WHERE recorded_at < now() - make_interval(secs => $1)",
                &[&kept_for],
            )
            .await
            .map_err(backend)?;
        let inserted = client
            .execute(
                "INSERT INTO asana_webhooks_gaps (id, gap, status) VALUES ($1, $2, $3)
                 ON CONFLICT (id) DO NOTHING",
                &[&gap.id, &json(&gap), &json(&gap.status)],
            )
            .await
            .map_err(backend)?;
        Ok(inserted == 1)
    }

    async fn gaps(&self) -> Result<Vec<Gap>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT gap, status FROM asana_webhooks_gaps ORDER BY recorded_at, id",
                &[],
            )
            .await
            .map_err(backend)?;
        rows.iter()
            .map(|row| {
                let mut gap: Gap =
                    serde_json::from_str(row.get(0)).map_err(|e| corrupt("gap", e))?;
                gap.status = serde_json::from_str(row.get(1)).map_err(|e| corrupt("gap", e))?;
                Ok(gap)
            })
            .collect()
    }

    async fn set_gap_status(&self, id: &str, status: GapStatus) -> Result<bool, StoreError> {
        let client = self.client().await?;
        let updated = client
            .execute(
                "UPDATE asana_webhooks_gaps SET status = $2 WHERE id = $1",
                &[&id, &json(&status)],
            )
            .await
            .map_err(backend)?;
        Ok(updated == 1)
    }

    async fn try_lease(&self, name: &str, holder: &str, ttl: Duration) -> Result<bool, StoreError> {
        let client = self.client().await?;
        // One statement: the row lock of the conflict makes two instances
        // racing for a free lease see one winner.
        let taken = client
            .execute(
                "INSERT INTO asana_webhooks_leases AS l (name, holder, expires_at)
                 VALUES ($1, $2, now() + make_interval(secs => $3))
                 ON CONFLICT (name) DO UPDATE
                 SET holder = excluded.holder, expires_at = excluded.expires_at
                 WHERE l.holder = excluded.holder OR l.expires_at <= now()",
                &[&name, &holder, &ttl.as_secs_f64()],
            )
            .await
            .map_err(backend)?;
        Ok(taken == 1)
    }

    async fn release_lease(&self, name: &str, holder: &str) -> Result<(), StoreError> {
        let client = self.client().await?;
        client
            .execute(
                "DELETE FROM asana_webhooks_leases WHERE name = $1 AND holder = $2",
                &[&name, &holder],
            )
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn sync_token(&self, resource: &str) -> Result<Option<SyncToken>, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "SELECT token, (extract(epoch from saved_at) * 1000)::bigint,
                        (extract(epoch from stream_since) * 1000)::bigint
                 FROM asana_webhooks_sync_tokens WHERE resource = $1",
                &[&resource],
            )
            .await
            .map_err(backend)?;
        Ok(row.map(|row| SyncToken {
            token: row.get(0),
            saved_at: millis(row.get(1)),
            stream_since: millis(row.get(2)),
        }))
    }

    async fn save_sync_token(
        &self,
        resource: &str,
        token: &str,
        stream_since: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let client = self.client().await?;
        client
            .execute(
                "INSERT INTO asana_webhooks_sync_tokens (resource, token, stream_since)
                 VALUES ($1, $2, to_timestamp($3::double precision / 1000))
                 ON CONFLICT (resource) DO UPDATE
                 SET token = excluded.token, saved_at = now(), stream_since = excluded.stream_since",
                &[&resource, &token, &(stream_since.timestamp_millis() as f64)],
            )
            .await
            .map_err(backend)?;
        Ok(())
    }
}
