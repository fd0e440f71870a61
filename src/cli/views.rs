//! `storehook webhooks`, `storehook webhook ID` and `storehook delivery ID`: what was
//! received and what became of it, as [`crate::ops`] reads it.

use std::process::ExitCode;

use super::outbox::{fit, since_ms, utc_time};
use crate::config::Config;
use crate::domain::{DeliveryId, DeliveryStatus, WebhookId, WebhookStatus};
use crate::ops::{self, Body, DeliveryRequest, RequestShown};
use crate::store::{self, AttemptRecord, DeliverySummary, WebhookFilter};

/// The options of `storehook webhooks`.
#[derive(Debug, clap::Args)]
pub struct WebhooksArgs {
    /// Only webhooks in this status (accepted, translated, untranslated, purged); `any` for
    /// all
    #[arg(long)]
    pub status: Option<String>,
    /// Only webhooks from this source (its id in the configuration, e.g. haravan)
    #[arg(long)]
    pub source: Option<String>,
    /// Only webhooks of this topic (e.g. orders/paid)
    #[arg(long)]
    pub topic: Option<String>,
    /// Only webhooks received within this long (e.g. 30m, 2h, 7d)
    #[arg(long)]
    pub since: Option<String>,
    /// Only webhooks of this order: its id, or the number the shop shows (the body's `id`,
    /// `order_number` or `number`)
    #[arg(long)]
    pub order: Option<String>,
    /// At most this many
    #[arg(long)]
    pub limit: Option<i64>,
    /// JSON instead of a table
    #[arg(long)]
    pub json: bool,
}

impl WebhooksArgs {
    fn filter(&self) -> anyhow::Result<WebhookFilter> {
        let status = match self.status.as_deref() {
            Some("any") | None => None,
            Some(word) => Some(webhook_status(word)?),
        };
        Ok(WebhookFilter {
            status,
            source: self.source.clone(),
            topic: self.topic.clone(),
            since_ms: self.since.as_deref().map(since_ms).transpose()?,
            order_id: self.order.clone(),
            limit: self.limit,
            ..WebhookFilter::default()
        })
    }
}

/// The webhook status `--status` names; a delivery's status word points to `deliveries`.
fn webhook_status(word: &str) -> anyhow::Result<WebhookStatus> {
    if word.parse::<DeliveryStatus>().is_ok() {
        anyhow::bail!(
            "--status {word}: `{word}` is a delivery status, not a webhook's: use `storehook deliveries --status {word}`"
        );
    }
    word.parse::<WebhookStatus>()
        .map_err(|unknown| anyhow::anyhow!("--status {word}: {unknown}, or `any` for all"))
}

pub async fn webhooks(config: &Config, args: &WebhooksArgs) -> anyhow::Result<ExitCode> {
    let filter = args.filter()?;
    let store = store::open(&config.store_url).await?;
    let rows = ops::list_webhooks(store.as_ref(), &filter).await?;
    if args.json {
        say!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(ExitCode::SUCCESS);
    }
    say!(
        "{:>7} {:<19} {:<12} {:<22} {:<12} {:>5} {:>5}  translation error",
        "id",
        "received (UTC)",
        "source",
        "topic",
        "status",
        "dlv",
        "skip"
    );
    for row in &rows {
        let error = row.error.as_deref().unwrap_or("").replace('\n', " ");
        say!(
            "{:>7} {:<19} {:<12} {:<22} {:<12} {:>5} {:>5}  {}",
            row.id,
            utc_time(row.received_at),
            fit(&row.source, 12),
            fit(&row.topic, 22),
            row.status,
            row.deliveries,
            row.skipped,
            fit(&error, 80)
        );
    }
    say!("{} webhooks", rows.len());
    Ok(ExitCode::SUCCESS)
}

/// Exit 1 with `error: no {what} {id}` on stderr.
fn not_found(what: &str, id: i64) -> ExitCode {
    eprintln!("error: no {what} {id}");
    ExitCode::FAILURE
}

pub async fn webhook(config: &Config, id: i64, json: bool) -> anyhow::Result<ExitCode> {
    let store = store::open(&config.store_url).await?;
    let Some(webhook) = ops::webhook(store.as_ref(), WebhookId(id)).await? else {
        return Ok(not_found("webhook", id));
    };
    if json {
        say!("{}", serde_json::to_string_pretty(&webhook)?);
        return Ok(ExitCode::SUCCESS);
    }
    let summary = &webhook.summary;
    say!(
        "webhook {}: {} from {} ({}), received {} UTC",
        summary.id,
        summary.topic,
        summary.source,
        summary.platform,
        utc_time(summary.received_at)
    );
    say!("dedupe id: {}", summary.dedupe_id);
    say!("status:    {}", summary.status);
    if let Some(error) = &summary.error {
        say!("translation error:");
        say_indented(error);
    }
    say!("");
    say!("headers:");
    for (name, value) in &webhook.headers {
        say!("  {name}: {value}");
    }
    say!("");
    match &webhook.body {
        Body::Json(json) => {
            say!("body:");
            say_indented(&serde_json::to_string_pretty(json)?);
        }
        Body::Text(text) => {
            say!("body (not JSON):");
            say_indented(text);
        }
        Body::Purged => say!("body: purged (the retention purge removed it)"),
    }
    say!("");
    say!(
        "deliveries ({} made, {} skipped):",
        summary.deliveries,
        summary.skipped
    );
    if webhook.delivery_log.is_empty() {
        say!("  none (no mapping made one, or an earlier webhook made each already)");
    }
    for entry in &webhook.delivery_log {
        say!("  {}", delivery_line(&entry.delivery));
        say_attempts(&entry.attempt_log, "    ");
    }
    Ok(ExitCode::SUCCESS)
}

/// A delivery on one line: id, mapping, key, destination, status, and for a skipped one the
/// kind and reason of its skip.
fn delivery_line(delivery: &DeliverySummary) -> String {
    let mut line = format!(
        "delivery {}: {} {} -> {}: {}",
        delivery.id, delivery.mapping, delivery.key, delivery.destination, delivery.status
    );
    if let Some(kind) = delivery.skip {
        let reason = delivery
            .last_error
            .as_deref()
            .unwrap_or("")
            .replace('\n', " ");
        line.push_str(&format!(" [{kind}] {}", fit(&reason, 100)));
    }
    line
}

/// Each attempt on a line of its own, oldest first, after `indent`.
fn say_attempts(attempts: &[AttemptRecord], indent: &str) {
    if attempts.is_empty() {
        say!("{indent}no attempts");
        return;
    }
    for attempt in attempts {
        let status = attempt
            .http_status
            .map_or_else(|| "-".to_string(), |s| s.to_string());
        let response = attempt.response.as_deref().unwrap_or("").replace('\n', " ");
        say!(
            "{indent}{} UTC  {:<9} HTTP {:>3}  {:>6} ms  {}",
            utc_time(attempt.started_at),
            attempt.outcome,
            status,
            attempt.duration_ms,
            fit(&response, 100)
        );
    }
}

/// `text`, each line indented by two spaces.
fn say_indented(text: &str) {
    for line in text.lines() {
        say!("  {line}");
    }
}

pub async fn delivery(config: &Config, id: i64, json: bool) -> anyhow::Result<ExitCode> {
    let store = store::open(&config.store_url).await?;
    let Some(delivery) =
        ops::delivery(store.as_ref(), &config.destinations, DeliveryId(id)).await?
    else {
        return Ok(not_found("delivery", id));
    };
    if json {
        say!("{}", serde_json::to_string_pretty(&delivery)?);
        return Ok(ExitCode::SUCCESS);
    }
    let summary = &delivery.summary;
    say!(
        "delivery {} of webhook {}, created {} UTC",
        summary.id,
        summary.webhook_id,
        utc_time(summary.created_at)
    );
    say!("mapping:     {}", summary.mapping);
    say!("key:         {}", summary.key);
    say!(
        "destination: {} ({})",
        summary.destination,
        summary.operation
    );
    say!("status:      {}", summary.status);
    if let Some(kind) = summary.skip {
        say!("skipped:     {kind}");
    }
    if let Some(error) = &summary.last_error {
        say!("last error:  {}", error.replace('\n', " "));
    }
    say!(
        "attempts:    {} (since it was made or last replayed); next due {} UTC",
        summary.attempts,
        utc_time(summary.next_attempt_at)
    );
    if let Some(id) = &delivery.conversion_id {
        say!("conversion:  {id}");
    }
    if let Some(until) = delivery.lease_until {
        say!("leased until {} UTC", utc_time(until));
    }
    if let Some(waits) = &delivery.waits_for {
        let needed = match (waits.delivery, waits.status) {
            (Some(id), Some(status)) => format!("delivery {id}, {status}"),
            _ => "not stored yet".to_string(),
        };
        say!("waits for:   {} {}: {needed}", waits.mapping, waits.key);
    }
    say!("");
    say!("payload:");
    say_indented(&serde_json::to_string_pretty(&delivery.payload)?);
    say!("");
    match &delivery.request {
        DeliveryRequest::Stored { request } => {
            say!("request (kept by the dry run; nothing was sent):");
            say_request(request);
        }
        DeliveryRequest::Rebuilt { request } => {
            say!("request (as the current configuration makes it; secrets shown as ***):");
            say_request(request);
        }
        DeliveryRequest::Unavailable { reason } => say!("request: none ({reason})"),
    }
    say!("");
    say!("attempts:");
    say_attempts(&delivery.attempt_log, "  ");
    Ok(ExitCode::SUCCESS)
}

/// A request as it goes on the wire: method and URL, headers, then the body (pretty when
/// it is JSON).
fn say_request(request: &RequestShown) {
    say!("  {} {}", request.method, request.url);
    for (name, value) in &request.headers {
        say!("  {name}: {value}");
    }
    let body = serde_json::from_str::<serde_json::Value>(&request.body)
        .ok()
        .and_then(|json| serde_json::to_string_pretty(&json).ok())
        .unwrap_or_else(|| request.body.clone());
    say!("");
    say_indented(&body);
}
