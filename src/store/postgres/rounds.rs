//! The delivery workers' writes: claiming a round's deliveries and recording its attempts.
//! Any number of instances claim from the same tables: a claim locks the rows it takes with
//! `FOR UPDATE SKIP LOCKED`, so two claims never take the same delivery and neither waits
//! for the other; the lease it sets lets another instance claim the delivery again once it
//! expires (the instance that held it died).

use std::sync::LazyLock;

use sqlx::{PgConnection, Row};

use super::rules;
use crate::store::{Attempt, AttemptOutcome, ClaimedDelivery, DeliveryStatus, Recorded};

/// The claim: two searches of the (destination, status, next_attempt_at, id) index, each
/// limited and locking what it finds (rows another claim holds are skipped, not waited
/// for), then the oldest due of both, leased. A delivery held back
/// ([`rules::NOT_HELD_BACK`]) is left out inside each search, so it never takes a round's
/// place. Should another transaction change a row between this one's snapshot and its lock,
/// PostgreSQL checks the row's conditions again on the new version (a delivery just recorded
/// is no longer due, and is not taken).
static CLAIM: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH due AS ( \
             SELECT id, next_attempt_at FROM deliveries d \
             WHERE destination = $3 AND status = '{pending}' AND next_attempt_at <= $2 \
             AND {not_held_back} ORDER BY next_attempt_at, id LIMIT $4 \
             FOR UPDATE SKIP LOCKED), \
         expired AS ( \
             SELECT id, next_attempt_at FROM deliveries d \
             WHERE destination = $3 AND status = '{in_flight}' AND lease_until < $2 \
             AND {not_held_back} ORDER BY next_attempt_at, id LIMIT $4 \
             FOR UPDATE SKIP LOCKED), \
         chosen AS ( \
             SELECT id FROM (SELECT * FROM due UNION ALL SELECT * FROM expired) AS both_ \
             ORDER BY next_attempt_at, id LIMIT $4) \
         UPDATE deliveries AS t \
         SET status = '{in_flight}', lease_until = $1, attempts = t.attempts + 1, \
             updated_at = $2 \
         FROM chosen WHERE t.id = chosen.id \
         RETURNING t.id, t.operation, t.payload, t.conversion_id, t.attempts, t.mapping, t.key, t.created_at",
        in_flight = DeliveryStatus::InFlight,
        pending = DeliveryStatus::Pending,
        not_held_back = *rules::NOT_HELD_BACK,
    )
});

/// Leases up to `limit` due deliveries of `destination` (pending and due, or in flight with
/// an expired lease), oldest due first; returns them by id.
pub(super) async fn claim(
    conn: &mut PgConnection,
    destination: &str,
    limit: usize,
    now_ms: i64,
    lease_ms: i64,
) -> Result<Vec<ClaimedDelivery>, sqlx::Error> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let rows = sqlx::query(CLAIM.as_str())
        .bind(now_ms + lease_ms)
        .bind(now_ms)
        .bind(destination)
        .bind(limit)
        .fetch_all(conn)
        .await?;
    let mut claimed = rows
        .iter()
        .map(|row| {
            Ok(ClaimedDelivery {
                id: row.try_get("id")?,
                operation: row.try_get("operation")?,
                payload: row.try_get("payload")?,
                conversion_id: row.try_get("conversion_id")?,
                attempts: row.try_get("attempts")?,
                mapping: row.try_get("mapping")?,
                key: row.try_get("key")?,
                created_at_ms: row.try_get("created_at")?,
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
    claimed.sort_by_key(|d| d.id);
    Ok(claimed)
}

/// Records a round's attempts: for each, one row per delivery in `attempts` and the
/// deliveries moved on (delivered, pending again, dead or dry_run); two statements each,
/// whatever the number of deliveries (a Legion batch has 50).
pub(super) async fn record(
    conn: &mut PgConnection,
    attempts: &[(Vec<i64>, Attempt)],
) -> Result<(), sqlx::Error> {
    for (deliveries, attempt) in attempts {
        record_attempt(conn, deliveries, attempt).await?;
    }
    Ok(())
}

async fn record_attempt(
    conn: &mut PgConnection,
    deliveries: &[i64],
    attempt: &Attempt,
) -> Result<(), sqlx::Error> {
    let now = attempt.started_at_ms + attempt.duration_ms;
    let outcome = AttemptOutcome::from(&attempt.recorded);
    let response = match &attempt.recorded {
        Recorded::Delivered { response, .. } => response,
        Recorded::Retry { reason, .. } | Recorded::Dead { reason } | Recorded::Split { reason } => {
            reason
        }
        Recorded::DryRun { request } => request,
    };
    sqlx::query(
        "INSERT INTO attempts \
         (delivery_id, started_at, duration_ms, outcome, http_status, response) \
         SELECT id, $2, $3, $4, $5, $6 FROM unnest($1::bigint[]) AS id",
    )
    .bind(deliveries)
    .bind(attempt.started_at_ms)
    .bind(attempt.duration_ms)
    .bind(outcome.as_str())
    .bind(attempt.http_status.map(i32::from))
    .bind(response)
    .execute(&mut *conn)
    .await?;
    let moved = match &attempt.recorded {
        Recorded::Delivered { conversion_id, .. } => sqlx::query(
            "UPDATE deliveries SET status = $1, conversion_id = $2, \
             lease_until = NULL, last_error = NULL, updated_at = $3 WHERE id = ANY($4)",
        )
        .bind(DeliveryStatus::Delivered.as_str())
        .bind(conversion_id),
        Recorded::Retry {
            next_attempt_at_ms,
            reason,
        } => sqlx::query(
            "UPDATE deliveries SET status = $1, next_attempt_at = $2, last_error = $3, \
             lease_until = NULL, updated_at = $4 WHERE id = ANY($5)",
        )
        .bind(DeliveryStatus::Pending.as_str())
        .bind(next_attempt_at_ms)
        .bind(reason),
        Recorded::Dead { reason } => sqlx::query(
            "UPDATE deliveries SET status = $1, last_error = $2, \
             lease_until = NULL, updated_at = $3 WHERE id = ANY($4)",
        )
        .bind(DeliveryStatus::Dead.as_str())
        .bind(reason),
        Recorded::DryRun { request } => sqlx::query(
            "UPDATE deliveries SET status = $1, request = $2, \
             lease_until = NULL, updated_at = $3 WHERE id = ANY($4)",
        )
        .bind(DeliveryStatus::DryRun.as_str())
        .bind(request),
        // Each is sent again alone: its own attempt moves it on.
        Recorded::Split { .. } => return Ok(()),
    };
    moved.bind(now).bind(deliveries).execute(conn).await?;
    Ok(())
}
