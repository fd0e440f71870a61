//! The `[server]` limits that keep the service answering on the open internet: how long a
//! request may take to arrive, how long an idle connection is kept, and how many webhooks
//! are handled at once.

use std::time::Duration;

use super::raw::RawServer;
use super::{ConfigError, Reader};

/// How the HTTP server guards itself against slow and numerous senders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerLimits {
    /// From a request's first byte to its last: headers not complete by then close the
    /// connection; a body not complete by then is answered `408` and the connection closed.
    /// Nothing of such a request is stored.
    pub request_timeout: Duration,
    /// A keep-alive connection with no request in progress is closed after this.
    pub idle_timeout: Duration,
    /// Webhooks handled at once (from their headers to their answer); `/healthz` and
    /// `/readyz` are not counted.
    pub max_concurrent_requests: usize,
    /// How long a webhook beyond the cap waits for a free slot before it is answered `503`
    /// with `Retry-After`.
    pub concurrency_wait: Duration,
}

pub const DEFAULT_REQUEST_TIMEOUT: &str = "30s";
pub const DEFAULT_IDLE_TIMEOUT: &str = "60s";
pub const DEFAULT_MAX_CONCURRENT_REQUESTS: usize = 512;
pub const DEFAULT_CONCURRENCY_WAIT: &str = "2s";

impl Default for ServerLimits {
    fn default() -> Self {
        Self {
            request_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            max_concurrent_requests: DEFAULT_MAX_CONCURRENT_REQUESTS,
            concurrency_wait: Duration::from_secs(2),
        }
    }
}

impl Reader<'_> {
    /// The limits of the `[server]` table, with their defaults.
    pub(super) fn server_limits(&self, raw: &RawServer) -> Result<ServerLimits, ConfigError> {
        let setting = |key: &str, value: &Option<String>, default: &str| {
            let text = match value {
                Some(template) => self.required(key, template)?,
                None => default.to_string(),
            };
            self.duration(key, &text)
        };
        let request_timeout = setting(
            "server.request_timeout",
            &raw.request_timeout,
            DEFAULT_REQUEST_TIMEOUT,
        )?;
        let idle_timeout = setting(
            "server.idle_timeout",
            &raw.idle_timeout,
            DEFAULT_IDLE_TIMEOUT,
        )?;
        let concurrency_wait = setting(
            "server.concurrency_wait",
            &raw.concurrency_wait,
            DEFAULT_CONCURRENCY_WAIT,
        )?;
        if concurrency_wait >= request_timeout {
            return Err(self.invalid(
                "server.concurrency_wait",
                format!(
                    "must be shorter than server.request_timeout ({request_timeout:?}): a webhook \
                     waiting for a slot would outlast its own deadline"
                ),
            ));
        }
        let max_concurrent_requests = match raw.max_concurrent_requests {
            None => DEFAULT_MAX_CONCURRENT_REQUESTS,
            Some(0) => {
                return Err(
                    self.invalid("server.max_concurrent_requests", "must be above 0".into())
                );
            }
            Some(n) => usize::try_from(n).map_err(|_| {
                self.invalid(
                    "server.max_concurrent_requests",
                    format!("{n} is too large"),
                )
            })?,
        };
        Ok(ServerLimits {
            request_timeout,
            idle_timeout,
            max_concurrent_requests,
            concurrency_wait,
        })
    }
}
