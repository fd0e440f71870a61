//! A `[destinations.<id>]` table: its kind, URL, credentials and how it is called.

use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::time::Duration;

use super::raw::RawDestination;
use super::{ConfigError, Reader};
use crate::domain::{DestinationKind, Secret};

/// One configured target service. Without all its credentials it runs dry: deliveries are
/// recorded with the request that would have been sent, and nothing leaves the machine.
#[derive(Debug, Clone)]
pub struct DestinationConfig {
    pub id: String,
    /// `legion`, `scalef`, `salekit` or `http`; checked against the known kinds at start-up.
    pub kind: String,
    /// Without a trailing slash.
    pub base_url: String,
    /// Secrets by name (`api_key`, `token`, …), from the environment.
    pub credentials: BTreeMap<String, Secret>,
    /// Variables of credentials that are not set; any makes the destination dry.
    pub unset_variables: Vec<String>,
    /// Non-secret values: paths, header values.
    pub settings: BTreeMap<String, String>,
    /// Deliveries per request, for destinations that accept several.
    pub batch_size: usize,
    /// Waits before the 2nd, 3rd, … attempt (±20 % jitter); after the last, a delivery is dead.
    pub retry_schedule: Vec<Duration>,
    pub timeout: Duration,
    pub connect_timeout: Duration,
    /// Requests per second at most (none: no limit).
    pub rate_limit_per_second: Option<NonZeroU32>,
    /// After this many attempts in a row that must be retried (5xx, 429, time-outs,
    /// connection errors), the worker pauses for `cool_down`, so a destination that is down
    /// is not hammered by every queued delivery in turn.
    pub breaker_failures: u32,
    pub breaker_cool_down: Duration,
    /// Requests in flight at once to this destination (lanes of its worker).
    pub concurrency: usize,
}

/// Requests in flight at once per destination, unless its `concurrency` says otherwise.
pub const DEFAULT_CONCURRENCY: usize = 4;

/// The default retry schedule: about two days in all.
pub const DEFAULT_RETRY_SCHEDULE: [&str; 11] = [
    "5s", "30s", "2m", "10m", "30m", "1h", "2h", "4h", "8h", "12h", "24h",
];

impl DestinationConfig {
    pub fn is_dry(&self) -> bool {
        !self.unset_variables.is_empty() || self.base_url.is_empty()
    }
}

impl Reader<'_> {
    /// The destination `id` as its table describes it.
    pub(super) fn destination(
        &self,
        id: String,
        raw: RawDestination,
    ) -> Result<DestinationConfig, ConfigError> {
        let key = format!("destinations.{id}");
        let base_url = self.expand(&format!("{key}.base_url"), &raw.base_url)?;
        let mut unset_variables = base_url.unset_variables;
        if let Some(names) = raw
            .kind
            .parse::<DestinationKind>()
            .ok()
            .and_then(DestinationKind::credential_names)
        {
            if let Some(name) = raw
                .credentials
                .keys()
                .find(|n| !names.contains(&n.as_str()))
            {
                return Err(self.invalid(
                    &format!("{key}.credentials.{name}"),
                    format!(
                        "a {} destination has no such credential (it reads {})",
                        raw.kind,
                        names.join(", ")
                    ),
                ));
            }
            if let Some(name) = names.iter().find(|n| !raw.credentials.contains_key(**n)) {
                return Err(self.invalid(
                    &format!("{key}.credentials"),
                    format!(
                        "`{name}` is missing: give it as \"${{VARIABLE}}\" (the destination runs dry while the variable is unset)"
                    ),
                ));
            }
        }
        let mut credentials = BTreeMap::new();
        for (name, template) in &raw.credentials {
            let secret = self.secrets(std::iter::once((
                format!("{key}.credentials.{name}"),
                template.as_str(),
            )))?;
            unset_variables.extend(secret.unset_variables);
            if let Some(value) = secret.values.into_iter().next() {
                credentials.insert(name.clone(), value);
            }
        }
        let mut settings = BTreeMap::new();
        for (name, template) in &raw.settings {
            let value = self.required(&format!("{key}.settings.{name}"), template)?;
            settings.insert(name.clone(), value);
        }
        let batch_size = match raw.batch_size {
            Some(0) => {
                return Err(self.invalid(&format!("{key}.batch_size"), "must be above 0".into()));
            }
            Some(n) => n,
            None => 1,
        };
        let retry_schedule = match &raw.retry_schedule {
            Some(steps) => steps
                .iter()
                .map(|step| self.duration(&format!("{key}.retry_schedule"), step))
                .collect::<Result<Vec<_>, _>>()?,
            None => DEFAULT_RETRY_SCHEDULE
                .iter()
                .map(|step| self.duration(&format!("{key}.retry_schedule"), step))
                .collect::<Result<Vec<_>, _>>()?,
        };
        let timeout = self.duration(
            &format!("{key}.timeout"),
            raw.timeout.as_deref().unwrap_or("10s"),
        )?;
        let connect_timeout = self.duration(
            &format!("{key}.connect_timeout"),
            raw.connect_timeout.as_deref().unwrap_or("3s"),
        )?;
        let rate_limit_per_second = match raw.rate_limit_per_second {
            Some(n) => Some(NonZeroU32::new(n).ok_or_else(|| {
                self.invalid(
                    &format!("{key}.rate_limit_per_second"),
                    "must be above 0".into(),
                )
            })?),
            None => None,
        };
        let (breaker_failures, breaker_cool_down) = match &raw.circuit_breaker {
            Some(b) => (
                b.failures.max(1),
                self.duration(&format!("{key}.circuit_breaker.cool_down"), &b.cool_down)?,
            ),
            None => (5, Duration::from_secs(30)),
        };
        let concurrency = match raw.concurrency {
            Some(0) => {
                return Err(self.invalid(&format!("{key}.concurrency"), "must be above 0".into()));
            }
            Some(n) => n,
            None => DEFAULT_CONCURRENCY,
        };
        Ok(DestinationConfig {
            id,
            kind: raw.kind,
            base_url: base_url.value.trim_end_matches('/').to_string(),
            credentials,
            unset_variables,
            settings,
            batch_size,
            retry_schedule,
            timeout,
            connect_timeout,
            rate_limit_per_second,
            breaker_failures,
            breaker_cool_down,
            concurrency,
        })
    }
}
