//! What an operator can do, as library functions: list deliveries, replay them, re-translate
//! stored webhooks with the current mappings. Typed results, no printing and no SQL: the CLI
//! prints what these return, and an admin HTTP surface calls the same functions.

mod deliveries;
mod retranslate;

pub use deliveries::{
    DEFAULT_LIST_LIMIT, deliveries_to_replay, list_deliveries, replay, replay_filter,
};
pub use retranslate::{RetranslateError, Retranslated, retranslate, webhooks_to_retranslate};
