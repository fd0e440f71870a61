//! The states of a stored webhook and of a delivery, and the moves between them. The store
//! keeps each state as the text [`WebhookStatus::as_str`] / [`DeliveryStatus::as_str`] gives,
//! and every backend makes only the moves [`DeliveryStatus::may_become`] allows.

use serde::{Deserialize, Serialize};

use super::words::words;

/// Where a received webhook stands. A repeated webhook gets no state: it is refused by its
/// (source, dedupe id) and never stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum WebhookStatus {
    /// Stored, not yet translated.
    Accepted,
    /// Every mapping that applies made its delivery.
    Translated,
    /// A mapping failed, or none applied with an error: kept with the error, answered 200.
    Untranslated,
    /// The retention purge removed its body and headers; its ids and keys stay.
    Purged,
}

words!(
    WebhookStatus,
    "webhook status",
    [
        Accepted = "accepted",
        Translated = "translated",
        Untranslated = "untranslated",
        Purged = "purged",
    ]
);

impl WebhookStatus {
    /// Whether a webhook in this state may move to `next`. Re-translation moves a webhook
    /// between `translated` and `untranslated`; a purged one is never translated again.
    pub fn may_become(self, next: WebhookStatus) -> bool {
        use WebhookStatus::*;
        matches!(
            (self, next),
            (Accepted, Translated | Untranslated)
                | (
                    Translated | Untranslated,
                    Translated | Untranslated | Purged
                )
        )
    }

    /// The state a translation leaves a webhook in.
    pub fn after_translation(failed: bool) -> WebhookStatus {
        if failed {
            Self::Untranslated
        } else {
            Self::Translated
        }
    }
}

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    /// Due at its `next_attempt_at`: a first attempt, or a retry scheduled.
    Pending,
    /// Needs another delivery first (a Scalef status update before its conversion's create).
    Waiting,
    /// Leased to a worker until its lease ends; an expired lease is claimed again.
    InFlight,
    /// The destination took it. Final: nothing sends it again, not even a replay.
    Delivered,
    /// Refused, or out of retries; an operator may replay it.
    Dead,
    /// Never sent, with its [`SkipKind`] and reason: the mapping said so, the delivery it
    /// needed was not made, or a later one superseded it.
    Skipped,
    /// The destination has no credentials: the exact request is kept, nothing was sent.
    DryRun,
    /// An operator cancelled it (it was pending, waiting or dead): never sent, and put back
    /// in the queue only by a replay that names its id. The deliveries waiting for it are
    /// skipped, and it no longer holds back the later ones of its mapping.
    Cancelled,
}

words!(
    DeliveryStatus,
    "delivery status",
    [
        Pending = "pending",
        Waiting = "waiting",
        InFlight = "in_flight",
        Delivered = "delivered",
        Dead = "dead",
        Skipped = "skipped",
        DryRun = "dry_run",
        Cancelled = "cancelled",
    ]
);

impl DeliveryStatus {
    /// The state a new delivery starts in: `waiting` when it needs another delivery first.
    pub fn initial(needs_another: bool) -> DeliveryStatus {
        if needs_another {
            Self::Waiting
        } else {
            Self::Pending
        }
    }

    /// The states a delivery's work is done in: nothing is due, and the retention purge may
    /// remove its payload. `dead` is not done: an operator may still replay it. `cancelled`
    /// is: an operator decided it is not to be sent.
    pub const DONE: &'static [DeliveryStatus] = &[
        Self::Delivered,
        Self::Skipped,
        Self::DryRun,
        Self::Cancelled,
    ];

    /// The states a worker has still to finish: a later status update of the same
    /// conversion is held back while an earlier one is in one of them.
    pub const UNFINISHED: &'static [DeliveryStatus] =
        &[Self::Pending, Self::Waiting, Self::InFlight];

    /// The states a replay puts back in the queue. Delivered ones are never sent again, and
    /// in-flight ones are a worker's; a skipped one only if its kind is
    /// [`SkipKind::replayable`]; a cancelled one only by a replay that names its id
    /// ([`DeliveryStatus::Cancelled`]).
    pub const REPLAYABLE: &'static [DeliveryStatus] =
        &[Self::Dead, Self::DryRun, Self::Skipped, Self::Pending];

    /// The states an operator may cancel: not yet sent, nor being sent, nor done.
    pub const CANCELLABLE: &'static [DeliveryStatus] = &[Self::Pending, Self::Waiting, Self::Dead];

    /// The states a re-translation may give a new payload: not sent, nor being sent (a new
    /// payload would count the order twice), nor cancelled (an operator's decision, undone
    /// only by a replay naming it).
    pub fn may_take_new_payload(self) -> bool {
        !matches!(self, Self::Delivered | Self::InFlight | Self::Cancelled)
    }

    pub fn is_done(self) -> bool {
        Self::DONE.contains(&self)
    }

    /// Whether a delivery in this state may move to `next`:
    /// - a worker leases a pending one (or one whose lease expired), and records its attempt:
    ///   delivered, pending again (a retry, or its lease given back), dead, or dry_run; a
    ///   split batch keeps it in flight for its single request;
    /// - a waiting one becomes pending once what it needs is delivered, or skipped;
    /// - a replay puts a replayable one back as pending or waiting, and re-arms a skipped
    ///   status update as waiting;
    /// - a re-translation gives one not delivered nor in flight a new payload, pending or
    ///   waiting, or the mapping's skip; a later webhook's plan replaces a mapping's skip;
    /// - an operator cancels a pending, waiting or dead one; only a replay naming a
    ///   cancelled one puts it back, pending or waiting.
    pub fn may_become(self, next: DeliveryStatus) -> bool {
        use DeliveryStatus::*;
        match self {
            Pending => matches!(next, Pending | Waiting | InFlight | Skipped | Cancelled),
            Waiting => matches!(next, Pending | Waiting | Skipped | Cancelled),
            InFlight => matches!(next, InFlight | Delivered | Pending | Dead | DryRun),
            Delivered => false,
            Dead => matches!(next, Pending | Waiting | Skipped | Cancelled),
            DryRun | Skipped => matches!(next, Pending | Waiting | Skipped),
            Cancelled => matches!(next, Pending | Waiting),
        }
    }
}

/// Why a delivery is `skipped`. What may bring a skipped delivery back is decided by its
/// kind, never by its reason's text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SkipKind {
    /// The mapping applies to the webhook but said not to send it (its `skip`), with a
    /// reason. Never sent and never replayed; a later plan of the same mapping and key (a
    /// later webhook of the order, or a re-translation) replaces it: a skip does not hold
    /// the key.
    Mapping,
    /// The delivery it needs was not made: dead, dry run, skipped, answered without the
    /// conversion id, or never appeared in time. A replay of that delivery re-arms it.
    UnmetNeed,
    /// A later delivery of the same mapping, needing the same, was delivered first: sent
    /// now, this one would undo it.
    Superseded,
}

words!(
    SkipKind,
    "skip kind",
    [
        Mapping = "mapping",
        UnmetNeed = "unmet_need",
        Superseded = "superseded",
    ]
);

impl SkipKind {
    /// Whether a replay may put a delivery skipped for this reason back in the queue: not a
    /// mapping's skip, which only a new plan replaces.
    pub fn replayable(self) -> bool {
        self != Self::Mapping
    }

    /// Whether a replay of the delivery it needs makes it wait for that delivery again.
    pub fn rearmed_with_its_need(self) -> bool {
        self == Self::UnmetNeed
    }

    /// Whether a later plan of the same mapping and key replaces it.
    pub fn replaced_by_a_plan(self) -> bool {
        self == Self::Mapping
    }
}

/// How one attempt of a delivery ended, as the delivery's attempt log keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AttemptOutcome {
    Delivered,
    /// Failed in a way a later attempt may not: a retry is scheduled.
    Retry,
    Dead,
    DryRun,
    /// Refused as part of a batch: each of its deliveries was sent again alone.
    Split,
}

words!(
    AttemptOutcome,
    "attempt outcome",
    [
        Delivered = "delivered",
        Retry = "retry",
        Dead = "dead",
        DryRun = "dry_run",
        Split = "split",
    ]
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_state_round_trips_through_its_text_and_serde() {
        for status in DeliveryStatus::ALL {
            assert_eq!(status.as_str().parse::<DeliveryStatus>().unwrap(), status);
            assert_eq!(
                serde_json::to_value(status).unwrap(),
                serde_json::Value::String(status.as_str().into())
            );
        }
        for status in WebhookStatus::ALL {
            assert_eq!(status.as_str().parse::<WebhookStatus>().unwrap(), status);
        }
        // A table's width applies to a word as to any text.
        assert_eq!(format!("{:<10}|", DeliveryStatus::Dead), "dead      |");
        let err = "sent".parse::<DeliveryStatus>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown delivery status `sent`: expected one of pending, waiting, in_flight, delivered, dead, skipped, dry_run, cancelled"
        );
    }

    #[test]
    fn a_delivered_delivery_never_moves_and_a_replay_reaches_only_what_is_replayable() {
        use DeliveryStatus::*;
        for next in DeliveryStatus::ALL {
            assert!(!Delivered.may_become(next), "delivered -> {next}");
        }
        for status in DeliveryStatus::REPLAYABLE {
            assert!(
                status.may_become(Pending) && status.may_become(Waiting),
                "{status}"
            );
        }
        assert!(!InFlight.may_become(Waiting));
        assert!(Waiting.may_become(Skipped) && !InFlight.may_become(Skipped));
        assert!(!Delivered.may_take_new_payload() && !InFlight.may_take_new_payload());
        assert!(Dead.may_take_new_payload());
    }

    #[test]
    fn only_what_was_not_sent_nor_done_is_cancelled_and_a_cancelled_one_stays_out_of_work() {
        use DeliveryStatus::*;
        for status in DeliveryStatus::ALL {
            assert_eq!(
                status.may_become(Cancelled),
                DeliveryStatus::CANCELLABLE.contains(&status),
                "{status}"
            );
        }
        assert!(Cancelled.is_done() && !DeliveryStatus::UNFINISHED.contains(&Cancelled));
        assert!(!Cancelled.may_take_new_payload() && !Cancelled.may_become(Skipped));
        assert!(Cancelled.may_become(Pending) && Cancelled.may_become(Waiting));
    }

    #[test]
    fn only_a_mapping_skip_is_replaced_by_a_plan_and_only_it_is_never_replayed() {
        use SkipKind::*;
        for kind in SkipKind::ALL {
            assert_eq!(kind.as_str().parse::<SkipKind>().unwrap(), kind);
            assert_eq!(kind.replaced_by_a_plan(), !kind.replayable(), "{kind}");
        }
        assert!(!Mapping.replayable() && Mapping.replaced_by_a_plan());
        assert!(UnmetNeed.rearmed_with_its_need());
        assert!(!Superseded.rearmed_with_its_need() && !Mapping.rearmed_with_its_need());
    }

    #[test]
    fn webhooks_are_purged_only_once_translated_or_not() {
        use WebhookStatus::*;
        assert!(Accepted.may_become(Translated) && Untranslated.may_become(Translated));
        assert!(Translated.may_become(Purged) && !Accepted.may_become(Purged));
        assert!(!Purged.may_become(Translated));
        assert_eq!(WebhookStatus::after_translation(true), Untranslated);
    }
}
