//! `storehook copy-store`: prints what [`store::copy::copy_store`] copied, or why it did not.

use std::process::ExitCode;

use crate::store::{self, copy};

pub(super) async fn copy_store(
    from: &str,
    to: &str,
    allow_running_source: bool,
) -> anyhow::Result<ExitCode> {
    let options = copy::CopyOptions {
        allow_running_source,
        now_ms: store::now_ms(),
        page_rows: copy::PAGE_ROWS,
    };
    let copied = copy::copy_store(from, to, options).await?;
    for heartbeat in &copied.running {
        eprintln!("warning: copied while the source was in use by {heartbeat}");
    }
    let counts = copied.counts;
    say!(
        "copied {} webhooks, {} deliveries and {} attempts from {} to {}",
        counts.webhooks,
        counts.deliveries,
        counts.attempts,
        store::redacted_url(from),
        store::redacted_url(to)
    );
    if let Some(last) = copied.last_lease_until {
        say!(
            "{} deliveries were in flight: the target sends each again once its lease ends (the last at {})",
            copied.in_flight,
            store::heartbeat::shown_time(last)
        );
    }
    Ok(ExitCode::SUCCESS)
}
