//! What an operator can do, as library functions: list deliveries, replay or cancel them,
//! re-translate stored webhooks with the current mappings, see a webhook or a delivery in
//! full, list and reload the mappings, try them on a payload, count the overview. Typed
//! results, no printing and no SQL: the CLI prints what these return, and an admin HTTP
//! surface calls the same functions.

mod deliveries;
mod mappings;
mod retranslate;
mod stats;
mod translate;
mod views;

pub use deliveries::{
    DEFAULT_LIST_LIMIT, cancel, cancel_each, deliveries_to_cancel, deliveries_to_replay,
    list_deliveries, names_something, replay, replay_each, replay_filter,
};
pub use mappings::{MappingInfo, Mappings, MappingsListed, wiring_problems};
pub use retranslate::{RetranslateError, Retranslated, Retranslation, retranslate};
pub use stats::{DestinationStats, STATS_WINDOW_MS, Stats, stats};
pub use translate::{MappingTried, Translation, Tried, TryWebhook, try_mappings};
pub use views::{
    Body, DeliveryAttempts, DeliveryDetail, DeliveryRequest, REDACTED, RequestShown, WaitsFor,
    WebhookDetail, WebhookSummary, delivery, list_webhooks, webhook,
};
