//! `storehook deliveries` and `storehook replay`: the outbox as operators see and fix it.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context as _;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::Value;

use crate::config::Config;
use crate::domain::{DeliveryStatus, PlatformKind, WebhookId};
use crate::mapping::{Catalog, Webhook};
use crate::store::{self, DeliveryFilter, NewDelivery, now_ms};

/// The filter options shared by both verbs.
#[derive(Debug, clap::Args)]
pub struct FilterArgs {
    /// Only deliveries in this status (pending, waiting, in_flight, delivered, dead,
    /// skipped, dry_run); `any` for all
    #[arg(long)]
    pub status: Option<String>,
    /// Only deliveries to this destination
    #[arg(long)]
    pub destination: Option<String>,
    /// Only deliveries created within this long (e.g. 30m, 2h, 7d)
    #[arg(long)]
    pub since: Option<String>,
    /// Only the deliveries of this webhook
    #[arg(long)]
    pub webhook: Option<i64>,
    /// At most this many
    #[arg(long)]
    pub limit: Option<i64>,
}

impl FilterArgs {
    fn filter(&self, default_status: Option<DeliveryStatus>) -> anyhow::Result<DeliveryFilter> {
        let status = match self.status.as_deref() {
            Some("any") => None,
            Some(status) => Some(
                status
                    .parse::<DeliveryStatus>()
                    .with_context(|| format!("--status {status}"))?,
            ),
            None => default_status,
        };
        let since_ms = match &self.since {
            Some(text) => {
                let span: jiff::Span = text.parse().with_context(|| {
                    format!("--since {text}: not a duration like 30m, 2h or 7d")
                })?;
                let ago = span
                    .to_duration(jiff::SpanRelativeTo::days_are_24_hours())
                    .with_context(|| format!("--since {text}"))?;
                Some(now_ms() - ago.as_millis() as i64)
            }
            None => None,
        };
        Ok(DeliveryFilter {
            status,
            destination: self.destination.clone(),
            since_ms,
            webhook_id: self.webhook.map(WebhookId),
            limit: self.limit,
        })
    }
}

pub async fn deliveries(
    config: &Config,
    args: &FilterArgs,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let store = store::open(&config.store_url).await?;
    let mut filter = args.filter(None)?;
    filter.limit = filter.limit.or(Some(50));
    let rows = store.list_deliveries(&filter).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:>6} {:>7} {:<30} {:<18} {:<10} {:<10} {:>3}  last error",
        "id", "webhook", "mapping", "key", "to", "status", "try"
    );
    for row in &rows {
        let error = row.last_error.as_deref().unwrap_or("").replace('\n', " ");
        let error: String = error.chars().take(60).collect();
        println!(
            "{:>6} {:>7} {:<30} {:<18} {:<10} {:<10} {:>3}  {error}",
            row.id, row.webhook_id, row.mapping, row.key, row.destination, row.status, row.attempts
        );
    }
    println!("{} deliveries", rows.len());
    Ok(ExitCode::SUCCESS)
}

pub async fn replay(
    config: &Config,
    args: &FilterArgs,
    retranslate: bool,
) -> anyhow::Result<ExitCode> {
    let store = store::open(&config.store_url).await?;
    // Without a status, replay means the dead letters (unless one webhook is named).
    let default_status = if args.webhook.is_some() {
        None
    } else {
        Some(DeliveryStatus::Dead)
    };
    let filter = args.filter(default_status)?;
    if !retranslate {
        let done = store.requeue_deliveries(&filter, now_ms()).await?;
        println!(
            "requeued {} deliveries; a running `storehook serve` sends them now",
            done.requeued
        );
        if done.waiting > 0 {
            println!(
                "{} of them wait for the delivery they need (a Scalef status update for its conversion)",
                done.waiting
            );
        }
        if done.rearmed > 0 {
            println!(
                "{} skipped status updates wait again for their requeued conversion",
                done.rearmed
            );
        }
        if done.purged > 0 {
            println!(
                "{} not requeued: the retention purge removed their payload (webhooks older than retention_days)",
                done.purged
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    let catalog = Catalog::load(Path::new(&config.mappings_dir)).map_err(|errors| {
        let listed: Vec<String> = errors.iter().map(ToString::to_string).collect();
        anyhow::anyhow!(
            "{} error(s) in the mapping files:\n{}",
            errors.len(),
            listed.join("\n")
        )
    })?;
    let webhooks = store.webhooks_for(&filter).await?;
    let (mut added, mut replaced, mut failed) = (0, 0, 0);
    let bar = progress_bar(webhooks.len());
    for (done, webhook) in webhooks.iter().enumerate() {
        let platform: PlatformKind =
            serde_json::from_value(Value::String(webhook.platform.clone())).with_context(|| {
                format!(
                    "webhook {}: unknown platform {}",
                    webhook.id, webhook.platform
                )
            })?;
        let headers: BTreeMap<String, String> = webhook.headers.clone();
        let (plans, error) = catalog.plans_and_error(&Webhook {
            source: &webhook.source,
            platform,
            topic: &webhook.topic,
            headers: &headers,
            body: &webhook.body,
        });
        let deliveries: Vec<NewDelivery> = plans
            .into_iter()
            .filter(|plan| {
                filter
                    .destination
                    .as_ref()
                    .is_none_or(|d| *d == plan.destination)
            })
            .map(NewDelivery::from)
            .collect();
        if let Some(error) = &error {
            failed += 1;
            bar.suspend(|| eprintln!("webhook {}: {}", webhook.id, error.replace('\n', "; ")));
        }
        let (a, r) = store
            .replace_deliveries(
                webhook.id,
                &deliveries,
                error.as_deref(),
                filter.status,
                now_ms(),
            )
            .await?;
        added += a;
        replaced += r;
        bar.inc(1);
        // Without a terminal (a log, CI) the bar is hidden: a line every 100 instead.
        if bar.is_hidden() && (done + 1) % 100 == 0 {
            eprintln!("… {}/{} webhooks re-translated", done + 1, webhooks.len());
        }
    }
    bar.finish_and_clear();
    println!(
        "re-translated {} webhooks: {added} deliveries added, {replaced} replaced and requeued, {failed} webhooks with errors",
        webhooks.len()
    );
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// A bar on stderr when it is a terminal; hidden otherwise.
fn progress_bar(len: usize) -> ProgressBar {
    let bar = ProgressBar::new(len as u64);
    bar.set_style(
        ProgressStyle::with_template(
            "re-translating {bar:40} {pos}/{len} webhooks ({per_sec}, {eta} left)",
        )
        .expect("a valid template"),
    );
    bar
}
