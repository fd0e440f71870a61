//! The delivery workers' writes: claiming a round's deliveries and recording its attempts.
//! The writer thread ([`super::writer`]) runs them, batched with every other write waiting
//! (the receive path's webhooks included), in one transaction in which a failing one leaves
//! nothing.

use std::sync::LazyLock;

use rusqlite::{Connection, params};

use super::rules;
use crate::store::{
    Attempt, AttemptOutcome, ClaimedDelivery, DeliveryStatus, Recorded, StoreError,
};

/// The claim. Two searches of the (destination, status, next_attempt_at) index, each
/// limited, not one OR: with the OR, SQLite walked every delivery the destination ever had;
/// with the limit only outside, it read and sorted every due delivery, so a backlog (a
/// destination down for an hour, Salekit's 5 requests/s) made every claim, and the writer's
/// commits waiting for it, slower (12 ms a claim at 100,000 due). A delivery held back
/// ([`rules::NOT_HELD_BACK`]) is left out inside each search, so that it never takes a
/// round's place.
static CLAIM: LazyLock<String> = LazyLock::new(|| {
    format!(
        "UPDATE deliveries \
         SET status = '{in_flight}', lease_until = ?1, attempts = attempts + 1, updated_at = ?2 \
         WHERE id IN (SELECT id FROM ( \
             SELECT * FROM (SELECT id, next_attempt_at FROM deliveries d \
                 WHERE destination = ?3 AND status = '{pending}' AND next_attempt_at <= ?2 \
                 AND {not_held_back} ORDER BY next_attempt_at, id LIMIT ?4) \
             UNION ALL \
             SELECT * FROM (SELECT id, next_attempt_at FROM deliveries d \
                 WHERE destination = ?3 AND status = '{in_flight}' AND lease_until < ?2 \
                 AND {not_held_back} ORDER BY next_attempt_at, id LIMIT ?4)) \
           ORDER BY next_attempt_at, id LIMIT ?4) \
         RETURNING id, operation, payload, conversion_id, attempts, mapping, key, created_at",
        in_flight = DeliveryStatus::InFlight,
        pending = DeliveryStatus::Pending,
        not_held_back = *rules::NOT_HELD_BACK,
    )
});

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
    let mut statement = conn.prepare_cached(&CLAIM)?;
    let rows = statement.query_map(
        params![now_ms + lease_ms, now_ms, destination, limit],
        |row| {
            Ok(ClaimedDelivery {
                id: row.get(0)?,
                operation: row.get(1)?,
                payload: row.get(2)?,
                conversion_id: row.get(3)?,
                attempts: row.get(4)?,
                mapping: row.get(5)?,
                key: row.get(6)?,
                created_at_ms: row.get(7)?,
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
    let outcome = AttemptOutcome::from(&attempt.recorded);
    let response = match &attempt.recorded {
        Recorded::Delivered { response, .. } => response,
        Recorded::Retry { reason, .. } | Recorded::Dead { reason } | Recorded::Split { reason } => {
            reason
        }
        Recorded::DryRun { request } => request,
    };
    conn.prepare_cached(
        "INSERT INTO attempts \
         (delivery_id, started_at, duration_ms, outcome, http_status, response) \
         SELECT value, ?, ?, ?, ?, ? FROM json_each(?)",
    )?
    .execute(params![
        attempt.started_at_ms,
        attempt.duration_ms,
        outcome,
        attempt.http_status,
        response,
        ids
    ])?;
    match &attempt.recorded {
        Recorded::Delivered { conversion_id, .. } => conn
            .prepare_cached(
                "UPDATE deliveries SET status = ?, conversion_id = ?, \
                 lease_until = NULL, last_error = NULL, updated_at = ? \
                 WHERE id IN (SELECT value FROM json_each(?))",
            )?
            .execute(params![DeliveryStatus::Delivered, conversion_id, now, ids])?,
        Recorded::Retry {
            next_attempt_at_ms,
            reason,
        } => conn
            .prepare_cached(
                "UPDATE deliveries SET status = ?, next_attempt_at = ?, \
                 last_error = ?, lease_until = NULL, updated_at = ? \
                 WHERE id IN (SELECT value FROM json_each(?))",
            )?
            .execute(params![
                DeliveryStatus::Pending,
                next_attempt_at_ms,
                reason,
                now,
                ids
            ])?,
        Recorded::Dead { reason } => conn
            .prepare_cached(
                "UPDATE deliveries SET status = ?, last_error = ?, \
                 lease_until = NULL, updated_at = ? WHERE id IN (SELECT value FROM json_each(?))",
            )?
            .execute(params![DeliveryStatus::Dead, reason, now, ids])?,
        Recorded::DryRun { request } => conn
            .prepare_cached(
                "UPDATE deliveries SET status = ?, request = ?, \
                 lease_until = NULL, updated_at = ? WHERE id IN (SELECT value FROM json_each(?))",
            )?
            .execute(params![DeliveryStatus::DryRun, request, now, ids])?,
        // Each is sent again alone: its own attempt moves it on.
        Recorded::Split { .. } => 0,
    };
    Ok(())
}

#[cfg(test)]
pub(super) mod tests {
    use rusqlite::StatementStatus;

    use super::*;
    use crate::store::sqlite::SqliteStore;
    use crate::store::sqlite::accept::tests::{store, webhook};
    use crate::store::{DeliveryFilter, Store};

    /// A new database at `dir/name` in journal mode `mode`, opened as the writer opens it.
    fn open_as_writer(
        dir: &tempfile::TempDir,
        name: &str,
        mode: &str,
    ) -> Result<Connection, crate::store::StoreError> {
        let path = dir.path().join(name);
        Connection::open(&path)
            .unwrap()
            .pragma_update(None, "journal_mode", mode)
            .unwrap();
        super::super::open_writer_connection(&path)
    }

    /// A connection set up as the writer's, on a new database in WAL mode (as the pool
    /// leaves the file) with the schema.
    pub(in crate::store::sqlite) fn writer_connection(dir: &tempfile::TempDir) -> Connection {
        let mut conn = open_as_writer(dir, "claims.db", "WAL").unwrap();
        crate::store::sqlite::migrate::migrate(&mut conn).unwrap();
        conn
    }

    /// The claim's work (SQLite VM steps) with `due` pending deliveries.
    fn claim_steps(due: usize) -> i32 {
        let dir = tempfile::tempdir().unwrap();
        let conn = writer_connection(&dir);
        conn.execute(
            "INSERT INTO webhooks (source, platform, topic, dedupe_id, headers, body, status, \
             received_at) VALUES ('s', 'haravan', 't', 'd', '{}', x'7b7d', 'translated', 0)",
            [],
        )
        .unwrap();
        let mut insert = conn
            .prepare(
                "INSERT INTO deliveries (webhook_id, mapping, key, destination, operation, \
                 payload, status, next_attempt_at, created_at, updated_at) \
                 VALUES (1, 'm', ?1, 'salekit', 'op', '{}', 'pending', ?2, 0, 0)",
            )
            .unwrap();
        for i in 0..due {
            insert.execute(params![i.to_string(), i as i64]).unwrap();
        }
        conn.prepare_cached(&CLAIM)
            .unwrap()
            .reset_status(StatementStatus::VmStep);
        let claimed = claim(&conn, "salekit", 4, 1_000_000, 60_000).unwrap();
        let ids: Vec<i64> = claimed.iter().map(|d| d.id).collect();
        assert_eq!(ids, [1, 2, 3, 4], "the oldest due first");
        conn.prepare_cached(&CLAIM)
            .unwrap()
            .get_status(StatementStatus::VmStep)
    }

    #[test]
    fn the_writer_connection_refuses_a_database_not_in_wal_mode() {
        let dir = tempfile::tempdir().unwrap();
        let error = open_as_writer(&dir, "rollback.db", "DELETE").unwrap_err();
        assert!(
            error.to_string().contains("journal mode delete, not WAL"),
            "{error}"
        );
    }

    #[test]
    fn a_claim_reads_what_it_takes_not_the_whole_backlog() {
        let small = claim_steps(10);
        let large = claim_steps(5_000);
        assert!(
            large < small * 2,
            "{large} VM steps with 5,000 due, {small} with 10"
        );
    }

    /// Each worker claims with its own limit and a new time: the statement must stay
    /// compiled. With bound values steering the plan (SQLite's default), every claim was
    /// parsed and planned again, a tenth of the writer's time at 2,000 webhooks/s.
    #[test]
    fn claims_with_new_times_and_limits_reuse_the_compiled_statement() {
        let dir = tempfile::tempdir().unwrap();
        let conn = writer_connection(&dir);
        for (destination, limit, now) in
            [("salekit", 4, 10), ("legion", 200, 20), ("salekit", 4, 30)]
        {
            claim(&conn, destination, limit, now, 60_000).unwrap();
        }
        let recompiled = conn
            .prepare_cached(&CLAIM)
            .unwrap()
            .get_status(StatementStatus::RePrepare);
        assert_eq!(recompiled, 0);
    }

    fn attempt(recorded: Recorded) -> Attempt {
        Attempt {
            started_at_ms: 10,
            duration_ms: 1,
            http_status: Some(200),
            recorded,
        }
    }

    fn delivered(conversion_id: Option<&str>) -> Attempt {
        attempt(Recorded::Delivered {
            response: "ok".into(),
            conversion_id: conversion_id.map(str::to_string),
        })
    }

    /// A Scalef conversion delivered with `conversion_id`, and two deliveries of `operation`
    /// (mapping `status`, keys `approved` then `rejected`) that need it, accepted after it
    /// and moved on from waiting at time 15.
    async fn conversion_and_updates(
        store: &SqliteStore,
        conversion_id: Option<&str>,
        operation: &str,
    ) {
        let mut conversion = webhook("s", "create");
        conversion.deliveries[0].destination = "scalef".into();
        conversion.deliveries[0].mapping = "conversion".into();
        store.accept(conversion).await.unwrap();
        let created = store
            .claim_due_deliveries("scalef", 10, 10, 60_000)
            .await
            .unwrap();
        store
            .record_attempts(&[(vec![created[0].id], delivered(conversion_id))])
            .await
            .unwrap();
        let mut updates = webhook("s", "updates");
        let mut update = updates.deliveries.remove(0);
        update.destination = "scalef".into();
        update.mapping = "status".into();
        update.operation = operation.into();
        update.needs = Some(("conversion".into(), "create".into()));
        for key in ["approved", "rejected"] {
            let mut update = update.clone();
            update.key = key.into();
            updates.deliveries.push(update);
        }
        store.accept(updates).await.unwrap();
        store
            .release_waiting_deliveries("scalef", 15, 60_000)
            .await
            .unwrap();
    }

    /// (status, last error) of the `mapping` deliveries, by id.
    async fn states(store: &SqliteStore, mapping: &str) -> Vec<(String, Option<String>)> {
        let listed = store
            .list_deliveries(&DeliveryFilter::default())
            .await
            .unwrap();
        listed
            .iter()
            .rev()
            .filter(|d| d.mapping == mapping)
            .map(|d| (d.status.as_str().to_string(), d.last_error.clone()))
            .collect()
    }

    const STATUS_UPDATE: &str = "scalef.update_conversion_status";

    /// Two status updates of one conversion: the newer is not claimed, nor reported due,
    /// until the older is finished, however long the older's retry waits.
    #[tokio::test]
    async fn updates_needing_one_delivery_are_claimed_one_at_a_time_oldest_first() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir).await;
        conversion_and_updates(&store, Some("conv-1"), STATUS_UPDATE).await;

        let first = store
            .claim_due_deliveries("scalef", 10, 20, 60_000)
            .await
            .unwrap();
        assert_eq!(first.len(), 1, "only the older: {first:?}");
        assert_eq!(first[0].conversion_id.as_deref(), Some("conv-1"));
        let retry = attempt(Recorded::Retry {
            next_attempt_at_ms: 5_000,
            reason: "503".into(),
        });
        store
            .record_attempts(&[(vec![first[0].id], retry)])
            .await
            .unwrap();
        assert_eq!(
            store.next_due_at("scalef").await.unwrap(),
            Some(5_000),
            "the newer, due now, is held back"
        );
        let none = store
            .claim_due_deliveries("scalef", 10, 30, 60_000)
            .await
            .unwrap();
        assert!(none.is_empty(), "{none:?}");

        let again = store
            .claim_due_deliveries("scalef", 10, 5_000, 60_000)
            .await
            .unwrap();
        assert_eq!(
            again.iter().map(|d| d.id).collect::<Vec<_>>(),
            [first[0].id]
        );
        store
            .record_attempts(&[(vec![first[0].id], delivered(None))])
            .await
            .unwrap();
        let second = store
            .claim_due_deliveries("scalef", 10, 5_001, 60_000)
            .await
            .unwrap();
        assert_eq!(second.len(), 1);
        assert!(second[0].id > first[0].id);
    }

    /// An approval that went dead while its rejection was then delivered, replayed: sent
    /// now, it would undo the rejection. It is skipped instead.
    #[tokio::test]
    async fn a_replayed_update_older_than_one_delivered_is_superseded() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir).await;
        conversion_and_updates(&store, Some("conv-1"), STATUS_UPDATE).await;
        let older = store
            .claim_due_deliveries("scalef", 10, 20, 60_000)
            .await
            .unwrap();
        let dead = attempt(Recorded::Dead {
            reason: "400".into(),
        });
        store
            .record_attempts(&[(vec![older[0].id], dead)])
            .await
            .unwrap();
        let newer = store
            .claim_due_deliveries("scalef", 10, 30, 60_000)
            .await
            .unwrap();
        assert_eq!(newer.len(), 1, "the older is finished (dead)");
        store
            .record_attempts(&[(vec![newer[0].id], delivered(None))])
            .await
            .unwrap();

        let filter = DeliveryFilter {
            status: Some(crate::store::DeliveryStatus::Dead),
            ..DeliveryFilter::default()
        };
        let (requeued, _) = store.requeue_deliveries(&filter, 40).await.unwrap();
        assert_eq!(requeued.waiting, 1, "{requeued:?}");
        store
            .release_waiting_deliveries("scalef", 50, 60_000)
            .await
            .unwrap();
        let states = states(&store, "status").await;
        assert_eq!(states[0].0, "skipped", "{states:?}");
        assert!(states[0].1.as_deref().unwrap().contains("superseded"));
        assert_eq!(states[1].0, "delivered");
    }

    /// A conversion answered without its id: the Scalef status updates that need the id are
    /// skipped with the reason; deliveries of another operation needing it go on.
    #[tokio::test]
    async fn only_the_updates_that_need_a_conversion_id_are_skipped_without_one() {
        for (operation, expected) in [(STATUS_UPDATE, "skipped"), ("http.post", "pending")] {
            let dir = tempfile::tempdir().unwrap();
            let store = store(&dir).await;
            conversion_and_updates(&store, None, operation).await;
            let states = states(&store, "status").await;
            for (status, error) in &states {
                assert_eq!(status, expected, "{operation}: {states:?}");
                if status == "skipped" {
                    assert!(error.as_deref().unwrap().contains("no conversion id"));
                }
            }
        }
    }

    /// Only the deliveries of one mapping hold each other back: another mapping needing the
    /// same conversion goes out beside them.
    #[tokio::test]
    async fn another_mapping_needing_the_same_delivery_is_not_held_back() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir).await;
        conversion_and_updates(&store, Some("conv-1"), STATUS_UPDATE).await;
        let mut other = webhook("s", "other");
        other.deliveries[0].destination = "scalef".into();
        other.deliveries[0].mapping = "other".into();
        other.deliveries[0].needs = Some(("conversion".into(), "create".into()));
        store.accept(other).await.unwrap();
        store
            .release_waiting_deliveries("scalef", 16, 60_000)
            .await
            .unwrap();
        let claimed = store
            .claim_due_deliveries("scalef", 10, 20, 60_000)
            .await
            .unwrap();
        let in_flight = DeliveryFilter {
            status: Some(DeliveryStatus::InFlight),
            ..DeliveryFilter::default()
        };
        let listed = store.list_deliveries(&in_flight).await.unwrap();
        let mappings: Vec<&str> = listed.iter().rev().map(|d| d.mapping.as_str()).collect();
        assert_eq!(claimed.len(), 2);
        assert_eq!(
            mappings,
            ["status", "other"],
            "the approval, not the rejection"
        );
    }
}
