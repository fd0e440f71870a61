//! storehook: storefront webhooks in, marketing tools out.
//!
//! - [`source`]: each platform's signature, topic, handshakes and duplicates (the Platform seam).
//! - [`http`]: `POST /webhooks/{source}` verifies the raw body, [`store`] keeps it durably,
//!   and only then is the webhook answered 200; refusals become answers in [`error`].
//! - [`config`]: `storehook.toml` and the environment, validated at load.
//! - [`mapping`]: mapping files (jq) turn a webhook into delivery plans, checked against
//!   a JSON Schema per operation.
//! - [`destination`]: how Legion, Scalef, Salekit and generic HTTP endpoints are called and
//!   how their answers become outcomes (delivered, retry, failed).
//! - [`app`] binds and serves; [`cli`] is the command line; [`fixture`] reads recorded webhooks.

pub mod app;
pub mod cli;
pub mod config;
pub mod delivery;
pub mod destination;
pub mod domain;
pub mod error;
pub mod fixture;
pub mod http;
pub mod mapping;
pub mod ops;
pub mod source;
pub mod store;
