//! One round: claim due deliveries (or take the round claimed ahead), send them
//! `concurrency` requests at a time, and record all their attempts in one transaction: the
//! store sees two writes per round, not two per request, so that deliveries do not starve
//! ingest of SQLite's single writer. A full round claims the next with its record, in that
//! same write. A request not yet started when the circuit opens or the service stops is not
//! sent: its lease is released. A batch of several deliveries that the destination refuses is
//! sent again one delivery a request, in the same round, so that one bad Legion event does
//! not kill the 49 beside it.

use tokio::sync::watch;

use super::held::{Attempts, Release};
use super::schedule::millis;
use super::{Next, RoundReport, Worker};
use crate::store::{ClaimedDelivery, Recorded, StoreError};

/// What [`Worker::send_all`] did with a round.
struct Sent {
    /// The attempts made, in the order they finished.
    attempts: Attempts,
    /// The deliveries of the requests not started, with their mappings.
    not_started: Vec<(i64, String)>,
    /// Whether the shutdown grace ran out: the requests not finished were given up, and
    /// their deliveries are in neither list (still held).
    abandoned: bool,
}

impl Worker {
    /// Sends one round, the one claimed ahead if there is one, else what it claims, after
    /// moving `waiting` deliveries on when `release_waiting`; records its attempts, with the
    /// next round's claim when this one was full (unless `shutdown` came meanwhile).
    pub(super) async fn round(
        &self,
        release_waiting: bool,
        shutdown: &watch::Receiver<bool>,
    ) -> Result<RoundReport, StoreError> {
        let ahead = self.held.take_ahead();
        let destination = &self.sender.destination_id;
        let lease_ms = millis(self.delivery.lease);
        let now = self.clock.now_ms();
        if release_waiting {
            let released = self
                .store
                .release_waiting_deliveries(destination, now, millis(self.delivery.waiting_timeout))
                .await;
            // A round claimed ahead is sent all the same (returning here would drop it, and
            // its leases would have to expire); the next release tries again.
            if let Err(err) = released {
                if ahead.is_empty() {
                    return Err(err);
                }
                tracing::error!(%destination, error = %err, "cannot move waiting deliveries on; sending the round claimed ahead");
            }
        }
        let limit = self.round_size;
        let claimed = if ahead.is_empty() {
            self.store
                .claim_due_deliveries(destination, limit, now, lease_ms)
                .await?
        } else {
            ahead
        };
        if claimed.is_empty() {
            return Ok(RoundReport::default());
        }
        let full = claimed.len() >= limit;
        self.held.hold(&claimed);
        let sent = self.send_all(&claimed, shutdown).await;
        // A full round leaves more due, likely: claim the next with this record (one write,
        // not two), unless the circuit is about to open or the service is stopping (a
        // shutdown whose grace ran out during that write would abort it before the claimed
        // ids are held, and their leases would only expire).
        let recorded = if full && !self.breaker.is_open() && !*shutdown.borrow() {
            self.store
                .record_attempts_and_claim(
                    &sent.attempts,
                    destination,
                    limit,
                    self.clock.now_ms(),
                    lease_ms,
                )
                .await
        } else {
            self.store
                .record_attempts(&sent.attempts)
                .await
                .map(|()| Vec::new())
        };
        let next = recorded.as_deref().unwrap_or_default();
        self.held.settle(&sent.attempts, &sent.not_started, next);
        let attempts = sent.attempts.len();
        if recorded.is_err() {
            // Recorded before the next round claims anything.
            self.held.keep_unrecorded(sent.attempts, &claimed);
        }
        // Only those: the circuit may have closed again meanwhile (an answer in flight
        // came back), and the next round been claimed with the record.
        let mut given_back = self.release(sent.not_started, Release::NotStarted).await;
        if sent.abandoned {
            // What is still held is the requests the grace cut short.
            given_back += self.release_held(Release::GraceOver).await;
        }
        let next = recorded?;
        let report = RoundReport {
            claimed: claimed.len(),
            attempts,
            recorded: attempts,
            given_back,
            claimed_ahead: next.len(),
            next: if full { Next::Now } else { Next::Linger },
        };
        self.held.set_ahead(next);
        Ok(report)
    }

    /// Sends `claimed`, a batch of deliveries a request, `concurrency` requests at a time.
    /// A refused request of several deliveries is sent again one delivery a request
    /// ([`Recorded::Split`]). A request whose turn comes once the circuit is open or
    /// `shutdown` has come is not started. Once `delivery.shutdown_grace` has passed after
    /// `shutdown`, the requests not finished are given up.
    async fn send_all(
        &self,
        claimed: &[ClaimedDelivery],
        shutdown: &watch::Receiver<bool>,
    ) -> Sent {
        use futures::StreamExt as _;
        // At most `concurrency` requests in flight, the split batches' ones included.
        let lanes = tokio::sync::Semaphore::new(self.concurrency);
        let send = |batch| {
            let lanes = &lanes;
            async move {
                let _lane = lanes
                    .acquire()
                    .await
                    .expect("the semaphore is never closed");
                if self.breaker.is_open() || *shutdown.borrow() {
                    return Err(batch);
                }
                Ok(self.sender.request(batch, &self.breaker, &self.clock).await)
            }
        };
        let mut requests: futures::stream::FuturesUnordered<_> =
            claimed.chunks(self.sender.max_batch()).map(send).collect();
        let mut sent = Sent {
            attempts: Vec::with_capacity(requests.len()),
            not_started: Vec::new(),
            abandoned: false,
        };
        let mut stop = shutdown.clone();
        let grace = self.delivery.shutdown_grace;
        let grace_over = async move {
            // A dropped sender is a stop too.
            let _ = stop.wait_for(|stop| *stop).await;
            self.clock.sleep(grace).await;
        };
        tokio::pin!(grace_over);
        loop {
            tokio::select! {
                request = requests.next() => match request {
                    Some(Err(batch)) => sent.not_started.extend(batch.iter().map(|d| (d.id, d.mapping.clone()))),
                    Some(Ok((batch, attempt))) => {
                        if matches!(attempt.recorded, Recorded::Split { .. }) {
                            requests.extend(batch.chunks(1).map(send));
                        }
                        sent.attempts.push((batch.iter().map(|d| d.id).collect(), attempt));
                    }
                    None => return sent,
                },
                () = &mut grace_over => {
                    sent.abandoned = true;
                    return sent;
                }
            }
        }
    }
}
