//! The Destination seam: how each kind of target service is asked to do an operation, and
//! how its answer is read. One file per kind; [`send`] does the HTTP part they share and
//! turns every answer into an [`Outcome`]: delivered, retry later, or failed for good.

mod generic;
mod legion;
mod salekit;
mod scalef;

use std::time::Duration;

use serde::Serialize;
use serde_json::Value;

use crate::config::{DestinationConfig, HttpMethod};
use crate::domain::{DestinationKind, Operation, Redactions, Secret};

/// How much of a response body is kept with an attempt.
pub const RESPONSE_EXCERPT_BYTES: usize = 2048;

/// Every request's `User-Agent`.
pub const USER_AGENT: &str = concat!("storehook/", env!("CARGO_PKG_VERSION"));

/// One delivery as a destination sends it.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub delivery_id: i64,
    /// The mapping that made it and its key as stored (`source/key`): together they name
    /// the delivery wherever it is stored, and make its `Idempotency-Key`.
    pub mapping: String,
    pub key: String,
    pub operation: Operation,
    pub payload: Value,
    /// For a Scalef status update: the id the conversion's create answered with.
    pub conversion_id: Option<String>,
}

/// A header of a request; secret values are masked wherever the request is shown or stored.
#[derive(Debug, Clone)]
pub enum HeaderValue {
    Plain(String),
    Secret(Secret),
    /// A credential that is not configured: shown in dry runs, never sent.
    Unset,
}

/// The exact request a delivery becomes.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: HttpMethod,
    pub url: String,
    pub headers: Vec<(String, HeaderValue)>,
    pub body: Vec<u8>,
}

/// A request as it may be shown or stored: secret header values replaced by `***`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ShownRequest {
    pub method: &'static str,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Request {
    fn json(url: String, headers: Vec<(String, HeaderValue)>, body: &impl Serialize) -> Request {
        let mut all = vec![(
            "Content-Type".to_string(),
            HeaderValue::Plain("application/json".into()),
        )];
        all.extend(headers);
        Request {
            method: HttpMethod::Post,
            url,
            headers: all,
            body: serde_json::to_vec(body).expect("JSON values serialise"),
        }
    }

    pub fn shown(&self) -> ShownRequest {
        ShownRequest {
            method: self.method.as_str(),
            url: self.url.clone(),
            headers: self
                .headers
                .iter()
                .map(|(name, value)| {
                    let value = match value {
                        HeaderValue::Plain(v) => v.clone(),
                        HeaderValue::Secret(_) => "***".into(),
                        HeaderValue::Unset => "(not set)".into(),
                    };
                    (name.clone(), value)
                })
                .collect(),
            body: String::from_utf8_lossy(&self.body).into_owned(),
        }
    }
}

/// What became of one attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Delivered {
        status: u16,
        response: String,
        /// What a Scalef create answered with; later status updates need it.
        conversion_id: Option<String>,
    },
    /// 408, 429, 5xx, a time-out or a connection error: try again, not before `after` when
    /// the destination said so (`Retry-After`).
    Retry {
        after: Option<Duration>,
        reason: String,
        /// The answer's HTTP status; none for a time-out or a connection error.
        status: Option<u16>,
    },
    /// Any other answer, or a 2xx whose body refuses: repeating will not help.
    Failed {
        reason: String,
        /// The answer's HTTP status; none when no request was sent.
        status: Option<u16>,
    },
}

impl Outcome {
    /// The HTTP status of the answer, when there was one.
    pub fn http_status(&self) -> Option<u16> {
        match self {
            Outcome::Delivered { status, .. } => Some(*status),
            Outcome::Retry { status, .. } | Outcome::Failed { status, .. } => *status,
        }
    }
}

/// What each kind of destination knows.
pub trait Destination: Send + Sync {
    fn kind(&self) -> &'static str;
    /// The operations it performs.
    fn operations(&self) -> &'static [Operation];
    /// Deliveries per request (only Legion takes several).
    fn max_batch(&self) -> usize {
        1
    }
    /// The request for a batch of deliveries; an error fails them (nothing is sent).
    fn request(&self, batch: &[Outgoing]) -> Result<Request, String>;
    /// Reads a 2xx answer's body: the conversion id when there is one, or why the
    /// destination refused despite its status.
    fn read_success(&self, batch: &[Outgoing], body: &[u8]) -> Result<Option<String>, String>;
}

/// The destination a configuration describes.
pub fn build(config: &DestinationConfig) -> Box<dyn Destination> {
    match config.kind {
        DestinationKind::Legion => Box::new(legion::Legion::new(config)),
        DestinationKind::Scalef => Box::new(scalef::Scalef::new(config)),
        DestinationKind::Salekit => Box::new(salekit::Salekit::new(config)),
        DestinationKind::Http => Box::new(generic::Http::new(config)),
    }
}

/// The request for `batch` as it is sent (or, dry, recorded): the destination's own, with
/// the headers every request carries: `User-Agent: storehook/<version>` and, for a request
/// of one delivery, an `Idempotency-Key` that names that delivery, so that a receiver can
/// recognise a retry or a replay of what it already took.
pub fn request(destination: &dyn Destination, batch: &[Outgoing]) -> Result<Request, String> {
    let mut request = destination.request(batch)?;
    request.headers.push((
        "User-Agent".to_string(),
        HeaderValue::Plain(USER_AGENT.to_string()),
    ));
    if let [one] = batch {
        request.headers.push((
            "Idempotency-Key".to_string(),
            HeaderValue::Plain(idempotency_key(&one.mapping, &one.key)),
        ));
    }
    Ok(request)
}

/// A delivery's `Idempotency-Key`: a UUID (version 5) of its mapping and stored key. The
/// same on every retry and replay, whichever store keeps it and whatever row id it has.
pub fn idempotency_key(mapping: &str, key: &str) -> String {
    static NAMESPACE: std::sync::LazyLock<uuid::Uuid> = std::sync::LazyLock::new(|| {
        uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_URL, b"storehook/idempotency-key")
    });
    uuid::Uuid::new_v5(&NAMESPACE, format!("{mapping}\n{key}").as_bytes()).to_string()
}

/// An HTTP client for destinations: time-outs as configured, redirects never followed.
pub fn client(connect_timeout: Duration, timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .connect_timeout(connect_timeout)
        .timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("a client with rustls builds")
}

/// Sends a batch and reads the answer. What the answer says (its excerpt, the reason of a
/// failure) comes with every one of `secrets` and of the credentials the request carried
/// redacted: a destination that quotes the request it refuses puts no secret in the log or
/// the store.
#[tracing::instrument(name = "send_to_destination", skip_all, fields(kind = destination.kind(), deliveries = batch.len()))]
pub async fn send(
    client: &reqwest::Client,
    destination: &dyn Destination,
    batch: &[Outgoing],
    secrets: &Redactions,
) -> Outcome {
    let request = match request(destination, batch) {
        Ok(request) => request,
        Err(reason) => {
            return Outcome::Failed {
                reason,
                status: None,
            };
        }
    };
    let secrets = secrets.with(request.headers.iter().filter_map(|(_, value)| match value {
        HeaderValue::Secret(secret) => Some(secret),
        HeaderValue::Plain(_) | HeaderValue::Unset => None,
    }));
    let method = match request.method {
        HttpMethod::Post => reqwest::Method::POST,
        HttpMethod::Put => reqwest::Method::PUT,
        HttpMethod::Patch => reqwest::Method::PATCH,
    };
    let mut builder = client.request(method, &request.url).body(request.body);
    for (name, value) in &request.headers {
        builder = match value {
            HeaderValue::Plain(v) => builder.header(name, v),
            HeaderValue::Secret(s) => builder.header(name, s.expose()),
            HeaderValue::Unset => {
                return Outcome::Failed {
                    reason: format!("the credential for header {name} is not configured"),
                    status: None,
                };
            }
        };
    }
    let response = match builder.send().await {
        Ok(response) => response,
        Err(err) if err.is_timeout() => {
            return Outcome::Retry {
                after: None,
                reason: "the request timed out".into(),
                status: None,
            };
        }
        Err(err) => {
            // Without the URL: it may hold a secret (a token in a path), and the reason is
            // stored and shown.
            let error = error_chain(&err.without_url());
            return Outcome::Retry {
                after: None,
                reason: format!("the request failed: {}", secrets.redact(&error)),
                status: None,
            };
        }
    };
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| retry_after(v, std::time::SystemTime::now()));
    match response.bytes().await {
        Ok(body) => classify(destination, batch, status, retry_after, &body, &secrets),
        Err(err) => Outcome::Retry {
            after: retry_after,
            reason: format!(
                "HTTP {status}, but the body could not be read: {}",
                secrets.redact(&err.without_url().to_string())
            ),
            status: Some(status),
        },
    }
}

/// The longest `Retry-After` honoured: a day, the default schedule's longest step. A
/// destination (or a proxy before it) asking for longer would park a delivery for as long,
/// and a value near `u64::MAX` seconds would overflow the next attempt's time.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 3600);

/// A `Retry-After` value (RFC 9110, 10.2.3): seconds, or an HTTP date (a date already past
/// is no wait), at most [`MAX_RETRY_AFTER`]; `None` when it is neither.
fn retry_after(value: &str, now: std::time::SystemTime) -> Option<Duration> {
    let value = value.trim();
    let wait = match value.parse::<u64>() {
        Ok(seconds) => Duration::from_secs(seconds),
        Err(_) => httpdate::parse_http_date(value)
            .ok()?
            .duration_since(now)
            .unwrap_or(Duration::ZERO),
    };
    Some(wait.min(MAX_RETRY_AFTER))
}

/// The outcome of an answer: 2xx is read by the destination, 408/429/5xx are retried,
/// everything else fails for good. The body's excerpt and a refusal read in it have
/// `secrets` redacted (the whole body before it is cut, so that no part of one is left at
/// the cut).
pub fn classify(
    destination: &dyn Destination,
    batch: &[Outgoing],
    status: u16,
    retry_after: Option<Duration>,
    body: &[u8],
    secrets: &Redactions,
) -> Outcome {
    let response = excerpt(&secrets.redact(&String::from_utf8_lossy(body)));
    match status {
        200..=299 => match destination.read_success(batch, body) {
            Ok(conversion_id) => Outcome::Delivered {
                status,
                response,
                conversion_id,
            },
            Err(refusal) => Outcome::Failed {
                reason: format!("HTTP {status} but refused: {}", secrets.redact(&refusal)),
                status: Some(status),
            },
        },
        408 | 429 | 500..=599 => Outcome::Retry {
            after: retry_after,
            reason: format!("HTTP {status}: {response}"),
            status: Some(status),
        },
        _ => Outcome::Failed {
            reason: format!("HTTP {status}: {response}"),
            status: Some(status),
        },
    }
}

/// At most [`RESPONSE_EXCERPT_BYTES`] of `text` (cut at a character's boundary, `…` after).
fn excerpt(text: &str) -> String {
    if text.len() <= RESPONSE_EXCERPT_BYTES {
        text.to_string()
    } else {
        format!(
            "{}…",
            &text[..text.floor_char_boundary(RESPONSE_EXCERPT_BYTES)]
        )
    }
}

fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// A credential header's value ([`HeaderValue::Unset`] when it is not configured).
fn credential(config: &DestinationConfig, name: &str) -> HeaderValue {
    config
        .credentials
        .get(name)
        .cloned()
        .map_or(HeaderValue::Unset, HeaderValue::Secret)
}

/// A setting with its default.
fn setting(config: &DestinationConfig, name: &str, default: &str) -> String {
    config
        .settings
        .get(name)
        .cloned()
        .unwrap_or_else(|| default.to_string())
}

/// The one payload of a single-delivery request.
fn single(batch: &[Outgoing]) -> Result<&Outgoing, String> {
    match batch {
        [one] => Ok(one),
        _ => Err(format!(
            "expected one delivery per request, got {}",
            batch.len()
        )),
    }
}

/// A JSON body, or why it is not one.
fn json_body(body: &[u8]) -> Result<Value, String> {
    serde_json::from_slice(body).map_err(|e| format!("the answer is not JSON ({e})"))
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::{MAX_RETRY_AFTER, retry_after};

    #[test]
    fn retry_after_reads_seconds_and_dates_and_is_bounded() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_780_000_000);
        assert_eq!(retry_after(" 2 ", now), Some(Duration::from_secs(2)));
        let later = httpdate::fmt_http_date(now + Duration::from_secs(120));
        assert_eq!(retry_after(&later, now), Some(Duration::from_secs(120)));
        let earlier = httpdate::fmt_http_date(now - Duration::from_secs(60));
        assert_eq!(retry_after(&earlier, now), Some(Duration::ZERO));
        assert_eq!(retry_after("31536000", now), Some(MAX_RETRY_AFTER));
        assert_eq!(
            retry_after("18446744073709551615", now),
            Some(MAX_RETRY_AFTER)
        );
        assert_eq!(retry_after("soon", now), None);
        assert_eq!(retry_after("-5", now), None);
    }
}
