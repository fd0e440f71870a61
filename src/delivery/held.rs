//! What a worker holds between a claim and the record of its attempts, and how it gives it
//! back: the leased deliveries, the round claimed ahead, and the attempts whose record
//! failed. Leases are released, not left to expire, whenever deliveries will not be sent
//! (the circuit opened, the service stops, the shutdown grace ran out), so that they are sent
//! at once after the cool-down or at the next start; an attempt that was answered is never
//! released (it would be sent again), but recorded before anything more is claimed.

use std::collections::{BTreeSet, HashMap};
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
    unrecorded: Mutex<Unrecorded>,
}

/// Attempts whose record failed, with the mapping of each of their deliveries (no longer
/// held: the lines about them name their mappings all the same).
#[derive(Default)]
struct Unrecorded {
    attempts: Attempts,
    mappings: HashMap<i64, String>,
}

impl Unrecorded {
    /// The ids of the attempts' deliveries and their mappings (each once, in order), for a
    /// log line.
    fn named(&self) -> (Vec<i64>, Vec<&str>) {
        let deliveries: Vec<i64> = self
            .attempts
            .iter()
            .flat_map(|(ids, _)| ids.iter().copied())
            .collect();
        let mappings: BTreeSet<&str> = deliveries
            .iter()
            .filter_map(|id| self.mappings.get(id).map(String::as_str))
            .collect();
        (deliveries, mappings.into_iter().collect())
    }
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

    /// Keeps `attempts`, whose record failed, with the mappings of their deliveries (found in
    /// `claimed`, the round they were made of).
    pub(super) fn keep_unrecorded(&self, attempts: Attempts, claimed: &[ClaimedDelivery]) {
        let ids: BTreeSet<i64> = attempts
            .iter()
            .flat_map(|(ids, _)| ids.iter().copied())
            .collect();
        let mappings = claimed
            .iter()
            .filter(|d| ids.contains(&d.id))
            .map(|d| (d.id, d.mapping.clone()));
        let mut unrecorded = self.unrecorded.lock().expect("unrecorded");
        unrecorded.mappings.extend(mappings);
        unrecorded.attempts.extend(attempts);
    }

    /// Gives back what [`Held::take_unrecorded`] took, when its record failed again.
    fn keep_unrecorded_again(&self, again: Unrecorded) {
        let mut unrecorded = self.unrecorded.lock().expect("unrecorded");
        unrecorded.mappings.extend(again.mappings);
        unrecorded.attempts.extend(again.attempts);
    }

    fn take_unrecorded(&self) -> Unrecorded {
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
        let unrecorded = self.held.take_unrecorded();
        if unrecorded.attempts.is_empty() {
            return Ok(0);
        }
        let destination = &self.sender.destination_id;
        let count = unrecorded.attempts.len();
        let recorded = self.store.record_attempts(&unrecorded.attempts).await;
        let (deliveries, mappings) = unrecorded.named();
        match recorded {
            Ok(()) => {
                tracing::info!(%destination, ?deliveries, ?mappings, attempts = count, "attempts recorded after a failed record");
                Ok(count)
            }
            Err(err) => {
                tracing::error!(%destination, ?deliveries, ?mappings, error = %err, "cannot record attempts made; nothing more is claimed until they are recorded");
                self.held.keep_unrecorded_again(unrecorded);
                Err(err)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Attempt, Recorded};

    fn attempt(ids: &[i64]) -> (Vec<i64>, Attempt) {
        let attempt = Attempt {
            started_at_ms: 0,
            duration_ms: 1,
            http_status: Some(200),
            recorded: Recorded::Delivered {
                response: "{}".into(),
                conversion_id: None,
            },
        };
        (ids.to_vec(), attempt)
    }

    /// The attempts whose record failed keep the mappings of their deliveries (and only
    /// theirs), also when they fail again and are kept once more.
    #[test]
    fn unrecorded_attempts_keep_the_mappings_of_their_deliveries() {
        let held = Held::default();
        let round = [
            ClaimedDelivery::example(1, "b/legion"),
            ClaimedDelivery::example(2, "a/salekit"),
            ClaimedDelivery::example(3, "c/not-sent"),
        ];
        held.keep_unrecorded(vec![attempt(&[1]), attempt(&[2])], &round);
        let taken = held.take_unrecorded();
        assert_eq!(taken.named(), (vec![1, 2], vec!["a/salekit", "b/legion"]));
        assert!(held.take_unrecorded().attempts.is_empty(), "taken");

        held.keep_unrecorded_again(taken);
        held.keep_unrecorded(
            vec![attempt(&[4, 5])],
            &[
                ClaimedDelivery::example(4, "b/legion"),
                ClaimedDelivery::example(5, "d/http"),
            ],
        );
        assert_eq!(
            held.take_unrecorded().named(),
            (vec![1, 2, 4, 5], vec!["a/salekit", "b/legion", "d/http"])
        );
    }
}
