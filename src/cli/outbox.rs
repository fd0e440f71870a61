//! `storehook deliveries`, `storehook replay` and `storehook cancel`: the outbox as
//! operators see and fix it.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context as _;
use indicatif::{ProgressBar, ProgressStyle};

use crate::config::Config;
use crate::domain::{DeliveryId, DeliveryStatus, WebhookId, WebhookStatus};
use crate::mapping::Catalog;
use crate::ops;
use crate::store::{self, DeliveryFilter, now_ms};

/// The filter options shared by both verbs.
#[derive(Debug, clap::Args)]
pub struct FilterArgs {
    /// Only deliveries in this status (pending, waiting, in_flight, delivered, dead,
    /// skipped, dry_run, cancelled); `any` for all
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
    /// Only the delivery with this id (a replay naming it puts a cancelled one back)
    #[arg(long)]
    pub id: Option<i64>,
    /// At most this many
    #[arg(long)]
    pub limit: Option<i64>,
}

impl FilterArgs {
    fn filter(&self) -> anyhow::Result<DeliveryFilter> {
        let status = match self.status.as_deref() {
            Some("any") | None => None,
            Some(status) => Some(delivery_status(status)?),
        };
        let since_ms = self.since.as_deref().map(since_ms).transpose()?;
        Ok(DeliveryFilter {
            status,
            destination: self.destination.clone(),
            since_ms,
            webhook_id: self.webhook.map(WebhookId),
            id: self.id.map(DeliveryId),
            limit: self.limit,
            ..DeliveryFilter::default()
        })
    }
}

/// The delivery status `--status` names; a webhook's status word points to `webhooks`.
fn delivery_status(word: &str) -> anyhow::Result<DeliveryStatus> {
    if word.parse::<WebhookStatus>().is_ok() {
        anyhow::bail!(
            "--status {word}: `{word}` is a webhook status, not a delivery's: use `storehook webhooks --status {word}`"
        );
    }
    word.parse::<DeliveryStatus>()
        .map_err(|unknown| anyhow::anyhow!("--status {word}: {unknown}, or `any` for all"))
}

/// `--since TEXT`: the Unix time in milliseconds that long ago.
pub(super) fn since_ms(text: &str) -> anyhow::Result<i64> {
    let span: jiff::Span = text
        .parse()
        .with_context(|| format!("--since {text}: not a duration like 30m, 2h or 7d"))?;
    let ago = span
        .to_duration(jiff::SpanRelativeTo::days_are_24_hours())
        .with_context(|| format!("--since {text}"))?;
    Ok(now_ms() - ago.as_millis() as i64)
}

pub async fn deliveries(
    config: &Config,
    args: &FilterArgs,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let store = store::open(&config.store_url).await?;
    let rows = ops::list_deliveries(store.as_ref(), &args.filter()?).await?;
    if json {
        say!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(ExitCode::SUCCESS);
    }
    say!(
        "{:>6} {:>7} {:<19} {:<30} {:<24} {:<10} {:<10} {:>3}  last error or skip reason",
        "id",
        "webhook",
        "created (UTC)",
        "mapping",
        "key",
        "to",
        "status",
        "try"
    );
    for row in &rows {
        let error = row.last_error.as_deref().unwrap_or("").replace('\n', " ");
        // A skip's reason, after the kind of skip it is.
        let error = match row.skip {
            Some(kind) => format!("[{kind}] {error}"),
            None => error,
        };
        say!(
            "{:>6} {:>7} {:<19} {:<30} {:<24} {:<10} {:<10} {:>3}  {}",
            row.id,
            row.webhook_id,
            utc_time(row.created_at),
            fit(&row.mapping, 30),
            fit(&row.key, 24),
            fit(&row.destination, 10),
            row.status,
            row.attempts,
            fit(&error, 80)
        );
    }
    say!("{} deliveries", rows.len());
    Ok(ExitCode::SUCCESS)
}

/// `text` in at most `width` characters: cut with `…` when longer, so the columns after it
/// stay where the header says.
pub(super) fn fit(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_string();
    }
    let kept: String = text.chars().take(width - 1).collect();
    format!("{kept}…")
}

/// A time column's text: Unix milliseconds as `YYYY-MM-DD HH:MM:SS` in UTC.
pub(super) fn utc_time(ms: i64) -> String {
    match jiff::Timestamp::from_millisecond(ms) {
        Ok(ts) => ts.strftime("%Y-%m-%d %H:%M:%S").to_string(),
        Err(_) => ms.to_string(),
    }
}

/// What `replay` does beyond its filter.
pub struct ReplayArgs<'a> {
    pub retranslate: bool,
    pub mapping: Option<&'a str>,
    /// Go on without asking.
    pub yes: bool,
}

/// Asks the operator to confirm `what` on the terminal; without one, only `--yes` goes on.
fn confirm(what: &str, yes: bool) -> anyhow::Result<bool> {
    confirm_verb("replay", what, yes)
}

/// [`confirm`] for `verb`, which the refusal without a terminal names.
fn confirm_verb(verb: &str, what: &str, yes: bool) -> anyhow::Result<bool> {
    use std::io::{BufRead as _, IsTerminal as _, Write as _};
    eprintln!("{what}");
    if yes {
        return Ok(true);
    }
    if !std::io::stdin().is_terminal() {
        anyhow::bail!(
            "{verb} changes the queue: pass --yes to do it without a terminal to confirm on"
        );
    }
    eprint!("Go on? [y/N] ");
    std::io::stderr().flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes"))
}

/// The filter in words, for the confirmation.
fn described(filter: &store::DeliveryFilter, mapping: Option<&str>) -> String {
    let mut parts = Vec::new();
    if let Some(status) = filter.status {
        parts.push(format!("status {status}"));
    }
    if let Some(destination) = &filter.destination {
        parts.push(format!("destination {destination}"));
    }
    if let Some(mapping) = mapping {
        parts.push(format!("mapping {mapping}"));
    }
    if let Some(webhook) = filter.webhook_id {
        parts.push(format!("webhook {webhook}"));
    }
    if let Some(id) = filter.id {
        parts.push(format!("id {id}"));
    }
    if filter.since_ms.is_some() {
        parts.push("within --since".into());
    }
    if parts.is_empty() {
        "any".into()
    } else {
        parts.join(", ")
    }
}

pub async fn replay(
    config: &Config,
    args: &FilterArgs,
    replay: ReplayArgs<'_>,
) -> anyhow::Result<ExitCode> {
    let store = store::open(&config.store_url).await?;
    let filter = ops::replay_filter(args.filter()?, args.status.is_some());
    let what = described(&filter, replay.mapping);
    if !replay.retranslate {
        let count = ops::deliveries_to_replay(store.as_ref(), &filter).await?;
        if count == 0 {
            say!("nothing to replay ({what})");
            return Ok(ExitCode::SUCCESS);
        }
        if !confirm(
            &format!("replay: up to {count} deliveries ({what}) go back in the queue"),
            replay.yes,
        )? {
            say!("nothing done");
            return Ok(ExitCode::FAILURE);
        }
        let (done, _) = ops::replay(store.as_ref(), &filter).await?;
        say!(
            "requeued {} deliveries; a running `storehook serve` sends them now",
            done.requeued
        );
        if done.waiting > 0 {
            say!(
                "{} of them wait for the delivery they need (a Scalef status update for its conversion)",
                done.waiting
            );
        }
        if done.rearmed > 0 {
            say!(
                "{} skipped status updates wait again for their requeued conversion",
                done.rearmed
            );
        }
        if done.purged > 0 {
            say!(
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
    if let Some(mapping) = replay.mapping
        && !catalog.mappings().iter().any(|m| m.id == mapping)
    {
        let known: Vec<&str> = catalog.mappings().iter().map(|m| m.id.as_str()).collect();
        anyhow::bail!(
            "--mapping {mapping}: no such mapping in {} (there are: {})",
            config.mappings_dir,
            known.join(", ")
        );
    }
    let retranslation = ops::Retranslation::load(store.as_ref(), &filter).await?;
    let count = retranslation.len();
    if count == 0 {
        say!("nothing to re-translate ({what})");
        return Ok(ExitCode::SUCCESS);
    }
    if !confirm(
        &format!(
            "replay --retranslate: {count} webhooks (of the deliveries with {what}, and the untranslated ones) run through the mappings in {}; deliveries not yet delivered take the new payload",
            config.mappings_dir
        ),
        replay.yes,
    )? {
        say!("nothing done");
        return Ok(ExitCode::FAILURE);
    }
    let bar = progress_bar();
    let done = retranslation
        .run(
            store.as_ref(),
            &catalog,
            replay.mapping,
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
    say!(
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

pub async fn cancel(config: &Config, args: &FilterArgs, yes: bool) -> anyhow::Result<ExitCode> {
    let filter = args.filter()?;
    if !ops::names_something(&filter) {
        anyhow::bail!(
            "cancel needs a filter: --id, --webhook, --status, --destination or --since (it never cancels every delivery)"
        );
    }
    let store = store::open(&config.store_url).await?;
    let what = described(&filter, None);
    let count = ops::deliveries_to_cancel(store.as_ref(), &filter).await?;
    if count == 0 {
        say!("nothing to cancel ({what}): only pending, waiting and dead deliveries are");
        return Ok(ExitCode::SUCCESS);
    }
    if !confirm_verb(
        "cancel",
        &format!(
            "cancel: up to {count} deliveries ({what}) are never sent, unless a replay names one by its id"
        ),
        yes,
    )? {
        say!("nothing done");
        return Ok(ExitCode::FAILURE);
    }
    let (done, _) = ops::cancel(store.as_ref(), &filter).await?;
    say!("cancelled {} deliveries", done.cancelled);
    if done.skipped > 0 {
        say!(
            "{} deliveries waiting for them (Scalef status updates) are skipped",
            done.skipped
        );
    }
    Ok(ExitCode::SUCCESS)
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

#[cfg(test)]
mod tests {
    use super::{fit, utc_time};

    #[test]
    fn long_cells_are_cut_to_their_column_with_an_ellipsis() {
        assert_eq!(
            fit("haravan/legion-purchase", 30),
            "haravan/legion-purchase"
        );
        assert_eq!(
            fit("shop-with-a-long-name/1071234501", 24),
            "shop-with-a-long-name/1…"
        );
        assert_eq!(fit("shop-with-a-long-name/1…", 24).chars().count(), 24);
        assert_eq!(fit("Đơn hàng đã huỷ", 8), "Đơn hàn…");
    }

    #[test]
    fn times_are_shown_in_utc() {
        assert_eq!(utc_time(1_773_458_526_000), "2026-03-14 03:22:06");
    }
}
