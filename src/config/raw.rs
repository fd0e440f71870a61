//! The shape of `storehook.toml` as it is written, before expansion and validation.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::domain::PlatformKind;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    pub(super) server: RawServer,
    pub(super) store: RawStore,
    pub(super) mappings: Option<RawMappings>,
    #[serde(default)]
    pub(super) sources: BTreeMap<String, RawSource>,
    #[serde(default)]
    pub(super) destinations: BTreeMap<String, RawDestination>,
    pub(super) delivery: Option<RawDelivery>,
    pub(super) metrics: Option<RawMetrics>,
    pub(super) admin: Option<RawAdmin>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMetrics {
    pub(super) enabled: Option<bool>,
    pub(super) require_token: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAdmin {
    /// The admin surface's own address; the main one when unset.
    pub(super) listen: Option<String>,
    /// The header a proxy in front sets to the client's address (and the scheme, with
    /// X-Forwarded-Proto); unset: the peer's address, the scheme plain HTTP.
    pub(super) trusted_proxy_header: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDestination {
    pub(super) kind: String,
    /// Legion, Scalef, Salekit: the API's root, paths added by the kind.
    pub(super) base_url: Option<String>,
    /// `http`: the whole address each delivery is sent to.
    pub(super) url: Option<String>,
    /// `http`: POST (the default), PUT or PATCH.
    pub(super) method: Option<String>,
    /// `http`: request headers; a value from the environment is kept secret.
    #[serde(default)]
    pub(super) headers: BTreeMap<String, String>,
    #[serde(default)]
    pub(super) credentials: BTreeMap<String, String>,
    #[serde(default)]
    pub(super) settings: BTreeMap<String, String>,
    pub(super) batch_size: Option<usize>,
    pub(super) retry_schedule: Option<Vec<String>>,
    pub(super) timeout: Option<String>,
    pub(super) connect_timeout: Option<String>,
    pub(super) rate_limit_per_second: Option<u32>,
    pub(super) circuit_breaker: Option<RawCircuitBreaker>,
    pub(super) concurrency: Option<usize>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCircuitBreaker {
    pub(super) failures: u32,
    pub(super) cool_down: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDelivery {
    pub(super) lease: Option<String>,
    pub(super) waiting_timeout: Option<String>,
    pub(super) shutdown_grace: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawServer {
    pub(super) listen: String,
    pub(super) max_body_bytes: Option<u64>,
    pub(super) request_timeout: Option<String>,
    pub(super) idle_timeout: Option<String>,
    pub(super) max_concurrent_requests: Option<u64>,
    pub(super) concurrency_wait: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStore {
    pub(super) url: String,
    pub(super) retention_days: Option<u32>,
    pub(super) migrate: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMappings {
    pub(super) dir: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSource {
    pub(super) platform: PlatformKind,
    pub(super) secrets: Vec<String>,
    pub(super) verify_token: Option<String>,
    /// `$vars` values for this source's webhooks (per-shop values, never secrets).
    #[serde(default)]
    pub(super) vars: toml::Table,
    /// Whether a shop's test orders (Shopify's `"test": true`) are sent like real ones.
    pub(super) allow_test_orders: Option<bool>,
}
