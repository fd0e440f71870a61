//! Running the current mappings again over stored webhooks, after a mapping fix.

use crate::domain::WebhookId;
use crate::mapping::{Catalog, Webhook};
use crate::store::{DeliveryFilter, NewDelivery, Store, StoreError, now_ms};

/// Why a re-translation stopped.
#[derive(Debug, thiserror::Error)]
pub enum RetranslateError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A stored webhook names a platform this build does not know: nothing is written for it.
    #[error("webhook {webhook}: {unknown}")]
    UnknownPlatform {
        webhook: WebhookId,
        unknown: crate::domain::UnknownWord,
    },
}

/// What a re-translation did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Retranslated {
    /// Webhooks run through the mappings again.
    pub webhooks: u64,
    /// Deliveries the mappings make now that did not exist.
    pub added: u64,
    /// Deliveries not yet delivered that took the new payload and are due now.
    pub replaced: u64,
    /// Webhooks whose translation failed, with the error (stored as `untranslated`).
    pub failed: Vec<(WebhookId, String)>,
}

/// The stored webhooks [`retranslate`] would read for `filter`.
pub async fn webhooks_to_retranslate(
    store: &dyn Store,
    filter: &DeliveryFilter,
) -> Result<usize, StoreError> {
    Ok(store.webhooks_for(filter).await?.len())
}

/// Re-translates the stored webhooks that `filter` names (see [`Store::webhooks_for`]) with
/// `catalog`, and writes their deliveries (see [`Store::replace_deliveries`]): new ones are
/// added, those not yet delivered take the new payload, delivered ones are left alone so
/// nothing is counted twice. When the filter names a destination, or `mapping` names a
/// mapping, only the deliveries of that destination or mapping are written; when it names a
/// status, only deliveries in it are replaced (a dry run only when that status is named).
/// `progress` is called after each webhook with its id, its translation error if any, and
/// (done, total).
pub async fn retranslate(
    store: &dyn Store,
    catalog: &Catalog,
    filter: &DeliveryFilter,
    mapping: Option<&str>,
    mut progress: impl FnMut(WebhookId, Option<&str>, (usize, usize)),
) -> Result<Retranslated, RetranslateError> {
    let webhooks = store.webhooks_for(filter).await?;
    let mut done = Retranslated {
        webhooks: webhooks.len() as u64,
        ..Retranslated::default()
    };
    for (index, webhook) in webhooks.iter().enumerate() {
        let platform =
            webhook
                .platform
                .parse()
                .map_err(|unknown| RetranslateError::UnknownPlatform {
                    webhook: webhook.id,
                    unknown,
                })?;
        let (plans, error) = catalog.plans_and_error(&Webhook {
            source: &webhook.source,
            platform,
            topic: &webhook.topic,
            headers: &webhook.headers,
            body: &webhook.body,
        });
        let deliveries: Vec<NewDelivery> = plans
            .into_iter()
            .map(NewDelivery::from)
            .filter(|delivery| {
                filter
                    .destination
                    .as_ref()
                    .is_none_or(|d| *d == delivery.destination)
                    && mapping.is_none_or(|m| m == delivery.mapping)
            })
            .collect();
        let (added, replaced) = store
            .replace_deliveries(
                webhook.id,
                &deliveries,
                error.as_deref(),
                filter.status,
                now_ms(),
            )
            .await?;
        done.added += added;
        done.replaced += replaced;
        progress(webhook.id, error.as_deref(), (index + 1, webhooks.len()));
        if let Some(error) = error {
            done.failed.push((webhook.id, error));
        }
    }
    Ok(done)
}
