//! Listing deliveries, putting them back in the queue, and cancelling them.

use crate::domain::DeliveryStatus;
use crate::store::{
    Cancelled, DeliveryFilter, DeliverySummary, Requeued, Store, StoreError, Touched, now_ms,
};

/// How many deliveries a listing shows when the filter names no limit.
pub const DEFAULT_LIST_LIMIT: i64 = 50;

/// The deliveries matching `filter`, newest first; at most [`DEFAULT_LIST_LIMIT`] unless the
/// filter names a limit.
pub async fn list_deliveries(
    store: &dyn Store,
    filter: &DeliveryFilter,
) -> Result<Vec<DeliverySummary>, StoreError> {
    let mut filter = filter.clone();
    filter.limit = filter.limit.or(Some(DEFAULT_LIST_LIMIT));
    store.list_deliveries(&filter).await
}

/// What a replay means when the operator names no status: the dead letters, unless one
/// webhook or one delivery is named (then every delivery of it that is not delivered).
pub fn replay_filter(mut filter: DeliveryFilter, status_named: bool) -> DeliveryFilter {
    if !status_named
        && filter.status.is_none()
        && filter.webhook_id.is_none()
        && filter.id.is_none()
    {
        filter.status = Some(DeliveryStatus::Dead);
    }
    filter
}

/// How many deliveries a [`replay`] with `filter` puts back in the queue, at most (those in
/// a replayable state, never a mapping's skip; the store leaves out the ones whose payload
/// the retention purge removed): what the operator is asked to confirm.
pub async fn deliveries_to_replay(
    store: &dyn Store,
    filter: &DeliveryFilter,
) -> Result<usize, StoreError> {
    let matching = store.list_deliveries(filter).await?;
    Ok(matching
        .iter()
        .filter(|d| {
            (DeliveryStatus::REPLAYABLE.contains(&d.status)
                || (d.status == DeliveryStatus::Cancelled && filter.id.is_some()))
                && d.skip.is_none_or(|kind| kind.replayable())
        })
        .count())
}

/// Whether a filter names anything: a cancel that names nothing would cancel every
/// delivery not yet sent, so it is refused.
pub fn names_something(filter: &DeliveryFilter) -> bool {
    filter.status.is_some()
        || filter.destination.is_some()
        || filter.since_ms.is_some()
        || filter.until_ms.is_some()
        || filter.webhook_id.is_some()
        || filter.id.is_some()
        || filter.mapping.is_some()
}

/// How many deliveries a [`cancel`] with `filter` cancels, at most (those pending, waiting
/// or dead): what the operator is asked to confirm.
pub async fn deliveries_to_cancel(
    store: &dyn Store,
    filter: &DeliveryFilter,
) -> Result<usize, StoreError> {
    let matching = store.list_deliveries(filter).await?;
    Ok(matching
        .iter()
        .filter(|d| DeliveryStatus::CANCELLABLE.contains(&d.status))
        .count())
}

/// Cancels the deliveries matching `filter` that are pending, waiting or dead (see
/// [`Store::cancel_deliveries`]): they are never sent, unless a replay names one by its id.
/// Returns the counts, and the deliveries cancelled (for the caller's log line).
pub async fn cancel(
    store: &dyn Store,
    filter: &DeliveryFilter,
) -> Result<(Cancelled, Touched), StoreError> {
    store.cancel_deliveries(filter, now_ms()).await
}

/// Puts the deliveries matching `filter` that were not delivered back in the queue, due now
/// (see [`Store::requeue_deliveries`]); a running service sends them at once. Returns the
/// counts, and the deliveries requeued (for the caller's log line).
pub async fn replay(
    store: &dyn Store,
    filter: &DeliveryFilter,
) -> Result<(Requeued, Touched), StoreError> {
    store.requeue_deliveries(filter, now_ms()).await
}

/// [`replay`] of each of `filters` in turn, as one operator's action (ids picked one by
/// one): the counts summed, and every delivery requeued.
pub async fn replay_each(
    store: &dyn Store,
    filters: impl IntoIterator<Item = DeliveryFilter>,
) -> Result<(Requeued, Touched), StoreError> {
    let mut done = Requeued::default();
    let mut touched = Touched::default();
    for filter in filters {
        let (one, its) = replay(store, &filter).await?;
        done.requeued += one.requeued;
        done.waiting += one.waiting;
        done.rearmed += one.rearmed;
        done.purged += one.purged;
        touched.merge(its);
    }
    Ok((done, touched))
}

/// [`cancel`] of each of `filters` in turn, as one operator's action: the counts summed,
/// and every delivery cancelled.
pub async fn cancel_each(
    store: &dyn Store,
    filters: impl IntoIterator<Item = DeliveryFilter>,
) -> Result<(Cancelled, Touched), StoreError> {
    let mut done = Cancelled::default();
    let mut touched = Touched::default();
    for filter in filters {
        let (one, its) = cancel(store, &filter).await?;
        done.cancelled += one.cancelled;
        done.skipped += one.skipped;
        touched.merge(its);
    }
    Ok((done, touched))
}
