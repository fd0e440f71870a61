//! The shared words of storehook as types: the platforms, the operations, the states of a
//! webhook and of a delivery (with the moves between them, and why a delivery is skipped),
//! ids, and [`Secret`].
//!
//! A leaf: every other module may use `domain`, and `domain` uses none of them, so a word
//! means the same thing in the receive path, the store, the workers and the CLI.

mod destination_kind;
mod ids;
mod operation;
mod platform;
mod secret;
mod status;
mod words;

pub use destination_kind::DestinationKind;
pub use ids::{DeliveryId, WebhookId};
pub use operation::Operation;
pub use platform::PlatformKind;
pub use secret::{REDACTED, Redactions, Secret};
pub use status::{AttemptOutcome, DeliveryStatus, SkipKind, WebhookStatus};
pub use words::UnknownWord;
