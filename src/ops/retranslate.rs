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

/// The stored webhooks a re-translation will read, loaded once: count them (to say what will
/// be done and ask first), then [`Retranslation::run`] them.
pub struct Retranslation<'f> {
    filter: &'f DeliveryFilter,
    webhooks: Vec<crate::store::StoredWebhook>,
}

impl<'f> Retranslation<'f> {
    /// Reads the stored webhooks that `filter` names (see [`Store::webhooks_for`]).
    pub async fn load(store: &dyn Store, filter: &'f DeliveryFilter) -> Result<Self, StoreError> {
        Ok(Self {
            filter,
            webhooks: store.webhooks_for(filter).await?,
        })
    }

    /// How many webhooks it will run through the mappings.
    pub fn len(&self) -> usize {
        self.webhooks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.webhooks.is_empty()
    }

    /// Runs them through `catalog` and writes their deliveries: see [`retranslate`].
    pub async fn run(
        self,
        store: &dyn Store,
        catalog: &Catalog,
        mapping: Option<&str>,
        progress: impl FnMut(WebhookId, Option<&str>, (usize, usize)),
    ) -> Result<Retranslated, RetranslateError> {
        run(
            store,
            catalog,
            self.filter,
            &self.webhooks,
            mapping,
            progress,
        )
        .await
    }
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
    progress: impl FnMut(WebhookId, Option<&str>, (usize, usize)),
) -> Result<Retranslated, RetranslateError> {
    Retranslation::load(store, filter)
        .await?
        .run(store, catalog, mapping, progress)
        .await
}

async fn run(
    store: &dyn Store,
    catalog: &Catalog,
    filter: &DeliveryFilter,
    webhooks: &[crate::store::StoredWebhook],
    mapping: Option<&str>,
    mut progress: impl FnMut(WebhookId, Option<&str>, (usize, usize)),
) -> Result<Retranslated, RetranslateError> {
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
        tracing::info!(
            source = %webhook.source,
            topic = %webhook.topic,
            webhook_id = webhook.id.0,
            added,
            replaced,
            error = error.as_deref().map(|e| e.replace('\n', "; ")),
            "webhook re-translated"
        );
        progress(webhook.id, error.as_deref(), (index + 1, webhooks.len()));
        if let Some(error) = error {
            done.failed.push((webhook.id, error));
        }
    }
    Ok(done)
}
