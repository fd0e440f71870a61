//! Translates one JSON order per input line through the mappings of one platform and topic,
//! writing each payload as a JSON line: the storehook side of `bench/jq-compare.sh`.
//!
//! `translate_lines MAPPINGS_DIR PLATFORM TOPIC < orders.jsonl > payloads.jsonl`

use std::collections::BTreeMap;
use std::io::{BufRead, BufWriter, Write};
use std::path::Path;
use std::time::Instant;

use storehook::mapping::{Catalog, Webhook};
use storehook::source::PlatformKind;

/// mimalloc: translating an order allocates hundreds of small values; glibc's malloc spent
/// about a third of the time (measured with perf on `bench/jq-compare.sh`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, mappings, platform, topic] = args.as_slice() else {
        anyhow::bail!("usage: translate_lines MAPPINGS_DIR PLATFORM TOPIC < orders.jsonl");
    };
    let platform = PlatformKind::ALL
        .into_iter()
        .find(|p| p.as_str() == platform)
        .ok_or_else(|| anyhow::anyhow!("unknown platform {platform}"))?;
    let catalog = Catalog::load(Path::new(mappings))
        .map_err(|e| anyhow::anyhow!("{} mapping error(s): {e:?}", e.len()))?;
    let headers = BTreeMap::new();
    let stdin = std::io::BufReader::with_capacity(1 << 20, std::io::stdin().lock());
    let mut out = BufWriter::new(std::io::stdout().lock());
    let started = Instant::now();
    let (mut orders, mut failures) = (0u64, 0u64);
    for line in stdin.split(b'\n') {
        let line = line?;
        if line.is_empty() {
            continue;
        }
        orders += 1;
        let webhook = Webhook {
            source: platform.as_str(),
            platform,
            topic,
            headers: &headers,
            body: &line,
        };
        for result in catalog.translate(&webhook) {
            match result {
                Ok(plan) => {
                    out.write_all(plan.payload_json.as_bytes())?;
                    out.write_all(b"\n")?;
                }
                Err(_) => failures += 1,
            }
        }
    }
    out.flush()?;
    let seconds = started.elapsed().as_secs_f64();
    eprintln!(
        "storehook: {orders} orders in {seconds:.3} s = {:.0} orders/s ({failures} translation errors)",
        orders as f64 / seconds
    );
    Ok(())
}
