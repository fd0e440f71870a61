//! The delivery rules of the SQLite backend, stated once: what holds a delivery back, how a
//! waiting delivery moves on (pending, skipped, superseded), what the retention purge
//! removes, what a replay may touch, and how a lease is given back. Every status is the
//! domain's word ([`DeliveryStatus::as_str`], [`WebhookStatus::as_str`]), written into the
//! statement text once (a partial index is used only when its condition's literal is in
//! the query) or bound. The writes here run as jobs of the writer thread (see
//! [`super::writer`]), inside its transaction; their `Store` methods document them.

use std::sync::LazyLock;

use rusqlite::{Connection, params};

use super::reads::{bound, filter_params, filter_sql};
use crate::domain::{DeliveryStatus, Operation, SkipKind, WebhookStatus};
use crate::store::{Cancelled, DeliveryFilter, Requeued, StoreError, Touched};

use DeliveryStatus::{Dead, Delivered, DryRun, InFlight, Pending, Skipped, Waiting};

/// `'a', 'b'` for an SQL `IN (…)`: the domain's own words, never outside input.
fn words<W: std::fmt::Display>(words: impl IntoIterator<Item = W>) -> String {
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
/// unfinished ([`DeliveryStatus::UNFINISHED`]). Else a retried `approved` could land after a
/// later `rejected`, and Scalef would pay the commission of a refunded order.
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
/// needing the same was delivered (an approval replayed after the rejection went out):
/// sent now, the older one would undo it.
static SUPERSEDED: LazyLock<String> = LazyLock::new(|| {
    format!(
        "UPDATE deliveries AS w SET status = '{Skipped}', skip_kind = '{superseded}', \
           updated_at = ?1, \
           last_error = 'superseded: a later delivery of this mapping for the same ' || \
             w.needs_mapping || ' was delivered' \
         WHERE w.destination = ?2 AND w.status = '{Waiting}' AND EXISTS \
           (SELECT 1 FROM deliveries AS e WHERE e.needs_mapping = w.needs_mapping \
            AND e.needs_key = w.needs_key AND e.mapping = w.mapping AND e.id > w.id \
            AND e.status = '{Delivered}')",
        superseded = SkipKind::Superseded
    )
});

/// **Waiting → pending.** Once the delivery it needs is delivered (with the conversion id,
/// for an operation that cannot go without one: [`Operation::needs_conversion_id`]), a
/// waiting delivery takes that delivery's conversion id and is due from when it was made
/// (or requeued), as it was: it waited for another delivery, not for its turn, so it does
/// not go behind what was made after it.
static READY: LazyLock<String> = LazyLock::new(|| {
    format!(
        "UPDATE deliveries AS w SET status = '{Pending}', updated_at = ?1, \
           conversion_id = (SELECT n.conversion_id FROM deliveries AS n \
                            WHERE n.mapping = w.needs_mapping AND n.key = w.needs_key) \
         WHERE w.destination = ?2 AND w.status = '{Waiting}' AND EXISTS \
           (SELECT 1 FROM deliveries AS n WHERE n.mapping = w.needs_mapping \
            AND n.key = w.needs_key AND n.status = '{Delivered}' \
            AND (n.conversion_id IS NOT NULL OR w.operation != ?3))"
    )
});

/// **Waiting → skipped, need not made.** The delivery it needs will never be made
/// ([`NEED_NOT_MADE`]), or was made but answered without the conversion id this one needs.
static NEED_FAILED: LazyLock<String> = LazyLock::new(|| {
    format!(
        "UPDATE deliveries AS w SET status = '{Skipped}', skip_kind = '{unmet}', \
           updated_at = ?1, last_error = (SELECT CASE n.status \
               WHEN '{Delivered}' THEN 'the delivery it needs was made, but its answer had no \
                 conversion id' \
               WHEN '{cancelled}' THEN 'the delivery it needs (' || n.id || ') was cancelled \
                 by an operator' \
               ELSE 'the delivery it needs was not made (' || n.status || ')' END \
             FROM deliveries AS n \
             WHERE n.mapping = w.needs_mapping AND n.key = w.needs_key) \
         WHERE w.destination = ?2 AND w.status = '{Waiting}' AND EXISTS \
           (SELECT 1 FROM deliveries AS n WHERE n.mapping = w.needs_mapping \
            AND n.key = w.needs_key AND (n.status IN ({not_made}) \
              OR (n.status = '{Delivered}' AND n.conversion_id IS NULL AND w.operation = ?3)))",
        not_made = words(NEED_NOT_MADE),
        unmet = SkipKind::UnmetNeed,
        cancelled = DeliveryStatus::Cancelled,
    )
});

/// **Waiting → skipped, need never appeared.** Nothing to update when the delivery it needs
/// never appeared within the waiting timeout (made at or before ?3).
static NEED_NEVER_CAME: LazyLock<String> = LazyLock::new(|| {
    format!(
        "UPDATE deliveries AS w SET status = '{Skipped}', skip_kind = '{unmet}', \
           updated_at = ?1, \
           last_error = 'nothing to update: the delivery it needs never appeared' \
         WHERE w.destination = ?2 AND w.status = '{Waiting}' AND w.created_at <= ?3 \
           AND NOT EXISTS (SELECT 1 FROM deliveries AS n \
             WHERE n.mapping = w.needs_mapping AND n.key = w.needs_key)",
        unmet = SkipKind::UnmetNeed
    )
});

/// Whether `destination` has a waiting delivery: most never have one, and a read (no
/// write job) tells.
pub(super) fn has_waiting(conn: &Connection, destination: &str) -> Result<bool, StoreError> {
    Ok(conn
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM deliveries WHERE destination = ? AND status = ?)",
        )?
        .query_row(params![destination, Waiting], |row| row.get(0))?)
}

/// Moves the `waiting` deliveries of `destination` on (see
/// `Store::release_waiting_deliveries`): superseded first, then ready, then skipped.
pub(super) fn release_waiting(
    conn: &Connection,
    destination: &str,
    now_ms: i64,
    waiting_timeout_ms: i64,
) -> Result<(), StoreError> {
    let needs_id = Operation::ScalefUpdateConversionStatus;
    debug_assert!(needs_id.needs_conversion_id());
    let needs_id = needs_id.as_str();
    conn.prepare_cached(&SUPERSEDED)?
        .execute(params![now_ms, destination])?;
    conn.prepare_cached(&READY)?
        .execute(params![now_ms, destination, needs_id])?;
    conn.prepare_cached(&NEED_FAILED)?
        .execute(params![now_ms, destination, needs_id])?;
    conn.prepare_cached(&NEED_NEVER_CAME)?.execute(params![
        now_ms,
        destination,
        now_ms - waiting_timeout_ms
    ])?;
    Ok(())
}

/// How many webhooks one step of the retention purge looks at: a step is one job of the
/// writer, so the webhooks of its batch wait for it; the purge takes as many steps as it
/// needs.
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

/// The webhooks a purge step looks at: not yet purged, through the partial index
/// `webhooks_unpurged` (whose condition this text must repeat).
static PURGE_CANDIDATES: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT received_at, id FROM webhooks INDEXED BY webhooks_unpurged \
         WHERE status != '{purged}' AND received_at < ?1 AND (received_at, id) > (?2, ?3) \
         ORDER BY received_at, id LIMIT ?4",
        purged = WebhookStatus::Purged
    )
});

/// **Retention.** Of the webhooks looked at, the attempts and payloads of deliveries that
/// are done ([`DeliveryStatus::DONE`]; `dead` is not: an operator may replay it) go, and a
/// webhook whose deliveries are all done loses its body and headers and becomes `purged`.
/// Rows, dedupe ids and keys stay, so nothing is delivered twice.
static PURGE: LazyLock<[String; 3]> = LazyLock::new(|| {
    let done = words(DeliveryStatus::DONE);
    [
        format!(
            "DELETE FROM attempts WHERE delivery_id IN (SELECT id FROM deliveries \
             WHERE webhook_id IN (SELECT value FROM json_each(?)) AND status IN ({done}))"
        ),
        format!(
            "UPDATE deliveries SET payload = 'null', request = NULL \
             WHERE webhook_id IN (SELECT value FROM json_each(?)) AND payload != 'null' \
             AND status IN ({done})"
        ),
        format!(
            "UPDATE webhooks SET body = x'', headers = '{{}}', status = '{purged}' \
             WHERE id IN (SELECT value FROM json_each(?)) AND NOT EXISTS \
             (SELECT 1 FROM deliveries AS d WHERE d.webhook_id = webhooks.id \
              AND d.status NOT IN ({done}))",
            purged = WebhookStatus::Purged
        ),
    ]
});

/// One step of the retention purge (see `Store::purge_before`): the next `step` webhooks not
/// yet purged and received before `cutoff_ms`, after `cursor`. Returns how many it purged
/// and, unless it looked at fewer than `step` (the purge is done), where the next step
/// starts.
///
/// Only webhooks not yet purged are read, through the partial index `webhooks_unpurged`: a
/// purge used to read every webhook older than the cutoff, purged years ago or not, in one
/// transaction, so it grew with all history (about 3 s per million webhooks kept) and every
/// acknowledgement waited for it each hour.
pub(super) fn purge_step(
    conn: &Connection,
    cutoff_ms: i64,
    cursor: PurgeCursor,
    step: i64,
) -> Result<(u64, Option<PurgeCursor>), StoreError> {
    let candidates: Vec<(i64, i64)> = conn
        .prepare_cached(&PURGE_CANDIDATES)?
        .query_map(
            params![cutoff_ms, cursor.received_at, cursor.id, step],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )?
        .collect::<Result<_, _>>()?;
    let Some(&(received_at, id)) = candidates.last() else {
        return Ok((0, None));
    };
    let ids = serde_json::to_string(&candidates.iter().map(|c| c.1).collect::<Vec<_>>())
        .expect("ids serialise");
    let [attempts, payloads, webhooks] = &*PURGE;
    conn.prepare_cached(attempts)?.execute([&ids])?;
    conn.prepare_cached(payloads)?.execute([&ids])?;
    let purged = conn.prepare_cached(webhooks)?.execute([&ids])?;
    let next = (candidates.len() as i64 >= step).then_some(PurgeCursor { received_at, id });
    Ok((purged as u64, next))
}

/// **Replay.** What a replay may touch: matching deliveries in a replayable state
/// ([`DeliveryStatus::REPLAYABLE`]), or cancelled when the filter names the id, skipped
/// ones only of a replayable kind ([`SkipKind::replayable`]: never a mapping's skip), whose
/// payload the retention purge left (`:kept` is `true`), or those it removed (`:kept`
/// `false`, to count them).
static REPLAYABLE: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT id, needs_mapping IS NOT NULL FROM deliveries WHERE {} \
         AND (status IN ({}) OR (status = '{cancelled}' AND :id IS NOT NULL)) \
         AND (skip_kind IS NULL OR skip_kind IN ({})) \
         AND (payload != 'null') = :kept ORDER BY id LIMIT coalesce(:limit, -1)",
        filter_sql!(),
        words(DeliveryStatus::REPLAYABLE),
        kinds(|kind| kind.replayable()),
        cancelled = DeliveryStatus::Cancelled,
    )
});

/// **Replay.** A requeued delivery is due now with a fresh retry schedule: `pending`, or
/// `waiting` when it needs another delivery, and then takes that delivery's answer (the
/// conversion id) afresh once it is delivered.
static REQUEUE: LazyLock<String> = LazyLock::new(|| {
    format!(
        "UPDATE deliveries SET attempts = 0, next_attempt_at = ?1, lease_until = NULL, \
           updated_at = ?1, skip_kind = NULL, \
           status = CASE WHEN needs_mapping IS NULL THEN '{Pending}' ELSE '{Waiting}' END, \
           conversion_id = CASE WHEN needs_mapping IS NULL THEN conversion_id END \
         WHERE id IN (SELECT value FROM json_each(?2)) RETURNING id, mapping, destination"
    )
});

/// **Replay re-arms.** A status update skipped because its conversion was not made (of a
/// kind [`SkipKind::rearmed_with_its_need`]) waits for it again when the conversion is
/// requeued.
static REARM: LazyLock<String> = LazyLock::new(|| {
    format!(
        "UPDATE deliveries AS w SET status = '{Waiting}', skip_kind = NULL, attempts = 0, \
           conversion_id = NULL, next_attempt_at = ?1, updated_at = ?1 \
         WHERE w.status = '{Skipped}' AND w.skip_kind IN ({}) AND w.payload != 'null' \
           AND EXISTS (SELECT 1 FROM deliveries AS n \
             WHERE n.id IN (SELECT value FROM json_each(?2)) \
             AND n.mapping = w.needs_mapping AND n.key = w.needs_key)",
        kinds(|kind| kind.rearmed_with_its_need())
    )
});

/// Puts matching deliveries back in the queue (see `Store::requeue_deliveries`).
pub(super) fn requeue(
    conn: &Connection,
    filter: &DeliveryFilter,
    now_ms: i64,
) -> Result<(Requeued, Touched), StoreError> {
    let replayable = |kept: bool, limit: Option<i64>| -> Result<Vec<(i64, bool)>, StoreError> {
        let filter = DeliveryFilter {
            limit,
            ..filter.clone()
        };
        let mut statement = conn.prepare_cached(&REPLAYABLE)?;
        let mut named = filter_params(&filter);
        named.push((":kept", &kept));
        let named = bound(&statement, named)?;
        let rows = statement
            .query_map(named.as_slice(), |row| Ok((row.get(0)?, row.get(1)?)))?
            .collect::<Result<_, _>>()?;
        Ok(rows)
    };
    let chosen = replayable(true, filter.limit)?;
    // Counted without the limit: every one a replay cannot send.
    let purged = replayable(false, None)?.len() as u64;
    let waiting = chosen.iter().filter(|(_, needs)| *needs).count() as u64;
    let ids: Vec<i64> = chosen.iter().map(|(id, _)| *id).collect();
    let ids = serde_json::to_string(&ids).expect("ids serialise");
    let touched = changed(conn, &REQUEUE, now_ms, &ids)?;
    let rearmed = conn.prepare_cached(&REARM)?.execute(params![now_ms, ids])? as u64;
    let requeued = Requeued {
        requeued: touched.ids.len() as u64,
        waiting,
        rearmed,
        purged,
    };
    Ok((requeued, touched))
}

/// Runs `update` (bound to `now_ms` and the JSON list `ids`), which returns the id, mapping
/// and destination of each row it changes: what it changed.
fn changed(conn: &Connection, update: &str, now_ms: i64, ids: &str) -> Result<Touched, StoreError> {
    let mut statement = conn.prepare_cached(update)?;
    let rows = statement
        .query_map(params![now_ms, ids], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Touched::from_rows(rows))
}

/// **Cancel.** What a cancel may touch: matching deliveries an operator may cancel
/// ([`DeliveryStatus::CANCELLABLE`]: pending, waiting or dead).
static CANCELLABLE: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT id FROM deliveries WHERE {} AND status IN ({}) \
         ORDER BY id LIMIT coalesce(:limit, -1)",
        filter_sql!(),
        words(DeliveryStatus::CANCELLABLE),
    )
});

/// **Cancel.** A cancelled delivery is never claimed (it is neither pending nor in flight)
/// and holds nothing back (it is not unfinished); its attempts and last error stay.
static CANCEL: LazyLock<String> = LazyLock::new(|| {
    format!(
        "UPDATE deliveries SET status = '{cancelled}', lease_until = NULL, updated_at = ?1 \
         WHERE id IN (SELECT value FROM json_each(?2)) RETURNING id, mapping, destination",
        cancelled = DeliveryStatus::Cancelled,
    )
});

/// **Cancel skips what waits for it.** A delivery waiting for a cancelled one (a Scalef
/// status update for its conversion) will not get it: it is skipped, an unmet need (so a
/// replay naming the cancelled one re-arms it), the reason naming the cancel.
static SKIP_WAITING_FOR_CANCELLED: LazyLock<String> = LazyLock::new(|| {
    format!(
        "UPDATE deliveries AS w SET status = '{Skipped}', skip_kind = '{unmet}', \
           updated_at = ?1, last_error = (SELECT 'the delivery it needs (' || n.id || \
             ') was cancelled by an operator' FROM deliveries AS n \
             WHERE n.mapping = w.needs_mapping AND n.key = w.needs_key) \
         WHERE w.status = '{Waiting}' AND EXISTS (SELECT 1 FROM deliveries AS n \
           WHERE n.id IN (SELECT value FROM json_each(?2)) \
           AND n.mapping = w.needs_mapping AND n.key = w.needs_key)",
        unmet = SkipKind::UnmetNeed,
    )
});

/// Cancels matching deliveries (see `Store::cancel_deliveries`).
pub(super) fn cancel(
    conn: &Connection,
    filter: &DeliveryFilter,
    now_ms: i64,
) -> Result<(Cancelled, Touched), StoreError> {
    let mut statement = conn.prepare_cached(&CANCELLABLE)?;
    let named = bound(&statement, filter_params(filter))?;
    let ids: Vec<i64> = statement
        .query_map(named.as_slice(), |row| row.get(0))?
        .collect::<Result<_, _>>()?;
    let ids = serde_json::to_string(&ids).expect("ids serialise");
    let touched = changed(conn, &CANCEL, now_ms, &ids)?;
    let skipped = conn
        .prepare_cached(&SKIP_WAITING_FOR_CANCELLED)?
        .execute(params![now_ms, ids])? as u64;
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
         attempts = max(attempts - 1, 0), next_attempt_at = ?1, updated_at = ?1 \
         WHERE status = '{InFlight}' AND id IN (SELECT value FROM json_each(?2))"
    )
});

pub(super) fn release_leases(
    conn: &Connection,
    deliveries: &[i64],
    now_ms: i64,
) -> Result<u64, StoreError> {
    let ids = serde_json::to_string(deliveries).expect("ids serialise");
    Ok(conn
        .prepare_cached(&RELEASE_LEASES)?
        .execute(params![now_ms, ids])? as u64)
}

#[cfg(test)]
mod tests {
    use crate::store::Store;
    use crate::store::sqlite::accept::tests::{column, file, store, webhook};

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
        let conn = file(&dir);
        conn.execute_batch(
            "UPDATE deliveries SET status = CASE key WHEN 's/w1' THEN 'dead' ELSE 'delivered' END",
        )
        .unwrap();
        assert_eq!(store.purge_in_steps(50, 2).await.unwrap(), 4);
        let purged: Vec<String> = column(
            &conn,
            "SELECT dedupe_id FROM webhooks WHERE status = 'purged' AND body = x'' ORDER BY id",
        );
        assert_eq!(purged, ["w2", "w3", "w4", "w5"]);
        let payloads: Vec<String> = column(&conn, "SELECT payload FROM deliveries ORDER BY id");
        assert_eq!(payloads.iter().filter(|p| *p == "null").count(), 4);
        assert_eq!(store.purge_in_steps(50, 2).await.unwrap(), 0);
        assert_eq!(
            store.purge_before(100).await.unwrap(),
            1,
            "w6, once old enough"
        );
    }
}
