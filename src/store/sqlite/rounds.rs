//! The delivery workers' writes: claiming a round's deliveries and recording its attempts.
//! The writer thread ([`super::writer`]) runs them, batched with every other write waiting
//! (the receive path's webhooks included), each under a savepoint of its own.

use rusqlite::{Connection, params};

use crate::store::{Attempt, ClaimedDelivery, Recorded, StoreError};

/// Leases up to `limit` due deliveries of `destination` (pending and due, or in flight with
/// an expired lease), oldest due first; returns them by id.
pub(super) fn claim(
    conn: &Connection,
    destination: &str,
    limit: usize,
    now_ms: i64,
    lease_ms: i64,
) -> Result<Vec<ClaimedDelivery>, StoreError> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    // Two searches of the (destination, status, next_attempt_at) index, not one OR: with
    // the OR, SQLite walked every delivery the destination ever had, and each claim grew
    // slower as history piled up.
    let mut statement = conn.prepare_cached(
        "UPDATE deliveries \
         SET status = 'in_flight', lease_until = ?1, attempts = attempts + 1, \
             updated_at = ?2 \
         WHERE id IN (SELECT id FROM ( \
             SELECT id, next_attempt_at FROM deliveries \
             WHERE destination = ?3 AND status = 'pending' AND next_attempt_at <= ?2 \
             UNION ALL \
             SELECT id, next_attempt_at FROM deliveries \
             WHERE destination = ?3 AND status = 'in_flight' AND lease_until < ?2) \
           ORDER BY next_attempt_at, id LIMIT ?4) \
         RETURNING id, operation, payload, conversion_id, attempts",
    )?;
    let rows = statement.query_map(
        params![now_ms + lease_ms, now_ms, destination, limit],
        |row| {
            Ok(ClaimedDelivery {
                id: row.get(0)?,
                operation: row.get(1)?,
                payload: row.get(2)?,
                conversion_id: row.get(3)?,
                attempts: row.get(4)?,
            })
        },
    )?;
    let mut claimed = rows.collect::<Result<Vec<_>, _>>()?;
    claimed.sort_by_key(|d| d.id);
    Ok(claimed)
}

/// Records a round's attempts (see [`record_attempt`]).
pub(super) fn record(
    conn: &Connection,
    attempts: &[(Vec<i64>, Attempt)],
) -> Result<(), StoreError> {
    for (deliveries, attempt) in attempts {
        record_attempt(conn, deliveries, attempt)?;
    }
    Ok(())
}

/// Records one attempt of these deliveries and moves them on: two statements, whatever the
/// number of deliveries (a Legion batch has 50).
fn record_attempt(
    conn: &Connection,
    deliveries: &[i64],
    attempt: &Attempt,
) -> Result<(), StoreError> {
    let now = attempt.started_at_ms + attempt.duration_ms;
    let ids = serde_json::to_string(deliveries).expect("ids serialise");
    let (outcome, response) = match &attempt.recorded {
        Recorded::Delivered { response, .. } => ("delivered", response.as_str()),
        Recorded::Retry { reason, .. } => ("retry", reason.as_str()),
        Recorded::Dead { reason } => ("dead", reason.as_str()),
        Recorded::DryRun { request } => ("dry_run", request.as_str()),
    };
    conn.prepare_cached(
        "INSERT INTO attempts (delivery_id, started_at, duration_ms, outcome, response) \
         SELECT value, ?, ?, ?, ? FROM json_each(?)",
    )?
    .execute(params![
        attempt.started_at_ms,
        attempt.duration_ms,
        outcome,
        response,
        ids
    ])?;
    match &attempt.recorded {
        Recorded::Delivered { conversion_id, .. } => conn
            .prepare_cached(
                "UPDATE deliveries SET status = 'delivered', conversion_id = ?, \
                 lease_until = NULL, last_error = NULL, updated_at = ? \
                 WHERE id IN (SELECT value FROM json_each(?))",
            )?
            .execute(params![conversion_id, now, ids])?,
        Recorded::Retry {
            next_attempt_at_ms,
            reason,
        } => conn
            .prepare_cached(
                "UPDATE deliveries SET status = 'pending', next_attempt_at = ?, \
                 last_error = ?, lease_until = NULL, updated_at = ? \
                 WHERE id IN (SELECT value FROM json_each(?))",
            )?
            .execute(params![next_attempt_at_ms, reason, now, ids])?,
        Recorded::Dead { reason } => conn
            .prepare_cached(
                "UPDATE deliveries SET status = 'dead', last_error = ?, \
                 lease_until = NULL, updated_at = ? WHERE id IN (SELECT value FROM json_each(?))",
            )?
            .execute(params![reason, now, ids])?,
        Recorded::DryRun { request } => conn
            .prepare_cached(
                "UPDATE deliveries SET status = 'dry_run', request = ?, \
                 lease_until = NULL, updated_at = ? WHERE id IN (SELECT value FROM json_each(?))",
            )?
            .execute(params![request, now, ids])?,
    };
    Ok(())
}
