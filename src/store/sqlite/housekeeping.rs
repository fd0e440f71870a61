//! The store's upkeep writes, run under the store's write gate by their callers: moving
//! waiting deliveries on, the retention purge, and releasing leases at shutdown.

use sqlx::SqlitePool;

use crate::domain::Operation;
use crate::store::StoreError;

/// Moves the `waiting` deliveries of `destination` on (see `Store::release_waiting_deliveries`).
pub(super) async fn release_waiting(
    pool: &SqlitePool,
    destination: &str,
    now_ms: i64,
    waiting_timeout_ms: i64,
) -> Result<(), StoreError> {
    // A Scalef status update cannot be made without the id its conversion's create answered
    // with; other deliveries that need one go on without it.
    let needs_id = Operation::ScalefUpdateConversionStatus.as_str();
    let mut tx = pool.begin().await?;
    // A later delivery of the same mapping needing the same was delivered (an approval
    // replayed after the rejection went out): sent now, the older one would undo it.
    sqlx::query(
        "UPDATE deliveries AS w SET status = 'skipped', updated_at = ?, \
           last_error = 'superseded: a later delivery of this mapping for the same ' || \
             w.needs_mapping || ' was delivered' \
         WHERE w.destination = ? AND w.status = 'waiting' AND EXISTS \
           (SELECT 1 FROM deliveries AS e WHERE e.needs_mapping = w.needs_mapping \
            AND e.needs_key = w.needs_key AND e.mapping = w.mapping AND e.id > w.id \
            AND e.status = 'delivered')",
    )
    .bind(now_ms)
    .bind(destination)
    .execute(&mut *tx)
    .await?;
    // Due from when it was made (or requeued), as it was: it waited for another delivery,
    // not for its turn, so it does not go behind what was made after it.
    sqlx::query(
        "UPDATE deliveries AS w SET status = 'pending', updated_at = ?, \
           conversion_id = (SELECT n.conversion_id FROM deliveries AS n \
                            WHERE n.mapping = w.needs_mapping AND n.key = w.needs_key) \
         WHERE w.destination = ? AND w.status = 'waiting' AND EXISTS \
           (SELECT 1 FROM deliveries AS n WHERE n.mapping = w.needs_mapping \
            AND n.key = w.needs_key AND n.status = 'delivered' \
            AND (n.conversion_id IS NOT NULL OR w.operation != ?))",
    )
    .bind(now_ms)
    .bind(destination)
    .bind(needs_id)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "UPDATE deliveries AS w SET status = 'skipped', updated_at = ?, \
           last_error = (SELECT CASE n.status \
               WHEN 'delivered' THEN 'the delivery it needs was made, but its answer had no \
                 conversion id' \
               ELSE 'the delivery it needs was not made (' || n.status || ')' END \
             FROM deliveries AS n \
             WHERE n.mapping = w.needs_mapping AND n.key = w.needs_key) \
         WHERE w.destination = ? AND w.status = 'waiting' AND EXISTS \
           (SELECT 1 FROM deliveries AS n WHERE n.mapping = w.needs_mapping \
            AND n.key = w.needs_key AND (n.status IN ('dead', 'skipped', 'dry_run') \
              OR (n.status = 'delivered' AND n.conversion_id IS NULL AND w.operation = ?)))",
    )
    .bind(now_ms)
    .bind(destination)
    .bind(needs_id)
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

/// How many webhooks one step of the retention purge looks at: a step holds the store's
/// write gate, so webhooks wait for it to end; the purge takes as many steps as it needs.
pub(super) const PURGE_STEP: i64 = 500;

/// Where a purge has got to: the last webhook looked at, in `(received_at, id)` order.
#[derive(Debug, Clone, Copy)]
pub(super) struct PurgeCursor {
    received_at: i64,
    id: i64,
}

impl PurgeCursor {
    /// Before every webhook.
    pub(super) const START: PurgeCursor = PurgeCursor {
        received_at: i64::MIN,
        id: i64::MIN,
    };
}

/// One step of the retention purge (see `Store::purge_before`): the next `step` webhooks not
/// yet purged and received before `cutoff_ms`, after `cursor`. Returns how many it purged
/// and, unless it looked at fewer than `step` (the purge is done), where the next step
/// starts.
///
/// Only webhooks not yet purged are read, through the partial index `webhooks_unpurged`: a
/// purge used to read every webhook older than the cutoff, purged years ago or not, in one
/// transaction under the write gate, so it grew with all history (about 3 s per million
/// webhooks kept) and every acknowledgement waited for it each hour.
pub(super) async fn purge_step(
    pool: &SqlitePool,
    cutoff_ms: i64,
    cursor: PurgeCursor,
    step: i64,
) -> Result<(u64, Option<PurgeCursor>), StoreError> {
    let mut tx = pool.begin().await?;
    let candidates: Vec<(i64, i64)> = sqlx::query_as(
        "SELECT received_at, id FROM webhooks INDEXED BY webhooks_unpurged \
         WHERE status != 'purged' AND received_at < ?1 AND (received_at, id) > (?2, ?3) \
         ORDER BY received_at, id LIMIT ?4",
    )
    .bind(cutoff_ms)
    .bind(cursor.received_at)
    .bind(cursor.id)
    .bind(step)
    .fetch_all(&mut *tx)
    .await?;
    let Some(&(received_at, id)) = candidates.last() else {
        return Ok((0, None));
    };
    let ids = serde_json::to_string(&candidates.iter().map(|c| c.1).collect::<Vec<_>>())
        .expect("ids serialise");
    sqlx::query(
        "DELETE FROM attempts WHERE delivery_id IN (SELECT id FROM deliveries \
         WHERE webhook_id IN (SELECT value FROM json_each(?)) \
         AND status IN ('delivered', 'skipped', 'dry_run'))",
    )
    .bind(&ids)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "UPDATE deliveries SET payload = 'null', request = NULL \
         WHERE webhook_id IN (SELECT value FROM json_each(?)) AND payload != 'null' \
         AND status IN ('delivered', 'skipped', 'dry_run')",
    )
    .bind(&ids)
    .execute(&mut *tx)
    .await?;
    let purged = sqlx::query(
        "UPDATE webhooks SET body = x'', headers = '{}', status = 'purged' \
         WHERE id IN (SELECT value FROM json_each(?)) AND NOT EXISTS \
         (SELECT 1 FROM deliveries AS d WHERE d.webhook_id = webhooks.id \
          AND d.status NOT IN ('delivered', 'skipped', 'dry_run'))",
    )
    .bind(&ids)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    tx.commit().await?;
    let next = (candidates.len() as i64 >= step).then_some(PurgeCursor { received_at, id });
    Ok((purged, next))
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

#[cfg(test)]
mod tests {
    use crate::store::Store;
    use crate::store::sqlite::accept::tests::{store, webhook};

    /// The purge goes step by step over every webhook not yet purged, oldest first, past the
    /// ones it must keep (a delivery not done) and those with the same time, and a second
    /// purge finds nothing to do.
    #[tokio::test]
    async fn the_purge_takes_steps_past_webhooks_it_keeps() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir).await;
        for (n, received_at) in [(1, 10), (2, 10), (3, 10), (4, 20), (5, 30), (6, 99)] {
            let mut new = webhook("s", &format!("w{n}"));
            new.received_at_ms = received_at;
            store.accept(new).await.unwrap();
        }
        // Every delivery is done but w1's, which is dead (kept, replayable).
        sqlx::query(
            "UPDATE deliveries SET status = CASE key WHEN 's/w1' THEN 'dead' ELSE 'delivered' END",
        )
        .execute(&store.pool)
        .await
        .unwrap();
        assert_eq!(store.purge_in_steps(50, 2).await.unwrap(), 4);
        let states: Vec<(String, String, Vec<u8>)> =
            sqlx::query_as("SELECT dedupe_id, status, body FROM webhooks ORDER BY id")
                .fetch_all(&store.pool)
                .await
                .unwrap();
        let purged: Vec<&str> = states
            .iter()
            .filter(|(_, status, body)| status == "purged" && body.is_empty())
            .map(|(id, _, _)| id.as_str())
            .collect();
        assert_eq!(purged, ["w2", "w3", "w4", "w5"]);
        let payloads: Vec<String> =
            sqlx::query_scalar("SELECT payload FROM deliveries ORDER BY id")
                .fetch_all(&store.pool)
                .await
                .unwrap();
        assert_eq!(payloads.iter().filter(|p| *p == "null").count(), 4);
        assert_eq!(store.purge_in_steps(50, 2).await.unwrap(), 0);
        assert_eq!(
            store.purge_before(100).await.unwrap(),
            1,
            "w6, once old enough"
        );
    }
}
