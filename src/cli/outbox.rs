//! `storehook deliveries` and `storehook replay`: the outbox as operators see and fix it.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context as _;
use indicatif::{ProgressBar, ProgressStyle};

use crate::config::Config;
use crate::domain::{DeliveryStatus, WebhookId};
use crate::mapping::Catalog;
use crate::ops;
use crate::store::{self, DeliveryFilter, now_ms};

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
    fn filter(&self) -> anyhow::Result<DeliveryFilter> {
        let status = match self.status.as_deref() {
            Some("any") | None => None,
            Some(status) => Some(
                status
                    .parse::<DeliveryStatus>()
                    .with_context(|| format!("--status {status}"))?,
            ),
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
    let rows = ops::list_deliveries(store.as_ref(), &args.filter()?).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:>6} {:>7} {:<30} {:<18} {:<10} {:<10} {:>3}  last error or skip reason",
        "id", "webhook", "mapping", "key", "to", "status", "try"
    );
    for row in &rows {
        let error = row.last_error.as_deref().unwrap_or("").replace('\n', " ");
        // A skip's reason, after the kind of skip it is.
        let error = match row.skip {
            Some(kind) => format!("[{kind}] {error}"),
            None => error,
        };
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
    let filter = ops::replay_filter(args.filter()?, args.status.is_some());
    if !retranslate {
        let done = ops::replay(store.as_ref(), &filter).await?;
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
    let catalog = Catalog::load(Path::new(&config.mappings_dir))
        .map(|catalog| catalog.with_source_vars(config.source_vars()))
        .map_err(|errors| {
            let listed: Vec<String> = errors.iter().map(ToString::to_string).collect();
            anyhow::anyhow!(
                "{} error(s) in the mapping files:\n{}",
                errors.len(),
                listed.join("\n")
            )
        })?;
    let bar = progress_bar();
    let done = ops::retranslate(
        store.as_ref(),
        &catalog,
        &filter,
        |webhook, error, (done, total)| {
            if let Some(error) = error {
                bar.suspend(|| eprintln!("webhook {webhook}: {}", error.replace('\n', "; ")));
            }
            bar.set_length(total as u64);
            bar.set_position(done as u64);
            // Without a terminal (a log, CI) the bar is hidden: a line every 100 instead.
            if bar.is_hidden() && done % 100 == 0 {
                eprintln!("… {done}/{total} webhooks re-translated");
            }
        },
    )
    .await?;
    bar.finish_and_clear();
    println!(
        "re-translated {} webhooks: {} deliveries added, {} replaced and requeued, {} webhooks with errors",
        done.webhooks,
        done.added,
        done.replaced,
        done.failed.len()
    );
    Ok(if done.failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// A bar on stderr when it is a terminal; hidden otherwise.
fn progress_bar() -> ProgressBar {
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template(
            "re-translating {bar:40} {pos}/{len} webhooks ({per_sec}, {eta} left)",
        )
        .expect("a valid template"),
    );
    bar
}
