//! Accepts webhooks straight into a new SQLite store through the writer thread, `CONCURRENCY`
//! at a time, with no HTTP and no translation in the way, and prints the writer thread's CPU
//! time per webhook: the store's side of `bench/ingest.sh`, steady enough to compare two
//! builds of the writer (and exact in instructions under `valgrind --tool=callgrind`).
//!
//! `store_accept WEBHOOKS CONCURRENCY` (from the repository root)
//!
//! Each webhook is the Haravan paid fixture's body with a dedupe id of its own and two
//! deliveries the size of its Legion and Salekit payloads, as `bench/ingest.sh` stores them.

use std::collections::BTreeMap;
use std::sync::Arc;

use storehook::fixture::Fixture;
use storehook::store::{NewDelivery, NewWebhook, SqliteStore, Store};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The fixture `bench/ingest.sh` sends.
const FIXTURE: &str = "fixtures/haravan/paid-two-items-discount.json";

/// CPU seconds (user and system) of this process's threads named `name`, from `/proc`.
fn thread_cpu_seconds(name: &str) -> anyhow::Result<f64> {
    let mut ticks = 0u64;
    for entry in std::fs::read_dir("/proc/self/task")? {
        let dir = entry?.path();
        if std::fs::read_to_string(dir.join("comm"))?.trim() != name {
            continue;
        }
        let stat = std::fs::read_to_string(dir.join("stat"))?;
        // after the command's closing parenthesis: state is field 0, utime 11, stime 12
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map_or("", |(_, rest)| rest)
            .split_whitespace()
            .collect();
        for index in [11, 12] {
            ticks += fields.get(index).and_then(|f| f.parse().ok()).unwrap_or(0);
        }
    }
    // the kernel's USER_HZ is 100 on every Linux we run on
    Ok(ticks as f64 / 100.0)
}

fn webhook(body: &[u8], n: usize) -> NewWebhook {
    let order = 5_000_000 + n;
    let delivery = |mapping: &str, destination: &str, operation: &str, size: usize| NewDelivery {
        mapping: mapping.into(),
        key: order.to_string(),
        destination: destination.into(),
        operation: operation.into(),
        payload: "x".repeat(size),
        needs: None,
        skipped: None,
    };
    NewWebhook {
        source: "haravan".into(),
        platform: "haravan".into(),
        topic: "orders/paid".into(),
        dedupe_id: format!("1000:orders/paid:{order}:2026-11-24T10:00:00Z"),
        headers: BTreeMap::from([("x-haravan-topic".into(), "orders/paid".into())]),
        body: body.to_vec(),
        received_at_ms: 1_790_000_000_000 + n as i64,
        deliveries: vec![
            delivery(
                "haravan/legion-purchase",
                "legion",
                "legion.purchase_event",
                606,
            ),
            delivery(
                "haravan/salekit-audience",
                "salekit",
                "salekit.upsert_audience",
                259,
            ),
        ],
        translation_error: None,
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, webhooks, concurrency] = args.as_slice() else {
        anyhow::bail!("usage: store_accept WEBHOOKS CONCURRENCY");
    };
    let (webhooks, concurrency): (usize, usize) = (webhooks.parse()?, concurrency.parse()?);
    let body: Arc<[u8]> = Fixture::load(std::path::Path::new(FIXTURE))?.body.into();
    let dir = tempfile::tempdir()?;
    let url = format!("sqlite://{}", dir.path().join("store.db").display());
    let store = Arc::new(SqliteStore::open(&url).await?);

    let cpu_before = thread_cpu_seconds("storehook-write")?;
    let started = std::time::Instant::now();
    let tasks: Vec<_> = (0..concurrency.max(1))
        .map(|first| {
            let (store, body) = (store.clone(), body.clone());
            tokio::spawn(async move {
                for n in (first..webhooks).step_by(concurrency.max(1)) {
                    store.accept(webhook(&body, n)).await?;
                }
                anyhow::Ok(())
            })
        })
        .collect();
    for task in tasks {
        task.await??;
    }
    let wall = started.elapsed().as_secs_f64();
    let cpu = thread_cpu_seconds("storehook-write")? - cpu_before;
    println!(
        "{webhooks} webhooks in {wall:.2} s ({:.0}/s), {} commits, writer thread CPU {:.1} µs a webhook",
        webhooks as f64 / wall,
        store.commits(),
        cpu * 1e6 / webhooks as f64,
    );
    Ok(())
}
