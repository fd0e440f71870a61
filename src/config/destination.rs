//! A `[destinations.<id>]` table: its kind, URL, credentials and how it is called.

use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::time::Duration;

use super::env::{Expanded, secret_template};
use super::raw::RawDestination;
use super::{ConfigError, Reader};
use crate::domain::{DestinationKind, Secret, UnknownWord};

/// One configured target service. Without all its credentials it runs dry: deliveries are
/// recorded with the request that would have been sent, and nothing leaves the machine.
#[derive(Debug, Clone)]
pub struct DestinationConfig {
    pub id: String,
    pub kind: DestinationKind,
    /// The API's root (for `http`, its `url`: the whole address), without a trailing slash.
    pub base_url: String,
    /// `http`: the method requests are sent with (the others always POST).
    pub method: HttpMethod,
    /// `http`: the request headers, in the file's order.
    pub headers: Vec<(String, HeaderSetting)>,
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

/// A request method an `http` destination may use: each sends the payload as a JSON body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpMethod {
    Post,
    Put,
    Patch,
}

impl HttpMethod {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Post => "POST",
            Self::Put => "PUT",
            Self::Patch => "PATCH",
        }
    }
}

/// An `http` destination's header value. One taken from the environment is a secret: masked
/// wherever a request is shown or stored, and its variable unset makes the destination dry.
#[derive(Debug, Clone)]
pub enum HeaderSetting {
    Plain(String),
    /// `None` while its variable is unset.
    Secret(Option<Secret>),
}

/// Headers storehook sets itself on every request.
const OWN_HEADERS: [&str; 5] = [
    "content-type",
    "content-length",
    "host",
    "user-agent",
    "idempotency-key",
];

/// Whether a header's name says it carries a secret (`Authorization`, `X-Api-Key`,
/// `X-Shop-Token`, …): its value must then come from the environment.
pub fn is_secret_header(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    let last = name.rsplit(['-', '_']).next().unwrap_or(&name);
    matches!(
        name.as_str(),
        "authorization" | "proxy-authorization" | "cookie"
    ) || matches!(
        last,
        "token" | "key" | "apikey" | "secret" | "signature" | "password" | "auth"
    )
}

fn no_such_setting(kind: DestinationKind) -> String {
    match kind.setting_names() {
        [] if kind == DestinationKind::Http => {
            "an http destination has no settings: it takes url, method and headers".into()
        }
        [] => format!("a {kind} destination has no settings"),
        names => format!(
            "a {kind} destination has no such setting (it reads {})",
            names.join(", ")
        ),
    }
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

    /// Its secrets: the credentials, and the `http` headers taken from the environment.
    pub fn secrets(&self) -> impl Iterator<Item = &Secret> {
        let headers = self
            .headers
            .iter()
            .filter_map(|(_, setting)| match setting {
                HeaderSetting::Secret(secret) => secret.as_ref(),
                HeaderSetting::Plain(_) => None,
            });
        self.credentials.values().chain(headers)
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
        let kind: DestinationKind = raw
            .kind
            .parse()
            .map_err(|e: UnknownWord| self.invalid(&format!("{key}.kind"), e.to_string()))?;
        let (address, method) = self.address(&key, kind, &raw)?;
        let mut unset_variables = address.unset_variables;
        if let Some(names) = kind.credential_names() {
            if let Some(name) = raw
                .credentials
                .keys()
                .find(|n| !names.contains(&n.as_str()))
            {
                return Err(self.invalid(
                    &format!("{key}.credentials.{name}"),
                    format!(
                        "a {kind} destination has no such credential (it reads {})",
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
        } else if !raw.credentials.is_empty() {
            return Err(self.invalid(
                &format!("{key}.credentials"),
                "an http destination takes its secrets as headers from the environment: \
                 headers = { Authorization = \"Bearer ${CRM_TOKEN}\" }"
                    .into(),
            ));
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
            let setting = format!("{key}.settings.{name}");
            if !kind.setting_names().contains(&name.as_str()) {
                return Err(self.invalid(&setting, no_such_setting(kind)));
            }
            settings.insert(name.clone(), self.required(&setting, template)?);
        }
        let mut headers = Vec::new();
        for (name, template) in &raw.headers {
            let (header, unset) = self.header(&format!("{key}.headers.{name}"), name, template)?;
            unset_variables.extend(unset);
            headers.push((name.clone(), header));
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
            kind,
            base_url: address.value.trim_end_matches('/').to_string(),
            method,
            headers,
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

    /// The address requests go to (`url` for http, `base_url` for the others; the other
    /// spelling is refused naming the right one) and the method they are sent with.
    fn address(
        &self,
        key: &str,
        kind: DestinationKind,
        raw: &RawDestination,
    ) -> Result<(Expanded, HttpMethod), ConfigError> {
        let http = kind == DestinationKind::Http;
        let only_http = |name: &str| {
            self.invalid(
                &format!("{key}.{name}"),
                format!(
                    "only an http destination takes `{name}`; a {kind} destination takes base_url"
                ),
            )
        };
        if !http {
            if raw.url.is_some() {
                return Err(only_http("url"));
            }
            if raw.method.is_some() {
                return Err(only_http("method"));
            }
            if !raw.headers.is_empty() {
                return Err(only_http("headers"));
            }
        }
        let (name, template) = match (http, &raw.url, &raw.base_url) {
            (true, Some(url), None) => ("url", url),
            (true, _, Some(_)) => {
                return Err(self.invalid(
                    &format!("{key}.base_url"),
                    "an http destination takes `url`: the whole address each delivery is sent to"
                        .into(),
                ));
            }
            (false, _, Some(base_url)) => ("base_url", base_url),
            (true, None, None) => {
                return Err(self.invalid(
                    &format!("{key}.url"),
                    "missing: the whole address each delivery is sent to, e.g. \"https://crm.example/api/contacts\"".into(),
                ));
            }
            (false, _, None) => {
                return Err(self.invalid(
                    &format!("{key}.base_url"),
                    "missing: the API's address, e.g. \"${LEGION_BASE_URL:-https://api.legion.tools}\"".into(),
                ));
            }
        };
        let address = self.expand(&format!("{key}.{name}"), template)?;
        let method = match raw
            .method
            .as_deref()
            .map(str::to_ascii_uppercase)
            .as_deref()
        {
            None | Some("POST") => HttpMethod::Post,
            Some("PUT") => HttpMethod::Put,
            Some("PATCH") => HttpMethod::Patch,
            Some(other) => {
                return Err(self.invalid(
                    &format!("{key}.method"),
                    format!(
                        "`{other}` is not a method storehook sends with: use POST, PUT or PATCH"
                    ),
                ));
            }
        };
        Ok((address, method))
    }

    /// One header of an http destination, and the variables it needs that are unset. A
    /// header whose name says it carries a secret must take its value from the environment,
    /// without a default; any value from the environment is kept secret.
    fn header(
        &self,
        key: &str,
        name: &str,
        template: &str,
    ) -> Result<(HeaderSetting, Vec<String>), ConfigError> {
        if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
            return Err(self.invalid(key, format!("`{name}` is not a header name")));
        }
        if OWN_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
            return Err(self.invalid(
                key,
                format!("storehook sets {name} itself on every request"),
            ));
        }
        let expanded = if is_secret_header(name) {
            secret_template(template, self.env).map_err(|m| self.invalid(key, m))?
        } else {
            self.expand(key, template)?
        };
        if expanded.variables == 0 {
            if reqwest::header::HeaderValue::from_str(&expanded.value).is_err() {
                return Err(self.invalid(
                    key,
                    "not a valid header value (a line break or a control character)".into(),
                ));
            }
            return Ok((HeaderSetting::Plain(expanded.value), Vec::new()));
        }
        if !expanded.unset_variables.is_empty() {
            return Ok((HeaderSetting::Secret(None), expanded.unset_variables));
        }
        if reqwest::header::HeaderValue::from_str(&expanded.value).is_err() {
            // The value is not shown: it may be a secret.
            return Err(self.invalid(
                key,
                "the value from the environment is not a valid header value (a line break or a control character)".into(),
            ));
        }
        Ok((
            HeaderSetting::Secret(Some(Secret::new(expanded.value))),
            Vec::new(),
        ))
    }
}
