//! `storehook.toml` plus the environment: parsed, expanded and validated at load, so a bad
//! configuration stops the program with the file and the key named, before anything listens.
//! `raw.rs` is the file's shape, `env.rs` the `${VAR}` expansion and secrets, `destination.rs`
//! a destination's table, `server.rs` the server's limits.

mod destination;
mod env;
mod raw;
mod server;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

pub use destination::{
    DEFAULT_CONCURRENCY, DEFAULT_RETRY_SCHEDULE, DestinationConfig, HeaderSetting, HttpMethod,
    is_secret_header,
};
pub use env::{EnvSecrets, Expanded, expand_env, expand_vars, toml_to_json};
use raw::{RawAdmin, RawConfig, RawDelivery, RawSource};
pub use server::{
    DEFAULT_CONCURRENCY_WAIT, DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_CONCURRENT_REQUESTS,
    DEFAULT_REQUEST_TIMEOUT, ServerLimits,
};

use crate::domain::{PlatformKind, Redactions, Secret};

/// The configuration shipped at the repository root, compiled in so that the binary runs on
/// its defaults even where no `storehook.toml` sits beside it.
pub const EMBEDDED: &str = include_str!("../../storehook.toml");
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

#[derive(Debug, Clone)]
pub struct SourceConfig {
    /// The URL segment: `POST /webhooks/{id}`.
    pub id: String,
    pub platform: PlatformKind,
    /// Any one of these verifies a webhook (more than one during a rotation).
    pub secrets: EnvSecrets,
    /// Haravan's subscription handshake token (`hub.verify_token`).
    pub verify_token: EnvSecrets,
    /// `$vars` values for the webhooks of this source, over each mapping's own `[vars]`
    /// (its `vars` table, and `allow_test_orders` when set).
    pub vars: serde_json::Map<String, serde_json::Value>,
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

/// The environment variable the admin token is read from (never from the file).
pub const ADMIN_TOKEN_VARIABLE: &str = "STOREHOOK_ADMIN_TOKEN";

/// The admin surface: the `/api` JSON routes (and the dashboard on the same auth).
#[derive(Debug, Clone, Default)]
pub struct AdminConfig {
    /// Its own address (`[admin] listen`), so that only the webhooks face the internet; on
    /// the main address when unset.
    pub listen: Option<SocketAddr>,
    /// The header a proxy in front sets to the client's address (`Fly-Client-IP`,
    /// `X-Forwarded-For`): failed tokens are counted per that address, and
    /// `X-Forwarded-Proto` is then trusted for the scheme. Unset (the default), the peer's
    /// address counts and the scheme is plain HTTP: a header a client could set itself is
    /// never believed.
    pub trusted_proxy_header: Option<String>,
    /// `STOREHOOK_ADMIN_TOKEN`, when set (and not empty).
    pub token: Option<Secret>,
}

#[derive(Debug, Clone)]
pub struct Config {
    /// Where the configuration came from, for messages.
    pub origin: String,
    pub listen: SocketAddr,
    pub store_url: String,
    /// Whether `serve` applies the migrations the store lacks at start-up; when not, it
    /// refuses to start on a store that lacks any (`storehook migrate` applies them).
    pub store_migrate: bool,
    /// After this many days, the bodies of webhooks whose deliveries are all done, and the
    /// payloads and attempts of done deliveries, are purged. Their ids and keys stay, so a
    /// late repeat is still recognised and no order is ever delivered twice.
    pub retention_days: u32,
    pub max_body_bytes: usize,
    /// Request deadline, idle keep-alive and the cap on webhooks handled at once.
    pub limits: ServerLimits,
    /// The directory of mapping files.
    pub mappings_dir: String,
    pub destinations: BTreeMap<String, DestinationConfig>,
    pub delivery: DeliveryConfig,
    pub sources: BTreeMap<String, SourceConfig>,
    pub metrics: MetricsConfig,
    pub admin: AdminConfig,
}

/// `[metrics]`: whether `GET /metrics` serves the Prometheus metrics (default on), and
/// whether it asks for the admin token (default not).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricsConfig {
    pub enabled: bool,
    pub require_token: bool,
}

pub const DEFAULT_MAX_BODY_BYTES: usize = 2 * 1024 * 1024;
pub const DEFAULT_MAPPINGS_DIR: &str = "mappings";

impl Config {
    /// Every secret this configuration holds: the destinations' credentials (and `http`
    /// headers taken from the environment), the sources' webhook secrets and verify tokens,
    /// the admin token. The one list of them, from which answers of the outside world are
    /// redacted before they are logged or stored.
    pub fn secrets(&self) -> Redactions {
        let destinations = self
            .destinations
            .values()
            .flat_map(DestinationConfig::secrets);
        let sources = self.sources.values().flat_map(|source| {
            source
                .secrets
                .values
                .iter()
                .chain(&source.verify_token.values)
        });
        Redactions::new(destinations.chain(sources).chain(self.admin.token.as_ref()))
    }

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
        let read = Reader { origin, env };
        let listen_text = read.required("server.listen", &raw.server.listen)?;
        let listen = listen_text.parse().map_err(|e| {
            read.invalid(
                "server.listen",
                format!("`{listen_text}` is not an address like 0.0.0.0:8080 ({e})"),
            )
        })?;
        let max_body_bytes = match raw.server.max_body_bytes {
            None => DEFAULT_MAX_BODY_BYTES,
            Some(0) => return Err(read.invalid("server.max_body_bytes", "must be above 0".into())),
            Some(n) => usize::try_from(n)
                .map_err(|_| read.invalid("server.max_body_bytes", format!("{n} is too large")))?,
        };
        let limits = read.server_limits(&raw.server)?;
        let store_url = read.required("store.url", &raw.store.url)?;
        if store_url.is_empty() {
            return Err(read.invalid("store.url", "is empty".into()));
        }
        let retention_days = match raw.store.retention_days {
            Some(0) => return Err(read.invalid("store.retention_days", "must be above 0".into())),
            Some(days) => days,
            None => 30,
        };
        let mappings_dir = match &raw.mappings {
            Some(m) => read.required("mappings.dir", &m.dir)?,
            None => DEFAULT_MAPPINGS_DIR.to_string(),
        };
        let mut sources = BTreeMap::new();
        for (id, source) in raw.sources {
            sources.insert(id.clone(), read.source(id, source)?);
        }
        let delivery = read.delivery(raw.delivery.as_ref())?;
        let mut destinations = BTreeMap::new();
        for (id, destination) in raw.destinations {
            destinations.insert(id.clone(), read.destination(id, destination)?);
        }
        let admin = read.admin(raw.admin.as_ref())?;
        Ok(Config {
            admin,
            origin: origin.to_string(),
            listen,
            store_url,
            store_migrate: raw.store.migrate.unwrap_or(true),
            retention_days,
            max_body_bytes,
            limits,
            mappings_dir,
            destinations,
            delivery,
            sources,
            metrics: MetricsConfig {
                enabled: raw.metrics.as_ref().and_then(|m| m.enabled).unwrap_or(true),
                require_token: raw
                    .metrics
                    .as_ref()
                    .and_then(|m| m.require_token)
                    .unwrap_or(false),
            },
        })
    }

    /// Each source's `$vars` values, by source id, for [`crate::mapping::Catalog`] (sources
    /// that set none are left out).
    pub fn source_vars(&self) -> BTreeMap<String, serde_json::Map<String, serde_json::Value>> {
        self.sources
            .iter()
            .filter(|(_, source)| !source.vars.is_empty())
            .map(|(id, source)| (id.clone(), source.vars.clone()))
            .collect()
    }
}

/// Reads the values of one configuration text: every error names the file and the key.
struct Reader<'a> {
    origin: &'a str,
    env: &'a dyn Fn(&str) -> Option<String>,
}

impl Reader<'_> {
    fn invalid(&self, key: &str, message: String) -> ConfigError {
        ConfigError::Invalid {
            file: self.origin.to_string(),
            key: key.to_string(),
            message,
        }
    }

    /// `template` with its variables expanded.
    fn expand(&self, key: &str, template: &str) -> Result<Expanded, ConfigError> {
        expand_env(template, self.env).map_err(|m| self.invalid(key, m))
    }

    /// `template` expanded, every variable it names set (or defaulted).
    fn required(&self, key: &str, template: &str) -> Result<String, ConfigError> {
        let expanded = self.expand(key, template)?;
        match expanded.unset_variables.first() {
            Some(var) => Err(self.invalid(
                key,
                format!("environment variable {var} is not set and has no default"),
            )),
            None => Ok(expanded.value),
        }
    }

    /// Secret templates, keyed, read from the environment (see [`env::env_secrets`]).
    fn secrets<'t>(
        &self,
        templates: impl Iterator<Item = (String, &'t str)>,
    ) -> Result<EnvSecrets, ConfigError> {
        env::env_secrets(templates, self.env).map_err(|(k, m)| self.invalid(&k, m))
    }

    /// A duration above zero, written like 500ms, 5s, 2m or 1h.
    fn duration(&self, key: &str, text: &str) -> Result<Duration, ConfigError> {
        text.parse::<jiff::SignedDuration>()
            .ok()
            .and_then(|d| Duration::try_from(d).ok())
            .filter(|d| !d.is_zero())
            .ok_or_else(|| {
                self.invalid(
                    key,
                    format!("`{text}` is not a duration like 500ms, 5s, 2m or 1h"),
                )
            })
    }

    /// The source `id` as its table describes it.
    fn source(&self, id: String, source: RawSource) -> Result<SourceConfig, ConfigError> {
        let key = format!("sources.{id}");
        if id.is_empty()
            || !id
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        {
            return Err(self.invalid(
                &key,
                "a source id is its URL segment: use lowercase letters, digits, - and _".into(),
            ));
        }
        if source.secrets.is_empty() {
            return Err(self.invalid(
                &format!("{key}.secrets"),
                "list at least one secret, e.g. [\"${SHOP_WEBHOOK_SECRET}\"]".into(),
            ));
        }
        let secrets = self.secrets(
            source
                .secrets
                .iter()
                .enumerate()
                .map(|(i, t)| (format!("{key}.secrets[{i}]"), t.as_str())),
        )?;
        let verify_token = self.secrets(
            source
                .verify_token
                .iter()
                .map(|t| (format!("{key}.verify_token"), t.as_str())),
        )?;
        let vars = match expand_vars(&source.vars, self.env) {
            Ok(serde_json::Value::Object(vars)) => vars,
            Ok(_) => serde_json::Map::new(),
            Err((name, message)) => {
                return Err(self.invalid(&format!("{key}.vars.{name}"), message));
            }
        };
        let mut vars = vars;
        if let Some(allow) = source.allow_test_orders {
            vars.insert("allow_test_orders".into(), allow.into());
        }
        Ok(SourceConfig {
            id,
            platform: source.platform,
            secrets,
            verify_token,
            vars,
        })
    }

    /// The `[admin]` table, and the token from the environment.
    fn admin(&self, raw: Option<&RawAdmin>) -> Result<AdminConfig, ConfigError> {
        let listen = match raw.and_then(|a| a.listen.as_deref()) {
            None => None,
            Some(template) => {
                let text = self.required("admin.listen", template)?;
                Some(text.parse().map_err(|e| {
                    self.invalid(
                        "admin.listen",
                        format!("`{text}` is not an address like 127.0.0.1:9091 ({e})"),
                    )
                })?)
            }
        };
        let trusted_proxy_header = match raw.and_then(|a| a.trusted_proxy_header.as_deref()) {
            None => None,
            Some(name) => {
                let name = self.required("admin.trusted_proxy_header", name)?;
                if axum::http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                    return Err(self.invalid(
                        "admin.trusted_proxy_header",
                        format!(
                            "`{name}` is not a header name (e.g. Fly-Client-IP, X-Forwarded-For)"
                        ),
                    ));
                }
                Some(name)
            }
        };
        let token = (self.env)(ADMIN_TOKEN_VARIABLE)
            .filter(|token| !token.trim().is_empty())
            .map(Secret::new);
        Ok(AdminConfig {
            listen,
            trusted_proxy_header,
            token,
        })
    }

    /// The `[delivery]` table, with its defaults.
    fn delivery(&self, raw: Option<&RawDelivery>) -> Result<DeliveryConfig, ConfigError> {
        let setting = |key: &str, value: Option<&String>, default: &str| {
            self.duration(key, value.map_or(default, String::as_str))
        };
        Ok(DeliveryConfig {
            lease: setting("delivery.lease", raw.and_then(|d| d.lease.as_ref()), "60s")?,
            waiting_timeout: setting(
                "delivery.waiting_timeout",
                raw.and_then(|d| d.waiting_timeout.as_ref()),
                "24h",
            )?,
            shutdown_grace: setting(
                "delivery.shutdown_grace",
                raw.and_then(|d| d.shutdown_grace.as_ref()),
                "10s",
            )?,
        })
    }
}
