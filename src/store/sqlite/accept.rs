//! The receive path's writes, with group commit: one writer task takes every webhook waiting
//! to be accepted and writes them all in one transaction, each under its own savepoint, so
//! concurrent requests share one fsync and one failing webhook does not fail the others.
//! Nobody is answered before the commit that holds their webhook has returned.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use sqlx::{Connection, QueryBuilder, Sqlite, SqliteConnection, SqlitePool};
use tokio::sync::{Mutex, mpsc, oneshot};

use crate::store::{Accepted, NewDelivery, NewWebhook, StoreError};

/// Most webhooks written by one commit. A commit of this many 5 KiB orders stays well under
/// a millisecond of extra latency for the first of them.
const MAX_BATCH: usize = 256;

/// One webhook to write and where to send what became of it.
pub(super) struct Job {
    pub webhook: NewWebhook,
    pub reply: oneshot::Sender<Result<Accepted, StoreError>>,
}

/// Starts the writer task; it ends when the returned sender (the store) is dropped.
/// `commits` counts the transactions it commits; `gate` is the store's write gate.
pub(super) fn spawn_writer(
    pool: SqlitePool,
    commits: Arc<AtomicU64>,
    gate: Arc<Mutex<()>>,
) -> mpsc::Sender<Job> {
    let (sender, receiver) = mpsc::channel(MAX_BATCH * 4);
    tokio::spawn(run_writer(pool, receiver, commits, gate));
    sender
}

async fn run_writer(
    pool: SqlitePool,
    mut receiver: mpsc::Receiver<Job>,
    commits: Arc<AtomicU64>,
    gate: Arc<Mutex<()>>,
) {
    let mut jobs = Vec::with_capacity(MAX_BATCH);
    // Whatever arrived while the previous commit was syncing (or the workers wrote) forms
    // the next batch.
    while receiver.recv_many(&mut jobs, MAX_BATCH).await > 0 {
        let results = {
            let _gate = gate.lock().await;
            write_batch(&pool, &jobs).await
        };
        if results.iter().any(Result::is_ok) {
            commits.fetch_add(1, Ordering::Relaxed);
        }
        for (job, result) in jobs.drain(..).zip(results) {
            // The request may have gone (client disconnected): its webhook is stored anyway,
            // and the shop's retry is answered as a duplicate.
            let _ = job.reply.send(result);
        }
    }
}

/// Writes the batch in one `BEGIN IMMEDIATE … COMMIT`; returns one result per job.
///
/// Every statement is a round trip to sqlx's SQLite thread, and those round trips, not
/// SQLite, bounded ingest: so the batch is first written with one multi-row insert for its
/// webhooks and one for their deliveries. Only if that fails (a webhook the database
/// refuses) is the batch written again one webhook at a time, each under its own savepoint,
/// so that only the refused one fails.
async fn write_batch(pool: &SqlitePool, jobs: &[Job]) -> Vec<Result<Accepted, StoreError>> {
    let everyone = |error: sqlx::Error| {
        let shared = Arc::new(error);
        jobs.iter()
            .map(|_| Err(StoreError::Batch(shared.clone())))
            .collect()
    };
    let mut tx = match pool.begin_with("BEGIN IMMEDIATE").await {
        Ok(tx) => tx,
        Err(error) => return everyone(error),
    };
    match insert_together(&mut tx, jobs).await {
        Ok(accepted) => {
            return match tx.commit().await {
                Ok(()) => accepted.into_iter().map(Ok).collect(),
                Err(error) => everyone(error),
            };
        }
        Err(error) => {
            tracing::debug!(%error, webhooks = jobs.len(), "batch refused as a whole: writing its webhooks one by one");
            if let Err(error) = tx.rollback().await {
                return everyone(error);
            }
        }
    }
    let mut tx = match pool.begin_with("BEGIN IMMEDIATE").await {
        Ok(tx) => tx,
        Err(error) => return everyone(error),
    };
    let mut results = Vec::with_capacity(jobs.len());
    for job in jobs {
        let mut savepoint = match tx.begin().await {
            Ok(savepoint) => savepoint,
            Err(error) => return everyone(error),
        };
        match insert_webhook(&mut savepoint, &job.webhook).await {
            Ok(accepted) => match savepoint.commit().await {
                Ok(()) => results.push(Ok(accepted)),
                Err(error) => return everyone(error),
            },
            Err(error) => {
                // Only this webhook's rows go; if even that fails, the whole batch does.
                if let Err(rollback) = savepoint.rollback().await {
                    return everyone(rollback);
                }
                results.push(Err(error));
            }
        }
    }
    match tx.commit().await {
        Ok(()) => results,
        Err(error) => everyone(error),
    }
}

/// Most rows in one multi-row insert of deliveries (12 parameters each, well under
/// SQLite's 32,766).
const DELIVERY_ROWS_PER_INSERT: usize = 1000;

/// Writes every webhook of the batch and their deliveries with a few statements, with the
/// same outcome as writing them one after the other in order: a repeat of an earlier webhook
/// (stored before, or earlier in this batch) is a duplicate, and a delivery whose (mapping,
/// key) is taken is not written again.
async fn insert_together(
    conn: &mut SqliteConnection,
    jobs: &[Job],
) -> Result<Vec<Accepted>, StoreError> {
    let headers: Vec<String> = jobs
        .iter()
        .map(|job| serde_json::to_string(&job.webhook.headers).expect("a string map serialises"))
        .collect();
    let mut insert = QueryBuilder::<Sqlite>::new(
        "INSERT INTO webhooks \
         (source, platform, topic, dedupe_id, headers, body, status, error, received_at) ",
    );
    insert.push_values(jobs.iter().zip(&headers), |mut row, (job, headers)| {
        let webhook = &job.webhook;
        row.push_bind(&webhook.source)
            .push_bind(&webhook.platform)
            .push_bind(&webhook.topic)
            .push_bind(&webhook.dedupe_id)
            .push_bind(headers)
            .push_bind(&webhook.body)
            .push_bind(status_of(webhook))
            .push_bind(&webhook.translation_error)
            .push_bind(webhook.received_at_ms);
    });
    // Rows are inserted in order, so of two equal ones in the batch the first is stored.
    insert.push(" ON CONFLICT (source, dedupe_id) DO NOTHING RETURNING id, source, dedupe_id");
    let inserted: Vec<(i64, String, String)> = insert
        .build_query_as()
        .persistent(false)
        .fetch_all(&mut *conn)
        .await?;
    let mut new_ids: HashMap<(String, String), i64> = inserted
        .into_iter()
        .map(|(id, source, dedupe_id)| ((source, dedupe_id), id))
        .collect();
    let mut seen: HashMap<(&str, &str), i64> = HashMap::new();
    let mut accepted = Vec::with_capacity(jobs.len());
    let mut stored: Vec<(usize, i64)> = Vec::new();
    for (index, job) in jobs.iter().enumerate() {
        let webhook = &job.webhook;
        let key = (webhook.source.as_str(), webhook.dedupe_id.as_str());
        if let Some(&webhook_id) = seen.get(&key) {
            accepted.push(Accepted::Duplicate { webhook_id });
        } else if let Some(webhook_id) =
            new_ids.remove(&(webhook.source.clone(), webhook.dedupe_id.clone()))
        {
            seen.insert(key, webhook_id);
            stored.push((index, webhook_id));
            accepted.push(Accepted::Stored {
                webhook_id,
                deliveries: 0,
            });
        } else {
            let webhook_id = stored_id(conn, webhook).await?;
            seen.insert(key, webhook_id);
            accepted.push(Accepted::Duplicate { webhook_id });
        }
    }
    let rows: Vec<(i64, i64, &NewDelivery)> = stored
        .iter()
        .flat_map(|&(index, webhook_id)| {
            let webhook = &jobs[index].webhook;
            webhook
                .deliveries
                .iter()
                .map(move |delivery| (webhook_id, webhook.received_at_ms, delivery))
        })
        .collect();
    let mut written: HashMap<i64, u64> = HashMap::new();
    for chunk in rows.chunks(DELIVERY_ROWS_PER_INSERT) {
        let mut insert = QueryBuilder::<Sqlite>::new(
            "INSERT INTO deliveries \
             (webhook_id, mapping, key, destination, operation, payload, needs_mapping, \
              needs_key, status, next_attempt_at, created_at, updated_at) ",
        );
        insert.push_values(chunk, |mut row, &(webhook_id, now_ms, delivery)| {
            let (needs_mapping, needs_key) = delivery.needs.clone().unzip();
            row.push_bind(webhook_id)
                .push_bind(&delivery.mapping)
                .push_bind(&delivery.key)
                .push_bind(&delivery.destination)
                .push_bind(&delivery.operation)
                .push_bind(&delivery.payload)
                .push_bind(needs_mapping)
                .push_bind(needs_key)
                .push_bind(initial_status(delivery))
                .push_bind(now_ms)
                .push_bind(now_ms)
                .push_bind(now_ms);
        });
        insert.push(" ON CONFLICT (mapping, key) DO NOTHING RETURNING webhook_id");
        let ids: Vec<i64> = insert
            .build_query_scalar()
            .persistent(false)
            .fetch_all(&mut *conn)
            .await?;
        for id in ids {
            *written.entry(id).or_default() += 1;
        }
    }
    for accepted in &mut accepted {
        if let Accepted::Stored {
            webhook_id,
            deliveries,
        } = accepted
        {
            *deliveries = written.get(webhook_id).copied().unwrap_or(0);
        }
    }
    Ok(accepted)
}

/// The id of a webhook stored before under the same (source, dedupe id).
async fn stored_id(conn: &mut SqliteConnection, webhook: &NewWebhook) -> Result<i64, StoreError> {
    Ok(
        sqlx::query_scalar("SELECT id FROM webhooks WHERE source = ? AND dedupe_id = ?")
            .bind(&webhook.source)
            .bind(&webhook.dedupe_id)
            .fetch_one(&mut *conn)
            .await?,
    )
}

fn status_of(webhook: &NewWebhook) -> &'static str {
    match webhook.translation_error {
        None => "translated",
        Some(_) => "untranslated",
    }
}

/// Writes one webhook and its deliveries, unless its (source, dedupe id) is already stored.
async fn insert_webhook(
    conn: &mut SqliteConnection,
    webhook: &NewWebhook,
) -> Result<Accepted, StoreError> {
    let headers = serde_json::to_string(&webhook.headers).expect("a string map serialises");
    let inserted: Option<i64> = sqlx::query_scalar(
        "INSERT INTO webhooks \
         (source, platform, topic, dedupe_id, headers, body, status, error, received_at) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) \
         ON CONFLICT (source, dedupe_id) DO NOTHING RETURNING id",
    )
    .bind(&webhook.source)
    .bind(&webhook.platform)
    .bind(&webhook.topic)
    .bind(&webhook.dedupe_id)
    .bind(headers)
    .bind(&webhook.body)
    .bind(status_of(webhook))
    .bind(&webhook.translation_error)
    .bind(webhook.received_at_ms)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(webhook_id) = inserted else {
        // Stored before, possibly earlier in this very batch.
        let webhook_id = stored_id(conn, webhook).await?;
        return Ok(Accepted::Duplicate { webhook_id });
    };
    let mut deliveries = 0;
    for delivery in &webhook.deliveries {
        deliveries += insert_delivery(conn, webhook_id, delivery, webhook.received_at_ms).await?;
    }
    Ok(Accepted::Stored {
        webhook_id,
        deliveries,
    })
}

/// A delivery starts `waiting` when it needs another one, else `pending`.
pub(super) fn initial_status(delivery: &NewDelivery) -> &'static str {
    if delivery.needs.is_some() {
        "waiting"
    } else {
        "pending"
    }
}

/// Adds a delivery, due at `now_ms`, unless its (mapping, key) is already stored; returns
/// how many rows were written (0 or 1).
pub(super) async fn insert_delivery(
    conn: &mut SqliteConnection,
    webhook_id: i64,
    delivery: &NewDelivery,
    now_ms: i64,
) -> Result<u64, StoreError> {
    let (needs_mapping, needs_key) = delivery.needs.clone().unzip();
    let written = sqlx::query(
        "INSERT INTO deliveries \
         (webhook_id, mapping, key, destination, operation, payload, needs_mapping, \
          needs_key, status, next_attempt_at, created_at, updated_at) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
         ON CONFLICT (mapping, key) DO NOTHING",
    )
    .bind(webhook_id)
    .bind(&delivery.mapping)
    .bind(&delivery.key)
    .bind(&delivery.destination)
    .bind(&delivery.operation)
    .bind(&delivery.payload)
    .bind(needs_mapping)
    .bind(needs_key)
    .bind(initial_status(delivery))
    .bind(now_ms)
    .bind(now_ms)
    .bind(now_ms)
    .execute(&mut *conn)
    .await?;
    Ok(written.rows_affected())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use crate::store::{Accepted, NewDelivery, NewWebhook, SqliteStore, Store};

    fn webhook_with_key(source: &str, dedupe_id: &str, key: &str) -> NewWebhook {
        let mut webhook = webhook(source, dedupe_id);
        webhook.deliveries[0].key = key.to_string();
        webhook
    }

    fn webhook(source: &str, dedupe_id: &str) -> NewWebhook {
        NewWebhook {
            source: source.to_string(),
            platform: "haravan".to_string(),
            topic: "orders/paid".to_string(),
            dedupe_id: dedupe_id.to_string(),
            headers: BTreeMap::new(),
            body: br#"{"id":1}"#.to_vec(),
            received_at_ms: 1,
            deliveries: vec![NewDelivery {
                mapping: "m".to_string(),
                key: dedupe_id.to_string(),
                destination: "legion".to_string(),
                operation: "legion.purchase_event".to_string(),
                payload: "{}".to_string(),
                needs: None,
            }],
            translation_error: None,
        }
    }

    async fn store(dir: &tempfile::TempDir) -> SqliteStore {
        let url = format!("sqlite://{}", dir.path().join("s.db").display());
        SqliteStore::open(&url).await.unwrap()
    }

    // On the current-thread runtime every accept below is queued before the writer runs, so
    // they are one batch, deterministically.
    #[tokio::test]
    async fn concurrent_accepts_share_one_commit() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir).await;
        let before = store.commits();
        let hooks: Vec<NewWebhook> = (0..50).map(|i| webhook("s", &i.to_string())).collect();
        let results = futures::future::join_all(hooks.into_iter().map(|w| store.accept(w))).await;
        let mut ids: Vec<i64> = results
            .into_iter()
            .map(|r| match r.unwrap() {
                Accepted::Stored {
                    webhook_id,
                    deliveries: 1,
                } => webhook_id,
                other => panic!("{other:?}"),
            })
            .collect();
        ids.dedup();
        assert_eq!(ids.len(), 50);
        assert_eq!(store.commits() - before, 1);
    }

    #[tokio::test]
    async fn a_batch_has_the_outcome_of_writing_its_webhooks_one_after_the_other() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir).await;
        let Accepted::Stored { webhook_id: d, .. } = store
            .accept(webhook_with_key("s", "d", "kd"))
            .await
            .unwrap()
        else {
            panic!("d is new");
        };
        let batch = [
            webhook_with_key("s", "a", "k1"),
            webhook_with_key("s", "a", "k1"),
            // Another webhook of the same order: its delivery key is taken.
            webhook_with_key("s", "b", "k1"),
            webhook_with_key("t", "a", "k2"),
            webhook_with_key("s", "d", "kd"),
        ];
        let commits = store.commits();
        let results: Vec<Accepted> =
            futures::future::join_all(batch.into_iter().map(|w| store.accept(w)))
                .await
                .into_iter()
                .map(Result::unwrap)
                .collect();
        assert_eq!(store.commits() - commits, 1, "one batch");
        let Accepted::Stored {
            webhook_id: a,
            deliveries: 1,
        } = results[0]
        else {
            panic!("{results:?}");
        };
        assert_eq!(results[1], Accepted::Duplicate { webhook_id: a });
        assert!(
            matches!(results[2], Accepted::Stored { webhook_id, deliveries: 0 } if webhook_id != a)
        );
        assert!(matches!(results[3], Accepted::Stored { deliveries: 1, .. }));
        assert_eq!(results[4], Accepted::Duplicate { webhook_id: d });
        let keys: Vec<(i64, String)> =
            sqlx::query_as("SELECT webhook_id, key FROM deliveries ORDER BY id")
                .fetch_all(&store.pool)
                .await
                .unwrap();
        assert_eq!(keys.len(), 3);
        assert_eq!(keys[1], (a, "k1".to_string()));
    }

    #[tokio::test]
    async fn a_failing_webhook_leaves_the_rest_of_its_batch_and_duplicates_in_a_batch_agree() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir).await;
        sqlx::query(
            "CREATE TRIGGER refuse BEFORE INSERT ON webhooks WHEN NEW.source = 'bad' \
             BEGIN SELECT RAISE(ABORT, 'refused by the test'); END",
        )
        .execute(&store.pool)
        .await
        .unwrap();
        let batch = [
            webhook("s", "a"),
            webhook("bad", "b"),
            webhook("s", "a"),
            webhook("s", "c"),
        ];
        let results = futures::future::join_all(batch.into_iter().map(|w| store.accept(w))).await;
        let Ok(Accepted::Stored { webhook_id: a, .. }) = results[0] else {
            panic!("{:?}", results[0]);
        };
        let error = results[1].as_ref().unwrap_err().to_string();
        assert!(error.contains("refused by the test"), "{error}");
        assert!(
            matches!(results[2], Ok(Accepted::Duplicate { webhook_id }) if webhook_id == a),
            "{:?}",
            results[2]
        );
        assert!(matches!(
            results[3],
            Ok(Accepted::Stored { deliveries: 1, .. })
        ));
        let sources: Vec<String> = sqlx::query_scalar("SELECT source FROM webhooks ORDER BY id")
            .fetch_all(&store.pool)
            .await
            .unwrap();
        assert_eq!(sources, ["s", "s"]);
        let deliveries: i64 = sqlx::query_scalar("SELECT count(*) FROM deliveries")
            .fetch_one(&store.pool)
            .await
            .unwrap();
        assert_eq!(deliveries, 2);
    }
}
