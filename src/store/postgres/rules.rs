//! The delivery rules of the PostgreSQL backend, stated as the SQLite backend's
//! (`store/sqlite/rules.rs`) and pinned by the same contract suite: what holds a delivery
//! back, how a waiting delivery moves on, what the retention purge removes, what a replay
//! may touch, and how a lease is given back. Each runs inside a transaction its caller
//! opens ([`super::PostgresStore`]); several instances may run them at once, and row locks
//! (`FOR UPDATE`, the claim's `SKIP LOCKED`) keep each delivery in one transaction's hands.

use std::sync::LazyLock;

use sqlx::{PgConnection, Row};

use crate::domain::{DeliveryStatus, Operation, SkipKind, WebhookStatus};
use crate::store::{Cancelled, DeliveryFilter, Requeued, Touched};

use DeliveryStatus::{Dead, Delivered, DryRun, InFlight, Pending, Skipped, Waiting};

/// `'a', 'b'` for an SQL `IN (…)`: the domain's own words, never outside input.
pub(super) fn words<W: std::fmt::Display>(words: impl IntoIterator<Item = W>) -> String {
    let quoted: Vec<String> = words.into_iter().map(|w| format!("'{w}'")).collect();
    quoted.join(", ")
}

/// [`words`] of the skip kinds for which `which` holds.
fn kinds(which: impl Fn(SkipKind) -> bool) -> String {
    words(SkipKind::ALL.into_iter().filter(|kind| which(*kind)))
}

/// **Hold-back.** The condition, on a delivery `d`, that it is not held back: the
/// deliveries of one mapping that need the same delivery (a conversion's status updates)
/// go out one at a time, in the order they were made, so one waits while an older one is
/// unfinished ([`DeliveryStatus::UNFINISHED`]). Across instances too: the older one is
/// unfinished while any instance holds it in flight, so no other instance claims the newer.
pub(super) static NOT_HELD_BACK: LazyLock<String> = LazyLock::new(|| {
    format!(
        "(d.needs_key IS NULL OR NOT EXISTS (SELECT 1 FROM deliveries e \
             WHERE e.needs_mapping = d.needs_mapping AND e.needs_key = d.needs_key \
             AND e.mapping = d.mapping AND e.id < d.id \
             AND e.status IN ({})))",
        words(DeliveryStatus::UNFINISHED)
    )
});

/// What a waiting delivery's need ended as when it will never be made: the delivery it
/// needs failed, was skipped, ran dry, or was cancelled.
const NEED_NOT_MADE: &[DeliveryStatus] = &[Dead, Skipped, DryRun, DeliveryStatus::Cancelled];

/// **Superseded.** A waiting delivery is skipped when a later delivery of the same mapping
/// needing the same was delivered: sent now, the older one would undo it.
static SUPERSEDED: LazyLock<String> = LazyLock::new(|| {
    format!(
        "UPDATE deliveries AS w SET status = '{Skipped}', skip_kind = '{superseded}', \
           updated_at = $1, \
           last_error = 'superseded: a later delivery of this mapping for the same ' || \
             w.needs_mapping || ' was delivered' \
         WHERE w.destination = $2 AND w.status = '{Waiting}' AND EXISTS \
           (SELECT 1 FROM deliveries AS e WHERE e.needs_mapping = w.needs_mapping \
            AND e.needs_key = w.needs_key AND e.mapping = w.mapping AND e.id > w.id \
            AND e.status = '{Delivered}')",
        superseded = SkipKind::Superseded
    )
});

/// **Waiting → pending.** Once the delivery it needs is delivered (with the conversion id,
/// for an operation that cannot go without one), a waiting delivery takes that delivery's
/// conversion id and is due from when it was made (or requeued).
static READY: LazyLock<String> = LazyLock::new(|| {
    format!(
        "UPDATE deliveries AS w SET status = '{Pending}', updated_at = $1, \
           conversion_id = (SELECT n.conversion_id FROM deliveries AS n \
                            WHERE n.mapping = w.needs_mapping AND n.key = w.needs_key) \
         WHERE w.destination = $2 AND w.status = '{Waiting}' AND EXISTS \
           (SELECT 1 FROM deliveries AS n WHERE n.mapping = w.needs_mapping \
            AND n.key = w.needs_key AND n.status = '{Delivered}' \
            AND (n.conversion_id IS NOT NULL OR w.operation <> $3))"
    )
});

/// **Waiting → skipped, need not made.** The delivery it needs will never be made, or was
/// made but answered without the conversion id this one needs.
static NEED_FAILED: LazyLock<String> = LazyLock::new(|| {
    format!(
        "UPDATE deliveries AS w SET status = '{Skipped}', skip_kind = '{unmet}', \
           updated_at = $1, last_error = (SELECT CASE n.status \
               WHEN '{Delivered}' THEN 'the delivery it needs was made, but its answer had no \
                 conversion id' \
               WHEN '{cancelled}' THEN 'the delivery it needs (' || n.id || ') was cancelled \
                 by an operator' \
               ELSE 'the delivery it needs was not made (' || n.status || ')' END \
             FROM deliveries AS n \
             WHERE n.mapping = w.needs_mapping AND n.key = w.needs_key) \
         WHERE w.destination = $2 AND w.status = '{Waiting}' AND EXISTS \
           (SELECT 1 FROM deliveries AS n WHERE n.mapping = w.needs_mapping \
            AND n.key = w.needs_key AND (n.status IN ({not_made}) \
              OR (n.status = '{Delivered}' AND n.conversion_id IS NULL AND w.operation = $3)))",
        not_made = words(NEED_NOT_MADE),
        unmet = SkipKind::UnmetNeed,
        cancelled = DeliveryStatus::Cancelled,
    )
});

/// **Waiting → skipped, need never appeared** within the waiting timeout (made at or
/// before $3).
static NEED_NEVER_CAME: LazyLock<String> = LazyLock::new(|| {
    format!(
        "UPDATE deliveries AS w SET status = '{Skipped}', skip_kind = '{unmet}', \
           updated_at = $1, \
           last_error = 'nothing to update: the delivery it needs never appeared' \
         WHERE w.destination = $2 AND w.status = '{Waiting}' AND w.created_at <= $3 \
           AND NOT EXISTS (SELECT 1 FROM deliveries AS n \
             WHERE n.mapping = w.needs_mapping AND n.key = w.needs_key)",
        unmet = SkipKind::UnmetNeed
    )
});

/// Whether `destination` has a waiting delivery: most never have one.
pub(super) async fn has_waiting(
    conn: &mut PgConnection,
    destination: &str,
) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM deliveries WHERE destination = $1 AND status = $2)",
    )
    .bind(destination)
    .bind(Waiting.as_str())
    .fetch_one(conn)
    .await
}

/// Moves the `waiting` deliveries of `destination` on (see
/// `Store::release_waiting_deliveries`): superseded first, then ready, then skipped.
/// Returns how many became due.
pub(super) async fn release_waiting(
    conn: &mut PgConnection,
    destination: &str,
    now_ms: i64,
    waiting_timeout_ms: i64,
) -> Result<u64, sqlx::Error> {
    let needs_id = Operation::ScalefUpdateConversionStatus;
    debug_assert!(needs_id.needs_conversion_id());
    let needs_id = needs_id.as_str();
    sqlx::query(SUPERSEDED.as_str())
        .bind(now_ms)
        .bind(destination)
        .execute(&mut *conn)
        .await?;
    let ready = sqlx::query(READY.as_str())
        .bind(now_ms)
        .bind(destination)
        .bind(needs_id)
        .execute(&mut *conn)
        .await?
        .rows_affected();
    sqlx::query(NEED_FAILED.as_str())
        .bind(now_ms)
        .bind(destination)
        .bind(needs_id)
        .execute(&mut *conn)
        .await?;
    sqlx::query(NEED_NEVER_CAME.as_str())
        .bind(now_ms)
        .bind(destination)
        .bind(now_ms - waiting_timeout_ms)
        .execute(&mut *conn)
        .await?;
    Ok(ready)
}

/// How many webhooks one step of the retention purge looks at; each step is a transaction
/// of its own, so that no step holds its locks for long.
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

/// The webhooks a purge step looks at: not yet purged (the partial index
/// `webhooks_unpurged`, whose condition this text repeats).
static PURGE_CANDIDATES: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT received_at, id FROM webhooks \
         WHERE status <> '{purged}' AND received_at < $1 AND (received_at, id) > ($2, $3) \
         ORDER BY received_at, id LIMIT $4",
        purged = WebhookStatus::Purged
    )
});

/// **Retention.** Of the webhooks looked at, the attempts and payloads of deliveries that
/// are done go, and a webhook whose deliveries are all done loses its body and headers and
/// becomes `purged`. Rows, dedupe ids and keys stay, so nothing is delivered twice.
static PURGE: LazyLock<[String; 3]> = LazyLock::new(|| {
    let done = words(DeliveryStatus::DONE);
    [
        format!(
            "DELETE FROM attempts WHERE delivery_id IN (SELECT id FROM deliveries \
             WHERE webhook_id = ANY($1) AND status IN ({done}))"
        ),
        format!(
            "UPDATE deliveries SET payload = 'null', request = NULL \
             WHERE webhook_id = ANY($1) AND payload <> 'null' AND status IN ({done})"
        ),
        format!(
            "UPDATE webhooks SET body = ''::bytea, headers = '{{}}', status = '{purged}' \
             WHERE id = ANY($1) AND NOT EXISTS \
             (SELECT 1 FROM deliveries AS d WHERE d.webhook_id = webhooks.id \
              AND d.status NOT IN ({done}))",
            purged = WebhookStatus::Purged
        ),
    ]
});

/// One step of the retention purge: the next `step` webhooks not yet purged and received
/// before `cutoff_ms`, after `cursor`. Returns how many it purged and, unless it looked at
/// fewer than `step`, where the next step starts.
pub(super) async fn purge_step(
    conn: &mut PgConnection,
    cutoff_ms: i64,
    cursor: PurgeCursor,
    step: i64,
) -> Result<(u64, Option<PurgeCursor>), sqlx::Error> {
    let candidates: Vec<(i64, i64)> = sqlx::query_as(PURGE_CANDIDATES.as_str())
        .bind(cutoff_ms)
        .bind(cursor.received_at)
        .bind(cursor.id)
        .bind(step)
        .fetch_all(&mut *conn)
        .await?;
    let Some(&(received_at, id)) = candidates.last() else {
        return Ok((0, None));
    };
    let ids: Vec<i64> = candidates.iter().map(|c| c.1).collect();
    let [attempts, payloads, webhooks] = &*PURGE;
    sqlx::query(attempts.as_str())
        .bind(&ids)
        .execute(&mut *conn)
        .await?;
    sqlx::query(payloads.as_str())
        .bind(&ids)
        .execute(&mut *conn)
        .await?;
    let purged = sqlx::query(webhooks.as_str())
        .bind(&ids)
        .execute(&mut *conn)
        .await?
        .rows_affected();
    let next = (candidates.len() as i64 >= step).then_some(PurgeCursor { received_at, id });
    Ok((purged, next))
}

/// The condition of a [`DeliveryFilter`] over `deliveries`, bound as $1 status, $2
/// destination, $3 since, $4 webhook, $6 until, $7 id, $8 mapping, $9 before (the cursor);
/// $5 is the limit (NULL for none), and a statement's own values start at $10. Every field
/// set must hold; an unset one matches everything.
pub(super) const FILTER_SQL: &str = "($1::text IS NULL OR status = $1) \
     AND ($2::text IS NULL OR destination = $2) \
     AND ($3::bigint IS NULL OR created_at >= $3) AND ($6::bigint IS NULL OR created_at < $6) \
     AND ($4::bigint IS NULL OR webhook_id = $4) AND ($7::bigint IS NULL OR id = $7) \
     AND ($8::text IS NULL OR mapping = $8) AND ($9::bigint IS NULL OR id < $9)";

/// Binds a [`DeliveryFilter`]'s values as [`FILTER_SQL`] and `LIMIT $5` expect them.
macro_rules! bind_filter {
    ($query:expr, $filter:expr) => {{
        let filter: &$crate::store::DeliveryFilter = $filter;
        $query
            .bind(filter.status.map(|s| s.as_str()))
            .bind(filter.destination.as_deref())
            .bind(filter.since_ms)
            .bind(filter.webhook_id.map(|id| id.0))
            .bind(filter.limit)
            .bind(filter.until_ms)
            .bind(filter.id.map(|id| id.0))
            .bind(filter.mapping.as_deref())
            .bind(filter.before_id.map(|id| id.0))
    }};
}
pub(super) use bind_filter;

/// **Replay.** What a replay may touch: matching deliveries in a replayable state
/// ([`DeliveryStatus::REPLAYABLE`]), or cancelled when the filter names the id ($7),
/// skipped ones only of a replayable kind ([`SkipKind::replayable`]: never a mapping's
/// skip), whose payload the retention purge left ($10 `true`), or those it removed ($10
/// `false`, to count them). Locked, so that no claim or record of another instance moves
/// them meanwhile.
static REPLAYABLE: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT id, needs_mapping IS NOT NULL AS needs FROM deliveries WHERE {FILTER_SQL} \
         AND (status IN ({}) OR (status = '{cancelled}' AND $7::bigint IS NOT NULL)) \
         AND (skip_kind IS NULL OR skip_kind IN ({})) \
         AND (payload <> 'null') = $10 ORDER BY id LIMIT $5 FOR UPDATE",
        words(DeliveryStatus::REPLAYABLE),
        kinds(|kind| kind.replayable()),
        cancelled = DeliveryStatus::Cancelled,
    )
});

/// **Replay.** A requeued delivery is due now with a fresh retry schedule: `pending`, or
/// `waiting` when it needs another delivery.
static REQUEUE: LazyLock<String> = LazyLock::new(|| {
    format!(
        "UPDATE deliveries SET attempts = 0, next_attempt_at = $1, lease_until = NULL, \
           updated_at = $1, skip_kind = NULL, \
           status = CASE WHEN needs_mapping IS NULL THEN '{Pending}' ELSE '{Waiting}' END, \
           conversion_id = CASE WHEN needs_mapping IS NULL THEN conversion_id END \
         WHERE id = ANY($2) RETURNING id, mapping, destination"
    )
});

/// **Replay re-arms.** A status update skipped because its conversion was not made waits
/// for it again when the conversion is requeued.
static REARM: LazyLock<String> = LazyLock::new(|| {
    format!(
        "UPDATE deliveries AS w SET status = '{Waiting}', skip_kind = NULL, attempts = 0, \
           conversion_id = NULL, next_attempt_at = $1, updated_at = $1 \
         WHERE w.status = '{Skipped}' AND w.skip_kind IN ({}) AND w.payload <> 'null' \
           AND EXISTS (SELECT 1 FROM deliveries AS n \
             WHERE n.id = ANY($2) \
             AND n.mapping = w.needs_mapping AND n.key = w.needs_key)",
        kinds(|kind| kind.rearmed_with_its_need())
    )
});

/// Puts matching deliveries back in the queue (see `Store::requeue_deliveries`); returns
/// what it did and the deliveries it requeued.
pub(super) async fn requeue(
    conn: &mut PgConnection,
    filter: &DeliveryFilter,
    now_ms: i64,
) -> Result<(Requeued, Touched), sqlx::Error> {
    let chosen = replayable(conn, filter, true, filter.limit).await?;
    // Counted without the limit: every one a replay cannot send.
    let purged = replayable(conn, filter, false, None).await?.len() as u64;
    let waiting = chosen.iter().filter(|(_, needs)| *needs).count() as u64;
    let ids: Vec<i64> = chosen.iter().map(|(id, _)| *id).collect();
    let touched = changed(conn, REQUEUE.as_str(), now_ms, &ids).await?;
    let rearmed = sqlx::query(REARM.as_str())
        .bind(now_ms)
        .bind(&ids)
        .execute(&mut *conn)
        .await?
        .rows_affected();
    let requeued = Requeued {
        requeued: touched.ids.len() as u64,
        waiting,
        rearmed,
        purged,
    };
    Ok((requeued, touched))
}

/// Runs `update` (bound to `now_ms` and `ids`), which returns the id, mapping and
/// destination of each row it changes: what it changed.
async fn changed(
    conn: &mut PgConnection,
    update: &'static str,
    now_ms: i64,
    ids: &[i64],
) -> Result<Touched, sqlx::Error> {
    let rows: Vec<(i64, String, String)> = sqlx::query_as(update)
        .bind(now_ms)
        .bind(ids)
        .fetch_all(conn)
        .await?;
    Ok(Touched::from_rows(rows))
}

async fn replayable(
    conn: &mut PgConnection,
    filter: &DeliveryFilter,
    kept: bool,
    limit: Option<i64>,
) -> Result<Vec<(i64, bool)>, sqlx::Error> {
    let filter = DeliveryFilter {
        limit,
        ..filter.clone()
    };
    let rows = bind_filter!(sqlx::query(REPLAYABLE.as_str()), &filter)
        .bind(kept)
        .fetch_all(&mut *conn)
        .await?;
    rows.iter()
        .map(|row| Ok((row.try_get("id")?, row.try_get("needs")?)))
        .collect()
}

/// **Cancel.** What a cancel may touch: matching deliveries an operator may cancel
/// ([`DeliveryStatus::CANCELLABLE`]: pending, waiting or dead). Locked, so that no claim
/// of another instance takes them meanwhile.
static CANCELLABLE: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT id FROM deliveries WHERE {FILTER_SQL} AND status IN ({}) \
         ORDER BY id LIMIT $5 FOR UPDATE",
        words(DeliveryStatus::CANCELLABLE),
    )
});

/// **Cancel.** A cancelled delivery is never claimed (it is neither pending nor in flight)
/// and holds nothing back (it is not unfinished); its attempts and last error stay.
static CANCEL: LazyLock<String> = LazyLock::new(|| {
    format!(
        "UPDATE deliveries SET status = '{cancelled}', lease_until = NULL, updated_at = $1 \
         WHERE id = ANY($2) RETURNING id, mapping, destination",
        cancelled = DeliveryStatus::Cancelled,
    )
});

/// **Cancel skips what waits for it.** A delivery waiting for a cancelled one (a Scalef
/// status update for its conversion) will not get it: it is skipped, an unmet need (so a
/// replay naming the cancelled one re-arms it), the reason naming the cancel.
static SKIP_WAITING_FOR_CANCELLED: LazyLock<String> = LazyLock::new(|| {
    format!(
        "UPDATE deliveries AS w SET status = '{Skipped}', skip_kind = '{unmet}', \
           updated_at = $1, last_error = (SELECT 'the delivery it needs (' || n.id || \
             ') was cancelled by an operator' FROM deliveries AS n \
             WHERE n.mapping = w.needs_mapping AND n.key = w.needs_key) \
         WHERE w.status = '{Waiting}' AND EXISTS (SELECT 1 FROM deliveries AS n \
           WHERE n.id = ANY($2) \
           AND n.mapping = w.needs_mapping AND n.key = w.needs_key)",
        unmet = SkipKind::UnmetNeed,
    )
});

/// Cancels matching deliveries (see `Store::cancel_deliveries`); returns what it did and
/// the deliveries it cancelled (a newer delivery a cancelled one held back may now be due
/// at their destinations).
pub(super) async fn cancel(
    conn: &mut PgConnection,
    filter: &DeliveryFilter,
    now_ms: i64,
) -> Result<(Cancelled, Touched), sqlx::Error> {
    let ids: Vec<i64> = bind_filter!(sqlx::query_scalar(CANCELLABLE.as_str()), filter)
        .fetch_all(&mut *conn)
        .await?;
    let touched = changed(conn, CANCEL.as_str(), now_ms, &ids).await?;
    let skipped = sqlx::query(SKIP_WAITING_FOR_CANCELLED.as_str())
        .bind(now_ms)
        .bind(&ids)
        .execute(&mut *conn)
        .await?
        .rows_affected();
    let cancelled = Cancelled {
        cancelled: touched.ids.len() as u64,
        skipped,
    };
    Ok((cancelled, touched))
}

/// **Lease given back.** A delivery still `in_flight` is `pending` again and due now, its
/// unfinished attempt uncounted (see `Store::release_leases`).
static RELEASE_LEASES: LazyLock<String> = LazyLock::new(|| {
    format!(
        "UPDATE deliveries SET status = '{Pending}', lease_until = NULL, \
         attempts = GREATEST(attempts - 1, 0), next_attempt_at = $1, updated_at = $1 \
         WHERE status = '{InFlight}' AND id = ANY($2) RETURNING destination"
    )
});

/// Gives up the leases; returns the destinations of the deliveries released.
pub(super) async fn release_leases(
    conn: &mut PgConnection,
    deliveries: &[i64],
    now_ms: i64,
) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(RELEASE_LEASES.as_str())
        .bind(now_ms)
        .bind(deliveries)
        .fetch_all(conn)
        .await
}
