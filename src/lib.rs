//! storehook: storefront webhooks in, marketing tools out. `docs/architecture.md` tells the
//! flow, the seams and the invariants; this is the map of the modules.
//!
//! - [`domain`]: the shared words as types (platforms, operations, destination kinds, the
//!   states of a webhook and of a delivery with their moves, ids, [`domain::Secret`]); a
//!   leaf every other module may use.
//! - [`config`]: `storehook.toml` and the environment, validated at load.
//! - [`source`]: each platform's signature, topic, handshakes and dedupe id (the Platform seam).
//! - [`http`]: the router; `POST /webhooks/{source}` verifies the raw body, translates it,
//!   and answers 200 only once [`store`] has it durably; refusals become answers in [`error`];
//!   `http::admin` serves the `/api` routes over [`ops`], behind the admin token.
//! - [`mapping`]: mapping files (jq) turn a webhook into delivery plans, each checked against
//!   its operation's JSON Schema.
//! - [`store`]: the Store seam (typed, backend-neutral), its SQLite and PostgreSQL backends,
//!   the copy of one store into another (`store::copy`) and the heartbeats of running
//!   instances (`store::heartbeat`).
//! - [`delivery`]: one worker per destination: rounds of claim, send and record, retries,
//!   circuit breaker, rate limit, shutdown, on an injected clock.
//! - [`destination`]: how Legion, Scalef, Salekit and generic HTTP endpoints are asked to do
//!   an operation and how their answers become outcomes (the Destination seam).
//! - [`ops`]: what an operator can do (list, replay, cancel, re-translate, reload, try the
//!   mappings, count), for the CLI and the admin API.
//! - [`observe`]: the metrics every room counts, and their Prometheus text at `/metrics`.
//! - [`logging`]: the log lines, text or JSON, with phones and e-mail addresses masked.
//! - [`app`] builds and runs the service; [`cli`] is the command line; [`fixture`] reads
//!   recorded webhooks.

pub mod app;
pub mod cli;
pub mod config;
pub mod delivery;
pub mod destination;
pub mod domain;
pub mod error;
pub mod fixture;
pub mod http;
pub mod logging;
pub mod mapping;
pub mod observe;
pub mod ops;
pub mod source;
pub mod store;
