//! The writer's tests: batches, durability, stopping, and group commits through the store.

use super::super::accept::tests::{column, hold_write_lock, store, webhook};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::super::rounds::tests::writer_connection;
use rusqlite::Connection;
use tokio::sync::oneshot;

use super::batch::Batch;
use super::{Claim, Job, Pending, spawn_writer, stops_writing, write_batch};
use crate::store::{
    Accepted, Attempt, ClaimedDelivery, DeliveryFilter, DeliveryId, DeliveryStatus, Recorded,
    Store, StoreError,
};

/// An attempt that delivered.
fn delivered() -> Attempt {
    Attempt {
        started_at_ms: 10,
        duration_ms: 1,
        http_status: Some(200),
        recorded: Recorded::Delivered {
            response: "ok".into(),
            conversion_id: None,
        },
    }
}

/// Runs the jobs as the writer thread does, and answers them.
fn run_batch(conn: &rusqlite::Connection, mut jobs: Vec<Job>) -> Batch {
    let batch = write_batch(conn, &mut jobs);
    jobs.into_iter().for_each(|job| job.send(&batch.committed));
    batch
}

/// A webhook's job (source `s`, dedupe id and delivery key `id`), and its answer's end.
fn accept(id: &str) -> (Job, oneshot::Receiver<Result<Accepted, StoreError>>) {
    let (reply, answer) = oneshot::channel();
    (Job::Accept(webhook("s", id), Pending::new(reply)), answer)
}

/// A job claiming up to 10 Legion deliveries due at `now_ms`, and its answer's end.
fn claim(
    now_ms: i64,
) -> (
    Job,
    oneshot::Receiver<Result<Vec<ClaimedDelivery>, StoreError>>,
) {
    let (reply, answer) = oneshot::channel();
    let claim = Claim {
        destination: "legion".into(),
        limit: 10,
        now_ms,
        lease_ms: 60_000,
    };
    (Job::Claim(claim, Pending::new(reply)), answer)
}

#[tokio::test]
async fn the_writer_commits_to_the_disk_before_it_answers() {
    let dir = tempfile::tempdir().unwrap();
    let conn = writer_connection(&dir);
    let synchronous: i64 = conn
        .query_row("PRAGMA synchronous", [], |row| row.get(0))
        .unwrap();
    assert_eq!(
        synchronous, 2,
        "FULL: a commit returns once the WAL is synced"
    );
    let path = conn.path().unwrap().to_string();
    let writer = spawn_writer(conn, Arc::default(), Arc::default()).unwrap();
    let (job, answer) = accept("a");
    writer.send(job).await.ok().unwrap();
    let got = answer.await;
    assert!(matches!(got, Ok(Ok(Accepted::Stored { .. }))), "{got:?}");
    // Answered means committed: another connection reads it at once.
    let stored: Vec<String> = column(
        &Connection::open(&path).unwrap(),
        "SELECT dedupe_id FROM webhooks",
    );
    assert_eq!(stored, ["a"]);
}

#[test]
fn only_an_io_error_stops_the_writer() {
    let failure = |code, extended| {
        rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error {
                code,
                extended_code: extended,
            },
            None,
        )
    };
    use rusqlite::ErrorCode::*;
    use rusqlite::ffi::*;
    assert!(stops_writing(&failure(SystemIoFailure, SQLITE_IOERR_FSYNC)));
    assert!(stops_writing(&failure(SystemIoFailure, SQLITE_IOERR_WRITE)));
    assert!(!stops_writing(&failure(DatabaseBusy, SQLITE_BUSY)));
    assert!(!stops_writing(&failure(
        ConstraintViolation,
        SQLITE_CONSTRAINT_UNIQUE
    )));
    assert!(!stops_writing(&failure(DiskFull, SQLITE_FULL)));
}

#[tokio::test]
async fn a_stopped_writer_refuses_every_write_and_ends() {
    let dir = tempfile::tempdir().unwrap();
    let conn = writer_connection(&dir);
    let path = conn.path().unwrap().to_string();
    // As the writer leaves it after a batch failed for an I/O error.
    let stopped = Arc::new(AtomicBool::new(true));
    let writer = spawn_writer(conn, Arc::default(), stopped.clone()).unwrap();
    let accept = |id: &'static str| {
        let writer = writer.clone();
        async move {
            let (reply, answer) = oneshot::channel();
            let job = Job::Accept(webhook("s", id), Pending::new(reply));
            writer.send(job).await.map_err(|_| "not taken")?;
            answer.await.map_err(|_| "not answered")
        }
    };
    let error = accept("a").await.unwrap().unwrap_err();
    assert!(
        error
            .to_string()
            .contains("stopped writing after an I/O error"),
        "{error}"
    );
    assert!(accept("b").await.is_err(), "the writer has ended");
    assert!(stopped.load(Ordering::Acquire));
    let stored: Vec<String> = column(
        &Connection::open(&path).unwrap(),
        "SELECT dedupe_id FROM webhooks",
    );
    assert!(stored.is_empty(), "{stored:?}");
}

#[tokio::test]
async fn a_batch_runs_again_under_savepoints_only_when_a_job_fails() {
    let dir = tempfile::tempdir().unwrap();
    let conn = writer_connection(&dir);
    let stored_id = |id: &str| -> i64 {
        conn.query_row("SELECT id FROM webhooks WHERE dedupe_id = ?", [id], |row| {
            row.get(0)
        })
        .unwrap()
    };

    let ((a, mut a_answer), (b, mut b_answer)) = (accept("a"), accept("b"));
    let batch = run_batch(&conn, vec![a, b]);
    assert!(batch.committed.is_ok() && !batch.retried && batch.succeeded == 2);
    let Ok(Ok(Accepted::Stored {
        webhook_id: a_id, ..
    })) = a_answer.try_recv()
    else {
        panic!("a is stored");
    };
    assert!(matches!(
        b_answer.try_recv(),
        Ok(Ok(Accepted::Stored { .. }))
    ));

    // d's delivery is refused after its webhook row is written.
    conn.execute_batch(
        "CREATE TRIGGER refuse_delivery BEFORE INSERT ON deliveries WHEN NEW.key = 's/d' \
         BEGIN SELECT RAISE(ABORT, 'delivery refused by the test'); END",
    )
    .unwrap();
    let (c, mut c_answer) = accept("c");
    let (claim, mut claimed) = claim(i64::MAX / 2);
    let (d, mut d_answer) = accept("d");
    let (e, mut e_answer) = accept("e");
    let (again, mut again_answer) = accept("a");
    let batch = run_batch(&conn, vec![c, claim, d, e, again]);
    assert!(batch.committed.is_ok());
    assert!(batch.retried, "d failed, so the batch ran again");
    assert_eq!(batch.succeeded, 4);

    let error = d_answer.try_recv().unwrap().unwrap_err().to_string();
    assert!(error.contains("delivery refused by the test"), "{error}");
    // The others are answered with what the committed run wrote.
    for (id, answer) in [("c", &mut c_answer), ("e", &mut e_answer)] {
        let Ok(Ok(Accepted::Stored {
            webhook_id,
            deliveries: 1,
            skipped: 0,
        })) = answer.try_recv()
        else {
            panic!("{id} is stored");
        };
        assert_eq!(webhook_id.0, stored_id(id), "{id}");
    }
    assert_eq!(
        again_answer.try_recv().unwrap().unwrap(),
        Accepted::Duplicate { webhook_id: a_id }
    );
    let claimed: Vec<i64> = claimed
        .try_recv()
        .unwrap()
        .unwrap()
        .iter()
        .map(|d| d.id)
        .collect();
    let in_flight: Vec<i64> = column(
        &conn,
        "SELECT id FROM deliveries WHERE status = 'in_flight' ORDER BY id",
    );
    assert_eq!(claimed, in_flight, "a, b and c's deliveries, once");
    assert_eq!(claimed.len(), 3);
    let webhooks: Vec<String> = column(&conn, "SELECT dedupe_id FROM webhooks ORDER BY id");
    assert_eq!(webhooks, ["a", "b", "c", "e"], "no row of d");
}

#[tokio::test]
async fn a_batch_that_cannot_begin_answers_every_job_and_the_next_batch_commits() {
    let dir = tempfile::tempdir().unwrap();
    let conn = writer_connection(&dir);
    conn.busy_timeout(std::time::Duration::from_millis(10))
        .unwrap();
    // Another process (the CLI beside `serve`) holds the write lock.
    let other = Connection::open(conn.path().unwrap()).unwrap();
    other.execute_batch("BEGIN IMMEDIATE").unwrap();
    let ((a, mut a_answer), (b, mut b_answer)) = (accept("a"), accept("b"));
    let batch = run_batch(&conn, vec![a, b]);
    assert!(batch.committed.is_err());
    assert!(a_answer.try_recv().unwrap().is_err());
    assert!(b_answer.try_recv().unwrap().is_err());
    assert!(conn.is_autocommit(), "no transaction left open");
    other.execute_batch("ROLLBACK").unwrap();

    let (c, mut c_answer) = accept("c");
    run_batch(&conn, vec![c]);
    assert!(matches!(
        c_answer.try_recv(),
        Ok(Ok(Accepted::Stored { .. }))
    ));
    let stored: i64 = conn
        .query_row("SELECT count(*) FROM webhooks", [], |row| row.get(0))
        .unwrap();
    assert_eq!(stored, 1, "only c");
}

#[tokio::test]
async fn a_full_round_is_recorded_and_the_next_claimed_in_one_commit() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir).await;
    for id in ["a", "b", "c"] {
        store.accept(webhook("s", id)).await.unwrap();
    }
    let first = store
        .claim_due_deliveries("legion", 2, 10, 60_000)
        .await
        .unwrap();
    let attempt = delivered();
    let attempts = [(first.iter().map(|d| d.id).collect(), attempt)];
    let before = store.commits();
    let next = store
        .record_attempts_and_claim(&attempts, "legion", 2, 20, 60_000)
        .await
        .unwrap();
    assert_eq!(store.commits() - before, 1);
    assert_eq!(next.len(), 1, "the third delivery, not the two recorded");
    assert!(first.iter().all(|d| d.id != next[0].id));
    let listed = store
        .list_deliveries(&DeliveryFilter::default())
        .await
        .unwrap();
    let statuses: Vec<DeliveryStatus> = listed.iter().rev().map(|d| d.status).collect();
    use DeliveryStatus::{Delivered, InFlight};
    assert_eq!(statuses, [Delivered, Delivered, InFlight]);
}

#[tokio::test]
async fn a_webhook_a_claim_and_a_record_waiting_together_share_one_commit() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir).await;
    store.accept(webhook("s", "a")).await.unwrap();
    let first = store
        .claim_due_deliveries("legion", 10, 10, 60_000)
        .await
        .unwrap();
    assert_eq!(first.len(), 1);
    let before = store.commits();

    // The writer takes one webhook and waits for the write lock; the three writes queue.
    let lock = hold_write_lock(&dir);
    let alone = store.accept(webhook("s", "x"));
    tokio::pin!(alone);
    assert!(futures::poll!(&mut alone).is_pending());
    while store.writer.capacity() < store.writer.max_capacity() {
        tokio::task::yield_now().await;
    }
    let attempt = delivered();
    let attempts = [(vec![first[0].id], attempt)];
    let together = async {
        tokio::join!(
            store.accept(webhook("s", "b")),
            store.claim_due_deliveries("legion", 10, 20, 60_000),
            store.record_attempts(&attempts),
        )
    };
    tokio::pin!(together);
    assert!(futures::poll!(&mut together).is_pending());
    drop(lock);

    alone.await.unwrap();
    let (accepted, claimed, recorded) = together.await;
    assert!(matches!(
        accepted.unwrap(),
        Accepted::Stored { deliveries: 1, .. }
    ));
    // The claim ran after the webhooks queued before it: it leases x's and b's deliveries.
    let claimed = claimed.unwrap();
    assert_eq!(claimed.len(), 2, "{claimed:?}");
    recorded.unwrap();
    assert_eq!(
        store.commits() - before,
        2,
        "x alone, then the three together"
    );
    let first = store
        .get_delivery(DeliveryId(first[0].id))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.summary.status, DeliveryStatus::Delivered);
}
