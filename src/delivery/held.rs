//! What a worker holds between a claim and the record of its attempts, and how it gives it
//! back: the leased deliveries, the round claimed ahead, and the attempts whose record
//! failed. Leases are released, not left to expire, whenever deliveries will not be sent
//! (the circuit opened, the service stops, the shutdown grace ran out), so that they are sent
//! at once after the cool-down or at the next start; an attempt that was answered is never
//! released (it would be sent again), but recorded before anything more is claimed.

use std::collections::HashMap;
use std::sync::Mutex;

use super::Worker;
use crate::store::{Attempt, ClaimedDelivery, Recorded, StoreError};

/// Attempts with the ids of the deliveries each was for, as the store records them.
pub(super) type Attempts = Vec<(Vec<i64>, Attempt)>;

#[derive(Default)]
pub(super) struct Held {
    /// Deliveries claimed and not yet recorded, with their mappings: released if the
    /// shutdown grace runs out.
    ids: Mutex<HashMap<i64, String>>,
    /// The next round, claimed with the record of a full one (its ids are in `ids`), sent
    /// by the next round.
    ahead: Mutex<Vec<ClaimedDelivery>>,
    /// Attempts made whose record failed: recorded before anything else is claimed, so a
    /// delivery that was answered is not sent again when its lease expires.
    unrecorded: Mutex<Attempts>,
}

impl Held {
    pub(super) fn hold(&self, claimed: &[ClaimedDelivery]) {
        self.ids
            .lock()
            .expect("held ids")
            .extend(claimed.iter().map(|d| (d.id, d.mapping.clone())));
    }

    /// Recorded or not, the leases of the attempts made are no longer the round's to
    /// release (released, they would be sent again at once), nor those of the deliveries
    /// `not_started` (given back by the round itself); `next`, claimed with the record, is
    /// held instead. A split batch's deliveries stay held until their own attempts finish.
    pub(super) fn settle(
        &self,
        attempts: &Attempts,
        not_started: &[(i64, String)],
        next: &[ClaimedDelivery],
    ) {
        let mut held = self.ids.lock().expect("held ids");
        let finished = attempts
            .iter()
            .filter(|(_, attempt)| !matches!(attempt.recorded, Recorded::Split { .. }));
        for id in finished
            .flat_map(|(ids, _)| ids)
            .chain(not_started.iter().map(|(id, _)| id))
        {
            held.remove(id);
        }
        held.extend(next.iter().map(|d| (d.id, d.mapping.clone())));
    }

    fn take_ids(&self) -> Vec<(i64, String)> {
        self.ids.lock().expect("held ids").drain().collect()
    }

    pub(super) fn take_ahead(&self) -> Vec<ClaimedDelivery> {
        std::mem::take(&mut *self.ahead.lock().expect("ahead"))
    }

    pub(super) fn set_ahead(&self, next: Vec<ClaimedDelivery>) {
        *self.ahead.lock().expect("ahead") = next;
    }

    pub(super) fn keep_unrecorded(&self, attempts: Attempts) {
        self.unrecorded.lock().expect("unrecorded").extend(attempts);
    }

    fn take_unrecorded(&self) -> Attempts {
        std::mem::take(&mut *self.unrecorded.lock().expect("unrecorded"))
    }
}

/// Why a worker gives back the leases it holds.
#[derive(Clone, Copy)]
pub(super) enum Release {
    /// The shutdown grace ran out with requests in flight.
    GraceOver,
    /// The service stops between rounds, with the next round claimed ahead.
    ClaimedAhead,
    /// Requests of the round were not started: the circuit opened, or the service stops.
    NotStarted,
}

impl Worker {
    /// Gives back the leases of every delivery still held, for the reason `why`; how many.
    pub(super) async fn release_held(&self, why: Release) -> usize {
        self.release(self.held.take_ids(), why).await
    }

    /// Gives back the leases of `deliveries` (no longer held; each with its mapping), for the
    /// reason `why`; how many were given back (a release the store refuses is logged: those
    /// leases expire).
    pub(super) async fn release(&self, deliveries: Vec<(i64, String)>, why: Release) -> usize {
        if deliveries.is_empty() {
            return 0;
        }
        let (deliveries, mut mappings): (Vec<i64>, Vec<String>) = deliveries.into_iter().unzip();
        mappings.sort();
        mappings.dedup();
        let what = match why {
            Release::GraceOver => "shutdown grace over: attempts in flight abandoned",
            Release::ClaimedAhead => "stopping: the round claimed ahead is not sent",
            Release::NotStarted => "circuit open or stopping: the rest of the round is not sent",
        };
        let destination = &self.sender.destination_id;
        match self
            .store
            .release_leases(&deliveries, self.clock.now_ms())
            .await
        {
            Ok(released) => tracing::warn!(
                %destination,
                deliveries = ?deliveries,
                ?mappings,
                released,
                "{what}; their leases released, they are sent again at the next start"
            ),
            Err(err) => tracing::error!(
                %destination,
                deliveries = ?deliveries,
                ?mappings,
                error = %err,
                "{what}, and the leases could not be released: they are claimed again when they expire"
            ),
        }
        deliveries.len()
    }

    /// Records the attempts whose record failed before, if any; how many were recorded. On
    /// an error they are kept, and nothing more may be claimed.
    pub(super) async fn record_unrecorded(&self) -> Result<usize, StoreError> {
        let attempts = self.held.take_unrecorded();
        if attempts.is_empty() {
            return Ok(0);
        }
        let destination = &self.sender.destination_id;
        match self.store.record_attempts(&attempts).await {
            Ok(()) => {
                tracing::info!(%destination, attempts = attempts.len(), "attempts recorded after a failed record");
                Ok(attempts.len())
            }
            Err(err) => {
                let deliveries: Vec<i64> =
                    attempts.iter().flat_map(|(ids, _)| ids.clone()).collect();
                tracing::error!(%destination, ?deliveries, error = %err, "cannot record attempts made; nothing more is claimed until they are recorded");
                self.held.keep_unrecorded(attempts);
                Err(err)
            }
        }
    }
}
