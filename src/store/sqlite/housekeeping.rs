//! The store's upkeep writes, run under the store's write gate by their callers: moving
//! waiting deliveries on, the retention purge, and releasing leases at shutdown.

use sqlx::SqlitePool;

use crate::store::StoreError;

/// Moves the `waiting` deliveries of `destination` on (see `Store::release_waiting_deliveries`).
pub(super) async fn release_waiting(
    pool: &SqlitePool,
    destination: &str,
    now_ms: i64,
    waiting_timeout_ms: i64,
) -> Result<(), StoreError> {
    let mut tx = pool.begin().await?;
    sqlx::query(
        "UPDATE deliveries AS w SET status = 'pending', next_attempt_at = ?, updated_at = ?, \
           conversion_id = (SELECT n.conversion_id FROM deliveries AS n \
                            WHERE n.mapping = w.needs_mapping AND n.key = w.needs_key) \
         WHERE w.destination = ? AND w.status = 'waiting' AND EXISTS \
           (SELECT 1 FROM deliveries AS n WHERE n.mapping = w.needs_mapping \
            AND n.key = w.needs_key AND n.status = 'delivered')",
    )
    .bind(now_ms)
    .bind(now_ms)
    .bind(destination)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "UPDATE deliveries AS w SET status = 'skipped', updated_at = ?, \
           last_error = 'the delivery it needs was not made (' || \
             (SELECT n.status FROM deliveries AS n \
              WHERE n.mapping = w.needs_mapping AND n.key = w.needs_key) || ')' \
         WHERE w.destination = ? AND w.status = 'waiting' AND EXISTS \
           (SELECT 1 FROM deliveries AS n WHERE n.mapping = w.needs_mapping \
            AND n.key = w.needs_key AND n.status IN ('dead', 'skipped', 'dry_run'))",
    )
    .bind(now_ms)
    .bind(destination)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "UPDATE deliveries AS w SET status = 'skipped', updated_at = ?, \
           last_error = 'nothing to update: the delivery it needs never appeared' \
         WHERE w.destination = ? AND w.status = 'waiting' AND w.created_at <= ? \
           AND NOT EXISTS (SELECT 1 FROM deliveries AS n \
             WHERE n.mapping = w.needs_mapping AND n.key = w.needs_key)",
    )
    .bind(now_ms)
    .bind(destination)
    .bind(now_ms - waiting_timeout_ms)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}

/// The retention purge (see `Store::purge_before`); returns how many webhooks were purged.
pub(super) async fn purge_before(pool: &SqlitePool, cutoff_ms: i64) -> Result<u64, StoreError> {
    let mut tx = pool.begin().await?;
    sqlx::query(
        "DELETE FROM attempts WHERE delivery_id IN (SELECT d.id FROM deliveries AS d \
         JOIN webhooks AS w ON w.id = d.webhook_id WHERE w.received_at < ? \
         AND d.status IN ('delivered', 'skipped', 'dry_run'))",
    )
    .bind(cutoff_ms)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "UPDATE deliveries SET payload = 'null', request = NULL WHERE payload != 'null' \
         AND status IN ('delivered', 'skipped', 'dry_run') \
         AND webhook_id IN (SELECT id FROM webhooks WHERE received_at < ?)",
    )
    .bind(cutoff_ms)
    .execute(&mut *tx)
    .await?;
    let purged = sqlx::query(
        "UPDATE webhooks SET body = x'', headers = '{}', status = 'purged' \
         WHERE received_at < ? AND status != 'purged' AND NOT EXISTS \
         (SELECT 1 FROM deliveries AS d WHERE d.webhook_id = webhooks.id \
          AND d.status NOT IN ('delivered', 'skipped', 'dry_run'))",
    )
    .bind(cutoff_ms)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    tx.commit().await?;
    Ok(purged)
}

/// Gives up the leases of these deliveries (see `Store::release_leases`).
pub(super) async fn release_leases(
    pool: &SqlitePool,
    deliveries: &[i64],
) -> Result<u64, StoreError> {
    let ids = serde_json::to_string(deliveries).expect("ids serialise");
    let now = crate::store::now_ms();
    let released = sqlx::query(
        "UPDATE deliveries SET status = 'pending', lease_until = NULL, \
         attempts = max(attempts - 1, 0), next_attempt_at = ?, updated_at = ? \
         WHERE status = 'in_flight' AND id IN (SELECT value FROM json_each(?))",
    )
    .bind(now)
    .bind(now)
    .bind(ids)
    .execute(pool)
    .await?;
    Ok(released.rows_affected())
}
