//! `storehook.toml` plus the environment: parsed, expanded and validated at load, so a bad
//! configuration stops the program with the file and the key named, before anything listens.

use std::collections::BTreeMap;

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use crate::domain::{DestinationKind, PlatformKind, Secret};

/// The configuration shipped at the repository root, compiled in so that the binary runs on
/// its defaults even where no `storehook.toml` sits beside it.
pub const EMBEDDED: &str = include_str!("../storehook.toml");
/// The file read when none is named on the command line.
pub const DEFAULT_FILE: &str = "storehook.toml";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read configuration file {file}: {source}")]
    Read {
        file: String,
        source: std::io::Error,
    },
    #[error("invalid configuration in {file}: {message}")]
    Syntax { file: String, message: String },
    #[error("invalid configuration in {file}: key `{key}`: {message}")]
    Invalid {
        file: String,
        key: String,
        message: String,
    },
}

/// Secrets read from environment variables, with the variables that were not set. A setting
/// whose variables are all unset leaves the feature it guards switched off (and says which
/// variable turns it on); one that expands to an empty string is refused at load.
#[derive(Debug, Clone, Default)]
pub struct EnvSecrets {
    pub values: Vec<Secret>,
    pub unset_variables: Vec<String>,
}

impl EnvSecrets {
    pub fn is_set(&self) -> bool {
        !self.values.is_empty()
    }
}

#[derive(Debug, Clone)]
pub struct SourceConfig {
    /// The URL segment: `POST /webhooks/{id}`.
    pub id: String,
    pub platform: PlatformKind,
    /// Any one of these verifies a webhook (more than one during a rotation).
    pub secrets: EnvSecrets,
    /// Haravan's subscription handshake token (`hub.verify_token`).
    pub verify_token: EnvSecrets,
}

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

/// How deliveries are claimed and how long they may wait for another.
#[derive(Debug, Clone)]
pub struct DeliveryConfig {
    /// How long a claimed delivery stays leased; a worker that dies leaves it to be claimed
    /// again after this.
    pub lease: Duration,
    /// How long a delivery waits for the one it needs to appear (a status update for a
    /// conversion whose create has not arrived) before it is skipped.
    pub waiting_timeout: Duration,
    /// On shutdown, how long attempts in flight may take to finish before they are
    /// abandoned and their leases released.
    pub shutdown_grace: Duration,
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

#[derive(Debug, Clone)]
pub struct Config {
    /// Where the configuration came from, for messages.
    pub origin: String,
    pub listen: SocketAddr,
    pub store_url: String,
    /// After this many days, the bodies of webhooks whose deliveries are all done, and the
    /// payloads and attempts of done deliveries, are purged. Their ids and keys stay, so a
    /// late repeat is still recognised and no order is ever delivered twice.
    pub retention_days: u32,
    pub max_body_bytes: usize,
    /// The directory of mapping files.
    pub mappings_dir: String,
    pub destinations: BTreeMap<String, DestinationConfig>,
    pub delivery: DeliveryConfig,
    pub sources: BTreeMap<String, SourceConfig>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    server: RawServer,
    store: RawStore,
    mappings: Option<RawMappings>,
    #[serde(default)]
    sources: BTreeMap<String, RawSource>,
    #[serde(default)]
    destinations: BTreeMap<String, RawDestination>,
    delivery: Option<RawDelivery>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDestination {
    kind: String,
    base_url: String,
    #[serde(default)]
    credentials: BTreeMap<String, String>,
    #[serde(default)]
    settings: BTreeMap<String, String>,
    batch_size: Option<usize>,
    retry_schedule: Option<Vec<String>>,
    timeout: Option<String>,
    connect_timeout: Option<String>,
    rate_limit_per_second: Option<u32>,
    circuit_breaker: Option<RawCircuitBreaker>,
    concurrency: Option<usize>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCircuitBreaker {
    failures: u32,
    cool_down: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDelivery {
    lease: Option<String>,
    waiting_timeout: Option<String>,
    shutdown_grace: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServer {
    listen: String,
    max_body_bytes: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStore {
    url: String,
    retention_days: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMappings {
    dir: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSource {
    platform: PlatformKind,
    secrets: Vec<String>,
    verify_token: Option<String>,
}

pub const DEFAULT_MAX_BODY_BYTES: usize = 2 * 1024 * 1024;
pub const DEFAULT_MAPPINGS_DIR: &str = "mappings";

impl Config {
    /// Loads `file`, or `storehook.toml` in the working directory, or the embedded defaults
    /// when neither exists, expanding variables from the process environment.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let env = |name: &str| std::env::var(name).ok();
        match file {
            Some(path) => Self::load_file(path, &env),
            None if Path::new(DEFAULT_FILE).exists() => {
                Self::load_file(Path::new(DEFAULT_FILE), &env)
            }
            None => Self::parse(EMBEDDED, "embedded storehook.toml", &env),
        }
    }

    fn load_file(path: &Path, env: &dyn Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            file: origin.clone(),
            source,
        })?;
        Self::parse(&text, &origin, env)
    }

    /// Parses configuration text; `env` answers variable look-ups (the process environment in
    /// production, a map in tests).
    pub fn parse(
        text: &str,
        origin: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Syntax {
            file: origin.to_string(),
            message: e.to_string().trim_end().to_string(),
        })?;
        let invalid = |key: &str, message: String| ConfigError::Invalid {
            file: origin.to_string(),
            key: key.to_string(),
            message,
        };
        let required = |key: &str, template: &str| -> Result<String, ConfigError> {
            let expanded = expand_env(template, env).map_err(|m| invalid(key, m))?;
            match expanded.unset_variables.first() {
                Some(var) => Err(invalid(
                    key,
                    format!("environment variable {var} is not set and has no default"),
                )),
                None => Ok(expanded.value),
            }
        };

        let listen_text = required("server.listen", &raw.server.listen)?;
        let listen = listen_text.parse().map_err(|e| {
            invalid(
                "server.listen",
                format!("`{listen_text}` is not an address like 0.0.0.0:8080 ({e})"),
            )
        })?;
        let max_body_bytes = match raw.server.max_body_bytes {
            None => DEFAULT_MAX_BODY_BYTES,
            Some(0) => return Err(invalid("server.max_body_bytes", "must be above 0".into())),
            Some(n) => usize::try_from(n)
                .map_err(|_| invalid("server.max_body_bytes", format!("{n} is too large")))?,
        };
        let store_url = required("store.url", &raw.store.url)?;
        if store_url.is_empty() {
            return Err(invalid("store.url", "is empty".into()));
        }
        let retention_days = match raw.store.retention_days {
            Some(0) => return Err(invalid("store.retention_days", "must be above 0".into())),
            Some(days) => days,
            None => 30,
        };
        let mappings_dir = match &raw.mappings {
            Some(m) => required("mappings.dir", &m.dir)?,
            None => DEFAULT_MAPPINGS_DIR.to_string(),
        };

        let mut sources = BTreeMap::new();
        for (id, source) in raw.sources {
            let key = format!("sources.{id}");
            if id.is_empty()
                || !id
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
            {
                return Err(invalid(
                    &key,
                    "a source id is its URL segment: use lowercase letters, digits, - and _".into(),
                ));
            }
            if source.secrets.is_empty() {
                return Err(invalid(
                    &format!("{key}.secrets"),
                    "list at least one secret, e.g. [\"${SHOP_WEBHOOK_SECRET}\"]".into(),
                ));
            }
            let secrets = source
                .secrets
                .iter()
                .enumerate()
                .map(|(i, t)| (format!("{key}.secrets[{i}]"), t.as_str()));
            let secrets = env_secrets(secrets, env).map_err(|(k, m)| invalid(&k, m))?;
            let verify_token = source
                .verify_token
                .iter()
                .map(|t| (format!("{key}.verify_token"), t.as_str()));
            let verify_token = env_secrets(verify_token, env).map_err(|(k, m)| invalid(&k, m))?;
            sources.insert(
                id.clone(),
                SourceConfig {
                    id,
                    platform: source.platform,
                    secrets,
                    verify_token,
                },
            );
        }

        let duration = |key: &str, text: &str| -> Result<Duration, ConfigError> {
            text.parse::<jiff::SignedDuration>()
                .ok()
                .and_then(|d| Duration::try_from(d).ok())
                .filter(|d| !d.is_zero())
                .ok_or_else(|| {
                    invalid(
                        key,
                        format!("`{text}` is not a duration like 500ms, 5s, 2m or 1h"),
                    )
                })
        };
        let delivery = DeliveryConfig {
            lease: duration(
                "delivery.lease",
                raw.delivery
                    .as_ref()
                    .and_then(|d| d.lease.as_deref())
                    .unwrap_or("60s"),
            )?,
            waiting_timeout: duration(
                "delivery.waiting_timeout",
                raw.delivery
                    .as_ref()
                    .and_then(|d| d.waiting_timeout.as_deref())
                    .unwrap_or("24h"),
            )?,
            shutdown_grace: duration(
                "delivery.shutdown_grace",
                raw.delivery
                    .as_ref()
                    .and_then(|d| d.shutdown_grace.as_deref())
                    .unwrap_or("10s"),
            )?,
        };
        let mut destinations = BTreeMap::new();
        for (id, raw) in raw.destinations {
            let key = format!("destinations.{id}");
            let base_url = expand_env(&raw.base_url, env)
                .map_err(|m| invalid(&format!("{key}.base_url"), m))?;
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
                    return Err(invalid(
                        &format!("{key}.credentials.{name}"),
                        format!(
                            "a {} destination has no such credential (it reads {})",
                            raw.kind,
                            names.join(", ")
                        ),
                    ));
                }
                if let Some(name) = names.iter().find(|n| !raw.credentials.contains_key(**n)) {
                    return Err(invalid(
                        &format!("{key}.credentials"),
                        format!(
                            "`{name}` is missing: give it as \"${{VARIABLE}}\" (the destination runs dry while the variable is unset)"
                        ),
                    ));
                }
            }
            let mut credentials = BTreeMap::new();
            for (name, template) in &raw.credentials {
                let secret = env_secrets(
                    std::iter::once((format!("{key}.credentials.{name}"), template.as_str())),
                    env,
                )
                .map_err(|(k, m)| invalid(&k, m))?;
                unset_variables.extend(secret.unset_variables);
                if let Some(value) = secret.values.into_iter().next() {
                    credentials.insert(name.clone(), value);
                }
            }
            let mut settings = BTreeMap::new();
            for (name, template) in &raw.settings {
                let value = required(&format!("{key}.settings.{name}"), template)?;
                settings.insert(name.clone(), value);
            }
            let batch_size = match raw.batch_size {
                Some(0) => {
                    return Err(invalid(
                        &format!("{key}.batch_size"),
                        "must be above 0".into(),
                    ));
                }
                Some(n) => n,
                None => 1,
            };
            let retry_schedule = match &raw.retry_schedule {
                Some(steps) => steps
                    .iter()
                    .map(|step| duration(&format!("{key}.retry_schedule"), step))
                    .collect::<Result<Vec<_>, _>>()?,
                None => DEFAULT_RETRY_SCHEDULE
                    .iter()
                    .map(|step| duration(&format!("{key}.retry_schedule"), step))
                    .collect::<Result<Vec<_>, _>>()?,
            };
            let timeout = duration(
                &format!("{key}.timeout"),
                raw.timeout.as_deref().unwrap_or("10s"),
            )?;
            let connect_timeout = duration(
                &format!("{key}.connect_timeout"),
                raw.connect_timeout.as_deref().unwrap_or("3s"),
            )?;
            let rate_limit_per_second = match raw.rate_limit_per_second {
                Some(n) => Some(NonZeroU32::new(n).ok_or_else(|| {
                    invalid(
                        &format!("{key}.rate_limit_per_second"),
                        "must be above 0".into(),
                    )
                })?),
                None => None,
            };
            let (breaker_failures, breaker_cool_down) = match &raw.circuit_breaker {
                Some(b) => (
                    b.failures.max(1),
                    duration(&format!("{key}.circuit_breaker.cool_down"), &b.cool_down)?,
                ),
                None => (5, Duration::from_secs(30)),
            };
            let concurrency = match raw.concurrency {
                Some(0) => {
                    return Err(invalid(
                        &format!("{key}.concurrency"),
                        "must be above 0".into(),
                    ));
                }
                Some(n) => n,
                None => DEFAULT_CONCURRENCY,
            };
            destinations.insert(
                id.clone(),
                DestinationConfig {
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
                },
            );
        }

        Ok(Config {
            origin: origin.to_string(),
            listen,
            store_url,
            retention_days,
            max_body_bytes,
            mappings_dir,
            destinations,
            delivery,
            sources,
        })
    }
}

/// Expands secret templates: each must name an environment variable (a secret written into
/// the file itself is refused), an unset one is recorded, an empty one is refused.
fn env_secrets<'a>(
    templates: impl Iterator<Item = (String, &'a str)>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<EnvSecrets, (String, String)> {
    let mut out = EnvSecrets::default();
    for (key, template) in templates {
        let expanded = expand_env(template, env).map_err(|m| (key.clone(), m))?;
        if expanded.variables == 0 {
            return Err((
                key,
                "secrets come from the environment: write \"${VARIABLE}\", not the secret".into(),
            ));
        }
        if !expanded.unset_variables.is_empty() {
            out.unset_variables.extend(expanded.unset_variables);
        } else if expanded.value.is_empty() {
            return Err((
                key,
                "the secret is empty; an empty secret is refused".into(),
            ));
        } else {
            out.values.push(Secret::new(expanded.value));
        }
    }
    Ok(out)
}

/// The result of expanding `${VAR}` and `${VAR:-default}` in a string.
#[derive(Debug, PartialEq, Eq)]
pub struct Expanded {
    pub value: String,
    /// How many `${…}` references the template holds.
    pub variables: usize,
    /// Variables referenced without a default that the environment does not set.
    pub unset_variables: Vec<String>,
}

/// Expands `${VAR}` (unset: recorded, expands to nothing) and `${VAR:-default}` (unset or
/// empty: the default). A `$` not followed by `{` is kept as it is.
pub fn expand_env(
    template: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Expanded, String> {
    let mut out = Expanded {
        value: String::with_capacity(template.len()),
        variables: 0,
        unset_variables: Vec::new(),
    };
    let mut rest = template;
    while let Some(start) = rest.find("${") {
        out.value.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| format!("unclosed `${{` in `{template}`"))?;
        let inner = &after[..end];
        let (name, default) = match inner.split_once(":-") {
            Some((name, default)) => (name, Some(default)),
            None => (inner, None),
        };
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(format!(
                "`${{{inner}}}` is not a variable reference like ${{NAME}} or ${{NAME:-default}}"
            ));
        }
        out.variables += 1;
        match (env(name), default) {
            (Some(value), Some(default)) if value.is_empty() => out.value.push_str(default),
            (Some(value), _) => out.value.push_str(&value),
            (None, Some(default)) => out.value.push_str(default),
            (None, None) => out.unset_variables.push(name.to_string()),
        }
        rest = &after[end + 1..];
    }
    out.value.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn expands_variables_and_defaults() {
        let env = env_of(&[("PORT", "9000"), ("EMPTY", "")]);
        let e = expand_env("0.0.0.0:${PORT:-8080}", &env).unwrap();
        assert_eq!(e.value, "0.0.0.0:9000");
        assert_eq!(expand_env("${NOPE:-x}", &env).unwrap().value, "x");
        assert_eq!(expand_env("${EMPTY:-d}", &env).unwrap().value, "d");
        assert_eq!(expand_env("a$b", &env).unwrap().value, "a$b");
        let unset = expand_env("${NOPE}", &env).unwrap();
        assert_eq!(unset.unset_variables, vec!["NOPE".to_string()]);
        assert!(expand_env("${NOPE", &env).is_err());
        assert!(expand_env("${bad name}", &env).is_err());
    }

    #[test]
    fn the_shipped_file_loads_with_and_without_secrets() {
        let bare = Config::parse(EMBEDDED, "storehook.toml", &env_of(&[])).unwrap();
        assert_eq!(bare.listen.port(), 8080);
        assert_eq!(bare.store_url, "sqlite://data/storehook.db");
        assert_eq!(bare.max_body_bytes, DEFAULT_MAX_BODY_BYTES);
        assert_eq!(bare.mappings_dir, "mappings");
        let ids: Vec<_> = bare.sources.keys().cloned().collect();
        assert_eq!(ids, ["haravan", "shopify", "woocommerce"]);
        assert!(bare.sources.values().all(|s| !s.secrets.is_set()));
        assert_eq!(
            bare.sources["haravan"].secrets.unset_variables[0],
            "HARAVAN_WEBHOOK_SECRET"
        );

        let env = env_of(&[
            ("PORT", "9999"),
            ("STOREHOOK_STORE_URL", "sqlite:///tmp/x.db"),
            ("HARAVAN_WEBHOOK_SECRET", "h"),
            ("HARAVAN_VERIFY_TOKEN", "t"),
            ("WOOCOMMERCE_WEBHOOK_SECRET", "w"),
            ("SHOPIFY_WEBHOOK_SECRET", "s"),
        ]);
        let full = Config::parse(EMBEDDED, "storehook.toml", &env).unwrap();
        assert_eq!(full.listen.port(), 9999);
        assert_eq!(full.store_url, "sqlite:///tmp/x.db");
        assert_eq!(full.sources["haravan"].platform, PlatformKind::Haravan);
        assert_eq!(full.sources["haravan"].secrets.values[0].expose(), "h");
        assert_eq!(full.sources["haravan"].verify_token.values[0].expose(), "t");
        assert_eq!(
            full.sources["woocommerce"].platform,
            PlatformKind::WooCommerce
        );
        assert_eq!(full.sources["shopify"].secrets.values.len(), 1);
    }

    #[test]
    fn an_empty_secret_is_refused_naming_the_key() {
        let env = env_of(&[("SHOPIFY_WEBHOOK_SECRET", "")]);
        let err = Config::parse(EMBEDDED, "storehook.toml", &env).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("storehook.toml"), "{text}");
        assert!(text.contains("sources.shopify.secrets[0]"), "{text}");
        assert!(text.contains("empty"), "{text}");
    }

    #[test]
    fn invalid_values_name_the_file_and_key() {
        let base = |extra: &str| {
            format!(
                "[server]\nlisten = \"0.0.0.0:8080\"\n{extra}\n[store]\nurl = \"sqlite://x.db\"\n"
            )
        };
        let env = env_of(&[]);
        let e = Config::parse(&base("max_body_bytes = 0"), "f.toml", &env).unwrap_err();
        assert!(e.to_string().contains("server.max_body_bytes"), "{e}");
        let e = Config::parse(&base("colour = 1"), "f.toml", &env).unwrap_err();
        assert!(e.to_string().contains("colour"), "{e}");
        let bad_listen = "[server]\nlisten = \"nowhere\"\n[store]\nurl = \"sqlite://x.db\"\n";
        let e = Config::parse(bad_listen, "f.toml", &env).unwrap_err();
        assert!(e.to_string().contains("server.listen"), "{e}");
        let literal = format!(
            "{}[sources.shop]\nplatform = \"shopify\"\nsecrets = [\"hunter2\"]\n",
            base("")
        );
        let e = Config::parse(&literal, "f.toml", &env).unwrap_err();
        assert!(e.to_string().contains("sources.shop.secrets[0]"), "{e}");
        assert!(!e.to_string().contains("hunter2"), "{e}");
        let platform = format!(
            "{}[sources.shop]\nplatform = \"magento\"\nsecrets = [\"${{S}}\"]\n",
            base("")
        );
        let e = Config::parse(&platform, "f.toml", &env).unwrap_err();
        assert!(e.to_string().contains("magento"), "{e}");
        let id = format!(
            "{}[sources.\"Shop One\"]\nplatform = \"shopify\"\nsecrets = [\"${{S}}\"]\n",
            base("")
        );
        let e = Config::parse(&id, "f.toml", &env).unwrap_err();
        assert!(e.to_string().contains("sources.Shop One"), "{e}");
    }

    #[test]
    fn a_destination_credential_misnamed_or_missing_is_refused_naming_the_key() {
        let legion = |credentials: &str| {
            format!(
                "[server]\nlisten = \"127.0.0.1:0\"\n[store]\nurl = \"sqlite://x.db\"\n\
                 [destinations.legion]\nkind = \"legion\"\nbase_url = \"http://x\"\n\
                 [destinations.legion.credentials]\n{credentials}\n"
            )
        };
        let env = env_of(&[("KEY", "k")]);
        let ok = Config::parse(&legion("api_key = \"${KEY}\""), "f.toml", &env).unwrap();
        assert!(!ok.destinations["legion"].is_dry());
        let typo = Config::parse(&legion("apikey = \"${KEY}\""), "f.toml", &env).unwrap_err();
        let text = typo.to_string();
        assert!(
            text.contains("destinations.legion.credentials.apikey"),
            "{text}"
        );
        assert!(text.contains("api_key"), "{text}");
        let missing = Config::parse(&legion(""), "f.toml", &env).unwrap_err();
        let text = missing.to_string();
        assert!(text.contains("destinations.legion.credentials"), "{text}");
        assert!(text.contains("`api_key` is missing"), "{text}");
    }

    #[test]
    fn rotation_keeps_every_set_secret() {
        let text = "[server]\nlisten = \"127.0.0.1:0\"\n[store]\nurl = \"sqlite://x.db\"\n\
                    [sources.shop]\nplatform = \"shopify\"\nsecrets = [\"${NEW}\", \"${OLD}\", \"${GONE}\"]\n";
        let c = Config::parse(text, "f.toml", &env_of(&[("NEW", "n"), ("OLD", "o")])).unwrap();
        let s = &c.sources["shop"].secrets;
        assert_eq!(s.values.len(), 2);
        assert_eq!(s.unset_variables, vec!["GONE".to_string()]);
        assert_eq!(format!("{:?}", s.values[0]), "Secret(***)");
    }
}
